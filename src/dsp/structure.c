/* structure.c - bars and sections: where the bars start (downbeats) and where the song
 * changes (sections), from the tracked beats and the mel dB matrix.
 *
 * Downbeats. Harmony and bass change on bar starts far more often than inside a bar, and
 * a drum pattern repeats once a bar. So each beat gets a "bar start evidence": how far the
 * mean mel spectrum (up to ~2.7 kHz, where chords and bass live) of the beat differs from
 * the beat before. For a meter of M beats and a phase p, the contrast is the mean evidence
 * on beats p, p+M, p+2M... minus the mean on the others; the best (M, p) wins, with 4/4
 * preferred unless 3/4 is clearly better (DJ material is overwhelmingly in four).
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
 * of its diagonal, so no matrix is kept): a few ms per song.
 */
#include <math.h>
#include <string.h>

#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"
#include "util/str.h"

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

/* The frame after beat i: the next beat, or one beat interval on for the last. */
static size_t beat_end(const int *beats, size_t nb, size_t i, size_t T)
{
	size_t end = i + 1 < nb ? (size_t)beats[i + 1]
	                        : (size_t)beats[i] + (size_t)(beats[i] - beats[i > 0 ? i - 1 : 0]);
	return end > T ? T : end;
}

size_t dsp_downbeats_work_floats(size_t n_beats) { return n_beats * (DB_CHORD_BANDS + 1); }

size_t dsp_downbeats(const float *db, size_t T, const int *beats, size_t nb, float *work,
                     int *beats_per_bar, int *down)
{
	*beats_per_bar = 4;
	if (nb < 8)
		return 0;
	float *feat = work;                     /* [nb * DB_CHORD_BANDS] */
	float *ev = work + nb * DB_CHORD_BANDS; /* [nb] */
	for (size_t i = 0; i < nb; i++)
		seg_mean(db, (size_t)beats[i], beat_end(beats, nb, i, T), DB_CHORD_BANDS,
		         feat + i * DB_CHORD_BANDS);
	ev[0] = 0.0f;
	for (size_t i = 1; i < nb; i++) {
		double s = 0.0;
		for (int m = 0; m < DB_CHORD_BANDS; m++) {
			double d = feat[i * DB_CHORD_BANDS + (size_t)m] -
			           feat[(i - 1) * DB_CHORD_BANDS + (size_t)m];
			s += d * d;
		}
		ev[i] = (float)sqrt(s / DB_CHORD_BANDS);
	}
	double best[5] = {0};
	int phase[5] = {0};
	for (int M = 3; M <= 4; M++) {
		best[M] = -INFINITY;
		for (int p = 0; p < M; p++) {
			double on = 0, off = 0;
			size_t n_on = 0, n_off = 0;
			for (size_t i = 1; i < nb; i++) {
				if ((int)(i % (size_t)M) == p)
					on += ev[i], n_on++;
				else
					off += ev[i], n_off++;
			}
			double score = (n_on ? on / (double)n_on : 0) -
			               (n_off ? off / (double)n_off : 0);
			if (score > best[M]) {
				best[M] = score;
				phase[M] = p;
			}
		}
	}
	int M = (best[3] > 0 && best[3] > 1.25 * best[4]) ? 3 : 4;
	*beats_per_bar = M;
	size_t n = 0;
	for (size_t i = (size_t)phase[M]; i < nb; i += (size_t)M)
		down[n++] = beats[i];
	return n;
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
