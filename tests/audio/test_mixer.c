/* Unit tests for src/audio/mixer.c (the DAW mixer) and the streaming decoder it uses.
 *
 * Most mixes run at 1000 Hz, where 1 ms is one frame, so every expected sample can be
 * written down by hand from the rules in mixer.h. Sources are arrays in memory behind a
 * mixer_read_fn. A randomised test checks that block boundaries never change a sample.
 *
 * argv[1] is tests/fixtures/audio (the FLAC the streaming decoder is compared on).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio/audio.h"
#include "audio/mixer.h"
#include "audio/mixer_manifest.h"
#include "util/err.h"

static const char *g_fixtures = "tests/fixtures/audio";

/* ---- helpers ------------------------------------------------------------------------- */

/* Parses text, expecting success. */
static void parse_ok(const char *text, int n_files, struct mixer_manifest *m)
{
	struct mixer_errors *e = calloc(1, sizeof *e);
	assert_non_null(e);
	int rc = mixer_manifest_parse(text, strlen(text), n_files, NULL, NULL, m, e);
	if (rc)
		fail_msg("unexpected error at %s: %s", e->n ? e->e[0].path : "?",
		         e->n ? e->e[0].msg : "?");
	free(e);
}

/* Parses text, expecting failure; returns the errors (caller frees). */
static struct mixer_errors *parse_bad(const char *text, int n_files)
{
	struct mixer_errors *e = calloc(1, sizeof *e);
	assert_non_null(e);
	struct mixer_manifest m;
	memset(&m, 0, sizeof m);
	assert_int_equal(mixer_manifest_parse(text, strlen(text), n_files, NULL, NULL, &m, e),
	                 SFA_EINVAL);
	assert_true(e->n > 0);
	return e;
}

/* The message at path, or NULL. */
static const char *err_at(const struct mixer_errors *e, const char *path)
{
	for (int i = 0; i < e->n; i++)
		if (strcmp(e->e[i].path, path) == 0)
			return e->e[i].msg;
	return NULL;
}

static void expect_err(const struct mixer_errors *e, const char *path, const char *needle)
{
	const char *msg = err_at(e, path);
	if (!msg)
		fail_msg("no error at %s", path);
	if (!strstr(msg, needle))
		fail_msg("error at %s is \"%s\", expected it to mention \"%s\"", path, msg, needle);
}

/* In-memory stereo sources, one per manifest stem. */
struct mem_src {
	const float *lr[MIXER_MAX_STEMS];
	int64_t n[MIXER_MAX_STEMS];
	int n_reads;
};

static int mem_read(void *arg, int stem, int64_t frame, size_t n, float *lr)
{
	struct mem_src *s = arg;
	s->n_reads++;
	for (size_t i = 0; i < n; i++) {
		int64_t f = frame + (int64_t)i;
		bool in = f >= 0 && f < s->n[stem];
		lr[2 * i] = in ? s->lr[stem][2 * f] : 0.0f;
		lr[2 * i + 1] = in ? s->lr[stem][2 * f + 1] : 0.0f;
	}
	return 0;
}

/* A stereo source of n frames with L = value(i), R = -value(i). */
static float *make_src(int64_t n, float (*value)(int64_t i))
{
	float *p = malloc((size_t)(2 * n + 1) * sizeof(float));
	assert_non_null(p);
	for (int64_t i = 0; i < n; i++) {
		p[2 * i] = value(i);
		p[2 * i + 1] = -value(i);
	}
	return p;
}

static float ones(int64_t i)
{
	(void)i;
	return 1.0f;
}
static float ramp(int64_t i) { return (float)i / 100.0f; }

/* Renders the whole mix of manifest text at 1000 Hz into a malloced interleaved buffer. */
static float *render(const char *text, struct mem_src *src, int64_t *n_frames)
{
	struct mixer_manifest m;
	memset(&m, 0, sizeof m);
	parse_ok(text, MIXER_MAX_FILES, &m);
	struct mixer_plan *p = NULL;
	char err[256];
	assert_int_equal(mixer_plan_new(&m, 1000, src->n, &p, err, sizeof err), 0);
	mixer_manifest_free(&m);
	int64_t n = mixer_plan_frames(p);
	float *out = calloc((size_t)(2 * n + 2), sizeof(float));
	assert_non_null(out);
	for (int64_t t = 0; t < n; t += MIXER_BLOCK_FRAMES) {
		size_t k = (size_t)(n - t < MIXER_BLOCK_FRAMES ? n - t : MIXER_BLOCK_FRAMES);
		assert_int_equal(mixer_render_block(p, t, k, mem_read, src, out + 2 * t), 0);
	}
	mixer_plan_free(p);
	*n_frames = n;
	return out;
}

static void expect_left(const float *lr, const float *want, int n)
{
	for (int i = 0; i < n; i++)
		if (fabsf(lr[2 * i] - want[i]) > 1e-6f)
			fail_msg("frame %d: left is %g, expected %g", i, lr[2 * i], want[i]);
}

