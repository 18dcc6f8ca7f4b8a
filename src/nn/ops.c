/* ops.c - see ops.h.
 *
 * im2col layout: row r = (ci*kh + i)*kw + j of the column matrix holds, for every output
 * position of the tile, the input value under kernel tap (i, j) of channel ci (zero in
 * the padding). That is the order of PyTorch's weight (cout, cin, kh, kw) flattened, so
 * the weight matrix is used as stored.
 */
#include "nn/ops.h"

#include <cblas.h>
#include <stdio.h>
#include <math.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "nn/gemm_bf16.h"
#include "util/simd.h"

static _Atomic unsigned long long ops_flops;
static _Atomic unsigned long long ops_shared; /* work offered to helpers, all teams */

unsigned long long nn_ops_team_shared_count(void) { return ops_shared; }

unsigned long long nn_ops_flop_count(void) { return ops_flops; }

static pthread_once_t ops_once = PTHREAD_ONCE_INIT;

static void ops_init_once(void) { openblas_set_num_threads(1); }

void nn_ops_init(void) { pthread_once(&ops_once, ops_init_once); }

void nn_blas_pick_core(char **argv)
{
	if (getenv("OPENBLAS_CORETYPE"))
		return;
	const char *core = openblas_get_corename();
	if (!core || strcasecmp(core, "Prescott") != 0)
		return;
	__builtin_cpu_init();
	const char *want = NULL;
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512cd"))
		want = "SkylakeX";
	else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		want = "Haswell";
	if (!want || setenv("OPENBLAS_CORETYPE", want, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	unsetenv("OPENBLAS_CORETYPE"); /* no exec: carry on with the kernels loaded */
}

struct gemm_part {
	bool ta, tb;
	bool bf16;    /* nn_gemm_bf16 instead of cblas_sgemm */
	unsigned ops; /* NN_BF16_A / NN_BF16_B: that operand holds bfloat16 (bf16 only) */
	int m, n, k;
	float alpha, beta;
	const void *a, *b;
	float *c;
	int lda, ldb, ldc;
};

struct nn_team {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	int n_helpers, n_started;
	pthread_t th[NN_TEAM_MAX_HELPERS];
	struct gemm_part part[NN_TEAM_MAX_HELPERS + 1];
	int n_parts;               /* of the current product (part 0 is the caller's) */
	unsigned long long round;  /* bumped for every product or nn_team_parts call */
	int pending;               /* helpers not finished yet */
	unsigned long long helped; /* parts run by helpers */
	bool quit;
	int unit; /* fp32 products are cut at multiples of this many rows; 0: not cut */
	/* nn_team_parts: fn over parts [0, fn_n), taken in turn by whoever is free. */
	void (*fn)(void *arg, int part, struct nn_ws *ws);
	void *fn_arg;
	enum nn_precision fn_precision; /* the caller's, for the parts' own products */
	int fn_n, fn_next;
	bool fn_failed;                       /* a helper's workspace ran out */
	struct nn_ws ws[NN_TEAM_MAX_HELPERS]; /* the helpers' own */
};

static _Thread_local struct nn_team *ops_team;
static _Thread_local enum nn_precision ops_precision;

void nn_ops_set_precision(enum nn_precision p) { ops_precision = p; }

enum nn_precision nn_ops_precision(void) { return ops_precision; }

bool nn_bf16_supported(char *why, size_t n_why)
{
	const char *off = getenv("SFA_CPU_NO_BF16");
	if (off && *off && strcmp(off, "0") != 0) {
		snprintf(why, n_why,
		         "bf16 precision needs a CPU with AVX512-BF16, and "
		         "SFA_CPU_NO_BF16 says to act as if this one had none");
		return false;
	}
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bf16")) {
		snprintf(why, n_why,
		         "bf16 precision needs a CPU with AVX512-BF16 (Intel Cooper "
		         "Lake or Sapphire Rapids and later, AMD Zen 4 and later); this "
		         "one has none: use fp32");
		return false;
	}
	return true;
}

int nn_precision_parse(const char *s, enum nn_precision *out)
{
	if (s && strcmp(s, "fp32") == 0) {
		*out = NN_PRECISION_FP32;
		return 0;
	}
	if (s && strcmp(s, "bf16") == 0) {
		*out = NN_PRECISION_BF16;
		return 0;
	}
	return -1;
}

const char *nn_precision_name(enum nn_precision p)
{
	return p == NN_PRECISION_BF16 ? "bf16" : "fp32";
}

static void run_part(const struct gemm_part *p)
{
	if (p->bf16) {
		nn_gemm_bf16(p->ta, p->tb, p->m, p->n, p->k, p->alpha, p->a, p->lda, p->b, p->ldb,
		             p->beta, p->c, p->ldc, p->ops);
		return;
	}
	cblas_sgemm(CblasRowMajor, p->ta ? CblasTrans : CblasNoTrans,
	            p->tb ? CblasTrans : CblasNoTrans, p->m, p->n, p->k, p->alpha, p->a, p->lda,
	            p->b, p->ldb, p->beta, p->c, p->ldc);
}

/* Takes parts of the current nn_team_parts call until none is left (lock held on entry and
 * on return). */
static void take_parts(struct nn_team *t, struct nn_ws *ws, bool helper)
{
	while (t->fn_next < t->fn_n) {
		int part = t->fn_next++;
		pthread_mutex_unlock(&t->lock);
		size_t mark = ws ? nn_ws_mark(ws) : 0;
		t->fn(t->fn_arg, part, ws);
		if (ws)
			nn_ws_release(ws, mark);
		pthread_mutex_lock(&t->lock);
		if (ws && ws->failed)
			t->fn_failed = true;
		if (helper) {
			nn_ws_reset(ws); /* a helper's workspace holds nothing between parts */
			t->helped++;
		}
	}
}

static void *team_main(void *arg)
{
	struct nn_team *t = ((void **)arg)[0];
	int index = (int)(intptr_t)((void **)arg)[1];
	free(arg);
	unsigned long long seen = 0;
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (!t->quit && t->round == seen)
			pthread_cond_wait(&t->work, &t->lock);
		if (t->quit)
			break;
		seen = t->round;
		if (t->fn) {
			ops_precision = t->fn_precision;
			take_parts(t, &t->ws[index - 1], true);
			if (--t->pending == 0)
				pthread_cond_signal(&t->done);
			continue;
		}
		if (index >= t->n_parts)
			continue;
		struct gemm_part p = t->part[index];
		pthread_mutex_unlock(&t->lock);
		run_part(&p);
		pthread_mutex_lock(&t->lock);
		t->helped++;
		if (--t->pending == 0)
			pthread_cond_signal(&t->done);
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

static int cut(const struct gemm_part *whole, int n_helpers, int unit, struct gemm_part *parts);

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static int probe_unit;

/* Whether c1 and c2 (m x n, ldc n) hold the same bits. */
static bool same(const float *c1, const float *c2, int m, int n)
{
	return memcmp(c1, c2, sizeof(float) * (size_t)m * n) == 0;
}

/* The row unit at which this OpenBLAS kernel gives a product cut along m the bits of the
 * whole: a row of C is computed by the same instructions whatever rows share its call only
 * when the cut falls on a multiple of the kernel's register block (0.3.21: any multiple of
 * 12 on the Haswell and Zen kernels, which differ elsewhere, e.g. at 32 or 64; cuts along
 * n differ at every point there). Probed once, on every transposition, at several cut
 * points and as nn_gemm would cut for one and three helpers; 0 when no unit holds. */
static void probe_splits(void)
{
	static const struct {
		bool ta, tb;
		int m, n, k;
	} shapes[] = {
		{false, false, 96, 1000, 192},
		{false, true, 200, 517, 201},
		{true, false, 600, 160, 200},
		{true, true, 330, 300, 257},
	};
	static const int units[] = {8, 12, 16, 24, 32, 48, 64};
	bool ok[sizeof units / sizeof units[0]];
	for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
		ok[u] = true;
	uint32_t rng = 12345;
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		int m = shapes[si].m, n = shapes[si].n, k = shapes[si].k;
		float *a = malloc(sizeof(float) * (size_t)m * k);
		float *b = malloc(sizeof(float) * (size_t)k * n);
		float *c1 = malloc(sizeof(float) * (size_t)m * n);
		float *c2 = malloc(sizeof(float) * (size_t)m * n);
		if (!a || !b || !c1 || !c2) {
			for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
				ok[u] = false;
		} else {
			for (size_t i = 0; i < (size_t)m * k; i++)
				a[i] = (float)((rng = rng * 1664525u + 1013904223u) >> 8) /
				               16777216.0f -
				       0.5f;
			for (size_t i = 0; i < (size_t)k * n; i++)
				b[i] = (float)((rng = rng * 1664525u + 1013904223u) >> 8) /
				               16777216.0f -
				       0.5f;
			struct gemm_part whole = {.ta = shapes[si].ta,
			                          .tb = shapes[si].tb,
			                          .m = m,
			                          .n = n,
			                          .k = k,
			                          .alpha = 1.0f,
			                          .beta = 0.0f,
			                          .a = a,
			                          .b = b,
			                          .c = c1,
			                          .lda = shapes[si].ta ? m : k,
			                          .ldb = shapes[si].tb ? k : n,
			                          .ldc = n};
			run_part(&whole);
			whole.c = c2;
			for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
				/* Two parts cut at 1, 2, 3 and 5 units. */
				for (int f = 1; f <= 5 && ok[u]; f += f == 3 ? 2 : 1) {
					int at = f * units[u];
					if (at >= m)
						break;
					struct gemm_part p[2] = {whole, whole};
					p[0].m = at;
					p[1].m = m - at;
					p[1].a = whole.ta ? a + at : a + (size_t)at * whole.lda;
					p[1].c = c2 + (size_t)at * n;
					run_part(&p[0]);
					run_part(&p[1]);
					ok[u] = same(c1, c2, m, n);
				}
				for (int helpers = 1; helpers <= 3 && ok[u]; helpers += 2) {
					struct gemm_part parts[4];
					int np = cut(&whole, helpers, units[u], parts);
					for (int i = 0; i < np; i++)
						run_part(&parts[i]);
					ok[u] = same(c1, c2, m, n);
				}
			}
		}
		free(a);
		free(b);
		free(c1);
		free(c2);
	}
	for (size_t u = 0; u < sizeof units / sizeof units[0] && !probe_unit; u++)
		if (ok[u])
			probe_unit = units[u];
}

