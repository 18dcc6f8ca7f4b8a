/* spotify_link.c - see spotify_link.h. */
#include "core/spotify_link.h"

#include <pthread.h>
#include <stdbool.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sealed.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"

/* One refresh per user at a time (Spotify may rotate the refresh token, so two at once
 * could store a dead one), without holding any lock across the HTTP call: a user's turn is
 * an entry in this small table, and other users never wait for it. */
enum { REFRESHING_MAX = 64 };
static pthread_mutex_t refresh_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refresh_done = PTHREAD_COND_INITIALIZER;
static char refreshing[REFRESHING_MAX][UUID_STR_LEN];

static bool user_refreshing(const char *user_id)
{
	for (int i = 0; i < REFRESHING_MAX; i++)
		if (strcmp(refreshing[i], user_id) == 0)
			return true;
	return false;
}

static int user_turn_take(const char *user_id)
{
	pthread_mutex_lock(&refresh_mu);
	int slot = -1;
	while (slot < 0) {
		if (!user_refreshing(user_id))
			for (int i = 0; i < REFRESHING_MAX && slot < 0; i++)
				if (!refreshing[i][0])
					slot = i;
		if (slot < 0)
			pthread_cond_wait(&refresh_done, &refresh_mu);
	}
	str_copy(refreshing[slot], sizeof refreshing[slot], user_id);
	pthread_mutex_unlock(&refresh_mu);
	return slot;
}

static void user_turn_give(int slot)
{
	pthread_mutex_lock(&refresh_mu);
	refreshing[slot][0] = '\0';
	pthread_cond_broadcast(&refresh_done);
	pthread_mutex_unlock(&refresh_mu);
}

static void context(char *out, size_t n, const char *what, const char *user_id)
{
	snprintf(out, n, "spotify-%s:%s", what, user_id);
}

static int seal_tokens(const unsigned char key[32], const char *user_id, const char *access,
                       const char *refresh, struct db_spotify_link *l)
{
	char ctx[80];
	context(ctx, sizeof ctx, "access", user_id);
	if (strlen(access) > SPOTIFY_LINK_TOKEN_MAX ||
	    sealed_seal(key, ctx, access, l->access_token, sizeof l->access_token) != 0)
		return SFA_ETOOBIG;
	l->refresh_token[0] = '\0';
	if (refresh && *refresh) {
		context(ctx, sizeof ctx, "refresh", user_id);
		if (strlen(refresh) > SPOTIFY_LINK_TOKEN_MAX ||
		    sealed_seal(key, ctx, refresh, l->refresh_token, sizeof l->refresh_token) != 0)
			return SFA_ETOOBIG;
	}
	return 0;
}

int spotify_link_save(struct db *db, const unsigned char box_key[32], const char *user_id,
                      const struct spotify_me *me, const struct spotify_user_tokens *t, int64_t now,
                      char *err, size_t n_err)
{
	struct db_spotify_link *l = calloc(1, sizeof *l);
	if (!l)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	str_copy(l->user_id, sizeof l->user_id, user_id);
	str_copy(l->spotify_user_id, sizeof l->spotify_user_id, me->id);
	str_copy(l->display_name, sizeof l->display_name, me->display_name ? me->display_name : "");
	str_copy(l->email, sizeof l->email, me->email ? me->email : "");
	str_copy(l->scope, sizeof l->scope, t->scope ? t->scope : "");
	l->expires_at = now + (t->expires_in_s > 0 ? t->expires_in_s : 3600);
	int rc = strlen(me->id) >= sizeof l->spotify_user_id
	                 ? SFA_ETOOBIG
	                 : seal_tokens(box_key, user_id, t->access_token, t->refresh_token, l);
	if (rc)
		sfa_err(err, n_err, rc, "Spotify sent a token or account id too long to store.");
	else if ((rc = db_spotify_link_upsert(db, l, now)) == SFA_ECONFLICT)
		sfa_err(err, n_err, rc,
		        "This Spotify account is already linked to another Sound "
		        "Forge Alchemy account.");
	else if (rc)
		sfa_err(err, n_err, rc, "The Spotify link could not be saved.");
	sodium_memzero(l, sizeof *l);
	free(l);
	return rc;
}

int spotify_link_access_token(struct db *db, struct spotify_client *c,
                              const unsigned char box_key[32], const char *user_id,
                              bool force_refresh, int64_t now, char *token, bool *unlinked,
                              char *err, size_t n_err)
{
	*unlinked = false;
	struct db_spotify_link *l = calloc(1, sizeof *l);
	char *refresh = calloc(1, SPOTIFY_LINK_TOKEN_MAX + 1);
	if (!l || !refresh) {
		free(l);
		free(refresh);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	}
	char ctx[80];
	struct spotify_user_tokens fresh = {0};
	int turn = user_turn_take(user_id);
	int rc = db_spotify_link_get(db, user_id, l);
	if (rc) {
		if (rc == SFA_ENOTFOUND)
			sfa_err(err, n_err, rc, "No Spotify account is linked.");
		goto out;
	}
	if (!force_refresh && l->expires_at - 60 > now) {
		context(ctx, sizeof ctx, "access", user_id);
		if (sealed_open(box_key, ctx, l->access_token, token, SPOTIFY_LINK_TOKEN_MAX + 1) ==
		    0)
			goto out;
		/* Unreadable: fall through and try a refresh. */
	}
	context(ctx, sizeof ctx, "refresh", user_id);
	if (!l->refresh_token[0] ||
	    sealed_open(box_key, ctx, l->refresh_token, refresh, SPOTIFY_LINK_TOKEN_MAX + 1) != 0) {
		rc = sfa_err(err, n_err, SFA_EAUTH,
		             "The stored Spotify tokens cannot be used any more; "
		             "link your Spotify account again.");
		goto out;
	}
	rc = spotify_refresh_user_token(c, refresh, &fresh, err, n_err);
	if (rc == SPOTIFY_EREVOKED) {
		db_spotify_link_delete(db, user_id);
		*unlinked = true;
		log_info("user %s: Spotify revoked the refresh token; the link was removed",
		         user_id);
		rc = sfa_err(
			err, n_err, SFA_ENOTFOUND,
			"Spotify no longer accepts this link (access "
			"was revoked or expired), so it was removed; link your Spotify account "
			"again.");
		goto out;
	}
	if (rc)
		goto out;
	/* Spotify may leave the refresh token out: the client then hands back the old one. */
	if ((rc = seal_tokens(box_key, user_id, fresh.access_token, fresh.refresh_token, l)) != 0) {
		sfa_err(err, n_err, rc, "Spotify sent a token too long to store.");
		goto out;
	}
	rc = db_spotify_link_set_tokens(db, user_id, l->access_token, l->refresh_token,
	                                now + (fresh.expires_in_s > 0 ? fresh.expires_in_s : 3600),
	                                now);
	if (rc) {
		sfa_err(err, n_err, rc, "The refreshed Spotify token could not be saved.");
		goto out;
	}
	str_copy(token, SPOTIFY_LINK_TOKEN_MAX + 1, fresh.access_token);
out:
	user_turn_give(turn);
	spotify_user_tokens_free(&fresh);
	sodium_memzero(refresh, SPOTIFY_LINK_TOKEN_MAX + 1);
	sodium_memzero(l, sizeof *l);
	free(refresh);
	free(l);
	return rc;
}
