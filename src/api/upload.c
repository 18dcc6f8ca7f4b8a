/* upload.c - POST /api/tracks: a song uploaded as multipart/form-data.
 *
 * The body is streamed (never held in memory): the one file part goes straight into
 * data/tmp/uploads/<random>.part, capped at SFA_MAX_UPLOAD_MB; the fields title, artist
 * and album are kept. Once the body is complete the file is validated by decoding it in
 * a child process (`sfa probe-audio`), never in the server, then moved to
 * data/uploads/downloads/<track id>/<artist>-<title>.<ext> and recorded. Any failure -
 * a bad body, a limit, a file that does not decode - removes the temporary file and
 * creates nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "http/multipart.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/utf8.h"
#include "util/uuid.h"

struct upload {
	struct http_ctx *ctx;
	struct multipart mp;
	bool mp_ready;
	int fd;
	char tmp_path[PATH_MAX + 128];
	char filename[256];
	bool have_file;
	uint64_t n_bytes;
	char title[DB_TEXT_MAX], artist[DB_TEXT_MAX], album[DB_TEXT_MAX];
	const char *not_text; /* the first field that is not valid UTF-8, if any */
	bool failed;
};

static void upload_free(void *p)
{
	struct upload *u = p;
	if (!u)
		return;
	if (u->fd >= 0)
		close(u->fd);
	if (u->tmp_path[0])
		unlink(u->tmp_path);
	if (u->mp_ready)
		multipart_free(&u->mp);
	free(u);
}

