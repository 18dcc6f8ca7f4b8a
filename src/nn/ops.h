/* ops.h - the tensor kernels of the nn engine (batch size 1, fp32, row-major).
 *
 * Convolutions are im2col + sgemm, tiled over output rows so that no im2col matrix grows
 * past NN_OPS_TILE_FLOATS (the outermost HTDemucs decoder would need ~300 MB in one go).
 * Elementwise functions are written to vectorise and use IEEE arithmetic only (no
 * -ffast-math anywhere): GELU is the exact erf form, normalisations accumulate in double.
 *
 * Every kernel takes its scratch from the caller's workspace (workspace.h) and returns nothing:
 * an allocation failure sets ws->failed, which the caller checks once per layer. OpenBLAS
 * must run single-threaded (nn_ops_init); parallelism lives above, one segment per worker,
 * or one segment with a team of threads (below): convolution row tiles, attention (head,
 * query block) pairs and the DConv tiles are parts of a team (nn_team_parts), and so are
 * groups of channels of the per-channel passes (bias fill, im2col, transposed-conv
 * overlap-add, GLU, GroupNorm statistics and affine, copies) and stretches of the
 * whole-tensor ones (GELU, add, affine), which would otherwise leave the helpers idle.
 * Two or three tiles (a convolution's, a long DConv's) are too few to be shared evenly as
 * parts: they run one after the other, each one's product and passes shared instead.
 *
 * Precision: every product goes through nn_gemm, which runs cblas_sgemm or, in a thread set
 * to bf16 (nn_ops_set_precision; apply.c sets it on each worker from the separation's
 * options), the bf16 product of gemm_bf16.h; the one exception is the LSTM step's product
 * of a few rows (nn_gemm_few_rows), fp32 in both modes. Nothing else changes: the weights
 * stay fp32 in memory and are rounded as each product packs them (no second copy), and every
 * elementwise kernel, normalisation and the STFT stay fp32. Operands built only for
 * products (a convolution's columns; attention's queries, keys, values and weights) are
 * rounded once as they are built, which gives the same values.
 */
#ifndef SFA_NN_OPS_H
#define SFA_NN_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/nn.h"
#include "nn/workspace.h"

enum { NN_OPS_TILE_FLOATS = 1 << 21 };

/* Once per process: OpenBLAS to one thread. Idempotent, thread-safe. */
void nn_ops_init(void);

/* Floating-point operations done by nn_gemm since the process started (2 per multiply-add),
 * summed over all threads: the benchmark's GFLOP/s figure. */
unsigned long long nn_ops_flop_count(void);

/* C[m][n] = alpha * op(A) op(B) + beta * C, row-major, op = transpose when ta/tb. In the
 * calling thread's bf16 mode (nn_ops_set_precision) the operands are rounded to bfloat16
 * and the products summed in fp32 (gemm_bf16.h); otherwise cblas_sgemm. */
void nn_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);

/* The precision of the calling thread's nn_gemm calls (NN_PRECISION_FP32 until set; a
 * thread-local, like the team). NN_PRECISION_BF16 only after nn_bf16_supported() said yes.
 * A team's helpers take the precision of the thread whose product or parts they share. */
void nn_ops_set_precision(enum nn_precision p);
enum nn_precision nn_ops_precision(void);

/* A GEMM team: helper threads that share the large products of one forward pass, for when
 * running one segment per core would not fit in memory (HDemucs on 44 s segments: ~0.4 GB of
 * activations per segment). While a team is attached to a thread (nn_ops_team_attach), its
 * nn_gemm calls of at least NN_TEAM_MIN_MNK multiply-adds per part are cut in parts that
 * run at once on the calling thread and the helpers. Each part is an ordinary
 * single-threaded cblas_sgemm with the full k. fp32 products are cut along m at multiples
 * of a row unit probed at run time (nn_ops_team_unit): OpenBLAS does not promise that a
 * part gives the bits of the whole, but its kernels do when the cut falls on their register
 * block, so results are bit-identical with or without a team. bf16 products are cut along
 * the larger of m and n at multiples of 64 (the bf16 kernel gives every element the same
 * bits cut or whole). */
enum { NN_TEAM_MAX_HELPERS = 15, NN_TEAM_MIN_MNK = 8 << 20 };
struct nn_team;
/* Starts n_helpers threads (0 allowed: nn_gemm then runs alone). NULL without memory; the
 * caller ends and frees it with nn_team_stop. */
