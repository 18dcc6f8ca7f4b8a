/* routes.c - the route table and the dispatcher.
 *
 * Order of checks for a request: route lookup (404/405) → credentials (bearer key or
 * session cookie) → CSRF for cookie-authenticated writes → rate limits → handler.
 * /api and /export routes answer JSON errors; pages redirect to the log-in page.
 * Limits are counted only for requests that get as far as their bucket: an
 * unauthenticated /api call is refused with 401 before it could use a user's budget.
 */
#include "api/routes.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/app.h"
#include "core/accounts.h"
#include "core/csrf.h"
#include "core/token.h"
#include "http/cookie.h"
#include "http/html.h"

static const struct route routes[] = {
	{"GET", "/health", api_health, R_PUBLIC},
	{"GET", "/health/ready", api_health_ready, R_PUBLIC},
	{"GET", "/assets/*name", api_asset, R_PUBLIC},
	{"GET", "/", page_home, R_PAGE},
	/* The studio: one app page; its script shows the view the path names. */
	{"GET", "/tracks", page_studio, R_PAGE_AUTH},
	{"GET", "/tracks/:id", page_studio, R_PAGE_AUTH},
	{"GET", "/import", page_studio, R_PAGE_AUTH},
	{"GET", "/upload", page_studio, R_PAGE_AUTH},
	{"GET", "/jobs", page_studio, R_PAGE_AUTH},
	{"GET", "/models", page_studio, R_PAGE_AUTH},
	{"GET", "/users/register", page_register_form, R_GUEST},
	{"POST", "/users/register", page_register, R_GUEST | R_AUTH_RATE},
	{"GET", "/users/log-in", page_log_in_form, R_GUEST},
	{"POST", "/users/log-in", page_log_in, R_GUEST | R_AUTH_RATE},
	{"DELETE", "/users/log-out", page_log_out, R_PAGE},
	{"GET", "/users/settings", page_settings, R_PAGE_AUTH},
	{"PUT", "/users/settings", page_settings_update, R_PAGE_AUTH},
	{"GET", "/api/me", api_me, R_API},
	{"GET", "/api/tracks", api_tracks_list, R_API},
	{"POST", "/api/tracks", api_tracks_upload, R_API, api_tracks_upload_body},
	{"GET", "/api/tracks/:id", api_tracks_get, R_API},
	{"PATCH", "/api/tracks/:id", api_tracks_patch, R_API},
	{"DELETE", "/api/tracks/:id", api_tracks_delete, R_API},
	{"GET", "/api/jobs", api_jobs_list, R_API},
	{"GET", "/api/jobs/:id", api_jobs_get, R_API},
	{"DELETE", "/api/jobs/:id", api_jobs_cancel, R_API},
	{"POST", "/api/jobs/:id/retry", api_jobs_retry, R_API | R_HEAVY},
	{"POST", "/api/analysis/analyze", api_analysis_analyze, R_API | R_HEAVY},
	{"GET", "/api/analysis/job/:id", api_analysis_job, R_API},
	{"POST", "/api/processing/separate", api_processing_separate, R_API | R_HEAVY},
	{"POST", "/api/processing/transform", api_processing_transform, R_API | R_HEAVY},
	{"GET", "/api/processing/job/:id", api_processing_job, R_API},
	{"GET", "/api/processing/models", api_processing_models, R_API},
	{"POST", "/api/daw/export", api_daw_export, R_API | R_HEAVY, api_daw_export_body},
	{"GET", "/files/*path", api_files, R_FILES},
	{"GET", "/export/stem/:id", api_export_stem, R_FILES},
	{"GET", "/export/stems/:track_id", api_export_stems, R_FILES},
	{"GET", "/export/analysis/:track_id", api_export_analysis, R_FILES},
	{"GET", "/export/midi/:track_id", api_export_midi, R_FILES},
	{"GET", "/export/nistems/:track_id", api_export_nistems, R_FILES | R_HEAVY},
	{"GET", "/export/rekordbox.xml", api_export_rekordbox, R_FILES},
	{"GET", "/export/traktor.nml", api_export_traktor, R_FILES},
	{"GET", "/export/library.zip", api_export_library, R_FILES},
	/* Authenticates itself (API key or session + same Origin) before the upgrade. */
	{"GET", "/socket/websocket", api_socket, R_PUBLIC},
	/* Spotify and downloads */
	{"POST", "/api/spotify/fetch", api_spotify_fetch, R_API},
	{"POST", "/api/download/track", api_download_track, R_API | R_HEAVY},
	{"GET", "/api/download/job/:id", api_download_job, R_API},
	{"GET", "/api/spotify/me", api_spotify_me, R_API},
	{"GET", "/auth/spotify", auth_spotify_start, R_PAGE},
	{"DELETE", "/auth/spotify", auth_spotify_unlink, R_PAGE_AUTH},
	{"GET", "/auth/spotify/callback", auth_spotify_callback, R_PAGE},
	/* lal.ai */
	{"GET", "/api/lalalai/quota", api_lalalai_quota, R_API},
	{"POST", "/api/lalalai/cancel", api_lalalai_cancel, R_API},
	{"POST", "/api/lalalai/cancel-all", api_lalalai_cancel_all, R_API},
};

