/* download.c - POST /api/download/track and GET /api/download/job/:id.
 *
 * The link is fetched from Spotify and its tracks upserted into the caller's library
 * (as /api/spotify/fetch does); then each track gets a "download" job (jobs/job_download.c
 * does the work), unless it already has a queued or running download, which is returned
 * instead. A track link answers with the one job (201, or 200 when it was already
 * active); an album or playlist link answers 201 with every track's job.
 *
 * The download job's status moves queued → downloading → processing → completed | failed.
 * The scheduler marks a claimed job "running" until its worker's first report (a few
 * milliseconds); this route shows that moment as "downloading".
 */
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/routes.h"
#include "api/spotify_api.h"
#include "core/jobs.h"
#include "jobs/jobs.h"
#include "jobs/workers.h"
#include "util/err.h"
#include "util/uuid.h"

static const char *api_status(const struct db_job *j)
{
	return strcmp(j->status, "running") == 0 ? "downloading" : j->status;
}

/* Finds the track's active download or enqueues one. *created tells which. */
static int download_job_for(struct http_ctx *ctx, const struct db_track *t, const char *quality,
                            struct db_job *out, bool *created)
{
	struct db *db = ctx->app->db;
	if (db_job_active_for_track(db, ctx->user.id, t->id, "download", out) == 0) {
		*created = false;
		return 0;
	}
	*created = true;
	return job_enqueue(db, ctx->app->sched, ctx->user.id, t->id, "download",
	                   json_pack("{s:s, s:s}", "quality", quality, "spotify_id", t->spotify_id),
	                   out);
}

static json_t *job_ref(const struct db_job *j)
{
	return json_pack("{s:s, s:s, s:s}", "job_id", j->id, "track_id", j->track_id, "status",
	                 api_status(j));
}

void api_download_track(struct http_ctx *ctx)
{
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	const char *quality = "high";
	json_t *qv = json_object_get(body, "quality");
	if (qv && !json_is_null(qv)) {
		const char *q = json_is_string(qv)
		                        ? job_download_quality_valid(json_string_value(qv))
		                        : NULL;
		if (!q) {
			http_error_details(ctx, 422, "validation_failed",
			                   "The quality is not one of "
			                   "lossless, high, medium or low.",
			                   json_pack("{s:[s]}", "quality",
			                             "must be one of lossless, high, medium, low"));
			json_decref(body);
			return;
		}
		quality = q;
	}
	struct api_spotify_fetched f = {0};
	if (!api_spotify_fetch_body(ctx, body, &f))
		return;
	const struct spotify_result *r = f.result;
	if (r->kind == SPOTIFY_TRACK && r->n_tracks == 1) {
		struct db_job j;
		bool created;
		if (download_job_for(ctx, &f.tracks[0], quality, &j, &created) != 0) {
			api_spotify_fetched_free(&f);
			api_db_error(ctx);
			return;
		}
		api_spotify_fetched_free(&f);
		if (created) {
			char loc[64];
			snprintf(loc, sizeof loc, "/api/download/job/%s", j.id);
			http_set_header(ctx, "Location", loc);
		}
		http_data(ctx, created ? 201 : 200, job_ref(&j));
		return;
	}
	if (r->n_tracks > (size_t)ctx->app->cfg.download_max_tracks) {
		char msg[300];
		snprintf(
			msg, sizeof msg,
			"This %s has %zu tracks; one download request queues at most %d. Its tracks "
			"are in your library now: download them in smaller batches.",
			spotify_kind_name(r->kind), r->n_tracks, ctx->app->cfg.download_max_tracks);
		api_spotify_fetched_free(&f);
		http_error(ctx, 422, "too_many_tracks", msg);
		return;
	}
	json_t *jobs = json_array();
	for (size_t i = 0; i < r->n_tracks; i++) {
		struct db_job j;
		bool created;
		if (download_job_for(ctx, &f.tracks[i], quality, &j, &created) != 0) {
			/* The jobs made so far stay queued: each one is valid on its own. */
			json_decref(jobs);
			api_spotify_fetched_free(&f);
			api_db_error(ctx);
			return;
		}
		json_array_append_new(jobs, job_ref(&j));
	}
	const char *kind = spotify_kind_name(r->kind);
	json_t *data = json_pack("{s:s, s:s, s:s, s:o}", "type", kind, "spotify_id",
	                         r->info.spotify_id, "name", r->info.name, "jobs", jobs);
	api_spotify_fetched_free(&f);
	http_data(ctx, 201, data);
}

void api_download_job(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_job j;
	if (!uuid_valid(id) || db_job_get(ctx->app->db, ctx->user.id, id, &j) != 0 ||
	    strcmp(j.type, "download") != 0) {
		api_not_found(ctx, "The download job");
		return;
	}
	json_t *result = NULL;
	if (j.result[0]) {
		json_error_t je;
		result = json_loads(j.result, 0, &je);
	}
	json_t *path = json_object_get(result, "output_path");
	json_t *size = json_object_get(result, "file_size");
	json_t *quality = json_object_get(result, "quality");
	if (!quality) {
		json_t *payload = json_loads(j.payload, 0, NULL);
		quality = json_object_get(payload, "quality");
		if (json_is_string(quality))
			quality = json_string(json_string_value(quality));
		else
			quality = NULL;
		json_decref(payload);
	} else {
		json_incref(quality);
	}
	bool failed = strcmp(j.status, "failed") == 0;
	json_t *o = json_pack("{s:s, s:s, s:i, s:O?, s:O?, s:s?, s:s?, s:s?, s:o?, s:o, s:o, s:o}",
	                      "id", j.id, "status", api_status(&j), "progress", j.progress,
	                      "output_path", json_is_string(path) ? path : NULL, "file_size",
	                      json_is_integer(size) ? size : NULL, "error",
	                      failed && j.error[0] ? j.error : NULL, "track_id",
	                      j.track_id[0] ? j.track_id : NULL, "message",
	                      j.message[0] && !failed ? j.message : NULL, "quality", quality,
	                      "created_at", api_time(j.created_at), "started_at",
	                      api_time(j.started_at), "finished_at", api_time(j.finished_at));
	json_decref(result);
	http_data(ctx, 200, o);
}
