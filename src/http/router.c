/* router.c - see router.h.
 *
 * The path is split into decoded segments once; each route's pattern is walked segment
 * by segment against them. Tables are small (tens of routes), so a linear scan is both
 * the simplest and, at this size, the fastest structure.
 */
#include "http/router.h"

#include <stdbool.h>
#include <string.h>

#include "http/form.h"
#include "util/err.h"

enum { MAX_SEGMENTS = 64 };

struct segments {
	int n;
	char *s[MAX_SEGMENTS];
};

static int split_path(const char *path, struct arena *a, struct segments *out)
{
	size_t len = strlen(path);
	if (len > ROUTER_PATH_MAX)
		return SFA_ETOOBIG;
	if (path[0] != '/')
		return SFA_EINVAL;
	out->n = 0;
	if (len == 1)
		return 0;
	const char *p = path + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 0)
			return SFA_EINVAL; /* "//" or a trailing slash */
		if (out->n == MAX_SEGMENTS)
			return SFA_EINVAL;
		char *seg;
		int rc = url_decode(a, p, n, false, &seg);
		if (rc)
			return rc;
		out->s[out->n++] = seg;
		if (!slash)
			return 0;
		p = slash + 1;
	}
}

/* Matches one pattern; on success fills params (names copied into the arena). */
static bool match_pattern(const char *pattern, const struct segments *segs, struct arena *a,
                          struct route_match *m)
{
	int si = 0;
	m->n_params = 0;
	const char *p = pattern;
	if (*p == '/')
		p++;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (*p == '*') {
			/* The rest of the path, at least one segment, joined with '/'. */
			if (si >= segs->n || m->n_params == ROUTER_MAX_PARAMS)
				return false;
			size_t total = 0;
			for (int i = si; i < segs->n; i++)
				total += strlen(segs->s[i]) + 1;
			char *v = arena_alloc(a, total);
			if (!v)
				return false;
			v[0] = '\0';
			size_t off = 0;
			for (int i = si; i < segs->n; i++) {
				size_t l = strlen(segs->s[i]);
				if (i > si)
					v[off++] = '/';
				memcpy(v + off, segs->s[i], l);
				off += l;
			}
			v[off] = '\0';
			m->names[m->n_params] = arena_strndup(a, p + 1, n - 1);
			m->values[m->n_params++] = v;
			return m->names[m->n_params - 1] != NULL;
		}
		if (si >= segs->n)
			return false;
		if (*p == ':') {
			if (m->n_params == ROUTER_MAX_PARAMS)
				return false;
			m->names[m->n_params] = arena_strndup(a, p + 1, n - 1);
			m->values[m->n_params++] = segs->s[si];
		} else if (strlen(segs->s[si]) != n || memcmp(segs->s[si], p, n) != 0) {
			return false;
		}
		si++;
		if (!slash)
			break;
		p = slash + 1;
	}
	return si == segs->n;
}

int router_match(const struct route *routes, size_t n_routes, const char *method, const char *path,
                 struct arena *a, struct route_match *m)
{
	struct segments segs;
	int rc = split_path(path, a, &segs);
	memset(m, 0, sizeof *m);
	if (rc == SFA_EINVAL)
		return ROUTER_NO_PATH;
	if (rc)
		return rc;
	const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
	bool path_seen = false;
	for (size_t i = 0; i < n_routes; i++) {
		struct route_match tmp;
		memset(&tmp, 0, sizeof tmp);
		if (!match_pattern(routes[i].pattern, &segs, a, &tmp))
			continue;
		if (strcmp(routes[i].method, want) == 0) {
			tmp.route = &routes[i];
			*m = tmp;
			return ROUTER_FOUND;
		}
		/* Collect the allowed methods for a 405, without duplicates. */
		if (!strstr(m->allow, routes[i].method)) {
			size_t used = strlen(m->allow);
			size_t add = strlen(routes[i].method) + (used ? 2 : 0);
			if (used + add < sizeof m->allow) {
				if (used)
					strncat(m->allow, ", ", sizeof m->allow - used - 1);
				strncat(m->allow, routes[i].method,
				        sizeof m->allow - strlen(m->allow) - 1);
			}
		}
		path_seen = true;
	}
	return path_seen ? ROUTER_NO_METHOD : ROUTER_NO_PATH;
}

const char *route_param(const struct route_match *m, const char *name)
{
	for (int i = 0; i < m->n_params; i++)
		if (strcmp(m->names[i], name) == 0)
			return m->values[i];
	return NULL;
}
