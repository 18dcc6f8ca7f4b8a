/* pages.c - the server-rendered HTML pages: home, register, log in, log out, settings.
 *
 * Plain forms that work without JavaScript, field names in the Phoenix convention
 * (user[email], user[password], user[remember_me], _csrf_token, _method). Every value
 * from a user or the database is escaped with html_esc. A one-shot "flash" message
 * travels across a redirect in the _sfa_flash cookie as a code from a fixed table, so
 * no user text is ever reflected from a cookie.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "api/app.h"
#include "api/assets.h"
#include "api/routes.h"
#include "api/socket.h"
#include "api/spotify_api.h"
#include "core/accounts.h"
#include "core/csrf.h"
#include "http/cookie.h"
#include "http/html.h"
#include "util/err.h"
#include "util/log.h"
#include "util/timeutil.h"

static const struct {
	const char *code;
	const char *text;
} flashes[] = {
	{"registered", "Account created. Welcome to Sound Forge Alchemy!"},
	{"logged_in", "Welcome back!"},
	{"logged_out", "Logged out successfully."},
	{"email_changed", "Email changed successfully."},
	{"password_changed", "Password updated successfully."},
	{"key_revoked", "API key revoked."},
	{"spotify_linked", "Your Spotify account is linked."},
	{"spotify_unlinked", "Your Spotify account was unlinked."},
	{"spotify_denied", "Spotify log-in was cancelled; nothing was changed."},
	{"spotify_registered", "Account created with Spotify. Welcome to Sound Forge Alchemy!"},
	{"lalalai_key_saved", "Your lal.ai license key was saved."},
	{"lalalai_key_removed", "Your lal.ai license key was removed."},
};

static const char *flash_text(struct http_ctx *ctx)
{
	const char *code = http_cookie(ctx, "_sfa_flash");
	if (!code)
		return NULL;
	char sc[128];
	if (cookie_format(sc, sizeof sc, "_sfa_flash", "", 0, ctx->app->cfg.https) == 0)
		http_set_header(ctx, "Set-Cookie", sc);
	for (size_t i = 0; i < sizeof flashes / sizeof flashes[0]; i++)
		if (strcmp(flashes[i].code, code) == 0)
			return flashes[i].text;
	return NULL;
}

void page_redirect_with_flash(struct http_ctx *ctx, const char *location, const char *code)
{
	char sc[128];
	if (cookie_format(sc, sizeof sc, "_sfa_flash", code, 60, ctx->app->cfg.https) == 0)
		http_set_header(ctx, "Set-Cookie", sc);
	http_redirect(ctx, location);
}

static const char *csrf_token(struct http_ctx *ctx)
{
	char t[CSRF_TOKEN_LEN];
	csrf_token_for(ctx->app->cfg.csrf_key, ctx->csrf_cookie, t);
	return arena_strdup(&ctx->arena, t);
}

/* The studio's navigation; the current one is marked for screen readers and the eye. */
static void nav(struct http_ctx *ctx, struct buf *b)
{
	static const char *const links[][2] = {
		{"/", "Library"},      {"/import", "Import"},           {"/jobs", "Jobs"},
		{"/models", "Models"}, {"/users/settings", "Settings"},
	};
	buf_puts(b, "<nav aria-label=\"Main\">");
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		bool here = strcmp(ctx->path, links[i][0]) == 0 ||
		            (strcmp(links[i][0], "/") == 0 &&
		             strncmp(ctx->path, "/tracks", 7) == 0);
		buf_printf(b, "<a href=\"%s\"%s>%s</a>", links[i][0],
		           here ? " aria-current=\"page\"" : "", links[i][1]);
	}
	buf_puts(b, "</nav>");
}

/* Wraps body (HTML) in the layout and sends it; script (an embedded module's name, or
 * NULL) is loaded as the page's only script. */
