/* mixer.c - see mixer.h for the manifest, the mixing rules and the output format.
 *
 * Validation walks the whole JSON document once and never stops at the first problem:
 * every check appends to the caller's error list and moves on, so one 422 names all that
 * is wrong. Only a document that passes everything is copied into struct mixer_manifest.
 *
 * A plan turns each stem's edits into a clip window [src_start, src_end) of its source, a
 * mix position and a list of gain operations in *source* frame coordinates (gain, silence
 * and the two fades). Keeping them in source coordinates is what makes "edits apply in
 * order" exact: a later trim only narrows the window, and what an earlier edit did stays on
 * the samples it touched.
 *
 * Rendering is per block of at most MIXER_BLOCK_FRAMES frames: for each audible stem, the
 * part of the block its clip covers is read from the source, an envelope is built by
 * multiplying every operation that overlaps the block, and source * envelope * pan gain is
 * added to the mix. Nothing is allocated per block; memory does not grow with the mix.
 */
#include "audio/mixer.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "util/err.h"

/* ---- errors -------------------------------------------------------------------------- */

void mixer_errors_add(struct mixer_errors *errs, const char *path, const char *fmt, ...)
{
	if (errs->n >= MIXER_MAX_ERRORS) {
		errs->n_dropped++;
		return;
	}
	struct mixer_error *e = &errs->e[errs->n++];
	snprintf(e->path, sizeof e->path, "%s", path);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
}

/* ---- manifest validation ------------------------------------------------------------- */

static const char *const mixer__type_names[] = {"trim",    "offset",   "gain",
                                                "fade_in", "fade_out", "silence"};
enum { MIXER__PATH = 160 }; /* working buffers for paths; real ones are < 40 bytes */
#define MIXER__TYPES "trim, offset, gain, fade_in, fade_out or silence"

/* Prints a JSON number without noise: 5, 2.5, 1e+300. */
static void mixer__num(char *out, size_t n, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(out, n, "%.0f", v);
	else
		snprintf(out, n, "%.6g", v);
}

