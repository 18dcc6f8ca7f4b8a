/* form.c - see form.h. */
#include "http/form.h"

#include <string.h>

#include "util/err.h"
#include "util/str.h"

int url_decode(struct arena *a, const char *s, size_t n, bool plus_space, char **out)
{
	char *d = arena_alloc(a, n + 1);
	if (!d)
		return SFA_ENOMEM;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= n) /* fewer than two characters left */
				return SFA_EINVAL;
			int h = str_hex_value(s[i + 1]), l = str_hex_value(s[i + 2]);
			if (h < 0 || l < 0)
				return SFA_EINVAL;
			c = (char)(h * 16 + l);
			if (c == '\0')
				return SFA_EINVAL;
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		} else if (c == '\0') {
			return SFA_EINVAL;
		}
		d[j++] = c;
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

int form_parse(struct arena *a, const char *s, size_t n, size_t max_pairs, struct kv_list *out)
{
	size_t n_pairs = 0;
	for (size_t i = 0; i < n; i++)
		n_pairs += s[i] == '&';
	n_pairs++;
	if (n_pairs > max_pairs)
		return SFA_ETOOBIG;
	struct kv *items = arena_alloc(a, n_pairs * sizeof *items);
	if (!items)
		return SFA_ENOMEM;
	size_t k = 0, i = 0;
	while (i < n) {
		size_t end = i;
		while (end < n && s[end] != '&')
			end++;
		if (end > i) {
			const char *eq = memchr(s + i, '=', end - i);
			size_t klen = eq ? (size_t)(eq - (s + i)) : end - i;
			char *key, *val;
			int rc = url_decode(a, s + i, klen, true, &key);
			if (rc)
				return rc;
			if (eq)
				rc = url_decode(a, eq + 1, (size_t)(s + end - (eq + 1)), true,
				                &val);
			else
				rc = url_decode(a, "", 0, true, &val);
			if (rc)
				return rc;
			if (*key) {
				items[k].key = key;
				items[k].value = val;
				k++;
			}
		}
		i = end + 1;
	}
	out->items = items;
	out->n = k;
	return 0;
}

const char *kv_get(const struct kv_list *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->items[i].key, key) == 0)
			return l->items[i].value;
	return NULL;
}

int url_encode(const char *s, char *out, size_t n_out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t j = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
		size_t need = keep ? 1 : 3;
		if (j + need >= n_out)
			return SFA_ETOOBIG;
		if (keep) {
			out[j++] = (char)c;
		} else {
			out[j++] = '%';
			out[j++] = hex[c >> 4];
			out[j++] = hex[c & 15];
		}
	}
	if (j >= n_out)
		return SFA_ETOOBIG;
	out[j] = '\0';
	return (int)j;
}
