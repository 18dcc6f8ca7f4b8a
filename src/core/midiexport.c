/* midiexport.c - see midiexport.h. The file is built in two steps: the events of a track
 * are collected (tick, order at one tick, bytes), sorted, then written with delta times;
 * at one tick note-offs come before text and note-ons, so a chord that repeats a note of
 * the one before it sounds it again.
 */
#include "core/midiexport.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/dsp.h"
#include "util/err.h"

enum { MAX_FILE_BYTES = 32 << 20, MAX_TEMPO_US = 0xFFFFFF, MAX_TICK = 0x0FFFFFFF };

/* ---- a growable byte buffer (capped) --------------------------------------------- */
struct buf {
	unsigned char *p;
	size_t n, cap;
	int bad;
};

static void put(struct buf *b, const void *data, size_t n)
{
	if (b->bad)
		return;
	if (b->n + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->n + n)
			cap *= 2;
		unsigned char *p = cap <= MAX_FILE_BYTES ? realloc(b->p, cap) : NULL;
		if (!p) {
			b->bad = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, data, n);
	b->n += n;
}

static void put_u8(struct buf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(b, &c, 1);
}

static void put_be(struct buf *b, uint32_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		put_u8(b, (v >> (8 * i)) & 0xFF);
}

/* MIDI's variable-length quantity: 7 bits a byte, high bit set on all but the last. */
static void put_vlq(struct buf *b, uint32_t v)
{
	unsigned char tmp[5];
	int n = 0;
	tmp[n++] = v & 0x7F;
	while ((v >>= 7) != 0)
		tmp[n++] = (unsigned char)(0x80 | (v & 0x7F));
	while (n > 0)
		put_u8(b, tmp[--n]);
}

/* ---- events ---------------------------------------------------------------------- */
enum { ORD_OFF, ORD_META, ORD_ON };

struct event {
	uint32_t tick;
	uint32_t seq; /* insertion order, for a stable sort */
	uint8_t ord;  /* ORD_* */
	uint8_t n;    /* bytes in b (channel events, short metas) */
	uint8_t b[6];
	uint8_t meta; /* text metas: the type, text in text/n_text */
	const char *text;
	size_t n_text;
};

struct track {
	struct event *e;
	size_t n, cap;
	int bad;
};

static struct event *add(struct track *t, uint32_t tick, int ord)
{
	if (t->bad)
		return NULL;
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 256;
		struct event *e = realloc(t->e, cap * sizeof *e);
		if (!e) {
			t->bad = 1;
			return NULL;
		}
		t->e = e;
		t->cap = cap;
	}
	struct event *e = &t->e[t->n];
	memset(e, 0, sizeof *e);
	e->tick = tick;
	e->seq = (uint32_t)t->n++;
	e->ord = (uint8_t)ord;
	return e;
}

static void add_bytes(struct track *t, uint32_t tick, int ord, const uint8_t *b, int n)
{
	struct event *e = add(t, tick, ord);
	if (e) {
		memcpy(e->b, b, (size_t)n);
		e->n = (uint8_t)n;
	}
}