static void render(struct http_ctx *ctx, int status, const char *title, const char *body,
                   const char *script, const char *main_attrs)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	const char *tok = csrf_token(ctx);
	const char *css = web_asset_url("app.css");
	buf_printf(
		&b,
		"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
		"<meta name=\"csrf-token\" content=\"%s\"><title>%s · Sound Forge Alchemy</title>"
		"<link rel=\"stylesheet\" href=\"%s\"><link rel=\"icon\" href=\"data:,\">",
		tok, html_esc(&ctx->arena, title), css ? css : "");
	const char *js = script ? web_asset_url(script) : NULL;
	const char *plots = web_asset_url("vendor/uplot.css");
	if (js)
		buf_printf(&b,
		           "<link rel=\"stylesheet\" href=\"%s\">"
		           "<script type=\"module\" src=\"%s\"></script>",
		           plots ? plots : "", js);
	buf_puts(&b, "</head><body><header><a class=\"brand\" href=\"/\">Sound Forge Alchemy</a>");
	if (ctx->auth == AUTH_SESSION)
		nav(ctx, &b);
	if (ctx->auth == AUTH_SESSION)
		buf_printf(&b,
		           "<span>%s</span>"
		           "<form class=\"inline\" method=\"post\" action=\"/users/log-out\">"
		           "<input type=\"hidden\" name=\"_method\" value=\"delete\">"
		           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		           "<button type=\"submit\">Log out</button></form>",
		           html_esc(&ctx->arena, ctx->user.email), tok);
	else
		buf_puts(
			&b,
			"<a href=\"/users/log-in\">Log in</a><a href=\"/users/register\">Register</a>");
	buf_printf(&b, "</header><main%s>", main_attrs ? main_attrs : "");
	const char *flash = flash_text(ctx);
	if (flash)
		buf_printf(&b, "<p class=\"flash\" role=\"status\">%s</p>",
		           html_esc(&ctx->arena, flash));
	buf_puts(&b, body);
	buf_puts(&b, "</main><div id=\"notices\" aria-live=\"polite\"></div></body></html>");
	http_html(ctx, status, buf_steal(&b));
}

void page_render(struct http_ctx *ctx, int status, const char *title, const char *body)
{
	render(ctx, status, title, body, NULL, NULL);
}

/* The studio (library, import, jobs, track pages, models): one page whose script (web/)
 * draws the view its path names, as a client of the public API and the socket. Without
 * JavaScript it says so. */
void page_studio(struct http_ctx *ctx)
{
	const char *attrs = arena_printf(
		&ctx->arena, " class=\"studio\" id=\"app\" data-user-id=\"%s\"", ctx->user.id);
	render(ctx, 200, "Studio",
	       "<noscript><section><p>The studio needs JavaScript. Everything it does is also "
	       "available through the REST API (see <a href=\"/users/settings\">Settings</a> for "
	       "API keys).</p></section></noscript>",
	       "app.js", attrs);
}

static const char *field_error_html(struct http_ctx *ctx, const struct field_errors *fe,
                                    const char *field)
{
	const char *m = fe ? field_errors_get(fe, field) : NULL;
	if (!m)
		return "";
	return arena_printf(&ctx->arena, "<p class=\"error\">%s</p>", html_esc(&ctx->arena, m));
}

void page_home(struct http_ctx *ctx)
{
	if (ctx->auth == AUTH_SESSION) {
		page_studio(ctx);
		return;
	}
	page_render(
		ctx, 200, "Home",
		"<section><h1>Sound Forge Alchemy</h1><p>Separate songs into stems, analyse tempo and "
		"key, and mix stems into new tracks.</p><p><a href=\"/users/log-in\">Log in</a> or "
		"<a href=\"/users/register\">create an account</a>.</p></section>");
}

static void register_form(struct http_ctx *ctx, int status, const char *email,
                          const struct field_errors *fe)
{
	const char *body = arena_printf(
		&ctx->arena,
		"<section><h1>Create an account</h1>%s"
		"<form method=\"post\" action=\"/users/register\">"
		"<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		"<label for=\"user_email\">Email</label>"
		"<input type=\"email\" id=\"user_email\" name=\"user[email]\" value=\"%s\" required "
		"autocomplete=\"username\">%s"
		"<label for=\"user_password\">Password (12 to 72 characters)</label>"
		"<input type=\"password\" id=\"user_password\" name=\"user[password]\" required "
		"minlength=\"12\" maxlength=\"72\" autocomplete=\"new-password\">%s"
		"<button type=\"submit\">Create account</button></form>"
		"<p>Already registered? <a href=\"/users/log-in\">Log in</a>.</p></section>",
		fe && fe->n
			? "<p class=\"alert\" role=\"alert\">Oops, something went wrong! Please "
			  "check the errors below.</p>"
			: "",
		csrf_token(ctx), html_esc(&ctx->arena, email ? email : ""),
		field_error_html(ctx, fe, "email"), field_error_html(ctx, fe, "password"));
	page_render(ctx, status, "Register", body);
}

