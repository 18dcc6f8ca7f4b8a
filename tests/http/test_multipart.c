/* Unit tests for src/http/multipart.c: the streaming multipart/form-data parser.
 *
 * Every callback is recorded into one log string (part begins, field values, file bytes
 * concatenated, part ends), so the same body fed in different chunkings must give the
 * same log byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.h"
#include "util/err.h"
#include "util/str.h"

/* ---- recording callbacks -------------------------------------------------------------- */

struct rec {
	struct buf log;
	struct multipart *m;
	size_t n_max_piece; /* largest on_file_data piece */
	size_t n_data_calls;
	int abort_on_begin; /* non-zero: on_part_begin of part abort_index returns it */
	size_t abort_index;
	bool abort_with_message;
};

static int rec_begin(void *arg, const struct multipart_part *p)
{
	struct rec *r = arg;
	if (r->abort_on_begin && p->index == r->abort_index) {
		if (r->abort_with_message)
			return multipart_fail(r->m, r->abort_on_begin, "Part \"%s\" is not wanted.",
			                      p->name);
		return r->abort_on_begin;
	}
	assert_non_null(p->name);
	assert_true(p->name[0] != '\0');
	buf_printf(&r->log, "<B %zu name=%s file=%s ct=%s>", p->index, p->name,
	           p->filename ? p->filename : "(none)",
	           p->content_type ? p->content_type : "(none)");
	return 0;
}

static int rec_data(void *arg, const char *data, size_t n)
{
	struct rec *r = arg;
	assert_true(n > 0);
	if (n > r->n_max_piece)
		r->n_max_piece = n;
	r->n_data_calls++;
	return buf_append(&r->log, data, n);
}

static int rec_field(void *arg, const char *name, const char *value, size_t n)
{
	struct rec *r = arg;
	assert_int_equal(value[n], '\0');
	buf_printf(&r->log, "<F %s=", name);
	buf_append(&r->log, value, n);
	buf_printf(&r->log, ">");
	return 0;
}

static int rec_end(void *arg)
{
	struct rec *r = arg;
	return buf_puts(&r->log, "<E>");
}

static const struct multipart_callbacks rec_cb = {rec_begin, rec_data, rec_field, rec_end};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof *r);
	buf_init(&r->log, 64u << 20);
}

/* Parses body in pieces: cuts[] are split offsets (ascending), then finishes. Returns
 * the first non-zero code; err receives the message. */
static int parse_cuts(const char *boundary, const struct multipart_limits *lim, const char *body,
                      size_t n, const size_t *cuts, size_t n_cuts, struct rec *r, char *err,
                      size_t n_err)
{
	struct multipart m;
	r->m = &m;
	int rc = multipart_init(&m, boundary, lim, &rec_cb, r);
	size_t at = 0;
	for (size_t k = 0; rc == 0 && k <= n_cuts; k++) {
		size_t end = k < n_cuts ? cuts[k] : n;
		rc = multipart_feed(&m, body + at, end - at);
		at = end;
	}
	if (rc == 0)
		rc = multipart_finish(&m);
	if (err)
		str_copy(err, n_err, multipart_error(&m));
	/* errors are sticky */
	if (rc)
		assert_int_equal(multipart_feed(&m, "x", 1), rc);
	multipart_free(&m);
	multipart_free(&m); /* safe twice */
	return rc;
}

static int parse_chunked(const char *boundary, const struct multipart_limits *lim, const char *body,
                         size_t n, size_t chunk, struct rec *r, char *err, size_t n_err)
{
	struct multipart m;
	r->m = &m;
	int rc = multipart_init(&m, boundary, lim, &rec_cb, r);
	for (size_t at = 0; rc == 0 && at < n; at += chunk)
		rc = multipart_feed(&m, body + at, n - at < chunk ? n - at : chunk);
	if (rc == 0)
		rc = multipart_finish(&m);
	if (err)
		str_copy(err, n_err, multipart_error(&m));
	multipart_free(&m);
	return rc;
}

/* Parses body whole; returns rc and leaves the log in r (caller frees). */
static int parse_whole(const char *boundary, const struct multipart_limits *lim, const char *body,
                       struct rec *r, char *err, size_t n_err)
{
	rec_init(r);
	return parse_cuts(boundary, lim, body, strlen(body), NULL, 0, r, err, n_err);
}

/* Expects body (boundary "XyZ", default limits) to fail with code and a message
 * containing needle. */
static void expect_error(const char *body, int code, const char *needle)
{
	struct rec r;
	char err[MULTIPART_ERR_MAX];
	int rc = parse_whole("XyZ", NULL, body, &r, err, sizeof err);
	if (rc != code || !strstr(err, needle))
		fail_msg("body %s: rc %d (want %d), message \"%s\" (want \"%s\")", body, rc, code,
		         err, needle);
	buf_free(&r.log);
}

#define CD "Content-Disposition: form-data; "

/* Two fields and a file whose data holds boundary-like sequences and a trailing CR. */
static const char basic_body[] =
	"preamble text\r\n--Xy-not-quite\r\n"
	"--XyZ\r\n" CD "name=\"title\"\r\n\r\nMy Song\r\n"
	"--XyZ\r\n" CD "name=\"file\"; filename=\"song.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
	"RIFF\r\n--Xy\r\r\n--X--XyZ\n-\r\n-\r\n--xyz\r\r\r\n"
	"--XyZ\r\n" CD "name=\"artist\"\r\n\r\n\r\n"
	"--XyZ--\r\nepilogue --XyZ junk";

