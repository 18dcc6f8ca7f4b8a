/* decode.c - probing and decoding untrusted audio files to planar float.
 *
 * Pipeline, per decoded frame:
 *   demux (libavformat, reading our own fd through a custom AVIOContext, so no FFmpeg
 *   protocol - http:, concat:, subfile: - can ever be reached from a file name)
 *   -> decode (libavcodec, allow-listed codec ids only)
 *   -> convert to float32 planar here, by hand (x / 2^15 for s16, x / 2^31 for s32, ...),
 *      so the values are exactly those of librosa / soundfile for PCM input
 *   -> (audio_decode_tap only) every converted channel handed to the caller's tap, so one
 *      decode can feed a second consumer at the file's own rate
 *   -> channel mapping here, in float32: mono is the mean of all channels,
 *      m = (L + R) / 2 for stereo, computed *before* resampling (that is the order
 *      librosa.load uses, and doing it after would change the samples)
 *   -> resampling by libswresample with its soxr engine at soxr's default precision
 *      (20 bits, the SOXR_HQ recipe librosa's default 'soxr_hq' uses)
 *   -> appended to the output buffer.
 * After the flush the output is padded with zeros or cut to exactly
 * ceil(n_in * rate_out / rate_in) frames, librosa's length rule.
 *
 * The output buffer holds channel c at data[c * cap_frames ...] while it grows, so that
 * growing is one realloc plus a memmove per channel and the final planar layout
 * (data[c * n_frames ...]) is reached in place: the peak memory is one buffer, not two.
 * Its growth is capped by the duration cap, and the duration cap is checked on the input
 * frames as they are decoded, so a hostile file cannot make us allocate without bound.
 *
 * Containers and codecs are allow-listed twice: FFmpeg's format_whitelist and
 * codec_whitelist options keep the probe from opening anything else (e.g. a video decoder
 * for cover art or an HLS playlist), and the chosen stream's codec id is checked again.
 *
 * A file is rejected (SFA_EFORMAT) when it is not one of the allowed containers, has no
 * allowed audio stream, decodes to no samples, has too many corrupt packets, changes its
 * sample rate or channel count mid-stream, or is truncated: when the container declares
 * an exact length (WAV, AIFF, FLAC STREAMINFO, MP4, Matroska, a VBR MP3 header) and the
 * decoded audio falls short of it by more than max(0.5 s, 2 %).
 *
 * Threading: no global state except FFmpeg's log level, set once with pthread_once.
 * Each call owns all of its FFmpeg contexts.
 */
#include "audio/audio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avstring.h>
#include <libavutil/channel_layout.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>

#include "util/err.h"
#include "util/str.h"
#include "util/utf8.h"

enum {
	AUDIO__AVIO_BUF_BYTES = 64 * 1024,
	AUDIO__MAX_CHANNELS = 16, /* more than any music file; more is refused */
	AUDIO__MIN_RATE_HZ = 1000,
	AUDIO__MAX_RATE_HZ = 768000,
	AUDIO__MAX_FRAME_SAMPLES = 1 << 20, /* per decoded frame; real codecs use < 65536 */
};
/* The largest single allocation FFmpeg may make (av_max_alloc; its default is INT_MAX).
 * A header can claim a chunk of gigabytes that FFmpeg would allocate and zero before finding
 * the file too short (a 232-byte WAV with a 4 GB LIST chunk cost 1.7 GB and 4 s). The largest
 * real need is a demuxer's index: 24 h of AAC in MP4 is about 4 million entries, under 100 MB. */
#define AUDIO__MAX_AV_ALLOC ((size_t)256 << 20)
#define AUDIO__MAX_CAP_S    (24.0 * 3600.0) /* the largest duration cap a caller may ask */

/* FFmpeg demuxer names (as in AVInputFormat.name lists) that may be opened. */
static const char audio__format_whitelist[] =
	"mp3,mov,mp4,m4a,3gp,3g2,mj2,flac,wav,ogg,aiff,matroska,webm";

/* Decoder names find_stream_info may open (cover art and video get none). */
static const char audio__codec_whitelist[] =
	"mp3,mp3float,aac,aac_fixed,alac,flac,vorbis,libvorbis,opus,libopus,"
	"pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_s32le,pcm_s32be,pcm_f32le,pcm_f32be,"
	"pcm_f64le,pcm_f64be,pcm_u8,pcm_s8";

static bool audio__codec_allowed(enum AVCodecID id)
{
	switch (id) {
	case AV_CODEC_ID_MP3:
	case AV_CODEC_ID_AAC:
	case AV_CODEC_ID_ALAC:
	case AV_CODEC_ID_FLAC:
	case AV_CODEC_ID_VORBIS:
	case AV_CODEC_ID_OPUS:
	case AV_CODEC_ID_PCM_S16LE:
	case AV_CODEC_ID_PCM_S16BE:
	case AV_CODEC_ID_PCM_S24LE:
	case AV_CODEC_ID_PCM_S24BE:
	case AV_CODEC_ID_PCM_S32LE:
	case AV_CODEC_ID_PCM_S32BE:
	case AV_CODEC_ID_PCM_F32LE:
	case AV_CODEC_ID_PCM_F32BE:
	case AV_CODEC_ID_PCM_F64LE:
	case AV_CODEC_ID_PCM_F64BE:
	case AV_CODEC_ID_PCM_U8:
	case AV_CODEC_ID_PCM_S8:
		return true;
	default:
		return false;
	}
}

