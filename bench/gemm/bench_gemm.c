/* bench_gemm - GFLOP/s of the products HTDemucs spends its time in, by hand (never from
 * the tests): OpenBLAS cblas_sgemm (fp32), the engine's AVX512-BF16 kernel (nn_gemm_bf16,
 * its rounding and packing included) and, when built with oneDNN (libdnnl-dev present at
 * configure time), oneDNN's matmul primitive on bf16 inputs converted beforehand (its best
 * case: conversion not timed), single-threaded all three.
 *
 *   bench_gemm [REPEATS]
 *
 * The shapes are the largest shares of the flops of one htdemucs segment (logged from
 * nn_gemm on the full-size checkpoint): transformer linears (tb = 1), attention, convs.
 * It refuses to run where the CPU lacks AVX512-BF16 (nn_bf16_supported).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/gemm_bf16.h"
#include "nn/nn.h"
#include "nn/ops.h"

#ifdef HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const struct {
	int ta, tb, m, n, k;
} shapes[] = {
	{0, 1, 512, 512, 2048},  {0, 1, 512, 2048, 512}, {0, 1, 256, 2688, 64},
	{0, 0, 256, 64, 2688},   {0, 0, 768, 336, 3456}, {0, 0, 384, 1008, 1728},
	{0, 1, 2688, 1536, 512}, {0, 0, 96, 4704, 432},  {1, 0, 1536, 1344, 384},
	{0, 0, 96, 14563, 144},
};

#ifdef HAVE_DNNL
/* ms per product with oneDNN matmul, bf16 x bf16 -> f32; -1 if it cannot be built. */
static double dnnl_ms(dnnl_engine_t eng, dnnl_stream_t st, int ta, int tb, int m, int n, int k,
                      int reps)
{
	dnnl_memory_desc_t ad, bd, cd;
	dnnl_dims_t adims = {m, k}, bdims = {k, n}, cdims = {m, n};
	dnnl_dims_t astr = {ta ? 1 : k, ta ? m : 1}, bstr = {tb ? 1 : n, tb ? k : 1};
	dnnl_memory_desc_init_by_strides(&ad, 2, adims, dnnl_bf16, astr);
	dnnl_memory_desc_init_by_strides(&bd, 2, bdims, dnnl_bf16, bstr);
	dnnl_memory_desc_init_by_tag(&cd, 2, cdims, dnnl_f32, dnnl_ab);
	dnnl_matmul_desc_t md;
	if (dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) != dnnl_success)
		return -1;
	dnnl_primitive_desc_t pd;
	if (dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) != dnnl_success)
		return -1;
	const char *impl = NULL;
	dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
	dnnl_primitive_t p;
	dnnl_primitive_create(&p, pd);
	dnnl_memory_t am, bm, cm;
	dnnl_memory_create(&am, &ad, eng, DNNL_MEMORY_ALLOCATE);
	dnnl_memory_create(&bm, &bd, eng, DNNL_MEMORY_ALLOCATE);
	dnnl_memory_create(&cm, &cd, eng, DNNL_MEMORY_ALLOCATE);
	void *h;
	dnnl_memory_get_data_handle(am, &h);
	memset(h, 0x3c, (size_t)m * k * 2);
	dnnl_memory_get_data_handle(bm, &h);
	memset(h, 0x3c, (size_t)k * n * 2);
	dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
	dnnl_primitive_execute(p, st, 3, args);
	dnnl_stream_wait(st);
	double t0 = now_s();
	for (int r = 0; r < reps; r++)
		dnnl_primitive_execute(p, st, 3, args);
	dnnl_stream_wait(st);
	double ms = (now_s() - t0) * 1e3 / reps;
	printf("  oneDNN impl: %s\n", impl ? impl : "?");
	dnnl_memory_destroy(am);
	dnnl_memory_destroy(bm);
	dnnl_memory_destroy(cm);
	dnnl_primitive_destroy(p);
	dnnl_primitive_desc_destroy(pd);
	return ms;
}
#endif

int main(int argc, char **argv)
{
	nn_blas_pick_core(argv);
	int reps = argc > 1 ? atoi(argv[1]) : 20;
	char why[160];
	if (!nn_bf16_supported(why, sizeof why)) {
		fprintf(stderr, "bench_gemm: %s\n", why);
		return 1;
	}
	nn_ops_init();
#ifdef HAVE_DNNL
	dnnl_engine_t eng;
	dnnl_stream_t st;
	dnnl_engine_create(&eng, dnnl_cpu, 0);
	dnnl_stream_create(&st, eng, dnnl_stream_default_flags);
#endif
	printf("%-2s %-2s %6s %6s %6s  %9s %9s %9s  (GFLOP/s, 1 thread)\n", "ta", "tb", "m", "n",
	       "k", "sgemm", "bf16", "oneDNN");
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		int ta = shapes[si].ta, tb = shapes[si].tb, m = shapes[si].m, n = shapes[si].n,
		    k = shapes[si].k;
		float *a = malloc(sizeof(float) * (size_t)m * k);
		float *b = malloc(sizeof(float) * (size_t)k * n);
		float *c = malloc(sizeof(float) * (size_t)m * n);
		for (size_t i = 0; i < (size_t)m * k; i++)
			a[i] = (float)(i % 13) * 0.1f - 0.6f;
		for (size_t i = 0; i < (size_t)k * n; i++)
			b[i] = (float)(i % 7) * 0.1f - 0.3f;
		int lda = ta ? m : k, ldb = tb ? k : n;
		double flop = 2.0 * m * n * k;
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
		            tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c,
		            n);
		double t0 = now_s();
		for (int r = 0; r < reps; r++)
			cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
			            tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, lda, b, ldb,
			            0.0f, c, n);
		double s_fp32 = (now_s() - t0) / reps;
		nn_gemm_bf16(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n, 0);
		t0 = now_s();
		for (int r = 0; r < reps; r++)
			nn_gemm_bf16(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n, 0);
		double s_bf16 = (now_s() - t0) / reps;
		double g_dnnl = 0;
#ifdef HAVE_DNNL
		double ms = dnnl_ms(eng, st, ta, tb, m, n, k, reps);
		g_dnnl = ms > 0 ? flop / (ms * 1e-3) * 1e-9 : 0;
#endif
		printf("%-2d %-2d %6d %6d %6d  %9.1f %9.1f %9.1f\n", ta, tb, m, n, k,
		       flop / s_fp32 * 1e-9, flop / s_bf16 * 1e-9, g_dnnl);
		free(a);
		free(b);
		free(c);
	}
	return 0;
}
