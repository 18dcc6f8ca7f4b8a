/* The bf16 precision mode: the AVX512-BF16 product kernel against double-precision
 * references on random shapes (edge sizes of its 8 x 32 tiles and 256-deep k slices, every
 * transposition, alpha/beta), its bit-identity under a GEMM team, a tiny-model separation in
 * bf16 against the same in fp32, and the refusal where the CPU lacks the instructions.
 *
 * On a CPU without AVX512-BF16 the tests that need the instructions FAIL saying so (they
 * cannot check anything there, and a skip would read as a pass in CI); the refusal test
 * runs everywhere (it forces the refusal with SFA_CPU_NO_BF16=1), and is the one that
 * means something on such a CPU.
 *
 * Tolerances, derived: the kernel rounds each operand to bf16 (8 significant bits, unit
 * roundoff 2^-8: relative error <= 2^-8 each, so a product is off by <= (2^-7 + 2^-16)
 * |a||b|) and sums in fp32. Against the exact product of the fp32 operands:
 * |err| <= (2^-7 + 2^-15) sum|a||b| + fp32 summation (k 2^-24 sum|a||b|).
 * Against the exact product of the bf16-rounded operands only the fp32 summation is left:
 * |err| <= k 2^-24 sum|a_r||b_r| (times |alpha|, plus one rounding of beta C). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cpuid.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/gemm_bf16.h"
#include "nn/nn.h"
#include "nn/ops.h"
#include "nn/workspace.h"
#include "nn_testutil.h"
#include "util/err.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void need_bf16(void)
{
	char why[200];
	if (!nn_bf16_supported(why, sizeof why))
		fail_msg("this test needs AVX512-BF16 and cannot run here: %s", why);
}

typedef void product_fn(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                        const void *b, int ldb, float beta, float *c, int ldc, unsigned ops);
/* The product the shapes below go through: nn_gemm_bf16 (AMX where the CPU has it), or our
 * AVX512-BF16 kernel alone. */
static product_fn *product = nn_gemm_bf16;

