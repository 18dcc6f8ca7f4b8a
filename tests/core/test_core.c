/* Unit tests for src/core and src/db: tokens, CSRF, rate-limit arithmetic, account
 * rules against a real SQLite database in a temporary directory, configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/accounts.h"
#include "core/config.h"
#include "core/sealed.h"
#include "core/csrf.h"
#include "core/ratelimit.h"
#include "core/respcache.h"
#include "core/token.h"
#include "db/db.h"
#include "jobs/registry.h"
#include "../db/testdb.h"
#include "util/err.h"

static void tokens(void **state)
{
	(void)state;
	char a[TOKEN_STR_LEN], b[TOKEN_STR_LEN];
	token_new("sfa_", a);
	token_new("sfa_", b);
	assert_int_equal(strlen(a), 4 + 43);
	assert_true(strncmp(a, "sfa_", 4) == 0);
	assert_string_not_equal(a, b);
	assert_true(token_plausible(a));
	assert_false(token_plausible("short"));
	assert_false(token_plausible("has space in it"));
	char h1[TOKEN_HASH_LEN], h2[TOKEN_HASH_LEN];
	token_hash("abc", h1);
	/* SHA-256("abc"), the FIPS 180-2 test vector. */
	assert_string_equal(h1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	token_hash(a, h1);
	token_hash(b, h2);
	assert_string_not_equal(h1, h2);
	char p[TOKEN_PREFIX_LEN + 1];
	token_display_prefix(a, p);
	assert_int_equal(strlen(p), TOKEN_PREFIX_LEN);
	assert_true(strncmp(a, p, TOKEN_PREFIX_LEN) == 0);
}

static void csrf(void **state)
{
	(void)state;
	unsigned char k1[32], k2[32];
	memset(k1, 1, sizeof k1);
	memset(k2, 2, sizeof k2);
	char t[CSRF_TOKEN_LEN];
	csrf_token_for(k1, "cookie-value", t);
	assert_int_equal(strlen(t), 43);
	assert_true(csrf_valid(k1, "cookie-value", t));
	assert_false(csrf_valid(k2, "cookie-value", t));    /* other server secret */
	assert_false(csrf_valid(k1, "other-cookie", t));    /* other browser */
	assert_false(csrf_valid(k1, "cookie-value", NULL)); /* missing */
	assert_false(csrf_valid(k1, "cookie-value", ""));
	assert_false(csrf_valid(k1, NULL, t));
	t[5] ^= 1;
	assert_false(csrf_valid(k1, "cookie-value", t));
}

static void ratelimit_arithmetic(void **state)
{
	(void)state;
	struct rl_window w = {0, 0};
	struct rl_result r;
	int64_t t0 = 1000000;
	for (int i = 1; i <= 60; i++) {
		ratelimit_step(&w, 60, 60, t0 + i / 10, &r);
		assert_true(r.allowed);
		assert_int_equal(r.remaining, 60 - i);
		assert_int_equal(r.reset_at, t0 + 60);
		assert_int_equal(r.limit, 60);
	}
	ratelimit_step(&w, 60, 60, t0 + 15, &r); /* the 61st */
	assert_false(r.allowed);
	assert_int_equal(r.remaining, 0);
	assert_int_equal(r.retry_after_s, 45);
	ratelimit_step(&w, 60, 60, t0 + 59, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_s, 1);
	ratelimit_step(&w, 60, 60, t0 + 60, &r); /* a new window */
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 59);
	assert_int_equal(r.reset_at, t0 + 120);
}

static void ratelimit_table(void **state)
{
	(void)state;
	struct ratelimit *rl = ratelimit_new(4, 60, NULL);
	struct rl_result r;
	ratelimit_hit(rl, "api:u1", 2, 100, &r);
	ratelimit_hit(rl, "api:u1", 2, 100, &r);
	assert_true(r.allowed);
	ratelimit_hit(rl, "api:u1", 2, 101, &r);
	assert_false(r.allowed);
	ratelimit_hit(rl, "heavy:u1", 2, 101, &r); /* separate bucket */
	assert_true(r.allowed);
	ratelimit_hit(rl, "api:u2", 2, 101, &r); /* separate caller */
	assert_true(r.allowed);
	ratelimit_hit(rl, "k4", 2, 101, &r);
	assert_int_equal(ratelimit_overflows(rl), 0);
	ratelimit_hit(rl, "k5", 2, 101, &r); /* table full, nothing expired */
	assert_true(r.allowed);
	assert_int_equal(ratelimit_overflows(rl), 1);
	ratelimit_hit(rl, "k6", 2, 200, &r); /* expired windows are swept */
	assert_int_equal(ratelimit_overflows(rl), 1);
	ratelimit_hit(rl, "api:u1", 2, 200, &r);
	assert_true(r.allowed);
	ratelimit_free(rl);
}

