/* Unit tests of the analysis engine's kernels, its JSON result, the `sfa analyze` front
 * end and its thread safety. Reference-data comparisons live in test_dsp_ref.c, accuracy
 * on synthetic music in test_dsp_synth.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio/audio.h"
#include "dsp/cli.h"
#include "dsp/dsp.h"
#include "dsp/result_json.h"
#include "dsp/dsp_internal.h"
#include "synth.h"
#include "util/err.h"

/* ---- numeric helpers -------------------------------------------------------------- */

static void pairwise_sum_is_accurate(void **state)
{
	(void)state;
	static float a[5000];
	for (size_t i = 0; i < 5000; i++)
		a[i] = (float)(0.1 + 1e-3 * (double)(i % 97));
	static const size_t ns[] = {0, 1, 7, 8, 9, 127, 128, 129, 1000, 5000};
	for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
		long double exact = 0;
		for (size_t i = 0; i < ns[k]; i++)
			exact += a[i];
		float s = dsp_sum_pairwise_f32(a, ns[k]);
		assert_true(fabsl((long double)s - exact) <= 1e-6L * (exact + 1));
	}
	/* numpy's block of 8 accumulators: 8 ones then 2^24 does not lose the ones */
	float b[9] = {1, 1, 1, 1, 1, 1, 1, 1, 16777216.0f};
	assert_true(dsp_sum_pairwise_f32(b, 9) == 16777224.0f);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

static void median_matches_sorting(void **state)
{
	(void)state;
	uint64_t s = 88172645463325252ull;
	for (size_t n = 1; n < 300; n += 7) {
		float a[300], sorted[300];
		for (size_t i = 0; i < n; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			a[i] = (float)(s % 50); /* many duplicates, like the onset medians */
			sorted[i] = a[i];
		}
		qsort(sorted, n, sizeof(float), cmp_float);
		float want = (n % 2) ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0f;
		assert_true(dsp_median_f32(a, n) == want);
	}
	float z[128] = {0};
	assert_true(dsp_median_f32(z, 128) == 0.0f);
}

static void std_and_window(void **state)
{
	(void)state;
	float x[4] = {1, 2, 3, 4};
	assert_true(fabsf(dsp_std_ddof1_f32(x, 4) - 1.2909944f) < 1e-6f);
	assert_true(dsp_std_ddof1_f32(x, 1) == 0.0f);
	double w[2048];
	dsp_hann_periodic(w, 2048);
	assert_true(fabs(w[0]) < 1e-15 && fabs(w[1024] - 1.0) < 1e-15);
	for (int i = 1; i < 1024; i++)
		assert_true(fabs(w[i] - w[2048 - i]) < 1e-12);
}

/* ---- framing and per-frame features ----------------------------------------------- */

static void framing_is_centred(void **state)
{
	(void)state;
	float x[3000], fr[DSP_N_FFT];
	for (int i = 0; i < 3000; i++)
		x[i] = (float)(i + 1);
	dsp_frame_copy(x, 3000, 0, fr);
	assert_true(fr[1023] == 0.0f && fr[1024] == 1.0f && fr[2047] == 1024.0f);
	dsp_frame_copy(x, 3000, 5, fr); /* samples 1536 .. 3583: 3000.. are zeros */
	assert_true(fr[0] == 1537.0f && fr[1463] == 3000.0f && fr[1464] == 0.0f);
	assert_int_equal(dsp_n_frames(0), 1);
	assert_int_equal(dsp_n_frames(511), 1);
	assert_int_equal(dsp_n_frames(512), 2);
	assert_int_equal(dsp_n_frames(264600), 517);
}

static void rms_and_zcr(void **state)
{
	(void)state;
	static float x[22050];
	for (int i = 0; i < 22050; i++)
		x[i] = 0.5f;
	assert_true(fabsf(dsp_rms_frame(x, 22050, 10) - 0.5f) < 1e-7f);
	/* frame 0 is half zero padding */
	assert_true(fabsf(dsp_rms_frame(x, 22050, 0) - sqrtf(0.125f)) < 1e-7f);
	assert_true(dsp_zcr_frame(x, 22050, 10) == 0.0f);
	for (int i = 0; i < 22050; i++)
		x[i] = (i % 2) ? 0.5f : -0.5f;
	assert_true(dsp_zcr_frame(x, 22050, 10) == 2047.0f / 2048.0f);
	/* edge padding repeats x[0]: frame 0 has crossings only inside the signal */
	assert_true(dsp_zcr_frame(x, 22050, 0) == 1023.0f / 2048.0f);
	/* values within 1e-10 of zero count as zero (positive) */
	for (int i = 0; i < 22050; i++)
		x[i] = (i % 2) ? 1e-11f : -1e-11f;
	assert_true(dsp_zcr_frame(x, 22050, 10) == 0.0f);
	assert_true(dsp_zcr_frame(x, 0, 0) == 0.0f);
}

static void centroid_and_rolloff(void **state)
{
	(void)state;
	float mag[DSP_N_BINS] = {0};
	double f[DSP_N_BINS];
	dsp_fft_freqs(f);
	assert_true(fabs(f[1] - 22050.0 / 2048) < 1e-9 && fabs(f[1024] - 11025.0) < 1e-9);
	assert_true(dsp_centroid_frame(mag, f) == 0.0 && dsp_rolloff_frame(mag, f) == 0.0);
	mag[100] = 3.0f;
	assert_true(fabs(dsp_centroid_frame(mag, f) - f[100]) < 1e-9);
	assert_true(dsp_rolloff_frame(mag, f) == f[100]);
	mag[200] = 1.0f; /* 75 % at bin 100: rolloff at 200 */
	assert_true(dsp_rolloff_frame(mag, f) == f[200]);
	assert_true(fabs(dsp_centroid_frame(mag, f) - (0.75 * f[100] + 0.25 * f[200])) < 1e-3);
}

static void stft_of_a_sine(void **state)
{
	(void)state;
	static float x[22050];
	double hz = 100.0 * 22050.0 / 2048; /* bin 100 exactly */
	for (int i = 0; i < 22050; i++)
		x[i] = (float)sin(2 * M_PI * hz * i / 22050.0);
	struct dsp_stft st;
	char err[128];
	assert_int_equal(dsp_stft_init(&st, err, sizeof err), 0);
	float mag[DSP_N_BINS], pw[DSP_N_BINS];
	dsp_stft_frame(&st, x, 22050, 20, mag, pw);
	/* periodic Hann: the sine lands in bins 99..101 with 0.25, 0.5, 0.25 of N/2 */
	assert_true(fabsf(mag[100] - 512.0f) < 0.05f);
	assert_true(fabsf(mag[99] - 256.0f) < 0.05f && fabsf(mag[101] - 256.0f) < 0.05f);
	assert_true(mag[300] < 1e-2f);
	assert_true(fabsf(pw[100] - mag[100] * mag[100]) < 1e-3f);
	dsp_stft_free(&st);
}

/* ---- mel, MFCC, chroma ------------------------------------------------------------ */

static void melbank_shape(void **state)
{
	(void)state;
	struct dsp_melbank *mb = malloc(sizeof *mb);
	float *dense = malloc(sizeof(float) * DSP_N_MELS * DSP_N_BINS);
	assert_non_null(mb);
	assert_non_null(dense);
	dsp_melbank_init(mb);
	dsp_melbank_dense(mb, dense);
	assert_true(mb->n_w < 4 * DSP_N_BINS);
	int prev_peak = -1;
	for (int m = 0; m < DSP_N_MELS; m++) {
		const float *row = dense + (size_t)m * DSP_N_BINS;
		int peak = 0;
		double area = 0.0;
		for (int k = 0; k < DSP_N_BINS; k++) {
			assert_true(row[k] >= 0.0f);
			if (row[k] > row[peak])
				peak = k;
			area += row[k] * (22050.0 / 2048);
		}
		assert_true(peak >= prev_peak); /* bands move up in frequency */
		prev_peak = peak;
		/* Slaney normalisation: unit area once a band spans several bins */
		if (m >= 30)
			assert_true(fabs(area - 1.0) < 0.05);
	}
	free(dense);
	free(mb);
}