/* A member that is absent or JSON null counts as absent. */
static json_t *mixer__member(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

/* Reads an optional number in [lo, hi] into *out (kept when absent). Returns false after
 * recording an error. */
static bool mixer__number(json_t *obj, const char *key, const char *base, double lo, double hi,
                          const char *range_msg, double *out, bool *present,
                          struct mixer_errors *errs)
{
	char path[MIXER__PATH];
	snprintf(path, sizeof path, "%.100s%s%s", base, *base ? "." : "", key);
	json_t *v = mixer__member(obj, key);
	if (present)
		*present = v != NULL;
	if (!v)
		return true;
	if (!json_is_number(v)) {
		mixer_errors_add(errs, path, "must be a number");
		return false;
	}
	double x = json_number_value(v);
	char got[40];
	mixer__num(got, sizeof got, x);
	if (!(x >= lo && x <= hi)) {
		mixer_errors_add(errs, path, "%s (got %s)", range_msg, got);
		return false;
	}
	*out = x;
	return true;
}

static bool mixer__bool(json_t *obj, const char *key, const char *base, bool *out,
                        struct mixer_errors *errs)
{
	json_t *v = mixer__member(obj, key);
	if (!v)
		return true;
	if (!json_is_boolean(v)) {
		char path[MIXER__PATH];
		snprintf(path, sizeof path, "%.100s%s%s", base, *base ? "." : "", key);
		mixer_errors_add(errs, path, "must be true or false");
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* A time in ms: a number in [0, MIXER_MAX_MS]. */
static bool mixer__ms(json_t *obj, const char *key, const char *base, bool required, double *out,
                      bool *present, struct mixer_errors *errs)
{
	char path[MIXER__PATH];
	snprintf(path, sizeof path, "%.100s.%s", base, key);
	json_t *v = mixer__member(obj, key);
	if (!v && required) {
		mixer_errors_add(errs, path, "can't be blank: give a time in milliseconds");
		return false;
	}
	if (v && json_is_number(v) && json_number_value(v) < 0) {
		char got[40];
		mixer__num(got, sizeof got, json_number_value(v));
		mixer_errors_add(errs, path, "must not be negative (got %s)", got);
		return false;
	}
	return mixer__number(obj, key, base, 0, MIXER_MAX_MS,
	                     "must be at most 3600000 ms (one hour)", out, present, errs);
}

static bool mixer__uuid_ok(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		if ((i == 8 || i == 13 || i == 18 || i == 23) ? c != '-' : !hex)
			return false;
	}
	return true;
}

static void mixer__parse_edit(json_t *je, const char *base, struct mixer_edit *e,
                              struct mixer_errors *errs)
{
	memset(e, 0, sizeof *e);
	if (!json_is_object(je)) {
		mixer_errors_add(errs, base, "must be an object like {\"type\": \"trim\", ...}");
		return;
	}
	char path[MIXER__PATH];
	snprintf(path, sizeof path, "%.100s.type", base);
	json_t *jt = mixer__member(je, "type");
	if (!jt) {
		mixer_errors_add(errs, path, "can't be blank: use " MIXER__TYPES);
		return;
	}
	if (!json_is_string(jt)) {
		mixer_errors_add(errs, path, "must be a string: " MIXER__TYPES);
		return;
	}
	const char *t = json_string_value(jt);
	int type = -1;
	for (int i = 0; i < (int)(sizeof mixer__type_names / sizeof mixer__type_names[0]); i++)
		if (strcmp(t, mixer__type_names[i]) == 0)
			type = i;
	if (type < 0) {
		char shown[40];
		size_t n = strlen(t);
		snprintf(shown, sizeof shown, "%.32s%s", t, n > 32 ? "..." : "");
		for (char *p = shown; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
				*p = '?';
		mixer_errors_add(errs, path, "unknown edit type \"%s\": use " MIXER__TYPES, shown);
		return;
	}
	e->type = (enum mixer_edit_type)type;
	switch (e->type) {
	case MIXER_TRIM:
	case MIXER_GAIN:
	case MIXER_SILENCE: {
		bool has_start = false, ok_start, ok_end;
		ok_start = mixer__ms(je, "start_ms", base, false, &e->start_ms, &has_start, errs);
		ok_end = mixer__ms(je, "end_ms", base, false, &e->end_ms, &e->has_end, errs);
		if (ok_start && ok_end && e->has_end && e->end_ms <= e->start_ms) {
			char a[40], b[40];
			mixer__num(a, sizeof a, e->start_ms);
			mixer__num(b, sizeof b, e->end_ms);
			snprintf(path, sizeof path, "%.100s.end_ms", base);
			mixer_errors_add(errs, path, "must be after start_ms (the range %s..%s is %s)", a,
			                 b, e->end_ms == e->start_ms ? "empty" : "reversed");
		}
		if (e->type == MIXER_GAIN) {
			bool has_level = false;
			e->level = 1.0;
			if (mixer__number(je, "level", base, 0, MIXER_MAX_GAIN,
			                  "must be between 0 and 4 (a linear gain)", &e->level, &has_level,
			                  errs) &&
			    !has_level) {
				snprintf(path, sizeof path, "%.100s.level", base);
				mixer_errors_add(errs, path, "can't be blank: give a linear gain from 0 to 4");
			}
		}
		break;
	}
	case MIXER_OFFSET:
		mixer__ms(je, "position_ms", base, true, &e->position_ms, NULL, errs);
		break;
	case MIXER_FADE_IN:
	case MIXER_FADE_OUT:
		mixer__ms(je, "duration_ms", base, true, &e->duration_ms, NULL, errs);
		break;
	}
}

static void mixer__parse_stem(json_t *js, int i, int n_files, mixer_stem_check_fn check,
                              void *check_arg, struct mixer_stem *s, struct mixer_errors *errs)
{
	char base[MIXER__PATH], path[MIXER__PATH];
	snprintf(base, sizeof base, "stems[%d]", i);
	s->file = -1;
	s->volume = 1.0;
	if (!json_is_object(js)) {
		mixer_errors_add(errs, base, "must be an object like {\"file\": 0, \"volume\": 1}");
		return;
	}
	json_t *jf = mixer__member(js, "file"), *jid = mixer__member(js, "stem_id");
	if (jf && jid) {
		mixer_errors_add(errs, base, "give either file or stem_id, not both");
	} else if (!jf && !jid) {
		mixer_errors_add(errs, base,
		                 "needs a source: \"file\" (an index into the stems[] uploads) or "
		                 "\"stem_id\"");
	}
	if (jf) {
		snprintf(path, sizeof path, "%.100s.file", base);
		if (!json_is_integer(jf)) {
			mixer_errors_add(errs, path, "must be a whole number: an index into stems[]");
		} else {
			json_int_t f = json_integer_value(jf);
			if (n_files == 0)
				mixer_errors_add(errs, path,
				                 "file index %lld is out of range: no stems[] files were "
				                 "uploaded",
				                 (long long)f);
			else if (f < 0 || f >= n_files)
				mixer_errors_add(errs, path,
				                 "file index %lld is out of range: %d file%s uploaded, use 0 "
				                 "to %d",
				                 (long long)f, n_files, n_files == 1 ? " was" : "s were",
				                 n_files - 1);
			else
				s->file = (int)f;
		}
	}
	if (jid) {
		snprintf(path, sizeof path, "%.100s.stem_id", base);
		const char *why;
		if (!json_is_string(jid) || !mixer__uuid_ok(json_string_value(jid)))
			mixer_errors_add(errs, path, "must be the id of one of your stems (a UUID)");
		else if (!jf && check && (why = check(check_arg, i, json_string_value(jid))) != NULL)
			mixer_errors_add(errs, path, "%s", why);
		else
			snprintf(s->stem_id, sizeof s->stem_id, "%s", json_string_value(jid));
	}
	mixer__number(js, "volume", base, 0, MIXER_MAX_GAIN,
	              "must be between 0 and 4 (a linear gain)", &s->volume, NULL, errs);
	mixer__number(js, "pan", base, -1, 1, "must be between -1 (left) and 1 (right)", &s->pan,
	              NULL, errs);
	mixer__bool(js, "mute", base, &s->mute, errs);
	mixer__bool(js, "solo", base, &s->solo, errs);
	json_t *jedits = mixer__member(js, "edits");
	if (!jedits)
		return;
	snprintf(path, sizeof path, "%.100s.edits", base);
	if (!json_is_array(jedits)) {
		mixer_errors_add(errs, path, "must be an array of edits");
		return;
	}
	size_t n = json_array_size(jedits);
	if (n > MIXER_MAX_EDITS) {
		mixer_errors_add(errs, path, "has %zu edits; at most %d are allowed per stem", n,
		                 MIXER_MAX_EDITS);
		n = MIXER_MAX_EDITS;
	}
	s->edits = calloc(n ? n : 1, sizeof *s->edits);
	if (!s->edits)
		return; /* the caller sees the NULL and fails with SFA_ENOMEM */
	for (size_t k = 0; k < n; k++) {
		char ebase[MIXER__PATH];
		snprintf(ebase, sizeof ebase, "%.100s.edits[%zu]", base, k);
		mixer__parse_edit(json_array_get(jedits, k), ebase, &s->edits[k], errs);
	}
	s->n_edits = (int)n;
}

void mixer_manifest_free(struct mixer_manifest *m)
{
	for (int i = 0; i < m->n_stems && i < MIXER_MAX_STEMS; i++) {
		free(m->stems[i].edits);
		m->stems[i].edits = NULL;
		m->stems[i].n_edits = 0;
	}
	m->n_stems = 0;
}

int mixer_manifest_parse(const char *text, size_t n, int n_files, mixer_stem_check_fn check,
                         void *check_arg, struct mixer_manifest *out, struct mixer_errors *errs)
{
	int n_before = errs->n + errs->n_dropped;
	if (n > MIXER_MANIFEST_MAX_BYTES) {
		mixer_errors_add(errs, "manifest", "is larger than %d KiB",
		                 MIXER_MANIFEST_MAX_BYTES / 1024);
		return SFA_EINVAL;
	}
	json_error_t je;
	json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		mixer_errors_add(errs, "manifest", "is not valid JSON: %s (line %d, column %d)",
		                 je.text, je.line, je.column);
		return SFA_EINVAL;
	}
	int rc = 0;
	struct mixer_manifest *m = calloc(1, sizeof *m);
	if (!m) {
		json_decref(root);
		return SFA_ENOMEM;
	}
	if (!json_is_object(root)) {
		mixer_errors_add(errs, "manifest", "must be a JSON object like {\"stems\": [...]}");
		goto done;
	}
	m->bit_depth = 16;
	json_t *v = mixer__member(root, "sample_rate");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) < MIXER_MIN_RATE_HZ ||
		    json_integer_value(v) > MIXER_MAX_RATE_HZ) {
			char got[40] = "";
			if (json_is_number(v))
				mixer__num(got, sizeof got, json_number_value(v));
			mixer_errors_add(errs, "sample_rate",
			                 "must be a whole number of Hz from %d to %d%s%s%s",
			                 MIXER_MIN_RATE_HZ, MIXER_MAX_RATE_HZ, *got ? " (got " : "", got,
			                 *got ? ")" : "");
		} else {
			m->sample_rate_hz = (int)json_integer_value(v);
		}
	}
	v = mixer__member(root, "bit_depth");
	if (v) {
		json_int_t b = json_is_integer(v) ? json_integer_value(v) : 0;
		if (b != 16 && b != 24 && b != 32) {
			char got[40] = "";
			if (json_is_number(v))
				mixer__num(got, sizeof got, json_number_value(v));
			mixer_errors_add(errs, "bit_depth",
			                 "unsupported bit depth%s%s: use 16, 24 (PCM) or 32 (float)",
			                 *got ? " " : "", got);
		} else {
			m->bit_depth = (int)b;
		}
	}
	mixer__bool(root, "normalize", "", &m->normalize, errs);
	json_t *jstems = mixer__member(root, "stems");
	if (!jstems) {
		mixer_errors_add(errs, "stems", "can't be blank: list the stems to mix");
	} else if (!json_is_array(jstems)) {
		mixer_errors_add(errs, "stems", "must be an array of stems");
	} else if (json_array_size(jstems) == 0) {
		mixer_errors_add(errs, "stems", "must have at least one stem");
	} else {
		size_t ns = json_array_size(jstems);
		if (ns > MIXER_MAX_STEMS) {
			mixer_errors_add(errs, "stems", "has %zu stems; at most %d are allowed", ns,
			                 MIXER_MAX_STEMS);
			ns = MIXER_MAX_STEMS;
		}
		for (size_t i = 0; i < ns; i++) {
			mixer__parse_stem(json_array_get(jstems, i), (int)i, n_files, check, check_arg,
			                  &m->stems[i], errs);
			m->n_stems = (int)i + 1;
			json_t *je2 = mixer__member(json_array_get(jstems, i), "edits");
			if (json_is_array(je2) && json_array_size(je2) > 0 && !m->stems[i].edits) {
				rc = SFA_ENOMEM;
				goto done;
			}
		}
	}
