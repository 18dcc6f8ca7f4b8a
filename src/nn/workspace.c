/* workspace.c - see workspace.h. */
#include "nn/workspace.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { WS_ALIGN = 64 };

void nn_ws_init(struct nn_ws *ws, size_t reserve_bytes)
{
	ws->base = NULL;
	ws->reserve_bytes = reserve_bytes ? reserve_bytes
	                                  : (size_t)NN_WS_DEFAULT_RESERVE_MB * 1024 * 1024;
	ws->top_bytes = 0;
	ws->peak_bytes = 0;
	ws->failed = false;
}

void *nn_ws_bytes(struct nn_ws *ws, size_t n)
{
	if (!ws->base) {
		void *p = mmap(NULL, ws->reserve_bytes, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) {
			ws->failed = true;
			return NULL;
		}
		ws->base = p;
	}
	size_t need = (n + WS_ALIGN - 1) & ~(size_t)(WS_ALIGN - 1);
	if (need < n || need > ws->reserve_bytes - ws->top_bytes) {
		ws->failed = true;
		return NULL;
	}
	void *p = ws->base + ws->top_bytes;
	ws->top_bytes += need;
	if (ws->top_bytes > ws->peak_bytes)
		ws->peak_bytes = ws->top_bytes;
	return p;
}

float *nn_ws_floats(struct nn_ws *ws, size_t n)
{
	if (n > SIZE_MAX / sizeof(float)) {
		ws->failed = true;
		return NULL;
	}
	return nn_ws_bytes(ws, n * sizeof(float));
}

float *nn_ws_copy(struct nn_ws *ws, const float *x, size_t n)
{
	float *p = nn_ws_floats(ws, n);
	if (p)
		memcpy(p, x, n * sizeof *p);
	return p;
}

size_t nn_ws_mark(const struct nn_ws *ws) { return ws->top_bytes; }

void nn_ws_release(struct nn_ws *ws, size_t mark)
{
	if (mark < ws->top_bytes)
		ws->top_bytes = mark;
}

void nn_ws_reset(struct nn_ws *ws)
{
	ws->top_bytes = 0;
	ws->failed = false;
}

void nn_ws_trim(struct nn_ws *ws)
{
	if (!ws->base)
		return;
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096;
	size_t from = (ws->top_bytes + page - 1) / page * page;
	size_t to = (ws->peak_bytes + page - 1) / page * page;
	if (to > ws->reserve_bytes)
		to = ws->reserve_bytes;
	if (to > from)
		madvise(ws->base + from, to - from, MADV_DONTNEED);
}

void nn_ws_free(struct nn_ws *ws)
{
	if (ws->base)
		munmap(ws->base, ws->reserve_bytes);
	nn_ws_init(ws, ws->reserve_bytes);
}
