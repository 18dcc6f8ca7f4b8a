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

/* A muxer writing to our own fd: the fd, its AVIO, the format context and one packet. */
struct audio__mux {
	struct audio__wio wio;
	AVFormatContext *oc;
	AVIOContext *avio;
	AVPacket *pkt;
	bool header_written;
};

/* Creates path and a muxer of format on it. SFA_EIO (err says why) or SFA_ENOMEM. */
static int audio__mux_open(struct audio__mux *m, const char *format, const char *path, char *err,
                           size_t n_err)
{
	memset(m, 0, sizeof *m);
	m->wio.fd = audio__create(path, err, n_err);
	if (m->wio.fd < 0) {
		int rc = m->wio.fd;
		m->wio.fd = -1;
		return rc;
	}
	m->pkt = av_packet_alloc();
	if (!m->pkt || avformat_alloc_output_context2(&m->oc, NULL, format, NULL) < 0 || !m->oc)
		return SFA_ENOMEM;
	unsigned char *iobuf = av_malloc(65536);
	if (!iobuf)
		return SFA_ENOMEM;
	m->avio = avio_alloc_context(iobuf, 65536, 1, &m->wio, NULL, audio__wio_write,
	                             audio__wio_seek);
	if (!m->avio) {
		av_free(iobuf);
		return SFA_ENOMEM;
	}
	m->oc->pb = m->avio;
	m->oc->flags |= AVFMT_FLAG_CUSTOM_IO;
	return 0;
}

static int audio__mux_header(struct audio__mux *m)
{
	if (avformat_write_header(m->oc, NULL) < 0)
		return SFA_EIO;
	m->header_written = true;
	return 0;
}

/* The trailer and the last bytes onto the fd. */
static int audio__mux_finish(struct audio__mux *m)
{
	m->header_written = false;
	if (av_write_trailer(m->oc) < 0)
		return SFA_EIO;
	avio_flush(m->avio);
	return m->avio->error < 0 || m->wio.failed_errno ? SFA_EIO : 0;
}

/* Frees everything and closes the fd; returns close's errno, or 0. */
static int audio__mux_free(struct audio__mux *m)
{
	if (m->header_written)
		av_write_trailer(m->oc);
	if (m->oc)
		avformat_free_context(m->oc);
	if (m->avio) {
		av_freep(&m->avio->buffer);
		avio_context_free(&m->avio);
	}
	av_packet_free(&m->pkt);
	int rc = m->wio.fd >= 0 && close(m->wio.fd) != 0 ? errno : 0;
	m->wio.fd = -1;
	return rc;
}

/* Sends one frame (or the flush, f == NULL) and writes every packet that comes out. */
static int audio__encode(AVCodecContext *enc, struct audio__mux *m, AVStream *st, AVFrame *f)
{
	int r = avcodec_send_frame(enc, f);
	if (r < 0)
		return r;
	for (;;) {
		r = avcodec_receive_packet(enc, m->pkt);
		if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
			return 0;
		if (r < 0)
			return r;
		av_packet_rescale_ts(m->pkt, enc->time_base, st->time_base);
		m->pkt->stream_index = st->index;
		r = av_write_frame(m->oc, m->pkt);
		av_packet_unref(m->pkt);
		if (r < 0)
			return r;
	}
}

/* One encoded audio stream of a muxer, fed planar float: samples are gathered into the
 * encoder's frame size, as packed integers (FLAC: bits 16 or 24) or planar float (bits 0:
 * MP3, AAC). */
struct audio__track {
	AVCodecContext *enc;
	AVStream *st;
	AVFrame *frame;
	int bits;
	int n_channels;
	int frame_cap; /* frames per encoder frame */
	int filled;    /* frames waiting in frame */
	uint64_t written;
};

/* A new stream of m encoded by codec (opts: its options, may be NULL). SFA_EINVAL when the
 * encoder refuses the settings, SFA_ENOMEM. */
