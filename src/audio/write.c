/* write.c - writing planar float audio as WAV (by hand) or FLAC (libavcodec + libavformat).
 *
 * Quantisation, for both writers: a float x becomes round-to-nearest(x * 2^(bits-1)),
 * clipped to [-2^(bits-1), 2^(bits-1) - 1]; NaN becomes 0. This is the inverse of the
 * decoder's x / 2^(bits-1), so a PCM file decoded and written back at the same depth is
 * bit-identical. 32-bit float WAV stores the samples unchanged (and unclipped).
 *
 * WAV layout: RIFF/WAVE with a 16-byte PCM fmt chunk (format 1) for 1-2 channel PCM,
 * WAVE_FORMAT_EXTENSIBLE for more channels, and format 3 (IEEE float) with a fact chunk
 * for float. Everything is written little-endian byte by byte, so the host's byte order
 * does not matter. RIFF sizes are 32-bit: a file that would pass 4 GiB is refused.
 *
 * FLAC goes through FFmpeg's native encoder (compression level 5, its default) and the flac
 * muxer, which seeks back at the end to fill in STREAMINFO's length and MD5; output goes to
 * our own fd through a custom AVIOContext, so the path is never parsed as an FFmpeg URL.
 *
 * On failure a partly written file is removed. Threading: no shared state.
 */
#include "util/fs.h"
#include "audio/audio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/channel_layout.h>

#include "util/err.h"

enum {
	AUDIO__FLAC_MAX_CHANNELS = 8,
};

static int audio__check_buf(const struct audio_buf *b, int max_channels, char *err, size_t n_err)
{
	if (!b || (b->n_frames > 0 && !b->data))
		return sfa_err(err, n_err, SFA_EINVAL, "no audio to write");
	if (b->n_channels < 1 || b->n_channels > max_channels)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write %d channels (1 to %d)",
		               b->n_channels, max_channels);
	if (b->sample_rate_hz < 1 || b->sample_rate_hz > 768000)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write a sample rate of %d Hz",
		               b->sample_rate_hz);
	return 0;
}

static int audio__create(const char *path, char *err, size_t n_err)
{
	if (!path || !*path)
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot create %s: %s", path, strerror(errno));
	return fd;
}

/* ---- FLAC ------------------------------------------------------------------------ */

struct audio__wio {
	int fd;
	int failed_errno;
};

/* FFmpeg 7 (libavformat 61) made the buffer const; earlier versions did not. */
#if LIBAVFORMAT_VERSION_MAJOR >= 61
#define AUDIO__WBUF const uint8_t
#else
#define AUDIO__WBUF uint8_t
#endif

static int audio__wio_write(void *opaque, AUDIO__WBUF *buf, int n)
{
	struct audio__wio *w = opaque;
	if (fs_write_all(w->fd, buf, (size_t)n) != 0) {
		w->failed_errno = errno;
		return AVERROR(errno);
	}
	return n;
}

static int64_t audio__wio_seek(void *opaque, int64_t offset, int whence)
{
	struct audio__wio *w = opaque;
	if (whence & AVSEEK_SIZE) {
		off_t cur = lseek(w->fd, 0, SEEK_CUR);
		off_t end = lseek(w->fd, 0, SEEK_END);
		if (cur < 0 || end < 0 || lseek(w->fd, cur, SEEK_SET) < 0)
			return AVERROR(errno);
		return (int64_t)end;
	}
	off_t r = lseek(w->fd, (off_t)offset, whence & ~AVSEEK_FORCE);
	return r < 0 ? AVERROR(errno) : (int64_t)r;
}

/* Sends one frame (or the flush, f == NULL) and writes every packet that comes out. */
static int audio__flac_encode(AVCodecContext *enc, AVFormatContext *oc, AVStream *st,
                              AVFrame *f, AVPacket *pkt)
{
	int r = avcodec_send_frame(enc, f);
	if (r < 0)
		return r;
	for (;;) {
		r = avcodec_receive_packet(enc, pkt);
		if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
			return 0;
		if (r < 0)
			return r;
		av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
		pkt->stream_index = st->index;
		r = av_write_frame(oc, pkt);
		av_packet_unref(pkt);
		if (r < 0)
			return r;
	}
}

