/* me.c - GET /api/me: who the credentials belong to, so clients can check a key. */
#include "api/app.h"
#include "api/routes.h"
#include "util/timeutil.h"

void api_me(struct http_ctx *ctx)
{
	char created[32];
	time_format_rfc3339((time_t)ctx->user.created_at, created, sizeof created);
	http_data(ctx, 200,
	          json_pack("{s:s, s:s, s:s}", "id", ctx->user.id, "email", ctx->user.email,
	                    "created_at", created));
}
