/* spotify.h - a Spotify Web API client: catalogue reads and the user log-in flow.
 *
 * Two ways of talking to Spotify live here:
 *  - App reads (tracks, albums, playlists) under a client-credentials token that the
 *    client fetches itself, caches until `expires_in - 60 s` and refreshes once when
 *    Spotify answers 401.
 *  - The authorization-code + PKCE log-in: build the authorize URL, exchange the code,
 *    refresh a user's token, read /v1/me. The caller (the web layer) keeps the user tokens.
 *
 * Every request has a connect and a total timeout, and is retried with exponential
 * backoff and jitter on network errors, 408, 429 and 5xx (at most max_tries attempts);
 * a Retry-After longer than retry_after_cap_s fails at once instead of waiting. Other 4xx
 * are never retried. A timed-out request is tried at most twice, since an upstream that
 * stalls for the whole timeout rarely recovers within the backoff.
 *
 * Errors (negative SFA_E* with a sentence in err):
 *   SFA_EINVAL     the link or id is not a Spotify link (checked before any request)
 *   SFA_EAUTH      no client id/secret configured, or Spotify rejected them
 *                  (invalid_client), or rejected the authorization code / user token
 *   SFA_ENOTFOUND  Spotify answered 404 (editorial playlists say so in the sentence)
 *   SPOTIFY_EREVOKED  (= SFA_ENOTFOUND) from spotify_refresh_user_token only: the refresh
 *                  token is revoked or expired (invalid_grant): unlink the account
 *   SFA_ETIMEOUT   Spotify did not answer within the timeout
 *   SFA_EUPSTREAM  anything else Spotify did wrong after the retries: 5xx, other 4xx,
 *                  rate-limited beyond the cap ("asked us to wait N s"), malformed JSON,
 *                  a connection closed mid-answer
 *   SFA_ETOOBIG    an answer above the size cap, or more tracks than SPOTIFY_MAX_TRACKS
 *   SFA_ENOMEM     allocation failed
 *
 * Threading: a struct spotify_client may be shared by any number of threads; the token
 * cache is guarded by a mutex (held while a token is fetched, so concurrent callers wait
 * for one fetch instead of each fetching). Results belong to the calling thread.
 * curl_global_init is done once by spotify_client_new (pthread_once).
 */
#ifndef SFA_CLIENTS_SPOTIFY_H
#define SFA_CLIENTS_SPOTIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "clients/spotify_url.h"
#include "util/arena.h"
#include "util/err.h"

enum {
	SPOTIFY_EREVOKED = SFA_ENOTFOUND,
	SPOTIFY_MAX_TRACKS = 10000,           /* Spotify's own playlist limit */
	SPOTIFY_RESPONSE_MAX_BYTES = 8 << 20, /* per HTTP answer */
	SPOTIFY_PKCE_VERIFIER_LEN = 64,       /* what spotify_pkce_verifier makes */
	SPOTIFY_PKCE_CHALLENGE_LEN = 43,      /* base64url(sha256), no padding */
};

/* Configuration. Strings are copied by spotify_client_new; NULL or 0 picks the default. */
struct spotify_config {
	const char *client_id;     /* required for every call except the URL parser */
	const char *client_secret; /* required for app reads; optional for PKCE log-in */
	const char *accounts_url;  /* default https://accounts.spotify.com (no trailing /) */
	const char *api_url;       /* default https://api.spotify.com (the client adds /v1) */
	const char *market;        /* ISO 3166-1 alpha-2 market for reads; default "US" */
	long connect_timeout_ms;   /* default 10000 */
	long timeout_ms;           /* whole-request limit; default 30000 */
	int max_tries;             /* attempts per request incl. the first; default 5 */
	long backoff_base_ms;      /* first retry delay before jitter; default 500 */
	long backoff_max_ms;       /* a single delay never exceeds this; default 8000 */
	long retry_after_cap_s;    /* longest Retry-After honoured; default 60 */
	int max_redirects;         /* short-link hops; default 5 */
	/* Tests only: lets short links and their hops use http://127.0.0.1:PORT. Never
	 * set in production; spotify.link itself is only ever followed over https. */
	bool allow_http_loopback;
};

struct spotify_client;

/* Creates a client. Returns 0 and *out (free with spotify_client_free), SFA_EINVAL for a
 * malformed config (bad market, non-http(s) base URL), SFA_ENOMEM. A missing client id
 * or secret is not an error here: calls that need them fail with SFA_EAUTH. */
int spotify_client_new(const struct spotify_config *cfg, struct spotify_client **out, char *err,
                       size_t n_err);
void spotify_client_free(struct spotify_client *c);

/* ---- Catalogue reads ---------------------------------------------------------------- */

struct spotify_track {
	char spotify_id[SPOTIFY_ID_LEN + 1];
	const char *title;         /* never NULL */
	const char *artist;        /* the artists' names joined by ", "; never NULL */
	const char *album;         /* never NULL ("" when Spotify gives none) */
	const char *album_art_url; /* the widest album image; NULL when there is none */
	const char *spotify_url;   /* https://open.spotify.com/track/<spotify_id> */
	const char *isrc;          /* NULL when absent (album tracks carry none) */
	int duration_s;            /* duration_ms / 1000, rounded half up */
	int disc_number;           /* 0 when unknown */
	int track_number;          /* 0 when unknown */
};