static int audio__track_open(struct audio__track *t, struct audio__mux *m, const AVCodec *codec,
                             int bits, int rate_hz, int n_channels, int64_t bit_rate,
                             AVDictionary **opts)
{
	memset(t, 0, sizeof *t);
	t->bits = bits;
	t->n_channels = n_channels;
	t->enc = avcodec_alloc_context3(codec);
	t->frame = av_frame_alloc();
	if (!t->enc || !t->frame)
		return SFA_ENOMEM;
	AVCodecContext *e = t->enc;
	e->sample_fmt = bits == 0    ? AV_SAMPLE_FMT_FLTP
	                : bits == 16 ? AV_SAMPLE_FMT_S16
	                             : AV_SAMPLE_FMT_S32;
	if (bits)
		e->bits_per_raw_sample = bits;
	e->bit_rate = bit_rate;
	e->sample_rate = rate_hz;
	e->time_base = (AVRational){1, rate_hz};
	av_channel_layout_default(&e->ch_layout, n_channels);
	if (m->oc->oformat->flags & AVFMT_GLOBALHEADER)
		e->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
	if (avcodec_open2(e, codec, opts) < 0)
		return SFA_EINVAL;
	t->st = avformat_new_stream(m->oc, NULL);
	if (!t->st || avcodec_parameters_from_context(t->st->codecpar, e) < 0)
		return SFA_ENOMEM;
	t->st->time_base = e->time_base;
	t->frame_cap = e->frame_size > 0 ? e->frame_size : 4096;
	t->frame->format = e->sample_fmt;
	t->frame->sample_rate = rate_hz;
	t->frame->nb_samples = t->frame_cap;
	if (av_channel_layout_copy(&t->frame->ch_layout, &e->ch_layout) < 0 ||
	    av_frame_get_buffer(t->frame, 0) < 0)
		return SFA_ENOMEM;
	return 0;
}

/* Encodes the frames gathered so far. */
static int audio__track_flush(struct audio__track *t, struct audio__mux *m)
{
	if (t->filled == 0)
		return 0;
	t->frame->nb_samples = t->filled;
	t->frame->pts = (int64_t)(t->written - (uint64_t)t->filled);
	int r = audio__encode(t->enc, m, t->st, t->frame);
	t->filled = 0;
	if (r < 0)
		return SFA_EIO;
	return av_frame_make_writable(t->frame) < 0 ? SFA_ENOMEM : 0;
}