static const char basic_log[] = "<B 0 name=title file=(none) ct=(none)><F title=My Song><E>"
				"<B 1 name=file file=song.wav ct=audio/wav>"
				"RIFF\r\n--Xy\r\r\n--X--XyZ\n-\r\n-\r\n--xyz\r\r<E>"
				"<B 2 name=artist file=(none) ct=(none)><F artist=><E>";

/* ---- tests ----------------------------------------------------------------------------- */

static void boundary_from_content_type(void **state)
{
	(void)state;
	char b[MULTIPART_BOUNDARY_MAX + 1];
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=abc", b, sizeof b), 0);
	assert_string_equal(b, "abc");
	assert_int_equal(
		multipart_boundary(
			"Multipart/Form-Data;BOUNDARY=----WebKitFormBoundary7MA4YWxkTrZu0gW", b,
			sizeof b),
		0);
	assert_string_equal(b, "----WebKitFormBoundary7MA4YWxkTrZu0gW");
	assert_int_equal(multipart_boundary("multipart/form-data; charset=utf-8; "
	                                    "boundary=\"gc0p4Jq0M:2Yt08j U534c0p\"",
	                                    b, sizeof b),
	                 0);
	assert_string_equal(b, "gc0p4Jq0M:2Yt08j U534c0p");
	/* quoted-pair inside the quoted form, whitespace around '=' and a trailing ';' */
	assert_int_equal(
		multipart_boundary("  multipart/form-data ; boundary = \"a\\bc\" ;", b, sizeof b),
		0);
	assert_string_equal(b, "abc");
	/* unquoted boundaries with characters outside token, as some clients send */
	assert_int_equal(
		multipart_boundary("multipart/form-data; boundary==_Part_1/x?y", b, sizeof b), 0);
	assert_string_equal(b, "=_Part_1/x?y");
	/* 70 characters is the maximum */
	char ct[200], seventy[71];
	memset(seventy, 'a', 70);
	seventy[70] = '\0';
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", seventy);
	assert_int_equal(multipart_boundary(ct, b, sizeof b), 0);
	assert_string_equal(b, seventy);
	/* out too small */
	char small[3];
	assert_int_equal(
		multipart_boundary("multipart/form-data; boundary=abc", small, sizeof small),
		SFA_ETOOBIG);
}

static void boundary_bad_content_types(void **state)
{
	(void)state;
	char b[MULTIPART_BOUNDARY_MAX + 1] = "untouched";
	static const char *const unsupp[] = {
		NULL,
		"",
		"application/json",
		"text/plain; boundary=abc",
		"multipart/mixed; boundary=abc",
		"multipart",
		"multipart/",
		"multipart/form-datax; boundary=a",
	};
	for (size_t i = 0; i < sizeof unsupp / sizeof unsupp[0]; i++)
		if (multipart_boundary(unsupp[i], b, sizeof b) != SFA_EUNSUPP)
			fail_msg("\"%s\" should be unsupported", unsupp[i] ? unsupp[i] : "(null)");
	static const char *const bad[] = {
		"multipart/form-data",
		"multipart/form-data;",
		"multipart/form-data; charset=utf-8",
		"multipart/form-data; boundary=",
		"multipart/form-data; boundary=\"\"",
		"multipart/form-data; boundary=\"abc",
		"multipart/form-data; boundary=\"abc \"",
		"multipart/form-data; boundary=a*b",
		"multipart/form-data; boundary=\"a\\\"b\"",
		"multipart/form-data; boundary=a; boundary=b",
		"multipart/form-data; boundary",
		"multipart/form-data boundary=abc",
		"multipart/form-data; =abc",
		"multipart/form-data; boundary=abc junk",
		"multipart/form-data; boundary=\"\xc3\xa9\"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (multipart_boundary(bad[i], b, sizeof b) != SFA_EINVAL)
			fail_msg("\"%s\" should be invalid", bad[i]);
	char ct[200], seventy_one[72];
	memset(seventy_one, 'a', 71);
	seventy_one[71] = '\0';
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", seventy_one);
	assert_int_equal(multipart_boundary(ct, b, sizeof b), SFA_EINVAL);
	snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%s\"", seventy_one);
	assert_int_equal(multipart_boundary(ct, b, sizeof b), SFA_EINVAL);
	assert_string_equal(b, "untouched"); /* out is written only on success */

	/* init checks the boundary too */
	struct multipart m;
	assert_int_equal(multipart_init(&m, "bad\r", NULL, NULL, NULL), SFA_EINVAL);
	assert_int_equal(multipart_feed(&m, "x", 1), SFA_EINVAL);
	multipart_free(&m);
	assert_int_equal(multipart_init(&m, "", NULL, NULL, NULL), SFA_EINVAL);
	multipart_free(&m);
}

