/* str.h - a growable byte buffer with a hard cap, and small string helpers.
 *
 * struct buf owns its heap memory (buf_free releases it). Every append fails with
 * SFA_ETOOBIG once len would pass cap_bytes, so a buffer fed from the network can never
 * grow without bound. Not thread-safe; one owner at a time.
 */
#ifndef SFA_UTIL_STR_H
#define SFA_UTIL_STR_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
	char *data; /* always NUL-terminated when non-NULL */
	size_t len;
	size_t alloc;
	size_t cap_bytes;
};

void buf_init(struct buf *b, size_t cap_bytes);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (who frees it with free()) and resets b. Never NULL. */
char *buf_steal(struct buf *b);
void buf_free(struct buf *b);

/* Safe bounded copy: always NUL-terminates (n_dst > 0); returns strlen(src). */
size_t str_copy(char *dst, size_t n_dst, const char *src);
/* Case-insensitive ASCII comparison of a NUL-terminated string with n bytes. */
bool str_ieq_n(const char *a, const char *b, size_t n);
bool str_starts_with(const char *s, const char *prefix);
/* Parses a whole decimal integer in [min, max]; returns 0 or SFA_EINVAL. */
int str_to_long(const char *s, long min, long max, long *out);
/* Parses a whole finite number in [min, max] (strtod's syntax); returns 0 or SFA_EINVAL. */
int str_to_double(const char *s, double min, double max, double *out);
/* The value of hex digit c (0..15), or -1 when c is not one. */
int str_hex_value(char c);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void str_hex(const unsigned char *p, size_t n, char *out);
/* Constant-time comparison of two NUL-terminated strings of possibly different length. */
bool str_secure_eq(const char *a, const char *b);
/* A lower-case ASCII slug of UTF-8 text for file names: letters and digits kept (Latin-1
 * accented letters lose their accent), every other run of characters becomes one '-',
 * no '-' at either end, at most n_out - 1 bytes. Returns the
 * slug's length; 0 (an empty slug) when the text holds no letter or digit. */
size_t str_slug(const char *in, char *out, size_t n_out);

#endif