/* The album or playlist around the tracks (unused, zeroed, for a single track). */
struct spotify_collection {
	char spotify_id[SPOTIFY_ID_LEN + 1];
	const char *name;          /* never NULL */
	const char *artist;        /* album: its artists joined by ", "; playlist: NULL */
	const char *owner;         /* playlist: the owner's display name (or id); album: NULL */
	const char *album_art_url; /* widest image; NULL when none */
	int total;                 /* the entry count Spotify reports, skipped ones included */
};

struct spotify_result {
	enum spotify_kind kind;
	struct spotify_collection info;
	struct spotify_track *tracks; /* n_tracks entries, in Spotify's order */
	size_t n_tracks;
	size_t n_skipped; /* playlist entries skipped: null, local files, episodes */
	/* Private: owns every string above. */
	struct arena arena;
	size_t n_alloc;
};

/* Frees a result and everything it points to. NULL is fine. */
void spotify_result_free(struct spotify_result *r);

/* Fetches what ref points to: one track, or an album / playlist with every track
 * (following pagination to the end). Returns 0 and *out (the caller frees it with
 * spotify_result_free), or a negative code with a sentence. */
int spotify_fetch(struct spotify_client *c, const struct spotify_ref *ref,
                  struct spotify_result **out, char *err, size_t n_err);

/* Turns a pasted link into a ref: spotify_url_parse, or for a short link, follows the
 * redirects (at most max_redirects hops, https only, only through spotify.link /
 * spotify.app.link, stopping at the first open.spotify.com URL, which is never fetched).
 * A hop to any other host, a loop or too many hops give SFA_EINVAL; a network failure
 * while following gives SFA_EUPSTREAM or SFA_ETIMEOUT. */
int spotify_resolve_url(struct spotify_client *c, const char *input, struct spotify_ref *out,
                        char *err, size_t n_err);

/* For tests and fuzzing only: turns one Spotify answer into a result without any
 * network, through the same code as spotify_fetch. kind TRACK: body is a track object;
 * ALBUM: a page of simplified album tracks; PLAYLIST: a page of playlist entries. No
 * `next` link is followed. Returns 0 and *out (free with spotify_result_free). */
int spotify__result_from_json(enum spotify_kind kind, const char *body, size_t n,
                              struct spotify_result **out, char *err, size_t n_err);

/* ---- Log-in: authorization code with PKCE ------------------------------------------ */

/* The scopes Sound Forge Alchemy asks for, space-separated. */
extern const char SPOTIFY_LOGIN_SCOPES[];

/* Writes a fresh random verifier of SPOTIFY_PKCE_VERIFIER_LEN characters from
 * [A-Za-z0-9-._~] plus a NUL into out. Uses libsodium's CSPRNG. */
void spotify_pkce_verifier(char out[SPOTIFY_PKCE_VERIFIER_LEN + 1]);

/* base64url(sha256(verifier)) without padding into out. SFA_EINVAL when the verifier is
 * not 43-128 characters of [A-Za-z0-9-._~]. */
int spotify_pkce_challenge(const char *verifier, char out[SPOTIFY_PKCE_CHALLENGE_LEN + 1],
                           char *err, size_t n_err);

/* Builds {accounts}/authorize?client_id&response_type=code&redirect_uri&state&scope
 * &code_challenge_method=S256&code_challenge. scope NULL means SPOTIFY_LOGIN_SCOPES.
 * Returns 0 and a malloced URL in *out (caller frees), SFA_EAUTH without a client id,
 * SFA_EINVAL for a bad verifier or an empty redirect_uri / state. */
int spotify_authorize_url(const struct spotify_client *c, const char *redirect_uri,
                          const char *state, const char *verifier, const char *scope, char **out,
                          char *err, size_t n_err);

/* A user's tokens. Every string is malloced; free them with spotify_user_tokens_free. */
struct spotify_user_tokens {
	char *access_token;
	char *refresh_token; /* NULL only if Spotify sent none on the code exchange */
	char *scope;         /* NULL when absent */
	long expires_in_s;
};
void spotify_user_tokens_free(struct spotify_user_tokens *t);

/* POST {accounts}/api/token grant_type=authorization_code (with Basic auth when a secret
 * is configured, the client id in the form otherwise). Not retried once the request may
 * have reached Spotify, since a code works only once. SFA_EAUTH when Spotify rejects the
 * code, verifier or client. */
int spotify_exchange_code(struct spotify_client *c, const char *code, const char *redirect_uri,
                          const char *verifier, struct spotify_user_tokens *out, char *err,
                          size_t n_err);

/* POST {accounts}/api/token grant_type=refresh_token. When Spotify returns no new refresh
 * token, out->refresh_token is a copy of the old one. SPOTIFY_EREVOKED on invalid_grant,
 * SFA_EAUTH on invalid_client. */
int spotify_refresh_user_token(struct spotify_client *c, const char *refresh_token,
                               struct spotify_user_tokens *out, char *err, size_t n_err);

/* GET /v1/me. Every string is malloced (free with spotify_me_free); email, country,
 * product, display_name and image_url may be NULL. SFA_EAUTH when the token is rejected
 * (401: refresh it, then try again). */
struct spotify_me {
	char *id;
	char *display_name;
	char *email;
	char *country;
	char *product;
	char *image_url; /* widest profile image */
};
int spotify_get_me(struct spotify_client *c, const char *access_token, struct spotify_me *out,
                   char *err, size_t n_err);
void spotify_me_free(struct spotify_me *me);

#endif