static void fields_and_files(void **state)
{
	(void)state;
	struct rec r;
	char err[MULTIPART_ERR_MAX];
	assert_int_equal(parse_whole("XyZ", NULL, basic_body, &r, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(r.log.len, sizeof basic_log - 1);
	assert_memory_equal(r.log.data, basic_log, sizeof basic_log - 1);
	buf_free(&r.log);

	/* no callbacks at all is fine */
	struct multipart m;
	assert_int_equal(multipart_init(&m, "XyZ", NULL, NULL, NULL), 0);
	assert_int_equal(multipart_feed(&m, basic_body, strlen(basic_body)), 0);
	assert_int_equal(multipart_finish(&m), 0);
	multipart_free(&m);
}

static void every_split_point(void **state)
{
	(void)state;
	size_t n = strlen(basic_body);
	for (size_t a = 0; a <= n; a++) {
		struct rec r;
		rec_init(&r);
		size_t cuts[1] = {a};
		assert_int_equal(parse_cuts("XyZ", NULL, basic_body, n, cuts, 1, &r, NULL, 0), 0);
		if (r.log.len != sizeof basic_log - 1 ||
		    memcmp(r.log.data, basic_log, r.log.len) != 0)
			fail_msg("split at %zu: log differs", a);
		buf_free(&r.log);
	}
	/* every pair of split points in the part with the tricky data */
	const char *data = strstr(basic_body, "RIFF");
	size_t lo = (size_t)(data - basic_body) - 3, hi = lo + 40;
	for (size_t a = lo; a <= hi; a++) {
		for (size_t b = a; b <= hi; b++) {
			struct rec r;
			rec_init(&r);
			size_t cuts[2] = {a, b};
			assert_int_equal(
				parse_cuts("XyZ", NULL, basic_body, n, cuts, 2, &r, NULL, 0), 0);
			if (r.log.len != sizeof basic_log - 1 ||
			    memcmp(r.log.data, basic_log, r.log.len) != 0)
				fail_msg("splits at %zu, %zu: log differs", a, b);
			buf_free(&r.log);
		}
	}
}

static void fixed_chunk_sizes_and_one_byte(void **state)
{
	(void)state;
	size_t n = strlen(basic_body);
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct rec r;
		rec_init(&r);
		assert_int_equal(parse_chunked("XyZ", NULL, basic_body, n, chunk, &r, NULL, 0), 0);
		if (r.log.len != sizeof basic_log - 1 ||
		    memcmp(r.log.data, basic_log, r.log.len) != 0)
			fail_msg("chunk size %zu: log differs", chunk);
		if (chunk == 1)
			assert_true(r.n_max_piece <=
			            1 + 8); /* at most a held-back delimiter prefix */
		buf_free(&r.log);
	}
}

static void boundary_like_data_is_data(void **state)
{
	(void)state;
	/* Prefixes of the delimiter, the boundary without its CRLF, CR runs, and a file that
	 * ends in "\r\n--boundar" right before the real delimiter. */
	static const char body[] =
		"--boundary\r\n" CD "name=\"f\"; filename=\"a.bin\"\r\n\r\n"
		"\r\n--boundar\r\n--boundar\r\r\n\r\n-\r\n--\r\n--b--boundary\r\n--boundarx"
		"\r\n--boundar\r\n--boundary--";
	static const char want[] =
		"<B 0 name=f file=a.bin ct=(none)>"
		"\r\n--boundar\r\n--boundar\r\r\n\r\n-\r\n--\r\n--b--boundary\r\n--boundarx"
		"\r\n--boundar<E>";
	for (size_t chunk = 1; chunk <= sizeof body; chunk++) {
		struct rec r;
		rec_init(&r);
		assert_int_equal(
			parse_chunked("boundary", NULL, body, sizeof body - 1, chunk, &r, NULL, 0),
			0);
		assert_int_equal(r.log.len, sizeof want - 1);
		assert_memory_equal(r.log.data, want, sizeof want - 1);
		buf_free(&r.log);
	}
	/* but "\r\n--boundary" followed by anything other than "--", padding or CRLF is a
	 * malformed body (RFC 2046: the delimiter must not occur in the data) */
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nx\r\n--XyZabc\r\n--XyZ--", SFA_EINVAL,
	             "boundary line does not end with CRLF");
}

