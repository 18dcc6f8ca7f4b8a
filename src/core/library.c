/* library.c - see library.h. */
#include "core/library.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <stdlib.h>

#include "audio/audio.h"
#include "core/jobs.h"
#include "jobs/jobs.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/timeutil.h"
#include "util/utf8.h"
#include "util/uuid.h"

enum { PAGE = 100, ARENA_MAX = 16 << 20 };

/* The stored files' keys (util/storage.h) of the track: each stem, each job's stems folder,
 * the downloaded audio's folder. Read inside the deleting transaction, removed after it. */
static int list_files(struct db *db, const char *user_id, const char *track_id, struct arena *a,
                      char ***paths, size_t *n_paths)
{
	struct db_stem *stems;
	size_t n_stems, n_jobs;
	struct db_job *jobs;
	int64_t total;
	int rc = db_stem_list_all(db, user_id, track_id, a, &stems, &n_stems);
	if (!rc)
		rc = db_job_list(db, user_id, NULL, NULL, track_id, 0, PAGE, a, &jobs, &n_jobs,
		                 &total);
	if (rc)
		return rc;
	char **p = arena_alloc(a, (n_stems + (size_t)total + 1) * sizeof *p);
	if (!p)
		return SFA_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < n_stems; i++) /* never outside uploads/, whatever a row says */
		if (fs_rel_path_safe(stems[i].file_path, DB_PATH_MAX))
			p[n++] = arena_strdup(a, stems[i].file_path);
	for (int64_t offset = 0; !rc && offset < total; offset += PAGE) {
		if (offset)
			rc = db_job_list(db, user_id, NULL, NULL, track_id, offset, PAGE, a, &jobs,
			                 &n_jobs, &total);
		for (size_t i = 0; !rc && i < n_jobs; i++)
			p[n++] = arena_printf(a, "stems/%s", jobs[i].id);
	}
	p[n++] = arena_printf(a, "downloads/%s", track_id);
	for (size_t i = 0; !rc && i < n; i++)
		if (!p[i])
			rc = SFA_ENOMEM;
	*paths = p;
	*n_paths = n;
	return rc;
}

/* Cancels the track's jobs until none is queued or running, then in one transaction that
 * checks so again lists its files and deletes its rows. Cancelling again on every poll also
 * stops a job queued or started meanwhile; once the rows are gone no new job can be queued
 * for the track (a job's row needs its track's). */