static bool is_json_space(const char *path)
{
	return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0 ||
	       strncmp(path, "/export/", 8) == 0 || strncmp(path, "/files/", 7) == 0;
}

/* The caller's address: the peer, or the last untrusted hop of X-Forwarded-For when the
 * peer is a trusted proxy. */
static void resolve_client_ip(struct http_ctx *ctx)
{
	if (!config_is_trusted_proxy(&ctx->app->cfg, ctx->client_ip))
		return;
	const char *xff = http_req_header(ctx, "X-Forwarded-For");
	if (!xff)
		return;
	char copy[512];
	str_copy(copy, sizeof copy, xff);
	for (;;) {
		char *comma = strrchr(copy, ',');
		char *hop = comma ? comma + 1 : copy;
		while (*hop == ' ')
			hop++;
		size_t n = strlen(hop);
		while (n && hop[n - 1] == ' ')
			hop[--n] = '\0';
		if (n && n < sizeof ctx->client_ip &&
		    (!config_is_trusted_proxy(&ctx->app->cfg, hop) || !comma)) {
			str_copy(ctx->client_ip, sizeof ctx->client_ip, hop);
			return;
		}
		if (!comma)
			return;
		*comma = '\0';
	}
}

static void not_found(struct http_ctx *ctx)
{
	if (is_json_space(ctx->path)) {
		char msg[160];
		snprintf(msg, sizeof msg, "There is no route for %s %.100s.", ctx->method,
		         ctx->path);
		http_error(ctx, 404, "not_found", msg);
		return;
	}
	http_text(ctx, 404, "text/html; charset=utf-8",
	          "<!doctype html><title>Not found</title><h1>Not found</h1>"
	          "<p><a href=\"/\">Back to Sound Forge Alchemy</a></p>");
}

static void set_rate_headers(struct http_ctx *ctx, const struct rl_result *r)
{
	char v[32];
	snprintf(v, sizeof v, "%d", r->limit);
	http_set_header(ctx, "X-RateLimit-Limit", v);
	snprintf(v, sizeof v, "%d", r->remaining);
	http_set_header(ctx, "X-RateLimit-Remaining", v);
	snprintf(v, sizeof v, "%lld", (long long)r->reset_at);
	http_set_header(ctx, "X-RateLimit-Reset", v);
}

/* Counts one request in bucket; on refusal answers 429 (an HTML page for the pages, JSON
 * elsewhere) and returns false. */
