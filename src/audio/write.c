/* write.c - writing planar float audio as WAV (by hand), FLAC or MP3 (libavcodec +
 * libavformat), whole or as the samples arrive.
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
 * The streaming writer (audio_enc_*) writes WAV through wav.c, FLAC through FFmpeg's native
 * encoder (compression level 5, its default) and the flac muxer, which seeks back at the end
 * to fill in STREAMINFO's length and MD5, and MP3 through libavcodec's LAME encoder (CBR
 * AUDIO_MP3_BIT_RATE, fed float) and the mp3 muxer, which writes the Xing/LAME header with
 * the encoder delay and padding so decoders give back exactly the frames written. Samples
 * are gathered into the encoder's frame size, so memory does not grow with the length.
 * Output goes to our own fd through a custom AVIOContext, so the path is never parsed as an
 * FFmpeg URL.
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

#include "audio/nistems.h"
#include "util/err.h"

enum {
	AUDIO__FLAC_MAX_CHANNELS = 8,
};

static int audio__create(const char *path, char *err, size_t n_err)
{
	if (!path || !*path)
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given");
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
	if (fd < 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot create %s: %s", path, strerror(errno));
	return fd;
}

/* ---- FFmpeg's encoders on our own fd -------------------------------------------------- */

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
static int audio__encode(AVCodecContext *enc, AVFormatContext *oc, AVStream *st, AVFrame *f,
                         AVPacket *pkt)
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

/* ---- the streaming writer (every format) -------------------------------------------- */

struct audio_enc {
	enum audio_container kind;
	struct audio_wav_file wav; /* AUDIO_WAV */
	/* AUDIO_FLAC, AUDIO_MP3: FFmpeg's encoder and muxer on our fd */
	AVCodecContext *enc;
	AVFormatContext *oc;
	AVIOContext *avio;
	AVStream *st;
	AVFrame *frame;
	AVPacket *pkt;
	struct audio__wio wio;
	bool header_written;
	int bits;           /* FLAC: 16 or 24; MP3: 0 (float input) */
	int n_channels;
	int frame_cap;      /* frames per encoder frame */
	int filled;         /* frames waiting in frame */
	uint64_t n_frames, n_written;
	char path[4400];
};

static int audio__enc_fail(struct audio_enc *e, int rc, char *err, size_t n_err)
{
	if (rc == SFA_ENOMEM)
		return sfa_err(err, n_err, rc, "out of memory while writing %s", e->path);
	return sfa_err(err, n_err, SFA_EIO, "cannot write %s%s%s", e->path,
	               e->wio.failed_errno ? ": " : "",
	               e->wio.failed_errno ? strerror(e->wio.failed_errno) : "");
}

/* Encodes the frames gathered in e->frame. */
static int audio__enc_flush_frame(struct audio_enc *e)
{
	if (e->filled == 0)
		return 0;
	e->frame->nb_samples = e->filled;
	e->frame->pts = (int64_t)(e->n_written - (uint64_t)e->filled);
	int r = audio__encode(e->enc, e->oc, e->st, e->frame, e->pkt);
	e->filled = 0;
	if (r < 0)
		return SFA_EIO;
	return av_frame_make_writable(e->frame) < 0 ? SFA_ENOMEM : 0;
}

