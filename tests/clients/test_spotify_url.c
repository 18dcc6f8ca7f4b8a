/* Unit tests for src/clients/spotify_url: a table of pasted links, accepted and rejected,
 * and the short-link recogniser. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "clients/spotify_url.h"
#include "util/err.h"

#define ID "4uLU6hMCjMI75M1A2tKUQC"

struct accept_case {
	const char *input;
	enum spotify_kind kind;
	const char *id;
};

static const struct accept_case accepted[] = {
	{"https://open.spotify.com/track/" ID, SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/album/" ID, SPOTIFY_ALBUM, ID},
	{"https://open.spotify.com/playlist/37i9dQZF1DXcBWIGoYBM5M", SPOTIFY_PLAYLIST,
         "37i9dQZF1DXcBWIGoYBM5M"},
	{"https://open.spotify.com/track/" ID "?si=1a2b3c4d5e6f", SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/track/" ID "?si=abc&context=spotify%3Aalbum%3A" ID,
         SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/album/" ID "?si=x&nd=1", SPOTIFY_ALBUM, ID},
	{"https://open.spotify.com/track/" ID "#fragment", SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/track/" ID "/", SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/intl-de/track/" ID, SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/intl-pt-BR/album/" ID "?si=q", SPOTIFY_ALBUM, ID},
	{"https://open.spotify.com/embed/playlist/" ID, SPOTIFY_PLAYLIST, ID},
	{"https://open.spotify.com/intl-fr/embed/track/" ID, SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/user/spotify/playlist/" ID, SPOTIFY_PLAYLIST, ID},
	{"https://open.spotify.com/user/some.user_name-1/playlist/" ID "?si=z", SPOTIFY_PLAYLIST,
         ID},
	{"http://open.spotify.com/track/" ID, SPOTIFY_TRACK, ID},
	{"HTTPS://OPEN.SPOTIFY.COM/track/" ID, SPOTIFY_TRACK, ID},
	{"open.spotify.com/track/" ID, SPOTIFY_TRACK, ID},
	{"open.spotify.com/intl-ja/playlist/" ID, SPOTIFY_PLAYLIST, ID},
	{"  https://open.spotify.com/track/" ID "\n", SPOTIFY_TRACK, ID},
	{"spotify:track:" ID, SPOTIFY_TRACK, ID},
	{"spotify:album:" ID, SPOTIFY_ALBUM, ID},
	{"spotify:playlist:" ID, SPOTIFY_PLAYLIST, ID},
	{"Spotify:track:" ID, SPOTIFY_TRACK, ID},
	{"spotify:user:spotify:playlist:" ID, SPOTIFY_PLAYLIST, ID},
	{"spotify%3Atrack%3A" ID, SPOTIFY_TRACK, ID},
	{"spotify%3auser%3aalice%3aplaylist%3a" ID, SPOTIFY_PLAYLIST, ID},
	{"https%3A%2F%2Fopen.spotify.com%2Ftrack%2F" ID, SPOTIFY_TRACK, ID},
	{"https://open.spotify.com/track/0000000000000000000000", SPOTIFY_TRACK,
         "0000000000000000000000"},
	{"https://open.spotify.com/track/zzzzzzzzzzzzzzzzzzzzzz?", SPOTIFY_TRACK,
         "zzzzzzzzzzzzzzzzzzzzzz"},
	{"spotify:track:" ID "?si=abc", SPOTIFY_TRACK, ID},
};

static const char *const rejected[] = {
	"",
	"   ",
	"not a url",
	"https://open.spotify.com/",
	"https://open.spotify.com/track/",
	"https://open.spotify.com/track/" ID "x",                /* 23 characters */
	"https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQ",  /* 21 characters */
	"https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKU-C", /* not base62 */
	"https://open.spotify.com/artist/" ID,                   /* unsupported kind */
	"https://open.spotify.com/episode/" ID,
	"https://open.spotify.com/show/" ID,
	"https://open.spotify.com/Track/" ID, /* paths are case-sensitive */
	"https://open.spotify.com/track/" ID "/extra",
	"https://open.spotify.com/track//" ID,
	"https://open.spotify.com/intl-/track/" ID,
	"https://open.spotify.com/intl-deu/track/" ID,
	"https://open.spotify.com/intl-de-/track/" ID,
	"https://open.spotify.com/embed/embed/track/" ID,
	"https://open.spotify.com/user/playlist/" ID, /* no user name */
	"https://open.spotify.com/user/x/album/" ID,
	"https://open.spotify.com.evil.example/track/" ID,
	"https://evil.example/open.spotify.com/track/" ID,
	"https://evil.example@open.spotify.com/track/" ID,
	"https://open.spotify.com:8443/track/" ID,
	"ftp://open.spotify.com/track/" ID,
	"https://www.youtube.com/watch?v=dQw4w9WgXcQ",
	"https://spotify.link/abcDEF123", /* needs resolving */
	"spotify:artist:" ID,
	"spotify:track:",
	"spotify:track:" ID ":extra",
	"spotify:user:alice:playlist",
	"spotify:user::playlist:" ID,
	"spotify%3Gtrack%3A" ID, /* broken escape */
	"spotify:track:%",
	"https://open.spotify.com/track/" ID "%00",
	"https://open.spotify.com/tr ack/" ID,
	"https://open.spotify.com/track/%20" ID,
};