/* The length of text cut to MIDI_MAX_TEXT bytes, not inside a UTF-8 sequence. */
static size_t text_len(const char *s)
{
	size_t n = strlen(s);
	if (n <= MIDI_MAX_TEXT)
		return n;
	n = MIDI_MAX_TEXT;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

static void add_text(struct track *t, uint32_t tick, uint8_t meta, const char *s)
{
	struct event *e = add(t, tick, ORD_META);
	if (e) {
		e->meta = meta;
		e->text = s;
		e->n_text = text_len(s);
	}
}

static int cmp_event(const void *pa, const void *pb)
{
	const struct event *a = pa, *b = pb;
	if (a->tick != b->tick)
		return a->tick < b->tick ? -1 : 1;
	if (a->ord != b->ord)
		return a->ord < b->ord ? -1 : 1;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void write_track(struct buf *out, struct track *t)
{
	qsort(t->e, t->n, sizeof *t->e, cmp_event);
	struct buf body = {0};
	uint32_t at = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct event *e = &t->e[i];
		put_vlq(&body, e->tick - at);
		at = e->tick;
		if (e->text) {
			put_u8(&body, 0xFF);
			put_u8(&body, e->meta);
			put_vlq(&body, (uint32_t)e->n_text);
			put(&body, e->text, e->n_text);
		} else {
			put(&body, e->b, e->n);
		}
	}
	static const uint8_t eot[] = {0x00, 0xFF, 0x2F, 0x00};
	put(&body, eot, sizeof eot);
	put(out, "MTrk", 4);
	put_be(out, (uint32_t)body.n, 4);
	if (body.bad)
		out->bad = 1;
	else
		put(out, body.p, body.n);
	free(body.p);
}

/* ---- the analysis ---------------------------------------------------------------- */

/* A time in seconds from the JSON, or -1 when it is not one the analyser writes. */
static double seconds(const json_t *v)
{
	if (!json_is_number(v))
		return -1.0;
	double s = json_number_value(v);
	return isfinite(s) && s >= 0.0 && s <= DSP_MAX_SECONDS + 60.0 ? s : -1.0;
}

/* The beat grid as whole microseconds, lead beats included (see midiexport.h). */
struct grid {
	int64_t *us; /* us[j]: the time of quarter note j */
	size_t n;
};

/* The tick of time t (microseconds) on the grid. */
static uint32_t tick_of(const struct grid *g, int64_t t)
{
	if (t <= 0)
		return 0;
	size_t lo = 0, hi = g->n - 1; /* the last grid point at or before t */
	if (t >= g->us[hi]) {
		lo = hi - 1;
	} else {
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;
			if (g->us[mid] <= t)
				lo = mid;
			else
				hi = mid;
		}
	}
	double beat = (double)lo + (double)(t - g->us[lo]) / (double)(g->us[lo + 1] - g->us[lo]);
	double tick = beat * MIDI_PPQ;
	/* a delta time is at most four bytes of VLQ: 0x0FFFFFFF ticks */
	return tick >= (double)MAX_TICK ? MAX_TICK : (uint32_t)llround(tick);
}

static int64_t to_us(double s) { return (int64_t)llround(s * 1e6); }

