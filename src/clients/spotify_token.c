/* spotify_token.c - the app's client-credentials token and the reads made under it.
 *
 * One token is cached per client under token_mu, fetched when missing or about to expire;
 * the mutex is held across the fetch so that concurrent callers share one. A read that
 * gets 401 drops the token (only if it is still the one that failed: another thread may
 * have replaced it) and tries once more with a new one. Tokens are wiped before they are
 * freed and never reach a log line or a sentence.
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
#include <assert.h>
#include <pthread.h>

#include "util/timeutil.h"

/* ---- Tokens --------------------------------------------------------------------------- */

/* base64(form-encode(id) ":" form-encode(secret)) per RFC 6749 2.3.1; malloced. */
static int basic_credentials(const struct spotify_client *c, char **out)
{
	struct buf raw;
	buf_init(&raw, 2048);
	int rc = spotify__pct_encode(&raw, c->client_id);
	if (!rc)
		rc = buf_puts(&raw, ":");
	if (!rc)
		rc = spotify__pct_encode(&raw, c->client_secret);
	if (rc) {
		buf_free(&raw);
		return rc;
	}
	size_t n_b64 = sodium_base64_ENCODED_LEN(raw.len, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = malloc(n_b64);
	if (!b64) {
		sodium_memzero(raw.data, raw.len);
		buf_free(&raw);
		return SFA_ENOMEM;
	}
	sodium_bin2base64(b64, n_b64, (const unsigned char *)raw.data, raw.len,
	                  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(raw.data, raw.len);
	buf_free(&raw);
	*out = b64;
	return 0;
}

/* Turns a failed token answer into a code and sentence. what: "client id and secret",
 * "authorization code", ... */
static int token_failure(const struct http_resp *rs, bool refresh, char *err, size_t n_err)
{
	char code[64], msg[256];
	spotify__upstream_error(rs, code, sizeof code, msg, sizeof msg);
	if (strcmp(code, "invalid_client") == 0 || strcmp(code, "unauthorized_client") == 0 ||
	    rs->status == 401)
		return sfa_err(err, n_err, SFA_EAUTH,
		               "Spotify rejected this server's client id and secret (%s).",
		               msg[0] ? msg : code);
	if (strcmp(code, "invalid_grant") == 0) {
		if (refresh)
			return sfa_err(
				err, n_err, SPOTIFY_EREVOKED,
				"Spotify no longer accepts this account's refresh token (%s); "
				"the account has to be linked again.",
				msg[0] ? msg : code);
		return sfa_err(err, n_err, SFA_EAUTH,
		               "Spotify rejected the authorization code (%s).",
		               msg[0] ? msg : code);
	}
	return sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify's token endpoint answered HTTP %ld%s%s.",
	               rs->status, msg[0] ? ": " : "", msg);
}

/* POSTs a form to {accounts}/api/token and parses the JSON answer. */
int spotify__token_post(const struct spotify_client *c, CURL *h, const char *form, bool with_basic,
                        bool idempotent, bool refresh, json_t **out, char *err, size_t n_err)
{
	char *basic = NULL;
	char url[1200];
	struct http_resp rs = {0};
	int rc;
	snprintf(url, sizeof url, "%s/api/token", c->accounts_url);
	if (with_basic && (rc = basic_credentials(c, &basic)) != 0) {
		rc = sfa_err(err, n_err, rc, "Out of memory.");
		goto out;
	}
	struct spotify__req rq = {
		.post = true,
		.url = url,
		.basic = basic,
		.form = form,
		.protocols = http_protocols_for(url),
		.max_body_bytes = 64 << 10,
		.idempotent = idempotent,
	};
	rc = spotify__request(c, h, &rq, &rs, err, n_err);
	if (rc)
		goto out;
	if (rs.status != 200) {
		rc = token_failure(&rs, refresh, err, n_err);
		goto out;
	}
	rc = spotify__parse_body(&rs, out, err, n_err);
out:
	if (basic) {
		sodium_memzero(basic, strlen(basic));
		free(basic);
	}
	if (rs.body.data)
		sodium_memzero(rs.body.data, rs.body.len);
	http_resp_free(&rs);
	return rc;
}

/* Returns a malloced copy of a valid app token, fetching one when the cache is empty or
 * stale. The mutex is held across the fetch so that concurrent callers share it. */
static int app_token(struct spotify_client *c, CURL *h, char **out, char *err, size_t n_err)
{
	if (!c->client_id || !c->client_secret)
		return sfa_err(
			err, n_err, SFA_EAUTH,
			"Spotify is not configured: this server has no Spotify client id and "
			"secret.");
	int rc = 0;
	json_t *j = NULL;
	pthread_mutex_lock(&c->token_mu);
	if (c->token && time_mono_ms() < c->token_valid_until_ms)
		goto copy;
	free(c->token);
	c->token = NULL;
	rc = spotify__token_post(c, h, "grant_type=client_credentials", true, true, false, &j, err,
	                         n_err);
	if (rc)
		goto out;
	const char *tok = json_str(j, "access_token");
	const char *type = json_str(j, "token_type");
	const json_t *exp = json_object_get(j, "expires_in");
	if (!tok || !*tok || strlen(tok) > TOKEN_MAX_BYTES || !type ||
	    strcasecmp(type, "bearer") != 0 || !json_is_integer(exp) ||
	    json_integer_value(exp) <= 0) {
		rc = sfa_err(err, n_err, SFA_EUPSTREAM,
		             "Spotify's token answer lacks a bearer access_token or expires_in.");
		goto out;
	}
	/* Keep a margin of 60 s (half the lifetime for very short-lived tokens), so a token
	 * never expires between the check and Spotify reading it. */
	json_int_t life_s = json_integer_value(exp);
	if (life_s > 86400)
		life_s = 86400;
	json_int_t margin_s = life_s > 120 ? 60 : life_s / 2;
	c->token = strdup(tok);
	if (!c->token) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		goto out;
	}
	c->token_valid_until_ms = time_mono_ms() + (int64_t)(life_s - margin_s) * 1000;
copy:
	*out = strdup(c->token);
	if (!*out)
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
out:
	pthread_mutex_unlock(&c->token_mu);
	if (j) {
		json_t *t = json_object_get(j, "access_token");
		if (json_is_string(t))
			sodium_memzero((void *)json_string_value(t), json_string_length(t));
		json_decref(j);
	}
	return rc;
}