static int audio__enc_open_ff(struct audio_enc *e, int rate_hz, char *err, size_t n_err)
{
	bool mp3 = e->kind == AUDIO_MP3;
	const AVCodec *codec = mp3 ? avcodec_find_encoder_by_name("libmp3lame")
	                           : avcodec_find_encoder(AV_CODEC_ID_FLAC);
	if (!codec)
		return sfa_err(err, n_err, SFA_EUNSUPP, "this FFmpeg build has no %s encoder",
		               mp3 ? "MP3 (LAME)" : "FLAC");
	e->enc = avcodec_alloc_context3(codec);
	e->frame = av_frame_alloc();
	e->pkt = av_packet_alloc();
	if (!e->enc || !e->frame || !e->pkt)
		return SFA_ENOMEM;
	e->enc->sample_fmt = mp3 ? AV_SAMPLE_FMT_FLTP
	                     : e->bits == 16 ? AV_SAMPLE_FMT_S16 : AV_SAMPLE_FMT_S32;
	if (!mp3)
		e->enc->bits_per_raw_sample = e->bits;
	else
		e->enc->bit_rate = AUDIO_MP3_BIT_RATE;
	e->enc->sample_rate = rate_hz;
	e->enc->time_base = (AVRational){1, rate_hz};
	av_channel_layout_default(&e->enc->ch_layout, e->n_channels);
	if (avcodec_open2(e->enc, codec, NULL) < 0)
		return sfa_err(err, n_err, SFA_EINVAL, "the %s encoder refused %d Hz, %d channels",
		               mp3 ? "MP3" : "FLAC", rate_hz, e->n_channels);
	if (avformat_alloc_output_context2(&e->oc, NULL, mp3 ? "mp3" : "flac", NULL) < 0 || !e->oc)
		return SFA_ENOMEM;
	unsigned char *iobuf = av_malloc(65536);
	if (!iobuf)
		return SFA_ENOMEM;
	e->avio = avio_alloc_context(iobuf, 65536, 1, &e->wio, NULL, audio__wio_write,
	                             audio__wio_seek);
	if (!e->avio) {
		av_free(iobuf);
		return SFA_ENOMEM;
	}
	e->oc->pb = e->avio;
	e->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
	e->st = avformat_new_stream(e->oc, NULL);
	if (!e->st || avcodec_parameters_from_context(e->st->codecpar, e->enc) < 0)
		return SFA_ENOMEM;
	e->st->time_base = e->enc->time_base;
	if (avformat_write_header(e->oc, NULL) < 0)
		return SFA_EIO;
	e->header_written = true;
	e->frame->format = e->enc->sample_fmt;
	e->frame->sample_rate = rate_hz;
	if (av_channel_layout_copy(&e->frame->ch_layout, &e->enc->ch_layout) < 0)
		return SFA_ENOMEM;
	e->frame_cap = e->enc->frame_size > 0 ? e->enc->frame_size : 4096;
	e->frame->nb_samples = e->frame_cap;
	if (av_frame_get_buffer(e->frame, 0) < 0)
		return SFA_ENOMEM;
	return 0;
}

/* Frees everything; removes the file when failed or when closing it failed. Returns
 * close's errno, or 0. */
static int audio__enc_free(struct audio_enc *e, bool failed)
{
	int rc = 0;
	if (e->header_written)
		av_write_trailer(e->oc);
	if (e->oc)
		avformat_free_context(e->oc);
	if (e->avio) {
		av_freep(&e->avio->buffer);
		avio_context_free(&e->avio);
	}
	av_packet_free(&e->pkt);
	av_frame_free(&e->frame);
	avcodec_free_context(&e->enc);
	if (e->wio.fd >= 0 && close(e->wio.fd) != 0)
		rc = errno;
	if (failed || rc)
		unlink(e->path);
	free(e);
	return rc;
}