/* One product checked element by element against both references. */
static void check_product(bool ta, bool tb, int m, int n, int k, float alpha, float beta)
{
	int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2; /* padded rows */
	size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
	size_t nc = (size_t)m * ldc;
	float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
	float *c = malloc(nc * sizeof *c), *c0 = malloc(nc * sizeof *c0);
	assert_true(a && b && c && c0);
	for (size_t i = 0; i < na; i++)
		a[i] = frand();
	for (size_t i = 0; i < nb; i++)
		b[i] = frand() * 4.0f;
	for (size_t i = 0; i < nc; i++)
		c0[i] = c[i] = beta == 0.0f ? NAN : frand(); /* beta 0 must not read C */
	product(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0);
	/* Operands rounded beforehand (nn_bf16_convert, same strides) give the same bits. */
	uint16_t *a16 = malloc(na * sizeof *a16), *b16 = malloc(nb * sizeof *b16);
	float *c16 = malloc(nc * sizeof *c16);
	assert_true(a16 && b16 && c16);
	nn_bf16_convert(a, na, a16);
	nn_bf16_convert(b, nb, b16);
	for (size_t i = 0; i < na; i++) { /* the conversion rounds as the products do */
		float r = nn_bf16_round(a[i]);
		uint32_t want;
		memcpy(&want, &r, sizeof want);
		if ((uint32_t)a16[i] << 16 != want)
			fail_msg("nn_bf16_convert(%.9g) = 0x%04x, the products round it to 0x%04x",
			         a[i], a16[i], want >> 16);
	}
	for (unsigned ops = 1; ops <= (NN_BF16_A | NN_BF16_B); ops++) {
		memcpy(c16, c0, nc * sizeof *c16);
		product(ta, tb, m, n, k, alpha, ops & NN_BF16_A ? (const void *)a16 : a, lda,
		        ops & NN_BF16_B ? (const void *)b16 : b, ldb, beta, c16, ldc, ops);
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++)
				if (memcmp(&c16[(size_t)i * ldc + j], &c[(size_t)i * ldc + j],
				           sizeof(float)) != 0)
					fail_msg(
						"ta %d tb %d m %d n %d k %d, operands %s%s in bf16: "
						"C[%d][%d] = %.9g, from floats %.9g",
						ta, tb, m, n, k, ops & NN_BF16_A ? "A" : "",
						ops & NN_BF16_B ? "B" : "", i, j,
						c16[(size_t)i * ldc + j], c[(size_t)i * ldc + j]);
	}
	free(a16);
	free(b16);
	free(c16);
	double worst_exact = 0, worst_rounded = 0, max_dev = 0;
	for (int i = 0; i < m; i++) {
		for (int j = 0; j < n; j++) {
			double s = 0, sr = 0, mag = 0, magr = 0;
			for (int p = 0; p < k; p++) {
				float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
				float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
				double ar = nn_bf16_round(av), br = nn_bf16_round(bv);
				s += (double)av * bv;
				sr += ar * br;
				mag += fabs((double)av * bv);
				magr += fabs(ar * br);
			}
			double cz = beta == 0.0f ? 0.0 : (double)beta * c0[(size_t)i * ldc + j];
			double want = alpha * s + cz, want_r = alpha * sr + cz;
			double got = c[(size_t)i * ldc + j];
			double tol_exact = fabs(alpha) * (0x1p-7 + 0x1p-15 + k * 0x1p-24) * mag +
			                   0x1p-22 * (fabs(want) + fabs(cz)) + 1e-30;
			double tol_r = fabs(alpha) * k * 0x1p-24 * magr +
			               0x1p-22 * (fabs(want_r) + fabs(cz)) + 1e-30;
			if (!(fabs(got - want) <= tol_exact) || !(fabs(got - want_r) <= tol_r))
				fail_msg(
					"ta %d tb %d m %d n %d k %d: C[%d][%d] = %.9g, exact %.9g (tol %.3g), "
					"of rounded inputs %.9g (tol %.3g)",
					ta, tb, m, n, k, i, j, got, want, tol_exact, want_r, tol_r);
			worst_exact = fmax(worst_exact, fabs(got - want) / tol_exact);
			worst_rounded = fmax(worst_rounded, fabs(got - want_r) / tol_r);
			max_dev = fmax(max_dev, fabs(got - want) / (fabs(alpha) * mag + 1e-30));
		}
	}
	/* The padding of C beyond column n is untouched. */
	for (int i = 0; i < m; i++)
		for (int j = n; j < ldc; j++)
			if (memcmp(&c[(size_t)i * ldc + j], &c0[(size_t)i * ldc + j],
			           sizeof(float)) != 0)
				fail_msg("m %d n %d k %d: C[%d][%d] past n was written", m, n, k, i,
				         j);
	/* The inputs really went through bf16: with k >= 8 random operands some element is
	 * off the fp32 product by far more than fp32 summation could explain. */
	if (k >= 8 && max_dev < 0x1p-14)
		fail_msg("m %d n %d k %d: results within %.3g of fp32: were the inputs rounded?", m,
		         n, k, max_dev);
	free(a);
	free(b);
	free(c);
	free(c0);
}

static void kernel_against_reference(void **state)
{
	(void)state;
	need_bf16();
	static const int sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 65};
	int n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
	for (int t = 0; t < 4; t++) {
		bool ta = t & 1, tb = t & 2;
		for (int si = 0; si < n_sizes; si++) {
			int m = sizes[si], n = sizes[(si * 5 + t) % n_sizes];
			int k = sizes[(si * 7 + 3 * t) % n_sizes];
			check_product(ta, tb, m, n, k, 1.0f, 0.0f);
		}
		/* k across slices (256, odd tails), m across MC = 128, n across NC = 1024. */
		check_product(ta, tb, 130, 40, 513, 1.0f, 1.0f);
		check_product(ta, tb, 9, 1030, 257, 0.5f, 0.0f);
		check_product(ta, tb, 33, 70, 256, -2.0f, 0.25f);
		check_product(ta, tb, 3, 5, 1, 1.0f, 1.0f);
	}
}

/* Where products run on AMX, our own kernel is checked on the same shapes too (it is what
 * runs on CPUs without AMX); elsewhere this repeats the test above. */
static void own_kernel_against_reference(void **state)
{
	product = nn_gemm_bf16_avx512;
	kernel_against_reference(state);
	product = nn_gemm_bf16;
}

/* On a CPU with AMX-BF16 the products run there (oneDNN built an AMX matmul), unless the
 * environment turned it off. */
