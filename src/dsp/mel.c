/* mel.c - the Slaney mel filterbank, power_to_db and the MFCC's DCT.
 *
 * The filterbank is librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128, fmin=0,
 * fmax=11025, htk=False, norm="slaney") computed the way librosa computes it: triangle
 * weights in float64, stored to float32, then scaled by the Slaney area normalisation in
 * float64 and stored to float32 again. Each band is nonzero over one contiguous run of bins,
 * so it is kept sparse (about 2 nonzeros per bin in total instead of 128 x 1025).
 *
 * The mel dB values are 10*log10(max(1e-10, mel)) in float32. The top_db clamp (at the
 * maximum of the whole file minus 80 dB) needs every frame first, so it is applied by the
 * caller after the first pass. MFCC is the orthonormal DCT-II of the clamped dB frame,
 * first 13 coefficients, accumulated in double (scipy's pocketfft works in float32; the
 * double sum is closer to the exact value than either).
 */
#include "dsp/dsp_internal.h"

#include <math.h>
#include <string.h>

#include "util/simd.h"

static const double F_SP = 200.0 / 3;
static const double MIN_LOG_HZ = 1000.0;

static double min_log_mel(void) { return (MIN_LOG_HZ - 0.0) / F_SP; }
static double logstep(void) { return log(6.4) / 27.0; }

static double hz_to_mel(double f)
{
	double mels = (f - 0.0) / F_SP;
	if (f >= MIN_LOG_HZ)
		mels = min_log_mel() + log(f / MIN_LOG_HZ) / logstep();
	return mels;
}

static double mel_to_hz(double m)
{
	double f = 0.0 + F_SP * m;
	if (m >= min_log_mel())
		f = MIN_LOG_HZ * exp(logstep() * (m - min_log_mel()));
	return f;
}

void dsp_melbank_init(struct dsp_melbank *mb)
{
	double fftfreqs[DSP_N_BINS];
	dsp_fft_freqs(fftfreqs);
	enum { N_PTS = DSP_N_MELS + 2 };
	double mel_f[N_PTS];
	double min_mel = hz_to_mel(0.0), max_mel = hz_to_mel(0.5 * DSP_SR_HZ);
	double step = (max_mel - min_mel) / (double)(N_PTS - 1); /* np.linspace */
	for (int i = 0; i < N_PTS; i++)
		mel_f[i] = mel_to_hz((i == N_PTS - 1) ? max_mel : (double)i * step + min_mel);

	memset(mb, 0, sizeof *mb);
	size_t n_w = 0;
	for (int m = 0; m < DSP_N_MELS; m++) {
		double fd0 = mel_f[m + 1] - mel_f[m], fd1 = mel_f[m + 2] - mel_f[m + 1];
		double enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
		int lo = -1, hi = -1;
		mb->off[m] = (uint32_t)n_w;
		for (int k = 0; k < DSP_N_BINS; k++) {
			double lower = -(mel_f[m] - fftfreqs[k]) / fd0;
			double upper = (mel_f[m + 2] - fftfreqs[k]) / fd1;
			double w = fmax(0.0, fmin(lower, upper));
			float w32 = (float)((double)(float)w * enorm);
			if (w32 != 0.0f) {
				if (lo < 0)
					lo = k;
				/* a triangle is one run: fill any (impossible) gap with zeros */
				while (hi >= 0 && hi + 1 < k) {
					mb->w[n_w++] = 0.0f;
					hi++;
				}
				mb->w[n_w++] = w32;
				hi = k;
			}
		}
		if (lo < 0)
			lo = hi = 0, mb->w[n_w++] = 0.0f;
		mb->lo[m] = (uint16_t)lo;
		mb->len[m] = (uint16_t)(hi - lo + 1);
	}
	mb->n_w = n_w;
}

void dsp_melbank_dense(const struct dsp_melbank *mb, float *dense)
{
	memset(dense, 0, sizeof(float) * DSP_N_MELS * DSP_N_BINS);
	for (int m = 0; m < DSP_N_MELS; m++)
		for (int j = 0; j < mb->len[m]; j++)
			dense[(size_t)m * DSP_N_BINS + mb->lo[m] + (size_t)j] =
				mb->w[mb->off[m] + (size_t)j];
}

void dsp_mel_db_frame(const struct dsp_melbank *mb, const float *pow, float *db)
{
	for (int m = 0; m < DSP_N_MELS; m++) {
		const float *w = mb->w + mb->off[m];
		const float *p = pow + mb->lo[m];
		double acc = 0.0;
		for (int j = 0; j < mb->len[m]; j++)
			acc += (double)w[j] * (double)p[j];
		float mel = (float)acc;
		db[m] = 10.0f * log10f(fmaxf(1e-10f, mel));
	}
}

void dsp_dct_init(double *basis)
{
	const double n = DSP_N_MELS;
	memset(basis, 0, sizeof(double) * DSP_DCT_STRIDE * DSP_N_MELS);
	for (int k = 0; k < DSP_N_MFCC; k++) {
		double scale = (k == 0) ? sqrt(1.0 / n) : sqrt(2.0 / n);
		for (int i = 0; i < DSP_N_MELS; i++)
			basis[i * DSP_DCT_STRIDE + k] = scale *
			                                cos(M_PI * k * (2.0 * i + 1.0) / (2.0 * n));
	}
}

_Static_assert(DSP_DCT_STRIDE % 4 == 0 && DSP_DCT_STRIDE >= DSP_N_MFCC,
               "the coefficients' sums are whole vectors of four");

/* Each coefficient is its own sum over the mel bands in order, in double; the thirteen sums
 * side by side in vectors of four (the basis is stored band by band for that). */
SFA_CLONES void dsp_mfcc_frame(const double *basis, const float *db, float *mfcc)
{
	sfa_f64x4 acc[DSP_DCT_STRIDE / 4] = {{0}};
	for (int i = 0; i < DSP_N_MELS; i++) {
		double d = db[i];
		for (int v = 0; v < DSP_DCT_STRIDE / 4; v++) {
			sfa_f64x4 b;
			memcpy(&b, basis + i * DSP_DCT_STRIDE + 4 * v, sizeof b);
			acc[v] += b * d;
		}
	}
	for (int k = 0; k < DSP_N_MFCC; k++)
		mfcc[k] = (float)acc[k / 4][k % 4];
}
