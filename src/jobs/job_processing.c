/* job_processing.c - the "processing" job type: stem separation with the native Demucs
 * engine (src/nn).
 *
 * Payload: {"model", "engine": "local", "output_format": "wav"|"wav24"|"f32"|"flac"|"mp3",
 * "two_stems"?} (the three WAV formats are 16-bit, 24-bit and 32-bit float; FLAC is 16-bit,
 * MP3 320 kbit/s CBR). Every format is written as the engine finishes segments. With
 * two_stems (a source name, as Demucs's --two-stems) the stems are that source and
 * "no_<source>", the sum of all the others in source order. The track's audio
 * is decoded to 44.1 kHz stereo, separated (progress = forward passes done / total,
 * mapped to 10..90 %), each stem written into the job's scratch directory, and only then
 * moved to data/uploads/stems/<job id>/<stem>.<ext> and recorded as stem rows. A cancel
 * (SIGTERM) at any point before that leaves nothing behind: the scheduler removes the
 * scratch directory. Earlier separations are never touched: each job has its own folder.
 * lal.ai separations are jobs of their own type, "lalalai" (job_lalalai.c); both end in
 * job_stems_publish (stems.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audio/audio.h"
#include "jobs/stems.h"
#include "jobs/workers.h"
#include "nn/nn.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/storage.h"
#include "util/str.h"
#include "util/uuid.h"

static void on_progress(void *user, int done, int total)
{
	struct job_run *r = user;
	char msg[64];
	snprintf(msg, sizeof msg, "separating: %d of %d segments", done, total);
	job_report(r, 10 + (total ? 80 * done / total : 0), "processing", msg);
}

struct stem_files {
	struct audio_enc *files[NN_MAX_STEMS];
	int n_sources, n_ch;
	int two;     /* two_stems: the kept source's index, else -1 */
	float *rest; /* two_stems: the complement of one stretch (n_ch x cap floats) */
	size_t rest_cap;
};

/* two_stems: the complement of source `two` in planes (n_src sources of n_ch rows of
 * stride floats), summed in source order from zero as Demucs's --two-stems does, into
 * out (n_ch rows of stride floats), for the first n frames. */
static void complement(const float *planes, int n_src, int n_ch, size_t stride, size_t n, int two,
                       float *out)
{
	for (int c = 0; c < n_ch; c++) {
		float *o = out + (size_t)c * stride;
		for (size_t i = 0; i < n; i++)
			o[i] = 0.0f;
		for (int s = 0; s < n_src; s++) {
			if (s == two)
				continue;
			const float *x = planes + ((size_t)s * (size_t)n_ch + (size_t)c) * stride;
			for (size_t i = 0; i < n; i++)
				o[i] += x[i];
		}
	}
}

/* The engine's sink: appends each finished stretch of every stem (or, with two_stems, of
 * the kept stem and its complement) to its file. */
static int stem_sink(void *user, const float *data, size_t stride, size_t frame0, size_t n)
{
	(void)frame0; /* stretches arrive in order */
	struct stem_files *sf = user;
	size_t plane = (size_t)sf->n_ch * stride;
	if (sf->two >= 0) {
		if (sf->rest_cap < plane) {
			float *grown = realloc(sf->rest, plane * sizeof *grown);
			if (!grown)
				return -1;
			sf->rest = grown;
			sf->rest_cap = plane;
		}
		complement(data, sf->n_sources, sf->n_ch, stride, n, sf->two, sf->rest);
		return audio_enc_write(sf->files[0], data + (size_t)sf->two * plane, stride, n,
		                       NULL, 0) != 0 ||
		                       audio_enc_write(sf->files[1], sf->rest, stride, n, NULL,
		                                       0) != 0
		               ? -1
		               : 0;
	}
	for (int s = 0; s < sf->n_sources; s++)
		if (audio_enc_write(sf->files[s], data + (size_t)s * plane, stride, n, NULL, 0) !=
		    0)
			return -1;
	return 0;
}