int audio_enc_open(struct audio_enc **out, const char *path, enum audio_container kind,
                   enum audio_sample_format fmt, uint64_t n_frames, int n_channels, int rate_hz,
                   char *err, size_t n_err)
{
	*out = NULL;
	if (kind != AUDIO_WAV && kind != AUDIO_FLAC && kind != AUDIO_MP3)
		return sfa_err(err, n_err, SFA_EINVAL, "unknown output container");
	int max_ch = kind == AUDIO_WAV ? AUDIO_WAV_MAX_CHANNELS
	             : kind == AUDIO_FLAC ? AUDIO__FLAC_MAX_CHANNELS : 2;
	if (n_channels < 1 || n_channels > max_ch)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write %d channels (1 to %d)", n_channels,
		               max_ch);
	if (rate_hz < 1 || rate_hz > 768000)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write a sample rate of %d Hz", rate_hz);
	if (kind == AUDIO_FLAC && fmt != AUDIO_PCM16 && fmt != AUDIO_PCM24)
		return sfa_err(err, n_err, SFA_EINVAL, "FLAC is written at 16 or 24 bits only");
	struct audio_enc *e = calloc(1, sizeof *e);
	if (!e)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	e->kind = kind;
	e->n_channels = n_channels;
	e->n_frames = n_frames;
	e->wio.fd = -1;
	if (kind == AUDIO_WAV) {
		int rc = audio_wav_open(&e->wav, path, n_frames, n_channels, rate_hz, fmt, err, n_err);
		if (rc) {
			free(e);
			return rc;
		}
		*out = e;
		return 0;
	}
	if (!path || !*path || snprintf(e->path, sizeof e->path, "%s", path) >= (int)sizeof e->path) {
		free(e);
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given, or one too long");
	}
	e->bits = kind == AUDIO_MP3 ? 0 : fmt == AUDIO_PCM16 ? 16 : 24;
	e->wio.fd = audio__create(path, err, n_err);
	if (e->wio.fd < 0) {
		int rc = e->wio.fd;
		free(e);
		return rc;
	}
	int rc = audio__enc_open_ff(e, rate_hz, err, n_err);
	if (rc) {
		if (rc == SFA_ENOMEM || rc == SFA_EIO)
			audio__enc_fail(e, rc, err, n_err);
		audio__enc_free(e, true);
		return rc;
	}
	*out = e;
	return 0;
}

int audio_enc_write(struct audio_enc *e, const float *planes, size_t stride, size_t n,
                    char *err, size_t n_err)
{
	if (e->kind == AUDIO_WAV)
		return audio_wav_write(&e->wav, planes, stride, n, err, n_err);
	if (n > e->n_frames - e->n_written)
		return sfa_err(err, n_err, SFA_EINVAL, "more frames than announced for %s", e->path);
	size_t cap = (size_t)e->frame_cap;
	size_t n_ch = (size_t)e->n_channels;
	for (size_t i = 0; i < n;) {
		size_t take = cap - (size_t)e->filled;
		if (take > n - i)
			take = n - i;
		size_t at = (size_t)e->filled;
		for (size_t c = 0; c < n_ch; c++) {
			const float *x = planes + c * stride + i;
			if (e->kind == AUDIO_MP3) {
				float *dst = (float *)e->frame->data[c] + at;
				for (size_t k = 0; k < take; k++)
					dst[k] = isfinite(x[k]) ? x[k] : 0.0f;
				continue;
			}
			for (size_t k = 0; k < take; k++) {
				int32_t v;
				audio_quantize(x[k], e->bits, &v);
				if (e->bits == 16)
					((int16_t *)e->frame->data[0])[(at + k) * n_ch + c] = (int16_t)v;
				else /* S32 with 24 significant bits: the sample sits in the top 24 */
					((int32_t *)e->frame->data[0])[(at + k) * n_ch + c] =
						(int32_t)((uint32_t)v << 8);
			}
		}
		e->filled += (int)take;
		e->n_written += take;
		i += take;
		if ((size_t)e->filled == cap) {
			int rc = audio__enc_flush_frame(e);
			if (rc)
				return audio__enc_fail(e, rc, err, n_err);
		}
	}
	return 0;
}

int audio_enc_close(struct audio_enc *e, bool failed, char *err, size_t n_err)
{
	if (!e)
		return 0;
	if (e->kind == AUDIO_WAV) {
		int rc = audio_wav_close(&e->wav, failed, err, n_err);
		free(e);
		return rc;
	}
	int rc = 0;
	if (!failed && e->n_written != e->n_frames)
		rc = sfa_err(err, n_err, SFA_EINVAL, "%s got %llu of its %llu frames", e->path,
		             (unsigned long long)e->n_written, (unsigned long long)e->n_frames);
	if (!failed && !rc) {
		int r = audio__enc_flush_frame(e);
		if (!r && audio__encode(e->enc, e->oc, e->st, NULL, e->pkt) < 0)
			r = SFA_EIO;
		if (!r && av_write_trailer(e->oc) < 0)
			r = SFA_EIO;
		e->header_written = false;
		if (!r) {
			avio_flush(e->avio);
			if (e->avio->error < 0 || e->wio.failed_errno)
				r = SFA_EIO;
		}
		if (r)
			rc = audio__enc_fail(e, r, err, n_err);
	}
	char path[sizeof e->path];
	memcpy(path, e->path, sizeof path);
	int rc_close = audio__enc_free(e, failed || rc);
	if (!failed && !rc && rc_close)
		rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", path, strerror(rc_close));
	return failed ? 0 : rc;
}

