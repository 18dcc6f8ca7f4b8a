/* router.h - method + path pattern matching.
 *
 * Patterns are literal segments, ":name" (one segment) and "*name" (the rest of the
 * path, last only), e.g. "/api/tracks/:id" and "/files/" + "*path". Path segments are
 * percent-decoded after splitting, so "%2F" inside a segment never creates a new segment; a decoded NUL,
 * a bad escape or an empty segment ("//") matches nothing. HEAD matches GET routes.
 * Routes are tried in table order; the first match wins. Pure functions, thread-safe.
 */
#ifndef SFA_HTTP_ROUTER_H
#define SFA_HTTP_ROUTER_H

#include <stddef.h>

#include "util/arena.h"

struct http_ctx;
typedef void (*http_handler)(struct http_ctx *ctx);
/* Consumes a chunk of a streamed request body; non-zero stops reading it (the function
 * has set the error response). */
typedef int (*http_body_fn)(struct http_ctx *ctx, const char *data, size_t n);

struct route {
	const char *method;
	const char *pattern;
	http_handler handler;
	unsigned flags;    /* interpreted by the dispatcher (api/routes.c) */
	http_body_fn body; /* NULL: the server buffers the body (up to 1 MiB) */
};

enum { ROUTER_MAX_PARAMS = 8, ROUTER_PATH_MAX = 4096 };

struct route_match {
	const struct route *route;
	int n_params;
	const char *names[ROUTER_MAX_PARAMS];  /* point into the pattern (NUL-terminated copies) */
	const char *values[ROUTER_MAX_PARAMS]; /* decoded, in the arena */
	char allow[96];                        /* for 405: "GET, POST" */
};

enum router_result { ROUTER_FOUND = 0, ROUTER_NO_PATH = 1, ROUTER_NO_METHOD = 2 };

/* Returns a router_result, or SFA_ENOMEM/SFA_ETOOBIG (negative) on arena exhaustion or a
 * path longer than ROUTER_PATH_MAX. */
int router_match(const struct route *routes, size_t n_routes, const char *method, const char *path,
                 struct arena *a, struct route_match *m);
/* The value of :name in the matched path, or NULL: it lives in the arena m was matched
 * in, freed with it. */
const char *route_param(const struct route_match *m, const char *name);

#endif
