/* analyze.c - one analysis, from samples to a dsp_result.
 *
 * Pass 1, frame by frame: STFT (when any spectral feature is wanted), RMS, zero-crossing
 * rate, centroid, rolloff, mel dB (kept for the whole file: the top_db clamp needs the
 * file's maximum) and the spectral peaks the tuning estimate needs.
 * Between the passes: clamp the mel dB matrix, then onset envelope -> tempogram -> tempo
 * (librosa's) -> beats; the kick-aware flux envelope -> octave correction -> the metrical
 * level (tempo.c) -> beats at the corrected tempo -> tempo_confidence; and MFCC.
 * Pass 2, only for chroma, key and chords: the tuning from the peaks; for the chroma
 * (itself, librosa's key, key changes without chords) the chroma filterbank, then every
 * frame's power spectrum again (recomputing one FFT per frame is cheaper than keeping a
 * 1025 x T spectrogram) and its chroma; for the chords the bass and mid signals
 * (chords.c). The chords give the key, the mean chroma librosa's Krumhansl-Kessler key.
 *
 * Memory: every buffer comes from two arenas sized before the first frame: `work` (freed
 * on return) and the result's own (freed by dsp_result_free). The big buffers are the mel
 * dB matrix (512 bytes per frame) and the peak list (at most 180 peaks per frame; pages
 * that are never written are never touched).
 */
#include "dsp/dsp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "audio/audio.h"
#include "dsp/dsp_internal.h"
#include "util/err.h"

static const struct {
	const char *name;
	unsigned bit;
} FEATURES[] = {
	{"tempo", DSP_FEAT_TEMPO},       {"key", DSP_FEAT_KEY},
	{"energy", DSP_FEAT_ENERGY},     {"spectral", DSP_FEAT_SPECTRAL},
	{"mfcc", DSP_FEAT_MFCC},         {"chroma", DSP_FEAT_CHROMA},
	{"loudness", DSP_FEAT_LOUDNESS}, {"sections", DSP_FEAT_SECTIONS},
	{"chords", DSP_FEAT_CHORDS},     {"key_changes", DSP_FEAT_KEY_CHANGES},
	{"all", DSP_FEAT_ALL},
};

unsigned dsp_feature_bit(const char *name)
{
	for (size_t i = 0; i < sizeof FEATURES / sizeof FEATURES[0]; i++)
		if (strcmp(name, FEATURES[i].name) == 0)
			return FEATURES[i].bit;
	return 0;
}

int dsp_features_parse(const char *csv, unsigned *mask, char *err, size_t n_err)
{
	if (!csv)
		return sfa_err(err, n_err, SFA_EINVAL, "No feature list given.");
	unsigned m = 0;
	const char *p = csv;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		/* "tempo, key" is fine: blanks around a name are ignored */
		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		char name[16];
		if (len == 0 || len >= sizeof name)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "Unknown feature '%.*s': use " DSP_FEATURE_NAMES ".",
			               (int)(len > 32 ? 32 : len), p);
		memcpy(name, p, len);
		name[len] = '\0';
		unsigned bit = dsp_feature_bit(name);
		if (!bit)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "Unknown feature '%s': use " DSP_FEATURE_NAMES ".", name);
		m |= bit;
		if (!comma)
			break;
		p = comma + 1;
	}
	*mask = m;
	return 0;
}

/* The arenas' caps are the sum of what is allocated plus this: util/arena grows its blocks
 * geometrically up to 512 KiB, so a partly used block can strand up to that much. */
enum { ARENA_SLACK = 1 << 20 };

/* Allocates n zeroed elements of size sz from a, or NULL. */
static void *zalloc(struct arena *a, size_t n, size_t sz)
{
	if (n && sz > ((size_t)-1) / 2 / n)
		return NULL;
	void *p = arena_alloc(a, (n * sz) != 0 ? n * sz : 16);
	if (p)
		memset(p, 0, n * sz);
	return p;
}

/* Same size, not zeroed: for buffers written before they are read. */
static void *ualloc(struct arena *a, size_t n, size_t sz)
{
	if (n && sz > ((size_t)-1) / 2 / n)
		return NULL;
	return arena_alloc(a, (n * sz) != 0 ? n * sz : 16);
}

static double mean_f32(const float *x, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	return n ? s / (double)n : 0.0;
}

