/* loudness.c - EBU R128 / ITU-R BS.1770 loudness of an audio file.
 *
 * The meter is fed the file's own samples at its own rate (libebur128 adapts the
 * K-weighting to it; resampling first would move the peaks between samples) by the
 * analysis's decode, through its tap (dsp_analyze_file: one decode for both). A mono file is
 * measured as dual mono (as it plays on a stereo system), a file with more than two
 * channels on its first two.
 *
 * Integrated loudness and loudness range are libebur128's. The true peak is BS.1770-4
 * Annex 2's: the largest magnitude of the samples and of the signal oversampled by 4 below
 * 96 kHz (2 below 192 kHz) with the Annex's own 48-coefficient interpolator. That filter is
 * run here, as 12-tap phases vectorised across the samples: libebur128's scalar
 * interpolator cost 2.1 of the 3.3 s of a 4-minute song's whole analysis, libswresample's
 * general polyphase resampler (the route of FFmpeg's ebur128 filter) 0.17 s, this 0.035 s
 * (bench/analysis), and both read Tech 3341's inter-sample sines alike (test_loudness.c).
 * A block of samples whose interpolated points cannot reach the peak found so far is not
 * interpolated at all: no point exceeds the largest phase's sum of |taps| times
 * the largest sample magnitude within its taps' reach, so such a block cannot change the
 * result, which is the same peak, bit for bit, as interpolating every block.
 */
#include "dsp/dsp.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ebur128.h>

#include "audio/audio.h"
#include "dsp/dsp_internal.h"
#include "util/err.h"
#include "util/simd.h"

enum {
	TP_TAPS = 12, /* per phase of BS.1770-4 Annex 2's interpolator */
	TP_HIST = TP_TAPS - 1,
	TP_BLOCK = 256, /* samples judged at a time for the bound (at least TP_HIST) */
};
_Static_assert(TP_BLOCK >= TP_HIST, "a block's taps reach back no further than the block before");

/* Phases 0 and 1 of the Annex's interpolator (tap 0 weighs the newest sample): phase p
 * interpolates p/4 of a sample period on. Phases 3 and 2 are them reversed. */
static const float TP_PHASE[2][TP_TAPS] = {
	{0.0017089843750f, 0.0109863281250f, -0.0196533203125f, 0.0332031250000f, -0.0594482421875f,
         0.1373291015625f, 0.9721679687500f, -0.1022949218750f, 0.0476074218750f, -0.0266113281250f,
         0.0148925781250f, -0.0083007812500f},
	{-0.0291748046875f, 0.0292968750000f, -0.0517578125000f, 0.0891113281250f,
         -0.1665039062500f, 0.4650878906250f, 0.7797851562500f, -0.2003173828125f, 0.1015625000000f,
         -0.0582275390625f, 0.0330810546875f, -0.0189208984375f},
};

struct dsp_meter {
	const struct audio_stream_info *info; /* the decoder's: the rate, from the first call */
	int n_channels;                       /* measured: 1 (as dual mono) or 2 */
	int oversample;                       /* the true peak's factor: 4, 2 or 1 */
	ebur128_state *st;                    /* made at the first call */
	float *inter;                         /* interleaved frames for libebur128 */
	size_t cap_inter;
	double tp_gain;         /* no point exceeds this times the largest sample in its reach */
	float hist[2][TP_HIST]; /* each channel's last TP_HIST samples (zeros before the first) */
	float peak;             /* the largest magnitude so far, sampled or oversampled */
	bool failed;            /* the sink ran out of memory */
};

struct dsp_meter *dsp_meter_new(const struct audio_stream_info *info)
{
	struct dsp_meter *m = calloc(1, sizeof *m);
	if (m)
		m->info = info;
	return m;
}