static void dct_is_orthonormal(void **state)
{
	(void)state;
	double b[DSP_DCT_STRIDE * DSP_N_MELS];
	dsp_dct_init(b);
	for (int i = 0; i < DSP_DCT_STRIDE; i++)
		for (int j = 0; j < DSP_DCT_STRIDE; j++) {
			double d = 0;
			for (int k = 0; k < DSP_N_MELS; k++)
				d += b[k * DSP_DCT_STRIDE + i] * b[k * DSP_DCT_STRIDE + j];
			/* orthonormal rows; the padding rows are zero */
			assert_true(fabs(d - (i == j && i < DSP_N_MFCC)) < 1e-12);
		}
	float db[DSP_N_MELS], c[DSP_N_MFCC];
	for (int k = 0; k < DSP_N_MELS; k++)
		db[k] = -100.0f;
	dsp_mfcc_frame(b, db, c);
	assert_true(fabs(c[0] + 100.0 * sqrt(128.0)) < 1e-3);
	assert_true(fabs(c[5]) < 1e-9);
}

static void chroma_fb_and_tuning(void **state)
{
	(void)state;
	float *fb = malloc(sizeof(float) * DSP_N_BINS * DSP_N_CHROMA);
	assert_non_null(fb);
	dsp_chroma_fb(0.0, fb);
	struct {
		int bin, pc;
	} cases[] = {{24, 0}, {41, 9}, {61, 4}, {36, 7}};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const float *col = fb + (size_t)cases[i].bin * DSP_N_CHROMA;
		int best = 0;
		for (int c = 1; c < 12; c++)
			if (col[c] > col[best])
				best = c;
		assert_int_equal(best, cases[i].pc);
	}
	/* a frame of pure power in one bin gives chroma max 1 on its pitch class */
	float pw[DSP_N_BINS] = {0}, chroma[12];
	pw[41] = 5.0f;
	dsp_chroma_frame(fb, pw, chroma);
	assert_true(chroma[9] == 1.0f);
	memset(pw, 0, sizeof pw);
	dsp_chroma_frame(fb, pw, chroma);
	assert_true(chroma[0] == 0.0f && chroma[9] == 0.0f);

	/* tuning of a sine 0.3 semitones sharp of A4, and of silence */
	static float x[22050 * 3];
	for (size_t i = 0; i < 22050 * 3; i++)
		x[i] = (float)(0.5 *
		               sin(2 * M_PI * 440.0 * pow(2.0, 0.3 / 12) * (double)i / 22050));
	struct dsp_stft st;
	char err[128];
	assert_int_equal(dsp_stft_init(&st, err, sizeof err), 0);
	size_t T = dsp_n_frames(22050 * 3);
	struct dsp_peaks pk = {malloc(sizeof(struct dsp_peak) * dsp_peaks_cap(T)), 0,
	                       dsp_peaks_cap(T)};
	assert_non_null(pk.p);
	float mag[DSP_N_BINS];
	for (size_t t = 0; t < T; t++) {
		dsp_stft_frame(&st, x, 22050 * 3, t, mag, pw);
		dsp_peaks_frame(&pk, pw);
	}
	double tuning = dsp_tuning_from_peaks(&pk);
	/* piptrack's parabola through power (not log) values is biased by a few cents on a
	 * Hann-windowed sine (this port of it reads 0.33 here) */
	assert_true(fabs(tuning - 0.3) <= 0.05);
	pk.n = 0;
	assert_true(dsp_tuning_from_peaks(&pk) == 0.0);
	free(pk.p);
	dsp_stft_free(&st);
	free(fb);
}

/* ---- onset, tempo, beats ---------------------------------------------------------- */

static void onset_env_alignment(void **state)
{
	(void)state;
	enum { T = 40 };
	static float db[T * DSP_N_MELS];
	for (size_t i = 0; i < T * DSP_N_MELS; i++)
		db[i] = -80.0f;
	for (int m = 0; m < DSP_N_MELS; m++)
		for (int t = 10; t < T; t++)
			db[t * DSP_N_MELS + m] = -20.0f; /* every band rises by 60 dB at frame 10 */
	float env[T], scratch[DSP_N_MELS];
	dsp_onset_env(db, T, env, scratch);
	for (int t = 0; t < T; t++)
		assert_true(env[t] == (t == 12 ? 60.0f : 0.0f)); /* librosa's 3-frame offset */
}

static void tempo_and_beats_of_a_pulse_train(void **state)
{
	(void)state;
	enum { T = 1000 };
	static float env[T];
	for (int t = 0; t < T; t++)
		env[t] = (t % 22 == 5) ? 1.0f : 0.0f;
	struct dsp_tg_work w;
	char err[128];
	assert_int_equal(dsp_tg_work_init(&w, err, sizeof err), 0);
	double tg[DSP_TG_WIN];
	dsp_tempogram_mean(&w, env, T, tg);
	assert_true(fabs(tg[0] - 1.0) < 1e-6);
	int lag = dsp_tempo_lag(tg);
	assert_int_equal(lag, 22);
	assert_true(fabs(dsp_lag_bpm(22) - 117.45383522727273) < 1e-9);
	assert_true(fabs(dsp_refine_lag(tg, lag) - 22.0) < 0.05);
	void *work = malloc(dsp_beats_work_bytes(T));
	int beats[T];
	assert_non_null(work);
	size_t nb = dsp_beat_track(env, T, dsp_lag_bpm(22), work, beats);
	assert_true(nb >= 40);
	for (size_t i = 0; i < nb; i++)
		assert_int_equal(beats[i] % 22, 5);
	for (int t = 0; t < T; t++)
		env[t] = 0.0f;
	assert_int_equal(dsp_beat_track(env, T, 120.0, work, beats), 0);
	free(work);
	dsp_tg_work_free(&w);
}

static void acf_and_refinement(void **state)
{
	(void)state;
	static float env[4000];
	for (int t = 0; t < 4000; t++)
		env[t] = (float)sin(2 * M_PI * t / 20.0);
	assert_true(dsp_acf_at(env, 4000, 20.0) > 0.99);
	assert_true(dsp_acf_at(env, 4000, 10.0) < -0.99);
	assert_true(dsp_acf_at(env, 4000, 5000.0) == 0.0);
	double tg[DSP_TG_WIN] = {0};
	for (int k = 0; k < DSP_TG_WIN; k++)
		tg[k] = 1.0 - 0.01 * (k - 30.3) * (k - 30.3);
	assert_true(fabs(dsp_refine_lag(tg, 30) - 30.3) < 1e-9);
	tg[31] = 2.0; /* 30 is no longer a peak: keep the grid value */
	assert_true(dsp_refine_lag(tg, 30) == 30.0);
}

/* The reported tempo through the tracker's slips: onsets every 19.38 frames (133.33 BPM),
 * tracked at whole frames; after beat 50 the tracker follows a fill, four steps of 17.3
 * frames, and goes on 0.43 of a beat early. The slope through all beats (the level score's
 * refinement) counts the fill's steps as whole beats and reads the tempo fast; the stretches
 * on either side, each with its own phase, give it within 0.01 BPM. */
static void precise_period_through_slips(void **state)
{
	(void)state;
	enum { NB = 120, T = 2500 };
	const double P = 19.38, bpm = 60.0 * DSP_FPS / P;
	static float env[T];
	int beats[NB];
	for (int t = 0; t < T; t++)
		for (int j = 0; j < NB + 2; j++) {
			double d = t - (30.0 + j * P);
			env[t] += (float)exp(-0.5 * d * d);
		}
	for (int j = 0; j < NB; j++) {
		double at = 30.0 + j * P;
		if (j >= 50 && j < 54)
			at = 30.0 + 50 * P + (j - 50) * (P - 2.1);
		else if (j >= 54)
			at = 30.0 + 50 * P + 4 * (P - 2.1) + (j - 54) * P;
		beats[j] = (int)lround(at);
	}
	double whole = 60.0 * DSP_FPS / dsp_refine_period_from_beats(beats, NB, 19.0);
	double precise = 60.0 * DSP_FPS / dsp_precise_period(env, T, beats, NB, 19.0);
	print_message("# %.2f BPM: one slope %.3f, stretches %.3f\n", bpm, whole, precise);
	assert_true(fabs(whole - bpm) > 0.1);
	assert_true(fabs(precise - bpm) < 0.01);
	/* no steady stretch of 8 beats: the period comes back as it was */
	int jumpy[NB];
	for (int j = 0; j < NB; j++)
		jumpy[j] = (int)lround(30.0 + j * P + (j % 5 == 4 ? 6.0 : 0.0));
	assert_true(dsp_precise_period(env, T, jumpy, NB, 19.0) == 19.0);
}

/* ---- key -------------------------------------------------------------------------- */

