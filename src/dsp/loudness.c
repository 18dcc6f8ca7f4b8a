/* loudness.c - EBU R128 / ITU-R BS.1770 loudness of an audio file with libebur128.
 *
 * The file is decoded as a stream (memory stays small whatever its length) at its own
 * rate (libebur128 adapts the K-weighting to it and oversamples 4x below 96 kHz for the true
 * peak; resampling first would move the peaks between samples) to two channels: a mono file
 * becomes two equal channels (dual mono, as it plays on a stereo system), a file with more
 * than two channels is measured on its first two.
 */
#include "dsp/dsp.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ebur128.h>

#include "audio/audio.h"
#include "util/err.h"

enum { LOUDNESS_CHANNELS = 2 };

struct meter {
	const struct audio_stream_info *info; /* the decoder's: the rate, from the first call */
	ebur128_state *st;                    /* made at the first call */
	float *inter;                         /* interleaved frames for libebur128 */
	size_t cap_frames;
	bool failed; /* the sink ran out of memory */
};

static int meter_sink(void *arg, const float *const *planes, size_t n_frames)
{
	struct meter *m = arg;
	if (!m->st &&
	    !(m->st = ebur128_init(LOUDNESS_CHANNELS, (unsigned long)m->info->sample_rate_hz,
	                           EBUR128_MODE_I | EBUR128_MODE_LRA | EBUR128_MODE_TRUE_PEAK))) {
		m->failed = true;
		return SFA_ENOMEM;
	}
	if (n_frames > m->cap_frames) {
		float *p = realloc(m->inter, n_frames * LOUDNESS_CHANNELS * sizeof *p);
		if (!p) {
			m->failed = true;
			return SFA_ENOMEM;
		}
		m->inter = p;
		m->cap_frames = n_frames;
	}
	for (size_t i = 0; i < n_frames; i++)
		for (int c = 0; c < LOUDNESS_CHANNELS; c++)
			m->inter[i * LOUDNESS_CHANNELS + (size_t)c] = planes[c][i];
	if (ebur128_add_frames_float(m->st, m->inter, n_frames) != EBUR128_SUCCESS) {
		m->failed = true;
		return SFA_ENOMEM;
	}
	return 0;
}

int dsp_loudness_file(const char *path, double max_duration_s, struct dsp_loudness *out, char *err,
                      size_t n_err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sfa_err(err, n_err, errno == ENOENT ? SFA_ENOTFOUND : SFA_EIO,
		               "cannot open the audio file: %s", strerror(errno));
	struct audio_stream_info info = {0};
	struct meter m = {.info = &info};
	int rc = audio_decode_stream_fd(fd, 0, LOUDNESS_CHANNELS, max_duration_s, meter_sink, &m,
	                                &info, err, n_err);
	close(fd);
	if (m.failed)
		rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory while measuring the loudness");
	double integrated = -HUGE_VAL, range = 0.0, peak = 0.0;
	if (!rc && !m.st)
		rc = sfa_err(err, n_err, SFA_EFORMAT, "the file contains no samples to measure");
	if (!rc && (ebur128_loudness_global(m.st, &integrated) != EBUR128_SUCCESS ||
	            ebur128_loudness_range(m.st, &range) != EBUR128_SUCCESS))
		rc = sfa_err(err, n_err, SFA_ENOMEM, "the loudness could not be computed");
	for (unsigned c = 0; !rc && c < LOUDNESS_CHANNELS; c++) {
		double p = 0.0;
		if (ebur128_true_peak(m.st, c, &p) != EBUR128_SUCCESS)
			rc = sfa_err(err, n_err, SFA_ENOMEM, "the true peak could not be computed");
		peak = fmax(peak, p);
	}
	if (m.st)
		ebur128_destroy(&m.st);
	free(m.inter);
	if (rc)
		return rc;
	/* Silence (every block gated away) has no integrated loudness: -inf, shown as null. */
	out->integrated_lufs = isfinite(integrated) ? integrated : -HUGE_VAL;
	out->range_lu = isfinite(range) ? range : 0.0;
	out->true_peak_dbtp = peak > 0.0 ? 20.0 * log10(peak) : -HUGE_VAL;
	return 0;
}
