/* auth_spotify.c - Spotify log-in (API.md §7): /auth/spotify, its callback, unlinking,
 * GET /api/spotify/me, and the settings page's Spotify section.
 *
 * The flow is the authorization code grant with PKCE (S256):
 *  1. GET /auth/spotify makes a random state and verifier and stores them server-side for
 *     10 minutes (oauth_states: the state only as a hash, the verifier sealed), bound to
 *     this browser through the hash of its _sfa_csrf cookie and to the logged-in user, if
 *     any; then redirects to Spotify's authorize page.
 *  2. GET /auth/spotify/callback takes the state row out of the table (single use) and
 *     checks its age and the browser; answers ?error=access_denied with a flash; exchanges
 *     the code with the stored verifier; reads /v1/me; then
 *       - started while logged in: links the Spotify account to that user (or refuses when
 *         it is linked to another user);
 *       - not logged in, account linked: logs that user in;
 *       - not logged in, unknown account: creates a user (Spotify's email when it is free;
 *         a placeholder address when Spotify gives none) with an unusable random password,
 *         links it and logs it in. An email that belongs to an existing user is never
 *         linked automatically: that user must log in and link from the settings page.
 *  3. DELETE /auth/spotify (the settings form) unlinks.
 * Tokens are stored sealed (core/spotify_link.h), which also refreshes them.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/routes.h"
#include "api/spotify_api.h"
#include "core/accounts.h"
#include "core/sealed.h"
#include "core/spotify_link.h"
#include "core/token.h"
#include "http/cookie.h"
#include "http/html.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"

enum { STATE_TTL_S = 600 };

static void error_page(struct http_ctx *ctx, int status, const char *title, const char *text)
{
	const char *body = arena_printf(
		&ctx->arena,
		"<section><h1>%s</h1><p class=\"alert\" role=\"alert\">%s</p><p><a href=\"%s\">"
		"Back</a></p></section>",
		html_esc(&ctx->arena, title), html_esc(&ctx->arena, text),
		ctx->auth == AUTH_SESSION ? "/users/settings" : "/users/log-in");
	page_render(ctx, status, title, body ? body : "");
}

static void hash_hex(const char *s, char out[TOKEN_HASH_LEN]) { token_hash(s, out); }

/* The redirect URI: SFA_SPOTIFY_REDIRECT_URI, else this server's own callback URL from
 * the Host header (which must look like a host name, optionally with a port). */