static void crlf_handling(void **state)
{
	(void)state;
	struct rec r;
	/* transport padding after a delimiter; CR LF inside data preserved; headers with
	 * odd case and spacing */
	static const char ok[] =
		"--XyZ \t\r\ncOnTeNt-DiSpOsItIoN:   FORM-DATA ;NAME=a ; x=\"y;z\"  \r\n"
		"X-Other: whatever\r\n\r\nline1\r\nline2\r\n\r\n--XyZ--";
	assert_int_equal(parse_whole("XyZ", NULL, ok, &r, NULL, 0), 0);
	assert_string_equal(r.log.data,
	                    "<B 0 name=a file=(none) ct=(none)><F a=line1\r\nline2\r\n><E>");
	buf_free(&r.log);

	expect_error("--XyZ\n" CD "name=\"a\"\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "boundary line does not end with CRLF");
	expect_error("--XyZ\rx", SFA_EINVAL, "boundary line does not end with CRLF");
	expect_error("--XyZ -", SFA_EINVAL, "boundary line does not end with CRLF");
	expect_error("--XyZ-x", SFA_EINVAL, "boundary line does not end with CRLF");
	expect_error("--XyZ\r\n" CD "name=\"a\"\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "does not end with CRLF");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\nx\r\n--XyZ--", SFA_EINVAL,
	             "does not end with CRLF");
	expect_error("--XyZ\r\n" CD "name=\"a\"\rX\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "does not end with CRLF");
	/* data that is only LF-separated is data, so no delimiter is found */
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nx\n--XyZ--", SFA_EINVAL,
	             "ended before its closing boundary");
}

static void empty_file_and_empty_body(void **state)
{
	(void)state;
	struct rec r;
	/* an empty file (and the empty file input browsers send: filename="") */
	static const char body[] = "--XyZ\r\n" CD "name=\"f\"; filename=\"e.wav\"\r\n\r\n\r\n"
				   "--XyZ\r\n" CD "name=\"g\"; filename=\"\"\r\n"
				   "Content-Type: application/octet-stream\r\n\r\n\r\n--XyZ--\r\n";
	assert_int_equal(parse_whole("XyZ", NULL, body, &r, NULL, 0), 0);
	assert_string_equal(r.log.data, "<B 0 name=f file=e.wav ct=(none)><E>"
	                                "<B 1 name=g file= ct=application/octet-stream><E>");
	assert_int_equal(r.n_data_calls, 0);
	buf_free(&r.log);
	/* a body with no parts at all */
	assert_int_equal(parse_whole("XyZ", NULL, "--XyZ--", &r, NULL, 0), 0);
	assert_string_equal(r.log.data ? r.log.data : "", "");
	buf_free(&r.log);
}

static void missing_close_delimiter(void **state)
{
	(void)state;
	expect_error("", SFA_EINVAL, "empty or has no multipart boundary");
	expect_error("just some text", SFA_EINVAL, "empty or has no multipart boundary");
	expect_error("--XyZ\r\n", SFA_EINVAL, "ended before its closing boundary");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n", SFA_EINVAL,
	             "ended before its closing boundary");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nvalue", SFA_EINVAL,
	             "ended before its closing boundary");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nvalue\r\n--XyZ", SFA_EINVAL,
	             "ended before its closing boundary");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nvalue\r\n--XyZ-", SFA_EINVAL,
	             "ended before its closing boundary");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n\r\nvalue\r\n--XyZ\r\n", SFA_EINVAL,
	             "ended before its closing boundary");
}