done:
	json_decref(root);
	if (rc == 0 && errs->n + errs->n_dropped > n_before)
		rc = SFA_EINVAL;
	if (rc) {
		mixer_manifest_free(m);
		free(m);
		return rc;
	}
	*out = *m;
	free(m);
	return 0;
}

/* ---- plans --------------------------------------------------------------------------- */

enum mixer__op_kind { MIXER__OP_GAIN, MIXER__OP_FADE_IN, MIXER__OP_FADE_OUT };

/* One gain operation over source frames [a, b). */
struct mixer__op {
	enum mixer__op_kind kind;
	int64_t a, b;
	float level;   /* MIXER__OP_GAIN (0 for silence) */
	double d;      /* fades: the fade's length in frames; gain at f is (f - a) / d for a
	                * fade-in, (b - 1 - f) / d for a fade-out */
};

struct mixer__stem {
	int64_t src_start, src_end; /* the clip window in the source */
	int64_t pos;                /* mix frame of src_start */
	float gain_l, gain_r;
	bool audible;
	int n_ops;
	struct mixer__op *ops;
};

struct mixer_plan {
	int rate_hz, bit_depth;
	bool normalize;
	int n_stems;
	int64_t n_frames;
	struct mixer__stem stems[MIXER_MAX_STEMS];
	float src[2 * MIXER_BLOCK_FRAMES];
	float env[MIXER_BLOCK_FRAMES];
	float mix[2 * MIXER_BLOCK_FRAMES];
	unsigned char bytes[2 * 4 * MIXER_BLOCK_FRAMES];
};

