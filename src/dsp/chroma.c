/* chroma.c - tuning estimation and chroma_stft.
 *
 * librosa.feature.chroma_stft first estimates the tuning offset from the whole power
 * spectrogram (estimate_tuning -> piptrack -> pitch_tuning), then builds the Ellis chroma
 * filterbank for that tuning and projects every power frame on it. The tuning is a global
 * quantity (a median over every spectral peak of the file), so chroma needs two passes:
 * the first pass collects the peaks (dsp_peaks_frame, one magnitude and one histogram bin
 * per peak, at most one peak per two bins), the second recomputes each frame's spectrum
 * and applies the filterbank (dsp_chroma_frame).
 *
 * piptrack runs in float32 in librosa (its arrays are float32, its parabolic interpolation
 * a numba kernel that promotes to float64 where an integer constant appears); the kernels
 * below repeat that so the tuning histogram bin is the same as librosa's, which the chroma
 * values depend on (one 0.01 bin of tuning moves chroma by up to 1e-2).
 */
#include "dsp/dsp_internal.h"

#include <math.h>
#include <string.h>

#include "util/simd.h"

enum { PEAKS_PER_FRAME = (DSP_PIP_HI - DSP_PIP_LO + 2) / 2 + 1 };

size_t dsp_peaks_cap(size_t n_frames) { return n_frames * PEAKS_PER_FRAME; }

/* np.histogram edges np.linspace(-0.5, 0.5, 101)[i] */
static double tuning_edge(int i)
{
	if (i >= DSP_TUNING_BINS)
		return 0.5;
	return (double)i * (1.0 / DSP_TUNING_BINS) + -0.5;
}

static uint8_t tuning_bin(float residual)
{
	double r = residual;
	int i = (int)floor((r + 0.5) * DSP_TUNING_BINS);
	if (i < 0)
		i = 0;
	if (i > DSP_TUNING_BINS - 1)
		i = DSP_TUNING_BINS - 1;
	while (i > 0 && r < tuning_edge(i))
		i--;
	while (i < DSP_TUNING_BINS - 1 && r >= tuning_edge(i + 1))
		i++;
	return (uint8_t)i;
}

void dsp_peaks_frame(struct dsp_peaks *pk, const float *S)
{
	float smax = 0.0f;
	for (size_t k = 0; k < DSP_N_BINS; k++)
		if (S[k] > smax)
			smax = S[k];
	float ref = 0.1f * smax;
	for (int k = DSP_PIP_LO; k <= DSP_PIP_HI; k++) {
		/* local max of S * (S > ref): neighbours at or under ref count as 0 */
		float x = S[k] > ref ? S[k] : 0.0f;
		float xm = S[k - 1] > ref ? S[k - 1] : 0.0f;
		float xp = S[k + 1] > ref ? S[k + 1] : 0.0f;
		if (!(x > xm && x >= xp))
			continue;
		/* _parabolic_interpolation (numba: 2 * x[0] and / 2 promote to float64) */
		float sp = S[k + 1], sm = S[k - 1];
		double a = (double)(sp + sm) - 2.0 * (double)S[k];
		double b = (double)(sp - sm) / 2.0;
		float shift = (fabs(b) >= fabs(a)) ? 0.0f : (float)(-b / a);
		float avg = (sp - sm) / 2.0f; /* np.gradient */
		float dskew = 0.5f * avg * shift;
		float mag = S[k] + dskew;
		float pitch = (float)(((double)k + (double)shift) * (double)DSP_SR_HZ / DSP_N_FFT);
		/* pitch_tuning: residual of 12 * log2(f / 27.5) in float32, into [-0.5, 0.5) */
		float octs = log2f(pitch / 27.5f);
		float v = 12.0f * octs;
		float res = fmodf(v, 1.0f);
		if (res < 0.0f)
			res += 1.0f;
		if (res >= 0.5f)
			res -= 1.0f;
		if (pk->n < pk->cap) {
			pk->p[pk->n].mag = mag;
			pk->p[pk->n].bin = tuning_bin(res);
			pk->n++;
		}
	}
}

