/* structure.c - bars and sections: where the bars start (downbeats) and where the song
 * changes (sections), from the tracked beats and the mel dB matrix.
 *
 * Beat phase and downbeats, chosen together. librosa's tracker puts the beats where its
 * onset envelope is strongest, and on songs whose bass, chord stabs or open hats sit on
 * the off-beats that is half a beat early (in shuffles, on the swung eighth), often only
 * in some sections. So the beats may move by 1/4, 1/3, 1/2, 2/3 or 3/4 of a beat, and for
 * each shift every meter of 3 or 4 beats and its phase is a hypothesis (6 x 7). Each beat
 * of a shift gets fourteen terms: how far the mean mel spectrum up to ~2.7 kHz (chords and
 * bass) of its beat differs from the beat before, the level of the lowest bands, and the
 * onset envelopes' peaks at the beat in five bands (under ~125 Hz: kicks; ~125-300 Hz;
 * ~300 Hz-1.8 kHz; ~1.8-4.5 kHz; and above: hats) and over all bands, then the same six
 * envelopes' peaks in the percussive part of the spectrum (each band's level above its
 * median over 17 frames, as in harmonic/percussive separation), which hear the drums
 * without the bass notes and chord stabs that start with them. On each window of 16 beats
 * a hypothesis is scored by the terms' contrast between its bar starts and the other beats
 * (each term standardised over the song's beats: harmony changes and kicks fall on bar
 * starts), the log mean peak of each of the twelve envelopes on its beats (kicks and snares
 * fall on beats), and a preference for 4/4 and for no shift; Viterbi over the windows
 * picks one hypothesis per window, a change costing 6. The weights maximise the expected
 * beat plus downbeat F-measure of a softmax over each song's 42 hypotheses (its windows'
 * terms averaged), fitted on the 600 songs of bench/analysis-accuracy's corpora of seeds
 * 17-20 with an L2 pull of 0.003 towards the previous weights; leaving one corpus out at a
 * time, beat F 0.898 and downbeat F 0.852 without the percussive contrasts, 0.909 and 0.876
 * with them (offline, on the tracker's beats); held out, seeds 21 and 22 (see that README).
 *
 * Sections. Bars are described by their mean mel spectrum (all bands, each standardised
 * across the bars) and their level (mean RMS, dB). A Gaussian-tapered checkerboard kernel
 * of 4+4 bars slid along the bars' cosine self-similarity matrix (Foote's novelty) peaks where the sound
 * changes; the spectra have their own level taken out, and the level's change between the
 * 4 bars before and after is added instead, scaled alike, since build-ups and drops change
 * loudness more than timbre. Local peaks above mean + std/4 of the novelty, at least 4
 * bars apart, are the boundaries; a peak moves to the nearest 4-bar
 * phrase start when the novelty there is nearly as high (phrases are 4, 8, 16 bars).
 * Labels come from the level: the loud half of the song (above the midpoint between its
 * quietest and loudest section) is "drop"; a quiet first or last section is "intro" or
 * "outro"; a quiet section that rises into a drop is "build"; other quiet ones are
 * "breakdown".
 *
 * Both are linear in the song's length (the self-similarity is only needed within 4 bars
 * of its diagonal, so no matrix is kept; the median filter keeps 17 sorted values per
 * band): a few ms per song.
 */
#include <math.h>
#include <string.h>

#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"
#include "util/str.h"
#include "util/simd.h"

enum {
	DB_CHORD_BANDS = 80, /* mel bands 0..79: up to ~2.7 kHz */
	NOVELTY_BARS = 4,    /* half the checkerboard kernel, in bars */
	MIN_SECTION_BARS = 4,
	PHRASE_BARS = 4,
};

/* Mean of frames [t0, t1) of the frame-major dB matrix, bands [0, nb), into out. */
static void seg_mean(const float *db, size_t t0, size_t t1, int nb, float *out)
{
	for (int m = 0; m < nb; m++)
		out[m] = 0.0f;
	if (t1 <= t0)
		return;
	for (size_t t = t0; t < t1; t++)
		for (int m = 0; m < nb; m++)
			out[m] += db[t * DSP_N_MELS + (size_t)m];
	for (int m = 0; m < nb; m++)
		out[m] /= (float)(t1 - t0);
}