static pthread_once_t audio__once = PTHREAD_ONCE_INIT;

static void audio__init_once(void)
{
	/* Corrupt input makes decoders chatty; our callers get one sentence in err instead. */
	av_log_set_level(AV_LOG_QUIET);
	av_max_alloc(AUDIO__MAX_AV_ALLOC);
}

/* ---- reading our own fd through AVIO ---------------------------------------------- */

struct audio__io {
	int fd;
	int64_t size_bytes;
};

static int audio__io_read(void *opaque, uint8_t *buf, int n)
{
	struct audio__io *io = opaque;
	for (;;) {
		ssize_t r = read(io->fd, buf, (size_t)n);
		if (r > 0)
			return (int)r;
		if (r == 0)
			return AVERROR_EOF;
		if (errno != EINTR)
			return AVERROR(errno);
	}
}

static int64_t audio__io_seek(void *opaque, int64_t offset, int whence)
{
	struct audio__io *io = opaque;
	if (whence & AVSEEK_SIZE)
		return io->size_bytes;
	whence &= ~AVSEEK_FORCE;
	off_t r = lseek(io->fd, (off_t)offset, whence);
	return r < 0 ? AVERROR(errno) : (int64_t)r;
}

/* ---- the growing planar output -------------------------------------------------- */

struct audio__out {
	float *data; /* channel c at data[c * cap_frames] */
	size_t n_frames;
	size_t cap_frames;
	size_t max_frames; /* hard cap, from the duration cap */
	int n_channels;
};

/* Makes room for n_more frames per channel. Returns 0, SFA_ETOOBIG or SFA_ENOMEM. */
static int audio__out_reserve(struct audio__out *o, size_t n_more)
{
	if (n_more > o->max_frames - o->n_frames)
		return SFA_ETOOBIG;
	size_t need = o->n_frames + n_more;
	if (need <= o->cap_frames)
		return 0;
	size_t cap = o->cap_frames ? o->cap_frames : 65536;
	while (cap < need)
		cap = cap > o->max_frames / 2 ? o->max_frames : cap * 2;
	if (cap > SIZE_MAX / sizeof(float) / (size_t)o->n_channels)
		return SFA_ENOMEM;
	float *p = realloc(o->data, cap * (size_t)o->n_channels * sizeof(float));
	if (!p)
		return SFA_ENOMEM;
	/* Move channels up to their new stride, last first so nothing is overwritten. */
	for (int c = o->n_channels - 1; c >= 1; c--)
		memmove(p + (size_t)c * cap, p + (size_t)c * o->cap_frames,
		        o->n_frames * sizeof(float));
	o->data = p;
	o->cap_frames = cap;
	return 0;
}

static float *audio__out_plane(struct audio__out *o, int c)
{
	return o->data + (size_t)c * o->cap_frames;
}

/* Compacts to planar layout with stride n_frames and shrinks the allocation. */
static void audio__out_finish(struct audio__out *o)
{
	for (int c = 1; c < o->n_channels; c++)
		memmove(o->data + (size_t)c * o->n_frames, o->data + (size_t)c * o->cap_frames,
		        o->n_frames * sizeof(float));
	size_t n = o->n_frames * (size_t)o->n_channels;
	float *p = realloc(o->data, (n ? n : 1) * sizeof(float));
	if (p)
		o->data = p;
	o->cap_frames = o->n_frames;
}

/* ---- sample conversion ---------------------------------------------------------- */

/* Converts channel c of a decoded frame to float32. Returns false for a format we do not
 * handle (no allowed decoder produces one). */
static bool audio__frame_to_float(const AVFrame *f, int c, int n_ch, float *dst)
{
	enum AVSampleFormat fmt = f->format;
	bool planar = av_sample_fmt_is_planar(fmt);
	size_t n = (size_t)f->nb_samples;
	size_t step = planar ? 1 : (size_t)n_ch;
	const uint8_t *base = planar ? f->extended_data[c] : f->extended_data[0];
	size_t off = planar ? 0 : (size_t)c;
	switch (av_get_packed_sample_fmt(fmt)) {
	case AV_SAMPLE_FMT_U8: {
		const uint8_t *s = base;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)((int)s[i * step + off] - 128) * (1.0f / 128.0f);
		return true;
	}
	case AV_SAMPLE_FMT_S16: {
		const int16_t *s = (const int16_t *)base;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)s[i * step + off] * (1.0f / 32768.0f);
		return true;
	}
	case AV_SAMPLE_FMT_S32: {
		const int32_t *s = (const int32_t *)base;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)((double)s[i * step + off] * (1.0 / 2147483648.0));
		return true;
	}
	case AV_SAMPLE_FMT_S64: {
		const int64_t *s = (const int64_t *)base;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)((double)s[i * step + off] * (1.0 / 9223372036854775808.0));
		return true;
	}
	case AV_SAMPLE_FMT_FLT: {
		const float *s = (const float *)base;
		for (size_t i = 0; i < n; i++)
			dst[i] = s[i * step + off];
		return true;
	}
	case AV_SAMPLE_FMT_DBL: {
		const double *s = (const double *)base;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)s[i * step + off];
		return true;
	}
	default:
		return false;
	}
}

/* ---- the decoder state ---------------------------------------------------------- */

struct audio__dec {
	/* request */
	int want_rate_hz;  /* 0 = native */
	int want_channels; /* 0 = native */
	double max_duration_s;
	bool store; /* false: audio_probe, count only */