int midi_from_analysis(const json_t *analysis, const char *title, unsigned char **out,
                       size_t *n_out, char *err, size_t n_err)
{
	const json_t *jb = json_object_get(analysis, "beats");
	size_t nj = json_is_array(jb) ? json_array_size(jb) : 0;
	if (nj > MIDI_MAX_BEATS)
		nj = MIDI_MAX_BEATS;
	/* the beats, strictly rising by at least a millisecond */
	double *beats = malloc((nj + 1) * sizeof *beats);
	int64_t *us = malloc((nj + 130) * sizeof *us);
	struct track t0 = {0}, t1 = {0};
	struct buf file = {0};
	int rc = 0;
	if (!beats || !us)
		goto nomem;
	size_t nb = 0;
	for (size_t i = 0; i < nj; i++) {
		double s = seconds(json_array_get(jb, i));
		if (s >= 0.0 && (nb == 0 || s >= beats[nb - 1] + 0.001))
			beats[nb++] = s;
	}
	if (nb < 2) {
		rc = sfa_err(
			err, n_err, SFA_ECONFLICT,
			"This track's analysis has no beats to make a tempo map from; analyse it "
			"with the tempo feature (or all) first.");
		goto out;
	}

	/* lead beats before the first: whole beats of the first beat's length, at most 128 */
	double p0 = beats[1] - beats[0];
	size_t m = beats[0] < 0.001 ? 0 : (size_t)fmax(1.0, round(beats[0] / p0));
	if (m > 128)
		m = 128;
	struct grid g = {us, 0};
	for (size_t k = 0; k < m; k++)
		us[g.n++] = to_us(beats[0] * (double)k / (double)m);
	for (size_t i = 0; i < nb; i++)
		us[g.n++] = (m == 0 && i == 0) ? 0 : to_us(beats[i]);

	/* the time signature, and the beats before the first bar */
	const char *ts = json_string_value(json_object_get(analysis, "time_signature"));
	int bpb = ts && strcmp(ts, "3/4") == 0 ? 3 : 4;
	size_t pickup = 0;
	const json_t *jd = json_object_get(analysis, "downbeats");
	double d0 = json_is_array(jd) ? seconds(json_array_get(jd, 0)) : -1.0;
	if (ts && d0 >= 0.0) {
		size_t i = 0;
		while (i < nb && beats[i] < d0 - 0.001)
			i++;
		if (i < nb && fabs(beats[i] - d0) <= 0.001)
			pickup = (m + i) % (size_t)bpb;
	}

	/* track 0: name, time signatures, tempi, section markers */
	if (title && *title)
		add_text(&t0, 0, 0x03, title);
	if (pickup) {
		add_bytes(&t0, 0, ORD_META,
		          (const uint8_t[]){0xFF, 0x58, 4, (uint8_t)pickup, 2, 24, 8}, 7);
		add_bytes(&t0, (uint32_t)(pickup * MIDI_PPQ), ORD_META,
		          (const uint8_t[]){0xFF, 0x58, 4, (uint8_t)bpb, 2, 24, 8}, 7);
	} else {
		add_bytes(&t0, 0, ORD_META,
		          (const uint8_t[]){0xFF, 0x58, 4, (uint8_t)bpb, 2, 24, 8}, 7);
	}
	int64_t last_tempo = -1;
	for (size_t j = 0; j + 1 < g.n; j++) {
		int64_t q = us[j + 1] - us[j];
		if (q > MAX_TEMPO_US)
			q = MAX_TEMPO_US;
		if (q == last_tempo)
			continue;
		last_tempo = q;
		add_bytes(&t0, (uint32_t)(j * MIDI_PPQ), ORD_META,
		          (const uint8_t[]){0xFF, 0x51, 3, (uint8_t)(q >> 16), (uint8_t)(q >> 8),
		                            (uint8_t)q},
		          6);
	}
	const json_t *js = json_object_get(analysis, "sections");
	for (size_t i = 0; json_is_array(js) && i < json_array_size(js) && i < MIDI_MAX_SECTIONS;
	     i++) {
		const json_t *x = json_array_get(js, i);
		const char *label = json_string_value(json_object_get(x, "label"));
		double s = seconds(json_object_get(x, "start"));
		if (label && s >= 0.0)
			add_text(&t0, tick_of(&g, to_us(s)), 0x06, label);
	}

	/* track 1: the chords */
	add_text(&t1, 0, 0x03, "Chords");
	add_bytes(&t1, 0, ORD_META, (const uint8_t[]){0xC0, 0}, 2); /* piano */
	const json_t *jc = json_object_get(analysis, "chords");
	for (size_t i = 0; json_is_array(jc) && i < json_array_size(jc) && i < MIDI_MAX_CHORDS;
	     i++) {
		const json_t *x = json_array_get(jc, i);
		const char *label = json_string_value(json_object_get(x, "label"));
		double a = seconds(json_object_get(x, "start")),
		       b = seconds(json_object_get(x, "end"));
		int root, iv[4], n;
		if (!label || a < 0.0 || b <= a || (n = dsp_chord_parse(label, &root, iv)) <= 0)
			continue;
		uint32_t ta = tick_of(&g, to_us(a)), tb = tick_of(&g, to_us(b));
		if (tb <= ta)
			continue;
		add_text(&t1, ta, 0x01, label);
		uint8_t notes[5];
		notes[0] = (uint8_t)(36 + root); /* the bass: the root, C2..B2 */
		for (int k = 0; k < n; k++)
			notes[k + 1] = (uint8_t)(60 + root + iv[k]);
		for (int k = 0; k <= n; k++) {
			add_bytes(&t1, ta, ORD_ON, (const uint8_t[]){0x90, notes[k], 80}, 3);
			add_bytes(&t1, tb, ORD_OFF, (const uint8_t[]){0x80, notes[k], 0}, 3);
		}
	}
	if (t0.bad || t1.bad)
		goto nomem;

	put(&file, "MThd", 4);
	put_be(&file, 6, 4);
	put_be(&file, 1, 2); /* format 1 */
	put_be(&file, 2, 2); /* two tracks */
	put_be(&file, MIDI_PPQ, 2);
	write_track(&file, &t0);
	write_track(&file, &t1);
	if (file.bad)
		goto nomem;
	*out = file.p;
	*n_out = file.n;
	file.p = NULL;
	goto out;
nomem:
	rc = sfa_err(err, n_err, SFA_ENOMEM, "Out of memory while writing the MIDI file.");
out:
	free(file.p);
	free(t0.e);
	free(t1.e);
	free(us);
	free(beats);
	return rc;
}