int nn_ops_team_unit(void)
{
	nn_ops_init();
	pthread_once(&probe_once, probe_splits);
	return probe_unit;
}

struct nn_team *nn_team_start(int n_helpers)
{
	if (n_helpers < 0)
		n_helpers = 0;
	if (n_helpers > NN_TEAM_MAX_HELPERS)
		n_helpers = NN_TEAM_MAX_HELPERS;
	struct nn_team *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->work, NULL);
	pthread_cond_init(&t->done, NULL);
	for (int i = 0; i < n_helpers; i++)
		nn_ws_init(&t->ws[i], 0);
	for (int i = 0; i < n_helpers; i++) {
		void **arg = malloc(2 * sizeof *arg);
		if (!arg)
			break;
		arg[0] = t;
		arg[1] = (void *)(intptr_t)(i + 1);
		if (pthread_create(&t->th[i], NULL, team_main, arg) != 0) {
			free(arg);
			break;
		}
		t->n_started = i + 1;
	}
	t->n_helpers = t->n_started; /* fewer helpers if some could not start */
	t->unit = nn_ops_team_unit();
	return t;
}

void nn_team_stop(struct nn_team *t)
{
	if (!t)
		return;
	pthread_mutex_lock(&t->lock);
	t->quit = true;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
	for (int i = 0; i < t->n_started; i++)
		pthread_join(t->th[i], NULL);
	for (int i = 0; i < NN_TEAM_MAX_HELPERS; i++)
		nn_ws_free(&t->ws[i]);
	pthread_cond_destroy(&t->done);
	pthread_cond_destroy(&t->work);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

unsigned long long nn_team_helped(struct nn_team *t)
{
	pthread_mutex_lock(&t->lock);
	unsigned long long n = t->helped;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void nn_ops_team_attach(struct nn_team *t) { ops_team = t; }

void nn_team_parts(struct nn_ws *ws, int n_parts, void (*fn)(void *arg, int part, struct nn_ws *ws),
                   void *arg)
{
	struct nn_team *t = ops_team;
	if (!t || t->n_helpers == 0 || n_parts < 2) {
		for (int p = 0; p < n_parts; p++) {
			size_t mark = ws ? nn_ws_mark(ws) : 0;
			fn(arg, p, ws);
			if (ws)
				nn_ws_release(ws, mark);
		}
		return;
	}
	ops_team = NULL; /* the parts' own products run whole, on their thread */
	ops_shared++;
	pthread_mutex_lock(&t->lock);
	t->fn = fn;
	t->fn_arg = arg;
	t->fn_precision = ops_precision;
	t->fn_n = n_parts;
	t->fn_next = 0;
	t->fn_failed = false;
	t->pending = t->n_helpers;
	t->round++;
	pthread_cond_broadcast(&t->work);
	take_parts(t, ws, false);
	while (t->pending > 0)
		pthread_cond_wait(&t->done, &t->lock);
	if (t->fn_failed && ws)
		ws->failed = true;
	t->fn = NULL;
	pthread_mutex_unlock(&t->lock);
	ops_team = t;
}

/* Cuts the product into up to 1 + n_helpers parts, each of at least NN_TEAM_MIN_MNK
 * multiply-adds: along m at multiples of unit rows when unit > 0 (fp32: the probed unit,
 * see probe_splits), else (bf16, whose kernel gives every element the same bits however
 * it is cut) along the larger of m and n at multiples of 64. Returns the count. */
static int cut(const struct gemm_part *whole, int n_helpers, int unit, struct gemm_part *parts)
{
	double mnk = (double)whole->m * whole->n * whole->k;
	bool along_n = unit == 0 && whole->n >= whole->m;
	int step_unit = unit > 0 ? unit : 64;
	int len = along_n ? whole->n : whole->m;
	int want = 1 + n_helpers;
	while (want > 1 && (mnk / want < (double)NN_TEAM_MIN_MNK || len / want < step_unit))
		want--;
	int step = (len / want) / step_unit * step_unit;
	if (want < 2 || step < step_unit) {
		parts[0] = *whole;
		return 1;
	}
	for (int i = 0; i < want; i++) {
		int s0 = i * step, s1 = i + 1 < want ? s0 + step : len;
		struct gemm_part *p = &parts[i];
		*p = *whole;
		if (along_n) {
			p->n = s1 - s0;
			p->b = nn_operand_at(whole->b, whole->ops & NN_BF16_B,
			                     whole->tb ? (size_t)s0 * whole->ldb : (size_t)s0);
			p->c = whole->c + s0;
		} else {
			p->m = s1 - s0;
			p->a = nn_operand_at(whole->a, whole->ops & NN_BF16_A,
			                     whole->ta ? (size_t)s0 : (size_t)s0 * whole->lda);
			p->c = whole->c + (size_t)s0 * whole->ldc;
		}
	}
	return want;
}

/* Whether the calling thread's team shares a product of this shape (cut in two parts or
 * more; bf16 in the calling thread's precision mode). */
static bool team_cuts(int m, int n, int k)
{
	const struct nn_team *t = ops_team;
	bool bf16 = ops_precision == NN_PRECISION_BF16;
	if (!t || t->n_helpers == 0 || (!t->unit && !bf16) || (bf16 && !nn_gemm_bf16_cuttable()) ||
	    (double)m * n * k < 2.0 * NN_TEAM_MIN_MNK)
		return false;
	struct gemm_part whole = {.m = m, .n = n, .k = k}, parts[1 + NN_TEAM_MAX_HELPERS];
	return cut(&whole, t->n_helpers, bf16 ? 0 : t->unit, parts) > 1;
}

/* nn_gemm whose operands may hold bfloat16 already (ops: NN_BF16_A, NN_BF16_B), for the
 * calling thread's bf16 mode only: an operand that feeds several products, or is built for
 * one, is rounded once as it is built instead of by every product that packs it. */
static void gemm_ops(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                     const void *b, int ldb, float beta, float *c, int ldc, unsigned ops)
{
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0) {
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++)
				c[(size_t)i * ldc + j] = beta == 0.0f
				                                 ? 0.0f
				                                 : beta * c[(size_t)i * ldc + j];
		return;
	}
	ops_flops += 2ull * (unsigned long long)m * (unsigned long long)n * (unsigned long long)k;
	struct gemm_part whole = {.ta = ta,
	                          .tb = tb,
	                          .m = m,
	                          .n = n,
	                          .k = k,
	                          .alpha = alpha,
	                          .beta = beta,
	                          .a = a,
	                          .b = b,
	                          .c = c,
	                          .lda = lda,
	                          .ldb = ldb,
	                          .ldc = ldc,
	                          .bf16 = ops_precision == NN_PRECISION_BF16,
	                          .ops = ops};
	/* Our bf16 kernel gives the same bits cut or whole on every CPU (gemm_bf16.c); AMX
	 * products are not cut (team_cuts). */
	if (!team_cuts(m, n, k)) {
		run_part(&whole);
		return;
	}
	struct nn_team *t = ops_team;
	pthread_mutex_lock(&t->lock);
	t->n_parts = cut(&whole, t->n_helpers, whole.bf16 ? 0 : t->unit, t->part);
	ops_shared++;
	struct gemm_part mine = t->part[0];
	t->pending = t->n_parts - 1;
	t->round++;
	pthread_cond_broadcast(&t->work);
	pthread_mutex_unlock(&t->lock);
	run_part(&mine);
	pthread_mutex_lock(&t->lock);
	while (t->pending > 0)
		pthread_cond_wait(&t->done, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

void nn_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc)
{
	gemm_ops(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, 0);
}

/* n bfloat16 from a workspace (as floats: two to one), or NULL. */
static uint16_t *ws_bf16(struct nn_ws *ws, size_t n)
{
	return (uint16_t *)nn_ws_floats(ws, (n + 1) / 2);
}

/* Elementwise work on whole tensors is cut into parts of SPAN_FLOATS for a team. */
enum { SPAN_FLOATS = 1 << 18 };

/* Channels per part of a per-channel pass of `per_ch` floats each: about SPAN_FLOATS, so
 * that a small tensor stays one part (on the calling thread). */
static int channel_group(int n_ch, size_t per_ch)
{
	size_t g = SPAN_FLOATS / (per_ch ? per_ch : 1);
	if (g < 1)
		g = 1;
	return g < (size_t)n_ch ? (int)g : (n_ch > 0 ? n_ch : 1);
}

/* The channels [*c0, *c1) of part `part` of [first, end) cut into groups of `group`. */
static void part_channels(int part, int group, int first, int end, int *c0, int *c1)
{
	*c0 = first + part * group;
	*c1 = *c0 + group < end ? *c0 + group : end;
}

/* Runs fn over [0, n_ch) in parts of `group` channels, on the calling thread's team; ws is
 * the calling thread's part's workspace (NULL for parts that need none; helpers use their
 * own). */
static void channel_parts(struct nn_ws *ws, int n_ch, int group,
                          void (*fn)(void *, int, struct nn_ws *), void *arg)
{
	nn_team_parts(ws, (n_ch + group - 1) / group, fn, arg);
}

/* Runs fn over n_tiles tiles whose main work is a product of (m, n, k) each: as parts of
 * the calling thread's team when there are enough of them to keep it busy (twice its
 * threads), else one after the other on the calling thread with the team still attached,
 * which then shares each tile's product (if it cuts it) and its channel passes: two or
 * three uneven tiles as parts would leave a thread idle. Either way every tile is
 * computed by the same code, hence the same bits. */
static void tile_parts(struct nn_ws *ws, int n_tiles, int m, int n, int k,
                       void (*fn)(void *, int, struct nn_ws *), void *arg)
{
	const struct nn_team *t = ops_team;
	if (!t || n_tiles >= 2 * (1 + t->n_helpers) || !team_cuts(m, n, k)) {
		nn_team_parts(ws, n_tiles, fn, arg);
		return;
	}
	for (int p = 0; p < n_tiles; p++) {
		size_t mark = nn_ws_mark(ws);
		fn(arg, p, ws);
		nn_ws_release(ws, mark);
	}
}

struct fill {
	float *y;
	const float *b;
	size_t n, ld;
	int cout, group;
};

static void fill_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct fill *a = arg;
	int c0, c1;
	part_channels(part, a->group, 0, a->cout, &c0, &c1);
	for (int co = c0; co < c1; co++) {
		float v = a->b ? a->b[co] : 0.0f;
		float *row = a->y + (size_t)co * a->ld;
		for (size_t i = 0; i < a->n; i++)
			row[i] = v;
	}
}

