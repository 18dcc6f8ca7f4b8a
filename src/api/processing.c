/* processing.c - POST /api/processing/separate, GET /api/processing/job/:id,
 * GET /api/processing/models, and POST /api/processing/transform (a key-shifted and/or
 * time-stretched copy as a new track: core/library.h library_transform_start, rendered by
 * the "transform" job, jobs/job_transform.c).
 *
 * The request is checked completely before a job is queued: the track is the caller's
 * and has audio, the model and engine are known, and for the local engine the model's
 * weight files are installed (else 422 model_not_installed with the command that
 * installs them). The work itself is the "processing" job (jobs/job_processing.c), or with
 * engine "lalalai" the "lalalai" job (jobs/job_lalalai.c), which clients also see as
 * "processing".
 */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/routes.h"
#include "audio/audio.h"
#include "core/lalalai_key.h"
#include "core/library.h"
#include "core/jobs.h"
#include "jobs/jobs.h"
#include "jobs/registry.h"
#include "nn/bag.h"
#include "nn/catalog.h"
#include "nn/nn.h"
#include "util/err.h"
#include "util/str.h"
#include "util/uuid.h"

/* The reference's four models, in its order and words. */
static const struct {
	const char *name;
	const char *description;
	int download_mb;
} catalogue[] = {
	/* Download sizes of the official files, rounded (DEMUCS.md gives 84,141,911 B for htdemucs,
	 * 54,996,327 B for htdemucs_6s; the bags have four members of ~84 and ~167 MB). */
	{"htdemucs", "Hybrid Transformer Demucs - default 4-stem model", 84},
	{"htdemucs_ft", "Fine-tuned Hybrid Transformer Demucs - higher quality, slower", 336},
	{"htdemucs_6s", "6-stem model (vocals, drums, bass, guitar, piano, other)", 55},
	{"mdx_extra", "MDX-Net Extra - alternative architecture, good for vocals", 668},
};

/* Whether every member file of model `name` is in dir, and whether this build can run
 * it. A <name>.yaml in dir overrides the built-in definition, as nn_model_open does. */
static bool model_installed(const char *dir, const struct nn_builtin *b, bool *runnable)
{
	*runnable = b->supported;
	char path[PATH_MAX + 128];
	snprintf(path, sizeof path, "%s/%s.yaml", dir, b->name);
	char text[NN_BAG_MAX_BYTES];
	size_t n = 0;
	FILE *f = fopen(path, "rb");
	if (f) {
		n = fread(text, 1, sizeof text, f);
		fclose(f);
		*runnable = true; /* a local definition names its own members */
	} else {
		n = strlen(b->yaml);
		memcpy(text, b->yaml, n);
	}
	struct nn_bag_spec spec;
	char err[256];
	if (nn_bag_parse(text, n, &spec, err, sizeof err) != 0)
		return false;
	for (int i = 0; i < spec.n_models; i++)
		if (nn_models_find_member(dir, spec.models[i], path, sizeof path) != 0)
			return false;
	return true;
}

/* Whether name is one of the model's stems. */
static bool stem_of(const struct nn_builtin *b, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = b->stems; *p;) {
		size_t k = strcspn(p, ",");
		if (k == n && strncmp(p, name, n) == 0)
			return true;
		p += k + (p[k] == ',');
	}
	return false;
}

static json_t *stem_names(const struct nn_builtin *b)
{
	json_t *a = json_array();
	const char *p = b->stems;
	while (*p) {
		size_t k = strcspn(p, ",");
		json_array_append_new(a, json_stringn(p, k));
		p += k;
		if (*p == ',')
			p++;
	}
	return a;
}

