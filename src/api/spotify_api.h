/* spotify_api.h - what the Spotify-facing handlers share: the server's one Spotify client
 * and "resolve a pasted link, fetch it, put its tracks in the caller's library".
 *
 * The client is made on first use from the configuration (SFA_SPOTIFY_*) and lives as
 * long as the process, so its cached app token is shared by every request thread
 * (struct spotify_client is thread-safe). It is never freed: it is reachable until exit.
 */
#ifndef SFA_API_SPOTIFY_API_H
#define SFA_API_SPOTIFY_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/app.h"
#include "clients/spotify.h"
#include "db/db.h"
#include "http/request.h"

/* The shared client, or NULL when it cannot be made (logged). */
struct spotify_client *api_spotify_client(const struct app *app);

/* What api_spotify_fetch_into_library hands back. Free with api_spotify_fetched_free. */
struct api_spotify_fetched {
	struct spotify_result *result; /* Spotify's answer */
	struct db_track *tracks;       /* result->n_tracks library rows, in Spotify's order */
};
void api_spotify_fetched_free(struct api_spotify_fetched *f);

/* Resolves url (any accepted link form, short links followed), fetches it from Spotify
 * and upserts every track into the caller's library. On failure it has already answered
 * (422 invalid_url, 404/502 spotify_error, 503 unauthorized, 500) and returns false. */
bool api_spotify_fetch_into_library(struct http_ctx *ctx, const char *url,
                                    struct api_spotify_fetched *out);

/* api_spotify_fetch_into_library of the request body's "url" member (422 when it is
 * missing or not a non-empty string). Consumes body in every case. */
bool api_spotify_fetch_body(struct http_ctx *ctx, json_t *body, struct api_spotify_fetched *out);

/* Appends the settings page's Spotify section (link state, link / unlink) to b. */
void page_spotify_settings(struct http_ctx *ctx, struct buf *b, const char *csrf_token);

#endif
