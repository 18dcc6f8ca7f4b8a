/* job_download.c - the "download" job type: find a track's audio with yt-dlp, convert it
 * with ffmpeg to the requested quality, validate it, and put it in the library.
 *
 * Steps, all inside the job's scratch directory (removed by the scheduler afterwards, so a
 * failure at any point leaves no partial file behind):
 *   1. Check the tools: ffmpeg on PATH and yt-dlp (SFA_YTDLP). A missing tool is a
 *      permanent failure with the command that installs it.
 *   2. Find the source. URL-template mode (SFA_DOWNLOAD_QUERY holds {spotify_id}) takes
 *      that URL. Search mode runs `yt-dlp --flat-playlist --dump-json <prefix>:<title>
 *      <artist>` and keeps the result whose duration is closest to Spotify's, within 10 s.
 *   3. Download with yt-dlp (progress 0-70 %, status "downloading", real numbers from the
 *      --progress-template lines). yt-dlp only downloads here: the conversion is ours, so
 *      every quality gives exactly its codec and bitrate (yt-dlp's own -x skips converting
 *      a source already in the target codec, which would keep an MP3 at its bitrate).
 *   4. Validate the download by decoding it (audio_probe), then convert with ffmpeg:
 *      lossless → FLAC, high/medium/low → MP3 CBR 320/192/128 kbit/s (70-95 %, status
 *      "processing", progress from ffmpeg's -progress output). Validate the result again.
 *   5. Move it into data/uploads/downloads/<track-id>/<artist>-<title>.<ext> (one rename
 *      within the data directory) and record it with db_track_set_audio; an earlier
 *      download of the track under another name is removed after the switch.
 * yt-dlp and ffmpeg run through util/proc.h (argv arrays, their own process group, killed
 * as a group at the SFA_DOWNLOAD_TIMEOUT_S deadline, and when the job is cancelled).
 *
 * Retry policy: permanent failures (missing tools, no match, unavailable or unsupported
 * source, not audio, a deleted track) set r->retry = false; network trouble and time-outs
 * may be retried by the scheduler.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audio/audio.h"
#include "clients/ytdlp.h"
#include "jobs/workers.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/timeutil.h"

enum { PCT_DOWNLOAD_END = 70, PCT_CONVERT_START = 72, PCT_CONVERT_END = 95 };

struct quality {
	const char *name;
	const char *ext;
	const char *codec;   /* ffmpeg encoder */
	const char *bitrate; /* -b:a, NULL for lossless */
	const char *label;
};

static const struct quality qualities[] = {
	{"lossless", "flac", "flac", NULL, "FLAC (lossless)"},
	{"high", "mp3", "libmp3lame", "320k", "MP3 320 kbit/s"},
	{"medium", "mp3", "libmp3lame", "192k", "MP3 192 kbit/s"},
	{"low", "mp3", "libmp3lame", "128k", "MP3 128 kbit/s"},
};

struct dl {
	struct job_run *r;
	const struct quality *q;
	struct db_track track;
	char ytdlp[PATH_MAX];
	char ffmpeg[PATH_MAX];
	int64_t deadline_ms;
	char source_url[YTDLP_URL_MAX];
	/* progress reporting */
	int last_pct;
	const char *last_status;
	/* stdout parsing */
	struct ytdlp_pick pick;
	double convert_total_s;
};

/* snprintf that says whether everything fit (paths must never be cut short). */
static bool fmt_fits(char *out, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fmt_fits(char *out, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	return k >= 0 && (size_t)k < n;
}

static bool status_is(const struct dl *d, const char *status)
{
	return d->last_status && strcmp(d->last_status, status) == 0;
}

static void report(struct dl *d, int pct, const char *status, const char *message)
{
	if (pct == d->last_pct && status_is(d, status))
		return;
	d->last_pct = pct;
	d->last_status = status;
	job_report(d->r, pct, status, message);
}

static int fail(struct dl *d, bool retry, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct dl *d, bool retry, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->r->error, sizeof d->r->error, fmt, ap);
	va_end(ap);
	d->r->retry = retry;
	return code;
}

