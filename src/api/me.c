/* me.c - GET /api/me: who the credentials belong to, so clients can check a key, and what
 * the account can use: "lalalai" (a lal.ai key of its own or the server's) and "spotify"
 * (a linked Spotify account), so a client offers only what will work. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api/api.h"
#include "api/app.h"
#include "api/routes.h"
#include "core/lalalai_key.h"
#include "util/timeutil.h"

void api_me(struct http_ctx *ctx)
{
	char created[32];
	time_format_rfc3339((time_t)ctx->user.created_at, created, sizeof created);
	bool own_key = false, spotify = false;
	if (db_user_links(ctx->app->db, ctx->user.id, &own_key, &spotify)) {
		api_db_error(ctx);
		return;
	}
	/* An own key counts only when it still opens (the server's secret may have changed). */
	char key[LALALAI_KEY_MAX + 1];
	bool lalalai = (own_key ? lalalai_key_resolve(ctx->app->db, &ctx->app->cfg, ctx->user.id,
	                                              key, NULL, NULL, 0)
	                        : lalalai_server_key(&ctx->app->cfg, key, NULL, NULL, 0)) == 0;
	sodium_memzero(key, sizeof key);
	http_data(ctx, 200,
	          json_pack("{s:s, s:s, s:s, s:b, s:b}", "id", ctx->user.id, "email",
	                    ctx->user.email, "created_at", created, "lalalai", lalalai, "spotify",
	                    spotify));
}