/* The outputs' first touch: shared by a team, which also spreads the page faults of fresh
 * buffers (most of the kernel time of a forward pass) over its threads. */
void nn_fill_channels(float *y, int cout, const float *b, size_t n, size_t ld)
{
	struct fill a = {.y = y, .b = b, .n = n, .ld = ld, .cout = cout};
	a.group = channel_group(cout, n);
	channel_parts(NULL, cout, a.group, fill_part, &a);
}

/* Fills the rows of input channels [ci0, ci1) of the column matrix for output rows
 * [h0, h1), from col (the rows of channel ci0). */
static void im2col(const struct nn_conv *c, const float *x, int h, int w, size_t ldx, int h0,
                   int h1, int wo, int ci0, int ci1, float *col)
{
	size_t n = (size_t)(h1 - h0) * (size_t)wo;
	for (int ci = ci0; ci < ci1; ci++) {
		for (int i = 0; i < c->kh; i++) {
			for (int j = 0; j < c->kw; j++) {
				float *dst = col +
				             ((size_t)((ci - ci0) * c->kh + i) * c->kw + j) * n;
				int off_w = j * c->dw - c->pw;
				if (w == 1 && wo == 1 && off_w == 0) {
					/* A column vector (the time branch as (C, L, 1)): a strided gather,
					 * contiguous when the stride is 1. */
					const float *src = x + (size_t)ci * ldx;
					int base = -c->ph + i * c->dh;
					if (c->sh == 1) {
						int lo = -base - h0 > 0
						                 ? -base - h0
						                 : 0;   /* first in-range row */
						int hi = h - base - h0; /* end of in-range rows */
						int nrow = h1 - h0;
						lo = lo > nrow ? nrow : lo;
						hi = hi > nrow ? nrow : (hi < lo ? lo : hi);
						if (lo)
							memset(dst, 0, (size_t)lo * sizeof *dst);
						if (hi > lo)
							memcpy(dst + lo, src + h0 + lo + base,
							       (size_t)(hi - lo) * sizeof *dst);
						if (nrow > hi)
							memset(dst + hi, 0,
							       (size_t)(nrow - hi) * sizeof *dst);
					} else {
						for (int oh = h0; oh < h1; oh++) {
							int ih = oh * c->sh + base;
							dst[oh - h0] = (ih >= 0 && ih < h) ? src[ih]
							                                   : 0.0f;
						}
					}
					continue;
				}
				for (int oh = h0; oh < h1; oh++, dst += wo) {
					int ih = oh * c->sh - c->ph + i * c->dh;
					if (ih < 0 || ih >= h) {
						memset(dst, 0, (size_t)wo * sizeof *dst);
						continue;
					}
					const float *src = x + (size_t)ci * ldx + (size_t)ih * w;
					if (c->sw == 1) {
						/* Output ow reads input ow + off_w: zero, copy, zero. */
						int lo = off_w < 0 ? -off_w : 0;
						if (lo > wo)
							lo = wo;
						int hi = w - off_w;
						if (hi > wo)
							hi = wo;
						if (hi < lo)
							hi = lo;
						if (lo)
							memset(dst, 0, (size_t)lo * sizeof *dst);
						if (hi > lo)
							memcpy(dst + lo, src + lo + off_w,
							       (size_t)(hi - lo) * sizeof *dst);
						if (wo > hi)
							memset(dst + hi, 0,
							       (size_t)(wo - hi) * sizeof *dst);
					} else {
						for (int ow = 0; ow < wo; ow++) {
							int iw = ow * c->sw + off_w;
							dst[ow] = (iw >= 0 && iw < w) ? src[iw]
							                              : 0.0f;
						}
					}
				}
			}
		}
	}
}

static bool is_pointwise(const struct nn_conv *c)
{
	return c->kh == 1 && c->kw == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0;
}

/* The row tiles of a convolution: each im2col's its own rows into its own column matrix and
 * writes its own output rows, so the tiles are parts of a team (the same tiles, hence the
 * same products and bits, with or without one). */
struct conv_tiles {
	const struct nn_conv *c;
	const float *x;
	int h, w, h0, h1, wo, rows;
	size_t ldx, ldy;
	float *y;
};