static bool rate_ok(struct http_ctx *ctx, const char *bucket, const char *who, int limit, bool html)
{
	char key[320];
	snprintf(key, sizeof key, "%s:%s", bucket, who);
	struct rl_result r;
	ratelimit_hit(ctx->app->rl, key, limit, (int64_t)time(NULL), &r);
	set_rate_headers(ctx, &r);
	if (r.allowed)
		return true;
	char v[24];
	snprintf(v, sizeof v, "%d", r.retry_after_s);
	http_set_header(ctx, "Retry-After", v);
	if (html) {
		char page[400];
		snprintf(page, sizeof page,
		         "<!doctype html><title>Too many attempts</title><h1>Too many attempts</h1>"
		         "<p>Please wait %d seconds, then <a href=\"%s\">try again</a>.</p>",
		         r.retry_after_s,
		         strcmp(ctx->path, "/users/register") == 0 ? "/users/register"
		                                                   : "/users/log-in");
		http_text(ctx, 429, "text/html; charset=utf-8", page);
		return false;
	}
	http_json(ctx, 429,
	          json_pack("{s:s, s:s, s:i}", "error", "rate limit exceeded", "code",
	                    "rate_limited", "retry_after", r.retry_after_s));
	return false;
}

/* Authenticates from Authorization: Bearer (only where keys are accepted) or the session
 * cookie. Returns false after answering 401 when a bearer key was presented but is not
 * valid. HTML pages take only the session: a leaked API key must never reach the pages
 * that create keys or change the account, so there the header is not even looked at. */
static bool authenticate(struct http_ctx *ctx, bool keys)
{
	int64_t now = (int64_t)time(NULL);
	const char *authz = keys ? http_req_header(ctx, "Authorization") : NULL;
	if (authz) {
		if (strncasecmp(authz, "Bearer ", 7) != 0 ||
		    accounts_api_key_user(ctx->app->db, ctx->app->keys, authz + 7, now,
		                          &ctx->user) != 0) {
			http_error(ctx, 401, "unauthorized",
			           "The API key is not valid or was revoked.");
			return false;
		}
		ctx->auth = AUTH_BEARER;
		return true;
	}
	const char *tok = http_cookie(ctx, "_sfa_session");
	if (tok && accounts_session_user(ctx->app->db, tok, now, &ctx->user) == 0) {
		ctx->auth = AUTH_SESSION;
		ctx->session_token = tok;
	}
	return true;
}

/* Makes sure the browser has a _sfa_csrf cookie, minting one when absent. */
static void ensure_csrf_cookie(struct http_ctx *ctx)
{
	const char *c = http_cookie(ctx, "_sfa_csrf");
	if (c && token_plausible(c)) {
		ctx->csrf_cookie = c;
		return;
	}
	char t[TOKEN_STR_LEN];
	token_new("", t);
	ctx->csrf_cookie = arena_strdup(&ctx->arena, t);
	ctx->csrf_cookie_new = true;
}

static bool csrf_ok(struct http_ctx *ctx)
{
	const char *presented = http_req_header(ctx, "x-csrf-token");
	if (!presented)
		presented = http_form(ctx, "_csrf_token");
	return !ctx->csrf_cookie_new &&
	       csrf_valid(ctx->app->cfg.csrf_key, ctx->csrf_cookie, presented);
}

/* Authentication, CSRF and rate limits for the matched route. Returns false after
 * answering when the request may not reach its handler. */