int64_t mixer_ms_to_frames(double ms, int rate_hz)
{
	double x = ms * (double)rate_hz / 1000.0;
	double f = floor(x);
	return (int64_t)f + (x - f >= 0.5 ? 1 : 0);
}

static int64_t mixer__min(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t mixer__max(int64_t a, int64_t b) { return a > b ? a : b; }

static int mixer__build_stem(const struct mixer_stem *ms, int rate, int64_t n_src, bool any_solo,
                             struct mixer__stem *s)
{
	s->ops = calloc(ms->n_edits ? (size_t)ms->n_edits : 1, sizeof *s->ops);
	if (!s->ops)
		return SFA_ENOMEM;
	int64_t cs = 0, ce = n_src < 0 ? 0 : n_src, pos = 0;
	for (int k = 0; k < ms->n_edits; k++) {
		const struct mixer_edit *e = &ms->edits[k];
		int64_t len = ce - cs;
		int64_t a = cs + mixer__min(mixer_ms_to_frames(e->start_ms, rate), len);
		int64_t b = e->has_end ? cs + mixer__min(mixer_ms_to_frames(e->end_ms, rate), len) : ce;
		if (b < a)
			b = a;
		struct mixer__op *op = &s->ops[s->n_ops];
		switch (e->type) {
		case MIXER_TRIM:
			cs = a;
			ce = b;
			break;
		case MIXER_OFFSET:
			pos = mixer_ms_to_frames(e->position_ms, rate);
			break;
		case MIXER_GAIN:
		case MIXER_SILENCE:
			if (b > a) {
				op->kind = MIXER__OP_GAIN;
				op->a = a;
				op->b = b;
				op->level = e->type == MIXER_GAIN ? (float)e->level : 0.0f;
				s->n_ops++;
			}
			break;
		case MIXER_FADE_IN:
		case MIXER_FADE_OUT: {
			int64_t d = mixer_ms_to_frames(e->duration_ms, rate);
			if (d <= 0 || len <= 0)
				break;
			op->kind = e->type == MIXER_FADE_IN ? MIXER__OP_FADE_IN : MIXER__OP_FADE_OUT;
			op->a = e->type == MIXER_FADE_IN ? cs : mixer__max(ce - d, cs);
			op->b = e->type == MIXER_FADE_IN ? mixer__min(cs + d, ce) : ce;
			op->d = (double)d;
			s->n_ops++;
			break;
		}
		}
	}
	s->src_start = cs;
	s->src_end = ce;
	s->pos = pos;
	double p = ms->pan;
	s->gain_l = (float)(ms->volume * (1.0 - (p > 0 ? p : 0)));
	s->gain_r = (float)(ms->volume * (1.0 + (p < 0 ? p : 0)));
	s->audible = !ms->mute && (!any_solo || ms->solo) && ce > cs;
	return 0;
}

void mixer_plan_free(struct mixer_plan *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_stems; i++)
		free(p->stems[i].ops);
	free(p);
}