/* A timeline of 2-second chords from "G F C G"-style specs: root pitch class and minor. */
static size_t chord_line(const int (*spec)[2], size_t n, struct dsp_chord *c)
{
	for (size_t i = 0; i < n; i++) {
		c[i] = (struct dsp_chord){.start_s = 2.0 * (double)i,
		                          .end_s = 2.0 * (double)(i + 1),
		                          .root_pc = spec[i][0],
		                          .quality = spec[i][1] ? DSP_CHORD_MIN : DSP_CHORD_MAJ,
		                          .confidence = 0.9};
		snprintf(c[i].label, sizeof c[i].label, "%s%s", dsp_pitch_name(spec[i][0]),
		         spec[i][1] ? "m" : "");
	}
	return n;
}

/* The modes a pitch profile cannot tell apart: each progression plays the notes of C major
 * (or of C major plus one borrowed note), and its key is its tonic's. */
static void key_of_chords_in_modes(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		int spec[8][2];
		size_t n;
		int key; /* 2 * pc + minor */
	} cases[] = {
		{"G mixolydian: G F C G", {{7, 0}, {5, 0}, {0, 0}, {7, 0}}, 4, 2 * 7},
		{"D dorian: Dm G Dm C Dm", {{2, 1}, {7, 0}, {2, 1}, {0, 0}, {2, 1}}, 5, 2 * 2 + 1},
		{"F lydian: F G F Em F", {{5, 0}, {7, 0}, {5, 0}, {4, 1}, {5, 0}}, 5, 2 * 5},
		{"A aeolian: Am F C G Am", {{9, 1}, {5, 0}, {0, 0}, {7, 0}, {9, 1}}, 5, 2 * 9 + 1},
		{"C ionian from vi: Am F C G C", {{9, 1}, {5, 0}, {0, 0}, {7, 0}, {0, 0}}, 5, 0},
		/* the closing D was not heard in the first half: a modulation, not home */
		{"C ionian, modulating to D: C F G C D G A D",
	         {{0, 0}, {5, 0}, {7, 0}, {0, 0}, {2, 0}, {7, 0}, {9, 0}, {2, 0}},
	         8,
	         0},
		/* a minor chord on the tonic of a major key counts for it (a borrowed i, or the
		 * recogniser hearing the tonic's third wrong); against it, F major won */
		{"C ionian, its tonic once heard as minor: F C Cm C",
	         {{5, 0}, {0, 0}, {0, 1}, {0, 0}},
	         4,
	         0},
		{"E phrygian: Em F Em Dm Em",
	         {{4, 1}, {5, 0}, {4, 1}, {2, 1}, {4, 1}},
	         5,
	         2 * 4 + 1},
	};
	struct dsp_chord c[8];
	double scores[24], conf = -1.0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = chord_line(cases[i].spec, cases[i].n, c);
		int k = dsp_key_chords(c, n, scores, &conf);
		if (k != cases[i].key)
			fail_msg("%s: got %s %s", cases[i].what, dsp_pitch_name(k / 2),
			         k % 2 ? "minor" : "major");
		assert_true(conf > 0.5 && conf <= 1.0);
	}

	/* no chord long enough to vote: no key, the confidence untouched */
	c[0] = (struct dsp_chord){.start_s = 0.0,
	                          .end_s = 10.0,
	                          .root_pc = -1,
	                          .quality = DSP_CHORD_NONE,
	                          .label = "N"};
	c[1] = (struct dsp_chord){.start_s = 10.0,
	                          .end_s = 10.2,
	                          .root_pc = 0,
	                          .quality = DSP_CHORD_MAJ,
	                          .label = "C"};
	conf = -1.0;
	assert_int_equal(dsp_key_chords(c, 2, scores, &conf), -1);
	assert_true(conf == -1.0);
	assert_int_equal(dsp_key_chords(c, 0, scores, &conf), -1);

	/* one chord throughout: its own key, far ahead; C and Am alternating, opening on C and
	 * closing on Am: the opening and the closing chord weigh alike, a tie (confidence 0.5);
	 * closing on C instead, C major well ahead */
	static const int one[1][2] = {{0, 0}};
	assert_int_equal(dsp_key_chords(c, chord_line(one, 1, c), scores, &conf), 0);
	assert_true(conf > 0.99);
	static const int alt[4][2] = {{0, 0}, {9, 1}, {0, 0}, {9, 1}};
	double tied;
	int k = dsp_key_chords(c, chord_line(alt, 4, c), scores, &tied);
	assert_true(k == 0 || k == 2 * 9 + 1);
	assert_true(fabs(tied - 0.5) < 1e-9);
	static const int alt_home[5][2] = {{0, 0}, {9, 1}, {0, 0}, {9, 1}, {0, 0}};
	assert_int_equal(dsp_key_chords(c, chord_line(alt_home, 5, c), scores, &tied), 0);
	assert_true(tied > 0.9);
}

static void key_profiles_and_camelot(void **state)
{
	(void)state;
	static const double MAJOR[12] = {6.35, 2.23, 3.48, 2.33, 4.38, 4.09,
	                                 2.52, 5.19, 2.39, 3.66, 2.29, 2.88};
	double chroma[12], scores[24];
	for (int i = 0; i < 12; i++)
		chroma[(7 + i) % 12] = MAJOR[i]; /* G major's profile itself */
	int best = dsp_key_kk(chroma, scores);
	assert_int_equal(best, 2 * 7);
	assert_true(fabs(scores[best] - 1.0) < 1e-12);
	for (int i = 0; i < 12; i++)
		chroma[i] = 0.5;
	assert_int_equal(dsp_key_kk(chroma, scores), -1);
	chroma[3] = NAN;
	assert_int_equal(dsp_key_kk(chroma, scores), -1);

	static const char *const MAJ[12] = {"8B", "3B", "10B", "5B",  "12B", "7B",
	                                    "2B", "9B", "4B",  "11B", "6B",  "1B"};
	static const char *const MIN[12] = {"5A",  "12A", "7A", "2A", "9A", "4A",
	                                    "11A", "6A",  "1A", "8A", "3A", "10A"};
	char buf[4];
	for (int pc = 0; pc < 12; pc++) {
		dsp_camelot(pc, 0, buf);
		assert_string_equal(buf, MAJ[pc]);
		dsp_camelot(pc, 1, buf);
		assert_string_equal(buf, MIN[pc]);
	}
	assert_string_equal(dsp_pitch_name(1), "C#");
	assert_string_equal(dsp_pitch_name(12), "?");
}

/* ---- options, JSON, CLI ----------------------------------------------------------- */

static void feature_names(void **state)
{
	(void)state;
	unsigned m = 0;
	char err[256];
	assert_int_equal(dsp_features_parse("tempo,key", &m, err, sizeof err), 0);
	assert_int_equal(m, DSP_FEAT_TEMPO | DSP_FEAT_KEY);
	assert_int_equal(dsp_features_parse("all", &m, err, sizeof err), 0);
	assert_int_equal(m, DSP_FEAT_ALL);
	assert_int_equal(dsp_features_parse("spectral,mfcc,chroma,energy", &m, err, sizeof err), 0);
	assert_int_equal(m, DSP_FEAT_SPECTRAL | DSP_FEAT_MFCC | DSP_FEAT_CHROMA | DSP_FEAT_ENERGY);
	m = 77;
	assert_int_equal(dsp_features_parse("tempo,bpm", &m, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "'bpm'"));
	assert_int_equal(m, 77); /* untouched on failure */
	assert_int_equal(dsp_features_parse("", &m, err, sizeof err), SFA_EINVAL);
	assert_int_equal(dsp_features_parse("tempo,", &m, err, sizeof err), SFA_EINVAL);
	assert_int_equal(dsp_features_parse("averyveryverylongfeaturename", &m, err, sizeof err),
	                 SFA_EINVAL);
	assert_int_equal(dsp_features_parse(" tempo , key", &m, err, sizeof err), 0);
	assert_int_equal(m, DSP_FEAT_TEMPO | DSP_FEAT_KEY);
	assert_int_equal(dsp_features_parse(NULL, &m, err, sizeof err), SFA_EINVAL);
	assert_int_equal(dsp_features_parse("tempo,,key", &m, err, sizeof err), SFA_EINVAL);
	assert_int_equal(dsp_feature_bit("chroma"), DSP_FEAT_CHROMA);
	assert_int_equal(dsp_feature_bit("Chroma"), 0);
}

/* DJ software shows tempo to a tenth: click tracks read within +-0.1 BPM (the tempogram's
 * lag grid alone gave 123.58 for 124 and 128.52 for 128; the beats' slope refines it).
 * And the grid sits on the clicks: the beats' median distance to the nearest click is
 * within half a frame (11.6 ms; the tracker's own frames were 17.6 ms late). */