static int delete_rows(struct db *db, struct scheduler *sched, const char *user_id,
                       const char *track_id, struct arena *a, char ***paths, size_t *n_paths)
{
	int64_t deadline = time_mono_ms() + LIBRARY_DELETE_WAIT_MS;
	for (;;) {
		int n_running = 0, n_queued = 0;
		int rc = db_track_cancel_jobs(db, user_id, track_id, (int64_t)time(NULL),
		                              &n_running);
		if (!rc && !n_running && !(rc = db_tx_begin(db))) {
			rc = db_track_job_counts(db, user_id, track_id, &n_running, &n_queued);
			if (!rc && !n_running && !n_queued) {
				rc = list_files(db, user_id, track_id, a, paths, n_paths);
				if (!rc)
					rc = db_track_delete(db, user_id, track_id);
				if (rc) {
					db_tx_rollback(db);
					return rc;
				}
				return db_tx_commit(db);
			}
			db_tx_rollback(db);
		}
		if (rc)
			return rc;
		if (n_running)
			scheduler_wake(
				sched); /* a local worker stops at once; a remote one polls */
		if (time_mono_ms() > deadline)
			return SFA_ETIMEOUT;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

/* The stems list of a worker's result as rows of job j; NULL entries are refused. */
static int stem_rows(const struct db_job *j, json_t *list, struct db_stem *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(list, i);
		const char *type = json_string_value(json_object_get(s, "stem_type"));
		const char *path = json_string_value(json_object_get(s, "file_path"));
		const char *format = json_string_value(json_object_get(s, "format"));
		const char *engine = json_string_value(json_object_get(s, "engine"));
		const char *model = json_string_value(json_object_get(s, "model"));
		json_t *size = json_object_get(s, "file_size");
		/* Only a file of this job's own folder: stems/<job id>/<name>. */
		char prefix[64];
		snprintf(prefix, sizeof prefix, "stems/%s/", j->id);
		size_t n_prefix = strlen(prefix);
		if (!type || !path || !format || !engine || !model || !json_is_integer(size) ||
		    strncmp(path, prefix, n_prefix) != 0 || !path[n_prefix] ||
		    strchr(path + n_prefix, '/') || strstr(path, ".."))
			return SFA_EINVAL;
		struct db_stem *r = &rows[i];
		memset(r, 0, sizeof *r);
		uuid_v4(r->id);
		str_copy(r->user_id, sizeof r->user_id, j->user_id);
		str_copy(r->track_id, sizeof r->track_id, j->track_id);
		str_copy(r->job_id, sizeof r->job_id, j->id);
		str_copy(r->stem_type, sizeof r->stem_type, type);
		str_copy(r->file_path, sizeof r->file_path, path);
		r->file_size = (int64_t)json_integer_value(size);
		str_copy(r->format, sizeof r->format, format);
		r->duration_s = json_number_value(json_object_get(s, "duration"));
		str_copy(r->engine, sizeof r->engine, engine);
		str_copy(r->model, sizeof r->model, model);
		r->created_at = j->started_at ? j->started_at : j->created_at;
	}
	return 0;
}

int library_job_complete(struct db *db, const struct db_job *j, const char *result_json,
                         int64_t now, char **out_result)
{
	json_error_t je;
	json_t *res = json_loads(result_json, 0, &je);
	if (!json_is_object(res)) {
		json_decref(res);
		return SFA_EINVAL;
	}
	json_t *list = json_object_get(res, "stems");
	size_t n = json_is_array(list) ? json_array_size(list) : 0;
	struct db_stem *rows = n ? calloc(n, sizeof *rows) : NULL;
	int rc = n && !rows ? SFA_ENOMEM : n ? stem_rows(j, list, rows, n) : 0;
	char *text = NULL;
	if (!rc && n) {
		json_t *shown = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(shown, json_pack("{s:s, s:s}", "id", rows[i].id,
			                                       "stem_type", rows[i].stem_type));
		json_object_set_new(res, "stems", shown);
	}
	if (!rc && !(text = json_dumps(res, JSON_COMPACT)))
		rc = SFA_ENOMEM;
	json_decref(res);
	if (!rc && !(rc = db_tx_begin(db))) {
		if (n)
			rc = db_stem_delete_for_job(db, j->id);
		for (size_t i = 0; !rc && i < n; i++)
			rc = db_stem_insert(db, &rows[i]);
		if (!rc)
			rc = db_job_complete(db, j->id, text, now);
		if (rc)
			db_tx_rollback(db);
		else
			rc = db_tx_commit(db);
	}
	free(rows);
	if (rc) {
		free(text);
		return rc;
	}
	*out_result = text;
	return 0;
}

int library_track_delete(struct db *db, struct scheduler *sched, const char *data_dir,
                         const char *user_id, const char *track_id, char *err, size_t n_err)
{
	struct db_track t;
	int rc = db_track_get(db, user_id, track_id, &t);
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "The track was not found.");
	if (rc)
		return sfa_err(err, n_err, rc, "The track could not be deleted (database error).");
	struct arena a;
	arena_init(&a, ARENA_MAX);
	char **paths = NULL;
	size_t n_paths = 0;
	rc = delete_rows(db, sched, user_id, track_id, &a, &paths, &n_paths);
	int n_failed = 0;
	struct storage store;
	if (!rc && storage_init(&store, data_dir) != 0)
		n_failed = (int)n_paths;
	else
		for (size_t i = 0; !rc && i < n_paths; i++)
			n_failed += storage_remove(&store, paths[i]) != 0;
	arena_free(&a);
	if (n_failed)
		log_warn("track %s: %d file(s) or folder(s) could not be removed", track_id,
		         n_failed);
	if (rc == SFA_ETIMEOUT)
		return sfa_err(err, n_err, rc,
		               "The track's jobs were cancelled but have not stopped yet; try "
		               "deleting it again in a few seconds.");
	if (rc == SFA_ENOTFOUND)
		return sfa_err(err, n_err, rc, "The track was not found.");
	if (rc)
		return sfa_err(err, n_err, rc, "The track could not be deleted (database error).");
	log_info("track %s deleted", track_id);
	return 0;
}

