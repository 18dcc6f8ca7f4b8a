/* daw.c - POST /api/daw/export: stems mixed on the server by an edit manifest.
 *
 * The request is multipart/form-data: track_id, up to 16 stems[] files and manifest (JSON,
 * audio/mixer.h). The route streams its body (routes.c matched, authenticated, checked
 * CSRF and counted both rate buckets when the headers arrived): each stems[] part goes
 * straight to data/tmp/daw/<random>/<i>.part, capped at SFA_MAX_UPLOAD_MB per file and
 * twice that (plus 1 MiB of fields) in all, past which the answer is 413.
 *
 * Once the body is complete: the track must be the caller's (else 404); the manifest is
 * validated here, in the server, by the mixer's parser - every error at once, 422 with
 * `details` keyed by JSON path - and each stem_id must name one of the caller's stems
 * (else an error at stems[i].stem_id; another user's stem is reported exactly like a
 * missing one). Then `sfa daw-render` (audio/mixer_cli.h) runs in a child process with
 * the job memory and CPU limits: it decodes the stems (untrusted media is never decoded
 * in the server), scans the mix once and prints one JSON line with the output's length,
 * peak and clipped-sample count, then the WAV. This handler waits for that line - so
 * X-SFA-Clipped-Samples and Content-Length are real headers, not trailers - and then hands
 * libmicrohttpd a content reader that relays the child's pipe as the child renders: the
 * server holds one 64 KiB buffer per export, whatever the mix's length. A decode failure
 * is 422 invalid_audio naming the stem; a mix too long for a WAV is 422.
 *
 * Threading: like the upload probe, the wait for the child's first line (decoding and the
 * scan; seconds for typical stems) runs on the libmicrohttpd worker thread that owns the
 * connection. The relay reads block that thread only while the child renders, which is far
 * faster than real time. The temporary directory and the child belong to the request: the
 * response's free callback kills the child (if the client went away mid-stream) and
 * removes the directory; if no response was made, the route state's free does. What a
 * crashed server left there is swept once, before this process's first export.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/routes.h"
#include "audio/mixer.h"
#include "audio/mixer_manifest.h"
#include "http/multipart.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/json.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/timeutil.h"
#include "util/uuid.h"

enum {
	DAW_FIELD_MAX = 64,              /* track_id */
	DAW_LINE_MAX = 4096,             /* the child's first line */
	DAW_RENDER_TIMEOUT_S = 600,      /* decoding and the scan */
	DAW_RELAY_STALL_MS = 120 * 1000, /* the child silent this long mid-stream: give up */
	DAW_CPU_S = 1800,
	DAW_RELAY_BLOCK = 64 * 1024,
	DAW_EXIT_WAIT_MS = 2000, /* a renderer that sent everything, to exit */
};

struct daw_req {
	struct http_ctx *ctx;
	struct multipart mp;
	bool mp_ready;
	char dir[PATH_MAX + 64]; /* data/tmp/daw/<random>; "" until made, and once handed over */
	int fd;                  /* the stems[] part being written */
	int n_files;
	char names[MIXER_MAX_FILES][256];
	char track_id[DAW_FIELD_MAX + 1];
	bool have_track_id, track_id_too_long;
	char *manifest; /* malloced copy of the field */
	size_t n_manifest;
	bool have_manifest;
};

/* The relay from the child's stdout to the client. */
struct daw_stream {
	pid_t pid;
	int fd;
	char dir[PATH_MAX + 64];
	char *head; /* WAV bytes read together with the first line */
	size_t n_head, off_head;
	uint64_t total, sent;
};

static void daw_req_free(void *p)
{
	struct daw_req *r = p;
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	if (r->mp_ready)
		multipart_free(&r->mp);
	if (r->dir[0])
		fs_remove_tree(r->dir);
	free(r->manifest);
	free(r);
}

static int daw_make_dir(struct daw_req *r)
{
	if (r->dir[0])
		return 0;
	char id[UUID_STR_LEN];
	uuid_v4(id);
	snprintf(r->dir, sizeof r->dir, "%s/tmp/daw/%s", r->ctx->app->cfg.data_dir, id);
	if (fs_mkdirs(r->dir, 0700) != 0) {
		log_error("daw: cannot create a temporary directory: %s", strerror(errno));
		r->dir[0] = '\0';
		return SFA_EIO;
	}
	return 0;
}

