/* gemm_bf16.c - C = alpha op(A) op(B) + beta C with A and B rounded to bfloat16 and the
 * products summed in fp32, on AVX512-BF16 (VDPBF16PS). See gemm_bf16.h.
 *
 * This file and gemm_amx.c are the only ones built with -mavx512f -mavx512bf16 (their own
 * static library): the rest of the engine stays baseline x86-64, and nn_gemm calls in here
 * only after nn_bf16_supported() said the CPU has the instructions. nn_gemm_bf16 runs the
 * product on AMX through oneDNN where it can (gemm_amx.c), else here.
 *
 * Blocking (GotoBLAS order): for each NC-column block of B, each KC-deep slice of k: B's
 * block is rounded and packed once into panels of NR = 32 columns, in k-pairs (the two
 * bf16 of a pair share one 32-bit lane, the operand layout of VDPBF16PS); for each
 * MC-row block of A: A's block is packed into panels of MR = 8 rows, pairs again; then an
 * 8 x 32 register tile (16 zmm accumulators) per panel pair: per k-pair, two loads of B
 * and eight broadcasts of A feed sixteen VDPBF16PS. The B panel (KC/2 x 32 pairs = 16 KB)
 * stays in L1, A's block (64 KB) in L2, B's block (512 KB) in L2/L3.
 *
 * Bits: every element of C gets the same sequence of operations whatever m, n and the
 * position of its row and column (same KC slices in the same order, one lane each), so a
 * product cut along m or n at multiples of NR gives the bits of the whole: a GEMM team
 * may cut bf16 products freely. The rounding to bf16 is round-to-nearest-even with
 * subnormals flushed to zero, by VCVTNE2PS2BF16 and by the scalar fallback alike.
 *
 * Memory: each thread has its own packing buffers (~580 KB), allocated at its first call
 * and freed when the thread ends; if that allocation fails the product is summed plainly,
 * element by element, from the same rounded operands (correct, slow, still bf16).
 *
 * Threading: reentrant; one thread's call uses only that thread's buffers.
 */
#include "nn/gemm_bf16.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
	MR = 8,
	NR = 32,
	KC = 256, /* even: every slice but the last has whole pairs */
	MC = 128,
	NC = 1024,
	KP = KC / 2,
};

struct bufs {
	uint32_t *pa; /* MC/MR panels of KP x MR pairs */
	uint32_t *pb; /* NC/NR panels of KP x NR pairs */
};

static pthread_key_t bufs_key;
static pthread_once_t bufs_once = PTHREAD_ONCE_INIT;
static bool bufs_key_ok;

static void bufs_free(void *p)
{
	struct bufs *b = p;
	if (!b)
		return;
	free(b->pa);
	free(b->pb);
	free(b);
}

static void bufs_init(void) { bufs_key_ok = pthread_key_create(&bufs_key, bufs_free) == 0; }

/* The calling thread's buffers, allocated at its first call; NULL without memory. */
static struct bufs *thread_bufs(void)
{
	pthread_once(&bufs_once, bufs_init);
	if (!bufs_key_ok)
		return NULL;
	struct bufs *b = pthread_getspecific(bufs_key);
	if (b)
		return b;
	b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	void *pa = NULL, *pb = NULL;
	if (posix_memalign(&pa, 64, sizeof(uint32_t) * MC * KP) != 0 ||
	    posix_memalign(&pb, 64, sizeof(uint32_t) * NC * KP) != 0) {
		free(pa);
		free(b);
		return NULL;
	}
	b->pa = pa;
	b->pb = pb;
	if (pthread_setspecific(bufs_key, b) != 0) {
		bufs_free(b);
		return NULL;
	}
	return b;
}

/* One float to bf16 bits as VCVTNE2PS2BF16 rounds it: nearest-even, subnormals to signed
 * zero, NaN stays a (quiet) NaN. */
static inline uint32_t bf16_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	if ((u & 0x7f800000u) == 0)
		return (u >> 16) & 0x8000u;
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (u >> 16) | 0x40u;
	u += 0x7fffu + ((u >> 16) & 1u);
	return u >> 16;
}

