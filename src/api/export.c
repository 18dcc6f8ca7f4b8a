/* export.c - the exports: /export/stem/:id (one stem, named for the track),
 * /export/stems/:track_id (every stem of a separation as a ZIP streamed while it is built),
 * /export/analysis/:track_id (the latest analysis as JSON), /export/midi/:track_id (its
 * beat grid, chords and sections as a Standard MIDI File), and the library for DJ
 * software (core/djexport.h): /export/rekordbox.xml, /export/traktor.nml and
 * /export/library.zip (the audio under the names the collections give, with both beside
 * it), each for the whole library or ?track_ids=a,b,... and with ?root=.
 *
 * The ZIPs are produced by libarchive pushing into a small buffer that libmicrohttpd's
 * content reader drains: each pull writes at most one 64 KiB chunk of one entry, so memory
 * stays constant whatever the archive's size, and no temporary file is written. Names are
 * UTF-8 and flagged so (hdrcharset). Stored files are read through util/storage.h, by key.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "audio/nistems.h"
#include "core/djexport.h"
#include "core/midiexport.h"
#include "util/proc.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/storage.h"
#include "util/uuid.h"

void api_export_stem(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_stem s;
	struct db_track t;
	if (!uuid_valid(id) || db_stem_get(ctx->app->db, ctx->user.id, id, &s) != 0 ||
	    db_track_get(ctx->app->db, ctx->user.id, s.track_id, &t) != 0) {
		api_not_found(ctx, "The stem");
		return;
	}
	char name[1200];
	api_export_name(&t, s.stem_type, s.format, name, sizeof name);
	api_send_file(ctx, s.file_path, name);
}

/* ---- streamed ZIP ---------------------------------------------------------------- */

enum { ZIP_CHUNK = 64 * 1024, ZIP_ARENA_MAX = 64 << 20 };

struct zip_entry {
	const char *name; /* in the archive */
	const char *key;  /* a stored file to copy (storage.h), or NULL for data */
	char *data;       /* an entry made in memory (malloced, the stream's) */
	size_t len;
};

struct zipstream {
	struct arena mem;            /* the entries and everything they point to */
	const struct storage *store; /* the app's */
	struct archive *a;
	unsigned char *out; /* bytes libarchive produced, not yet handed to the client */
	size_t out_len, out_off, out_cap;
	struct zip_entry *e;
	size_t n, cap, i;
	int fd;           /* the file entry being copied, -1 otherwise */
	const char *data; /* the memory entry being copied, NULL otherwise */
	int64_t left;     /* bytes of the current entry still to copy */
	bool closed, failed;
	unsigned char chunk[ZIP_CHUNK];
};

static la_ssize_t zs_write(struct archive *a, void *cls, const void *data, size_t n)
{
	(void)a;
	struct zipstream *z = cls;
	if (z->out_len + n > z->out_cap) {
		size_t cap = z->out_cap ? z->out_cap : 2 * ZIP_CHUNK;
		while (cap < z->out_len + n)
			cap *= 2;
		unsigned char *p = realloc(z->out, cap);
		if (!p)
			return -1;
		z->out = p;
		z->out_cap = cap;
	}
	memcpy(z->out + z->out_len, data, n);
	z->out_len += n;
	return (la_ssize_t)n;
}

/* Starts entry e: its header, and the file to copy. */
static void zs_begin(struct zipstream *z, const struct zip_entry *e)
{
	int64_t size = (int64_t)e->len;
	time_t mtime = time(NULL);
	if (e->key) {
		struct storage_stat st;
		if (storage_open_read(z->store, e->key, &z->fd, &st) != 0) {
			log_error("zip export: cannot open the stored file %s", e->key);
			z->fd = -1;
			z->failed = true;
			return;
		}
		size = st.size_bytes;
		mtime = (time_t)(st.mtime_ns / 1000000000);
	} else {
		z->data = e->data;
	}
	z->left = size;
	struct archive_entry *ae = archive_entry_new();
	archive_entry_set_pathname_utf8(ae, e->name);
	archive_entry_set_size(ae, size);
	archive_entry_set_filetype(ae, AE_IFREG);
	archive_entry_set_perm(ae, 0644);
	archive_entry_set_mtime(ae, mtime, 0);
	if (archive_write_header(z->a, ae) != ARCHIVE_OK)
		z->failed = true;
	archive_entry_free(ae);
}