	/* FFmpeg */
	struct audio__io io;
	AVIOContext *avio;
	AVFormatContext *fmt;
	AVCodecContext *codec;
	AVPacket *pkt;
	AVFrame *frame;
	SwrContext *swr;
	int stream;

	/* stream shape, fixed by the first decoded frame */
	int in_rate_hz, in_channels;
	int out_rate_hz, out_channels;
	int n_work;         /* channels fed to the resampler */
	int work_of_out[2]; /* only used when out_channels == 2 from 1 work channel */
	size_t max_in_frames;

	/* scratch: the mono mix and every input channel, scratch_frames floats each */
	float *scratch;
	size_t scratch_frames;

	size_t n_in_frames;
	size_t n_packets, n_bad_packets;
	struct audio__out out;

	/* audio_decode_tap: the file's own samples, before mapping and resampling */
	audio_sink_fn tap;
	void *tap_arg;
	struct audio_stream_info *tap_info;
	uint64_t n_tapped;

	/* audio_decode_stream_fd: out is handed to sink after every decoded frame and emptied */
	audio_sink_fn sink;
	void *sink_arg;
	struct audio_stream_info *info; /* the streaming caller's, filled before each sink call */
	uint64_t n_emitted;
};

static int audio__scratch_reserve(struct audio__dec *d, size_t n)
{
	if (n <= d->scratch_frames)
		return 0;
	size_t planes = 1 + (size_t)d->in_channels; /* the mono mix, every channel */
	float *p = realloc(d->scratch, n * planes * sizeof(float));
	if (!p)
		return SFA_ENOMEM;
	d->scratch = p;
	d->scratch_frames = n;
	return 0;
}

/* Sets the stream shape from the first frame and creates the resampler. */
static int audio__setup(struct audio__dec *d, const AVFrame *f, char *err, size_t n_err)
{
	int rate = f->sample_rate;
	int n_ch = f->ch_layout.nb_channels;
	if (rate < AUDIO__MIN_RATE_HZ || rate > AUDIO__MAX_RATE_HZ)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the audio has an unsupported sample rate (%d Hz)", rate);
	if (n_ch < 1 || n_ch > AUDIO__MAX_CHANNELS)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the audio has an unsupported number of channels (%d)", n_ch);
	d->in_rate_hz = rate;
	d->in_channels = n_ch;
	d->max_in_frames = (size_t)floor(d->max_duration_s * rate);
	if (!d->store)
		return 0;

	d->out_rate_hz = d->want_rate_hz ? d->want_rate_hz : rate;
	int want = d->want_channels ? d->want_channels : n_ch;
	if (want == 1) {
		d->n_work = 1;
	} else if (want == 2) {
		d->n_work = n_ch == 1 ? 1 : 2;
	} else if (want == n_ch) {
		d->n_work = n_ch;
	} else {
		return sfa_err(err, n_err, SFA_EINVAL,
		               "cannot convert %d channels to %d (ask for 0, 1, 2 or %d)", n_ch,
		               want, n_ch);
	}
	d->out_channels = want;
	d->out.n_channels = want;
	/* ceil(max_in * out / in) plus a little slack for the resampler's flush. */
	double max_out = ceil((double)d->max_in_frames * d->out_rate_hz / rate) + 4096.0;
	d->out.max_frames = (size_t)max_out;

	if (d->out_rate_hz == rate)
		return 0;
	AVChannelLayout layout;
	av_channel_layout_default(&layout, d->n_work);
	int rc = swr_alloc_set_opts2(&d->swr, &layout, AV_SAMPLE_FMT_FLTP, d->out_rate_hz, &layout,
	                             AV_SAMPLE_FMT_FLTP, rate, 0, NULL);
	av_channel_layout_uninit(&layout);
	if (rc < 0 || !d->swr)
		return sfa_err(err, n_err, SFA_ENOMEM, "cannot allocate the resampler");
	if (av_opt_set_int(d->swr, "resampler", SWR_ENGINE_SOXR, 0) < 0 || swr_init(d->swr) < 0)
		return sfa_err(err, n_err, SFA_EUNSUPP,
		               "the soxr resampler is not available in this FFmpeg build");
	return 0;
}

/* The mono mix of n_ch >= 2 channels: their mean in float32, summed in channel order, then
 * divided. */
static void audio__mean(float *m, float *const *ch, int n_ch, size_t n)
{
	for (size_t i = 0; i < n; i++)
		m[i] = ch[0][i] + ch[1][i];
	for (int c = 2; c < n_ch; c++)
		for (size_t i = 0; i < n; i++)
			m[i] += ch[c][i];
	float k = (float)n_ch;
	for (size_t i = 0; i < n; i++)
		m[i] = m[i] / k;
}

/* Hands one decoded frame's own samples to the tap. */
static int audio__tap(struct audio__dec *d, float *const *own, size_t n, char *err, size_t n_err)
{
	if (d->tap_info) {
		d->tap_info->in_rate_hz = d->tap_info->sample_rate_hz = d->in_rate_hz;
		d->tap_info->in_channels = d->tap_info->n_channels = d->in_channels;
		d->tap_info->n_frames = d->n_tapped;
	}
	int rc = d->tap(d->tap_arg, (const float *const *)own, n);
	if (rc)
		return sfa_err(err, n_err, rc < 0 ? rc : SFA_ECANCELED,
		               "the decoded audio could not be measured");
	d->n_tapped += n;
	return 0;
}

/* Converts, maps channels, resamples and stores one decoded frame (or flushes the
 * resampler when f is NULL). */
