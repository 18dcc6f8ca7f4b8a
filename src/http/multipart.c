/* multipart.c - see multipart.h.
 *
 * The body is a byte stream scanned by one state machine. Between parts (preamble, data)
 * the scanner looks for the delimiter "\r\n--" boundary. Because '\r' occurs in the
 * delimiter only at its first position (RFC 2046 boundary characters exclude CR), a
 * partial match that fails can never hide the start of another match inside itself: the
 * bytes held back are always a prefix of the delimiter, so they are re-emitted from the
 * delimiter string itself and no look-behind buffer is needed, whatever the chunking.
 * The preamble starts with a virtual "\r\n" already matched, so a body that opens with
 * "--boundary" is recognised.
 *
 * Header lines are collected one at a time in `line` (the per-part header cap bounds
 * it) and parsed when their CRLF arrives; the values the caller sees (name, filename,
 * content type) are decoded into `decoded`. Decoding never lengthens a value (escapes and
 * percent-encodings shrink; ISO-8859-1 %XX becomes at most two UTF-8 bytes), so
 * `decoded` needs no more than the header cap plus the terminating NULs. Plain field
 * values accumulate in `field` up to max_field_bytes. The three regions are one malloc.
 *
 * Errors are positional: the same body gives the same result and the same callbacks
 * (file data concatenated) however it is chunked. The total cap is applied by parsing
 * the bytes up to the cap first and failing after, and a file over its cap gets exactly
 * max_file_bytes delivered before the error, so the fuzz harness can compare chunkings.
 */
#include "http/multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/str.h"

const struct multipart_limits multipart_default_limits = {
	.max_parts = 64,
	.max_files = 16,
	.max_header_bytes = 8192,
	.max_field_bytes = 1u << 20,
	.max_file_bytes = 500ull << 20,
	.max_total_bytes = 512ull << 20,
};

enum {
	ST_PREAMBLE,    /* before the first delimiter: bytes are discarded */
	ST_DATA,        /* inside a part's body */
	ST_AFTER_DELIM, /* a delimiter was matched: "--", padding or CRLF follows */
	ST_PAD,         /* transport padding (spaces, tabs) before CRLF */
	ST_DELIM_CR,    /* saw CR after a delimiter, LF must follow */
	ST_CLOSE_DASH,  /* saw one '-' after a delimiter, the second must follow */
	ST_HEADER,      /* inside a header line */
	ST_HEADER_CR,   /* saw CR in the header section, LF must follow */
	ST_DONE,        /* close delimiter seen: the epilogue is ignored */
};

/* Room in `decoded` beyond max_header_bytes: one NUL per stored value (name, filename,
 * filename*, content type) and slack. */
enum { DECODED_SLACK = 8 };