/* One step of building the archive: the next header, one chunk, or the end. */
static void zs_step(struct zipstream *z)
{
	if (z->fd < 0 && !z->data) {
		if (z->i == z->n) {
			if (archive_write_close(z->a) != ARCHIVE_OK)
				z->failed = true;
			z->closed = true;
			return;
		}
		zs_begin(z, &z->e[z->i++]);
		return;
	}
	if (z->left > 0) {
		size_t want = z->left < ZIP_CHUNK ? (size_t)z->left : ZIP_CHUNK;
		ssize_t n = (ssize_t)want;
		if (z->data)
			memcpy(z->chunk, z->data, want);
		else
			n = read(z->fd, z->chunk, want);
		if (n <= 0 || archive_write_data(z->a, z->chunk, (size_t)n) != n) {
			z->failed = true;
			return;
		}
		if (z->data)
			z->data += n;
		z->left -= n;
		return;
	}
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	z->data = NULL;
	if (archive_write_finish_entry(z->a) != ARCHIVE_OK)
		z->failed = true;
}

static ssize_t zs_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct zipstream *z = cls;
	while (z->out_off == z->out_len) {
		z->out_off = z->out_len = 0;
		if (z->failed)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (z->closed)
			return MHD_CONTENT_READER_END_OF_STREAM;
		zs_step(z);
	}
	size_t n = z->out_len - z->out_off;
	if (n > max)
		n = max;
	memcpy(buf, z->out + z->out_off, n);
	z->out_off += n;
	return (ssize_t)n;
}

static void zs_free(void *cls)
{
	struct zipstream *z = cls;
	if (z->fd >= 0)
		close(z->fd);
	if (z->a)
		archive_write_free(z->a);
	for (size_t i = 0; i < z->n; i++)
		free(z->e[i].data);
	arena_free(&z->mem);
	free(z->out);
	free(z);
}

/* A stream with room for cap entries, reading store's files (which must outlive it: the
 * app's); NULL when out of memory. */
static struct zipstream *zs_new(size_t cap, const struct storage *store)
{
	struct zipstream *z = calloc(1, sizeof *z);
	if (!z)
		return NULL;
	z->store = store;
	z->fd = -1;
	arena_init(&z->mem, ZIP_ARENA_MAX);
	z->cap = cap;
	z->e = cap ? arena_alloc(&z->mem, cap * sizeof *z->e) : NULL;
	if (cap && !z->e) {
		zs_free(z);
		return NULL;
	}
	return z;
}

/* Adds the stored file key as name. */
static bool zs_add(struct zipstream *z, const char *name, const char *key)
{
	if (z->n == z->cap)
		return false;
	const char *n_copy = arena_strdup(&z->mem, name), *k_copy = arena_strdup(&z->mem, key);
	if (!n_copy || !k_copy)
		return false;
	z->e[z->n++] = (struct zip_entry){.name = n_copy, .key = k_copy};
	return true;
}

/* Adds len bytes of data (malloced: the stream owns it from here on, even on failure) as
 * name. */
static bool zs_add_owned(struct zipstream *z, const char *name, char *data, size_t len)
{
	const char *copy = z->n < z->cap ? arena_strdup(&z->mem, name) : NULL;
	if (!copy) {
		free(data);
		return false;
	}
	z->e[z->n++] = (struct zip_entry){.name = copy, .data = data, .len = len};
	return true;
}

/* Answers with the archive, named filename, streamed as it is built; frees z on failure. */
static void zs_respond(struct http_ctx *ctx, struct zipstream *z, const char *filename)
{
	z->a = archive_write_new();
	if (!z->a || archive_write_set_format_zip(z->a) != ARCHIVE_OK ||
	    archive_write_set_options(z->a, "zip:compression=store,zip:hdrcharset=UTF-8") !=
	            ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(z->a, 0) != ARCHIVE_OK ||
	    archive_write_open(z->a, z, NULL, zs_write, NULL) != ARCHIVE_OK) {
		log_error("zip export: %s", z->a ? archive_error_string(z->a) : "out of memory");
		zs_free(z);
		http_error(ctx, 500, "internal", "The ZIP archive could not be started.");
		return;
	}
	struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024,
	                                                           zs_read, z, zs_free);
	if (!r) {
		zs_free(z);
		http_error(ctx, 500, "internal", "The ZIP archive could not be started.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", "application/zip");
	api_attachment_name(ctx, filename);
	ctx->resp_override = r;
	ctx->status = 200;
}

/* The caller's track and the stems of its separation ?job_id= (or its latest), or false
 * with the 404 answered. */
