/* mixer_manifest.c - the DAW manifest read from JSON (see mixer_manifest.h), for the edges
 * that receive one: POST /api/daw/export and `sfa daw-render`.
 *
 * Validation walks the whole JSON document once and never stops at the first problem:
 * every check appends to the caller's error list and moves on, so one 422 names all that
 * is wrong. Only a document that passes everything is copied into struct mixer_manifest,
 * the C value the mixer takes.
 */
#include "audio/mixer_manifest.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		           (c >= 'A' && c <= 'F');
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
			mixer_errors_add(errs, path,
			                 "must be after start_ms (the range %s..%s is %s)", a, b,
			                 e->end_ms == e->start_ms ? "empty" : "reversed");
		}
		if (e->type == MIXER_GAIN) {
			bool has_level = false;
			e->level = 1.0;
			if (mixer__number(je, "level", base, 0, MIXER_MAX_GAIN,
			                  "must be between 0 and 4 (a linear gain)", &e->level,
			                  &has_level, errs) &&
			    !has_level) {
				snprintf(path, sizeof path, "%.100s.level", base);
				mixer_errors_add(errs, path,
				                 "can't be blank: give a linear gain from 0 to 4");
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
			mixer_errors_add(errs, path,
			                 "must be a whole number: an index into stems[]");
		} else {
			json_int_t f = json_integer_value(jf);
			if (n_files == 0)
				mixer_errors_add(
					errs, path,
					"file index %lld is out of range: no stems[] files were "
					"uploaded",
					(long long)f);
			else if (f < 0 || f >= n_files)
				mixer_errors_add(
					errs, path,
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
			mixer_errors_add(errs, path,
			                 "must be the id of one of your stems (a UUID)");
		else if (!jf && check &&
		         (why = check(check_arg, i, json_string_value(jid))) != NULL)
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
			                 MIXER_MIN_RATE_HZ, MIXER_MAX_RATE_HZ, *got ? " (got " : "",
			                 got, *got ? ")" : "");
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
			mixer_errors_add(
				errs, "bit_depth",
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
			mixer__parse_stem(json_array_get(jstems, i), (int)i, n_files, check,
			                  check_arg, &m->stems[i], errs);
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