void api_processing_models(struct http_ctx *ctx)
{
	const char *dir = ctx->app->cfg.models_dir;
	json_t *models = json_array();
	for (size_t i = 0; i < sizeof catalogue / sizeof catalogue[0]; i++) {
		const struct nn_builtin *b = nn_builtin_find(catalogue[i].name);
		if (!b)
			continue;
		bool runnable;
		bool installed = model_installed(dir, b, &runnable) && runnable;
		json_t *names = stem_names(b);
		char install[64];
		snprintf(install, sizeof install, "sfa models fetch %s", b->name);
		json_array_append_new(
			models, json_pack("{s:s, s:s, s:I, s:b, s:o, s:i, s:s}", "name", b->name,
		                          "description", catalogue[i].description, "stems",
		                          (json_int_t)json_array_size(names), "installed",
		                          installed, "stem_names", names, "download_mb",
		                          catalogue[i].download_mb, "install_command", install));
	}
	http_data(ctx, 200, json_pack("{s:o}", "models", models));
}

static const char *known(const char *v, const char *const *set)
{
	for (int i = 0; set[i]; i++)
		if (strcmp(v, set[i]) == 0)
			return set[i];
	return NULL;
}

/* Queues a separation job of type (payload consumed) and answers 201 with its Location and
 * the reference's fields, plus engine when not NULL. */
static void enqueue_separation(struct http_ctx *ctx, const char *track_id, const char *type,
                               json_t *payload, const char *model, const char *engine)
{
	struct db_job j;
	if (job_enqueue(ctx->app->db, ctx->app->sched, ctx->user.id, track_id, type, payload, &j) !=
	    0) {
		api_db_error(ctx);
		return;
	}
	char loc[96];
	snprintf(loc, sizeof loc, "/api/processing/job/%s", j.id);
	http_set_header(ctx, "Location", loc);
	http_data(ctx, 201,
	          json_pack("{s:s, s:s, s:s, s:s*, s:s}", "job_id", j.id, "track_id", track_id,
	                    "model", model, "engine", engine, "status", "queued"));
}

/* engine "lalalai": no model files needed, only a key (the user's or the server's). The
 * job is of type "lalalai", with slots of its own, shown as "processing" (jobs/registry.h);
 * its one lal.ai split is idempotent under the job's id (jobs/job_lalalai.c). */
static void separate_lalalai(struct http_ctx *ctx, const struct db_track *t, const char *model,
                             const char *format)
{
	char key[LALALAI_KEY_MAX + 1], err[512];
	int rc = lalalai_key_resolve(ctx->app->db, &ctx->app->cfg, ctx->user.id, key, NULL, err,
	                             sizeof err);
	sodium_memzero(key, sizeof key);
	if (rc) {
		http_error(ctx, 503, "not_configured", err);
		return;
	}
	enqueue_separation(ctx, t->id, "lalalai",
	                   json_pack("{s:s, s:s, s:s}", "model", model, "engine", "lalalai",
	                             "output_format", format),
	                   model, "lalalai");
}

