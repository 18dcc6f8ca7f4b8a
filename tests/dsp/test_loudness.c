/* EBU R128 loudness (the analysis feature "loudness") on the test signals of EBU Tech 3341
 * (integrated loudness, true peak) and Tech 3342 (loudness range) that can be generated:
 * sine tones at stated levels, written as 48 kHz float WAV files and measured through the
 * decoder, as an uploaded file would be.
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

#include <ebur128.h>
#include <jansson.h>

#include "audio/audio.h"
#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"
#include "dsp/result_json.h"
#include "util/err.h"

enum { RATE = 48000 };

struct segment {
	double dbfs; /* peak level of the sine; -INFINITY for silence */
	double seconds;
};

/* Writes a stereo (or mono) sine of freq_hz through the segments at rate Hz, phase
 * continuous, starting at phase0 radians, faded in and out over fade_s (raised cosine; 0
 * for none); returns the temporary file's path (static storage). */
static const char *write_tone_at(int rate, const struct segment *seg, size_t n_seg, double freq_hz,
                                 double phase0, int n_channels, double fade_s)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/sfa_loudness_XXXXXX.wav");
	int fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	close(fd);
	size_t n = 0;
	for (size_t s = 0; s < n_seg; s++)
		n += (size_t)llround(seg[s].seconds * rate);
	float *x = malloc(n * (size_t)n_channels * sizeof *x);
	assert_non_null(x);
	size_t i = 0;
	for (size_t s = 0; s < n_seg; s++) {
		double amp = isfinite(seg[s].dbfs) ? pow(10.0, seg[s].dbfs / 20.0) : 0.0;
		size_t end = i + (size_t)llround(seg[s].seconds * rate);
		for (; i < end; i++) {
			double w = 1.0, edge = (double)(i < n - 1 - i ? i : n - 1 - i) / rate;
			if (edge < fade_s)
				w = 0.5 - 0.5 * cos(M_PI * edge / fade_s);
			float v = (float)(w * amp *
			                  sin(2.0 * M_PI * freq_hz * (double)i / rate + phase0));
			for (int c = 0; c < n_channels; c++)
				x[(size_t)c * n + i] = v;
		}
	}
	struct audio_buf b = {x, n, n_channels, rate};
	char err[256];
	if (audio_write_wav(path, &b, AUDIO_FLOAT32, err, sizeof err) != 0)
		fail_msg("writing %s: %s", path, err);
	free(x);
	return path;
}

static const char *write_tone(const struct segment *seg, size_t n_seg, double freq_hz,
                              double phase0, int n_channels)
{
	return write_tone_at(RATE, seg, n_seg, freq_hz, phase0, n_channels, 0.0);
}

/* The loudness feature alone, as `sfa analyze --features loudness` measures it. */
static struct dsp_loudness measure(const char *path)
{
	struct dsp_options opt = {.features = DSP_FEAT_LOUDNESS};
	struct dsp_result r;
	char err[256];
	int rc = dsp_analyze_file(path, &opt, &r, err, sizeof err);
	unlink(path);
	if (rc)
		fail_msg("dsp_analyze_file: %s", err);
	assert_true(r.features & DSP_FEAT_LOUDNESS);
	struct dsp_loudness l = r.loudness;
	dsp_result_free(&r);
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

/* Sines that peak between the samples, as in Tech 3341's true-peak cases: at a quarter,
 * a sixth and an eighth of the rate, 45, 60 and 67.5 degrees off the samples, so every
 * sample misses the peak; and one whose samples are at 0 dBFS while it peaks at +3 dBTP.
 * The true peak is the sine's own level (Tech 3341's tolerance: +0.2 / -0.4 dB). The tones
 * fade in and out over 20 ms: a full-scale tone switched on at once rings past its level
 * in any band-limited reconstruction (up to +0.4 dB here), which is a true peak of that
 * start, not of the sine. */
static void true_peak_between_samples(void **state)
{
	(void)state;
	const struct {
		double div, phase_deg, dbtp;
	} c[] = {{4.0, 45.0, 0.0},  {4.0, 45.0, -6.0}, {6.0, 60.0, -6.0},
	         {8.0, 67.5, -6.0}, {4.0, 0.0, -6.0},  {4.0, 45.0, 20.0 * log10(M_SQRT2)}};
	for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
		const struct segment s[] = {{c[k].dbtp, 2.0}};
		double tp = measure(write_tone_at(RATE, s, 1, RATE / c[k].div,
		                                  c[k].phase_deg * M_PI / 180.0, 2, 0.02))
		                    .true_peak_dbtp;
		if (!(tp >= c[k].dbtp - 0.4 && tp <= c[k].dbtp + 0.2))
			fail_msg(
				"true peak of a %.2f dBTP sine at fs/%.0f, %.1f degrees: %.2f dBTP",
				c[k].dbtp, c[k].div, c[k].phase_deg, tp);
	}
}

