/* lalalai.c - the lal.ai management routes and the settings page's lal.ai section.
 *
 *   GET  /api/lalalai/quota       {"quota_minutes", "used_minutes", "remaining_minutes"}:
 *                                 remaining is lal.ai's minutes_left for the key in use,
 *                                 used the minutes of this user's successful lal.ai jobs this
 *                                 calendar month (UTC), quota their sum.
 *   POST /api/lalalai/cancel      {"task_id"}: only a task of the caller's own jobs (else
 *                                 404); lal.ai is asked to cancel it and the job is cancelled
 *                                 (it fails with error "cancelled"). A task that is no
 *                                 longer in progress, of a job that has finished: 409.
 *   POST /api/lalalai/cancel-all  cancels the caller's pending tasks, never the whole
 *                                 account's (lal.ai's cancel/all is not used):
 *                                 {"cancelled": [task ids lal.ai cancelled]}.
 * Without a key (the user's own or the server's): 503 not_configured. lal.ai failures:
 * 502 lalalai_error ("lal.ai rejected the license key" for a 401/403).
 *
 * Settings: set or replace the user's own key (stored sealed, core/lalalai_key.h), or
 * remove it. The key is never shown again, only a masked hint.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/app.h"
#include "api/routes.h"
#include "clients/lalalai.h"
#include "core/csrf.h"
#include "core/lalalai_key.h"
#include "http/html.h"
#include "jobs/jobs.h"
#include "util/err.h"
#include "util/log.h"

enum { MAX_CANCEL = LALALAI_MAX_TASKS };

/* A client for the caller, or false after answering 503 / 500. */
static bool client_or_answer(struct http_ctx *ctx, struct lalalai_client **c)
{
	char err[512];
	int rc = lalalai_client_for_user(ctx->app->db, &ctx->app->cfg, ctx->user.id, NULL, c, err,
	                                 sizeof err);
	if (rc == 0)
		return true;
	if (rc == SFA_ENOTFOUND || rc == SFA_EAUTH || rc == SFA_EINVAL)
		http_error(ctx, 503, "not_configured", err);
	else
		api_db_error(ctx);
	return false;
}

static void upstream_error(struct http_ctx *ctx, const char *err)
{
	http_error(ctx, 502, "lalalai_error", err);
}

static double round2(double x) { return round(x * 100.0) / 100.0; }

/* Unix time of the first second of the current calendar month (UTC). */
static int64_t month_start(void)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	return (int64_t)timegm(&tm);
}

void api_lalalai_quota(struct http_ctx *ctx)
{
	struct lalalai_client *c = NULL;
	if (!client_or_answer(ctx, &c))
		return;
	char err[512];
	double left = 0, used_s = 0;
	int rc = lalalai_minutes_left(c, &left, err, sizeof err);
	lalalai_client_free(c);
	if (rc) {
		upstream_error(ctx, err);
		return;
	}
	if (db_lalalai_used_seconds(ctx->app->db, ctx->user.id, month_start(), &used_s) != 0) {
		api_db_error(ctx);
		return;
	}
	double used = round2(used_s / 60.0);
	http_data(ctx, 200,
	          json_pack("{s:f, s:f, s:f}", "quota_minutes", round2(left + used), "used_minutes",
	                    used, "remaining_minutes", round2(left)));
}

/* Cancels the job of t unless it has finished; true when it was still active. */
static bool cancel_job(struct http_ctx *ctx, struct db_lalalai_task *t, bool upstream_ok)
{
	if (upstream_ok) {
		str_copy(t->status, sizeof t->status, "cancelled");
		db_lalalai_task_update(ctx->app->db, t, (int64_t)time(NULL));
	}
	if (!db_job_status_is_running(t->job_status) && strcmp(t->job_status, "queued") != 0)
		return false;
	bool was_running = false;
	if (db_job_cancel(ctx->app->db, ctx->user.id, t->job_id, (int64_t)time(NULL),
	                  &was_running) != 0)
		return false;
	scheduler_wake(ctx->app->sched);
	return true;
}

void api_lalalai_cancel(struct http_ctx *ctx)
{
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	const char *id = json_string_value(json_object_get(body, "task_id"));
	if (!id || !*id || strlen(id) >= LALALAI_ID_MAX) {
		json_decref(body);
		http_error_details(ctx, 422, "validation_failed", "The cancel request is invalid.",
		                   json_pack("{s:[s]}", "task_id", "must be a lal.ai task id"));
		return;
	}
	struct db_lalalai_task t;
	int rc = db_lalalai_task_by_task_id(ctx->app->db, ctx->user.id, id, &t);
	json_decref(body);
	if (rc == SFA_ENOTFOUND) {
		api_not_found(ctx, "The lal.ai task");
		return;
	}
	if (rc) {
		api_db_error(ctx);
		return;
	}
	struct lalalai_client *c = NULL;
	if (!client_or_answer(ctx, &c))
		return;
	const char *ids[] = {t.task_id};
	bool ok = false;
	char err[512];
	rc = lalalai_cancel(c, ids, 1, &ok, err, sizeof err);
	lalalai_client_free(c);
	if (rc) {
		upstream_error(ctx, err);
		return;
	}
	bool job_cancelled = cancel_job(ctx, &t, ok);
	if (!ok && !job_cancelled) {
		http_error(ctx, 409, "conflict",
		           "The lal.ai task is no longer in progress; there is nothing to cancel.");
		return;
	}
	http_data(ctx, 200,
	          json_pack("{s:s, s:s, s:s}", "task_id", t.task_id, "job_id", t.job_id, "status",
	                    "cancelled"));
}