int audio_write_flac(const char *path, const struct audio_buf *b, enum audio_sample_format fmt,
                     char *err, size_t n_err)
{
	int rc = audio__check_buf(b, AUDIO__FLAC_MAX_CHANNELS, err, n_err);
	if (rc)
		return rc;
	if (fmt != AUDIO_PCM16 && fmt != AUDIO_PCM24)
		return sfa_err(err, n_err, SFA_EINVAL, "FLAC is written at 16 or 24 bits only");
	int bits = fmt == AUDIO_PCM16 ? 16 : 24;

	const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_FLAC);
	if (!codec)
		return sfa_err(err, n_err, SFA_EUNSUPP, "this FFmpeg build has no FLAC encoder");

	AVCodecContext *enc = NULL;
	AVFormatContext *oc = NULL;
	AVIOContext *avio = NULL;
	AVFrame *frame = NULL;
	AVPacket *pkt = NULL;
	struct audio__wio wio = {.fd = -1};
	bool header_written = false;

	wio.fd = audio__create(path, err, n_err);
	if (wio.fd < 0)
		return wio.fd;

	enc = avcodec_alloc_context3(codec);
	frame = av_frame_alloc();
	pkt = av_packet_alloc();
	if (!enc || !frame || !pkt)
		goto nomem;
	enc->sample_fmt = bits == 16 ? AV_SAMPLE_FMT_S16 : AV_SAMPLE_FMT_S32;
	enc->bits_per_raw_sample = bits;
	enc->sample_rate = b->sample_rate_hz;
	enc->time_base = (AVRational){1, b->sample_rate_hz};
	av_channel_layout_default(&enc->ch_layout, b->n_channels);
	if (avcodec_open2(enc, codec, NULL) < 0) {
		rc = sfa_err(err, n_err, SFA_EINVAL,
		             "the FLAC encoder refused %d Hz, %d channels, %d bits", b->sample_rate_hz,
		             b->n_channels, bits);
		goto out;
	}

	if (avformat_alloc_output_context2(&oc, NULL, "flac", NULL) < 0 || !oc)
		goto nomem;
	unsigned char *iobuf = av_malloc(65536);
	if (!iobuf)
		goto nomem;
	avio = avio_alloc_context(iobuf, 65536, 1, &wio, NULL, audio__wio_write, audio__wio_seek);
	if (!avio) {
		av_free(iobuf);
		goto nomem;
	}
	oc->pb = avio;
	oc->flags |= AVFMT_FLAG_CUSTOM_IO;
	AVStream *st = avformat_new_stream(oc, NULL);
	if (!st || avcodec_parameters_from_context(st->codecpar, enc) < 0)
		goto nomem;
	st->time_base = enc->time_base;
	if (avformat_write_header(oc, NULL) < 0)
		goto io_err;
	header_written = true;

	int frame_size = enc->frame_size > 0 ? enc->frame_size : 4096;
	frame->format = enc->sample_fmt;
	frame->sample_rate = enc->sample_rate;
	if (av_channel_layout_copy(&frame->ch_layout, &enc->ch_layout) < 0)
		goto nomem;
	frame->nb_samples = frame_size;
	if (av_frame_get_buffer(frame, 0) < 0)
		goto nomem;
	for (size_t i0 = 0; i0 < b->n_frames; i0 += (size_t)frame_size) {
		size_t n = b->n_frames - i0;
		if (n > (size_t)frame_size)
			n = (size_t)frame_size;
		if (av_frame_make_writable(frame) < 0)
			goto nomem;
		frame->nb_samples = (int)n;
		frame->pts = (int64_t)i0;
		size_t n_ch = (size_t)b->n_channels;
		for (size_t i = 0; i < n; i++) {
			for (size_t c = 0; c < n_ch; c++) {
				int32_t v;
				audio_quantize(b->data[c * b->n_frames + i0 + i], bits, &v);
				if (bits == 16)
					((int16_t *)frame->data[0])[i * n_ch + c] = (int16_t)v;
				else /* S32 with 24 significant bits: the sample sits in the top 24 */
					((int32_t *)frame->data[0])[i * n_ch + c] = (int32_t)((uint32_t)v << 8);
			}
		}
		if (audio__flac_encode(enc, oc, st, frame, pkt) < 0)
			goto io_err;
	}
	if (audio__flac_encode(enc, oc, st, NULL, pkt) < 0)
		goto io_err;
	if (av_write_trailer(oc) < 0)
		goto io_err;
	header_written = false;
	avio_flush(avio);
	if (avio->error < 0 || wio.failed_errno)
		goto io_err;
	rc = 0;
	goto out;

nomem:
	rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory while writing FLAC");
	goto out;
io_err:
	rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s%s%s", path, wio.failed_errno ? ": " : "",
	             wio.failed_errno ? strerror(wio.failed_errno) : "");
out:
	if (header_written)
		av_write_trailer(oc);
	if (oc)
		avformat_free_context(oc);
	if (avio) {
		av_freep(&avio->buffer);
		avio_context_free(&avio);
	}
	av_packet_free(&pkt);
	av_frame_free(&frame);
	avcodec_free_context(&enc);
	if (close(wio.fd) != 0 && rc == 0)
		rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", path, strerror(errno));
	if (rc)
		unlink(path);
	return rc;
}