/* The true peak skips the blocks whose points cannot reach the peak so far, by a bound:
 * the largest sum of |taps| of a phase (phase 1's, 2.0228) times the largest sample within
 * the taps' reach. Here that bound is met exactly: a 0.8 sample first sets the peak, then,
 * blocks later, twelve samples of 0.4 signed as phase 1's taps (- + - + - + + - + - + -
 * from the newest back) put one point at 0.4 x 2.0228 = 0.809, above it. With a bound any
 * tighter (phase 0's 1.434, say) that block would be skipped and 0.8 read. Fed in chunks
 * of several sizes (chunks shorter than the taps, the pattern across a chunk's edge), to
 * both channels and to one. */
static void true_peak_bound_keeps_the_worst_point(void **state)
{
	(void)state;
	static const int sign_h1[12] = {-1, 1,  -1, 1,  -1, 1,
	                                1,  -1, 1,  -1, 1,  -1}; /* tap 0 newest */
	enum { N = 4096, AT = 1000 };
	float x[N] = {0};
	x[0] = 0.8f;
	for (int k = 0; k < 12; k++)
		x[AT + 11 - k] = 0.4f * (float)sign_h1[k];
	const double want = 20.0 * log10(0.4 * 2.0228271484375);
	const size_t chunks[] = {N, 5, 256, 1003, 4095};
	for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
		for (int ch = 1; ch <= 2; ch++) {
			struct audio_stream_info info = {.in_rate_hz = RATE, .in_channels = ch};
			struct dsp_meter *m = dsp_meter_new(&info);
			assert_non_null(m);
			for (size_t i = 0; i < N; i += chunks[c]) {
				size_t k = N - i < chunks[c] ? N - i : chunks[c];
				const float *planes[2] = {x + i, x + i};
				assert_int_equal(dsp_meter_sink(m, planes, k), 0);
			}
			struct dsp_loudness l;
			char err[256];
			assert_int_equal(dsp_meter_finish(m, &l, err, sizeof err), 0);
			if (!(fabs(l.true_peak_dbtp - want) < 1e-4))
				fail_msg(
					"true peak %.5f dBTP in chunks of %zu, %d channel(s); expected "
					"%.5f (the 0.8 sample alone: %.5f)",
					l.true_peak_dbtp, chunks[c], ch, want, 20.0 * log10(0.8));
		}
}

/* From 96 kHz the samples are oversampled by 2 (the Annex's half-sample phase), from
 * 192 kHz not at all: at 96 kHz sines peaking half a sample off every sample read their
 * level (fs/4 at 45 degrees, fs/8 at 67.5: the samples alone miss by 3.0 and 0.7 dB); at
 * 192 kHz the same fs/4 sine reads its samples' peak, 3.0 dB under its level, as the
 * standard's recipe gives there. */
static void true_peak_at_high_rates(void **state)
{
	(void)state;
	const struct segment s[] = {{-6.0, 1.0}};
	const struct {
		int rate;
		double div, phase_deg, lo, hi;
	} c[] = {{96000, 4.0, 45.0, -6.4, -5.8},
	         {96000, 8.0, 67.5, -6.4, -5.8},
	         {192000, 4.0, 45.0, -9.04, -8.98}};
	for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
		double tp = measure(write_tone_at(c[k].rate, s, 1, c[k].rate / c[k].div,
		                                  c[k].phase_deg * M_PI / 180.0, 2, 0.02))
		                    .true_peak_dbtp;
		if (!(tp >= c[k].lo && tp <= c[k].hi))
			fail_msg(
				"true peak of a -6 dBTP sine at %d Hz, fs/%.0f, %.1f degrees: %.2f "
				"dBTP, expected %.2f .. %.2f",
				c[k].rate, c[k].div, c[k].phase_deg, tp, c[k].lo, c[k].hi);
	}
}