static bool separation_stems(struct http_ctx *ctx, struct db_track *t, struct db_stem **stems,
                             size_t *n)
{
	const char *track_id = http_param(ctx, "track_id");
	const char *job_id = http_query(ctx, "job_id");
	if (!uuid_valid(track_id) || db_track_get(ctx->app->db, ctx->user.id, track_id, t) != 0) {
		api_not_found(ctx, "The track");
		return false;
	}
	if (job_id && !uuid_valid(job_id)) {
		api_not_found(ctx, "The separation job");
		return false;
	}
	if (db_stem_list(ctx->app->db, ctx->user.id, t->id, job_id, &ctx->arena, stems, n)) {
		api_db_error(ctx);
		return false;
	}
	if (*n == 0) {
		http_error(
			ctx, 404, "not_found",
			"This track has no stems yet; separate it with POST /api/processing/separate.");
		return false;
	}
	return true;
}

void api_export_stems(struct http_ctx *ctx)
{
	struct db_track t;
	struct db_stem *stems;
	size_t n_stems;
	if (!separation_stems(ctx, &t, &stems, &n_stems))
		return;
	struct zipstream *z = zs_new(n_stems, &ctx->app->store);
	if (!z) {
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	for (size_t i = 0; i < n_stems; i++) {
		char name[1200];
		if (!fs_rel_path_safe(stems[i].file_path, DB_PATH_MAX))
			continue;
		api_export_name(&t, stems[i].stem_type, stems[i].format, name, sizeof name);
		if (!zs_add(z, name, stems[i].file_path)) {
			zs_free(z);
			http_error(ctx, 500, "internal", "Out of memory.");
			return;
		}
	}
	if (z->n == 0) { /* every row's path refused */
		zs_free(z);
		api_not_found(ctx, "The stems' files");
		return;
	}
	char name[1200];
	api_export_name(&t, "stems", "zip", name, sizeof name);
	zs_respond(ctx, z, name);
}

/* ---- NI Stems ------------------------------------------------------------------------ */

enum { NISTEMS_TIMEOUT_MS = 15 * 60 * 1000, NISTEMS_CPU_S = 15 * 60 };

/* Where the NI Stems file of separation job_id is kept (under uploads/, beside its stems). */
static void ni_file(const char *job_id, char *rel, size_t n)
{
	snprintf(rel, n, "stems/%s/%s.stem.mp4", job_id, job_id);
}

/* The four stems' local files (the renderer reads paths) in NI's order, or false when the
 * stems are not drums, bass, other and vocals. */
static bool ni_order(const struct storage *store, const struct db_stem *s, size_t n,
                     char paths[NISTEMS_N_STEMS][PATH_MAX * 2])
{
	if (n != NISTEMS_N_STEMS)
		return false;
	for (int k = 0; k < NISTEMS_N_STEMS; k++) {
		size_t i = 0;
		while (i < n && strcmp(s[i].stem_type, nistems_names[k]) != 0)
			i++;
		if (i == n ||
		    storage_local_path(store, s[i].file_path, paths[k], sizeof paths[k]) != 0)
			return false;
	}
	return true;
}

void api_export_nistems(struct http_ctx *ctx)
{
	struct db_track t;
	struct db_stem *stems;
	size_t n;
	if (!separation_stems(ctx, &t, &stems, &n))
		return;
	const struct storage *store = &ctx->app->store;
	char paths[NISTEMS_N_STEMS][PATH_MAX * 2];
	if (!ni_order(store, stems, n, paths)) {
		char msg[300];
		snprintf(
			msg, sizeof msg,
			"NI Stems hold four stems (drums, bass, other, vocals); this separation has "
			"%zu. Separate with htdemucs, htdemucs_ft or mdx_extra, without two_stems.",
			n);
		http_error(ctx, 422, "not_four_stems", msg);
		return;
	}
	char rel[128], tmp_key[160], tmp[PATH_MAX * 2], master[PATH_MAX * 2];
	if (!t.audio_path[0] ||
	    storage_local_path(store, t.audio_path, master, sizeof master) != 0) {
		http_error(ctx, 409, "audio_not_ready", "The track has no audio of its own.");
		return;
	}
	/* Made once per separation, kept beside its stems (and deleted with them). */
	ni_file(stems[0].job_id, rel, sizeof rel);
	struct storage_stat st;
	if (storage_stat(store, rel, &st) != 0) {
		char token[UUID_STR_LEN];
		uuid_v4(token);
		snprintf(tmp_key, sizeof tmp_key, "stems/%s/.nistems-%s.tmp", stems[0].job_id,
		         token);
		if (storage_local_path(store, tmp_key, tmp, sizeof tmp) != 0) {
			http_error(ctx, 500, "internal", "The stored files cannot be reached.");
			return;
		}
		char *argv[] = {(char *)ctx->app->exe,
		                "nistems-render",
		                tmp,
		                master,
		                paths[0],
		                paths[1],
		                paths[2],
		                paths[3],
		                "--title",
		                t.title,
		                "--artist",
		                t.artist,
		                NULL};
		struct proc_spawn_opts po = {.out_fd = 1,
		                             .memory_mb = ctx->app->cfg.job_memory_mb,
		                             .cpu_s = NISTEMS_CPU_S};
		char out[2048];
		int status = 0;
		int rc = proc_capture(ctx->app->exe, argv, &po, NISTEMS_TIMEOUT_MS, out, sizeof out,
		                      &status);
		json_t *res = rc == 0 ? json_loads(out, 0, NULL) : NULL;
		bool ok = rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
		          json_is_number(json_object_get(res, "duration"));
		if (ok && storage_publish(store, tmp, rel) != 0)
			ok = false;
		if (!ok) {
			const char *why = json_string_value(json_object_get(res, "error"));
			log_error("nistems: track %s: %s", t.id,
			          rc == SFA_ETIMEOUT ? "timed out"
			          : why              ? why
			                             : "the renderer failed");
			unlink(tmp);
			char msg[700];
			snprintf(msg, sizeof msg, "The NI Stems file could not be made: %s.",
			         rc == SFA_ETIMEOUT ? "it took too long"
			         : why              ? why
			                            : "the renderer failed");
			json_decref(res);
			http_error(ctx, 500, "internal", msg);
			return;
		}
		json_decref(res);
	}
	char name[1200];
	api_export_name(&t, NULL, "stem.mp4", name, sizeof name);
	api_send_owned(ctx, rel, name);
}

/* Whether the NI Stems file of the track's latest separation has been made: its key. */
static bool ni_made(struct http_ctx *ctx, const char *track_id, char *key, size_t n_key)
{
	struct db_stem *stems;
	size_t n;
	char paths[NISTEMS_N_STEMS][PATH_MAX * 2];
	struct storage_stat st;
	struct arena a;
	arena_init(&a, 1 << 20);
	bool four = db_stem_list(ctx->app->db, ctx->user.id, track_id, NULL, &a, &stems, &n) == 0 &&
	            ni_order(&ctx->app->store, stems, n, paths);
	if (four)
		ni_file(stems[0].job_id, key, n_key);
	arena_free(&a);
	return four && storage_stat(&ctx->app->store, key, &st) == 0;
}

/* ---- DJ software: Rekordbox XML, Traktor NML, the bundle ---------------------------- */

#define DJ_PLAYLIST "Sound Forge Alchemy"

/* The tracks ?track_ids= and ?root= ask for, or an error answered. */
static bool dj_tracks(struct http_ctx *ctx, bool need_root, struct dj_export *ex)
{
	const char *root = http_query(ctx, "root");
	if (need_root && !root) {
		http_error_details(
			ctx, 422, "validation_failed", "The export request is invalid.",
			json_pack("{s:[s]}", "root",
		                  "is required: the folder the bundle is unpacked into on "
		                  "your machine"));
		return false;
	}
	char err[512];
	int rc = dj_export_collect(ctx->app->db, ctx->app->cfg.data_dir, ctx->user.id,
	                           http_query(ctx, "track_ids"), root, &ctx->arena, ex, err,
	                           sizeof err);
	if (rc == SFA_EINVAL)
		http_error(ctx, 422, "validation_failed", err);
	else if (rc == SFA_ENOTFOUND)
		http_error(ctx, 404, "not_found", err);
	else if (rc == SFA_ECONFLICT)
		http_error(ctx, 409, "audio_not_ready", err);
	else if (rc)
		http_error(ctx, 500, "internal", err);
	return rc == 0;
}

typedef int (*dj_writer)(const struct dj_track *, size_t, const char *, char **, size_t *);

/* The collection document (malloced), or NULL with the error answered. */
static char *dj_document(struct http_ctx *ctx, const struct dj_export *ex, dj_writer write,
                         size_t *len)
{
	char *doc = NULL;
	if (write(ex->tracks, ex->n, DJ_PLAYLIST, &doc, len) != 0) {
		http_error(ctx, 500, "internal", "The collection could not be written.");
		return NULL;
	}
	return doc;
}

static void dj_send(struct http_ctx *ctx, dj_writer write, const char *type, const char *name)
{
	struct dj_export ex;
	size_t len;
	char *doc = dj_tracks(ctx, false, &ex) ? dj_document(ctx, &ex, write, &len) : NULL;
	if (!doc)
		return;
	struct MHD_Response *r = MHD_create_response_from_buffer(len, doc, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(doc);
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", type);
	api_attachment_name(ctx, name);
	ctx->resp_override = r;
	ctx->status = 200;
}

void api_export_rekordbox(struct http_ctx *ctx)
{
	dj_send(ctx, dj_rekordbox_xml, "application/xml; charset=utf-8", "rekordbox.xml");
}

void api_export_traktor(struct http_ctx *ctx)
{
	dj_send(ctx, dj_traktor_nml, "application/xml; charset=utf-8", "collection.nml");
}

void api_export_library(struct http_ctx *ctx)
{
	struct dj_export ex;
	size_t len_rb, len_tk;
	if (!dj_tracks(ctx, true, &ex))
		return;
	char *rb = dj_document(ctx, &ex, dj_rekordbox_xml, &len_rb);
	char *tk = rb ? dj_document(ctx, &ex, dj_traktor_nml, &len_tk) : NULL;
	struct zipstream *z = tk ? zs_new(2 * ex.n + 2, &ctx->app->store) : NULL;
	if (!z) {
		free(rb);
		free(tk);
		if (tk)
			http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	/* both handed over, even when the first fails: the stream owns each from here */
	bool ok = zs_add_owned(z, "rekordbox.xml", rb, len_rb);
	ok = zs_add_owned(z, "collection.nml", tk, len_tk) && ok;
	for (size_t i = 0; ok && i < ex.n; i++) {
		const struct dj_file *f = &ex.files[i];
		ok = zs_add(z, f->bundle_name, f->audio_key);
		char ni[128], name[1200];
		if (ok && ni_made(ctx, f->track_id, ni, sizeof ni)) {
			const char *dot = strrchr(f->bundle_name, '.');
			snprintf(name, sizeof name, "%.*s.stem.mp4",
			         (int)(dot ? dot - f->bundle_name : 1000), f->bundle_name);
			ok = zs_add(z, name, ni);
		}
	}
	if (!ok) {
		zs_free(z);
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	zs_respond(ctx, z, "Sound Forge Alchemy library.zip");
}

/* The track's latest analysis, parsed (the caller decrefs it), or NULL when it has none. */
static json_t *latest_analysis(struct http_ctx *ctx, const char *track_id)
{
	char *text = NULL;
	json_t *a = NULL;
	if (db_analysis_latest(ctx->app->db, ctx->user.id, track_id, &text) == 0)
		a = json_loads(text, 0, NULL);
	free(text);
	return a;
}

void api_export_analysis(struct http_ctx *ctx)
{
	const char *track_id = http_param(ctx, "track_id");
	struct db_track t;
	if (!uuid_valid(track_id) || db_track_get(ctx->app->db, ctx->user.id, track_id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	json_t *analysis = latest_analysis(ctx, t.id);
	if (!analysis) {
		http_error(ctx, 404, "not_found",
		           "This track has no analysis yet; run POST /api/analysis/analyze first.");
		return;
	}
	http_json(ctx, 200,
	          json_pack("{s:s, s:s, s:s, s:o}", "track_id", t.id, "title", t.title, "artist",
	                    t.artist, "analysis", analysis));
}

void api_export_midi(struct http_ctx *ctx)
{
	const char *track_id = http_param(ctx, "track_id");
	struct db_track t;
	if (!uuid_valid(track_id) || db_track_get(ctx->app->db, ctx->user.id, track_id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	json_t *analysis = latest_analysis(ctx, t.id);
	if (!analysis) {
		http_error(
			ctx, 409, "conflict",
			"This track has no analysis yet; run POST /api/analysis/analyze (with the "
			"tempo feature, or all) first.");
		return;
	}
	unsigned char *smf = NULL;
	size_t len = 0;
	char err[300];
	int rc = midi_from_analysis(analysis, t.title, &smf, &len, err, sizeof err);
	json_decref(analysis);
	if (rc) {
		bool conflict = rc == SFA_ECONFLICT;
		http_error(ctx, conflict ? 409 : 500, conflict ? "conflict" : "internal", err);
		return;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(len, smf, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(smf);
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", "audio/midi");
	char name[1200];
	api_export_name(&t, NULL, "mid", name, sizeof name);
	api_attachment_name(ctx, name);
	ctx->resp_override = r;
	ctx->status = 200;
}