static int timeout_failure(struct dl *d)
{
	return fail(d, true, SFA_ETIMEOUT,
	            "The download did not finish within %d s and was stopped; it will be tried "
	            "again (raise SFA_DOWNLOAD_TIMEOUT_S for very long tracks).",
	            d->r->cfg->download_timeout_s);
}

static const char install_ytdlp[] =
	"install a current yt-dlp (python3 -m pip install -U yt-dlp, or the binary from "
	"github.com/yt-dlp/yt-dlp/releases, then set SFA_YTDLP to its path; Debian's "
	"apt-get install yt-dlp only handles plain URLs)";

static int not_started(struct dl *d, const char *what, int e)
{
	if (strcmp(what, "yt-dlp") == 0)
		return fail(d, false, SFA_EUNSUPP, "yt-dlp could not be started (%s): %s.",
		            strerror(e), install_ytdlp);
	return fail(d, false, SFA_EUNSUPP,
	            "ffmpeg could not be started (%s); install it with apt-get install ffmpeg.",
	            strerror(e));
}

/* Runs yt-dlp or ffmpeg (what names it) under the job's deadline. 0 when it ran to its end:
 * *pr_out (caller frees) holds its exit code and stderr tail for the caller to judge.
 * Otherwise the job's failure is already recorded (the run could not be made, the program
 * could not be started, the deadline passed), the code is returned and *pr_out is NULL. */
static int run_tool(struct dl *d, const char *what, const struct proc_opts *o,
                    struct proc_result **pr_out)
{
	*pr_out = NULL;
	struct proc_result *pr = malloc(sizeof *pr);
	if (!pr)
		return fail(d, true, SFA_ENOMEM, "The server ran out of memory.");
	char err[256];
	int rc = proc_run(o, pr, err, sizeof err);
	if (rc)
		rc = fail(d, true, rc, "%s", err);
	else if (pr->exec_failed)
		rc = not_started(d, what, pr->exec_errno);
	else if (pr->timed_out)
		rc = timeout_failure(d);
	if (rc) {
		free(pr);
		return rc;
	}
	*pr_out = pr;
	return 0;
}

/* ---- Finding the source ---------------------------------------------------------------- */

static void on_search_line(void *arg, const char *line)
{
	struct dl *d = arg;
	ytdlp_pick_feed(&d->pick, line);
}

static void fmt_duration(double s, char *out, size_t n)
{
	long t = lround(s);
	snprintf(out, n, "%ld:%02ld", t / 60, t % 60);
}

static int search_source(struct dl *d)
{
	const struct config *cfg = d->r->cfg;
	report(d, 1, "downloading", "searching for the audio");
	char query[sizeof cfg->download_query + 2 * DB_TEXT_MAX + 8];
	fmt_fits(query, sizeof query, "%s:%s %s", cfg->download_query, d->track.title,
	         d->track.artist);
	const char *argv[] = {d->ytdlp,
	                      "--ignore-config",
	                      "--no-cache-dir",
	                      "--no-warnings",
	                      "--flat-playlist",
	                      "--dump-json",
	                      "--socket-timeout",
	                      "30",
	                      "--",
	                      query,
	                      NULL};
	const char *env[] = {"PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8", NULL};
	ytdlp_pick_init(&d->pick, (double)d->track.duration_s);
	struct proc_opts o = {.argv = argv,
	                      .cwd = d->r->work_dir,
	                      .env_add = env,
	                      .deadline_ms = d->deadline_ms,
	                      .on_line = on_search_line,
	                      .arg = d};
	struct proc_result *pr;
	int rc = run_tool(d, "yt-dlp", &o, &pr);
	if (rc)
		return rc;
	if (pr->exit_code != 0 && !d->pick.found) {
		bool retry;
		ytdlp_explain_failure(pr->stderr_tail, pr->exit_code, cfg->data_dir, d->r->error,
		                      sizeof d->r->error, &retry);
		d->r->retry = retry;
		rc = SFA_EUPSTREAM;
	} else if (!d->pick.found) {
		char want[48];
		fmt_duration((double)d->track.duration_s, want, sizeof want);
		if (d->pick.n_results == 0)
			rc = fail(
				d, false, SFA_ENOTFOUND,
				"No audio was found: the search for \"%s\" by %s gave no results.",
				d->track.title, d->track.artist);
		else
			rc = fail(
				d, false, SFA_ENOTFOUND,
				"No match: none of the %d search results for \"%s\" by %s is within "
				"%d s of the track's length (%s).",
				d->pick.n_results, d->track.title, d->track.artist,
				YTDLP_MATCH_TOLERANCE_S, want);
	} else {
		str_copy(d->source_url, sizeof d->source_url, d->pick.best_url);
		log_info("job %s: search picked %s (%.0f s for %lld s)", d->r->job.id,
		         d->source_url, d->pick.best_duration_s, (long long)d->track.duration_s);
	}
	free(pr);
	return rc;
}

