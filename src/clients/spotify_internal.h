/* spotify_internal.h - what the files of the Spotify client share, not for use outside
 * src/clients:
 *   spotify.c          the client, its HTTP layer (one attempt; the retry policy is
 *                      clients/http.c's) and the helpers the others use
 *   spotify_token.c    the app token and reads under it
 *   spotify_catalog.c  tracks, albums, playlists with paging
 *   spotify_page.c     short links and share pages
 *   spotify_oauth.c    the user log-in with PKCE, refresh, the profile
 * Threading as spotify.h says: a client is shared, its token cache under token_mu; a CURL
 * handle belongs to one operation on one thread.
 */
#ifndef SFA_CLIENTS_SPOTIFY_INTERNAL_H
#define SFA_CLIENTS_SPOTIFY_INTERNAL_H

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clients/http.h"
#include "clients/spotify.h"
#include "util/str.h"

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

/* One request for spotify__request. */
struct spotify__req {
	bool post;
	const char *url;
	const char *bearer;    /* Authorization: Bearer <this>, or NULL */
	const char *basic;     /* Authorization: Basic <this> (already base64), or NULL */
	const char *form;      /* POST body (x-www-form-urlencoded), or NULL */
	const char *protocols; /* CURLOPT_PROTOCOLS_STR */
	size_t max_body_bytes;
	bool idempotent;
};

/* strdup that tells an allocation failure from a NULL input: 0 with *out NULL or a
 * malloced copy (caller frees), or SFA_ENOMEM. */
int spotify__dup_opt(const char *s, char **out);
/* Appends s percent-encoded (RFC 3986 unreserved characters kept) to b. */
int spotify__pct_encode(struct buf *b, const char *s);
/* Appends "&key=value" (no '&' for the first pair) to b, value percent-encoded. */
int spotify__form_add(struct buf *b, const char *key, const char *value);
/* The widest image's url in an images array (ties: the first), borrowed from images;
 * NULL when none. */
const char *spotify__widest_image(const json_t *images);
/* Performs rq under the shared retry policy (http_perform): 0 with an answer whose status
 * is neither 408, 429 nor 5xx, or a negative code with a sentence. The caller frees rs
 * with http_resp_free in every case. */
int spotify__request(const struct spotify_client *c, CURL *h, const struct spotify__req *rq,
                     struct http_resp *rs, char *err, size_t n_err);
/* Parses an answer's body as a JSON object into *out (caller decrefs). */
int spotify__parse_body(const struct http_resp *rs, json_t **out, char *err, size_t n_err);
/* Spotify's own error message and OAuth error code of an answer, made printable; "" when
 * there is none. */
void spotify__upstream_error(const struct http_resp *rs, char *code, size_t n_code, char *msg,
                             size_t n_msg);
/* POSTs a form to {accounts}/api/token and parses the JSON answer into *out (caller
 * decrefs); with_basic sends the app's credentials, refresh words the failures. */
int spotify__token_post(const struct spotify_client *c, CURL *h, const char *form, bool with_basic,
                        bool idempotent, bool refresh, json_t **out, char *err, size_t n_err);
/* GETs url under the app token (one refresh on 401): 0 and a JSON object (caller decrefs)
 * for 2xx; otherwise a negative code, and *status (when not NULL) the HTTP status of a 4xx
 * answer (0 for other failures). */
int spotify__api_get(struct spotify_client *c, CURL *h, const char *url, json_t **out, long *status,
                     char *err, size_t n_err);

#endif
