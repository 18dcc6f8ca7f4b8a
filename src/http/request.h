/* request.h - the per-request context handed to handlers, and response helpers.
 *
 * One struct http_ctx lives from a request's first byte to its completion. All its
 * memory (parsed query, cookies, form, route params, response headers) comes from its
 * arena, capped at HTTP_ARENA_MAX_BYTES, and is freed at once when the request ends.
 * A ctx is used by one MHD worker thread at a time.
 *
 * Handlers build exactly one response with the http_* helpers below; the server glue
 * turns it into an MHD response, adds the security headers and logs the access line.
 */
#ifndef SFA_HTTP_REQUEST_H
#define SFA_HTTP_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db/db.h"
#include "http/form.h"
#include "http/router.h"
#include "util/arena.h"
#include "util/str.h"

struct app;
struct MHD_Connection;
struct MHD_Response;

enum {
	HTTP_ARENA_MAX_BYTES = 4 << 20,
	HTTP_PHASE_HEADERS = 0,
	HTTP_PHASE_BODY = 1,
	HTTP_PHASE_HANDLER = 2,
	HTTP_BODY_MAX_BYTES = 1 << 20, /* JSON and form bodies */
	HTTP_MAX_RESP_HEADERS = 24,
};

enum http_auth { AUTH_NONE, AUTH_SESSION, AUTH_BEARER };

struct http_ctx {
	struct arena arena;
	struct app *app;
	struct MHD_Connection *conn;
	int64_t t0_ms;
	struct http_ctx *live_prev, *live_next; /* the server's list of requests in flight */
	struct ws_registry *ws_registry;        /* the server's WebSocket connections (ws_conn.h) */
	_Atomic int phase;                      /* HTTP_PHASE_*: what the request is waiting for */
	bool deadline_hit; /* the reaper closed it (under the server's live-list lock) */

	/* request */
	const char *method; /* after a form's _method override */
	char *path;         /* raw (still percent-encoded), without the query */
	char *query;        /* raw, without '?', "" when absent */
	char client_ip[64];
	struct kv_list query_args;
	struct kv_list cookies;
	struct kv_list form; /* parsed urlencoded body, when the body is a form */
	struct buf body;
	bool body_too_large;
	struct route_match match;
	/* streamed bodies (routes with a body function) */
	bool streaming; /* matched and gated when the headers arrived */
	bool early;     /* the response was decided then: discard the body */
	http_body_fn body_sink;
	void *route_state;                     /* the streaming route's own state */
	void (*route_state_free)(void *state); /* called when the request ends */

	/* authentication, filled by the dispatcher */
	enum http_auth auth;
	struct db_user user;
	const char *session_token; /* cookie value when auth == AUTH_SESSION */
	const char *csrf_cookie;   /* the browser's _sfa_csrf value (maybe freshly made) */
	bool csrf_cookie_new;
	bool csrf_pending; /* a session's multipart write whose token may still come as a field */

	/* response */
	int status;
	const char *content_type;
	struct buf resp;
	int n_headers;
	const char *header_names[HTTP_MAX_RESP_HEADERS];
	const char *header_values[HTTP_MAX_RESP_HEADERS];
	struct MHD_Response *resp_override; /* a handler-made response (files, streams) */
	uint64_t resp_bytes;
	/* Called once when the request ends, before ctx is freed, if still set then: a handler
	 * that gave libmicrohttpd something to finish later (a WebSocket upgrade) releases it
	 * here when that never happened. */
	void (*on_done)(void *arg);
	void *on_done_arg;
};

/* Request accessors: the value, or NULL when absent. The strings belong to the request
 * (its arena or libmicrohttpd's connection) and are valid until it ends. */
const char *http_req_header(struct http_ctx *ctx, const char *name);
const char *http_query(struct http_ctx *ctx, const char *name);
const char *http_cookie(struct http_ctx *ctx, const char *name);
const char *http_form(struct http_ctx *ctx, const char *name);
const char *http_param(struct http_ctx *ctx, const char *name);
bool http_is_write(const char *method);

/* Response builders. The json_t passed in is consumed (decref'd) by the call. */
void http_set_header(struct http_ctx *ctx, const char *name, const char *value);
void http_json(struct http_ctx *ctx, int status, json_t *body);
/* A JSON body already rendered (n bytes of s, copied). */
void http_json_text(struct http_ctx *ctx, int status, const char *s, size_t n);
void http_data(struct http_ctx *ctx, int status, json_t *data); /* {"data": data} */
void http_error(struct http_ctx *ctx, int status, const char *code, const char *message);
/* Validation error: details is {"field": ["message", ...]} and is consumed. */
void http_error_details(struct http_ctx *ctx, int status, const char *code, const char *message,
                        json_t *details);
void http_html(struct http_ctx *ctx, int status, char *html_malloced);
void http_redirect(struct http_ctx *ctx, const char *location);
void http_text(struct http_ctx *ctx, int status, const char *content_type, const char *text);

#endif