/* The column matrix of one tile, groups of input channels as parts of a team; in bf16 mode
 * (col16) each group is built in floats in its thread's workspace and rounded into place,
 * so that the product reads it as it is. */
struct cols {
	const struct conv_tiles *t;
	int r0, r1, group;
	float *col;
	uint16_t *col16;
};

static void cols_part(void *arg, int part, struct nn_ws *ws)
{
	const struct cols *a = arg;
	const struct conv_tiles *t = a->t;
	int c0, c1;
	part_channels(part, a->group, 0, t->c->cin, &c0, &c1);
	size_t row0 = (size_t)c0 * t->c->kh * t->c->kw, n = (size_t)(a->r1 - a->r0) * t->wo;
	if (!a->col16) {
		im2col(t->c, t->x, t->h, t->w, t->ldx, a->r0, a->r1, t->wo, c0, c1,
		       a->col + row0 * n);
		return;
	}
	size_t len = (size_t)(c1 - c0) * t->c->kh * t->c->kw * n;
	float *tmp = nn_ws_floats(ws, len);
	if (!tmp)
		return;
	im2col(t->c, t->x, t->h, t->w, t->ldx, a->r0, a->r1, t->wo, c0, c1, tmp);
	nn_bf16_convert(tmp, len, a->col16 + row0 * n);
}

static void conv_tile(void *arg, int part, struct nn_ws *ws)
{
	const struct conv_tiles *a = arg;
	const struct nn_conv *c = a->c;
	int kdim = c->cin * c->kh * c->kw;
	int r0 = a->h0 + part * a->rows;
	int r1 = r0 + a->rows < a->h1 ? r0 + a->rows : a->h1;
	int n = (r1 - r0) * a->wo;
	struct cols k = {.t = a, .r0 = r0, .r1 = r1};
	if (ops_precision == NN_PRECISION_BF16)
		k.col16 = ws_bf16(ws, (size_t)kdim * n);
	else
		k.col = nn_ws_floats(ws, (size_t)kdim * n);
	if (!k.col && !k.col16)
		return;
	k.group = channel_group(c->cin, (size_t)c->kh * c->kw * n);
	channel_parts(ws, c->cin, k.group, cols_part, &k); /* ws: the bf16 groups' floats */
	gemm_ops(false, false, c->cout, n, kdim, 1.0f, c->w, kdim,
	         k.col16 ? (const void *)k.col16 : k.col, n, 1.0f,
	         a->y + (size_t)(r0 - a->h0) * a->wo, (int)a->ldy, k.col16 ? NN_BF16_B : 0);
}

void nn_conv2d_rows(struct nn_ws *ws, const struct nn_conv *c, const float *x, int h, int w,
                    size_t ldx, int h0, int h1, int wo, float *y, size_t ldy)
{
	int kdim = c->cin * c->kh * c->kw;
	size_t n_all = (size_t)(h1 - h0) * wo;
	nn_fill_channels(y, c->cout, c->b, n_all, ldy);
	if (is_pointwise(c) && wo == w) {
		/* No im2col: the input rows are the columns. */
		nn_gemm(false, false, c->cout, (int)n_all, kdim, 1.0f, c->w, kdim,
		        x + (size_t)h0 * w, (int)ldx, 1.0f, y, (int)ldy);
		return;
	}
	size_t rows = NN_OPS_TILE_FLOATS / ((size_t)kdim * wo);
	if (rows < 1)
		rows = 1;
	if (rows > (size_t)(h1 - h0))
		rows = (size_t)(h1 - h0);
	struct conv_tiles a = {.c = c,
	                       .x = x,
	                       .h = h,
	                       .w = w,
	                       .ldx = ldx,
	                       .h0 = h0,
	                       .h1 = h1,
	                       .wo = wo,
	                       .rows = (int)rows,
	                       .y = y,
	                       .ldy = ldy};
	tile_parts(ws, (int)((size_t)(h1 - h0 + (int)rows - 1) / rows), c->cout, (int)rows * wo,
	           kdim, conv_tile, &a);
}

void nn_conv2d(struct nn_ws *ws, const struct nn_conv *c, const float *x, int h, int w, size_t ldx,
               float *y, int ho, int wo, size_t ldy)
{
	nn_conv2d_rows(ws, c, x, h, w, ldx, 0, ho, wo, y, ldy);
}

/* The overlap-add of nn_convtr_h_rows for one tile of input rows: output channels are
 * disjoint, each summed in the same order wherever it runs, so groups of channels are
 * parts of a team. */
struct scatter {
	const float *p;
	float *y;
	size_t plane;
	int cout, k, s, crop, ih0, r0, r1, w, hout, group;
};

static void scatter_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct scatter *a = arg;
	int k = a->k, w = a->w, n = (a->r1 - a->r0) * w;
	int c0, c1;
	part_channels(part, a->group, 0, a->cout, &c0, &c1);
	for (int co = c0; co < c1; co++) {
		for (int i = 0; i < k; i++) {
			const float *src = a->p + (size_t)(co * k + i) * n;
			for (int r = a->r0; r < a->r1; r++) {
				int oh = (a->ih0 + r) * a->s + i - a->crop;
				if (oh < 0 || oh >= a->hout)
					continue;
				float *dst = a->y + (size_t)co * a->plane + (size_t)oh * w;
				const float *sr = src + (size_t)(r - a->r0) * w;
				for (int j = 0; j < w; j++)
					dst[j] += sr[j];
			}
		}
	}
}

void nn_convtr_h_rows(struct nn_ws *ws, const float *wt, int cin, int cout, int k, int s, int crop,
                      const float *x, size_t ldx, int ih0, int nrows, int w, float *y, int hout)
{
	size_t plane = (size_t)hout * w;
	int m = cout * k;
	size_t rows = NN_OPS_TILE_FLOATS / ((size_t)m * w);
	if (rows < 1)
		rows = 1;
	if (rows > (size_t)nrows)
		rows = (size_t)nrows;
	size_t mark = nn_ws_mark(ws);
	float *p = nn_ws_floats(ws, (size_t)m * rows * w);
	if (!p)
		return;
	for (int r0 = 0; r0 < nrows; r0 += (int)rows) {
		int r1 = r0 + (int)rows < nrows ? r0 + (int)rows : nrows;
		int n = (r1 - r0) * w;
		/* p (cout*k, n) = wt^T (cout*k, cin) x[:, r0:r1, :] (cin, n). */
		nn_gemm(true, false, m, n, cin, 1.0f, wt, m, x + (size_t)r0 * w, (int)ldx, 0.0f, p,
		        n);
		struct scatter a = {.p = p,
		                    .y = y,
		                    .plane = plane,
		                    .cout = cout,
		                    .k = k,
		                    .s = s,
		                    .crop = crop,
		                    .ih0 = ih0,
		                    .r0 = r0,
		                    .r1 = r1,
		                    .w = w,
		                    .hout = hout,
		                    .group = channel_group(cout, (size_t)k * n)};
		channel_parts(NULL, cout, a.group, scatter_part, &a);
	}
	nn_ws_release(ws, mark);
}

void nn_convtr_h(struct nn_ws *ws, const float *wt, const float *b, int cin, int cout, int k, int s,
                 int crop, const float *x, int h, int w, float *y, int hout)
{
	size_t plane = (size_t)hout * w;
	nn_fill_channels(y, cout, b, plane, plane);
	nn_convtr_h_rows(ws, wt, cin, cout, k, s, crop, x, (size_t)h * w, 0, h, w, y, hout);
}

/* Elementwise kernels: plain loops over independent lanes, cloned per CPU (SFA_CLONES,
 * util/simd.h). */

enum { LANES = 16 };
_Static_assert(sizeof(sfa_f32x16) == LANES * sizeof(float), "a vector holds LANES floats");

/* exp(x) for float, within 2 ulp; flushes to 0 below -87.3 and saturates at 2.4e38 from
 * 88.376 up (so that 2^n, n in [-126, 127], is one normal float: a single scaling).
 * Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a degree-6 polynomial. */
static inline float exp_f(float x)
{
	x = x < -87.33654f ? -87.33654f : x;
	x = x > 88.37626f ? 88.37626f : x;
	float fn = x * 1.44269504f + 12582912.0f; /* round to nearest via the 1.5*2^23 trick */
	fn -= 12582912.0f;
	float r = x - fn * 0.693359375f;
	r = r - fn * -2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r;
	p = p + 1.0f;
	union {
		uint32_t u;
		float f;
	} s = {.u = (uint32_t)((int)fn + 127) << 23};
	return p * s.f;
}

