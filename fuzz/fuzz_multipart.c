/* libFuzzer harness: the streaming multipart/form-data parser (http/multipart.c).
 *
 * Input layout: byte 0 picks the chunk size (0: the whole body at once), byte 1 picks
 * small or default limits and whether a callback aborts; the rest up to the first '\n'
 * is a Content-Type header for multipart_boundary (when it yields no boundary, "XyZ" is
 * used), and the bytes after it are the body. The body is parsed twice, whole and in
 * chunks, and the two runs must agree on the result, the message and every callback
 * (file data concatenated): the parser's output may not depend on how TCP cut the body.
 * Callbacks also check what the header promises about names and filenames.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	uint64_t hash;
	uint64_t n_file_bytes;
	bool in_part, in_file;
	size_t n_begun;
	size_t abort_index; /* SIZE_MAX: never */
};

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static void mix(struct run *r, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		r->hash ^= b[i];
		r->hash *= 1099511628211ull;
	}
}

static void mix_str(struct run *r, const char *s)
{
	if (s)
		mix(r, s, strlen(s) + 1);
	else
		mix(r, "\xff", 1);
}

static int on_begin(void *arg, const struct multipart_part *p)
{
	struct run *r = arg;
	check(!r->in_part);
	check(p->index == r->n_begun);
	check(p->name && p->name[0]);
	if (p->filename) {
		const char *f = p->filename;
		check(!strchr(f, '/') && !strchr(f, '\\'));
		check(strcmp(f, ".") != 0 && strcmp(f, "..") != 0);
		for (const unsigned char *c = (const unsigned char *)f; *c; c++)
			check(*c >= 0x20 && *c != 0x7F);
	}
	r->n_begun++;
	if (p->index == r->abort_index)
		return 7;
	r->in_part = true;
	r->in_file = p->filename != NULL;
	mix(r, "B", 1);
	mix_str(r, p->name);
	mix_str(r, p->filename);
	mix_str(r, p->content_type);
	return 0;
}

static int on_data(void *arg, const char *d, size_t n)
{
	struct run *r = arg;
	check(r->in_part && r->in_file && n > 0);
	mix(r, d, n);
	r->n_file_bytes += n;
	return 0;
}

static int on_field(void *arg, const char *name, const char *value, size_t n)
{
	struct run *r = arg;
	check(r->in_part && !r->in_file && name && name[0] && value[n] == '\0');
	mix(r, "F", 1);
	mix(r, &n, sizeof n);
	mix(r, value, n);
	return 0;
}

static int on_end(void *arg)
{
	struct run *r = arg;
	check(r->in_part);
	r->in_part = false;
	mix(r, "E", 1);
	return 0;
}

static const struct multipart_callbacks callbacks = {on_begin, on_data, on_field, on_end};

static int parse(const char *boundary, const struct multipart_limits *lim, const char *body,
                 size_t n, size_t chunk, size_t abort_index, struct run *r, char *err)
{
	memset(r, 0, sizeof *r);
	r->hash = 1469598103934665603ull;
	r->abort_index = abort_index;
	struct multipart m;
	int rc = multipart_init(&m, boundary, lim, &callbacks, r);
	for (size_t at = 0; rc == 0 && at < n; at += chunk)
		rc = multipart_feed(&m, body + at, n - at < chunk ? n - at : chunk);
	if (rc == 0)
		rc = multipart_finish(&m);
	memcpy(err, multipart_error(&m), strlen(multipart_error(&m)) + 1);
	check(rc == 0 ? err[0] == '\0' : err[0] != '\0');
	multipart_free(&m);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t chunk = data[0];
	uint8_t flags = data[1];
	const char *p = (const char *)data + 2;
	size_t n = size - 2;

	char ct[256], boundary[MULTIPART_BOUNDARY_MAX + 1] = "XyZ";
	const char *nl = memchr(p, '\n', n < sizeof ct ? n : sizeof ct);
	if (nl) {
		size_t n_ct = (size_t)(nl - p);
		memcpy(ct, p, n_ct);
		ct[n_ct] = '\0';
		char b[MULTIPART_BOUNDARY_MAX + 1];
		if (strlen(ct) == n_ct && multipart_boundary(ct, b, sizeof b) == 0) {
			check(strlen(b) >= 1 && strlen(b) <= MULTIPART_BOUNDARY_MAX);
			memcpy(boundary, b, sizeof b);
		}
		n -= n_ct + 1;
		p = nl + 1;
	}

	struct multipart_limits lim = multipart_default_limits;
	lim.max_field_bytes = 4096; /* keeps the per-input malloc small */
	if (flags & 1) {
		lim.max_parts = 3;
		lim.max_files = 1;
		lim.max_header_bytes = 96;
		lim.max_field_bytes = 16;
		lim.max_file_bytes = 64;
		lim.max_total_bytes = 512;
	}
	size_t abort_index = (flags & 2) ? 1 : SIZE_MAX;
	if (chunk == 0 || chunk > n)
		chunk = n ? n : 1;

	struct run whole, chunked;
	char err_whole[MULTIPART_ERR_MAX], err_chunked[MULTIPART_ERR_MAX];
	int rc_whole = parse(boundary, &lim, p, n, n ? n : 1, abort_index, &whole, err_whole);
	int rc_chunked = parse(boundary, &lim, p, n, chunk, abort_index, &chunked, err_chunked);
	check(rc_whole == rc_chunked);
	check(strcmp(err_whole, err_chunked) == 0);
	check(whole.hash == chunked.hash);
	check(whole.n_file_bytes == chunked.n_file_bytes);
	if (rc_whole == 0)
		check(!whole.in_part);
	if (flags & 1)
		check(whole.n_file_bytes <= (uint64_t)lim.max_files * lim.max_file_bytes);
	return 0;
}