/* The median of the magnitudes, moving the bins along (float32, as np.median(mags)). */
#define PEAK_MAG(p) ((p).mag)
DSP_DEFINE_MEDIAN(median_peak_mag, struct dsp_peak, PEAK_MAG)

double dsp_tuning_from_peaks(struct dsp_peaks *pk)
{
	if (pk->n == 0)
		return 0.0; /* librosa: "Trying to estimate tuning from empty frequency set" */
	size_t n = pk->n;
	float thr = median_peak_mag(pk->p, n);
	size_t counts[DSP_TUNING_BINS] = {0};
	for (size_t i = 0; i < n; i++)
		if (pk->p[i].mag >= thr)
			counts[pk->p[i].bin]++;
	int best = 0;
	for (int i = 1; i < DSP_TUNING_BINS; i++)
		if (counts[i] > counts[best])
			best = i;
	return tuning_edge(best);
}

void dsp_chroma_fb(double tuning, float *fb)
{
	enum { NC = DSP_N_CHROMA, NF = DSP_N_FFT };
	static const double CTROCT = 5.0, OCTWIDTH = 2.0;
	double frqbins[NF], binwidth[NF];
	double a440 = 440.0 * pow(2.0, tuning / NC);
	double step = (double)DSP_SR_HZ / NF; /* np.linspace(0, sr, n_fft, endpoint=False) */
	for (int k = 1; k < NF; k++)
		frqbins[k] = NC * log2(((double)k * step) / (a440 / 16));
	frqbins[0] = frqbins[1] - 1.5 * NC;
	for (int k = 0; k < NF - 1; k++)
		binwidth[k] = fmax(frqbins[k + 1] - frqbins[k], 1.0);
	binwidth[NF - 1] = 1.0;

	/* only the first 1025 columns are kept, and columns are normalised independently */
	for (int k = 0; k < DSP_N_BINS; k++) {
		double col[NC], len2 = 0.0;
		for (int c = 0; c < NC; c++) {
			double d = frqbins[k] - (double)c;
			d = fmod(d + 6.0 + 10.0 * NC, (double)NC) - 6.0;
			double z = 2.0 * d / binwidth[k];
			col[c] = exp(-0.5 * (z * z));
			len2 += col[c] * col[c];
		}
		double len = sqrt(len2);
		if (len < 2.2250738585072014e-308)
			len = 1.0;
		double q = (frqbins[k] / NC - CTROCT) / OCTWIDTH;
		double octw = exp(-0.5 * (q * q));
		for (int c = 0; c < NC; c++) {
			/* np.roll(wts, -3): output row c (C = 0) is input row c + 3 (A = 0) */
			int src = (c + 3) % NC;
			fb[(size_t)k * NC + (size_t)c] = (float)(col[src] / len * octw);
		}
	}
}

_Static_assert(DSP_N_CHROMA % 4 == 0, "the chroma's sums are whole vectors of four");

/* Each chroma bin is its own sum over the bins k in order, in double (the products are
 * exact there); the twelve sums side by side in three vectors of four, which GCC 12 leaves
 * scalar when written as a loop over the bins. */
SFA_CLONES void dsp_chroma_frame(const float *fb, const float *pow, float *chroma)
{
	sfa_f64x4 acc[DSP_N_CHROMA / 4] = {{0}};
	for (size_t k = 0; k < DSP_N_BINS; k++) {
		double p = pow[k];
		for (int v = 0; v < DSP_N_CHROMA / 4; v++) {
			sfa_f32x4 f;
			memcpy(&f, fb + k * DSP_N_CHROMA + 4 * v, sizeof f);
			acc[v] += __builtin_convertvector(f, sfa_f64x4) * p;
		}
	}
	float raw[DSP_N_CHROMA];
	double mx = 0.0;
	for (int c = 0; c < DSP_N_CHROMA; c++) {
		raw[c] = (float)acc[c / 4][c % 4];
		double m = fabs((double)raw[c]);
		if (m > mx)
			mx = m;
	}
	if (mx < (double)1.17549435e-38f)
		mx = 1.0;
	for (int c = 0; c < DSP_N_CHROMA; c++)
		chroma[c] = (float)((double)raw[c] / mx);
}