static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* tanh(x) within a few ulp: Cephes' odd polynomial below |x| = 0.625, 1 - 2/(e^2|x| + 1)
 * beyond (exp_f saturates, giving +-1 for large |x|); both are computed and one chosen,
 * so that the loop vectorises. */
static inline float tanh_f(float x)
{
	float z = x < 0 ? -x : x, z2 = x * x;
	float p = -5.70498872745e-3f;
	p = p * z2 + 2.06390887954e-2f;
	p = p * z2 + -5.37397155531e-2f;
	p = p * z2 + 1.33314422036e-1f;
	p = p * z2 + -3.33332819422e-1f;
	float near0 = x + x * z2 * p;
	float far = 1.0f - 2.0f / (exp_f(2.0f * z) + 1.0f);
	return z < 0.625f ? near0 : (x < 0 ? -far : far);
}

SFA_CLONES void nn_lstm_cell(const float *gates, float *c, float *h, int n)
{
	for (int i = 0; i < n; i++) {
		float ig = sigmoid_f(gates[i]), fg = sigmoid_f(gates[n + i]);
		float gg = tanh_f(gates[2 * n + i]), og = sigmoid_f(gates[3 * n + i]);
		c[i] = fg * c[i] + ig * gg;
		h[i] = og * tanh_f(c[i]);
	}
}

/* GELU(x) = x Phi(x) = x/2 (1 + erf(x/sqrt 2)), the exact (erf) form, evaluated as
 * x/2 erfc(-x/sqrt 2) so that negative x do not lose precision to 1 + erf cancelling.
 * erfc(z), z >= 0, is t exp(-z^2 + P(t)) with t = 1/(1 + z/2) and P the Chebyshev fit of
 * Numerical Recipes (relative error < 1.2e-7 for every z). Rounding z^2 moves the result
 * by at most z^2 * 6e-8 relative, half what rounding x/sqrt 2 to float already does, so
 * the result keeps the precision its argument has, down into the far negative tail.
 * Vectorised, unlike libm's erfcf, which cost 6% of a forward pass. (PyTorch's own CPU
 * GELU uses a 1.5e-7-absolute erf approximation; this is closer to exact.) */
static inline float gelu_f(float x)
{
	float y = x * -0.70710678118654752f;
	float z = y < 0 ? -y : y;
	float t = 1.0f / (1.0f + 0.5f * z);
	float p = 0.17087277f;
	p = p * t + -0.82215223f;
	p = p * t + 1.48851587f;
	p = p * t + -1.13520398f;
	p = p * t + 0.27886807f;
	p = p * t + -0.18628806f;
	p = p * t + 0.09678418f;
	p = p * t + 0.37409196f;
	p = p * t + 1.00002368f;
	p = p * t + -1.26551223f;
	float e = t * exp_f(p - z * z);
	float erfc = y >= 0 ? e : 2.0f - e;
	return 0.5f * x * erfc;
}

SFA_CLONES static void gelu_run(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = gelu_f(x[i]);
}

/* A stretch of whole-tensor elementwise work (x, its other operand src, the constants). */
struct span {
	float *x;
	const float *src;
	size_t n;
	float sc, sh;
};

static void gelu_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct span *a = arg;
	size_t i0 = (size_t)part * SPAN_FLOATS;
	gelu_run(a->x + i0, a->n - i0 < SPAN_FLOATS ? a->n - i0 : SPAN_FLOATS);
}

void nn_gelu(float *x, size_t n)
{
	struct span a = {.x = x, .n = n};
	nn_team_parts(NULL, (int)((n + SPAN_FLOATS - 1) / SPAN_FLOATS), gelu_part, &a);
}

SFA_CLONES static void affine(float *p, size_t n, float sc, float sh)
{
	for (size_t i = 0; i < n; i++)
		p[i] = p[i] * sc + sh;
}

SFA_CLONES static void add_run(float *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += src[i];
}

static void add_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct span *a = arg;
	size_t i0 = (size_t)part * SPAN_FLOATS;
	add_run(a->x + i0, a->src + i0, a->n - i0 < SPAN_FLOATS ? a->n - i0 : SPAN_FLOATS);
}

void nn_add(float *dst, const float *src, size_t n)
{
	struct span a = {.x = dst, .src = src, .n = n};
	nn_team_parts(NULL, (int)((n + SPAN_FLOATS - 1) / SPAN_FLOATS), add_part, &a);
}

static void affine_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct span *a = arg;
	size_t i0 = (size_t)part * SPAN_FLOATS;
	affine(a->x + i0, a->n - i0 < SPAN_FLOATS ? a->n - i0 : SPAN_FLOATS, a->sc, a->sh);
}

void nn_affine(float *x, size_t n, float sc, float sh)
{
	struct span a = {.x = x, .n = n, .sc = sc, .sh = sh};
	nn_team_parts(NULL, (int)((n + SPAN_FLOATS - 1) / SPAN_FLOATS), affine_part, &a);
}

struct copy_ch {
	float *dst;
	const float *src;
	size_t n, ldd, lds;
	int group, n_ch;
};

static void copy_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct copy_ch *a = arg;
	int c0, c1;
	part_channels(part, a->group, 0, a->n_ch, &c0, &c1);
	for (int c = c0; c < c1; c++)
		memcpy(a->dst + (size_t)c * a->ldd, a->src + (size_t)c * a->lds,
		       a->n * sizeof(float));
}

void nn_copy_channels(float *dst, size_t ldd, const float *src, size_t lds, int n_ch, size_t n)
{
	struct copy_ch a = {.dst = dst, .src = src, .n = n, .ldd = ldd, .lds = lds, .n_ch = n_ch};
	a.group = channel_group(n_ch, n);
	channel_parts(NULL, n_ch, a.group, copy_part, &a);
}

SFA_CLONES void nn_glu(const float *a, const float *g, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] * sigmoid_f(g[i]);
}

struct glu_ch {
	const float *x;
	float *out;
	size_t n, ldo;
	int ch, group;
};

static void glu_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct glu_ch *a = arg;
	int c0, c1;
	part_channels(part, a->group, 0, a->ch, &c0, &c1);
	for (int c = c0; c < c1; c++)
		nn_glu(a->x + (size_t)c * a->n, a->x + (size_t)(c + a->ch) * a->n,
		       a->out + (size_t)c * a->ldo, a->n);
}

void nn_glu_channels(const float *x, int ch, size_t n, float *out, size_t ldo)
{
	struct glu_ch a = {.x = x, .out = out, .n = n, .ldo = ldo, .ch = ch};
	a.group = channel_group(ch, 2 * n);
	channel_parts(NULL, ch, a.group, glu_part, &a);
}

SFA_CLONES static void glu_scale_add(const float *a, const float *g, float scale, float *dst,
                                     size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] += scale * (a[i] * sigmoid_f(g[i]));
}

struct glu_add {
	const float *z, *scale;
	float *x;
	size_t n, ldx;
	int ch, group;
};

static void glu_add_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct glu_add *a = arg;
	int c0, c1;
	part_channels(part, a->group, 0, a->ch, &c0, &c1);
	for (int c = c0; c < c1; c++)
		glu_scale_add(a->z + (size_t)c * a->n, a->z + (size_t)(c + a->ch) * a->n,
		              a->scale[c], a->x + (size_t)c * a->ldx, a->n);
}

void nn_glu_scale_add_channels(const float *z, int ch, size_t n, const float *scale, float *x,
                               size_t ldx)
{
	struct glu_add a = {.z = z, .scale = scale, .x = x, .n = n, .ldx = ldx, .ch = ch};
	a.group = channel_group(ch, 3 * n);
	channel_parts(NULL, ch, a.group, glu_add_part, &a);
}

/* Sum and sum of squared deviations from `mean` of n floats: four chains of float lanes
 * (vectorised; four, so that the adds do not wait on one another) over blocks of SUM_BLOCK
 * values, each block's lanes then added in double, pairwise, so that rounding does not
 * grow with n (rows reach 10^5 values in the time branch). */
enum { SUM_BLOCK = 1024 };

/* The one blocked loop behind both: with squares, of (p - mean)^2, else of p. Inlined
 * into each clone with squares constant, so each keeps its own vectorised loop. Written
 * with GCC's vector extension: GCC 12 vectorised the same loop on float[LANES] poorly
 * (about 5x slower). */
