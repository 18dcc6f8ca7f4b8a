/* utf8.h - UTF-8 validation (strict: no overlong forms, no surrogates, nothing past
 * U+10FFFF) and the lenient reading of text from outside that may not be UTF-8.
 * Pure functions; thread-safe. */
#ifndef SFA_UTIL_UTF8_H
#define SFA_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Incremental validation: zero-initialise; utf8_step returns false on the first invalid
 * byte; a complete text also needs need == 0 at its end. */
struct utf8_check {
	uint8_t need;   /* continuation bytes still expected */
	uint8_t lo, hi; /* the range allowed for the next continuation byte */
};

bool utf8_step(struct utf8_check *u, uint8_t c);
bool utf8_valid(const void *p, size_t n);

/* Copies the NUL-terminated text s into out (n_out bytes, NUL-terminated, never cut inside
 * a character). Text that is not valid UTF-8 is read as ISO-8859-1, the usual encoding of
 * such tags, so every byte becomes a character and nothing is lost or rejected. Returns
 * whether s was valid UTF-8. */
bool utf8_or_latin1(const char *s, char *out, size_t n_out);

#endif