void page_register_form(struct http_ctx *ctx) { register_form(ctx, 200, NULL, NULL); }

static void start_session(struct http_ctx *ctx, const struct db_user *u, bool remember,
                          const char *flash)
{
	char token[TOKEN_STR_LEN];
	if (accounts_session_start(ctx->app->db, u->id, remember, (int64_t)time(NULL), token)) {
		http_text(ctx, 500, "text/plain; charset=utf-8", "Could not start a session.\n");
		return;
	}
	char sc[256];
	cookie_format(sc, sizeof sc, "_sfa_session", token, remember ? ACCOUNTS_REMEMBER_S : -1,
	              ctx->app->cfg.https);
	http_set_header(ctx, "Set-Cookie", sc);
	page_redirect_with_flash(ctx, "/", flash);
}

void page_register(struct http_ctx *ctx)
{
	const char *email = http_form(ctx, "user[email]");
	const char *password = http_form(ctx, "user[password]");
	struct field_errors fe = {0};
	struct db_user u;
	int rc = accounts_register(ctx->app->db, email ? email : "", password ? password : "",
	                           (int64_t)time(NULL), &u, &fe);
	if (rc == SFA_EINVAL) {
		register_form(ctx, 422, email, &fe);
		return;
	}
	if (rc) {
		http_text(ctx, 500, "text/plain; charset=utf-8",
		          "Registration failed; try again.\n");
		return;
	}
	log_info("user %s registered", u.id);
	start_session(ctx, &u, false, "registered");
}

static void log_in_form(struct http_ctx *ctx, int status, const char *email, const char *error)
{
	const char *body = arena_printf(
		&ctx->arena,
		"<section><h1>Log in</h1>%s<form method=\"post\" action=\"/users/log-in\">"
		"<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		"<label for=\"user_email\">Email</label>"
		"<input type=\"email\" id=\"user_email\" name=\"user[email]\" value=\"%s\" required "
		"autocomplete=\"username\">"
		"<label for=\"user_password\">Password</label>"
		"<input type=\"password\" id=\"user_password\" name=\"user[password]\" required "
		"autocomplete=\"current-password\">"
		"<label><input type=\"checkbox\" name=\"user[remember_me]\" value=\"true\"> Keep me "
		"logged in for 14 days</label>"
		"<button type=\"submit\">Log in</button></form>%s"
		"<p>No account yet? <a href=\"/users/register\">Register</a>.</p></section>",
		error ? arena_printf(&ctx->arena, "<p class=\"alert\" role=\"alert\">%s</p>",
	                             html_esc(&ctx->arena, error))
		      : "",
		csrf_token(ctx), html_esc(&ctx->arena, email ? email : ""),
		ctx->app->cfg.spotify_client_id[0]
			? "<p><a href=\"/auth/spotify\">Log in with Spotify</a></p>"
			: "");
	page_render(ctx, status, "Log in", body);
}

void page_log_in_form(struct http_ctx *ctx) { log_in_form(ctx, 200, NULL, NULL); }

void page_log_in(struct http_ctx *ctx)
{
	const char *email = http_form(ctx, "user[email]");
	const char *password = http_form(ctx, "user[password]");
	const char *remember = http_form(ctx, "user[remember_me]");
	struct db_user u;
	if (!email || !password || accounts_authenticate(ctx->app->db, email, password, &u) != 0) {
		log_in_form(ctx, 401, email, "Invalid email or password");
		return;
	}
	start_session(ctx, &u,
	              remember && (strcmp(remember, "true") == 0 || strcmp(remember, "on") == 0 ||
	                           strcmp(remember, "1") == 0),
	              "logged_in");
}

void page_log_out(struct http_ctx *ctx)
{
	if (ctx->session_token) {
		accounts_session_end(ctx->app->db, ctx->session_token);
		char hash[TOKEN_HASH_LEN];
		token_hash(ctx->session_token, hash);
		socket_close_credential(hash);
	}
	char sc[128];
	cookie_format(sc, sizeof sc, "_sfa_session", "", 0, ctx->app->cfg.https);
	http_set_header(ctx, "Set-Cookie", sc);
	page_redirect_with_flash(ctx, "/", "logged_out");
}

