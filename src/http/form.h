/* form.h - application/x-www-form-urlencoded bodies and query strings.
 *
 * Parsing never modifies its input; keys and values are decoded copies in the caller's
 * arena ('+' is a space, %XX a byte). Inputs with a bad escape or a decoded NUL byte
 * are rejected whole (SFA_EINVAL), more than max_pairs pairs is SFA_ETOOBIG, and an
 * exhausted arena is SFA_ENOMEM: the caller answers 400/413 and nothing half-parsed is
 * used. Pairs keep their order; repeated keys are kept (kv_get returns the first).
 *
 * Threading: pure functions; the arena (and so the pairs) is the caller's, one thread.
 */
#ifndef SFA_HTTP_FORM_H
#define SFA_HTTP_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "util/arena.h"

struct kv {
	const char *key;
	const char *value;
};

struct kv_list {
	struct kv *items; /* in the arena */
	size_t n;
};

enum { FORM_MAX_PAIRS = 256 };

int form_parse(struct arena *a, const char *s, size_t n, size_t max_pairs, struct kv_list *out);
/* Percent-decodes n bytes of s into the arena; plus_space turns '+' into ' '. */
int url_decode(struct arena *a, const char *s, size_t n, bool plus_space, char **out);
/* The value of key (in l's arena), or NULL. */
const char *kv_get(const struct kv_list *l, const char *key);
/* Appends s percent-encoded (RFC 3986 unreserved kept) to out; returns bytes written
 * or a negative code when out is too small. */
int url_encode(const char *s, char *out, size_t n_out);

#endif