int job_worker_processing(struct job_run *r)
{
	const char *engine = json_string_value(json_object_get(r->payload, "engine"));
	if (engine && strcmp(engine, "local") != 0) {
		/* `sfa job enqueue --type processing` with another engine's payload: lal.ai's
		 * separations are "lalalai" jobs (rows of older versions were migrated). */
		snprintf(r->error, sizeof r->error,
		         "A processing job runs the local engine only; %s separations are jobs of "
		         "their own type.",
		         engine);
		r->retry = false;
		return SFA_EINVAL;
	}
	const char *model = json_string_value(json_object_get(r->payload, "model"));
	const char *format = json_string_value(json_object_get(r->payload, "output_format"));
	if (!format)
		format = "wav";
	const char *two_stems = json_string_value(json_object_get(r->payload, "two_stems"));
	/* "precision": "bf16" asks for bfloat16 products (absent: fp32, as before). The API
	 * checked its own CPU; a worker on another machine checks again here. */
	const char *precision = json_string_value(json_object_get(r->payload, "precision"));
	enum nn_precision prec = NN_PRECISION_FP32;
	if (precision && nn_precision_parse(precision, &prec) != 0) {
		snprintf(r->error, sizeof r->error, "Unknown precision %s: use fp32 or bf16.",
		         precision);
		r->retry = false;
		return SFA_EINVAL;
	}
	char why[256];
	if (prec == NN_PRECISION_BF16 && !nn_bf16_supported(why, sizeof why)) {
		snprintf(r->error, sizeof r->error, "The separation cannot run in bf16 here: %s.",
		         why);
		r->retry = false;
		return SFA_EUNSUPP;
	}
	struct db_track t;
	if (!model || db_track_get(r->db, r->job.user_id, r->job.track_id, &t) != 0 ||
	    !t.audio_path[0]) {
		snprintf(r->error, sizeof r->error, "The track or its audio no longer exists.");
		r->retry = false;
		return SFA_ENOTFOUND;
	}
	job_report(r, 1, "processing", "loading the model");
	struct nn_model *m = NULL;
	char err[512];
	int rc = nn_model_open(model, r->cfg->models_dir, &m, err, sizeof err);
	if (rc) {
		snprintf(r->error, sizeof r->error, "The %s model could not be loaded: %s", model,
		         err);
		r->retry = false;
		return rc;
	}
	const struct nn_model_info *info = nn_model_info(m);
	job_report(r, 5, "processing", "decoding the audio");
	char path[PATH_MAX * 2];
	if (storage_local_path(&r->store, t.audio_path, path, sizeof path) != 0) {
		nn_model_free(m);
		snprintf(r->error, sizeof r->error, "The track's audio is outside the library.");
		r->retry = false;
		return SFA_EINVAL;
	}
	struct audio_buf in = {0};
	rc = audio_decode(path, info->samplerate, info->audio_channels, 0, &in, err, sizeof err);
	if (rc) {
		nn_model_free(m);
		snprintf(r->error, sizeof r->error, "The track's audio could not be decoded: %s",
		         err);
		r->retry = false;
		return rc;
	}
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.progress = on_progress;
	o.progress_user = r;
	o.precision = prec;
	enum audio_container kind;
	enum audio_sample_format sample_fmt;
	const char *ext;
	if (audio_output_format(format, &kind, &sample_fmt, &ext) != 0) {
		audio_buf_free(&in);
		nn_model_free(m);
		snprintf(r->error, sizeof r->error,
		         "Unknown output format: use " AUDIO_OUTPUT_FORMATS ".");
		r->retry = false;
		return SFA_EINVAL;
	}
	int n_src = info->n_sources, n_ch = info->audio_channels, samplerate = info->samplerate;
	size_t n_frames = in.n_frames;
	int two = -1;
	for (int s = 0; two_stems && s < n_src; s++)
		if (strcmp(info->sources[s], two_stems) == 0)
			two = s;
	if (two_stems && two < 0) {
		audio_buf_free(&in);
		nn_model_free(m);
		snprintf(r->error, sizeof r->error, "The %s model has no %s stem.", model,
		         two_stems);
		r->retry = false;
		return SFA_EINVAL;
	}
	/* The files written: every source, or with two_stems the kept one and "no_<it>". */
	int n_out = two >= 0 ? 2 : n_src;
	char names[NN_MAX_STEMS][64], files[NN_MAX_STEMS][PATH_MAX + 128];
	for (int s = 0; s < n_out; s++) {
		if (two >= 0)
			snprintf(names[s], sizeof names[s], "%s%s", s ? "no_" : "",
			         info->sources[two]);
		else
			str_copy(names[s], sizeof names[s], info->sources[s]);
		if (snprintf(files[s], sizeof files[s], "%s/%s.%s", r->work_dir, names[s], ext) >=
		    (int)sizeof files[s])
			rc = sfa_err(err, sizeof err, SFA_EINVAL, "the scratch path is too long");
	}
	/* Stems are written as the engine finishes segments, so the whole-track stems never
	 * sit in memory. */
	struct stem_files sf = {.n_sources = n_src, .n_ch = n_ch, .two = two};
	int opened = 0;
	for (; opened < n_out && rc == 0; opened++)
		rc = audio_enc_open(&sf.files[opened], files[opened], kind, sample_fmt, n_frames,
		                    n_ch, samplerate, err, sizeof err);
	o.sink = stem_sink;
	o.sink_user = &sf;
	o.scratch_dir = r->work_dir; /* bags sum their members there */
	if (rc == 0)
		rc = nn_separate(m, in.data, n_frames, &o, NULL, err, sizeof err);
	audio_buf_free(&in);
	nn_model_free(m); /* info points into the model: not used past here */
	if (rc == 0)
		job_report(r, 92, "processing", "writing the stems");
	for (int s = 0; s < opened; s++)
		if (audio_enc_close(sf.files[s], rc != 0, rc ? NULL : err, sizeof err) != 0 &&
		    rc == 0)
			rc = SFA_EIO;
	free(sf.rest);
	if (rc) {
		snprintf(r->error, sizeof r->error, "The separation failed: %s", err);
		return rc;
	}
	const char *name_ptrs[NN_MAX_STEMS];
	for (int s = 0; s < n_out; s++)
		name_ptrs[s] = names[s];
	double duration = (double)n_frames / samplerate;
	json_t *list = NULL;
	rc = job_stems_publish(r, name_ptrs, n_out, ext, duration, "local", model, &list);
	if (rc)
		return rc;
	r->result = json_pack("{s:s, s:o, s:f, s:s}", "model", model, "stems", list, "duration",
	                      duration, "precision", nn_precision_name(prec));
	job_report(r, 100, "processing", "done");
	return 0;
}