static int mixer__sample_bytes(int bit_depth) { return bit_depth / 8; }

static uint64_t mixer__wav_bytes(int bit_depth, int64_t n_frames)
{
	uint64_t hdr = bit_depth == 32 ? 58 : 44;
	return hdr + (uint64_t)n_frames * 2u * (uint64_t)mixer__sample_bytes(bit_depth);
}

int mixer_plan_new(const struct mixer_manifest *m, int rate_hz, const int64_t *n_source_frames,
                   struct mixer_plan **out, char *err, size_t n_err)
{
	if (!m || m->n_stems < 1 || m->n_stems > MIXER_MAX_STEMS || rate_hz < 1 ||
	    (m->bit_depth != 16 && m->bit_depth != 24 && m->bit_depth != 32))
		return sfa_err(err, n_err, SFA_EINVAL, "the mix plan's arguments are invalid");
	struct mixer_plan *p = calloc(1, sizeof *p);
	if (!p)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	p->rate_hz = rate_hz;
	p->bit_depth = m->bit_depth;
	p->normalize = m->normalize;
	bool any_solo = false;
	for (int i = 0; i < m->n_stems; i++)
		any_solo |= m->stems[i].solo;
	for (int i = 0; i < m->n_stems; i++) {
		int rc = mixer__build_stem(&m->stems[i], rate_hz, n_source_frames[i], any_solo,
		                           &p->stems[i]);
		p->n_stems = i + 1;
		if (rc) {
			mixer_plan_free(p);
			return sfa_err(err, n_err, rc, "out of memory");
		}
		const struct mixer__stem *s = &p->stems[i];
		p->n_frames = mixer__max(p->n_frames, s->pos + (s->src_end - s->src_start));
	}
	if (mixer__wav_bytes(p->bit_depth, p->n_frames) - 8 > 0xFFFFFFFFu) {
		double s = (double)p->n_frames / rate_hz;
		mixer_plan_free(p);
		return sfa_err(err, n_err, SFA_ETOOBIG,
		               "the mix would last %.0f s, too long for a %d-bit stereo WAV file at "
		               "%d Hz (4 GiB)",
		               s, m->bit_depth, rate_hz);
	}
	*out = p;
	return 0;
}

