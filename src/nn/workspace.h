/* workspace.h - the per-worker scratch arena of the nn engine.
 *
 * A forward pass allocates its activations from a stack: nn_ws_mark() remembers the top,
 * nn_ws_release() pops back to it. The stack lives in one large reservation of virtual
 * memory (mmap, MAP_NORESERVE): pages become resident the first time a segment touches
 * them and stay resident for the next segments, so after the first segment a worker runs
 * without page faults and without ever calling the system allocator; resident memory is
 * the peak of the stack, nothing more (no per-allocation malloc/free churn, no heap
 * fragmentation across threads).
 *
 * Memory comes back 64-byte aligned (cache line, AVX-512). A workspace belongs to one
 * thread at a time. Allocation failure (past the reservation) sets ws->failed, which the
 * forward pass checks once per layer, so kernels do not each carry an error path.
 */
#ifndef SFA_NN_WORKSPACE_H
#define SFA_NN_WORKSPACE_H

#include <stdbool.h>
#include <stddef.h>

enum { NN_WS_DEFAULT_RESERVE_MB = 4096 };

struct nn_ws {
	unsigned char *base; /* the reservation, mapped on first use */
	size_t reserve_bytes;
	size_t top_bytes;
	size_t peak_bytes;
	bool failed; /* an allocation failed since the last reset */
};

/* reserve_bytes: the most the stack may hold (0 = NN_WS_DEFAULT_RESERVE_MB). */
void nn_ws_init(struct nn_ws *ws, size_t reserve_bytes);
/* Returns n floats of uninitialised, 64-byte aligned memory, or NULL (and sets failed).
 * The memory is the workspace's: it is given back by nn_ws_release to an earlier mark,
 * never freed by the caller. */
float *nn_ws_floats(struct nn_ws *ws, size_t n);
/* nn_ws_floats(ws, n) holding a copy of x[0..n), or NULL. */
float *nn_ws_copy(struct nn_ws *ws, const float *x, size_t n);
void *nn_ws_bytes(struct nn_ws *ws, size_t n);
size_t nn_ws_mark(const struct nn_ws *ws);
void nn_ws_release(struct nn_ws *ws, size_t mark);
/* Pops everything and clears the failure flag; resident pages are kept for reuse. */
void nn_ws_reset(struct nn_ws *ws);
/* Gives the pages above the top back to the kernel, which hands out zeroed pages when
 * they are touched again: for a worker that sits idle while something else needs the
 * memory. */
void nn_ws_trim(struct nn_ws *ws);
/* Unmaps the reservation. */
void nn_ws_free(struct nn_ws *ws);

#endif