/* SFA_DOWNLOAD_QUERY with every {spotify_id} replaced. */
static int template_source(struct dl *d)
{
	const char *t = d->r->cfg->download_query;
	struct buf b;
	buf_init(&b, sizeof d->source_url - 1);
	int rc = 0;
	while (*t && rc == 0) {
		const char *hit = strstr(t, "{spotify_id}");
		size_t n = hit ? (size_t)(hit - t) : strlen(t);
		rc = buf_append(&b, t, n);
		if (hit && rc == 0)
			rc = buf_puts(&b, d->track.spotify_id);
		t += n + (hit ? strlen("{spotify_id}") : 0);
	}
	if (rc == 0 && b.data)
		str_copy(d->source_url, sizeof d->source_url, b.data);
	buf_free(&b);
	if (rc)
		return fail(d, false, SFA_EINVAL,
		            "The download URL made from SFA_DOWNLOAD_QUERY is "
		            "too long.");
	return 0;
}

/* ---- Downloading ----------------------------------------------------------------------- */

static void on_download_line(void *arg, const char *line)
{
	struct dl *d = arg;
	int64_t done, total;
	if (!ytdlp_parse_progress(line, &done, &total) || total <= 0)
		return;
	if (done > total)
		done = total;
	int pct = (int)(done * PCT_DOWNLOAD_END / total);
	char msg[96];
	snprintf(msg, sizeof msg, "downloading: %lld of %lld KiB", (long long)(done >> 10),
	         (long long)(total >> 10));
	if (pct > d->last_pct || !status_is(d, "downloading"))
		report(d, pct > d->last_pct ? pct : d->last_pct, "downloading", msg);
}

/* The file yt-dlp left in dir (not a .part or .ytdl leftover), into out. */
static bool find_download(const char *dir, char *out, size_t n_out)
{
	DIR *dp = opendir(dir);
	if (!dp)
		return false;
	bool found = false;
	struct dirent *e;
	while (!found && (e = readdir(dp)) != NULL) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		if (strncmp(n, "source.", 7) != 0 ||
		    (len > 5 && strcmp(n + len - 5, ".part") == 0) ||
		    (len > 5 && strcmp(n + len - 5, ".ytdl") == 0))
			continue;
		struct stat st;
		found = fmt_fits(out, n_out, "%s/%s", dir, n) && stat(out, &st) == 0 &&
		        S_ISREG(st.st_mode) && st.st_size > 0;
	}
	closedir(dp);
	return found;
}