/* Drops the cached token if it is still `stale` (another thread may have replaced it). */
static void app_token_drop(struct spotify_client *c, const char *stale)
{
	pthread_mutex_lock(&c->token_mu);
	if (c->token && strcmp(c->token, stale) == 0) {
		free(c->token);
		c->token = NULL;
	}
	pthread_mutex_unlock(&c->token_mu);
}

/* ---- App reads ------------------------------------------------------------------------ */

/* GETs url under the app token (one refresh on 401). Returns 0 and a JSON object for 2xx.
 * Otherwise a negative code; *status (when not NULL) receives the HTTP status of a 4xx
 * answer (0 for other failures) so callers can word 404s and fall back on 403s. */
int spotify__api_get(struct spotify_client *c, CURL *h, const char *url, json_t **out, long *status,
                     char *err, size_t n_err)
{
	struct http_resp rs = {0};
	char *tok = NULL;
	int rc = 0;
	if (status)
		*status = 0;
	for (int round = 0; round < 2; round++) {
		rc = app_token(c, h, &tok, err, n_err);
		if (rc)
			goto out;
		assert(tok != NULL); /* app_token sets it on success */
		struct spotify__req rq = {
			.url = url,
			.bearer = tok,
			.protocols = http_protocols_for(url),
			.max_body_bytes = SPOTIFY_RESPONSE_MAX_BYTES,
			.idempotent = true,
		};
		rc = spotify__request(c, h, &rq, &rs, err, n_err);
		if (rc)
			goto out;
		if (rs.status != 401)
			break;
		app_token_drop(c, tok);
		sodium_memzero(tok, strlen(tok));
		free(tok);
		tok = NULL;
	}
	if (rs.status >= 200 && rs.status < 300) {
		rc = spotify__parse_body(&rs, out, err, n_err);
		goto out;
	}
	if (status)
		*status = rs.status;
	char code[64], msg[256];
	spotify__upstream_error(&rs, code, sizeof code, msg, sizeof msg);
	if (rs.status == 401)
		rc = sfa_err(err, n_err, SFA_EAUTH,
		             "Spotify rejected a freshly issued access token (%s).",
		             msg[0] ? msg : "HTTP 401");
	else if (rs.status == 404)
		rc = sfa_err(err, n_err, SFA_ENOTFOUND, "Spotify has no such item (%s).",
		             msg[0] ? msg : "HTTP 404");
	else
		rc = sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify answered HTTP %ld%s%s.", rs.status,
		             msg[0] ? ": " : "", msg);
out:
	if (tok) {
		sodium_memzero(tok, strlen(tok));
		free(tok);
	}
	http_resp_free(&rs);
	return rc;
}
