/* simd.h - one way to vectorise a kernel for the CPU it runs on.
 *
 * The build targets baseline x86-64. A function marked SFA_CLONES is compiled three times
 * (AVX-512, AVX2, baseline) and the loader picks the best the CPU has. Write such kernels
 * as plain loops over independent lanes so that each clone vectorises them. No clone
 * enables FMA, so products and sums round as in the baseline: results do not depend on
 * which clone runs. One exception seen with GCC 12.2: its AVX-512 clone of a vectorised
 * loop dropped a (double)(float) rounding (no cvtpd2ps), so a cloned loop that narrows
 * must be checked against the baseline clone's output.
 *
 * Where GCC leaves such a loop scalar or vectorises it poorly (GCC 12: a maximum over
 * float lanes, a sum over float[16] lanes), write it with GCC's vector extension on
 * sfa_f32x16 (a comparison gives sfa_i32x16 masks), or for sums in double on sfa_f64x4;
 * each clone still picks its own instructions for it, with the same rounding.
 */
#ifndef SFA_UTIL_SIMD_H
#define SFA_UTIL_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SFA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SFA_CLONES
#endif

typedef float sfa_f32x16 __attribute__((vector_size(16 * sizeof(float))));
typedef int sfa_i32x16 __attribute__((vector_size(16 * sizeof(int))));
/* Four lanes, for sums in double of float data (__builtin_convertvector between them). */
typedef float sfa_f32x4 __attribute__((vector_size(4 * sizeof(float))));
typedef double sfa_f64x4 __attribute__((vector_size(4 * sizeof(double))));

#endif
