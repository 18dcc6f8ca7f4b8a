/* Reference tests of the analysis engine against librosa 0.10.2 (tests/fixtures/dsp/).
 *
 * Each of the 12 reference signals is decoded with the audio module (the two 44.1 kHz
 * stereo ones go through its downmix and soxr resampler, as librosa.load does), analysed
 * once, and every quantity is compared with librosa's output within the tolerances of
 * tests/fixtures/dsp/README.md: one cmocka test per signal and quantity, so a failure
 * names both. Tempo, beat frames, tuning, zero-crossing rates and keys must be identical.
 *
 * Usage: test_dsp_ref FIXTURES_DIR
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"

static const char *g_dir;

static const char *const SIGNALS[] = {
	"clicks_120",
	"drums_128_fourfloor",
	"drums_90_hiphop",
	"drums_174_dnb",
	"chords_C_major",
	"chords_A_minor",
	"song_100_D_major",
	"tone_440",
	"noise_white",
	"silence",
	"song_140_E_minor_st44k",
	"drums_120_fourfloor_st44k",
};
enum { N_SIGNALS = sizeof SIGNALS / sizeof SIGNALS[0] };

struct loaded {
	int done;
	json_t *ref;
	struct dsp_result res;
	size_t n_samples;
};
static struct loaded g_cache[N_SIGNALS];

static struct loaded *load(int i)
{
	struct loaded *l = &g_cache[i];
	if (l->done)
		return l;
	char path[4096], err[512];
	snprintf(path, sizeof path, "%s/%s.ref.json", g_dir, SIGNALS[i]);
	json_error_t je;
	l->ref = json_load_file(path, 0, &je);
	if (!l->ref)
		fail_msg("cannot read %s: %s (the reference fixtures are missing)", path, je.text);
	snprintf(path, sizeof path, "%s/%s.flac", g_dir, SIGNALS[i]);
	struct audio_buf buf;
	int rc = audio_decode(path, 22050, 1, 0, &buf, err, sizeof err);
	if (rc != 0)
		fail_msg("cannot decode %s: %s", path, err);
	l->n_samples = buf.n_frames;
	struct dsp_options opt = {DSP_FEAT_ALL, 2.0};
	rc = dsp_analyze(buf.data, buf.n_frames, &opt, &l->res, err, sizeof err);
	audio_buf_free(&buf);
	if (rc != 0)
		fail_msg("dsp_analyze(%s): %s", SIGNALS[i], err);
	l->done = 1;
	return l;
}

static json_t *jpath(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	if (v && b)
		v = json_object_get(v, b);
	if (!v)
		fail_msg("reference has no %s%s%s", a, b ? "." : "", b ? b : "");
	return v;
}

static double jnum(json_t *v) { return json_is_null(v) ? NAN : json_number_value(v); }

/* ---- one test per (signal, quantity) ------------------------------------------------ */

enum quantity {
	Q_SAMPLES,
	Q_RMS,
	Q_ZCR,
	Q_CENTROID,
	Q_ROLLOFF,
	Q_MEANS,
	Q_MFCC,
	Q_TUNING,
	Q_CHROMA,
	Q_CHROMA_MEAN,
	Q_KEY,
	Q_ONSET,
	Q_TEMPOGRAM,
	Q_TEMPO,
	Q_BEATS,
	N_Q
};
static const char *const QNAMES[N_Q] = {
	"samples", "rms",         "zcr", "centroid",  "rolloff",   "means", "mfcc",  "tuning",
	"chroma",  "chroma_mean", "key", "onset_env", "tempogram", "tempo", "beats",
};

struct tcase {
	int sig;
	enum quantity q;
	char name[96];
};
static struct tcase g_cases[N_SIGNALS * N_Q];

static void check_frames_f(const char *what, const char *sig, json_t *ref, const float *x, size_t T,
                           double abs_tol, double rel_tol)
{
	assert_int_equal(json_array_size(ref), T);
	double worst = 0.0;
	size_t worst_t = 0;
	for (size_t t = 0; t < T; t++) {
		double r = jnum(json_array_get(ref, t));
		double d = fabs((double)x[t] - r), tol = abs_tol + rel_tol * fabs(r);
		if (d / tol > worst) {
			worst = d / tol;
			worst_t = t;
		}
	}
	if (worst > 1.0)
		fail_msg("%s %s: frame %zu off by %.3g of the tolerance (got %.9g, librosa %.9g)",
		         sig, what, worst_t, worst, (double)x[worst_t],
		         jnum(json_array_get(ref, worst_t)));
}

