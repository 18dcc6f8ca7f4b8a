/* stft.c - see stft.h. */
#include "nn/stft.h"

#include <fftw3.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"

struct nn_stft {
	int nfft, hop;
	float *window; /* periodic Hann, nfft values */
	fftwf_plan r2c, c2r;
};

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

int nn_stft_new(int nfft, struct nn_stft **out, char *err, size_t n_err)
{
	if (nfft < 16 || nfft > (1 << 16) || nfft % 4)
		return sfa_err(err, n_err, SFA_EUNSUPP, "unsupported STFT size %d", nfft);
	struct nn_stft *s = calloc(1, sizeof *s);
	if (!s)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	s->nfft = nfft;
	s->hop = nfft / 4;
	s->window = malloc((size_t)nfft * sizeof *s->window);
	float *in = fftwf_malloc((size_t)nfft * sizeof(float));
	fftwf_complex *cx = fftwf_malloc((size_t)(nfft / 2 + 1) * sizeof(fftwf_complex));
	if (!s->window || !in || !cx) {
		fftwf_free(in);
		fftwf_free(cx);
		nn_stft_free(s);
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	}
	for (int n = 0; n < nfft; n++)
		s->window[n] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * n / nfft));
	pthread_mutex_lock(&plan_lock);
	s->r2c = fftwf_plan_dft_r2c_1d(nfft, in, cx, FFTW_ESTIMATE);
	s->c2r = fftwf_plan_dft_c2r_1d(nfft, cx, in, FFTW_ESTIMATE);
	pthread_mutex_unlock(&plan_lock);
	fftwf_free(in);
	fftwf_free(cx);
	if (!s->r2c || !s->c2r) {
		nn_stft_free(s);
		return sfa_err(err, n_err, SFA_ENOMEM, "FFTW could not plan a %d-point FFT", nfft);
	}
	*out = s;
	return 0;
}

void nn_stft_free(struct nn_stft *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&plan_lock);
	if (s->r2c)
		fftwf_destroy_plan(s->r2c);
	if (s->c2r)
		fftwf_destroy_plan(s->c2r);
	pthread_mutex_unlock(&plan_lock);
	free(s->window);
	free(s);
}

int nn_stft_frames(const struct nn_stft *s, int len) { return (len + s->hop - 1) / s->hop; }

/* Demucs pad1d(x, (pl, pr), mode='reflect') into out (len + pl + pr values). */
static void pad_reflect(const float *x, int len, int pl, int pr, float *out)
{
	int max_pad = pl > pr ? pl : pr;
	int el = 0, er = 0;
	if (len <= max_pad) {
		int extra = max_pad - len + 1;
		er = pr < extra ? pr : extra;
		el = extra - er;
	}
	/* The signal zero-extended by (el, er) is reflected by (pl - el, pr - er). */
	int n = len + el + er;
	int l2 = pl - el;
	int total = len + pl + pr;
	for (int i = 0; i < total; i++) {
		int j = i - l2; /* index into the zero-extended signal */
		if (j < 0)
			j = -j;
		else if (j >= n)
			j = 2 * (n - 1) - j;
		int k = j - el; /* index into x */
		out[i] = (k >= 0 && k < len) ? x[k] : 0.0f;
	}
}

void nn_stft_spec(const struct nn_stft *s, struct nn_ws *ws, const float *x, int len, float *re,
                  float *im)
{
	nn_stft_spec_ex(s, ws, x, len, false, re, im);
}

void nn_stft_spec_ex(const struct nn_stft *s, struct nn_ws *ws, const float *x, int len,
                     bool zero_pad, float *re, float *im)
{
	int nfft = s->nfft, hop = s->hop, nf = nfft / 2;
	int le = nn_stft_frames(s, len);
	int pad = hop / 2 * 3;
	int total = len + pad + pad + le * hop - len;
	size_t mark = nn_ws_mark(ws);
	float *xp = nn_ws_floats(ws, (size_t)total);
	float *frame = nn_ws_floats(ws, (size_t)nfft);
	fftwf_complex *spec = nn_ws_bytes(ws, (size_t)(nf + 1) * sizeof(fftwf_complex));
	if (!xp || !frame || !spec)
		return;
	if (zero_pad) {
		memset(xp, 0, (size_t)total * sizeof *xp);
		memcpy(xp + pad, x, (size_t)len * sizeof *xp);
	} else {
		pad_reflect(x, len, pad, pad + le * hop - len, xp);
	}
	float norm = 1.0f / sqrtf((float)nfft);
	for (int t = 0; t < le; t++) {
		const float *src = xp + (size_t)t * hop;
		for (int n = 0; n < nfft; n++)
			frame[n] = src[n] * s->window[n];
		fftwf_execute_dft_r2c(s->r2c, frame, spec);
		for (int f = 0; f < nf; f++) {
			re[(size_t)f * le + t] = spec[f][0] * norm;
			im[(size_t)f * le + t] = spec[f][1] * norm;
		}
	}
	nn_ws_release(ws, mark);
}

void nn_stft_ispec(const struct nn_stft *s, struct nn_ws *ws, const float *re, const float *im,
                   int le, int len, float *y)
{
	nn_stft_ispec_ex(s, ws, re, im, le, len, false, y);
}

void nn_stft_ispec_ex(const struct nn_stft *s, struct nn_ws *ws, const float *re, const float *im,
                      int le, int len, bool old_crop, float *y)
{
	int nfft = s->nfft, hop = s->hop, nf = nfft / 2;
	int pad = hop / 2 * 3;
	int n_frames = le + 4; /* two zero frames each side */
	size_t n_ola = (size_t)(n_frames - 1) * hop + nfft;
	size_t mark = nn_ws_mark(ws);
	float *ola = nn_ws_floats(ws, n_ola);
	float *env = nn_ws_floats(ws, n_ola);
	float *frame = nn_ws_floats(ws, (size_t)nfft);
	fftwf_complex *spec = nn_ws_bytes(ws, (size_t)(nf + 1) * sizeof(fftwf_complex));
	if (!ola || !env || !frame || !spec)
		return;
	memset(ola, 0, n_ola * sizeof *ola);
	memset(env, 0, n_ola * sizeof *env);
	for (int j = 0; j < n_frames; j++)
		for (int n = 0; n < nfft; n++)
			env[(size_t)j * hop + n] += s->window[n] * s->window[n];
	float norm = 1.0f / sqrtf((float)nfft);
	for (int t = 0; t < le; t++) {
		for (int f = 0; f < nf; f++) {
			spec[f][0] = re[(size_t)f * le + t];
			spec[f][1] = im[(size_t)f * le + t];
		}
		spec[0][1] = 0.0f; /* c2r treats DC and Nyquist as real */
		spec[nf][0] = 0.0f;
		spec[nf][1] = 0.0f;
		fftwf_execute_dft_c2r(s->c2r, spec, frame);
		float *dst = ola + (size_t)(t + 2) * hop;
		for (int n = 0; n < nfft; n++)
			dst[n] += frame[n] * norm * s->window[n];
	}
	/* istft(center=True) drops nfft/2 at the start; _ispec then drops pad more (hybrid_old:
	 * nothing more, it keeps the first len samples). */
	size_t start = (size_t)nf + (old_crop ? 0 : (size_t)pad);
	for (int i = 0; i < len; i++)
		y[i] = ola[start + i] / env[start + i];
	nn_ws_release(ws, mark);
}