static void bad_part_headers(void **state)
{
	(void)state;
	expect_error("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "part 1 has no Content-Disposition header");
	expect_error("--XyZ\r\n\r\nx\r\n--XyZ--", SFA_EINVAL, "no Content-Disposition");
	expect_error("--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ--",
	             SFA_EINVAL, "other than form-data");
	expect_error("--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "has no name");
	expect_error("--XyZ\r\n" CD "name=\"\"\r\n\r\nx\r\n--XyZ--", SFA_EINVAL, "has no name");
	expect_error("--XyZ\r\n" CD "filename=\"a.wav\"\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "has no name");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n  folded\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "folded header line");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\nX-Thing: a\r\n\tb\r\n\r\nx\r\n--XyZ--",
	             SFA_EINVAL, "folded header line");
	expect_error("--XyZ\r\nno colon here\r\n\r\nx\r\n--XyZ--", SFA_EINVAL, "\"Name: value\"");
	expect_error("--XyZ\r\n: empty name\r\n\r\nx\r\n--XyZ--", SFA_EINVAL, "\"Name: value\"");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\n" CD "name=\"b\"\r\n\r\nx\r\n--XyZ--",
	             SFA_EINVAL, "two Content-Disposition headers");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\nContent-Type: a/b\r\nContent-type: c/d\r\n\r\n"
	             "x\r\n--XyZ--",
	             SFA_EINVAL, "two Content-Type headers");
	expect_error("--XyZ\r\n" CD "name=\"a\"; name=\"b\"\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "repeated Content-Disposition parameter");
	expect_error("--XyZ\r\n" CD "name=\"a\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "unterminated quoted string");
	expect_error("--XyZ\r\n" CD "name=\"a\" junk\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "unparsable Content-Disposition");
	expect_error("--XyZ\r\n" CD "name\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "unparsable Content-Disposition");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\nX-Bad: a\x01z\r\n\r\nx\r\n--XyZ--", SFA_EINVAL,
	             "control character in a header line");
	expect_error("--XyZ\r\n" CD "name=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	             "eA==\r\n--XyZ--",
	             SFA_EINVAL, "Content-Transfer-Encoding");
	/* identity transfer encodings and quoted names with escapes are fine */
	struct rec r;
	static const char ok[] = "--XyZ\r\n" CD "name=\"a\\\"b\\\\c\"\r\n"
				 "Content-Transfer-Encoding: Binary\r\n\r\nv\r\n--XyZ--";
	assert_int_equal(parse_whole("XyZ", NULL, ok, &r, NULL, 0), 0);
	assert_string_equal(r.log.data, "<B 0 name=a\"b\\c file=(none) ct=(none)><F a\"b\\c=v><E>");
	buf_free(&r.log);
}

/* The filename the parser hands on for a Content-Disposition parameter list. */
static int filename_for(const char *params, char *out, size_t n_out, char *err, size_t n_err)
{
	char body[1024];
	snprintf(body, sizeof body, "--XyZ\r\n" CD "name=\"f\"; %s\r\n\r\ndata\r\n--XyZ--", params);
	struct rec r;
	int rc = parse_whole("XyZ", NULL, body, &r, err, n_err);
	if (rc == 0) {
		const char *p = strstr(r.log.data, "file=");
		const char *q = strstr(r.log.data, " ct=");
		assert_non_null(p);
		assert_non_null(q);
		p += 5;
		snprintf(out, n_out, "%.*s", (int)(q - p), p);
	}
	buf_free(&r.log);
	return rc;
}

/* A Content-Disposition's parameters and the file name they give (want), or for a refusal
 * the words its error must contain (want). */
struct fn_case {
	const char *params, *want;
};

static void check_filenames(const struct fn_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char got[256], err[MULTIPART_ERR_MAX];
		int rc = filename_for(cases[i].params, got, sizeof got, err, sizeof err);
		if (rc != 0 || strcmp(got, cases[i].want) != 0)
			fail_msg("%s: rc %d \"%s\", got \"%s\", want \"%s\"", cases[i].params, rc,
			         err, rc ? "" : got, cases[i].want);
	}
}

static void check_refused(const struct fn_case *bad, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char got[256], err[MULTIPART_ERR_MAX];
		int rc = filename_for(bad[i].params, got, sizeof got, err, sizeof err);
		if (rc != SFA_EINVAL || !strstr(err, bad[i].want))
			fail_msg("%s: rc %d \"%s\", want EINVAL \"%s\"", bad[i].params, rc, err,
			         bad[i].want);
	}
}

static void filename_sanitisation(void **state)
{
	(void)state;
	static const struct fn_case cases[] = {
		{"filename=\"../../etc/passwd\"", "passwd"},
		{"filename=\"C:\\x\\y.wav\"", "y.wav"},     /* unescaped Windows path (browsers) */
		{"filename=\"C:\\\\x\\\\y.wav\"", "y.wav"}, /* escaped Windows path */
		{"filename=\"/abs/path/z.flac\"", "z.flac"},
		{"filename=\"dir/\"", ""},
		{"filename=\"..\"", ""},
		{"filename=\"a/..\"", ""},
		{"filename=\".\"", ""},
		{"filename=\"...wav\"", "...wav"},
		{"filename=\"say \\\"hi\\\".mp3\"", "say \"hi\".mp3"},
		{"filename=\"semi;colon.mp3\"", "semi;colon.mp3"},
		{"filename=plain.ogg", "plain.ogg"},
		{"FileName=\"caps.wav\"", "caps.wav"},
		{"filename=\"caf\xc3\xa9.wav\"",
	         "caf\xc3\xa9.wav"},                       /* raw UTF-8, as browsers send */
		{"filename=\"100%22.wav\"", "100%22.wav"}, /* no percent-decoding here */
	};
	check_filenames(cases, sizeof cases / sizeof cases[0]);
	static const struct fn_case bad[] = {
		{"filename*=UTF-8''a%00b.wav", "NUL byte"},
		{"filename*=UTF-8''a%0Ab.wav", "control character"},
		{"filename=\"tab\there.wav\"", "control character"},
		{"filename=\"\xff\xfe.wav\"", "not valid UTF-8"},
		{"filename=\"\xc0\xaf.wav\"", "not valid UTF-8"},     /* overlong '/' */
		{"filename=\"\xed\xa0\x80.wav\"", "not valid UTF-8"}, /* surrogate */
		{"filename*=UTF-8''%C3.wav", "not valid UTF-8"},
		{"filename=\"a.wav\"; filename=\"b.wav\"", "repeated"},
	};
	check_refused(bad, sizeof bad / sizeof bad[0]);
}

static void rfc5987_filename_star(void **state)
{
	(void)state;
	static const struct fn_case cases[] = {
		{"filename*=utf-8''%E2%82%AC%20rates.wav", "\xe2\x82\xac rates.wav"},
		{"filename*=UTF-8'en'na%C3%AFve.mp3", "na\xc3\xafve.mp3"},
		/* filename* wins over filename, in either order */
		{"filename=\"fallback.wav\"; filename*=UTF-8''real.wav", "real.wav"},
		{"filename*=UTF-8''real.wav; filename=\"fallback.wav\"", "real.wav"},
		/* ISO-8859-1 is converted to UTF-8 */
		{"filename*=iso-8859-1''caf%E9.wav", "caf\xc3\xa9.wav"},
		/* an unknown charset falls back to filename= */
		{"filename*=KOI8-R''%C1.wav; filename=\"fb.wav\"", "fb.wav"},
		/* directory components are stripped after decoding */
		{"filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"},
		{"filename*=UTF-8''a%5Cb%5Cc.wav", "c.wav"},
		/* a quoted ext-value is tolerated */
		{"filename*=\"UTF-8''q.wav\"", "q.wav"},
	};
	check_filenames(cases, sizeof cases / sizeof cases[0]);
	static const struct fn_case bad[] = {
		{"filename*=UTF-8''%E2%8", "bad %-escape"},
		{"filename*=UTF-8''%zz.wav", "bad %-escape"},
		{"filename*=UTF-8''a b.wav", "unparsable"},
		{"filename*=\"UTF-8''a b.wav\"", "must percent-encode"},
		{"filename*=UTF-8''caf\xc3\xa9.wav", "must percent-encode"},
		{"filename*=no-quotes.wav", "charset''"},
		{"filename*=KOI8-R''%C1.wav", "other than UTF-8"},
	};
	check_refused(bad, sizeof bad / sizeof bad[0]);
}

/* Runs body with lim for every chunk size 1..n and expects rc and a message containing
 * needle every time (limits are positional, not chunking dependent). */
static void expect_limit(const struct multipart_limits *lim, const char *body, int code,
                         const char *needle)
{
	size_t n = strlen(body);
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct rec r;
		rec_init(&r);
		char err[MULTIPART_ERR_MAX];
		int rc = parse_chunked("XyZ", lim, body, n, chunk, &r, err, sizeof err);
		if (rc != code || (needle && !strstr(err, needle)))
			fail_msg("chunk %zu: rc %d \"%s\", want %d \"%s\"", chunk, rc, err, code,
			         needle ? needle : "");
		buf_free(&r.log);
	}
}

