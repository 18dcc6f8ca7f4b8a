/* gemm_bf16.h - the bfloat16 matrix product of the nn engine (AVX512-BF16 only).
 *
 * nn_gemm_bf16 is cblas_sgemm's row-major product with both operands rounded to bfloat16
 * (8 significant bits, round-to-nearest-even, subnormals flushed) as they are packed, and
 * the products summed in fp32: |error| <= (2^-7 + 2^-16) sum |a||b| per element from the
 * rounding of the inputs (unit roundoff 2^-8 each), plus fp32 summation. Callers must have checked
 * nn_bf16_supported() (ops.h): on a CPU without AVX512-BF16 this faults (SIGILL).
 * It runs on AMX tiles through oneDNN where the CPU has them (gemm_amx.c), else on our
 * AVX512-BF16 kernel, whose results do not depend on where a product is cut along m or n
 * (see gemm_bf16.c), so that a GEMM team may share its products (nn_gemm_bf16_cuttable).
 * Threading: reentrant, per-thread buffers.
 */
#ifndef SFA_NN_GEMM_BF16_H
#define SFA_NN_GEMM_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Operands that hold bfloat16 already: bits of nn_gemm_bf16's `ops`. Such an operand is an
 * array of uint16_t (the high halves of floats, as nn_bf16_convert writes them) read with
 * its own row stride; it is used as it is, so a caller who rounds once (im2col, a softmax's
 * output, attention's keys reused by every block of queries) spares every product the
 * conversion. The results are those of the same product on the floats it came from. */
enum { NN_BF16_A = 1, NN_BF16_B = 2 };

/* Element i of an operand of floats or (bf) bfloat16. */
static inline const void *nn_operand_at(const void *p, bool bf, size_t i)
{
	return bf ? (const void *)((const uint16_t *)p + i) : (const void *)((const float *)p + i);
}

/* C[m][n] = alpha * op(A) op(B) + beta * C, row-major, op = transpose when ta/tb; beta = 0
 * does not read C. A and B are floats, or bfloat16 where ops says so. */
void nn_gemm_bf16(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                  const void *b, int ldb, float beta, float *c, int ldc, unsigned ops);

/* The same product by our AVX512-BF16 kernel (gemm_bf16.c), which nn_gemm_bf16 runs where
 * oneDNN has no AMX matmul. */
void nn_gemm_bf16_avx512(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                         const void *b, int ldb, float beta, float *c, int ldc, unsigned ops);

/* The same product on AMX tiles through oneDNN (gemm_amx.c), with the operands rounded as
 * above; false (C untouched) where oneDNN builds no AMX matmul (no AMX-BF16, or the
 * environment sets SFA_BF16_NO_AMX to anything but 0) or runs out of memory. */
bool nn_gemm_amx(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                 const void *b, int ldb, float beta, float *c, int ldc, unsigned ops);

/* x[0..n) rounded to bfloat16 as the products round their operands, into out[0..n). */
void nn_bf16_convert(const float *x, size_t n, uint16_t *out);

/* Whether a bf16 product gives the bits of the whole when cut along m or n: true for our
 * kernel, false where products run on AMX (oneDNN may block a cut product differently). */
bool nn_gemm_bf16_cuttable(void);

/* f rounded to the nearest bfloat16 the way the packing rounds it (for tests). */
float nn_bf16_round(float f);

#endif