static int on_part_begin(void *arg, const struct multipart_part *p)
{
	struct daw_req *r = arg;
	if (!p->filename)
		return 0;
	if (r->ctx->csrf_pending)
		return multipart_fail(&r->mp, SFA_EAUTH, API_CSRF_FIRST);
	if (strcmp(p->name, "stems[]") != 0 && strcmp(p->name, "stems") != 0)
		return multipart_fail(
			&r->mp, SFA_EINVAL,
			"Send the stem files in fields named \"stems[]\" (got \"%.64s\").",
			p->name);
	if (daw_make_dir(r) != 0)
		return multipart_fail(&r->mp, SFA_EIO, "The server could not store the upload.");
	char path[PATH_MAX + 96];
	snprintf(path, sizeof path, "%s/%d.part", r->dir, r->n_files);
	r->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (r->fd < 0) {
		log_error("daw: cannot create a temporary file: %s", strerror(errno));
		return multipart_fail(&r->mp, SFA_EIO, "The server could not store the upload.");
	}
	str_copy(r->names[r->n_files], sizeof r->names[0], p->filename);
	r->n_files++;
	return 0;
}

static int on_file_data(void *arg, const char *data, size_t n)
{
	struct daw_req *r = arg;
	if (fs_write_all(r->fd, data, n) != 0) {
		log_error("daw: write failed: %s", strerror(errno));
		return multipart_fail(&r->mp, SFA_EIO,
		                      "The server could not store the upload (is the disk full?).");
	}
	return 0;
}

static int on_part_end(void *arg)
{
	struct daw_req *r = arg;
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	return 0;
}

static int on_field(void *arg, const char *name, const char *value, size_t n)
{
	struct daw_req *r = arg;
	if (strcmp(name, "_csrf_token") == 0) {
		api_csrf_field(r->ctx, value, n);
	} else if (strcmp(name, "track_id") == 0) {
		r->have_track_id = n > 0;
		r->track_id_too_long = n > DAW_FIELD_MAX || memchr(value, '\0', n);
		if (!r->track_id_too_long) {
			memcpy(r->track_id, value, n);
			r->track_id[n] = '\0';
		}
	} else if (strcmp(name, "manifest") == 0) {
		char *copy = malloc(n + 1);
		if (!copy)
			return multipart_fail(&r->mp, SFA_EIO, "Out of memory.");
		memcpy(copy, value, n);
		copy[n] = '\0';
		free(r->manifest);
		r->manifest = copy;
		r->n_manifest = n;
		r->have_manifest = true;
	}
	return 0; /* unknown fields are ignored */
}

static const char daw_usage[] =
	"Send the export as multipart/form-data with track_id, the stems[] files and the "
	"manifest.";

int api_daw_export_body(struct http_ctx *ctx, const char *data, size_t n)
{
	struct daw_req *r = ctx->route_state;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r) {
			http_error(ctx, 500, "internal", "Out of memory.");
			return -1;
		}
		r->fd = -1;
		r->ctx = ctx;
		ctx->route_state = r;
		ctx->route_state_free = daw_req_free;
		uint64_t per_file = (uint64_t)ctx->app->cfg.max_upload_bytes;
		struct multipart_limits lim = multipart_default_limits;
		lim.max_parts = MIXER_MAX_FILES + 8;
		lim.max_files = MIXER_MAX_FILES;
		lim.max_field_bytes = MIXER_MANIFEST_MAX_BYTES;
		lim.max_file_bytes = per_file;
		lim.max_total_bytes = 2 * per_file + (1u << 20);
		struct multipart_callbacks cb = {on_part_begin, on_file_data, on_field,
		                                 on_part_end};
		if (api_multipart_begin(ctx, &r->mp, &lim, &cb, r, daw_usage))
			return -1;
		r->mp_ready = true;
	}
	return api_multipart_feed(ctx, &r->mp, data, n);
}

/* ---- the relay --------------------------------------------------------------------- */

