/* workers.h - the worker function of each job type (run by job-exec, see jobs.h).
 *
 * Threading: a worker runs alone in its job's child process (the main thread; it may start
 * threads of its own), so it shares nothing with the server; what it allocates ends with
 * the process. */
#ifndef SFA_JOBS_WORKERS_H
#define SFA_JOBS_WORKERS_H

#include "dsp/dsp.h"
#include "jobs/jobs.h"

/* "probe": decodes the track's audio (when it has one) to validate it and reports its
 * properties. A diagnostic of the job system itself: payload knobs steps (1..1000),
 * step_ms (0..60000), fail_attempts (fail while attempts <= N) and crash (abort) let
 * an operator or a test watch progress, retries and crash handling. */
int job_worker_probe(struct job_run *r);

/* "analysis": the native analysis engine on the track's audio (job_analysis.c). */
int job_worker_analysis(struct job_run *r);
/* Analyses track t's audio with opt and stores the result as its analysis (made by this
 * job), reporting progress_from then progress_to. *out: the whole result (caller owns). */
int job_analysis_store(struct job_run *r, const struct db_track *t, const struct dsp_options *opt,
                       int progress_from, int progress_to, json_t **out);

/* "transform": renders a track from its parent (payload parent_id, semitones,
 * tempo_ratio) and the parent's latest stems with librubberband, then analyses it
 * (job_transform.c). */
int job_worker_transform(struct job_run *r);

/* "processing": stem separation with the native Demucs engine (job_processing.c). */
int job_worker_processing(struct job_run *r);
/* "lalalai": stem separation with lal.ai (job_lalalai.c); shown to clients as a
 * "processing" job with engine "lalalai". */
int job_worker_lalalai(struct job_run *r);
/* "download": finds the track's audio with yt-dlp, converts it with ffmpeg to the
 * payload's "quality" and stores it as the track's audio (see job_download.c). */
int job_worker_download(struct job_run *r);
/* The canonical name when name is a download quality (lossless, high, medium, low),
 * else NULL. */
const char *job_download_quality_valid(const char *name);

#endif