static int download(struct dl *d, char *path_out, size_t n_path_out)
{
	char dir[PATH_MAX + 80], tmpl[PATH_MAX + 100];
	snprintf(dir, sizeof dir, "%s/dl", d->r->work_dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return fail(d, true, SFA_EIO, "The job's scratch space could not be prepared.");
	snprintf(tmpl, sizeof tmpl, "%s/source.%%(ext)s", dir);
	const char *argv[] = {d->ytdlp,
	                      "--ignore-config",
	                      "--no-cache-dir",
	                      "--no-playlist",
	                      "--no-mtime",
	                      "--quiet",
	                      "--progress",
	                      "--newline",
	                      "--progress-template",
	                      YTDLP_PROGRESS_TEMPLATE,
	                      "-f",
	                      "bestaudio/best",
	                      "--socket-timeout",
	                      "30",
	                      "--retries",
	                      "3",
	                      "-o",
	                      tmpl,
	                      "--",
	                      d->source_url,
	                      NULL};
	const char *env[] = {"PYTHONUNBUFFERED=1", "PYTHONIOENCODING=utf-8", NULL};
	struct proc_opts o = {.argv = argv,
	                      .cwd = d->r->work_dir,
	                      .env_add = env,
	                      .deadline_ms = d->deadline_ms,
	                      .on_line = on_download_line,
	                      .arg = d};
	report(d, 2, "downloading", "downloading");
	struct proc_result *pr;
	int rc = run_tool(d, "yt-dlp", &o, &pr);
	if (rc)
		return rc;
	if (pr->exit_code != 0) {
		bool retry;
		ytdlp_explain_failure(pr->stderr_tail, pr->exit_code, d->r->cfg->data_dir,
		                      d->r->error, sizeof d->r->error, &retry);
		d->r->retry = retry;
		log_info("job %s: yt-dlp exited %d", d->r->job.id, pr->exit_code);
		rc = SFA_EUPSTREAM;
	} else if (!find_download(dir, path_out, n_path_out)) {
		rc = fail(d, true, SFA_EUPSTREAM, "yt-dlp finished without producing a file.");
	}
	free(pr);
	return rc;
}

/* ---- Converting ------------------------------------------------------------------------ */

static void on_ffmpeg_line(void *arg, const char *line)
{
	struct dl *d = arg;
	if (strncmp(line, "out_time_us=", 12) != 0 || d->convert_total_s <= 0)
		return;
	long long us = strtoll(line + 12, NULL, 10);
	if (us <= 0)
		return;
	double frac = (double)us / 1e6 / d->convert_total_s;
	if (frac > 1)
		frac = 1;
	int pct = PCT_CONVERT_START + (int)(frac * (PCT_CONVERT_END - PCT_CONVERT_START));
	char msg[96];
	snprintf(msg, sizeof msg, "converting to %s", d->q->label);
	if (pct > d->last_pct)
		report(d, pct, "processing", msg);
}

/* The last non-empty line of ffmpeg's stderr into out: control characters dropped first,
 * then the data directory replaced by "..", so no server path reaches the user. */
static void ffmpeg_reason(const struct dl *d, const char *text, char *out, size_t n_out)
{
	size_t n = strlen(text);
	while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
		n--;
	size_t start = n;
	while (start && text[start - 1] != '\n')
		start--;
	char clean[512];
	size_t m = 0;
	for (size_t i = start; i < n && m < sizeof clean - 1; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch >= 0x20 && ch != 0x7f)
			clean[m++] = (char)ch;
	}
	const char *redact = d->r->cfg->data_dir;
	size_t n_redact = strlen(redact), k = 0;
	for (size_t i = 0; i < m && k + 3 < n_out && k < 240;) {
		if (n_redact && m - i >= n_redact && memcmp(clean + i, redact, n_redact) == 0) {
			out[k++] = '.';
			out[k++] = '.';
			i += n_redact;
			continue;
		}
		out[k++] = clean[i++];
	}
	out[k] = '\0';
}

static int convert(struct dl *d, const char *src, const struct audio_info *in, const char *dst)
{
	d->convert_total_s = in->duration_s;
	char title[DB_TEXT_MAX + 8], artist[DB_TEXT_MAX + 8], album[DB_TEXT_MAX + 8];
	snprintf(title, sizeof title, "title=%s", d->track.title);
	snprintf(artist, sizeof artist, "artist=%s", d->track.artist);
	snprintf(album, sizeof album, "album=%s", d->track.album);
	const char *argv[40];
	int k = 0;
	const char *head[] = {d->ffmpeg,      "-nostdin",
	                      "-hide_banner", "-loglevel",
	                      "error",        "-y",
	                      "-i",           src,
	                      "-map",         "0:a:0",
	                      "-vn",          "-sn",
	                      "-dn",          "-map_metadata",
	                      "-1",           "-metadata",
	                      title,          "-metadata",
	                      artist,         "-metadata",
	                      album,          "-c:a",
	                      d->q->codec};
	for (size_t i = 0; i < sizeof head / sizeof head[0]; i++)
		argv[k++] = head[i];
	if (d->q->bitrate) {
		argv[k++] = "-b:a";
		argv[k++] = d->q->bitrate;
	}
	argv[k++] = "-progress";
	argv[k++] = "pipe:1";
	argv[k++] = "-nostats";
	argv[k++] = dst;
	argv[k] = NULL;
	struct proc_opts o = {.argv = argv,
	                      .cwd = d->r->work_dir,
	                      .deadline_ms = d->deadline_ms,
	                      .on_line = on_ffmpeg_line,
	                      .arg = d};
	struct proc_result *pr;
	int rc = run_tool(d, "ffmpeg", &o, &pr);
	if (rc)
		return rc;
	if (pr->exit_code != 0) {
		char why[256];
		ffmpeg_reason(d, pr->stderr_tail, why, sizeof why);
		rc = fail(d, false, SFA_EFORMAT,
		          "The downloaded audio could not be converted to %s: "
		          "%s",
		          d->q->label, why[0] ? why : "ffmpeg failed");
	}
	free(pr);
	return rc;
}