static void daw_stream_free(void *cls)
{
	struct daw_stream *s = cls;
	if (s->fd >= 0)
		close(s->fd);
	if (s->pid > 0) {
		/* After a complete mix the renderer is exiting by itself: give it a moment, so
		 * its status says how it ended. Otherwise (a client gone mid-way) stop it now. */
		int status = 0;
		pid_t done = 0;
		for (int i = 0; s->sent == s->total && i < DAW_EXIT_WAIT_MS / 10 && done == 0;
		     i++) {
			done = waitpid(s->pid, &status, WNOHANG);
			if (done == 0) {
				struct timespec ts = {0, 10 * 1000 * 1000};
				nanosleep(&ts, NULL);
			}
		}
		if (done == 0) { /* not reaped yet, so the group id is still its own */
			kill(-s->pid, SIGKILL);
			while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR) {
			}
		}
		if (s->sent == s->total && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
			log_warn("daw: the renderer ended with status %d after a complete mix",
			         status);
	}
	if (s->dir[0])
		fs_remove_tree(s->dir);
	free(s->head);
	free(s);
}

static ssize_t daw_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct daw_stream *s = cls;
	if (s->sent >= s->total)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (max > s->total - s->sent)
		max = (size_t)(s->total - s->sent);
	if (s->off_head < s->n_head) {
		size_t n = s->n_head - s->off_head;
		if (n > max)
			n = max;
		memcpy(buf, s->head + s->off_head, n);
		s->off_head += n;
		s->sent += n;
		return (ssize_t)n;
	}
	for (;;) {
		struct pollfd pfd = {s->fd, POLLIN, 0};
		int pr = poll(&pfd, 1, DAW_RELAY_STALL_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			log_error("daw: the renderer stalled; the export was cut off");
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		ssize_t n = read(s->fd, buf, max);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			log_error("daw: the renderer stopped after %llu of %llu bytes",
			          (unsigned long long)s->sent, (unsigned long long)s->total);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		s->sent += (uint64_t)n;
		return n;
	}
}

/* ---- the handler ------------------------------------------------------------------- */

/* details {"path": ["msg", ...]} from the error list. */
static json_t *daw_details(const struct mixer_errors *errs)
{
	json_t *d = json_object();
	for (int i = 0; i < errs->n; i++) {
		const char *key = errs->e[i].path[0] ? errs->e[i].path : "manifest";
		json_t *list = json_object_get(d, key);
		if (!list) {
			list = json_array();
			json_object_set_new(d, key, list);
		}
		json_array_append_new(list, json_string(errs->e[i].msg));
	}
	if (errs->n_dropped) {
		json_t *list = json_object_get(d, "manifest");
		if (!list) {
			list = json_array();
			json_object_set_new(d, "manifest", list);
		}
		char msg[96];
		snprintf(msg, sizeof msg, "and %d more errors", errs->n_dropped);
		json_array_append_new(list, json_string(msg));
	}
	return d;
}

/* Reads the child's first line (up to '\n') within the deadline; bytes after it are
 * returned in *rest (malloced). Returns 0, SFA_ETIMEOUT, SFA_EIO (EOF first) or
 * SFA_ETOOBIG. */
static int daw_read_line(int fd, int64_t deadline_ms, char *line, size_t n_line, char **rest,
                         size_t *n_rest)
{
	char buf[DAW_RELAY_BLOCK];
	size_t len = 0;
	for (;;) {
		int64_t left = deadline_ms - time_mono_ms();
		if (left <= 0)
			return SFA_ETIMEOUT;
		struct pollfd pfd = {fd, POLLIN, 0};
		int pr = poll(&pfd, 1, (int)left);
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, buf + len, sizeof buf - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return SFA_EIO;
		len += (size_t)n;
		char *nl = memchr(buf, '\n', len);
		if (nl) {
			size_t n_first = (size_t)(nl - buf);
			if (n_first >= n_line)
				return SFA_ETOOBIG;
			memcpy(line, buf, n_first);
			line[n_first] = '\0';
			*n_rest = len - n_first - 1;
			*rest = malloc(*n_rest ? *n_rest : 1);
			if (!*rest)
				return SFA_EIO;
			memcpy(*rest, nl + 1, *n_rest);
			return 0;
		}
		if (len >= DAW_LINE_MAX)
			return SFA_ETOOBIG;
	}
}

