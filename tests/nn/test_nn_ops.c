/* The nn kernels against naive double-precision references: convolutions (strides,
 * padding, dilation, tiling, column vectors), transposed convolution, GELU, softmax,
 * attention, normalisations, the STFT pair, and the workspace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cblas.h>

#include "nn/nn.h"
#include "nn/ops.h"
#include "nn/stft.h"
#include "nn/workspace.h"

static uint64_t rng_state = 88172645463325252ull;

static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *rand_buf(size_t n)
{
	float *p = malloc(n * sizeof *p);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = frand();
	return p;
}

static void close_to(const float *got, const double *want, size_t n, double tol, const char *w)
{
	double md = 0, mx = 0;
	for (size_t i = 0; i < n; i++) {
		md = fmax(md, fabs(got[i] - want[i]));
		mx = fmax(mx, fabs(want[i]));
	}
	if (md > tol * fmax(mx, 1.0))
		fail_msg("%s: max |diff| %.3g (scale %.3g)", w, md, mx);
}

struct conv_case {
	int cin, cout, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
};

static void conv_against_naive(void **state)
{
	(void)state;
	const struct conv_case cases[] = {
		{4, 6, 64, 9, 8, 1, 4, 1, 2, 0, 1, 1},     /* frequency encoder */
		{3, 5, 101, 1, 8, 1, 4, 1, 2, 0, 1, 1},    /* time encoder, (C, L, 1) */
		{5, 7, 6, 33, 1, 3, 1, 1, 0, 2, 1, 2},     /* DConv, dilation 2 along w */
		{5, 4, 77, 1, 3, 1, 1, 1, 2, 0, 2, 1},     /* DConv on a column, dilation 2 */
		{6, 12, 10, 11, 3, 3, 1, 1, 1, 1, 1, 1},   /* decoder rewrite 3x3 */
		{8, 16, 7, 13, 1, 1, 1, 1, 0, 0, 1, 1},    /* pointwise */
		{16, 8, 400, 512, 8, 1, 4, 1, 2, 0, 1, 1}, /* big enough to tile */
	};
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		const struct conv_case *k = &cases[ci];
		int ho = nn_conv_out(k->h, k->kh, k->sh, k->ph, k->dh);
		int wo = nn_conv_out(k->w, k->kw, k->sw, k->pw, k->dw);
		size_t nx = (size_t)k->cin * k->h * k->w,
		       nw = (size_t)k->cout * k->cin * k->kh * k->kw;
		float *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf((size_t)k->cout);
		size_t ny = (size_t)k->cout * ho * wo;
		float *y = malloc(ny * sizeof *y);
		double *ref = calloc(ny, sizeof *ref);
		for (int co = 0; co < k->cout; co++)
			for (int oh = 0; oh < ho; oh++)
				for (int ow = 0; ow < wo; ow++) {
					double acc = b[co];
					for (int c = 0; c < k->cin; c++)
						for (int i = 0; i < k->kh; i++)
							for (int j = 0; j < k->kw; j++) {
								int ih = oh * k->sh - k->ph +
								         i * k->dh;
								int iw = ow * k->sw - k->pw +
								         j * k->dw;
								if (ih < 0 || ih >= k->h ||
								    iw < 0 || iw >= k->w)
									continue;
								acc += (double)w
								               [((size_t)(co * k->cin +
								                          c) *
								                         k->kh +
								                 i) * k->kw +
								                j] *
								       x[((size_t)c * k->h + ih) *
								                 k->w +
								         iw];
							}
					ref[((size_t)co * ho + oh) * wo + ow] = acc;
				}
		struct nn_conv c = {.w = w,
		                    .b = b,
		                    .cin = k->cin,
		                    .cout = k->cout,
		                    .kh = k->kh,
		                    .kw = k->kw,
		                    .sh = k->sh,
		                    .sw = k->sw,
		                    .ph = k->ph,
		                    .pw = k->pw,
		                    .dh = k->dh,
		                    .dw = k->dw};
		nn_conv2d(&ws, &c, x, k->h, k->w, (size_t)k->h * k->w, y, ho, wo, (size_t)ho * wo);
		assert_false(ws.failed);
		char label[32];
		snprintf(label, sizeof label, "conv case %zu", ci);
		close_to(y, ref, ny, 1e-5, label);
		/* A row range written elsewhere matches the same rows (up to sgemm's rounding,
		 * which may differ with the column count of a call). */
		int h0 = ho / 3, h1 = ho - ho / 4;
		float *part = malloc((size_t)k->cout * (h1 - h0) * wo * sizeof *part);
		nn_conv2d_rows(&ws, &c, x, k->h, k->w, (size_t)k->h * k->w, h0, h1, wo, part,
		               (size_t)(h1 - h0) * wo);
		for (int co = 0; co < k->cout; co++)
			for (size_t i = 0; i < (size_t)(h1 - h0) * wo; i++)
				assert_true(fabsf(part[(size_t)co * (h1 - h0) * wo + i] -
				                  y[(size_t)co * ho * wo + (size_t)h0 * wo + i]) <
				            1e-4f);
		free(part);
		free(x);
		free(w);
		free(b);
		free(y);
		free(ref);
	}
	assert_int_equal(ws.top_bytes, 0);
	nn_ws_free(&ws);
}

