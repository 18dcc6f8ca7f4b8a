/* mixer.c - see mixer.h for the manifest, the mixing rules and the output format. The
 * manifest arrives here as a C struct; reading it from JSON is mixer_manifest.c's, at the
 * edge (the API and the CLI).
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

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "util/err.h"

/* ---- manifests ---------------------------------------------------------------------- */

void mixer_manifest_free(struct mixer_manifest *m)
{
	for (int i = 0; i < m->n_stems && i < MIXER_MAX_STEMS; i++) {
		free(m->stems[i].edits);
		m->stems[i].edits = NULL;
		m->stems[i].n_edits = 0;
	}
	m->n_stems = 0;
}

/* ---- plans --------------------------------------------------------------------------- */

enum mixer__op_kind { MIXER__OP_GAIN, MIXER__OP_FADE_IN, MIXER__OP_FADE_OUT };

/* One gain operation over source frames [a, b). */
struct mixer__op {
	enum mixer__op_kind kind;
	int64_t a, b;
	float level; /* MIXER__OP_GAIN (0 for silence) */
	double d;    /* fades: the fade's length in frames; gain at f is (f - a) / d for a
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
		int64_t b = e->has_end ? cs + mixer__min(mixer_ms_to_frames(e->end_ms, rate), len)
		                       : ce;
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
			op->kind = e->type == MIXER_FADE_IN ? MIXER__OP_FADE_IN
			                                    : MIXER__OP_FADE_OUT;
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
		return sfa_err(
			err, n_err, SFA_ETOOBIG,
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

int mixer_render_block(struct mixer_plan *p, int64_t frame, size_t n, mixer_read_fn read, void *arg,
                       float *lr)
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