static double mean_f64(const double *x, size_t n)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	return n ? s / (double)n : 0.0;
}

/* Everything pass 1 and 2 need, sized once. */
struct work {
	struct dsp_stft stft;
	struct dsp_tg_work tg;
	struct dsp_melbank mel;
	double dct[DSP_DCT_STRIDE * DSP_N_MELS];
	double freqs[DSP_N_BINS];
	float mag[DSP_N_BINS], pow[DSP_N_BINS];
	float scratch[DSP_N_MELS];
	struct arena *arena; /* the work arena, for late allocations */
	float *db;           /* [T * 128] */
	float db_max;        /* its maximum before the top_db clamp */
	float *flux;         /* [T], kick-aware onset envelope (tempo.c) */
	struct dsp_peaks peaks;
	float *chroma_fb; /* [1025 * 12] */
	void *beat_work;
	float *low; /* the bass signal (dsp_bass_signal), or NULL */
	float *mid; /* the mid signal (dsp_mid_signal), or NULL */
	size_t n_low, n_mid;
	int chord_key;         /* the key of the chords' first reading (key.c), or -1 */
	double chord_key_conf; /* its confidence */
};

static int analyze_tempo(struct work *w, struct dsp_result *r, char *err, size_t n_err)
{
	size_t T = r->n_frames;
	dsp_onset_env(w->db, T, r->onset_env, w->scratch);
	if (r->duration_s < DSP_MIN_TEMPO_KEY_SECONDS)
		return 0;
	int any = 0;
	for (size_t t = 0; t < T; t++)
		any |= r->onset_env[t] != 0.0f;
	if (!any)
		return 0; /* librosa: no onsets -> tempo 0, no beats */
	int rc = dsp_tg_work_init(&w->tg, err, n_err);
	if (rc)
		return rc;
	dsp_tempogram_mean(&w->tg, r->onset_env, T, r->tempogram_mean);
	int lag = dsp_tempo_lag(r->tempogram_mean);
	r->tempo_librosa_lag = lag;
	r->tempo_librosa_bpm = dsp_lag_bpm(lag);
	r->n_beats_librosa = dsp_beat_track(r->onset_env, T, r->tempo_librosa_bpm, w->beat_work,
	                                    r->beats_librosa);

	if (!(w->flux = ualloc(w->arena, T, sizeof(float))))
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory for the analysis.");
	dsp_flux_env(w->db, T, w->db_max, w->flux);
	r->tempo_doubled = dsp_tempo_should_double(r->onset_env, w->flux, T, lag);
	double period = dsp_refine_lag(r->tempogram_mean, lag);
	if (r->tempo_doubled)
		period /= 2.0;
	r->tempo_bpm = 60.0 * DSP_FPS / period;
	if (!r->tempo_doubled) {
		memcpy(r->beats, r->beats_librosa, sizeof(int) * r->n_beats_librosa);
		r->n_beats = r->n_beats_librosa;
	} else {
		r->n_beats = dsp_beat_track(r->onset_env, T, r->tempo_bpm, w->beat_work, r->beats);
	}
	r->tempo_bpm = 60.0 * DSP_FPS / dsp_refine_period_from_beats(r->beats, r->n_beats, period);
	/* then the metrical level: 2, 1/2, 4/3, 3/4, 3/2, 2/3 or 4/5 of it may be the beat */
	int *scratch = ualloc(w->arena, T, sizeof(int));
	float *hi = ualloc(w->arena, T, sizeof(float));
	if (!scratch || !hi)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory for the analysis.");
	dsp_band_onsets(w->db, T, DSP_HI_MEL, DSP_N_MELS, hi);
	double p0 = 60.0 * DSP_FPS / r->tempo_bpm;
	period = dsp_tempo_choose_period(r->onset_env, w->flux, hi, T, p0, w->beat_work, scratch,
	                                 r->beats, &r->n_beats);
	r->tempo_bpm = 60.0 * DSP_FPS /
	               dsp_precise_period(r->onset_env, T, r->beats, r->n_beats, period);
	r->tempo_confidence = dsp_tempo_confidence(w->flux, T, r->beats, r->n_beats,
	                                           60.0 * DSP_FPS / r->tempo_bpm);
	/* The tracker puts a beat on the frame where the onset envelope peaks, about a frame
	 * after the attack: clicks read 17.6 ms late, the 300 songs of bench/analysis-accuracy
	 * a median 42 ms. DJ programs anchor their grids on these beats, so they move one
	 * frame (23 ms) earlier; librosa's beats stay as librosa gives them. */
	for (size_t i = 0; i < r->n_beats; i++)
		if (r->beats[i] > 0)
			r->beats[i]--;
	return 0;
}

