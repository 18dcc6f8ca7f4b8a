/* libFuzzer harness: the restricted pickle interpreter (src/nn/pickle.c) with a capped
 * arena, then a walk over whatever object tree it returns. Seeds: fuzz/seeds/nn_pickle/. */
#include <stddef.h>
#include <stdint.h>

#include "nn/pickle.h"
#include "util/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bounded walk: the tree may share (and, through the memo, even contain) itself, so a
 * walk as a tree can be exponential (42 nested pairs of one list are 2^42 paths; the
 * fuzzer found that in this harness, which is the only code that walks a whole tree).
 * *budget caps the nodes visited. */
static size_t walk(const struct nn_pk *o, int depth, size_t *budget)
{
	if (!o || depth > 32 || *budget == 0)
		return 0;
	--*budget;
	size_t n = 1;
	switch (o->type) {
	case NN_PK_TUPLE:
	case NN_PK_LIST:
		for (size_t i = 0; i < o->u.seq.n && i < 64; i++)
			n += walk(o->u.seq.items[i], depth + 1, budget);
		break;
	case NN_PK_DICT:
		for (size_t i = 0; i < o->u.dict.n && i < 64; i++)
			n += walk(o->u.dict.keys[i], depth + 1, budget) +
			     walk(o->u.dict.vals[i], depth + 1, budget);
		(void)nn_pk_get(o, "state");
		break;
	case NN_PK_STR:
	case NN_PK_BYTES:
		n += o->u.str.n;
		break;
	case NN_PK_TENSOR:
		n += walk(o->u.tensor.storage, depth + 1, budget);
		break;
	default:
		break;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena a;
	arena_init(&a, 16u << 20);
	const struct nn_pk *root;
	char err[256];
	if (nn_pickle_load(data, size, &a, &root, err, sizeof err) == 0) {
		size_t budget = 1u << 16;
		volatile size_t n = walk(root, 0, &budget);
		(void)n;
	}
	arena_free(&a);
	return 0;
}