enum {
	BAR_BANDS = 6,
	N_ENVS = 2 * BAR_BANDS, /* each band's onsets in the whole and the percussive spectrum */
	BAR_TERMS = 2 + N_ENVS,
	HARM_FRAMES = 17, /* the horizontal median filter's length */
	N_SHIFTS = 6,
	N_HYP = N_SHIFTS * 7, /* each shift x (3/4: phases 0..2, 4/4: phases 0..3) */
	BAR_WINDOW = 16,      /* beats a phase holds at least (unless the song is shorter) */
};

static size_t n_windows(size_t nb) { return nb / BAR_WINDOW > 0 ? nb / BAR_WINDOW : 1; }

size_t dsp_downbeats_work_floats(size_t n_beats, size_t T)
{
	return (N_ENVS + DSP_PERC_LANES) * T + n_beats * (BAR_TERMS + N_ENVS + 3) +
	       2 * DB_CHORD_BANDS + 2 * n_windows(n_beats) * N_HYP;
}

/* clang-format off */
/* weights: log mean peak per envelope (kick, low, mid, high-mid, high, all; then the same
 * bands' percussive part); contrast of the bar starts for harmony change, low level and the
 * twelve peaks; 4/4; no shift */
static const double W_PEAK[N_ENVS] = {1.60, -0.90, -1.11, -0.30, 0.47, -0.18,
                                      2.50, 1.08,  0.46,  1.79,  0.34, 0.92};
static const double W_BAR[BAR_TERMS] = {4.82, 0.63,  1.32,  -1.02, 1.13,  1.43, 0.80,
                                        -1.34, 1.70, -0.70, -0.60, -0.84, -0.71, -1.06};
static const double W_FOUR = 1.08, W_NO_SHIFT = 0.77, SWITCH_COST = 6.0;
static const int SHIFTS[] = {0, 6, 8, 12, 16, 18}; /* in 24ths of a beat */
/* clang-format on */

/* Beats [a, e) of the nb beats shifted by s/24 of their interval (the last by the one
 * before), at most to the last frame but one, into bt[a, e). */
static void shift_beats(const int *beats, size_t nb, size_t a, size_t e, int s, size_t T, float *bt)
{
	for (size_t i = a; i < e; i++) {
		int iv = i + 1 < nb ? beats[i + 1] - beats[i] : beats[i] - beats[i - 1];
		double t = beats[i] + (double)iv * s / 24.0;
		bt[i] = (float)fmin(t, (double)T - 2.0);
	}
}

/* The BAR_TERMS terms of each of the nb beats bt into f[nb * BAR_TERMS], each standardised
 * over the beats, and the raw peaks of all N_ENVS envelopes into pk[nb * N_ENVS]. */
static void bar_terms(const float *db, size_t T, float *const env[N_ENVS], const float *bt,
                      size_t nb, float *f, float *pk, float *prev, float *cur)
{
	for (size_t i = 0; i < nb; i++) {
		long t0 = lround(bt[i]);
		long t1 = lround(i + 1 < nb ? bt[i + 1] : 2.0 * bt[i] - bt[i - 1]);
		if (t1 > (long)T)
			t1 = (long)T;
		if (t0 > (long)T - 1)
			t0 = (long)T - 1;
		seg_mean(db, (size_t)t0, (size_t)(t1 > t0 ? t1 : t0 + 1), DB_CHORD_BANDS, cur);
		float *x = f + i * BAR_TERMS;
		double d2 = 0.0, lo = 0.0;
		for (int m = 0; i > 0 && m < DB_CHORD_BANDS; m++)
			d2 += (double)(cur[m] - prev[m]) * (cur[m] - prev[m]);
		for (int m = 0; m < 5; m++)
			lo += cur[m] / 5.0;
		x[0] = (float)sqrt(d2 / DB_CHORD_BANDS);
		x[1] = (float)lo;
		for (int b = 0; b < N_ENVS; b++)
			x[2 + b] = pk[i * N_ENVS + b] = (float)dsp_env_peak(env[b], T, t0 - 1,
			                                                    t0 + 2);
		float *was = prev; /* this beat's bands are the next one's previous */
		prev = cur;
		cur = was;
	}
	for (int k = 0; k < BAR_TERMS; k++) {
		double s1 = 0.0, s2 = 0.0;
		for (size_t i = 0; i < nb; i++)
			s1 += f[i * BAR_TERMS + k];
		double mu = s1 / (double)nb;
		for (size_t i = 0; i < nb; i++)
			s2 += (f[i * BAR_TERMS + k] - mu) * (f[i * BAR_TERMS + k] - mu);
		double sd = sqrt(s2 / (double)nb) + 1e-9;
		for (size_t i = 0; i < nb; i++)
			f[i * BAR_TERMS + k] = (float)((f[i * BAR_TERMS + k] - mu) / sd);
	}
}