float nn_bf16_round(float f)
{
	uint32_t u = bf16_bits(f) << 16;
	float r;
	memcpy(&r, &u, sizeof r);
	return r;
}

/* Transposes 16 x 16 32-bit elements: r[a] element b becomes r[b] element a. */
static inline void transpose16(__m512i r[16])
{
	__m512i t[16], u[16];
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
	}
	/* u[4i + c], 128-bit lane L: column 4L + c of rows 4i .. 4i+3. */
	for (int i = 0; i < 16; i += 4) {
		u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
		u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
		u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
		u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
	}
	for (int c = 0; c < 4; c++) {
		__m512i w0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
		__m512i w1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
		__m512i w2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
		__m512i w3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
		r[c] = _mm512_shuffle_i32x4(w0, w2, 0x88);
		r[4 + c] = _mm512_shuffle_i32x4(w0, w2, 0xdd);
		r[8 + c] = _mm512_shuffle_i32x4(w1, w3, 0x88);
		r[12 + c] = _mm512_shuffle_i32x4(w1, w3, 0xdd);
	}
}

/* Packs a block whose element (i, kk), i < n_i, kk < kc, is at src[i*ld + kk] (contiguous
 * along k) into panels of w (8 or 32) rows: panel q holds, for pair p, the pairs of rows
 * q*w .. q*w+w-1 at dst[q*kp*w + p*w + r]. Rows past n_i and the odd tail of k are zero.
 * Sixteen rows at a time: each row's 32 floats become 16 pairs in one VCVTNE2PS2BF16 (bf16
 * in memory order are pairs already), then a 16 x 16 transpose puts them pair-major. The
 * buffer must hold panels up to row roundup(n_i, 16) (MC and NC are multiples of 16).
 * A bfloat16 source (bf) is in that order already: 32 of a row load as they are. */
static void pack_kcontig(const void *src, bool bf, size_t ld, int n_i, int kc, int w, uint32_t *dst)
{
	int kp = (kc + 1) / 2;
	for (int i0 = 0; i0 < n_i; i0 += 16) {
		int rows = n_i - i0 < 16 ? n_i - i0 : 16;
		for (int kk = 0; kk < kc; kk += 32) {
			int left = kc - kk;
			__mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
			__mmask16 m1 = left >= 32  ? 0xffff
			               : left > 16 ? (__mmask16)((1u << (left - 16)) - 1)
			                           : 0;
			__m512i r[16];
			for (int a = 0; a < 16; a++) {
				if (a >= rows) {
					r[a] = _mm512_setzero_si512();
					continue;
				}
				size_t at = (size_t)(i0 + a) * ld + kk;
				if (bf) {
					r[a] = _mm512_maskz_loadu_epi16((__mmask32)m0 |
					                                        (__mmask32)m1 << 16,
					                                (const uint16_t *)src + at);
					continue;
				}
				const float *s = (const float *)src + at;
				__m512 x0 = _mm512_maskz_loadu_ps(m0, s);
				__m512 x1 = _mm512_maskz_loadu_ps(m1, s + 16);
				r[a] = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
			}
			transpose16(r);
			int p0 = kk / 2, np = kp - p0 < 16 ? kp - p0 : 16;
			for (int p = 0; p < np; p++) {
				if (w >= 16) {
					uint32_t *d = dst + (size_t)(i0 / w) * kp * w +
					              (size_t)(p0 + p) * w + i0 % w;
					_mm512_storeu_si512((void *)d, r[p]);
				} else { /* w == 8: rows i0 .. i0+7 and i0+8 .. i0+15 are two panels */
					uint32_t *d = dst + (size_t)(i0 / w) * kp * w +
					              (size_t)(p0 + p) * w;
					_mm256_storeu_si256((__m256i *)d,
					                    _mm512_castsi512_si256(r[p]));
					_mm256_storeu_si256((__m256i *)(d + (size_t)kp * w),
					                    _mm512_extracti64x4_epi64(r[p], 1));
				}
			}
		}
	}
}

