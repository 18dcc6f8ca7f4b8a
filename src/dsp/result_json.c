/* result_json.c - a dsp_result as the API's analysis result object (API.md section 5).
 *
 *   {"tempo": 128.0, "tempo_confidence": 0.93, "key": "A minor", "key_confidence": 0.87,
 *    "camelot": "8A", "energy": 0.17, "spectral_centroid": 1589.2,
 *    "spectral_rolloff": 3607.2, "zero_crossing_rate": 0.06, "beats": [0.63, 1.23, ...],
 *    "duration": 12.0, "features": {"mfcc": [[...] x 13], "chroma": [[...] x 12],
 *    "frame_rate": 2}}
 *
 * Members appear only for requested features: tempo -> tempo, tempo_confidence (0..1, three
 * decimals: how sure the tempo is, see tempo.c; 0 with no tempo), beats, downbeats (the
 * beats that start bars) and time_signature ("4/4", "3/4", null without bars); sections ->
 * sections ([{"start", "end", "bar", "label"}], seconds, bar numbers from 1); chords ->
 * chords ([{"start", "end", "label", "confidence"}]: "C", "Am", "G7", "Fmaj7", "Em7" or
 * "N", confidence 0..1; they cover the whole song); key_changes -> key_changes
 * ([{"start", "end", "key", "camelot"}], the song's stretches in one key, each at least
 * 16 s; one for a song that stays in its key, none without a key); key -> key,
 * key_confidence, camelot (all three null when there is no key); energy -> energy;
 * spectral -> spectral_centroid, spectral_rolloff, zero_crossing_rate (means) and
 * features.spectral_centroid/spectral_rolloff (Hz, one value per column, for plots over
 * time); mfcc/chroma -> features.mfcc/chroma; features.frame_rate comes with any of them.
 * duration (seconds) is always there.
 *
 * Pooling: frame t (time t * 512 / 22050 s) goes to column floor(time * frame_rate); a
 * column is the mean of its frames. So a 12-s file at 2 columns per second has 24 columns.
 */
#include "dsp/result_json.h"

#include <math.h>
#include <stdlib.h>

#include "dsp/dsp_internal.h"
#include "util/err.h"

static json_t *real(double v) { return json_real(isfinite(v) ? v : 0.0); }

static size_t column_of(size_t t, double fr)
{
	double time_s = (double)t * DSP_HOP / DSP_SR_HZ;
	return (size_t)floor(time_s * fr);
}

size_t dsp_pooled_columns(const struct dsp_result *r)
{
	if (r->n_frames == 0)
		return 0;
	return column_of(r->n_frames - 1, r->frame_rate) + 1;
}

/* The column means of one row of frames, read from xf (float) or else xd (double). */
static json_t *pooled_row(const float *xf, const double *xd, const struct dsp_result *r)
{
	size_t T = r->n_frames, n_cols = dsp_pooled_columns(r);
	json_t *jr = json_array();
	size_t t = 0;
	for (size_t c = 0; jr && c < n_cols; c++) {
		double s = 0.0;
		size_t k = 0;
		for (; t < T && column_of(t, r->frame_rate) == c; t++, k++)
			s += xf ? (double)xf[t] : xd[t];
		if (json_array_append_new(jr, real(k ? s / (double)k : 0.0)) != 0) {
			json_decref(jr);
			return NULL;
		}
	}
	return jr;
}

