/* Tests of src/clients/spotify against tests/fakes/fake_spotify.py.
 *
 * The group setup starts the fake with /usr/bin/python3 (argv[1] is the script), reads
 * the port it prints and points every client at http://127.0.0.1:PORT. The fake's stdin
 * is a pipe held here, so the fake exits on its own if this process dies. Behaviours are
 * picked by the fake's magic ids; its /_fake/stats counters tell how many requests the
 * client made, which is how retries, caching and "no retry" are checked without timing.
 *
 * The clients use short timeouts and backoffs so the whole suite takes a few seconds; the
 * only waits that are real are the fake's Retry-After: 1 (twice) and the 2 s token
 * lifetime, each with a wide margin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake_server.h"
#include "clients/spotify.h"
#include "util/err.h"

#define OK_TRACK            "okTrack000000000000000"
#define RATE429_TWICE       "rate429twice0000000000"
#define RATE429_FOREVER     "rate429forever00000000"
#define FAIL503_TWICE       "fail503twice0000000000"
#define FAIL500_ALWAYS      "fail500always000000000"
#define BAD_REQUEST         "badRequest000000000000"
#define SLOW_TRACK          "slowTrack0000000000000"
#define TRUNCATED_JSON      "truncatedJson000000000"
#define CUT_BODY            "cutBody000000000000000"
#define MISSING             "missing000000000000000"
#define BIG_ALBUM           "bigAlbum00000000000000"
#define STRAY_ALBUM         "strayNextAlbum00000000"
#define BIG_PLAYLIST        "bigPlaylist00000000000"
#define LEGACY_PLAYLIST     "legacyPlaylist00000000"
#define FORBIDDEN_PLAYLIST  "forbiddenPlaylist00000"
#define EDITORIAL_PLAYLIST  "37i9dQZF1DXcBWIGoYBM5M"
#define EDITORIAL_PLAYLIST2 "37i9dQZEVXbMDoHDwVN2tF"

static const char *fake_script;
static pid_t fake_pid = -1;
static int fake_stdin = -1;
static char base[64];

/* ---- The fake ------------------------------------------------------------------------- */

static int start_fake(void **state)
{
	(void)state;
	if (access("/usr/bin/python3", X_OK) != 0) {
		fprintf(stderr, "# missing /usr/bin/python3 (apt-get install python3): the fake "
		                "Spotify cannot run\n");
		return -1;
	}
	if (!fake_script || access(fake_script, R_OK) != 0) {
		fprintf(stderr, "# missing the fake Spotify script (argv[1]): %s\n",
		        fake_script ? fake_script : "(none)");
		return -1;
	}
	return fake_server_start(fake_script, "Spotify", &fake_pid, &fake_stdin, base, sizeof base);
}

static int stop_fake(void **state)
{
	(void)state;
	fake_server_stop(fake_pid, fake_stdin);
	return 0;
}

static size_t collect(char *p, size_t size, size_t nmemb, void *ud)
{
	size_t n = size * nmemb;
	char *buf = ud;
	size_t have = strlen(buf);
	size_t room = 4095 - have;
	memcpy(buf + have, p, n < room ? n : room);
	buf[have + (n < room ? n : room)] = '\0';
	return n;
}

/* A plain request to the fake (not through the client). Returns the status; *location
 * (malloced, may be NULL) receives a redirect target when asked for. */
static long fake_call(const char *method, const char *url, char body[4096], char **location)
{
	CURL *h = curl_easy_init();
	assert_non_null(h);
	body[0] = '\0';
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (location) {
		char *loc = NULL;
		curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc);
		*location = loc ? strdup(loc) : NULL;
	}
	curl_easy_cleanup(h);
	return status;
}

static void fake_reset(void)
{
	char url[128], body[4096];
	snprintf(url, sizeof url, "%s/_fake/reset", base);
	assert_int_equal(fake_call("POST", url, body, NULL), 200);
}

