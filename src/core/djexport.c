/* djexport.c - see djexport.h. */
#include "core/djexport.h"

#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dsp/dsp.h"
#include "util/err.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/uuid.h"

enum { PAGE = 200, BUNDLE_NAME_MAX = 180, ARENA_PAGE = 8 << 20 };

/* "C# minor" (the analysis's key name, dsp_pitch_name + mode) -> 1, minor; -1 when there
 * is no key. */
/* The analysis's sections ([{"start", "label", ...}], as stored) as cues; what is not
 * such an entry is left out. False only when out of memory. */
static bool parse_cues(const char *sections_json, struct dj_track *d, struct arena *a)
{
	d->cues = NULL;
	d->n_cues = 0;
	json_t *arr = sections_json ? json_loads(sections_json, 0, NULL) : NULL;
	size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
	struct dj_cue *cues = n ? arena_alloc(a, n * sizeof *cues) : NULL;
	bool ok = !n || cues;
	for (size_t i = 0; ok && i < n; i++) {
		json_t *e = json_array_get(arr, i);
		const char *label = json_string_value(json_object_get(e, "label"));
		json_t *start = json_object_get(e, "start");
		if (!label || !json_is_number(start) || json_number_value(start) < 0)
			continue;
		cues[d->n_cues].start_s = json_number_value(start);
		ok = (cues[d->n_cues].name = arena_strdup(a, label)) != NULL;
		d->n_cues += ok;
	}
	d->cues = cues;
	json_decref(arr);
	return ok;
}

static void parse_key(const char *name, int *pc, int *minor)
{
	*pc = -1;
	*minor = 0;
	const char *space = strchr(name, ' ');
	if (!space)
		return;
	size_t len = (size_t)(space - name);
	for (int i = 0; i < 12; i++)
		if (strlen(dsp_pitch_name(i)) == len && strncmp(name, dsp_pitch_name(i), len) == 0)
			*pc = i;
	*minor = strcmp(space + 1, "minor") == 0;
}

/* The lower-cased extension of path ("mp3"), or "". */
static void extension(const char *path, char *out, size_t n)
{
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	out[0] = '\0';
	if (!dot || (slash && dot < slash) || strlen(dot + 1) >= n)
		return;
	size_t i = 0;
	for (; dot[1 + i]; i++)
		out[i] = (char)tolower((unsigned char)dot[1 + i]);
	out[i] = '\0';
}

/* ---- unique bundle names ------------------------------------------------------------- */

struct names {
	const char **slot; /* open addressing over lower-cased names */
	size_t cap;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)tolower((unsigned char)*s)) * 1099511628211ull;
	return h;
}

/* Whether name was free (and is now taken); names differing only in ASCII case collide,
 * as they would on the DJ's file system. */
static int names_take(struct names *ns, const char *name)
{
	size_t i = (size_t)(fnv(name) % ns->cap);
	while (ns->slot[i]) {
		if (strcasecmp(ns->slot[i], name) == 0)
			return 0;
		i = (i + 1) % ns->cap;
	}
	ns->slot[i] = name;
	return 1;
}

/* "<artist> - <title>" with what no file system takes ('/', '\', ':', '*', '?', '"', '<',
 * '>', '|', control characters) as '_', cut at BUNDLE_NAME_MAX bytes on a character
 * boundary, without trailing dots or spaces (Windows drops them). */
