/* audio.h - decoding, resampling and writing audio (the I/O every engine uses).
 *
 * Decoding goes through FFmpeg (libavformat/libavcodec) and libswresample with its soxr
 * resampler, to float32 *planar* samples at a requested rate and channel count.
 * Containers and codecs are allow-listed; durations are capped. Writers produce WAV
 * (16/24-bit PCM, 32-bit float) and FLAC.
 *
 * This module never trusts its input: every failure returns a negative SFA_E* code and a
 * sentence in err. It has no server dependencies. Functions are thread-safe (no global
 * state beyond FFmpeg's, which is initialised lazily and once).
 */
#ifndef SFA_AUDIO_AUDIO_H
#define SFA_AUDIO_AUDIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Planar float samples: channel c is data[c * n_frames .. (c+1) * n_frames). */
struct audio_buf {
	float *data; /* malloced; audio_buf_free releases it */
	size_t n_frames;
	int n_channels;
	int sample_rate_hz;
};

struct audio_info {
	char container[32]; /* FFmpeg short name of the format, e.g. "mp3", "flac", "wav" */
	char codec[32];     /* e.g. "mp3", "flac", "pcm_s16le", "aac", "opus", "vorbis" */
	int sample_rate_hz;
	int n_channels;
	double duration_s;                        /* from decoding when probed with audio_probe */
	int64_t bit_rate;                         /* bits per second, 0 when unknown */
	char title[256], artist[256], album[256]; /* tags, "" when absent */
};

enum audio_sample_format {
	AUDIO_PCM16,   /* 16-bit PCM, round to nearest, clipped */
	AUDIO_PCM24,   /* 24-bit PCM, round to nearest, clipped */
	AUDIO_FLOAT32, /* 32-bit IEEE float, unclipped */
};

enum { AUDIO_MAX_DURATION_S = 60 * 60 }; /* default decode cap: one hour */

/* Opens path, checks the container/codec allow-list and decodes the whole stream to
 * validate it (without keeping the samples). Fills info on success; container is the first
 * name of FFmpeg's demuxer list ("mov" for mp4/m4a, "matroska" for mkv/webm, "ogg" for
 * ogg/opus). Same errors as audio_decode. */
int audio_probe(const char *path, struct audio_info *info, char *err, size_t n_err);

/* Decodes path to planar float at rate_hz (0 = the file's rate) and n_channels
 * (0 = the file's; 1 = mean of channels; 2 from mono duplicates; >2 to 2 keeps the first
 * two). Fails with SFA_ETOOBIG past max_duration_s (0 = AUDIO_MAX_DURATION_S).
 * On success *out owns malloced data; free with audio_buf_free.
 *
 * Matches librosa.load(path, sr=rate_hz, mono=(n_channels == 1)) sample for sample on PCM
 * input: integer PCM becomes x / 2^(bits-1); the mono mix is (L + R) / 2 in float32 (the
 * mean, summed in channel order), done BEFORE resampling; resampling is libswresample's
 * soxr engine at precision 20 (= libsoxr SOXR_HQ); the output has exactly
 * ceil(n_in * rate_out / rate_in) frames (zero-padded or cut).
 * Errors: SFA_EINVAL (bad arguments, a channel conversion other than those above, not a
 * regular file), SFA_ENOTFOUND, SFA_EIO, SFA_ETOOBIG, SFA_ENOMEM, and SFA_EFORMAT for
 * anything wrong with the file: unknown or disallowed container or codec, no audio stream,
 * damaged header, no decodable samples, too many corrupt packets, truncated (shorter than
 * its header declares by more than max(0.5 s, 2 %)). */
int audio_decode(const char *path, int rate_hz, int n_channels, double max_duration_s,
                 struct audio_buf *out, char *err, size_t n_err);

/* The same two on an open file descriptor (read from offset 0; the fd stays the caller's).
 * For a child process handed an upload, or a fuzzer's memfd. */
int audio_probe_fd(int fd, struct audio_info *info, char *err, size_t n_err);
int audio_decode_fd(int fd, int rate_hz, int n_channels, double max_duration_s,
                    struct audio_buf *out, char *err, size_t n_err);

