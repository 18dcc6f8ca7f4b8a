/* Allocation-failure tests of the parsers of outside data (curl's torture mode): each
 * parser runs on a valid input with allocation 1 failing, then 2, and so on, until a run
 * reaches its end without meeting the failing one. Every run that met it must end in an
 * error (no crash, no success on half-built data) and leave as many live blocks as before
 * it (nothing leaks; under ASan the leak checker and the use-after-free checks watch the
 * same runs). The wrappers come from alloc_fail.c, linked with -Wl,--wrap.
 *
 * One exception, not ours: when the refused allocation is jansson's and the parse still
 * succeeds, jansson's lexer dropped a byte of a string instead of failing (alloc_fail.h);
 * the parser then judged a slightly different document, which it may accept. Such runs
 * are counted and printed, and must still leak nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "alloc_fail.h"
#include "audio/mixer.h"
#include "audio/mixer_manifest.h"
#include "clients/spotify.h"
#include "clients/spotify_url.h"
#include "http/cookie.h"
#include "http/form.h"
#include "http/multipart.h"
#include "nn/pickle.h"
#include "util/arena.h"

/* Runs one parse of a fixed input and frees what it built; returns its code. */
typedef int (*parse_fn)(void);

/* No parser here needs more; a run count past it means a loop that never ends. */
enum { MAX_ALLOCATIONS = 100000 };

static void fail_each_allocation(const char *name, parse_fn parse)
{
	long n_runs = 0, n_lexer = 0;
	for (long n = 1; n <= MAX_ALLOCATIONS; n++) {
		long live = alloc_fail_live();
		alloc_fail_at(n);
		int rc = parse();
		bool hit = alloc_fail_hit(), in_jansson = alloc_fail_hit_jansson();
		alloc_fail_at(0);
		n_runs++;
		if (alloc_fail_live() != live)
			fail_msg("%s: with allocation %ld failing, %ld blocks were left allocated",
			         name, n, alloc_fail_live() - live);
		if (!hit) {
			if (rc != 0)
				fail_msg("%s: the input is refused (%d) with no allocation failing",
				         name, rc);
			printf("# %s: %ld allocations, each failed once", name, n - 1);
			if (n_lexer)
				printf(" (%ld time%s jansson's lexer dropped a byte and the parse went on)",
				       n_lexer, n_lexer == 1 ? "" : "s");
			printf("\n");
			return;
		}
		if (rc == 0 && in_jansson) {
			n_lexer++;
			continue;
		}
		if (rc >= 0)
			fail_msg("%s: allocation %ld failed, yet the parse returned %d", name, n,
			         rc);
	}
	fail_msg("%s: still allocating after %ld runs", name, n_runs);
}

/* ---- the parsers -------------------------------------------------------------------- */

static int parse_manifest(void)
{
	static const char text[] =
		"{\"sample_rate\": 44100, \"bit_depth\": 24, \"normalize\": true, \"stems\": ["
		"{\"file\": 0, \"volume\": 0.8, \"pan\": -0.5, \"edits\": ["
		"{\"type\": \"trim\", \"start_ms\": 100, \"end_ms\": 5000},"
		"{\"type\": \"fade_in\", \"duration_ms\": 250},"
		"{\"type\": \"gain\", \"start_ms\": 0, \"end_ms\": 1000, \"level\": 2}]},"
		"{\"stem_id\": \"0b0e9a4c-5a3c-4e57-9d3a-2f8a8f1d6c11\", \"mute\": true,"
		" \"edits\": [{\"type\": \"offset\", \"position_ms\": 1500}]}]}";
	struct mixer_manifest m;
	struct mixer_errors *errs = calloc(1, sizeof *errs);
	if (!errs)
		return -12;
	int rc = mixer_manifest_parse(text, strlen(text), 1, NULL, NULL, &m, errs);
	if (rc == 0)
		mixer_manifest_free(&m);
	free(errs);
	return rc;
}

static int parse_form(void)
{
	static const char body[] = "email=dj%40example.com&password=a+b%20c&remember=on&x=&y";
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	int rc = form_parse(&a, body, strlen(body), 16, &l);
	if (rc == 0 && strcmp(kv_get(&l, "email"), "dj@example.com") != 0)
		rc = 1;
	arena_free(&a);
	return rc;
}

static int parse_cookie(void)
{
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	int rc = cookie_parse(&a, "_sfa_session=abc.def; theme=dark; x=\"quoted\"", &l);
	if (rc == 0 && strcmp(kv_get(&l, "theme"), "dark") != 0)
		rc = 1;
	arena_free(&a);
	return rc;
}