/* The beats' phase and the downbeats, then (when asked) the sections from the bars. Their memory is
 * in both arenas' budgets for up to MAX_BEATS(T) beats, the most a tempo of at most 320
 * BPM gives; should the tracker ever give more, the song simply has no bars. */
#define MAX_BEATS(T) ((T) / 8 + 4)
/* bars of the sections' grid: the downbeats, extended at least 16 frames a bar */
#define MAX_GRID(T) (MAX_BEATS(T) / 3 + (T) / 16 + 8)
static void analyze_structure(struct work *w, struct dsp_result *r, int sections)
{
	size_t nb = r->n_beats, T = r->n_frames;
	float *work = nb ? ualloc(w->arena, dsp_downbeats_work_floats(nb, T), sizeof(float)) : NULL;
	size_t beat_cap = nb > MAX_BEATS(T) ? nb : MAX_BEATS(T);
	if (!work || !(r->downbeats = ualloc(&r->mem, beat_cap, sizeof(int))))
		return;
	r->n_downbeats = dsp_downbeats(w->db, T, r->beats, &r->n_beats, work, &r->beats_per_bar,
	                               r->downbeats);
	if (!r->n_downbeats) {
		r->beats_per_bar = 0;
		return;
	}
	/* the grid back to the start, bars on every beats_per_bar-th beat as after it */
	size_t first = 0;
	while (first + 1 < r->n_beats && r->beats[first] != r->downbeats[0])
		first++;
	size_t added = dsp_beats_from_start(w->db, T, w->db_max, r->beats, &r->n_beats, beat_cap);
	size_t add = (first + added) / (size_t)r->beats_per_bar;
	memmove(r->downbeats + add, r->downbeats, r->n_downbeats * sizeof(int));
	for (size_t i = 0; i < add; i++)
		r->downbeats[i] = r->beats[first + added - (add - i) * (size_t)r->beats_per_bar];
	r->n_downbeats += add;
	size_t nd = r->n_downbeats;
	if (!sections || nd < 2)
		return;
	/* The tracker leaves out quiet starts and ends; the sections need bars over the whole
	 * song: the grid goes on at the bars' median length before and after. */
	double P = dsp_median_bar_frames(r->downbeats, nd);
	if (!(P >= 16.0))
		return;
	size_t cap = nd + (size_t)((double)T / P) + 4, ng = 0;
	int *grid = ualloc(w->arena, cap, sizeof(int));
	if (!grid)
		return;
	size_t before = (size_t)((double)r->downbeats[0] / P);
	for (size_t k = before; k > 0; k--)
		grid[ng++] = (int)lround((double)r->downbeats[0] - (double)k * P);
	memcpy(grid + ng, r->downbeats, nd * sizeof(int));
	ng += nd;
	for (double t = r->downbeats[nd - 1] + P; t + P / 2 < (double)T && ng < cap; t += P)
		grid[ng++] = (int)lround(t);
	if (!(work = ualloc(w->arena, dsp_sections_work_floats(ng), sizeof(float))) ||
	    !(r->sections = ualloc(&r->mem, dsp_sections_cap(ng), sizeof(struct dsp_section))))
		return;
	r->n_sections = dsp_sections(w->db, r->rms, T, grid, ng, work, r->sections);
}

/* The chord timeline on the beats, read twice: the key of the first reading (key.c) then
 * weighs the chords of the second by their function in it (chords.c), which reuses the
 * first reading's bass from work. Its memory is in both arenas' budgets for up to
 * MAX_BEATS(T) beats; with more (never seen) the chords are taken without beats. */