static void run_case(void **state)
{
	const struct tcase *c = *state;
	struct loaded *l = load(c->sig);
	const struct dsp_result *r = &l->res;
	const char *sig = SIGNALS[c->sig];
	json_t *ref = l->ref;
	size_t T = r->n_frames;
	assert_int_equal(T, (size_t)json_integer_value(jpath(ref, "n_frames", NULL)));

	switch (c->q) {
	case Q_SAMPLES:
		assert_int_equal(l->n_samples,
		                 (size_t)json_integer_value(jpath(ref, "input", "n_samples")));
		break;
	case Q_RMS:
		check_frames_f("rms", sig, jpath(ref, "frames", "rms"), r->rms, T, 1e-7, 1e-4);
		break;
	case Q_ZCR:
		check_frames_f("zcr", sig, jpath(ref, "frames", "zero_crossing_rate"), r->zcr, T, 0,
		               0);
		break;
	case Q_CENTROID: {
		json_t *a = jpath(ref, "frames", "spectral_centroid");
		for (size_t t = 0; t < T; t++) {
			double rv = jnum(json_array_get(a, t));
			if (fabs(r->centroid[t] - rv) > 1e-3 + 1e-4 * fabs(rv))
				fail_msg("%s centroid frame %zu: %.9g vs librosa %.9g", sig, t,
				         r->centroid[t], rv);
		}
		break;
	}
	case Q_ROLLOFF: {
		json_t *a = jpath(ref, "frames", "spectral_rolloff");
		size_t off = 0;
		for (size_t t = 0; t < T; t++) {
			double rv = jnum(json_array_get(a, t));
			double bins = fabs(r->rolloff[t] - rv) / (22050.0 / 2048);
			if (bins > 1.01)
				fail_msg("%s rolloff frame %zu: %.3f Hz vs librosa %.3f Hz", sig, t,
				         r->rolloff[t], rv);
			off += bins > 0.01;
		}
		if ((double)off > 0.005 * (double)T)
			fail_msg("%s rolloff: %zu of %zu frames one bin off", sig, off, T);
		break;
	}
	case Q_MEANS: {
		json_t *m = jpath(ref, "means", NULL);
		double got[4] = {r->energy, r->zero_crossing_rate, r->spectral_centroid_hz,
		                 r->spectral_rolloff_hz};
		const char *k[4] = {"rms", "zero_crossing_rate", "spectral_centroid",
		                    "spectral_rolloff"};
		double tol[4] = {1e-5, 1e-5, 1e-5, 1e-4};
		for (int i = 0; i < 4; i++) {
			double rv = jnum(json_object_get(m, k[i]));
			if (fabs(got[i] - rv) > tol[i] * fabs(rv) + 1e-12)
				fail_msg("%s mean %s: %.12g vs librosa %.12g", sig, k[i], got[i],
				         rv);
		}
		break;
	}
	case Q_MFCC: {
		json_t *a = jpath(ref, "mfcc", NULL);
		assert_int_equal(json_array_size(a), 13);
		for (size_t k = 0; k < 13; k++) {
			char what[16];
			snprintf(what, sizeof what, "mfcc[%zu]", k);
			check_frames_f(what, sig, json_array_get(a, k), r->mfcc + k * T, T, 2e-3,
			               2e-6);
		}
		break;
	}
	case Q_TUNING: {
		double rv = jnum(jpath(ref, "tuning", NULL));
		if (fabs(r->tuning - rv) > 1e-9)
			fail_msg("%s tuning %.17g vs librosa %.17g", sig, r->tuning, rv);
		break;
	}
	case Q_CHROMA: {
		json_t *a = jpath(ref, "chroma_stft", NULL);
		for (size_t k = 0; k < 12; k++) {
			char what[16];
			snprintf(what, sizeof what, "chroma[%zu]", k);
			check_frames_f(what, sig, json_array_get(a, k), r->chroma + k * T, T, 1e-4,
			               0);
		}
		break;
	}
	case Q_CHROMA_MEAN: {
		json_t *a = jpath(ref, "chroma_stft_mean", NULL);
		for (size_t k = 0; k < 12; k++) {
			double rv = jnum(json_array_get(a, k));
			if (fabs(r->chroma_mean[k] - rv) > 1e-5)
				fail_msg("%s chroma mean %zu: %.9g vs %.9g", sig, k,
				         r->chroma_mean[k], rv);
		}
		break;
	}
	case Q_KEY: {
		json_t *kk = jpath(ref, "key_kk_stft", NULL);
		json_t *key = json_object_get(kk, "key");
		if (json_is_null(key)) {
			assert_int_equal(r->key_kk_pc, -1);
			break;
		}
		if (r->key_kk_pc < 0)
			fail_msg("%s: no key, librosa %s", sig, json_string_value(key));
		assert_string_equal(r->key_kk_name, json_string_value(key));
		double rv = jnum(json_object_get(kk, "r"));
		if (fabs(r->key_kk_r - rv) > 1e-5)
			fail_msg("%s key r %.9g vs %.9g", sig, r->key_kk_r, rv);
		break;
	}
	case Q_ONSET: {
		json_t *a = jpath(ref, "onset_env", NULL);
		double mx = 0.0;
		for (size_t t = 0; t < json_array_size(a); t++)
			mx = fmax(mx, jnum(json_array_get(a, t)));
		check_frames_f("onset_env", sig, a, r->onset_env, T, 1e-4 * mx + 1e-30, 0);
		break;
	}
	case Q_TEMPOGRAM: {
		json_t *a = jpath(ref, "tempogram_mean", NULL);
		int any_onset = 0;
		for (size_t t = 0; t < T; t++)
			any_onset |= r->onset_env[t] != 0.0f;
		for (size_t k = 0; k < DSP_TG_WIN; k++) {
			double rv = jnum(json_array_get(a, k));
			/* with no onsets the engine skips the tempogram (librosa's is all zeros) */
			double got = any_onset ? r->tempogram_mean[k] : 0.0;
			if (isnan(rv))
				rv = 0.0;
			if (fabs(got - rv) > 2e-5)
				fail_msg("%s tempogram lag %zu: %.9g vs %.9g", sig, k, got, rv);
		}
		break;
	}
	case Q_TEMPO: {
		double rv = jnum(jpath(ref, "tempo", NULL));
		if (fabs(r->tempo_librosa_bpm - rv) > 1e-9)
			fail_msg("%s tempo %.12g vs librosa %.12g", sig, r->tempo_librosa_bpm, rv);
		break;
	}
	case Q_BEATS: {
		json_t *a = jpath(ref, "beat_frames", NULL);
		char got[2048] = "", want[2048] = "";
		size_t ng = 0, nw = 0;
		for (size_t i = 0; i < r->n_beats_librosa; i++)
			ng += (size_t)snprintf(got + ng, ng < sizeof got ? sizeof got - ng : 0,
			                       " %d", r->beats_librosa[i]);
		for (size_t i = 0; i < json_array_size(a); i++)
			nw += (size_t)snprintf(want + nw, nw < sizeof want ? sizeof want - nw : 0,
			                       " %d",
			                       (int)json_integer_value(json_array_get(a, i)));
		if (strcmp(got, want) != 0)
			fail_msg("%s beats:\n  got   %s\n  want  %s", sig, got, want);
		break;
	}
	default:
		break;
	}
}

