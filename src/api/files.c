/* files.c - GET /files/(path), and the sending of one stored file that the exports
 * (export.c) share.
 *
 * The /files URL space is the data directory's uploads/ folder. A path is served only
 * when the database says the caller owns it (a track's audio or a stem), it has no ".."
 * or backslash, and the opened file - resolved without following a final symlink - is a
 * regular file inside uploads/; anything else is the same 404, so nothing about other
 * users' files or the server's layout leaks. Bodies go out through libmicrohttpd's fd
 * responses (sendfile), with Range/206/416, ETag and Last-Modified.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "http/form.h"
#include "http/range.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/timeutil.h"
#include "util/uuid.h"

static const char *mime_for(const char *path)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
		{".wav", "audio/wav"},   {".mp3", "audio/mpeg"},        {".flac", "audio/flac"},
		{".m4a", "audio/mp4"},   {".ogg", "audio/ogg"},         {".opus", "audio/ogg"},
		{".aiff", "audio/aiff"}, {".json", "application/json"}, {".zip", "application/zip"},
		{".mp4", "audio/mp4"},
	};
	const char *dot = strrchr(path, '.');
	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
		if (strcasecmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* Sets Content-Disposition with an ASCII fallback and the exact UTF-8 name. */
void api_attachment_name(struct http_ctx *ctx, const char *name)
{
	char ascii[256];
	size_t j = 0;
	for (const char *p = name; *p && j < sizeof ascii - 1; p++) {
		unsigned char c = (unsigned char)*p;
		ascii[j++] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '_' : (char)c;
	}
	ascii[j] = '\0';
	char enc[1024];
	if (url_encode(name, enc, sizeof enc) < 0)
		enc[0] = '\0';
	char v[1400];
	snprintf(v, sizeof v, "attachment; filename=\"%s\"%s%s", ascii,
	         *enc ? "; filename*=UTF-8''" : "", enc);
	http_set_header(ctx, "Content-Disposition", v);
}

/* Serves uploads/<rel> to its owner, honouring Range and validators. */
void api_send_file(struct http_ctx *ctx, const char *rel, const char *download_name)
{
	if (!fs_rel_path_safe(rel, DB_PATH_MAX) ||
	    !db_file_owned(ctx->app->db, ctx->user.id, rel)) {
		api_not_found(ctx, "The file");
		return;
	}
	api_send_owned(ctx, rel, download_name);
}

void api_send_owned(struct http_ctx *ctx, const char *rel, const char *download_name)
{
	if (!fs_rel_path_safe(rel, DB_PATH_MAX)) {
		api_not_found(ctx, "The file");
		return;
	}
	struct storage_stat st;
	int fd = -1;
	if (storage_open_read(&ctx->app->store, rel, &fd, &st) != 0) {
		api_not_found(ctx, "The file");
		return;
	}
	char etag[64], modified[40];
	snprintf(etag, sizeof etag, "\"%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st.size_bytes,
	         (uint64_t)st.mtime_ns);
	time_format_http((time_t)(st.mtime_ns / 1000000000), modified, sizeof modified);
	http_set_header(ctx, "ETag", etag);
	http_set_header(ctx, "Last-Modified", modified);
	http_set_header(ctx, "Accept-Ranges", "bytes");
	http_set_header(ctx, "Cache-Control", "private, max-age=0, must-revalidate");
	if (download_name)
		api_attachment_name(ctx, download_name);
	const char *inm = http_req_header(ctx, "If-None-Match");
	const char *ims = http_req_header(ctx, "If-Modified-Since");
	if ((inm && strcmp(inm, etag) == 0) || (!inm && ims && strcmp(ims, modified) == 0)) {
		close(fd);
		http_text(ctx, 304, mime_for(rel), "");
		return;
	}
	uint64_t size = (uint64_t)st.size_bytes, first = 0, len = size;
	const char *range = http_req_header(ctx, "Range");
	const char *if_range = http_req_header(ctx, "If-Range");
	if (if_range && strcmp(if_range, etag) != 0 && strcmp(if_range, modified) != 0)
		range = NULL; /* the client's copy is stale: send it all */
	int status = 200;
	char cr[96];
	switch (http_range_parse(range, size, &first, &len)) {
	case RANGE_UNSATISFIABLE:
		close(fd);
		snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
		http_set_header(ctx, "Content-Range", cr);
		http_error(ctx, 416, "range_not_satisfiable",
		           "The requested range lies outside the file.");
		return;
	case RANGE_PARTIAL:
		status = 206;
		snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first,
		         first + len - 1, size);
		http_set_header(ctx, "Content-Range", cr);
		break;
	case RANGE_NONE:
		break;
	}
	struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(len, fd, first);
	if (!r) {
		close(fd);
		http_error(ctx, 500, "internal", "The file could not be sent.");
		return;
	}
	MHD_add_response_header(r, "Content-Type", mime_for(rel));
	ctx->resp_override = r;
	ctx->status = status;
	ctx->resp_bytes = len;
}

void api_files(struct http_ctx *ctx) { api_send_file(ctx, http_param(ctx, "path"), NULL); }

/* "<artist> - <title> (<what>).<ext>", with path separators replaced. */
void api_export_name(const struct db_track *t, const char *what, const char *ext, char *out,
                     size_t n)
{
	snprintf(out, n, "%s%s%s%s%s%s.%s", t->artist, t->artist[0] ? " - " : "", t->title,
	         what ? " (" : "", what ? what : "", what ? ")" : "", ext);
	for (char *p = out; *p; p++)
		if (*p == '/' || *p == '\\')
			*p = '_';
}

void api_attachment(struct http_ctx *ctx, const struct db_track *t, const char *what,
                    const char *ext)
{
	char name[1200];
	api_export_name(t, what, ext, name, sizeof name);
	api_attachment_name(ctx, name);
}