static void amx_runs_where_the_cpu_has_it(void **state)
{
	(void)state;
	need_bf16();
	unsigned eax, ebx, ecx, edx; /* AMX-BF16: cpuid leaf 7, EDX bit 22 */
	bool amx = __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (edx & (1u << 22));
	const char *off = getenv("SFA_BF16_NO_AMX");
	bool want = amx && !(off && *off && strcmp(off, "0"));
	if (want && nn_gemm_bf16_cuttable())
		fail_msg("this CPU has AMX-BF16 but the bf16 products do not run on it (oneDNN "
		         "built no AMX matmul)");
	if (!want && !nn_gemm_bf16_cuttable())
		fail_msg("bf16 products run through oneDNN on a CPU without AMX-BF16");
	print_message("# bf16 products on %s\n", want ? "AMX (oneDNN)" : "our AVX512-BF16 kernel");
}

static void team_cuts_are_bit_identical(void **state)
{
	(void)state;
	need_bf16();
	int m = 192, n = 1100, k = 300; /* > 2 * NN_TEAM_MIN_MNK: cut along n */
	float *a = malloc(sizeof(float) * (size_t)m * k),
	      *b = malloc(sizeof(float) * (size_t)k * n);
	float *c1 = malloc(sizeof(float) * (size_t)m * n),
	      *c2 = malloc(sizeof(float) * (size_t)m * n);
	assert_true(a && b && c1 && c2);
	for (size_t i = 0; i < (size_t)m * k; i++)
		a[i] = frand();
	for (size_t i = 0; i < (size_t)k * n; i++)
		b[i] = frand();
	nn_ops_init();
	nn_ops_set_precision(NN_PRECISION_BF16);
	nn_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c1, n);
	struct nn_team *t = nn_team_start(2);
	assert_non_null(t);
	nn_ops_team_attach(t);
	nn_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n);
	nn_ops_team_attach(NULL);
	unsigned long long helped = nn_team_helped(t);
	nn_team_stop(t);
	nn_ops_set_precision(NN_PRECISION_FP32);
	/* Our kernel's products are shared; AMX ones are not cut (nn_gemm_bf16_cuttable). */
	if (nn_gemm_bf16_cuttable() && helped == 0)
		fail_msg("the team did not share the bf16 product");
	if (!nn_gemm_bf16_cuttable() && helped != 0)
		fail_msg("the team cut a bf16 product that runs on AMX");
	if (memcmp(c1, c2, sizeof(float) * (size_t)m * n) != 0)
		fail_msg("a bf16 product cut between threads differs from the whole");
	/* And the mode was bf16 indeed: the fp32 product differs. */
	nn_gemm(false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c2, n);
	if (memcmp(c1, c2, sizeof(float) * (size_t)m * n) == 0)
		fail_msg("nn_gemm gave the same bits in bf16 and fp32 modes");
	free(a);
	free(b);
	free(c1);
	free(c2);
}

struct parts_seen {
	enum nn_precision seen[64];
	pthread_t caller;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool helper_ran, timed_out;
};

/* Records the precision each part runs in. The caller's first part waits until a helper
 * has run one, so that helpers surely take parts whatever the scheduling (the wait has a
 * 60 s guard only against a hang: with no helper it fails instead). */
static void record_precision(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	struct parts_seen *ps = arg;
	ps->seen[part] = nn_ops_precision();
	pthread_mutex_lock(&ps->lock);
	if (!pthread_equal(pthread_self(), ps->caller)) {
		ps->helper_ran = true;
		pthread_cond_broadcast(&ps->cond);
	} else {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 60;
		while (!ps->helper_ran && !ps->timed_out)
			if (pthread_cond_timedwait(&ps->cond, &ps->lock, &until) != 0)
				ps->timed_out = true;
	}
	pthread_mutex_unlock(&ps->lock);
}

/* The parts of nn_team_parts run on helper threads in the caller's precision (their own
 * products are then bf16 too). Needs no AVX512-BF16: nothing is multiplied. */
static void team_parts_take_the_callers_precision(void **state)
{
	(void)state;
	struct parts_seen ps = {.caller = pthread_self()};
	pthread_mutex_init(&ps.lock, NULL);
	pthread_cond_init(&ps.cond, NULL);
	struct nn_team *t = nn_team_start(2);
	assert_non_null(t);
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_ops_team_attach(t);
	for (int round = 0; round < 2; round++) {
		enum nn_precision want = round ? NN_PRECISION_FP32 : NN_PRECISION_BF16;
		nn_ops_set_precision(want);
		ps.helper_ran = false;
		for (int i = 0; i < 64; i++)
			ps.seen[i] = (enum nn_precision) - 1;
		nn_team_parts(&ws, 64, record_precision, &ps);
		if (ps.timed_out)
			fail_msg("no helper took a part of nn_team_parts");
		for (int i = 0; i < 64; i++)
			if (ps.seen[i] != want)
				fail_msg("part %d ran in %s, the caller in %s", i,
				         nn_precision_name(ps.seen[i]), nn_precision_name(want));
	}
	nn_ops_team_attach(NULL);
	nn_ops_set_precision(NN_PRECISION_FP32);
	nn_ws_free(&ws);
	nn_team_stop(t);
	pthread_cond_destroy(&ps.cond);
	pthread_mutex_destroy(&ps.lock);
}

