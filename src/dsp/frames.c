/* frames.c - framing, the STFT and the per-frame time/spectral features.
 *
 * Frames follow librosa's center=True convention: frame t covers samples
 * [t*512 - 1024, t*512 + 1024) of the input, with zeros outside it (the STFT and RMS) or
 * the end samples repeated (zero-crossing rate, which librosa pads in "edge" mode).
 * T = 1 + floor(N / 512). Nothing here allocates except dsp_stft_init.
 *
 * The small numeric helpers reproduce numpy's own float32 arithmetic (pairwise summation,
 * std with ddof=1, median) because the beat tracker's input is normalised with them and
 * its output must be identical to librosa's.
 */
#include "dsp/dsp_internal.h"

#include <math.h>
#include <string.h>

#include "util/err.h"
#include "util/simd.h"

/* numpy/core/src/umath/loops_utils.h.src: @TYPE@_pairwise_sum, PW_BLOCKSIZE 128. */
float dsp_sum_pairwise_f32(const float *a, size_t n)
{
	if (n < 8) {
		float res = -0.0f;
		for (size_t i = 0; i < n; i++)
			res += a[i];
		return res;
	}
	if (n <= 128) {
		float r[8];
		size_t i;
		for (i = 0; i < 8; i++)
			r[i] = a[i];
		for (i = 8; i < n - (n % 8); i += 8) {
			for (size_t j = 0; j < 8; j++)
				r[j] += a[i + j];
		}
		float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++)
			res += a[i];
		return res;
	}
	size_t n2 = n / 2;
	n2 -= n2 % 8;
	return dsp_sum_pairwise_f32(a, n2) + dsp_sum_pairwise_f32(a + n2, n - n2);
}

/* The same summation over (a[i] - mean)^2, as numpy's _var computes it in float32. */
static float sum_sqdev_pairwise_f32(const float *a, size_t n, float mean)
{
	if (n < 8) {
		float res = -0.0f;
		for (size_t i = 0; i < n; i++) {
			float d = a[i] - mean;
			res += d * d;
		}
		return res;
	}
	if (n <= 128) {
		float r[8];
		size_t i;
		for (i = 0; i < 8; i++) {
			float d = a[i] - mean;
			r[i] = d * d;
		}
		for (i = 8; i < n - (n % 8); i += 8) {
			for (size_t j = 0; j < 8; j++) {
				float d = a[i + j] - mean;
				r[j] += d * d;
			}
		}
		float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
		for (; i < n; i++) {
			float d = a[i] - mean;
			res += d * d;
		}
		return res;
	}
	size_t n2 = n / 2;
	n2 -= n2 % 8;
	return sum_sqdev_pairwise_f32(a, n2, mean) + sum_sqdev_pairwise_f32(a + n2, n - n2, mean);
}

float dsp_std_ddof1_f32(const float *x, size_t n)
{
	if (n < 2)
		return 0.0f;
	float mean = dsp_sum_pairwise_f32(x, n) / (float)n;
	float var = sum_sqdev_pairwise_f32(x, n, mean) / (float)(n - 1);
	return sqrtf(var);
}

DSP_DEFINE_MEDIAN(median_f32, float, DSP_SELF)

float dsp_median_f32(float *a, size_t n) { return median_f32(a, n); }

/* scipy.signal.get_window('hann', n, fftbins=True): general_cosine over linspace(-pi, pi,
 * n + 1), truncated to n. */
void dsp_hann_periodic(double *w, size_t n)
{
	double step = 2.0 * M_PI / (double)n;
	for (size_t i = 0; i < n; i++) {
		double fac = (double)i * step + -M_PI;
		w[i] = 0.5 + 0.5 * cos(fac);
	}
}

void dsp_frame_copy(const float *x, size_t n, size_t t, float *frame)
{
	/* frame sample i is input sample t*512 - 1024 + i; zeros outside the input */
	long long start = (long long)t * DSP_HOP - DSP_N_FFT / 2;
	long long lo = start < 0 ? -start : 0;
	long long hi = (long long)n - start;
	hi = hi < 0 ? 0 : hi > DSP_N_FFT ? DSP_N_FFT : hi;
	if (lo > hi)
		lo = hi;
	memset(frame, 0, (size_t)lo * sizeof *frame);
	memcpy(frame + lo, x + (start + lo), (size_t)(hi - lo) * sizeof *frame);
	memset(frame + hi, 0, (size_t)(DSP_N_FFT - hi) * sizeof *frame);
}