int audio_output_format(const char *name, enum audio_container *kind,
                        enum audio_sample_format *fmt, const char **ext)
{
	static const struct {
		const char *name, *ext;
		enum audio_container kind;
		enum audio_sample_format fmt;
	} FORMATS[] = {
		{"wav", "wav", AUDIO_WAV, AUDIO_PCM16},     {"wav24", "wav", AUDIO_WAV, AUDIO_PCM24},
		{"f32", "wav", AUDIO_WAV, AUDIO_FLOAT32},   {"flac", "flac", AUDIO_FLAC, AUDIO_PCM16},
		{"mp3", "mp3", AUDIO_MP3, AUDIO_FLOAT32},
	};
	for (size_t i = 0; name && i < sizeof FORMATS / sizeof FORMATS[0]; i++)
		if (strcmp(name, FORMATS[i].name) == 0) {
			*kind = FORMATS[i].kind;
			*fmt = FORMATS[i].fmt;
			*ext = FORMATS[i].ext;
			return 0;
		}
	return SFA_EINVAL;
}

int audio_write(const char *path, const struct audio_buf *b, enum audio_container kind,
                enum audio_sample_format fmt, char *err, size_t n_err)
{
	int rc = !b || (b->n_frames > 0 && !b->data)
	             ? sfa_err(err, n_err, SFA_EINVAL, "no audio to write")
	             : 0;
	struct audio_enc *e = NULL;
	if (!rc)
		rc = audio_enc_open(&e, path, kind, fmt, b->n_frames, b->n_channels, b->sample_rate_hz,
		                    err, n_err);
	if (!rc)
		rc = audio_enc_write(e, b->data, b->n_frames, b->n_frames, err, n_err);
	if (e) {
		int rc2 = audio_enc_close(e, rc != 0, rc ? NULL : err, n_err);
		if (!rc)
			rc = rc2;
	}
	return rc;
}

/* ---- NI Stems (nistems.h) ------------------------------------------------------------ */

struct ni_track {
	AVCodecContext *enc;
	AVStream *st;
	AVFrame *frame;
	int filled;
	uint64_t written; /* frames handed to the encoder */
	uint64_t limit;   /* the master's length for a stem; UINT64_MAX for the master */
};

struct ni_sink {
	AVFormatContext *oc;
	AVPacket *pkt;
	struct ni_track *t;
	bool failed;
};

static int ni_flush_frame(struct ni_sink *s)
{
	struct ni_track *t = s->t;
	if (t->filled == 0)
		return 0;
	t->frame->nb_samples = t->filled;
	t->frame->pts = (int64_t)(t->written - (uint64_t)t->filled);
	int r = audio__encode(t->enc, s->oc, t->st, t->frame, s->pkt);
	t->filled = 0;
	if (r < 0 || av_frame_make_writable(t->frame) < 0) {
		s->failed = true;
		return -1;
	}
	return 0;
}

/* Appends n frames of planar stereo (NULL planes: silence) to the current track. */
static int ni_push(struct ni_sink *s, const float *const *planes, size_t n)
{
	struct ni_track *t = s->t;
	size_t cap = (size_t)t->enc->frame_size;
	for (size_t i = 0; i < n && t->written < t->limit;) {
		size_t take = cap - (size_t)t->filled;
		if (take > n - i)
			take = n - i;
		if (take > t->limit - t->written)
			take = (size_t)(t->limit - t->written);
		for (int c = 0; c < 2; c++) {
			float *dst = (float *)t->frame->data[c] + t->filled;
			for (size_t k = 0; k < take; k++)
				dst[k] = planes && isfinite(planes[c][i + k]) ? planes[c][i + k] : 0.0f;
		}
		t->filled += (int)take;
		t->written += take;
		i += take;
		if ((size_t)t->filled == cap && ni_flush_frame(s) != 0)
			return SFA_EIO;
	}
	return 0;
}

