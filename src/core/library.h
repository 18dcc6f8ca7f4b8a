/* library.h - operations on a user's library that span rows, files and running jobs.
 *
 * Handlers parse and render; what a track is made of (its audio, stems, analyses, the
 * jobs that write them) and the order in which it is safely taken apart live here.
 *
 * Threading: called from any HTTP worker or the scheduler's thread; the database
 * transactions serialise the writers.
 */
#ifndef SFA_CORE_LIBRARY_H
#define SFA_CORE_LIBRARY_H

#include <stddef.h>

#include "db/db.h"

struct scheduler;

/* How long a delete waits for the track's running jobs to stop (the scheduler ends a
 * cancelled worker within about 3 s: SIGTERM, then SIGKILL). */
enum { LIBRARY_DELETE_WAIT_MS = 15000 };

/* Deletes the user's track and everything made from it: cancels its jobs, waits until
 * none of their workers runs any more (so nothing writes into what is removed), deletes its
 * rows in one transaction that first checks no job was queued meanwhile (jobs, stems,
 * analyses go with the track), then removes its files (audio, every separation's stems).
 * SFA_ENOTFOUND when the user has no such track; SFA_ETIMEOUT when its jobs did not stop in
 * time (nothing was removed; they stay cancelled, so a second try succeeds); err says why in
 * a sentence. */
int library_track_delete(struct db *db, struct scheduler *sched, const char *data_dir,
                         const char *user_id, const char *track_id, char *err, size_t n_err);

/* Completes job j with the result its worker reported, as one transaction written by the
 * scheduler alone: a separation's stems (result "stems": [{"stem_type", "file_path",
 * "file_size", "format", "duration", "engine", "model"}], files already in place) become
 * stem rows, replacing any a failed attempt of the same job left, and the job is marked
 * completed with the result listing them as [{"id", "stem_type"}]. *out_result (malloced
 * JSON text, caller frees) is the stored result. SFA_EINVAL for a malformed stems list. */
int library_job_complete(struct db *db, const struct db_job *j, const char *result_json,
                         int64_t now, char **out_result);

/* Starts rendering a new track from parent shifted by semitones and played tempo_ratio
 * times as fast, or (target_bpm > 0, tempo_ratio then ignored) as fast as the target
 * needs from the parent's analysed tempo. In one transaction: the new track (title with
 * the change, e.g. "Song (+2 st, 128 BPM)", parent_id and transform set, no audio yet) and
 * a queued "transform" job for it, which renders its audio and the parent's latest stems
 * and analyses the result (jobs/job_transform.c). SFA_EINVAL (nothing to change, or a
 * ratio out of range), SFA_ECONFLICT (target_bpm but no analysed tempo); err says why. */
int library_transform_start(struct db *db, struct scheduler *sched, const char *user_id,
                            const struct db_track *parent, double semitones, double tempo_ratio,
                            double target_bpm, struct db_track *child, struct db_job *job,
                            char *err, size_t n_err);

#endif