/* ---- small helpers ------------------------------------------------------------------- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static bool is_tchar(unsigned char c)
{
	/* RFC 9110 tchar */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_bchar(unsigned char c)
{
	/* RFC 2046 bchars */
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

/* RFC 5987 attr-char: the characters an ext-value may carry unencoded. */
static bool is_attr_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$&+-.^_`|~", c) != NULL);
}

/* n bytes at s equal the NUL-terminated lower-case word w, ignoring ASCII case. */
static bool ieq(const char *s, size_t n, const char *w) { return str_ieq_n(w, s, n); }

static bool valid_boundary(const char *b, size_t n)
{
	if (n < 1 || n > MULTIPART_BOUNDARY_MAX || b[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_bchar((unsigned char)b[i]))
			return false;
	return true;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		unsigned long cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
			cp = c & 0x1Fu;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			cp = c & 0x0Fu;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			cp = c & 0x07u;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3Fu);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += len;
	}
	return true;
}

/* "500 MB", "8 KB", "1234 bytes": sizes for messages, exact (never rounded). */
static void fmt_size(uint64_t n, char *out, size_t n_out)
{
	static const struct {
		uint64_t unit;
		const char *name;
	} units[] = {
		{1ull << 30, "GB"}, {1000000000ull, "GB"}, {1ull << 20, "MB"},
		{1000000ull, "MB"}, {1ull << 10, "KB"},    {1000ull, "KB"},
	};
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (n >= units[i].unit && n % units[i].unit == 0) {
			snprintf(out, n_out, "%llu %s", (unsigned long long)(n / units[i].unit),
			         units[i].name);
			return;
		}
	}
	snprintf(out, n_out, "%llu byte%s", (unsigned long long)n, n == 1 ? "" : "s");
}

/* A name for a message: at most 80 bytes, cut on a UTF-8 character boundary. */
static void clip(const char *s, char *out, size_t n_out)
{
	enum { MAX = 80 };
	size_t n = strlen(s);
	if (n <= MAX) {
		str_copy(out, n_out, s);
		return;
	}
	n = MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	snprintf(out, n_out, "%.*s...", (int)n, s);
}

/* Records the first error: the message and the sticky code. Returns code. */
static int fail(struct multipart *m, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct multipart *m, int code, const char *fmt, ...)
{
	if (m->rc)
		return m->rc;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof m->err, fmt, ap);
	va_end(ap);
	m->rc = code;
	return code;
}

int multipart_fail(struct multipart *m, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof m->err, fmt, ap);
	va_end(ap);
	return code;
}

/* Runs after every callback: a non-zero rc becomes the sticky error, with the message
 * the callback left through multipart_fail or a generic one. */
static int after_callback(struct multipart *m, int rc)
{
	if (rc == 0) {
		m->err[0] = '\0'; /* a message without a failure is dropped */
		return 0;
	}
	if (m->err[0] == '\0')
		str_copy(m->err, sizeof m->err, "The upload was rejected.");
	m->rc = rc;
	return rc;
}

/* ---- Content-Type ----------------------------------------------------------------------- */

int multipart_boundary(const char *content_type, char *out, size_t n_out)
{
	if (!content_type)
		return SFA_EUNSUPP;
	const char *s = content_type;
	size_t n = strlen(s);
	if (n > 4096)
		return SFA_EINVAL;
	size_t i = 0;
	while (i < n && is_ows(s[i]))
		i++;
	size_t t0 = i;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	size_t t1 = i;
	if (i >= n || s[i] != '/' || !ieq(s + t0, t1 - t0, "multipart"))
		return SFA_EUNSUPP;
	i++;
	size_t st0 = i;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (!ieq(s + st0, i - st0, "form-data"))
		return SFA_EUNSUPP;

	char b[MULTIPART_BOUNDARY_MAX + 1];
	size_t n_b = 0;
	bool found = false;
	for (;;) {
		while (i < n && is_ows(s[i]))
			i++;
		if (i == n)
			break;
		if (s[i] != ';')
			return SFA_EINVAL;
		i++;
		while (i < n && is_ows(s[i]))
			i++;
		if (i == n)
			break; /* a trailing ';' is harmless */
		size_t p0 = i;
		while (i < n && is_tchar((unsigned char)s[i]))
			i++;
		size_t p1 = i;
		if (p1 == p0)
			return SFA_EINVAL;
		while (i < n && is_ows(s[i]))
			i++;
		if (i == n || s[i] != '=')
			return SFA_EINVAL;
		i++;
		while (i < n && is_ows(s[i]))
			i++;
		bool is_b = ieq(s + p0, p1 - p0, "boundary");
		if (is_b && found)
			return SFA_EINVAL;
		size_t n_val = 0;
		bool too_long = false;
		if (i < n && s[i] == '"') {
			/* quoted-string; in a header value \x stands for x (RFC 9110 quoted-pair) */
			i++;
			for (;;) {
				if (i == n)
					return SFA_EINVAL;
				char c = s[i++];
				if (c == '"')
					break;
				if (c == '\\') {
					if (i == n)
						return SFA_EINVAL;
					c = s[i++];
				}
				if (is_b) {
					if (n_val < MULTIPART_BOUNDARY_MAX)
						b[n_val] = c;
					else
						too_long = true;
				}
				n_val++;
			}
		} else {
			/* Lenient token: clients send unquoted boundaries holding '=', '/', ':'... */
			while (i < n && s[i] != ';' && !is_ows(s[i])) {
				if (is_b) {
					if (n_val < MULTIPART_BOUNDARY_MAX)
						b[n_val] = s[i];
					else
						too_long = true;
				}
				n_val++;
				i++;
			}
		}
		if (is_b) {
			if (too_long || !valid_boundary(b, n_val))
				return SFA_EINVAL;
			n_b = n_val;
			found = true;
		}
	}
	if (!found)
		return SFA_EINVAL;
	if (n_out < n_b + 1)
		return SFA_ETOOBIG;
	memcpy(out, b, n_b);
	out[n_b] = '\0';
	return 0;
}

/* ---- init, free ----------------------------------------------------------------------- */

int multipart_init(struct multipart *m, const char *boundary, const struct multipart_limits *lim,
                   const struct multipart_callbacks *cb, void *arg)
{
	memset(m, 0, sizeof *m);
	if (!lim)
		lim = &multipart_default_limits;
	m->lim = *lim;
	if (cb)
		m->cb = *cb;
	m->arg = arg;
	size_t n_b = boundary ? strlen(boundary) : 0;
	if (!boundary || !valid_boundary(boundary, n_b))
		return fail(m, SFA_EINVAL, "The multipart boundary is invalid.");
	memcpy(m->delim, "\r\n--", 4);
	memcpy(m->delim + 4, boundary, n_b);
	m->n_delim = 4 + n_b;
	m->delim[m->n_delim] = '\0';

	size_t h = lim->max_header_bytes, f = lim->max_field_bytes;
	if (h > SIZE_MAX / 4 || f > SIZE_MAX / 2 || 2 * h + DECODED_SLACK + f + 1 < f)
		return fail(m, SFA_EINVAL, "The multipart limits are too large.");
	size_t total = 2 * h + DECODED_SLACK + f + 1;
	m->buf = malloc(total);
	if (!m->buf)
		return fail(m, SFA_ENOMEM, "Out of memory for the upload parser.");
	m->line = m->buf;
	m->decoded = m->buf + h;
	m->n_decoded_cap = h + DECODED_SLACK;
	m->field = m->decoded + m->n_decoded_cap;
	m->state = ST_PREAMBLE;
	m->n_match = 2; /* the virtual CRLF before a leading "--boundary" */
	return 0;
}

void multipart_free(struct multipart *m)
{
	free(m->buf);
	m->buf = NULL;
	m->line = m->decoded = m->field = NULL;
}

const char *multipart_error(const struct multipart *m) { return m->rc ? m->err : ""; }

/* ---- part headers ------------------------------------------------------------------- */

/* Appends one byte to `decoded`. The bound holds by construction (see the file comment);
 * the check turns a broken invariant into an error rather than an overflow. */
static int dec_put(struct multipart *m, char c)
{
	if (m->n_decoded >= m->n_decoded_cap)
		return fail(m, SFA_ETOOBIG, "The headers of a part of the upload are too large.");
	m->decoded[m->n_decoded++] = c;
	return 0;
}

static int bad_header(struct multipart *m, const char *why)
{
	return fail(m, SFA_EINVAL, "The upload is malformed: part %zu has %s.", m->n_parts, why);
}

/* Parses a Content-Disposition parameter value at v[*i] (quoted-string or token) and, when
 * store is set, appends it NUL-terminated to `decoded` and sets *out to it. */
static int disposition_value(struct multipart *m, const char *v, size_t n, size_t *i, bool store,
                             char **out)
{
	size_t start = m->n_decoded;
	size_t k = *i;
	int rc;
	if (k < n && v[k] == '"') {
		k++;
		for (;;) {
			if (k == n)
				return bad_header(m, "an unterminated quoted string");
			char c = v[k++];
			if (c == '"')
				break;
			/* Only \" and \\ are escapes (see multipart.h): a lone backslash is a
			 * Windows path separator that browsers send unescaped. */
			if (c == '\\' && k < n && (v[k] == '"' || v[k] == '\\'))
				c = v[k++];
			if (store && (rc = dec_put(m, c)) != 0)
				return rc;
		}
	} else {
		while (k < n && v[k] != ';' && !is_ows(v[k])) {
			if (store && (rc = dec_put(m, v[k])) != 0)
				return rc;
			k++;
		}
	}
	*i = k;
	if (store) {
		if ((rc = dec_put(m, '\0')) != 0)
			return rc;
		*out = m->decoded + start;
	}
	return 0;
}

/* Decodes an RFC 5987 ext-value (charset'lang'pct-encoded) in place. Sets *unsupported
 * for a charset other than UTF-8 or ISO-8859-1 (the caller falls back to filename=). */
static int decode_ext_value(struct multipart *m, char *s, bool *unsupported)
{
	char *q1 = strchr(s, '\'');
	char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
	if (!q2)
		return bad_header(m, "a filename* without charset''");
	size_t n_cs = (size_t)(q1 - s);
	bool latin1;
	if (ieq(s, n_cs, "utf-8")) {
		latin1 = false;
	} else if (ieq(s, n_cs, "iso-8859-1")) {
		latin1 = true;
	} else {
		*unsupported = true;
		return 0;
	}
	const char *r = q2 + 1;
	char *w = s;
	while (*r) {
		unsigned char c = (unsigned char)*r;
		if (c == '%') {
			int h = str_hex_value(r[1]);
			int l = h < 0 ? -1 : str_hex_value(r[2]);
			if (l < 0)
				return bad_header(m, "a bad %-escape in filename*");
			c = (unsigned char)(h * 16 + l);
			r += 3;
		} else if (is_attr_char(c)) {
			r++;
		} else {
			return bad_header(m, "a character filename* must percent-encode");
		}
		if (c == 0)
			return fail(m, SFA_EINVAL, "The file name in part %zu contains a NUL byte.",
			            m->n_parts);
		if (latin1 && c >= 0x80) {
			/* two UTF-8 bytes from three input bytes: w stays behind r */
			*w++ = (char)(0xC0 | (c >> 6));
			*w++ = (char)(0x80 | (c & 0x3F));
		} else {
			*w++ = (char)c;
		}
	}
	*w = '\0';
	return 0;
}

/* Validates and sanitises the filename in place (see multipart.h). */
static int sanitise_filename(struct multipart *m, char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7F)
			return fail(m, SFA_EINVAL,
			            "The file name in part %zu contains a control character.",
			            m->n_parts);
	}
	if (!valid_utf8((const unsigned char *)s, n))
		return fail(m, SFA_EINVAL, "The file name in part %zu is not valid UTF-8.",
		            m->n_parts);
	size_t base = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] == '/' || s[i] == '\\')
			base = i + 1;
	memmove(s, s + base, n - base + 1);
	if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		s[0] = '\0';
	return 0;
}

static int parse_disposition(struct multipart *m, const char *v, size_t n)
{
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)v[i]))
		i++;
	if (!ieq(v, i, "form-data"))
		return bad_header(m, "a Content-Disposition other than form-data");
	char *name = NULL, *filename = NULL, *filename_ext = NULL;
	bool seen_name = false, seen_filename = false, seen_ext = false;
	for (;;) {
		while (i < n && is_ows(v[i]))
			i++;
		if (i == n)
			break;
		if (v[i] != ';')
			return bad_header(m, "an unparsable Content-Disposition");
		i++;
		while (i < n && is_ows(v[i]))
			i++;
		if (i == n)
			break;
		size_t p0 = i;
		while (i < n && is_tchar((unsigned char)v[i]))
			i++;
		size_t p1 = i;
		while (i < n && is_ows(v[i]))
			i++;
		if (p1 == p0 || i == n || v[i] != '=')
			return bad_header(m, "an unparsable Content-Disposition");
		i++;
		while (i < n && is_ows(v[i]))
			i++;
		const char *pn = v + p0;
		size_t n_pn = p1 - p0;
		char **slot = NULL;
		bool *seen = NULL;
		if (ieq(pn, n_pn, "name")) {
			slot = &name;
			seen = &seen_name;
		} else if (ieq(pn, n_pn, "filename")) {
			slot = &filename;
			seen = &seen_filename;
		} else if (ieq(pn, n_pn, "filename*")) {
			slot = &filename_ext;
			seen = &seen_ext;
		}
		if (seen && *seen)
			return bad_header(m, "a repeated Content-Disposition parameter");
		if (seen)
			*seen = true;
		int rc = disposition_value(m, v, n, &i, slot != NULL, slot);
		if (rc)
			return rc;
	}
	if (filename_ext) {
		bool unsupported = false;
		int rc = decode_ext_value(m, filename_ext, &unsupported);
		if (rc)
			return rc;
		if (!unsupported)
			filename = filename_ext;
		else if (!filename)
			return fail(
				m, SFA_EINVAL,
				"The file name in part %zu uses a character set other than UTF-8.",
				m->n_parts);
	}
	if (filename) {
		int rc = sanitise_filename(m, filename);
		if (rc)
			return rc;
	}
	m->part.name = name;
	m->part.filename = filename;
	return 0;
}

static int parse_header_line(struct multipart *m)
{
	const char *s = m->line;
	size_t n = m->n_line;
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)s[i]))
		i++;
	if (i == 0 || i == n || s[i] != ':')
		return bad_header(m, "a header line that is not \"Name: value\"");
	size_t n_name = i++;
	while (i < n && is_ows(s[i]))
		i++;
	size_t end = n;
	while (end > i && is_ows(s[end - 1]))
		end--;
	const char *v = s + i;
	size_t n_v = end - i;
	if (ieq(s, n_name, "content-disposition")) {
		if (m->seen_disposition)
			return bad_header(m, "two Content-Disposition headers");
		m->seen_disposition = true;
		return parse_disposition(m, v, n_v);
	}
	if (ieq(s, n_name, "content-type")) {
		if (m->seen_type)
			return bad_header(m, "two Content-Type headers");
		m->seen_type = true;
		size_t start = m->n_decoded;
		for (size_t k = 0; k < n_v; k++) {
			int rc = dec_put(m, v[k]);
			if (rc)
				return rc;
		}
		int rc = dec_put(m, '\0');
		if (rc)
			return rc;
		m->part.content_type = m->decoded + start;
		return 0;
	}
	if (ieq(s, n_name, "content-transfer-encoding")) {
		/* RFC 7578 §4.7: deprecated; only the identity encodings are accepted, since
		 * decoding base64 here would hand callers bytes other than those sent. */
		if (ieq(v, n_v, "binary") || ieq(v, n_v, "8bit") || ieq(v, n_v, "7bit"))
			return 0;
		return fail(m, SFA_EINVAL,
		            "Part %zu of the upload uses a Content-Transfer-Encoding other than "
		            "binary, which is not supported.",
		            m->n_parts);
	}
	return 0; /* other headers are allowed and ignored */
}

static int begin_part(struct multipart *m)
{
	if (!m->seen_disposition)
		return bad_header(m, "no Content-Disposition header");
	if (!m->part.name || !m->part.name[0])
		return bad_header(m, "no name");
	if (m->part.filename) {
		if (m->n_files == m->lim.max_files)
			return fail(m, SFA_ETOOBIG, "The upload has more than %zu file%s.",
			            m->lim.max_files, m->lim.max_files == 1 ? "" : "s");
		m->n_files++;
	}
	m->is_file = m->part.filename != NULL;
	m->part.index = m->n_parts - 1;
	m->n_part_bytes = 0;
	m->n_field = 0;
	m->n_match = 0;
	m->state = ST_DATA;
	if (m->cb.on_part_begin)
		return after_callback(m, m->cb.on_part_begin(m->arg, &m->part));
	return 0;
}

/* ---- part data ------------------------------------------------------------------------ */

/* Delivers n bytes known to be part data (discarded in the preamble). */
static int emit(struct multipart *m, const char *p, size_t n)
{
	if (n == 0 || m->state != ST_DATA)
		return 0;
	char what[96], size[32];
	if (m->is_file) {
		uint64_t room = m->lim.max_file_bytes - m->n_part_bytes;
		bool over = (uint64_t)n > room;
		size_t n_ok = over ? (size_t)room : n;
		if (n_ok > 0) {
			m->n_part_bytes += n_ok;
			if (m->cb.on_file_data) {
				int rc = after_callback(m, m->cb.on_file_data(m->arg, p, n_ok));
				if (rc)
					return rc;
			}
		}
		if (over) {
			clip(m->part.filename[0] ? m->part.filename : m->part.name, what,
			     sizeof what);
			fmt_size(m->lim.max_file_bytes, size, sizeof size);
			return fail(m, SFA_ETOOBIG, "The file \"%s\" is larger than %s.", what,
			            size);
		}
		return 0;
	}
	if (n > m->lim.max_field_bytes - m->n_field) {
		clip(m->part.name, what, sizeof what);
		fmt_size(m->lim.max_field_bytes, size, sizeof size);
		return fail(m, SFA_ETOOBIG, "The field \"%s\" is larger than %s.", what, size);
	}
	memcpy(m->field + m->n_field, p, n);
	m->n_field += n;
	return 0;
}

/* A delimiter closed the preamble or the current part. */
static int end_part(struct multipart *m)
{
	bool in_part = m->state == ST_DATA;
	m->state = ST_AFTER_DELIM;
	if (!in_part)
		return 0;
	int rc;
	if (!m->is_file && m->cb.on_field) {
		m->field[m->n_field] = '\0';
		rc = after_callback(m, m->cb.on_field(m->arg, m->part.name, m->field, m->n_field));
		if (rc)
			return rc;
	}
	if (m->cb.on_part_end && (rc = after_callback(m, m->cb.on_part_end(m->arg))) != 0)
		return rc;
	return 0;
}

/* Scans preamble or part data for the delimiter; *used is how much of p was consumed
 * (all of it, or up to the end of a delimiter). */
static int scan(struct multipart *m, const char *p, size_t n, size_t *used)
{
	size_t i = 0;
	int rc;
	while (i < n) {
		if (m->n_match == 0) {
			const char *cr = memchr(p + i, '\r', n - i);
			size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
			if ((rc = emit(m, p + i, run)) != 0)
				return rc;
			i += run;
			if (!cr)
				break;
			m->n_match = 1;
			i++;
		} else if (p[i] == m->delim[m->n_match]) {
			m->n_match++;
			i++;
			if (m->n_match == m->n_delim) {
				m->n_match = 0;
				*used = i;
				return end_part(m);
			}
		} else {
			/* The held-back bytes were data after all; p[i] is examined again. */
			size_t held = m->n_match;
			m->n_match = 0;
			if ((rc = emit(m, m->delim, held)) != 0)
				return rc;
		}
	}
	*used = n;
	return 0;
}

static int bad_boundary_line(struct multipart *m)
{
	return fail(m, SFA_EINVAL,
	            "The upload is malformed: a boundary line does not end with CRLF.");
}

/* One byte outside preamble and data. */
static int step(struct multipart *m, char c)
{
	switch (m->state) {
	case ST_AFTER_DELIM:
		if (c == '-') {
			m->state = ST_CLOSE_DASH;
			return 0;
		}
		/* fall through */
	case ST_PAD:
		if (is_ows(c)) {
			m->state = ST_PAD;
			return 0;
		}
		if (c == '\r') {
			m->state = ST_DELIM_CR;
			return 0;
		}
		return bad_boundary_line(m);
	case ST_CLOSE_DASH:
		if (c != '-')
			return bad_boundary_line(m);
		m->state = ST_DONE;
		return 0;
	case ST_DELIM_CR:
		if (c != '\n')
			return bad_boundary_line(m);
		if (m->n_parts == m->lim.max_parts)
			return fail(m, SFA_ETOOBIG, "The upload has more than %zu part%s.",
			            m->lim.max_parts, m->lim.max_parts == 1 ? "" : "s");
		m->n_parts++;
		m->n_line = m->n_decoded = m->n_header_bytes = 0;
		m->seen_disposition = m->seen_type = false;
		memset(&m->part, 0, sizeof m->part);
		m->state = ST_HEADER;
		return 0;
	case ST_HEADER:
	case ST_HEADER_CR:
		if (m->n_header_bytes == m->lim.max_header_bytes) {
			char size[32];
			fmt_size(m->lim.max_header_bytes, size, sizeof size);
			return fail(m, SFA_ETOOBIG,
			            "The headers of part %zu of the upload are larger than %s.",
			            m->n_parts, size);
		}
		m->n_header_bytes++;
		if (m->state == ST_HEADER_CR) {
			if (c != '\n')
				return bad_header(m, "a header line that does not end with CRLF");
			m->state = ST_HEADER;
			if (m->n_line == 0)
				return begin_part(m);
			int rc = parse_header_line(m);
			m->n_line = 0;
			return rc;
		}
		if (c == '\r') {
			m->state = ST_HEADER_CR;
			return 0;
		}
		if (c == '\n')
			return bad_header(m, "a header line that does not end with CRLF");
		if (m->n_line == 0 && is_ows(c))
			return bad_header(m, "a folded header line");
		if ((unsigned char)c < 0x20 ? c != '\t' : c == 0x7F)
			return bad_header(m, "a control character in a header line");
		m->line[m->n_line++] = c;
		return 0;
	default:
		return 0;
	}
}

/* ---- feeding -------------------------------------------------------------------------- */

static int parse(struct multipart *m, const char *data, size_t n)
{
	size_t i = 0;
	while (i < n) {
		int rc;
		if (m->state == ST_PREAMBLE || m->state == ST_DATA) {
			size_t used = n - i; /* scan sets it; on an error it does not matter */
			rc = scan(m, data + i, n - i, &used);
			i += used;
		} else if (m->state == ST_DONE) {
			return 0;
		} else {
			rc = step(m, data[i++]);
		}
		if (rc)
			return rc;
	}
	return 0;
}

int multipart_feed(struct multipart *m, const char *data, size_t n)
{
	if (m->rc)
		return m->rc;
	if (!m->buf)
		return fail(m, SFA_EINVAL, "The upload parser was not initialised.");
	uint64_t room = m->lim.max_total_bytes - m->n_total_bytes;
	bool over = (uint64_t)n > room;
	size_t n_ok = over ? (size_t)room : n;
	m->n_total_bytes += n_ok;
	int rc = parse(m, data, n_ok);
	if (rc)
		return rc;
	if (over) {
		char size[32];
		fmt_size(m->lim.max_total_bytes, size, sizeof size);
		return fail(m, SFA_ETOOBIG, "The upload is larger than %s.", size);
	}
	return 0;
}

int multipart_finish(struct multipart *m)
{
	if (m->rc)
		return m->rc;
	if (!m->buf)
		return fail(m, SFA_EINVAL, "The upload parser was not initialised.");
	if (m->state == ST_DONE)
		return 0;
	if (m->state == ST_PREAMBLE)
		return fail(m, SFA_EINVAL, "The upload is empty or has no multipart boundary.");
	return fail(m, SFA_EINVAL,
	            "The upload ended before its closing boundary (was it cut off?).");
}