/* Hypothesis h: shift SHIFTS[h / 7]; then meter and bar phase from h % 7 (3/4 phases 0..2,
 * 4/4 phases 0..3). */
static void meter_phase(int h, int *M, int *p)
{
	*M = h % 7 < 3 ? 3 : 4;
	*p = h % 7 < 3 ? h % 7 : h % 7 - 3;
}

/* The score of each hypothesis of shift si on each window of beats into sc[nw * N_HYP]. */
static void score_windows(const float *f, const float *pk, size_t nb, int si, float *sc)
{
	size_t nw = n_windows(nb);
	for (size_t k = 0; k < nw; k++) {
		size_t a = k * nb / nw, e = (k + 1) * nb / nw;
		double base = SHIFTS[si] == 0 ? W_NO_SHIFT : 0.0;
		for (int b = 0; b < N_ENVS; b++) {
			double m = 0.0;
			for (size_t i = a; i < e; i++)
				m += pk[i * N_ENVS + b];
			base += W_PEAK[b] * log(m / (double)(e - a) + 1e-3);
		}
		for (int h = si * 7; h < si * 7 + 7; h++) {
			int M, p;
			meter_phase(h, &M, &p);
			double on[BAR_TERMS] = {0}, off[BAR_TERMS] = {0};
			size_t n_on = 0;
			for (size_t i = a; i < e; i++) {
				int is_on = (int)(i % (size_t)M) == p;
				double *acc = is_on ? on : off;
				n_on += (size_t)is_on;
				for (int t = 0; t < BAR_TERMS; t++)
					acc[t] += f[i * BAR_TERMS + t];
			}
			double score = base + (M == 4 ? W_FOUR : 0.0);
			for (int t = 0; n_on > 0 && n_on < e - a && t < BAR_TERMS; t++)
				score += W_BAR[t] *
				         (on[t] / (double)n_on - off[t] / (double)(e - a - n_on));
			sc[k * N_HYP + (size_t)h] = (float)score;
		}
	}
}

/* The percussive levels of DSP_PERC_LANES bands side by side: x[t * DSP_PERC_LANES + l]
 * replaced by max(x - the median of its HARM_FRAMES-frame window, 0). Each lane keeps its
 * window sorted: a step takes out the value leaving (at its rank, the count of values below it)
 * and puts in the one entering (at its rank among the rest), with compares and selects
 * over the lanes instead of branches. The sorted window of a multiset is unique, so the
 * medians are those of any exact median filter. */
