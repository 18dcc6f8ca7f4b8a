/* bag.c - see bag.h.
 *
 * The text is split into top-level entries (a line starting at column 0 with `key:`,
 * plus the indented or list lines that follow it). Each value is then parsed by a small
 * recursive-descent reader over the entry's characters, where newlines are plain
 * whitespace inside flow lists and separate items in block lists.
 */
#include "nn/bag.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/str.h"

enum { MAX_ITEMS = 64, MAX_NEST = 3, SCALAR_BYTES = 128 };

struct val {
	int is_list;
	int n;                /* list items */
	struct val *items;    /* malloced when a list */
	char s[SCALAR_BYTES]; /* scalar text */
};

struct rd {
	const char *p, *end;
	int line;
	char *err;
	size_t n_err;
};

static void val_free(struct val *v)
{
	if (v->is_list) {
		for (int i = 0; i < v->n; i++)
			val_free(&v->items[i]);
		free(v->items);
	}
	v->items = NULL;
	v->n = 0;
}

static int rd_fail(struct rd *r, const char *what)
{
	return sfa_err(r->err, r->n_err, SFA_EFORMAT, "bag file line %d: %s", r->line, what);
}

/* Skips spaces, tabs, comments and (when nl) newlines. */
static void skip_ws(struct rd *r, int nl)
{
	while (r->p < r->end) {
		char c = *r->p;
		if (c == ' ' || c == '\t' || c == '\r') {
			r->p++;
		} else if (c == '#') {
			while (r->p < r->end && *r->p != '\n')
				r->p++;
		} else if (c == '\n' && nl) {
			r->line++;
			r->p++;
		} else {
			break;
		}
	}
}

static int read_scalar(struct rd *r, struct val *v, int in_flow)
{
	size_t k = 0;
	v->is_list = 0;
	if (r->p < r->end && (*r->p == '\'' || *r->p == '"')) {
		char q = *r->p++;
		while (r->p < r->end && *r->p != q) {
			if (*r->p == '\n')
				return rd_fail(r, "unterminated quoted string");
			if (k + 1 >= SCALAR_BYTES)
				return rd_fail(r, "string too long");
			v->s[k++] = *r->p++;
		}
		if (r->p >= r->end)
			return rd_fail(r, "unterminated quoted string");
		r->p++;
	} else {
		while (r->p < r->end) {
			char c = *r->p;
			if (c == '\n' || c == '#' ||
			    (in_flow && (c == ',' || c == ']' || c == '[')))
				break;
			if (k + 1 >= SCALAR_BYTES)
				return rd_fail(r, "value too long");
			v->s[k++] = c;
			r->p++;
		}
		while (k > 0 && (v->s[k - 1] == ' ' || v->s[k - 1] == '\t' || v->s[k - 1] == '\r'))
			k--;
		if (k == 0)
			return rd_fail(r, "empty value");
	}
	v->s[k] = 0;
	return 0;
}

static int list_push(struct rd *r, struct val *v, struct val *item)
{
	if (v->n >= MAX_ITEMS)
		return rd_fail(r, "list too long");
	if (!v->items) {
		v->items = calloc(MAX_ITEMS, sizeof *v->items);
		if (!v->items)
			return sfa_err(r->err, r->n_err, SFA_ENOMEM, "out of memory");
	}
	v->items[v->n++] = *item;
	return 0;
}

static int read_value(struct rd *r, struct val *v, int depth, int in_flow);

static int read_flow_list(struct rd *r, struct val *v, int depth)
{
	if (depth >= MAX_NEST)
		return rd_fail(r, "lists nested too deeply");
	r->p++; /* '[' */
	v->is_list = 1;
	for (;;) {
		skip_ws(r, 1);
		if (r->p >= r->end)
			return rd_fail(r, "unterminated '['");
		if (*r->p == ']') {
			r->p++;
			return 0;
		}
		struct val item = {0};
		int rc = read_value(r, &item, depth + 1, 1);
		if (rc == 0)
			rc = list_push(r, v, &item);
		if (rc) {
			val_free(&item);
			return rc;
		}
		skip_ws(r, 1);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			return 0;
		}
		return rd_fail(r, "expected ',' or ']' in a list");
	}
}

static int read_value(struct rd *r, struct val *v, int depth, int in_flow)
{
	skip_ws(r, in_flow);
	if (r->p < r->end && *r->p == '[')
		return read_flow_list(r, v, depth);
	return read_scalar(r, v, in_flow);
}

/* A block list: lines "- value" (value may be a flow list). */
static int read_block_list(struct rd *r, struct val *v)
{
	v->is_list = 1;
	for (;;) {
		skip_ws(r, 1);
		if (r->p >= r->end || *r->p != '-')
			return v->n ? 0 : rd_fail(r, "expected '- item' in a list"); /* list ends */
		r->p++;
		struct val item = {0};
		int rc = read_value(r, &item, 1, 0);
		if (rc == 0)
			rc = list_push(r, v, &item);
		if (rc) {
			val_free(&item);
			return rc;
		}
		skip_ws(r, 0);
		if (r->p < r->end && *r->p != '\n')
			return rd_fail(r, "unexpected text after a list item");
	}
}