static void fake_expire_tokens(void)
{
	char url[128], body[4096];
	snprintf(url, sizeof url, "%s/_fake/expire-tokens", base);
	assert_int_equal(fake_call("POST", url, body, NULL), 200);
}

/* Returns a new reference to the fake's counters. */
static json_t *fake_stats(void)
{
	char url[128], body[4096];
	snprintf(url, sizeof url, "%s/_fake/stats", base);
	assert_int_equal(fake_call("GET", url, body, NULL), 200);
	json_t *j = json_loads(body, 0, NULL);
	assert_non_null(j);
	return j;
}

static long hits(const char *path)
{
	json_t *j = fake_stats();
	json_t *v = json_object_get(json_object_get(j, "hits"), path);
	long n = json_is_integer(v) ? (long)json_integer_value(v) : 0;
	json_decref(j);
	return n;
}

/* hits(), after giving the fake up to 5 s to count a request whose client gave up
 * early (its handler may run after the client's timeout). */
static long hits_at_least(const char *path, long want)
{
	long n = 0;
	for (int i = 0; i < 100; i++) {
		n = hits(path);
		if (n >= want)
			break;
		struct timespec ts = {0, 50000000L};
		nanosleep(&ts, NULL);
	}
	return n;
}

static long token_requests(void)
{
	json_t *j = fake_stats();
	long n = (long)json_integer_value(json_object_get(j, "token_requests"));
	json_decref(j);
	return n;
}

/* ---- Clients ---------------------------------------------------------------------------- */

static struct spotify_config test_config(void)
{
	struct spotify_config cfg = {
		.client_id = "fake-client-id",
		.client_secret = "fake-client-secret",
		.accounts_url = base,
		.api_url = base,
		.connect_timeout_ms = 2000,
		.timeout_ms = 5000,
		.backoff_base_ms = 10,
		.backoff_max_ms = 40,
		.allow_http_loopback = true,
	};
	return cfg;
}

static struct spotify_client *client_with(struct spotify_config cfg)
{
	struct spotify_client *c = NULL;
	char err[256];
	int rc = spotify_client_new(&cfg, &c, err, sizeof err);
	if (rc)
		fail_msg("spotify_client_new: %s", err);
	return c;
}

static struct spotify_client *client(void) { return client_with(test_config()); }

static int fetch(struct spotify_client *c, enum spotify_kind kind, const char *id,
                 struct spotify_result **out, char *err, size_t n_err)
{
	struct spotify_ref ref = {.kind = kind};
	snprintf(ref.id, sizeof ref.id, "%s", id);
	return spotify_fetch(c, &ref, out, err, n_err);
}

static void expect_fail(struct spotify_client *c, enum spotify_kind kind, const char *id, int code,
                        const char *phrase)
{
	struct spotify_result *r = NULL;
	char err[512] = "";
	int rc = fetch(c, kind, id, &r, err, sizeof err);
	if (rc != code)
		fail_msg("%s: expected %d, got %d (%s)", id, code, rc, err);
	assert_null(r);
	if (phrase && !strstr(err, phrase))
		fail_msg("%s: message \"%s\" lacks \"%s\"", id, err, phrase);
}

static char *path_of(char *buf, size_t n, const char *fmt, const char *id)
{
	snprintf(buf, n, fmt, id);
	return buf;
}

/* ---- Catalogue -------------------------------------------------------------------------- */

static void track_fields(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	struct spotify_result *r = NULL;
	char err[256];
	int rc = fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(r->kind, SPOTIFY_TRACK);
	assert_int_equal(r->n_tracks, 1);
	const struct spotify_track *t = &r->tracks[0];
	assert_string_equal(t->spotify_id, OK_TRACK);
	assert_string_equal(t->title, "Fake Track 1");
	assert_string_equal(t->artist, "Artist One, Artist Two");
	assert_string_equal(t->album, "Fake Album");
	assert_string_equal(t->album_art_url, "https://i.scdn.co/image/album-640");
	assert_int_equal(t->duration_s, 213); /* 212500 ms rounds half up */
	assert_string_equal(t->spotify_url, "https://open.spotify.com/track/" OK_TRACK);
	assert_string_equal(t->isrc, "USFAKE000001");
	spotify_result_free(r);

	json_t *j = fake_stats();
	assert_string_equal(json_string_value(json_object_get(j, "last_market")), "US");
	json_decref(j);
	spotify_client_free(c);

	/* The market is configurable. */
	struct spotify_config cfg = test_config();
	cfg.market = "DE";
	c = client_with(cfg);
	assert_int_equal(fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err), 0);
	spotify_result_free(r);
	j = fake_stats();
	assert_string_equal(json_string_value(json_object_get(j, "last_market")), "DE");
	json_decref(j);
	spotify_client_free(c);
}

