/* wav.c - RIFF/WAVE encoding shared by every writer: whole files (audio_write_wav), stems
 * streamed as the Demucs engine produces them, and the DAW mixer's output stream.
 *
 * One header layout (format 1 PCM, 3 IEEE float with a fact chunk, or EXTENSIBLE PCM for
 * more than two channels), one quantiser (round to nearest, clip at full scale, NaN to 0)
 * and one sample packer, so every WAV the service makes is byte-for-byte the same
 * encoding of the same samples.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio/audio.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/str.h"

static unsigned char *le(unsigned char *p, uint64_t v, int n_bytes)
{
	for (int i = 0; i < n_bytes; i++)
		*p++ = (unsigned char)(v >> (8 * i));
	return p;
}

static int bits_of(enum audio_sample_format fmt)
{
	return fmt == AUDIO_PCM16 ? 16 : fmt == AUDIO_PCM24 ? 24 : 32;
}

size_t audio_wav_header(unsigned char hdr[AUDIO_WAV_HEADER_MAX], uint64_t n_frames, int n_channels,
                        int rate_hz, enum audio_sample_format fmt)
{
	int bits = bits_of(fmt);
	bool is_float = fmt == AUDIO_FLOAT32;
	bool extensible = !is_float && n_channels > 2;
	unsigned block = (unsigned)n_channels * (unsigned)bits / 8u;
	uint64_t data_bytes = n_frames * block;
	unsigned fmt_bytes = extensible ? 40 : is_float ? 18 : 16;
	unsigned fact_bytes = is_float ? 12 : 0;
	uint64_t riff_bytes = 4 + (8 + fmt_bytes) + fact_bytes + 8 + data_bytes + (data_bytes & 1);
	if (riff_bytes > 0xFFFFFFFFu)
		return 0;
	unsigned char *p = hdr;
	memcpy(p, "RIFF", 4);
	p = le(p + 4, riff_bytes, 4);
	memcpy(p, "WAVEfmt ", 8);
	p = le(p + 8, fmt_bytes, 4);
	p = le(p, extensible ? 0xFFFE : is_float ? 3 : 1, 2);
	p = le(p, (uint64_t)n_channels, 2);
	p = le(p, (uint64_t)rate_hz, 4);
	p = le(p, (uint64_t)rate_hz * block, 4);
	p = le(p, block, 2);
	p = le(p, (uint64_t)bits, 2);
	if (is_float) {
		p = le(p, 0, 2); /* cbSize */
	} else if (extensible) {
		p = le(p, 22, 2);             /* cbSize */
		p = le(p, (uint64_t)bits, 2); /* valid bits */
		p = le(p, 0, 4);              /* channel mask: unspecified order */
		/* KSDATAFORMAT_SUBTYPE_PCM: 00000001-0000-0010-8000-00aa00389b71 */
		static const unsigned char guid[16] = {1,    0, 0, 0,    0, 0,    0x10, 0,
		                                       0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71};
		memcpy(p, guid, 16);
		p += 16;
	}
	if (is_float) {
		memcpy(p, "fact", 4);
		p = le(p + 4, 4, 4);
		p = le(p, n_frames > 0xFFFFFFFFu ? 0xFFFFFFFFu : n_frames, 4);
	}
	memcpy(p, "data", 4);
	p = le(p + 4, data_bytes, 4);
	return (size_t)(p - hdr);
}

bool audio_quantize(float x, int bits, int32_t *out)
{
	double scale = (double)(1L << (bits - 1));
	double v = (double)x * scale;
	if (isnan(v)) {
		*out = 0;
		return false;
	}
	/* lrint rounds ties to even; anything from scale - 0.5 up would round past the top. */
	if (v >= scale - 0.5) {
		*out = (int32_t)(scale - 1.0);
		return true;
	}
	if (v < -scale - 0.5) {
		*out = (int32_t)-scale;
		return true;
	}
	*out = (int32_t)lrint(v);
	return false;
}

uint64_t audio_wav_encode(const float *data, size_t chan_stride, size_t frame_stride, size_t n,
                          int n_channels, enum audio_sample_format fmt, float gain,
                          unsigned char *out)
{
	uint64_t clipped = 0;
	int bits = bits_of(fmt);
	int nb = bits / 8;
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < n_channels; c++) {
			float x = data[(size_t)c * chan_stride + i * frame_stride] * gain;
			uint32_t u;
			if (fmt == AUDIO_FLOAT32) {
				if (!isfinite(x))
					x = 0.0f;
				memcpy(&u, &x, 4);
			} else {
				int32_t q;
				clipped += audio_quantize(x, bits, &q);
				u = (uint32_t)q;
			}
			out = le(out, u, nb);
		}
	}
	return clipped;
}