SFA_CLONES static void percussive_lanes(float *x, size_t T)
{
	enum { H = HARM_FRAMES / 2, L = DSP_PERC_LANES };
	float win[HARM_FRAMES][L], ring[H + 1][L], first[L];
	for (int l = 0; l < L; l++) {
		first[l] = x[l];
		for (int k = 0; k < HARM_FRAMES; k++) { /* insertion sort of the first window */
			long i = k - H;
			float v = x[(i < 0 ? 0 : i >= (long)T ? T - 1 : (size_t)i) * L + (size_t)l];
			int j = k;
			for (; j > 0 && win[j - 1][l] > v; j--)
				win[j][l] = win[j - 1][l];
			win[j][l] = v;
		}
	}
	for (size_t t = 0; t < T; t++) {
		float *v = x + t * L;
		const float *in = x + (t + H + 1 < T ? t + H + 1 : T - 1) * L;
		const float *out = t < H ? first : ring[(t - H) % (H + 1)];
		float *keep = ring[t % (H + 1)];
		int r[L], q[L];
		for (int l = 0; l < L; l++) {
			keep[l] = v[l];
			float p = v[l] - win[H][l];
			v[l] = p > 0.0f ? p : 0.0f;
			r[l] = q[l] = 0;
		}
		if (t + 1 == T)
			break; /* (in is this very row, now replaced: no window follows) */
		for (int j = 0; j < HARM_FRAMES; j++)
			for (int l = 0; l < L; l++) {
				r[l] += win[j][l] < out[l];
				q[l] += win[j][l] < in[l];
			}
		/* in's rank among the window without out: one less when out was below it */
		for (int l = 0; l < L; l++)
			q[l] -= out[l] < in[l];
		float next[HARM_FRAMES][L];
		for (int j = 0; j < HARM_FRAMES; j++)
			for (int l = 0; l < L; l++) {
				/* the window without out: rest(j) = win[j] below r, win[j + 1] from it */
				float at = j < r[l] ? win[j][l]
				                    : win[j + 1 < HARM_FRAMES ? j + 1 : j][l];
				float before = j - 1 < r[l] ? win[j > 0 ? j - 1 : 0][l] : win[j][l];
				next[j][l] = j < q[l] ? at : j == q[l] ? in[l] : before;
			}
		memcpy(win, next, sizeof win);
	}
}

void dsp_percussive_onsets(const float *db, size_t T, const int bands[][2], int n_bands, float *col,
                           float *const env[])
{
	for (int b = 0; b < n_bands; b++)
		memset(env[b], 0, T * sizeof(float));
	if (T == 0)
		return;
	for (int m0 = 0; m0 < DSP_N_MELS; m0 += DSP_PERC_LANES) {
		for (size_t t = 0; t < T; t++)
			memcpy(col + t * DSP_PERC_LANES, db + t * DSP_N_MELS + (size_t)m0,
			       DSP_PERC_LANES * sizeof *col);
		percussive_lanes(col, T);
		for (int l = 0; l < DSP_PERC_LANES; l++)
			for (int b = 0, m = m0 + l; b < n_bands; b++)
				if (m >= bands[b][0] && m < bands[b][1])
					for (size_t t = 3; t < T; t++) {
						float d =
							col[(t - 2) * DSP_PERC_LANES + (size_t)l] -
							col[(t - 3) * DSP_PERC_LANES + (size_t)l];
						if (d > 0.0f)
							env[b][t] += d;
					}
	}
	for (int b = 0; b < n_bands; b++)
		for (size_t t = 3; t < T; t++)
			env[b][t] /= (float)(bands[b][1] - bands[b][0]);
}