static inline __attribute__((always_inline)) void add_lanes(sfa_f32x16 *acc, const float *p,
                                                            bool squares, float mean)
{
	sfa_f32x16 v;
	memcpy(&v, p, sizeof v);
	if (squares)
		v = (v - mean) * (v - mean);
	*acc += v;
}

static inline __attribute__((always_inline)) double blocked_sum(const float *p, size_t n,
                                                                bool squares, float mean)
{
	double s = 0.0;
	size_t i = 0;
	while (i + LANES <= n) {
		sfa_f32x16 acc[4] = {{0}};
		size_t end = i + SUM_BLOCK < n ? i + SUM_BLOCK : n;
		for (; i + 4 * LANES <= end; i += 4 * LANES)
			for (int c = 0; c < 4; c++)
				add_lanes(&acc[c], p + i + (size_t)c * LANES, squares, mean);
		for (; i + LANES <= end; i += LANES)
			add_lanes(&acc[0], p + i, squares, mean);
		sfa_f32x16 a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
		double d[LANES];
		for (int j = 0; j < LANES; j++)
			d[j] = a[j];
		for (int w = LANES / 2; w > 0; w /= 2)
			for (int j = 0; j < w; j++)
				d[j] += d[j + w];
		s += d[0];
	}
	for (; i < n; i++) {
		if (squares) {
			double d = (double)p[i] - mean;
			s += d * d;
		} else {
			s += p[i];
		}
	}
	return s;
}

SFA_CLONES double nn_sum(const float *p, size_t n) { return blocked_sum(p, n, false, 0.0f); }

SFA_CLONES double nn_ssd(const float *p, size_t n, float mean)
{
	return blocked_sum(p, n, true, mean);
}

/* The affine step of a GroupNorm, groups of channels as parts of a team. */
struct gn_apply {
	float *x;
	size_t n, ld;
	int n_c, group;
	double mean, inv;
	const float *gamma, *beta;
};

static void gn_apply_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct gn_apply *a = arg;
	int c0, c1;
	part_channels(part, a->group, 0, a->n_c, &c0, &c1);
	for (int c = c0; c < c1; c++) {
		double g = a->gamma ? a->gamma[c] : 1.0;
		affine(a->x + (size_t)c * a->ld, a->n, (float)(a->inv * g),
		       (float)((a->beta ? a->beta[c] : 0.0) - a->mean * a->inv * g));
	}
}

void nn_groupnorm_apply(float *x, int n_c, size_t n, size_t ld, double mean, double var,
                        const float *gamma, const float *beta, float eps)
{
	struct gn_apply a = {.x = x,
	                     .n = n,
	                     .ld = ld,
	                     .n_c = n_c,
	                     .mean = mean,
	                     .inv = 1.0 / sqrt(var + eps),
	                     .gamma = gamma,
	                     .beta = beta};
	a.group = channel_group(n_c, n);
	channel_parts(NULL, n_c, a.group, gn_apply_part, &a);
}

/* One slice of nn_groupnorm1_slices in three passes over its channels (sums, squared
 * deviations, then nn_groupnorm_apply), each pass shared by a team in groups of channels.
 * The per-channel sums are kept, a block of channels at a time, and added in channel order
 * on the calling thread: the same additions as one thread making them. */
enum { GN1_BLOCK = 256 };

struct gn1 {
	float *x; /* the slice's channel 0 */
	size_t ld;
	int n_t, c0, c1, group, pass;
	float mean;
	double out[GN1_BLOCK]; /* the block's per-channel values */
};

static void gn1_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	struct gn1 *a = arg;
	int c0, c1;
	part_channels(part, a->group, a->c0, a->c1, &c0, &c1);
	for (int c = c0; c < c1; c++) {
		float *row = a->x + (size_t)c * a->ld;
		a->out[c - a->c0] = a->pass ? nn_ssd(row, (size_t)a->n_t, a->mean)
		                            : nn_sum(row, (size_t)a->n_t);
	}
}

/* Runs one pass over channels [0, n_c); returns the sum of the per-channel values in
 * channel order. */
static double gn1_pass(struct gn1 *a, int pass, int n_c)
{
	double acc = 0.0;
	a->pass = pass;
	for (int b0 = 0; b0 < n_c; b0 += GN1_BLOCK) {
		a->c0 = b0;
		a->c1 = b0 + GN1_BLOCK < n_c ? b0 + GN1_BLOCK : n_c;
		channel_parts(NULL, a->c1 - b0, a->group, gn1_part, a);
		for (int c = b0; c < a->c1; c++)
			acc += a->out[c - b0];
	}
	return acc;
}

void nn_groupnorm1_slices(float *x, int n_c, int rows, int n_t, size_t ld, const float *gamma,
                          const float *beta, float eps)
{
	int group = channel_group(n_c, (size_t)n_t);
	for (int r = 0; r < rows; r++) {
		struct gn1 a = {.x = x + (size_t)r * n_t,
		                .ld = ld,
		                .n_t = n_t,
		                .group = group < GN1_BLOCK ? group : GN1_BLOCK};
		double cnt = (double)n_c * n_t;
		double mean = gn1_pass(&a, 0, n_c) / cnt;
		a.mean = (float)mean;
		double ss = gn1_pass(&a, 1, n_c);
		nn_groupnorm_apply(a.x, n_c, (size_t)n_t, ld, mean, ss / cnt, gamma, beta, eps);
	}
}

SFA_CLONES void nn_layernorm(const float *x, float *out, int n, int d, const float *gamma,
                             const float *beta, float eps)
{
	for (int i = 0; i < n; i++) {
		const float *p = x + (size_t)i * d;
		float *o = out + (size_t)i * d;
		double mean = nn_sum(p, (size_t)d) / d;
		double var = nn_ssd(p, (size_t)d, (float)mean) / d;
		float fm = (float)mean, fi = (float)(1.0 / sqrt(var + eps));
		for (int j = 0; j < d; j++)
			o[j] = (p[j] - fm) * fi * gamma[j] + beta[j];
	}
}

/* exp(p[k] - max) over one row in place; returns the row's sum. Inlined into each clone
 * below so that it is vectorised for the clone's target. */
static inline __attribute__((always_inline)) double softmax_exp_row(float *p, int d)
{
	/* The maximum in vector lanes, written with GCC's vector extension: GCC 12 leaves
	 * the same loop on float[LANES] scalar (its max of floats does not vectorise). */
	sfa_f32x16 mx;
	for (int j = 0; j < LANES; j++)
		mx[j] = p[0];
	int k = 0;
	for (; k + LANES <= d; k += LANES) {
		sfa_f32x16 v;
		memcpy(&v, p + k, sizeof v);
		sfa_i32x16 gt = v > mx;
		mx = (sfa_f32x16)(((sfa_i32x16)v & gt) | ((sfa_i32x16)mx & ~gt));
	}
	float m = mx[0];
	for (int j = 1; j < LANES; j++)
		m = mx[j] > m ? mx[j] : m;
	for (; k < d; k++)
		m = p[k] > m ? p[k] : m;
	float acc[LANES] = {0};
	k = 0;
	for (; k + LANES <= d; k += LANES)
		for (int j = 0; j < LANES; j++) {
			float e = exp_f(p[k + j] - m);
			p[k + j] = e;
			acc[j] += e;
		}
	double sum = 0.0;
	for (int j = 0; j < LANES; j++)
		sum += acc[j];
	for (; k < d; k++) {
		p[k] = exp_f(p[k] - m);
		sum += p[k];
	}
	return sum;
}

SFA_CLONES void nn_softmax_rows(float *x, int n, int d, int ld)
{
	for (int i = 0; i < n; i++) {
		float *p = x + (size_t)i * ld;
		float inv = (float)(1.0 / softmax_exp_row(p, d));
		for (int k = 0; k < d; k++)
			p[k] *= inv;
	}
}

enum { ATTN_QBLOCK = 256 };

/* exp(x - max) over each row in place; the row sums go to sums[] (no normalisation:
 * the caller scales the much narrower output rows instead). With x16, each row is also
 * rounded to bf16 there (same stride) while it is in cache. */
SFA_CLONES static void softmax_unnormalised(float *x, int n, int d, int ld, float *sums,
                                            uint16_t *x16)
{
	for (int i = 0; i < n; i++) {
		sums[i] = (float)softmax_exp_row(x + (size_t)i * ld, d);
		if (x16)
			nn_bf16_convert(x + (size_t)i * ld, (size_t)d, x16 + (size_t)i * ld);
	}
}

