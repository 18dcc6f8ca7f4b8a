/* Unit tests for src/audio: decoding, resampling, channel mapping, writers, error paths.
 *
 * Signals are generated here and written to a mkdtemp directory. The `ffmpeg` command-line
 * tool (a build dependency, see scripts/deps.sh) turns a generated WAV into the other
 * formats; a test that needs it fails with a message saying so when it is missing.
 *
 * argv[1] is tests/fixtures/audio, which holds the first 3 s of the analysis reference's
 * song_140_E_minor_st44k.wav (as FLAC) and librosa's RMS for its first 120 frames.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef HAVE_SOXR
#include <soxr.h>
#endif

#include "audio/audio.h"
#include "util/err.h"

extern char **environ;

static char g_dir[256];
static const char *g_fixtures = "tests/fixtures/audio";

/* ---- helpers ------------------------------------------------------------------- */

/* A path in the test directory; a ring of 128 slots, enough for any one test. */
static const char *tmp_path(const char *name)
{
	static char paths[128][512];
	static int next;
	char *p = paths[next++ % 128];
	snprintf(p, 512, "%s/%s", g_dir, name);
	return p;
}

static struct audio_buf make_buf(size_t n_frames, int n_ch, int rate)
{
	struct audio_buf b = {.n_frames = n_frames, .n_channels = n_ch, .sample_rate_hz = rate};
	b.data = calloc(n_frames * (size_t)n_ch + 1, sizeof(float));
	assert_non_null(b.data);
	return b;
}

static float *ch(const struct audio_buf *b, int c) { return b->data + (size_t)c * b->n_frames; }

/* A sine of freq_hz and amplitude amp on every channel (channel c scaled by 1 - 0.25c). */
static struct audio_buf make_sine(double seconds, int rate, int n_ch, double freq_hz, double amp)
{
	size_t n = (size_t)llround(seconds * rate);
	struct audio_buf b = make_buf(n, n_ch, rate);
	for (int c = 0; c < n_ch; c++)
		for (size_t i = 0; i < n; i++)
			ch(&b, c)[i] = (float)(amp * (1.0 - 0.25 * c) *
			                       sin(2.0 * M_PI * freq_hz * (double)i / rate));
	return b;
}

/* Runs argv (argv[0] looked up in PATH) with stdout/stderr to /dev/null; returns its
 * exit status, or -1 when it cannot be started. */
static int run_cmd(char *const argv[])
{
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	pid_t pid;
	int r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ffmpeg -i in [codec args...] out; fails the test with a clear message when ffmpeg is
 * missing or refuses. */
static void ffmpeg_convert(const char *in, const char *out, const char *const *args)
{
	char *argv[32];
	int n = 0;
	argv[n++] = "ffmpeg";
	argv[n++] = "-nostdin";
	argv[n++] = "-hide_banner";
	argv[n++] = "-loglevel";
	argv[n++] = "error";
	argv[n++] = "-y";
	if (in) {
		argv[n++] = "-i";
		argv[n++] = (char *)in;
	}
	for (; args && *args && n < 30; args++)
		argv[n++] = (char *)*args;
	argv[n++] = (char *)out;
	argv[n] = NULL;
	int rc = run_cmd(argv);
	if (rc != 0)
		fail_msg("the ffmpeg command-line tool is needed for this test (scripts/deps.sh "
		         "installs it) and it failed (status %d) making %s",
		         rc, out);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	unsigned char *p = malloc((size_t)len + 1);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n = (size_t)len;
	return p;
}

static void copy_prefix(const char *src, const char *dst, double fraction)
{
	size_t n;
	unsigned char *p = read_bytes(src, &n);
	write_bytes(dst, p, (size_t)((double)n * fraction));
	free(p);
}

/* Magnitude of the DFT of x at freq_hz (a single-bin Goertzel-style sum, in double). */
static double dft_mag(const float *x, size_t n, double rate, double freq_hz)
{
	double re = 0, im = 0;
	for (size_t i = 0; i < n; i++) {
		double ph = 2.0 * M_PI * freq_hz * (double)i / rate;
		re += x[i] * cos(ph);
		im -= x[i] * sin(ph);
	}
	return sqrt(re * re + im * im) / (double)n;
}

static double rms(const float *x, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s / (double)n);
}

/* Frequency from the count of upward zero crossings over a span (linear interpolation at
 * the first and the last one). */
static double zc_freq(const float *x, size_t n, double rate)
{
	double first = -1, last = -1;
	int count = 0;
	for (size_t i = 1; i < n; i++) {
		if (x[i - 1] < 0 && x[i] >= 0) {
			double t = (double)(i - 1) + x[i - 1] / (x[i - 1] - x[i]);
			if (first < 0)
				first = t;
			else
				count++;
			last = t;
		}
	}
	assert_true(count > 10);
	return count * rate / (last - first);
}

static size_t ceil_len(size_t n_in, int rate_out, int rate_in)
{
	return (size_t)(((uint64_t)n_in * (uint64_t)rate_out + (uint64_t)rate_in - 1) /
	                (uint64_t)rate_in);
}

/* ---- WAV and FLAC round trips -------------------------------------------------- */