void api_processing_separate(struct http_ctx *ctx)
{
	static const char *const models[] = {"htdemucs", "htdemucs_ft", "htdemucs_6s", "mdx_extra",
	                                     NULL};
	static const char *const engines[] = {"local", "lalalai", NULL};
	static const char *const formats[] = {"wav", "flac", "wav24", "f32", "mp3", NULL};
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	json_t *details = json_object();
	char track_id[UUID_STR_LEN] = "";
	const char *tid = json_string_value(json_object_get(body, "track_id"));
	if (!tid)
		json_object_set_new(details, "track_id", json_pack("[s]", "must be a track id"));
	else if (uuid_valid(tid))
		memcpy(track_id, tid, UUID_STR_LEN);
	const char *fields[3] = {"model", "engine", "output_format"};
	const char *const *sets[3] = {models, engines, formats};
	const char *values[3] = {"htdemucs", "local", "wav"};
	for (int i = 0; i < 3; i++) {
		json_t *v = json_object_get(body, fields[i]);
		if (!v || json_is_null(v))
			continue;
		const char *k = json_is_string(v) ? known(json_string_value(v), sets[i]) : NULL;
		if (!k) {
			char msg[160] = "must be one of";
			for (int k2 = 0; sets[i][k2]; k2++)
				snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "%s %s",
				         k2 ? "," : "", sets[i][k2]);
			json_object_set_new(details, fields[i], json_pack("[s]", msg));
		} else {
			values[i] = k;
		}
	}
	/* 24-bit and float WAV come from the local engine; lal.ai's stems are written as WAV,
	 * FLAC or MP3. */
	if (strcmp(values[1], "lalalai") == 0 &&
	    (strcmp(values[2], "wav24") == 0 || strcmp(values[2], "f32") == 0))
		json_object_set_new(
			details, "output_format",
			json_pack("[s]", "must be wav, flac or mp3 with the lalalai engine"));
	/* precision: "fp32" (default) or "bf16" (bfloat16 products, local engine only). */
	enum nn_precision prec = NN_PRECISION_FP32;
	json_t *jp = json_object_get(body, "precision");
	if (jp && !json_is_null(jp)) {
		if (!json_is_string(jp) || nn_precision_parse(json_string_value(jp), &prec) != 0)
			json_object_set_new(details, "precision",
			                    json_pack("[s]", "must be fp32 or bf16"));
		else if (prec == NN_PRECISION_BF16 && strcmp(values[1], "local") != 0)
			json_object_set_new(details, "precision",
			                    json_pack("[s]", "bf16 is for the local engine only"));
	}
	/* two_stems (as Demucs's --two-stems): that stem and its complement, "no_<stem>". */
	char two[32] = "";
	json_t *jt = json_object_get(body, "two_stems");
	if (jt && !json_is_null(jt)) {
		const struct nn_builtin *mb = nn_builtin_find(values[0]);
		const char *name = json_string_value(jt);
		if (strcmp(values[1], "local") != 0)
			json_object_set_new(details, "two_stems",
			                    json_pack("[s]", "is for the local engine only"));
		else if (!name || !mb || !stem_of(mb, name))
			json_object_set_new(details, "two_stems",
			                    json_pack("[s+]", "must be one of the model's stems: ",
			                              mb ? mb->stems : "?"));
		else
			str_copy(two, sizeof two, name);
	}
	json_decref(body);
	if (json_object_size(details)) {
		http_error_details(ctx, 422, "validation_failed",
		                   "The separation request is invalid.", details);
		return;
	}
	json_decref(details);
	struct db_track t;
	if (!api_track_with_audio(ctx, track_id, &t))
		return;
	if (strcmp(values[1], "lalalai") == 0) {
		separate_lalalai(ctx, &t, values[0], values[2]);
		return;
	}
	const char *dir = ctx->app->cfg.models_dir;
	bool runnable;
	const struct nn_builtin *b = nn_builtin_find(values[0]);
	if (!b || !model_installed(dir, b, &runnable) || !runnable) {
		char msg[300];
		snprintf(msg, sizeof msg,
		         "The %s model is not installed; install it with `sfa models fetch %s`.",
		         values[0], values[0]);
		http_error(ctx, 422, "model_not_installed", msg);
		return;
	}
	char why[256];
	if (prec == NN_PRECISION_BF16 && !nn_bf16_supported(why, sizeof why)) {
		char msg[400];
		snprintf(msg, sizeof msg, "This server cannot separate in bf16: %s.", why);
		http_error(ctx, 422, "precision_unsupported", msg);
		return;
	}
	json_t *payload = json_pack("{s:s, s:s, s:s}", "model", values[0], "engine", values[1],
	                            "output_format", values[2]);
	if (prec != NN_PRECISION_FP32)
		json_object_set_new(payload, "precision", json_string(nn_precision_name(prec)));
	if (two[0])
		json_object_set_new(payload, "two_stems", json_string(two));
	enqueue_separation(ctx, t.id, "processing", payload, values[0], NULL);
}

/* A number field of body in [lo, hi] into *out (unchanged when absent); a detail when not. */
static void number_field(json_t *body, const char *name, double lo, double hi, const char *what,
                         double *out, json_t *details)
{
	json_t *v = json_object_get(body, name);
	if (!v || json_is_null(v))
		return;
	double d = json_number_value(v);
	if (!json_is_number(v) || !(d >= lo && d <= hi))
		json_object_set_new(details, name, json_pack("[s]", what));
	else
		*out = d;
}