static int mp_field(void *arg, const char *name, const char *value, size_t n)
{
	(void)name, (void)value;
	*(size_t *)arg += n;
	return 0;
}

static int mp_data(void *arg, const char *data, size_t n)
{
	(void)data;
	*(size_t *)arg += n;
	return 0;
}

static int parse_multipart(void)
{
	static const char body[] =
		"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nSine Song\r\n"
		"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
		"Content-Type: audio/wav\r\n\r\nRIFF....WAVEfmt \r\n--XyZ--\r\n";
	size_t got = 0;
	struct multipart m;
	struct multipart_callbacks cb = {NULL, mp_data, mp_field, NULL};
	int rc = multipart_init(&m, "XyZ", &multipart_default_limits, &cb, &got);
	if (rc)
		return rc;
	rc = multipart_feed(&m, body, strlen(body));
	if (rc == 0)
		rc = multipart_finish(&m);
	multipart_free(&m);
	return rc;
}

static int parse_pickle(void)
{
	/* {'a': [1, 2.5, 'x'], 'b': (None, True), 'c': {'d': b'zz'}}, protocol 2, memoised */
	static const uint8_t pk[] = {
		0x80, 0x02, '}',  'q', 0x00, '(',  'X', 0x01, 0,    0,    0,   'a',  'q', 0x01,
		']',  'q',  0x02, '(', 'K',  0x01, 'G', 0x40, 0x04, 0,    0,   0,    0,   0,
		0,    'X',  0x01, 0,   0,    0,    'x', 'e',  'X',  0x01, 0,   0,    0,   'b',
		'N',  0x88, 0x86, 'X', 0x01, 0,    0,   0,    'c',  '}',  'q', 0x03, 'X', 0x01,
		0,    0,    0,    'd', 'C',  0x02, 'z', 'z',  's',  'u',  '.'};
	struct arena a;
	arena_init(&a, 1 << 20);
	const struct nn_pk *root = NULL;
	char err[256];
	int rc = nn_pickle_load(pk, sizeof pk, &a, &root, err, sizeof err);
	if (rc == 0 && !nn_pk_get(root, "c"))
		rc = 1;
	arena_free(&a);
	return rc;
}

static int parse_spotify_url(void)
{
	struct spotify_ref ref;
	char err[256];
	return spotify_url_parse("https://open.spotify.com/intl-de/album/4aawyAB9vmqN3uQ7FjRGTy"
	                         "?si=abc",
	                         &ref, err, sizeof err);
}

static int parse_spotify_page(void)
{
	static const char page[] =
		"{\"items\": [{\"id\": \"al00000000000000000001\", \"name\": \"S\", \"artists\": "
		"[{\"name\": \"A\"}, {\"name\": \"B\"}], \"duration_ms\": 1000, \"track_number\": 1},"
		"{\"id\": \"al00000000000000000002\", \"name\": \"T\", \"artists\": [],"
		" \"duration_ms\": 2000}], \"next\": null, \"total\": 2}";
	struct spotify_result *r = NULL;
	char err[256];
	int rc = spotify__result_from_json(SPOTIFY_ALBUM, page, strlen(page), &r, err, sizeof err);
	spotify_result_free(r);
	return rc;
}

/* ---- tests --------------------------------------------------------------------------- */

static void manifest(void **state)
{
	(void)state;
	fail_each_allocation("manifest", parse_manifest);
}

static void form(void **state)
{
	(void)state;
	fail_each_allocation("form", parse_form);
}

static void cookie(void **state)
{
	(void)state;
	fail_each_allocation("cookie", parse_cookie);
}

static void multipart(void **state)
{
	(void)state;
	fail_each_allocation("multipart", parse_multipart);
}

static void pickle(void **state)
{
	(void)state;
	fail_each_allocation("pickle", parse_pickle);
}

static void spotify_url(void **state)
{
	(void)state;
	fail_each_allocation("spotify url", parse_spotify_url);
}

static void spotify_page(void **state)
{
	(void)state;
	fail_each_allocation("spotify page", parse_spotify_page);
}

int main(void)
{
	/* jansson allocates inside its shared library, out of --wrap's reach. */
	json_set_alloc_funcs(alloc_fail_malloc, alloc_fail_free);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(manifest),     cmocka_unit_test(form),
		cmocka_unit_test(cookie),       cmocka_unit_test(multipart),
		cmocka_unit_test(pickle),       cmocka_unit_test(spotify_url),
		cmocka_unit_test(spotify_page),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
