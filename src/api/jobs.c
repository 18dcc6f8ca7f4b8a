/* jobs.c - GET /api/jobs, GET /api/jobs/:id, DELETE /api/jobs/:id (cancel). */
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/routes.h"
#include "jobs/jobs.h"
#include "util/err.h"
#include "util/uuid.h"

static void add_job(void *arg, const struct db_job *j) { json_array_append_new(arg, job_to_json(j)); }

void api_jobs_list(struct http_ctx *ctx)
{
	struct page p;
	if (!api_page(ctx, &p))
		return;
	const char *status = http_query(ctx, "status");
	const char *type = http_query(ctx, "type");
	json_t *items = json_array();
	int64_t total = 0;
	if (db_job_list(ctx->app->db, ctx->user.id, status && *status ? status : NULL,
	                type && *type ? type : NULL, p.offset, p.page_size, add_job, items, &total)) {
		json_decref(items);
		api_db_error(ctx);
		return;
	}
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
	http_data(ctx, 200, job_to_json(&j));
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
		http_error(ctx, 409, "conflict", "The job has already finished; there is nothing to cancel.");
		return;
	}
	if (rc) {
		api_db_error(ctx);
		return;
	}
	scheduler_wake();
	struct db_job j;
	db_job_get(ctx->app->db, ctx->user.id, id, &j);
	http_data(ctx, was_running ? 202 : 200, job_to_json(&j));
}