static int on_part_begin(void *arg, const struct multipart_part *p)
{
	struct upload *u = arg;
	if (!p->filename)
		return 0;
	if (u->ctx->csrf_pending)
		return multipart_fail(&u->mp, SFA_EAUTH, API_CSRF_FIRST);
	if (strcmp(p->name, "file") != 0)
		return multipart_fail(&u->mp, SFA_EINVAL,
		                      "Send the audio in a field named \"file\" (got \"%s\").",
		                      p->name);
	char dir[PATH_MAX + 16];
	snprintf(dir, sizeof dir, "%s/tmp/uploads", u->ctx->app->cfg.data_dir);
	char id[UUID_STR_LEN];
	uuid_v4(id);
	snprintf(u->tmp_path, sizeof u->tmp_path, "%s/%s.part", dir, id);
	if (fs_mkdirs(dir, 0700) ||
	    (u->fd = open(u->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		u->tmp_path[0] = '\0';
		log_error("upload: cannot create a temporary file: %s", strerror(errno));
		return multipart_fail(&u->mp, SFA_EIO, "The server could not store the upload.");
	}
	utf8_or_latin1(p->filename, u->filename, sizeof u->filename); /* cut between characters */
	u->have_file = true;
	return 0;
}

static int on_file_data(void *arg, const char *data, size_t n)
{
	struct upload *u = arg;
	if (fs_write_all(u->fd, data, n) != 0) {
		log_error("upload: write failed: %s", strerror(errno));
		return multipart_fail(&u->mp, SFA_EIO,
		                      "The server could not store the upload (is the disk full?).");
	}
	u->n_bytes += n;
	return 0;
}

static int on_field(void *arg, const char *name, const char *value, size_t n)
{
	struct upload *u = arg;
	if (strcmp(name, "_csrf_token") == 0) {
		api_csrf_field(u->ctx, value, n);
		return 0;
	}
	char *dst = strcmp(name, "title") == 0    ? u->title
	            : strcmp(name, "artist") == 0 ? u->artist
	            : strcmp(name, "album") == 0  ? u->album
	                                          : NULL;
	if (!dst)
		return 0; /* unknown fields are ignored */
	if (n >= DB_TEXT_MAX || memchr(value, '\0', n))
		return multipart_fail(&u->mp, SFA_EINVAL,
		                      "The %s field must be text of at most 500 characters.", name);
	if (!utf8_valid(value, n) && !u->not_text)
		u->not_text = dst == u->title ? "title" : dst == u->artist ? "artist" : "album";
	memcpy(dst, value, n);
	dst[n] = '\0';
	return 0;
}

static const char upload_usage[] =
	"Upload the song as multipart/form-data with the audio in a \"file\" field.";

int api_tracks_upload_body(struct http_ctx *ctx, const char *data, size_t n)
{
	struct upload *u = ctx->route_state;
	if (!u) {
		u = calloc(1, sizeof *u);
		if (!u) {
			http_error(ctx, 500, "internal", "Out of memory.");
			return -1;
		}
		u->fd = -1;
		u->ctx = ctx;
		ctx->route_state = u;
		ctx->route_state_free = upload_free;
		struct multipart_limits lim = multipart_default_limits;
		lim.max_parts = 8;
		lim.max_files = 1;
		lim.max_field_bytes = 4096;
		lim.max_file_bytes = (uint64_t)ctx->app->cfg.max_upload_bytes;
		lim.max_total_bytes = (uint64_t)ctx->app->cfg.max_upload_bytes + (1u << 20);
		struct multipart_callbacks cb = {on_part_begin, on_file_data, on_field, NULL};
		if (api_multipart_begin(ctx, &u->mp, &lim, &cb, u, upload_usage)) {
			u->failed = true;
			return -1;
		}
		u->mp_ready = true;
	}
	if (api_multipart_feed(ctx, &u->mp, data, n)) {
		u->failed = true;
		return -1;
	}
	return 0;
}

/* Lower-case ASCII slug: letters and digits kept, runs of anything else become '-'. */
static void slug(const char *s, char *out, size_t n_out)
{
	size_t j = 0;
	bool dash = false;
	for (; *s && j + 1 < n_out && j < 80; s++) {
		char c = *s;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			if (dash && j)
				out[j++] = '-';
			dash = false;
			if (j + 1 < n_out)
				out[j++] = c;
		} else {
			dash = true;
		}
	}
	out[j] = '\0';
}

/* The file extension and format name for what the probe found. */
static const char *extension(const char *container, const char *codec)
{
	if (strcmp(container, "mov") == 0)
		return "m4a";
	if (strcmp(container, "ogg") == 0)
		return strcmp(codec, "opus") == 0 ? "opus" : "ogg";
	if (strcmp(container, "matroska") == 0)
		return "webm";
	if (strcmp(container, "mp3") == 0 || strcmp(container, "flac") == 0 ||
	    strcmp(container, "wav") == 0 || strcmp(container, "aiff") == 0)
		return container;
	return "audio";
}

void api_tracks_upload(struct http_ctx *ctx)
{
	struct upload *u = ctx->route_state;
	if (!u) {
		http_error(ctx, 400, "bad_request", upload_usage);
		return;
	}
	int rc = multipart_finish(&u->mp);
	if (rc) {
		api_multipart_error(ctx, &u->mp, rc);
		return;
	}
	if (api_csrf_refused(ctx))
		return;
	if (u->not_text) {
		char msg[120];
		snprintf(msg, sizeof msg, "The %s is not valid UTF-8 text.", u->not_text);
		http_error_details(ctx, 422, "validation_failed", msg,
		                   json_pack("{s:[s]}", u->not_text, "must be valid UTF-8 text"));
		return;
	}
	if (!u->have_file) {
		http_error_details(ctx, 422, "validation_failed", "The upload has no audio file.",
		                   json_pack("{s:[s]}", "file", "can't be blank"));
		return;
	}
	close(u->fd);
	u->fd = -1;
	if (u->n_bytes == 0) {
		http_error(ctx, 422, "invalid_audio", "The uploaded file is empty.");
		return;
	}
	/* Decode it in a child process. */
	char out[8192];
	int status = 0;
	char *argv[] = {"sfa", "probe-audio", u->tmp_path, NULL};
	struct proc_spawn_opts po = {
		.out_fd = 1, .memory_mb = ctx->app->cfg.job_memory_mb, .cpu_s = 120};
	rc = proc_capture(ctx->app->exe, argv, &po, 120 * 1000, out, sizeof out, &status);
	json_error_t je;
	json_t *info = json_loads(out, 0, &je);
	const char *container = json_str(info, "container");
	/* The checker that did not run, or ran out of time or was killed, said nothing about
	 * the file: that is the server's failure, not the file's. */
	if (rc || !WIFEXITED(status) || (!json_str(info, "error") && !container)) {
		log_error("upload: the audio check of %s did not finish (%s, %s %d)", u->tmp_path,
		          rc == SFA_ETIMEOUT ? "timed out"
		          : rc               ? "could not start"
		                             : "ended",
		          WIFSIGNALED(status) ? "signal" : "exit status",
		          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		json_decref(info);
		http_error(ctx, 503, "unavailable",
		           "The server could not check the file right now; try the upload again.");
		return;
	}
	if (WEXITSTATUS(status) != 0 || !container) {
		const char *why = json_str(info, "error");
		char msg[700];
		snprintf(msg, sizeof msg, "The file is not audio this server can decode%s%s",
		         why ? ": " : ".", why ? why : "");
		json_decref(info);
		http_error(ctx, 422, "invalid_audio", msg);
		return;
	}
	double seconds = json_real_value(json_object_get(info, "duration"));
	if (seconds > ctx->app->cfg.max_duration_s) {
		char msg[200];
		snprintf(
			msg, sizeof msg,
			"The audio lasts %.0f minutes; this server accepts songs of up to %d minutes "
			"(SFA_MAX_DURATION_S).",
			seconds / 60, (ctx->app->cfg.max_duration_s + 59) / 60);
		json_decref(info);
		http_error(ctx, 422, "too_long", msg);
		return;
	}
	struct db_track t;
	memset(&t, 0, sizeof t);
	uuid_v4(t.id);
	str_copy(t.user_id, sizeof t.user_id, ctx->user.id);
	str_copy(t.source, sizeof t.source, "upload");
	const char *tag_title = json_str(info, "title"), *tag_artist = json_str(info, "artist"),
		   *tag_album = json_str(info, "album");
	if (u->title[0])
		str_copy(t.title, sizeof t.title, u->title);
	else if (tag_title && *tag_title)
		str_copy(t.title, sizeof t.title, tag_title);
	else {
		str_copy(t.title, sizeof t.title, u->filename[0] ? u->filename : "Untitled");
		char *dot = strrchr(t.title, '.');
		if (dot && dot != t.title)
			*dot = '\0';
	}
	str_copy(t.artist, sizeof t.artist,
	         u->artist[0] ? u->artist
	         : tag_artist ? tag_artist
	                      : "");
	str_copy(t.album, sizeof t.album, u->album[0] ? u->album : tag_album ? tag_album : "");
	const char *codec = json_str(info, "codec");
	str_copy(t.audio_format, sizeof t.audio_format, extension(container, codec ? codec : ""));
	t.audio_size = (int64_t)u->n_bytes;
	t.audio_rate_hz = (int)json_integer_value(json_object_get(info, "sample_rate"));
	t.audio_channels = (int)json_integer_value(json_object_get(info, "channels"));
	t.audio_duration_s = json_real_value(json_object_get(info, "duration"));
	t.duration_s = (int64_t)(t.audio_duration_s + 0.5);
	t.created_at = t.updated_at = (int64_t)time(NULL);
	json_decref(info);

	char a[96], b[96], name[240];
	slug(t.artist, a, sizeof a);
	slug(t.title, b, sizeof b);
	snprintf(name, sizeof name, "%s%s%s.%s", a, *a && *b ? "-" : "",
	         *b ? b : (*a ? "" : "track"), t.audio_format);
	snprintf(t.audio_path, sizeof t.audio_path, "downloads/%s/%s", t.id, name);
	char dir[64];
	snprintf(dir, sizeof dir, "downloads/%s", t.id);
	if (storage_publish(&ctx->app->store, u->tmp_path, t.audio_path) != 0) {
		log_error("upload: cannot move the file into place: %s", strerror(errno));
		http_error(ctx, 500, "internal", "The server could not store the upload.");
		return;
	}
	u->tmp_path[0] = '\0'; /* it is the track's file now */
	if (db_track_insert(ctx->app->db, &t) != 0) {
		storage_remove(&ctx->app->store, dir);
		api_db_error(ctx);
		return;
	}
	log_info("track %s uploaded (%s, %.1f s)", t.id, t.audio_format, t.audio_duration_s);
	char loc[80];
	snprintf(loc, sizeof loc, "/api/tracks/%s", t.id);
	http_set_header(ctx, "Location", loc);
	http_data(ctx, 201, api_track_json(&t));
}