/* The mel dB stage against librosa's own matrix for song_100_D_major. */
static void mel_db_matches(void **state)
{
	(void)state;
	char path[4096], err[512];
	snprintf(path, sizeof path, "%s/song_100_D_major.melspec_db.json", g_dir);
	json_error_t je;
	json_t *ref = json_load_file(path, 0, &je);
	if (!ref)
		fail_msg("cannot read %s: %s", path, je.text);
	snprintf(path, sizeof path, "%s/song_100_D_major.flac", g_dir);
	struct audio_buf buf;
	if (audio_decode(path, 22050, 1, 0, &buf, err, sizeof err) != 0)
		fail_msg("cannot decode %s: %s", path, err);
	size_t T = dsp_n_frames(buf.n_frames);
	struct dsp_stft st;
	assert_int_equal(dsp_stft_init(&st, err, sizeof err), 0);
	struct dsp_melbank *mb = malloc(sizeof *mb);
	float *db = malloc(sizeof(float) * T * DSP_N_MELS);
	float mag[DSP_N_BINS], pw[DSP_N_BINS], mx = -INFINITY;
	assert_non_null(mb);
	assert_non_null(db);
	dsp_melbank_init(mb);
	for (size_t t = 0; t < T; t++) {
		dsp_stft_frame(&st, buf.data, buf.n_frames, t, mag, pw);
		dsp_mel_db_frame(mb, pw, db + t * DSP_N_MELS);
		for (int m = 0; m < DSP_N_MELS; m++)
			mx = fmaxf(mx, db[t * DSP_N_MELS + (size_t)m]);
	}
	json_t *rows = json_object_get(ref, "melspec_db");
	assert_int_equal(json_array_size(rows), DSP_N_MELS);
	double worst = 0.0;
	for (size_t m = 0; m < DSP_N_MELS; m++) {
		json_t *row = json_array_get(rows, m);
		assert_int_equal(json_array_size(row), T);
		for (size_t t = 0; t < T; t++) {
			float v = fmaxf(db[t * DSP_N_MELS + m], mx - 80.0f);
			worst = fmax(worst, fabs((double)v - jnum(json_array_get(row, t))));
		}
	}
	/* 2e-3 dB is the MFCC tolerance; the dB matrix itself should be far closer */
	if (worst > 2e-3)
		fail_msg("mel dB differs from librosa by up to %.3g dB", worst);
	free(db);
	free(mb);
	dsp_stft_free(&st);
	audio_buf_free(&buf);
	json_decref(ref);
}

