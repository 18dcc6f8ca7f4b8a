/* tracks.c - the user's library: GET/POST /api/tracks, GET/PATCH/DELETE /api/tracks/:id.
 *
 * The list takes ?q (title or artist contains) and ?sort (newest (default), oldest, title,
 * artist, duration, tempo, key: ascending, tracks without the value last).
 * List items carry what a library row shows beyond the track itself: "analysis" (tempo,
 * key, camelot of the latest analysis that has them, or null) and "stem_count" (stems of
 * the latest separation). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "core/library.h"
#include "util/err.h"
#include "util/uuid.h"

/* ?sort names, indexed by enum db_track_sort. */
static const char *const sorts[] = {"newest",   "oldest", "title", "artist",
                                    "duration", "tempo",  "key"};

void api_tracks_list(struct http_ctx *ctx)
{
	struct page p;
	if (!api_page(ctx, &p))
		return;
	const char *by = http_query(ctx, "sort");
	size_t sort = 0;
	while (by && *by && sort < sizeof sorts / sizeof *sorts && strcmp(by, sorts[sort]) != 0)
		sort++;
	if (sort == sizeof sorts / sizeof *sorts) {
		http_error_details(
			ctx, 422, "validation_failed", "The sort order is invalid.",
			json_pack("{s:[s]}", "sort",
		                  "must be one of newest, oldest, title, artist, duration, "
		                  "tempo, key"));
		return;
	}
	/* A repeated list of an unchanged library is answered as rendered last time. The
	 * version is read before the rows: a write in between makes the kept answer newer
	 * than its version says, never older. */
	char key[UUID_STR_LEN + 700];
	int64_t version = 0;
	bool cacheable = ctx->app->lists &&
	                 db_library_version(ctx->app->db, ctx->user.id, &version) == 0;
	const char *q = http_query(ctx, "q");
	if (cacheable) {
		int n_key = snprintf(key, sizeof key, "tracks\n%s\n%lld\n%lld\n%zu\n%s",
		                     ctx->user.id, (long long)p.page, (long long)p.page_size, sort,
		                     q ? q : "");
		cacheable = n_key > 0 && (size_t)n_key < sizeof key;
	}
	struct respcache_body *kept = cacheable ? respcache_get(ctx->app->lists, key, version)
	                                        : NULL;
	if (kept) {
		http_json_text(ctx, 200, kept->data, kept->len);
		respcache_release(kept);
		return;
	}
	struct db_track *t;
	size_t n;
	int64_t total = 0;
	if (db_track_list(ctx->app->db, ctx->user.id, q, (enum db_track_sort)sort, p.offset,
	                  p.page_size, &ctx->arena, &t, &n, &total)) {
		api_db_error(ctx);
		return;
	}
	struct db_track_summary *sum = NULL;
	if (db_track_summaries(ctx->app->db, ctx->user.id, t, n, &ctx->arena, &sum)) {
		api_db_error(ctx);
		return;
	}
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = api_track_json(&t[i]);
		json_t *a = json_object();
		if (sum[i].tempo_bpm > 0)
			json_object_set_new(a, "tempo", json_real(sum[i].tempo_bpm));
		if (sum[i].key[0])
			json_object_set_new(a, "key", json_string(sum[i].key));
		if (sum[i].camelot[0])
			json_object_set_new(a, "camelot", json_string(sum[i].camelot));
		json_object_set_new(o, "analysis",
		                    json_object_size(a) ? a : (json_decref(a), json_null()));
		json_object_set_new(o, "stem_count", json_integer(sum[i].n_stems));
		json_array_append_new(items, o);
	}
	api_list(ctx, items, &p, total);
	if (cacheable && ctx->status == 200)
		respcache_put(ctx->app->lists, key, version, ctx->resp.data, ctx->resp.len);
}

/* The fields of an analysis result that summarise it (no per-frame features). */
static json_t *analysis_summary(struct http_ctx *ctx, const char *track_id)
{
	char *text = NULL;
	if (db_analysis_latest(ctx->app->db, ctx->user.id, track_id, &text))
		return json_null();
	json_error_t je;
	json_t *full = json_loads(text, 0, &je);
	free(text);
	if (!full)
		return json_null();
	json_object_del(full, "features");
	json_object_del(full, "beats");
	return full;
}

void api_tracks_get(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_track t;
	if (!uuid_valid(id) || db_track_get(ctx->app->db, ctx->user.id, id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	json_t *stems = api_stems_json(ctx, t.id, NULL);
	if (!stems) {
		api_db_error(ctx);
		return;
	}
	json_t *o = api_track_json(&t);
	json_object_set_new(o, "stems", stems);
	json_object_set_new(o, "analysis", analysis_summary(ctx, t.id));
	http_data(ctx, 200, o);
}

void api_tracks_patch(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	static const char *const fields[] = {"title", "artist", "album"};
	const char *values[3] = {NULL, NULL, NULL};
	json_t *details = json_object();
	for (int i = 0; i < 3; i++) {
		json_t *v = json_object_get(body, fields[i]);
		if (!v)
			continue;
		if (!json_is_string(v))
			json_object_set_new(details, fields[i],
			                    json_pack("[s]", "must be a string"));
		else if (strlen(json_string_value(v)) >= DB_TEXT_MAX)
			json_object_set_new(details, fields[i],
			                    json_pack("[s]", "must be at most 500 characters"));
		else if (i == 0 && !*json_string_value(v))
			json_object_set_new(details, fields[i], json_pack("[s]", "can't be blank"));
		else
			values[i] = json_string_value(v);
	}
	if (json_object_size(details)) {
		http_error_details(ctx, 422, "validation_failed", "The track fields are invalid.",
		                   details);
		json_decref(body);
		return;
	}
	json_decref(details);
	struct db_track t;
	int rc = uuid_valid(id) ? db_track_update_meta(ctx->app->db, ctx->user.id, id, values[0],
	                                               values[1], values[2])
	                        : SFA_ENOTFOUND;
	json_decref(body);
	if (rc == SFA_ENOTFOUND || (rc == 0 && db_track_get(ctx->app->db, ctx->user.id, id, &t))) {
		api_not_found(ctx, "The track");
		return;
	}
	if (rc) {
		api_db_error(ctx);
		return;
	}
	http_data(ctx, 200, api_track_json(&t));
}

void api_tracks_delete(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	char err[256];
	int rc = uuid_valid(id) ? library_track_delete(ctx->app->db, ctx->app->sched,
	                                               ctx->app->cfg.data_dir, ctx->user.id, id,
	                                               err, sizeof err)
	                        : SFA_ENOTFOUND;
	if (rc == SFA_ENOTFOUND)
		api_not_found(ctx, "The track");
	else if (rc == SFA_ETIMEOUT)
		http_error(ctx, 409, "conflict", err);
	else if (rc)
		api_db_error(ctx);
	else
		http_text(ctx, 204, "application/json", "");
}