/* ---- validation ---------------------------------------------------------------------- */

static void defaults_and_fields(void **state)
{
	(void)state;
	struct mixer_manifest m;
	parse_ok(
		"{\"stems\": [{\"file\": 1}, {\"stem_id\": \"0b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f\","
		" \"volume\": 2.5, \"pan\": -0.25, \"mute\": true, \"solo\": false, \"extra\": 1,"
		" \"edits\": [{\"type\": \"trim\", \"end_ms\": 10}, {\"type\": \"gain\","
		" \"level\": 0, \"start_ms\": 1.5}, {\"type\": \"offset\", \"position_ms\": 0}]}],"
		" \"sample_rate\": null, \"whatever\": [1]}",
		2, &m);
	assert_int_equal(m.sample_rate_hz, 0);
	assert_int_equal(m.bit_depth, 16);
	assert_false(m.normalize);
	assert_int_equal(m.n_stems, 2);
	assert_int_equal(m.stems[0].file, 1);
	assert_true(m.stems[0].volume == 1.0 && m.stems[0].pan == 0.0);
	assert_int_equal(m.stems[1].file, -1);
	assert_string_equal(m.stems[1].stem_id, "0b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f");
	assert_true(m.stems[1].volume == 2.5 && m.stems[1].pan == -0.25 && m.stems[1].mute);
	assert_int_equal(m.stems[1].n_edits, 3);
	assert_int_equal(m.stems[1].edits[0].type, MIXER_TRIM);
	assert_true(m.stems[1].edits[0].has_end && m.stems[1].edits[0].end_ms == 10);
	assert_int_equal(m.stems[1].edits[1].type, MIXER_GAIN);
	assert_false(m.stems[1].edits[1].has_end);
	assert_true(m.stems[1].edits[1].start_ms == 1.5 && m.stems[1].edits[1].level == 0);
	mixer_manifest_free(&m);
	parse_ok("{\"sample_rate\": 48000, \"bit_depth\": 32, \"normalize\": true,"
	         " \"stems\": [{\"file\": 0}]}",
	         1, &m);
	assert_int_equal(m.sample_rate_hz, 48000);
	assert_int_equal(m.bit_depth, 32);
	assert_true(m.normalize);
	mixer_manifest_free(&m);
	mixer_manifest_free(&m); /* twice is fine */
}

static void every_error_is_reported_with_its_path(void **state)
{
	(void)state;
	struct mixer_errors *e = parse_bad(
		"{\"sample_rate\": 44100.5, \"bit_depth\": 8, \"normalize\": 1, \"stems\": ["
		"{\"file\": 3, \"volume\": 4.01, \"pan\": 2, \"solo\": \"no\", \"edits\": ["
		"  {\"type\": \"reverse\"}, {\"type\": 7}, {},"
		"  {\"type\": \"trim\", \"start_ms\": -1},"
		"  {\"type\": \"silence\", \"start_ms\": 10, \"end_ms\": 5},"
		"  {\"type\": \"gain\", \"end_ms\": 5},"
		"  {\"type\": \"fade_out\", \"duration_ms\": 3600000.5},"
		"  {\"type\": \"offset\"}, []]},"
		"{\"file\": 0, \"stem_id\": \"0b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f\"},"
		"{}, 5, {\"stem_id\": 12, \"edits\": 3}, {\"file\": \"0\"}]}",
		2);
	expect_err(e, "sample_rate", "whole number of Hz");
	expect_err(e, "bit_depth", "unsupported bit depth 8");
	expect_err(e, "normalize", "true or false");
	expect_err(e, "stems[0].file",
	           "file index 3 is out of range: 2 files were uploaded, use 0 "
	           "to 1");
	expect_err(e, "stems[0].volume", "between 0 and 4 (a linear gain) (got 4.01)");
	expect_err(e, "stems[0].pan", "between -1 (left) and 1 (right) (got 2)");
	expect_err(e, "stems[0].solo", "true or false");
	expect_err(e, "stems[0].edits[0].type",
	           "unknown edit type \"reverse\": use trim, offset, "
	           "gain, fade_in, fade_out or silence");
	expect_err(e, "stems[0].edits[1].type", "must be a string");
	expect_err(e, "stems[0].edits[2].type", "can't be blank");
	expect_err(e, "stems[0].edits[3].start_ms", "must not be negative (got -1)");
	expect_err(e, "stems[0].edits[4].end_ms", "reversed");
	expect_err(e, "stems[0].edits[5].level", "can't be blank");
	expect_err(e, "stems[0].edits[6].duration_ms", "at most 3600000");
	expect_err(e, "stems[0].edits[7].position_ms", "can't be blank");
	expect_err(e, "stems[0].edits[8]", "must be an object");
	expect_err(e, "stems[1]", "not both");
	expect_err(e, "stems[2]", "needs a source");
	expect_err(e, "stems[3]", "must be an object");
	expect_err(e, "stems[4].stem_id", "UUID");
	expect_err(e, "stems[4].edits", "array of edits");
	expect_err(e, "stems[5].file", "whole number");
	assert_int_equal(e->n, 22);
	free(e);

	e = parse_bad("{\"stems\": [{\"file\": 0}]}", 0);
	expect_err(e, "stems[0].file", "no stems[] files were uploaded");
	free(e);
	e = parse_bad("{\"stems\": [{\"file\": 0}, {\"file\": 1}]}", 1);
	expect_err(e, "stems[1].file", "1 file was uploaded, use 0 to 0");
	assert_int_equal(e->n, 1);
	free(e);
	e = parse_bad("{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"gain\", \"level\": 1,"
	              " \"start_ms\": 3, \"end_ms\": 3}]}]}",
	              1);
	expect_err(e, "stems[0].edits[0].end_ms", "empty");
	free(e);
}

