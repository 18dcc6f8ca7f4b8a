/* spotify_catalog.c - tracks, albums and playlists read from the catalogue into the plain
 * results of spotify.h, following paging.
 *
 * Results live in one arena per result (capped), so spotify_result_free frees everything.
 * Pagination `next` links are followed only when they point into the configured API base,
 * so the app token is never sent elsewhere, and at most MAX_PAGES pages are read.
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

static bool is_true(const json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
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
	json_array_foreach(artists, i, a)
	{
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
		tr->album_art_url = rdup(r, spotify__widest_image(json_object_get(album, "images")),
		                         &rc);
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
	json_array_foreach(items, i, e)
	{
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
		rc = spotify__api_get(c, h, url, &np, NULL, err, n_err);
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
	int rc = spotify__api_get(c, h, url, &j, &st, err, n_err);
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
	int rc = spotify__api_get(c, h, url, &j, &st, err, n_err);
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "Spotify has no album with id %s.", id);
	if (rc)
		return rc;
	memcpy(r->info.spotify_id, id, SPOTIFY_ID_LEN + 1);
	const char *name = json_str(j, "name");
	r->info.name = rdup(r, name ? name : "", &rc);
	r->info.artist = join_artists(r, json_object_get(j, "artists"), &rc);
	r->info.album_art_url = rdup(r, spotify__widest_image(json_object_get(j, "images")), &rc);
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
	int rc = spotify__api_get(c, h, url, &j, &st, err, n_err);
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
	r->info.album_art_url = rdup(r, spotify__widest_image(json_object_get(j, "images")), &rc);
	if (rc) {
		rc = sfa_err(err, n_err, rc, "Spotify's answer is too large to keep.");
		goto out;
	}
	/* Development-mode apps must use /items since February 2026 (/tracks answers 403);
	 * older deployments may lack /items. Try the new one, fall back to the old. */
	snprintf(url, sizeof url, "%s/v1/playlists/%s/items?limit=50&offset=0&market=%s",
	         c->api_url, id, c->market);
	rc = spotify__api_get(c, h, url, &page, &st, err, n_err);
	if (rc && (st == 403 || st == 404)) {
		log_info("spotify: playlist /items answered %ld, trying /tracks", st);
		snprintf(url, sizeof url, "%s/v1/playlists/%s/tracks?limit=50&offset=0&market=%s",
		         c->api_url, id, c->market);
		rc = spotify__api_get(c, h, url, &page, &st, err, n_err);
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
