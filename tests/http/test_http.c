/* Unit tests for src/http: router, urlencoded forms and queries, cookies, query redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "http/cookie.h"
#include "http/form.h"
#include "http/html.h"
#include "http/range.h"
#include "http/router.h"
#include "http/server.h"
#include "util/err.h"

static void h_a(struct http_ctx *c) { (void)c; }
static void h_b(struct http_ctx *c) { (void)c; }

static const struct route table[] = {
	{"GET", "/health", h_a, 0},
	{"GET", "/api/tracks", h_a, 0},
	{"POST", "/api/tracks", h_b, 0},
	{"GET", "/api/tracks/:id", h_a, 0},
	{"PATCH", "/api/tracks/:id", h_b, 0},
	{"DELETE", "/api/tracks/:id", h_b, 0},
	{"GET", "/api/jobs/:id/items/:item", h_a, 0},
	{"GET", "/files/*path", h_a, 0},
	{"GET", "/", h_b, 0},
};
#define N_TABLE (sizeof table / sizeof table[0])

static int match(struct arena *a, const char *method, const char *path, struct route_match *m)
{
	return router_match(table, N_TABLE, method, path, a, m);
}

static void router_literals_and_params(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	struct route_match m;
	assert_int_equal(match(&a, "GET", "/health", &m), ROUTER_FOUND);
	assert_ptr_equal(m.route, &table[0]);
	assert_int_equal(match(&a, "GET", "/", &m), ROUTER_FOUND);
	assert_ptr_equal(m.route, &table[8]);
	assert_int_equal(match(&a, "POST", "/api/tracks", &m), ROUTER_FOUND);
	assert_ptr_equal(m.route->handler, h_b);
	assert_int_equal(match(&a, "GET", "/api/tracks/abc-123", &m), ROUTER_FOUND);
	assert_string_equal(route_param(&m, "id"), "abc-123");
	assert_null(route_param(&m, "nope"));
	assert_int_equal(match(&a, "GET", "/api/jobs/7/items/x%20y", &m), ROUTER_FOUND);
	assert_string_equal(route_param(&m, "id"), "7");
	assert_string_equal(route_param(&m, "item"), "x y");
	/* HEAD is served by GET routes. */
	assert_int_equal(match(&a, "HEAD", "/api/tracks/1", &m), ROUTER_FOUND);
	arena_free(&a);
}

static void router_not_found_and_not_allowed(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	struct route_match m;
	assert_int_equal(match(&a, "GET", "/api/nothing", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "/api/tracks/1/extra", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "/api/tracks/", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "/api//tracks", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "relative", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "/api/tracks/%zz", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "GET", "/api/tracks/a%00b", &m), ROUTER_NO_PATH);
	assert_int_equal(match(&a, "PUT", "/api/tracks/1", &m), ROUTER_NO_METHOD);
	assert_string_equal(m.allow, "GET, PATCH, DELETE");
	assert_int_equal(match(&a, "DELETE", "/health", &m), ROUTER_NO_METHOD);
	assert_string_equal(m.allow, "GET");
	arena_free(&a);
}

static void router_splat_and_encoding(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	struct route_match m;
	assert_int_equal(match(&a, "GET", "/files/downloads/t1/a-b.mp3", &m), ROUTER_FOUND);
	assert_string_equal(route_param(&m, "path"), "downloads/t1/a-b.mp3");
	/* An encoded slash stays inside its segment for :params... */
	assert_int_equal(match(&a, "GET", "/api/tracks/a%2Fb", &m), ROUTER_FOUND);
	assert_string_equal(route_param(&m, "id"), "a/b");
	/* ...and a splat needs at least one segment. */
	assert_int_equal(match(&a, "GET", "/files", &m), ROUTER_NO_PATH);
	/* Overlong paths are refused, not truncated. */
	char *big = malloc(ROUTER_PATH_MAX + 10);
	big[0] = '/';
	memset(big + 1, 'a', ROUTER_PATH_MAX + 5);
	big[ROUTER_PATH_MAX + 6] = '\0';
	assert_int_equal(match(&a, "GET", big, &m), SFA_ETOOBIG);
	free(big);
	arena_free(&a);
}

static void form_decoding(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	const char *s = "user%5Bemail%5D=a%40b.co&user[password]=p+w%2Bx&empty=&flag&=skip&a=1&a=2";
	assert_int_equal(form_parse(&a, s, strlen(s), 64, &l), 0);
	assert_string_equal(kv_get(&l, "user[email]"), "a@b.co");
	assert_string_equal(kv_get(&l, "user[password]"), "p w+x");
	assert_string_equal(kv_get(&l, "empty"), "");
	assert_string_equal(kv_get(&l, "flag"), "");
	assert_string_equal(kv_get(&l, "a"), "1");
	assert_null(kv_get(&l, ""));
	assert_int_equal(l.n, 6);
	assert_int_equal(form_parse(&a, "", 0, 64, &l), 0);
	assert_int_equal(l.n, 0);
	assert_int_equal(form_parse(&a, "a=%4", 4, 64, &l), SFA_EINVAL);
	assert_int_equal(form_parse(&a, "a=%g0", 5, 64, &l), SFA_EINVAL);
	assert_int_equal(form_parse(&a, "a=%00", 5, 64, &l), SFA_EINVAL);
	assert_int_equal(form_parse(&a, "a\0b=1", 5, 64, &l), SFA_EINVAL);
	assert_int_equal(form_parse(&a, "a=1&b=2&c=3", 11, 2, &l), SFA_ETOOBIG);
	/* Input is decoded exactly, not a byte more (no reliance on a terminator). */
	assert_int_equal(form_parse(&a, "k=v%41", 5, 4, &l), SFA_EINVAL);
	char enc[32];
	assert_int_equal(url_encode("a b/ü", enc, sizeof enc), 14);
	assert_string_equal(enc, "a%20b%2F%C3%BC");
	assert_true(url_encode("abcdef", enc, 4) < 0);
	arena_free(&a);
}

