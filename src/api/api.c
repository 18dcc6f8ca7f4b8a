/* api.c - see api.h. */
#include "api/api.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/csrf.h"
#include "http/multipart.h"
#include "jobs/registry.h"
#include "util/err.h"
#include "util/json.h"
#include "util/str.h"
#include "util/timeutil.h"

bool api_json_body(struct http_ctx *ctx, json_t **out)
{
	const char *ct = http_req_header(ctx, "Content-Type");
	if (!ct || strncasecmp(ct, "application/json", 16) != 0) {
		http_error(ctx, 400, "bad_request",
		           "Send the body as JSON with \"Content-Type: application/json\".");
		return false;
	}
	char err[256];
	if (json_parse_object(ctx->body.data ? ctx->body.data : "", ctx->body.len, out, err,
	                      sizeof err)) {
		http_error(ctx, 400, "bad_request", err);
		return false;
	}
	return true;
}

bool api_page(struct http_ctx *ctx, struct page *p)
{
	p->page = 1;
	p->page_size = 20;
	json_t *details = json_object();
	long v;
	const char *s = http_query(ctx, "page");
	if (s) {
		if (str_to_long(s, 1, 1000000, &v))
			json_object_set_new(
				details, "page",
				json_pack("[s]", "must be a whole number of at least 1"));
		else
			p->page = v;
	}
	s = http_query(ctx, "page_size");
	if (s) {
		if (str_to_long(s, 1, 100, &v))
			json_object_set_new(
				details, "page_size",
				json_pack("[s]", "must be a whole number from 1 to 100"));
		else
			p->page_size = v;
	}
	if (json_object_size(details)) {
		http_error_details(ctx, 422, "validation_failed",
		                   "The paging parameters are invalid.", details);
		return false;
	}
	json_decref(details);
	p->offset = (p->page - 1) * p->page_size;
	return true;
}

void api_list(struct http_ctx *ctx, json_t *items, const struct page *p, int64_t total)
{
	int64_t pages = (total + p->page_size - 1) / p->page_size;
	http_json(ctx, 200,
	          json_pack("{s:o, s:{s:I, s:I, s:I, s:I}}", "data", items, "meta", "page",
	                    (json_int_t)p->page, "page_size", (json_int_t)p->page_size,
	                    "total_count", (json_int_t)total, "total_pages", (json_int_t)pages));
}

void api_not_found(struct http_ctx *ctx, const char *what)
{
	char msg[128];
	snprintf(msg, sizeof msg, "%s was not found.", what);
	http_error(ctx, 404, "not_found", msg);
}

void api_db_error(struct http_ctx *ctx)
{
	http_error(ctx, 500, "internal",
	           "The database could not complete the request; try again in a moment.");
}

json_t *api_time(int64_t t)
{
	if (!t)
		return json_null();
	char s[32];
	time_format_rfc3339((time_t)t, s, sizeof s);
	return json_string(s);
}

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

bool api_track_with_audio(struct http_ctx *ctx, const char *id, struct db_track *t)
{
	if (!id || !uuid_valid(id) || db_track_get(ctx->app->db, ctx->user.id, id, t) != 0) {
		api_not_found(ctx, "The track");
		return false;
	}
	if (!t->audio_path[0]) {
		http_error(ctx, 409, "audio_not_ready",
		           "The track has no audio yet; download or upload it first.");
		return false;
	}
	return true;
}

json_t *api_track_json(const struct db_track *t)
{
	json_t *audio = json_null();
	if (t->audio_path[0])
		audio = json_pack("{s:s+, s:s, s:I, s:i, s:i, s:f}", "url", "/files/",
		                  t->audio_path, "format", t->audio_format, "file_size",
		                  (json_int_t)t->audio_size, "sample_rate", t->audio_rate_hz,
		                  "channels", t->audio_channels, "duration", t->audio_duration_s);
	json_t *transform = t->transform[0] ? json_loads(t->transform, 0, NULL) : NULL;
	return json_pack(
		"{s:s, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, "
		"s:o}",
		"id", t->id, "spotify_id", str_or_null(t->spotify_id), "title", t->title, "artist",
		t->artist, "album", t->album, "album_art_url", str_or_null(t->album_art_url),
		"duration", t->duration_s ? json_integer(t->duration_s) : json_null(),
		"spotify_url", str_or_null(t->spotify_url), "isrc", str_or_null(t->isrc), "source",
		t->source, "audio", audio, "created_at", api_time(t->created_at), "updated_at",
		api_time(t->updated_at), "parent_id", str_or_null(t->parent_id), "transform",
		transform ? transform : json_null());
}