/* Sets up the meter at the first samples, when the rate and channel count are known. */
static int meter_start(struct dsp_meter *m)
{
	int rate = m->info->in_rate_hz;
	m->n_channels = m->info->in_channels > 1 ? 2 : 1;
	m->st = ebur128_init((unsigned)m->n_channels, (unsigned long)rate,
	                     EBUR128_MODE_I | EBUR128_MODE_LRA);
	if (!m->st)
		return SFA_ENOMEM;
	if (m->n_channels == 1 &&
	    ebur128_set_channel(m->st, 0, EBUR128_DUAL_MONO) != EBUR128_SUCCESS)
		return SFA_ENOMEM;
	m->oversample = rate < 96000 ? 4 : rate < 192000 ? 2 : 1; /* 192 kHz+: the samples */
	/* the largest phase's sum of |taps| (phase 1's, 2.0228; phase 0's is 1.434), with room
	 * for the float rounding of a point's twelve products and sums (under 1e-6 relative) */
	for (int p = 0; p < 2; p++) {
		double sum = 0.0;
		for (int k = 0; k < TP_TAPS; k++)
			sum += fabs((double)TP_PHASE[p][k]);
		m->tp_gain = sum > m->tp_gain ? sum : m->tp_gain;
	}
	m->tp_gain *= 1.0 + 1e-5;
	return 0;
}

/* Grows a buffer to n floats. */
static int grow(float **buf, size_t *cap, size_t n)
{
	if (n <= *cap)
		return 0;
	float *p = realloc(*buf, n * sizeof *p);
	if (!p)
		return SFA_ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

/* |v|'s bits: a magnitude's bits order as its value, and an integer max vectorises where
 * fmaxf is a call per sample. */
static inline uint32_t mag_bits(float v)
{
	uint32_t b;
	memcpy(&b, &v, sizeof b);
	return b & 0x7fffffffu;
}

/* max(peak, max |x|), on the bits. */
static float peak_of(const float *x, size_t n, float peak)
{
	uint32_t m;
	memcpy(&m, &peak, sizeof m);
	for (size_t i = 0; i < n; i++) {
		uint32_t b = mag_bits(x[i]);
		m = b > m ? b : m;
	}
	m = m < 0x7f800000u ? m : 0x7f800000u; /* a NaN sample reads as infinite */
	memcpy(&peak, &m, sizeof m);
	return peak;
}

/* max(peak, the largest magnitude of the n samples x[TP_HIST ..] oversampled by factor (4:
 * phases 0-3; 2: phases 0 and 2), x[0 .. TP_HIST) being the samples before them. Plain
 * loops over independent samples, vectorised in each clone (util/simd.h). */
SFA_CLONES static float tp_peak(const float *x, size_t n, int factor, float peak)
{
	const float *h0 = TP_PHASE[0], *h1 = TP_PHASE[1];
	const float *xb = x + TP_HIST; /* xb[i - k]: tap k of the points after sample i */
	uint32_t m;
	memcpy(&m, &peak, sizeof m);
	for (size_t i = 0; i < n; i++) {
		float y0 = 0.0f, y1 = 0.0f, y2 = 0.0f, y3 = 0.0f;
		for (int k = 0; k < TP_TAPS; k++) {
			float v = xb[(ptrdiff_t)i - k];
			y0 += h0[k] * v;
			y1 += h1[k] * v;
			y2 += h1[TP_HIST - k] * v;
			y3 += h0[TP_HIST - k] * v;
		}
		uint32_t b0 = mag_bits(y0), b2 = mag_bits(y2);
		uint32_t b1 = factor == 4 ? mag_bits(y1) : 0, b3 = factor == 4 ? mag_bits(y3) : 0;
		b0 = b0 > b1 ? b0 : b1;
		b2 = b2 > b3 ? b2 : b3;
		b0 = b0 > b2 ? b0 : b2;
		m = b0 > m ? b0 : m;
	}
	m = m < 0x7f800000u ? m : 0x7f800000u; /* a NaN reads as infinite */
	memcpy(&peak, &m, sizeof m);
	return peak;
}

/* Raises the peak by channel c's n new samples x and by the points between them
 * oversampled, block by block; keeps the last TP_HIST samples as the history. A block is
 * interpolated only when tp_gain times the largest magnitude its points' taps reach (the
 * block and the TP_HIST samples before it, covered by the block before or the history) can
 * exceed the peak. The first block's points need the history before x (a few floats put
 * together here); the rest read x itself, uncopied. */
static void meter_channel(struct dsp_meter *m, int c, const float *x, size_t n)
{
	float before = peak_of(m->hist[c], TP_HIST, 0.0f);
	for (size_t i0 = 0; i0 < n; i0 += TP_BLOCK) {
		size_t nb = n - i0 < TP_BLOCK ? n - i0 : TP_BLOCK;
		float top = peak_of(x + i0, nb, 0.0f);
		m->peak = top > m->peak ? top : m->peak;
		float reach = top > before ? top : before;
		before = top;
		if (m->oversample == 1 || (double)reach * m->tp_gain < (double)m->peak)
			continue; /* no point here can reach the peak (NaN compares false) */
		size_t from = i0; /* the block's first point whose taps lie in x */
		if (i0 == 0) {
			float head[2 * TP_HIST];
			size_t nh = nb < TP_HIST ? nb : TP_HIST;
			memcpy(head, m->hist[c], sizeof m->hist[c]);
			memcpy(head + TP_HIST, x, nh * sizeof *x);
			m->peak = tp_peak(head, nh, m->oversample, m->peak);
			from = nh;
		}
		if (i0 + nb > from)
			m->peak = tp_peak(x + from - TP_HIST, i0 + nb - from, m->oversample,
			                  m->peak);
	}
	if (n >= TP_HIST) {
		memcpy(m->hist[c], x + n - TP_HIST, sizeof m->hist[c]);
	} else {
		memmove(m->hist[c], m->hist[c] + n, (TP_HIST - n) * sizeof *x);
		memcpy(m->hist[c] + TP_HIST - n, x, n * sizeof *x);
	}
}

int dsp_meter_sink(void *arg, const float *const *planes, size_t n)
{
	struct dsp_meter *m = arg;
	int rc = 0;
	if (!m->st && (rc = meter_start(m)) != 0)
		goto fail;
	const float *ch[2] = {planes[0], planes[m->n_channels - 1]};
	const float *frames = ch[0];
	if (m->n_channels == 2) {
		if ((rc = grow(&m->inter, &m->cap_inter, 2 * n)) != 0)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			m->inter[2 * i] = ch[0][i];
			m->inter[2 * i + 1] = ch[1][i];
		}
		frames = m->inter;
	}
	if (ebur128_add_frames_float(m->st, frames, n) != EBUR128_SUCCESS) {
		rc = SFA_ENOMEM;
		goto fail;
	}
	for (int c = 0; c < m->n_channels; c++)
		meter_channel(m, c, ch[c], n);
	return 0;
fail:
	m->failed = true;
	return rc;
}