/* A convolution in bf16 mode builds its columns in bf16 (rounded once, in parts that a
 * team shares): the bits equal those of the fp32 columns multiplied by the bf16 product,
 * which rounds them as it packs them, with or without a team. Shapes: a frequency
 * encoder's, a dilated DConv's on a column, and one big enough to be cut into tiles whose
 * columns are built in several channel groups. */
static void conv_columns_rounded_once(void **state)
{
	(void)state;
	need_bf16();
	nn_ops_init();
	struct {
		int cin, cout, h, w, kh, kw, sh, ph, dh;
	} cases[] = {{4, 6, 64, 9, 8, 1, 4, 2, 1},
	             {5, 4, 77, 1, 3, 1, 1, 2, 2},
	             {48, 16, 3000, 1, 3, 1, 1, 1, 1}};
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	struct nn_team *team = nn_team_start(2);
	assert_non_null(team);
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		int cin = cases[ci].cin, cout = cases[ci].cout, h = cases[ci].h, w = cases[ci].w;
		int kh = cases[ci].kh, kw = cases[ci].kw, sh = cases[ci].sh, ph = cases[ci].ph;
		int dh = cases[ci].dh;
		int ho = nn_conv_out(h, kh, sh, ph, dh), wo = nn_conv_out(w, kw, 1, 0, 1);
		int kdim = cin * kh * kw, n = ho * wo;
		float *x = malloc(sizeof(float) * (size_t)cin * h * w);
		float *wt = malloc(sizeof(float) * (size_t)cout * kdim);
		float *bias = malloc(sizeof(float) * (size_t)cout);
		float *col = malloc(sizeof(float) * (size_t)kdim * n);
		float *want = malloc(sizeof(float) * (size_t)cout * n);
		float *got = malloc(sizeof(float) * (size_t)cout * n);
		assert_true(x && wt && bias && col && want && got);
		for (size_t i = 0; i < (size_t)cin * h * w; i++)
			x[i] = frand();
		for (size_t i = 0; i < (size_t)cout * kdim; i++)
			wt[i] = frand();
		for (int i = 0; i < cout; i++)
			bias[i] = frand();
		for (int c = 0; c < cin; c++) /* the column matrix, by its definition */
			for (int i = 0; i < kh; i++)
				for (int j = 0; j < kw; j++)
					for (int oh = 0; oh < ho; oh++)
						for (int ow = 0; ow < wo; ow++) {
							int ih = oh * sh - ph + i * dh, iw = ow + j;
							col[((size_t)(c * kh + i) * kw + j) * n +
							    (size_t)oh * wo + ow] =
								ih < 0 || ih >= h || iw >= w
									? 0.0f
									: x[((size_t)c * h + ih) *
							                            w +
							                    iw];
						}
		for (int co = 0; co < cout; co++)
			for (int i = 0; i < n; i++)
				want[(size_t)co * n + i] = bias[co];
		struct nn_conv cv = {.w = wt,
		                     .b = bias,
		                     .cin = cin,
		                     .cout = cout,
		                     .kh = kh,
		                     .kw = kw,
		                     .sh = sh,
		                     .sw = 1,
		                     .ph = ph,
		                     .pw = 0,
		                     .dh = dh,
		                     .dw = 1};
		nn_ops_set_precision(NN_PRECISION_BF16);
		nn_gemm(false, false, cout, n, kdim, 1.0f, wt, kdim, col, n, 1.0f, want, n);
		for (int with_team = 0; with_team < 2; with_team++) {
			nn_ops_team_attach(with_team ? team : NULL);
			nn_conv2d(&ws, &cv, x, h, w, (size_t)h * w, got, ho, wo, (size_t)n);
			nn_ops_team_attach(NULL);
			assert_false(ws.failed);
			for (size_t i = 0; i < (size_t)cout * n; i++)
				if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
					fail_msg("case %zu%s: y[%zu] = %.9g, the product of its "
					         "columns %.9g",
					         ci, with_team ? " with a team" : "", i, got[i],
					         want[i]);
		}
		nn_ops_set_precision(NN_PRECISION_FP32);
		free(x);
		free(wt);
		free(bias);
		free(col);
		free(want);
		free(got);
	}
	nn_team_stop(team);
	assert_int_equal(ws.top_bytes, 0);
	nn_ws_free(&ws);
}

