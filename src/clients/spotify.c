/* spotify.c - the Spotify Web API client (see spotify.h for the contract).
 *
 * Layers, bottom up:
 *  1. sp_attempt: one libcurl request (never following redirects, body capped at
 *     SPOTIFY_RESPONSE_MAX_BYTES, connect and total timeouts, NOSIGNAL for threads).
 *  2. sp_request: the retry policy, clients/http.c's http_perform shared with every
 *     client. Network errors, 408, 429 and 5xx are retried up to max_tries with
 *     exponential backoff and jitter (429 waits Retry-After when given); a Retry-After
 *     above the cap fails at once, so a request never sleeps for a day. Requests marked
 *     not idempotent (the code exchange) are retried only when the failure happened
 *     before anything was sent.
 *  3. sp_api_get: an app read under the cached client-credentials token; a 401 drops the
 *     token (only if it is still the one that failed) and retries once with a new one.
 *  4. The public functions turn JSON into the plain structs of spotify.h.
 *
 * One operation (a fetch, a short-link resolution, a token call) uses one CURL easy
 * handle for all its requests, so pagination reuses the connection. Handles are never
 * shared between threads; the only shared state is the token cache under token_mu.
 *
 * Secrets (client secret, access and refresh tokens) never reach a log line or an error
 * sentence. Base URLs come from configuration; pagination `next` links are followed only
 * when they point into the configured API base, so a token is never sent elsewhere.
 */
#include "clients/http.h"
#include "clients/spotify.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/json.h"
#include "util/log.h"
#include "util/str.h"
#include "util/timeutil.h"

const char SPOTIFY_LOGIN_SCOPES[] = "user-read-email user-read-private playlist-read-private "
                                    "playlist-read-collaborative user-library-read";

static const char NO_CLIENT_ID[] =
        "Spotify log-in is not configured: this server has no Spotify client id.";

enum {
	RESULT_ARENA_MAX_BYTES = 32 << 20,
	SHORT_LINK_BODY_MAX_BYTES = 256 << 10,
	URL_MAX_BYTES = 8192,
	FORM_MAX_BYTES = 16384,
	MAX_PAGES = SPOTIFY_MAX_TRACKS / 50 * 2, /* generous: pages may hold fewer than 50 */
	TOKEN_MAX_BYTES = 4096,
	MAX_TIMEOUT_TRIES = 2,
};

struct spotify_client {
	char *client_id;     /* NULL when not configured */
	char *client_secret; /* NULL when not configured */
	char *accounts_url;
	char *api_url;
	char *market;
	long connect_timeout_ms;
	long timeout_ms;
	long backoff_base_ms;
	long backoff_max_ms;
	long retry_after_cap_s;
	int max_tries;
	int max_redirects;
	bool allow_http_loopback;

	pthread_mutex_t token_mu; /* guards the two fields below */
	char *token;              /* cached app token, or NULL */
	int64_t token_valid_until_ms;
};

/* ---- Small helpers ------------------------------------------------------------------ */

static char *dup_or_null(const char *s) { return (s && *s) ? strdup(s) : NULL; }

