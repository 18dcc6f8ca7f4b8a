/* spotify.c - POST /api/spotify/fetch, and the fetch-and-upsert step the download route
 * shares (see spotify_api.h).
 *
 * A pasted link is resolved first (offline for every form but short links), so a bad
 * link is 422 invalid_url without a Spotify call. The fetched tracks are upserted into
 * the caller's library in one transaction: fetching the same track twice gives the same
 * track id, and the user's own edits of title/artist/album survive a refetch.
 *
 * Error mapping (the client's sentences are shown as they are; they never hold secrets):
 *   SFA_EINVAL                      422 invalid_url
 *   SFA_EAUTH                       503 unauthorized (no credentials, or Spotify refused them)
 *   SFA_ENOTFOUND                   404 spotify_error
 *   SFA_EUPSTREAM, ETIMEOUT, ETOOBIG 502 spotify_error
 */
#include "api/spotify_api.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "api/routes.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"
#include "util/uuid.h"

static pthread_mutex_t client_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spotify_client *client;

struct spotify_client *api_spotify_client(const struct app *app)
{
	pthread_mutex_lock(&client_mu);
	if (!client) {
		const struct config *c = &app->cfg;
		struct spotify_config sc = {
			.client_id = c->spotify_client_id[0] ? c->spotify_client_id : NULL,
			.client_secret = c->spotify_client_secret[0] ? c->spotify_client_secret
		                                                     : NULL,
			.accounts_url = c->spotify_accounts_url[0] ? c->spotify_accounts_url : NULL,
			.api_url = c->spotify_api_url[0] ? c->spotify_api_url : NULL,
			.market = c->spotify_market,
		};
		char err[256];
		if (spotify_client_new(&sc, &client, err, sizeof err))
			log_error("spotify: %s", err);
	}
	struct spotify_client *out = client;
	pthread_mutex_unlock(&client_mu);
	return out;
}

void api_spotify_fetched_free(struct api_spotify_fetched *f)
{
	spotify_result_free(f->result);
	free(f->tracks);
	f->result = NULL;
	f->tracks = NULL;
}

/* Reads the "url" member of body: answers 422 and returns NULL when it is missing or not
 * a non-empty string. The string is borrowed from body. */
static const char *url_field(struct http_ctx *ctx, json_t *body)
{
	json_t *v = json_object_get(body, "url");
	const char *msg = !v                       ? "can't be blank"
	                  : !json_is_string(v)     ? "must be a string"
	                  : !*json_string_value(v) ? "can't be blank"
	                                           : NULL;
	if (!msg)
		return json_string_value(v);
	http_error_details(ctx, 422, "validation_failed", "A Spotify URL is required.",
	                   json_pack("{s:[s]}", "url", msg));
	return NULL;
}

static void spotify_failure(struct http_ctx *ctx, int rc, const char *err)
{
	switch (rc) {
	case SFA_EINVAL:
		http_error(ctx, 422, "invalid_url", err);
		break;
	case SFA_EAUTH:
		http_error(ctx, 503, "unauthorized", err);
		break;
	case SFA_ENOTFOUND:
		http_error(ctx, 404, "spotify_error", err);
		break;
	case SFA_ENOMEM:
		http_error(ctx, 500, "internal", "The server ran out of memory; try again later.");
		break;
	default:
		http_error(ctx, 502, "spotify_error", err);
		break;
	}
}

/* Copies, truncating at a character boundary, so a long Spotify name fits a column. */
static void copy_text(char *dst, size_t n_dst, const char *src)
{
	size_t n = str_copy(dst, n_dst, src ? src : "");
	if (n < n_dst)
		return;
	size_t end = n_dst - 1;
	while (end > 0 && ((unsigned char)dst[end] & 0xC0) == 0x80)
		end--;
	dst[end] = '\0';
}