size_t dsp_downbeats(const float *db, size_t T, int *beats, size_t *n_beats, float *work,
                     int *beats_per_bar, int *down)
{
	size_t nb = *n_beats;
	*beats_per_bar = 4;
	if (nb < 8)
		return 0;
	static const int BANDS[BAR_BANDS][2] = {{0, 5},   {5, 12},   {12, 40},
	                                        {40, 96}, {96, 128}, {0, 128}};
	float *env[N_ENVS];
	for (int b = 0; b < N_ENVS; b++)
		env[b] = work + (size_t)b * T;
	for (int b = 0; b < BAR_BANDS; b++)
		dsp_band_onsets(db, T, BANDS[b][0], BANDS[b][1], env[b]);
	dsp_percussive_onsets(db, T, BANDS, BAR_BANDS, work + N_ENVS * T, env + BAR_BANDS);
	size_t nw = n_windows(nb);
	float *f = work + (N_ENVS + 1) * T, *pk = f + nb * BAR_TERMS, *bt = pk + nb * N_ENVS;
	float *prev = bt + nb, *cur = prev + DB_CHORD_BANDS, *sc = cur + DB_CHORD_BANDS;
	int *back = (int *)(sc + nw * N_HYP), *out = back + nw * N_HYP, *is_down = out + nb;
	for (int si = 0; si < N_SHIFTS; si++) {
		shift_beats(beats, nb, 0, nb, SHIFTS[si], T, bt);
		bar_terms(db, T, env, bt, nb, f, pk, prev, cur);
		score_windows(f, pk, nb, si, sc);
	}
	/* Viterbi over the windows: a hypothesis may change between windows at a cost */
	double acc[N_HYP];
	for (int h = 0; h < N_HYP; h++)
		acc[h] = sc[h];
	for (size_t k = 1; k < nw; k++) {
		int bi = 0;
		for (int h = 1; h < N_HYP; h++)
			if (acc[h] > acc[bi])
				bi = h;
		double sw = acc[bi] - SWITCH_COST;
		for (int h = 0; h < N_HYP; h++) {
			back[k * N_HYP + (size_t)h] = acc[h] >= sw ? h : bi;
			acc[h] = (acc[h] >= sw ? acc[h] : sw) + sc[k * N_HYP + (size_t)h];
		}
	}
	int h = 0;
	for (int j = 1; j < N_HYP; j++)
		if (acc[j] > acc[h])
			h = j;
	int meter[2] = {0, 0}; /* beats in 3/4 and in 4/4 hypotheses */
	for (size_t k = nw; k-- > 0;) {
		int M, p;
		meter_phase(h, &M, &p);
		size_t a = k * nb / nw, e = (k + 1) * nb / nw;
		shift_beats(beats, nb, a, e, SHIFTS[h / 7], T, bt);
		for (size_t i = a; i < e; i++) {
			out[i] = (int)lround(bt[i]);
			is_down[i] = (int)(i % (size_t)M) == p;
		}
		meter[M - 3] += (int)(e - a);
		if (k > 0)
			h = back[k * N_HYP + (size_t)h];
	}
	/* the windows' beats in order: where the shift changes, neighbours may collide */
	size_t m = 0, n = 0;
	for (size_t i = 0; i < nb; i++) {
		if (m > 0 && out[i] <= beats[m - 1])
			continue;
		beats[m++] = out[i];
		if (is_down[i])
			down[n++] = out[i];
	}
	*n_beats = m;
	*beats_per_bar = meter[0] > meter[1] ? 3 : 4;
	return n;
}

size_t dsp_beats_from_start(const float *db, size_t T, float db_max, int *beats, size_t *n_beats,
                            size_t cap)
{
	size_t nb = *n_beats;
	if (nb < 9)
		return 0;
	float d[8];
	for (int i = 0; i < 8; i++)
		d[i] = (float)(beats[i + 1] - beats[i]);
	double p = dsp_median_f32(d, 8);
	if (!(p >= 1.0))
		return 0;
	size_t start = 0; /* the first frame with sound: a band within 50 dB of the loudest */
	while (start < T) {
		float m = db[start * DSP_N_MELS];
		for (int b = 1; b < DSP_N_MELS; b++)
			m = fmaxf(m, db[start * DSP_N_MELS + (size_t)b]);
		if (m >= db_max - 50.0f)
			break;
		start++;
	}
	size_t k = 0;
	while (nb + k < cap && (double)beats[0] - (double)(k + 1) * p >= (double)start)
		k++;
	if (!k)
		return 0;
	memmove(beats + k, beats, nb * sizeof *beats);
	for (size_t i = 0; i < k; i++)
		beats[i] = (int)lround((double)beats[k] - (double)(k - i) * p);
	*n_beats = nb + k;
	return k;
}

double dsp_median_bar_frames(const int *down, size_t nd)
{
	if (nd < 2)
		return 0.0;
	float d[64];
	size_t n = 0;
	for (size_t i = 1; i < nd && n < sizeof d / sizeof d[0]; i++)
		d[n++] = (float)(down[i] - down[i - 1]);
	return dsp_median_f32(d, n);
}

size_t dsp_sections_work_floats(size_t n_downbeats) { return n_downbeats * (DSP_N_MELS + 3); }

size_t dsp_sections_cap(size_t n_downbeats) { return n_downbeats / MIN_SECTION_BARS + 2; }