static int audio__consume(struct audio__dec *d, const AVFrame *f, char *err, size_t n_err)
{
	int rc;
	size_t n = 0;
	float *work[AUDIO__MAX_CHANNELS];

	if (f) {
		if (!d->in_rate_hz && (rc = audio__setup(d, f, err, n_err)) != 0)
			return rc;
		if (f->sample_rate != d->in_rate_hz || f->ch_layout.nb_channels != d->in_channels)
			return sfa_err(
				err, n_err, SFA_EFORMAT,
				"the audio changes its sample rate or channel count mid-stream");
		if (f->nb_samples < 0 || f->nb_samples > AUDIO__MAX_FRAME_SAMPLES)
			return sfa_err(err, n_err, SFA_EFORMAT, "the audio has an oversized frame");
		n = (size_t)f->nb_samples;
		if (n > d->max_in_frames - d->n_in_frames)
			return sfa_err(err, n_err, SFA_ETOOBIG,
			               "the audio is longer than the %.0f s limit",
			               d->max_duration_s);
		d->n_in_frames += n;
		if (!d->store || n == 0)
			return 0;

		if ((rc = audio__scratch_reserve(d, n)) != 0)
			return sfa_err(err, n_err, rc, "out of memory while decoding");
		/* Every channel converted once (the tap sees them all), then mapped: the first
		 * n_work channels as they are, or their mean for mono. */
		float *own[AUDIO__MAX_CHANNELS];
		for (int c = 0; c < d->in_channels; c++) {
			own[c] = d->scratch + (size_t)(1 + c) * d->scratch_frames;
			if (!audio__frame_to_float(f, c, d->in_channels, own[c]))
				return sfa_err(err, n_err, SFA_EFORMAT,
				               "the decoder produced an unsupported sample format");
		}
		if (d->tap && (rc = audio__tap(d, own, n, err, n_err)) != 0)
			return rc;
		if (d->out_channels == 1 && d->in_channels > 1) {
			work[0] = d->scratch;
			audio__mean(work[0], own, d->in_channels, n);
		} else {
			for (int w = 0; w < d->n_work; w++)
				work[w] = own[w];
		}
	} else if (!d->swr) {
		return 0; /* nothing buffered without a resampler */
	}

	if (!d->swr) {
		if ((rc = audio__out_reserve(&d->out, n)) != 0)
			goto out_rc;
		for (int c = 0; c < d->out_channels; c++)
			memcpy(audio__out_plane(&d->out, c) + d->out.n_frames,
			       work[c < d->n_work ? c : 0], n * sizeof(float));
		d->out.n_frames += n;
		return 0;
	}

	/* Resample. With input, swr_get_out_samples bounds the output, so one call takes it
	 * all; the flush (in == NULL) is repeated until the resampler has nothing left. */
	const uint8_t **in = f ? (const uint8_t **)work : NULL;
	int in_n = f ? (int)n : 0;
	for (;;) {
		int bound = swr_get_out_samples(d->swr, in_n);
		if (bound < 0)
			return sfa_err(err, n_err, SFA_EFORMAT, "the resampler failed");
		bound += 64;
		if ((rc = audio__out_reserve(&d->out, (size_t)bound)) != 0)
			goto out_rc;
		uint8_t *dst[AUDIO__MAX_CHANNELS];
		for (int w = 0; w < d->n_work; w++)
			dst[w] = (uint8_t *)(audio__out_plane(&d->out, w) + d->out.n_frames);
		int got = swr_convert(d->swr, dst, bound, in, in_n);
		if (got < 0)
			return sfa_err(err, n_err, SFA_EFORMAT, "the resampler failed");
		if (d->out_channels == 2 && d->n_work == 1)
			memcpy(audio__out_plane(&d->out, 1) + d->out.n_frames,
			       audio__out_plane(&d->out, 0) + d->out.n_frames,
			       (size_t)got * sizeof(float));
		d->out.n_frames += (size_t)got;
		if (in || got == 0)
			return 0;
	}

out_rc:
	if (rc == SFA_ETOOBIG)
		return sfa_err(err, n_err, rc, "the audio is longer than the %.0f s limit",
		               d->max_duration_s);
	return sfa_err(err, n_err, rc, "out of memory while decoding");
}

/* Hands the first n buffered frames to the sink and empties the buffer. */
static int audio__emit(struct audio__dec *d, size_t n, char *err, size_t n_err)
{
	if (n > 0) {
		const float *planes[AUDIO__MAX_CHANNELS];
		for (int c = 0; c < d->out_channels; c++)
			planes[c] = audio__out_plane(&d->out, c);
		if (d->info) {
			d->info->in_rate_hz = d->in_rate_hz;
			d->info->in_channels = d->in_channels;
			d->info->sample_rate_hz = d->out_rate_hz;
			d->info->n_channels = d->out_channels;
			d->info->n_frames = d->n_emitted;
		}
		int rc = d->sink(d->sink_arg, planes, n);
		if (rc)
			return sfa_err(err, n_err, rc < 0 ? rc : SFA_ECANCELED,
			               "the decoded audio could not be stored");
		d->n_emitted += n;
	}
	d->out.n_frames = 0;
	return 0;
}