static void whole_document_errors(void **state)
{
	(void)state;
	struct mixer_errors *e = parse_bad("{\"stems\": [", 1);
	expect_err(e, "manifest", "not valid JSON");
	free(e);
	e = parse_bad("[]", 1);
	expect_err(e, "manifest", "JSON object");
	free(e);
	e = parse_bad("{\"stems\": {\"a\": 1}}", 1);
	expect_err(e, "stems", "array");
	free(e);
	e = parse_bad("{}", 1);
	expect_err(e, "stems", "can't be blank");
	free(e);
	e = parse_bad("{\"stems\": []}", 1);
	expect_err(e, "stems", "at least one");
	free(e);
	e = parse_bad("{\"stems\": [{\"file\": 0}], \"stems\": []}", 1);
	expect_err(e, "manifest", "duplicate");
	free(e);
	/* Size caps: stems, edits, bytes. */
	char *big = malloc(MIXER_MANIFEST_MAX_BYTES + 64);
	assert_non_null(big);
	size_t n = (size_t)snprintf(big, 64, "{\"stems\": [");
	for (int i = 0; i < 33; i++)
		n += (size_t)snprintf(big + n, 64, "%s{\"file\": 0}", i ? "," : "");
	snprintf(big + n, 64, "]}");
	e = parse_bad(big, 1);
	expect_err(e, "stems", "at most 32");
	assert_int_equal(e->n, 1);
	free(e);
	n = (size_t)snprintf(big, 64, "{\"stems\": [{\"file\": 0, \"edits\": [");
	for (int i = 0; i < 257; i++)
		n += (size_t)snprintf(big + n, 64, "%s{\"type\": \"trim\"}", i ? "," : "");
	snprintf(big + n, 64, "]}]}");
	e = parse_bad(big, 1);
	expect_err(e, "stems[0].edits", "at most 256");
	free(e);
	memset(big, ' ', MIXER_MANIFEST_MAX_BYTES + 1);
	big[0] = '{';
	big[MIXER_MANIFEST_MAX_BYTES] = '}';
	big[MIXER_MANIFEST_MAX_BYTES + 1] = '\0';
	e = parse_bad(big, 1);
	expect_err(e, "manifest", "larger than 256 KiB");
	free(e);
	/* More errors than are kept: counted. */
	n = (size_t)snprintf(big, 64, "{\"stems\": [{\"file\": 0, \"edits\": [");
	for (int i = 0; i < 150; i++)
		n += (size_t)snprintf(big + n, 64, "%s{\"type\": \"x\"}", i ? "," : "");
	snprintf(big + n, 64, "]}]}");
	e = parse_bad(big, 1);
	assert_int_equal(e->n, MIXER_MAX_ERRORS);
	assert_int_equal(e->n_dropped, 50);
	free(e);
	free(big);
}

static const char *check_stem(void *arg, int stem, const char *id)
{
	int *calls = arg;
	(*calls)++;
	return stem == 1 ? "is not one of your stems" : NULL;
	(void)id;
}

static void stem_ids_are_checked_by_the_caller(void **state)
{
	(void)state;
	const char *text =
		"{\"bit_depth\": 12, \"stems\": [{\"stem_id\": \"0b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f\"},"
		"{\"stem_id\": \"1b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f\"},"
		"{\"stem_id\": \"2b6f8f5e-2f9a-4c43-9d7e-1a2b3c4d5e6f\", \"file\": 0},"
		"{\"stem_id\": \"bad\"}]}";
	struct mixer_errors *e = calloc(1, sizeof *e);
	struct mixer_manifest m;
	int calls = 0;
	assert_int_equal(mixer_manifest_parse(text, strlen(text), 1, check_stem, &calls, &m, e),
	                 SFA_EINVAL);
	assert_int_equal(calls, 2); /* not for the ambiguous one or the malformed one */
	expect_err(e, "stems[1].stem_id", "is not one of your stems");
	assert_null(err_at(e, "stems[0].stem_id"));
	expect_err(e, "stems[2]", "not both");
	expect_err(e, "stems[3].stem_id", "UUID");
	expect_err(e, "bit_depth", "12");
	assert_int_equal(e->n, 4);
	free(e);
}

