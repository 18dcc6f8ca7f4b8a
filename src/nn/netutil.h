/* netutil.h - helpers shared by the network builders (htdemucs.c, hdemucs.c).
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

#include "nn/ckpt.h"
#include "nn/htdemucs.h"

struct nn_binder {
	struct nn_ckpt *c;
	char *err;
	size_t n_err;
	int rc;
};

/* Returns the data of tensor `name` if its shape is exactly dims[0..nd), else NULL (and
 * records the first error). */
const float *nn_bindv(struct nn_binder *bd, const char *name, int nd, const long *dims);

#define NN_BIND(bd, name, ...)                                                            \
	nn_bindv((bd), (name), (int)(sizeof((long[]){__VA_ARGS__}) / sizeof(long)),              \
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

#endif