static void config_is_checked(void **state)
{
	(void)state;
	struct spotify_config cfg = test_config();
	struct spotify_client *c = NULL;
	char err[256];
	cfg.market = "usa";
	assert_int_equal(spotify_client_new(&cfg, &c, err, sizeof err), SFA_EINVAL);
	cfg = test_config();
	cfg.api_url = "ftp://example.com";
	assert_int_equal(spotify_client_new(&cfg, &c, err, sizeof err), SFA_EINVAL);
	assert_null(c);
}

static void token_is_cached(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256];
	for (int i = 0; i < 3; i++) {
		struct spotify_result *r = NULL;
		assert_int_equal(fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err), 0);
		spotify_result_free(r);
	}
	assert_int_equal(token_requests(), 1);
	spotify_client_free(c);
}

static void token_refreshed_once_on_401(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	assert_int_equal(fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err), 0);
	spotify_result_free(r);
	fake_expire_tokens(); /* the cached token is now stale at the fake */
	int rc = fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	spotify_result_free(r);
	assert_int_equal(token_requests(), 2);
	/* 1 + (401, then the retry with the new token) */
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", OK_TRACK)), 3);
	spotify_client_free(c);
}

static void short_lived_token_renewed_before_use(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_config cfg = test_config();
	cfg.client_id = "short-lived-client"; /* tokens live 2 s at the fake */
	struct spotify_client *c = client_with(cfg);
	char err[256], path[128];
	struct spotify_result *r = NULL;
	assert_int_equal(fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err), 0);
	spotify_result_free(r);
	/* The client keeps a 2 s token for at most 1 s; after 2.5 s it must fetch a new one
	 * before calling, so no request meets a 401. */
	struct timespec ts = {2, 500000000L};
	nanosleep(&ts, NULL);
	assert_int_equal(fetch(c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err), 0);
	spotify_result_free(r);
	assert_int_equal(token_requests(), 2);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", OK_TRACK)), 2);
	spotify_client_free(c);
}

static void bad_or_missing_credentials(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_config cfg = test_config();
	cfg.client_secret = "wrong-secret";
	struct spotify_client *c = client_with(cfg);
	expect_fail(c, SPOTIFY_TRACK, OK_TRACK, SFA_EAUTH, "rejected");
	assert_int_equal(hits("/api/token"), 1); /* 400 invalid_client is not retried */
	spotify_client_free(c);

	fake_reset();
	cfg = test_config();
	cfg.client_secret = NULL;
	c = client_with(cfg);
	expect_fail(c, SPOTIFY_TRACK, OK_TRACK, SFA_EAUTH, "not configured");
	assert_int_equal(hits("/api/token"), 0);
	spotify_client_free(c);
}