void api_csrf_field(struct http_ctx *ctx, const char *value, size_t n)
{
	char token[128];
	if (!ctx->csrf_pending || n >= sizeof token)
		return;
	memcpy(token, value, n);
	token[n] = '\0';
	if (!ctx->csrf_cookie_new && csrf_valid(ctx->app->cfg.csrf_key, ctx->csrf_cookie, token))
		ctx->csrf_pending = false;
}

bool api_csrf_refused(struct http_ctx *ctx)
{
	if (!ctx->csrf_pending)
		return false;
	http_error(ctx, 403, "forbidden", API_CSRF_FIRST);
	return true;
}

int api_multipart_begin(struct http_ctx *ctx, struct multipart *mp,
                        const struct multipart_limits *lim, const struct multipart_callbacks *cb,
                        void *arg, const char *usage)
{
	char boundary[MULTIPART_BOUNDARY_MAX + 1];
	const char *ct = http_req_header(ctx, "Content-Type");
	int rc = multipart_boundary(ct ? ct : "", boundary, sizeof boundary);
	if (rc) {
		http_error(ctx, rc == SFA_EUNSUPP ? 415 : 400,
		           rc == SFA_EUNSUPP ? "unsupported_media_type" : "bad_request", usage);
		return -1;
	}
	if (multipart_init(mp, boundary, lim, cb, arg)) {
		http_error(ctx, 400, "bad_request", "The multipart boundary is not valid.");
		return -1;
	}
	return 0;
}

void api_multipart_error(struct http_ctx *ctx, const struct multipart *mp, int rc)
{
	const char *msg = multipart_error(mp);
	if (rc == SFA_EAUTH)
		http_error(ctx, 403, "forbidden", msg);
	else if (rc == SFA_ETOOBIG)
		http_error(ctx, 413, "payload_too_large", msg);
	else if (rc == SFA_EIO)
		http_error(ctx, 500, "internal", msg);
	else
		http_error(ctx, 400, "bad_request", msg);
}

int api_multipart_feed(struct http_ctx *ctx, struct multipart *mp, const char *data, size_t n)
{
	int rc = multipart_feed(mp, data, n);
	if (rc) {
		api_multipart_error(ctx, mp, rc);
		return -1;
	}
	return 0;
}

json_t *api_stems_json(struct http_ctx *ctx, const char *track_id, const char *job_id)
{
	struct db_stem *s;
	size_t n;
	if (db_stem_list(ctx->app->db, ctx->user.id, track_id, job_id, &ctx->arena, &s, &n))
		return NULL;
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, api_stem_json(&s[i]));
	return a;
}

json_t *api_stem_json(const struct db_stem *s)
{
	return json_pack("{s:s, s:s, s:s+, s:I, s:s, s:f, s:s, s:s, s:s}", "id", s->id, "stem_type",
	                 s->stem_type, "file_path", "/files/", s->file_path, "file_size",
	                 (json_int_t)s->file_size, "format", s->format, "duration", s->duration_s,
	                 "engine", s->engine, "model", s->model, "job_id", s->job_id);
}

json_t *api_job_json(const struct db_job *j)
{
	/* The type clients know: a "lalalai" job is shown as "processing" (jobs/registry.h). */
	json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:i, s:s?, s:s?, s:i, s:i, s:o, s:o, s:o}",
	                      "id", j->id, "type", job_type_shown(j->type), "track_id",
	                      j->track_id[0] ? j->track_id : NULL, "status", j->status, "progress",
	                      j->progress, "message", j->message[0] ? j->message : NULL, "error",
	                      j->error[0] && strcmp(j->status, "completed") != 0 ? j->error : NULL,
	                      "attempts", j->attempts, "max_attempts", j->max_attempts,
	                      "created_at", api_time(j->created_at), "started_at",
	                      api_time(j->started_at), "finished_at", api_time(j->finished_at));
	if (o && j->result[0]) {
		json_error_t je;
		json_t *r = json_loads(j->result, 0, &je);
		if (r)
			json_object_set_new(o, "result", r);
	}
	return o;
}