int dsp_stft_init(struct dsp_stft *s, char *err, size_t n_err)
{
	memset(s, 0, sizeof *s);
	int rc = dsp_fft_plans(&s->plans, err, n_err);
	if (rc)
		return rc;
	double w[DSP_N_FFT];
	dsp_hann_periodic(w, DSP_N_FFT);
	for (size_t i = 0; i < DSP_N_FFT; i++)
		s->window[i] = (float)w[i];
	s->in = fftwf_malloc(sizeof(float) * DSP_N_FFT);
	s->spec = fftwf_malloc(sizeof(fftwf_complex) * DSP_N_BINS);
	if (!s->in || !s->spec) {
		dsp_stft_free(s);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory for the STFT buffers.");
	}
	return 0;
}

void dsp_stft_free(struct dsp_stft *s)
{
	fftwf_free(s->in);
	fftwf_free(s->spec);
	s->in = NULL;
	s->spec = NULL;
}

SFA_CLONES void dsp_stft_frame(struct dsp_stft *s, const float *x, size_t n, size_t t, float *mag,
                               float *pow)
{
	dsp_frame_copy(x, n, t, s->in);
	for (size_t i = 0; i < DSP_N_FFT; i++)
		s->in[i] *= s->window[i];
	fftwf_execute_dft_r2c(s->plans->stft, s->in, s->spec);
	for (size_t k = 0; k < DSP_N_BINS; k++) {
		/* np.abs(complex64) is hypotf, and glibc's hypotf is exactly this (the products
		 * are exact in double; bit for bit on 2e8 random pairs), which vectorises;
		 * librosa squares the magnitude for power */
		double re = s->spec[k][0], im = s->spec[k][1];
		float m = (float)sqrt(re * re + im * im);
		mag[k] = m;
		pow[k] = m * m;
	}
}

float dsp_rms_frame(const float *x, size_t n, size_t t)
{
	float sq[DSP_N_FFT];
	dsp_frame_copy(x, n, t, sq);
	for (size_t i = 0; i < DSP_N_FFT; i++)
		sq[i] = sq[i] * sq[i];
	/* np.mean over a contiguous float32 frame: pairwise sum, then / 2048 in float32 */
	float mean = dsp_sum_pairwise_f32(sq, DSP_N_FFT) / (float)DSP_N_FFT;
	return sqrtf(mean);
}

float dsp_zcr_frame(const float *x, size_t n, size_t t)
{
	if (n == 0)
		return 0.0f;
	/* librosa pads with the edge samples here */
	long long start = (long long)t * DSP_HOP - DSP_N_FFT / 2;
	float edge[DSP_N_FFT];
	const float *v = x + (start > 0 ? start : 0);
	if (start < 0 || start + DSP_N_FFT > (long long)n) {
		for (size_t i = 0; i < DSP_N_FFT; i++) {
			long long s = start + (long long)i;
			edge[i] = x[s < 0 ? 0 : s >= (long long)n ? (long long)n - 1 : s];
		}
		v = edge;
	}
	/* A sample within 1e-10 of zero counts as +0, so "negative" is v < -1e-10. */
	int count = 0;
	for (size_t i = 1; i < DSP_N_FFT; i++)
		count += (v[i] < -1e-10f) != (v[i - 1] < -1e-10f);
	return (float)count / (float)DSP_N_FFT;
}

void dsp_fft_freqs(double *f)
{
	double val = 1.0 / (DSP_N_FFT * (1.0 / DSP_SR_HZ));
	for (size_t k = 0; k < DSP_N_BINS; k++)
		f[k] = (double)k * val;
}

double dsp_centroid_frame(const float *mag, const double *freqs)
{
	/* librosa.util.normalize(S, norm=1) works on a float64 copy of |S| */
	double len = 0.0;
	for (size_t k = 0; k < DSP_N_BINS; k++)
		len += (double)mag[k];
	if (len < (double)1.17549435e-38f)
		return 0.0;
	double c = 0.0;
	for (size_t k = 0; k < DSP_N_BINS; k++)
		c += freqs[k] * (double)(float)((double)mag[k] / len);
	return c;
}

double dsp_rolloff_frame(const float *mag, const double *freqs)
{
	float total = 0.0f;
	for (size_t k = 0; k < DSP_N_BINS; k++)
		total += mag[k];
	float thr = 0.85f * total;
	float cum = 0.0f;
	for (size_t k = 0; k < DSP_N_BINS; k++) {
		cum += mag[k];
		if (cum >= thr)
			return freqs[k];
	}
	return 0.0;
}
