/* utf8.c - see utf8.h. */
#include "util/utf8.h"

#include <string.h>

bool utf8_step(struct utf8_check *u, uint8_t c)
{
	if (u->need == 0) {
		if (c < 0x80)
			return true;
		u->lo = 0x80;
		u->hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF) {
			u->need = 1;
		} else if (c == 0xE0) {
			u->need = 2;
			u->lo = 0xA0; /* no overlong 3-byte forms */
		} else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
			u->need = 2;
		} else if (c == 0xED) {
			u->need = 2;
			u->hi = 0x9F; /* no UTF-16 surrogates */
		} else if (c == 0xF0) {
			u->need = 3;
			u->lo = 0x90; /* no overlong 4-byte forms */
		} else if (c >= 0xF1 && c <= 0xF3) {
			u->need = 3;
		} else if (c == 0xF4) {
			u->need = 3;
			u->hi = 0x8F; /* nothing past U+10FFFF */
		} else {
			return false;
		}
		return true;
	}
	if (c < u->lo || c > u->hi)
		return false;
	u->need--;
	u->lo = 0x80;
	u->hi = 0xBF;
	return true;
}

bool utf8_valid(const void *p, size_t n)
{
	const uint8_t *b = p;
	struct utf8_check u = {0};
	for (size_t i = 0; i < n; i++)
		if (!utf8_step(&u, b[i]))
			return false;
	return u.need == 0;
}

bool utf8_or_latin1(const char *s, char *out, size_t n_out)
{
	if (n_out == 0)
		return utf8_valid(s, strlen(s));
	size_t n = strlen(s);
	bool valid = utf8_valid(s, n);
	size_t j = 0;
	if (valid) {
		/* Cut at a character boundary when out is too small. */
		if (n >= n_out) {
			n = n_out - 1;
			while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80)
				n--;
		}
		memcpy(out, s, n);
		j = n;
	} else {
		for (size_t i = 0; i < n; i++) {
			uint8_t c = (uint8_t)s[i];
			size_t w = c < 0x80 ? 1 : 2;
			if (j + w >= n_out)
				break;
			if (c < 0x80) {
				out[j++] = (char)c;
			} else {
				out[j++] = (char)(0xC0 | (c >> 6));
				out[j++] = (char)(0x80 | (c & 0x3F));
			}
		}
	}
	out[j] = '\0';
	return valid;
}
