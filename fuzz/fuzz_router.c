/* libFuzzer harness: path matching (http/router.c) against a table shaped like the
 * service's, including :params and a *splat. The first byte picks the method. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void h(struct http_ctx *c) { (void)c; }

static const struct route routes[] = {
	{"GET", "/", h, 0},
	{"GET", "/health", h, 0},
	{"GET", "/api/tracks/:id", h, 0},
	{"DELETE", "/api/tracks/:id", h, 0},
	{"GET", "/api/jobs/:id/items/:item", h, 0},
	{"GET", "/files/*path", h, 0},
	{"POST", "/users/log-in", h, 0},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const methods[] = {"GET", "POST", "DELETE", "HEAD"};
	if (size < 1)
		return 0;
	const char *method = methods[data[0] % 4];
	char *path = malloc(size);
	if (!path)
		return 0;
	memcpy(path, data + 1, size - 1);
	path[size - 1] = '\0';
	struct arena a;
	arena_init(&a, 1 << 20);
	struct route_match m;
	int rc = router_match(routes, sizeof routes / sizeof routes[0], method, path, &a, &m);
	if (rc == ROUTER_FOUND) {
		if (!m.route)
			__builtin_trap();
		for (int i = 0; i < m.n_params; i++)
			if (!m.names[i] || !m.values[i])
				__builtin_trap();
	}
	arena_free(&a);
	free(path);
	return 0;
}