static void settings_page(struct http_ctx *ctx, int status, const struct field_errors *email_fe,
                          const struct field_errors *pw_fe, const struct field_errors *key_fe,
                          const char *new_key, const char *new_key_name)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	const char *tok = csrf_token(ctx);
	buf_printf(
		&b,
		"<section><h1>Settings</h1><p>Signed in as <strong>%s</strong>.</p></section>"
		"<section><h2>Email</h2><form method=\"post\" action=\"/users/settings\">"
		"<input type=\"hidden\" name=\"_method\" value=\"put\">"
		"<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		"<input type=\"hidden\" name=\"action\" value=\"update_email\">"
		"<label for=\"email_new\">New email</label>"
		"<input type=\"email\" id=\"email_new\" name=\"user[email]\" required>%s"
		"<label for=\"email_current\">Current password</label>"
		"<input type=\"password\" id=\"email_current\" name=\"current_password\" required>%s"
		"<button type=\"submit\">Change email</button></form></section>",
		html_esc(&ctx->arena, ctx->user.email), tok,
		field_error_html(ctx, email_fe, "email"),
		field_error_html(ctx, email_fe, "current_password"));
	buf_printf(&b,
	           "<section><h2>Password</h2><form method=\"post\" action=\"/users/settings\">"
	           "<input type=\"hidden\" name=\"_method\" value=\"put\">"
	           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
	           "<input type=\"hidden\" name=\"action\" value=\"update_password\">"
	           "<label for=\"password_new\">New password (12 to 72 characters)</label>"
	           "<input type=\"password\" id=\"password_new\" name=\"user[password]\" required "
	           "minlength=\"12\" maxlength=\"72\" autocomplete=\"new-password\">%s"
	           "%s%s<button type=\"submit\">%s</button></form></section>",
	           tok, field_error_html(ctx, pw_fe, "password"),
	           ctx->user.password_set
	                   ? "<label for=\"password_current\">Current password</label>"
	                     "<input type=\"password\" id=\"password_current\" "
	                     "name=\"current_password\" required autocomplete=\"current-password\">"
	                   : "<p id=\"no-password\">This account logs in with Spotify and has no "
	                     "password yet: set one to log in with your email too.</p>",
	           field_error_html(ctx, pw_fe, "current_password"),
	           ctx->user.password_set ? "Change password" : "Set password");

	buf_puts(&b, "<section><h2>API keys</h2>");
	if (new_key)
		buf_printf(
			&b,
			"<div class=\"flash\" role=\"status\"><p>New key <strong>%s</strong> created. "
			"Copy it now: it will not be shown again.</p><p class=\"key\" "
			"id=\"new-api-key\">%s</p></div>",
			html_esc(&ctx->arena, new_key_name), html_esc(&ctx->arena, new_key));
	struct db_api_key keys[ACCOUNTS_MAX_API_KEYS];
	size_t n_keys = 0;
	db_api_key_list(ctx->app->db, ctx->user.id, keys, ACCOUNTS_MAX_API_KEYS, &n_keys);
	size_t n_active = 0;
	for (size_t i = 0; i < n_keys; i++)
		n_active += keys[i].revoked_at == 0;
	if (n_active == 0)
		buf_puts(&b, "<p>No API keys yet.</p>");
	else
		buf_puts(&b, "<table><thead><tr><th>Name</th><th>Key</th><th>Created</th><th>Last "
		             "used</th><th></th></tr></thead><tbody>");
	for (size_t i = 0; i < n_keys; i++) {
		if (keys[i].revoked_at)
			continue;
		char created[32], used[32] = "never";
		time_format_rfc3339((time_t)keys[i].created_at, created, sizeof created);
		if (keys[i].last_used_at)
			time_format_rfc3339((time_t)keys[i].last_used_at, used, sizeof used);
		buf_printf(&b,
		           "<tr><td>%s</td><td><code>%s…</code></td><td>%s</td><td>%s</td><td>"
		           "<form class=\"inline\" method=\"post\" action=\"/users/settings\">"
		           "<input type=\"hidden\" name=\"_method\" value=\"put\">"
		           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
		           "<input type=\"hidden\" name=\"action\" value=\"revoke_api_key\">"
		           "<input type=\"hidden\" name=\"key_id\" value=\"%s\">"
		           "<button type=\"submit\">Revoke</button></form></td></tr>",
		           html_esc(&ctx->arena, keys[i].name),
		           html_esc(&ctx->arena, keys[i].prefix), created, used, tok, keys[i].id);
	}
	if (n_active)
		buf_puts(&b, "</tbody></table>");
	buf_printf(&b,
	           "<form method=\"post\" action=\"/users/settings\">"
	           "<input type=\"hidden\" name=\"_method\" value=\"put\">"
	           "<input type=\"hidden\" name=\"_csrf_token\" value=\"%s\">"
	           "<input type=\"hidden\" name=\"action\" value=\"create_api_key\">"
	           "<label for=\"key_name\">Name of a new key</label>"
	           "<input type=\"text\" id=\"key_name\" name=\"name\" required maxlength=\"100\" "
	           "placeholder=\"e.g. laptop script\">%s"
	           "<button type=\"submit\">Create API key</button></form></section>",
	           tok, field_error_html(ctx, key_fe, "name"));
	page_spotify_settings(ctx, &b, tok);
	page_lalalai_settings(ctx, &b, tok);
	char *body = buf_steal(&b);
	page_render(ctx, status, "Settings", body);
	free(body);
}