static void ms_round_to_nearest_frame(void **state)
{
	(void)state;
	assert_int_equal(mixer_ms_to_frames(0, 44100), 0);
	assert_int_equal(mixer_ms_to_frames(0.49, 1000), 0);
	assert_int_equal(mixer_ms_to_frames(0.5, 1000), 1);
	assert_int_equal(mixer_ms_to_frames(1.5, 1000), 2);
	assert_int_equal(mixer_ms_to_frames(2.5, 1000), 3); /* halves up, not to even */
	assert_int_equal(mixer_ms_to_frames(1000, 44100), 44100);
	assert_int_equal(mixer_ms_to_frames(10, 44100), 441);
	assert_int_equal(mixer_ms_to_frames(0.0113, 44100), 0); /* 0.498 frames */
	assert_int_equal(mixer_ms_to_frames(0.0114, 44100), 1); /* 0.503 frames */
	assert_int_equal(mixer_ms_to_frames(3600000, 192000), 691200000);
}

/* ---- rendering ----------------------------------------------------------------------- */

static void trim_offset_and_length(void **state)
{
	(void)state;
	float *a = make_src(10, ramp), *b = make_src(4, ones);
	struct mem_src src = {{a, b}, {10, 4}, 0};
	int64_t n;
	/* a: keep 2..7, then 1..4 of that (source 3..5) at 3; b muted at 8: length 12. */
	float *lr = render(
		"{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"trim\","
		" \"start_ms\": 2, \"end_ms\": 7}, {\"type\": \"offset\", \"position_ms\": 3},"
		" {\"type\": \"trim\", \"start_ms\": 1, \"end_ms\": 4}]},"
		" {\"file\": 1, \"mute\": true, \"edits\": [{\"type\": \"offset\","
		" \"position_ms\": 8}]}]}",
		&src, &n);
	assert_int_equal(n, 12);
	const float want[12] = {0, 0, 0, .03f, .04f, .05f, 0, 0, 0, 0, 0, 0};
	expect_left(lr, want, 12);
	assert_true(fabsf(lr[2 * 4 + 1] + .04f) < 1e-6f); /* right channel: its own samples */
	free(lr);
	/* A trim past the end leaves an empty clip; the other stem sets the length. */
	lr = render(
		"{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"trim\", \"start_ms\": 20}]},"
		" {\"file\": 1}]}",
		&src, &n);
	assert_int_equal(n, 4);
	const float w2[4] = {1, 1, 1, 1};
	expect_left(lr, w2, 4);
	free(lr);
	free(a);
	free(b);
}

static void fades_are_linear_and_mirrored(void **state)
{
	(void)state;
	float *a = make_src(10, ones);
	struct mem_src src = {{a}, {10}, 0};
	int64_t n;
	float *lr = render("{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"fade_in\","
	                   " \"duration_ms\": 4}, {\"type\": \"fade_out\", \"duration_ms\": 4}]}]}",
	                   &src, &n);
	const float want[10] = {0, .25f, .5f, .75f, 1, 1, .75f, .5f, .25f, 0};
	expect_left(lr, want, 10);
	free(lr);
	/* Overlapping fades multiply; a fade longer than the clip keeps its slope. */
	lr = render("{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"trim\", \"end_ms\": 4},"
	            " {\"type\": \"fade_in\", \"duration_ms\": 8}, {\"type\": \"fade_out\","
	            " \"duration_ms\": 2}]}]}",
	            &src, &n);
	assert_int_equal(n, 4);
	const float w2[4] = {0, .125f, .25f * .5f, 0};
	expect_left(lr, w2, 4);
	free(lr);
	/* A fade after a trim starts at the trimmed clip's start. */
	lr = render("{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"trim\", \"start_ms\": 5},"
	            " {\"type\": \"fade_in\", \"duration_ms\": 2}]}]}",
	            &src, &n);
	const float w3[5] = {0, .5f, 1, 1, 1};
	expect_left(lr, w3, 5);
	free(lr);
	free(a);
}