static void validation(void **state)
{
	(void)state;
	struct field_errors fe = {0};
	accounts_check_email("dj@example.com", &fe, "email");
	accounts_check_password("twelve chars", &fe, "password");
	accounts_check_password("ünïcödé-pässwörd", &fe, "password");
	assert_int_equal(fe.n, 0);
	const char *bad_emails[] = {"",        "no-at-sign", "@example.com", "a@b",
	                            "a@@b.co", "a b@c.co",   "a@b.",         "a@.co"};
	for (size_t i = 0; i < sizeof bad_emails / sizeof bad_emails[0]; i++) {
		struct field_errors e = {0};
		accounts_check_email(bad_emails[i], &e, "email");
		assert_int_equal(e.n, 1);
	}
	struct field_errors e = {0};
	accounts_check_password("eleven char", &e, "password");
	assert_string_equal(field_errors_get(&e, "password"), "should be at least 12 characters");
	char long_pw[80];
	memset(long_pw, 'x', 73);
	long_pw[73] = '\0';
	struct field_errors e2 = {0};
	accounts_check_password(long_pw, &e2, "password");
	assert_string_equal(field_errors_get(&e2, "password"), "should be at most 72 characters");
	long_pw[72] = '\0';
	struct field_errors e3 = {0};
	accounts_check_password(long_pw, &e3, "password");
	assert_int_equal(e3.n, 0);
}

/* The accounts flow runs on the suite's backend: SQLite as "core", PostgreSQL as
 * "core-pg" (tests/db/testdb.h). */
struct fixture {
	struct testdb t;
	struct db *db;
};

static int db_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f || testdb_open(&f->t, 0))
		return -1;
	f->db = f->t.db;
	*state = f;
	return 0;
}

static int db_teardown(void **state)
{
	struct fixture *f = *state;
	int rc = testdb_close(&f->t);
	free(f);
	return rc;
}

