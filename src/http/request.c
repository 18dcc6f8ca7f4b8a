/* request.c - see request.h. */
#include "http/request.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/json.h"

const char *http_req_header(struct http_ctx *ctx, const char *name)
{
	return MHD_lookup_connection_value(ctx->conn, MHD_HEADER_KIND, name);
}

const char *http_query(struct http_ctx *ctx, const char *name)
{
	return kv_get(&ctx->query_args, name);
}

const char *http_cookie(struct http_ctx *ctx, const char *name)
{
	return kv_get(&ctx->cookies, name);
}

const char *http_form(struct http_ctx *ctx, const char *name) { return kv_get(&ctx->form, name); }

const char *http_param(struct http_ctx *ctx, const char *name)
{
	return route_param(&ctx->match, name);
}

bool http_is_write(const char *method)
{
	return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	       strcmp(method, "PATCH") == 0 || strcmp(method, "DELETE") == 0;
}

void http_set_header(struct http_ctx *ctx, const char *name, const char *value)
{
	for (int i = 0; i < ctx->n_headers; i++) {
		if (strcasecmp(ctx->header_names[i], name) == 0 &&
		    strcasecmp(name, "Set-Cookie") != 0) {
			ctx->header_values[i] = arena_strdup(&ctx->arena, value);
			return;
		}
	}
	if (ctx->n_headers == HTTP_MAX_RESP_HEADERS)
		return;
	const char *n = arena_strdup(&ctx->arena, name);
	const char *v = arena_strdup(&ctx->arena, value);
	if (!n || !v)
		return;
	ctx->header_names[ctx->n_headers] = n;
	ctx->header_values[ctx->n_headers] = v;
	ctx->n_headers++;
}

static void set_body(struct http_ctx *ctx, int status, const char *type, const char *s, size_t n)
{
	ctx->status = status;
	ctx->content_type = type;
	ctx->resp.len = 0;
	if (buf_append(&ctx->resp, s, n)) {
		ctx->status = 500;
		ctx->content_type = "application/json";
		ctx->resp.len = 0;
		buf_puts(&ctx->resp,
		         "{\"error\":\"The response could not be built.\",\"code\":\"internal\"}");
	}
}

void http_json(struct http_ctx *ctx, int status, json_t *body)
{
	char *s = body ? json_encode(body) : NULL;
	json_decref(body);
	if (!s) {
		set_body(ctx, 500, "application/json",
		         "{\"error\":\"The response could not be built.\",\"code\":\"internal\"}",
		         62);
		return;
	}
	set_body(ctx, status, "application/json", s, strlen(s));
	free(s);
}

void http_json_text(struct http_ctx *ctx, int status, const char *s, size_t n)
{
	set_body(ctx, status, "application/json", s, n);
}

void http_data(struct http_ctx *ctx, int status, json_t *data)
{
	http_json(ctx, status, json_pack("{s:o}", "data", data));
}

void http_error(struct http_ctx *ctx, int status, const char *code, const char *message)
{
	http_json(ctx, status, json_pack("{s:s, s:s}", "error", message, "code", code));
}

void http_error_details(struct http_ctx *ctx, int status, const char *code, const char *message,
                        json_t *details)
{
	http_json(ctx, status,
	          json_pack("{s:s, s:s, s:o}", "error", message, "code", code, "details", details));
}

void http_html(struct http_ctx *ctx, int status, char *html_malloced)
{
	if (!html_malloced) {
		set_body(ctx, 500, "text/plain; charset=utf-8", "Internal error\n", 15);
		return;
	}
	set_body(ctx, status, "text/html; charset=utf-8", html_malloced, strlen(html_malloced));
	free(html_malloced);
}

void http_redirect(struct http_ctx *ctx, const char *location)
{
	http_set_header(ctx, "Location", location);
	set_body(ctx, 302, "text/plain; charset=utf-8", "", 0);
}

void http_text(struct http_ctx *ctx, int status, const char *content_type, const char *text)
{
	set_body(ctx, status, content_type, text, strlen(text));
}
