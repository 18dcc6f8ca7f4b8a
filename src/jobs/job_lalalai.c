/* job_lalalai.c - the "lalalai" job: stem separation in the cloud. It has slots of its own
 * (SFA_JOBS_LALALAI), so a cloud job that waits on lal.ai never holds up local separations;
 * clients see it as a "processing" job with engine "lalalai" (registry.h, shown_as).
 *
 * Payload: {"model", "engine": "lalalai", "output_format"}. The model
 * picks the stem set, mapped onto lal.ai's multistem split:
 *   4-stem models: vocals, drum, bass → vocals, drums, bass; the remainder ("back",
 *                  no_multistem) → other
 *   htdemucs_6s:   adds piano → piano and electric_guitar + acoustic_guitar → guitar
 *                  (the two summed)
 * Steps, with progress: upload the track's audio (1-20 %), split, poll lal.ai's progress
 * with check calls (20-70 %, within an overall SFA_LALALAI_DEADLINE_S), download every result track
 * to the scratch directory (70-90 %, "<file>.part" until complete, resumed after a cut),
 * decode each and write it in the requested format (90-98 %), then publish like the local
 * engine (job_stems_publish, stems.h) with engine "lalalai".
 *
 * Never paying twice: the lalalai_tasks row of the job (db.h) keeps the source id, the
 * task id and the idempotency key of its one split: the job's id, the same for every
 * attempt of the job and new for every job (a retry from the API is a new job, so lal.ai
 * takes its split). A retried attempt skips the upload when it has a source, and the
 * split when it has a task; a split that reached lal.ai but whose answer was lost is
 * refused by lal.ai (idempotency_key_used) instead of being charged again, and fails the
 * job clearly.
 *
 * Check spacing: lal.ai allows 20 checks a minute per license key, counted over every job
 * that uses the key on every node. Before each check a job reserves the key's next slot in
 * the database (db_lalalai_check_slot, keyed by the key's SHA-256), so all the checks of
 * one key, whichever process makes them, are SFA_LALALAI_CHECK_INTERVAL_MS apart; n jobs
 * polling at once each check every n intervals.
 *
 * Cancellation: the scheduler sends SIGTERM (SIGKILL 3 s later). The handler only sets a
 * flag; the client's transfers and sleeps watch it and stop at once, and the worker then
 * asks lal.ai to cancel the task (one short call) before it exits.
 */
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audio/audio.h"
#include "clients/lalalai.h"
#include "core/lalalai_key.h"
#include "core/token.h"
#include "jobs/stems.h"
#include "jobs/workers.h"
#include "util/err.h"
#include "util/log.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/timeutil.h"

enum { MAX_OUT = 6, PCT_UPLOAD_END = 20, PCT_TASK_END = 70, PCT_DOWNLOAD_END = 90 };

static volatile sig_atomic_t g_cancel;

static void on_term(int sig)
{
	(void)sig;
	g_cancel = 1;
}

/* One output stem and the lal.ai labels summed into it. */
struct out_stem {
	const char *name;
	const char *labels[2];
};

static const struct out_stem four[] = {
	{"drums", {"drum", NULL}},
	{"bass", {"bass", NULL}},
	{"other", {"no_multistem", NULL}},
	{"vocals", {"vocals", NULL}},
};
static const struct out_stem six[] = {
	{"drums", {"drum", NULL}},
	{"bass", {"bass", NULL}},
	{"other", {"no_multistem", NULL}},
	{"vocals", {"vocals", NULL}},
	{"guitar", {"electric_guitar", "acoustic_guitar"}},
	{"piano", {"piano", NULL}},
};
static const char *const four_list[] = {"vocals", "drum", "bass"};
static const char *const six_list[] = {"vocals",          "drum",           "bass", "piano",
                                       "electric_guitar", "acoustic_guitar"};

struct lj {
	struct job_run *r;
	struct lalalai_client *c;
	struct db_lalalai_task task;
	struct db_track track;
	const char *model;
	const char *ext;
	const struct out_stem *outs;
	int n_outs;
	const char *const *stem_list;
	size_t n_stem_list;
	int last_pct;
	char last_msg[128];
	char key_hash[TOKEN_HASH_LEN]; /* the license key's SHA-256: its check slots' row */
	/* download progress */
	int n_downloads, i_download;
};