/* Streaming decode: the same samples and length as audio_decode_fd, handed to sink in
 * pieces as they are decoded instead of gathered in one buffer, so memory stays small
 * whatever the file's length. planes[c] holds n_frames floats of channel c (valid only
 * during the call). A sink returning non-zero stops decoding; that code (SFA_ECANCELED
 * for a positive one) is returned. After a failure the sink may already have received
 * part of the audio. info (may be NULL) describes the input and the output: from the first
 * sink call on (so a sink given it through arg learns the rate and channels before the
 * first samples; n_frames is then what it received before this call), and whole on
 * success. */
typedef int (*audio_sink_fn)(void *arg, const float *const *planes, size_t n_frames);
struct audio_stream_info {
	int in_rate_hz, in_channels;    /* the file's */
	int sample_rate_hz, n_channels; /* what the sink received */
	uint64_t n_frames;              /* frames the sink received */
};
int audio_decode_stream_fd(int fd, int rate_hz, int n_channels, double max_duration_s,
                           audio_sink_fn sink, void *arg, struct audio_stream_info *info, char *err,
                           size_t n_err);

/* audio_decode, and tap receives the file's own samples as they are decoded, before any
 * channel mapping or resampling: every channel, at the file's rate, float32 (exactly what
 * the mapping reads, so one decode serves two consumers, e.g. the analysis at 22050 Hz mono
 * and a loudness meter at the file's rate). tap_info (may be NULL) is filled before each
 * call as in audio_decode_stream_fd, with sample_rate_hz and n_channels the file's. A tap
 * returning non-zero stops decoding as a sink does. */
int audio_decode_tap(const char *path, int rate_hz, int n_channels, double max_duration_s,
                     audio_sink_fn tap, void *tap_arg, struct audio_stream_info *tap_info,
                     struct audio_buf *out, char *err, size_t n_err);

/* Frees b->data and zeroes n_frames; safe on a zeroed or already freed buffer. */
void audio_buf_free(struct audio_buf *b);

/* Writes b as a RIFF WAV file in fmt. Creates or truncates path. */
int audio_write_wav(const char *path, const struct audio_buf *b, enum audio_sample_format fmt,
                    char *err, size_t n_err);
/* A file written as its samples arrive, in any output container: WAV (fmt: 16/24-bit PCM or
 * float), FLAC (fmt: 16 or 24 bits) or MP3 (AUDIO_MP3_BIT_RATE CBR, LAME; fmt ignored; 1 or
 * 2 channels). The frame count is announced at open; close fails if it was not met and, on
 * any failure (or when failed is set), removes the file. One owner at a time. */
enum audio_container { AUDIO_WAV, AUDIO_FLAC, AUDIO_MP3 };
enum { AUDIO_MP3_BIT_RATE = 320000 };
struct audio_enc;
/* *out is the caller's until audio_enc_close, which frees it in every case. */
int audio_enc_open(struct audio_enc **out, const char *path, enum audio_container kind,
                   enum audio_sample_format fmt, uint64_t n_frames, int n_channels, int rate_hz,
                   char *err, size_t n_err);
/* Appends n frames from planar data: channel c at planes + c * stride. */
int audio_enc_write(struct audio_enc *e, const float *planes, size_t stride, size_t n, char *err,
                    size_t n_err);
/* Finishes (or with failed, abandons and removes) the file and frees e; NULL is fine. */
int audio_enc_close(struct audio_enc *e, bool failed, char *err, size_t n_err);
/* The stem output formats by name: "wav" (16-bit), "wav24", "f32" (32-bit float WAV),
 * "flac" (16-bit), "mp3" (AUDIO_MP3_BIT_RATE). Fills the container, the sample format and
 * the file extension (a static string); SFA_EINVAL for another name. */
#define AUDIO_OUTPUT_FORMATS "wav, wav24, f32, flac or mp3"
int audio_output_format(const char *name, enum audio_container *kind, enum audio_sample_format *fmt,
                        const char **ext);
/* Writes the whole of b in kind through the streaming writer. */
int audio_write(const char *path, const struct audio_buf *b, enum audio_container kind,
                enum audio_sample_format fmt, char *err, size_t n_err);