static void accounts_flow(void **state)
{
	struct fixture *f = *state;
	struct db *db = f->db;
	assert_true(db_schema_version(db) >= 3); /* every migration applied (3: Spotify log-in) */
	assert_int_equal(db_ping(db, NULL, 0), 0);
	struct field_errors fe = {0};
	struct db_user u, v;
	assert_int_equal(
		accounts_register(db, "DJ@Example.com", "correct horse battery", 1000, &u, &fe), 0);
	/* The same email in another case is taken. */
	assert_int_equal(
		accounts_register(db, "dj@example.COM", "correct horse battery", 1000, &v, &fe),
		SFA_EINVAL);
	assert_string_equal(field_errors_get(&fe, "email"), "has already been taken");
	assert_int_equal(accounts_authenticate(db, "dj@EXAMPLE.com", "correct horse battery", &v),
	                 0);
	assert_string_equal(v.id, u.id);
	assert_int_equal(accounts_authenticate(db, "dj@example.com", "wrong password!!", &v),
	                 SFA_EAUTH);
	assert_int_equal(accounts_authenticate(db, "nobody@example.com", "whatever1234", &v),
	                 SFA_EAUTH);

	/* Sessions: valid until expiry; ended by log-out; other sessions end on password change. */
	char s1[TOKEN_STR_LEN], s2[TOKEN_STR_LEN];
	assert_int_equal(accounts_session_start(db, u.id, false, 1000, s1), 0);
	assert_int_equal(accounts_session_start(db, u.id, true, 1000, s2), 0);
	assert_int_equal(accounts_session_user(db, s1, 1001, &v), 0);
	assert_int_equal(accounts_session_user(db, s1, 1000 + ACCOUNTS_SESSION_S, &v), SFA_EAUTH);
	assert_int_equal(accounts_session_user(db, s2, 1000 + ACCOUNTS_SESSION_S, &v), 0);
	assert_int_equal(accounts_session_user(db, "not-a-real-session-token", 1001, &v),
	                 SFA_EAUTH);
	struct field_errors pe = {0};
	assert_int_equal(
		accounts_change_password(db, &u, "bad current", "new password 123", s2, &pe),
		SFA_EINVAL);
	assert_non_null(field_errors_get(&pe, "current_password"));
	struct field_errors pe2 = {0};
	assert_int_equal(accounts_change_password(db, &u, "correct horse battery",
	                                          "new password 123", s2, &pe2),
	                 0);
	assert_int_equal(accounts_session_user(db, s1, 1001, &v), SFA_EAUTH);
	assert_int_equal(accounts_session_user(db, s2, 1001, &v), 0);
	assert_int_equal(accounts_authenticate(db, "dj@example.com", "new password 123", &u), 0);
	assert_int_equal(accounts_session_end(db, s2), 0);
	assert_int_equal(accounts_session_user(db, s2, 1001, &v), SFA_EAUTH);

	/* API keys: work until revoked; only the owner can revoke. */
	char key[TOKEN_STR_LEN];
	struct db_api_key rec;
	struct field_errors ke = {0};
	assert_int_equal(accounts_api_key_create(db, u.id, "", 1000, key, &rec, &ke), SFA_EINVAL);
	struct field_errors ke2 = {0};
	assert_int_equal(accounts_api_key_create(db, u.id, "laptop", 1000, key, &rec, &ke2), 0);
	struct keycache *kc = keycache_new(64, 60 * 1000);
	assert_non_null(kc);
	assert_int_equal(accounts_api_key_user(db, kc, key, 1005, &v), 0);
	assert_string_equal(v.id, u.id);
	struct db_api_key list[4];
	size_t n = 0;
	assert_int_equal(db_api_key_list(db, u.id, list, 4, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].name, "laptop");
	assert_int_equal(list[0].last_used_at, 1005);
	/* Last use is written at most once a minute. */
	assert_int_equal(accounts_api_key_user(db, NULL, key, 1030, &v), 0);
	assert_int_equal(db_api_key_list(db, u.id, list, 4, &n), 0);
	assert_int_equal(list[0].last_used_at, 1005);
	assert_int_equal(accounts_api_key_user(db, NULL, key, 1065, &v), 0);
	assert_int_equal(db_api_key_list(db, u.id, list, 4, &n), 0);
	assert_int_equal(list[0].last_used_at, 1065);
	assert_true(strncmp(key, list[0].prefix, strlen(list[0].prefix)) == 0);
	assert_int_equal(db_api_key_revoke(db, "someone-else", rec.id, 1006, NULL), SFA_ENOTFOUND);
	char hash[TOKEN_HASH_LEN];
	assert_int_equal(db_api_key_revoke(db, u.id, rec.id, 1006, hash), 0);
	assert_int_equal(db_api_key_revoke(db, u.id, rec.id, 1007, NULL), SFA_ENOTFOUND);
	/* The cache still vouches for it (as for a key revoked through another server, until
	 * its entry ages out); the server that revokes forgets it at once. */
	assert_int_equal(accounts_api_key_user(db, kc, key, 1008, &v), 0);
	keycache_forget(kc, hash);
	assert_int_equal(accounts_api_key_user(db, kc, key, 1008, &v), SFA_EAUTH);
	assert_int_equal(accounts_api_key_user(db, NULL, key, 1008, &v), SFA_EAUTH);
	assert_int_equal(
		accounts_api_key_user(db, kc, "sfa_forged_key_value_that_is_long", 1008, &v),
		SFA_EAUTH);
	keycache_free(kc);
	/* Entries serve for their lifetime only. */
	kc = keycache_new(8, 1000);
	keycache_put(kc, hash, 5000, &u);
	assert_true(keycache_get(kc, hash, 5999, &v));
	assert_false(keycache_get(kc, hash, 6000, &v));
	assert_false(keycache_get(kc, "0000", 5500, &v));
	keycache_free(kc);

	/* Email change needs the current password and a free address. */
	struct field_errors ee = {0};
	assert_int_equal(
		accounts_change_email(db, &u, "new password 123", "fresh@example.com", &ee), 0);
	assert_int_equal(db_user_by_email(db, "FRESH@example.com", &v), 0);
}