static void gain_and_silence_stay_with_their_samples(void **state)
{
	(void)state;
	float *a = make_src(10, ones);
	struct mem_src src = {{a}, {10}, 0};
	int64_t n;
	/* gain on source 2..5, silence on 7.., then trim 1..9: the mix shows source 1..8. */
	float *lr = render("{\"stems\": [{\"file\": 0, \"edits\": ["
	                   "{\"type\": \"gain\", \"start_ms\": 2, \"end_ms\": 5, \"level\": 0.5},"
	                   "{\"type\": \"silence\", \"start_ms\": 7},"
	                   "{\"type\": \"trim\", \"start_ms\": 1, \"end_ms\": 9},"
	                   "{\"type\": \"gain\", \"start_ms\": 0, \"end_ms\": 2, \"level\": 4}]}]}",
	                   &src, &n);
	assert_int_equal(n, 8);
	const float want[8] = {4, 2, .5f, .5f, 1, 1, 0, 0};
	expect_left(lr, want, 8);
	free(lr);
	/* Ranges past the clip's end are cut at it. */
	lr = render(
		"{\"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"gain\", \"start_ms\": 8,"
		" \"end_ms\": 100, \"level\": 2}, {\"type\": \"silence\", \"start_ms\": 50}]}]}",
		&src, &n);
	assert_int_equal(n, 10);
	const float w2[10] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 2};
	expect_left(lr, w2, 10);
	free(lr);
	free(a);
}

static void volume_pan_solo_mute(void **state)
{
	(void)state;
	float *a = make_src(2, ones);
	struct mem_src src = {{a, a, a, a}, {2, 2, 2, 2}, 0};
	int64_t n;
	/* L = 1 (from a, source R = -1 gets sign) ... check each stem alone via solo. */
	const struct {
		const char *stem;
		float l, r;
	} cases[] = {
		{"{\"file\": 0, \"pan\": 1, \"volume\": 2}", 0, -2},
		{"{\"file\": 0, \"pan\": -1, \"volume\": 2}", 2, 0},
		{"{\"file\": 0, \"pan\": 0.5}", .5f, -1},
		{"{\"file\": 0, \"pan\": -0.25, \"volume\": 0.5}", .5f, -.375f},
		{"{\"file\": 0, \"volume\": 0}", 0, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char text[256];
		snprintf(text, sizeof text, "{\"stems\": [%s]}", cases[i].stem);
		float *lr = render(text, &src, &n);
		assert_true(fabsf(lr[0] - cases[i].l) < 1e-6f && fabsf(lr[1] - cases[i].r) < 1e-6f);
		free(lr);
	}
	const struct {
		const char *flags[4];
		float l;
	} mix[] = {
		{{"", "", "", ""}, 1 + 2 + 4 + 8},
		{{"\"mute\": true", "", "", "\"mute\": true"}, 2 + 4},
		{{"\"solo\": true", "", "\"solo\": true", ""}, 1 + 4},
		{{"\"solo\": true", "\"mute\": true", "", ""}, 1},
		{{"\"solo\": true, \"mute\": true", "", "", ""}, 0},
		{{"\"solo\": true, \"mute\": true", "\"solo\": true", "", ""}, 2},
	};
	for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
		char text[512];
		snprintf(
			text, sizeof text,
			"{\"stems\": [{\"file\": 0, \"volume\": 1 %s%s},"
			" {\"file\": 0, \"volume\": 2 %s%s},"
			" {\"file\": 0, \"volume\": 4 %s%s}, {\"file\": 0, \"volume\": 3.5, \"edits\":"
			" [{\"type\": \"gain\", \"level\": 2},"
			" {\"type\": \"gain\", \"level\": 1.142857}] %s%s}]}",
			*mix[i].flags[0] ? "," : "", mix[i].flags[0], *mix[i].flags[1] ? "," : "",
			mix[i].flags[1], *mix[i].flags[2] ? "," : "", mix[i].flags[2],
			*mix[i].flags[3] ? "," : "", mix[i].flags[3]);
		float *lr = render(text, &src, &n);
		if (fabsf(lr[0] - mix[i].l) > 1e-4f)
			fail_msg("case %zu: left %g, expected %g", i, lr[0], mix[i].l);
		free(lr);
	}
	free(a);
}

/* A small xorshift generator, so the randomised test is the same on every run. */
static uint64_t g_rng = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static float noise(int64_t i)
{
	(void)i;
	return (float)((double)(rng() % 20001) / 10000.0 - 1.0);
}