static void report(struct lj *j, int pct, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct lj *j, int pct, const char *fmt, ...)
{
	char msg[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (pct == j->last_pct && strcmp(msg, j->last_msg) == 0)
		return;
	j->last_pct = pct;
	str_copy(j->last_msg, sizeof j->last_msg, msg);
	job_report(j->r, pct, "processing", msg);
}

static int fail(struct lj *j, bool retry, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct lj *j, bool retry, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->r->error, sizeof j->r->error, fmt, ap);
	va_end(ap);
	j->r->retry = retry;
	return code;
}

static void save_task(struct lj *j, const char *status)
{
	if (status)
		str_copy(j->task.status, sizeof j->task.status, status);
	if (db_lalalai_task_update(j->r->db, &j->task, (int64_t)time(NULL)) != 0)
		log_warn("job %s: the lal.ai task state could not be saved", j->r->job.id);
}

/* The user's fault or lal.ai's refusal (no retry) vs. trouble that may pass (retry). */
static int client_fail(struct lj *j, int rc, const char *what, const char *err)
{
	if (rc == SFA_ECANCELED)
		return fail(j, false, rc, "cancelled");
	bool retry = rc == SFA_EUPSTREAM || rc == SFA_ETIMEOUT || rc == SFA_EIO ||
	             rc == SFA_ENOTFOUND;
	return fail(j, retry, rc, "%s: %s", what, err);
}

/* After a cancel: tell lal.ai, with a short budget (SIGKILL follows 3 s after SIGTERM). */
static int cancelled(struct lj *j)
{
	if (j->task.task_id[0]) {
		char key[LALALAI_KEY_MAX + 1], err[256];
		if (lalalai_key_resolve(j->r->db, j->r->cfg, j->r->job.user_id, key, NULL, err,
		                        sizeof err) == 0) {
			struct lalalai_config lc = {.base_url = j->r->cfg->lalalai_url,
			                            .license_key = key,
			                            .timeout_ms = 2000,
			                            .connect_timeout_ms = 1000,
			                            .max_tries = 1};
			struct lalalai_client *c = NULL;
			if (lalalai_client_new(&lc, &c, err, sizeof err) == 0) {
				const char *ids[] = {j->task.task_id};
				bool ok = false;
				if (lalalai_cancel(c, ids, 1, &ok, err, sizeof err) != 0)
					log_warn("job %s: lal.ai cancel failed: %s", j->r->job.id,
					         err);
				lalalai_client_free(c);
			}
			memset(key, 0, sizeof key);
		}
		save_task(j, "cancelled");
	}
	return fail(j, false, SFA_ECANCELED, "cancelled");
}

static void on_upload(void *user, int64_t done, int64_t total)
{
	struct lj *j = user;
	if (total > 0)
		report(j, 1 + (int)((PCT_UPLOAD_END - 1) * done / total),
		       "uploading to lal.ai: %d %%", (int)(100 * done / total));
}

static void on_download(void *user, int64_t done, int64_t total)
{
	struct lj *j = user;
	int span = PCT_DOWNLOAD_END - PCT_TASK_END;
	int base = PCT_TASK_END + span * j->i_download / (j->n_downloads ? j->n_downloads : 1);
	int part = total > 0 ? (int)(span * done / total) / (j->n_downloads ? j->n_downloads : 1)
	                     : 0;
	report(j, base + part, "downloading stems from lal.ai: %d of %d", j->i_download + 1,
	       j->n_downloads);
}

/* Uploads the track's audio (unless an earlier attempt did) and starts the split (unless
 * an earlier attempt did). */