static double level_db(const float *rms, size_t t0, size_t t1)
{
	double s = 0.0;
	for (size_t t = t0; t < t1; t++)
		s += rms[t];
	return 20.0 * log10((t1 > t0 ? s / (double)(t1 - t0) : 0.0) + 1e-9);
}

size_t dsp_sections(const float *db, const float *rms, size_t T, const int *down, size_t nd,
                    float *work, struct dsp_section *out)
{
	if (nd < 2 * MIN_SECTION_BARS || T == 0)
		return 0;
	size_t B = nd;   /* bar k spans down[k] .. down[k+1] (the last: to the end) */
	float *F = work; /* [B * 128] bar spectra, then standardised */
	float *lev = F + B * DSP_N_MELS; /* [B] bar level, dB */
	float *nov = lev + B;            /* [B] novelty */
	float *lev_nov = nov + B;        /* [B] the level's change, then the boundaries */
	for (size_t k = 0; k < B; k++) {
		size_t t0 = (size_t)down[k], t1 = k + 1 < B ? (size_t)down[k + 1] : T;
		seg_mean(db, t0, t1, DSP_N_MELS, F + k * DSP_N_MELS);
		lev[k] = (float)level_db(rms, t0, t1);
	}
	for (size_t k = 0; k < B; k++) { /* the spectrum's shape: its level counts separately */
		double lvl = 0;
		for (int m = 0; m < DSP_N_MELS; m++)
			lvl += F[k * DSP_N_MELS + (size_t)m];
		lvl /= DSP_N_MELS;
		for (int m = 0; m < DSP_N_MELS; m++)
			F[k * DSP_N_MELS + (size_t)m] -= (float)lvl;
	}
	for (int m = 0; m < DSP_N_MELS; m++) {
		double mean = 0, var = 0;
		for (size_t k = 0; k < B; k++)
			mean += F[k * DSP_N_MELS + (size_t)m];
		mean /= (double)B;
		for (size_t k = 0; k < B; k++) {
			double d = F[k * DSP_N_MELS + (size_t)m] - mean;
			var += d * d;
		}
		double sd = sqrt(var / (double)B) + 1e-6;
		for (size_t k = 0; k < B; k++)
			F[k * DSP_N_MELS + (size_t)m] =
				(float)((F[k * DSP_N_MELS + (size_t)m] - mean) / sd);
	}
	for (size_t k = 0; k < B; k++) { /* unit rows: a dot product is the cosine */
		double nn = 0;
		for (int m = 0; m < DSP_N_MELS; m++)
			nn += (double)F[k * DSP_N_MELS + (size_t)m] * F[k * DSP_N_MELS + (size_t)m];
		float inv = (float)(1.0 / (sqrt(nn) + 1e-9));
		for (int m = 0; m < DSP_N_MELS; m++)
			F[k * DSP_N_MELS + (size_t)m] *= inv;
	}
	/* Foote's novelty plus the level's change, each scaled to its largest value */
	const int K = NOVELTY_BARS;
	double max_f = 1e-9, max_e = 6.0; /* a level change counts fully from 6 dB */
	for (size_t k = 0; k < B; k++) {
		double f = 0, before = 0, after = 0;
		int n_before = 0, n_after = 0;
		for (int i = -K; i < K; i++) {
			long a = (long)k + i;
			if (a < 0 || a >= (long)B)
				continue;
			if (i < 0)
				before += lev[a], n_before++;
			else
				after += lev[a], n_after++;
			for (int j = -K; j < K; j++) {
				long b = (long)k + j;
				if (b < 0 || b >= (long)B)
					continue;
				double w = exp(-0.5 *
				               ((i + 0.5) * (i + 0.5) + (j + 0.5) * (j + 0.5)) /
				               (double)(K * K)); /* Gaussian taper */
				double cos_ab =
					0; /* the self-similarity matrix, only near its diagonal */
				for (int m = 0; m < DSP_N_MELS; m++)
					cos_ab += (double)F[(size_t)a * DSP_N_MELS + (size_t)m] *
					          F[(size_t)b * DSP_N_MELS + (size_t)m];
				f += ((i < 0) == (j < 0) ? w : -w) * cos_ab;
			}
		}
		nov[k] = (float)(f > 0 ? f : 0);
		lev_nov[k] = (float)(n_before && n_after ? fabs(after / n_after - before / n_before)
		                                         : 0.0);
		if (nov[k] > max_f)
			max_f = nov[k];
		if (lev_nov[k] > max_e)
			max_e = lev_nov[k];
	}
	double mean = 0, var = 0;
	for (size_t k = 0; k < B; k++) {
		nov[k] = (float)(nov[k] / max_f + lev_nov[k] / max_e);
		mean += nov[k];
	}
	mean /= (double)B;
	for (size_t k = 0; k < B; k++)
		var += (nov[k] - mean) * (nov[k] - mean);
	double threshold = mean + 0.25 * sqrt(var / (double)B);

	/* boundaries: strongest peaks first, each at least MIN_SECTION_BARS from the others
	 * and from both ends; lev_nov marks the chosen bars (1) from here on */
	for (size_t k = 0; k < B; k++)
		lev_nov[k] = 0;
	for (;;) {
		size_t best = 0;
		double best_v = threshold;
		for (size_t k = MIN_SECTION_BARS; k + MIN_SECTION_BARS <= B; k++) {
			int peak = nov[k] > best_v;
			for (size_t j = k > 2 ? k - 2 : 0; peak && j <= k + 2 && j < B; j++)
				peak = j == k || nov[j] <= nov[k];
			for (size_t j = k - MIN_SECTION_BARS + 1;
			     peak && j < k + MIN_SECTION_BARS && j < B; j++)
				peak = lev_nov[j] == 0;
			if (peak) {
				best = k;
				best_v = nov[k];
			}
		}
		if (!best)
			break;
		/* to the nearest phrase start when it is nearly as strong and still free */
		size_t r = best % PHRASE_BARS,
		       snap = r <= PHRASE_BARS / 2 ? best - r : best + PHRASE_BARS - r;
		int free_snap = snap >= MIN_SECTION_BARS && snap + MIN_SECTION_BARS <= B &&
		                nov[snap] >= 0.7 * nov[best];
		for (size_t j = snap >= MIN_SECTION_BARS ? snap - MIN_SECTION_BARS + 1 : 0;
		     free_snap && j < snap + MIN_SECTION_BARS && j < B; j++)
			free_snap = lev_nov[j] == 0;
		lev_nov[free_snap ? snap : best] = 1;
		nov[best] = 0; /* not chosen again */
	}

	/* sections: from the start (bar 1 also holds any pick-up before the first downbeat) */
	size_t n = 0, first_bar = 0;
	for (size_t k = 1; k <= B; k++) {
		if (k < B && lev_nov[k] == 0)
			continue;
		struct dsp_section *s = &out[n++];
		s->start_s = first_bar == 0 ? 0.0 : (double)down[first_bar] * DSP_HOP / DSP_SR_HZ;
		s->end_s = k < B ? (double)down[k] * DSP_HOP / DSP_SR_HZ
		                 : (double)T * DSP_HOP / DSP_SR_HZ;
		s->bar = (int)first_bar + 1;
		size_t t0 = first_bar == 0 ? 0 : (size_t)down[first_bar],
		       t1 = k < B ? (size_t)down[k] : T;
		s->level_db = level_db(rms, t0, t1);
		size_t mid = t0 + (t1 - t0) / 2;
		s->rise_db = level_db(rms, mid, t1) - level_db(rms, t0, mid);
		first_bar = k;
	}
	double lo = INFINITY, hi = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		lo = fmin(lo, out[i].level_db);
		hi = fmax(hi, out[i].level_db);
	}
	double mid_level = hi - lo < 3.0 ? -INFINITY : (lo + hi) / 2.0; /* flat: all loud */
	for (size_t i = 0; i < n; i++) {
		int loud = out[i].level_db >= mid_level;
		int next_loud = i + 1 < n && out[i + 1].level_db >= mid_level;
		const char *label = loud                                ? "drop"
		                    : i == 0                            ? "intro"
		                    : i + 1 == n                        ? "outro"
		                    : next_loud && out[i].rise_db > 1.5 ? "build"
		                                                        : "breakdown";
		str_copy(out[i].label, sizeof out[i].label, label);
	}
	return n;
}
