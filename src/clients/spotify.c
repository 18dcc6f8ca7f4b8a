/* spotify.c - the Spotify Web API client (see spotify.h for the contract): the client,
 * its HTTP layer and the helpers its other files share (spotify_internal.h names them).
 *
 * Layers, bottom up:
 *  1. sp_attempt: one libcurl request (never following redirects, body capped at
 *     SPOTIFY_RESPONSE_MAX_BYTES, connect and total timeouts, NOSIGNAL for threads).
 *  2. spotify__request: the retry policy, clients/http.c's http_perform shared with every
 *     client. Network errors, 408, 429 and 5xx are retried up to max_tries with
 *     exponential backoff and jitter (429 waits Retry-After when given); a Retry-After
 *     above the cap fails at once, so a request never sleeps for a day. Requests marked
 *     not idempotent (the code exchange) are retried only when the failure happened
 *     before anything was sent.
 *  3. spotify__api_get (spotify_token.c): an app read under the cached client-credentials
 *     token; a 401 drops the token (only if it is still the one that failed) and retries
 *     once with a new one.
 *  4. The public functions turn JSON into the plain structs of spotify.h: the catalogue
 *     (spotify_catalog.c), short links (spotify_page.c), the user log-in (spotify_oauth.c).
 *
 * One operation (a fetch, a short-link resolution, a token call) uses one CURL easy
 * handle for all its requests, so pagination reuses the connection. Handles are never
 * shared between threads; the only shared state is the token cache under token_mu.
 *
 * Secrets (client secret, access and refresh tokens) never reach a log line or an error
 * sentence. Base URLs come from configuration; pagination `next` links are followed only
 * when they point into the configured API base, so a token is never sent elsewhere.
 */
#include "clients/spotify_internal.h"

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

/* ---- Small helpers ------------------------------------------------------------------ */

static char *dup_or_null(const char *s) { return (s && *s) ? strdup(s) : NULL; }

/* strdup that tells an allocation failure from a NULL input. */
int spotify__dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : SFA_ENOMEM;
}

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
int spotify__pct_encode(struct buf *b, const char *s)
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
int spotify__form_add(struct buf *b, const char *key, const char *value)
{
	int rc = 0;
	if (b->len)
		rc = buf_puts(b, "&");
	if (!rc)
		rc = buf_puts(b, key);
	if (!rc)
		rc = buf_puts(b, "=");
	if (!rc)
		rc = spotify__pct_encode(b, value);
	return rc;
}

/* The widest image's url in an images array (ties: the first); NULL when none. */
const char *spotify__widest_image(const json_t *images)
{
	const char *best = NULL;
	json_int_t best_w = -1;
	size_t i;
	const json_t *img;
	json_array_foreach(images, i, img)
	{
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

/* One attempt's arguments for sp_attempt. */
struct sp_call {
	const struct spotify_client *c;
	const struct spotify__req *rq;
};

static CURLcode sp_attempt(void *arg, CURL *h, struct http_resp *rs)
{
	const struct sp_call *call = arg;
	const struct spotify_client *c = call->c;
	const struct spotify__req *rq = call->rq;
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
int spotify__request(const struct spotify_client *c, CURL *h, const struct spotify__req *rq,
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
int spotify__parse_body(const struct http_resp *rs, json_t **out, char *err, size_t n_err)
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
void spotify__upstream_error(const struct http_resp *rs, char *code, size_t n_code, char *msg,
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