static void convtr_against_naive(void **state)
{
	(void)state;
	int cin = 6, cout = 5, k = 8, s = 4, crop = 2, h = 300, w = 7;
	int hout = (h - 1) * s + k - 2 * crop;
	float *x = rand_buf((size_t)cin * h * w), *wt = rand_buf((size_t)cin * cout * k),
	      *b = rand_buf((size_t)cout);
	size_t ny = (size_t)cout * hout * w;
	double *ref = calloc(ny, sizeof *ref);
	for (int co = 0; co < cout; co++)
		for (size_t i = 0; i < (size_t)hout * w; i++)
			ref[(size_t)co * hout * w + i] = b[co];
	for (int c = 0; c < cin; c++)
		for (int ih = 0; ih < h; ih++)
			for (int co = 0; co < cout; co++)
				for (int i = 0; i < k; i++) {
					int oh = ih * s + i - crop;
					if (oh < 0 || oh >= hout)
						continue;
					for (int j = 0; j < w; j++)
						ref[((size_t)co * hout + oh) * w + j] +=
							(double)wt[((size_t)c * cout + co) * k +
						                   i] *
							x[((size_t)c * h + ih) * w + j];
				}
	float *y = malloc(ny * sizeof *y);
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_convtr_h(&ws, wt, b, cin, cout, k, s, crop, x, h, w, y, hout);
	close_to(y, ref, ny, 1e-5, "convtr");
	nn_ws_free(&ws);
	free(x);
	free(wt);
	free(b);
	free(y);
	free(ref);
}

static void gelu_glu_are_accurate(void **state)
{
	(void)state;
	enum { N = 200001 };
	float *x = malloc(N * sizeof *x), *g = malloc(N * sizeof *g), *o = malloc(N * sizeof *o);
	for (int i = 0; i < N; i++)
		x[i] = g[i] = (float)(-12.0 + 24.0 * i / (N - 1));
	nn_gelu(x, N);
	double worst = 0;
	for (int i = 0; i < N; i++) {
		double v = g[i];
		double want = 0.5 * v * erfc(-v / sqrt(2.0));
		double err = fabs(x[i] - want);
		/* Relative precision down into the far negative tail, where rounding x/sqrt 2 to
		 * float alone moves erfc by about v^2 * 6e-8 relative. */
		if (fabs(want) > 1e-35)
			worst = fmax(worst, err / fabs(want) / (1.0 + 0.24 * v * v));
	}
	if (worst > 1e-6)
		fail_msg("GELU relative error %.3g", worst);
	/* GLU: a * sigmoid(g). */
	for (int i = 0; i < N; i++)
		x[i] = 0.5f;
	nn_glu(x, g, o, N);
	worst = 0;
	for (int i = 0; i < N; i++) {
		double want = 0.5 / (1.0 + exp(-(double)g[i]));
		worst = fmax(worst, fabs(o[i] - want) / want);
	}
	if (worst > 1e-6)
		fail_msg("GLU relative error %.3g", worst);
	free(x);
	free(g);
	free(o);
}

/* An LSTM step's kernels: the few-rows product (packed weights, every row count of a
 * pass of four and past it, a column count off the 64-column blocks) against double sums,
 * and the cell (sigmoid and tanh over their whole useful range, both tanh branches) against
 * the cell in double. */