static void analyze_chords(struct work *w, struct dsp_result *r)
{
	size_t T = r->n_frames, nb = r->n_beats <= MAX_BEATS(T) ? r->n_beats : 0;
	void *work = ualloc(w->arena, dsp_chords_work_bytes(T, nb), 1);
	if (!work ||
	    !(r->chords = ualloc(&r->mem, dsp_chords_cap(T, nb), sizeof(struct dsp_chord))))
		return;
	r->n_chords = dsp_chords(w->low, w->n_low, w->mid, w->n_mid, r->tuning, r->rms, T,
	                         r->duration_s, r->beats, nb, -1, 0, work, r->chords);
	double scores[24];
	w->chord_key = dsp_key_chords(r->chords, r->n_chords, scores, &w->chord_key_conf);
	if (w->chord_key >= 0)
		r->n_chords = dsp_chords(w->low, w->n_low, w->mid, w->n_mid, r->tuning, r->rms, T,
		                         r->duration_s, r->beats, nb, w->chord_key, 1, work,
		                         r->chords);
}

/* The key changes on the beats; memory as for the chords. Too short a song has none. */
static void analyze_key_changes(struct work *w, struct dsp_result *r)
{
	size_t T = r->n_frames, nb = r->n_beats <= MAX_BEATS(T) ? r->n_beats : 0;
	if (r->duration_s < DSP_MIN_TEMPO_KEY_SECONDS)
		return;
	void *work = ualloc(w->arena, dsp_key_changes_work_bytes(T, nb), 1);
	if (!work || !(r->key_changes = ualloc(&r->mem, dsp_chords_cap(T, nb),
	                                       sizeof(struct dsp_key_segment))))
		return;
	r->n_key_changes = dsp_key_changes(r->chroma, T, r->duration_s, r->beats, nb, r->chords,
	                                   r->n_chords, w->chord_key, work, r->key_changes);
}

/* The key: librosa's Krumhansl-Kessler reading always, and the key of the chords when the
 * song has a chord timeline (key.c, found by analyze_chords, which runs first), unless the
 * key changes (analyze_key_changes, which runs before) spend longer in another key: a
 * song's key is the one it stays in longest (a modulation for the last drop or chorus
 * may or may not outlast the key before it). Its confidence is then the vote's times the
 * share of the song in that key. */
static void analyze_key(const struct work *w, struct dsp_result *r)
{
	size_t T = r->n_frames;
	for (int c = 0; c < DSP_N_CHROMA; c++)
		r->chroma_mean[c] = mean_f32(r->chroma + (size_t)c * T, T);
	r->key_pc = r->key_kk_pc = -1;
	if (r->duration_s < DSP_MIN_TEMPO_KEY_SECONDS)
		return;
	double scores[24];
	int best = dsp_key_kk(r->chroma_mean, scores);
	if (best < 0)
		return;
	r->key_kk_pc = best / 2;
	r->key_kk_minor = best % 2;
	r->key_kk_r = scores[best];
	snprintf(r->key_kk_name, sizeof r->key_kk_name, "%s %s", dsp_pitch_name(r->key_kk_pc),
	         r->key_kk_minor ? "minor" : "major");
	double conf = w->chord_key_conf;
	int k = w->chord_key;
	if (k < 0) {
		k = best;
		conf = r->key_kk_r > 0.0 ? r->key_kk_r : 0.0;
	}
	double share;
	int longest = dsp_key_longest(r->key_changes, r->n_key_changes, k, &share);
	if (longest != k) {
		k = longest;
		conf *= share;
	}
	r->key_pc = k / 2;
	r->key_minor = k % 2;
	r->key_confidence = conf;
	snprintf(r->key_name, sizeof r->key_name, "%s %s", dsp_pitch_name(r->key_pc),
	         r->key_minor ? "minor" : "major");
	dsp_camelot(r->key_pc, r->key_minor, r->camelot);
}