static const char three_parts[] = "--XyZ\r\n" CD "name=\"a\"\r\n\r\n12345\r\n"
				  "--XyZ\r\n" CD
				  "name=\"f\"; filename=\"x.wav\"\r\n\r\n0123456789\r\n"
				  "--XyZ\r\n" CD "name=\"g\"; filename=\"y.wav\"\r\n\r\nab\r\n"
				  "--XyZ--\r\n";

static void limit_parts_and_files(void **state)
{
	(void)state;
	struct multipart_limits lim = multipart_default_limits;
	lim.max_parts = 3;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_parts = 2;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The upload has more than 2 parts.");
	lim.max_parts = 1;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The upload has more than 1 part.");
	lim = multipart_default_limits;
	lim.max_files = 2;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_files = 1;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The upload has more than 1 file.");
	lim.max_files = 0;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The upload has more than 0 files.");
}

static void limit_header_bytes(void **state)
{
	(void)state;
	/* part 1's header section: the line, its CRLF and the blank line's CRLF */
	const size_t n_hdr = strlen(CD "name=\"a\"\r\n\r\n");
	struct multipart_limits lim = multipart_default_limits;
	lim.max_header_bytes = n_hdr + 30; /* parts 2 and 3 have longer headers */
	expect_limit(&lim, "--XyZ\r\n" CD "name=\"a\"\r\n\r\n12345\r\n--XyZ--", 0, NULL);
	lim.max_header_bytes = n_hdr;
	expect_limit(&lim, "--XyZ\r\n" CD "name=\"a\"\r\n\r\n12345\r\n--XyZ--", 0, NULL);
	lim.max_header_bytes = n_hdr - 1;
	char want[128];
	snprintf(want, sizeof want,
	         "The headers of part 1 of the upload are larger than %zu bytes.", n_hdr - 1);
	expect_limit(&lim, "--XyZ\r\n" CD "name=\"a\"\r\n\r\n12345\r\n--XyZ--", SFA_ETOOBIG, want);
	/* the default cap, 8 KiB: an endless header line is refused, not buffered */
	size_t n_big = 20000;
	char *big = malloc(n_big + 1);
	assert_non_null(big);
	memcpy(big, "--XyZ\r\nX-Long: ", 15);
	memset(big + 15, 'a', n_big - 15);
	big[n_big] = '\0';
	expect_error(big, SFA_ETOOBIG, "The headers of part 1 of the upload are larger than 8 KB.");
	free(big);
}

static void limit_field_bytes(void **state)
{
	(void)state;
	struct multipart_limits lim = multipart_default_limits;
	lim.max_field_bytes = 5;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_field_bytes = 4;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The field \"a\" is larger than 4 bytes.");
	lim.max_field_bytes = 0;
	expect_limit(&lim, "--XyZ\r\n" CD "name=\"e\"\r\n\r\n\r\n--XyZ--", 0, NULL);
	/* the default, 1 MiB: exactly 1 MiB is accepted, one more byte is not */
	const size_t n_val = 1u << 20;
	const char head[] = "--XyZ\r\n" CD "name=\"manifest\"\r\n\r\n";
	const char tail[] = "\r\n--XyZ--";
	for (size_t extra = 0; extra <= 1; extra++) {
		size_t n = sizeof head - 1 + n_val + extra + sizeof tail - 1;
		char *body = malloc(n + 1);
		assert_non_null(body);
		memcpy(body, head, sizeof head - 1);
		memset(body + sizeof head - 1, 'v', n_val + extra);
		memcpy(body + n - (sizeof tail - 1), tail, sizeof tail);
		struct rec r;
		rec_init(&r);
		char err[MULTIPART_ERR_MAX];
		int rc = parse_chunked("XyZ", NULL, body, n, 4096, &r, err, sizeof err);
		if (extra == 0) {
			assert_int_equal(rc, 0);
			assert_int_equal(r.log.len,
			                 strlen("<B 0 name=manifest file=(none) ct=(none)>") +
			                         strlen("<F manifest=>") + n_val + strlen("<E>"));
		} else {
			assert_int_equal(rc, SFA_ETOOBIG);
			assert_string_equal(err, "The field \"manifest\" is larger than 1 MB.");
		}
		buf_free(&r.log);
		free(body);
	}
}