static void lstm_step_kernels(void **state)
{
	(void)state;
	int n = 150, k = 37;
	float *w = rand_buf((size_t)n * (k + 3)); /* rows k + 3 apart */
	float *packed = malloc(NN_FEW_ROWS_FLOATS(n, k) * sizeof *packed);
	assert_non_null(packed);
	nn_few_rows_pack(w, n, k, k + 3, packed);
	for (int m = 1; m <= 9; m++) {
		float *x = rand_buf((size_t)m * k), *y = rand_buf((size_t)m * (n + 1));
		double *want = malloc((size_t)m * (n + 1) * sizeof *want);
		double worst = 0;
		for (int r = 0; r < m; r++)
			for (int c = 0; c < n; c++) {
				double sum = 0;
				for (int p = 0; p < k; p++)
					sum += (double)x[r * k + p] * w[(size_t)c * (k + 3) + p];
				want[r * (n + 1) + c] = y[r * (n + 1) + c] + sum;
				want[r * (n + 1) + n] = y[r * (n + 1) + n]; /* past n: untouched */
			}
		nn_gemm_few_rows(m, n, k, x, k, packed, y, n + 1);
		for (int i = 0; i < m * (n + 1); i++)
			worst = fmax(worst, fabs(y[i] - want[i]));
		/* k products summed in float: |error| <= k 2^-24 sum|x w| + 2^-24 |y|, sum|x w| <= k */
		if (worst > (double)k * k * 0x1p-24 + 0x1p-22)
			fail_msg("few-rows product, %d rows: max |diff| %.3g", m, worst);
		free(x);
		free(y);
		free(want);
	}
	/* The cell: gates over [-12, 12] (tanh's polynomial below 0.625, its exp form beyond,
	 * saturation), c over [-3, 3]. */
	enum { H = 4001 };
	float *gates = malloc(4 * H * sizeof *gates), *c = malloc(H * sizeof *c),
	      *h = malloc(H * sizeof *h), *c0 = malloc(H * sizeof *c0);
	assert_true(gates && c && h && c0);
	for (int i = 0; i < H; i++) {
		for (int g = 0; g < 4; g++)
			gates[g * H + i] = (float)(-12.0 +
			                           24.0 * ((i * (g + 1) * 37) % H) / (H - 1));
		c0[i] = c[i] = 3.0f * frand();
	}
	gates[2 * H] = 0.3f; /* exact cases of the polynomial branch */
	gates[2 * H + 1] = -0.6f;
	nn_lstm_cell(gates, c, h, H);
	double worst_c = 0, worst_h = 0;
	for (int i = 0; i < H; i++) {
		double ig = 1 / (1 + exp(-(double)gates[i])),
		       fg = 1 / (1 + exp(-(double)gates[H + i]));
		double gg = tanh((double)gates[2 * H + i]),
		       og = 1 / (1 + exp(-(double)gates[3 * H + i]));
		double cw = fg * c0[i] + ig * gg;
		/* relative to its terms' size: f c and i g may cancel */
		worst_c = fmax(worst_c, fabs(c[i] - cw) / (fabs(fg * c0[i]) + fabs(ig * gg)));
		worst_h = fmax(worst_h, fabs(h[i] - og * tanh((double)c[i])));
	}
	if (worst_c > 1e-6 || worst_h > 3e-7)
		fail_msg("LSTM cell: c relative error %.3g, h error %.3g", worst_c, worst_h);
	print_message("# LSTM cell: c relative error %.3g, h error %.3g\n", worst_c, worst_h);
	free(gates);
	free(c);
	free(h);
	free(c0);
	free(w);
	free(packed);
}

static void softmax_norms_attention(void **state)
{
	(void)state;
	int n = 37, d = 333;
	float *x = rand_buf((size_t)n * d);
	for (size_t i = 0; i < (size_t)n * d; i++)
		x[i] *= 30.0f; /* large logits: exercises the max subtraction */
	double *ref = malloc((size_t)n * d * sizeof *ref);
	for (int i = 0; i < n; i++) {
		double mx = -1e300, s = 0;
		for (int j = 0; j < d; j++)
			mx = fmax(mx, x[i * d + j]);
		for (int j = 0; j < d; j++)
			s += exp(x[i * d + j] - mx);
		for (int j = 0; j < d; j++)
			ref[i * d + j] = exp(x[i * d + j] - mx) / s;
	}
	nn_softmax_rows(x, n, d, d);
	close_to(x, ref, (size_t)n * d, 1e-6, "softmax");
	/* LayerNorm with an offset mean. */
	float *y = rand_buf((size_t)n * d), *gam = rand_buf((size_t)d), *bet = rand_buf((size_t)d);
	for (size_t i = 0; i < (size_t)n * d; i++)
		y[i] += 50.0f;
	for (int i = 0; i < n; i++) {
		double m = 0, v = 0;
		for (int j = 0; j < d; j++)
			m += y[i * d + j];
		m /= d;
		for (int j = 0; j < d; j++)
			v += (y[i * d + j] - m) * (y[i * d + j] - m);
		v /= d;
		for (int j = 0; j < d; j++)
			ref[i * d + j] = (y[i * d + j] - m) / sqrt(v + 1e-5) * gam[j] + bet[j];
	}
	nn_layernorm(y, y, n, d, gam, bet, 1e-5f);
	close_to(y, ref, (size_t)n * d, 2e-5, "layernorm");
	/* GroupNorm(1) over slices (c, rows, t). */
	int c = 5, rows = 4, t = 3000;
	float *z = rand_buf((size_t)c * rows * t), *gg = rand_buf((size_t)c),
	      *bb = rand_buf((size_t)c);
	double *zr = malloc((size_t)c * rows * t * sizeof *zr);
	for (int r = 0; r < rows; r++) {
		double m = 0, v = 0;
		for (int k = 0; k < c; k++)
			for (int j = 0; j < t; j++)
				m += z[((size_t)k * rows + r) * t + j] + 10.0;
		m /= (double)c * t;
		for (int k = 0; k < c; k++)
			for (int j = 0; j < t; j++) {
				double dd = z[((size_t)k * rows + r) * t + j] + 10.0 - m;
				v += dd * dd;
			}
		v /= (double)c * t;
		for (int k = 0; k < c; k++)
			for (int j = 0; j < t; j++) {
				size_t at = ((size_t)k * rows + r) * t + j;
				zr[at] = (z[at] + 10.0 - m) / sqrt(v + 1e-5) * gg[k] + bb[k];
			}
	}
	for (size_t i = 0; i < (size_t)c * rows * t; i++)
		z[i] += 10.0f;
	nn_groupnorm1_slices(z, c, rows, t, (size_t)rows * t, gg, bb, 1e-5f);
	close_to(z, zr, (size_t)c * rows * t, 2e-5, "groupnorm");
	/* Attention: 3 heads of 8 over 300 queries and 270 keys (two query blocks). */
	int nq = 300, nk = 270, dim = 24, heads = 3, hd = 8;
	float *q = rand_buf((size_t)nq * dim), *kk = rand_buf((size_t)nk * dim),
	      *vv = rand_buf((size_t)nk * dim), *out = malloc((size_t)nq * dim * sizeof *out);
	double *ar = malloc((size_t)nq * dim * sizeof *ar), *sc = malloc((size_t)nk * sizeof *sc);
	for (int h = 0; h < heads; h++)
		for (int i = 0; i < nq; i++) {
			double mx = -1e300, s = 0;
			for (int j = 0; j < nk; j++) {
				double dot = 0;
				for (int e = 0; e < hd; e++)
					dot += (double)q[i * dim + h * hd + e] *
					       kk[j * dim + h * hd + e];
				sc[j] = dot / sqrt((double)hd);
				mx = fmax(mx, sc[j]);
			}
			for (int j = 0; j < nk; j++) {
				sc[j] = exp(sc[j] - mx);
				s += sc[j];
			}
			for (int e = 0; e < hd; e++) {
				double acc = 0;
				for (int j = 0; j < nk; j++)
					acc += sc[j] / s * vv[j * dim + h * hd + e];
				ar[i * dim + h * hd + e] = acc;
			}
		}
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_attention(&ws, q, dim, nq, kk, dim, vv, dim, nk, dim, heads, out, dim);
	close_to(out, ar, (size_t)nq * dim, 1e-5, "attention");
	nn_ws_free(&ws);
	free(q);
	free(kk);
	free(vv);
	free(out);
	free(ar);
	free(sc);
	free(z);
	free(zr);
	free(gg);
	free(bb);
	free(x);
	free(ref);
	free(y);
	free(gam);
	free(bet);
}

