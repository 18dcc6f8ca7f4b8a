/* health.c - GET /health (liveness: answers from memory) and GET /health/ready
 * (readiness: the database answers). */
#include "api/app.h"
#include "api/routes.h"

void api_health(struct http_ctx *ctx)
{
	http_text(ctx, 200, "application/json", "{\"status\":\"ok\"}");
}

void api_health_ready(struct http_ctx *ctx)
{
	char err[256];
	if (db_ping(ctx->app->db, err, sizeof err) == 0) {
		http_text(ctx, 200, "application/json", "{\"status\":\"ok\"}");
		return;
	}
	http_json(ctx, 503, json_pack("{s:s, s:s}", "status", "unavailable", "reason", err));
}