static void daw_reap(pid_t pid, int fd)
{
	close(fd);
	kill(-pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
}

/* Answers the child's error line. */
static void daw_child_error(struct http_ctx *ctx, struct daw_req *r, const struct mixer_manifest *m,
                            json_t *line)
{
	const char *code = json_str(line, "code");
	const char *why = json_str(line, "error");
	json_t *jstem = json_object_get(line, "stem");
	int stem = json_is_integer(jstem) ? (int)json_integer_value(jstem) : -1;
	if (code && strcmp(code, "invalid_audio") == 0 && stem >= 0 && stem < m->n_stems) {
		const struct mixer_stem *s = &m->stems[stem];
		char path[64], msg[900];
		if (s->file >= 0) {
			snprintf(path, sizeof path, "stems[%d].file", stem);
			snprintf(msg, sizeof msg,
			         "the uploaded file \"%.200s\" is not audio this server can "
			         "decode: %.500s",
			         r->names[s->file], why ? why : "unknown error");
		} else {
			snprintf(path, sizeof path, "stems[%d].stem_id", stem);
			snprintf(msg, sizeof msg, "the stored stem cannot be decoded: %.500s",
			         why ? why : "unknown error");
		}
		http_error_details(ctx, 422, "invalid_audio",
		                   "A stem is not audio this server can decode.",
		                   json_pack("{s:[s]}", path, msg));
		return;
	}
	if (code && strcmp(code, "too_long") == 0) {
		http_error_details(ctx, 422, "validation_failed", "The mix is too long.",
		                   json_pack("{s:[s]}", "manifest", why ? why : "too long"));
		return;
	}
	log_error("daw: the renderer failed: %s", why ? why : "(no message)");
	http_error(ctx, 500, "internal", "The mix could not be rendered.");
}

/* Runs the renderer and, once its first line is in, answers with the relay. */
static void daw_render(struct http_ctx *ctx, struct daw_req *r, const struct mixer_manifest *m,
                       const char *const *stem_args, const struct db_track *t)
{
	struct arena *a = &ctx->arena;
	char *argv[8 + 2 * MIXER_MAX_FILES + 2 * MIXER_MAX_STEMS];
	int n = 0;
	argv[n++] = "sfa";
	argv[n++] = "daw-render";
	argv[n++] = "--manifest";
	argv[n++] = arena_printf(a, "%s/manifest.json", r->dir);
	argv[n++] = "--work";
	argv[n++] = r->dir;
	for (int i = 0; i < r->n_files; i++) {
		argv[n++] = "--file";
		argv[n++] = arena_printf(a, "%s/%d.part", r->dir, i);
	}
	for (int i = 0; i < m->n_stems; i++) {
		if (stem_args[i]) {
			argv[n++] = "--stem";
			argv[n++] = (char *)stem_args[i];
		}
	}
	argv[n] = NULL;
	for (int i = 0; i < n; i++) {
		if (!argv[i]) {
			http_error(ctx, 500, "internal", "Out of memory.");
			return;
		}
	}
	int mfd = open(argv[3], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	bool wrote = mfd >= 0 && write(mfd, r->manifest, r->n_manifest) == (ssize_t)r->n_manifest;
	if (mfd >= 0)
		close(mfd);
	if (!wrote) {
		log_error("daw: cannot write the manifest: %s", strerror(errno));
		http_error(ctx, 500, "internal", "The server could not store the manifest.");
		return;
	}
	struct proc_spawn_opts po = {
		.out_fd = 1, .memory_mb = ctx->app->cfg.job_memory_mb, .cpu_s = DAW_CPU_S};
	pid_t pid;
	int fd;
	if (proc_spawn(ctx->app->exe, argv, &po, &pid, &fd) != 0) {
		log_error("daw: cannot start the renderer: %s", strerror(errno));
		http_error(ctx, 500, "internal", "The mix could not be rendered.");
		return;
	}
	char line[DAW_LINE_MAX];
	char *rest = NULL;
	size_t n_rest = 0;
	int64_t deadline = time_mono_ms() + (int64_t)DAW_RENDER_TIMEOUT_S * 1000;
	int rc = daw_read_line(fd, deadline, line, sizeof line, &rest, &n_rest);
	json_error_t je;
	json_t *info = rc == 0 ? json_loads(line, 0, &je) : NULL;
	json_t *jbytes = json_object_get(info, "bytes");
	if (!json_is_integer(jbytes) || json_integer_value(jbytes) <= 0) {
		daw_reap(pid, fd);
		free(rest);
		if (rc == SFA_ETIMEOUT) {
			log_error("daw: the renderer took longer than %d s", DAW_RENDER_TIMEOUT_S);
			http_error(ctx, 500, "internal", "The mix took too long to render.");
		} else if (json_is_object(info)) {
			daw_child_error(ctx, r, m, info);
		} else {
			log_error("daw: the renderer ended without an answer");
			http_error(ctx, 500, "internal", "The mix could not be rendered.");
		}
		json_decref(info);
		return;
	}
	struct daw_stream *s = calloc(1, sizeof *s);
	if (!s) {
		daw_reap(pid, fd);
		free(rest);
		json_decref(info);
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	s->pid = pid;
	s->fd = fd;
	s->head = rest;
	s->n_head = n_rest;
	s->total = (uint64_t)json_integer_value(jbytes);
	json_int_t clipped = json_integer_value(json_object_get(info, "clipped"));
	json_decref(info);
	struct MHD_Response *resp = MHD_create_response_from_callback(
		s->total, DAW_RELAY_BLOCK, daw_stream_read, s, daw_stream_free);
	if (!resp) {
		daw_stream_free(s);
		http_error(ctx, 500, "internal", "The mix could not be sent.");
		return;
	}
	/* The directory now lives as long as the response (the child reads from it). */
	str_copy(s->dir, sizeof s->dir, r->dir);
	r->dir[0] = '\0';
	MHD_add_response_header(resp, "Content-Type", "audio/wav");
	api_attachment(ctx, t, "mix", "wav");
	char v[32];
	snprintf(v, sizeof v, "%lld", (long long)clipped);
	http_set_header(ctx, "X-SFA-Clipped-Samples", v);
	ctx->resp_override = resp;
	ctx->status = 200;
	ctx->resp_bytes = s->total;
}

/* Stored stems: the caller's own only, as files in the data directory. */
struct daw_stem_check {
	struct http_ctx *ctx;
	const char *args[MIXER_MAX_STEMS]; /* "--stem" values, "ID=PATH", per manifest stem */
};

static const char *daw_check_stem(void *arg, int i, const char *stem_id)
{
	struct daw_stem_check *sc = arg;
	struct http_ctx *ctx = sc->ctx;
	struct db_stem s;
	if (db_stem_get(ctx->app->db, ctx->user.id, stem_id, &s) != 0)
		return "is not one of your stems";
	char local[PATH_MAX * 2];
	if (storage_local_path(&ctx->app->store, s.file_path, local, sizeof local) != 0)
		return "this stem has no audio file";
	sc->args[i] = arena_printf(&ctx->arena, "%s=%s", s.id, local);
	return sc->args[i] ? NULL : "could not be looked up (out of memory)";
}

void api_daw_export(struct http_ctx *ctx)
{
	struct daw_req *r = ctx->route_state;
	if (!r) {
		http_error(ctx, 400, "bad_request", daw_usage);
		return;
	}
	int rc = multipart_finish(&r->mp);
	if (rc) {
		api_multipart_error(ctx, &r->mp, rc);
		return;
	}
	if (api_csrf_refused(ctx))
		return;
	struct db_track t;
	memset(&t, 0, sizeof t);
	if (r->have_track_id && (r->track_id_too_long || !uuid_valid(r->track_id) ||
	                         db_track_get(ctx->app->db, ctx->user.id, r->track_id, &t) != 0)) {
		api_not_found(ctx, "The track");
		return;
	}
	struct mixer_errors *errs = calloc(1, sizeof *errs);
	struct mixer_manifest m;
	memset(&m, 0, sizeof m);
	bool have_m = false;
	if (!errs) {
		http_error(ctx, 500, "internal", "Out of memory.");
		return;
	}
	if (!r->have_track_id)
		mixer_errors_add(errs, "track_id", "can't be blank");
	struct daw_stem_check sc = {ctx, {0}};
	if (!r->have_manifest || r->n_manifest == 0) {
		mixer_errors_add(errs, "manifest", "can't be blank");
	} else {
		rc = mixer_manifest_parse(r->manifest, r->n_manifest, r->n_files, daw_check_stem,
		                          &sc, &m, errs);
		if (rc == SFA_ENOMEM) {
			free(errs);
			http_error(ctx, 500, "internal", "Out of memory.");
			return;
		}
		have_m = rc == 0;
	}
	if (errs->n || errs->n_dropped) {
		http_error_details(ctx, 422, "validation_failed",
		                   "The export request is not valid.", daw_details(errs));
		goto out;
	}
	if (daw_make_dir(r) != 0) {
		http_error(ctx, 500, "internal", "The server could not store the manifest.");
		goto out;
	}
	daw_render(ctx, r, &m, sc.args, &t);
out:
	if (have_m)
		mixer_manifest_free(&m);
	free(errs);
}
