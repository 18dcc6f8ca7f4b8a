/* EBU R128 loudness (dsp_loudness_file) on the test signals of EBU Tech 3341 (integrated
 * loudness, true peak) and Tech 3342 (loudness range) that can be generated: sine tones at
 * stated levels, written as 48 kHz float WAV files and measured through the decoder, as an
 * uploaded file would be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audio/audio.h"
#include "dsp/dsp.h"
#include "dsp/result_json.h"
#include "util/err.h"

enum { RATE = 48000 };

struct segment {
	double dbfs; /* peak level of the sine; -INFINITY for silence */
	double seconds;
};

/* Writes a stereo (or mono) sine of freq_hz through the segments, phase continuous,
 * starting at phase0 radians; returns the temporary file's path (static storage). */
static const char *write_tone(const struct segment *seg, size_t n_seg, double freq_hz,
                              double phase0, int n_channels)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/sfa_loudness_XXXXXX.wav");
	int fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	close(fd);
	size_t n = 0;
	for (size_t s = 0; s < n_seg; s++)
		n += (size_t)llround(seg[s].seconds * RATE);
	float *x = malloc(n * (size_t)n_channels * sizeof *x);
	assert_non_null(x);
	size_t i = 0;
	for (size_t s = 0; s < n_seg; s++) {
		double amp = isfinite(seg[s].dbfs) ? pow(10.0, seg[s].dbfs / 20.0) : 0.0;
		size_t end = i + (size_t)llround(seg[s].seconds * RATE);
		for (; i < end; i++) {
			float v = (float)(amp *
			                  sin(2.0 * M_PI * freq_hz * (double)i / RATE + phase0));
			for (int c = 0; c < n_channels; c++)
				x[(size_t)c * n + i] = v;
		}
	}
	struct audio_buf b = {x, n, n_channels, RATE};
	char err[256];
	if (audio_write_wav(path, &b, AUDIO_FLOAT32, err, sizeof err) != 0)
		fail_msg("writing %s: %s", path, err);
	free(x);
	return path;
}

static struct dsp_loudness measure(const char *path)
{
	struct dsp_loudness l;
	char err[256];
	int rc = dsp_loudness_file(path, 0, &l, err, sizeof err);
	unlink(path);
	if (rc)
		fail_msg("dsp_loudness_file: %s", err);
	printf("# I %.2f LUFS, LRA %.2f LU, true peak %.2f dBTP\n", l.integrated_lufs, l.range_lu,
	       l.true_peak_dbtp);
	return l;
}

static void near(double got, double want, double tol, const char *what)
{
	if (!(fabs(got - want) <= tol))
		fail_msg("%s: %.3f, expected %.3f +- %.2f", what, got, want, tol);
}

/* Tech 3341 cases 1 and 2: a stereo 1 kHz sine at -23 and -33 dBFS reads -23 and -33 LUFS. */
static void sine_levels(void **state)
{
	(void)state;
	const struct segment a[] = {{-23.0, 20.0}};
	near(measure(write_tone(a, 1, 1000.0, 0.0, 2)).integrated_lufs, -23.0, 0.1, "case 1");
	const struct segment b[] = {{-33.0, 20.0}};
	near(measure(write_tone(b, 1, 1000.0, 0.0, 2)).integrated_lufs, -33.0, 0.1, "case 2");
}

/* Tech 3341 cases 3 and 4: quieter passages fall under the gates and leave -23 LUFS. */
static void gating(void **state)
{
	(void)state;
	const struct segment c3[] = {{-36.0, 10.0}, {-23.0, 60.0}, {-36.0, 10.0}};
	near(measure(write_tone(c3, 3, 1000.0, 0.0, 2)).integrated_lufs, -23.0, 0.1, "case 3");
	const struct segment c4[] = {
		{-72.0, 10.0}, {-36.0, 10.0}, {-23.0, 60.0}, {-36.0, 10.0}, {-72.0, 10.0}};
	near(measure(write_tone(c4, 5, 1000.0, 0.0, 2)).integrated_lufs, -23.0, 0.1, "case 4");
}