static void blocks_do_not_change_samples(void **state)
{
	(void)state;
	enum { N = 3 * MIXER_BLOCK_FRAMES + 777 };
	float *a = make_src(N, noise), *b = make_src(N / 2, noise);
	struct mem_src src = {{a, b}, {N, N / 2}, 0};
	struct mixer_manifest m;
	parse_ok("{\"stems\": [{\"file\": 0, \"volume\": 0.7, \"pan\": 0.3, \"edits\": ["
	         "{\"type\": \"trim\", \"start_ms\": 100, \"end_ms\": 12000},"
	         "{\"type\": \"fade_in\", \"duration_ms\": 5000},"
	         "{\"type\": \"gain\", \"start_ms\": 4000, \"end_ms\": 8200, \"level\": 1.5},"
	         "{\"type\": \"silence\", \"start_ms\": 4095, \"end_ms\": 4097},"
	         "{\"type\": \"fade_out\", \"duration_ms\": 4100},"
	         "{\"type\": \"offset\", \"position_ms\": 333}]},"
	         "{\"file\": 1, \"pan\": -0.6, \"edits\": [{\"type\": \"offset\","
	         " \"position_ms\": 4090}]}]}",
	         2, &m);
	struct mixer_plan *p;
	char err[200];
	assert_int_equal(mixer_plan_new(&m, 1000, src.n, &p, err, sizeof err), 0);
	int64_t n = mixer_plan_frames(p);
	assert_int_equal(n, 333 + 11900);
	float *whole = calloc((size_t)(2 * n), sizeof(float)),
	      *piece = calloc((size_t)(2 * n), sizeof(float));
	for (int64_t t = 0; t < n; t += MIXER_BLOCK_FRAMES) {
		size_t k = (size_t)(n - t < MIXER_BLOCK_FRAMES ? n - t : MIXER_BLOCK_FRAMES);
		assert_int_equal(mixer_render_block(p, t, k, mem_read, &src, whole + 2 * t), 0);
	}
	for (int64_t t = 0; t < n;) {
		size_t k = 1 + (size_t)(rng() % 700);
		if ((int64_t)k > n - t)
			k = (size_t)(n - t);
		assert_int_equal(mixer_render_block(p, t, k, mem_read, &src, piece + 2 * t), 0);
		t += (int64_t)k;
	}
	assert_memory_equal(whole, piece, (size_t)(2 * n) * sizeof(float));
	/* Past the end: zeros. */
	float tail[8] = {1, 1, 1, 1, 1, 1, 1, 1};
	assert_int_equal(mixer_render_block(p, n, 4, mem_read, &src, tail), 0);
	for (int i = 0; i < 8; i++)
		assert_true(tail[i] == 0.0f);
	assert_int_equal(mixer_render_block(p, 0, MIXER_BLOCK_FRAMES + 1, mem_read, &src, whole),
	                 SFA_EINVAL);
	mixer_plan_free(p);
	mixer_manifest_free(&m);
	free(whole);
	free(piece);
	free(a);
	free(b);
}

