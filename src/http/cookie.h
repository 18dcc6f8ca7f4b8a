/* cookie.h - the Cookie request header and Set-Cookie values (RFC 6265).
 *
 * cookie_parse splits "a=1; b=2" into pairs in the arena. Malformed pairs (no '=', an
 * empty name, characters outside cookie-octet) are skipped rather than failing the whole
 * header, as browsers do; a header over COOKIE_HEADER_MAX bytes or with more than
 * COOKIE_MAX_PAIRS pairs is SFA_ETOOBIG. Values are not decoded: ours are base64url.
 *
 * Threading: pure functions; the arena (and so the pairs) is the caller's, one thread.
 */
#ifndef SFA_HTTP_COOKIE_H
#define SFA_HTTP_COOKIE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/form.h"

enum { COOKIE_HEADER_MAX = 8192, COOKIE_MAX_PAIRS = 64 };

int cookie_parse(struct arena *a, const char *header, struct kv_list *out);

/* Formats a Set-Cookie value: name=value; Path=/; HttpOnly; SameSite=Lax, with
 * Max-Age when max_age_s >= 0 (0 deletes the cookie) and Secure when secure. */
int cookie_format(char *out, size_t n_out, const char *name, const char *value, long max_age_s,
                  bool secure);

#endif