static void base_name(const struct db_track *t, char *out, size_t n)
{
	snprintf(out, n, "%s%s%s", t->artist, t->artist[0] ? " - " : "",
	         t->title[0] ? t->title : "Untitled");
	size_t len = strlen(out);
	if (len > BUNDLE_NAME_MAX) {
		len = BUNDLE_NAME_MAX;
		while (len > 0 && ((unsigned char)out[len] & 0xC0) == 0x80)
			len--;
		out[len] = '\0';
	}
	for (char *p = out; *p; p++)
		if (strchr("/\\:*?\"<>|", *p) || (unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '_';
	while (len > 0 && (out[len - 1] == '.' || out[len - 1] == ' '))
		out[--len] = '\0';
	if (!out[0])
		str_copy(out, n, "Untitled");
}

static const char *bundle_name(struct names *ns, const struct db_track *t, const char *ext,
                               struct arena *a)
{
	char base[2 * DB_TEXT_MAX + 16];
	base_name(t, base, sizeof base);
	for (int k = 1;; k++) {
		char *name = k == 1 ? arena_printf(a, "%s.%s", base, ext)
		                    : arena_printf(a, "%s (%d).%s", base, k, ext);
		if (!name || names_take(ns, name))
			return name;
	}
}

/* ---- one item ------------------------------------------------------------------------ */

struct ctx {
	struct db *db;
	const char *user_id;
	struct storage store; /* the stored files; a file's local path is its location */
	const char *root;     /* NULL, or the folder given */
	const char *sep;      /* between the root and a name: "/", "\\" or "" */
	struct arena *a;
	struct names names;
};

static int add_item(struct ctx *c, const struct db_track *t, const struct db_track_summary *s,
                    struct dj_track *d, struct dj_file *f, char *err, size_t n_err)
{
	char ext[16];
	extension(t->audio_path, ext, sizeof ext);
	char kind[24] = "Audio File";
	if (ext[0]) {
		snprintf(kind, sizeof kind, "%s File", ext);
		for (char *p = kind; *p != ' '; p++)
			*p = (char)toupper((unsigned char)*p);
	}
	memset(d, 0, sizeof *d);
	d->title = arena_strdup(c->a, t->title);
	d->artist = arena_strdup(c->a, t->artist);
	d->album = arena_strdup(c->a, t->album);
	d->kind = arena_strdup(c->a, kind);
	char local[PATH_MAX * 2];
	if (storage_local_path(&c->store, t->audio_path, local, sizeof local) != 0)
		return sfa_err(err, n_err, SFA_EINVAL, "The file of \"%s\" is outside the library.",
		               t->title);
	f->audio_path = arena_strdup(c->a, local);
	f->audio_key = arena_strdup(c->a, t->audio_path);
	f->track_id = arena_strdup(c->a, t->id);
	f->bundle_name = bundle_name(&c->names, t, ext[0] ? ext : "audio", c->a);
	if (!d->title || !d->artist || !d->album || !d->kind || !f->audio_path || !f->audio_key ||
	    !f->bundle_name || !f->track_id)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory while listing the library.");
	d->location = c->root ? arena_printf(c->a, "%s%s%s", c->root, c->sep, f->bundle_name)
	                      : f->audio_path;
	if (!d->location)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory while listing the library.");
	if (!dj_path_valid(d->location))
		return sfa_err(
			err, n_err, SFA_EINVAL,
			"The path of “%s” would be longer than %d bytes; choose a shorter root.",
			t->title, DJ_PATH_MAX - 1);
	d->size_bytes = t->audio_size;
	d->duration_s = t->audio_duration_s > 0 ? t->audio_duration_s : (double)t->duration_s;
	d->sample_rate_hz = t->audio_rate_hz;
	d->bit_rate_kbps = d->duration_s > 0
	                           ? (int)((double)t->audio_size * 8.0 / d->duration_s / 1000.0 +
	                                   0.5)
	                           : 0;
	d->bpm = s->tempo_bpm;
	d->first_beat_s = s->first_beat_s;
	parse_key(s->key, &d->key_pc, &d->key_minor);
	d->added_at = t->created_at;
	return parse_cues(s->sections_json, d, c->a)
	               ? 0
	               : sfa_err(err, n_err, SFA_ENOMEM,
	                         "Out of memory while listing the library.");
}

/* ---- the list ------------------------------------------------------------------------ */

static int collect_listed(struct ctx *c, const char *ids_csv, struct dj_export *out, char *err,
                          size_t n_err)
{
	size_t n_ids = 1;
	for (const char *p = ids_csv; *p; p++)
		n_ids += *p == ',';
	if (n_ids > DJ_MAX_TRACKS)
		return sfa_err(err, n_err, SFA_EINVAL, "At most %d tracks can be exported at once.",
		               DJ_MAX_TRACKS);
	out->tracks = arena_alloc(c->a, n_ids * sizeof *out->tracks);
	out->files = arena_alloc(c->a, n_ids * sizeof *out->files);
	char(*ids)[UUID_STR_LEN] = arena_alloc(c->a, n_ids * sizeof *ids);
	if (!out->tracks || !out->files || !ids)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory while listing the library.");
	size_t n = 0;
	const char *p = ids_csv;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char id[UUID_STR_LEN];
		if (len != UUID_STR_LEN - 1)
			return sfa_err(err, n_err, SFA_EINVAL,
			               "track_ids must be track ids separated by commas.");
		memcpy(id, p, len);
		id[len] = '\0';
		if (!uuid_valid(id))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "track_ids must be track ids separated by commas.");
		for (size_t i = 0; i < n; i++)
			if (strcmp(ids[i], id) == 0)
				return sfa_err(err, n_err, SFA_EINVAL, "track_ids lists %s twice.",
				               id);
		memcpy(ids[n], id, UUID_STR_LEN);
		struct db_track t;
		int rc = db_track_get(c->db, c->user_id, id, &t);
		if (rc == SFA_ENOTFOUND)
			return sfa_err(err, n_err, rc, "The track %s was not found.", id);
		if (rc)
			return sfa_err(err, n_err, rc,
			               "The library could not be read (database error).");
		if (!t.audio_path[0])
			return sfa_err(
				err, n_err, SFA_ECONFLICT,
				"The track “%s” has no audio yet; download or upload it first.",
				t.title);
		struct db_track_summary *s;
		rc = db_track_summaries(c->db, c->user_id, &t, 1, c->a, &s);
		if (rc)
			return sfa_err(err, n_err, rc,
			               "The library could not be read (database error).");
		if ((rc = add_item(c, &t, s, &out->tracks[n], &out->files[n], err, n_err)) != 0)
			return rc;
		out->n = ++n;
		if (!comma)
			break;
		p = comma + 1;
	}
	return 0;
}