/* strdup that tells an allocation failure from a NULL input. */
static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : SFA_ENOMEM;
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
static int pct_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char ch = *p;
		bool keep = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		            (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
		            ch == '~';
		int rc;
		if (keep) {
			rc = buf_append(b, p, 1);
		} else {
			char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			rc = buf_append(b, esc, 3);
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* Appends "&key=value" (no '&' for the first pair), value percent-encoded. */
static int form_add(struct buf *b, const char *key, const char *value)
{
	int rc = 0;
	if (b->len)
		rc = buf_puts(b, "&");
	if (!rc)
		rc = buf_puts(b, key);
	if (!rc)
		rc = buf_puts(b, "=");
	if (!rc)
		rc = pct_encode(b, value);
	return rc;
}

/* The widest image's url in an images array (ties: the first); NULL when none. */
static const char *widest_image(const json_t *images)
{
	const char *best = NULL;
	json_int_t best_w = -1;
	size_t i;
	const json_t *img;
	json_array_foreach (images, i, img) {
		const char *url = json_str(img, "url");
		if (!url)
			continue;
		const json_t *w = json_object_get(img, "width");
		json_int_t width = json_is_integer(w) ? json_integer_value(w) : 0;
		if (width > best_w) {
			best_w = width;
			best = url;
		}
	}
	return best;
}

static bool is_true(const json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
}

/* ---- Client ------------------------------------------------------------------------- */

static int base_url_dup(const char *url, const char *fallback, char **out, char *err, size_t n_err)
{
	const char *u = (url && *url) ? url : fallback;
	if (!str_starts_with(u, "https://") && !str_starts_with(u, "http://"))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "Spotify base URLs must start with https:// or http://.");
	size_t n = strlen(u);
	while (n > 0 && u[n - 1] == '/')
		n--;
	if (n > 1024)
		return sfa_err(err, n_err, SFA_EINVAL, "A Spotify base URL is too long.");
	*out = strndup(u, n);
	return *out ? 0 : sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
}

int spotify_client_new(const struct spotify_config *cfg, struct spotify_client **out, char *err,
                       size_t n_err)
{
	if (http_global_init() != CURLE_OK)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "libcurl could not be initialised.");
	if (sodium_init() < 0)
		return sfa_err(err, n_err, SFA_EUPSTREAM, "libsodium could not be initialised.");
	const char *market = (cfg->market && *cfg->market) ? cfg->market : "US";
	if (strlen(market) != 2 || market[0] < 'A' || market[0] > 'Z' || market[1] < 'A' ||
	    market[1] > 'Z')
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The Spotify market must be a two-letter country code like US.");
	if (cfg->max_tries < 0 || cfg->max_tries > 10)
		return sfa_err(err, n_err, SFA_EINVAL, "max_tries must be between 1 and 10.");

	struct spotify_client *c = calloc(1, sizeof *c);
	if (!c)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	int rc = base_url_dup(cfg->accounts_url, "https://accounts.spotify.com", &c->accounts_url,
	                      err, n_err);
	if (!rc)
		rc = base_url_dup(cfg->api_url, "https://api.spotify.com", &c->api_url, err, n_err);
	if (rc)
		goto fail;
	c->client_id = dup_or_null(cfg->client_id);
	c->client_secret = dup_or_null(cfg->client_secret);
	c->market = strdup(market);
	if ((cfg->client_id && *cfg->client_id && !c->client_id) ||
	    (cfg->client_secret && *cfg->client_secret && !c->client_secret) || !c->market) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		goto fail;
	}
	c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
	c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
	c->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 500;
	c->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 8000;
	c->retry_after_cap_s = cfg->retry_after_cap_s > 0 ? cfg->retry_after_cap_s : 60;
	c->max_tries = cfg->max_tries > 0 ? cfg->max_tries : 5;
	c->max_redirects = cfg->max_redirects > 0 ? cfg->max_redirects : 5;
	c->allow_http_loopback = cfg->allow_http_loopback;
	if (pthread_mutex_init(&c->token_mu, NULL) != 0) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Could not create a mutex.");
		goto fail;
	}
	*out = c;
	return 0;
fail:
	free(c->market);
	free(c->client_secret);
	free(c->client_id);
	free(c->api_url);
	free(c->accounts_url);
	free(c);
	return rc;
}

void spotify_client_free(struct spotify_client *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->token_mu);
	if (c->token)
		sodium_memzero(c->token, strlen(c->token));
	free(c->token);
	if (c->client_secret)
		sodium_memzero(c->client_secret, strlen(c->client_secret));
	free(c->client_secret);
	free(c->client_id);
	free(c->market);
	free(c->api_url);
	free(c->accounts_url);
	free(c);
}

/* ---- HTTP: one attempt ---------------------------------------------------------------- */

struct sp_req {
	bool post;
	const char *url;
	const char *bearer;    /* Authorization: Bearer <this>, or NULL */
	const char *basic;     /* Authorization: Basic <this> (already base64), or NULL */
	const char *form;      /* POST body (x-www-form-urlencoded), or NULL */
	const char *protocols; /* CURLOPT_PROTOCOLS_STR */
	size_t max_body_bytes;
	bool idempotent;
};

/* One attempt's arguments for sp_attempt. */
struct sp_call {
	const struct spotify_client *c;
	const struct sp_req *rq;
};

static CURLcode sp_attempt(void *arg, CURL *h, struct http_resp *rs)
{
	const struct sp_call *call = arg;
	const struct spotify_client *c = call->c;
	const struct sp_req *rq = call->rq;
	char auth[TOKEN_MAX_BYTES + 32];
	struct curl_slist *hdrs = NULL, *tmp;
	CURLcode cc = CURLE_OUT_OF_MEMORY;

	curl_easy_reset(h);
	tmp = curl_slist_append(hdrs, "Accept: application/json");
	if (!tmp)
		goto out;
	hdrs = tmp;
	if (rq->bearer || rq->basic) {
		int w = snprintf(auth, sizeof auth, "Authorization: %s %s",
		                 rq->bearer ? "Bearer" : "Basic",
		                 rq->bearer ? rq->bearer : rq->basic);
		if (w < 0 || (size_t)w >= sizeof auth) {
			cc = CURLE_BAD_FUNCTION_ARGUMENT;
			goto out;
		}
		tmp = curl_slist_append(hdrs, auth);
		sodium_memzero(auth, sizeof auth);
		if (!tmp)
			goto out;
		hdrs = tmp;
	}
	curl_easy_setopt(h, CURLOPT_URL, rq->url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, rq->protocols);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sound-forge-alchemy/0.1");
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, http_body_sink);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
	if (rq->post) {
		const char *form = rq->form ? rq->form : "";
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(form));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
	}
	cc = curl_easy_perform(h);