/* Attention in bf16 mode (queries, keys, values and the softmax's weights rounded once
 * each) against the attention of the rounded queries, keys and values in double: each
 * weight is rounded to bf16 (relative error <= 2^-8), so an output is off by at most about
 * 2^-8 sum_j w_j |v_j| / sum_j w_j, plus the fp32 scores' error (tolerance 2^-7 of it).
 * Three heads of 8 over 300 queries (two blocks) and 270 keys, with and without a team,
 * which must give the same bits. */
static void attention_in_bf16(void **state)
{
	(void)state;
	need_bf16();
	nn_ops_init();
	int nq = 300, nk = 270, dim = 24, heads = 3, hd = 8;
	float *q = malloc(sizeof(float) * (size_t)nq * dim);
	float *kk = malloc(sizeof(float) * (size_t)nk * dim);
	float *vv = malloc(sizeof(float) * (size_t)nk * dim);
	float *out = malloc(sizeof(float) * (size_t)nq * dim);
	float *out2 = malloc(sizeof(float) * (size_t)nq * dim);
	double *sc = malloc(sizeof(double) * (size_t)nk);
	assert_true(q && kk && vv && out && out2 && sc);
	for (size_t i = 0; i < (size_t)nq * dim; i++)
		q[i] = frand() * 2.0f;
	for (size_t i = 0; i < (size_t)nk * dim; i++) {
		kk[i] = frand() * 2.0f;
		vv[i] = frand();
	}
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_ops_set_precision(NN_PRECISION_BF16);
	nn_attention(&ws, q, dim, nq, kk, dim, vv, dim, nk, dim, heads, out, dim);
	struct nn_team *team = nn_team_start(2);
	assert_non_null(team);
	nn_ops_team_attach(team);
	nn_attention(&ws, q, dim, nq, kk, dim, vv, dim, nk, dim, heads, out2, dim);
	nn_ops_team_attach(NULL);
	nn_team_stop(team);
	nn_ops_set_precision(NN_PRECISION_FP32);
	assert_false(ws.failed);
	assert_int_equal(ws.top_bytes, 0);
	if (memcmp(out, out2, sizeof(float) * (size_t)nq * dim) != 0)
		fail_msg("bf16 attention with a team differs from the same without one");
	double worst = 0, far = 0;
	for (int h = 0; h < heads; h++)
		for (int i = 0; i < nq; i++) {
			double mx = -1e300, s = 0;
			for (int j = 0; j < nk; j++) {
				double dot = 0;
				for (int e = 0; e < hd; e++)
					dot += (double)nn_bf16_round(q[i * dim + h * hd + e]) *
					       nn_bf16_round(kk[j * dim + h * hd + e]);
				sc[j] = dot / sqrt((double)hd);
				mx = fmax(mx, sc[j]);
			}
			for (int j = 0; j < nk; j++) {
				sc[j] = exp(sc[j] - mx);
				s += sc[j];
			}
			for (int e = 0; e < hd; e++) {
				double acc = 0, mag = 0;
				for (int j = 0; j < nk; j++) {
					double v = nn_bf16_round(vv[j * dim + h * hd + e]);
					acc += sc[j] * v;
					mag += sc[j] * fabs(v);
				}
				double want = acc / s, tol = 0x1p-7 * mag / s + 1e-6;
				double got = out[i * dim + h * hd + e];
				if (!(fabs(got - want) <= tol))
					fail_msg(
						"head %d query %d: out[%d] = %.9g, want %.9g (tol %.3g)",
						h, i, e, got, want, tol);
				worst = fmax(worst, fabs(got - want) / tol);
				/* against the fp32 inputs: the rounding shows */
				double acc32 = 0;
				for (int j = 0; j < nk; j++)
					acc32 += sc[j] * vv[j * dim + h * hd + e];
				far = fmax(far, fabs(got - acc32 / s));
			}
		}
	if (far < 1e-5)
		fail_msg("bf16 attention is within %.3g of the unrounded values' attention: were "
		         "the values rounded?",
		         far);
	print_message("# bf16 attention: worst error %.2f of its tolerance\n", worst);
	nn_ws_free(&ws);
	free(q);
	free(kk);
	free(vv);
	free(out);
	free(out2);
	free(sc);
}

