/* routes.h - the route table and the dispatcher that applies authentication, CSRF and
 * rate limits before calling a handler.
 *
 * Threading: the table is constant; the dispatcher runs on every HTTP worker thread at
 * once, one request per call, and allocates only in that request's arena. */
#ifndef SFA_API_ROUTES_H
#define SFA_API_ROUTES_H

#include "http/request.h"

enum route_flags {
	R_API = 1u << 0,       /* /api: bearer or session required, JSON errors, api bucket */
	R_HEAVY = 1u << 1,     /* also counts in the heavy bucket */
	R_PAGE_AUTH = 1u << 2, /* HTML page that needs a session: else 302 to /users/log-in */
	R_PAGE = 1u << 3,      /* HTML page open to everyone (CSRF on writes) */
	R_AUTH_RATE = 1u << 4, /* the auth bucket, per IP and per submitted email */
	R_PUBLIC = 1u << 5,    /* no session, no CSRF (health, assets) */
	R_GUEST = 1u << 6,     /* a page for logged-out visitors: logged in → 302 to / */
	R_FILES = 1u << 7,     /* /files and /export: like R_API, without the api bucket */
};

/* Called once the request headers are in: for a route that streams its body (its
 * `body` function is set), matches, authenticates and rate-limits now, before any
 * byte of the body is accepted. Other requests are decided by routes_dispatch. */
void routes_begin(struct http_ctx *ctx);
void routes_dispatch(struct http_ctx *ctx);
/* The route table as JSON, one object per route: {"method", "path", "access": "public" |
 * "api" | "files" | "page" | "page_auth" | "guest", "heavy": bool}. `sfa routes` prints it;
 * the authorization matrix test is generated from it. Returns a new array (the caller
 * releases it with json_decref). */
json_t *routes_table_json(void);

/* Handlers, one file per resource. */
void api_health(struct http_ctx *ctx);
void api_health_ready(struct http_ctx *ctx);
void api_me(struct http_ctx *ctx);
void api_tracks_list(struct http_ctx *ctx);
void api_tracks_upload(struct http_ctx *ctx);
int api_tracks_upload_body(struct http_ctx *ctx, const char *data, size_t n);
void api_tracks_get(struct http_ctx *ctx);
void api_tracks_patch(struct http_ctx *ctx);
void api_tracks_delete(struct http_ctx *ctx);
void api_jobs_list(struct http_ctx *ctx);
void api_jobs_get(struct http_ctx *ctx);
void api_jobs_cancel(struct http_ctx *ctx);
void api_jobs_retry(struct http_ctx *ctx);
void api_files(struct http_ctx *ctx);
void api_analysis_analyze(struct http_ctx *ctx);
void api_analysis_job(struct http_ctx *ctx);
void api_processing_separate(struct http_ctx *ctx);
void api_processing_job(struct http_ctx *ctx);
void api_processing_models(struct http_ctx *ctx);
void api_processing_transform(struct http_ctx *ctx);
void api_export_stem(struct http_ctx *ctx);
void api_export_stems(struct http_ctx *ctx);
void api_export_analysis(struct http_ctx *ctx);
void api_export_midi(struct http_ctx *ctx);
void api_export_nistems(struct http_ctx *ctx);
void api_export_rekordbox(struct http_ctx *ctx);
void api_export_traktor(struct http_ctx *ctx);
void api_export_library(struct http_ctx *ctx);
void api_daw_export(struct http_ctx *ctx);
int api_daw_export_body(struct http_ctx *ctx, const char *data, size_t n);
void api_socket(struct http_ctx *ctx); /* GET /socket/websocket (api/socket.h) */
void api_spotify_fetch(struct http_ctx *ctx);
void api_download_track(struct http_ctx *ctx);
void api_download_job(struct http_ctx *ctx);
void page_home(struct http_ctx *ctx);
void page_studio(struct http_ctx *ctx);
void api_asset(struct http_ctx *ctx);
void page_register_form(struct http_ctx *ctx);
void page_register(struct http_ctx *ctx);
void page_log_in_form(struct http_ctx *ctx);
void page_log_in(struct http_ctx *ctx);
void page_log_out(struct http_ctx *ctx);
void page_settings(struct http_ctx *ctx);
void page_settings_update(struct http_ctx *ctx);
void auth_spotify_start(struct http_ctx *ctx);
void auth_spotify_callback(struct http_ctx *ctx);
void auth_spotify_unlink(struct http_ctx *ctx);
void api_spotify_me(struct http_ctx *ctx);
/* lal.ai (api/lalalai.c) */
void api_lalalai_quota(struct http_ctx *ctx);
void api_lalalai_cancel(struct http_ctx *ctx);
void api_lalalai_cancel_all(struct http_ctx *ctx);

/* Page helpers shared by the HTML handlers (pages.c). */
/* Wraps body (HTML, already escaped) in the site layout and sends it with status. */
void page_render(struct http_ctx *ctx, int status, const char *title, const char *body);
/* 302 to location with a one-shot flash message code from pages.c's table. */
void page_redirect_with_flash(struct http_ctx *ctx, const char *location, const char *code);
/* The settings page's lal.ai section (api/lalalai.c), and its form actions
 * (set_lalalai_key, remove_lalalai_key): returns false for any other action. */
struct buf;
void page_lalalai_settings(struct http_ctx *ctx, struct buf *b, const char *csrf_token);
bool page_lalalai_settings_update(struct http_ctx *ctx, const char *action);

#endif