static int start(struct lj *j)
{
	char err[512];
	int rc;
	if (!j->task.source_id[0]) {
		char path[PATH_MAX * 2], name[2 * DB_TEXT_MAX + 16];
		if (storage_local_path(&j->r->store, j->track.audio_path, path, sizeof path) != 0)
			return fail(j, false, SFA_EINVAL,
			            "The track's audio is outside the library.");
		const char *dot = strrchr(j->track.audio_path, '.');
		snprintf(name, sizeof name, "%s%s%s%s", j->track.artist,
		         j->track.artist[0] ? " - " : "",
		         j->track.title[0] ? j->track.title : "audio",
		         dot && strlen(dot) < 8 ? dot : "");
		report(j, 1, "uploading to lal.ai");
		struct lalalai_source src;
		rc = lalalai_upload(j->c, path, name, on_upload, j, &src, err, sizeof err);
		if (rc)
			return client_fail(j, rc, "The upload to lal.ai failed", err);
		str_copy(j->task.source_id, sizeof j->task.source_id, src.id);
		j->task.duration_s = src.duration_s > 0 ? src.duration_s
		                                        : j->track.audio_duration_s;
		save_task(j, "pending");
	}
	char task_id[LALALAI_ID_MAX];
	rc = lalalai_split(j->c, j->task.source_id, j->stem_list, j->n_stem_list,
	                   j->task.idempotency_key, task_id, err, sizeof err);
	if (rc == LALALAI_EIDEMPOTENT)
		return fail(j, false, rc,
		            "lal.ai already received this separation but its task id was lost; "
		            "start a new separation.");
	if (rc)
		return client_fail(j, rc, "lal.ai refused the separation", err);
	str_copy(j->task.task_id, sizeof j->task.task_id, task_id);
	save_task(j, "progress");
	log_info("job %s: lal.ai task %s", j->r->job.id, task_id);
	return 0;
}