static void config_env(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	unsetenv("SFA_PORT");
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_int_equal(c.port, 4000);
	assert_string_equal(c.bind, "127.0.0.1");
	assert_int_equal(c.rate_api, 60);
	assert_int_equal(c.job_nice, 10);
	setenv("SFA_JOB_NICE", "20", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "SFA_JOB_NICE"));
	setenv("SFA_JOB_NICE", "0", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_int_equal(c.job_nice, 0);
	unsetenv("SFA_JOB_NICE");
	setenv("SFA_PORT", "70000", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "SFA_PORT"));
	setenv("SFA_PORT", "4321", 1);
	setenv("SFA_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_int_equal(c.port, 4321);
	assert_true(config_is_trusted_proxy(&c, "10.0.0.2"));
	assert_false(config_is_trusted_proxy(&c, "10.0.0.3"));
	unsetenv("SFA_PORT");
	unsetenv("SFA_TRUSTED_PROXIES");
	char *args[] = {"--port", "x"};
	assert_int_equal(config_parse_serve_args(&c, 2, args, err, sizeof err), SFA_EINVAL);
	assert_string_equal(err, "--port must be a number from 0 to 65535, not \"x\".");
	char *args2[] = {"--colour"};
	assert_int_equal(config_parse_serve_args(&c, 1, args2, err, sizeof err), SFA_EINVAL);
	char *args3[] = {"--bind", "0.0.0.0", "--data", "/tmp/x", "--port", "0"};
	assert_int_equal(config_parse_serve_args(&c, 6, args3, err, sizeof err), 0);
	assert_string_equal(c.data_dir, "/tmp/x");
	assert_string_equal(c.db_path, "/tmp/x/sfa.db");
	/* The database: SQLite in the data dir unless SFA_DATABASE_URL names PostgreSQL. */
	assert_string_equal(config_db_target(&c), "/tmp/x/sfa.db");
	assert_int_equal(c.db_pool, 16);
	setenv("SFA_DATABASE_URL", "postgresql://sfa:secret@db.lan/sfa", 1);
	setenv("SFA_DB_POOL", "4", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_string_equal(config_db_target(&c), "postgresql://sfa:secret@db.lan/sfa");
	assert_int_equal(c.db_pool, 4);
	setenv("SFA_DATABASE_URL", "mysql://sfa@db.lan/sfa", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "SFA_DATABASE_URL"));
	unsetenv("SFA_DATABASE_URL");
	unsetenv("SFA_DB_POOL");
	/* A PostgreSQL that does not answer is a sentence naming the URL, not its password. */
	struct db *db = NULL;
	char dberr[768];
	assert_int_equal(db_open("postgresql://sfa:hunter2@/sfa?host=/nonexistent-sfa-socket", 0,
	                         &db, dberr, sizeof dberr),
	                 SFA_EDB);
	assert_null(db);
	assert_non_null(strstr(dberr, "postgresql://sfa@/sfa?host=/nonexistent-sfa-socket"));
	assert_null(strstr(dberr, "hunter2"));
	assert_int_equal(db_open("postgres://u@/d?password=hunter2&host=/nonexistent-sfa-socket", 0,
	                         &db, dberr, sizeof dberr),
	                 SFA_EDB);
	assert_null(strstr(dberr, "hunter2"));

	/* A data directory that cannot be written is a clear error. */
	if (geteuid() != 0) {
		struct config d;
		config_from_env(&d, err, sizeof err);
		strcpy(d.data_dir, "/proc/sfa-cannot-exist");
		assert_int_equal(config_prepare_data(&d, err, sizeof err), SFA_EIO);
	}
	/* The secret is generated once and then reused. */
	char dir[] = "/tmp/sfa-test-cfg-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct config e1, e2;
	config_from_env(&e1, err, sizeof err);
	char *a4[] = {"--data", dir};
	config_parse_serve_args(&e1, 2, a4, err, sizeof err);
	e2 = e1;
	assert_int_equal(config_prepare_data(&e1, err, sizeof err), 0);
	assert_int_equal(config_prepare_data(&e2, err, sizeof err), 0);
	assert_memory_equal(e1.csrf_key, e2.csrf_key, 32);
	assert_memory_not_equal(e1.csrf_key, e1.box_key, 32);
	char path[128];
	snprintf(path, sizeof path, "%s/secret.key", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	unlink(path);
	rmdir(dir);
}

static void sealed_values(void **state)
{
	(void)state;
	unsigned char key[32], other[32];
	randombytes_buf(key, sizeof key);
	randombytes_buf(other, sizeof other);
	const char *secret = "user-AbCdEf0123456789_-token";
	char text[SEALED_TEXT_LEN(64)], again[SEALED_TEXT_LEN(64)], out[64];
	assert_int_equal(sealed_seal(key, "spotify-access:u1", secret, text, sizeof text), 0);
	assert_true(strncmp(text, "v1.", 3) == 0);
	assert_null(strstr(text, "token"));
	assert_int_equal(sealed_open(key, "spotify-access:u1", text, out, sizeof out), 0);
	assert_string_equal(out, secret);
	/* A fresh nonce each time. */
	assert_int_equal(sealed_seal(key, "spotify-access:u1", secret, again, sizeof again), 0);
	assert_string_not_equal(text, again);
	/* Another context, another key, a flipped character, junk: all refused and wiped. */
	assert_int_equal(sealed_open(key, "spotify-access:u2", text, out, sizeof out), SFA_EAUTH);
	assert_string_equal(out, "");
	assert_int_equal(sealed_open(other, "spotify-access:u1", text, out, sizeof out), SFA_EAUTH);
	char tampered[sizeof text];
	memcpy(tampered, text, sizeof text);
	tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
	assert_int_equal(sealed_open(key, "spotify-access:u1", tampered, out, sizeof out),
	                 SFA_EAUTH);
	assert_int_equal(sealed_open(key, "x", "v2.abc", out, sizeof out), SFA_EAUTH);
	assert_int_equal(sealed_open(key, "x", "v1.!!!", out, sizeof out), SFA_EAUTH);
	assert_int_equal(sealed_open(key, "x", "v1.", out, sizeof out), SFA_EAUTH);
	/* Sizes: too small a buffer either way is SFA_ETOOBIG. */
	char small[8];
	assert_int_equal(sealed_seal(key, "c", secret, small, sizeof small), SFA_ETOOBIG);
	assert_int_equal(sealed_open(key, "spotify-access:u1", text, small, sizeof small),
	                 SFA_ETOOBIG);
	/* The empty string round-trips. */
	assert_int_equal(sealed_seal(key, "c", "", text, sizeof text), 0);
	assert_int_equal(sealed_open(key, "c", text, out, sizeof out), 0);
	assert_string_equal(out, "");
}

static void config_spotify_and_download(void **state)
{
	(void)state;
	char err[256];
	struct config c;
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_string_equal(c.spotify_market, "US");
	assert_string_equal(c.ytdlp, "yt-dlp");
	assert_string_equal(c.download_query, "ytsearch5");
	assert_int_equal(c.download_timeout_s, 600);
	assert_string_equal(c.spotify_client_id, "");
	static const struct {
		const char *name, *value;
		int rc;
	} cases[] = {
		{"SFA_SPOTIFY_MARKET", "SE", 0},
		{"SFA_SPOTIFY_MARKET", "se", SFA_EINVAL},
		{"SFA_SPOTIFY_MARKET", "USA", SFA_EINVAL},
		{"SFA_SPOTIFY_API_URL", "http://127.0.0.1:9", 0},
		{"SFA_SPOTIFY_API_URL", "ftp://x", SFA_EINVAL},
		{"SFA_SPOTIFY_REDIRECT_URI", "javascript:alert(1)", SFA_EINVAL},
		{"SFA_DOWNLOAD_QUERY", "http://127.0.0.1:8/{spotify_id}.mp3", 0},
		{"SFA_DOWNLOAD_QUERY", "file:///etc/{spotify_id}", SFA_EINVAL},
		{"SFA_DOWNLOAD_QUERY", "scsearch3", 0},
		{"SFA_DOWNLOAD_QUERY", "ytsearch", 0},
		{"SFA_DOWNLOAD_QUERY", "ytsearch0", SFA_EINVAL},
		{"SFA_DOWNLOAD_QUERY", "--exec=rm", SFA_EINVAL},
		{"SFA_DOWNLOAD_QUERY", "search5", SFA_EINVAL},
		{"SFA_DOWNLOAD_TIMEOUT_S", "2", SFA_EINVAL},
		{"SFA_DOWNLOAD_TIMEOUT_S", "30", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		setenv(cases[i].name, cases[i].value, 1);
		int rc = config_from_env(&c, err, sizeof err);
		if (rc != cases[i].rc)
			fail_msg("%s=%s gave %d (%s)", cases[i].name, cases[i].value, rc, err);
		if (rc)
			assert_non_null(strstr(err, cases[i].name));
		unsetenv(cases[i].name);
	}
	setenv("SFA_SPOTIFY_CLIENT_ID", "abc", 1);
	setenv("SFA_YTDLP", "/opt/yt-dlp", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_string_equal(c.spotify_client_id, "abc");
	assert_string_equal(c.ytdlp, "/opt/yt-dlp");
	unsetenv("SFA_SPOTIFY_CLIENT_ID");
	unsetenv("SFA_YTDLP");
}

/* Two servers sharing one database count one window. A small limit (log-in attempts) is
 * counted there hit by hit: 3 requests on each make 6, the 7th is refused on either. A
 * large one is counted in batches while the window is in the first half of its limit, and
 * still holds exactly: 1000 of 1500 requests alternating between the servers pass, with
 * far fewer writes than requests. A new window opens a minute on, other keys are apart,
 * and ended windows are swept from the database. */
static void ratelimit_shared(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(db_is_shared(f->db), testdb_is_pg());
	struct ratelimit *a = ratelimit_new(16, 60, f->db), *b = ratelimit_new(16, 60, f->db);
	assert_non_null(a);
	assert_non_null(b);
	struct rl_result r;
	int64_t t0 = 1000000;
	for (int i = 1; i <= 6; i++) {
		ratelimit_hit(i % 2 ? a : b, "auth:ip:1.2.3.4", 6, t0 + i, &r);
		assert_true(r.allowed);
		assert_int_equal(r.remaining, 6 - i);
		assert_int_equal(r.reset_at, t0 + 61);
	}
	ratelimit_hit(a, "auth:ip:1.2.3.4", 6, t0 + 15, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_s, 46);
	ratelimit_hit(b, "auth:ip:1.2.3.4", 6, t0 + 60, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_s, 1);
	size_t writes = ratelimit_shared_writes(a) + ratelimit_shared_writes(b);
	int passed = 0;
	for (int i = 1; i <= 1500; i++) {
		ratelimit_hit(i % 2 ? a : b, "api:user:u1", 1000, t0 + i / 30, &r);
		passed += r.allowed;
		assert_int_equal(r.reset_at, t0 + 60);
		assert_true(r.remaining >= 0 && r.remaining < 1000);
	}
	assert_int_equal(passed, 1000);
	writes = ratelimit_shared_writes(a) + ratelimit_shared_writes(b) - writes;
	assert_true(writes < 700); /* every hit of the second half, a few batches before */
	ratelimit_hit(b, "api:user:u1", 1000, t0 + 59, &r);
	assert_false(r.allowed);
	assert_int_equal(r.retry_after_s, 1);
	ratelimit_hit(b, "api:user:u2", 60, t0 + 59, &r);
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 59);
	ratelimit_hit(a, "api:user:u1", 60, t0 + 60, &r); /* a new window */
	assert_true(r.allowed);
	assert_int_equal(r.remaining, 59);
	assert_int_equal(r.reset_at, t0 + 120);
	/* u2's window (opened at t0 + 59) has ended by t0 + 119; u1's (t0 + 60) has not. */
	assert_int_equal(db_rate_sweep(f->db, 60, t0 + 119), 0);
	int64_t start = 0;
	int hits = 0;
	assert_int_equal(db_rate_hit(f->db, "api:user:u1", 60, t0 + 119, 1, &start, &hits), 0);
	assert_int_equal(start, t0 + 60);
	assert_int_equal(hits, 2);
	assert_int_equal(db_rate_hit(f->db, "api:user:u2", 60, t0 + 100, 1, &start, &hits), 0);
	assert_int_equal(start, t0 + 100); /* swept, so a new window at once */
	assert_int_equal(hits, 1);
	ratelimit_free(a);
	ratelimit_free(b);
}

/* lal.ai separations have a type of their own, with their own slots (SFA_JOBS_LALALAI),
 * shown to clients as "processing"; ?type=processing selects both kinds. */
static void job_types_registry(void **state)
{
	(void)state;
	struct config c;
	char err[256];
	unsetenv("SFA_JOBS_LALALAI");
	setenv("SFA_JOBS_PROCESSING", "1", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	const struct job_type *local = job_type_find("processing"),
			      *cloud = job_type_find("lalalai");
	assert_non_null(local);
	assert_non_null(cloud);
	assert_int_equal(local->limit(&c), 1);
	assert_int_equal(cloud->limit(&c), 4);
	setenv("SFA_JOBS_LALALAI", "2", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), 0);
	assert_int_equal(cloud->limit(&c), 2);
	assert_int_equal(local->limit(&c), 1);
	setenv("SFA_JOBS_LALALAI", "0", 1);
	assert_int_equal(config_from_env(&c, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "SFA_JOBS_LALALAI"));
	unsetenv("SFA_JOBS_LALALAI");
	unsetenv("SFA_JOBS_PROCESSING");
	assert_true(cloud->run != local->run);
	assert_string_equal(job_type_shown("lalalai"), "processing");
	assert_string_equal(job_type_shown("processing"), "processing");
	assert_string_equal(job_type_shown("analysis"), "analysis");
	assert_string_equal(job_type_shown("no-such-type"), "no-such-type");
	const char *names[4];
	assert_int_equal(job_types_shown_as("processing", names, 4), 2);
	assert_string_equal(names[0], "processing");
	assert_string_equal(names[1], "lalalai");
	assert_null(names[2]);
	assert_int_equal(job_types_shown_as("lalalai", names, 4), 0);
	assert_null(names[0]);
	assert_int_equal(job_types_shown_as("analysis", names, 4), 1);
	assert_int_equal(job_types_shown_as("processing", names, 2), 1); /* room for one */
	assert_null(names[1]);
}

/* Rendered lists: a hit needs the same key and version; a body outlives its slot while a
 * reader holds it; the table starts over instead of passing its byte budget. */
static void respcache_rules(void **state)
{
	(void)state;
	struct respcache *c = respcache_new(8, 100);
	assert_non_null(c);
	assert_null(respcache_get(c, "a", 1));
	respcache_put(c, "a", 1, "[1]", 3);
	struct respcache_body *b = respcache_get(c, "a", 1);
	assert_non_null(b);
	assert_int_equal(b->len, 3);
	assert_memory_equal(b->data, "[1]", 3);
	assert_null(respcache_get(c, "a", 2)); /* the library changed since */
	assert_null(respcache_get(c, "b", 1));
	/* Replaced while b is held: b stays readable until released. */
	respcache_put(c, "a", 2, "[22]", 4);
	assert_memory_equal(b->data, "[1]", 3);
	respcache_release(b);
	b = respcache_get(c, "a", 2);
	assert_non_null(b);
	assert_int_equal(b->len, 4);
	respcache_release(b);
	/* Too large for the budget: not kept. */
	char big[101];
	memset(big, 'x', sizeof big);
	respcache_put(c, "big", 1, big, sizeof big);
	assert_null(respcache_get(c, "big", 1));
	/* Filling past the budget starts over: the newest body is kept, the bytes stay
	 * within the budget. */
	char key[16];
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "k%d", i);
		respcache_put(c, key, 1, big, 40);
		b = respcache_get(c, key, 1);
		assert_non_null(b);
		respcache_release(b);
	}
	int kept = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof key, "k%d", i);
		b = respcache_get(c, key, 1);
		kept += b != NULL;
		respcache_release(b);
	}
	assert_true(kept >= 1 && kept <= 2);
	respcache_free(c);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tokens),
		cmocka_unit_test(csrf),
		cmocka_unit_test(ratelimit_arithmetic),
		cmocka_unit_test(ratelimit_table),
		cmocka_unit_test(validation),
		cmocka_unit_test_setup_teardown(accounts_flow, db_setup, db_teardown),
		cmocka_unit_test_setup_teardown(ratelimit_shared, db_setup, db_teardown),
		cmocka_unit_test(config_env),
		cmocka_unit_test(config_spotify_and_download),
		cmocka_unit_test(sealed_values),
		cmocka_unit_test(job_types_registry),
		cmocka_unit_test(respcache_rules),
	};
	/* On PostgreSQL ("core-pg") only the tests that reach the database run again. */
	const struct CMUnitTest db_tests[] = {
		cmocka_unit_test_setup_teardown(accounts_flow, db_setup, db_teardown),
		cmocka_unit_test_setup_teardown(ratelimit_shared, db_setup, db_teardown),
	};
	if (testdb_is_pg())
		return cmocka_run_group_tests(db_tests, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
