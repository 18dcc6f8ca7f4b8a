/* job_analysis.c - the "analysis" job type: runs the native analysis engine (src/dsp)
 * on a track's audio and stores the result per track.
 *
 * Payload: {"features": ["tempo", ...], "frame_rate": N}. The full result goes to the
 * analyses table (what /api/analysis/job/:id and /export/analysis return); the job's own
 * result holds the summary without per-frame data.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp/dsp.h"
#include "dsp/result_json.h"
#include "jobs/workers.h"
#include "util/err.h"
#include "util/json.h"
#include "util/storage.h"

int job_analysis_store(struct job_run *r, const struct db_track *t, const struct dsp_options *opt,
                       int progress_from, int progress_to, json_t **out)
{
	char path[PATH_MAX * 2];
	if (storage_local_path(&r->store, t->audio_path, path, sizeof path) != 0) {
		snprintf(r->error, sizeof r->error, "The track's audio is outside the library.");
		r->retry = false;
		return SFA_EINVAL;
	}
	job_report(r, progress_from, "analyzing", "decoding the audio");
	struct dsp_result res;
	char err[512];
	int rc = dsp_analyze_file(path, opt, &res, err, sizeof err);
	if (rc) {
		snprintf(r->error, sizeof r->error, "The analysis failed: %s", err);
		r->retry = rc != SFA_EINVAL && rc != SFA_EFORMAT && rc != SFA_ETOOBIG;
		return rc;
	}
	job_report(r, progress_to, "analyzing", "storing the result");
	json_t *full = NULL;
	rc = dsp_result_to_json(&res, &full, err, sizeof err);
	dsp_result_free(&res);
	if (rc) {
		snprintf(r->error, sizeof r->error, "The analysis result could not be encoded: %s",
		         err);
		return rc;
	}
	char *text = json_encode(full);
	rc = text ? db_analysis_insert(r->db, r->job.user_id, t->id, r->job.id, text,
	                               (int64_t)time(NULL))
	          : SFA_ENOMEM;
	free(text);
	if (rc) {
		json_decref(full);
		snprintf(r->error, sizeof r->error, "The analysis result could not be stored.");
		return rc;
	}
	*out = full;
	return 0;
}

int job_worker_analysis(struct job_run *r)
{
	struct db_track t;
	if (!r->job.track_id[0] || db_track_get(r->db, r->job.user_id, r->job.track_id, &t) != 0) {
		snprintf(r->error, sizeof r->error, "The track no longer exists.");
		r->retry = false;
		return SFA_ENOTFOUND;
	}
	if (!t.audio_path[0]) {
		snprintf(r->error, sizeof r->error,
		         "The track has no audio yet; download or upload it first.");
		r->retry = false;
		return SFA_EINVAL;
	}
	struct dsp_options opt = {0};
	json_t *features = json_object_get(r->payload, "features");
	size_t i;
	json_t *f;
	json_array_foreach(features, i, f)
	{
		unsigned bit = json_is_string(f) ? dsp_feature_bit(json_string_value(f)) : 0;
		if (!bit) {
			snprintf(r->error, sizeof r->error, "Unknown analysis feature.");
			r->retry = false;
			return SFA_EINVAL;
		}
		opt.features |= bit;
	}
	json_t *fr = json_object_get(r->payload, "frame_rate");
	if (json_is_number(fr))
		opt.frame_rate = json_number_value(fr);

	json_t *full = NULL;
	int rc = job_analysis_store(r, &t, &opt, 5, 90, &full);
	if (rc)
		return rc;
	json_object_del(full, "features");
	json_object_del(full, "beats");
	r->result = full;
	return 0;
}
