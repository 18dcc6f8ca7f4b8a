/* spotify_link.h - a user's linked Spotify account: its tokens, kept sealed, and a valid
 * access token on demand.
 *
 * Tokens are sealed (core/sealed.h) under contexts bound to the user, so the database
 * never holds a usable token. spotify_link_access_token refreshes the access token when
 * it expires within a minute (or when asked, after Spotify answered 401): Spotify may
 * omit the refresh token from a refresh answer, and then the old one is kept; when
 * Spotify says the refresh token is revoked (invalid_grant), the link is deleted, since
 * nothing but a new log-in can restore it. Refreshes are serialised by a process-wide
 * mutex, so two requests never spend one refresh token twice. Thread-safe.
 */
#ifndef SFA_CORE_SPOTIFY_LINK_H
#define SFA_CORE_SPOTIFY_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clients/spotify.h"
#include "db/db.h"

enum { SPOTIFY_LINK_TOKEN_MAX = 1024 }; /* longest plain access token accepted */

/* Stores (or replaces) the link of user_id to the Spotify account me->id with tokens t.
 * SFA_ECONFLICT when that Spotify account is linked to another user; SFA_ETOOBIG for an
 * absurdly long token. */
int spotify_link_save(struct db *db, const unsigned char box_key[32], const char *user_id,
                      const struct spotify_me *me, const struct spotify_user_tokens *t, int64_t now,
                      char *err, size_t n_err);

/* Writes a valid access token of user_id's link into token (SPOTIFY_LINK_TOKEN_MAX + 1
 * bytes). force_refresh refreshes even an unexpired token. Returns 0; SFA_ENOTFOUND when
 * there is no link, or when Spotify revoked it (then the link was deleted and *unlinked
 * is true); SFA_EAUTH when the stored tokens cannot be opened (the server secret
 * changed: link again) or Spotify refused this app; SFA_EUPSTREAM / SFA_ETIMEOUT when
 * Spotify failed. */
int spotify_link_access_token(struct db *db, struct spotify_client *c,
                              const unsigned char box_key[32], const char *user_id,
                              bool force_refresh, int64_t now, char *token, bool *unlinked,
                              char *err, size_t n_err);

#endif