/* One (head, block of queries) of nn_attention: a part of a team; parts write disjoint
 * output. In bf16 mode the queries, keys and values are rounded once, head by head
 * (q16, k16, v16: head h's rows of hd at h * rows * hd), and each block's weights as the
 * softmax leaves them, instead of by every product that packs them (the keys and values
 * of a head feed every block of its queries). */
struct attn {
	const float *q, *k, *v;
	uint16_t *q16, *k16, *v16;
	float *out;
	int ldq, ldk, ldv, ldo, nq, nk, hd, n_qb;
	float scale;
};

enum { ATTN_ROWS = 64 }; /* rows per part of rounding q, k or v */

/* x (n rows of heads * hd, stride ld) to bf16, head-major (head h's rows at h * n * hd), in
 * parts of ATTN_ROWS rows. */
struct heads16 {
	const float *x;
	int ld, n, heads, hd;
	uint16_t *out;
};

static void heads16_part(void *arg, int part, struct nn_ws *ws)
{
	(void)ws;
	const struct heads16 *a = arg;
	int r0 = part * ATTN_ROWS, r1 = r0 + ATTN_ROWS < a->n ? r0 + ATTN_ROWS : a->n;
	for (int h = 0; h < a->heads; h++)
		for (int r = r0; r < r1; r++)
			nn_bf16_convert(a->x + (size_t)r * a->ld + (size_t)h * a->hd, (size_t)a->hd,
			                a->out + ((size_t)h * a->n + r) * a->hd);
}

/* x as struct heads16 says, into n * heads * hd bfloat16 from ws; NULL without memory. */
static uint16_t *heads_to_bf16(struct nn_ws *ws, const float *x, int ld, int n, int heads, int hd)
{
	struct heads16 a = {.x = x, .ld = ld, .n = n, .heads = heads, .hd = hd};
	if ((a.out = ws_bf16(ws, (size_t)n * heads * hd)))
		nn_team_parts(ws, (n + ATTN_ROWS - 1) / ATTN_ROWS, heads16_part, &a);
	return a.out;
}

static void attn_part(void *arg, int part, struct nn_ws *ws)
{
	const struct attn *a = arg;
	int h = part / a->n_qb, q0 = (part % a->n_qb) * ATTN_QBLOCK, hd = a->hd, nk = a->nk;
	int nb = a->nq - q0 < ATTN_QBLOCK ? a->nq - q0 : ATTN_QBLOCK;
	float *s = nn_ws_floats(ws, (size_t)ATTN_QBLOCK * nk);
	float *sums = nn_ws_floats(ws, ATTN_QBLOCK);
	uint16_t *s16 = a->q16 ? ws_bf16(ws, (size_t)ATTN_QBLOCK * nk) : NULL;
	if (!s || !sums || (a->q16 && !s16))
		return;
	float *o = a->out + (size_t)q0 * a->ldo + h * hd;
	/* this head's queries of the block, keys and values: floats, or the rounded copies */
	bool bf = a->q16;
	const void *q = bf ? (const void *)(a->q16 + ((size_t)h * a->nq + q0) * hd)
	                   : (const void *)(a->q + (size_t)q0 * a->ldq + h * hd);
	const void *k = bf ? (const void *)(a->k16 + (size_t)h * nk * hd)
	                   : (const void *)(a->k + h * hd);
	const void *v = bf ? (const void *)(a->v16 + (size_t)h * nk * hd)
	                   : (const void *)(a->v + h * hd);
	unsigned ops = bf ? NN_BF16_A | NN_BF16_B : 0;
	gemm_ops(false, true, nb, nk, hd, a->scale, q, bf ? hd : a->ldq, k, bf ? hd : a->ldk, 0.0f,
	         s, nk, ops);
	softmax_unnormalised(s, nb, nk, nk, sums, s16);
	gemm_ops(false, false, nb, hd, nk, 1.0f, bf ? (const void *)s16 : s, nk, v,
	         bf ? hd : a->ldv, 0.0f, o, a->ldo, ops);
	for (int i = 0; i < nb; i++) {
		float inv = 1.0f / sums[i];
		for (int e = 0; e < hd; e++)
			o[(size_t)i * a->ldo + e] *= inv;
	}
}

void nn_attention(struct nn_ws *ws, const float *q, int ldq, int nq, const float *k, int ldk,
                  const float *v, int ldv, int nk, int dim, int heads, float *out, int ldo)
{
	int hd = dim / heads;
	struct attn a = {.q = q,
	                 .k = k,
	                 .v = v,
	                 .out = out,
	                 .ldq = ldq,
	                 .ldk = ldk,
	                 .ldv = ldv,
	                 .ldo = ldo,
	                 .nq = nq,
	                 .nk = nk,
	                 .hd = hd,
	                 .n_qb = (nq + ATTN_QBLOCK - 1) / ATTN_QBLOCK,
	                 .scale = 1.0f / sqrtf((float)hd)};
	size_t mark = nn_ws_mark(ws);
	bool ok = true;
	if (ops_precision == NN_PRECISION_BF16)
		ok = (a.q16 = heads_to_bf16(ws, q, ldq, nq, heads, hd)) &&
		     (a.k16 = heads_to_bf16(ws, k, ldk, nk, heads, hd)) &&
		     (a.v16 = heads_to_bf16(ws, v, ldv, nk, heads, hd)); /* if not, ws failed */
	if (ok)
		nn_team_parts(ws, heads * a.n_qb, attn_part, &a);
	nn_ws_release(ws, mark);
}

enum { FEW_COLS = 64, FEW_ROWS = 4 }; /* a block of w's columns; rows of x per pass */

void nn_few_rows_pack(const float *w, int n, int k, int ldw, float *packed)
{
	/* packed[(block * k + p) * FEW_COLS + c] = w[block * FEW_COLS + c][p], 0 past n */
	for (int c0 = 0; c0 < n; c0 += FEW_COLS) {
		float *blk = packed + (size_t)(c0 / FEW_COLS) * k * FEW_COLS;
		for (int c = 0; c < FEW_COLS; c++) {
			const float *row = c0 + c < n ? w + (size_t)(c0 + c) * ldw : NULL;
			for (int p = 0; p < k; p++)
				blk[(size_t)p * FEW_COLS + c] = row ? row[p] : 0.0f;
		}
	}
}

/* nr (<= FEW_ROWS, a constant where inlined) rows of x against one packed block of
 * FEW_COLS columns: the sums stay in registers, the block is read once. */
static inline __attribute__((always_inline)) void few_rows_block(int nr, int k, const float *x,
                                                                 int ldx, const float *blk,
                                                                 float *y, int ldy, int nc)
{
	float acc[FEW_ROWS][FEW_COLS] = {{0}};
	for (int p = 0; p < k; p++) {
		const float *wp = blk + (size_t)p * FEW_COLS;
		for (int r = 0; r < nr; r++) {
			float xv = x[(size_t)r * ldx + p];
			for (int c = 0; c < FEW_COLS; c++)
				acc[r][c] += xv * wp[c];
		}
	}
	for (int r = 0; r < nr; r++)
		for (int c = 0; c < nc; c++)
			y[(size_t)r * ldy + c] += acc[r][c];
}

SFA_CLONES void nn_gemm_few_rows(int m, int n, int k, const float *x, int ldx, const float *packed,
                                 float *y, int ldy)
{
	ops_flops += 2ull * (unsigned long long)m * (unsigned long long)n * (unsigned long long)k;
	for (int c0 = 0; c0 < n; c0 += FEW_COLS) {
		const float *blk = packed + (size_t)(c0 / FEW_COLS) * k * FEW_COLS;
		int nc = n - c0 < FEW_COLS ? n - c0 : FEW_COLS;
		for (int r0 = 0; r0 < m; r0 += FEW_ROWS) {
			const float *xr = x + (size_t)r0 * ldx;
			float *yr = y + (size_t)r0 * ldy + c0;
			switch (m - r0 < FEW_ROWS ? m - r0 : FEW_ROWS) {
			case 1:
				few_rows_block(1, k, xr, ldx, blk, yr, ldy, nc);
				break;
			case 2:
				few_rows_block(2, k, xr, ldx, blk, yr, ldy, nc);
				break;
			case 3:
				few_rows_block(3, k, xr, ldx, blk, yr, ldy, nc);
				break;
			default:
				few_rows_block(4, k, xr, ldx, blk, yr, ldy, nc);
				break;
			}
		}
	}
}

