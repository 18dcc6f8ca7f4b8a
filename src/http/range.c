/* range.c - see range.h. */
#include "http/range.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

/* Reads 1..19 decimal digits; returns false on none, overflow or too many. */
static bool read_num(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	int n = 0;
	while (*s >= '0' && *s <= '9') {
		if (++n > 19)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		s++;
	}
	if (n == 0)
		return false;
	*p = s;
	*out = v;
	return true;
}

static void skip_ows(const char **p)
{
	while (**p == ' ' || **p == '\t')
		(*p)++;
}

enum http_range_result http_range_parse(const char *header, uint64_t size, uint64_t *first,
                                        uint64_t *len)
{
	if (!header)
		return RANGE_NONE;
	const char *p = header;
	skip_ows(&p);
	if (strncasecmp(p, "bytes", 5) != 0)
		return RANGE_NONE;
	p += 5;
	skip_ows(&p);
	if (*p++ != '=')
		return RANGE_NONE;
	skip_ows(&p);
	uint64_t a = 0, b = 0;
	bool has_a = read_num(&p, &a);
	if (*p++ != '-')
		return RANGE_NONE;
	bool has_b = read_num(&p, &b);
	skip_ows(&p);
	if (*p != '\0')
		return RANGE_NONE; /* a list of ranges or trailing junk: serve it whole */
	if (!has_a && !has_b)
		return RANGE_NONE;
	if (!has_a) { /* suffix: the last b bytes */
		if (b == 0)
			return RANGE_UNSATISFIABLE;
		if (size == 0)
			return RANGE_UNSATISFIABLE;
		*len = b < size ? b : size;
		*first = size - *len;
		return RANGE_PARTIAL;
	}
	if (has_b && b < a)
		return RANGE_NONE; /* invalid: ignore */
	if (a >= size)
		return RANGE_UNSATISFIABLE;
	uint64_t last = has_b && b < size - 1 ? b : size - 1;
	*first = a;
	*len = last - a + 1;
	return RANGE_PARTIAL;
}