/* ---- Putting it in place --------------------------------------------------------------- */

/* Copies src to dst (same directory as the final file) for a cross-device move. */
static int move_into_place(struct dl *d, const char *src, const struct audio_info *info,
                           struct stat *st)
{
	const char *id = d->track.id;
	char a[120], t[120], name[260];
	if (!str_slug(d->track.artist, a, sizeof a))
		str_copy(a, sizeof a, "unknown");
	if (!str_slug(d->track.title, t, sizeof t))
		str_copy(t, sizeof t, "track");
	snprintf(name, sizeof name, "%s-%s.%s", a, t, d->q->ext);
	char rel[DB_PATH_MAX];
	if (!fmt_fits(rel, sizeof rel, "downloads/%s/%s", id, name))
		return fail(d, false, SFA_ETOOBIG, "The track's file name is too long.");
	if (storage_publish(&d->r->store, src, rel) != 0)
		return fail(d, true, SFA_EIO,
		            "The download could not be stored in the library "
		            "folder (%s).",
		            strerror(errno));
	struct db_track audio;
	memset(&audio, 0, sizeof audio);
	str_copy(audio.audio_path, sizeof audio.audio_path, rel);
	str_copy(audio.audio_format, sizeof audio.audio_format, d->q->ext);
	audio.audio_size = (int64_t)st->st_size;
	audio.audio_rate_hz = info->sample_rate_hz;
	audio.audio_channels = info->n_channels;
	audio.audio_duration_s = info->duration_s;
	int rc = db_track_set_audio(d->r->db, id, &audio);
	if (rc) {
		storage_remove(&d->r->store, rel);
		if (rc == SFA_ENOTFOUND)
			return fail(d, false, rc, "The track was deleted during the download.");
		return fail(d, true, rc, "The download could not be recorded in the database.");
	}
	/* An earlier download of this track under another name is replaced. */
	char prefix[UUID_STR_LEN + 16];
	snprintf(prefix, sizeof prefix, "downloads/%s/", id);
	const char *old = d->track.audio_path;
	if (old[0] && strcmp(old, rel) != 0 && str_starts_with(old, prefix))
		storage_remove(&d->r->store, old); /* refuses an unsafe key */
	d->r->result = json_pack("{s:s+, s:I, s:s, s:s, s:s, s:I, s:i, s:i, s:f, s:s}",
	                         "output_path", "/files/", rel, "file_size",
	                         (json_int_t)st->st_size, "format", d->q->ext, "codec", info->codec,
	                         "quality", d->q->name, "bit_rate", (json_int_t)info->bit_rate,
	                         "sample_rate", info->sample_rate_hz, "channels", info->n_channels,
	                         "duration", info->duration_s, "source_url", d->source_url);
	return 0;
}

/* ---- The worker ------------------------------------------------------------------------ */

const char *job_download_quality_valid(const char *name)
{
	for (size_t i = 0; i < sizeof qualities / sizeof qualities[0]; i++)
		if (strcmp(qualities[i].name, name) == 0)
			return qualities[i].name;
	return NULL;
}