/* Receives every frame the decoder has ready. */
static int audio__drain(struct audio__dec *d, char *err, size_t n_err)
{
	for (;;) {
		int r = avcodec_receive_frame(d->codec, d->frame);
		if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
			return 0;
		if (r < 0) {
			d->n_bad_packets++;
			return 0;
		}
		int rc = audio__consume(d, d->frame, err, n_err);
		av_frame_unref(d->frame);
		if (rc == 0 && d->sink && d->out.n_frames > 0)
			rc = audio__emit(d, d->out.n_frames, err, n_err);
		if (rc)
			return rc;
	}
}

static void audio__copy_tag(char *dst, size_t n, const AVFormatContext *fmt, const AVStream *st,
                            const char *key)
{
	const AVDictionaryEntry *e = av_dict_get(fmt->metadata, key, NULL, 0);
	if (!e && st)
		e = av_dict_get(st->metadata, key, NULL, 0);
	/* Tags are often ISO-8859-1 (older taggers, Vorbis comments written by hand): read
	 * leniently, so such a file keeps its title instead of failing later as text. */
	utf8_or_latin1(e && e->value ? e->value : "", dst, n);
}

/* Copies the first name of FFmpeg's comma-separated list ("mov,mp4,m4a,..." -> "mov"). */
static void audio__first_name(char *dst, size_t n, const char *names)
{
	size_t len = strcspn(names, ",");
	if (len >= n)
		len = n - 1;
	memcpy(dst, names, len);
	dst[len] = '\0';
}

static void audio__dec_free(struct audio__dec *d)
{
	swr_free(&d->swr);
	av_frame_free(&d->frame);
	av_packet_free(&d->pkt);
	avcodec_free_context(&d->codec);
	avformat_close_input(&d->fmt);
	if (d->avio) {
		av_freep(&d->avio->buffer);
		avio_context_free(&d->avio);
	}
	free(d->scratch);
	free(d->out.data);
	d->out.data = NULL;
}

/* Opens the container and the decoder. */
static int audio__open(struct audio__dec *d, int fd, char *err, size_t n_err)
{
	struct stat stt;
	if (fstat(fd, &stt) != 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot stat the file: %s", strerror(errno));
	if (!S_ISREG(stt.st_mode))
		return sfa_err(err, n_err, SFA_EINVAL, "not a regular file");
	if (stt.st_size == 0)
		return sfa_err(err, n_err, SFA_EFORMAT, "the file is empty");
	if (lseek(fd, 0, SEEK_SET) < 0)
		return sfa_err(err, n_err, SFA_EIO, "cannot seek in the file: %s", strerror(errno));
	d->io.fd = fd;
	d->io.size_bytes = (int64_t)stt.st_size;

	unsigned char *iobuf = av_malloc(AUDIO__AVIO_BUF_BYTES);
	if (!iobuf)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	d->avio = avio_alloc_context(iobuf, AUDIO__AVIO_BUF_BYTES, 0, &d->io, audio__io_read, NULL,
	                             audio__io_seek);
	if (!d->avio) {
		av_free(iobuf);
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	}
	d->fmt = avformat_alloc_context();
	if (!d->fmt)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	d->fmt->pb = d->avio;
	d->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
	AVDictionary *opts = NULL;
	av_dict_set(&opts, "format_whitelist", audio__format_whitelist, 0);
	av_dict_set(&opts, "codec_whitelist", audio__codec_whitelist, 0);
	av_dict_set(&opts, "protocol_whitelist", "file", 0);
	/* Probe first, so that the error can tell "unknown" from "known but damaged". */
	const AVInputFormat *ifmt = NULL;
	if (av_probe_input_buffer2(d->avio, &ifmt, "", NULL, 0, 0) < 0 || !ifmt) {
		av_dict_free(&opts);
		return sfa_err(
			err, n_err, SFA_EFORMAT,
			"not a supported audio file (mp3, m4a/aac, flac, wav, ogg/opus, aiff)");
	}
	if (av_match_list(ifmt->name, audio__format_whitelist, ',') <= 0) {
		av_dict_free(&opts);
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the %s format is not supported (mp3, m4a/aac, flac, wav, ogg/opus, "
		               "aiff)",
		               ifmt->long_name ? ifmt->long_name : ifmt->name);
	}
	int r = avformat_open_input(&d->fmt, NULL, ifmt, &opts);
	av_dict_free(&opts);
	if (r < 0) {
		/* avformat_open_input freed the context; our AVIO is still ours. */
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the file looks like %s but its header is damaged or cut short",
		               ifmt->long_name ? ifmt->long_name : ifmt->name);
	}
	if (avformat_find_stream_info(d->fmt, NULL) < 0)
		return sfa_err(err, n_err, SFA_EFORMAT, "the file's streams cannot be read");

	d->stream = -1;
	for (unsigned i = 0; i < d->fmt->nb_streams; i++) {
		const AVStream *st = d->fmt->streams[i];
		if (st->codecpar->codec_type == AVMEDIA_TYPE_AUDIO &&
		    !(st->disposition & AV_DISPOSITION_ATTACHED_PIC) &&
		    audio__codec_allowed(st->codecpar->codec_id)) {
			d->stream = (int)i;
			break;
		}
	}
	if (d->stream < 0) {
		bool any_audio = false;
		for (unsigned i = 0; i < d->fmt->nb_streams; i++)
			any_audio |= d->fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_AUDIO;
		if (any_audio)
			return sfa_err(
				err, n_err, SFA_EFORMAT,
				"the audio codec is not supported (mp3, aac, alac, flac, vorbis, "
				"opus or PCM)");
		return sfa_err(err, n_err, SFA_EFORMAT, "the file contains no audio stream");
	}
	for (unsigned i = 0; i < d->fmt->nb_streams; i++)
		if ((int)i != d->stream)
			d->fmt->streams[i]->discard = AVDISCARD_ALL;

	const AVCodecParameters *par = d->fmt->streams[d->stream]->codecpar;
	const AVCodec *dec = avcodec_find_decoder(par->codec_id);
	if (!dec)
		return sfa_err(err, n_err, SFA_EUNSUPP, "no decoder for %s in this FFmpeg build",
		               avcodec_get_name(par->codec_id));
	d->codec = avcodec_alloc_context3(dec);
	if (!d->codec)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	if (avcodec_parameters_to_context(d->codec, par) < 0)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the audio stream's parameters are invalid");
	d->codec->thread_count = 1;
	if (avcodec_open2(d->codec, dec, NULL) < 0)
		return sfa_err(err, n_err, SFA_EFORMAT, "the audio stream cannot be decoded");
	d->pkt = av_packet_alloc();
	d->frame = av_frame_alloc();
	if (!d->pkt || !d->frame)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	return 0;
}