static int valid_member(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= NN_BAG_NAME_BYTES || s[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return 0;
	}
	return 1;
}

static int apply_key(struct rd *r, const char *key, struct val *v, struct nn_bag_spec *out)
{
	if (strcmp(key, "models") == 0) {
		if (!v->is_list || v->n < 1 || v->n > NN_MAX_MEMBERS)
			return rd_fail(r, "'models' must be a list of 1 to 8 names");
		for (int i = 0; i < v->n; i++) {
			if (v->items[i].is_list || !valid_member(v->items[i].s))
				return rd_fail(r,
				               "'models' has a name that is not a plain file name");
			memcpy(out->models[i], v->items[i].s, strlen(v->items[i].s) + 1);
		}
		out->n_models = v->n;
	} else if (strcmp(key, "weights") == 0) {
		if (!v->is_list || v->n < 1 || v->n > NN_MAX_MEMBERS)
			return rd_fail(r, "'weights' must be a list of rows");
		int cols = -1;
		for (int i = 0; i < v->n; i++) {
			struct val *row = &v->items[i];
			if (!row->is_list || row->n < 1 || row->n > NN_MAX_STEMS ||
			    (cols >= 0 && row->n != cols))
				return rd_fail(r, "'weights' rows must be lists of equal length");
			cols = row->n;
			for (int j = 0; j < row->n; j++) {
				double d;
				if (row->items[j].is_list ||
				    str_to_double(row->items[j].s, -DBL_MAX, DBL_MAX, &d) || d < 0)
					return rd_fail(
						r,
						"'weights' holds something that is not a number >= 0");
				out->weights[i][j] = d;
			}
		}
		out->has_weights = true;
		out->n_weight_cols = cols;
		out->n_weight_rows = v->n;
	} else if (strcmp(key, "segment") == 0) {
		double d;
		if (v->is_list || str_to_double(v->s, -DBL_MAX, DBL_MAX, &d) || !(d > 0) ||
		    d > 3600)
			return rd_fail(r, "'segment' must be a number of seconds");
		out->has_segment = true;
		out->segment_s = d;
	}
	return 0;
}

int nn_bag_parse(const char *text, size_t n, struct nn_bag_spec *out, char *err, size_t n_err)
{
	if (n > NN_BAG_MAX_BYTES)
		return sfa_err(err, n_err, SFA_ETOOBIG, "bag file larger than %d bytes",
		               NN_BAG_MAX_BYTES);
	struct nn_bag_spec spec;
	memset(&spec, 0, sizeof spec);
	struct rd r = {.p = text, .end = text + n, .line = 1, .err = err, .n_err = n_err};
	if (memchr(text, 0, n))
		return rd_fail(&r, "NUL byte in a text file");
	int rc = 0;
	while (rc == 0) {
		skip_ws(&r, 1);
		if (r.p >= r.end)
			break;
		/* A top-level key must start its line. */
		if (r.p > text && r.p[-1] != '\n')
			return rd_fail(&r, "expected a key at the start of a line");
		const char *k0 = r.p;
		while (r.p < r.end && *r.p != ':' && *r.p != '\n')
			r.p++;
		if (r.p >= r.end || *r.p != ':' || r.p == k0 || r.p - k0 >= 32)
			return rd_fail(&r, "expected 'key: value'");
		char key[32];
		memcpy(key, k0, (size_t)(r.p - k0));
		key[r.p - k0] = 0;
		r.p++;
		struct val v = {0};
		skip_ws(&r, 0);
		if (r.p >= r.end || *r.p == '\n') {
			/* Block list on the following lines (or an empty value at the end). */
			const char *save = r.p;
			int save_line = r.line;
			skip_ws(&r, 1);
			if (r.p < r.end && *r.p == '-') {
				rc = read_block_list(&r, &v);
			} else {
				r.p = save;
				r.line = save_line;
				rc = rd_fail(&r, "missing value");
			}
		} else {
			rc = read_value(&r, &v, 0, 0);
			if (rc == 0) {
				skip_ws(&r, 0);
				if (r.p < r.end && *r.p != '\n')
					rc = rd_fail(&r, "unexpected text after a value");
			}
		}
		if (rc == 0)
			rc = apply_key(&r, key, &v, &spec);
		val_free(&v);
	}
	if (rc)
		return rc;
	if (spec.n_models == 0)
		return sfa_err(err, n_err, SFA_EFORMAT, "bag file has no 'models' list");
	if (spec.has_weights && spec.n_weight_rows != spec.n_models)
		return sfa_err(err, n_err, SFA_EFORMAT, "bag file has %d weight rows for %d models",
		               spec.n_weight_rows, spec.n_models);
	*out = spec;
	return 0;
}