static void stft_matches_its_definition(void **state)
{
	(void)state;
	int nfft = 256, hop = 64, len = 1000;
	struct nn_stft *s;
	char err[128];
	assert_int_equal(nn_stft_new(nfft, &s, err, sizeof err), 0);
	int le = nn_stft_frames(s, len);
	assert_int_equal(le, 16);
	float *x = malloc((size_t)len * sizeof *x);
	for (int i = 0; i < len; i++)
		x[i] = (float)(0.3 * sin(0.05 * i) + 0.2 * cos(0.31 * i + 1));
	int nf = nfft / 2;
	float *re = malloc((size_t)nf * le * sizeof *re),
	      *im = malloc((size_t)nf * le * sizeof *im);
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_stft_spec(s, &ws, x, len, re, im);
	/* Reflect-padded by 3*hop/2 on the left; frame t covers padded [t*hop, t*hop + nfft). */
	int pad = hop / 2 * 3;
	double *dre = malloc((size_t)nf * le * sizeof *dre),
	       *dim_ = malloc((size_t)nf * le * sizeof *dim_);
	for (int t = 0; t < le; t++)
		for (int f = 0; f < nf; f++) {
			double ar = 0, ai = 0;
			for (int n = 0; n < nfft; n++) {
				int j = t * hop + n - pad;
				if (j < 0)
					j = -j;
				if (j >= len)
					j = 2 * (len - 1) - j;
				double w = 0.5 - 0.5 * cos(2 * M_PI * n / nfft);
				ar += w * x[j] * cos(2 * M_PI * f * n / nfft);
				ai -= w * x[j] * sin(2 * M_PI * f * n / nfft);
			}
			dre[(size_t)f * le + t] = ar / sqrt((double)nfft);
			dim_[(size_t)f * le + t] = ai / sqrt((double)nfft);
		}
	close_to(re, dre, (size_t)nf * le, 1e-5, "stft re");
	close_to(im, dim_, (size_t)nf * le, 1e-5, "stft im");
	/* The inverse recovers the signal where four real frames overlap. Near the ends
	 * HTDemucs' iSTFT divides by an envelope that counts its two zero frames on each
	 * side, which attenuates the edges: that is Demucs' behaviour, matched on purpose. */
	float *y = malloc((size_t)len * sizeof *y);
	nn_stft_ispec(s, &ws, re, im, le, len, y);
	double md = 0;
	for (int i = 3 * hop - pad; i < le * hop - pad; i++)
		md = fmax(md, fabs(y[i] - x[i]));
	if (md > 2e-3)
		fail_msg("istft(stft(x)) differs from x by %.3g", md);
	nn_ws_free(&ws);
	nn_stft_free(s);
	free(x);
	free(re);
	free(im);
	free(dre);
	free(dim_);
	free(y);
}

