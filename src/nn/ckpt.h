/* ckpt.h - loading an official Demucs checkpoint (.th) into named fp32 tensors.
 *
 * A .th file is a torch.save zip: <prefix>/data.pkl (the pickled package
 * {klass, args, kwargs, state, training_args[, metrics]}) and one stored member
 * <prefix>/data/<key> per tensor storage (fp16 for the release models). This module maps
 * the file, runs the restricted unpickler (pickle.h) over data.pkl, checks the package
 * shape, and copies every state tensor into one fp32 block, honouring offsets and strides
 * and checking them against the member sizes. The file is unmapped before returning: a
 * loaded nn_ckpt holds only the fp32 weights and the small pickle tree (for kwargs).
 *
 * Architecture checks (which tensors with which shapes) belong to the network modules;
 * this layer only guarantees that what it hands out is well-formed. Quantised diffq
 * packages (the `*_q` models) are recognised and refused with a clear message.
 *
 * An nn_ckpt is immutable after loading and may be read from any thread.
 */
#ifndef SFA_NN_CKPT_H
#define SFA_NN_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn/pickle.h"
#include "util/arena.h"

enum {
	NN_CKPT_MAX_FILE_BYTES = 1 << 30,
	NN_CKPT_MAX_NAME_BYTES = 256,
};

struct nn_tensor {
	const char *name; /* in the ckpt arena */
	int ndim;
	int64_t shape[NN_PK_MAX_DIMS];
	size_t numel;
	float *data;             /* into nn_ckpt.weights, C order */
	bool used;               /* set by the network builder, to report leftovers */
	const struct nn_pk *src; /* the pickled view (in the ckpt arena) */
};

struct nn_ckpt {
	struct arena arena;
	enum nn_pk_global klass;
	const struct nn_pk *args;   /* tuple or list (often empty) */
	const struct nn_pk *kwargs; /* dict */
	struct nn_tensor *tensors;  /* malloced, sorted by name */
	size_t n_tensors;
	float *weights; /* malloced, all tensors back to back */
	size_t n_weight_floats;
};

/* Loads path. On success c owns everything (free with nn_ckpt_free). Errors name the
 * problem: SFA_EIO (cannot open/read), SFA_EFORMAT (not a checkpoint, corrupt),
 * SFA_EUNSUPP (diffq, legacy format, other dtypes), SFA_ETOOBIG, SFA_ENOMEM. */
int nn_ckpt_load(const char *path, struct nn_ckpt *c, char *err, size_t n_err);
/* The same from a buffer (used by load and by the fuzzer). */
int nn_ckpt_load_mem(const uint8_t *data, size_t n, struct nn_ckpt *c, char *err, size_t n_err);
void nn_ckpt_free(struct nn_ckpt *c);
/* The tensor named name (owned by c), or NULL. */
struct nn_tensor *nn_ckpt_find(struct nn_ckpt *c, const char *name);

/* Typed kwargs lookups. Each returns 0 and writes *out, writes def when the key is absent,
 * or fails with SFA_EFORMAT naming the key when the value has the wrong type. */
int nn_kw_int(const struct nn_ckpt *c, const char *key, long def, long *out, char *err,
              size_t n_err);
int nn_kw_bool(const struct nn_ckpt *c, const char *key, bool def, bool *out, char *err,
               size_t n_err);
/* Accepts ints, floats and fractions. */
int nn_kw_double(const struct nn_ckpt *c, const char *key, double def, double *out, char *err,
                 size_t n_err);
/* Strings: *out points into the ckpt arena, or is def. None gives NULL. */
int nn_kw_str(const struct nn_ckpt *c, const char *key, const char *def, const char **out,
              char *err, size_t n_err);
/* The raw value (owned by c), or NULL if absent. */
const struct nn_pk *nn_kw(const struct nn_ckpt *c, const char *key);

/* IEEE half -> single, exact for every input (subnormals, inf, nan). */
float nn_half_to_float(uint16_t h);
/* Converts elements [first, first + n) (C order) of the tensor view v, whose storage is the
 * little-endian bytes at src, to fp32 in dst: the view's offset and strides must lie inside
 * the storage (pickle.c checks them). Views laid out back to back take a vectorised loop,
 * others walk their strides; both give nn_half_to_float's bits. */
void nn_ckpt_gather(const uint8_t *src, const struct nn_pk *v, float *dst, size_t first, size_t n);

#endif