static void click_tempo_is_precise(void **state)
{
	(void)state;
	static const double bpms[] = {90.0, 124.0, 128.0, 140.0, 174.0};
	for (size_t k = 0; k < sizeof bpms / sizeof bpms[0]; k++) {
		size_t n = (size_t)(20.0 * DSP_SAMPLE_RATE_HZ);
		float *x = calloc(n, sizeof *x);
		assert_non_null(x);
		double period = DSP_SAMPLE_RATE_HZ * 60.0 / bpms[k];
		for (double t0 = 0.25 * DSP_SAMPLE_RATE_HZ; t0 < (double)n; t0 += period)
			for (size_t i = 0; i < 1000 && (size_t)t0 + i < n; i++)
				x[(size_t)t0 + i] = (float)(0.8 * exp(-(double)i / 120.0) *
				                            sin(2.0 * M_PI * 1500.0 * (double)i /
				                                DSP_SAMPLE_RATE_HZ));
		struct dsp_options opt = {.features = DSP_FEAT_TEMPO};
		struct dsp_result r;
		char err[256];
		assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
		float *off = calloc(r.n_beats, sizeof *off);
		assert_non_null(off);
		for (size_t b = 0; b < r.n_beats; b++) {
			double t = (double)r.beats[b] * DSP_HOP / DSP_SR_HZ - 0.25;
			double click = 0.25 + round(t / (60.0 / bpms[k])) * (60.0 / bpms[k]);
			off[b] = (float)((double)r.beats[b] * DSP_HOP / DSP_SR_HZ - click);
		}
		double med = r.n_beats ? dsp_median_f32(off, r.n_beats) : 1.0;
		free(off);
		printf("# %.0f BPM clicks read %.3f, beats %+.1f ms from the clicks\n", bpms[k],
		       r.tempo_bpm, 1000.0 * med);
		if (fabs(r.tempo_bpm - bpms[k]) > 0.1)
			fail_msg("%.0f BPM clicks read %.3f BPM", bpms[k], r.tempo_bpm);
		if (fabs(med) > 0.5 * DSP_HOP / DSP_SR_HZ)
			fail_msg("%.0f BPM clicks: the beats are %+.1f ms from the clicks", bpms[k],
			         1000.0 * med);
		dsp_result_free(&r);
		free(x);
	}
}

/* How many of the n frames lie within 70 ms of a multiple of period seconds. */
static size_t on_grid(const int *frames, size_t n, double period)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		double t = (double)frames[i] * DSP_HOP / DSP_SR_HZ;
		k += fabs(t - round(t / period) * period) <= 0.07;
	}
	return k;
}

/* House with the bass on the off-beats, louder there than the kick is on the beats, over
 * chords held a bar each: librosa's tracker follows its envelope's strongest onsets and
 * puts every beat half a beat early. The beats must be on the kicks, the bars on the
 * chord changes. */
static void offbeat_bass_keeps_the_beats_on_the_kicks(void **state)
{
	(void)state;
	const double bpm = 124.0, beat = 60.0 / bpm;
	size_t n;
	float *x = synth_alloc(24.0, &n);
	assert_non_null(x);
	synth_drums(x, n, bpm, SYNTH_FOURFLOOR, 0.3, 5);
	static const int prog[4] = {6, 4, 1, 5}; /* vi IV I V in C, a bar each */
	synth_chords(x, n, 0, 0, prog, 4, 4 * beat, 0, 0.2);
	static const int roots[4] = {9, 5, 0, 7};
	size_t len = (size_t)(0.16 * DSP_SAMPLE_RATE_HZ);
	for (int k = 0; (k + 0.5) * beat + 0.2 < (double)n / DSP_SAMPLE_RATE_HZ; k++) {
		size_t at = (size_t)((k + 0.5) * beat * DSP_SAMPLE_RATE_HZ);
		double hz = 55.0 * pow(2.0, ((roots[(k / 4) % 4] + 3) % 12) / 12.0);
		synth_tone(x + at, len, hz, 0.8);
		synth_tone(x + at, len, 2.0 * hz, 0.4);
	}
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	size_t on = on_grid(r.beats, r.n_beats, beat);
	size_t down = on_grid(r.downbeats, r.n_downbeats, 4 * beat);
	printf("# %.2f BPM: %zu of %zu beats on the kicks, %zu of %zu downbeats on bar starts\n",
	       r.tempo_bpm, on, r.n_beats, down, r.n_downbeats);
	assert_true(fabs(r.tempo_bpm / bpm - 1.0) <= 0.04);
	assert_true(r.n_beats >= 30 && on >= r.n_beats * 9 / 10);
	assert_true(r.n_downbeats >= 8 && down >= r.n_downbeats * 9 / 10);
	dsp_result_free(&r);
	free(x);
}

/* An intro of held chords without drums, then drums: librosa's tracker starts its beats
 * with the drums; the grid must run from the first chord, on the drums' phase. */
static void beat_grid_covers_an_intro_without_drums(void **state)
{
	(void)state;
	const double bpm = 120.0, beat = 0.5, intro = 8.0;
	size_t n;
	float *x = synth_alloc(24.0, &n);
	assert_non_null(x);
	static const int prog[4] = {1, 5, 6, 4};
	synth_chords(x, n, 2, 0, prog, 4, 4 * beat, 0, 0.3);
	size_t at = (size_t)(intro * DSP_SAMPLE_RATE_HZ);
	synth_drums(x + at, n - at, bpm, SYNTH_BACKBEAT, 0.5, 3);
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	size_t in_intro = 0, on = on_grid(r.beats, r.n_beats, beat);
	for (size_t b = 0; b < r.n_beats; b++)
		in_intro += (double)r.beats[b] * DSP_HOP / DSP_SR_HZ < intro;
	double first = r.n_beats ? (double)r.beats[0] * DSP_HOP / DSP_SR_HZ : 99.0;
	printf("# first beat %.2f s, %zu beats in the intro, %zu of %zu on the grid\n", first,
	       in_intro, on, r.n_beats);
	assert_true(first <= beat + 0.07);
	assert_true(in_intro >= 15);
	assert_true(on >= r.n_beats * 9 / 10);
	/* the bars go back with the beats: a downbeat every 4 beats from the start */
	assert_true(r.n_downbeats >= 11);
	assert_true((double)r.downbeats[0] * DSP_HOP / DSP_SR_HZ <= 4 * beat + 0.07);
	dsp_result_free(&r);
	free(x);
}

/* The percussive part's onsets: a held chord entering rises in every band of the whole
 * spectrum but not above the band's median over 17 frames; a kick does. */
static void percussive_onsets_ignore_held_notes(void **state)
{
	(void)state;
	enum { T = 200, CHORD_AT = 50, KICK_AT = 150 };
	static float db[T * DSP_N_MELS];
	for (size_t t = 0; t < T; t++)
		for (int m = 0; m < DSP_N_MELS; m++)
			db[t * DSP_N_MELS + (size_t)m] =
				-80.0f + (t >= CHORD_AT && m >= 10 && m < 60 ? 50.0f : 0.0f) +
				(t >= KICK_AT && t < KICK_AT + 2 && m < 40 ? 60.0f : 0.0f);
	static const int bands[1][2] = {{0, DSP_N_MELS}};
	static float whole[T], perc[T], col[DSP_PERC_LANES * T];
	float *env[1] = {perc};
	dsp_band_onsets(db, T, 0, DSP_N_MELS, whole);
	dsp_percussive_onsets(db, T, bands, 1, col, env);
	/* both envelopes see frame t - 2's rise at t */
	printf("# chord: whole %.2f, percussive %.2f; kick: whole %.2f, percussive %.2f\n",
	       whole[CHORD_AT + 2], perc[CHORD_AT + 2], whole[KICK_AT + 2], perc[KICK_AT + 2]);
	assert_true(whole[CHORD_AT + 2] > 15.0f);
	for (size_t t = 0; t < KICK_AT; t++)
		assert_true(perc[t] == 0.0f);
	assert_true(perc[KICK_AT + 2] > 15.0f);
	assert_true(fabsf(perc[KICK_AT + 2] - whole[KICK_AT + 2]) < 1e-3f);
}

/* The median filter's lanes against the definition (sort each 17-frame window, edges
 * repeating): equal on random levels with many ties and on a song shorter than a window,
 * band by band, for bands starting anywhere. */