void dsp_meter_free(struct dsp_meter *m)
{
	if (!m)
		return;
	if (m->st)
		ebur128_destroy(&m->st);
	free(m->inter);
	free(m);
}

int dsp_meter_finish(struct dsp_meter *m, struct dsp_loudness *out, char *err, size_t n_err)
{
	int rc = 0;
	double integrated = -HUGE_VAL, range = 0.0;
	if (m->failed)
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory while measuring the loudness");
	else if (!m->st)
		rc = sfa_err(err, n_err, SFA_EFORMAT, "the file contains no samples to measure");
	else if (ebur128_loudness_global(m->st, &integrated) != EBUR128_SUCCESS ||
	         ebur128_loudness_range(m->st, &range) != EBUR128_SUCCESS)
		rc = sfa_err(err, n_err, SFA_ENOMEM, "the loudness could not be computed");
	static const float TAIL[TP_HIST]; /* zeros: the filter's last points */
	for (int c = 0; !rc && c < m->n_channels; c++)
		meter_channel(m, c, TAIL, TP_HIST);
	if (!rc) {
		/* Silence (every block gated away) has no integrated loudness: -inf, shown as
		 * null. */
		out->integrated_lufs = isfinite(integrated) ? integrated : -HUGE_VAL;
		out->range_lu = isfinite(range) ? range : 0.0;
		out->true_peak_dbtp = m->peak > 0.0f ? 20.0 * log10(m->peak) : -HUGE_VAL;
	}
	dsp_meter_free(m);
	return rc;
}