static void cookie_parsing(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	assert_int_equal(
		cookie_parse(&a, "_sfa_session=abc_-1; other=\"quoted\";bad;=novalue; sp=a b; x=1",
	                     &l),
		0);
	assert_string_equal(kv_get(&l, "_sfa_session"), "abc_-1");
	assert_string_equal(kv_get(&l, "other"), "quoted");
	assert_string_equal(kv_get(&l, "x"), "1");
	assert_null(kv_get(&l, "bad"));
	assert_null(kv_get(&l, "sp")); /* a space is not a cookie-octet */
	assert_int_equal(l.n, 3);
	assert_int_equal(cookie_parse(&a, "", &l), 0);
	assert_int_equal(l.n, 0);
	/* Too many pairs and too long headers are refused. */
	char many[COOKIE_MAX_PAIRS * 8 + 16] = "";
	for (int i = 0; i <= COOKIE_MAX_PAIRS; i++) {
		char one[16];
		snprintf(one, sizeof one, "c%d=1;", i);
		strcat(many, one);
	}
	assert_int_equal(cookie_parse(&a, many, &l), SFA_ETOOBIG);
	char *huge = malloc(COOKIE_HEADER_MAX + 10);
	memset(huge, 'a', COOKIE_HEADER_MAX + 5);
	huge[COOKIE_HEADER_MAX + 5] = '\0';
	assert_int_equal(cookie_parse(&a, huge, &l), SFA_ETOOBIG);
	free(huge);
	char sc[200];
	assert_int_equal(cookie_format(sc, sizeof sc, "_sfa_session", "tok", 1209600, true), 0);
	assert_string_equal(
		sc, "_sfa_session=tok; Path=/; Max-Age=1209600; HttpOnly; SameSite=Lax; Secure");
	assert_int_equal(cookie_format(sc, sizeof sc, "n", "v", -1, false), 0);
	assert_string_equal(sc, "n=v; Path=/; HttpOnly; SameSite=Lax");
	assert_int_equal(cookie_format(sc, 10, "n", "v", -1, false), SFA_ETOOBIG);
	arena_free(&a);
}

static void query_redaction(void **state)
{
	(void)state;
	char out[256];
	server_redact_query("vsn=2.0.0&token=sfa_secret&page=2&Password=x&code", out, sizeof out);
	assert_string_equal(out, "vsn=2.0.0&token=[FILTERED]&page=2&Password=[FILTERED]&code");
	server_redact_query("", out, sizeof out);
	assert_string_equal(out, "");
}

static void html_escaping(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 16);
	assert_string_equal(html_esc(&a, "<a href=\"x\">'&'</a>"),
	                    "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
	assert_string_equal(html_esc(&a, "plain"), "plain");
	arena_free(&a);
}

static void ranges(void **state)
{
	(void)state;
	uint64_t f = 0, n = 0;
	assert_int_equal(http_range_parse(NULL, 1000, &f, &n), RANGE_NONE);
	assert_int_equal(http_range_parse("bytes=0-99", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 0 && n == 100);
	assert_int_equal(http_range_parse("bytes=900-", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 900 && n == 100);
	assert_int_equal(http_range_parse("bytes=-300", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 700 && n == 300);
	assert_int_equal(http_range_parse("bytes=-3000", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 0 && n == 1000);
	assert_int_equal(http_range_parse("bytes=990-5000", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 990 && n == 10);
	assert_int_equal(http_range_parse("bytes=999-999", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 999 && n == 1);
	assert_int_equal(http_range_parse(" Bytes = 5-9 ", 1000, &f, &n), RANGE_PARTIAL);
	assert_true(f == 5 && n == 5);
	assert_int_equal(http_range_parse("bytes=1000-", 1000, &f, &n), RANGE_UNSATISFIABLE);
	assert_int_equal(http_range_parse("bytes=-0", 1000, &f, &n), RANGE_UNSATISFIABLE);
	assert_int_equal(http_range_parse("bytes=0-", 0, &f, &n), RANGE_UNSATISFIABLE);
	assert_int_equal(http_range_parse("bytes=5-1", 1000, &f, &n), RANGE_NONE);
	assert_int_equal(http_range_parse("bytes=0-1,5-6", 1000, &f, &n), RANGE_NONE);
	assert_int_equal(http_range_parse("items=0-1", 1000, &f, &n), RANGE_NONE);
	assert_int_equal(http_range_parse("bytes=-", 1000, &f, &n), RANGE_NONE);
	assert_int_equal(http_range_parse("bytes=99999999999999999999-", 1000, &f, &n), RANGE_NONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(router_literals_and_params),
		cmocka_unit_test(router_not_found_and_not_allowed),
		cmocka_unit_test(router_splat_and_encoding),
		cmocka_unit_test(form_decoding),
		cmocka_unit_test(cookie_parsing),
		cmocka_unit_test(query_redaction),
		cmocka_unit_test(html_escaping),
		cmocka_unit_test(ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
