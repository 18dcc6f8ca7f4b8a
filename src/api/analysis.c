/* analysis.c - POST /api/analysis/analyze and GET /api/analysis/job/:id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/routes.h"
#include "dsp/dsp.h"
#include "core/jobs.h"
#include "jobs/jobs.h"
#include "util/err.h"
#include "util/uuid.h"

void api_analysis_analyze(struct http_ctx *ctx)
{
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	json_t *details = json_object();
	const char *track_id = json_string_value(json_object_get(body, "track_id"));
	if (!track_id)
		json_object_set_new(details, "track_id", json_pack("[s]", "must be a track id"));
	json_t *features = json_object_get(body, "features");
	json_t *list = json_array();
	if (!features) {
		json_array_append_new(list, json_string("all"));
	} else if (!json_is_array(features) || json_array_size(features) == 0) {
		json_object_set_new(details, "features",
		                    json_pack("[s]", "must be a non-empty list of feature names"));
	} else {
		size_t i;
		json_t *f;
		json_array_foreach(features, i, f)
		{
			if (!json_is_string(f) || !dsp_feature_bit(json_string_value(f))) {
				char key[32];
				snprintf(key, sizeof key, "features[%zu]", i);
				json_object_set_new(
					details, key,
					json_pack("[s]", "must be one of " DSP_FEATURE_NAMES));
			} else {
				json_array_append(list, f);
			}
		}
	}
	json_t *fr = json_object_get(body, "frame_rate");
	if (fr &&
	    (!json_is_number(fr) || json_number_value(fr) <= 0 || json_number_value(fr) > 100))
		json_object_set_new(
			details, "frame_rate",
			json_pack("[s]", "must be a number of columns per second, 0 to 100"));
	if (json_object_size(details)) {
		json_decref(list);
		json_decref(body);
		http_error_details(ctx, 422, "validation_failed",
		                   "The analysis request is invalid.", details);
		return;
	}
	json_decref(details);
	struct db_track t;
	if (!api_track_with_audio(ctx, track_id, &t)) {
		json_decref(list);
		json_decref(body);
		return;
	}
	json_t *payload = json_pack("{s:o}", "features", list);
	if (fr)
		json_object_set(payload, "frame_rate", fr);
	json_decref(body);
	struct db_job j;
	if (job_enqueue(ctx->app->db, ctx->app->sched, ctx->user.id, t.id, "analysis", payload,
	                &j) != 0) {
		api_db_error(ctx);
		return;
	}
	char loc[96];
	snprintf(loc, sizeof loc, "/api/analysis/job/%s", j.id);
	http_set_header(ctx, "Location", loc);
	http_data(
		ctx, 201,
		json_pack("{s:s, s:s, s:s}", "job_id", j.id, "track_id", t.id, "status", "queued"));
}

void api_analysis_job(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_job j;
	if (!uuid_valid(id) || db_job_get(ctx->app->db, ctx->user.id, id, &j) != 0 ||
	    strcmp(j.type, "analysis") != 0) {
		api_not_found(ctx, "The analysis job");
		return;
	}
	json_t *result = json_null();
	char *text = NULL;
	if (strcmp(j.status, "completed") == 0 &&
	    db_analysis_for_job(ctx->app->db, ctx->user.id, j.id, &text) == 0) {
		json_error_t je;
		json_t *r = json_loads(text, 0, &je);
		if (r) {
			json_decref(result);
			result = r;
		}
		free(text);
	}
	http_data(ctx, 200,
	          json_pack("{s:s, s:s, s:s?, s:i, s:o, s:s?}", "id", j.id, "track_id", j.track_id,
	                    "status", j.status, "progress", j.progress, "result", result, "error",
	                    strcmp(j.status, "failed") == 0 ? j.error : NULL));
}