/* A song-like stereo signal at 44.1 kHz (tones, a bass and noise bursts, different on each
 * side), measured by the analysis (its decode's tap feeding the meter): the loudness is
 * exactly libebur128's own on the decoded samples, and the true peak (oversampled by BS.1770-4
 * Annex 2's interpolator) reads as libebur128's own interpolator does within 0.25 dB. */
static void agrees_with_libebur128(void **state)
{
	(void)state;
	enum { SR = 44100 };
	size_t n = 20 * SR;
	float *x = malloc(2 * n * sizeof *x);
	assert_non_null(x);
	uint32_t rng = 12345;
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / SR, beat = fmod(t, 0.5);
		rng = rng * 1664525u + 1013904223u;
		double noise = ((double)(rng >> 8) / 16777216.0 - 0.5) * exp(-beat * 30.0);
		double bass = 0.35 * sin(2 * M_PI * 55.0 * t) * exp(-beat * 4.0);
		x[i] = (float)(bass + 0.2 * sin(2 * M_PI * 440.0 * t) +
		               0.1 * sin(2 * M_PI * 3520.0 * t + 1.0) + 0.5 * noise);
		x[n + i] = (float)(bass + 0.2 * sin(2 * M_PI * 659.3 * t + 0.3) + 0.45 * noise);
	}
	char path[64] = "/tmp/sfa_loudness_XXXXXX.flac", err[256];
	int fd = mkstemps(path, 5);
	assert_true(fd >= 0);
	close(fd);
	struct audio_buf b = {x, n, 2, SR};
	if (audio_write(path, &b, AUDIO_FLAC, AUDIO_PCM24, err, sizeof err) != 0)
		fail_msg("writing %s: %s", path, err);
	struct audio_buf back;
	assert_int_equal(audio_decode(path, 0, 2, 0, &back, err, sizeof err), 0);

	ebur128_state *st = ebur128_init(
		2, SR, EBUR128_MODE_I | EBUR128_MODE_LRA | EBUR128_MODE_TRUE_PEAK);
	assert_non_null(st);
	float *inter = malloc(2 * n * sizeof *inter);
	assert_non_null(inter);
	for (size_t i = 0; i < n; i++) {
		inter[2 * i] = back.data[i];
		inter[2 * i + 1] = back.data[n + i];
	}
	assert_int_equal(ebur128_add_frames_float(st, inter, n), EBUR128_SUCCESS);
	double want_i, want_lra, p0, p1;
	assert_int_equal(ebur128_loudness_global(st, &want_i), EBUR128_SUCCESS);
	assert_int_equal(ebur128_loudness_range(st, &want_lra), EBUR128_SUCCESS);
	assert_int_equal(ebur128_true_peak(st, 0, &p0), EBUR128_SUCCESS);
	assert_int_equal(ebur128_true_peak(st, 1, &p1), EBUR128_SUCCESS);
	ebur128_destroy(&st);
	double want_tp = 20.0 * log10(fmax(p0, p1));

	struct dsp_loudness l = measure(path); /* removes the file */
	assert_true(l.integrated_lufs == want_i);
	assert_true(l.range_lu == want_lra);
	near(l.true_peak_dbtp, want_tp, 0.25, "true peak against libebur128's");
	audio_buf_free(&back);
	free(inter);
	free(x);
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
		cmocka_unit_test(sine_levels),
		cmocka_unit_test(gating),
		cmocka_unit_test(loudness_range),
		cmocka_unit_test(true_peak_between_samples),
		cmocka_unit_test(true_peak_at_high_rates),
		cmocka_unit_test(true_peak_bound_keeps_the_worst_point),
		cmocka_unit_test(mono_is_dual_mono),
		cmocka_unit_test(silence_has_none),
		cmocka_unit_test(analysis_reports_it),
		cmocka_unit_test(agrees_with_libebur128),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