/* Excerpts of songs of the analysis corpus (bench/analysis-accuracy, seeds 17-22; 15 s,
 * resampled to 22050 Hz) whose metrical level or beat phase was read wrong, with the tempo
 * of their labelled beats. */
struct corpus_excerpt {
	const char *file;
	double bpm;
};
static const struct corpus_excerpt BALLAD = {"corpus_ballad_68.flac", 68.34};
static const struct corpus_excerpt TRESILLO = {"corpus_tresillo_124.flac", 124.0};
static const struct corpus_excerpt SHUFFLE = {"corpus_shuffle_75.flac", 75.42};
static const struct corpus_excerpt BREAKBEAT = {"corpus_breakbeat_126.flac", 126.0};
static const struct corpus_excerpt SHUFFLE_114 = {"corpus_shuffle_114.flac", 114.0};
static const struct corpus_excerpt FOUR_ON_FLOOR = {"corpus_four_on_floor_127.flac", 127.0};

/* Decodes an excerpt into buf and analyses its tempo and beats into r. */
static void analyze_excerpt(const struct corpus_excerpt *c, struct audio_buf *buf,
                            struct dsp_result *r)
{
	char path[4096], err[512];
	snprintf(path, sizeof path, "%s/%s", g_dir, c->file);
	if (audio_decode(path, 22050, 1, 0, buf, err, sizeof err) != 0)
		fail_msg("cannot decode %s: %s", path, err);
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO};
	assert_int_equal(dsp_analyze(buf->data, buf->n_frames, &opt, r, err, sizeof err), 0);
}

/* The ballad (s0012, 10-25 s): kick on 1 and the "and" of 3, snare on 2 and 4, hats on
 * the eighths, its tempo drifting 71.8 -> 66.7 BPM. Read at 140 its beats fall on every
 * hat with nothing between them; the level's score must see that its beats are divided
 * (hats half-way that the whole spectrum has weaker). The tresillo (s0002, 10-25 s): kicks
 * 3-3-2 in sixteenths; its tempogram's peak is 5 sixteenths (99 BPM), 4/5 of the beat.
 * The shuffle (s0232, 10-25 s): swung eighths on a triplet grid, drifting 74.7-76.5 BPM.
 * Read at 3/2 (113 BPM) its beats fall on every second triplet, one in three on nothing.
 * The four-on-the-floor (seed 22 s0010, 0-15 s): an intro of off-beat sixteenths, bass and
 * stabs, then the kick on every beat; it read 102 BPM (5/4 of its beat period) while the
 * level chooser had a 5/4 level. */
static void corpus_excerpt_tempo(void **state)
{
	const struct corpus_excerpt *c = *state;
	struct audio_buf buf;
	struct dsp_result r;
	analyze_excerpt(c, &buf, &r);
	print_message("# %s (%.1f BPM): %.2f BPM, librosa %.2f\n", c->file, c->bpm, r.tempo_bpm,
	              r.tempo_librosa_bpm);
	if (fabs(r.tempo_bpm / c->bpm - 1.0) > 0.04)
		fail_msg("%s reads %.2f BPM, labelled %.1f", c->file, r.tempo_bpm, c->bpm);
	dsp_result_free(&r);
	audio_buf_free(&buf);
}