void nn_linear(const float *x, int n, int din, const float *w, const float *b, int dout, float *y,
               int ldy)
{
	for (int i = 0; i < n; i++) {
		float *row = y + (size_t)i * ldy;
		for (int j = 0; j < dout; j++)
			row[j] = b ? b[j] : 0.0f;
	}
	nn_gemm(false, true, n, dout, din, 1.0f, x, din, w, din, 1.0f, y, ldy);
}

/* One layer of nn_dconv_long. The (2ch, tile) expansion is computed per tile twice: first
 * for its statistics (mean and squared deviations per tile, combined in tile order with
 * Chan's formula), then for GroupNorm - GLU - LayerScale - add. The tiles of each pass are
 * parts of a team; each part writes only its own tile's statistics or samples, so the
 * result does not depend on who ran what. */
struct dconv_long {
	const struct nn_dconv_w *w;
	float *x;
	const float *h;
	int ch, hid, t, tile, pass;
	double *tmean, *tm2; /* per tile, pass 0 */
	double mean, var;    /* pass 1 */
	float eps;
};

static void dconv_long_part(void *arg, int part, struct nn_ws *ws)
{
	const struct dconv_long *a = arg;
	const struct nn_dconv_w *w = a->w;
	int ch = a->ch, t0 = part * a->tile;
	int nt = a->t - t0 < a->tile ? a->t - t0 : a->tile;
	size_t nz = (size_t)2 * ch * nt;
	float *z = nn_ws_floats(ws, nz);
	if (!z)
		return;
	nn_fill_channels(z, 2 * ch, w->c2b, (size_t)nt, (size_t)nt);
	nn_gemm(false, false, 2 * ch, nt, a->hid, 1.0f, w->c2w, a->hid, a->h + t0, a->t, 1.0f, z,
	        nt);
	if (a->pass == 0) {
		double tm = nn_sum(z, nz) / (double)nz;
		a->tmean[part] = tm;
		a->tm2[part] = nn_ssd(z, nz, (float)tm);
		return;
	}
	nn_groupnorm_apply(z, 2 * ch, (size_t)nt, (size_t)nt, a->mean, a->var, w->g2w, w->g2b,
	                   a->eps);
	nn_glu_scale_add_channels(z, ch, (size_t)nt, w->scale, a->x + t0, (size_t)a->t);
}

static void dconv_long_layer(struct nn_ws *ws, const struct nn_dconv_w *w, float *x, int ch,
                             int hid, int t, int dil, float *h, int tile, float eps)
{
	/* (ch, t, 1) orientation: the conv runs along h. */
	struct nn_conv c1 = {.w = w->c1w,
	                     .b = w->c1b,
	                     .cin = ch,
	                     .cout = hid,
	                     .kh = 3,
	                     .kw = 1,
	                     .sh = 1,
	                     .sw = 1,
	                     .ph = dil,
	                     .pw = 0,
	                     .dh = dil,
	                     .dw = 1};
	nn_conv2d(ws, &c1, x, t, 1, (size_t)t, h, t, 1, (size_t)t);
	nn_groupnorm1_slices(h, hid, 1, t, (size_t)t, w->g1w, w->g1b, eps);
	nn_gelu(h, (size_t)hid * t);
	int n_tiles = (t + tile - 1) / tile;
	size_t mark = nn_ws_mark(ws);
	double *stats = nn_ws_bytes(ws, (size_t)n_tiles * 2 * sizeof *stats);
	if (!stats)
		return;
	struct dconv_long a = {.w = w,
	                       .x = x,
	                       .h = h,
	                       .ch = ch,
	                       .hid = hid,
	                       .t = t,
	                       .tile = tile,
	                       .tmean = stats,
	                       .tm2 = stats + n_tiles,
	                       .eps = eps};
	tile_parts(ws, n_tiles, 2 * ch, tile, hid, dconv_long_part, &a);
	double mean = 0.0, m2 = 0.0, cnt = 0.0;
	for (int i = 0; i < n_tiles; i++) {
		int nt = t - i * tile < tile ? t - i * tile : tile;
		double nz = 2.0 * ch * nt, dm = a.tmean[i] - mean, tot = cnt + nz;
		mean += dm * nz / tot;
		m2 += a.tm2[i] + dm * dm * cnt * nz / tot;
		cnt = tot;
	}
	a.pass = 1;
	a.mean = mean;
	a.var = m2 / cnt;
	tile_parts(ws, n_tiles, 2 * ch, tile, hid, dconv_long_part, &a);
	nn_ws_release(ws, mark);
}

enum { DCONV_LONG_TILE = 16384 };

void nn_dconv_long(struct nn_ws *ws, const struct nn_dconv_w *layers, int n, int hid, float *x,
                   int ch, int t, float eps)
{
	int tile = t < DCONV_LONG_TILE ? t : DCONV_LONG_TILE; /* no longer than the row */
	size_t mark = nn_ws_mark(ws);
	float *h = nn_ws_floats(ws, (size_t)hid * t);
	if (!h)
		return;
	for (int d = 0; d < n; d++)
		dconv_long_layer(ws, &layers[d], x, ch, hid, t, 1 << d, h, tile, eps);
	nn_ws_release(ws, mark);
}

struct dconv_rows {
	const struct nn_dconv_w *layers;
	int n_layers, hid, ch, rows, t, nf;
	float *x;
	size_t ld;
	float eps;
};

/* One tile of nf rows, every layer. */
static void dconv_rows_part(void *arg, int part, struct nn_ws *ws)
{
	const struct dconv_rows *a = arg;
	const struct nn_dconv_w *layers = a->layers;
	int hid = a->hid, ch = a->ch, t = a->t, f0 = part * a->nf;
	size_t ld = a->ld;
	float eps = a->eps;
	int nr = a->rows - f0 < a->nf ? a->rows - f0 : a->nf;
	size_t n = (size_t)nr * t;
	float *h = nn_ws_floats(ws, (size_t)hid * n);
	float *z = nn_ws_floats(ws, (size_t)2 * ch * n);
	if (!h || !z)
		return;
	float *xt = a->x + (size_t)f0 * t;
	for (int d = 0; d < a->n_layers; d++) {
		const struct nn_dconv_w *w = &layers[d];
		int dil = 1 << d;
		struct nn_conv c1 = {.w = w->c1w,
		                     .b = w->c1b,
		                     .cin = ch,
		                     .cout = hid,
		                     .kh = 1,
		                     .kw = 3,
		                     .sh = 1,
		                     .sw = 1,
		                     .ph = 0,
		                     .pw = dil,
		                     .dh = 1,
		                     .dw = dil};
		nn_conv2d(ws, &c1, xt, nr, t, ld, h, nr, t, n);
		nn_groupnorm1_slices(h, hid, nr, t, n, w->g1w, w->g1b, eps);
		nn_gelu(h, (size_t)hid * n);
		struct nn_conv c2 = {.w = w->c2w,
		                     .b = w->c2b,
		                     .cin = hid,
		                     .cout = 2 * ch,
		                     .kh = 1,
		                     .kw = 1,
		                     .sh = 1,
		                     .sw = 1,
		                     .dh = 1,
		                     .dw = 1};
		nn_conv2d(ws, &c2, h, nr, t, n, z, nr, t, n);
		nn_groupnorm1_slices(z, 2 * ch, nr, t, n, w->g2w, w->g2b, eps);
		nn_glu_scale_add_channels(z, ch, n, w->scale, xt, ld);
	}
}

void nn_dconv_rows(struct nn_ws *ws, const struct nn_dconv_w *layers, int n_layers, int hid,
                   float *x, int ch, int rows, int t, size_t ld, float eps)
{
	size_t per_row = (size_t)t * 2 * ch;
	int nf = (int)((1u << 20) / (per_row ? per_row : 1));
	if (nf < 1)
		nf = 1;
	if (nf > rows)
		nf = rows;
	struct dconv_rows a = {.layers = layers,
	                       .n_layers = n_layers,
	                       .hid = hid,
	                       .ch = ch,
	                       .rows = rows,
	                       .t = t,
	                       .nf = nf,
	                       .x = x,
	                       .ld = ld,
	                       .eps = eps};
	nn_team_parts(ws, (rows + nf - 1) / nf, dconv_rows_part, &a);
}