int64_t mixer_plan_frames(const struct mixer_plan *p) { return p->n_frames; }
int mixer_plan_rate(const struct mixer_plan *p) { return p->rate_hz; }
int mixer_plan_bit_depth(const struct mixer_plan *p) { return p->bit_depth; }
uint64_t mixer_plan_wav_bytes(const struct mixer_plan *p)
{
	return mixer__wav_bytes(p->bit_depth, p->n_frames);
}

/* ---- rendering ----------------------------------------------------------------------- */

/* Multiplies env[0..n) - source frames [f0, f0 + n) - by op where they overlap. */
static void mixer__apply_op(const struct mixer__op *op, int64_t f0, size_t n, float *env)
{
	int64_t a = mixer__max(op->a, f0), b = mixer__min(op->b, f0 + (int64_t)n);
	switch (op->kind) {
	case MIXER__OP_GAIN:
		for (int64_t f = a; f < b; f++)
			env[f - f0] *= op->level;
		break;
	case MIXER__OP_FADE_IN:
		for (int64_t f = a; f < b; f++)
			env[f - f0] *= (float)((double)(f - op->a) / op->d);
		break;
	case MIXER__OP_FADE_OUT:
		for (int64_t f = a; f < b; f++)
			env[f - f0] *= (float)((double)(op->b - 1 - f) / op->d);
		break;
	}
}

int mixer_render_block(struct mixer_plan *p, int64_t frame, size_t n, mixer_read_fn read,
                       void *arg, float *lr)
{
	if (n > MIXER_BLOCK_FRAMES)
		return SFA_EINVAL;
	memset(lr, 0, 2 * n * sizeof *lr);
	int64_t t0 = frame, t1 = frame + (int64_t)n;
	for (int i = 0; i < p->n_stems; i++) {
		const struct mixer__stem *s = &p->stems[i];
		if (!s->audible || (s->gain_l == 0.0f && s->gain_r == 0.0f))
			continue;
		int64_t c0 = s->pos, c1 = s->pos + (s->src_end - s->src_start);
		int64_t a = mixer__max(t0, c0), b = mixer__min(t1, c1);
		if (a >= b)
			continue;
		size_t k = (size_t)(b - a);
		int64_t f0 = s->src_start + (a - s->pos);
		int rc = read(arg, i, f0, k, p->src);
		if (rc)
			return rc;
		for (size_t j = 0; j < k; j++)
			p->env[j] = 1.0f;
		for (int o = 0; o < s->n_ops; o++)
			mixer__apply_op(&s->ops[o], f0, k, p->env);
		float *dst = lr + 2 * (size_t)(a - t0);
		for (size_t j = 0; j < k; j++) {
			dst[2 * j] += p->src[2 * j] * p->env[j] * s->gain_l;
			dst[2 * j + 1] += p->src[2 * j + 1] * p->env[j] * s->gain_r;
		}
	}
	return 0;
}

