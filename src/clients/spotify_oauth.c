/* spotify_oauth.c - a user's Spotify log-in: the authorization-code flow with PKCE
 * (RFC 7636), the code exchange, refreshing, and reading the user's profile.
 *
 * Tokens in forms and answers are wiped before they are freed; the exchange is not
 * idempotent (a code works once), so it is retried only when nothing was sent.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clients/spotify_internal.h"
#include "util/json.h"
#include "util/log.h"
#include "util/str.h"

const char SPOTIFY_LOGIN_SCOPES[] = "user-read-email user-read-private playlist-read-private "
				    "playlist-read-collaborative user-library-read";

static const char no_client_id[] =
	"Spotify log-in is not configured: this server has no Spotify client id.";

/* ---- Log-in: authorization code with PKCE --------------------------------------------- */

static bool pkce_char(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

void spotify_pkce_verifier(char out[SPOTIFY_PKCE_VERIFIER_LEN + 1])
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				       "0123456789-._~";
	for (int i = 0; i < SPOTIFY_PKCE_VERIFIER_LEN; i++)
		out[i] = alphabet[randombytes_uniform((uint32_t)(sizeof alphabet - 1))];
	out[SPOTIFY_PKCE_VERIFIER_LEN] = '\0';
}

int spotify_pkce_challenge(const char *verifier, char out[SPOTIFY_PKCE_CHALLENGE_LEN + 1],
                           char *err, size_t n_err)
{
	size_t n = verifier ? strlen(verifier) : 0;
	if (n < 43 || n > 128)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "A PKCE code verifier must be 43 to 128 characters long.");
	for (size_t i = 0; i < n; i++)
		if (!pkce_char(verifier[i]))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "A PKCE code verifier may only use A-Z a-z 0-9 - . _ ~.");
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(digest, (const unsigned char *)verifier, n);
	sodium_bin2base64(out, SPOTIFY_PKCE_CHALLENGE_LEN + 1, digest, sizeof digest,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return 0;
}

int spotify_authorize_url(const struct spotify_client *c, const char *redirect_uri,
                          const char *state, const char *verifier, const char *scope, char **out,
                          char *err, size_t n_err)
{
	if (!c->client_id)
		return sfa_err(err, n_err, SFA_EAUTH, "%s", no_client_id);
	if (!redirect_uri || !*redirect_uri || !state || !*state)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The Spotify log-in needs a redirect URI and a state.");
	char challenge[SPOTIFY_PKCE_CHALLENGE_LEN + 1];
	int rc = spotify_pkce_challenge(verifier, challenge, err, n_err);
	if (rc)
		return rc;
	struct buf q, b;
	buf_init(&q, URL_MAX_BYTES);
	buf_init(&b, URL_MAX_BYTES);
	rc = spotify__form_add(&q, "client_id", c->client_id);
	if (!rc)
		rc = spotify__form_add(&q, "response_type", "code");
	if (!rc)
		rc = spotify__form_add(&q, "redirect_uri", redirect_uri);
	if (!rc)
		rc = spotify__form_add(&q, "state", state);
	if (!rc)
		rc = spotify__form_add(&q, "scope", scope ? scope : SPOTIFY_LOGIN_SCOPES);
	if (!rc)
		rc = spotify__form_add(&q, "code_challenge_method", "S256");
	if (!rc)
		rc = spotify__form_add(&q, "code_challenge", challenge);
	if (!rc)
		rc = buf_printf(&b, "%s/authorize?%s", c->accounts_url, q.data);
	buf_free(&q);
	if (rc) {
		buf_free(&b);
		return sfa_err(err, n_err, rc, "The Spotify authorize URL would be too long.");
	}
	*out = buf_steal(&b);
	return 0;
}

void spotify_user_tokens_free(struct spotify_user_tokens *t)
{
	if (!t)
		return;
	if (t->access_token)
		sodium_memzero(t->access_token, strlen(t->access_token));
	if (t->refresh_token)
		sodium_memzero(t->refresh_token, strlen(t->refresh_token));
	free(t->access_token);
	free(t->refresh_token);
	free(t->scope);
	memset(t, 0, sizeof *t);
}

/* Fills *out from a token answer; old_refresh stands in for a missing refresh_token. */
static int user_tokens_from(const json_t *j, const char *old_refresh,
                            struct spotify_user_tokens *out, char *err, size_t n_err)
{
	const char *access = json_str(j, "access_token");
	const char *type = json_str(j, "token_type");
	const char *refresh = json_str(j, "refresh_token");
	const json_t *exp = json_object_get(j, "expires_in");
	if (!access || !*access || strlen(access) > TOKEN_MAX_BYTES || !type ||
	    strcasecmp(type, "bearer") != 0)
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "Spotify's token answer lacks a bearer access_token.");
	if (!refresh || !*refresh)
		refresh = old_refresh;
	struct spotify_user_tokens t = {0};
	int rc = spotify__dup_opt(access, &t.access_token);
	if (!rc)
		rc = spotify__dup_opt(refresh, &t.refresh_token);
	if (!rc)
		rc = spotify__dup_opt(json_str(j, "scope"), &t.scope);
	if (rc) {
		spotify_user_tokens_free(&t);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	}
	t.expires_in_s = json_is_integer(exp) && json_integer_value(exp) > 0
	                         ? (long)json_integer_value(exp)
	                         : 3600;
	*out = t;
	return 0;
}

static void wipe_json_tokens(json_t *j)
{
	static const char *const keys[] = {"access_token", "refresh_token"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		json_t *t = json_object_get(j, keys[i]);
		if (json_is_string(t))
			sodium_memzero((void *)json_string_value(t), json_string_length(t));
	}
	json_decref(j);
}

