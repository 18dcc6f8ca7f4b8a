/* assets.c - GET /assets/<name>-<hash>.<ext>: the embedded browser app (assets.h). */
#include "api/assets.h"

#include <microhttpd.h>
#include <string.h>

#include "api/routes.h"

const char *web_asset_url(const char *name)
{
	for (size_t i = 0; i < web_assets_n; i++)
		if (strcmp(web_assets[i].name, name) == 0)
			return web_assets[i].url;
	return NULL;
}

void api_asset(struct http_ctx *ctx)
{
	const struct web_asset *a = NULL;
	for (size_t i = 0; i < web_assets_n && !a; i++)
		if (strcmp(web_assets[i].url, ctx->path) == 0)
			a = &web_assets[i];
	if (!a) {
		/* An old page asking for a file of a previous build: the name says so. */
		http_text(ctx, 404, "text/plain; charset=utf-8",
		          "This file belongs to another version of Sound Forge Alchemy; reload the "
		          "page.\n");
		return;
	}
	http_set_header(ctx, "Cache-Control", "public, max-age=31536000, immutable");
	http_set_header(ctx, "ETag", a->etag);
	const char *inm = http_req_header(ctx, "If-None-Match");
	if (inm && strcmp(inm, a->etag) == 0) {
		http_text(ctx, 304, a->content_type, "");
		return;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(a->n_bytes, (void *)a->data,
	                                                         MHD_RESPMEM_PERSISTENT);
	if (!r) {
		http_error(ctx, 500, "internal", "The file could not be sent.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", a->content_type);
	ctx->resp_override = r;
	ctx->status = 200;
	ctx->resp_bytes = a->n_bytes;
}