int library_transform_start(struct db *db, struct scheduler *sched, const char *user_id,
                            const struct db_track *parent, double semitones, double tempo_ratio,
                            double target_bpm, struct db_track *child, struct db_job *job,
                            char *err, size_t n_err)
{
	if (target_bpm > 0) {
		struct arena a;
		arena_init(&a, 1 << 16);
		struct db_track_summary *s = NULL;
		int rc = db_track_summaries(db, user_id, parent, 1, &a, &s);
		double tempo = rc ? 0 : s->tempo_bpm;
		arena_free(&a);
		if (rc)
			return sfa_err(err, n_err, rc,
			               "The track could not be read (database error).");
		if (!(tempo > 0))
			return sfa_err(err, n_err, SFA_ECONFLICT,
			               "The track has no tempo yet; analyse it first, or give "
			               "tempo_ratio instead of target_bpm.");
		tempo_ratio = target_bpm / tempo;
		if (!(tempo_ratio >= AUDIO_MIN_TEMPO_RATIO && tempo_ratio <= AUDIO_MAX_TEMPO_RATIO))
			return sfa_err(
				err, n_err, SFA_EINVAL,
				"From %.1f BPM, %.1f BPM needs a tempo ratio of %.2f; it must be "
				"from %.1f to %.1f.",
				tempo, target_bpm, tempo_ratio, AUDIO_MIN_TEMPO_RATIO,
				AUDIO_MAX_TEMPO_RATIO);
	}
	/* What is recorded with the track is what is rendered. */
	tempo_ratio = round(tempo_ratio * 1e6) / 1e6;
	semitones = round(semitones * 1e4) / 1e4;
	if (semitones == 0 && tempo_ratio == 1)
		return sfa_err(err, n_err, SFA_EINVAL,
		               "Nothing to change: give semitones, tempo_ratio or target_bpm.");
	char shift[32] = "", speed[32] = "";
	if (semitones != 0)
		snprintf(shift, sizeof shift, "%+.4g st", semitones);
	if (tempo_ratio != 1 && target_bpm > 0)
		snprintf(speed, sizeof speed, "%.4g BPM", target_bpm);
	else if (tempo_ratio != 1)
		snprintf(speed, sizeof speed, "%.4gx", tempo_ratio);
	memset(child, 0, sizeof *child);
	uuid_v4(child->id);
	str_copy(child->user_id, sizeof child->user_id, user_id);
	char title[DB_TEXT_MAX + 128];
	snprintf(title, sizeof title, "%s (%s%s%s)", parent->title, shift,
	         shift[0] && speed[0] ? ", " : "", speed);
	utf8_or_latin1(title, child->title, sizeof child->title); /* never cut in a character */
	str_copy(child->artist, sizeof child->artist, parent->artist);
	str_copy(child->album, sizeof child->album, parent->album);
	str_copy(child->source, sizeof child->source, "upload");
	str_copy(child->parent_id, sizeof child->parent_id, parent->id);
	snprintf(child->transform, sizeof child->transform,
	         "{\"semitones\":%.6g,\"tempo_ratio\":%.7g}", semitones, tempo_ratio);
	child->duration_s = parent->duration_s
	                            ? (int64_t)llround((double)parent->duration_s / tempo_ratio)
	                            : 0;
	child->created_at = (int64_t)time(NULL);
	int rc = db_tx_begin(db);
	if (!rc) {
		rc = db_track_insert(db, child);
		if (!rc)
			rc = job_enqueue(db, sched, user_id, child->id, "transform",
			                 json_pack("{s:s, s:f, s:f}", "parent_id", parent->id,
			                           "semitones", semitones, "tempo_ratio",
			                           tempo_ratio),
			                 job);
		if (rc)
			db_tx_rollback(db);
		else
			rc = db_tx_commit(db);
	}
	if (rc)
		return sfa_err(err, n_err, rc,
		               "The new track could not be created (database error).");
	return 0;
}
