/* gemm_amx.c - the bf16 product on Intel AMX through oneDNN's matmul (see gemm_bf16.h).
 *
 * On a CPU with AMX-BF16 (Sapphire Rapids and later) oneDNN's matmul runs the products on
 * the tile unit: 320-820 GFLOP/s a core on the engine's hot shapes against 75-83 for our
 * AVX512-BF16 kernel and 120-160 for OpenBLAS's AVX-512 sgemm (bench_gemm, one thread,
 * Xeon family 6 model 207). The operands are rounded to bf16 here, exactly as the kernel
 * of gemm_bf16.c rounds them (VCVTNE2PS2BF16: nearest-even, subnormals to zero), into the
 * calling thread's buffers; oneDNN sums in fp32 and applies alpha and beta.
 *
 * oneDNN is used only when the primitive it builds for the first product really is an AMX
 * one (its implementation name says so); anywhere else nn_gemm_amx says no and the caller
 * keeps its own kernel. Its summation order may depend on the product's shape, so a product
 * run here is never cut between threads (nn_gemm_bf16_cuttable).
 *
 * Threading: oneDNN's Debian build runs on OpenMP; each calling thread sets its OpenMP
 * thread count to 1 at its first call, as the engine's threads are the parallelism. One
 * engine for the process; a stream and buffers per thread, freed when the thread ends.
 */
#include "nn/gemm_bf16.h"

#include <cpuid.h>
#include <stdbool.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

struct amx_thread {
	dnnl_stream_t stream;
	uint16_t *a, *b; /* the operands in bf16 */
	size_t cap_a, cap_b;
};

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static pthread_key_t amx_key;
static dnnl_engine_t amx_engine;
static bool amx_ok; /* oneDNN builds AMX matmuls here */

static void amx_thread_free(void *p)
{
	struct amx_thread *t = p;
	if (!t)
		return;
	if (t->stream)
		dnnl_stream_destroy(t->stream);
	free(t->a);
	free(t->b);
	free(t);
}

/* Whether oneDNN's matmul for a bf16 product of this shape is an AMX one. */
static bool probe_amx(void)
{
	dnnl_memory_desc_t ad, bd, cd;
	dnnl_dims_t ad_dims = {64, 64}, bd_dims = {64, 64}, cd_dims = {64, 64};
	if (dnnl_memory_desc_init_by_tag(&ad, 2, ad_dims, dnnl_bf16, dnnl_ab) != dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&bd, 2, bd_dims, dnnl_bf16, dnnl_ab) != dnnl_success ||
	    dnnl_memory_desc_init_by_tag(&cd, 2, cd_dims, dnnl_f32, dnnl_ab) != dnnl_success)
		return false;
	dnnl_matmul_desc_t md;
	dnnl_primitive_desc_t pd;
	if (dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) != dnnl_success ||
	    dnnl_primitive_desc_create(&pd, &md, NULL, amx_engine, NULL) != dnnl_success)
		return false;
	const char *impl = NULL;
	bool amx = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
	                   dnnl_success &&
	           impl && strstr(impl, "amx");
	dnnl_primitive_desc_destroy(pd);
	return amx;
}

static void amx_init(void)
{
	const char *off = getenv("SFA_BF16_NO_AMX");
	if (off && *off && strcmp(off, "0") != 0)
		return;
	/* AMX-BF16: cpuid leaf 7, EDX bit 22 (whether the OS lets us use the tiles is
	 * oneDNN's to ask, and the probe below sees the result). */
	unsigned eax, ebx, ecx, edx;
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512bf16") ||
	    !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx & (1u << 22)) ||
	    pthread_key_create(&amx_key, amx_thread_free) != 0)
		return;
	if (dnnl_engine_create(&amx_engine, dnnl_cpu, 0) != dnnl_success)
		return;
	amx_ok = probe_amx(); /* builds a primitive, runs nothing: no OpenMP threads yet */
}

bool nn_gemm_bf16_cuttable(void)
{
	pthread_once(&amx_once, amx_init);
	return !amx_ok;
}

static struct amx_thread *amx_thread(void)
{
	struct amx_thread *t = pthread_getspecific(amx_key);
	if (t)
		return t;
	if (!(t = calloc(1, sizeof *t)))
		return NULL;
	omp_set_num_threads(1);
	if (dnnl_stream_create(&t->stream, amx_engine, dnnl_stream_default_flags) != dnnl_success ||
	    pthread_setspecific(amx_key, t) != 0) {
		amx_thread_free(t);
		return NULL;
	}
	return t;
}