/* Appends n frames: channel c at ch[c] (ch NULL: silence). SFA_EIO or SFA_ENOMEM. */
static int audio__track_push(struct audio__track *t, struct audio__mux *m, const float *const *ch,
                             size_t n)
{
	size_t n_ch = (size_t)t->n_channels;
	for (size_t i = 0; i < n;) {
		size_t at = (size_t)t->filled, take = (size_t)t->frame_cap - at;
		if (take > n - i)
			take = n - i;
		for (size_t c = 0; c < n_ch; c++) {
			const float *x = ch ? ch[c] + i : NULL;
			for (size_t k = 0; k < take; k++) {
				float v = x ? x[k] : 0.0f;
				if (t->bits ==
				    0) { /* float codecs: a non-finite sample is silence */
					((float *)t->frame->data[c])[at + k] = isfinite(v) ? v
					                                                   : 0.0f;
					continue;
				}
				int32_t q;
				audio_quantize(v, t->bits, &q);
				if (t->bits == 16)
					((int16_t *)t->frame->data[0])[(at + k) * n_ch + c] =
						(int16_t)q;
				else /* S32 with 24 significant bits: the sample sits in the top 24 */
					((int32_t *)t->frame->data[0])[(at + k) * n_ch + c] =
						(int32_t)((uint32_t)q << 8);
			}
		}
		t->filled += (int)take;
		t->written += take;
		i += take;
		if (t->filled == t->frame_cap) {
			int rc = audio__track_flush(t, m);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The last frames, then the encoder's flush. */
static int audio__track_finish(struct audio__track *t, struct audio__mux *m)
{
	int rc = audio__track_flush(t, m);
	if (!rc && audio__encode(t->enc, m, t->st, NULL) < 0)
		rc = SFA_EIO;
	return rc;
}

static void audio__track_free(struct audio__track *t)
{
	av_frame_free(&t->frame);
	avcodec_free_context(&t->enc);
}

/* ---- the streaming writer (every format) -------------------------------------------- */

struct audio_enc {
	enum audio_container kind;
	struct audio_wav_file wav; /* AUDIO_WAV */
	struct audio__mux mux;     /* AUDIO_FLAC, AUDIO_MP3: FFmpeg's encoder and muxer */
	struct audio__track track;
	uint64_t n_frames;
	char path[4400];
};

static int audio__enc_fail(struct audio_enc *e, int rc, char *err, size_t n_err)
{
	if (rc == SFA_ENOMEM)
		return sfa_err(err, n_err, rc, "out of memory while writing %s", e->path);
	return sfa_err(err, n_err, SFA_EIO, "cannot write %s%s%s", e->path,
	               e->mux.wio.failed_errno ? ": " : "",
	               e->mux.wio.failed_errno ? strerror(e->mux.wio.failed_errno) : "");
}

/* Frees everything; removes the file when failed or when closing it failed. Returns
 * close's errno, or 0. */
static int audio__enc_free(struct audio_enc *e, bool failed)
{
	audio__track_free(&e->track);
	int rc = audio__mux_free(&e->mux);
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
	int max_ch = kind == AUDIO_WAV    ? AUDIO_WAV_MAX_CHANNELS
	             : kind == AUDIO_FLAC ? AUDIO__FLAC_MAX_CHANNELS
	                                  : 2;
	if (n_channels < 1 || n_channels > max_ch)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write %d channels (1 to %d)",
		               n_channels, max_ch);
	if (rate_hz < 1 || rate_hz > 768000)
		return sfa_err(err, n_err, SFA_EINVAL, "cannot write a sample rate of %d Hz",
		               rate_hz);
	if (kind == AUDIO_FLAC && fmt != AUDIO_PCM16 && fmt != AUDIO_PCM24)
		return sfa_err(err, n_err, SFA_EINVAL, "FLAC is written at 16 or 24 bits only");
	struct audio_enc *e = calloc(1, sizeof *e);
	if (!e)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	e->kind = kind;
	e->n_frames = n_frames;
	e->mux.wio.fd = -1;
	if (kind == AUDIO_WAV) {
		int rc = audio_wav_open(&e->wav, path, n_frames, n_channels, rate_hz, fmt, err,
		                        n_err);
		if (rc) {
			free(e);
			return rc;
		}
		*out = e;
		return 0;
	}
	if (!path || !*path ||
	    snprintf(e->path, sizeof e->path, "%s", path) >= (int)sizeof e->path) {
		free(e);
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given, or one too long");
	}
	bool mp3 = kind == AUDIO_MP3;
	const AVCodec *codec = mp3 ? avcodec_find_encoder_by_name("libmp3lame")
	                           : avcodec_find_encoder(AV_CODEC_ID_FLAC);
	if (!codec) {
		free(e);
		return sfa_err(err, n_err, SFA_EUNSUPP, "this FFmpeg build has no %s encoder",
		               mp3 ? "MP3 (LAME)" : "FLAC");
	}
	int rc = audio__mux_open(&e->mux, mp3 ? "mp3" : "flac", path, err, n_err);
	if (rc == 0) {
		rc = audio__track_open(&e->track, &e->mux, codec,
		                       mp3                  ? 0
		                       : fmt == AUDIO_PCM16 ? 16
		                                            : 24,
		                       rate_hz, n_channels, mp3 ? AUDIO_MP3_BIT_RATE : 0, NULL);
		if (rc == SFA_EINVAL)
			sfa_err(err, n_err, rc, "the %s encoder refused %d Hz, %d channels",
			        mp3 ? "MP3" : "FLAC", rate_hz, n_channels);
	}
	if (rc == 0)
		rc = audio__mux_header(&e->mux);
	if (rc) {
		if (rc == SFA_ENOMEM || rc == SFA_EIO)
			audio__enc_fail(e, rc, err, n_err);
		audio__enc_free(e, true);
		return rc;
	}
	*out = e;
	return 0;
}

int audio_enc_write(struct audio_enc *e, const float *planes, size_t stride, size_t n, char *err,
                    size_t n_err)
{
	if (e->kind == AUDIO_WAV)
		return audio_wav_write(&e->wav, planes, stride, n, err, n_err);
	if (n > e->n_frames - e->track.written)
		return sfa_err(err, n_err, SFA_EINVAL, "more frames than announced for %s",
		               e->path);
	const float *ch[AUDIO__FLAC_MAX_CHANNELS];
	for (int c = 0; c < e->track.n_channels; c++)
		ch[c] = planes + (size_t)c * stride;
	int rc = audio__track_push(&e->track, &e->mux, ch, n);
	return rc ? audio__enc_fail(e, rc, err, n_err) : 0;
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
	if (!failed && e->track.written != e->n_frames)
		rc = sfa_err(err, n_err, SFA_EINVAL, "%s got %llu of its %llu frames", e->path,
		             (unsigned long long)e->track.written, (unsigned long long)e->n_frames);
	if (!failed && !rc) {
		int r = audio__track_finish(&e->track, &e->mux);
		if (!r)
			r = audio__mux_finish(&e->mux);
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

int audio_output_format(const char *name, enum audio_container *kind, enum audio_sample_format *fmt,
                        const char **ext)
{
	static const struct {
		const char *name, *ext;
		enum audio_container kind;
		enum audio_sample_format fmt;
	} FORMATS[] = {
		{"wav", "wav", AUDIO_WAV, AUDIO_PCM16},   {"wav24", "wav", AUDIO_WAV, AUDIO_PCM24},
		{"f32", "wav", AUDIO_WAV, AUDIO_FLOAT32}, {"flac", "flac", AUDIO_FLAC, AUDIO_PCM16},
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
		rc = audio_enc_open(&e, path, kind, fmt, b->n_frames, b->n_channels,
		                    b->sample_rate_hz, err, n_err);
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

struct ni_sink {
	struct audio__mux *m;
	struct audio__track *t;
	uint64_t limit; /* frames the track may take: the master's length for a stem */
	int rc;         /* the encoder's failure, when it stopped the decoder */
};

static int ni_sink_fn(void *arg, const float *const *planes, size_t n_frames)
{
	struct ni_sink *s = arg;
	uint64_t room = s->limit - s->t->written;
	s->rc = audio__track_push(s->t, s->m, planes, n_frames < room ? n_frames : (size_t)room);
	return s->rc;
}

/* The master's cover picture, when it has one, as the file's cover (MP4 'covr'): a picture
 * stream made before the header, its one packet written after. */
static AVStream *ni_cover_stream(struct audio__mux *m, const char *master, unsigned char **cover,
                                 size_t *n_cover)
{
	bool png = false;
	int width = 0, height = 0;
	char cerr[128];
	if (audio_read_cover(master, cover, n_cover, &png, &width, &height, cerr, sizeof cerr) != 0)
		return NULL;
	AVStream *pic = avformat_new_stream(m->oc, NULL);
	if (pic) {
		pic->codecpar->codec_type = AVMEDIA_TYPE_VIDEO;
		pic->codecpar->codec_id = png ? AV_CODEC_ID_PNG : AV_CODEC_ID_MJPEG;
		/* The muxer wants a size for a picture stream; covr holds only the bytes, and the
		 * decoder (whose allow-list has no image codec) may not have read it. */
		pic->codecpar->width = width > 0 ? width : 1;
		pic->codecpar->height = height > 0 ? height : 1;
		pic->disposition = AV_DISPOSITION_ATTACHED_PIC;
	}
	return pic;
}

static int ni_write_cover(struct audio__mux *m, AVStream *pic, const unsigned char *cover,
                          size_t n_cover)
{
	if (av_new_packet(m->pkt, (int)n_cover) != 0)
		return SFA_ENOMEM;
	memcpy(m->pkt->data, cover, n_cover);
	m->pkt->stream_index = pic->index;
	m->pkt->flags |= AV_PKT_FLAG_KEY;
	int r = av_write_frame(m->oc, m->pkt);
	av_packet_unref(m->pkt);
	return r < 0 ? SFA_EIO : 0;
}

int audio_write_nistems(const char *out_path, const char *const paths[5], const char *title,
                        const char *artist, double *seconds, char *err, size_t n_err)
{
	enum { N_TRACKS = 5, RATE = 44100 };
	const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_AAC);
	if (!codec)
		return sfa_err(err, n_err, SFA_EUNSUPP, "this FFmpeg build has no AAC encoder");
	struct audio__mux m;
	struct audio__track t[N_TRACKS];
	memset(t, 0, sizeof t);
	unsigned char *cover = NULL;
	size_t n_cover = 0;
	AVStream *pic = NULL;
	const char *what = "out of memory while writing the stems file";
	int rc = audio__mux_open(&m, "mp4", out_path, err, n_err);
	if (rc == SFA_EIO)
		goto out_set; /* err says why */
	if (!rc && ((title && *title && av_dict_set(&m.oc->metadata, "title", title, 0) < 0) ||
	            (artist && *artist && av_dict_set(&m.oc->metadata, "artist", artist, 0) < 0)))
		rc = SFA_ENOMEM;
	for (int i = 0; !rc && i < N_TRACKS; i++) {
		/* The "fast" coder: 3x the speed of the default two-loop search, transparent at
		 * this bit rate. */
		AVDictionary *aac_opts = NULL;
		av_dict_set(&aac_opts, "aac_coder", "fast", 0);
		rc = audio__track_open(&t[i], &m, codec, 0, RATE, 2, AUDIO_NISTEMS_BIT_RATE,
		                       &aac_opts);
		av_dict_free(&aac_opts);
		if (rc == SFA_EINVAL)
			what = "the AAC encoder refused 44.1 kHz stereo";
		else if (!rc)
			t[i].st->disposition = i == 0 ? AV_DISPOSITION_DEFAULT : 0;
	}
	if (!rc)
		pic = ni_cover_stream(&m, paths[0], &cover, &n_cover);
	if (!rc && (rc = audio__mux_header(&m)) != 0)
		what = "the MP4 header could not be written";
	if (!rc && pic && (rc = ni_write_cover(&m, pic, cover, n_cover)) != 0)
		what = "the cover picture could not be written";
	if (rc)
		goto out;
	for (int i = 0; i < N_TRACKS; i++) {
		struct ni_sink s = {.m = &m, .t = &t[i], .limit = i ? t[0].written : UINT64_MAX};
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = sfa_err(err, n_err, SFA_ENOTFOUND, "cannot open %s: %s", paths[i],
			             strerror(errno));
			goto out_set;
		}
		char derr[300];
		rc = audio_decode_stream_fd(fd, RATE, 2, 0, ni_sink_fn, &s, NULL, derr,
		                            sizeof derr);
		close(fd);
		if (rc) {
			rc = sfa_err(err, n_err, rc, "%s: %s",
			             i == 0 ? "the track" : nistems_names[i - 1],
			             s.rc ? "the encoder failed" : derr);
			goto out_set;
		}
		if (i > 0 && t[i].written < s.limit) /* a stem shorter than the master */
			rc = audio__track_push(&t[i], &m, NULL, (size_t)(s.limit - t[i].written));
		if (!rc)
			rc = audio__track_finish(&t[i], &m);
		if (rc) {
			what = "the AAC encoder failed";
			goto out;
		}
	}
	if ((rc = audio__mux_finish(&m)) != 0) {
		what = "the stems file could not be written";
		goto out;
	}
	char *json = nistems_metadata_json();
	rc = json ? nistems_insert_box_fd(m.wio.fd, json, err, n_err) : SFA_ENOMEM;
	free(json);
	if (!rc)
		*seconds = (double)t[0].written / RATE;
	goto out_set;
out:
	rc = sfa_err(err, n_err, rc, "%s", what);
out_set:
	free(cover);
	for (int i = 0; i < N_TRACKS; i++)
		audio__track_free(&t[i]);
	int rc_close = audio__mux_free(&m);
	if (rc_close && rc == 0)
		rc = sfa_err(err, n_err, SFA_EIO, "cannot write %s: %s", out_path,
		             strerror(rc_close));
	if (rc)
		unlink(out_path);
	return rc;
}