void api_lalalai_cancel_all(struct http_ctx *ctx)
{
	struct lalalai_client *c = NULL;
	if (!client_or_answer(ctx, &c))
		return;
	struct db_lalalai_task *ts = calloc(MAX_CANCEL, sizeof *ts);
	size_t n = 0;
	if (!ts ||
	    db_lalalai_task_list_active(ctx->app->db, ctx->user.id, ts, MAX_CANCEL, &n) != 0) {
		free(ts);
		lalalai_client_free(c);
		api_db_error(ctx);
		return;
	}
	const char *ids[MAX_CANCEL];
	size_t idx[MAX_CANCEL], n_ids = 0;
	for (size_t i = 0; i < n; i++)
		if (ts[i].task_id[0]) {
			idx[n_ids] = i;
			ids[n_ids++] = ts[i].task_id;
		}
	bool ok[MAX_CANCEL] = {false};
	char err[512];
	int rc = n_ids ? lalalai_cancel(c, ids, n_ids, ok, err, sizeof err) : 0;
	lalalai_client_free(c);
	if (rc) {
		free(ts);
		upstream_error(ctx, err);
		return;
	}
	json_t *cancelled = json_array();
	for (size_t k = 0; k < n_ids; k++) {
		if (ok[k])
			json_array_append_new(cancelled, json_string(ts[idx[k]].task_id));
		cancel_job(ctx, &ts[idx[k]], ok[k]);
	}
	for (size_t i = 0; i < n; i++) /* queued jobs that have no task yet */
		if (!ts[i].task_id[0])
			cancel_job(ctx, &ts[i], false);
	free(ts);
	http_data(ctx, 200, json_pack("{s:o}", "cancelled", cancelled));
}

/* ---- Settings ------------------------------------------------------------------------- */

static void key_section(struct http_ctx *ctx, struct buf *b, const char *tok, const char *error)
{
	char hint[LALALAI_HINT_MAX] = "";
	bool own = db_lalalai_key_get(ctx->app->db, ctx->user.id, NULL, 0, hint, sizeof hint) == 0;
	buf_puts(b, "<section id=\"lalalai\"><h2>lal.ai</h2>");
	if (own)
		buf_printf(
			b,
			"<p id=\"lalalai-state\">Your lal.ai license key <code>%s</code> is used for "
			"cloud separation.</p>",
			html_esc(&ctx->arena, hint));
	else if (ctx->app->cfg.lalalai_license_key[0])
		buf_puts(b, "<p id=\"lalalai-state\">You have no lal.ai key of your own; this "
		            "server's key is used for cloud separation.</p>");
	else
		buf_puts(b, "<p id=\"lalalai-state\">No lal.ai license key: add yours to separate "
		            "tracks with lal.ai.</p>");
	if (error)
		buf_printf(b, "<p class=\"error\" role=\"alert\">%s</p>",
		           html_esc(&ctx->arena, error));
	buf_printf(b,
	           "<form method=\"post\" action=\"/users/settings\">"
	           "<input type=\"hidden\" name=\"_method\" value=\"put\">"
	           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
	           "<input type=\"hidden\" name=\"action\" value=\"set_lalalai_key\">"
	           "<label for=\"lalalai_key\">%s</label>"
	           "<input type=\"password\" id=\"lalalai_key\" name=\"lalalai_key\" required "
	           "autocomplete=\"off\" maxlength=\"%d\">"
	           "<button type=\"submit\">Save key</button></form>",
	           tok, own ? "Replace your lal.ai license key" : "Your lal.ai license key",
	           LALALAI_KEY_MAX + 2);
	if (own)
		buf_printf(b,
		           "<form method=\"post\" action=\"/users/settings\">"
		           "<input type=\"hidden\" name=\"_method\" value=\"put\">"
		           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		           "<input type=\"hidden\" name=\"action\" value=\"remove_lalalai_key\">"
		           "<button type=\"submit\">Remove key</button></form>",
		           tok);
	buf_puts(b, "</section>");
}

void page_lalalai_settings(struct http_ctx *ctx, struct buf *b, const char *csrf_token)
{
	key_section(ctx, b, csrf_token, NULL);
}

bool page_lalalai_settings_update(struct http_ctx *ctx, const char *action)
{
	if (strcmp(action, "set_lalalai_key") == 0) {
		const char *key = http_form(ctx, "lalalai_key");
		char err[256];
		int rc = lalalai_key_save(ctx->app->db, ctx->app->cfg.box_key, ctx->user.id,
		                          key ? key : "", (int64_t)time(NULL), err, sizeof err);
		if (rc == 0) {
			log_info("user %s saved a lal.ai key", ctx->user.id);
			page_redirect_with_flash(ctx, "/users/settings", "lalalai_key_saved");
			return true;
		}
		char t[CSRF_TOKEN_LEN];
		csrf_token_for(ctx->app->cfg.csrf_key, ctx->csrf_cookie, t);
		struct buf b;
		buf_init(&b, 1 << 16);
		key_section(ctx, &b, t, rc == SFA_EINVAL ? err : "The key could not be saved.");
		buf_puts(&b, "<p><a href=\"/users/settings\">Back to Settings</a></p>");
		char *body = buf_steal(&b);
		page_render(ctx, rc == SFA_EINVAL ? 422 : 500, "Settings", body ? body : "");
		free(body);
		return true;
	}
	if (strcmp(action, "remove_lalalai_key") == 0) {
		db_lalalai_key_delete(ctx->app->db, ctx->user.id);
		page_redirect_with_flash(ctx, "/users/settings", "lalalai_key_removed");
		return true;
	}
	return false;
}
