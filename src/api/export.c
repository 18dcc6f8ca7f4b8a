/* export.c - the exports: /export/stem/:id (one stem, named for the track),
 * /export/stems/:track_id (every stem of a separation as a ZIP streamed while it is built)
 * and /export/analysis/:track_id (the latest analysis as JSON).
 *
 * The stems ZIP is produced by libarchive pushing into a small buffer that
 * libmicrohttpd's content reader drains: each pull writes at most one 64 KiB chunk of one
 * stem, so memory stays constant whatever the archive's size, and no temporary file is
 * written. Names are UTF-8 and flagged so (hdrcharset).
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
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "util/log.h"
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

enum { ZIP_MAX_ENTRIES = 16, ZIP_CHUNK = 64 * 1024 };

struct zip_entry {
	char path[PATH_MAX * 2];
	char name[1200];
	int64_t size;
};

struct zipstream {
	struct archive *a;
	unsigned char *out; /* bytes libarchive produced, not yet handed to the client */
	size_t out_len, out_off, out_cap;
	struct zip_entry e[ZIP_MAX_ENTRIES];
	int n, i;
	int fd;           /* the entry being copied, -1 between entries */
	int64_t left;     /* bytes of it still to copy */
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

/* One step of building the archive: the next header, one chunk, or the end. */
static void zs_step(struct zipstream *z)
{
	if (z->fd < 0) {
		if (z->i == z->n) {
			if (archive_write_close(z->a) != ARCHIVE_OK)
				z->failed = true;
			z->closed = true;
			return;
		}
		struct zip_entry *e = &z->e[z->i++];
		z->fd = open(e->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		struct stat st;
		if (z->fd < 0 || fstat(z->fd, &st) != 0) {
			log_error("zip export: cannot open a stem file: %s", strerror(errno));
			z->failed = true;
			return;
		}
		z->left = st.st_size;
		struct archive_entry *ae = archive_entry_new();
		archive_entry_set_pathname_utf8(ae, e->name);
		archive_entry_set_size(ae, st.st_size);
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_perm(ae, 0644);
		archive_entry_set_mtime(ae, st.st_mtime, 0);
		if (archive_write_header(z->a, ae) != ARCHIVE_OK)
			z->failed = true;
		archive_entry_free(ae);
		return;
	}
	if (z->left > 0) {
		size_t want = z->left < ZIP_CHUNK ? (size_t)z->left : ZIP_CHUNK;
		ssize_t n = read(z->fd, z->chunk, want);
		if (n <= 0 || archive_write_data(z->a, z->chunk, (size_t)n) != n) {
			z->failed = true;
			return;
		}
		z->left -= n;
		return;
	}
	close(z->fd);
	z->fd = -1;
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
	archive_write_free(z->a);
	free(z->out);
	free(z);
}

static void collect_stem(struct zipstream *z, const struct db_track *t, const char *data_dir,
                         const struct db_stem *s)
{
	if (z->n == ZIP_MAX_ENTRIES || !api_safe_rel_path(s->file_path))
		return;
	struct zip_entry *e = &z->e[z->n++];
	snprintf(e->path, sizeof e->path, "%s/uploads/%s", data_dir, s->file_path);
	api_export_name(t, s->stem_type, s->format, e->name, sizeof e->name);
	e->size = s->file_size;
}

void api_export_stems(struct http_ctx *ctx)
{
	const char *track_id = http_param(ctx, "track_id");
	const char *job_id = http_query(ctx, "job_id");
	struct db_track t;
	if (!uuid_valid(track_id) || db_track_get(ctx->app->db, ctx->user.id, track_id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	if (job_id && !uuid_valid(job_id)) {
		api_not_found(ctx, "The separation job");
		return;
	}
	struct zipstream *z = calloc(1, sizeof *z);
	if (!z) {
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	z->fd = -1;
	struct db_stem *stems;
	size_t n_stems;
	if (db_stem_list(ctx->app->db, ctx->user.id, t.id, job_id, &ctx->arena, &stems, &n_stems)) {
		free(z);
		api_db_error(ctx);
		return;
	}
	for (size_t i = 0; i < n_stems; i++)
		collect_stem(z, &t, ctx->app->cfg.data_dir, &stems[i]);
	if (z->n == 0) {
		free(z);
		http_error(ctx, 404, "not_found",
		           "This track has no stems yet; separate it with POST /api/processing/separate.");
		return;
	}
	z->a = archive_write_new();
	if (!z->a || archive_write_set_format_zip(z->a) != ARCHIVE_OK ||
	    archive_write_set_options(z->a, "zip:compression=store,zip:hdrcharset=UTF-8") != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(z->a, 0) != ARCHIVE_OK ||
	    archive_write_open(z->a, z, NULL, zs_write, NULL) != ARCHIVE_OK) {
		log_error("zip export: %s", z->a ? archive_error_string(z->a) : "out of memory");
		zs_free(z);
		http_error(ctx, 500, "internal", "The ZIP archive could not be started.");
		return;
	}
	struct MHD_Response *r =
		MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, zs_read, z, zs_free);
	if (!r) {
		zs_free(z);
		http_error(ctx, 500, "internal", "The ZIP archive could not be started.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", "application/zip");
	api_attachment(ctx, &t, "stems", "zip");
	ctx->resp_override = r;
	ctx->status = 200;
}

void api_export_analysis(struct http_ctx *ctx)
{
	const char *track_id = http_param(ctx, "track_id");
	struct db_track t;
	if (!uuid_valid(track_id) || db_track_get(ctx->app->db, ctx->user.id, track_id, &t) != 0) {
		api_not_found(ctx, "The track");
		return;
	}
	char *text = NULL;
	json_error_t je;
	json_t *analysis = NULL;
	if (db_analysis_latest(ctx->app->db, ctx->user.id, t.id, &text) != 0 ||
	    !(analysis = json_loads(text, 0, &je))) {
		free(text);
		http_error(ctx, 404, "not_found",
		           "This track has no analysis yet; run POST /api/analysis/analyze first.");
		return;
	}
	free(text);
	http_json(ctx, 200,
	          json_pack("{s:s, s:s, s:s, s:o}", "track_id", t.id, "title", t.title, "artist",
	                    t.artist, "analysis", analysis));
}