/* rows x n_cols array of column means of m ([row * T + t]). NULL on allocation failure. */
static json_t *pooled(const float *m, int rows, const struct dsp_result *r)
{
	json_t *arr = json_array();
	for (int row = 0; arr && row < rows; row++) {
		json_t *jr = pooled_row(m + (size_t)row * r->n_frames, NULL, r);
		if (!jr || json_array_append_new(arr, jr) != 0) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static int set(json_t *o, const char *key, json_t *v)
{
	return v ? json_object_set_new(o, key, v) : -1;
}

int dsp_result_to_json(const struct dsp_result *r, json_t **out, char *err, size_t n_err)
{
	json_t *o = json_object();
	int bad = !o;
	unsigned f = r->features;
	if (!bad && (f & DSP_FEAT_TEMPO)) {
		bad |= set(o, "tempo", real(r->tempo_bpm));
		if (!bad)
			bad |= set(o, "tempo_confidence",
			           real(round(r->tempo_confidence * 1000.0) / 1000.0));
	}
	if (!bad && (f & DSP_FEAT_KEY)) {
		if (r->key_pc >= 0) {
			bad |= set(o, "key", json_string(r->key_name));
			bad |= set(o, "key_confidence", real(r->key_confidence));
			bad |= set(o, "camelot", json_string(r->camelot));
		} else {
			bad |= set(o, "key", json_null());
			bad |= set(o, "key_confidence", json_null());
			bad |= set(o, "camelot", json_null());
		}
	}
	if (!bad && (f & DSP_FEAT_ENERGY))
		bad |= set(o, "energy", real(r->energy));
	if (!bad && (f & DSP_FEAT_SPECTRAL)) {
		bad |= set(o, "spectral_centroid", real(r->spectral_centroid_hz));
		bad |= set(o, "spectral_rolloff", real(r->spectral_rolloff_hz));
		bad |= set(o, "zero_crossing_rate", real(r->zero_crossing_rate));
	}
	if (!bad && (f & DSP_FEAT_TEMPO)) {
		json_t *b = json_array();
		bad |= set(o, "beats", b);
		for (size_t i = 0; !bad && i < r->n_beats; i++)
			bad |= json_array_append_new(
				b, real((double)r->beats[i] * DSP_HOP / DSP_SR_HZ));
		json_t *d = bad ? NULL : json_array();
		bad |= set(o, "downbeats", d);
		for (size_t i = 0; !bad && i < r->n_downbeats; i++)
			bad |= json_array_append_new(
				d, real((double)r->downbeats[i] * DSP_HOP / DSP_SR_HZ));
		if (!bad)
			bad |= set(o, "time_signature",
			           r->beats_per_bar ? json_sprintf("%d/4", r->beats_per_bar)
			                            : json_null());
	}
	if (!bad && (f & DSP_FEAT_SECTIONS)) {
		json_t *a = json_array();
		bad |= set(o, "sections", a);
		for (size_t i = 0; !bad && i < r->n_sections; i++) {
			const struct dsp_section *s = &r->sections[i];
			bad |= json_array_append_new(a, json_pack("{s:o, s:o, s:i, s:s}", "start",
			                                          real(s->start_s), "end",
			                                          real(s->end_s), "bar", s->bar,
			                                          "label", s->label));
		}
	}
	if (!bad && (f & DSP_FEAT_CHORDS)) {
		json_t *a = json_array();
		bad |= set(o, "chords", a);
		for (size_t i = 0; !bad && i < r->n_chords; i++) {
			const struct dsp_chord *c = &r->chords[i];
			bad |= json_array_append_new(
				a, json_pack("{s:o, s:o, s:s, s:o}", "start", real(c->start_s),
			                     "end", real(c->end_s), "label", c->label, "confidence",
			                     real(round(c->confidence * 1000.0) / 1000.0)));
		}
	}
	if (!bad && (f & DSP_FEAT_KEY_CHANGES)) {
		json_t *a = json_array();
		bad |= set(o, "key_changes", a);
		for (size_t i = 0; !bad && i < r->n_key_changes; i++) {
			const struct dsp_key_segment *k = &r->key_changes[i];
			bad |= json_array_append_new(
				a, json_pack("{s:o, s:o, s:s, s:s}", "start", real(k->start_s),
			                     "end", real(k->end_s), "key", k->key_name, "camelot",
			                     k->camelot));
		}
	}
	if (!bad && (f & DSP_FEAT_LOUDNESS)) {
		const struct dsp_loudness *l = &r->loudness;
		bad |= set(o, "loudness",
		           json_pack("{s:o, s:o, s:o}", "integrated_lufs",
		                     isfinite(l->integrated_lufs) ? json_real(l->integrated_lufs)
		                                                  : json_null(),
		                     "range_lu", real(l->range_lu), "true_peak_dbtp",
		                     isfinite(l->true_peak_dbtp) ? json_real(l->true_peak_dbtp)
		                                                 : json_null()));
	}
	if (!bad)
		bad |= set(o, "duration", real(r->duration_s));
	if (!bad && (f & (DSP_FEAT_MFCC | DSP_FEAT_CHROMA | DSP_FEAT_SPECTRAL))) {
		json_t *feats = json_object();
		bad |= set(o, "features", feats);
		if (!bad && (f & DSP_FEAT_MFCC))
			bad |= set(feats, "mfcc", pooled(r->mfcc, DSP_N_MFCC, r));
		if (!bad && (f & DSP_FEAT_CHROMA))
			bad |= set(feats, "chroma", pooled(r->chroma, DSP_N_CHROMA, r));
		if (!bad && (f & DSP_FEAT_SPECTRAL)) {
			bad |= set(feats, "spectral_centroid", pooled_row(NULL, r->centroid, r));
			bad |= set(feats, "spectral_rolloff", pooled_row(NULL, r->rolloff, r));
		}
		if (!bad) {
			double fr = r->frame_rate;
			bad |= set(feats, "frame_rate",
			           fr == floor(fr) ? json_integer((json_int_t)fr) : real(fr));
		}
	}
	if (bad) {
		json_decref(o);
		return sfa_err(err, n_err, SFA_ENOMEM,
		               "Out of memory while building the JSON result.");
	}
	*out = o;
	return 0;
}