/* Packs a block whose element (i, kk) is at src[kk*ld + i] (contiguous along i) into the
 * same panels as pack_kcontig: for each pair of k rows, 16 columns of each convert in one
 * VCVTNE2PS2BF16 and one word permutation interleaves them into pairs (from a bfloat16
 * source, bf, the two rows load side by side instead). */
static void pack_icontig(const void *src, bool bf, size_t ld, int n_i, int kc, int w, uint32_t *dst)
{
	int kp = (kc + 1) / 2;
	const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25,
	                                       9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2,
	                                       17, 1, 16, 0);
	for (int q = 0; q * w < n_i; q++) {
		uint32_t *panel = dst + (size_t)q * kp * w;
		for (int off = 0; off < w; off += 16) {
			int cw = w - off < 16 ? w - off : 16;
			int valid = n_i - q * w - off;
			valid = valid < 0 ? 0 : valid > cw ? cw : valid;
			__mmask16 mv = (__mmask16)((1u << valid) - 1);
			__mmask16 mw = (__mmask16)((1u << cw) - 1);
			size_t at = (size_t)q * w + off;
			for (int p = 0; p < kp; p++) {
				int k0 = 2 * p;
				bool odd = k0 + 1 < kc; /* row k0 + 1 exists */
				__m512i h;
				if (bf) {
					const uint16_t *s = (const uint16_t *)src + at;
					__m256i x0 = _mm256_maskz_loadu_epi16(mv,
					                                      s + (size_t)k0 * ld);
					__m256i x1 = odd ? _mm256_maskz_loadu_epi16(
								   mv, s + (size_t)(k0 + 1) * ld)
					                 : _mm256_setzero_si256();
					h = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
				} else {
					const float *s = (const float *)src + at;
					__m512 x0 = _mm512_maskz_loadu_ps(mv, s + (size_t)k0 * ld);
					__m512 x1 = odd ? _mm512_maskz_loadu_ps(
								  mv, s + (size_t)(k0 + 1) * ld)
					                : _mm512_setzero_ps();
					h = (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
				}
				__m512i pr = _mm512_permutexvar_epi16(inter, h);
				_mm512_mask_storeu_epi32(panel + (size_t)p * w + off, mw, pr);
			}
		}
	}
}

/* The 8 x 32 tile at c (mr rows and nr columns of it are real): c = alpha*acc + beta*c on
 * the first k slice, c += alpha*acc on the others. */
static void kernel(int kp, const uint32_t *pa, const uint32_t *pb, float *c, size_t ldc, int mr,
                   int nr, float alpha, float beta, bool first)
{
	__m512 acc[MR][2];
	for (int i = 0; i < MR; i++)
		acc[i][0] = acc[i][1] = _mm512_setzero_ps();
	for (int p = 0; p < kp; p++) {
		__m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(pb + (size_t)p * NR));
		__m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(pb + (size_t)p * NR + 16));
		const uint32_t *ap = pa + (size_t)p * MR;
#pragma GCC unroll 8
		for (int i = 0; i < MR; i++) {
			__m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[i]);
			acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
			acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
		}
	}
	__mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
	__mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int i = 0; i < mr; i++) {
		float *row = c + (size_t)i * ldc;
		__m512 r0 = _mm512_mul_ps(va, acc[i][0]);
		__m512 r1 = _mm512_mul_ps(va, acc[i][1]);
		if (!first || beta != 0.0f) {
			__m512 c0 = _mm512_maskz_loadu_ps(m0, row);
			__m512 c1 = _mm512_maskz_loadu_ps(m1, row + 16);
			if (first) {
				c0 = _mm512_mul_ps(vb, c0);
				c1 = _mm512_mul_ps(vb, c1);
			}
			r0 = _mm512_add_ps(c0, r0);
			r1 = _mm512_add_ps(c1, r1);
		}
		_mm512_mask_storeu_ps(row, m0, r0);
		_mm512_mask_storeu_ps(row + 16, m1, r1);
	}
}

void nn_gemm_bf16(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                  const void *b, int ldb, float beta, float *c, int ldc, unsigned ops)
{
	if (!nn_gemm_amx(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ops))
		nn_gemm_bf16_avx512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ops);
}