int job_worker_download(struct job_run *r)
{
	proc_forward_termination();
	struct dl *d = calloc(1, sizeof *d);
	if (!d) {
		str_copy(r->error, sizeof r->error, "The server ran out of memory.");
		return SFA_ENOMEM;
	}
	d->r = r;
	d->last_pct = -1;
	int rc = 0;
	const char *qname = json_string_value(json_object_get(r->payload, "quality"));
	for (size_t i = 0; i < sizeof qualities / sizeof qualities[0]; i++)
		if (strcmp(qualities[i].name, qname ? qname : "high") == 0)
			d->q = &qualities[i];
	if (!d->q) {
		rc = fail(d, false, SFA_EINVAL, "The job asks for an unknown quality.");
		goto out;
	}
	if (!r->job.track_id[0] ||
	    db_track_get(r->db, r->job.user_id, r->job.track_id, &d->track) != 0) {
		rc = fail(d, false, SFA_ENOTFOUND, "The track of this download no longer exists.");
		goto out;
	}
	if (!proc_find_program("ffmpeg", d->ffmpeg, sizeof d->ffmpeg)) {
		rc = fail(d, false, SFA_EUNSUPP,
		          "ffmpeg is not installed on the server; install it "
		          "(apt-get install ffmpeg) so downloads can be converted.");
		goto out;
	}
	if (!proc_find_program(r->cfg->ytdlp, d->ytdlp, sizeof d->ytdlp)) {
		rc = fail(d, false, SFA_EUNSUPP, "yt-dlp was not found (SFA_YTDLP is \"%s\"): %s.",
		          r->cfg->ytdlp, install_ytdlp);
		goto out;
	}
	d->deadline_ms = time_mono_ms() + (int64_t)r->cfg->download_timeout_s * 1000;
	bool url_mode = strstr(r->cfg->download_query, "{spotify_id}") != NULL;
	if (url_mode && !d->track.spotify_id[0]) {
		rc = fail(d, false, SFA_EINVAL,
		          "The track has no Spotify id to build the download "
		          "URL from.");
		goto out;
	}
	rc = url_mode ? template_source(d) : search_source(d);
	if (rc)
		goto out;
	char src[PATH_MAX + 300];
	if ((rc = download(d, src, sizeof src)))
		goto out;
	report(d, PCT_DOWNLOAD_END, "processing", "checking the downloaded audio");
	struct audio_info in, res;
	char err[512];
	if (audio_probe(src, &in, err, sizeof err) != 0) {
		rc = fail(d, false, SFA_EFORMAT,
		          "The downloaded file is not audio that can be "
		          "decoded: %s.",
		          err);
		goto out;
	}
	if (in.duration_s > r->cfg->max_duration_s) {
		rc = fail(d, false, SFA_ETOOBIG,
		          "The audio found lasts %.0f minutes; this server keeps "
		          "songs of up to %d minutes (SFA_MAX_DURATION_S).",
		          in.duration_s / 60, (r->cfg->max_duration_s + 59) / 60);
		goto out;
	}
	char dst[PATH_MAX + 80];
	snprintf(dst, sizeof dst, "%s/converted.%s", r->work_dir, d->q->ext);
	report(d, PCT_CONVERT_START, "processing", d->q->label);
	if ((rc = convert(d, src, &in, dst)))
		goto out;
	report(d, PCT_CONVERT_END + 1, "processing", "validating the converted audio");
	if (audio_probe(dst, &res, err, sizeof err) != 0) {
		rc = fail(d, false, SFA_EFORMAT, "The converted file does not decode: %s.", err);
		goto out;
	}
	if (strcmp(res.codec, strcmp(d->q->ext, "flac") == 0 ? "flac" : "mp3") != 0) {
		rc = fail(d, false, SFA_EFORMAT, "The converted file holds %s audio instead of %s.",
		          res.codec, d->q->label);
		goto out;
	}
	struct stat st;
	if (stat(dst, &st) != 0) {
		rc = fail(d, true, SFA_EIO, "The converted file disappeared.");
		goto out;
	}
	report(d, 99, "processing", "saving");
	rc = move_into_place(d, dst, &res, &st);
out:
	free(d);
	return rc;
}