/* Shared by exchange and refresh: client_id in the form, Basic auth with a secret. */
static int user_token_call(struct spotify_client *c, struct buf *form, bool idempotent,
                           bool refresh, const char *old_refresh, struct spotify_user_tokens *out,
                           char *err, size_t n_err)
{
	int rc = spotify__form_add(form, "client_id", c->client_id);
	if (rc)
		return sfa_err(err, n_err, rc, "The token request would be too long.");
	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	json_t *j = NULL;
	rc = spotify__token_post(c, h, form->data, c->client_secret != NULL, idempotent, refresh,
	                         &j, err, n_err);
	curl_easy_cleanup(h);
	if (rc)
		return rc;
	rc = user_tokens_from(j, old_refresh, out, err, n_err);
	wipe_json_tokens(j);
	return rc;
}

static void form_wipe(struct buf *form)
{
	if (form->data)
		sodium_memzero(form->data, form->len);
	buf_free(form);
}

int spotify_exchange_code(struct spotify_client *c, const char *code, const char *redirect_uri,
                          const char *verifier, struct spotify_user_tokens *out, char *err,
                          size_t n_err)
{
	if (!c->client_id)
		return sfa_err(err, n_err, SFA_EAUTH, "%s", no_client_id);
	if (!code || !*code || !redirect_uri || !*redirect_uri || !verifier)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The code exchange needs a code, a redirect URI and a verifier.");
	struct buf form;
	buf_init(&form, FORM_MAX_BYTES);
	int rc = spotify__form_add(&form, "grant_type", "authorization_code");
	if (!rc)
		rc = spotify__form_add(&form, "code", code);
	if (!rc)
		rc = spotify__form_add(&form, "redirect_uri", redirect_uri);
	if (!rc)
		rc = spotify__form_add(&form, "code_verifier", verifier);
	if (rc)
		rc = sfa_err(err, n_err, rc, "The token request would be too long.");
	else
		rc = user_token_call(c, &form, false, false, NULL, out, err, n_err);
	form_wipe(&form);
	return rc;
}

int spotify_refresh_user_token(struct spotify_client *c, const char *refresh_token,
                               struct spotify_user_tokens *out, char *err, size_t n_err)
{
	if (!c->client_id)
		return sfa_err(err, n_err, SFA_EAUTH, "%s", no_client_id);
	if (!refresh_token || !*refresh_token)
		return sfa_err(err, n_err, SFA_EINVAL, "There is no refresh token to use.");
	struct buf form;
	buf_init(&form, FORM_MAX_BYTES);
	int rc = spotify__form_add(&form, "grant_type", "refresh_token");
	if (!rc)
		rc = spotify__form_add(&form, "refresh_token", refresh_token);
	if (rc)
		rc = sfa_err(err, n_err, rc, "The token request would be too long.");
	else
		rc = user_token_call(c, &form, true, true, refresh_token, out, err, n_err);
	form_wipe(&form);
	return rc;
}

void spotify_me_free(struct spotify_me *me)
{
	if (!me)
		return;
	free(me->id);
	free(me->display_name);
	free(me->email);
	free(me->country);
	free(me->product);
	free(me->image_url);
	memset(me, 0, sizeof *me);
}

int spotify_get_me(struct spotify_client *c, const char *access_token, struct spotify_me *out,
                   char *err, size_t n_err)
{
	if (!access_token || !*access_token || strlen(access_token) > TOKEN_MAX_BYTES)
		return sfa_err(err, n_err, SFA_EINVAL, "There is no valid access token to use.");
	char url[1200];
	snprintf(url, sizeof url, "%s/v1/me", c->api_url);
	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	struct http_resp rs = {0};
	json_t *j = NULL;
	struct spotify__req rq = {
		.url = url,
		.bearer = access_token,
		.protocols = http_protocols_for(url),
		.max_body_bytes = 256 << 10,
		.idempotent = true,
	};
	int rc = spotify__request(c, h, &rq, &rs, err, n_err);
	if (rc)
		goto out;
	if (rs.status != 200) {
		char code[64], msg[256];
		spotify__upstream_error(&rs, code, sizeof code, msg, sizeof msg);
		if (rs.status == 401)
			rc = sfa_err(err, n_err, SFA_EAUTH,
			             "Spotify rejected the user's access token (%s); refresh it.",
			             msg[0] ? msg : "HTTP 401");
		else
			rc = sfa_err(err, n_err, SFA_EUPSTREAM,
			             "Spotify's /v1/me answered HTTP %ld%s%s.", rs.status,
			             msg[0] ? ": " : "", msg);
		goto out;
	}
	rc = spotify__parse_body(&rs, &j, err, n_err);
	if (rc)
		goto out;
	const char *id = json_str(j, "id");
	if (!id || !*id) {
		rc = sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify's /v1/me answer has no user id.");
		goto out;
	}
	struct spotify_me me = {0};
	rc = spotify__dup_opt(id, &me.id);
	if (!rc)
		rc = spotify__dup_opt(json_str(j, "display_name"), &me.display_name);
	if (!rc)
		rc = spotify__dup_opt(json_str(j, "email"), &me.email);
	if (!rc)
		rc = spotify__dup_opt(json_str(j, "country"), &me.country);
	if (!rc)
		rc = spotify__dup_opt(json_str(j, "product"), &me.product);
	if (!rc)
		rc = spotify__dup_opt(spotify__widest_image(json_object_get(j, "images")),
		                      &me.image_url);
	if (rc) {
		spotify_me_free(&me);
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		goto out;
	}
	*out = me;
out:
	json_decref(j);
	http_resp_free(&rs);
	curl_easy_cleanup(h);
	return rc;
}