static enum audio_sample_format mixer__format(int bit_depth)
{
	return bit_depth == 24 ? AUDIO_PCM24 : bit_depth == 32 ? AUDIO_FLOAT32 : AUDIO_PCM16;
}

void mixer_encode(const float *lr, size_t n, float gain, int bit_depth, unsigned char *out,
                  uint64_t *n_clipped)
{
	uint64_t clipped = audio_wav_encode(lr, 1, 2, n, 2, mixer__format(bit_depth), gain, out);
	if (n_clipped)
		*n_clipped += clipped;
}

size_t mixer_wav_header(int rate_hz, int bit_depth, int64_t n_frames, unsigned char *hdr)
{
	return audio_wav_header(hdr, (uint64_t)n_frames, 2, rate_hz, mixer__format(bit_depth));
}

int mixer_scan(struct mixer_plan *p, mixer_read_fn read, void *arg, struct mixer_stats *st)
{
	double peak = 0;
	uint64_t clipped = 0;
	for (int64_t t = 0; t < p->n_frames; t += MIXER_BLOCK_FRAMES) {
		size_t n = (size_t)mixer__min(MIXER_BLOCK_FRAMES, p->n_frames - t);
		int rc = mixer_render_block(p, t, n, read, arg, p->mix);
		if (rc)
			return rc;
		for (size_t i = 0; i < 2 * n; i++) {
			double a = fabs((double)p->mix[i]);
			if (a > peak) /* false for NaN */
				peak = a;
		}
		if (!p->normalize)
			mixer_encode(p->mix, n, 1.0f, p->bit_depth, p->bytes, &clipped);
	}
	st->peak = peak;
	st->gain = 1.0;
	if (p->normalize && peak > 0 && isfinite(peak))
		st->gain = pow(10.0, -1.0 / 20.0) / peak;
	else if (p->normalize && !isfinite(peak))
		st->gain = 0.0;
	/* Normalised, the peak is 10^(-1/20) ~ 0.891 of full scale: nothing can clip. */
	st->n_clipped = (p->normalize || p->bit_depth == 32) ? 0 : clipped;
	return 0;
}

int mixer_write_wav(struct mixer_plan *p, mixer_read_fn read, void *arg,
                    const struct mixer_stats *st, mixer_write_fn write, void *warg,
                    uint64_t *n_clipped)
{
	unsigned char hdr[MIXER_WAV_HEADER_MAX];
	size_t nh = mixer_wav_header(p->rate_hz, p->bit_depth, p->n_frames, hdr);
	int rc = write(warg, hdr, nh);
	if (rc)
		return rc;
	float gain = (float)st->gain;
	uint64_t clipped = 0;
	size_t frame_bytes = 2 * (size_t)mixer__sample_bytes(p->bit_depth);
	for (int64_t t = 0; t < p->n_frames; t += MIXER_BLOCK_FRAMES) {
		size_t n = (size_t)mixer__min(MIXER_BLOCK_FRAMES, p->n_frames - t);
		if ((rc = mixer_render_block(p, t, n, read, arg, p->mix)) != 0)
			return rc;
		mixer_encode(p->mix, n, gain, p->bit_depth, p->bytes, &clipped);
		if ((rc = write(warg, p->bytes, n * frame_bytes)) != 0)
			return rc;
	}
	if (n_clipped)
		*n_clipped = clipped;
	return 0;
}
