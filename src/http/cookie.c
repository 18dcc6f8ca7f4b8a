/* cookie.c - see cookie.h. */
#include "http/cookie.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"

static bool cookie_octet(unsigned char c)
{
	/* RFC 6265 cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
	return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
	       (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

static bool token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7F && !strchr("()<>@,;:\\\"/[]?={}", c);
}

int cookie_parse(struct arena *a, const char *header, struct kv_list *out)
{
	size_t n = strlen(header);
	if (n > COOKIE_HEADER_MAX)
		return SFA_ETOOBIG;
	struct kv *items = arena_alloc(a, COOKIE_MAX_PAIRS * sizeof *items);
	if (!items)
		return SFA_ENOMEM;
	size_t k = 0, i = 0;
	while (i < n) {
		while (i < n && (header[i] == ' ' || header[i] == '\t' || header[i] == ';'))
			i++;
		size_t start = i;
		while (i < n && header[i] != ';')
			i++;
		size_t end = i;
		while (end > start && (header[end - 1] == ' ' || header[end - 1] == '\t'))
			end--;
		if (end == start)
			continue;
		const char *eq = memchr(header + start, '=', end - start);
		if (!eq)
			continue;
		size_t nlen = (size_t)(eq - (header + start));
		const char *v = eq + 1;
		size_t vlen = (size_t)(header + end - v);
		if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
			v++;
			vlen -= 2;
		}
		bool ok = nlen > 0;
		for (size_t j = 0; ok && j < nlen; j++)
			ok = token_char((unsigned char)header[start + j]);
		for (size_t j = 0; ok && j < vlen; j++)
			ok = cookie_octet((unsigned char)v[j]);
		if (!ok)
			continue;
		if (k == COOKIE_MAX_PAIRS)
			return SFA_ETOOBIG;
		char *key = arena_strndup(a, header + start, nlen);
		char *val = arena_strndup(a, v, vlen);
		if (!key || !val)
			return SFA_ENOMEM;
		items[k].key = key;
		items[k].value = val;
		k++;
	}
	out->items = items;
	out->n = k;
	return 0;
}

int cookie_format(char *out, size_t n_out, const char *name, const char *value, long max_age_s,
                  bool secure)
{
	char age[48] = "";
	if (max_age_s >= 0)
		snprintf(age, sizeof age, "; Max-Age=%ld", max_age_s);
	int n = snprintf(out, n_out, "%s=%s; Path=/%s; HttpOnly; SameSite=Lax%s", name, value, age,
	                 secure ? "; Secure" : "");
	return n < 0 || (size_t)n >= n_out ? SFA_ETOOBIG : 0;
}