static void limit_file_bytes(void **state)
{
	(void)state;
	struct multipart_limits lim = multipart_default_limits;
	lim.max_file_bytes = 10;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_file_bytes = 9;
	expect_limit(&lim, three_parts, SFA_ETOOBIG, "The file \"x.wav\" is larger than 9 bytes.");
	/* exactly max_file_bytes are delivered before the error, whatever the chunking */
	size_t n = strlen(three_parts);
	for (size_t chunk = 1; chunk <= n; chunk++) {
		struct rec r;
		rec_init(&r);
		assert_int_equal(parse_chunked("XyZ", &lim, three_parts, n, chunk, &r, NULL, 0),
		                 SFA_ETOOBIG);
		assert_non_null(strstr(r.log.data, "ct=(none)>012345678"));
		assert_null(strstr(r.log.data, "0123456789"));
		buf_free(&r.log);
	}
	/* sizes are written in the unit the limit was set in */
	lim.max_file_bytes = 2048;
	char body[4096];
	int k = snprintf(body, sizeof body, "--XyZ\r\n" CD "name=\"f\"; filename=\"%s\"\r\n\r\n",
	                 "a-very-long-file-name-that-goes-on-and-on-and-on-and-on-and-on-and-"
	                 "on-and-on-and-on.wav");
	assert_true(k > 0);
	memset(body + k, 'z', 2049);
	snprintf(body + k + 2049, sizeof body - (size_t)k - 2049, "\r\n--XyZ--");
	expect_limit(&lim, body, SFA_ETOOBIG, "...\" is larger than 2 KB.");
	lim.max_file_bytes = 2049;
	expect_limit(&lim, body, 0, NULL);
	/* an empty filename names the field instead */
	lim.max_file_bytes = 1;
	expect_limit(&lim, "--XyZ\r\n" CD "name=\"stems[]\"; filename=\"\"\r\n\r\nab\r\n--XyZ--",
	             SFA_ETOOBIG, "The file \"stems[]\" is larger than 1 byte.");
}

static void limit_total_bytes(void **state)
{
	(void)state;
	size_t n = strlen(three_parts);
	struct multipart_limits lim = multipart_default_limits;
	lim.max_total_bytes = n;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_total_bytes = n - 1;
	char want[64];
	snprintf(want, sizeof want, "The upload is larger than %zu bytes.", n - 1);
	expect_limit(&lim, three_parts, SFA_ETOOBIG, want);
	/* the epilogue counts too */
	lim.max_total_bytes = 1000;
	expect_limit(&lim, three_parts, 0, NULL);
	lim.max_total_bytes = 5000;
	char *body = malloc(8000);
	assert_non_null(body);
	memcpy(body, three_parts, n);
	memset(body + n, 'e', 5000);
	body[n + 5000] = '\0';
	expect_limit(&lim, body, SFA_ETOOBIG, "The upload is larger than 5 KB.");
	free(body);
}

static int abort_data(void *arg, const char *data, size_t n)
{
	(void)arg;
	(void)data;
	(void)n;
	return SFA_EIO;
}

static void callback_abort(void **state)
{
	(void)state;
	/* non-zero from on_part_begin, without and with a message */
	for (int with_msg = 0; with_msg <= 1; with_msg++) {
		struct rec r;
		rec_init(&r);
		r.abort_on_begin = SFA_ECONFLICT;
		r.abort_index = 1;
		r.abort_with_message = with_msg;
		char err[MULTIPART_ERR_MAX];
		int rc = parse_cuts("XyZ", NULL, three_parts, strlen(three_parts), NULL, 0, &r, err,
		                    sizeof err);
		assert_int_equal(rc, SFA_ECONFLICT);
		assert_string_equal(err, with_msg ? "Part \"f\" is not wanted."
		                                  : "The upload was rejected.");
		/* part 0 completed, nothing of part 1 was delivered */
		assert_string_equal(r.log.data, "<B 0 name=a file=(none) ct=(none)><F a=12345><E>");
		buf_free(&r.log);
	}
	/* non-zero from on_file_data: a write error, say */
	struct multipart_callbacks cb = rec_cb;
	cb.on_file_data = abort_data;
	struct rec r;
	rec_init(&r);
	struct multipart m;
	assert_int_equal(multipart_init(&m, "XyZ", NULL, &cb, &r), 0);
	assert_int_equal(multipart_feed(&m, three_parts, strlen(three_parts)), SFA_EIO);
	assert_int_equal(multipart_finish(&m), SFA_EIO);
	assert_string_equal(multipart_error(&m), "The upload was rejected.");
	multipart_free(&m);
	buf_free(&r.log);
}