static void percussive_onsets_match_sorted_windows(void **state)
{
	(void)state;
	enum { H = 8, W = 2 * H + 1 };
	static const size_t lengths[] = {300, 5, 1};
	static const int bands[3][2] = {{0, 5}, {7, 40}, {33, 128}};
	uint32_t rng = 7;
	for (size_t c = 0; c < sizeof lengths / sizeof lengths[0]; c++) {
		size_t T = lengths[c];
		float *db = malloc(T * DSP_N_MELS * sizeof *db),
		      *col = malloc(DSP_PERC_LANES * T * 4);
		float *env[3], *want[3], *perc = malloc(T * sizeof *perc);
		assert_non_null(db);
		assert_non_null(col);
		assert_non_null(perc);
		for (size_t i = 0; i < T * DSP_N_MELS; i++) {
			rng = rng * 1664525u + 1013904223u;
			db[i] = -80.0f + (float)(rng >> 28) * 5.0f; /* 16 levels: ties everywhere */
		}
		for (int b = 0; b < 3; b++) {
			env[b] = malloc(T * sizeof(float));
			want[b] = calloc(T, sizeof(float));
			assert_true(env[b] && want[b]);
		}
		dsp_percussive_onsets(db, T, bands, 3, col, env);
		for (int m = 0; m < DSP_N_MELS; m++) {
			for (size_t t = 0; t < T; t++) {
				float win[W];
				for (int k = 0; k < W; k++) {
					long i = (long)t + k - H;
					win[k] = db[(i < 0          ? 0
					             : i >= (long)T ? T - 1
					                            : (size_t)i) *
					                    DSP_N_MELS +
					            (size_t)m];
				}
				qsort(win, W, sizeof *win, cmp_float);
				float v = db[t * DSP_N_MELS + (size_t)m] - win[H];
				perc[t] = v > 0.0f ? v : 0.0f;
			}
			for (int b = 0; b < 3; b++)
				for (size_t t = 3; m >= bands[b][0] && m < bands[b][1] && t < T;
				     t++)
					if (perc[t - 2] > perc[t - 3])
						want[b][t] += perc[t - 2] - perc[t - 3];
		}
		for (int b = 0; b < 3; b++) {
			for (size_t t = 3; t < T; t++)
				want[b][t] /= (float)(bands[b][1] - bands[b][0]);
			for (size_t t = 0; t < T; t++)
				if (env[b][t] != want[b][t])
					fail_msg(
						"T %zu, band %d, frame %zu: %g, sorted windows give %g",
						T, b, t, (double)env[b][t], (double)want[b][t]);
			free(env[b]);
			free(want[b]);
		}
		free(db);
		free(col);
		free(perc);
	}
}

/* A 120 BPM song in bars of 2 s after a one-beat pick-up: intro (8 bars, quiet), build
 * (8, kick on every beat, rising), drop (16), breakdown (8, quiet, no drums to speak of),
 * drop (8), outro (8, quiet). Chords change on every bar. */
static float *make_structured_song(size_t *n)
{
	static const struct {
		int bars;
		enum synth_pattern drums;
		double drums_amp, chords, ramp_from; /* ramp_from < 1: the level rises to 1 */
	} parts[] = {
		{8, SYNTH_BACKBEAT, 0.06, 0.12, 1}, {8, SYNTH_SNARE24, 0.3, 0.25, 0.4},
		{16, SYNTH_BACKBEAT, 0.5, 0.4, 1},  {8, SYNTH_BACKBEAT, 0.03, 0.12, 1},
		{8, SYNTH_BACKBEAT, 0.5, 0.4, 1},   {8, SYNTH_BACKBEAT, 0.06, 0.12, 1},
	};
	const double pickup = 0.5, bar = 2.0;
	float *x = synth_alloc(pickup + 56 * bar, n);
	assert_non_null(x);
	static const int prog[4] = {1, 6, 4, 5};
	size_t at = (size_t)(pickup * DSP_SAMPLE_RATE_HZ);
	synth_chords(x, at, 0, 0, prog + 3, 1, bar, 0, 0.12); /* the pick-up: the last chord */
	for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
		size_t len = (size_t)(parts[p].bars * bar * DSP_SAMPLE_RATE_HZ);
		synth_drums(x + at, len, 120, parts[p].drums, parts[p].drums_amp, 7 + p);
		synth_chords(x + at, len, 0, 0, prog, 4, bar, 0, parts[p].chords);
		for (size_t i = 0; parts[p].ramp_from < 1 && i < len; i++)
			x[at + i] *= (float)(parts[p].ramp_from +
			                     (1 - parts[p].ramp_from) * (double)i / len);
		at += len;
	}
	return x;
}

/* Bars start where the chords change (after the pick-up), in 4/4; the sections are found
 * within a bar of where the parts change and labelled by their level. */
static void downbeats_and_sections(void **state)
{
	(void)state;
	size_t n;
	float *x = make_structured_song(&n);
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO | DSP_FEAT_SECTIONS};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	assert_int_equal(r.beats_per_bar, 4);
	size_t near = 0;
	for (size_t i = 0; i < r.n_downbeats; i++) {
		double t = (double)r.downbeats[i] * 512 / DSP_SAMPLE_RATE_HZ;
		double k = round((t - 0.5) / 2.0);
		near += fabs(t - (0.5 + 2.0 * k)) <= 0.07;
	}
	printf("# %zu of %zu downbeats on the bar starts; %zu sections:", near, r.n_downbeats,
	       r.n_sections);
	for (size_t i = 0; i < r.n_sections; i++)
		printf(" %s@%d", r.sections[i].label, r.sections[i].bar);
	printf("\n");
	assert_true(r.n_downbeats >= 40); /* the tracker leaves out the quiet intro's beats */
	assert_true(near >= r.n_downbeats * 9 / 10);
	static const int bars[] = {1, 9, 17, 33, 41, 49};
	static const char *const labels[] = {"intro",     "build", "drop",
	                                     "breakdown", "drop",  "outro"};
	assert_int_equal(r.n_sections, 6);
	for (size_t i = 0; i < 6; i++) {
		if (abs(r.sections[i].bar - bars[i]) > 1)
			fail_msg("section %zu starts on bar %d, not %d", i, r.sections[i].bar,
			         bars[i]);
		assert_string_equal(r.sections[i].label, labels[i]);
	}
	assert_true(r.sections[0].start_s == 0.0);
	assert_true(fabs(r.sections[5].end_s - (double)n / DSP_SAMPLE_RATE_HZ) < 0.05);
	/* JSON: downbeats and the time signature come with the beats, sections on request */
	json_t *j;
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	assert_string_equal(json_string_value(json_object_get(j, "time_signature")), "4/4");
	assert_int_equal(json_array_size(json_object_get(j, "downbeats")), r.n_downbeats);
	json_t *s1 = json_array_get(json_object_get(j, "sections"), 1);
	assert_string_equal(json_string_value(json_object_get(s1, "label")), "build");
	assert_int_equal(json_integer_value(json_object_get(s1, "bar")), r.sections[1].bar);
	json_decref(j);
	dsp_result_free(&r);
	free(x);
}

/* A 120 BPM song, a chord a bar (2 s) over rock drums, twice through C, Am, Fmaj7, G7, Em,
 * Dm7, then 2 s of silence: each bar reads as its chord, the silence as N, and the
 * segments tile the song. The major and minor sevenths must read as sevenths; the G7 (its
 * root doubled by the bass, the snare's body near G) may read G: the cost a seventh pays
 * (chords.c) is set on the corpus, where a false seventh is the commoner error. */