static void workspace_stack(void **state)
{
	(void)state;
	struct nn_ws ws;
	nn_ws_init(&ws, 1 << 20);
	float *a = nn_ws_floats(&ws, 3);
	assert_non_null(a);
	assert_int_equal((uintptr_t)a % 64, 0);
	size_t m = nn_ws_mark(&ws);
	float *b = nn_ws_floats(&ws, 1000);
	assert_int_equal((uintptr_t)b % 64, 0);
	assert_true(b >= a + 3);
	nn_ws_release(&ws, m);
	float *c = nn_ws_floats(&ws, 10);
	assert_ptr_equal(b, c);                  /* popped and reused */
	assert_null(nn_ws_floats(&ws, 1 << 20)); /* past the reservation */
	assert_true(ws.failed);
	nn_ws_reset(&ws);
	assert_false(ws.failed);
	assert_int_equal(nn_ws_mark(&ws), 0);
	/* Trim gives back the pages above the top: they read as zeros; below it, kept. */
	float *keep = nn_ws_floats(&ws, 1024);
	float *big = nn_ws_floats(&ws, 64 * 1024);
	assert_non_null(keep);
	assert_non_null(big);
	keep[0] = 3.0f;
	for (int i = 0; i < 64 * 1024; i++)
		big[i] = 1.0f;
	nn_ws_release(&ws, nn_ws_mark(&ws) - 64 * 1024 * sizeof(float));
	nn_ws_trim(&ws);
	assert_true(keep[0] == 3.0f);
	assert_true(big[64 * 1024 - 1] == 0.0f); /* the last page is wholly above the top */
	nn_ws_free(&ws);
}

/* A GEMM team cuts large products between threads (fp32: along m at the probed row unit):
 * the result must be the one of a single call bit for bit (every transposition, odd sizes,
 * few rows and many, beta 0 and 1), and the helpers must really have run parts of it. */
static void gemm_team_is_bit_identical(void **state)
{
	(void)state;
	nn_ops_init();
	struct {
		bool ta, tb;
		int m, n, k;
		float beta;
	} cases[] = {
		{false, false, 96, 5461, 384, 0.0f}, /* conv tile shape: few rows, long n */
		{false, true, 200, 1037, 513, 0.0f}, /* odd sizes */
		{true, false, 1100, 300, 129, 1.0f}, /* accumulate */
		{true, true, 640, 700, 257, 0.0f},
		{false, false, 4000, 1536, 64, 0.0f}, /* cut along m into 3 with 2 helpers */
	};
	struct nn_team *team = nn_team_start(2);
	assert_non_null(team);
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		int m = cases[ci].m, n = cases[ci].n, k = cases[ci].k;
		bool ta = cases[ci].ta, tb = cases[ci].tb;
		float *a = malloc(sizeof(float) * (size_t)m * k);
		float *b = malloc(sizeof(float) * (size_t)k * n);
		float *c1 = malloc(sizeof(float) * (size_t)m * n);
		float *c2 = malloc(sizeof(float) * (size_t)m * n);
		assert_true(a && b && c1 && c2);
		for (size_t i = 0; i < (size_t)m * k; i++)
			a[i] = frand();
		for (size_t i = 0; i < (size_t)k * n; i++)
			b[i] = frand();
		for (size_t i = 0; i < (size_t)m * n; i++)
			c1[i] = c2[i] = frand();
		int lda = ta ? m : k, ldb = tb ? k : n;
		nn_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, cases[ci].beta, c1, n);
		unsigned long long before = nn_team_helped(team);
		nn_ops_team_attach(team);
		nn_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, cases[ci].beta, c2, n);
		nn_ops_team_attach(NULL);
		/* Where the probe found that this OpenBLAS does not cut cleanly, products are
		 * not shared (and must still be right). */
		if (nn_ops_team_unit() > 0 && nn_team_helped(team) == before)
			fail_msg("case %zu: the team did not share the product", ci);
		if (nn_ops_team_unit() == 0 && nn_team_helped(team) != before)
			fail_msg("case %zu: shared although cuts are not exact here", ci);
		if (memcmp(c1, c2, sizeof(float) * (size_t)m * n) != 0)
			fail_msg("case %zu (%dx%dx%d): team result differs", ci, m, n, k);
		free(a);
		free(b);
		free(c1);
		free(c2);
	}
	/* Small products are not shared. */
	float x[64 * 64], y[64 * 64];
	for (int i = 0; i < 64 * 64; i++)
		x[i] = frand();
	unsigned long long before = nn_team_helped(team);
	nn_ops_team_attach(team);
	nn_gemm(false, false, 64, 64, 64, 1.0f, x, 64, x, 64, 0.0f, y, 64);
	nn_ops_team_attach(NULL);
	assert_true(nn_team_helped(team) == before);
	nn_team_stop(team);
	nn_team_stop(NULL);
	printf("# GEMM team cuts fp32 products here: %s (row unit %d)\n",
	       nn_ops_team_unit() > 0 ? "yes" : "no", nn_ops_team_unit());
}