bool api_spotify_fetch_into_library(struct http_ctx *ctx, const char *url,
                                    struct api_spotify_fetched *out)
{
	struct spotify_client *c = api_spotify_client(ctx->app);
	if (!c) {
		http_error(ctx, 503, "unauthorized",
		           "The Spotify client could not be set up; the server log says why.");
		return false;
	}
	char err[512];
	struct spotify_ref ref;
	int rc = spotify_resolve_url(c, url, &ref, err, sizeof err);
	struct spotify_result *res = NULL;
	if (rc == 0)
		rc = spotify_fetch(c, &ref, &res, err, sizeof err);
	if (rc) {
		if (rc != SFA_EINVAL)
			log_info("spotify fetch of %s %s failed: %s", spotify_kind_name(ref.kind),
			         ref.id, err);
		spotify_failure(ctx, rc, err);
		return false;
	}
	struct db_track *tracks = calloc(res->n_tracks ? res->n_tracks : 1, sizeof *tracks);
	if (!tracks) {
		spotify_result_free(res);
		spotify_failure(ctx, SFA_ENOMEM, "");
		return false;
	}
	for (size_t i = 0; i < res->n_tracks; i++) {
		const struct spotify_track *s = &res->tracks[i];
		struct db_track *t = &tracks[i];
		uuid_v4(t->id);
		str_copy(t->spotify_id, sizeof t->spotify_id, s->spotify_id);
		copy_text(t->title, sizeof t->title, s->title);
		copy_text(t->artist, sizeof t->artist, s->artist);
		copy_text(t->album, sizeof t->album, s->album);
		copy_text(t->album_art_url, sizeof t->album_art_url, s->album_art_url);
		copy_text(t->spotify_url, sizeof t->spotify_url, s->spotify_url);
		copy_text(t->isrc, sizeof t->isrc, s->isrc);
		t->duration_s = s->duration_s;
	}
	if (res->n_tracks && db_track_upsert_spotify(ctx->app->db, ctx->user.id, tracks,
	                                             res->n_tracks, (int64_t)time(NULL)) != 0) {
		free(tracks);
		spotify_result_free(res);
		api_db_error(ctx);
		return false;
	}
	out->result = res;
	out->tracks = tracks;
	return true;
}

bool api_spotify_fetch_body(struct http_ctx *ctx, json_t *body, struct api_spotify_fetched *out)
{
	const char *url = url_field(ctx, body);
	bool ok = url && api_spotify_fetch_into_library(ctx, url, out);
	json_decref(body);
	return ok;
}

static json_t *str_or_null(const char *s) { return s && *s ? json_string(s) : json_null(); }

/* The album or playlist around the tracks, as data.album / data.playlist. */
static json_t *collection_json(const struct spotify_result *r)
{
	const struct spotify_collection *c = &r->info;
	struct spotify_ref ref = {.kind = r->kind};
	str_copy(ref.id, sizeof ref.id, c->spotify_id);
	char url[96];
	spotify_canonical_url(&ref, url, sizeof url);
	json_t *o = json_pack("{s:s, s:s, s:o, s:i, s:s}", "spotify_id", c->spotify_id, "name",
	                      c->name, "album_art_url", str_or_null(c->album_art_url), "total",
	                      c->total, "spotify_url", url);
	if (r->kind == SPOTIFY_ALBUM)
		json_object_set_new(o, "artist", str_or_null(c->artist));
	else
		json_object_set_new(o, "owner", str_or_null(c->owner));
	return o;
}

void api_spotify_fetch(struct http_ctx *ctx)
{
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	struct api_spotify_fetched f = {0};
	if (!api_spotify_fetch_body(ctx, body, &f))
		return;
	const struct spotify_result *r = f.result;
	json_t *data;
	if (r->kind == SPOTIFY_TRACK && r->n_tracks == 1) {
		data = json_pack("{s:s, s:o}", "type", "track", "track",
		                 api_track_json(&f.tracks[0]));
	} else {
		json_t *items = json_array();
		for (size_t i = 0; i < r->n_tracks; i++)
			json_array_append_new(items, api_track_json(&f.tracks[i]));
		const char *kind = spotify_kind_name(r->kind);
		data = json_pack("{s:s, s:o, s:o}", "type", kind, kind, collection_json(r),
		                 "tracks", items);
	}
	api_spotify_fetched_free(&f);
	http_data(ctx, 200, data);
}