static void quantisation_rounds_and_counts_clipping(void **state)
{
	(void)state;
	const float in[] = {0.5f,         1.0f,         -1.0f,         -1.00002f,
	                    0.5f / 32768, 1.5f / 32768, -0.5f / 32768, 32767.49f / 32768,
	                    NAN,          INFINITY,     -INFINITY,     0};
	int16_t out[12];
	unsigned char bytes[24];
	uint64_t clipped = 0;
	mixer_encode(in, 6, 1.0f, 16, bytes, &clipped);
	memcpy(out, bytes, sizeof out);
	const int16_t want[12] = {16384, 32767, -32768, -32768, 0,      2,
	                          0,     32767, 0,      32767,  -32768, 0};
	for (int i = 0; i < 12; i++)
		if (out[i] != want[i])
			fail_msg("sample %d: %d, expected %d", i, out[i], want[i]);
	assert_int_equal(clipped, 4); /* 1.0, -1.00002, +inf, -inf */
	/* 24-bit, with a gain. */
	const float in24[] = {0.25f, -0.25f, 1.0f, -2.0f};
	unsigned char b24[12];
	clipped = 0;
	mixer_encode(in24, 2, 2.0f, 24, b24, &clipped);
	const unsigned char w24[12] = {0, 0, 0x40, 0, 0, 0xC0, 0xFF, 0xFF, 0x7F, 0, 0, 0x80};
	assert_memory_equal(b24, w24, 12);
	assert_int_equal(clipped, 2);
	/* Float: unclipped, non-finite as 0. */
	const float inf32[] = {3.5f, NAN, -INFINITY, -0.25f};
	float f32[4];
	clipped = 0;
	mixer_encode(inf32, 2, 1.0f, 32, (unsigned char *)f32, &clipped);
	assert_true(f32[0] == 3.5f && f32[1] == 0 && f32[2] == 0 && f32[3] == -0.25f);
	assert_int_equal(clipped, 0);
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wav_headers(void **state)
{
	(void)state;
	unsigned char h[MIXER_WAV_HEADER_MAX];
	assert_int_equal(mixer_wav_header(44100, 16, 1000, h), 44);
	assert_memory_equal(h, "RIFF", 4);
	assert_int_equal(le32(h + 4), 36 + 4000);
	assert_memory_equal(h + 8, "WAVEfmt ", 8);
	assert_int_equal(le32(h + 16), 16);
	assert_int_equal(h[20] | h[21] << 8, 1);
	assert_int_equal(h[22] | h[23] << 8, 2);
	assert_int_equal(le32(h + 24), 44100);
	assert_int_equal(le32(h + 28), 44100 * 4);
	assert_int_equal(h[32] | h[33] << 8, 4);
	assert_int_equal(h[34] | h[35] << 8, 16);
	assert_memory_equal(h + 36, "data", 4);
	assert_int_equal(le32(h + 40), 4000);
	assert_int_equal(mixer_wav_header(48000, 24, 10, h), 44);
	assert_int_equal(le32(h + 40), 60);
	assert_int_equal(h[32] | h[33] << 8, 6);
	assert_int_equal(mixer_wav_header(48000, 32, 10, h), 58);
	assert_int_equal(h[20] | h[21] << 8, 3);
	assert_int_equal(le32(h + 16), 18);
	assert_memory_equal(h + 38, "fact", 4);
	assert_int_equal(le32(h + 46), 10);
	assert_memory_equal(h + 50, "data", 4);
	assert_int_equal(le32(h + 54), 80);
	assert_int_equal(le32(h + 4), 58 - 8 + 80);
}

struct membuf {
	unsigned char *p;
	size_t n, cap;
};

static int mem_write(void *arg, const void *data, size_t n)
{
	struct membuf *b = arg;
	if (b->n + n > b->cap)
		return SFA_ETOOBIG;
	memcpy(b->p + b->n, data, n);
	b->n += n;
	return 0;
}

static void scan_normalise_and_write(void **state)
{
	(void)state;
	float *a = make_src(10, ramp); /* peak 0.09 */
	struct mem_src src = {{a, a}, {10, 10}, 0};
	struct mixer_manifest m;
	parse_ok("{\"normalize\": true, \"stems\": [{\"file\": 0, \"volume\": 2}]}", 1, &m);
	struct mixer_plan *p;
	char err[200];
	assert_int_equal(mixer_plan_new(&m, 1000, src.n, &p, err, sizeof err), 0);
	mixer_manifest_free(&m);
	struct mixer_stats st;
	assert_int_equal(mixer_scan(p, mem_read, &src, &st), 0);
	assert_true(fabs(st.peak - 0.18) < 1e-6);
	assert_true(fabs(st.gain * 0.18 - pow(10, -1.0 / 20)) < 1e-6);
	assert_int_equal(st.n_clipped, 0);
	unsigned char buf[256];
	struct membuf out = {buf, 0, sizeof buf};
	uint64_t clipped = 99;
	assert_int_equal(mixer_write_wav(p, mem_read, &src, &st, mem_write, &out, &clipped), 0);
	assert_int_equal(out.n, 44 + 40);
	assert_int_equal(mixer_plan_wav_bytes(p), 44 + 40);
	assert_int_equal(clipped, 0);
	int16_t last_l = (int16_t)(buf[44 + 36] | buf[44 + 37] << 8);
	assert_int_equal(last_l, (int)lrint(pow(10, -1.0 / 20) * 32768)); /* -1 dBFS */
	mixer_plan_free(p);
	/* Not normalised and too loud: the scan and the output count the same samples. */
	parse_ok("{\"stems\": [{\"file\": 0, \"volume\": 4}, {\"file\": 1, \"volume\": 4}]}", 2,
	         &m);
	assert_int_equal(mixer_plan_new(&m, 1000, src.n, &p, err, sizeof err), 0);
	mixer_manifest_free(&m);
	assert_int_equal(mixer_scan(p, mem_read, &src, &st), 0);
	assert_true(st.gain == 1.0);
	/* 8 * i / 100 >= 1 for i = 13..: none of 0..9, so make it louder with a gain edit. */
	assert_int_equal(st.n_clipped, 0);
	mixer_plan_free(p);
	parse_ok(
		"{\"stems\": [{\"file\": 0, \"volume\": 4, \"edits\": [{\"type\": \"gain\", \"level\":"
		" 3.9}]}, {\"file\": 1, \"volume\": 4}]}",
		2, &m);
	assert_int_equal(mixer_plan_new(&m, 1000, src.n, &p, err, sizeof err), 0);
	mixer_manifest_free(&m);
	assert_int_equal(mixer_scan(p, mem_read, &src, &st), 0);
	/* 19.6 * i / 100 is past full scale for i >= 6, on both channels (R = -L). */
	assert_int_equal(st.n_clipped, 8);
	out.n = 0;
	assert_int_equal(mixer_write_wav(p, mem_read, &src, &st, mem_write, &out, &clipped), 0);
	assert_int_equal(clipped, 8);
	/* A writer error stops the output. */
	out.n = 0;
	out.cap = 50;
	assert_int_equal(mixer_write_wav(p, mem_read, &src, &st, mem_write, &out, NULL),
	                 SFA_ETOOBIG);
	mixer_plan_free(p);
	/* A silent mix is not normalised. */
	parse_ok("{\"normalize\": true, \"stems\": [{\"file\": 0, \"mute\": true}]}", 1, &m);
	assert_int_equal(mixer_plan_new(&m, 1000, src.n, &p, err, sizeof err), 0);
	mixer_manifest_free(&m);
	assert_int_equal(mixer_scan(p, mem_read, &src, &st), 0);
	assert_true(st.peak == 0 && st.gain == 1.0);
	mixer_plan_free(p);
	free(a);
}

static void plans_refuse_what_a_wav_cannot_hold(void **state)
{
	(void)state;
	struct mixer_manifest m;
	parse_ok("{\"bit_depth\": 32, \"stems\": [{\"file\": 0, \"edits\": [{\"type\": \"offset\","
	         " \"position_ms\": 3600000}]}]}",
	         1, &m);
	struct mixer_plan *p = NULL;
	char err[256];
	int64_t len[1] = {(int64_t)192000 * 3600};
	assert_int_equal(mixer_plan_new(&m, 192000, len, &p, err, sizeof err), SFA_ETOOBIG);
	assert_non_null(strstr(err, "4 GiB"));
	assert_null(p);
	len[0] = 1000;
	assert_int_equal(mixer_plan_new(&m, 44100, len, &p, err, sizeof err), 0);
	assert_int_equal(mixer_plan_frames(p), (int64_t)44100 * 3600 + 1000);
	assert_int_equal(mixer_plan_rate(p), 44100);
	assert_int_equal(mixer_plan_bit_depth(p), 32);
	mixer_plan_free(p);
	assert_int_equal(mixer_plan_new(&m, 0, len, &p, err, sizeof err), SFA_EINVAL);
	mixer_manifest_free(&m);
	mixer_plan_free(NULL);
}

/* ---- the streaming decoder ------------------------------------------------------------ */

struct collect {
	float *lr[2];
	size_t n, cap;
	int calls;
};

static int collect_sink(void *arg, const float *const *planes, size_t n)
{
	struct collect *c = arg;
	if (c->n + n > c->cap)
		return SFA_ETOOBIG;
	for (int ch = 0; ch < 2; ch++)
		memcpy(c->lr[ch] + c->n, planes[ch], n * sizeof(float));
	c->n += n;
	c->calls++;
	return 0;
}

static int stop_sink(void *arg, const float *const *planes, size_t n)
{
	(void)arg;
	(void)planes;
	(void)n;
	return 1;
}

static void streaming_decode_equals_whole_decode(void **state)
{
	(void)state;
	char path[1024];
	snprintf(path, sizeof path, "%s/song_140_E_minor_st44k_3s.flac", g_fixtures);
	const int rates[] = {0, 22050, 48000, 44100};
	for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
		struct audio_buf whole;
		char err[256];
		if (audio_decode(path, rates[r], 2, 0, &whole, err, sizeof err) != 0)
			fail_msg("the fixture %s is missing or does not decode: %s", path, err);
		struct collect c = {
			{malloc((whole.n_frames + 1) * 4), malloc((whole.n_frames + 1) * 4)},
			0,
			whole.n_frames + 1,
			0};
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		struct audio_stream_info info;
		assert_int_equal(audio_decode_stream_fd(fd, rates[r], 2, 0, collect_sink, &c, &info,
		                                        err, sizeof err),
		                 0);
		assert_int_equal(c.n, whole.n_frames);
		assert_int_equal(info.n_frames, whole.n_frames);
		assert_int_equal(info.sample_rate_hz, whole.sample_rate_hz);
		assert_int_equal(info.in_rate_hz, 44100);
		assert_int_equal(info.n_channels, 2);
		assert_true(c.calls > 10); /* it streamed */
		assert_memory_equal(c.lr[0], whole.data, whole.n_frames * 4);
		assert_memory_equal(c.lr[1], whole.data + whole.n_frames, whole.n_frames * 4);
		/* A sink that stops the decode. */
		assert_int_equal(audio_decode_stream_fd(fd, rates[r], 2, 0, stop_sink, NULL, NULL,
		                                        err, sizeof err),
		                 SFA_ECANCELED);
		close(fd);
		free(c.lr[0]);
		free(c.lr[1]);
		audio_buf_free(&whole);
	}
}

int main(int argc, char **argv)
{
	if (argc > 1)
		g_fixtures = argv[1];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(defaults_and_fields),
		cmocka_unit_test(every_error_is_reported_with_its_path),
		cmocka_unit_test(whole_document_errors),
		cmocka_unit_test(stem_ids_are_checked_by_the_caller),
		cmocka_unit_test(ms_round_to_nearest_frame),
		cmocka_unit_test(trim_offset_and_length),
		cmocka_unit_test(fades_are_linear_and_mirrored),
		cmocka_unit_test(gain_and_silence_stay_with_their_samples),
		cmocka_unit_test(volume_pan_solo_mute),
		cmocka_unit_test(blocks_do_not_change_samples),
		cmocka_unit_test(quantisation_rounds_and_counts_clipping),
		cmocka_unit_test(wav_headers),
		cmocka_unit_test(scan_normalise_and_write),
		cmocka_unit_test(plans_refuse_what_a_wav_cannot_hold),
		cmocka_unit_test(streaming_decode_equals_whole_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