struct parts_probe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int runs[64];
	int started;
	bool concurrent;    /* part 0 saw another part start while it was running */
	bool ran_out, wait; /* part 5 asks too much; part 0 waits for company */
};

static void probe_part(void *arg, int part, struct nn_ws *ws)
{
	struct parts_probe *p = arg;
	pthread_mutex_lock(&p->lock);
	p->runs[part]++;
	p->started++;
	pthread_cond_broadcast(&p->cond);
	if (part == 0 && p->wait) {
		/* Wait (at most 5 s) for a helper to take another part meanwhile. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (p->started < 2 && pthread_cond_timedwait(&p->cond, &p->lock, &until) == 0)
			;
		p->concurrent = p->started >= 2;
	}
	pthread_mutex_unlock(&p->lock);
	if (part == 5 && p->ran_out)
		nn_ws_floats(ws, SIZE_MAX / 8); /* more than any workspace reserves */
}

/* nn_team_parts: every part runs once, with a team on several threads at once, without
 * one in order on the caller; a workspace that runs out in any part reaches the caller;
 * and the kernels cut into parts (DConv rows, long DConv, GELU) give the same bits either
 * way. */
static void team_parts_share_work_bit_identically(void **state)
{
	(void)state;
	struct nn_ws ws;
	nn_ws_init(&ws, 64 << 20);
	struct nn_team *team = nn_team_start(2);
	assert_non_null(team);
	for (int with_team = 0; with_team < 2; with_team++) {
		struct parts_probe p = {.lock = PTHREAD_MUTEX_INITIALIZER,
		                        .cond = PTHREAD_COND_INITIALIZER};
		p.ran_out = p.wait = with_team == 1;
		nn_ops_team_attach(with_team ? team : NULL);
		nn_team_parts(&ws, 40, probe_part, &p);
		nn_ops_team_attach(NULL);
		for (int i = 0; i < 40; i++)
			assert_int_equal(p.runs[i], 1);
		assert_true(p.concurrent == (with_team == 1));
		assert_true(ws.failed == (with_team == 1));
		nn_ws_reset(&ws);
	}
	/* DConv over frequency rows (4 tiles of rows here) and a long GELU. */
	int ch = 8, hid = 2, rows = 64, t = 3000, nl = 2;
	struct nn_dconv_w layers[2];
	float *wbuf[2][9];
	for (int d = 0; d < nl; d++) {
		size_t sizes[9] = {(size_t)hid * ch * 3, (size_t)hid,          (size_t)hid,
		                   (size_t)hid,          (size_t)2 * ch * hid, (size_t)2 * ch,
		                   (size_t)2 * ch,       (size_t)2 * ch,       (size_t)ch};
		for (int i = 0; i < 9; i++)
			wbuf[d][i] = rand_buf(sizes[i]);
		layers[d] = (struct nn_dconv_w){wbuf[d][0], wbuf[d][1], wbuf[d][2],
		                                wbuf[d][3], wbuf[d][4], wbuf[d][5],
		                                wbuf[d][6], wbuf[d][7], wbuf[d][8]};
	}
	size_t n = (size_t)ch * rows * t;
	float *x1 = rand_buf(n), *x2 = malloc(n * sizeof *x2);
	assert_non_null(x2);
	memcpy(x2, x1, n * sizeof *x2);
	unsigned long long before = nn_team_helped(team);
	nn_dconv_rows(&ws, layers, nl, hid, x1, ch, rows, t, (size_t)rows * t, 1e-5f);
	nn_gelu(x1, n);
	nn_ops_team_attach(team);
	nn_dconv_rows(&ws, layers, nl, hid, x2, ch, rows, t, (size_t)rows * t, 1e-5f);
	nn_gelu(x2, n);
	nn_ops_team_attach(NULL);
	assert_false(ws.failed);
	assert_true(nn_team_helped(team) > before);
	assert_memory_equal(x1, x2, n * sizeof *x1);
	free(x1);
	free(x2);
	/* DConv along one long time row: 4 tiles, statistics combined in tile order. */
	int tl = 50000;
	x1 = rand_buf((size_t)ch * tl);
	x2 = malloc((size_t)ch * tl * sizeof *x2);
	assert_non_null(x2);
	memcpy(x2, x1, (size_t)ch * tl * sizeof *x2);
	before = nn_team_helped(team);
	nn_dconv_long(&ws, layers, nl, hid, x1, ch, tl, 1e-5f);
	nn_ops_team_attach(team);
	nn_dconv_long(&ws, layers, nl, hid, x2, ch, tl, 1e-5f);
	nn_ops_team_attach(NULL);
	assert_false(ws.failed);
	assert_true(nn_team_helped(team) > before);
	assert_memory_equal(x1, x2, (size_t)ch * tl * sizeof *x1);
	free(x1);
	free(x2);
	for (int d = 0; d < nl; d++)
		for (int i = 0; i < 9; i++)
			free(wbuf[d][i]);
	nn_team_stop(team);
	nn_ws_free(&ws);
}

/* Runs `call` without the team, then with it (which must share it: the test fails if a
 * pass ran alone), and compares the n floats at out of both runs; the inputs are set up
 * again by `setup` before each run. */
#define BOTH_WAYS(team, out, n, setup, call)                             \
	do {                                                             \
		float *alone_ = malloc((n) * sizeof(float));             \
		assert_non_null(alone_);                                 \
		setup;                                                   \
		call;                                                    \
		memcpy(alone_, out, (n) * sizeof(float));                \
		setup;                                                   \
		unsigned long long shared_ = nn_ops_team_shared_count(); \
		nn_ops_team_attach(team);                                \
		call;                                                    \
		nn_ops_team_attach(NULL);                                \
		assert_true(nn_ops_team_shared_count() > shared_);       \
		assert_memory_equal(alone_, out, (n) * sizeof(float));   \
		free(alone_);                                            \
	} while (0)

/* The passes cut into groups of channels or stretches for a team give the single
 * thread's bits: bias fill, transposed-conv overlap-add, GLU, GroupNorm(1) statistics
 * (over more channels than one block of per-channel sums) and affine, GLU + LayerScale
 * added to a residual, copies, adds and affine maps of whole tensors, and a convolution
 * of three row tiles (too few to be parts: its im2col by groups of input channels, its
 * products cut by the team). */
static void channel_groups_are_bit_identical(void **state)
{
	(void)state;
	struct nn_ws ws;
	nn_ws_init(&ws, 64 << 20);
	struct nn_team *team = nn_team_start(2);
	assert_non_null(team);
	int cin = 16, cout = 8, k = 8, s = 4, h = 3000, w = 24, hout = (h - 1) * s + k - 2 * s;
	size_t ny = (size_t)cout * hout * w, nu = ny / 2;
	float *wt = rand_buf((size_t)cin * cout * k), *b = rand_buf((size_t)cout);
	float *x = rand_buf((size_t)cin * h * w), *y = malloc(ny * sizeof(float));
	float *u = malloc(nu * sizeof(float));
	assert_true(y && u);
	BOTH_WAYS(team, y, ny, (void)0,
	          nn_convtr_h(&ws, wt, b, cin, cout, k, s, s, x, h, w, y, hout));
	BOTH_WAYS(team, u, nu, (void)0,
	          nn_glu_channels(y, cout / 2, (size_t)hout * w, u, (size_t)hout * w));

	int nc = 300, nt = 5000; /* 300 channels, blocks of 256 sums */
	size_t ng = (size_t)nc * nt;
	float *g0 = rand_buf(ng), *g = malloc(ng * sizeof(float));
	float *gw = rand_buf((size_t)nc), *gb = rand_buf((size_t)nc);
	assert_non_null(g);
	BOTH_WAYS(team, g, ng, memcpy(g, g0, ng * sizeof(float)),
	          nn_groupnorm1_slices(g, nc, 1, nt, (size_t)nt, gw, gb, 1e-5f));
	/* The passes below are also checked against plain loops doing the same arithmetic in
	 * one piece (ref), so that a split that changed it fails even where it would do so
	 * alike with and without a team. */
	float *ref = malloc(ng * sizeof(float)), *glu = malloc((size_t)nt * sizeof(float));
	assert_true(ref && glu);
	BOTH_WAYS(team, g, ng, memcpy(g, g0, ng * sizeof(float)),
	          nn_groupnorm_apply(g, nc, (size_t)nt, (size_t)nt, 0.25, 2.0, gw, gb, 1e-5f));
	double inv = 1.0 / sqrt(2.0 + 1e-5f);
	for (int c = 0; c < nc; c++) {
		double gg = gw[c];
		float sc = (float)(inv * gg), sh = (float)((double)gb[c] - 0.25 * inv * gg);
		for (int i = 0; i < nt; i++)
			ref[(size_t)c * nt + i] = g0[(size_t)c * nt + i] * sc + sh;
	}
	assert_memory_equal(ref, g, ng * sizeof(float));
	/* GLU + LayerScale of 150 channels of 5000 into the first half of g's rows. */
	BOTH_WAYS(team, g, ng, memcpy(g, g0, ng * sizeof(float)),
	          nn_glu_scale_add_channels(g0, nc / 2, (size_t)nt, gw, g, (size_t)2 * nt));
	memcpy(ref, g0, ng * sizeof(float));
	for (int c = 0; c < nc / 2; c++) {
		nn_glu(g0 + (size_t)c * nt, g0 + (size_t)(c + nc / 2) * nt, glu, (size_t)nt);
		for (int i = 0; i < nt; i++)
			ref[(size_t)c * 2 * nt + i] += gw[c] * glu[i];
	}
	assert_memory_equal(ref, g, ng * sizeof(float));
	BOTH_WAYS(team, g, ng, memset(g, 0, ng * sizeof(float)),
	          nn_copy_channels(g, (size_t)nt, g0 + 7, (size_t)nt, nc - 1, (size_t)nt - 9));
	memset(ref, 0, ng * sizeof(float));
	for (int c = 0; c < nc - 1; c++)
		memcpy(ref + (size_t)c * nt, g0 + 7 + (size_t)c * nt,
		       (size_t)(nt - 9) * sizeof(float));
	assert_memory_equal(ref, g, ng * sizeof(float));
	BOTH_WAYS(team, g, ng, memcpy(g, g0, ng * sizeof(float)), nn_add(g, g0 + 5, ng - 5));
	memcpy(ref, g0, ng * sizeof(float));
	for (size_t i = 0; i < ng - 5; i++)
		ref[i] += g0[i + 5];
	assert_memory_equal(ref, g, ng * sizeof(float));
	BOTH_WAYS(team, g, ng, memcpy(g, g0, ng * sizeof(float)),
	          nn_affine(g, ng - 5, 1.7f, -0.3f));
	memcpy(ref, g0, ng * sizeof(float));
	for (size_t i = 0; i < ng - 5; i++)
		ref[i] = g0[i] * 1.7f + -0.3f;
	assert_memory_equal(ref, g, ng * sizeof(float));
	free(ref);
	free(glu);

	/* A time-branch convolution (kernel 3 along h, 64 -> 96 channels): 3 row tiles. */
	int tc_in = 64, tc_out = 96, tl = 25000;
	float *tw = rand_buf((size_t)tc_out * tc_in * 3), *tb = rand_buf((size_t)tc_out);
	float *tx = rand_buf((size_t)tc_in * tl), *ty = malloc((size_t)tc_out * tl * sizeof(float));
	assert_non_null(ty);
	struct nn_conv c = {.w = tw,
	                    .b = tb,
	                    .cin = tc_in,
	                    .cout = tc_out,
	                    .kh = 3,
	                    .kw = 1,
	                    .sh = 1,
	                    .sw = 1,
	                    .ph = 1,
	                    .pw = 0,
	                    .dh = 1,
	                    .dw = 1};
	assert_int_equal((tl + (int)(NN_OPS_TILE_FLOATS / (3 * tc_in)) - 1) /
	                         (int)(NN_OPS_TILE_FLOATS / (3 * tc_in)),
	                 3);
	BOTH_WAYS(team, ty, (size_t)tc_out * tl, (void)0,
	          nn_conv2d(&ws, &c, tx, tl, 1, (size_t)tl, ty, tl, 1, (size_t)tl));
	assert_false(ws.failed);
	free(y);
	free(u);
	free(wt);
	free(b);
	free(x);
	free(g0);
	free(g);
	free(gw);
	free(gb);
	free(tw);
	free(tb);
	free(tx);
	free(ty);
	nn_team_stop(team);
	nn_ws_free(&ws);
}

/* OpenBLAS runs kernels this CPU has: on one with AVX2 and FMA, never the SSE3 "Prescott"
 * fallback that OpenBLAS 0.3.21 takes for CPU models newer than it knows (main() calls
 * nn_blas_pick_core first, as sfa does, so every test here runs on those kernels). */
static void blas_runs_the_cpus_kernels(void **state)
{
	(void)state;
	__builtin_cpu_init();
	const char *core = openblas_get_corename();
	assert_non_null(core);
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	    strcasecmp(core, "Prescott") == 0)
		fail_msg("OpenBLAS runs its Prescott (SSE3) kernels on a CPU with AVX2 and FMA "
		         "(OPENBLAS_CORETYPE=%s)",
		         getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
	print_message("# OpenBLAS core: %s\n", core);
}

int main(int argc, char **argv)
{
	(void)argc;
	nn_blas_pick_core(argv);
	nn_ops_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(blas_runs_the_cpus_kernels),
		cmocka_unit_test(conv_against_naive),
		cmocka_unit_test(convtr_against_naive),
		cmocka_unit_test(gelu_glu_are_accurate),
		cmocka_unit_test(softmax_norms_attention),
		cmocka_unit_test(lstm_step_kernels),
		cmocka_unit_test(stft_matches_its_definition),
		cmocka_unit_test(workspace_stack),
		cmocka_unit_test(gemm_team_is_bit_identical),
		cmocka_unit_test(team_parts_share_work_bit_identically),
		cmocka_unit_test(channel_groups_are_bit_identical),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