static void chords_of_a_progression(void **state)
{
	(void)state;
	static const struct {
		int root, n, iv[4];
		const char *label;
	} prog[] = {
		{0, 3, {0, 4, 7}, "C"},         {9, 3, {0, 3, 7}, "Am"},
		{5, 4, {0, 4, 7, 11}, "Fmaj7"}, {7, 4, {0, 4, 7, 10}, "G7"},
		{4, 3, {0, 3, 7}, "Em"},        {2, 4, {0, 3, 7, 10}, "Dm7"},
	};
	const size_t bar = 2 * DSP_SAMPLE_RATE_HZ, n_bars = 12;
	size_t n;
	float *x = synth_alloc(2.0 * (double)n_bars + 2.0, &n);
	assert_non_null(x);
	synth_drums(x, n_bars * bar, 120, SYNTH_BACKBEAT, 0.3, 11);
	for (size_t b = 0; b < n_bars; b++)
		synth_chord(x + b * bar, bar, prog[b % 6].root, prog[b % 6].iv, prog[b % 6].n,
		            0.35);
	struct dsp_options opt = {.features = DSP_FEAT_CHORDS};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	assert_true(r.n_beats > 30); /* chords ask for the beats */
	printf("# chords:");
	for (size_t i = 0; i < r.n_chords; i++)
		printf(" %s@%.2f(%.2f)", r.chords[i].label, r.chords[i].start_s,
		       r.chords[i].confidence);
	printf("\n");
	assert_true(r.n_chords >= 13 && r.n_chords <= 20);
	assert_true(r.chords[0].start_s == 0.0);
	assert_true(r.chords[r.n_chords - 1].end_s == r.duration_s);
	for (size_t i = 0; i < r.n_chords; i++) {
		assert_true(r.chords[i].end_s > r.chords[i].start_s);
		assert_true(r.chords[i].confidence >= 0.0 && r.chords[i].confidence <= 1.0);
		if (i)
			assert_true(r.chords[i].start_s == r.chords[i - 1].end_s);
	}
	/* the middle 1.4 s of every bar is inside one chord with the bar's label */
	for (size_t b = 0; b < n_bars; b++) {
		double a = 2.0 * (double)b + 0.3, z = 2.0 * (double)b + 1.7;
		size_t i = 0;
		while (i < r.n_chords && r.chords[i].end_s <= a)
			i++;
		assert_true(i < r.n_chords);
		int same = strcmp(r.chords[i].label, prog[b % 6].label) == 0 ||
		           (strcmp(prog[b % 6].label, "G7") == 0 &&
		            strcmp(r.chords[i].label, "G") == 0);
		if (!same || r.chords[i].end_s < z)
			fail_msg("bar %zu reads %s from %.2f to %.2f, not %s", b + 1,
			         r.chords[i].label, r.chords[i].start_s, r.chords[i].end_s,
			         prog[b % 6].label);
	}
	const struct dsp_chord *last = &r.chords[r.n_chords - 1];
	assert_string_equal(last->label, "N");
	/* within a beat (0.5 s here) of the music's end: chords change on beats */
	assert_true(last->start_s < 2.0 * (double)n_bars + 0.55);
	/* JSON: the chords alone, beside the duration */
	json_t *j;
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	assert_null(json_object_get(j, "tempo"));
	json_t *c1 = json_array_get(json_object_get(j, "chords"), 1);
	assert_string_equal(json_string_value(json_object_get(c1, "label")), r.chords[1].label);
	assert_true(json_real_value(json_object_get(c1, "start")) == r.chords[1].start_s);
	assert_non_null(json_object_get(c1, "confidence"));
	json_decref(j);
	dsp_result_free(&r);

	/* without beats (no onsets at all: a chord held for 6 s) the segments are half-seconds */
	float *y = synth_alloc(6.0, &n);
	assert_non_null(y);
	for (size_t i = 0; i < n; i++)
		y[i] = (float)(0.3 * sin(2.0 * M_PI * 261.63 * (double)i / DSP_SAMPLE_RATE_HZ) +
		               0.3 * sin(2.0 * M_PI * 311.13 * (double)i / DSP_SAMPLE_RATE_HZ) +
		               0.3 * sin(2.0 * M_PI * 392.00 * (double)i / DSP_SAMPLE_RATE_HZ));
	assert_int_equal(dsp_analyze(y, n, &opt, &r, err, sizeof err), 0);
	assert_int_equal(r.n_chords, 1);
	assert_string_equal(r.chords[0].label, "Cm");
	dsp_result_free(&r);
	free(y);
	free(x);
}

/* The same four notes above two bass lines: C E G A over an A (Am7) in the even bars and
 * over a C (C6) in the odd ones, at 120 BPM over drums. Chroma_stft's 2048-point frames
 * smear the bass over its neighbours, so without the bass chroma (chords.c) both bars read
 * alike; with it the A bars have the root A and the C bars the root C. */
static void chords_root_from_the_bass(void **state)
{
	(void)state;
	static const double upper_hz[4] = {261.63, 329.63, 392.00, 440.00}; /* C4 E4 G4 A4 */
	const size_t bar = 2 * DSP_SAMPLE_RATE_HZ, n_bars = 8;
	size_t n;
	float *x = synth_alloc(2.0 * (double)n_bars, &n);
	assert_non_null(x);
	synth_drums(x, n_bars * bar, 120, SYNTH_BACKBEAT, 0.3, 3);
	for (size_t b = 0; b < n_bars; b++) {
		for (int j = 0; j < 4; j++)
			synth_tone(x + b * bar, bar, upper_hz[j], 0.08);
		/* A1 and A2 (the bass chroma hears A2: below C2 it leaves the kick drum's
		 * tail out), or C2 and C3 */
		double f = b % 2 ? 65.41 : 55.0;
		synth_tone(x + b * bar, bar, f, 0.25);
		synth_tone(x + b * bar, bar, 2.0 * f, 0.12);
	}
	struct dsp_options opt = {.features = DSP_FEAT_CHORDS};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	printf("# chords:");
	for (size_t i = 0; i < r.n_chords; i++)
		printf(" %s@%.2f", r.chords[i].label, r.chords[i].start_s);
	printf("\n");
	/* the middle second of every bar is inside one chord on the bass note's root */
	for (size_t b = 0; b < n_bars; b++) {
		double a = 2.0 * (double)b + 0.5, z = a + 1.0;
		size_t i = 0;
		while (i < r.n_chords && r.chords[i].end_s <= a)
			i++;
		assert_true(i < r.n_chords);
		if (r.chords[i].root_pc != (b % 2 ? 0 : 9) || r.chords[i].end_s < z)
			fail_msg("bar %zu: %s from %.2f to %.2f", b, r.chords[i].label,
			         r.chords[i].start_s, r.chords[i].end_s);
	}
	dsp_result_free(&r);
	free(x);
}

/* A decimated signal's gain (RMS against the sine's) for a 0.5 sine of each of hz[2],
 * within [lo, hi] each: the first passes, the second (which would alias) is cut. */
static void check_decimation(void (*decimate)(const float *, size_t, float *), size_t factor,
                             const double hz[2], const double lo[2], const double hi[2])
{
	size_t n = 4 * DSP_SAMPLE_RATE_HZ, m = n / factor;
	float *x = calloc(n, sizeof *x), *out = calloc(m, sizeof *out);
	assert_non_null(x);
	assert_non_null(out);
	for (int k = 0; k < 2; k++) {
		memset(x, 0, n * sizeof *x);
		synth_tone(x, n, hz[k], 0.5);
		decimate(x, n, out);
		double e = 0.0;
		for (size_t j = m / 4; j < m; j++)
			e += (double)out[j] * out[j];
		double gain = sqrt(e / (double)(m - m / 4)) / (0.5 / sqrt(2.0));
		if (!(gain >= lo[k] && gain <= hi[k]))
			fail_msg("%.0f Hz: gain %.4f", hz[k], gain);
	}
	free(x);
	free(out);
}

/* The bass signal keeps the bass and drops what would fold onto it: a 100 Hz sine comes
 * through at about its level, a 1300 Hz one (which would alias to 78 Hz) 25 dB down. */
static void bass_signal_filters(void **state)
{
	(void)state;
	assert_int_equal(dsp_bass_signal_len(4 * DSP_SAMPLE_RATE_HZ), DSP_SAMPLE_RATE_HZ / 4);
	const double hz[2] = {100.0, 1300.0}, lo[2] = {0.9, 0.0}, hi[2] = {1.01, 0.056};
	check_decimation(dsp_bass_signal, 16, hz, lo, hi);
}

/* The mid signal (the chords' notes F#3-B5) keeps them and drops what would fold onto
 * them: a 440 Hz sine comes through at about its level (the three 4-sample means: 0.97),
 * a 5000 Hz one (which would alias to 513 Hz) more than 40 dB down. */
static void mid_signal_filters(void **state)
{
	(void)state;
	assert_int_equal(dsp_mid_signal_len(4 * DSP_SAMPLE_RATE_HZ), DSP_SAMPLE_RATE_HZ);
	const double hz[2] = {440.0, 5000.0}, lo[2] = {0.95, 0.0}, hi[2] = {1.0, 0.01};
	check_decimation(dsp_mid_signal, 4, hz, lo, hi);
}

/* 24 s of I-vi-IV-V in C major, then 24 s of the same in A major, over drums: two keys,
 * changing within two seconds of 24 s; a song in one key has one stretch. */