static uint32_t audio__le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* FFmpeg clamps a WAV's length to the file size, so a cut WAV looks whole. This walks the
 * RIFF chunks in the first 64 KiB itself and returns the seconds the data chunk declares
 * (at the codec's constant bit rate), or -1 when unknown (RF64, a streamed 0 or ~0 size,
 * a data chunk past 64 KiB). */
static double audio__wav_declared_s(const struct audio__dec *d)
{
	unsigned char h[65536];
	ssize_t n = pread(d->io.fd, h, sizeof h, 0);
	int64_t bit_rate = d->fmt->streams[d->stream]->codecpar->bit_rate;
	if (n < 12 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0 || bit_rate <= 0)
		return -1.0;
	size_t pos = 12;
	while (pos + 8 <= (size_t)n) {
		uint32_t size = audio__le32(h + pos + 4);
		if (memcmp(h + pos, "data", 4) == 0) {
			if (size == 0 || size == 0xFFFFFFFFu)
				return -1.0;
			return (double)size * 8.0 / (double)bit_rate;
		}
		pos += 8 + (size_t)size + (size & 1);
	}
	return -1.0;
}

/* The container's own statement of the stream length in seconds, or -1 when it only has an
 * estimate (from the bit rate) or nothing. */
static double audio__declared_s(const struct audio__dec *d)
{
	const AVStream *st = d->fmt->streams[d->stream];
	if (strcmp(d->fmt->iformat->name, "wav") == 0)
		return audio__wav_declared_s(d);
	if (d->fmt->duration_estimation_method != AVFMT_DURATION_FROM_STREAM &&
	    d->fmt->duration_estimation_method != AVFMT_DURATION_FROM_PTS)
		return -1.0;
	if (st->duration > 0 && st->duration != AV_NOPTS_VALUE && st->time_base.den > 0)
		return (double)st->duration * av_q2d(st->time_base);
	if (d->fmt->duration > 0 && d->fmt->duration != AV_NOPTS_VALUE)
		return (double)d->fmt->duration / AV_TIME_BASE;
	return -1.0;
}

/* Demuxes and decodes the whole stream through audio__consume. */
static int audio__run(struct audio__dec *d, char *err, size_t n_err)
{
	int rc;
	for (;;) {
		int r = av_read_frame(d->fmt, d->pkt);
		if (r < 0)
			break; /* EOF, or a read error: the length check below judges truncation */
		if (d->pkt->stream_index != d->stream) {
			av_packet_unref(d->pkt);
			continue;
		}
		d->n_packets++;
		r = avcodec_send_packet(d->codec, d->pkt);
		av_packet_unref(d->pkt);
		if (r < 0 && r != AVERROR(EAGAIN))
			d->n_bad_packets++;
		if ((rc = audio__drain(d, err, n_err)) != 0)
			return rc;
	}
	avcodec_send_packet(d->codec, NULL);
	if ((rc = audio__drain(d, err, n_err)) != 0)
		return rc;

	if (d->n_in_frames == 0)
		return sfa_err(err, n_err, SFA_EFORMAT, "the file contains no decodable audio");
	if (d->n_bad_packets > 2 && d->n_bad_packets * 20 > d->n_packets)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the audio is corrupt (%zu of %zu packets could not be decoded)",
		               d->n_bad_packets, d->n_packets);
	double got_s = (double)d->n_in_frames / d->in_rate_hz;
	double declared_s = audio__declared_s(d);
	if (declared_s > 0 && declared_s - got_s > fmax(0.5, 0.02 * declared_s))
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "the file is truncated: it declares %.1f s of audio but only %.1f s "
		               "could be decoded",
		               declared_s, got_s);
	return 0;
}

static int audio__check_cap(double max_duration_s, double *cap, char *err, size_t n_err)
{
	if (max_duration_s == 0)
		max_duration_s = AUDIO_MAX_DURATION_S;
	if (!(max_duration_s > 0) || max_duration_s > AUDIO__MAX_CAP_S)
		return sfa_err(err, n_err, SFA_EINVAL, "the duration cap must be in (0, %.0f] s",
		               AUDIO__MAX_CAP_S);
	*cap = max_duration_s;
	return 0;
}