void api_processing_transform(struct http_ctx *ctx)
{
	json_t *body;
	if (!api_json_body(ctx, &body))
		return;
	json_t *details = json_object();
	const char *tid = json_string_value(json_object_get(body, "track_id"));
	char track_id[UUID_STR_LEN] = "";
	if (!tid)
		json_object_set_new(details, "track_id", json_pack("[s]", "must be a track id"));
	else if (uuid_valid(tid))
		memcpy(track_id, tid, UUID_STR_LEN);
	double semitones = 0, ratio = 1, target = 0;
	number_field(body, "semitones", -AUDIO_MAX_SEMITONES, AUDIO_MAX_SEMITONES,
	             "must be a number of semitones from -12 to 12", &semitones, details);
	number_field(body, "tempo_ratio", AUDIO_MIN_TEMPO_RATIO, AUDIO_MAX_TEMPO_RATIO,
	             "must be a number from 0.5 to 2", &ratio, details);
	number_field(body, "target_bpm", 20, 400, "must be a tempo from 20 to 400 BPM", &target,
	             details);
	json_t *jr = json_object_get(body, "tempo_ratio"),
	       *jb = json_object_get(body, "target_bpm");
	if (jr && !json_is_null(jr) && jb && !json_is_null(jb))
		json_object_set_new(details, "target_bpm",
		                    json_pack("[s]", "give tempo_ratio or target_bpm, not both"));
	json_decref(body);
	if (json_object_size(details)) {
		http_error_details(ctx, 422, "validation_failed",
		                   "The transform request is invalid.", details);
		return;
	}
	json_decref(details);
	struct db_track parent, child;
	if (!api_track_with_audio(ctx, track_id, &parent))
		return;
	struct db_job j;
	char err[300];
	int rc = library_transform_start(ctx->app->db, ctx->app->sched, ctx->user.id, &parent,
	                                 semitones, ratio, target, &child, &j, err, sizeof err);
	if (rc == SFA_EINVAL) {
		http_error(ctx, 422, "validation_failed", err);
		return;
	}
	if (rc == SFA_ECONFLICT) {
		http_error(ctx, 409, "not_analysed", err);
		return;
	}
	if (rc) {
		api_db_error(ctx);
		return;
	}
	char loc[96];
	snprintf(loc, sizeof loc, "/api/jobs/%s", j.id);
	http_set_header(ctx, "Location", loc);
	http_data(ctx, 201,
	          json_pack("{s:s, s:s, s:s, s:o, s:s}", "job_id", j.id, "track_id", child.id,
	                    "parent_id", parent.id, "track", api_track_json(&child), "status",
	                    "queued"));
}

void api_processing_job(struct http_ctx *ctx)
{
	const char *id = http_param(ctx, "id");
	struct db_job j;
	if (!uuid_valid(id) || db_job_get(ctx->app->db, ctx->user.id, id, &j) != 0 ||
	    strcmp(job_type_shown(j.type), "processing") != 0) {
		api_not_found(ctx, "The processing job");
		return;
	}
	json_error_t je;
	json_t *payload = json_loads(j.payload, 0, &je);
	const char *model = payload ? json_string_value(json_object_get(payload, "model")) : NULL;
	const char *engine = payload ? json_string_value(json_object_get(payload, "engine")) : NULL;
	struct db_lalalai_task lt;
	bool cloud = engine && strcmp(engine, "lalalai") == 0 &&
	             db_lalalai_task_get(ctx->app->db, ctx->user.id, j.id, &lt) == 0 &&
	             lt.task_id[0];
	json_t *stems = strcmp(j.status, "completed") == 0 ? api_stems_json(ctx, j.track_id, j.id)
	                                                   : json_array();
	if (!stems) {
		json_decref(payload);
		api_db_error(ctx);
		return;
	}
	http_data(ctx, 200,
	          json_pack("{s:s, s:s, s:s, s:i, s:s?, s:s, s:o, s:s?, s:s?}", "id", j.id,
	                    "track_id", j.track_id, "status", j.status, "progress", j.progress,
	                    "model", model, "engine", engine ? engine : "local", "stems", stems,
	                    "error", strcmp(j.status, "failed") == 0 ? j.error : NULL,
	                    "lalalai_task_id", cloud ? lt.task_id : NULL));
	json_decref(payload);
}