static int collect_all(struct ctx *c, struct dj_export *out, char *err, size_t n_err)
{
	size_t cap = 0; /* tracks allocated for: the count when the first page was read */
	int64_t total = 1;
	for (int64_t offset = 0; offset < total; offset += PAGE) {
		struct arena page;
		arena_init(&page, ARENA_PAGE);
		struct db_track *tracks;
		struct db_track_summary *s = NULL;
		size_t n_page = 0;
		int rc = db_track_list(c->db, c->user_id, NULL, DB_SORT_NEWEST, offset, PAGE, &page,
		                       &tracks, &n_page, &total);
		if (!rc && offset == 0) {
			if (total > DJ_MAX_TRACKS)
				rc = sfa_err(
					err, n_err, SFA_EINVAL,
					"The library has %lld tracks; export at most %d at once with "
					"?track_ids=.",
					(long long)total, DJ_MAX_TRACKS);
			else if ((cap = (size_t)total) > 0 &&
			         (!(out->tracks = arena_alloc(c->a, (size_t)total *
			                                                    sizeof *out->tracks)) ||
			          !(out->files = arena_alloc(c->a,
			                                     (size_t)total * sizeof *out->files))))
				rc = sfa_err(err, n_err, SFA_ENOMEM,
				             "Out of memory while listing the library.");
		} else if (rc) {
			rc = sfa_err(err, n_err, rc,
			             "The library could not be read (database error).");
		}
		if (!rc && n_page)
			rc = db_track_summaries(c->db, c->user_id, tracks, n_page, &page, &s)
			             ? sfa_err(err, n_err, SFA_EDB,
			                       "The library could not be read (database error).")
			             : 0;
		/* tracks added while the pages are read wait for the next export */
		for (size_t i = 0; !rc && i < n_page && out->n < cap; i++)
			if (tracks[i].audio_path[0] &&
			    (rc = add_item(c, &tracks[i], &s[i], &out->tracks[out->n],
			                   &out->files[out->n], err, n_err)) == 0)
				out->n++;
		arena_free(&page);
		if (rc)
			return rc;
	}
	return 0;
}

int dj_export_collect(struct db *db, const char *data_dir, const char *user_id, const char *ids_csv,
                      const char *root, struct arena *a, struct dj_export *out, char *err,
                      size_t n_err)
{
	memset(out, 0, sizeof *out);
	struct ctx c = {.db = db, .user_id = user_id, .a = a, .sep = "/"};
	if (root) {
		if (!dj_path_valid(root))
			return sfa_err(err, n_err, SFA_EINVAL,
			               "root must be an absolute folder on your machine, like "
			               "/Users/you/Music/Alchemy or C:\\Music\\Alchemy.");
		size_t len = strlen(root);
		if (root[len - 1] == '/' || root[len - 1] == '\\')
			c.sep = "";
		else if (strchr(root, '\\') && !strchr(root, '/'))
			c.sep = "\\";
		c.root = root;
	}
	if (storage_init(&c.store, data_dir) != 0)
		return sfa_err(err, n_err, SFA_EIO, "The data folder cannot be found.");
	c.names.cap = 2 * (size_t)DJ_MAX_TRACKS + 1;
	c.names.slot = arena_alloc(a, c.names.cap * sizeof *c.names.slot);
	if (!c.names.slot)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory.");
	memset(c.names.slot, 0, c.names.cap * sizeof *c.names.slot);
	return ids_csv ? collect_listed(&c, ids_csv, out, err, n_err)
	               : collect_all(&c, out, err, n_err);
}