static void rate_limit_honoured(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	int rc = fetch(c, SPOTIFY_TRACK, RATE429_TWICE, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_string_equal(r->tracks[0].spotify_id, RATE429_TWICE);
	spotify_result_free(r);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", RATE429_TWICE)), 3);
	spotify_client_free(c);
}

static void rate_limit_beyond_cap_fails_at_once(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char path[128];
	expect_fail(c, SPOTIFY_TRACK, RATE429_FOREVER, SFA_EUPSTREAM, "86400 s");
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", RATE429_FOREVER)), 1);
	spotify_client_free(c);
}

static void server_errors_retried(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	assert_int_equal(fetch(c, SPOTIFY_TRACK, FAIL503_TWICE, &r, err, sizeof err), 0);
	spotify_result_free(r);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", FAIL503_TWICE)), 3);

	expect_fail(c, SPOTIFY_TRACK, FAIL500_ALWAYS, SFA_EUPSTREAM, "HTTP 500");
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", FAIL500_ALWAYS)), 5);
	spotify_client_free(c);
}

static void other_4xx_not_retried(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char path[128];
	expect_fail(c, SPOTIFY_TRACK, BAD_REQUEST, SFA_EUPSTREAM, "Invalid base62 id");
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", BAD_REQUEST)), 1);
	expect_fail(c, SPOTIFY_TRACK, MISSING, SFA_ENOTFOUND, "no track with id " MISSING);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", MISSING)), 1);
	expect_fail(c, SPOTIFY_ALBUM, MISSING, SFA_ENOTFOUND, "no album");
	spotify_client_free(c);
}

static void slow_answer_times_out(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_config cfg = test_config();
	cfg.timeout_ms = 1500; /* the fake's slow track takes 3 s */
	struct spotify_client *c = client_with(cfg);
	char path[128];
	expect_fail(c, SPOTIFY_TRACK, SLOW_TRACK, SFA_ETIMEOUT, "did not answer");
	/* A timed-out request is tried twice, not five times. */
	assert_int_equal(hits_at_least(path_of(path, sizeof path, "/v1/tracks/%s", SLOW_TRACK), 2),
	                 2);
	spotify_client_free(c);
}

static void truncated_answers_fail_cleanly(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char path[128];
	/* Complete HTTP, broken JSON: a clear error, not retried. */
	expect_fail(c, SPOTIFY_TRACK, TRUNCATED_JSON, SFA_EUPSTREAM, "not valid JSON");
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", TRUNCATED_JSON)), 1);
	/* Connection closed before Content-Length bytes: a network error, retried. */
	expect_fail(c, SPOTIFY_TRACK, CUT_BODY, SFA_EUPSTREAM, "Could not talk to Spotify");
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/tracks/%s", CUT_BODY)), 5);
	spotify_client_free(c);
}

static void album_pagination(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	int rc = fetch(c, SPOTIFY_ALBUM, BIG_ALBUM, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(r->kind, SPOTIFY_ALBUM);
	assert_int_equal(r->n_tracks, 123);
	assert_int_equal(r->info.total, 123);
	assert_string_equal(r->info.spotify_id, BIG_ALBUM);
	assert_string_equal(r->info.name, "The Big Album");
	assert_string_equal(r->info.artist, "Album Artist, Guest");
	assert_null(r->info.owner);
	assert_string_equal(r->info.album_art_url, "https://i.scdn.co/image/big-album-640");
	for (size_t i = 0; i < r->n_tracks; i++) {
		const struct spotify_track *t = &r->tracks[i];
		char want[64];
		snprintf(want, sizeof want, "Album Track %zu", i + 1);
		assert_string_equal(t->title, want);
		assert_string_equal(t->album, "The Big Album"); /* copied from the parent */
		assert_string_equal(t->album_art_url, "https://i.scdn.co/image/big-album-640");
		assert_int_equal(t->track_number, (int)i + 1);
		assert_null(t->isrc);
	}
	assert_int_equal(r->tracks[0].duration_s, 180);
	spotify_result_free(r);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/albums/%s/tracks", BIG_ALBUM)), 2);

	/* A next link outside the API is refused (the token would go with it). */
	expect_fail(c, SPOTIFY_ALBUM, STRAY_ALBUM, SFA_EUPSTREAM, "outside");
	spotify_client_free(c);
}

static void playlist_items_and_skips(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	int rc = fetch(c, SPOTIFY_PLAYLIST, BIG_PLAYLIST, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(r->kind, SPOTIFY_PLAYLIST);
	assert_int_equal(r->info.total, 126);
	assert_int_equal(r->n_tracks, 123); /* one null, one local file, one episode skipped */
	assert_int_equal(r->n_skipped, 3);
	assert_string_equal(r->info.name, "The bigPlaylist");
	assert_string_equal(r->info.owner, "Playlist Owner");
	assert_null(r->info.artist);
	assert_string_equal(r->info.album_art_url, "https://i.scdn.co/image/bigPlaylist-640");
	bool saw_track_key = false;
	for (size_t i = 0; i < r->n_tracks; i++) {
		assert_string_equal(r->tracks[i].album, "Fake Album");
		assert_non_null(r->tracks[i].isrc);
		if (strcmp(r->tracks[i].spotify_id, "pl00000000000000000003") == 0)
			saw_track_key = true; /* an entry under "track" rather than "item" */
		assert_true(strncmp(r->tracks[i].spotify_id, "ep", 2) != 0);
	}
	assert_true(saw_track_key);
	assert_string_equal(r->tracks[0].spotify_id, "pl00000000000000000000");
	assert_string_equal(r->tracks[122].spotify_id, "pl00000000000000000125");
	spotify_result_free(r);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/playlists/%s/items", BIG_PLAYLIST)),
	                 3);
	assert_int_equal(hits(path_of(path, sizeof path, "/v1/playlists/%s/tracks", BIG_PLAYLIST)),
	                 0);
	spotify_client_free(c);
}

static void playlist_falls_back_to_tracks(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	char err[256], path[128];
	struct spotify_result *r = NULL;
	int rc = fetch(c, SPOTIFY_PLAYLIST, LEGACY_PLAYLIST, &r, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(r->n_tracks, 60);
	assert_int_equal(r->info.total, 60);
	assert_int_equal(r->n_skipped, 0);
	spotify_result_free(r);
	assert_int_equal(
		hits(path_of(path, sizeof path, "/v1/playlists/%s/items", LEGACY_PLAYLIST)), 1);
	assert_int_equal(
		hits(path_of(path, sizeof path, "/v1/playlists/%s/tracks", LEGACY_PLAYLIST)), 2);

	expect_fail(c, SPOTIFY_PLAYLIST, FORBIDDEN_PLAYLIST, SFA_EUPSTREAM, "403");
	spotify_client_free(c);
}

static void editorial_playlists_explained(void **state)
{
	(void)state;
	struct spotify_client *c = client();
	expect_fail(c, SPOTIFY_PLAYLIST, EDITORIAL_PLAYLIST, SFA_ENOTFOUND,
	            "not available through the Spotify API");
	expect_fail(c, SPOTIFY_PLAYLIST, EDITORIAL_PLAYLIST2, SFA_ENOTFOUND,
	            "not available through the Spotify API");
	struct spotify_result *r = NULL;
	char err[256];
	assert_int_equal(fetch(c, SPOTIFY_PLAYLIST, MISSING, &r, err, sizeof err), SFA_ENOTFOUND);
	assert_null(strstr(err, "not available through"));
	assert_non_null(strstr(err, "no playlist"));
	spotify_client_free(c);
}

struct par_arg {
	struct spotify_client *c;
	int rc;
};

static void *par_fetch(void *p)
{
	struct par_arg *a = p;
	struct spotify_result *r = NULL;
	char err[256];
	a->rc = fetch(a->c, SPOTIFY_TRACK, OK_TRACK, &r, err, sizeof err);
	spotify_result_free(r);
	return NULL;
}

static void threads_share_one_token(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	pthread_t th[6];
	struct par_arg args[6];
	for (int i = 0; i < 6; i++) {
		args[i] = (struct par_arg){c, -100};
		assert_int_equal(pthread_create(&th[i], NULL, par_fetch, &args[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].rc, 0);
	}
	assert_int_equal(token_requests(), 1);
	spotify_client_free(c);
}

/* ---- Short links ------------------------------------------------------------------------ */

static int resolve(struct spotify_client *c, const char *path, struct spotify_ref *ref, char *err,
                   size_t n_err)
{
	char url[256];
	snprintf(url, sizeof url, "%s%s", base, path);
	return spotify_resolve_url(c, url, ref, err, n_err);
}

static void short_links_followed(void **state)
{
	(void)state;
	fake_reset();
	struct spotify_client *c = client();
	struct spotify_ref ref;
	char err[256];
	int rc = resolve(c, "/short/good", &ref, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(ref.kind, SPOTIFY_TRACK);
	assert_string_equal(ref.id, OK_TRACK);

	rc = resolve(c, "/short/page", &ref, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_int_equal(ref.kind, SPOTIFY_ALBUM);
	assert_string_equal(ref.id, BIG_ALBUM);

	assert_int_equal(resolve(c, "/short/loop", &ref, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "more than 5"));
	assert_int_equal(hits("/short/loop"), 5);

	assert_int_equal(resolve(c, "/short/elsewhere", &ref, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "away from Spotify"));
	assert_int_equal(resolve(c, "/short/insecure", &ref, err, sizeof err), SFA_EINVAL);
	assert_int_equal(resolve(c, "/short/artist", &ref, err, sizeof err), SFA_EINVAL);
	assert_int_equal(resolve(c, "/short/missing", &ref, err, sizeof err), SFA_EINVAL);

	/* Ordinary links go straight to the parser. */
	assert_int_equal(spotify_resolve_url(c, "spotify:album:" BIG_ALBUM, &ref, err, sizeof err),
	                 0);
	assert_int_equal(ref.kind, SPOTIFY_ALBUM);
	assert_int_equal(spotify_resolve_url(c, "https://example.com/x", &ref, err, sizeof err),
	                 SFA_EINVAL);
	spotify_client_free(c);

	/* Without the test flag a loopback URL is not a short link at all. */
	struct spotify_config cfg = test_config();
	cfg.allow_http_loopback = false;
	c = client_with(cfg);
	fake_reset();
	assert_int_equal(resolve(c, "/short/good", &ref, err, sizeof err), SFA_EINVAL);
	assert_int_equal(hits("/short/good"), 0);
	spotify_client_free(c);
}

/* ---- Log-in --------------------------------------------------------------------------- */

static void pkce_challenge_matches_rfc7636(void **state)
{
	(void)state;
	char ch[SPOTIFY_PKCE_CHALLENGE_LEN + 1];
	char err[128];
	/* RFC 7636 appendix B. */
	assert_int_equal(spotify_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch,
	                                        err, sizeof err),
	                 0);
	assert_string_equal(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	assert_int_equal(spotify_pkce_challenge("short", ch, err, sizeof err), SFA_EINVAL);
	assert_int_equal(spotify_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjX!", ch,
	                                        err, sizeof err),
	                 SFA_EINVAL);
	char v[SPOTIFY_PKCE_VERIFIER_LEN + 1], w[SPOTIFY_PKCE_VERIFIER_LEN + 1];
	spotify_pkce_verifier(v);
	spotify_pkce_verifier(w);
	assert_int_equal(strlen(v), SPOTIFY_PKCE_VERIFIER_LEN);
	assert_string_not_equal(v, w);
	assert_int_equal(spotify_pkce_challenge(v, ch, err, sizeof err), 0);
}

/* Visits the authorize URL like a browser that is already logged in, returning the
 * redirect's query (malloced). */
static char *authorize(struct spotify_client *c, const char *redirect, const char *verifier)
{
	char *url = NULL, err[256];
	int rc = spotify_authorize_url(c, redirect, "st4te", verifier, NULL, &url, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_non_null(strstr(url, "code_challenge_method=S256"));
	assert_non_null(strstr(url, "scope=user-read-email%20user-read-private"));
	char body[4096], *loc = NULL;
	long st = fake_call("GET", url, body, &loc);
	free(url);
	if (st != 302 || !loc)
		fail_msg("authorize answered %ld: %s", st, body);
	assert_true(strncmp(loc, redirect, strlen(redirect)) == 0);
	char *q = strdup(loc + strlen(redirect) + 1);
	free(loc);
	return q;
}

/* Copies the value of key from a query string. */
static void query_value(const char *q, const char *key, char *out, size_t n)
{
	char pat[64];
	snprintf(pat, sizeof pat, "%s=", key);
	const char *p = strstr(q, pat);
	assert_non_null(p);
	p += strlen(pat);
	size_t len = strcspn(p, "&");
	assert_true(len < n);
	memcpy(out, p, len);
	out[len] = '\0';
}

static const char REDIRECT[] = "http://127.0.0.1:9/auth/spotify/callback";

static void login_exchange_refresh_me(void **state)
{
	(void)state;
	struct spotify_client *c = client();
	char verifier[SPOTIFY_PKCE_VERIFIER_LEN + 1], code[128], st[32], err[256];
	spotify_pkce_verifier(verifier);
	char *q = authorize(c, REDIRECT, verifier);
	query_value(q, "code", code, sizeof code);
	query_value(q, "state", st, sizeof st);
	free(q);
	assert_string_equal(st, "st4te");

	/* A wrong verifier is refused (and uses the code up). */
	struct spotify_user_tokens tok = {0};
	char other[SPOTIFY_PKCE_VERIFIER_LEN + 1];
	spotify_pkce_verifier(other);
	assert_int_equal(spotify_exchange_code(c, code, REDIRECT, other, &tok, err, sizeof err),
	                 SFA_EAUTH);
	assert_non_null(strstr(err, "authorization code"));

	q = authorize(c, REDIRECT, verifier);
	query_value(q, "code", code, sizeof code);
	free(q);
	int rc = spotify_exchange_code(c, code, REDIRECT, verifier, &tok, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_non_null(tok.access_token);
	assert_non_null(tok.refresh_token);
	assert_string_equal(tok.scope, SPOTIFY_LOGIN_SCOPES);
	assert_int_equal(tok.expires_in_s, 3600);
	/* A code works once. */
	struct spotify_user_tokens again = {0};
	assert_int_equal(
		spotify_exchange_code(c, code, REDIRECT, verifier, &again, err, sizeof err),
		SFA_EAUTH);

	struct spotify_me me = {0};
	rc = spotify_get_me(c, tok.access_token, &me, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_string_equal(me.id, "fake-user");
	assert_string_equal(me.display_name, "Fake User");
	assert_string_equal(me.email, "fake.user@example.com");
	assert_string_equal(me.country, "SE");
	assert_string_equal(me.product, "premium");
	assert_string_equal(me.image_url, "https://i.scdn.co/image/user-300");
	spotify_me_free(&me);
	assert_int_equal(spotify_get_me(c, "not-a-token", &me, err, sizeof err), SFA_EAUTH);

	/* The fake sends no new refresh token: the old one is kept. */
	struct spotify_user_tokens fresh = {0};
	rc = spotify_refresh_user_token(c, tok.refresh_token, &fresh, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_string_equal(fresh.refresh_token, tok.refresh_token);
	assert_string_not_equal(fresh.access_token, tok.access_token);
	spotify_user_tokens_free(&fresh);

	assert_int_equal(spotify_refresh_user_token(c, "refresh-revoked", &fresh, err, sizeof err),
	                 SPOTIFY_EREVOKED);
	assert_non_null(strstr(err, "linked again"));
	assert_null(fresh.access_token);
	spotify_user_tokens_free(&tok);
	spotify_client_free(c);
}

static void login_public_client_rotates(void **state)
{
	(void)state;
	struct spotify_config cfg = test_config();
	cfg.client_id = "rotating-client";
	cfg.client_secret = NULL; /* a public PKCE client: client_id in the form, no Basic */
	struct spotify_client *c = client_with(cfg);
	char verifier[SPOTIFY_PKCE_VERIFIER_LEN + 1], code[128], err[256];
	spotify_pkce_verifier(verifier);
	char *q = authorize(c, REDIRECT, verifier);
	query_value(q, "code", code, sizeof code);
	free(q);
	struct spotify_user_tokens tok = {0}, fresh = {0};
	int rc = spotify_exchange_code(c, code, REDIRECT, verifier, &tok, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	rc = spotify_refresh_user_token(c, tok.refresh_token, &fresh, err, sizeof err);
	if (rc)
		fail_msg("%s", err);
	assert_string_not_equal(fresh.refresh_token, tok.refresh_token);
	/* The rotated-out token is dead now. */
	struct spotify_user_tokens dead = {0};
	assert_int_equal(spotify_refresh_user_token(c, tok.refresh_token, &dead, err, sizeof err),
	                 SPOTIFY_EREVOKED);
	spotify_user_tokens_free(&fresh);
	spotify_user_tokens_free(&tok);
	/* App reads need a secret. */
	expect_fail(c, SPOTIFY_TRACK, OK_TRACK, SFA_EAUTH, "not configured");
	spotify_client_free(c);
}

static void login_denied_and_misconfigured(void **state)
{
	(void)state;
	struct spotify_config cfg = test_config();
	cfg.client_id = "deny-client";
	struct spotify_client *c = client_with(cfg);
	char verifier[SPOTIFY_PKCE_VERIFIER_LEN + 1], val[64], err[256];
	spotify_pkce_verifier(verifier);
	char *q = authorize(c, REDIRECT, verifier);
	query_value(q, "error", val, sizeof val);
	assert_string_equal(val, "access_denied");
	query_value(q, "state", val, sizeof val);
	assert_string_equal(val, "st4te");
	free(q);
	spotify_client_free(c);

	/* The fake, like Spotify, refuses a localhost redirect URI. */
	c = client();
	char *url = NULL;
	assert_int_equal(spotify_authorize_url(c, "http://localhost:4000/cb", "s", verifier, NULL,
	                                       &url, err, sizeof err),
	                 0);
	char body[4096];
	assert_int_equal(fake_call("GET", url, body, NULL), 400);
	free(url);
	assert_int_equal(
		spotify_authorize_url(c, REDIRECT, "s", "too-short", NULL, &url, err, sizeof err),
		SFA_EINVAL);
	spotify_client_free(c);

	cfg = test_config();
	cfg.client_id = NULL;
	c = client_with(cfg);
	assert_int_equal(
		spotify_authorize_url(c, REDIRECT, "s", verifier, NULL, &url, err, sizeof err),
		SFA_EAUTH);
	spotify_client_free(c);
}

int main(int argc, char **argv)
{
	fake_script = argc > 1 ? argv[1] : getenv("SFA_FAKE_SPOTIFY");
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(config_is_checked),
		cmocka_unit_test(track_fields),
		cmocka_unit_test(token_is_cached),
		cmocka_unit_test(token_refreshed_once_on_401),
		cmocka_unit_test(short_lived_token_renewed_before_use),
		cmocka_unit_test(bad_or_missing_credentials),
		cmocka_unit_test(rate_limit_honoured),
		cmocka_unit_test(rate_limit_beyond_cap_fails_at_once),
		cmocka_unit_test(server_errors_retried),
		cmocka_unit_test(other_4xx_not_retried),
		cmocka_unit_test(slow_answer_times_out),
		cmocka_unit_test(truncated_answers_fail_cleanly),
		cmocka_unit_test(album_pagination),
		cmocka_unit_test(playlist_items_and_skips),
		cmocka_unit_test(playlist_falls_back_to_tracks),
		cmocka_unit_test(editorial_playlists_explained),
		cmocka_unit_test(threads_share_one_token),
		cmocka_unit_test(short_links_followed),
		cmocka_unit_test(pkce_challenge_matches_rfc7636),
		cmocka_unit_test(login_exchange_refresh_me),
		cmocka_unit_test(login_public_client_rotates),
		cmocka_unit_test(login_denied_and_misconfigured),
	};
	int rc = cmocka_run_group_tests(tests, start_fake, stop_fake);
	curl_global_cleanup();
	return rc;
}
