/* stretch.c - key-shift and time-stretch with librubberband's R3 ("finer") engine, offline:
 * the whole input is studied first, then processed in blocks, so the stretch profile sees
 * every transient and the output has no start delay to trim. */
#include "audio/audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <rubberband/rubberband-c.h>

#include "util/err.h"

enum { STRETCH_BLOCK = 8192 };

int audio_transform(const struct audio_buf *in, double semitones, double tempo_ratio,
                    bool keep_formants, struct audio_buf *out, char *err, size_t n_err)
{
	memset(out, 0, sizeof *out);
	if (!in || !in->data || in->n_frames == 0 || in->n_channels < 1 ||
	    in->n_channels > AUDIO_WAV_MAX_CHANNELS || in->sample_rate_hz < 1)
		return sfa_err(err, n_err, SFA_EINVAL, "no audio to transform");
	if (!(fabs(semitones) <= AUDIO_MAX_SEMITONES))
		return sfa_err(err, n_err, SFA_EINVAL, "the shift must be within %d semitones",
		               AUDIO_MAX_SEMITONES);
	if (!(tempo_ratio >= AUDIO_MIN_TEMPO_RATIO && tempo_ratio <= AUDIO_MAX_TEMPO_RATIO))
		return sfa_err(err, n_err, SFA_EINVAL, "the tempo ratio must be in [%.1f, %.1f]",
		               AUDIO_MIN_TEMPO_RATIO, AUDIO_MAX_TEMPO_RATIO);
	if (in->n_frames > (size_t)UINT32_MAX / 2)
		return sfa_err(err, n_err, SFA_ETOOBIG, "the audio is too long to transform");
	double time_ratio = 1.0 / tempo_ratio;
	size_t n_out = (size_t)llround((double)in->n_frames * time_ratio);
	size_t n_ch = (size_t)in->n_channels;
	out->data = malloc(n_out * n_ch * sizeof *out->data);
	if (!out->data)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory for the transformed audio");
	out->n_frames = n_out;
	out->n_channels = in->n_channels;
	out->sample_rate_hz = in->sample_rate_hz;

	RubberBandOptions opt = RubberBandOptionProcessOffline | RubberBandOptionEngineFiner |
	                        RubberBandOptionChannelsTogether |
	                        (keep_formants ? RubberBandOptionFormantPreserved : 0);
	RubberBandState rb = rubberband_new((unsigned)in->sample_rate_hz, (unsigned)n_ch, opt,
	                                    time_ratio, pow(2.0, semitones / 12.0));
	if (!rb) {
		audio_buf_free(out);
		return sfa_err(err, n_err, SFA_ENOMEM, "the time-stretcher could not start");
	}
	rubberband_set_expected_input_duration(rb, (unsigned)in->n_frames);
	rubberband_set_max_process_size(rb, STRETCH_BLOCK);
	const float *src[AUDIO_WAV_MAX_CHANNELS];
	float *dst[AUDIO_WAV_MAX_CHANNELS];
	for (size_t at = 0; at < in->n_frames; at += STRETCH_BLOCK) {
		size_t n = in->n_frames - at < STRETCH_BLOCK ? in->n_frames - at : STRETCH_BLOCK;
		for (size_t c = 0; c < n_ch; c++)
			src[c] = in->data + c * in->n_frames + at;
		rubberband_study(rb, src, (unsigned)n, at + n == in->n_frames);
	}
	size_t got = 0;
	for (size_t at = 0; at < in->n_frames || got < n_out;) {
		if (at < in->n_frames) {
			size_t n = in->n_frames - at < STRETCH_BLOCK ? in->n_frames - at
			                                             : STRETCH_BLOCK;
			for (size_t c = 0; c < n_ch; c++)
				src[c] = in->data + c * in->n_frames + at;
			rubberband_process(rb, src, (unsigned)n, at + n == in->n_frames);
			at += n;
		}
		int avail;
		while ((avail = rubberband_available(rb)) > 0 && got < n_out) {
			size_t want = (size_t)avail < n_out - got ? (size_t)avail : n_out - got;
			for (size_t c = 0; c < n_ch; c++)
				dst[c] = out->data + c * n_out + got;
			got += rubberband_retrieve(rb, dst, (unsigned)want);
		}
		if (at >= in->n_frames && (avail < 0 || (avail == 0 && got < n_out)))
			break; /* finished: whatever is missing is silence */
	}
	rubberband_delete(rb);
	for (size_t c = 0; c < n_ch && got < n_out; c++)
		memset(out->data + c * n_out + got, 0, (n_out - got) * sizeof *out->data);
	return 0;
}
