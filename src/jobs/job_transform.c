/* job_transform.c - the "transform" job type: a track rendered from another, shifted in key
 * and/or stretched in tempo with librubberband (audio_transform).
 *
 * The job belongs to the new track (core/library.c made it, without audio); the payload
 * names the parent, the shift and the ratio. The worker decodes the parent's audio at its
 * own rate, renders it, and renders each stem of the parent's latest separation the same
 * way (formants kept for vocals, so a shifted voice keeps its timbre), so the mixer can play
 * the new track's stems. Everything is written as 16-bit FLAC into the job's scratch folder
 * first; then the audio moves to uploads/downloads/<track>/ and is recorded as the track's,
 * the stems move to uploads/stems/<job>/ (their rows are the scheduler's to write with the
 * completion), and the new audio is analysed (every feature) and stored as the track's
 * analysis. A cancel before that leaves nothing: the scratch folder goes with the job.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio/audio.h"
#include "jobs/stems.h"
#include "jobs/workers.h"
#include "nn/nn.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/storage.h"
#include "util/str.h"

static int fail(struct job_run *r, bool retry, int rc, const char *msg)
{
	snprintf(r->error, sizeof r->error, "%s", msg);
	r->retry = retry;
	return rc;
}

/* Renders data/uploads/<rel> into work_dir/<name>.flac; audio (may be NULL) receives its
 * rate, channels and length. */
static int render(struct job_run *r, const char *rel, const char *name, double semitones,
                  double ratio, bool formants, struct db_track *audio)
{
	char in_path[PATH_MAX * 2], out_path[PATH_MAX + 128], err[512];
	if (storage_local_path(&r->store, rel, in_path, sizeof in_path) != 0)
		return fail(r, false, SFA_EINVAL,
		            "A file of the original track is outside the library.");
	snprintf(out_path, sizeof out_path, "%s/%s.flac", r->work_dir, name);
	struct audio_buf in = {0}, out = {0};
	int rc = audio_decode(in_path, 0, 0, r->cfg->max_duration_s, &in, err, sizeof err);
	if (!rc)
		rc = audio_transform(&in, semitones, ratio, formants, &out, err, sizeof err);
	audio_buf_free(&in);
	if (!rc)
		rc = audio_write(out_path, &out, AUDIO_FLAC, AUDIO_PCM16, err, sizeof err);
	if (!rc && audio) {
		audio->audio_rate_hz = out.sample_rate_hz;
		audio->audio_channels = out.n_channels;
		audio->audio_duration_s = (double)out.n_frames / out.sample_rate_hz;
	}
	audio_buf_free(&out);
	if (rc) {
		snprintf(r->error, sizeof r->error, "The %s could not be rendered: %s",
		         strcmp(name, "audio") == 0 ? "track" : name, err);
		r->retry = rc == SFA_ENOMEM || rc == SFA_EIO;
	}
	return rc;
}

/* Moves work_dir/audio.flac to uploads/downloads/<track>/ and records it (with what the
 * render found out, in t's audio fields) as t's audio. */
static int publish_audio(struct job_run *r, struct db_track *t)
{
	char from[PATH_MAX + 128];
	snprintf(from, sizeof from, "%s/audio.flac", r->work_dir);
	snprintf(t->audio_path, sizeof t->audio_path, "downloads/%s/transformed.flac", t->id);
	struct storage_stat st;
	if (storage_publish(&r->store, from, t->audio_path) != 0 ||
	    storage_stat(&r->store, t->audio_path, &st) != 0)
		return fail(r, true, SFA_EIO, "The new track's audio could not be stored.");
	str_copy(t->audio_format, sizeof t->audio_format, "flac");
	t->audio_size = st.size_bytes;
	int rc = db_track_set_audio(r->db, t->id, t);
	if (rc == SFA_ENOTFOUND)
		return fail(r, false, rc, "The track was deleted while it was rendered.");
	if (rc)
		return fail(r, true, rc, "The new track's audio could not be recorded.");
	return 0;
}

int job_worker_transform(struct job_run *r)
{
	const char *parent_id = json_string_value(json_object_get(r->payload, "parent_id"));
	double semitones = json_number_value(json_object_get(r->payload, "semitones"));
	double ratio = json_number_value(json_object_get(r->payload, "tempo_ratio"));
	struct db_track t, p;
	if (db_track_get(r->db, r->job.user_id, r->job.track_id, &t) != 0)
		return fail(r, false, SFA_ENOTFOUND, "The track no longer exists.");
	if (!parent_id || db_track_get(r->db, r->job.user_id, parent_id, &p) != 0)
		return fail(r, false, SFA_ENOTFOUND, "The original track no longer exists.");
	if (!p.audio_path[0])
		return fail(r, false, SFA_EINVAL, "The original track has no audio.");
	if (!(ratio >= AUDIO_MIN_TEMPO_RATIO && ratio <= AUDIO_MAX_TEMPO_RATIO) ||
	    !(fabs(semitones) <= AUDIO_MAX_SEMITONES))
		return fail(r, false, SFA_EINVAL, "The transform asked for is out of range.");

	struct arena a;
	arena_init(&a, 4 << 20);
	struct db_stem *stems = NULL;
	size_t n_stems = 0;
	if (db_stem_list(r->db, r->job.user_id, p.id, NULL, &a, &stems, &n_stems) != 0) {
		arena_free(&a);
		return fail(r, true, SFA_EDB, "The original track's stems could not be listed.");
	}
	if (n_stems > NN_MAX_STEMS)
		n_stems = NN_MAX_STEMS;
	int steps = 2 + (int)n_stems, done = 0;
	job_report(r, 5, "processing", "rendering the track");
	int rc = render(r, p.audio_path, "audio", semitones, ratio, false, &t);
	const char *names[NN_MAX_STEMS];
	char model[32] = "";
	for (size_t i = 0; !rc && i < n_stems; i++) {
		char msg[80];
		snprintf(msg, sizeof msg, "rendering the %s stem", stems[i].stem_type);
		job_report(r, 5 + 80 * ++done / steps, "processing", msg);
		names[i] = stems[i].stem_type;
		str_copy(model, sizeof model, stems[i].model);
		rc = render(r, stems[i].file_path, stems[i].stem_type, semitones, ratio,
		            strcmp(stems[i].stem_type, "vocals") == 0, NULL);
	}
	if (!rc)
		rc = publish_audio(r, &t);
	double duration = t.audio_duration_s;
	json_t *list = NULL;
	if (!rc && n_stems)
		rc = job_stems_publish(r, names, (int)n_stems, "flac", duration, "rubberband",
		                       model, &list);
	arena_free(&a);
	if (rc)
		return rc;
	json_t *analysis = NULL;
	rc = job_analysis_store(r, &t, NULL, 85, 95, &analysis);
	if (rc) {
		json_decref(list);
		return rc;
	}
	r->result = json_pack("{s:s, s:f, s:f, s:f, s:o}", "parent_id", p.id, "semitones",
	                      semitones, "tempo_ratio", ratio, "duration", duration, "stems",
	                      list ? list : json_array());
	static const char *const SUMMARY[] = {"tempo", "key", "camelot"};
	for (int i = 0; r->result && i < 3; i++) {
		json_t *v = json_object_get(analysis, SUMMARY[i]);
		json_object_set(r->result, SUMMARY[i], v ? v : json_null());
	}
	json_decref(analysis);
	job_report(r, 100, "processing", "done");
	return r->result ? 0 : fail(r, true, SFA_ENOMEM, "Out of memory.");
}