static void key_changes_of_a_modulation(void **state)
{
	(void)state;
	static const int prog[4] = {1, 6, 4, 5};
	size_t n, half = 24 * DSP_SAMPLE_RATE_HZ;
	float *x = synth_alloc(48.0, &n);
	assert_non_null(x);
	synth_drums(x, n, 120, SYNTH_BACKBEAT, 0.3, 5);
	synth_chords(x, half, 0, 0, prog, 4, 2.0, 0, 0.35);
	synth_chords(x + half, n - half, 9, 0, prog, 4, 2.0, 0, 0.35);
	struct dsp_options opt = {.features = DSP_FEAT_KEY_CHANGES};
	struct dsp_result r;
	char err[256];
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	printf("# key changes:");
	for (size_t i = 0; i < r.n_key_changes; i++)
		printf(" %s@%.2f", r.key_changes[i].key_name, r.key_changes[i].start_s);
	printf("\n");
	assert_int_equal(r.n_key_changes, 2);
	assert_string_equal(r.key_changes[0].key_name, "C major");
	assert_string_equal(r.key_changes[1].key_name, "A major");
	assert_string_equal(r.key_changes[1].camelot, "11B");
	assert_true(r.key_changes[0].start_s == 0.0);
	assert_true(fabs(r.key_changes[1].start_s - 24.0) < 2.0);
	assert_true(r.key_changes[0].end_s == r.key_changes[1].start_s);
	assert_true(r.key_changes[1].end_s == r.duration_s);
	json_t *j;
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	json_t *k1 = json_array_get(json_object_get(j, "key_changes"), 1);
	assert_string_equal(json_string_value(json_object_get(k1, "key")), "A major");
	assert_true(json_real_value(json_object_get(k1, "start")) == r.key_changes[1].start_s);
	json_decref(j);
	dsp_result_free(&r);
	/* the first half alone: one key throughout */
	assert_int_equal(dsp_analyze(x, half, &opt, &r, err, sizeof err), 0);
	assert_int_equal(r.n_key_changes, 1);
	assert_string_equal(r.key_changes[0].key_name, "C major");
	dsp_result_free(&r);
	/* 20 s of C major, then 28 s of A major (I-vi-IV-V, which the chords also read as F#
	 * minor): the song's key is the key of its longer stretch, asked for with its key
	 * changes or alone */
	size_t third = 20 * DSP_SAMPLE_RATE_HZ;
	memset(x, 0, n * sizeof *x);
	synth_drums(x, n, 120, SYNTH_BACKBEAT, 0.3, 5);
	synth_chords(x, third, 0, 0, prog, 4, 2.0, 0, 0.35);
	synth_chords(x + third, n - third, 9, 0, prog, 4, 2.0, 0, 0.35);
	opt.features = DSP_FEAT_KEY | DSP_FEAT_KEY_CHANGES;
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	assert_int_equal(r.n_key_changes, 2);
	const struct dsp_key_segment *s0 = &r.key_changes[0], *s1 = &r.key_changes[1];
	assert_string_equal(s0->key_name, "C major");
	assert_true(s1->end_s - s1->start_s > s0->end_s - s0->start_s);
	assert_string_equal(r.key_name, s1->key_name);
	assert_string_equal(r.camelot, s1->camelot);
	char key[12];
	snprintf(key, sizeof key, "%s", r.key_name);
	double conf = r.key_confidence;
	dsp_result_free(&r);
	opt.features = DSP_FEAT_KEY;
	assert_int_equal(dsp_analyze(x, n, &opt, &r, err, sizeof err), 0);
	assert_string_equal(r.key_name, key);
	assert_true(r.key_confidence == conf);
	dsp_result_free(&r);
	free(x);
}

/* The key a song stays in longest, over its key segments (C = 0, A major = 18). */
static void key_lasting_longest(void **state)
{
	(void)state;
	double share = -1;
	assert_int_equal(dsp_key_longest(NULL, 0, 7, &share), 7); /* no segments: the vote */
	assert_true(share == 1.0);
	struct dsp_key_segment one[] = {{0, 40, 5, 0, "F major", "7B"}};
	assert_int_equal(dsp_key_longest(one, 1, 2 * 5 + 1, &share), 10); /* vote F minor */
	assert_true(share == 1.0);
	struct dsp_key_segment mod[] = {{0, 16, 0, 0, "C major", "8B"},
	                                {16, 48, 9, 0, "A major", "11B"}};
	assert_int_equal(dsp_key_longest(mod, 2, 0, &share), 18);
	assert_true(fabs(share - 32.0 / 48.0) < 1e-12);
	struct dsp_key_segment back[] = {{0, 10, 0, 0, "C major", "8B"},
	                                 {10, 20, 9, 0, "A major", "11B"},
	                                 {20, 40, 0, 0, "C major", "8B"}};
	assert_int_equal(dsp_key_longest(back, 3, 18, &share), 0); /* stretches add up */
	assert_true(fabs(share - 0.75) < 1e-12);
	struct dsp_key_segment tie[] = {{0, 20, 0, 0, "C major", "8B"},
	                                {20, 40, 9, 0, "A major", "11B"}};
	assert_int_equal(dsp_key_longest(tie, 2, 18, &share), 18); /* a tie keeps the vote */
	assert_int_equal(dsp_key_longest(tie, 2, 0, &share), 0);
	assert_int_equal(dsp_key_longest(tie, 2, 4, &share), 0); /* a vote in no segment */
}

