/* tracks.c - the user's library: GET/POST /api/tracks, GET/PATCH/DELETE /api/tracks/:id. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "jobs/jobs.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/err.h"
#include "util/uuid.h"

static void add_track(void *arg, const struct db_track *t)
{
	json_array_append_new(arg, api_track_json(t));
}

void api_tracks_list(struct http_ctx *ctx)
{
	struct page p;
	if (!api_page(ctx, &p))
		return;
	json_t *items = json_array();
	int64_t total = 0;
	if (db_track_list(ctx->app->db, ctx->user.id, http_query(ctx, "q"), p.offset, p.page_size,
	                  add_track, items, &total)) {
		json_decref(items);
		api_db_error(ctx);
		return;
	}
	api_list(ctx, items, &p, total);
}

static void add_stem(void *arg, const struct db_stem *s)
{
	json_array_append_new(arg, api_stem_json(s));
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
	json_t *o = api_track_json(&t);
	json_t *stems = json_array();
	db_stem_list(ctx->app->db, ctx->user.id, t.id, NULL, add_stem, stems);
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
			json_object_set_new(details, fields[i], json_pack("[s]", "must be a string"));
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

struct stem_paths {
	struct http_ctx *ctx;
	int n_failed;
};

static void remove_stem_file(void *arg, const struct db_stem *s)
{
	struct stem_paths *sp = arg;
	char path[PATH_MAX * 2];
	snprintf(path, sizeof path, "%s/uploads/%s", sp->ctx->app->cfg.data_dir, s->file_path);
	if (unlink(path) != 0 && errno != ENOENT)
		sp->n_failed++;
	char *slash = strrchr(path, '/');
	if (slash) {
		*slash = '\0';
		rmdir(path); /* the job's folder, once empty */
	}
}

struct job_ids {
	struct db *db;
	const char *user_id;
	const char *track_id;
};

static void cancel_if_active(void *arg, const struct db_job *j)
{
	struct job_ids *ids = arg;
	if (strcmp(j->track_id, ids->track_id) != 0)
		return;
	bool was_running;
	db_job_cancel(ids->db, ids->user_id, j->id, (int64_t)time(NULL), &was_running);
}

void api_tracks_delete(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db *db = ctx->app->db;
	struct db_track t;
	if (!uuid_valid(id) || db_track_get(db, ctx->user.id, id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	/* Stop its work first, so no job writes into what is being removed. */
	struct job_ids ids = {db, ctx->user.id, t.id};
	int64_t total;
	db_job_list(db, ctx->user.id, NULL, NULL, 0, 1000, cancel_if_active, &ids, &total);
	scheduler_wake();
	struct stem_paths sp = {ctx, 0};
	db_stem_list_all(db, ctx->user.id, t.id, remove_stem_file, &sp);
	char dir[PATH_MAX * 2];
	snprintf(dir, sizeof dir, "%s/uploads/downloads/%s", ctx->app->cfg.data_dir, t.id);
	if (fs_remove_tree(dir) != 0 || sp.n_failed)
		log_warn("track %s: some files could not be removed", t.id);
	if (db_track_delete(db, ctx->user.id, t.id) != 0) {
		api_db_error(ctx);
		return;
	}
	log_info("track %s deleted", t.id);
	http_text(ctx, 204, "application/json", "");
}
