/* pickle.h - a restricted unpickler for the data.pkl of torch.save checkpoints.
 *
 * Python's pickle is a small stack machine whose GLOBAL/REDUCE opcodes can call anything;
 * loading a foreign pickle is running foreign code. This interpreter therefore knows only
 * the opcodes that protocol-2 checkpoints use (plus a few harmless neighbours) and a fixed
 * allow-list of globals, each with a hand-written meaning:
 *
 *   collections.OrderedDict          -> a dict
 *   torch._utils._rebuild_tensor_v2  -> a tensor view (storage, offset, sizes, strides)
 *   torch._utils._rebuild_parameter  -> the tensor it wraps
 *   torch.HalfStorage / FloatStorage -> storage types, only inside persistent ids
 *   fractions.Fraction               -> a fraction, from (num, den) or from 'num/den'
 *   demucs.{htdemucs.HTDemucs, hdemucs.HDemucs, demucs.Demucs} -> class markers (never called)
 *
 * Anything else is an error that names the opcode or the global and its offset. Objects
 * live in a caller-supplied arena (util/arena.h) whose cap bounds the memory a hostile
 * file can claim; the stack, mark stack and memo have their own caps. Nothing here
 * reads tensor data: storages are just (dtype, key, numel) for the zip layer to resolve.
 * Pure function of its input; thread-safe with distinct arenas.
 */
#ifndef SFA_NN_PICKLE_H
#define SFA_NN_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/arena.h"

enum {
	NN_PK_MAX_DIMS = 8,
	NN_PK_MAX_INPUT_BYTES = 64 << 20,
	NN_PK_MAX_STACK = 1 << 20,
	NN_PK_MAX_MEMO = 1 << 22,
};

enum nn_pk_type {
	NN_PK_NONE,
	NN_PK_BOOL,
	NN_PK_INT,
	NN_PK_FLOAT,
	NN_PK_STR,
	NN_PK_BYTES,
	NN_PK_TUPLE,
	NN_PK_LIST,
	NN_PK_DICT,
	NN_PK_GLOBAL,
	NN_PK_FRACTION,
	NN_PK_STORAGE,
	NN_PK_TENSOR,
};

enum nn_pk_global {
	NN_PKG_ORDERED_DICT,
	NN_PKG_REBUILD_TENSOR_V2,
	NN_PKG_REBUILD_PARAMETER,
	NN_PKG_HALF_STORAGE,
	NN_PKG_FLOAT_STORAGE,
	NN_PKG_FRACTION,
	NN_PKG_HTDEMUCS,
	NN_PKG_HDEMUCS,
	NN_PKG_DEMUCS,
};

enum nn_pk_dtype { NN_PK_F16, NN_PK_F32 };

struct nn_pk {
	enum nn_pk_type type;
	union {
		bool b;
		int64_t i;
		double f;
		struct {
			const char *p; /* NUL-terminated copy in the arena */
			size_t n;
		} str; /* NN_PK_STR and NN_PK_BYTES */
		struct {
			struct nn_pk **items;
			size_t n, cap;
		} seq; /* NN_PK_TUPLE and NN_PK_LIST */
		struct {
			struct nn_pk **keys, **vals;
			size_t n, cap;
		} dict;
		enum nn_pk_global global;
		struct {
			int64_t num, den; /* reduced, den > 0 */
		} frac;
		struct {
			enum nn_pk_dtype dtype;
			const char *key;
			int64_t numel;
		} storage;
		struct {
			const struct nn_pk *storage;
			int64_t offset;
			int ndim;
			int64_t size[NN_PK_MAX_DIMS];
			int64_t stride[NN_PK_MAX_DIMS];
		} tensor;
	} u;
};

/* Runs the pickle in data[0..n). On success *out is the unpickled root, allocated in a.
 * Errors: SFA_EFORMAT (malformed, unknown opcode or global: the message names it),
 * SFA_ETOOBIG (a cap), SFA_ENOMEM (arena exhausted). */
int nn_pickle_load(const uint8_t *data, size_t n, struct arena *a, const struct nn_pk **out,
                   char *err, size_t n_err);

/* Dict lookup by string key (last occurrence wins, as in Python). NULL if d is not a dict
 * or the key is absent. The value belongs to d's tree. */
const struct nn_pk *nn_pk_get(const struct nn_pk *d, const char *key);
/* Human-readable dotted name of an allow-listed global (a static string). */
const char *nn_pk_global_name(enum nn_pk_global g);

#endif