/* The breakbeat (seed 19 s0004, 10-25 s): kicks on 1 and the "and" of 3 with the bass,
 * ghost snares off the beat; librosa's tracker puts its beats on the off-beats. The shuffle
 * (seed 18 s0021, 10-25 s): chord stabs and hats on the swung eighths, where the tracker's
 * beats fall. Both excerpts start on a labelled beat and keep a constant tempo, so the
 * labelled beats are k * 60 / bpm; the beat phase and bars must move ours onto them:
 * at least 90 % of ours (after the first second) within 70 ms of one, and as many. */
static void corpus_excerpt_beats_on_the_beat(void **state)
{
	const struct corpus_excerpt *c = *state;
	struct audio_buf buf;
	struct dsp_result r;
	analyze_excerpt(c, &buf, &r);
	double period = 60.0 / c->bpm, end = (double)buf.n_frames / 22050.0;
	size_t n = 0, hits = 0, n_ref = 0;
	for (double t = 0.0; t < end; t += period)
		n_ref += t >= 1.0;
	for (size_t i = 0; i < r.n_beats; i++) {
		double t = r.beats[i] * DSP_HOP / 22050.0;
		if (t < 1.0)
			continue;
		double k = nearbyint(t / period);
		n++;
		hits += fabs(t - k * period) <= 0.07;
	}
	print_message("# %s: %zu of %zu beats on the labelled ones (%zu labelled)\n", c->file, hits,
	              n, n_ref);
	if (hits < 0.9 * (double)(n > n_ref ? n : n_ref))
		fail_msg("%s: only %zu of %zu beats within 70 ms of the %zu labelled ones", c->file,
		         hits, n, n_ref);
	dsp_result_free(&r);
	audio_buf_free(&buf);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_dsp_ref FIXTURES_DIR\n");
		return 2;
	}
	g_dir = argv[1];
	static struct CMUnitTest tests[N_SIGNALS * N_Q + 7];
	size_t n = 0;
	tests[n++] = (struct CMUnitTest){"mel_db_matches_librosa", mel_db_matches, NULL, NULL,
	                                 NULL};
	tests[n++] = (struct CMUnitTest){"corpus_ballad_reads_at_its_slow_tempo",
	                                 corpus_excerpt_tempo, NULL, NULL, (void *)&BALLAD};
	tests[n++] = (struct CMUnitTest){"corpus_tresillo_reads_its_beat", corpus_excerpt_tempo,
	                                 NULL, NULL, (void *)&TRESILLO};
	tests[n++] = (struct CMUnitTest){"corpus_shuffle_reads_its_beat", corpus_excerpt_tempo,
	                                 NULL, NULL, (void *)&SHUFFLE};
	tests[n++] = (struct CMUnitTest){"corpus_four_on_floor_reads_its_beat",
	                                 corpus_excerpt_tempo, NULL, NULL, (void *)&FOUR_ON_FLOOR};
	tests[n++] = (struct CMUnitTest){"corpus_breakbeat_beats_on_the_beat",
	                                 corpus_excerpt_beats_on_the_beat, NULL, NULL,
	                                 (void *)&BREAKBEAT};
	tests[n++] = (struct CMUnitTest){"corpus_shuffle_beats_on_the_beat",
	                                 corpus_excerpt_beats_on_the_beat, NULL, NULL,
	                                 (void *)&SHUFFLE_114};
	for (int s = 0; s < N_SIGNALS; s++) {
		for (int q = 0; q < N_Q; q++) {
			struct tcase *c = &g_cases[s * N_Q + q];
			c->sig = s;
			c->q = (enum quantity)q;
			snprintf(c->name, sizeof c->name, "%s_%s", SIGNALS[s], QNAMES[q]);
			tests[n++] = (struct CMUnitTest){c->name, run_case, NULL, NULL, c};
		}
	}
	int rc = _cmocka_run_group_tests("dsp_reference", tests, n, NULL, NULL);
	for (int s = 0; s < N_SIGNALS; s++) {
		if (g_cache[s].done)
			dsp_result_free(&g_cache[s].res);
		json_decref(g_cache[s].ref);
	}
	return rc;
}