static const char *redirect_uri(struct http_ctx *ctx)
{
	const struct config *c = &ctx->app->cfg;
	if (c->spotify_redirect_uri[0])
		return c->spotify_redirect_uri;
	const char *host = http_req_header(ctx, "Host");
	if (!host || !*host || strlen(host) > 255 ||
	    host[strspn(host,
	                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")])
		return NULL;
	return arena_printf(&ctx->arena, "%s://%s/auth/spotify/callback",
	                    c->https ? "https" : "http", host);
}

void auth_spotify_start(struct http_ctx *ctx)
{
	struct spotify_client *c = api_spotify_client(ctx->app);
	if (!c || !ctx->app->cfg.spotify_client_id[0]) {
		error_page(ctx, 503, "Spotify log-in is off",
		           "This server has no Spotify app configured (SFA_SPOTIFY_CLIENT_ID), so "
		           "logging in with Spotify is not available.");
		return;
	}
	const char *redirect = redirect_uri(ctx);
	if (!redirect) {
		error_page(ctx, 400, "Spotify log-in", "The request has no usable Host header.");
		return;
	}
	char state[TOKEN_STR_LEN], verifier[SPOTIFY_PKCE_VERIFIER_LEN + 1];
	token_new("", state);
	spotify_pkce_verifier(verifier);
	struct db_oauth_state st;
	memset(&st, 0, sizeof st);
	hash_hex(state, st.state_hash);
	hash_hex(ctx->csrf_cookie, st.browser_hash);
	if (ctx->auth == AUTH_SESSION)
		str_copy(st.user_id, sizeof st.user_id, ctx->user.id);
	char sctx[96];
	snprintf(sctx, sizeof sctx, "oauth-verifier:%s", st.state_hash);
	str_copy(st.redirect_uri, sizeof st.redirect_uri, redirect);
	int64_t now = (int64_t)time(NULL);
	st.expires_at = now + STATE_TTL_S;
	char *url = NULL;
	char err[256];
	int rc = sealed_seal(ctx->app->cfg.box_key, sctx, verifier, st.verifier,
	                     sizeof st.verifier);
	if (rc == 0)
		rc = db_oauth_state_insert(ctx->app->db, &st, now);
	if (rc == 0)
		rc = spotify_authorize_url(c, redirect, state, verifier, NULL, &url, err,
		                           sizeof err);
	sodium_memzero(verifier, sizeof verifier);
	if (rc) {
		log_error("spotify log-in could not start (%d)", rc);
		error_page(ctx, 500, "Spotify log-in",
		           "The log-in could not be started; try again.");
		return;
	}
	http_set_header(ctx, "Cache-Control", "no-store");
	http_redirect(ctx, url);
	free(url);
}

static void start_session(struct http_ctx *ctx, const struct db_user *u, const char *flash)
{
	char token[TOKEN_STR_LEN];
	if (accounts_session_start(ctx->app->db, u->id, false, (int64_t)time(NULL), token)) {
		error_page(ctx, 500, "Spotify log-in", "Could not start a session; try again.");
		return;
	}
	char sc[256];
	if (cookie_format(sc, sizeof sc, "_sfa_session", token, -1, ctx->app->cfg.https) == 0)
		http_set_header(ctx, "Set-Cookie", sc);
	sodium_memzero(token, sizeof token);
	page_redirect_with_flash(ctx, "/", flash);
}

/* A placeholder address for a Spotify account without an email: the id's safe
 * characters under the reserved .invalid domain, so it can never receive mail. */
static void placeholder_email(const char *spotify_id, char *out, size_t n)
{
	char local[80];
	size_t k = 0;
	for (const char *p = spotify_id; *p && k < sizeof local - 1; p++) {
		char ch = *p;
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		          ch == '-' || ch == '_';
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch + 32), ok = true;
		local[k++] = ok ? ch : '-';
	}
	local[k] = '\0';
	snprintf(out, n, "spotify-%s@users.invalid", k ? local : "user");
}

/* Creates a user for a Spotify account nobody has linked. Returns 0 with *out, or answers
 * (409 when the email belongs to someone) and returns non-zero. */
static int create_user(struct http_ctx *ctx, const struct spotify_me *me, struct db_user *out)
{
	struct db *db = ctx->app->db;
	char email[DB_EMAIL_MAX + 1];
	struct field_errors fe = {0};
	if (me->email && *me->email) {
		accounts_check_email(me->email, &fe, "email");
		struct db_user existing;
		if (fe.n == 0 && db_user_by_email(db, me->email, &existing) == 0) {
			error_page(
				ctx, 409, "Log in with your password",
				"An account with the email of this Spotify account already exists. Log "
				"in with your password, then link Spotify on the settings page.");
			return SFA_ECONFLICT;
		}
	}
	if (me->email && *me->email && fe.n == 0)
		str_copy(email, sizeof email, me->email);
	else
		placeholder_email(me->id, email, sizeof email);
	/* Nobody knows this password: the account logs in through Spotify. */
	unsigned char raw[24];
	char password[64];
	randombytes_buf(raw, sizeof raw);
	str_hex(raw, sizeof raw, password);
	memset(&fe, 0, sizeof fe);
	int rc = accounts_register(db, email, password, (int64_t)time(NULL), out, &fe);
	sodium_memzero(password, sizeof password);
	if (rc) {
		error_page(ctx, rc == SFA_EINVAL ? 409 : 500, "Spotify log-in",
		           "A Sound Forge Alchemy account could not be created for this Spotify "
		           "account.");
		return rc ? rc : SFA_EDB;
	}
	if (db_user_mark_passwordless(db, out->id) == 0)
		out->password_set = false;
	log_info("user %s created through Spotify log-in", out->id);
	return 0;
}

static const char *home_of(struct http_ctx *ctx)
{
	return ctx->auth == AUTH_SESSION ? "/users/settings" : "/users/log-in";
}

void auth_spotify_callback(struct http_ctx *ctx)
{
	const char *state = http_query(ctx, "state");
	const char *code = http_query(ctx, "code");
	const char *error = http_query(ctx, "error");
	struct db *db = ctx->app->db;
	if (!state || !*state || strlen(state) > 256) {
		error_page(ctx, 400, "Spotify log-in",
		           "The answer from Spotify carries no state; "
		           "start the log-in again.");
		return;
	}
	struct db_oauth_state st;
	char h[TOKEN_HASH_LEN], browser[TOKEN_HASH_LEN];
	hash_hex(state, h);
	hash_hex(ctx->csrf_cookie, browser);
	int64_t now = (int64_t)time(NULL);
	/* Taken (deleted) before any check, so a state works at most once. */
	int rc = db_oauth_state_take(db, h, &st);
	if (rc || st.expires_at <= now || ctx->csrf_cookie_new ||
	    !str_secure_eq(st.browser_hash, browser)) {
		error_page(
			ctx, 400, "Spotify log-in",
			"This log-in link has expired, was already used or was opened in another "
			"browser. Start the log-in with Spotify again.");
		return;
	}
	if (st.user_id[0] && (ctx->auth != AUTH_SESSION || strcmp(st.user_id, ctx->user.id) != 0)) {
		error_page(ctx, 400, "Spotify log-in",
		           "You logged in or out while linking Spotify; "
		           "start again.");
		return;
	}
	if (error) {
		log_info("spotify log-in answered error=%.40s", error);
		page_redirect_with_flash(ctx, home_of(ctx), "spotify_denied");
		return;
	}
	if (!code || !*code || strlen(code) > 2048) {
		error_page(ctx, 400, "Spotify log-in",
		           "The answer from Spotify carries no code; start "
		           "the log-in again.");
		return;
	}
	char sctx[96], verifier[256];
	snprintf(sctx, sizeof sctx, "oauth-verifier:%s", st.state_hash);
	if (sealed_open(ctx->app->cfg.box_key, sctx, st.verifier, verifier, sizeof verifier) != 0) {
		error_page(ctx, 400, "Spotify log-in",
		           "This log-in link can no longer be used; start "
		           "again.");
		return;
	}
	struct spotify_client *c = api_spotify_client(ctx->app);
	struct spotify_user_tokens tok = {0};
	struct spotify_me me = {0};
	char err[256];
	rc = c ? spotify_exchange_code(c, code, st.redirect_uri, verifier, &tok, err, sizeof err)
	       : SFA_EAUTH;
	sodium_memzero(verifier, sizeof verifier);
	if (rc == 0)
		rc = spotify_get_me(c, tok.access_token, &me, err, sizeof err);
	if (rc) {
		log_info("spotify log-in failed: %s", c ? err : "no client");
		error_page(ctx, 502, "Spotify log-in",
		           "Spotify did not complete the log-in; try "
		           "again in a moment.");
		goto out;
	}
	if (st.user_id[0]) {
		rc = spotify_link_save(db, ctx->app->cfg.box_key, ctx->user.id, &me, &tok, now, err,
		                       sizeof err);
		if (rc) {
			error_page(ctx, rc == SFA_ECONFLICT ? 409 : 500, "Spotify log-in", err);
			goto out;
		}
		log_info("user %s linked a Spotify account", ctx->user.id);
		page_redirect_with_flash(ctx, "/users/settings", "spotify_linked");
		goto out;
	}
	struct db_spotify_link *link = calloc(1, sizeof *link);
	if (!link) {
		error_page(ctx, 500, "Spotify log-in", "Out of memory.");
		goto out;
	}
	struct db_user u;
	const char *flash = "logged_in";
	if (db_spotify_link_by_spotify_id(db, me.id, link) == 0) {
		rc = db_user_by_id(db, link->user_id, &u);
		if (rc == 0 && strcmp(u.status, "active") != 0) {
			error_page(ctx, 403, "Spotify log-in", "This account is suspended.");
			free(link);
			goto out;
		}
	} else {
		rc = create_user(ctx, &me, &u);
		if (rc) {
			free(link);
			goto out; /* answered */
		}
		flash = "spotify_registered";
	}
	free(link);
	if (rc == 0)
		rc = spotify_link_save(db, ctx->app->cfg.box_key, u.id, &me, &tok, now, err,
		                       sizeof err);
	if (rc) {
		error_page(ctx, 500, "Spotify log-in",
		           "The log-in could not be completed; try again.");
		goto out;
	}
	log_info("user %s logged in with Spotify", u.id);
	start_session(ctx, &u, flash);
out:
	spotify_user_tokens_free(&tok);
	spotify_me_free(&me);
}

void auth_spotify_unlink(struct http_ctx *ctx)
{
	int rc = db_spotify_link_delete(ctx->app->db, ctx->user.id);
	if (rc && rc != SFA_ENOTFOUND) {
		error_page(ctx, 500, "Spotify",
		           "The Spotify link could not be removed; try again.");
		return;
	}
	if (rc == 0)
		log_info("user %s unlinked Spotify", ctx->user.id);
	page_redirect_with_flash(ctx, "/users/settings", "spotify_unlinked");
}

void api_spotify_me(struct http_ctx *ctx)
{
	struct spotify_client *c = api_spotify_client(ctx->app);
	char token[SPOTIFY_LINK_TOKEN_MAX + 1], err[256];
	bool unlinked = false;
	int64_t now = (int64_t)time(NULL);
	int rc = c ? spotify_link_access_token(ctx->app->db, c, ctx->app->cfg.box_key, ctx->user.id,
	                                       false, now, token, &unlinked, err, sizeof err)
	           : SFA_EAUTH;
	struct spotify_me me = {0};
	if (rc == 0) {
		rc = spotify_get_me(c, token, &me, err, sizeof err);
		if (rc == SFA_EAUTH) { /* revoked early or expired: one refresh, then once more */
			rc = spotify_link_access_token(ctx->app->db, c, ctx->app->cfg.box_key,
			                               ctx->user.id, true, now, token, &unlinked,
			                               err, sizeof err);
			if (rc == 0)
				rc = spotify_get_me(c, token, &me, err, sizeof err);
		}
	}
	sodium_memzero(token, sizeof token);
	if (rc == SFA_ENOTFOUND) {
		http_data(ctx, 200,
		          json_pack("{s:b, s:s?}", "linked", 0, "message", unlinked ? err : NULL));
		return;
	}
	if (rc) {
		spotify_me_free(&me);
		http_error(ctx, rc == SFA_EAUTH ? 503 : 502,
		           rc == SFA_EAUTH ? "unauthorized" : "spotify_error",
		           c ? err : "The Spotify client could not be set up.");
		return;
	}
	http_data(ctx, 200,
	          json_pack("{s:b, s:s, s:s?, s:s?, s:s?, s:s?, s:s?}", "linked", 1, "spotify_id",
	                    me.id, "display_name", me.display_name, "email", me.email, "country",
	                    me.country, "product", me.product, "image_url", me.image_url));
	spotify_me_free(&me);
}

void page_spotify_settings(struct http_ctx *ctx, struct buf *b, const char *csrf_token)
{
	struct db_spotify_link *l = calloc(1, sizeof *l);
	if (!l)
		return;
	buf_puts(b, "<section id=\"spotify\"><h2>Spotify</h2>");
	if (db_spotify_link_get(ctx->app->db, ctx->user.id, l) == 0) {
		buf_printf(
			b,
			"<p id=\"spotify-state\">Linked to the Spotify account <strong>%s</strong> "
			"(<code>%s</code>).</p>"
			"<form method=\"post\" action=\"/auth/spotify\">"
			"<input type=\"hidden\" name=\"_method\" value=\"delete\">"
			"<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
			"<button type=\"submit\">Unlink Spotify</button></form>",
			html_esc(&ctx->arena,
		                 l->display_name[0] ? l->display_name : l->spotify_user_id),
			html_esc(&ctx->arena, l->spotify_user_id), csrf_token);
	} else if (ctx->app->cfg.spotify_client_id[0]) {
		buf_puts(b, "<p id=\"spotify-state\">Not linked.</p>"
		            "<p><a href=\"/auth/spotify\">Link your Spotify account</a></p>");
	} else {
		buf_puts(b,
		         "<p id=\"spotify-state\">Not linked. Spotify log-in is not configured on "
		         "this server.</p>");
	}
	buf_puts(b, "</section>");
	sodium_memzero(l, sizeof *l);
	free(l);
}
