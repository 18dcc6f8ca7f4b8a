/* multipart.h - a streaming multipart/form-data parser (RFC 7578, RFC 2046 §5.1).
 *
 * A push parser: the caller feeds the request body in chunks of any size (one byte at a
 * time works; a boundary may straddle chunks) and receives callbacks as parts begin, as
 * file bytes arrive and as plain fields complete. Memory is constant: one buffer, sized
 * from the limits and allocated by multipart_init, holds the current header line, the
 * decoded part parameters and the value of the current plain field. File data is never
 * held: it is handed to on_file_data as it arrives, in pieces of unspecified size, so an
 * upload of any size streams straight to disk.
 *
 * A body is rejected whole with SFA_EINVAL when it is malformed (a boundary line or header
 * line without CRLF, a folded or unparsable header line, a part without
 * "Content-Disposition: form-data" and a non-empty name, a bad quoted string or
 * filename*, a filename with control characters or invalid UTF-8, a body that ends before
 * its close delimiter) and with SFA_ETOOBIG when a limit is hit; multipart_error() then
 * says which, as a sentence a user can act on ("The file \"x.wav\" is larger than
 * 500 MB."). A preamble before the first boundary and an epilogue after the close
 * delimiter are ignored. Header names and parameter names are case-insensitive.
 *
 * Filenames are sanitised before the caller sees them: filename*=UTF-8''... (RFC 5987 /
 * RFC 2231, UTF-8 or ISO-8859-1, converted to UTF-8) wins over filename=; directory
 * components written with '/' or '\' are stripped ("../../etc/passwd" -> "passwd",
 * "C:\x\y.wav" -> "y.wav"); "." and ".." become "". An empty filename (browsers send
 * filename="" for an empty file input) is passed on as "": the part is still a file part.
 * In quoted strings only \" and \\ are escapes: browsers never escape (they write %22 for
 * a quote) and Windows paths are full of backslashes, so "C:\x\y.wav" keeps its
 * separators instead of collapsing to "C:xy.wav".
 *
 * Threading: a struct multipart belongs to one thread (the one reading the request
 * body); callbacks run on that thread, inside multipart_feed.
 *
 * Use (an upload handler):
 *     char b[MULTIPART_BOUNDARY_MAX + 1];
 *     rc = multipart_boundary(content_type, b, sizeof b);   // EUNSUPP -> 415, EINVAL -> 400
 *     struct multipart_limits lim = multipart_default_limits;
 *     lim.max_file_bytes = cfg->max_upload_mb << 20;
 *     rc = multipart_init(&m, b, &lim, &callbacks, &state);
 *     for each body chunk: rc = multipart_feed(&m, chunk, n);  // stop at the first error
 *     rc = multipart_finish(&m);                              // ETOOBIG -> 413, else 400/422
 *     ... multipart_error(&m) is the message; multipart_free(&m) in every path.
 */
#ifndef SFA_HTTP_MULTIPART_H
#define SFA_HTTP_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MULTIPART_BOUNDARY_MAX = 70, MULTIPART_ERR_MAX = 256 };

/* Extracts the boundary parameter of a "multipart/form-data" Content-Type header value
 * (quoted or not; the parameter name is case-insensitive) into out, NUL-terminated;
 * out needs MULTIPART_BOUNDARY_MAX + 1 bytes for any valid boundary.
 * Returns 0, SFA_EUNSUPP when the type is not multipart/form-data (a 415 for the API),
 * SFA_EINVAL when the header is malformed or the boundary is missing, empty, longer than
 * 70 characters, ends in a space or holds a character RFC 2046 does not allow, or
 * SFA_ETOOBIG when n_out is too small. out is written only on success. */
int multipart_boundary(const char *content_type, char *out, size_t n_out);

/* Every limit is enforced exactly: a value equal to the limit is accepted. */
struct multipart_limits {
	size_t max_parts;         /* parts of any kind */
	size_t max_files;         /* parts with a filename */
	size_t max_header_bytes;  /* header section of one part, CRLFs included */
	size_t max_field_bytes;   /* value of one plain field (buffered whole) */
	uint64_t max_file_bytes;  /* data of one file part */
	uint64_t max_total_bytes; /* everything fed, preamble and epilogue included */
};