int dsp_analyze(const float *x, size_t n, const struct dsp_options *opt, struct dsp_result *out,
                char *err, size_t n_err)
{
	unsigned feat = (opt && opt->features) ? opt->features : DSP_FEAT_ALL;
	double fr = (opt && opt->frame_rate != 0.0) ? opt->frame_rate : DSP_DEFAULT_FRAME_RATE;
	if (feat & ~(unsigned)DSP_FEAT_ALL)
		return sfa_err(err, n_err, SFA_EINVAL, "Unknown analysis feature bits 0x%x.", feat);
	if (!(fr > 0.0) || fr > DSP_MAX_FRAME_RATE)
		return sfa_err(
			err, n_err, SFA_EINVAL,
			"The frame rate must be above 0 and at most %.2f columns per second.",
			DSP_MAX_FRAME_RATE);
	if ((double)n > DSP_MAX_SECONDS * DSP_SAMPLE_RATE_HZ)
		return sfa_err(err, n_err, SFA_ETOOBIG,
		               "The audio is longer than the analysis limit of %.0f minutes.",
		               DSP_MAX_SECONDS / 60.0);
	if (n > 0 && !x)
		return sfa_err(err, n_err, SFA_EINVAL, "No samples given.");
	/* Beyond +-1e6 (120 dB over full scale) a power spectrum could overflow float32; no
	 * decoder produces that from real audio. */
	for (size_t i = 0; i < n; i++)
		if (!(fabsf(x[i]) <= DSP_MAX_SAMPLE_ABS))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "Sample %zu is not a number between -1e6 and 1e6.", i);

	/* sections, chords, the key (on the chords) and key changes stand on the beats and the
	 * level */
	unsigned calc = feat & (DSP_FEAT_SECTIONS | DSP_FEAT_CHORDS | DSP_FEAT_KEY |
	                        DSP_FEAT_KEY_CHANGES)
	                        ? feat | DSP_FEAT_TEMPO | DSP_FEAT_ENERGY
	                        : feat;
	int want_spec = (calc & (DSP_FEAT_SPECTRAL | DSP_FEAT_MFCC | DSP_FEAT_TEMPO | DSP_FEAT_KEY |
	                         DSP_FEAT_CHROMA)) != 0;
	int want_mel = (calc & (DSP_FEAT_MFCC | DSP_FEAT_TEMPO)) != 0;
	/* the chords read their notes at the song's tuning (from pass 1's peaks); chroma_stft is
	 * for the chroma itself, librosa's key and key changes without chords */
	int want_chords = (feat & (DSP_FEAT_CHORDS | DSP_FEAT_KEY | DSP_FEAT_KEY_CHANGES)) != 0;
	/* the key is the key change that lasts longest */
	int want_key_changes = (feat & (DSP_FEAT_KEY | DSP_FEAT_KEY_CHANGES)) != 0;
	int want_chroma = want_key_changes || (feat & DSP_FEAT_CHROMA) != 0;
	int want_tuning = want_chords || want_chroma;
	size_t T = dsp_n_frames(n);

	struct dsp_result r;
	memset(&r, 0, sizeof r);
	r.features = feat & ~(unsigned)DSP_FEAT_LOUDNESS;
	r.frame_rate = fr;
	r.n_samples = n;
	r.duration_s = (double)n / DSP_SAMPLE_RATE_HZ;
	r.n_frames = T;
	r.key_pc = r.key_kk_pc = -1;

	/* sizes: every array of the result, plus slack for the arena's block rounding */
	size_t res_bytes = ARENA_SLACK +
	                   T * (sizeof(float) * 4 + sizeof(double) * 2 + sizeof(int) * 2 +
	                        sizeof(float) * (DSP_N_MFCC + DSP_N_CHROMA)) +
	                   sizeof(double) * DSP_TG_WIN;
	if (calc & DSP_FEAT_TEMPO)
		res_bytes += MAX_BEATS(T) * sizeof(int) +
		             dsp_sections_cap(MAX_GRID(T)) * sizeof(struct dsp_section);
	if (want_chords)
		res_bytes += dsp_chords_cap(T, MAX_BEATS(T)) * sizeof(struct dsp_chord);
	if (want_key_changes)
		res_bytes += dsp_chords_cap(T, MAX_BEATS(T)) * sizeof(struct dsp_key_segment);
	arena_init(&r.mem, res_bytes);
	struct arena wa;
	size_t peaks_cap = want_tuning ? dsp_peaks_cap(T) : 0;
	size_t work_bytes = ARENA_SLACK + sizeof(struct work) +
	                    (want_mel ? T * DSP_N_MELS * sizeof(float) : 0) +
	                    peaks_cap * sizeof(struct dsp_peak) +
	                    DSP_N_BINS * DSP_N_CHROMA * sizeof(float) + dsp_beats_work_bytes(T) +
	                    T * (2 * sizeof(float) + sizeof(int)) +
	                    ((calc & DSP_FEAT_TEMPO) ? (dsp_downbeats_work_floats(MAX_BEATS(T), T) +
	                                                dsp_sections_work_floats(MAX_GRID(T))) *
	                                                               sizeof(float) +
	                                                       MAX_GRID(T) * sizeof(int)
	                                             : 0) +
	                    (want_chords ? dsp_chords_work_bytes(T, MAX_BEATS(T)) +
	                                           (dsp_bass_signal_len(n) + dsp_mid_signal_len(n) +
	                                            2) * sizeof(float)
	                                 : 0) +
	                    (want_key_changes ? dsp_key_changes_work_bytes(T, MAX_BEATS(T)) : 0);
	arena_init(&wa, work_bytes);

	int rc = 0;
	struct work *w = zalloc(&wa, 1, sizeof *w);
	if (!w)
		goto nomem;
	w->arena = &wa;
	w->chord_key = -1;
	if (want_spec && (rc = dsp_stft_init(&w->stft, err, n_err)) != 0)
		goto out;
	dsp_fft_freqs(w->freqs);
	if (want_mel) {
		dsp_melbank_init(&w->mel);
		dsp_dct_init(w->dct);
		if (!(w->db = ualloc(&wa, T * DSP_N_MELS, sizeof(float))))
			goto nomem;
	}
	if (want_tuning) {
		w->peaks.cap = peaks_cap;
		if (!(w->peaks.p = ualloc(&wa, peaks_cap, sizeof(struct dsp_peak))))
			goto nomem;
	}
	if (want_chroma &&
	    (!(w->chroma_fb = ualloc(&wa, DSP_N_BINS * DSP_N_CHROMA, sizeof(float))) ||
	     !(r.chroma = zalloc(&r.mem, T * DSP_N_CHROMA, sizeof(float)))))
		goto nomem;
	if (calc & DSP_FEAT_TEMPO) {
		if (!(w->beat_work = ualloc(&wa, dsp_beats_work_bytes(T), 1)) ||
		    !(r.onset_env = zalloc(&r.mem, T, sizeof(float))) ||
		    !(r.tempogram_mean = zalloc(&r.mem, DSP_TG_WIN, sizeof(double))) ||
		    !(r.beats = zalloc(&r.mem, T, sizeof(int))) ||
		    !(r.beats_librosa = zalloc(&r.mem, T, sizeof(int))))
			goto nomem;
	}
	if ((calc & DSP_FEAT_ENERGY) && !(r.rms = zalloc(&r.mem, T, sizeof(float))))
		goto nomem;
	if ((feat & DSP_FEAT_SPECTRAL) && (!(r.zcr = zalloc(&r.mem, T, sizeof(float))) ||
	                                   !(r.centroid = zalloc(&r.mem, T, sizeof(double))) ||
	                                   !(r.rolloff = zalloc(&r.mem, T, sizeof(double)))))
		goto nomem;
	if ((feat & DSP_FEAT_MFCC) && !(r.mfcc = zalloc(&r.mem, T * DSP_N_MFCC, sizeof(float))))
		goto nomem;

	/* pass 1 */
	float db_max = -INFINITY;
	for (size_t t = 0; t < T; t++) {
		if (r.rms)
			r.rms[t] = dsp_rms_frame(x, n, t);
		if (r.zcr)
			r.zcr[t] = dsp_zcr_frame(x, n, t);
		if (!want_spec)
			continue;
		dsp_stft_frame(&w->stft, x, n, t, w->mag, w->pow);
		if (r.centroid) {
			r.centroid[t] = dsp_centroid_frame(w->mag, w->freqs);
			r.rolloff[t] = dsp_rolloff_frame(w->mag, w->freqs);
		}
		if (want_mel) {
			float *db = w->db + t * DSP_N_MELS;
			dsp_mel_db_frame(&w->mel, w->pow, db);
			for (int m = 0; m < DSP_N_MELS; m++)
				if (db[m] > db_max)
					db_max = db[m];
		}
		if (want_tuning)
			dsp_peaks_frame(&w->peaks, w->pow);
	}

	if (want_mel) {
		w->db_max = db_max;
		float floor_db = db_max - 80.0f;
		for (size_t i = 0; i < T * DSP_N_MELS; i++)
			if (w->db[i] < floor_db)
				w->db[i] = floor_db;
	}
	if (calc & DSP_FEAT_TEMPO && (rc = analyze_tempo(w, &r, err, n_err)) != 0)
		goto out;
	if (calc & DSP_FEAT_TEMPO)
		analyze_structure(w, &r, feat & DSP_FEAT_SECTIONS);
	if (r.mfcc) {
		float c[DSP_N_MFCC];
		for (size_t t = 0; t < T; t++) {
			dsp_mfcc_frame(w->dct, w->db + t * DSP_N_MELS, c);
			for (int k = 0; k < DSP_N_MFCC; k++)
				r.mfcc[(size_t)k * T + t] = c[k];
		}
	}

	/* pass 2 */
	if (want_tuning) {
		r.tuning = dsp_tuning_from_peaks(&w->peaks);
		if (want_chords) {
			w->n_low = dsp_bass_signal_len(n);
			w->n_mid = dsp_mid_signal_len(n);
			if (!(w->low = ualloc(&wa, w->n_low ? w->n_low : 1, sizeof(float))) ||
			    !(w->mid = ualloc(&wa, w->n_mid ? w->n_mid : 1, sizeof(float))))
				goto nomem;
			dsp_bass_signal(x, n, w->low);
			dsp_mid_signal(x, n, w->mid);
		}
		if (want_chroma)
			dsp_chroma_fb(r.tuning, w->chroma_fb);
		for (size_t t = 0; want_chroma && t < T; t++) {
			float c[DSP_N_CHROMA];
			dsp_stft_frame(&w->stft, x, n, t, w->mag, w->pow);
			dsp_chroma_frame(w->chroma_fb, w->pow, c);
			for (int k = 0; k < DSP_N_CHROMA; k++)
				r.chroma[(size_t)k * T + t] = c[k];
		}
		if (want_chords)
			analyze_chords(w, &r);
		if (want_key_changes)
			analyze_key_changes(w, &r); /* the key is the one that lasts longest */
		if (feat & DSP_FEAT_KEY)
			analyze_key(w, &r);
	}

	if (r.rms)
		r.energy = mean_f32(r.rms, T);
	if (r.zcr) {
		r.zero_crossing_rate = mean_f32(r.zcr, T);
		r.spectral_centroid_hz = mean_f64(r.centroid, T);
		r.spectral_rolloff_hz = mean_f64(r.rolloff, T);
	}
	goto out;