static void wav16_round_trip_is_exact(void **state)
{
	(void)state;
	/* Values on the 16-bit grid come back bit for bit; out-of-range values clip. */
	struct audio_buf b = make_buf(5000, 2, 44100);
	for (size_t i = 0; i < b.n_frames; i++) {
		ch(&b, 0)[i] = (float)((int)(i * 37 % 65536) - 32768) / 32768.0f;
		ch(&b, 1)[i] = (float)((int)(i * 101 % 65536) - 32768) / 32768.0f;
	}
	ch(&b, 0)[0] = 1.5f;             /* clips to 32767 */
	ch(&b, 1)[0] = -2.0f;            /* clips to -32768 */
	ch(&b, 0)[1] = 0.4f / 32768.0f;  /* rounds to 0 */
	ch(&b, 1)[1] = 0.6f / 32768.0f;  /* rounds to 1 */
	ch(&b, 0)[2] = -0.6f / 32768.0f; /* rounds to -1 */
	ch(&b, 1)[2] = NAN;              /* becomes 0 */
	char err[256] = "";
	const char *p = tmp_path("r16.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf d;
	assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, b.n_frames);
	assert_int_equal(d.n_channels, 2);
	assert_int_equal(d.sample_rate_hz, 44100);
	assert_true(ch(&d, 0)[0] == 32767.0f / 32768.0f);
	assert_true(ch(&d, 1)[0] == -1.0f);
	assert_true(ch(&d, 0)[1] == 0.0f);
	assert_true(ch(&d, 1)[1] == 1.0f / 32768.0f);
	assert_true(ch(&d, 0)[2] == -1.0f / 32768.0f);
	assert_true(ch(&d, 1)[2] == 0.0f);
	for (size_t i = 3; i < b.n_frames; i++)
		for (int c = 0; c < 2; c++)
			if (ch(&d, c)[i] != ch(&b, c)[i])
				fail_msg("frame %zu channel %d: %g != %g", i, c, ch(&d, c)[i],
				         ch(&b, c)[i]);
	struct audio_info info;
	assert_int_equal(audio_probe(p, &info, err, sizeof err), 0);
	assert_string_equal(info.container, "wav");
	assert_string_equal(info.codec, "pcm_s16le");
	assert_int_equal(info.n_channels, 2);
	assert_int_equal(info.sample_rate_hz, 44100);
	assert_true(fabs(info.duration_s - 5000.0 / 44100) < 1e-9);
	assert_int_equal(info.bit_rate, 44100 * 32);
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void wav24_round_trip_is_exact(void **state)
{
	(void)state;
	struct audio_buf b = make_buf(4000, 1, 48000);
	for (size_t i = 0; i < b.n_frames; i++)
		ch(&b, 0)[i] = (float)((int32_t)((i * 2654435761u) % 16777216u) - 8388608) /
		               8388608.0f;
	ch(&b, 0)[0] = 0.49f / 8388608.0f; /* rounds to 0 */
	ch(&b, 0)[1] = 1.51f / 8388608.0f; /* rounds to 2 */
	char err[256] = "";
	const char *p = tmp_path("r24.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM24, err, sizeof err), 0);
	struct audio_buf d;
	assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, 4000);
	assert_int_equal(d.n_channels, 1);
	assert_true(d.data[0] == 0.0f);
	assert_true(d.data[1] == 2.0f / 8388608.0f);
	for (size_t i = 2; i < b.n_frames; i++)
		if (d.data[i] != b.data[i])
			fail_msg("frame %zu: %.9g != %.9g", i, d.data[i], b.data[i]);
	struct audio_info info;
	assert_int_equal(audio_probe(p, &info, err, sizeof err), 0);
	assert_string_equal(info.codec, "pcm_s24le");
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void wav_float_round_trip_is_exact_and_unclipped(void **state)
{
	(void)state;
	struct audio_buf b = make_sine(0.25, 22050, 2, 440, 1.7); /* peaks past 1.0 */
	char err[256] = "";
	const char *p = tmp_path("rf.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_FLOAT32, err, sizeof err), 0);
	struct audio_buf d;
	assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, b.n_frames);
	assert_memory_equal(d.data, b.data, b.n_frames * 2 * sizeof(float));
	struct audio_info info;
	assert_int_equal(audio_probe(p, &info, err, sizeof err), 0);
	assert_string_equal(info.codec, "pcm_f32le");
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void wav_multichannel_uses_extensible(void **state)
{
	(void)state;
	struct audio_buf b = make_buf(1000, 4, 44100);
	for (int c = 0; c < 4; c++)
		for (size_t i = 0; i < 1000; i++)
			ch(&b, c)[i] = (float)((int)(i % 200) - 100 + c * 1000) / 32768.0f;
	char err[256] = "";
	const char *p = tmp_path("r4.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf d;
	assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_channels, 4);
	assert_memory_equal(d.data, b.data, 4000 * sizeof(float));
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void flac_round_trips_are_exact(void **state)
{
	(void)state;
	char err[256] = "";
	for (int depth = 0; depth < 2; depth++) {
		int bits = depth ? 24 : 16;
		double scale = depth ? 8388608.0 : 32768.0;
		struct audio_buf b = make_sine(1.3, 44100, 2, 1000, 0.8);
		for (size_t i = 0; i < b.n_frames * 2; i++)
			b.data[i] = (float)(nearbyint(b.data[i] * scale) / scale);
		const char *p = tmp_path(depth ? "r24.flac" : "r16.flac");
		assert_int_equal(audio_write(p, &b, AUDIO_FLAC, depth ? AUDIO_PCM24 : AUDIO_PCM16,
		                             err, sizeof err),
		                 0);
		struct audio_info info;
		assert_int_equal(audio_probe(p, &info, err, sizeof err), 0);
		assert_string_equal(info.container, "flac");
		assert_string_equal(info.codec, "flac");
		assert_true(fabs(info.duration_s - 1.3) < 1e-9);
		struct audio_buf d;
		assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0);
		assert_int_equal(d.n_frames, b.n_frames);
		assert_int_equal(d.n_channels, 2);
		for (size_t i = 0; i < b.n_frames * 2; i++)
			if (d.data[i] != b.data[i])
				fail_msg("%d-bit FLAC: sample %zu: %.9g != %.9g", bits, i,
				         d.data[i], b.data[i]);
		/* (STREAMINFO's sample count, filled in at the end, is checked by the truncated-FLAC
		 * case in bad_files_give_clean_errors: without it no truncation is seen.) */
		audio_buf_free(&d);
		audio_buf_free(&b);
	}
	struct audio_buf b = make_buf(10, 1, 44100);
	assert_int_equal(
		audio_write(tmp_path("bad.flac"), &b, AUDIO_FLAC, AUDIO_FLOAT32, err, sizeof err),
		SFA_EINVAL);
	assert_int_equal(
		audio_write_wav("/nonexistent-dir/x.wav", &b, AUDIO_PCM16, err, sizeof err),
		SFA_EIO);
	assert_non_null(strstr(err, "cannot create"));
	assert_int_equal(audio_write("/nonexistent-dir/x.flac", &b, AUDIO_FLAC, AUDIO_PCM16, err,
	                             sizeof err),
	                 SFA_EIO);
	audio_buf_free(&b);
}

/* The streaming writer: any chunking gives the same file as one write; MP3 comes back at
 * its exact length (the LAME header carries the encoder's delay and padding) and close to
 * the signal; a short count is refused and leaves no file. */
static void streaming_writer(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_sine(1.5, 44100, 2, 1000, 0.5);
	for (size_t i = 0; i < b.n_frames * 2; i++) /* on the 16-bit grid; -0 becomes 0 */
		b.data[i] = (float)(nearbyint(b.data[i] * 32768.0) / 32768.0) + 0.0f;
	const char *whole = tmp_path("whole.flac");
	assert_int_equal(audio_write(whole, &b, AUDIO_FLAC, AUDIO_PCM16, err, sizeof err), 0);
	const char *parts = tmp_path("parts.flac");
	struct audio_enc *e;
	assert_int_equal(audio_enc_open(&e, parts, AUDIO_FLAC, AUDIO_PCM16, b.n_frames, 2, 44100,
	                                err, sizeof err),
	                 0);
	static const size_t chunks[] = {1, 999, 4608, 7, 10000};
	size_t at = 0;
	for (size_t k = 0; at < b.n_frames; k++) {
		size_t n = chunks[k % 5] < b.n_frames - at ? chunks[k % 5] : b.n_frames - at;
		assert_int_equal(audio_enc_write(e, b.data + at, b.n_frames, n, err, sizeof err),
		                 0);
		at += n;
	}
	assert_int_equal(audio_enc_close(e, false, err, sizeof err), 0);
	struct audio_buf d1, d2;
	assert_int_equal(audio_decode(whole, 0, 0, 0, &d1, err, sizeof err), 0);
	assert_int_equal(audio_decode(parts, 0, 0, 0, &d2, err, sizeof err), 0);
	assert_int_equal(d2.n_frames, b.n_frames);
	assert_memory_equal(d1.data, d2.data, b.n_frames * 2 * sizeof(float));
	assert_memory_equal(d2.data, b.data, b.n_frames * 2 * sizeof(float));
	audio_buf_free(&d1);
	audio_buf_free(&d2);

	const char *mp3 = tmp_path("stem.mp3");
	assert_int_equal(audio_write(mp3, &b, AUDIO_MP3, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_info info;
	assert_int_equal(audio_probe(mp3, &info, err, sizeof err), 0);
	assert_string_equal(info.codec, "mp3");
	assert_int_equal(info.bit_rate, AUDIO_MP3_BIT_RATE);
	struct audio_buf d;
	assert_int_equal(audio_decode(mp3, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, b.n_frames);
	assert_int_equal(d.n_channels, 2);
	double sig = 0, noise = 0;
	for (size_t i = 0; i < b.n_frames * 2; i++) {
		sig += (double)b.data[i] * b.data[i];
		noise += ((double)d.data[i] - b.data[i]) * ((double)d.data[i] - b.data[i]);
	}
	double snr_db = 10.0 * log10(sig / noise);
	printf("# MP3 at 320 kbit/s: SNR %.1f dB\n", snr_db);
	if (snr_db < 30.0)
		fail_msg("the MP3 comes back with an SNR of %.1f dB", snr_db);
	audio_buf_free(&d);

	const char *short_file = tmp_path("short.mp3");
	assert_int_equal(audio_enc_open(&e, short_file, AUDIO_MP3, AUDIO_PCM16, 1000, 2, 44100, err,
	                                sizeof err),
	                 0);
	assert_int_equal(audio_enc_write(e, b.data, b.n_frames, 10, err, sizeof err), 0);
	assert_int_equal(audio_enc_close(e, false, err, sizeof err), SFA_EINVAL);
	assert_int_equal(access(short_file, F_OK), -1);
	assert_int_equal(audio_enc_open(&e, tmp_path("x.mp3"), AUDIO_MP3, AUDIO_PCM16, 10, 3, 44100,
	                                err, sizeof err),
	                 SFA_EINVAL);
	enum audio_container kind;
	enum audio_sample_format fmt;
	const char *ext;
	assert_int_equal(audio_output_format("mp3", &kind, &fmt, &ext), 0);
	assert_int_equal(kind, AUDIO_MP3);
	assert_string_equal(ext, "mp3");
	assert_int_equal(audio_output_format("wav24", &kind, &fmt, &ext), 0);
	assert_int_equal(fmt, AUDIO_PCM24);
	assert_int_equal(audio_output_format("ogg", &kind, &fmt, &ext), SFA_EINVAL);
	audio_buf_free(&b);
}

/* ---- resampling ---------------------------------------------------------------- */

static void check_sine_resample(int rate_out)
{
	struct audio_buf b = make_sine(2.0, 44100, 1, 1000, 0.5);
	char err[256] = "";
	const char *p = tmp_path("sine.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_FLOAT32, err, sizeof err), 0);
	struct audio_buf d;
	assert_int_equal(audio_decode(p, rate_out, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.sample_rate_hz, rate_out);
	assert_int_equal(d.n_frames, ceil_len(b.n_frames, rate_out, 44100));
	/* Away from the edges: 1.5 s of the middle. */
	size_t i0 = (size_t)rate_out / 4, n = (size_t)rate_out * 3 / 2;
	double f = zc_freq(d.data + i0, n, rate_out);
	assert_true(fabs(f - 1000.0) < 0.01);
	double level_db = 20 * log10(rms(d.data + i0, n) / (0.5 / sqrt(2.0)));
	if (fabs(level_db) > 0.1)
		fail_msg("level off by %.4f dB at %d Hz", level_db, rate_out);
	/* The DFT at 1 kHz holds the amplitude (0.25 = 0.5 / 2), and nothing is at 500 Hz or
	 * 2 kHz, where a rate mix-up by a factor of two would move it. */
	double m1000 = dft_mag(d.data + i0, n, rate_out, 1000);
	assert_true(fabs(m1000 - 0.25) < 0.25 * 0.0116); /* 0.1 dB */
	assert_true(dft_mag(d.data + i0, n, rate_out, 500) < 1e-4);
	assert_true(dft_mag(d.data + i0, n, rate_out, 2000) < 1e-4);
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void sine_1k_44k_to_22k(void **state)
{
	(void)state;
	check_sine_resample(22050);
}

static void sine_1k_44k_to_48k(void **state)
{
	(void)state;
	check_sine_resample(48000);
}

static void output_length_is_ceil_rule(void **state)
{
	(void)state;
	static const struct {
		size_t n_in;
		int rate_in, rate_out;
	} cases[] = {
		{44101, 44100, 22050}, {1001, 44100, 48000}, {999, 48000, 22050},
		{1, 44100, 22050},     {7, 8000, 44100},     {12345, 22050, 44100},
	};
	char err[256] = "";
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		struct audio_buf b = make_sine((double)cases[k].n_in / cases[k].rate_in,
		                               cases[k].rate_in, 2, 300, 0.3);
		assert_int_equal(b.n_frames, cases[k].n_in);
		const char *p = tmp_path("len.wav");
		assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
		struct audio_buf d;
		assert_int_equal(audio_decode(p, cases[k].rate_out, 2, 0, &d, err, sizeof err), 0);
		assert_int_equal(d.n_frames,
		                 ceil_len(cases[k].n_in, cases[k].rate_out, cases[k].rate_in));
		audio_buf_free(&d);
		audio_buf_free(&b);
	}
}

/* The decoder's path (16-bit -> float, mean of channels in float32, swresample/soxr at
 * precision 20, ceil length) must give exactly what libsoxr's SOXR_HQ gives on the
 * downmixed signal: that is librosa.load(sr=22050)'s definition. */
static void resample_matches_libsoxr_hq_exactly(void **state)
{
	(void)state;
#ifndef HAVE_SOXR
	fail_msg("libsoxr (Debian libsoxr-dev, see scripts/deps.sh) is needed to compare the "
	         "resampler with librosa's");
#else
	static const int rates[][2] = {{44100, 22050}, {48000, 22050}, {44100, 48000}};
	char err[256] = "";
	for (size_t k = 0; k < 3; k++) {
		int rin = rates[k][0], rout = rates[k][1];
		size_t n = (size_t)rin * 3 / 2 + 17;
		struct audio_buf b = make_buf(n, 2, rin);
		uint32_t s = 12345;
		for (size_t i = 0; i < n; i++) {
			s = s * 1664525u + 1013904223u;
			double noise = ((double)(s >> 8) / 16777216.0 - 0.5) * 0.2;
			double t = (double)i / rin;
			ch(&b, 0)[i] = (float)(nearbyint((0.4 * sin(2 * M_PI * 220 * t) + noise) *
			                                 32768) /
			                       32768);
			ch(&b, 1)[i] = (float)(nearbyint((0.3 * sin(2 * M_PI * 7000 * t) - noise) *
			                                 32768) /
			                       32768);
		}
		const char *p = tmp_path("soxr.wav");
		assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
		struct audio_buf d;
		assert_int_equal(audio_decode(p, rout, 1, 0, &d, err, sizeof err), 0);

		float *mono = malloc(n * sizeof(float));
		for (size_t i = 0; i < n; i++)
			mono[i] = (ch(&b, 0)[i] + ch(&b, 1)[i]) / 2.0f;
		size_t n_out = ceil_len(n, rout, rin);
		float *ref = calloc(n_out + 64, sizeof(float));
		soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
		soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
		size_t idone = 0, odone = 0;
		soxr_error_t e = soxr_oneshot(rin, rout, 1, mono, n, &idone, ref, n_out, &odone,
		                              &io, &q, NULL);
		assert_null(e);
		assert_int_equal(d.n_frames, n_out);
		size_t n_diff = 0;
		double max_d = 0;
		for (size_t i = 0; i < n_out; i++) {
			double dd = fabs((double)d.data[i] - ref[i]);
			n_diff += dd != 0;
			max_d = dd > max_d ? dd : max_d;
		}
		if (n_diff)
			fail_msg("%d -> %d Hz: %zu of %zu samples differ from libsoxr HQ (max %g)",
			         rin, rout, n_diff, n_out, max_d);
		free(ref);
		free(mono);
		audio_buf_free(&d);
		audio_buf_free(&b);
	}
#endif
}

/* librosa.load(song_140_E_minor_st44k.wav, sr=22050) -> rms frames 0..119, compared with
 * librosa's own numbers (the analysis reference, tolerance 1e-7 + 1e-4 |ref|). The
 * fixture is the first 3 s of the reference WAV, losslessly as FLAC; frames 0..119 end
 * 0.3 s before the cut, out of reach of the resampler's filter. */
static void librosa_reference_rms_matches(void **state)
{
	(void)state;
	char path[512], rpath[512], err[256] = "";
	snprintf(path, sizeof path, "%s/song_140_E_minor_st44k_3s.flac", g_fixtures);
	snprintf(rpath, sizeof rpath, "%s/song_140_E_minor_st44k_rms_0_119.txt", g_fixtures);
	FILE *f = fopen(rpath, "r");
	if (!f)
		fail_msg("missing fixture %s", rpath);
	struct audio_buf d;
	int rc = audio_decode(path, 22050, 1, 0, &d, err, sizeof err);
	if (rc)
		fail_msg("decoding %s: %s", path, err);
	assert_int_equal(d.n_frames, 66150);
	char line[128];
	int t = 0;
	double worst = 0;
	while (fgets(line, sizeof line, f)) {
		if (line[0] == '#')
			continue;
		double ref = strtod(line, NULL);
		double s = 0;
		for (long i = (long)t * 512 - 1024; i < (long)t * 512 + 1024; i++)
			if (i >= 0 && (size_t)i < d.n_frames)
				s += (double)d.data[i] * d.data[i];
		double v = sqrt(s / 2048.0);
		double tol = 1e-7 + 1e-4 * fabs(ref);
		if (fabs(v - ref) > tol)
			fail_msg("rms frame %d: %.9g, librosa %.9g", t, v, ref);
		if (fabs(v - ref) / tol > worst)
			worst = fabs(v - ref) / tol;
		t++;
	}
	fclose(f);
	assert_int_equal(t, 120);
	audio_buf_free(&d);
}

/* ---- channels ------------------------------------------------------------------ */

static void mono_stereo_conversions(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_buf(3000, 2, 44100);
	for (size_t i = 0; i < 3000; i++) {
		ch(&b, 0)[i] = (float)((int)(i % 611) - 300) / 32768.0f;
		ch(&b, 1)[i] = (float)((int)(i % 127) * 3 - 190) / 32768.0f;
	}
	const char *ps = tmp_path("st.wav");
	assert_int_equal(audio_write_wav(ps, &b, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf m;
	assert_int_equal(audio_decode(ps, 0, 1, 0, &m, err, sizeof err), 0);
	assert_int_equal(m.n_channels, 1);
	assert_int_equal(m.n_frames, 3000);
	for (size_t i = 0; i < 3000; i++)
		assert_true(m.data[i] == (ch(&b, 0)[i] + ch(&b, 1)[i]) / 2.0f);

	/* mono -> stereo duplicates, at the native rate and resampled */
	const char *pm = tmp_path("mo.wav");
	assert_int_equal(audio_write_wav(pm, &m, AUDIO_FLOAT32, err, sizeof err), 0);
	struct audio_buf s2;
	assert_int_equal(audio_decode(pm, 0, 2, 0, &s2, err, sizeof err), 0);
	assert_int_equal(s2.n_channels, 2);
	assert_memory_equal(ch(&s2, 0), m.data, 3000 * sizeof(float));
	assert_memory_equal(ch(&s2, 1), m.data, 3000 * sizeof(float));
	audio_buf_free(&s2);
	struct audio_buf s3, m3;
	assert_int_equal(audio_decode(pm, 32000, 2, 0, &s3, err, sizeof err), 0);
	assert_int_equal(audio_decode(pm, 32000, 1, 0, &m3, err, sizeof err), 0);
	assert_int_equal(s3.n_frames, ceil_len(3000, 32000, 44100));
	assert_memory_equal(ch(&s3, 0), m3.data, s3.n_frames * sizeof(float));
	assert_memory_equal(ch(&s3, 1), m3.data, s3.n_frames * sizeof(float));
	audio_buf_free(&s3);
	audio_buf_free(&m3);

	/* 4 channels: to stereo keeps the first two, to mono is the mean of all four */
	struct audio_buf q = make_buf(500, 4, 44100);
	for (int c = 0; c < 4; c++)
		for (size_t i = 0; i < 500; i++)
			ch(&q, c)[i] = (float)((int)(i * (c + 3) % 301) - 150) / 32768.0f;
	const char *pq = tmp_path("q.wav");
	assert_int_equal(audio_write_wav(pq, &q, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf q2, q1;
	assert_int_equal(audio_decode(pq, 0, 2, 0, &q2, err, sizeof err), 0);
	assert_memory_equal(q2.data, q.data, 2 * 500 * sizeof(float));
	assert_int_equal(audio_decode(pq, 0, 1, 0, &q1, err, sizeof err), 0);
	for (size_t i = 0; i < 500; i++) {
		float s = ch(&q, 0)[i];
		for (int c = 1; c < 4; c++)
			s += ch(&q, c)[i];
		assert_true(q1.data[i] == s / 4.0f);
	}
	audio_buf_free(&q1);
	assert_int_equal(audio_decode(pq, 0, 3, 0, &q1, err, sizeof err), SFA_EINVAL);
	assert_true(strlen(err) > 0);
	audio_buf_free(&q2);
	audio_buf_free(&q);
	audio_buf_free(&m);
	audio_buf_free(&b);
}

/* ---- formats ------------------------------------------------------------------- */

struct fmt_case {
	const char *file, *container, *codec;
	const char *args[12];
	double max_len_err_s; /* encoder delay/padding left after FFmpeg's trimming */
};

static void common_formats_decode(void **state)
{
	(void)state;
	static const struct fmt_case cases[] = {
		{"t.mp3", "mp3", "mp3", {"-c:a", "libmp3lame", "-b:a", "320k", NULL}, 0.06},
		{"t.m4a", "mov", "aac", {"-c:a", "aac", "-b:a", "192k", NULL}, 0.06},
		{"t_alac.m4a", "mov", "alac", {"-c:a", "alac", NULL}, 0},
		{"t.flac", "flac", "flac", {"-c:a", "flac", NULL}, 0},
		{"t.ogg", "ogg", "vorbis", {"-c:a", "libvorbis", "-q:a", "6", NULL}, 0.06},
		{"t.opus", "ogg", "opus", {"-c:a", "libopus", "-b:a", "128k", NULL}, 0.06},
		{"t.webm", "matroska", "opus", {"-c:a", "libopus", "-b:a", "128k", NULL}, 0.06},
		{"t.aiff", "aiff", "pcm_s16be", {NULL}, 0},
	};
	char err[256] = "";
	struct audio_buf b = make_sine(1.5, 48000, 2, 1000, 0.5);
	const char *src = tmp_path("src48.wav");
	assert_int_equal(audio_write_wav(src, &b, AUDIO_PCM16, err, sizeof err), 0);
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const struct fmt_case *fc = &cases[k];
		const char *p = tmp_path(fc->file);
		ffmpeg_convert(src, p, fc->args);
		struct audio_info info;
		int rc = audio_probe(p, &info, err, sizeof err);
		if (rc)
			fail_msg("%s: probe failed: %s", fc->file, err);
		assert_string_equal(info.container, fc->container);
		assert_string_equal(info.codec, fc->codec);
		assert_int_equal(info.n_channels, 2);
		if (fabs(info.duration_s - 1.5) > fc->max_len_err_s + 1e-9)
			fail_msg("%s: duration %.4f s", fc->file, info.duration_s);
		struct audio_buf d;
		rc = audio_decode(p, 44100, 1, 0, &d, err, sizeof err);
		if (rc)
			fail_msg("%s: decode failed: %s", fc->file, err);
		assert_int_equal(d.sample_rate_hz, 44100);
		assert_int_equal(d.n_channels, 1);
		if (fabs((double)d.n_frames / 44100 - 1.5) > fc->max_len_err_s + 1.0 / 44100)
			fail_msg("%s: %zu frames", fc->file, d.n_frames);
		/* mono of (0.5, 0.375) sines = 0.4375 amplitude at 1 kHz */
		size_t i0 = 11025, n = 44100;
		double f = zc_freq(d.data + i0, n, 44100);
		if (fabs(f - 1000.0) > 0.05)
			fail_msg("%s: frequency %.4f Hz", fc->file, f);
		double level_db = 20 * log10(rms(d.data + i0, n) / (0.4375 / sqrt(2.0)));
		if (fabs(level_db) > 0.2)
			fail_msg("%s: level off by %.3f dB", fc->file, level_db);
		audio_buf_free(&d);
	}
	audio_buf_free(&b);
}

static void tags_are_read(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_sine(0.5, 44100, 1, 440, 0.3);
	const char *src = tmp_path("tag_src.wav");
	assert_int_equal(audio_write_wav(src, &b, AUDIO_PCM16, err, sizeof err), 0);
	static const char *const mp3[] = {"-c:a",         "libmp3lame",  "-metadata",
	                                  "title=Song Ä", "-metadata",   "artist=The Band",
	                                  "-metadata",    "album=First", NULL};
	static const char *const ogg[] = {
		"-c:a",      "libvorbis",         "-metadata", "title=Ogg Title",
		"-metadata", "artist=Ogg Artist", NULL};
	const char *p1 = tmp_path("tag.mp3"), *p2 = tmp_path("tag.ogg");
	ffmpeg_convert(src, p1, mp3);
	ffmpeg_convert(src, p2, ogg);
	struct audio_info info;
	assert_int_equal(audio_probe(p1, &info, err, sizeof err), 0);
	assert_string_equal(info.title, "Song Ä");
	assert_string_equal(info.artist, "The Band");
	assert_string_equal(info.album, "First");
	assert_true(info.bit_rate > 0);
	assert_int_equal(audio_probe(p2, &info, err, sizeof err), 0);
	assert_string_equal(info.title, "Ogg Title");
	assert_string_equal(info.artist, "Ogg Artist");
	assert_string_equal(info.album, "");
	/* the untagged WAV */
	assert_int_equal(audio_probe(src, &info, err, sizeof err), 0);
	assert_string_equal(info.title, "");
	audio_buf_free(&b);
}

/* Cover art (an attached picture stream) and a video track are skipped, not decoded. */
static void picture_and_video_streams_are_ignored(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_sine(1.0, 44100, 2, 1000, 0.5);
	const char *src = tmp_path("pv_src.wav");
	assert_int_equal(audio_write_wav(src, &b, AUDIO_PCM16, err, sizeof err), 0);
	const char *png = tmp_path("cover.png");
	static const char *const pic[] = {"-f",        "lavfi", "-i", "color=c=blue:s=32x32:d=0.04",
	                                  "-frames:v", "1",     NULL};
	ffmpeg_convert(NULL, png, pic);
	const char *const mp3[] = {"-i",   png,    "-map",           "0:a",          "-map",
	                           "1:v",  "-c:a", "libmp3lame",     "-b:a",         "320k",
	                           "-c:v", "png",  "-disposition:v", "attached_pic", NULL};
	const char *p1 = tmp_path("cover.mp3");
	ffmpeg_convert(src, p1, mp3);
	const char *const mp4[] = {"-f",   "lavfi", "-i",   "testsrc=s=32x32:d=1",
	                           "-map", "0:a",   "-map", "1:v",
	                           "-c:a", "aac",   "-c:v", "mpeg4",
	                           NULL};
	const char *p2 = tmp_path("video.mp4");
	ffmpeg_convert(src, p2, mp4);
	const char *paths[] = {p1, p2};
	for (int k = 0; k < 2; k++) {
		struct audio_info info;
		int rc = audio_probe(paths[k], &info, err, sizeof err);
		if (rc)
			fail_msg("%s: %s", paths[k], err);
		assert_int_equal(info.n_channels, 2);
		struct audio_buf d;
		assert_int_equal(audio_decode(paths[k], 22050, 1, 0, &d, err, sizeof err), 0);
		assert_true(fabs((double)d.n_frames / 22050 - 1.0) < 0.06);
		double f = zc_freq(d.data + 2205, 11025, 22050);
		assert_true(fabs(f - 1000.0) < 0.05);
		audio_buf_free(&d);
	}
	audio_buf_free(&b);
}

/* ---- errors -------------------------------------------------------------------- */

static void expect_format_error(const char *path, const char *what)
{
	char err[256] = "";
	struct audio_buf d = {0};
	struct audio_info info;
	int rc = audio_decode(path, 22050, 1, 0, &d, err, sizeof err);
	if (rc != SFA_EFORMAT)
		fail_msg("%s: audio_decode gave %d (%s), expected SFA_EFORMAT", what, rc, err);
	assert_null(d.data);
	assert_true(strlen(err) > 5);
	printf("# %s: %s\n", what, err);
	err[0] = '\0';
	rc = audio_probe(path, &info, err, sizeof err);
	if (rc != SFA_EFORMAT)
		fail_msg("%s: audio_probe gave %d (%s), expected SFA_EFORMAT", what, rc, err);
	assert_true(strlen(err) > 5);
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* A header may claim gigabytes (the fuzzer's find: a 232-byte WAV whose LIST chunk says
 * 4 GB made FFmpeg allocate and zero 1.7 GB before noticing the file ends). Refused with a
 * clean error and without that memory. */
static void header_claiming_gigabytes_costs_no_memory(void **state)
{
	(void)state;
	unsigned char h[96] = "RIFF....WAVEfmt ";
	put_le32(h + 4, sizeof h - 8);
	put_le32(h + 16, 16);
	const unsigned char fmt[16] = {1, 0, 2, 0, 0x44, 0xac, 0, 0, 0x10, 0xb1, 2, 0, 4, 0, 16, 0};
	memcpy(h + 20, fmt, sizeof fmt);
	memcpy(h + 36, "LIST", 4);
	put_le32(h + 40, 0xFFFFFF00u);
	memcpy(h + 44, "INFOINAM", 8);
	put_le32(h + 52, 0x70000000u); /* a 1.75 GB title */
	memcpy(h + 56, "Title that ends here", 20);
	const char *p = tmp_path("huge_list.wav");
	write_bytes(p, h, sizeof h);
	long before_kb = peak_rss_kb();
	expect_format_error(p, "WAV whose LIST chunk claims 4 GB");
	long grew_mb = (peak_rss_kb() - before_kb) / 1024;
	printf("# peak RSS grew by %ld MB\n", grew_mb);
	if (grew_mb > 300)
		fail_msg("refusing a 96-byte file raised peak memory by %ld MB", grew_mb);
}

static void bad_files_give_clean_errors(void **state)
{
	(void)state;
	char err[256] = "";
	const char *p;

	p = tmp_path("empty.wav");
	write_bytes(p, "", 0);
	expect_format_error(p, "empty file");

	p = tmp_path("text.mp3");
	const char *txt = "This is not audio at all, just a few lines of text.\nSecond line.\n";
	write_bytes(p, txt, strlen(txt));
	expect_format_error(p, "text file");

	unsigned char rnd[8192];
	uint32_t s = 99;
	for (size_t i = 0; i < sizeof rnd; i++) {
		s = s * 1103515245u + 12345u;
		rnd[i] = (unsigned char)(s >> 16);
	}
	p = tmp_path("random.bin");
	write_bytes(p, rnd, sizeof rnd);
	expect_format_error(p, "random bytes");

	/* a valid WAV whose header is overwritten with garbage */
	struct audio_buf b = make_sine(1.0, 44100, 2, 1000, 0.5);
	const char *wav = tmp_path("good.wav");
	assert_int_equal(audio_write_wav(wav, &b, AUDIO_PCM16, err, sizeof err), 0);
	size_t n;
	unsigned char *bytes = read_bytes(wav, &n);
	memcpy(bytes, rnd, 44);
	p = tmp_path("badhdr.wav");
	write_bytes(p, bytes, n);
	free(bytes);
	expect_format_error(p, "WAV with a corrupt header");

	/* a WAV with zero samples */
	struct audio_buf z = make_buf(0, 1, 44100);
	p = tmp_path("zero.wav");
	assert_int_equal(audio_write_wav(p, &z, AUDIO_PCM16, err, sizeof err), 0);
	expect_format_error(p, "WAV with no samples");
	audio_buf_free(&z);

	/* truncated files: half of each is cut off */
	p = tmp_path("trunc.wav");
	copy_prefix(wav, p, 0.5);
	expect_format_error(p, "truncated WAV");
	const char *flac = tmp_path("tr_src.flac");
	assert_int_equal(audio_write(flac, &b, AUDIO_FLAC, AUDIO_PCM16, err, sizeof err), 0);
	p = tmp_path("trunc.flac");
	copy_prefix(flac, p, 0.5);
	expect_format_error(p, "truncated FLAC");
	static const char *const mp3args[] = {"-c:a", "libmp3lame", NULL};
	const char *mp3 = tmp_path("tr_src.mp3");
	ffmpeg_convert(wav, mp3, mp3args);
	p = tmp_path("trunc.mp3");
	copy_prefix(mp3, p, 0.5);
	expect_format_error(p, "truncated MP3 (with a Xing header)");
	static const char *const m4aargs[] = {"-c:a", "aac", NULL};
	const char *m4a = tmp_path("tr_src.m4a");
	ffmpeg_convert(wav, m4a, m4aargs); /* moov at the end: cutting removes it */
	p = tmp_path("trunc.m4a");
	copy_prefix(m4a, p, 0.5);
	expect_format_error(p, "truncated M4A");
	static const char *const m4afs[] = {"-c:a", "aac", "-movflags", "+faststart", NULL};
	const char *m4a2 = tmp_path("tr_src_fs.m4a");
	ffmpeg_convert(wav, m4a2,
	               m4afs); /* moov first: the cut leaves the index pointing past EOF */
	p = tmp_path("trunc_fs.m4a");
	copy_prefix(m4a2, p, 0.5);
	expect_format_error(p, "truncated M4A (faststart)");
	/* a file cut inside its header */
	p = tmp_path("trunc_hdr.flac");
	copy_prefix(flac, p, 0.001);
	expect_format_error(p, "FLAC cut inside its header");

	/* corrupt bytes in the middle of an MP3: decodes or fails cleanly, never crashes */
	bytes = read_bytes(mp3, &n);
	for (size_t i = n / 3; i < n / 3 + 2000 && i < n; i++)
		bytes[i] = rnd[i % sizeof rnd];
	p = tmp_path("corrupt.mp3");
	write_bytes(p, bytes, n);
	free(bytes);
	struct audio_buf d = {0};
	int rc = audio_decode(p, 0, 0, 0, &d, err, sizeof err);
	assert_true(rc == 0 || rc == SFA_EFORMAT);
	if (rc == 0)
		assert_true(d.n_frames > 0);
	else
		assert_true(strlen(err) > 5);
	audio_buf_free(&d);

	/* an allowed container with a codec off the list (IMA ADPCM in WAV) */
	static const char *const adpcm[] = {"-c:a", "adpcm_ima_wav", NULL};
	p = tmp_path("adpcm.wav");
	ffmpeg_convert(wav, p, adpcm);
	expect_format_error(p, "ADPCM WAV");
	rc = audio_probe(p, &(struct audio_info){0}, err, sizeof err);
	assert_non_null(strstr(err, "codec"));

	/* a container off the list (AU) and a video-only Matroska file */
	static const char *const au[] = {"-f", "au", NULL};
	p = tmp_path("x.au");
	ffmpeg_convert(wav, p, au);
	expect_format_error(p, "Sun AU file");
	static const char *const vid[] = {"-f",   "lavfi", "-i", "color=c=red:s=16x16:d=0.2",
	                                  "-c:v", "ffv1",  NULL};
	p = tmp_path("video.mkv");
	ffmpeg_convert(NULL, p, vid);
	expect_format_error(p, "video-only Matroska");
	rc = audio_probe(p, &(struct audio_info){0}, err, sizeof err);
	assert_non_null(strstr(err, "no audio"));

	/* not a file */
	struct audio_buf dd;
	assert_int_equal(audio_decode(g_dir, 0, 0, 0, &dd, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_decode(tmp_path("missing.wav"), 0, 0, 0, &dd, err, sizeof err),
	                 SFA_ENOTFOUND);
	assert_int_equal(audio_decode(wav, 5, 0, 0, &dd, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_decode(wav, 0, -1, 0, &dd, err, sizeof err), SFA_EINVAL);
	audio_buf_free(&b);
}

static void duration_cap(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_sine(3.0, 22050, 2, 500, 0.5);
	const char *p = tmp_path("cap.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf d = {0};
	assert_int_equal(audio_decode(p, 0, 0, 2.0, &d, err, sizeof err), SFA_ETOOBIG);
	assert_non_null(strstr(err, "limit"));
	assert_null(d.data);
	assert_int_equal(audio_decode(p, 44100, 1, 2.999, &d, err, sizeof err), SFA_ETOOBIG);
	assert_int_equal(audio_decode(p, 0, 0, -1.0, &d, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_decode(p, 0, 0, NAN, &d, err, sizeof err), SFA_EINVAL);
	assert_int_equal(audio_decode(p, 44100, 1, 3.0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, 132300);
	audio_buf_free(&d);
	assert_int_equal(audio_decode(p, 0, 0, 0, &d, err, sizeof err), 0); /* default: 1 h */
	audio_buf_free(&d);
	audio_buf_free(&b);
}

static void decode_fd_works(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf b = make_sine(0.5, 44100, 1, 440, 0.5);
	const char *p = tmp_path("fd.wav");
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
	int fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 100, SEEK_SET), 100); /* decoding starts at 0 anyway */
	struct audio_buf d;
	assert_int_equal(audio_decode_fd(fd, 0, 0, 0, &d, err, sizeof err), 0);
	assert_int_equal(d.n_frames, b.n_frames);
	struct audio_info info;
	assert_int_equal(audio_probe_fd(fd, &info, err, sizeof err), 0);
	assert_int_equal(info.sample_rate_hz, 44100);
	close(fd);
	audio_buf_free(&d);
	audio_buf_free(&b);
}

/* The tap: one decode, two consumers. It sees every channel at the file's rate exactly as
 * a native decode gives them, while the buffer is exactly what audio_decode gives. */
struct tap_log {
	struct audio_stream_info info;
	float *planes[4];
	size_t n, calls;
	int stop_after; /* a non-zero return from this call on (0: never) */
};

static int tap_collect(void *arg, const float *const *planes, size_t n)
{
	struct tap_log *t = arg;
	assert_int_equal(t->info.n_frames, t->n); /* filled before the call */
	for (int c = 0; c < t->info.n_channels; c++) {
		t->planes[c] = realloc(t->planes[c], (t->n + n) * sizeof(float));
		assert_non_null(t->planes[c]);
		memcpy(t->planes[c] + t->n, planes[c], n * sizeof(float));
	}
	t->n += n;
	t->calls++;
	return t->stop_after && (int)t->calls >= t->stop_after ? 1 : 0;
}

static void decode_tap_feeds_two_consumers(void **state)
{
	(void)state;
	char err[256] = "";
	struct audio_buf q = make_buf(44100 * 3, 3, 44100);
	for (int c = 0; c < 3; c++)
		for (size_t i = 0; i < q.n_frames; i++)
			ch(&q, c)[i] = (float)(0.3 * sin(0.01 * (c + 1) * (double)i) +
			                       0.1 * sin(0.37 * (double)i * (c + 1)));
	const char *p = tmp_path("tap.flac");
	assert_int_equal(audio_write(p, &q, AUDIO_FLAC, AUDIO_PCM16, err, sizeof err), 0);
	struct audio_buf want, native, got;
	assert_int_equal(audio_decode(p, 22050, 1, 0, &want, err, sizeof err), 0);
	assert_int_equal(audio_decode(p, 0, 0, 0, &native, err, sizeof err), 0);
	struct tap_log t = {0};
	assert_int_equal(
		audio_decode_tap(p, 22050, 1, 0, tap_collect, &t, &t.info, &got, err, sizeof err),
		0);
	assert_int_equal(got.n_frames, want.n_frames);
	assert_int_equal(got.sample_rate_hz, 22050);
	assert_memory_equal(got.data, want.data, want.n_frames * sizeof(float));
	assert_int_equal(t.info.in_rate_hz, 44100);
	assert_int_equal(t.info.sample_rate_hz, 44100);
	assert_int_equal(t.info.n_channels, 3);
	assert_int_equal(t.n, native.n_frames);
	assert_true(t.calls > 1);
	for (int c = 0; c < 3; c++)
		assert_memory_equal(t.planes[c], ch(&native, c), t.n * sizeof(float));

	/* A tap that gives up stops the decode with a sentence. */
	struct tap_log stop = {.stop_after = 2};
	struct audio_buf none = {0};
	assert_int_equal(audio_decode_tap(p, 22050, 1, 0, tap_collect, &stop, &stop.info, &none,
	                                  err, sizeof err),
	                 SFA_ECANCELED);
	assert_non_null(strstr(err, "could not be measured"));
	assert_null(none.data);
	for (int c = 0; c < 4; c++) {
		free(t.planes[c]);
		free(stop.planes[c]);
	}
	audio_buf_free(&got);
	audio_buf_free(&native);
	audio_buf_free(&want);
	audio_buf_free(&q);
}

/* ---- main ---------------------------------------------------------------------- */

static void remove_tree(const char *dir)
{
	char *argv[] = {"rm", "-rf", (char *)dir, NULL};
	run_cmd(argv);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		g_fixtures = argv[1];
	const char *tmp = getenv("TMPDIR");
	snprintf(g_dir, sizeof g_dir, "%s/sfa-audio-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_dir)) {
		fprintf(stderr, "mkdtemp %s: %s\n", g_dir, strerror(errno));
		return 1;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wav16_round_trip_is_exact),
		cmocka_unit_test(wav24_round_trip_is_exact),
		cmocka_unit_test(wav_float_round_trip_is_exact_and_unclipped),
		cmocka_unit_test(wav_multichannel_uses_extensible),
		cmocka_unit_test(flac_round_trips_are_exact),
		cmocka_unit_test(streaming_writer),
		cmocka_unit_test(sine_1k_44k_to_22k),
		cmocka_unit_test(sine_1k_44k_to_48k),
		cmocka_unit_test(output_length_is_ceil_rule),
		cmocka_unit_test(resample_matches_libsoxr_hq_exactly),
		cmocka_unit_test(librosa_reference_rms_matches),
		cmocka_unit_test(mono_stereo_conversions),
		cmocka_unit_test(common_formats_decode),
		cmocka_unit_test(tags_are_read),
		cmocka_unit_test(picture_and_video_streams_are_ignored),
		cmocka_unit_test(bad_files_give_clean_errors),
		cmocka_unit_test(header_claiming_gigabytes_costs_no_memory),
		cmocka_unit_test(duration_cap),
		cmocka_unit_test(decode_fd_works),
		cmocka_unit_test(decode_tap_feeds_two_consumers),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	remove_tree(g_dir);
	return rc;
}