/* A generated stereo mix (chords, noise bursts), n frames. */
static float *make_mix(size_t n)
{
	float *x = malloc(2 * n * sizeof *x);
	assert_non_null(x);
	for (size_t i = 0; i < n; i++) {
		double t = (double)i / 44100.0;
		double burst = fmod(t, 0.125) < 0.02 ? frand() * 0.3 : 0.0;
		x[i] = (float)(0.2 * sin(2 * M_PI * 110 * t) + 0.1 * sin(2 * M_PI * 440 * t) +
		               burst);
		x[n + i] = (float)(0.15 * sin(2 * M_PI * 165 * t + 1) +
		                   0.1 * sin(2 * M_PI * 660 * t) + burst);
	}
	return x;
}

static void tiny_separation_close_to_fp32(void **state)
{
	(void)state;
	need_bf16();
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	const struct nn_model_info *info = nn_model_info(m);
	size_t n = 44100 / 2;
	float *mix = make_mix(n);
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 0;
	o.n_threads = 2;
	float *ref = nn_test_separate(m, mix, n, &o);
	o.precision = NN_PRECISION_BF16;
	float *got = nn_test_separate(m, mix, n, &o);
	/* The tiny model's weights are random: its output SNR against fp32 sits around 40 dB
	 * (bf16 keeps 8 bits, ~48 dB per rounding, a few layers lose some); 25 dB leaves room
	 * without letting a broken kernel through (garbage gives < 0 dB), and < 120 dB proves
	 * bf16 really ran. */
	for (int s = 0; s < info->n_sources; s++) {
		double sig = 0, noise = 0;
		for (size_t i = 0; i < 2 * n; i++) {
			double r = ref[(size_t)s * 2 * n + i], d = got[(size_t)s * 2 * n + i] - r;
			sig += r * r;
			noise += d * d;
		}
		double snr = 10 * log10(sig / fmax(noise, 1e-300));
		print_message("# %s: SNR bf16 vs fp32 %.1f dB\n", info->sources[s], snr);
		if (!(snr > 25.0))
			fail_msg("%s: SNR of bf16 against fp32 is %.1f dB (want > 25)",
			         info->sources[s], snr);
		if (snr > 120.0)
			fail_msg("%s: bf16 output equals fp32 (%.1f dB): did bf16 run?",
			         info->sources[s], snr);
	}
	free(ref);
	free(got);
	free(mix);
	nn_model_free(m);
}

static void refused_without_the_instructions(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	size_t n = 4410;
	float *mix = make_mix(n);
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.precision = NN_PRECISION_BF16;
	setenv("SFA_CPU_NO_BF16", "1", 1);
	char err[256] = "";
	float *out = NULL;
	int rc = nn_separate(m, mix, n, &o, &out, err, sizeof err);
	unsetenv("SFA_CPU_NO_BF16");
	assert_int_equal(rc, SFA_EUNSUPP);
	assert_null(out);
	if (!strstr(err, "AVX512-BF16"))
		fail_msg("the refusal does not say what is missing: '%s'", err);
	/* A precision that is neither is refused as bad input. */
	o.precision = (enum nn_precision)7;
	assert_int_equal(nn_separate(m, mix, n, &o, &out, err, sizeof err), SFA_EINVAL);
	enum nn_precision p;
	assert_int_equal(nn_precision_parse("bf16", &p), 0);
	assert_int_equal(p, NN_PRECISION_BF16);
	assert_int_equal(nn_precision_parse("fp32", &p), 0);
	assert_int_equal(p, NN_PRECISION_FP32);
	assert_int_equal(nn_precision_parse("fp16", &p), -1);
	assert_int_equal(nn_precision_parse("BF16", &p), -1);
	free(mix);
	nn_model_free(m);
}

int main(int argc, char **argv)
{
	nn_test_fixtures = argc > 1 ? argv[1] : "tests/fixtures/nn";
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refused_without_the_instructions),
		cmocka_unit_test(kernel_against_reference),
		cmocka_unit_test(own_kernel_against_reference),
		cmocka_unit_test(amx_runs_where_the_cpu_has_it),
		cmocka_unit_test(team_cuts_are_bit_identical),
		cmocka_unit_test(team_parts_take_the_callers_precision),
		cmocka_unit_test(conv_columns_rounded_once),
		cmocka_unit_test(attention_in_bf16),
		cmocka_unit_test(tiny_separation_close_to_fp32),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