void page_settings(struct http_ctx *ctx) { settings_page(ctx, 200, NULL, NULL, NULL, NULL, NULL); }

void page_settings_update(struct http_ctx *ctx)
{
	const char *action = http_form(ctx, "action");
	const char *current = http_form(ctx, "current_password");
	struct field_errors fe = {0};
	struct db *db = ctx->app->db;
	if (!action) {
		field_errors_add(&fe, "name", "the form did not say what to change");
		settings_page(ctx, 422, NULL, NULL, &fe, NULL, NULL);
		return;
	}
	if (strcmp(action, "update_email") == 0) {
		const char *email = http_form(ctx, "user[email]");
		int rc = accounts_change_email(db, &ctx->user, current ? current : "",
		                               email ? email : "", &fe);
		if (rc == 0) {
			page_redirect_with_flash(ctx, "/users/settings", "email_changed");
			return;
		}
		settings_page(ctx, rc == SFA_EINVAL ? 422 : 500, &fe, NULL, NULL, NULL, NULL);
		return;
	}
	if (strcmp(action, "update_password") == 0) {
		const char *next = http_form(ctx, "user[password]");
		int rc = accounts_change_password(db, &ctx->user, current ? current : "",
		                                  next ? next : "", ctx->session_token, &fe);
		if (rc == 0) {
			socket_close_user_sessions(ctx->user.id, ctx->session_token);
			log_info("user %s changed the password; other sessions ended",
			         ctx->user.id);
			page_redirect_with_flash(ctx, "/users/settings", "password_changed");
			return;
		}
		settings_page(ctx, rc == SFA_EINVAL ? 422 : 500, NULL, &fe, NULL, NULL, NULL);
		return;
	}
	if (strcmp(action, "create_api_key") == 0) {
		const char *name = http_form(ctx, "name");
		char key[TOKEN_STR_LEN];
		struct db_api_key rec;
		int rc = accounts_api_key_create(db, ctx->user.id, name ? name : "",
		                                 (int64_t)time(NULL), key, &rec, &fe);
		if (rc == 0) {
			/* Shown once, in this response only: nothing stores the key itself. */
			settings_page(ctx, 200, NULL, NULL, NULL, key, rec.name);
			sodium_memzero(key, sizeof key);
			return;
		}
		settings_page(ctx, rc == SFA_EINVAL ? 422 : 500, NULL, NULL, &fe, NULL, NULL);
		return;
	}
	if (strcmp(action, "revoke_api_key") == 0) {
		const char *id = http_form(ctx, "key_id");
		char hash[TOKEN_HASH_LEN];
		if (id && db_api_key_revoke(db, ctx->user.id, id, (int64_t)time(NULL), hash) == 0) {
			keycache_forget(ctx->app->keys, hash);
			socket_close_credential(hash);
			page_redirect_with_flash(ctx, "/users/settings", "key_revoked");
			return;
		}
		field_errors_add(&fe, "name", "that key does not exist or is already revoked");
		settings_page(ctx, 404, NULL, NULL, &fe, NULL, NULL);
		return;
	}
	if (page_lalalai_settings_update(ctx, action))
		return;
	field_errors_add(&fe, "name", "unknown settings action");
	settings_page(ctx, 422, NULL, NULL, &fe, NULL, NULL);
}