/* Sleeps until the monotonic time `until`, in slices; false when cancelled. */
static bool wait_until(int64_t until)
{
	for (;;) {
		if (g_cancel)
			return false;
		int64_t left = until - time_mono_ms();
		if (left <= 0)
			return true;
		long ms = left < 50 ? (long)left : 50;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* The monotonic time of this job's next check: the key's next free slot (see the top).
 * Without the database, the job keeps one interval after its own last check. */
static int64_t check_slot(struct lj *j)
{
	int interval_ms = j->r->cfg->lalalai_check_interval_ms;
	int64_t now_ms = time_real_ms();
	int64_t at_ms;
	if (db_lalalai_check_slot(j->r->db, j->key_hash, now_ms, interval_ms, &at_ms) == 0)
		return time_mono_ms() + (at_ms - now_ms);
	log_warn("job %s: no lal.ai check slot from the database; waiting one interval",
	         j->r->job.id);
	return time_mono_ms() + interval_ms;
}

/* Polls the task until it ends; fills *st on success. */
static int poll_task(struct lj *j, struct lalalai_status *st)
{
	const struct config *cfg = j->r->cfg;
	int64_t deadline = time_mono_ms() + (int64_t)cfg->lalalai_deadline_s * 1000;
	const char *ids[] = {j->task.task_id};
	char err[512];
	for (;;) {
		if (!wait_until(check_slot(j)))
			return cancelled(j);
		if (time_mono_ms() > deadline) {
			cancelled(j);
			return fail(
				j, false, SFA_ETIMEOUT,
				"lal.ai did not finish the separation within %d s; it was cancelled.",
				cfg->lalalai_deadline_s);
		}
		int rc = lalalai_check(j->c, ids, 1, st, err, sizeof err);
		if (rc == SFA_ECANCELED || g_cancel)
			return cancelled(j);
		if (rc)
			return client_fail(j, rc, "Checking the lal.ai task failed", err);
		switch (st->state) {
		case LALALAI_PROGRESS:
		case LALALAI_UNKNOWN: /* not visible yet right after the split */
			report(j,
			       PCT_UPLOAD_END +
			               (PCT_TASK_END - PCT_UPLOAD_END) * st->progress / 100,
			       "lal.ai task %s: %s%d %%", j->task.task_id,
			       st->progress == 0 ? "queued, " : "", st->progress);
			continue;
		case LALALAI_SUCCESS:
			if (st->duration_s > 0)
				j->task.duration_s = st->duration_s;
			save_task(j, "success"); /* charged now, whatever happens next */
			return 0;
		case LALALAI_ERROR:
			save_task(j, "error");
			return fail(j, false, SFA_EUPSTREAM,
			            "lal.ai could not separate this track: %s", st->error);
		case LALALAI_CANCELLED:
			save_task(j, "cancelled");
			return fail(j, false, SFA_ECANCELED, "cancelled");
		case LALALAI_SERVER_ERROR:
			save_task(j, "error");
			return fail(j, false, SFA_EUPSTREAM, "lal.ai failed while separating: %s",
			            st->error);
		}
	}
}

static const struct lalalai_track *find_track(const struct lalalai_status *st, const char *label)
{
	bool back = strcmp(label, "no_multistem") == 0;
	for (size_t i = 0; i < st->n_tracks; i++)
		if (strcmp(st->tracks[i].label, label) == 0 ||
		    (back && strcmp(st->tracks[i].type, "back") == 0))
			return &st->tracks[i];
	return NULL;
}

/* Downloads every needed track to work_dir/lal_<label>.src. */
static int download_all(struct lj *j, const struct lalalai_status *st)
{
	const struct lalalai_track *need[LALALAI_MAX_TRACKS];
	const char *labels[LALALAI_MAX_TRACKS];
	int n = 0;
	for (int o = 0; o < j->n_outs; o++)
		for (int k = 0; k < 2 && j->outs[o].labels[k]; k++) {
			const struct lalalai_track *t = find_track(st, j->outs[o].labels[k]);
			if (!t)
				return fail(j, false, SFA_EUPSTREAM,
				            "lal.ai's result has no %s track.",
				            j->outs[o].labels[k]);
			need[n] = t;
			labels[n++] = j->outs[o].labels[k];
		}
	j->n_downloads = n;
	for (int i = 0; i < n; i++) {
		j->i_download = i;
		char dest[PATH_MAX + 128], err[512];
		snprintf(dest, sizeof dest, "%s/lal_%s.src", j->r->work_dir, labels[i]);
		on_download(j, 0, 0);
		int rc = lalalai_download(j->c, need[i]->url, dest, need[i]->size, on_download, j,
		                          err, sizeof err);
		if (rc)
			return client_fail(j, rc, "Downloading the stems from lal.ai failed", err);
	}
	return 0;
}

/* Decodes the downloaded tracks of one output (summing two for guitar) and writes it. */
static int convert_one(struct lj *j, const struct out_stem *o, double *duration)
{
	struct audio_buf sum = {0};
	char err[512];
	for (int k = 0; k < 2 && o->labels[k]; k++) {
		char src[PATH_MAX + 128];
		snprintf(src, sizeof src, "%s/lal_%s.src", j->r->work_dir, o->labels[k]);
		struct audio_buf b = {0};
		int rc = audio_decode(src, sum.data ? sum.sample_rate_hz : 0, 2, 0, &b, err,
		                      sizeof err);
		if (rc) {
			audio_buf_free(&sum);
			return fail(j, false, rc, "lal.ai's %s track could not be decoded: %s",
			            o->labels[k], err);
		}
		unlink(src);
		if (!sum.data) {
			sum = b;
			continue;
		}
		/* Sum planar channels; the longer one decides the length. */
		if (b.n_frames > sum.n_frames) {
			struct audio_buf t = sum;
			sum = b;
			b = t;
		}
		for (int c = 0; c < 2; c++)
			for (size_t i = 0; i < b.n_frames; i++)
				sum.data[(size_t)c * sum.n_frames + i] +=
					b.data[(size_t)c * b.n_frames + i];
		audio_buf_free(&b);
	}
	char out[PATH_MAX + 128];
	snprintf(out, sizeof out, "%s/%s.%s", j->r->work_dir, o->name, j->ext);
	enum audio_container kind = strcmp(j->ext, "flac") == 0  ? AUDIO_FLAC
	                            : strcmp(j->ext, "mp3") == 0 ? AUDIO_MP3
	                                                         : AUDIO_WAV;
	int rc = audio_write(out, &sum, kind, AUDIO_PCM16, err, sizeof err);
	if (rc == 0 && sum.sample_rate_hz > 0)
		*duration = (double)sum.n_frames / sum.sample_rate_hz;
	audio_buf_free(&sum);
	if (rc)
		return fail(j, true, rc, "The %s stem could not be written: %s", o->name, err);
	return 0;
}

int job_worker_lalalai(struct job_run *r)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);

	struct lj j;
	memset(&j, 0, sizeof j);
	j.r = r;
	j.last_pct = -1;
	j.model = json_string_value(json_object_get(r->payload, "model"));
	const char *format = json_string_value(json_object_get(r->payload, "output_format"));
	j.ext = format && (strcmp(format, "flac") == 0 || strcmp(format, "mp3") == 0) ? format
	                                                                              : "wav";
	if (!j.model)
		j.model = "htdemucs";
	bool six_stems = strcmp(j.model, "htdemucs_6s") == 0;
	j.outs = six_stems ? six : four;
	j.n_outs = six_stems ? 6 : 4;
	j.stem_list = six_stems ? six_list : four_list;
	j.n_stem_list = six_stems ? 6 : 3;
	if (db_track_get(r->db, r->job.user_id, r->job.track_id, &j.track) != 0 ||
	    !j.track.audio_path[0])
		return fail(&j, false, SFA_ENOTFOUND, "The track or its audio no longer exists.");
	char err[512];
	char key[LALALAI_KEY_MAX + 1];
	int rc = lalalai_key_resolve(r->db, r->cfg, r->job.user_id, key, NULL, err, sizeof err);
	if (rc == 0) {
		token_hash(key, j.key_hash);
		memset(key, 0, sizeof key);
		rc = lalalai_client_for_user(r->db, r->cfg, r->job.user_id, &g_cancel, &j.c, err,
		                             sizeof err);
	}
	if (rc)
		return fail(&j, false, rc, "%s", err);
	rc = db_lalalai_task_ensure(r->db, r->job.id, r->job.user_id, r->job.id,
	                            (int64_t)time(NULL), &j.task);
	if (rc) {
		lalalai_client_free(j.c);
		return fail(&j, true, rc, "The lal.ai task could not be recorded.");
	}
	struct lalalai_status *st = calloc(1, sizeof *st);
	if (!st) {
		lalalai_client_free(j.c);
		return fail(&j, true, SFA_ENOMEM, "Out of memory.");
	}
	if (!j.task.task_id[0])
		rc = start(&j);
	else
		log_info("job %s: resuming lal.ai task %s", r->job.id, j.task.task_id);
	if (rc == 0 && g_cancel)
		rc = cancelled(&j);
	if (rc == 0)
		rc = poll_task(&j, st);
	if (rc == 0)
		rc = download_all(&j, st);
	double duration = 0;
	for (int o = 0; rc == 0 && o < j.n_outs; o++) {
		report(&j, PCT_DOWNLOAD_END + 8 * o / j.n_outs, "converting the %s stem",
		       j.outs[o].name);
		double d = 0;
		rc = convert_one(&j, &j.outs[o], &d);
		if (d > duration)
			duration = d;
	}
	if (rc == 0 && g_cancel) /* nothing is published once a cancel arrived */
		rc = cancelled(&j);
	if (rc == 0) {
		const char *names[MAX_OUT];
		for (int o = 0; o < j.n_outs; o++)
			names[o] = j.outs[o].name;
		json_t *list = NULL;
		rc = job_stems_publish(r, names, j.n_outs, j.ext, duration, "lalalai", j.model,
		                       &list);
		if (rc == 0) {
			save_task(&j, "success");
			r->result = json_pack("{s:s, s:s, s:s, s:o, s:f}", "model", j.model,
			                      "engine", "lalalai", "lalalai_task_id",
			                      j.task.task_id, "stems", list, "duration", duration);
			/* The upload is no longer needed at lal.ai: remove it (best effort). */
			if (lalalai_delete_source(j.c, j.task.source_id, err, sizeof err) != 0)
				log_warn("job %s: deleting the lal.ai upload failed: %s", r->job.id,
				         err);
			job_report(r, 100, "processing", "done");
		}
	}
	free(st);
	lalalai_client_free(j.c);
	return rc;
}