int audio_probe_fd(int fd, struct audio_info *info, char *err, size_t n_err)
{
	pthread_once(&audio__once, audio__init_once);
	struct audio__dec d;
	memset(&d, 0, sizeof d);
	d.max_duration_s = AUDIO_MAX_DURATION_S;
	int rc = audio__open(&d, fd, err, n_err);
	if (rc == 0)
		rc = audio__run(&d, err, n_err);
	if (rc == 0) {
		const AVStream *st = d.fmt->streams[d.stream];
		struct audio_info in;
		memset(&in, 0, sizeof in);
		audio__first_name(in.container, sizeof in.container, d.fmt->iformat->name);
		str_copy(in.codec, sizeof in.codec, avcodec_get_name(st->codecpar->codec_id));
		in.sample_rate_hz = d.in_rate_hz;
		in.n_channels = d.in_channels;
		in.duration_s = (double)d.n_in_frames / d.in_rate_hz;
		in.bit_rate = st->codecpar->bit_rate > 0 ? st->codecpar->bit_rate : d.fmt->bit_rate;
		if (in.bit_rate < 0)
			in.bit_rate = 0;
		audio__copy_tag(in.title, sizeof in.title, d.fmt, st, "title");
		audio__copy_tag(in.artist, sizeof in.artist, d.fmt, st, "artist");
		audio__copy_tag(in.album, sizeof in.album, d.fmt, st, "album");
		*info = in;
	}
	audio__dec_free(&d);
	return rc;
}

/* The set-up both decoders share: checks the wanted format, opens fd, decodes all of it
 * (into d->out, or through sink when one is given) and flushes the resampler. d is
 * zeroed here; the caller frees it with audio__dec_free whatever this returns. */
static int audio__decode_all(struct audio__dec *d, int fd, int rate_hz, int n_channels,
                             double max_duration_s, audio_sink_fn sink, void *arg,
                             struct audio_stream_info *info, char *err, size_t n_err)
{
	pthread_once(&audio__once, audio__init_once);
	if (rate_hz != 0 && (rate_hz < AUDIO__MIN_RATE_HZ || rate_hz > AUDIO__MAX_RATE_HZ))
		return sfa_err(err, n_err, SFA_EINVAL,
		               "the sample rate must be 0 or in [%d, %d] Hz", AUDIO__MIN_RATE_HZ,
		               AUDIO__MAX_RATE_HZ);
	if (n_channels < 0 || n_channels > AUDIO__MAX_CHANNELS)
		return sfa_err(err, n_err, SFA_EINVAL, "the channel count must be in [0, %d]",
		               AUDIO__MAX_CHANNELS);
	int rc = audio__check_cap(max_duration_s, &d->max_duration_s, err, n_err);
	if (rc)
		return rc;
	d->want_rate_hz = rate_hz;
	d->want_channels = n_channels;
	d->store = true;
	d->sink = sink;
	d->sink_arg = arg;
	d->info = info;
	if ((rc = audio__open(d, fd, err, n_err)) != 0)
		return rc;
	if ((rc = audio__run(d, err, n_err)) != 0)
		return rc;
	return audio__consume(d, NULL, err, n_err); /* flush the resampler */
}

/* librosa's length rule: exactly ceil(n_in * rate_out / rate_in) frames. */
static uint64_t audio__n_target(const struct audio__dec *d)
{
	return ((uint64_t)d->n_in_frames * (uint64_t)d->out_rate_hz + (uint64_t)d->in_rate_hz - 1) /
	       (uint64_t)d->in_rate_hz;
}

/* audio_decode_fd with a tap (NULL for none). */
static int audio__decode_buf(int fd, int rate_hz, int n_channels, double max_duration_s,
                             audio_sink_fn tap, void *tap_arg, struct audio_stream_info *tap_info,
                             struct audio_buf *out, char *err, size_t n_err)
{
	struct audio__dec d;
	memset(&d, 0, sizeof d);
	d.tap = tap;
	d.tap_arg = tap_arg;
	d.tap_info = tap_info;
	int rc = audio__decode_all(&d, fd, rate_hz, n_channels, max_duration_s, NULL, NULL, NULL,
	                           err, n_err);
	if (rc)
		goto out;
	uint64_t n_target = audio__n_target(&d);
	if (n_target > d.out.n_frames) {
		size_t pad = (size_t)n_target - d.out.n_frames;
		if ((rc = audio__out_reserve(&d.out, pad)) != 0) {
			rc = sfa_err(err, n_err, rc, "the audio is longer than the %.0f s limit",
			             d.max_duration_s);
			goto out;
		}
		for (int c = 0; c < d.out.n_channels; c++)
			memset(audio__out_plane(&d.out, c) + d.out.n_frames, 0,
			       pad * sizeof(float));
	}
	d.out.n_frames = (size_t)n_target;
	audio__out_finish(&d.out);
	out->data = d.out.data;
	out->n_frames = d.out.n_frames;
	out->n_channels = d.out.n_channels;
	out->sample_rate_hz = d.out_rate_hz;
	d.out.data = NULL;
out:
	audio__dec_free(&d);
	return rc;
}

int audio_decode_fd(int fd, int rate_hz, int n_channels, double max_duration_s,
                    struct audio_buf *out, char *err, size_t n_err)
{
	return audio__decode_buf(fd, rate_hz, n_channels, max_duration_s, NULL, NULL, NULL, out,
	                         err, n_err);
}