static bool grow(uint16_t **p, size_t *cap, size_t n)
{
	if (n <= *cap)
		return true;
	void *q = NULL;
	if (posix_memalign(&q, 64, n * sizeof **p) != 0)
		return false;
	free(*p);
	*p = q;
	*cap = n;
	return true;
}

/* rows x cols floats (row stride ld) to bf16, packed rows x cols. */
static void to_bf16(const float *x, size_t ld, int rows, int cols, uint16_t *out)
{
	for (int r = 0; r < rows; r++)
		nn_bf16_convert(x + (size_t)r * ld, (size_t)cols, out + (size_t)r * cols);
}

/* An operand of rows x cols (row stride *ld) in bf16: itself when it is (is16), else
 * rounded into the thread's buffer *buf, packed (*ld becomes cols); NULL without memory. */
static const void *operand16(const void *x, bool is16, int rows, int cols, int *ld, uint16_t **buf,
                             size_t *cap)
{
	if (is16)
		return x;
	if (!grow(buf, cap, (size_t)rows * cols))
		return NULL;
	to_bf16(x, (size_t)*ld, rows, cols, *buf);
	*ld = cols;
	return *buf;
}

bool nn_gemm_amx(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                 const void *b, int ldb, float beta, float *c, int ldc, unsigned ops)
{
	pthread_once(&amx_once, amx_init);
	struct amx_thread *t;
	if (!amx_ok || !(t = amx_thread()))
		return false;
	/* op(A) is m x k: stored m x k, or k x m when transposed; op(B) k x n likewise. Floats
	 * are rounded into the thread's buffers, packed (row stride = columns); bfloat16
	 * operands are read where they are, with their own stride. */
	const void *a16 = operand16(a, ops & NN_BF16_A, ta ? k : m, ta ? m : k, &lda, &t->a,
	                            &t->cap_a);
	const void *b16 = operand16(b, ops & NN_BF16_B, tb ? n : k, tb ? k : n, &ldb, &t->b,
	                            &t->cap_b);
	if (!a16 || !b16)
		return false;
	dnnl_memory_desc_t ad, bd, cd;
	dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
	dnnl_dims_t a_str = {ta ? 1 : lda, ta ? lda : 1}, b_str = {tb ? 1 : ldb, tb ? ldb : 1};
	dnnl_dims_t c_str = {ldc, 1};
	dnnl_matmul_desc_t md;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t prim = NULL;
	dnnl_memory_t am = NULL, bm = NULL, cm = NULL;
	bool ok = dnnl_memory_desc_init_by_strides(&ad, 2, a_dims, dnnl_bf16, a_str) ==
	                  dnnl_success &&
	          dnnl_memory_desc_init_by_strides(&bd, 2, b_dims, dnnl_bf16, b_str) ==
	                  dnnl_success &&
	          dnnl_memory_desc_init_by_strides(&cd, 2, c_dims, dnnl_f32, c_str) ==
	                  dnnl_success &&
	          dnnl_matmul_desc_init(&md, &ad, &bd, NULL, &cd) == dnnl_success &&
	          dnnl_primitive_attr_create(&attr) == dnnl_success;
	if (ok && alpha != 1.0f)
		ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
	if (ok && beta != 0.0f)
		ok = dnnl_post_ops_create(&po) == dnnl_success &&
		     dnnl_post_ops_append_sum(po, beta) == dnnl_success &&
		     dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
	ok = ok && dnnl_primitive_desc_create(&pd, &md, attr, amx_engine, NULL) == dnnl_success &&
	     dnnl_primitive_create(&prim, pd) == dnnl_success &&
	     dnnl_memory_create(&am, &ad, amx_engine, (void *)a16) == dnnl_success &&
	     dnnl_memory_create(&bm, &bd, amx_engine, (void *)b16) == dnnl_success &&
	     dnnl_memory_create(&cm, &cd, amx_engine, c) == dnnl_success;
	if (ok) {
		/* Past this point C may be written: a failure cannot fall back (beta would read
		 * a half-written C), and after a primitive was built it does not happen. */
		dnnl_exec_arg_t args[3] = {
			{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
		if (dnnl_primitive_execute(prim, t->stream, 3, args) != dnnl_success ||
		    dnnl_stream_wait(t->stream) != dnnl_success)
			abort();
	}
	dnnl_memory_destroy(am);
	dnnl_memory_destroy(bm);
	dnnl_memory_destroy(cm);
	dnnl_primitive_destroy(prim);
	dnnl_primitive_desc_destroy(pd);
	dnnl_post_ops_destroy(po);
	dnnl_primitive_attr_destroy(attr);
	return ok;
}