nomem:
	rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory for the analysis of %zu samples.", n);
out:
	if (w) {
		dsp_stft_free(&w->stft);
		dsp_tg_work_free(&w->tg);
	}
	arena_free(&wa);
	if (rc) {
		arena_free(&r.mem);
		return rc;
	}
	*out = r;
	return 0;
}

void dsp_result_free(struct dsp_result *r)
{
	if (!r)
		return;
	arena_free(&r->mem);
	memset(r, 0, sizeof *r);
	r->key_pc = -1;
}

int dsp_analyze_file(const char *path, const struct dsp_options *opt, struct dsp_result *out,
                     char *err, size_t n_err)
{
	/* One decode: the analysis gets 22050 Hz mono, the loudness meter (when asked) the
	 * file's own samples through the decoder's tap. */
	unsigned feat = (opt && opt->features) ? opt->features : DSP_FEAT_ALL;
	struct audio_stream_info info = {0};
	struct dsp_meter *meter = NULL;
	if ((feat & DSP_FEAT_LOUDNESS) && !(meter = dsp_meter_new(&info)))
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory while decoding");
	struct audio_buf buf;
	memset(&buf, 0, sizeof buf);
	int rc = meter ? audio_decode_tap(path, DSP_SAMPLE_RATE_HZ, 1, DSP_MAX_SECONDS,
	                                  dsp_meter_sink, meter, &info, &buf, err, n_err)
	               : audio_decode(path, DSP_SAMPLE_RATE_HZ, 1, DSP_MAX_SECONDS, &buf, err,
	                              n_err);
	struct dsp_loudness loudness;
	if (!rc && meter)
		rc = dsp_meter_finish(meter, &loudness, err, n_err);
	else
		dsp_meter_free(meter);
	if (!rc)
		rc = dsp_analyze(buf.data, buf.n_frames, opt, out, err, n_err);
	audio_buf_free(&buf);
	if (!rc && meter) {
		out->loudness = loudness;
		out->features |= DSP_FEAT_LOUDNESS;
	}
	return rc;
}