/* Writes a Native Instruments Stems file (audio/nistems.h) to out_path: paths[0] is the
 * master mix, paths[1..4] the drums, bass, other and vocals stems, each decoded as a stream
 * to 44.1 kHz stereo and encoded as AAC at AUDIO_NISTEMS_BIT_RATE (the stems cut or padded
 * to the master's length), with title and artist tags, the master's cover picture when it
 * has one, and the 'stem' box. *seconds: the length. On failure nothing is left at
 * out_path. */
enum { AUDIO_NISTEMS_BIT_RATE = 256000, AUDIO_MAX_COVER_BYTES = 10 << 20 };
/* The cover picture (JPEG or PNG, at most AUDIO_MAX_COVER_BYTES) a file carries in its
 * tags: *data malloced (the caller frees it), *png tells which, with its size in pixels. SFA_ENOTFOUND when it
 * has none. */
int audio_read_cover(const char *path, unsigned char **data, size_t *n, bool *png, int *width,
                     int *height, char *err, size_t n_err);
int audio_write_nistems(const char *out_path, const char *const paths[5], const char *title,
                        const char *artist, double *seconds, char *err, size_t n_err);

/* ---- key-shift and time-stretch (stretch.c) ---------------------------------------- */

#define AUDIO_MIN_TEMPO_RATIO 0.5
#define AUDIO_MAX_TEMPO_RATIO 2.0
enum { AUDIO_MAX_SEMITONES = 12 };

/* in shifted by semitones (fractions allowed, |s| <= 12) and played tempo_ratio times as
 * fast (0.5 .. 2: 1.1 shortens it to 1/1.1), with librubberband's R3 engine, offline;
 * keep_formants keeps a voice's timbre through the shift. *out (malloced; audio_buf_free)
 * has round(n / tempo_ratio) frames, in's channels and rate. */
int audio_transform(const struct audio_buf *in, double semitones, double tempo_ratio,
                    bool keep_formants, struct audio_buf *out, char *err, size_t n_err);

/* ---- WAV encoding (wav.c), shared by every writer ------------------------------------ */

enum { AUDIO_WAV_HEADER_MAX = 80, AUDIO_WAV_MAX_CHANNELS = 16 };

/* The RIFF/WAVE header for n_frames of n_channels at rate_hz in fmt (PCM, IEEE float with a
 * fact chunk, or EXTENSIBLE PCM above two channels). Returns its size, or 0 when the data
 * would not fit a WAV file (4 GiB). */
size_t audio_wav_header(unsigned char hdr[AUDIO_WAV_HEADER_MAX], uint64_t n_frames, int n_channels,
                        int rate_hz, enum audio_sample_format fmt);
/* Round to nearest at `bits`, clipped to full scale, NaN to 0; true when it clipped. */
bool audio_quantize(float x, int bits, int32_t *out);
/* Encodes n frames, sample (c, i) read at data[c * chan_stride + i * frame_stride] and
 * multiplied by gain, as interleaved little-endian bytes in out (non-finite floats become
 * 0). Returns how many samples were clipped (always 0 for AUDIO_FLOAT32). */
uint64_t audio_wav_encode(const float *data, size_t chan_stride, size_t frame_stride, size_t n,
                          int n_channels, enum audio_sample_format fmt, float gain,
                          unsigned char *out);

/* A WAV file written as its samples arrive (so a long track never has to be in memory
 * whole). The frame count is announced at open; close fails if it was not met and, on any
 * failure, removes the file. One owner at a time. */
struct audio_wav_file {
	int fd;
	enum audio_sample_format fmt;
	int n_channels;
	uint64_t n_frames, n_written;
	unsigned char *buf;
	char path[4400];
};

int audio_wav_open(struct audio_wav_file *w, const char *path, uint64_t n_frames, int n_channels,
                   int rate_hz, enum audio_sample_format fmt, char *err, size_t n_err);
/* Appends n frames from planar data: channel c at planes + c * stride. */
int audio_wav_write(struct audio_wav_file *w, const float *planes, size_t stride, size_t n,
                    char *err, size_t n_err);
int audio_wav_close(struct audio_wav_file *w, bool failed, char *err, size_t n_err);

#endif