int audio_decode_stream_fd(int fd, int rate_hz, int n_channels, double max_duration_s,
                           audio_sink_fn sink, void *arg, struct audio_stream_info *info, char *err,
                           size_t n_err)
{
	if (!sink)
		return sfa_err(err, n_err, SFA_EINVAL, "no sink for the decoded audio");
	struct audio__dec d;
	memset(&d, 0, sizeof d);
	int rc = audio__decode_all(&d, fd, rate_hz, n_channels, max_duration_s, sink, arg, info,
	                           err, n_err);
	if (rc)
		goto out;
	/* The same length rule as audio_decode_fd. Before the flush the resampler has emitted
	 * at most what its input so far allows (it lags by its filter delay), so n_emitted
	 * cannot have passed the target yet; the flush's surplus is cut here. */
	uint64_t n_target = audio__n_target(&d);
	if (d.n_emitted > n_target) {
		rc = sfa_err(err, n_err, SFA_EFORMAT, "the resampler produced too many samples");
		goto out;
	}
	uint64_t left = n_target - d.n_emitted;
	if (d.out.n_frames > left)
		d.out.n_frames = (size_t)left;
	if ((rc = audio__emit(&d, d.out.n_frames, err, n_err)) != 0)
		goto out;
	while (d.n_emitted < n_target) {
		size_t pad = n_target - d.n_emitted > 4096 ? 4096
		                                           : (size_t)(n_target - d.n_emitted);
		if ((rc = audio__out_reserve(&d.out, pad)) != 0) {
			rc = sfa_err(err, n_err, rc, "out of memory while decoding");
			goto out;
		}
		for (int c = 0; c < d.out.n_channels; c++)
			memset(audio__out_plane(&d.out, c), 0, pad * sizeof(float));
		d.out.n_frames = pad;
		if ((rc = audio__emit(&d, pad, err, n_err)) != 0)
			goto out;
	}
	if (info) {
		info->in_rate_hz = d.in_rate_hz;
		info->in_channels = d.in_channels;
		info->sample_rate_hz = d.out_rate_hz;
		info->n_channels = d.out_channels;
		info->n_frames = d.n_emitted;
	}
out:
	audio__dec_free(&d);
	return rc;
}

static int audio__open_path(const char *path, char *err, size_t n_err)
{
	if (!path || !*path)
		return sfa_err(err, n_err, SFA_EINVAL, "no file name given");
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		return sfa_err(err, n_err, e == ENOENT ? SFA_ENOTFOUND : SFA_EIO,
		               "cannot open the audio file: %s", strerror(e));
	}
	/* O_NONBLOCK only kept open() from hanging on a FIFO; regular files ignore it. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

int audio_probe(const char *path, struct audio_info *info, char *err, size_t n_err)
{
	int fd = audio__open_path(path, err, n_err);
	if (fd < 0)
		return fd;
	int rc = audio_probe_fd(fd, info, err, n_err);
	close(fd);
	return rc;
}

int audio_decode(const char *path, int rate_hz, int n_channels, double max_duration_s,
                 struct audio_buf *out, char *err, size_t n_err)
{
	int fd = audio__open_path(path, err, n_err);
	if (fd < 0)
		return fd;
	int rc = audio_decode_fd(fd, rate_hz, n_channels, max_duration_s, out, err, n_err);
	close(fd);
	return rc;
}

int audio_decode_tap(const char *path, int rate_hz, int n_channels, double max_duration_s,
                     audio_sink_fn tap, void *tap_arg, struct audio_stream_info *tap_info,
                     struct audio_buf *out, char *err, size_t n_err)
{
	if (!tap)
		return sfa_err(err, n_err, SFA_EINVAL, "no tap for the decoded audio");
	int fd = audio__open_path(path, err, n_err);
	if (fd < 0)
		return fd;
	int rc = audio__decode_buf(fd, rate_hz, n_channels, max_duration_s, tap, tap_arg, tap_info,
	                           out, err, n_err);
	close(fd);
	return rc;
}

void audio_buf_free(struct audio_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->n_frames = 0;
}

int audio_read_cover(const char *path, unsigned char **data, size_t *n, bool *png, int *width,
                     int *height, char *err, size_t n_err)
{
	pthread_once(&audio__once, audio__init_once);
	*data = NULL;
	*n = 0;
	int fd = audio__open_path(path, err, n_err);
	if (fd < 0)
		return fd;
	struct audio__dec d;
	memset(&d, 0, sizeof d);
	d.max_duration_s = AUDIO_MAX_DURATION_S;
	int rc = audio__open(&d, fd, err, n_err);
	for (unsigned i = 0; rc == 0 && !*data && i < d.fmt->nb_streams; i++) {
		const AVStream *st = d.fmt->streams[i];
		enum AVCodecID id = st->codecpar->codec_id;
		if (!(st->disposition & AV_DISPOSITION_ATTACHED_PIC) ||
		    (id != AV_CODEC_ID_MJPEG && id != AV_CODEC_ID_PNG) ||
		    st->attached_pic.size <= 0 || st->attached_pic.size > AUDIO_MAX_COVER_BYTES)
			continue;
		if (!(*data = malloc((size_t)st->attached_pic.size))) {
			rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory for the cover picture");
			break;
		}
		memcpy(*data, st->attached_pic.data, (size_t)st->attached_pic.size);
		*n = (size_t)st->attached_pic.size;
		*png = id == AV_CODEC_ID_PNG;
		*width = st->codecpar->width;
		*height = st->codecpar->height;
	}
	audio__dec_free(&d);
	close(fd);
	if (rc == 0 && !*data)
		rc = sfa_err(err, n_err, SFA_ENOTFOUND, "the file has no cover picture");
	return rc;
}
