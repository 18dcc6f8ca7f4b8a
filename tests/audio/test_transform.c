/* Key-shift and time-stretch (audio_transform, librubberband R3) measured: a 440 Hz sine
 * shifted +2 semitones sounds at 493.9 Hz (+-0.2 %); a 120 BPM click track stretched to
 * 128 BPM lasts 120/128 of the original (+-10 ms) and the analysis engine hears 128 BPM
 * (+-0.5); the CLI does the same on files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "audio/audio.h"
#include "audio/transform_cli.h"
#include "dsp/dsp.h"
#include "util/err.h"

enum { RATE = 44100 };

static struct audio_buf sine(double seconds, double hz, int n_ch)
{
	size_t n = (size_t)(seconds * RATE);
	struct audio_buf b = {malloc(n * (size_t)n_ch * sizeof(float)), n, n_ch, RATE};
	assert_non_null(b.data);
	for (int c = 0; c < n_ch; c++)
		for (size_t i = 0; i < n; i++)
			b.data[(size_t)c * n + i] = (float)(0.5 * sin(2.0 * M_PI * hz * (double)i /
			                                              RATE));
	return b;
}

/* The frequency of channel 0 from its rising zero crossings (interpolated) over the
 * middle half, away from the edges. */
static double frequency(const struct audio_buf *b)
{
	const float *x = b->data;
	size_t lo = b->n_frames / 4, hi = 3 * b->n_frames / 4;
	double first = -1, last = -1;
	int n = 0;
	for (size_t i = lo; i + 1 < hi; i++) {
		if (x[i] < 0 && x[i + 1] >= 0) {
			double t = (double)i + (double)(-x[i]) / (double)(x[i + 1] - x[i]);
			if (first < 0)
				first = t;
			last = t;
			n++;
		}
	}
	assert_true(n > 10);
	return (double)(n - 1) * RATE / (last - first);
}

static void shift_by_semitones(void **state)
{
	(void)state;
	char err[256];
	struct audio_buf in = sine(3.0, 440.0, 2), out;
	static const double steps[] = {2.0, -3.5, 0.5};
	for (size_t k = 0; k < 3; k++) {
		assert_int_equal(audio_transform(&in, steps[k], 1.0, false, &out, err, sizeof err),
		                 0);
		assert_int_equal(out.n_frames, in.n_frames);
		assert_int_equal(out.n_channels, 2);
		double want = 440.0 * pow(2.0, steps[k] / 12.0), got = frequency(&out);
		printf("# %+.1f semitones: %.2f Hz (want %.2f)\n", steps[k], got, want);
		if (fabs(got / want - 1.0) > 0.002)
			fail_msg("%+.1f semitones: %.3f Hz, want %.3f Hz +- 0.2 %%", steps[k], got,
			         want);
		audio_buf_free(&out);
	}
	/* formants kept: still the shifted pitch */
	assert_int_equal(audio_transform(&in, 2.0, 1.0, true, &out, err, sizeof err), 0);
	assert_true(fabs(frequency(&out) / 493.883 - 1.0) <= 0.002);
	audio_buf_free(&out);
	assert_int_equal(audio_transform(&in, 12.5, 1.0, false, &out, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_transform(&in, 0, 2.5, false, &out, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_transform(&in, NAN, 1.0, false, &out, err, sizeof err), SFA_EINVAL);
	assert_null(out.data);
	audio_buf_free(&in);
}

/* A click (a decaying 2 kHz burst) on every beat, stereo. */
static struct audio_buf clicks(double seconds, double bpm)
{
	size_t n = (size_t)(seconds * RATE), period = (size_t)llround(RATE * 60.0 / bpm);
	struct audio_buf b = {calloc(n * 2, sizeof(float)), n, 2, RATE};
	assert_non_null(b.data);
	for (size_t i = 0; i < n; i++) {
		size_t k = i % period;
		float v = k < 2000 ? (float)(0.8 * exp(-(double)k / 250.0) *
		                             sin(2.0 * M_PI * 2000.0 * (double)k / RATE))
		                   : 0.0f;
		b.data[i] = b.data[n + i] = v;
	}
	return b;
}

static double analysed_tempo(const struct audio_buf *b)
{
	char path[] = "/tmp/sfa_transform_XXXXXX.wav", err[256];
	int fd = mkstemps(path, 4);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(audio_write_wav(path, b, AUDIO_PCM16, err, sizeof err), 0);
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO};
	struct dsp_result r;
	int rc = dsp_analyze_file(path, &opt, &r, err, sizeof err);
	unlink(path);
	if (rc)
		fail_msg("analysis: %s", err);
	double bpm = r.tempo_bpm;
	dsp_result_free(&r);
	return bpm;
}

static void stretch_to_a_tempo(void **state)
{
	(void)state;
	char err[256];
	struct audio_buf in = clicks(16.0, 120.0), out;
	double before = analysed_tempo(&in);
	assert_true(fabs(before - 120.0) <= 0.5);
	assert_int_equal(audio_transform(&in, 0.0, 128.0 / 120.0, false, &out, err, sizeof err), 0);
	double want_s = 16.0 * 120.0 / 128.0, got_s = (double)out.n_frames / RATE;
	printf("# stretched: %.4f s (want %.4f), %d channels\n", got_s, want_s, out.n_channels);
	assert_true(fabs(got_s - want_s) <= 0.010);
	double after = analysed_tempo(&out);
	printf("# analysed tempo %.2f -> %.2f BPM\n", before, after);
	if (fabs(after - 128.0) > 0.5)
		fail_msg("the stretched clicks analyse as %.2f BPM, want 128 +- 0.5", after);
	audio_buf_free(&out);
	audio_buf_free(&in);
}

static void cli_writes_the_file(void **state)
{
	(void)state;
	char err[256], in_path[] = "/tmp/sfa_tcli_in_XXXXXX.wav", out_path[64];
	int fd = mkstemps(in_path, 4);
	assert_true(fd >= 0);
	close(fd);
	struct audio_buf in = sine(2.0, 440.0, 1);
	assert_int_equal(audio_write_wav(in_path, &in, AUDIO_PCM16, err, sizeof err), 0);
	snprintf(out_path, sizeof out_path, "%s.flac", in_path);
	char *argv[] = {in_path, "--semitones", "2", "--tempo-ratio", "0.5", "--out", out_path};
	/* The command prints its JSON summary on stdout, which is this test's TAP stream:
	 * it goes to /dev/null instead. */
	fflush(stdout);
	int saved = dup(1), devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	assert_true(saved >= 0 && devnull >= 0);
	dup2(devnull, 1);
	int rc = transform_cli(7, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(devnull);
	assert_int_equal(rc, 0);
	struct audio_buf out;
	assert_int_equal(audio_decode(out_path, 0, 0, 0, &out, err, sizeof err), 0);
	assert_int_equal(out.n_frames, 2 * in.n_frames);
	assert_true(fabs(frequency(&out) / 493.883 - 1.0) <= 0.002);
	audio_buf_free(&out);
	char *bad[] = {in_path, "--tempo-ratio", "3", "--out", out_path};
	assert_int_equal(transform_cli(5, bad), 2);
	char *bad_ext[] = {in_path, "--out", "/tmp/x.ogg"};
	assert_int_equal(transform_cli(3, bad_ext), 2);
	char *missing[] = {"/nonexistent.wav", "--out", out_path};
	assert_int_equal(transform_cli(3, missing), 1);
	unlink(in_path);
	unlink(out_path);
	audio_buf_free(&in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shift_by_semitones),
		cmocka_unit_test(stretch_to_a_tempo),
		cmocka_unit_test(cli_writes_the_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