/* xorshift64*: a deterministic byte generator for the large-file test. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

struct sum {
	uint64_t hash;
	uint64_t n_bytes;
	size_t n_max_piece;
	int n_begin, n_end;
};

static int sum_begin(void *arg, const struct multipart_part *p)
{
	struct sum *s = arg;
	assert_string_equal(p->filename, "big.wav");
	s->n_begin++;
	return 0;
}

static int sum_data(void *arg, const char *data, size_t n)
{
	struct sum *s = arg;
	s->hash = fnv1a(s->hash, data, n);
	s->n_bytes += n;
	if (n > s->n_max_piece)
		s->n_max_piece = n;
	return 0;
}

static int sum_end(void *arg)
{
	struct sum *s = arg;
	s->n_end++;
	return 0;
}

static void large_file_streamed(void **state)
{
	(void)state;
	const char boundary[] = "----sfa-boundary-0123456789";
	const size_t n_file = 20u << 20, chunk = 64u << 10;
	const char head[] = "------sfa-boundary-0123456789\r\n" CD
			    "name=\"file\"; filename=\"big.wav\"\r\n"
			    "Content-Type: audio/wav\r\n\r\n";
	const char tail[] = "\r\n------sfa-boundary-0123456789--\r\n";
	size_t n = sizeof head - 1 + n_file + sizeof tail - 1;
	char *body = malloc(n);
	assert_non_null(body);
	memcpy(body, head, sizeof head - 1);
	char *file = body + sizeof head - 1;
	uint64_t seed = 0x5fa5fa5fa5fa5fa5ull;
	for (size_t i = 0; i < n_file; i += 8) {
		uint64_t v = next_rand(&seed);
		memcpy(file + i, &v, 8);
	}
	/* near-delimiters everywhere, including across the 64 KiB chunk edges */
	static const char near[] = "\r\n------sfa-boundary-012345678";
	for (size_t at = 1000; at + sizeof near < n_file; at += 65536 - 7) {
		size_t len = sizeof near - 1 - (at / 65536) % 20;
		memcpy(file + at, near, len);
		file[at + len] = 'X'; /* never the delimiter's next character */
	}
	memcpy(body + n - (sizeof tail - 1), tail, sizeof tail - 1);
	uint64_t want = fnv1a(1469598103934665603ull, file, n_file);

	struct sum s = {.hash = 1469598103934665603ull};
	struct multipart_callbacks cb = {sum_begin, sum_data, NULL, sum_end};
	struct multipart_limits lim = multipart_default_limits;
	lim.max_file_bytes = n_file;
	struct multipart m;
	assert_int_equal(multipart_init(&m, boundary, &lim, &cb, &s), 0);
	for (size_t at = 0; at < n; at += chunk)
		assert_int_equal(multipart_feed(&m, body + at, n - at < chunk ? n - at : chunk), 0);
	assert_int_equal(multipart_finish(&m), 0);
	multipart_free(&m);
	assert_int_equal(s.n_begin, 1);
	assert_int_equal(s.n_end, 1);
	assert_int_equal(s.n_bytes, n_file);
	assert_true(s.hash == want);
	/* streamed: no piece larger than a chunk plus a held-back delimiter prefix */
	assert_true(s.n_max_piece <= chunk + sizeof boundary + 4);
	free(body);
}

static void preamble_epilogue_and_sticky_errors(void **state)
{
	(void)state;
	struct rec r;
	static const char body[] =
		"This is the preamble.\r\n--XyZ\r\n" CD "name=\"a\"\r\n\r\nv\r\n"
		"--XyZ--  \r\nThis is the epilogue, with --XyZ and \r\n--XyZ\r\n.";
	assert_int_equal(parse_whole("XyZ", NULL, body, &r, NULL, 0), 0);
	assert_string_equal(r.log.data, "<B 0 name=a file=(none) ct=(none)><F a=v><E>");
	buf_free(&r.log);

	struct multipart m;
	rec_init(&r);
	assert_int_equal(multipart_init(&m, "XyZ", NULL, &rec_cb, &r), 0);
	assert_string_equal(multipart_error(&m), "");
	assert_int_equal(multipart_feed(&m, "--XyZ\r\nbad\r\n", 12), SFA_EINVAL);
	const char *msg = multipart_error(&m);
	assert_non_null(strstr(msg, "part 1 has a header line that is not"));
	assert_int_equal(multipart_feed(&m, "\r\n--XyZ--", 9), SFA_EINVAL);
	assert_int_equal(multipart_finish(&m), SFA_EINVAL);
	multipart_free(&m);
	buf_free(&r.log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(boundary_from_content_type),
		cmocka_unit_test(boundary_bad_content_types),
		cmocka_unit_test(fields_and_files),
		cmocka_unit_test(every_split_point),
		cmocka_unit_test(fixed_chunk_sizes_and_one_byte),
		cmocka_unit_test(boundary_like_data_is_data),
		cmocka_unit_test(crlf_handling),
		cmocka_unit_test(empty_file_and_empty_body),
		cmocka_unit_test(missing_close_delimiter),
		cmocka_unit_test(bad_part_headers),
		cmocka_unit_test(filename_sanitisation),
		cmocka_unit_test(rfc5987_filename_star),
		cmocka_unit_test(limit_parts_and_files),
		cmocka_unit_test(limit_header_bytes),
		cmocka_unit_test(limit_field_bytes),
		cmocka_unit_test(limit_file_bytes),
		cmocka_unit_test(limit_total_bytes),
		cmocka_unit_test(callback_abort),
		cmocka_unit_test(large_file_streamed),
		cmocka_unit_test(preamble_epilogue_and_sticky_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