/* 64 parts, 16 files, 8 KiB of headers per part, 1 MiB per field, 500 MiB per file,
 * 512 MiB in all. Callers copy it and override what their route needs. */
extern const struct multipart_limits multipart_default_limits;

struct multipart_part {
	const char *name;         /* never NULL, never empty */
	const char *filename;     /* NULL for a plain field; sanitised, may be "" */
	const char *content_type; /* the part's Content-Type value, NULL when absent */
	size_t index;             /* 0 for the first part */
};

/* Any callback may be NULL. Strings passed in are owned by the parser and valid until
 * on_part_end returns. A callback returning non-zero stops parsing: multipart_feed then
 * returns that code, and every later call returns it too. For every part, in order:
 * on_part_begin, then on_file_data any number of times (file parts; possibly zero times
 * for an empty file) or on_field once (plain fields), then on_part_end. After an error
 * no further callback runs, not even on_part_end for the part that was open: the caller
 * cleans up (deletes its temporary file) in its error path. */
struct multipart_callbacks {
	int (*on_part_begin)(void *arg, const struct multipart_part *p);
	int (*on_file_data)(void *arg, const char *data, size_t n);
	/* value is NUL-terminated after n bytes but may contain NUL bytes itself. */
	int (*on_field)(void *arg, const char *name, const char *value, size_t n);
	int (*on_part_end)(void *arg);
};

/* The parser's state. Callers allocate it (on the stack is fine) and touch its fields
 * only through the functions below. */
struct multipart {
	int state;
	int rc; /* sticky: 0, or the error every later call returns */
	char delim[4 + MULTIPART_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
	size_t n_delim;
	size_t n_match; /* bytes of delim matched and held back */
	struct multipart_limits lim;
	struct multipart_callbacks cb;
	void *arg;
	char *buf; /* line | decoded | field, malloced by multipart_init */
	char *line, *decoded, *field;
	size_t n_line, n_decoded, n_decoded_cap, n_field, n_header_bytes;
	uint64_t n_total_bytes, n_part_bytes;
	size_t n_parts, n_files;
	struct multipart_part part;
	bool seen_disposition, seen_type, is_file;
	char err[MULTIPART_ERR_MAX];
};

/* Prepares m to parse a body delimited by boundary (as multipart_boundary returns it),
 * with lim (NULL: multipart_default_limits), cb (copied; NULL: no callbacks) and arg
 * passed to every callback. Allocates one buffer of about 2 * max_header_bytes +
 * max_field_bytes bytes; multipart_free releases it. Returns 0, SFA_EINVAL for a bad
 * boundary or limits whose buffer size overflows, or SFA_ENOMEM. After a failure m is
 * still safe to pass to multipart_free and multipart_error. */
int multipart_init(struct multipart *m, const char *boundary, const struct multipart_limits *lim,
                   const struct multipart_callbacks *cb, void *arg);

/* Parses n more bytes of the body. Returns 0, SFA_EINVAL (malformed), SFA_ETOOBIG (a
 * limit) or a callback's non-zero code; errors are sticky. Bytes after the close
 * delimiter are counted against max_total_bytes and otherwise ignored. */
int multipart_feed(struct multipart *m, const char *data, size_t n);

/* Call at the end of the body. Returns 0 when the close delimiter was seen, the sticky
 * error if there was one, or SFA_EINVAL for a body cut short. */
int multipart_finish(struct multipart *m);

/* The message for the last error, "" when there was none. Owned by m. */
const char *multipart_error(const struct multipart *m);

/* For callbacks that reject what they are given: records a printf-style message as m's
 * error and returns code, so that a callback can `return multipart_fail(m, SFA_EINVAL,
 * "The manifest is not JSON.")`. A callback that returns non-zero without calling it
 * leaves the generic message "The upload was rejected." */
int multipart_fail(struct multipart *m, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Releases the buffer. Safe on a zeroed or failed-init struct and safe to call twice. */
void multipart_free(struct multipart *m);

#endif
