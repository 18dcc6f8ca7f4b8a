/* api.h - helpers shared by the /api handlers: JSON bodies, pagination, resource JSON.
 *
 * Threading: called on the HTTP worker thread that serves the request; nothing here is
 * shared between requests. Memory: json_t results are new references (caller decrefs);
 * other request data lives in the request's arena, freed with it. */
#ifndef SFA_API_API_H
#define SFA_API_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/app.h"
#include "db/db.h"
#include "http/request.h"

/* Parses the request body as a JSON object into *out (caller decrefs). On failure it
 * has already answered 400 and returns false. */
bool api_json_body(struct http_ctx *ctx, json_t **out);

struct page {
	int64_t page, page_size, offset;
};
/* Reads ?page (>= 1, default 1) and ?page_size (1..100, default 20); answers 422 with
 * details and returns false when they are not whole numbers in range. */
bool api_page(struct http_ctx *ctx, struct page *p);
/* {"data": items, "meta": {...}}; items consumed. */
void api_list(struct http_ctx *ctx, json_t *items, const struct page *p, int64_t total);

/* 404 for another user's or a missing resource: the same answer either way. */
void api_not_found(struct http_ctx *ctx, const char *what);
void api_db_error(struct http_ctx *ctx);

/* RFC 3339 string or JSON null for 0. */
json_t *api_time(int64_t t);
json_t *api_track_json(const struct db_track *t);
json_t *api_stem_json(const struct db_stem *s);
/* A job as the API shows it (a new object). */
json_t *api_job_json(const struct db_job *j);

/* A session's multipart request may carry the CSRF token as a "_csrf_token" field instead
 * of the x-csrf-token header (API.md §2). The route's parser hands the field's value to
 * api_csrf_field; a file part may start only once it was valid (API_CSRF_FIRST says so),
 * and the handler calls api_csrf_refused first, which answers 403 when it never was. */
#define API_CSRF_FIRST                                                                       \
	"The CSRF token is missing or invalid; send it in the x-csrf-token header, or as a " \
	"_csrf_token field before the files."
void api_csrf_field(struct http_ctx *ctx, const char *value, size_t n);
bool api_csrf_refused(struct http_ctx *ctx);

/* Streamed multipart bodies (the upload, the DAW export): the route's body callback starts
 * its parser with api_multipart_begin on the first chunk, which reads the boundary from
 * Content-Type (415 or 400 with usage when there is none) and initialises *mp with the
 * route's limits and callbacks. api_multipart_feed then feeds each chunk. Both return 0,
 * or -1 having answered the error; api_multipart_error answers a parse failure rc from
 * multipart_feed or multipart_finish (403, 413, 500 or 400, with the parser's sentence).
 * *mp stays the route's to free (multipart_free), initialised or not. */
struct multipart;
struct multipart_limits;
struct multipart_callbacks;
int api_multipart_begin(struct http_ctx *ctx, struct multipart *mp,
                        const struct multipart_limits *lim, const struct multipart_callbacks *cb,
                        void *arg, const char *usage);
int api_multipart_feed(struct http_ctx *ctx, struct multipart *mp, const char *data, size_t n);
void api_multipart_error(struct http_ctx *ctx, const struct multipart *mp, int rc);
/* A track's stems (one separation, or its latest with job_id NULL) as a JSON array; NULL
 * when the database fails. */
json_t *api_stems_json(struct http_ctx *ctx, const char *track_id, const char *job_id);

/* Content-Disposition: attachment named "<artist> - <title> (<what>).<ext>" (files.c). */
/* Sends the stored file at rel (under data/uploads) if it is safe and there, with Range,
 * ETag and Last-Modified; download_name (or NULL) makes it an attachment. 404 otherwise. */
void api_send_file(struct http_ctx *ctx, const char *rel, const char *download_name);
/* The caller's track id (404 when not, or not a valid id) that has audio (409 when not)
 * into *t; false with the answer sent. */
bool api_track_with_audio(struct http_ctx *ctx, const char *id, struct db_track *t);
/* uploads/<rel> (a file of the caller's, checked by the caller) as api_send_file sends it. */
void api_send_owned(struct http_ctx *ctx, const char *rel, const char *download_name);
/* "<artist> - <title> (<what>).<ext>" (without " (<what>)" when what is NULL) with path
 * separators replaced, into out. */
void api_export_name(const struct db_track *t, const char *what, const char *ext, char *out,
                     size_t n);
void api_attachment(struct http_ctx *ctx, const struct db_track *t, const char *what,
                    const char *ext);
/* Content-Disposition: attachment with an ASCII fallback and the exact UTF-8 name. */
void api_attachment_name(struct http_ctx *ctx, const char *name);

#endif