static void accepts_every_form(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
		struct spotify_ref ref;
		char err[256] = "";
		int rc = spotify_url_parse(accepted[i].input, &ref, err, sizeof err);
		if (rc != 0)
			fail_msg("rejected %s: %s", accepted[i].input, err);
		if (ref.kind != accepted[i].kind || strcmp(ref.id, accepted[i].id) != 0)
			fail_msg("%s parsed as %s/%s", accepted[i].input,
			         spotify_kind_name(ref.kind), ref.id);
	}
}

static void rejects_everything_else(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
		struct spotify_ref ref = {.kind = SPOTIFY_TRACK, .id = "untouched"};
		char err[256] = "";
		int rc = spotify_url_parse(rejected[i], &ref, err, sizeof err);
		if (rc != SFA_EINVAL)
			fail_msg("accepted %s as %s/%s", rejected[i], spotify_kind_name(ref.kind),
			         ref.id);
		if (err[0] == '\0')
			fail_msg("no message for %s", rejected[i]);
		/* Out-parameters are written only on success. */
		assert_string_equal(ref.id, "untouched");
	}
	assert_true(sizeof accepted / sizeof accepted[0] + sizeof rejected / sizeof rejected[0] >=
	            30);
}

static void rejects_null_and_overlong(void **state)
{
	(void)state;
	struct spotify_ref ref;
	assert_int_equal(spotify_url_parse(NULL, &ref, NULL, 0), SFA_EINVAL);
	char big[SPOTIFY_URL_MAX_BYTES + 64];
	int n = snprintf(big, sizeof big, "https://open.spotify.com/track/%s?si=", ID);
	memset(big + n, 'a', sizeof big - (size_t)n - 1);
	big[sizeof big - 1] = '\0';
	char err[128];
	assert_int_equal(spotify_url_parse(big, &ref, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "longer"));
}

static void messages_say_why(void **state)
{
	(void)state;
	struct spotify_ref ref;
	char err[256];
	spotify_url_parse("https://open.spotify.com/artist/" ID, &ref, err, sizeof err);
	assert_non_null(strstr(err, "track, album and playlist"));
	spotify_url_parse("https://spotify.link/abc", &ref, err, sizeof err);
	assert_non_null(strstr(err, "short link"));
	spotify_url_parse("https://open.spotify.com/track/abc", &ref, err, sizeof err);
	assert_non_null(strstr(err, "22"));
}

static void short_links(void **state)
{
	(void)state;
	char url[SPOTIFY_URL_MAX_BYTES + 16];
	assert_true(
		spotify_url_short_link("https://spotify.link/abcDEF123", false, url, sizeof url));
	assert_string_equal(url, "https://spotify.link/abcDEF123");
	assert_true(spotify_url_short_link(" spotify.link/abc ", false, url, sizeof url));
	assert_string_equal(url, "https://spotify.link/abc");
	assert_true(spotify_url_short_link("https://spotify.app.link/abc?x=1", false, NULL, 0));
	assert_true(spotify_url_short_link("HTTPS://Spotify.Link/abc", false, NULL, 0));
	/* https only for the real hosts, even with the test flag. */
	assert_false(spotify_url_short_link("http://spotify.link/abc", false, NULL, 0));
	assert_false(spotify_url_short_link("http://spotify.link/abc", true, NULL, 0));
	assert_false(spotify_url_short_link("https://spotify.link/", false, NULL, 0));
	assert_false(spotify_url_short_link("https://spotify.link", false, NULL, 0));
	assert_false(
		spotify_url_short_link("https://spotify.link.evil.example/abc", false, NULL, 0));
	assert_false(
		spotify_url_short_link("https://evil.example/spotify.link/abc", false, NULL, 0));
	assert_false(spotify_url_short_link("ftp://spotify.link/abc", false, NULL, 0));
	assert_false(spotify_url_short_link("https://spotify.link/a b", false, NULL, 0));
	assert_false(spotify_url_short_link("https://open.spotify.com/track/" ID, false, NULL, 0));
	/* Loopback only with the test flag. */
	assert_false(spotify_url_short_link("http://127.0.0.1:8080/s/abc", false, NULL, 0));
	assert_true(spotify_url_short_link("http://127.0.0.1:8080/s/abc", true, url, sizeof url));
	assert_string_equal(url, "http://127.0.0.1:8080/s/abc");
	assert_false(spotify_url_short_link("http://127.0.0.10/s/abc", true, NULL, 0));
	assert_false(spotify_url_short_link("http://127.0.0.1:80a/s", true, NULL, 0));
	assert_false(spotify_url_short_link("http://example.com/s/abc", true, NULL, 0));
	/* Too small an output buffer is a refusal, not a truncation. */
	char tiny[8];
	assert_false(spotify_url_short_link("https://spotify.link/abc", false, tiny, sizeof tiny));
}

static void helpers(void **state)
{
	(void)state;
	assert_true(spotify_id_valid(ID, 22));
	assert_false(spotify_id_valid(ID, 21));
	assert_false(spotify_id_valid("4uLU6hMCjMI75M1A2tKU_C", 22));
	struct spotify_ref ref = {.kind = SPOTIFY_ALBUM, .id = ID};
	char url[64];
	spotify_canonical_url(&ref, url, sizeof url);
	assert_string_equal(url, "https://open.spotify.com/album/" ID);
	assert_string_equal(spotify_kind_name(SPOTIFY_PLAYLIST), "playlist");
	assert_string_equal(spotify_kind_name((enum spotify_kind)0), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accepts_every_form),
		cmocka_unit_test(rejects_everything_else),
		cmocka_unit_test(rejects_null_and_overlong),
		cmocka_unit_test(messages_say_why),
		cmocka_unit_test(short_links),
		cmocka_unit_test(helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