out:
	http_headers_free(hdrs); /* it holds a copy of the Authorization header */
	return cc;
}

/* ---- HTTP: retry policy --------------------------------------------------------------- */

/* Performs rq under the shared retry policy (http_perform): 0 with an answer whose status
 * is neither 408, 429 nor 5xx (the caller reads 2xx/3xx/4xx), or a negative code with a
 * sentence. The caller frees rs with http_resp_free in every case. */
static int sp_request(const struct spotify_client *c, CURL *h, const struct sp_req *rq,
                      struct http_resp *rs, char *err, size_t n_err)
{
	struct http_policy p = {
	        .service = "Spotify",
	        .caller = "this app",
	        .max_tries = c->max_tries,
	        .max_timeouts = MAX_TIMEOUT_TRIES,
	        .backoff_base_ms = c->backoff_base_ms,
	        .backoff_max_ms = c->backoff_max_ms,
	        .retry_after_cap_s = c->retry_after_cap_s,
	        .timeout_ms = c->timeout_ms,
	        .idempotent = rq->idempotent,
	};
	struct sp_call call = {c, rq};
	return http_perform(&p, h, sp_attempt, &call, rq->max_body_bytes, rs, err, n_err);
}

/* Parses a response body as a JSON object. */
static int parse_body(const struct http_resp *rs, json_t **out, char *err, size_t n_err)
{
	json_error_t je;
	json_t *j = json_loadb(rs->body.data ? rs->body.data : "", rs->body.len, 0, &je);
	if (!j)
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "Spotify sent an answer that is not valid JSON (%s at byte %d).",
		               je.text, je.position);
	if (!json_is_object(j)) {
		json_decref(j);
		return sfa_err(err, n_err, SFA_EUPSTREAM,
		               "Spotify sent an answer that is not a JSON "
		               "object.");
	}
	*out = j;
	return 0;
}

/* Copies Spotify's own error message ({"error": {"message"}} or the OAuth shape
 * {"error": "...", "error_description": "..."}) into msg; "" when there is none. The
 * OAuth error code goes into code (may be ""). */