static bool gate(struct http_ctx *ctx)
{
	unsigned flags = ctx->match.route->flags;
	if (flags & R_PUBLIC)
		return true;
	if (!authenticate(ctx, (flags & (R_API | R_FILES)) != 0))
		return false;
	/* A bearer key's client is no browser: it needs no CSRF cookie. */
	if (ctx->auth != AUTH_BEARER)
		ensure_csrf_cookie(ctx);
	if (ctx->csrf_cookie_new) {
		char sc[256];
		if (cookie_format(sc, sizeof sc, "_sfa_csrf", ctx->csrf_cookie, -1,
		                  ctx->app->cfg.https) == 0)
			http_set_header(ctx, "Set-Cookie", sc);
	}
	bool write = http_is_write(ctx->method);
	if (flags & (R_API | R_FILES)) {
		if (ctx->auth == AUTH_NONE) {
			http_error(
				ctx, 401, "unauthorized",
				"Authentication required: send \"Authorization: Bearer <API key>\" or log "
				"in.");
			return false;
		}
		if (ctx->auth == AUTH_SESSION && write && !csrf_ok(ctx)) {
			/* A multipart body may still bring it as a field (api_csrf_field). */
			if (ctx->streaming && !http_req_header(ctx, "x-csrf-token")) {
				ctx->csrf_pending = true;
			} else {
				http_error(
					ctx, 403, "forbidden",
					"The CSRF token is missing or invalid; send it in the x-csrf-token "
					"header.");
				return false;
			}
		}
		if ((flags & R_API) &&
		    !rate_ok(ctx, "api", ctx->user.id, ctx->app->cfg.rate_api, false))
			return false;
		if ((flags & R_HEAVY) &&
		    !rate_ok(ctx, "heavy", ctx->user.id, ctx->app->cfg.rate_heavy, false))
			return false;
		return true;
	}
	/* HTML pages. */
	if (write && !csrf_ok(ctx)) {
		http_text(
			ctx, 403, "text/html; charset=utf-8",
			"<!doctype html><title>Forbidden</title><h1>Forbidden</h1><p>The form expired "
			"or did not come from this site. <a href=\"/\">Reload the page</a> and try "
			"again.</p>");
		return false;
	}
	if ((flags & R_PAGE_AUTH) && ctx->auth == AUTH_NONE) {
		http_redirect(ctx, "/users/log-in");
		return false;
	}
	if ((flags & R_GUEST) && ctx->auth != AUTH_NONE) {
		http_redirect(ctx, "/");
		return false;
	}
	if (flags & R_AUTH_RATE) {
		if (!rate_ok(ctx, "auth:ip", ctx->client_ip, ctx->app->cfg.rate_auth, true))
			return false;
		const char *email = http_form(ctx, "user[email]");
		if (email && *email) {
			char lower[DB_EMAIL_MAX + 1];
			size_t i = 0;
			for (; email[i] && i < DB_EMAIL_MAX; i++)
				lower[i] = (char)((email[i] >= 'A' && email[i] <= 'Z')
				                          ? email[i] + 32
				                          : email[i]);
			lower[i] = '\0';
			if (!rate_ok(ctx, "auth:email", lower, ctx->app->cfg.rate_auth, true))
				return false;
		}
	}
	return true;
}

json_t *routes_table_json(void)
{
	json_t *a = json_array();
	for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
		unsigned f = routes[i].flags;
		const char *access = (f & R_PUBLIC)      ? "public"
		                     : (f & R_API)       ? "api"
		                     : (f & R_FILES)     ? "files"
		                     : (f & R_PAGE_AUTH) ? "page_auth"
		                     : (f & R_GUEST)     ? "guest"
		                                         : "page";
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b}", "method",
		                                   routes[i].method, "path", routes[i].pattern,
		                                   "access", access, "heavy", (f & R_HEAVY) != 0));
	}
	return a;
}

void routes_begin(struct http_ctx *ctx)
{
	struct route_match m;
	if (router_match(routes, sizeof routes / sizeof routes[0], ctx->method, ctx->path,
	                 &ctx->arena, &m) != ROUTER_FOUND ||
	    !m.route->body)
		return; /* decided once the body is in (a form's _method may change the route) */
	resolve_client_ip(ctx);
	ctx->match = m;
	ctx->streaming = true;
	if (gate(ctx))
		ctx->body_sink = m.route->body;
	else
		ctx->early = true;
}

void routes_dispatch(struct http_ctx *ctx)
{
	if (ctx->streaming) { /* routes_begin matched and gated it already */
		ctx->match.route->handler(ctx);
		return;
	}
	resolve_client_ip(ctx);
	int rc = router_match(routes, sizeof routes / sizeof routes[0], ctx->method, ctx->path,
	                      &ctx->arena, &ctx->match);
	if (rc == ROUTER_NO_PATH || rc < 0) {
		not_found(ctx);
		return;
	}
	if (rc == ROUTER_NO_METHOD) {
		http_set_header(ctx, "Allow", ctx->match.allow);
		char msg[200];
		snprintf(msg, sizeof msg, "%s is not allowed here; use %s.", ctx->method,
		         ctx->match.allow);
		http_error(ctx, 405, "method_not_allowed", msg);
		return;
	}
	if (gate(ctx))
		ctx->match.route->handler(ctx);
}