/* Element i of an operand of floats or (bf) bfloat16, as a float. */
static float operand_value(const void *p, bool bf, size_t i)
{
	if (!bf)
		return ((const float *)p)[i];
	uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* The product without packing buffers (their allocation failed): the plain sums of the
 * rounded operands. Correct, slow, and only ever reached out of memory. */
static void product_unpacked(bool ta, bool tb, int m, int n, int k, float alpha, const void *a,
                             int lda, const void *b, int ldb, float beta, float *c, int ldc,
                             unsigned ops)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			float sum = 0.0f;
			for (int p = 0; p < k; p++)
				sum += nn_bf16_round(operand_value(a, ops & NN_BF16_A,
				                                   ta ? (size_t)p * lda + i
				                                      : (size_t)i * lda + p)) *
				       nn_bf16_round(operand_value(b, ops & NN_BF16_B,
				                                   tb ? (size_t)j * ldb + p
				                                      : (size_t)p * ldb + j));
			float *cij = c + (size_t)i * ldc + j;
			*cij = alpha * sum + (beta == 0.0f ? 0.0f : beta * *cij);
		}
}

void nn_gemm_bf16_avx512(bool ta, bool tb, int m, int n, int k, float alpha, const void *a, int lda,
                         const void *b, int ldb, float beta, float *c, int ldc, unsigned ops)
{
	struct bufs *bf = thread_bufs();
	if (!bf) {
		product_unpacked(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ops);
		return;
	}
	bool a16 = ops & NN_BF16_A, b16 = ops & NN_BF16_B;
	for (int jc = 0; jc < n; jc += NC) {
		int nc = n - jc < NC ? n - jc : NC;
		for (int pc = 0; pc < k; pc += KC) {
			int kc = k - pc < KC ? k - pc : KC;
			int kp = (kc + 1) / 2;
			/* op(B) element (kk, j): b[kk*ldb + j], or b[j*ldb + kk] when transposed. */
			if (tb)
				pack_kcontig(nn_operand_at(b, b16, (size_t)jc * ldb + pc), b16,
				             (size_t)ldb, nc, kc, NR, bf->pb);
			else
				pack_icontig(nn_operand_at(b, b16, (size_t)pc * ldb + jc), b16,
				             (size_t)ldb, nc, kc, NR, bf->pb);
			for (int ic = 0; ic < m; ic += MC) {
				int mc = m - ic < MC ? m - ic : MC;
				/* op(A) element (i, kk): a[i*lda + kk], or a[kk*lda + i] when transposed. */
				if (ta)
					pack_icontig(nn_operand_at(a, a16, (size_t)pc * lda + ic),
					             a16, (size_t)lda, mc, kc, MR, bf->pa);
				else
					pack_kcontig(nn_operand_at(a, a16, (size_t)ic * lda + pc),
					             a16, (size_t)lda, mc, kc, MR, bf->pa);
				for (int jr = 0; jr < nc; jr += NR) {
					const uint32_t *pb = bf->pb + (size_t)(jr / NR) * kp * NR;
					int nr = nc - jr < NR ? nc - jr : NR;
					for (int ir = 0; ir < mc; ir += MR) {
						int mr = mc - ir < MR ? mc - ir : MR;
						kernel(kp, bf->pa + (size_t)(ir / MR) * kp * MR, pb,
						       c + (size_t)(ic + ir) * ldc + jc + jr,
						       (size_t)ldc, mr, nr, alpha, beta, pc == 0);
					}
				}
			}
		}
	}
}

void nn_bf16_convert(const float *x, size_t n, uint16_t *out)
{
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		__m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16),
		                                 _mm512_loadu_ps(x + i));
		_mm512_storeu_si512(out + i, (__m512i)v);
	}
	if (i < n) {
		size_t left = n - i;
		__mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
		__mmask16 m1 = left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
		__m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + i + 16),
		                                 _mm512_maskz_loadu_ps(m0, x + i));
		_mm512_mask_storeu_epi16(out + i, (__mmask32)(((uint64_t)1 << left) - 1),
		                         (__m512i)v);
	}
}
