/* gemm_bf16.h - the bfloat16 matrix product of the nn engine (AVX512-BF16 only).
 *
 * nn_gemm_bf16 is cblas_sgemm's row-major product with both operands rounded to bfloat16
 * (8 significant bits, round-to-nearest-even, subnormals flushed) as they are packed, and
 * the products summed in fp32: |error| <= (2^-7 + 2^-16) sum |a||b| per element from the
 * rounding of the inputs (unit roundoff 2^-8 each), plus fp32 summation. Callers must have checked
 * nn_bf16_supported() (ops.h): on a CPU without AVX512-BF16 this faults (SIGILL).
 * Results do not depend on where a product is cut along m or n (see gemm_bf16.c), so a
 * GEMM team may share bf16 products. Threading: reentrant, per-thread buffers.
 */
#ifndef SFA_NN_GEMM_BF16_H
#define SFA_NN_GEMM_BF16_H

#include <stdbool.h>

/* C[m][n] = alpha * op(A) op(B) + beta * C, row-major, op = transpose when ta/tb; beta = 0
 * does not read C. */
void nn_gemm_bf16(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);

/* f rounded to the nearest bfloat16 the way the packing rounds it (for tests). */
float nn_bf16_round(float f);

#endif