static void chord_labels_parse(void **state)
{
	(void)state;
	int root = -7, iv[4] = {0};
	assert_int_equal(dsp_chord_parse("N", &root, iv), 0);
	assert_int_equal(root, -7);
	assert_int_equal(dsp_chord_parse("C", &root, iv), 3);
	assert_int_equal(root, 0);
	assert_int_equal(iv[1], 4);
	assert_int_equal(dsp_chord_parse("C#m7", &root, iv), 4);
	assert_int_equal(root, 1);
	assert_int_equal(iv[1], 3);
	assert_int_equal(iv[3], 10);
	assert_int_equal(dsp_chord_parse("A#maj7", &root, iv), 4);
	assert_int_equal(root, 10);
	assert_int_equal(iv[3], 11);
	assert_int_equal(dsp_chord_parse("G7", &root, iv), 4);
	assert_int_equal(iv[3], 10);
	static const char *const bad[] = {"", "H", "Cm9", "c", "C#mm", "Db", "N7", "#"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(dsp_chord_parse(bad[i], &root, iv), -1);
	assert_int_equal(dsp_chord_parse(NULL, &root, iv), -1);
}

static float *make_song(double seconds, size_t *n)
{
	float *x = synth_alloc(seconds, n);
	assert_non_null(x);
	static const int prog[4] = {1, 4, 5, 1};
	synth_drums(x, *n, 120, SYNTH_BACKBEAT, 0.4, 3);
	synth_chords(x, *n, 9, 1, prog, 4, 2.0, 1, 0.35); /* A minor */
	return x;
}

static void json_subset_and_pooling(void **state)
{
	(void)state;
	size_t n;
	float *x = make_song(10.0, &n);
	struct dsp_result r;
	char err[256];
	struct dsp_options o = {DSP_FEAT_TEMPO | DSP_FEAT_MFCC, 4.0};
	assert_int_equal(dsp_analyze(x, n, &o, &r, err, sizeof err), 0);
	assert_null(r.chroma);
	assert_null(r.rms);
	json_t *j = NULL;
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	assert_non_null(json_object_get(j, "tempo"));
	assert_non_null(json_object_get(j, "beats"));
	assert_non_null(json_object_get(j, "duration"));
	assert_null(json_object_get(j, "key"));
	assert_null(json_object_get(j, "energy"));
	assert_null(json_object_get(j, "spectral_centroid"));
	json_t *f = json_object_get(j, "features");
	assert_non_null(f);
	assert_null(json_object_get(f, "chroma"));
	assert_int_equal(json_integer_value(json_object_get(f, "frame_rate")), 4);
	assert_true(fabs(json_real_value(json_object_get(j, "duration")) - 10.0) < 1e-9);
	/* 10 s at 4 columns per second: frame 430 at 9.98 s is in column 39 */
	json_t *mfcc = json_object_get(f, "mfcc");
	assert_int_equal(json_array_size(mfcc), 13);
	assert_int_equal(dsp_pooled_columns(&r), 40);
	assert_int_equal(json_array_size(json_array_get(mfcc, 0)), 40);
	/* column 1 is the mean of frames with 0.25 <= t * 512 / 22050 < 0.5: 11 .. 21 */
	double s = 0;
	for (int t = 11; t <= 21; t++)
		s += r.mfcc[2 * r.n_frames + (size_t)t];
	double got = json_real_value(json_array_get(json_array_get(mfcc, 2), 1));
	assert_true(fabs(got - s / 11) < 1e-9);
	/* beats are seconds of the beat frames */
	json_t *beats = json_object_get(j, "beats");
	assert_int_equal(json_array_size(beats), r.n_beats);
	assert_true(r.n_beats > 10);
	assert_true(fabs(json_real_value(json_array_get(beats, 3)) - r.beats[3] * 512.0 / 22050) <
	            1e-12);
	assert_true(fabs(json_real_value(json_object_get(j, "tempo")) - 120.0) < 120 * 0.04);
	json_decref(j);
	dsp_result_free(&r);

	/* everything, with a fractional frame rate */
	o.features = DSP_FEAT_ALL;
	o.frame_rate = 0.5;
	assert_int_equal(dsp_analyze(x, n, &o, &r, err, sizeof err), 0);
	assert_int_equal(dsp_result_to_json(&r, &j, err, sizeof err), 0);
	static const char *const keys[] = {"tempo",
	                                   "tempo_confidence",
	                                   "key",
	                                   "key_confidence",
	                                   "camelot",
	                                   "energy",
	                                   "spectral_centroid",
	                                   "spectral_rolloff",
	                                   "zero_crossing_rate",
	                                   "beats",
	                                   "downbeats",
	                                   "time_signature",
	                                   "sections",
	                                   "chords",
	                                   "key_changes",
	                                   "duration",
	                                   "features"};
	const char *k;
	json_t *v;
	size_t i = 0;
	json_object_foreach(j, k, v)
	{
		assert_true(i < sizeof keys / sizeof keys[0]);
		assert_string_equal(k, keys[i]);
		i++;
	}
	assert_string_equal(json_string_value(json_object_get(j, "key")), "A minor");
	assert_string_equal(json_string_value(json_object_get(j, "camelot")), "8A");
	f = json_object_get(j, "features");
	assert_true(json_real_value(json_object_get(f, "frame_rate")) == 0.5);
	assert_int_equal(json_array_size(json_object_get(f, "chroma")), 12);
	assert_int_equal(json_array_size(json_array_get(json_object_get(f, "chroma"), 0)), 5);
	json_decref(j);
	dsp_result_free(&r);
	free(x);
}

/* Runs dsp_cli_analyze with stdout captured into *out (malloced). Returns its status. */
static int run_cli(int argc, char **argv, char **out)
{
	char path[] = "/tmp/sfa_dsp_cli_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	fflush(stdout);
	int saved = dup(1);
	dup2(fd, 1);
	int rc = dsp_cli_analyze(argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	off_t len = lseek(fd, 0, SEEK_END);
	*out = calloc((size_t)len + 1, 1);
	assert_non_null(*out);
	assert_int_equal(pread(fd, *out, (size_t)len, 0), len);
	close(fd);
	unlink(path);
	return rc;
}

static void cli_prints_the_api_object(void **state)
{
	(void)state;
	size_t n;
	float *x = make_song(6.0, &n);
	char wav[] = "/tmp/sfa_dsp_song_XXXXXX.wav";
	int fd = mkstemps(wav, 4);
	assert_true(fd >= 0);
	close(fd);
	struct audio_buf b = {x, n, 1, 22050};
	char err[256];
	assert_int_equal(audio_write_wav(wav, &b, AUDIO_PCM16, err, sizeof err), 0);

	char *out = NULL;
	char *a1[] = {"analyze", wav};
	assert_int_equal(run_cli(2, a1, &out), 0);
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	assert_non_null(j);
	assert_non_null(json_object_get(j, "tempo"));
	assert_non_null(json_object_get(j, "camelot"));
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(j, "features"), "frame_rate")),
		2);
	/* the same object as the library builds from the same samples */
	struct dsp_result r;
	assert_int_equal(dsp_analyze_file(wav, NULL, &r, err, sizeof err), 0);
	json_t *lib = NULL;
	assert_int_equal(dsp_result_to_json(&r, &lib, err, sizeof err), 0);
	assert_true(json_equal(j, lib));
	json_decref(lib);
	dsp_result_free(&r);
	json_decref(j);
	free(out);

	char *a2[] = {"analyze", "--features", "tempo,key", "--frame-rate=1", wav, "--pretty"};
	assert_int_equal(run_cli(6, a2, &out), 0);
	j = json_loads(out, 0, &je);
	assert_non_null(j);
	assert_null(json_object_get(j, "features"));
	assert_null(json_object_get(j, "energy"));
	assert_non_null(strchr(out, '\n'));
	json_decref(j);
	free(out);

	char *bad1[] = {"analyze"};
	char *bad2[] = {"analyze", wav, "--features", "bpm"};
	char *bad3[] = {"analyze", wav, "--frame-rate", "0"};
	char *bad4[] = {"analyze", wav, "--frame-rate", "99"};
	char *bad5[] = {"analyze", wav, "--loud"};
	char *bad6[] = {"analyze", wav, wav};
	char *bad7[] = {"analyze", wav, "--frame-rate"};
	char *missing[] = {"analyze", "/nonexistent/sfa/none.wav"};
	char *help[] = {"analyze", "--help"};
	assert_int_equal(run_cli(1, bad1, &out), 2);
	free(out);
	assert_int_equal(run_cli(4, bad2, &out), 2);
	free(out);
	assert_int_equal(run_cli(4, bad3, &out), 2);
	free(out);
	assert_int_equal(run_cli(4, bad4, &out), 2);
	free(out);
	assert_int_equal(run_cli(3, bad5, &out), 2);
	free(out);
	assert_int_equal(run_cli(3, bad6, &out), 2);
	free(out);
	assert_int_equal(run_cli(3, bad7, &out), 2);
	free(out);
	assert_int_equal(run_cli(2, missing, &out), 1);
	assert_string_equal(out, "");
	free(out);
	assert_int_equal(run_cli(2, help, &out), 0);
	assert_non_null(strstr(out, "usage"));
	free(out);
	unlink(wav);
	free(x);
}

/* ---- threads ---------------------------------------------------------------------- */

struct thread_job {
	const float *x;
	size_t n;
	struct dsp_result r;
	int rc;
};

static void *thread_main(void *arg)
{
	struct thread_job *j = arg;
	char err[128];
	j->rc = dsp_analyze(j->x, j->n, NULL, &j->r, err, sizeof err);
	return NULL;
}

static void concurrent_analyses_agree(void **state)
{
	(void)state;
	size_t n;
	float *x = make_song(6.0, &n);
	struct thread_job jobs[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		jobs[i].x = x;
		jobs[i].n = n;
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(jobs[i].rc, 0);
		const struct dsp_result *a = &jobs[0].r, *b = &jobs[i].r;
		assert_true(a->tempo_bpm == b->tempo_bpm && a->n_beats == b->n_beats);
		assert_memory_equal(a->beats, b->beats, sizeof(int) * a->n_beats);
		assert_memory_equal(a->mfcc, b->mfcc, sizeof(float) * DSP_N_MFCC * a->n_frames);
		assert_memory_equal(a->chroma, b->chroma,
		                    sizeof(float) * DSP_N_CHROMA * a->n_frames);
	}
	for (int i = 0; i < 4; i++)
		dsp_result_free(&jobs[i].r);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pairwise_sum_is_accurate),
		cmocka_unit_test(median_matches_sorting),
		cmocka_unit_test(std_and_window),
		cmocka_unit_test(framing_is_centred),
		cmocka_unit_test(rms_and_zcr),
		cmocka_unit_test(centroid_and_rolloff),
		cmocka_unit_test(stft_of_a_sine),
		cmocka_unit_test(melbank_shape),
		cmocka_unit_test(dct_is_orthonormal),
		cmocka_unit_test(chroma_fb_and_tuning),
		cmocka_unit_test(onset_env_alignment),
		cmocka_unit_test(tempo_and_beats_of_a_pulse_train),
		cmocka_unit_test(click_tempo_is_precise),
		cmocka_unit_test(offbeat_bass_keeps_the_beats_on_the_kicks),
		cmocka_unit_test(beat_grid_covers_an_intro_without_drums),
		cmocka_unit_test(percussive_onsets_ignore_held_notes),
		cmocka_unit_test(percussive_onsets_match_sorted_windows),
		cmocka_unit_test(downbeats_and_sections),
		cmocka_unit_test(chords_of_a_progression),
		cmocka_unit_test(chords_root_from_the_bass),
		cmocka_unit_test(bass_signal_filters),
		cmocka_unit_test(mid_signal_filters),
		cmocka_unit_test(chord_labels_parse),
		cmocka_unit_test(key_changes_of_a_modulation),
		cmocka_unit_test(key_lasting_longest),
		cmocka_unit_test(acf_and_refinement),
		cmocka_unit_test(precise_period_through_slips),
		cmocka_unit_test(key_profiles_and_camelot),
		cmocka_unit_test(key_of_chords_in_modes),
		cmocka_unit_test(feature_names),
		cmocka_unit_test(json_subset_and_pooling),
		cmocka_unit_test(cli_prints_the_api_object),
		cmocka_unit_test(concurrent_analyses_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