struct nn_team *nn_team_start(int n_helpers);
/* Joins the helpers. NULL is ignored. */
void nn_team_stop(struct nn_team *t);
/* Attaches t (or NULL to detach) to the calling thread; one thread per team at a time. */
void nn_ops_team_attach(struct nn_team *t);
/* The row unit at which fp32 products are cut (probed once per process on a few products
 * of every transposition: 12 on OpenBLAS 0.3.21's Haswell and Zen kernels), or 0 where no
 * unit gives the bits of the whole: a team's fp32 nn_gemm then runs whole on the calling
 * thread (no speed-up, same results). */
int nn_ops_team_unit(void);
/* Parts run by the helpers so far (for tests: 0 means nothing was shared). */
unsigned long long nn_team_helped(struct nn_team *t);
/* How many times work was offered to a team's helpers since the process started (an
 * nn_team_parts call of two parts or more, an nn_gemm cut in parts), over every team: for
 * tests of code that makes its teams itself (nn_separate). Unlike nn_team_helped, it does
 * not depend on whether a helper woke in time to take a part. */
unsigned long long nn_ops_team_shared_count(void);
/* Runs fn(arg, part, ws) for every part in [0, n_parts): with a team attached to the
 * calling thread, the caller and the helpers take parts in turn, each with a workspace of
 * its own (the caller's ws; a helper's own), and products inside a part run whole on its
 * thread; without one, the parts run in order on the caller. A part's allocations are
 * released after it; parts must write disjoint memory. Since every part is computed by
 * the same code either way, the results are the same bits with or without a team (on
 * any SGEMM kernel: nothing is cut). A workspace that ran out sets ws->failed. */
void nn_team_parts(struct nn_ws *ws, int n_parts, void (*fn)(void *arg, int part, struct nn_ws *ws),
                   void *arg);

/* A 2-D convolution (Conv1d is h = T, w = 1, or h = 1, w = T). Weights (cout, cin*kh*kw). */
struct nn_conv {
	const float *w;
	const float *b; /* cout values or NULL */
	int cin, cout, kh, kw, sh, sw, ph, pw, dh, dw;
};

