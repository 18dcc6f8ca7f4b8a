/* spotify_url.h - recognise the Spotify links people paste, offline.
 *
 * Every accepted form reduces to a kind (track, album, playlist) and a 22-character base62
 * id; anything else is rejected here, before Spotify is ever called:
 *   https://open.spotify.com/{track|album|playlist}/ID   (any query string or fragment)
 *   open.spotify.com/intl-xx/... and intl-xx-Yyyy/...    (localised links)
 *   open.spotify.com/embed/...                           (embed player links)
 *   open.spotify.com/user/<u>/playlist/ID                (legacy playlist links)
 *   spotify:{track|album|playlist}:ID, spotify:user:<u>:playlist:ID  (URIs)
 * The input may be URL-encoded (it is percent-decoded once first), may lack the scheme and
 * may carry surrounding white space. Short links (https://spotify.link/<code>) need the
 * network: spotify_url_short_link() recognises them and spotify_resolve_url() in
 * spotify.h follows them.
 *
 * Pure functions over caller memory: no allocation, thread-safe. Input longer than
 * SPOTIFY_URL_MAX_BYTES is rejected.
 */
#ifndef SFA_CLIENTS_SPOTIFY_URL_H
#define SFA_CLIENTS_SPOTIFY_URL_H

#include <stdbool.h>
#include <stddef.h>

enum { SPOTIFY_ID_LEN = 22, SPOTIFY_URL_MAX_BYTES = 2048 };

enum spotify_kind { SPOTIFY_TRACK = 1, SPOTIFY_ALBUM = 2, SPOTIFY_PLAYLIST = 3 };

struct spotify_ref {
	enum spotify_kind kind;
	char id[SPOTIFY_ID_LEN + 1]; /* 22 base62 characters, NUL-terminated */
};

/* Parses a pasted link or URI. Returns 0 and fills *out, or SFA_EINVAL with a sentence
 * in err (a short link also gives SFA_EINVAL here: resolve it with spotify_resolve_url). */
int spotify_url_parse(const char *input, struct spotify_ref *out, char *err, size_t n_err);

/* True when input is a short link to follow: https://spotify.link/<code> or
 * https://spotify.app.link/<path> (where spotify.link sends browsers), scheme optional
 * (https is then assumed). With allow_http_loopback (tests only, never on in production),
 * http://127.0.0.1[:port]/<path> counts too, so that a local fake can stand in for
 * spotify.link. When url_out is not NULL, the absolute URL to fetch is written there (it
 * must hold SPOTIFY_URL_MAX_BYTES + 9 bytes; false when it does not fit). */
bool spotify_url_short_link(const char *input, bool allow_http_loopback, char *url_out,
                            size_t n_url_out);

/* True when s[0..n) is exactly 22 base62 characters. */
bool spotify_id_valid(const char *s, size_t n);

/* "track", "album" or "playlist" ("unknown" for anything else). Static storage. */
const char *spotify_kind_name(enum spotify_kind kind);

/* Writes https://open.spotify.com/<kind>/<id> into out (at least 64 bytes). */
void spotify_canonical_url(const struct spotify_ref *ref, char *out, size_t n_out);

#endif