static int ni_sink_fn(void *arg, const float *const *planes, size_t n_frames)
{
	return ni_push(arg, planes, n_frames);
}

int audio_write_nistems(const char *out_path, const char *const paths[5], const char *title,
                        const char *artist, double *seconds, char *err, size_t n_err)
{
	enum { N_TRACKS = 5, RATE = 44100 };
	const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
	if (!codec)
		return sfa_err(err, n_err, SFA_EUNSUPP, "this FFmpeg build has no AAC encoder");
	struct audio__wio wio = {.fd = audio__create(out_path, err, n_err)};
	if (wio.fd < 0)
		return wio.fd;
	struct ni_track t[N_TRACKS];
	memset(t, 0, sizeof t);
	AVFormatContext *oc = NULL;
	AVIOContext *avio = NULL;
	AVPacket *pkt = av_packet_alloc();
	bool header_written = false;
	int rc = SFA_ENOMEM;
	const char *what = "out of memory while writing the stems file";
	if (!pkt || avformat_alloc_output_context2(&oc, NULL, "mp4", NULL) < 0 || !oc)
		goto out;
	unsigned char *iobuf = av_malloc(65536);
	if (!iobuf)
		goto out;
	avio = avio_alloc_context(iobuf, 65536, 1, &wio, NULL, audio__wio_write, audio__wio_seek);
	if (!avio) {
		av_free(iobuf);
		goto out;
	}
	oc->pb = avio;
	oc->flags |= AVFMT_FLAG_CUSTOM_IO;
	if ((title && *title && av_dict_set(&oc->metadata, "title", title, 0) < 0) ||
	    (artist && *artist && av_dict_set(&oc->metadata, "artist", artist, 0) < 0))
		goto out;
	for (int i = 0; i < N_TRACKS; i++) {
		t[i].enc = avcodec_alloc_context3(codec);
		t[i].frame = av_frame_alloc();
		if (!t[i].enc || !t[i].frame)
			goto out;
		AVCodecContext *e = t[i].enc;
		e->sample_fmt = AV_SAMPLE_FMT_FLTP;
		e->sample_rate = RATE;
		e->bit_rate = AUDIO_NISTEMS_BIT_RATE;
		e->time_base = (AVRational){1, RATE};
		av_channel_layout_default(&e->ch_layout, 2);
		if (oc->oformat->flags & AVFMT_GLOBALHEADER)
			e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
		/* The "fast" coder: 3x the speed of the default two-loop search, transparent at
		 * this bit rate. */
		AVDictionary *aac_opts = NULL;
		av_dict_set(&aac_opts, "aac_coder", "fast", 0);
		int opened = avcodec_open2(e, codec, &aac_opts);
		av_dict_free(&aac_opts);
		if (opened < 0) {
			rc = SFA_EUNSUPP;
			what = "the AAC encoder refused 44.1 kHz stereo";
			goto out;
		}
		t[i].st = avformat_new_stream(oc, NULL);
		if (!t[i].st || avcodec_parameters_from_context(t[i].st->codecpar, e) < 0)
			goto out;
		t[i].st->time_base = e->time_base;
		t[i].st->disposition = i == 0 ? AV_DISPOSITION_DEFAULT : 0;
		AVFrame *f = t[i].frame;
		f->format = e->sample_fmt;
		f->sample_rate = RATE;
		f->nb_samples = e->frame_size;
		if (av_channel_layout_copy(&f->ch_layout, &e->ch_layout) < 0 ||
		    av_frame_get_buffer(f, 0) < 0)
			goto out;
		t[i].limit = i == 0 ? UINT64_MAX : 0;
	}
	/* The master's cover picture, when it has one, as the file's cover (MP4 'covr'). */
	unsigned char *cover = NULL;
	size_t n_cover = 0;
	bool png = false;
	int width = 0, height = 0;
	char cerr[128];
	AVStream *pic = NULL;
	if (audio_read_cover(paths[0], &cover, &n_cover, &png, &width, &height, cerr,
	                     sizeof cerr) == 0) {
		pic = avformat_new_stream(oc, NULL);
		if (pic) {
			pic->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
			pic->codecpar->codec_id = png ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG;
			/* The muxer wants a size for a picture stream; covr holds only the bytes, and
			 * the decoder (whose allow-list has no image codec) may not have read it. */
			pic->codecpar->width = width > 0 ? width : 1;
			pic->codecpar->height = height > 0 ? height : 1;
			pic->disposition = AV_DISPOSITION_ATTACHED_PIC;
		}
	}
	if (avformat_write_header(oc, NULL) < 0) {
		free(cover);
		rc = SFA_EIO;
		what = "the MP4 header could not be written";
		goto out;
	}
	header_written = true;
	if (pic) {
		AVPacket *cp = av_packet_alloc();
		bool wrote = cp && av_new_packet(cp, (int)n_cover) == 0;
		if (wrote) {
			memcpy(cp->data, cover, n_cover);
			cp->stream_index = pic->index;
			cp->flags |= AV_PKT_FLAG_KEY;
			wrote = av_write_frame(oc, cp) >= 0;
		}
		av_packet_free(&cp);
		if (!wrote) {
			free(cover);
			rc = SFA_EIO;
			what = "the cover picture could not be written";
			goto out;
		}
	}
	free(cover);
	struct ni_sink s = {.oc = oc, .pkt = pkt};
	for (int i = 0; i < N_TRACKS; i++) {
		s.t = &t[i];
		if (i > 0)
			t[i].limit = t[0].written;
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = sfa_err(err, n_err, SFA_ENOTFOUND, "cannot open %s: %s", paths[i],
			             strerror(errno));
			goto out_set;
		}
		char derr[300];
		rc = audio_decode_stream_fd(fd, RATE, 2, 0, ni_sink_fn, &s, NULL, derr, sizeof derr);
		close(fd);
		if (rc) {
			rc = sfa_err(err, n_err, rc, "%s: %s", i == 0 ? "the track" : nistems_names[i - 1],
			             s.failed ? "the encoder failed" : derr);
			goto out_set;
		}
		while (i > 0 && t[i].written < t[i].limit && rc == 0) /* a stem shorter than the master */
			rc = ni_push(&s, NULL, (size_t)(t[i].limit - t[i].written > 4096
			                                    ? 4096
			                                    : t[i].limit - t[i].written));
		if (rc || ni_flush_frame(&s) != 0 || audio__encode(t[i].enc, oc, t[i].st, NULL, pkt) < 0) {
			rc = SFA_EIO;
			what = "the AAC encoder failed";
			goto out;
		}
	}
	header_written = false;
	if (av_write_trailer(oc) < 0) {
		rc = SFA_EIO;
		what = "the MP4 file could not be finished";
		goto out;
	}
	avio_flush(avio);
	if (avio->error < 0 || wio.failed_errno) {
		rc = SFA_EIO;
		what = "the stems file could not be written";
		goto out;
	}
	char *json = nistems_metadata_json();
	rc = json ? nistems_insert_box_fd(wio.fd, json, err, n_err) : SFA_ENOMEM;
	free(json);
	if (rc)
		goto out_set;
	*seconds = (double)t[0].written / RATE;
	goto out_set;
out:
	rc = sfa_err(err, n_err, rc, "%s", what);
out_set:
	if (header_written)
		av_write_trailer(oc);
	for (int i = 0; i < N_TRACKS; i++) {
		av_frame_free(&t[i].frame);
		avcodec_free_context(&t[i].enc);
	}
	if (oc)
		avformat_free_context(oc);
	if (avio) {
		av_freep(&avio->buffer);
		avio_context_free(&avio);
	}
	av_packet_free(&pkt);
	if (close(wio.fd) != 0 && rc == 0)
		rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", out_path, strerror(errno));
	if (rc)
		unlink(out_path);
	return rc;
}
