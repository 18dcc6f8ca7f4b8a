/* str.c - see str.h. */
#include "util/str.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"

void buf_init(struct buf *b, size_t cap_bytes)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap_bytes = cap_bytes;
}

static int buf_reserve(struct buf *b, size_t extra)
{
	if (extra > b->cap_bytes || b->len > b->cap_bytes - extra)
		return SFA_ETOOBIG;
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t alloc = b->alloc ? b->alloc : 256;
	while (alloc < need)
		alloc *= 2;
	char *p = realloc(b->data, alloc);
	if (!p)
		return SFA_ENOMEM;
	b->data = p;
	b->alloc = alloc;
	return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return SFA_EINVAL;
	int rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *buf_steal(struct buf *b)
{
	char *p = b->data;
	if (!p)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = b->alloc = 0;
	return p;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->alloc = 0;
}

size_t str_copy(char *dst, size_t n_dst, const char *src)
{
	size_t n = strlen(src);
	if (n_dst) {
		size_t k = n < n_dst - 1 ? n : n_dst - 1;
		memcpy(dst, src, k);
		dst[k] = '\0';
	}
	return n;
}

bool str_ieq_n(const char *a, const char *b, size_t n)
{
	return strlen(a) == n && strncasecmp(a, b, n) == 0;
}

bool str_starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int str_to_long(const char *s, long min, long max, long *out)
{
	if (!s || !*s)
		return SFA_EINVAL;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return SFA_EINVAL;
	*out = v;
	return 0;
}

int str_to_double(const char *s, double min, double max, double *out)
{
	if (!s || !*s)
		return SFA_EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !(v >= min && v <= max))
		return SFA_EINVAL;
	*out = v;
	return 0;
}

int str_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void str_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

bool str_secure_eq(const char *a, const char *b)
{
	size_t na = strlen(a), nb = strlen(b);
	unsigned char diff = (unsigned char)(na != nb);
	size_t n = na < nb ? na : nb;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

size_t str_slug(const char *in, char *out, size_t n_out)
{
	/* U+00C0..U+00FF without their accents ('-' for the two signs among them). */
	static const char latin1[] =
		"aaaaaaaceeeeiiiidnooooo-ouuuuytsaaaaaaaceeeeiiiidnooooo-ouuuuyty";
	if (n_out == 0)
		return 0;
	size_t k = 0;
	bool dash = false;
	for (const unsigned char *p = (const unsigned char *)in; *p && k + 1 < n_out;) {
		char c = 0;
		if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
			c = (char)*p++;
		} else if (*p >= 'A' && *p <= 'Z') {
			c = (char)(*p++ + 32);
		} else if (*p == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF) {
			c = latin1[p[1] - 0x80];
			p += 2;
			if (c == '-')
				c = 0;
		} else {
			p++;
		}
		if (!c) {
			dash = k > 0;
			continue;
		}
		if (dash) {
			if (k + 2 >= n_out)
				break;
			out[k++] = '-';
			dash = false;
		}
		out[k++] = c;
	}
	out[k] = '\0';
	return k;
}