static void upstream_error(const struct http_resp *rs, char *code, size_t n_code, char *msg,
                           size_t n_msg)
{
	code[0] = msg[0] = '\0';
	json_t *j = json_loadb(rs->body.data ? rs->body.data : "", rs->body.len, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return;
	}
	const json_t *e = json_object_get(j, "error");
	if (json_is_object(e)) {
		const char *m = json_str(e, "message");
		if (m)
			str_copy(msg, n_msg, m);
	} else if (json_is_string(e)) {
		str_copy(code, n_code, json_string_value(e));
		const char *d = json_str(j, "error_description");
		str_copy(msg, n_msg, d ? d : json_string_value(e));
	}
	json_decref(j);
	/* Keep the sentence printable: Spotify's text is outside data. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/* ---- Tokens --------------------------------------------------------------------------- */

/* base64(form-encode(id) ":" form-encode(secret)) per RFC 6749 2.3.1; malloced. */
static int basic_credentials(const struct spotify_client *c, char **out)
{
	struct buf raw;
	buf_init(&raw, 2048);
	int rc = pct_encode(&raw, c->client_id);
	if (!rc)
		rc = buf_puts(&raw, ":");
	if (!rc)
		rc = pct_encode(&raw, c->client_secret);
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
	upstream_error(rs, code, sizeof code, msg, sizeof msg);
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
static int token_post(const struct spotify_client *c, CURL *h, const char *form, bool with_basic,
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
	struct sp_req rq = {
	        .post = true,
	        .url = url,
	        .basic = basic,
	        .form = form,
	        .protocols = http_protocols_for(url),
	        .max_body_bytes = 64 << 10,
	        .idempotent = idempotent,
	};
	rc = sp_request(c, h, &rq, &rs, err, n_err);
	if (rc)
		goto out;
	if (rs.status != 200) {
		rc = token_failure(&rs, refresh, err, n_err);
		goto out;
	}
	rc = parse_body(&rs, out, err, n_err);
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
	rc = token_post(c, h, "grant_type=client_credentials", true, true, false, &j, err, n_err);
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
static int api_get(struct spotify_client *c, CURL *h, const char *url, json_t **out, long *status,
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
		struct sp_req rq = {
		        .url = url,
		        .bearer = tok,
		        .protocols = http_protocols_for(url),
		        .max_body_bytes = SPOTIFY_RESPONSE_MAX_BYTES,
		        .idempotent = true,
		};
		rc = sp_request(c, h, &rq, &rs, err, n_err);
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
		rc = parse_body(&rs, out, err, n_err);
		goto out;
	}
	if (status)
		*status = rs.status;
	char code[64], msg[256];
	upstream_error(&rs, code, sizeof code, msg, sizeof msg);
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

/* ---- Results -------------------------------------------------------------------------- */

void spotify_result_free(struct spotify_result *r)
{
	if (!r)
		return;
	arena_free(&r->arena);
	free(r->tracks);
	free(r);
}

static struct spotify_result *result_new(enum spotify_kind kind)
{
	struct spotify_result *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->kind = kind;
	arena_init(&r->arena, RESULT_ARENA_MAX_BYTES);
	return r;
}

/* Copies s into the result's arena; NULL stays NULL. Sets *rc on failure. */
static const char *rdup(struct spotify_result *r, const char *s, int *rc)
{
	if (!s || *rc)
		return NULL;
	char *p = arena_strdup(&r->arena, s);
	if (!p)
		*rc = SFA_ETOOBIG;
	return p;
}

/* Joins artists[].name with ", " into the arena ("" when there are none). */
static const char *join_artists(struct spotify_result *r, const json_t *artists, int *rc)
{
	struct buf b;
	buf_init(&b, 64 << 10);
	size_t i;
	const json_t *a;
	json_array_foreach (artists, i, a) {
		const char *name = json_str(a, "name");
		if (!name || !*name)
			continue;
		if (!*rc && b.len)
			*rc = buf_puts(&b, ", ");
		if (!*rc)
			*rc = buf_puts(&b, name);
	}
	const char *out = rdup(r, b.data ? b.data : "", rc);
	buf_free(&b);
	return out;
}

struct album_ctx {
	const char *name;
	const char *art_url;
};

static int track_int(const json_t *t, const char *key)
{
	const json_t *v = json_object_get(t, key);
	if (!json_is_integer(v))
		return 0;
	json_int_t n = json_integer_value(v);
	return n < 0 || n > 1000000 ? 0 : (int)n;
}

/* Appends one track object. parent supplies the album for simplified album tracks. A
 * track without a usable id is counted as skipped. */
static int result_add_track(struct spotify_result *r, const json_t *t,
                            const struct album_ctx *parent, char *err, size_t n_err)
{
	const json_t *linked = json_object_get(t, "linked_from");
	const char *id = json_str(linked, "id");
	if (!id || !spotify_id_valid(id, strlen(id)))
		id = json_str(t, "id");
	if (!id || !spotify_id_valid(id, strlen(id))) {
		r->n_skipped++;
		return 0;
	}
	if (r->n_tracks >= SPOTIFY_MAX_TRACKS)
		return sfa_err(err, n_err, SFA_ETOOBIG, "This has more than %d tracks.",
		               SPOTIFY_MAX_TRACKS);
	if (r->n_tracks == r->n_alloc) {
		size_t n = r->n_alloc ? r->n_alloc * 2 : 16;
		struct spotify_track *p = realloc(r->tracks, n * sizeof *p);
		if (!p)
			return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		r->tracks = p;
		r->n_alloc = n;
	}
	struct spotify_track *tr = &r->tracks[r->n_tracks];
	memset(tr, 0, sizeof *tr);
	memcpy(tr->spotify_id, id, SPOTIFY_ID_LEN + 1);
	int rc = 0;
	const char *title = json_str(t, "name");
	tr->title = rdup(r, title ? title : "", &rc);
	tr->artist = join_artists(r, json_object_get(t, "artists"), &rc);
	const json_t *album = json_object_get(t, "album");
	if (json_is_object(album)) {
		const char *an = json_str(album, "name");
		tr->album = rdup(r, an ? an : "", &rc);
		tr->album_art_url = rdup(r, widest_image(json_object_get(album, "images")), &rc);
	} else if (parent) {
		tr->album = parent->name; /* already in the arena */
		tr->album_art_url = parent->art_url;
	} else {
		tr->album = rdup(r, "", &rc);
	}
	tr->isrc = rdup(r, json_str(json_object_get(t, "external_ids"), "isrc"), &rc);
	const json_t *ms = json_object_get(t, "duration_ms");
	json_int_t dms = json_is_integer(ms) ? json_integer_value(ms) : 0;
	if (dms < 0 || dms > (json_int_t)24 * 3600 * 1000)
		dms = 0;
	tr->duration_s = (int)((dms + 500) / 1000);
	tr->disc_number = track_int(t, "disc_number");
	tr->track_number = track_int(t, "track_number");
	char url[64];
	snprintf(url, sizeof url, "https://open.spotify.com/track/%s", tr->spotify_id);
	tr->spotify_url = rdup(r, url, &rc);
	if (rc)
		return sfa_err(err, n_err, rc, "Spotify's answer is too large to keep.");
	r->n_tracks++;
	return 0;
}

/* A `next` link is followed only inside the configured API (a token goes with it). */
static bool next_allowed(const struct spotify_client *c, const char *next)
{
	size_t n = strlen(c->api_url);
	return strncmp(next, c->api_url, n) == 0 && next[n] == '/' && strlen(next) < URL_MAX_BYTES;
}

/* Adds the tracks of one paging object. entry_tracks: playlist entries hold the track
 * under "item" or "track" and may be null, local files or episodes (skipped and counted);
 * album pages hold simplified tracks directly. */
static int add_page_items(struct spotify_result *r, const json_t *page, bool entry_tracks,
                          const struct album_ctx *parent, char *err, size_t n_err)
{
	if (!json_is_object(page))
		return sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify sent a malformed track list.");
	const json_t *items = json_object_get(page, "items");
	size_t i;
	const json_t *e;
	json_array_foreach (items, i, e) {
		const json_t *t = e;
		if (entry_tracks) {
			t = json_object_get(e, "item");
			if (!t || json_is_null(t))
				t = json_object_get(e, "track");
			if (!json_is_object(t) || is_true(e, "is_local") ||
			    is_true(t, "is_local")) {
				r->n_skipped++;
				continue;
			}
			const char *type = json_str(t, "type");
			if (type && strcmp(type, "track") != 0) {
				r->n_skipped++; /* episodes, and whatever Spotify adds next */
				continue;
			}
		}
		if (!json_is_object(t)) {
			r->n_skipped++;
			continue;
		}
		int rc = result_add_track(r, t, parent, err, n_err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Walks a paging object and every page after it (see add_page_items). */
static int walk_pages(struct spotify_client *c, CURL *h, struct spotify_result *r, json_t *page,
                      bool entry_tracks, const struct album_ctx *parent, char *err, size_t n_err)
{
	json_t *owned = NULL; /* pages fetched here (the first one belongs to the caller) */
	int rc = 0;
	for (int n_pages = 0;; n_pages++) {
		rc = add_page_items(r, page, entry_tracks, parent, err, n_err);
		if (rc)
			goto out;
		const char *next = json_str(page, "next");
		if (!next)
			break;
		if (!next_allowed(c, next)) {
			rc = sfa_err(err, n_err, SFA_EUPSTREAM,
			             "Spotify's next-page link points outside its API.");
			goto out;
		}
		if (n_pages + 1 >= MAX_PAGES) {
			rc = sfa_err(err, n_err, SFA_ETOOBIG,
			             "This has more than %d pages of tracks.", MAX_PAGES);
			goto out;
		}
		/* next is inside `page`, which the fetch below replaces: copy it first. */
		char *url = strdup(next);
		if (!url) {
			rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
			goto out;
		}
		json_t *np = NULL;
		rc = api_get(c, h, url, &np, NULL, err, n_err);
		free(url);
		if (rc)
			goto out;
		json_decref(owned);
		owned = page = np;
	}
out:
	json_decref(owned);
	return rc;
}

int spotify__result_from_json(enum spotify_kind kind, const char *body, size_t n,
                              struct spotify_result **out, char *err, size_t n_err)
{
	if (n > SPOTIFY_RESPONSE_MAX_BYTES)
		return sfa_err(err, n_err, SFA_ETOOBIG, "The answer is too large.");
	json_error_t je;
	json_t *j = json_loadb(body, n, 0, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		return sfa_err(err, n_err, SFA_EUPSTREAM, "Not a JSON object.");
	}
	struct spotify_result *r = result_new(kind);
	int rc = 0;
	if (!r) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		goto out;
	}
	if (kind == SPOTIFY_TRACK) {
		rc = result_add_track(r, j, NULL, err, n_err);
	} else {
		struct album_ctx parent = {rdup(r, "An album", &rc), NULL};
		if (!rc)
			rc = add_page_items(r, j, kind == SPOTIFY_PLAYLIST,
			                    kind == SPOTIFY_ALBUM ? &parent : NULL, err, n_err);
	}
	if (!rc) {
		*out = r;
		r = NULL;
	}
out:
	spotify_result_free(r);
	json_decref(j);
	return rc;
}

static int fetch_track(struct spotify_client *c, CURL *h, const char *id, struct spotify_result *r,
                       char *err, size_t n_err)
{
	char url[1200];
	snprintf(url, sizeof url, "%s/v1/tracks/%s?market=%s", c->api_url, id, c->market);
	json_t *j = NULL;
	long st;
	int rc = api_get(c, h, url, &j, &st, err, n_err);
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "Spotify has no track with id %s.", id);
	if (rc)
		return rc;
	rc = result_add_track(r, j, NULL, err, n_err);
	json_decref(j);
	if (!rc && r->n_tracks != 1)
		rc = sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify's track answer has no usable id.");
	return rc;
}

static int fetch_album(struct spotify_client *c, CURL *h, const char *id, struct spotify_result *r,
                       char *err, size_t n_err)
{
	char url[1200];
	snprintf(url, sizeof url, "%s/v1/albums/%s?market=%s", c->api_url, id, c->market);
	json_t *j = NULL;
	long st;
	int rc = api_get(c, h, url, &j, &st, err, n_err);
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "Spotify has no album with id %s.", id);
	if (rc)
		return rc;
	memcpy(r->info.spotify_id, id, SPOTIFY_ID_LEN + 1);
	const char *name = json_str(j, "name");
	r->info.name = rdup(r, name ? name : "", &rc);
	r->info.artist = join_artists(r, json_object_get(j, "artists"), &rc);
	r->info.album_art_url = rdup(r, widest_image(json_object_get(j, "images")), &rc);
	json_t *tracks = json_object_get(j, "tracks");
	const json_t *total = json_object_get(tracks, "total");
	r->info.total = json_is_integer(total) ? (int)json_integer_value(total) : 0;
	if (rc) {
		rc = sfa_err(err, n_err, rc, "Spotify's answer is too large to keep.");
		goto out;
	}
	struct album_ctx parent = {r->info.name, r->info.album_art_url};
	rc = walk_pages(c, h, r, tracks, false, &parent, err, n_err);
out:
	json_decref(j);
	return rc;
}

static bool editorial_playlist(const char *id)
{
	return str_starts_with(id, "37i9dQZF1") || str_starts_with(id, "37i9dQZEVX");
}

static int fetch_playlist(struct spotify_client *c, CURL *h, const char *id,
                          struct spotify_result *r, char *err, size_t n_err)
{
	char url[1200];
	snprintf(url, sizeof url, "%s/v1/playlists/%s?market=%s", c->api_url, id, c->market);
	json_t *j = NULL, *page = NULL;
	long st;
	int rc = api_get(c, h, url, &j, &st, err, n_err);
	if (rc == SFA_ENOTFOUND && editorial_playlist(id))
		return sfa_err(
		        err, n_err, rc,
		        "This playlist is not available through the Spotify API (Spotify's own "
		        "editorial and algorithmic playlists cannot be read by apps).");
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc,
		               "Spotify has no playlist with id %s (it may be private or deleted).",
		               id);
	if (rc)
		return rc;
	memcpy(r->info.spotify_id, id, SPOTIFY_ID_LEN + 1);
	const char *name = json_str(j, "name");
	r->info.name = rdup(r, name ? name : "", &rc);
	const json_t *owner = json_object_get(j, "owner");
	const char *oname = json_str(owner, "display_name");
	r->info.owner = rdup(r, oname ? oname : json_str(owner, "id"), &rc);
	r->info.album_art_url = rdup(r, widest_image(json_object_get(j, "images")), &rc);
	if (rc) {
		rc = sfa_err(err, n_err, rc, "Spotify's answer is too large to keep.");
		goto out;
	}
	/* Development-mode apps must use /items since February 2026 (/tracks answers 403);
	 * older deployments may lack /items. Try the new one, fall back to the old. */
	snprintf(url, sizeof url, "%s/v1/playlists/%s/items?limit=50&offset=0&market=%s",
	         c->api_url, id, c->market);
	rc = api_get(c, h, url, &page, &st, err, n_err);
	if (rc && (st == 403 || st == 404)) {
		log_info("spotify: playlist /items answered %ld, trying /tracks", st);
		snprintf(url, sizeof url, "%s/v1/playlists/%s/tracks?limit=50&offset=0&market=%s",
		         c->api_url, id, c->market);
		rc = api_get(c, h, url, &page, &st, err, n_err);
	}
	if (rc)
		goto out;
	const json_t *total = json_object_get(page, "total");
	r->info.total = json_is_integer(total) ? (int)json_integer_value(total) : 0;
	rc = walk_pages(c, h, r, page, true, NULL, err, n_err);
out:
	json_decref(page);
	json_decref(j);
	return rc;
}

int spotify_fetch(struct spotify_client *c, const struct spotify_ref *ref,
                  struct spotify_result **out, char *err, size_t n_err)
{
	if (!spotify_id_valid(ref->id, strlen(ref->id)))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The Spotify id is not 22 letters and digits.");
	if (ref->kind != SPOTIFY_TRACK && ref->kind != SPOTIFY_ALBUM &&
	    ref->kind != SPOTIFY_PLAYLIST)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "Only tracks, albums and playlists can be "
		               "fetched.");
	struct spotify_result *r = result_new(ref->kind);
	CURL *h = curl_easy_init();
	int rc;
	if (!r || !h) {
		rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
		goto out;
	}
	if (ref->kind == SPOTIFY_TRACK)
		rc = fetch_track(c, h, ref->id, r, err, n_err);
	else if (ref->kind == SPOTIFY_ALBUM)
		rc = fetch_album(c, h, ref->id, r, err, n_err);
	else
		rc = fetch_playlist(c, h, ref->id, r, err, n_err);
	if (!rc) {
		*out = r;
		r = NULL;
	}
out:
	if (h)
		curl_easy_cleanup(h);
	spotify_result_free(r);
	return rc;
}

/* ---- Short links ---------------------------------------------------------------------- */

/* True when url's host is open.spotify.com (whatever its path). */
static bool host_is_open_spotify(const char *url)
{
	const char *p = url;
	if (str_ieq_n("https://", p, 8))
		p += 8;
	else if (str_ieq_n("http://", p, 7))
		p += 7;
	return str_ieq_n("open.spotify.com", p, 16) &&
	       (p[16] == '\0' || p[16] == '/' || p[16] == '?' || p[16] == '#');
}

/* Looks for the first open.spotify.com/{kind}/{id} link in a page. */
static bool find_link_in_page(const char *body, size_t n, struct spotify_ref *out)
{
	static const char needle[] = "open.spotify.com/";
	const size_t n_needle = sizeof needle - 1;
	const char *p = body, *end = body + n;
	for (int tries = 0; tries < 64; tries++) {
		const char *hit = memmem(p, (size_t)(end - p), needle, n_needle);
		if (!hit)
			return false;
		size_t len = 0;
		while (hit + len < end && len < 512) {
			char ch = hit[len];
			if (ch == '"' || ch == '\'' || ch == '<' || ch == '>' || ch == '\\' ||
			    ch == '&' || (unsigned char)ch <= 0x20)
				break;
			len++;
		}
		char cand[600];
		memcpy(cand, hit, len);
		cand[len] = '\0';
		if (spotify_url_parse(cand, out, NULL, 0) == 0)
			return true;
		p = hit + n_needle;
	}
	return false;
}

int spotify_resolve_url(struct spotify_client *c, const char *input, struct spotify_ref *out,
                        char *err, size_t n_err)
{
	char url[SPOTIFY_URL_MAX_BYTES + 16];
	if (!spotify_url_short_link(input, c->allow_http_loopback, url, sizeof url))
		return spotify_url_parse(input, out, err, n_err);

	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	struct http_resp rs = {0};
	int rc = 0;
	for (int hop = 0; hop < c->max_redirects; hop++) {
		struct sp_req rq = {
		        .url = url,
		        .protocols = c->allow_http_loopback ? "http,https" : "https",
		        .max_body_bytes = SHORT_LINK_BODY_MAX_BYTES,
		        .idempotent = true,
		};
		rc = sp_request(c, h, &rq, &rs, err, n_err);
		if (rc)
			goto out;
		if (rs.status >= 300 && rs.status < 400) {
			if (!rs.location) {
				rc = sfa_err(err, n_err, SFA_EINVAL,
				             "The short link redirects without saying where to.");
				goto out;
			}
			/* An open.spotify.com link or a spotify: URI ends the walk; it is never
			 * fetched. */
			if (host_is_open_spotify(rs.location) ||
			    str_ieq_n("spotify:", rs.location, 8)) {
				rc = spotify_url_parse(rs.location, out, err, n_err);
				goto out;
			}
			if (!spotify_url_short_link(rs.location, c->allow_http_loopback, url,
			                            sizeof url)) {
				rc = sfa_err(
				        err, n_err, SFA_EINVAL,
				        "The short link leads away from Spotify (or off https).");
				goto out;
			}
			continue;
		}
		if (rs.status == 200 && rs.body.data &&
		    find_link_in_page(rs.body.data, rs.body.len, out))
			goto out;
		if (rs.status == 200 || rs.status == 404 || rs.status == 410)
			rc = sfa_err(err, n_err, SFA_EINVAL,
			             "This short link does not lead to a Spotify track, album or "
			             "playlist.");
		else
			rc = sfa_err(err, n_err, SFA_EUPSTREAM,
			             "spotify.link answered HTTP %ld for this short link.",
			             rs.status);
		goto out;
	}
	rc = sfa_err(err, n_err, SFA_EINVAL, "The short link redirects more than %d times.",
	             c->max_redirects);
out:
	http_resp_free(&rs);
	curl_easy_cleanup(h);
	return rc;
}

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
		return sfa_err(err, n_err, SFA_EAUTH, "%s", NO_CLIENT_ID);
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
	rc = form_add(&q, "client_id", c->client_id);
	if (!rc)
		rc = form_add(&q, "response_type", "code");
	if (!rc)
		rc = form_add(&q, "redirect_uri", redirect_uri);
	if (!rc)
		rc = form_add(&q, "state", state);
	if (!rc)
		rc = form_add(&q, "scope", scope ? scope : SPOTIFY_LOGIN_SCOPES);
	if (!rc)
		rc = form_add(&q, "code_challenge_method", "S256");
	if (!rc)
		rc = form_add(&q, "code_challenge", challenge);
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
	int rc = dup_opt(access, &t.access_token);
	if (!rc)
		rc = dup_opt(refresh, &t.refresh_token);
	if (!rc)
		rc = dup_opt(json_str(j, "scope"), &t.scope);
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
	int rc = form_add(form, "client_id", c->client_id);
	if (rc)
		return sfa_err(err, n_err, rc, "The token request would be too long.");
	CURL *h = curl_easy_init();
	if (!h)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	json_t *j = NULL;
	rc = token_post(c, h, form->data, c->client_secret != NULL, idempotent, refresh, &j, err,
	                n_err);
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
		return sfa_err(err, n_err, SFA_EAUTH, "%s", NO_CLIENT_ID);
	if (!code || !*code || !redirect_uri || !*redirect_uri || !verifier)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "The code exchange needs a code, a redirect URI and a verifier.");
	struct buf form;
	buf_init(&form, FORM_MAX_BYTES);
	int rc = form_add(&form, "grant_type", "authorization_code");
	if (!rc)
		rc = form_add(&form, "code", code);
	if (!rc)
		rc = form_add(&form, "redirect_uri", redirect_uri);
	if (!rc)
		rc = form_add(&form, "code_verifier", verifier);
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
		return sfa_err(err, n_err, SFA_EAUTH, "%s", NO_CLIENT_ID);
	if (!refresh_token || !*refresh_token)
		return sfa_err(err, n_err, SFA_EINVAL, "There is no refresh token to use.");
	struct buf form;
	buf_init(&form, FORM_MAX_BYTES);
	int rc = form_add(&form, "grant_type", "refresh_token");
	if (!rc)
		rc = form_add(&form, "refresh_token", refresh_token);
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
	struct sp_req rq = {
	        .url = url,
	        .bearer = access_token,
	        .protocols = http_protocols_for(url),
	        .max_body_bytes = 256 << 10,
	        .idempotent = true,
	};
	int rc = sp_request(c, h, &rq, &rs, err, n_err);
	if (rc)
		goto out;
	if (rs.status != 200) {
		char code[64], msg[256];
		upstream_error(&rs, code, sizeof code, msg, sizeof msg);
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
	rc = parse_body(&rs, &j, err, n_err);
	if (rc)
		goto out;
	const char *id = json_str(j, "id");
	if (!id || !*id) {
		rc = sfa_err(err, n_err, SFA_EUPSTREAM, "Spotify's /v1/me answer has no user id.");
		goto out;
	}
	struct spotify_me me = {0};
	rc = dup_opt(id, &me.id);
	if (!rc)
		rc = dup_opt(json_str(j, "display_name"), &me.display_name);
	if (!rc)
		rc = dup_opt(json_str(j, "email"), &me.email);
	if (!rc)
		rc = dup_opt(json_str(j, "country"), &me.country);
	if (!rc)
		rc = dup_opt(json_str(j, "product"), &me.product);
	if (!rc)
		rc = dup_opt(widest_image(json_object_get(j, "images")), &me.image_url);
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
