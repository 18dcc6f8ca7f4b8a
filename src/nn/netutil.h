/* netutil.h - helpers shared by the network builders and forward passes (htdemucs.c,
 * hdemucs.c).
 *
 * A builder lists every tensor its architecture owns with NN_BIND(bd, name, dims...):
 * the tensor must exist with exactly that shape; it is marked used, and the first
 * mismatch is kept in bd->rc / bd->err (later binds are no-ops), so a builder binds
 * everything and checks once. Afterwards nn_binder_leftover() reports tensors that no
 * bind claimed. The kwargs readers fill the fields of the network info that every Demucs
 * model shares (sources, segment).
 *
 *
 * Threading: a binder belongs to the one thread building a network.
 */
#ifndef SFA_NN_NETUTIL_H
#define SFA_NN_NETUTIL_H

#include <stddef.h>

#include "nn/ckpt.h"
#include "nn/htdemucs.h"
#include "nn/stft.h"
#include "nn/workspace.h"

struct nn_binder {
	struct nn_ckpt *c;
	char *err;
	size_t n_err;
	int rc;
};

/* Returns the data of tensor `name` (owned by the checkpoint) if its shape is exactly
 * dims[0..nd), else NULL (and records the first error). */
const float *nn_bindv(struct nn_binder *bd, const char *name, int nd, const long *dims);

#define NN_BIND(bd, name, ...)                                                      \
	nn_bindv((bd), (name), (int)(sizeof((long[]){__VA_ARGS__}) / sizeof(long)), \
	         (long[]){__VA_ARGS__})

/* Names the first checkpoint tensor that no bind claimed: SFA_EFORMAT, or 0 if none. */
int nn_binder_leftover(const struct nn_ckpt *c, char *err, size_t n_err);
/* Clears the used marks (after a failed build, so the caller may retry). */
void nn_binder_reset(struct nn_ckpt *c);

/* kwargs `sources` (or the first positional argument) into info->sources. */
int nn_net_read_sources(const struct nn_ckpt *c, struct nn_htdemucs_info *info, char *err,
                        size_t n_err);
/* kwargs `segment` (Fraction, int or float) into segment_num/den and training_length;
 * info->samplerate must be set. */
int nn_net_read_segment(const struct nn_ckpt *c, struct nn_htdemucs_info *info, char *err,
                        size_t n_err);

/* A builder's last step, once every tensor is bound: makes the STFT of nfft points into
 * *stft (the network frees it with nn_stft_free), sets info->n_params, and takes the
 * weights into *dst (the bound pointers stay valid; *ckpt is emptied, and the network frees
 * *dst with nn_ckpt_free). On failure nothing is taken. */
int nn_net_take(struct nn_ckpt *ckpt, int nfft, struct nn_htdemucs_info *info, struct nn_ckpt *dst,
                struct nn_stft **stft, char *err, size_t n_err);
/* Frees what nn_net_take gave the network. */
void nn_net_release(struct nn_ckpt *weights, struct nn_stft *stft);

/* Runs call (an int expression); when it is not 0, stores it in rc and jumps to label:
 * a builder reads its kwargs in a row and cleans up once. */
#define NN_TRY(rc, call, label)           \
	do {                              \
		if (((rc) = (call)) != 0) \
			goto label;       \
	} while (0)

/* Why a forward pass must stop at this layer boundary: SFA_ENOMEM when ws ran out
 * (ws->failed), SFA_ECANCELED when *cancel is set (cancel may be NULL), else 0. */
int nn_layer_status(const struct nn_ws *ws, const volatile int *cancel);

/* The mean and the unbiased standard deviation (as torch.std) of x[0..n), summed in order
 * in double precision, as the models' input normalisation computes them. */
void nn_mean_std(const float *x, size_t n, double *mean, double *std);
/* out[i] = (x[i] - mean) / (1e-5 + std) in float, with x's nn_mean_std into *mean, *std:
 * how the models standardise their inputs. out may be x. */
void nn_standardize(const float *x, size_t n, float *out, double *mean, double *std);
/* The rows of row_floats floats each that a tile of at most budget floats holds, within
 * [1, h]. */
int nn_tile_rows(size_t budget, size_t row_floats, int h);

#endif
