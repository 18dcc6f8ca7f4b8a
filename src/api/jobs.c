/* jobs.c - GET /api/jobs, GET /api/jobs/:id, DELETE /api/jobs/:id (cancel).
 *
 * The list takes ?status, ?type and ?track_id filters; an unknown status or type is 422
 * like bad paging, since an empty page would hide the typo. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/routes.h"
#include "core/jobs.h"
#include "jobs/jobs.h"
#include "jobs/registry.h"
#include "util/err.h"
#include "util/uuid.h"

static bool one_of(const char *s, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(s, *names) == 0)
			return true;
	return false;
}

void api_jobs_list(struct http_ctx *ctx)
{
	static const char *const statuses[] = {"queued",     "running",   "downloading",
	                                       "processing", "analyzing", "completed",
	                                       "failed",     NULL};
	struct page p;
	if (!api_page(ctx, &p))
		return;
	const char *status = http_query(ctx, "status");
	const char *type = http_query(ctx, "type");
	const char *track_id = http_query(ctx, "track_id");
	status = status && *status ? status : NULL;
	type = type && *type ? type : NULL;
	track_id = track_id && *track_id ? track_id : NULL;
	json_t *details = json_object();
	if (status && !one_of(status, statuses))
		json_object_set_new(details, "status",
		                    json_pack("[s]", "must be one of queued, running, downloading, "
		                                     "processing, analyzing, completed, failed"));
	/* ?type names a type as clients see it; it selects every stored type shown so
	 * ("processing": local and lal.ai separations). */
	const char *types[DB_JOB_TYPES_MAX + 1];
	if (type && job_types_shown_as(type, types, DB_JOB_TYPES_MAX + 1) == 0) {
		char msg[160] = "must be one of";
		int n_shown = 0;
		for (int i = 0; i < job_types_n; i++)
			if (!job_types[i].shown_as)
				snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s %s",
				         n_shown++ ? "," : "", job_types[i].name);
		json_object_set_new(details, "type", json_pack("[s]", msg));
	}
	if (track_id && !uuid_valid(track_id))
		json_object_set_new(details, "track_id", json_pack("[s]", "must be a track id"));
	if (json_object_size(details)) {
		http_error_details(ctx, 422, "validation_failed", "The job filters are invalid.",
		                   details);
		return;
	}
	json_decref(details);
	struct db_job *jobs;
	size_t n;
	int64_t total = 0;
	if (db_job_list(ctx->app->db, ctx->user.id, status, type ? types : NULL, track_id, p.offset,
	                p.page_size, &ctx->arena, &jobs, &n, &total)) {
		api_db_error(ctx);
		return;
	}
	json_t *items = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(items, api_job_json(&jobs[i]));
	api_list(ctx, items, &p, total);
}

void api_jobs_get(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_job j;
	if (!uuid_valid(id) || db_job_get(ctx->app->db, ctx->user.id, id, &j) != 0) {
		api_not_found(ctx, "The job");
		return;
	}
	http_data(ctx, 200, api_job_json(&j));
}

void api_jobs_cancel(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	bool was_running = false;
	int rc = uuid_valid(id) ? db_job_cancel(ctx->app->db, ctx->user.id, id, (int64_t)time(NULL),
	                                        &was_running)
	                        : SFA_ENOTFOUND;
	if (rc == SFA_ENOTFOUND) {
		api_not_found(ctx, "The job");
		return;
	}
	if (rc == SFA_ECONFLICT) {
		http_error(ctx, 409, "conflict",
		           "The job has already finished; there is nothing to cancel.");
		return;
	}
	if (rc) {
		api_db_error(ctx);
		return;
	}
	scheduler_wake(ctx->app->sched);
	struct db_job j;
	db_job_get(ctx->app->db, ctx->user.id, id, &j);
	http_data(ctx, was_running ? 202 : 200, api_job_json(&j));
}

/* POST /api/jobs/:id/retry: runs a failed (or cancelled) job again as a new job with the
 * same type, track and options; the failed one stays in the history. */
void api_jobs_retry(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_job j;
	if (!uuid_valid(id) || db_job_get(ctx->app->db, ctx->user.id, id, &j) != 0) {
		api_not_found(ctx, "The job");
		return;
	}
	if (strcmp(j.status, "failed") != 0) {
		char msg[160];
		snprintf(msg, sizeof msg, "Only a failed job can be retried; this one is %s.",
		         j.status);
		http_error(ctx, 409, "conflict", msg);
		return;
	}
	json_error_t je;
	json_t *payload = json_loads(j.payload, 0, &je);
	struct db_job again;
	if (job_enqueue(ctx->app->db, ctx->app->sched, ctx->user.id,
	                j.track_id[0] ? j.track_id : NULL, j.type, payload, &again) != 0) {
		api_db_error(ctx);
		return;
	}
	char loc[96];
	snprintf(loc, sizeof loc, "/api/jobs/%s", again.id);
	http_set_header(ctx, "Location", loc);
	http_data(ctx, 201, api_job_json(&again));
}