static inline int nn_conv_out(int in, int k, int s, int p, int d)
{
	return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y (cout, ho, wo) = conv(x (cin, h, w)). Channel ci of x starts at x + ci*ldx, channel co
 * of y at y + co*ldy (ldx = h*w, ldy = ho*wo for whole tensors). y must not overlap x. */
void nn_conv2d(struct nn_ws *ws, const struct nn_conv *c, const float *x, int h, int w, size_t ldx,
               float *y, int ho, int wo, size_t ldy);
/* The same for output rows [h0, h1) only; y points at row h0 of channel 0. */
void nn_conv2d_rows(struct nn_ws *ws, const struct nn_conv *c, const float *x, int h, int w,
                    size_t ldx, int h0, int h1, int wo, float *y, size_t ldy);

/* y[co][i] = b[co] (0 without b) for i < n, channels ld apart; groups of channels are
 * parts of a team. */
void nn_fill_channels(float *y, int cout, const float *b, size_t n, size_t ld);

/* Transposed convolution along h with kernel (k, 1), stride (s, 1), then a crop:
 * y[co][ho][j] = b[co] + sum over ci, hi, i with hi*s + i - crop == ho of
 * wt[ci][co][i] * x[ci][hi][j], for ho in [0, hout). wt is (cin, cout*k). */
void nn_convtr_h(struct nn_ws *ws, const float *wt, const float *b, int cin, int cout, int k, int s,
                 int crop, const float *x, int h, int w, float *y, int hout);

/* The accumulation part of nn_convtr_h for input rows [ih0, ih0 + nrows): x points at row
 * ih0 of channel 0, channels ldx apart; y must already hold the bias (or partial sums). */
void nn_convtr_h_rows(struct nn_ws *ws, const float *wt, int cin, int cout, int k, int s, int crop,
                      const float *x, size_t ldx, int ih0, int nrows, int w, float *y, int hout);

/* In-place exact GELU, x * (1 + erf(x / sqrt 2)) / 2. */
void nn_gelu(float *x, size_t n);
/* out[i] = a[i] * sigmoid(g[i]) for i < n (GLU halves). out may alias a. */
void nn_glu(const float *a, const float *g, float *out, size_t n);
/* GLU over channels: out channel c (ldo apart) = x[c] * sigmoid(x[c + ch]), x (2 ch, n)
 * contiguous; groups of channels are parts of a team. out may alias x (ldo = n). */
void nn_glu_channels(const float *x, int ch, size_t n, float *out, size_t ldo);

/* x[c][i] += scale[c] * z[c][i] * sigmoid(z[c + ch][i]) for c < ch, i < n (GLU then
 * LayerScale, added to a residual): z (2 ch, n) contiguous, x channels ldx apart; groups
 * of channels are parts of a team. */
void nn_glu_scale_add_channels(const float *z, int ch, size_t n, const float *scale, float *x,
                               size_t ldx);

/* Whole-tensor elementwise passes, cut into stretches that are parts of a team:
 * dst[i] += src[i], and x[i] = x[i] * sc + sh. */
void nn_add(float *dst, const float *src, size_t n);
void nn_affine(float *x, size_t n, float sc, float sh);
/* n floats of each of n_ch channels from src (channels lds apart) to dst (ldd apart);
 * groups of channels are parts of a team. */
void nn_copy_channels(float *dst, size_t ldd, const float *src, size_t lds, int n_ch, size_t n);

/* The weights of one DConv residual layer (HTDemucs and HDemucs alike). */
struct nn_dconv_w {
	const float *c1w, *c1b, *g1w, *g1b, *c2w, *c2b, *g2w, *g2b, *scale;
};

/* A plain DConv (n layers, hidden width hid, layer d dilated 1 << d) in place on x
 * (ch, rows, t), channel stride ld, for frequency rows: rows are independent (GroupNorm
 * included), so it runs tile by tile of rows, every layer per tile. */
void nn_dconv_rows(struct nn_ws *ws, const struct nn_dconv_w *layers, int n, int hid, float *x,
                   int ch, int rows, int t, size_t ld, float eps);
/* The same on one long time row x (ch, t): conv3 -> GroupNorm(1) -> GELU, then the 1x1
 * expansion to 2ch computed per tile twice - statistics (Chan's combination of per-tile
 * means and squared deviations), then GroupNorm - GLU - LayerScale - add - so the
 * (2ch, t) activation is never stored whole. */
void nn_dconv_long(struct nn_ws *ws, const struct nn_dconv_w *layers, int n, int hid, float *x,
                   int ch, int t, float eps);

/* GroupNorm with one group over `rows` independent slices: slice r is the n_c x n_t block
 * x[c*ld + r*n_t + t]. gamma/beta per channel (may be NULL for none). Biased variance. */
void nn_groupnorm1_slices(float *x, int n_c, int rows, int n_t, size_t ld, const float *gamma,
                          const float *beta, float eps);
/* GroupNorm(1) with known statistics over n_c channels of n values (channel stride ld);
 * groups of channels are parts of a team. */
void nn_groupnorm_apply(float *x, int n_c, size_t n, size_t ld, double mean, double var,
                        const float *gamma, const float *beta, float eps);
/* Sum of n floats, and sum of squared deviations from mean (vectorised, double result). */
double nn_sum(const float *p, size_t n);
double nn_ssd(const float *p, size_t n, float mean);

/* LayerNorm over the last dim of (n, d) rows; out may alias x. */
void nn_layernorm(const float *x, float *out, int n, int d, const float *gamma, const float *beta,
                  float eps);
/* Row softmax of (n, d) in place. */
void nn_softmax_rows(float *x, int n, int d, int ld);

/* Multi-head attention core: out (nq, dim) = concat_h softmax(q_h k_h^T / sqrt(hd)) v_h.
 * q, k, v are row-major with leading dims ldq, ldk, ldv; head h uses columns
 * [h*hd, (h+1)*hd). out has leading dim ldo. */
void nn_attention(struct nn_ws *ws, const float *q, int ldq, int nq, const float *k, int ldk,
                  const float *v, int ldv, int nk, int dim, int heads, float *out, int ldo);

/* Products with few rows (an LSTM step: one row per sequence, 3-6 of them), which OpenBLAS
 * runs at a tenth of its speed because it packs all of w at every call: w (n, k), as
 * nn_gemm's transposed B, is packed once (nn_few_rows_pack, NN_FEW_ROWS_FLOATS(n, k) floats)
 * and every product then reads it once, in order: y (m, n) += x (m, k) w^T. Each element
 * is its k products summed in order, then added to y, whatever m and the CPU (fp32 in
 * either precision mode). */
#define NN_FEW_ROWS_FLOATS(n, k) ((size_t)(((n) + 63) / 64) * 64 * (size_t)(k))
void nn_few_rows_pack(const float *w, int n, int k, int ldw, float *packed);
void nn_gemm_few_rows(int m, int n, int k, const float *x, int ldx, const float *packed, float *y,
                      int ldy);

/* One step of an LSTM cell for one sequence (PyTorch's gate order: input, forget, cell,
 * output; gates (4n) already summed): c = f c + i g, h = o tanh(c), in place. Vectorised
 * sigmoid and tanh (a few ulp). */
void nn_lstm_cell(const float *gates, float *c, float *h, int n);

/* y (n, dout) = x (n, din) w^T + b, w (dout, din). */
void nn_linear(const float *x, int n, int din, const float *w, const float *b, int dout, float *y,
               int ldy);

#endif