int audio_wav_open(struct audio_wav_file *w, const char *path, uint64_t n_frames, int n_channels,
                   int rate_hz, enum audio_sample_format fmt, char *err, size_t n_err)
{
	memset(w, 0, sizeof *w);
	w->fd = -1;
	if (!path || !*path)
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given");
	if (n_channels < 1 || n_channels > AUDIO_WAV_MAX_CHANNELS)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write %d channels (1 to %d)",
		               n_channels, AUDIO_WAV_MAX_CHANNELS);
	if (rate_hz < 1 || rate_hz > 768000)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write a sample rate of %d Hz",
		               rate_hz);
	if (fmt != AUDIO_PCM16 && fmt != AUDIO_PCM24 && fmt != AUDIO_FLOAT32)
		return sfa_err(err, n_err, SFA_EINVAL, "unknown WAV sample format");
	unsigned char hdr[AUDIO_WAV_HEADER_MAX];
	size_t nh = audio_wav_header(hdr, n_frames, n_channels, rate_hz, fmt);
	if (!nh)
		return sfa_err(err, n_err, SFA_ETOOBIG,
		               "the audio is too long for a WAV file (4 GiB)");
	str_copy(w->path, sizeof w->path, path);
	w->fmt = fmt;
	w->n_channels = n_channels;
	w->n_frames = n_frames;
	w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	if (w->fd < 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot create %s: %s", path, strerror(errno));
	if (fs_write_all(w->fd, hdr, nh) != 0) {
		int e = errno;
		audio_wav_close(w, true, NULL, 0);
		return sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", path, strerror(e));
	}
	return 0;
}

int audio_wav_write(struct audio_wav_file *w, const float *planes, size_t stride, size_t n,
                    char *err, size_t n_err)
{
	size_t block = (size_t)w->n_channels * (size_t)bits_of(w->fmt) / 8;
	if (n > w->n_frames - w->n_written)
		return sfa_err(err, n_err, SFA_EINVAL, "more frames than the WAV header announced");
	enum { CHUNK = 4096 };
	if (!w->buf && !(w->buf = malloc(CHUNK * (size_t)AUDIO_WAV_MAX_CHANNELS * 4)))
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
		size_t k = n - i0 < CHUNK ? n - i0 : CHUNK;
		audio_wav_encode(planes + i0, stride, 1, k, w->n_channels, w->fmt, 1.0f, w->buf);
		if (fs_write_all(w->fd, w->buf, k * block) != 0)
			return sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", w->path,
			               strerror(errno));
	}
	w->n_written += n;
	return 0;
}

int audio_wav_close(struct audio_wav_file *w, bool failed, char *err, size_t n_err)
{
	int rc = 0;
	if (w->fd >= 0) {
		size_t block = (size_t)w->n_channels * (size_t)bits_of(w->fmt) / 8;
		unsigned char pad = 0;
		if (!failed && w->n_written != w->n_frames)
			rc = sfa_err(err, n_err, SFA_EINVAL,
			             "fewer frames than the WAV header announced");
		else if (!failed && ((w->n_frames * block) & 1) &&
		         fs_write_all(w->fd, &pad, 1) != 0)
			rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", w->path,
			             strerror(errno));
		else if (!failed && fsync(w->fd) != 0 && errno != EINVAL && errno != EROFS)
			rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", w->path,
			             strerror(errno));
		if (close(w->fd) != 0 && !rc && !failed)
			rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", w->path,
			             strerror(errno));
		if (failed || rc)
			unlink(w->path);
	}
	free(w->buf);
	w->buf = NULL;
	w->fd = -1;
	return rc;
}

int audio_write_wav(const char *path, const struct audio_buf *b, enum audio_sample_format fmt,
                    char *err, size_t n_err)
{
	if (!b || (b->n_frames > 0 && !b->data))
		return sfa_err(err, n_err, SFA_EINVAL, "no audio to write");
	struct audio_wav_file w;
	int rc = audio_wav_open(&w, path, b->n_frames, b->n_channels, b->sample_rate_hz, fmt, err,
	                        n_err);
	if (!rc)
		rc = audio_wav_write(&w, b->data, b->n_frames, b->n_frames, err, n_err);
	int rc2 = audio_wav_close(&w, rc != 0, rc ? NULL : err, n_err);
	return rc ? rc : rc2;
}