/* Tech 3342 cases 1 and 2: 20 s at -20 dBFS then 20 s at -30 (-15) dBFS: LRA 10 (5) LU. */
static void loudness_range(void **state)
{
	(void)state;
	const struct segment c1[] = {{-20.0, 20.0}, {-30.0, 20.0}};
	near(measure(write_tone(c1, 2, 1000.0, 0.0, 2)).range_lu, 10.0, 1.0, "Tech 3342 case 1");
	const struct segment c2[] = {{-20.0, 20.0}, {-15.0, 20.0}};
	near(measure(write_tone(c2, 2, 1000.0, 0.0, 2)).range_lu, 5.0, 1.0, "Tech 3342 case 2");
}

/* A sine at a quarter of the rate, 45 degrees off the samples, peaks between them: every
 * sample is at -3.01 dB of the peak. The true peak is the sine's own level (Tech 3341's
 * tolerance: +0.2 / -0.4 dB). */
static void true_peak_between_samples(void **state)
{
	(void)state;
	const struct segment s0[] = {{0.0, 2.0}};
	double tp = measure(write_tone(s0, 1, RATE / 4.0, M_PI / 4.0, 2)).true_peak_dbtp;
	if (!(tp >= -0.4 && tp <= 0.2))
		fail_msg("true peak of a 0 dBFS sine at fs/4: %.2f dBTP", tp);
	const struct segment s6[] = {{-6.0, 2.0}};
	tp = measure(write_tone(s6, 1, RATE / 4.0, M_PI / 4.0, 2)).true_peak_dbtp;
	if (!(tp >= -6.4 && tp <= -5.8))
		fail_msg("true peak of a -6 dBFS sine at fs/4: %.2f dBTP", tp);
}

/* A mono file plays on both speakers: it reads as loud as the same tone in stereo. */
static void mono_is_dual_mono(void **state)
{
	(void)state;
	const struct segment a[] = {{-23.0, 10.0}};
	near(measure(write_tone(a, 1, 1000.0, 0.0, 1)).integrated_lufs, -23.0, 0.1, "mono");
}

/* Digital silence has no loudness: -inf, shown as null in the analysis. */
static void silence_has_none(void **state)
{
	(void)state;
	const struct segment a[] = {{-INFINITY, 5.0}};
	struct dsp_loudness l = measure(write_tone(a, 1, 1000.0, 0.0, 2));
	assert_false(isfinite(l.integrated_lufs));
	assert_false(isfinite(l.true_peak_dbtp));
}

/* "loudness" is an analysis feature: in "all", and in the JSON as an object. */
static void analysis_reports_it(void **state)
{
	(void)state;
	const struct segment a[] = {{-23.0, 6.0}};
	const char *path = write_tone(a, 1, 1000.0, 0.0, 2);
	assert_int_equal(dsp_feature_bit("loudness"), DSP_FEAT_LOUDNESS);
	assert_true(DSP_FEAT_ALL & DSP_FEAT_LOUDNESS);
	struct dsp_options opt = {.features = DSP_FEAT_LOUDNESS | DSP_FEAT_ENERGY};
	struct dsp_result r;
	char err[256];
	int rc = dsp_analyze_file(path, &opt, &r, err, sizeof err);
	unlink(path);
	if (rc)
		fail_msg("dsp_analyze_file: %s", err);
	json_t *j = NULL;
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	json_t *l = json_object_get(j, "loudness");
	assert_true(json_is_object(l));
	near(json_number_value(json_object_get(l, "integrated_lufs")), -23.0, 0.1, "JSON");
	assert_true(json_is_number(json_object_get(l, "range_lu")));
	near(json_number_value(json_object_get(l, "true_peak_dbtp")), -23.0, 0.3, "JSON peak");
	assert_null(json_object_get(j, "tempo"));
	json_decref(j);
	dsp_result_free(&r);
	/* dsp_analyze works on samples alone: it cannot measure loudness and says so in
	 * its result's features. */
	float x[22050] = {0};
	assert_int_equal(dsp_analyze(x, 22050, &opt, &r, err, sizeof err), 0);
	assert_int_equal(r.features, DSP_FEAT_ENERGY);
	dsp_result_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sine_levels),         cmocka_unit_test(gating),
		cmocka_unit_test(loudness_range),      cmocka_unit_test(true_peak_between_samples),
		cmocka_unit_test(mono_is_dual_mono),   cmocka_unit_test(silence_has_none),
		cmocka_unit_test(analysis_reports_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
