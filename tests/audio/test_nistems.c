/* NI Stems: the 'stem' box writer on hand-made moov boxes, and a whole file from five
 * generated WAVs read back (the box, the tracks' count and lengths through FFmpeg), with the
 * master's cover picture carried over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libavformat/avformat.h>

#include "audio/audio.h"
#include "audio/nistems.h"
#include "util/err.h"

static size_t box(uint8_t *out, const char *kind, const void *body, size_t n)
{
	uint32_t size = (uint32_t)(8 + n);
	out[0] = (uint8_t)(size >> 24), out[1] = (uint8_t)(size >> 16);
	out[2] = (uint8_t)(size >> 8), out[3] = (uint8_t)size;
	memcpy(out + 4, kind, 4);
	if (n)
		memcpy(out + 8, body, n);
	return 8 + n;
}

static void box_writer(void **state)
{
	(void)state;
	uint8_t inner[256], moov[512], *out = NULL;
	size_t n_out;
	uint8_t zeros[40] = {0};
	size_t k = box(inner, "mvhd", zeros, sizeof zeros);
	k += box(inner + k, "trak", zeros, 16);
	size_t n = box(moov, "moov", inner, k);
	assert_int_equal(nistems_insert_box(moov, n, "{\"a\":1}", &out, &n_out), 0);
	assert_int_equal(n_out, n + 8 + 8 + 7);        /* + udta + stem */
	assert_memory_equal(out + 8, moov + 8, n - 8); /* children kept, udta last */
	assert_memory_equal(out + n + 4, "udta", 4);
	assert_memory_equal(out + n + 12, "stem{\"a\":1}", 11);
	/* again: the stem box is replaced, not added */
	uint8_t *twice = NULL;
	size_t n_twice;
	assert_int_equal(nistems_insert_box(out, n_out, "{\"b\":22}", &twice, &n_twice), 0);
	assert_int_equal(n_twice, n_out + 1);
	free(twice);
	free(out);
	/* malformed: a child past the end, a 64-bit size, not a moov, two udta */
	moov[8 + 3] = 200;
	assert_int_equal(nistems_insert_box(moov, n, "{}", &out, &n_out), SFA_EFORMAT);
	moov[8 + 3] = 1;
	assert_int_equal(nistems_insert_box(moov, n, "{}", &out, &n_out), SFA_EFORMAT);
	uint8_t two[64];
	size_t t = box(two, "udta", NULL, 0);
	t += box(two + t, "udta", NULL, 0);
	n = box(moov, "moov", two, t);
	assert_int_equal(nistems_insert_box(moov, n, "{}", &out, &n_out), SFA_EFORMAT);
	memcpy(moov + 4, "moof", 4);
	assert_int_equal(nistems_insert_box(moov, n, "{}", &out, &n_out), SFA_EFORMAT);
	char *json = nistems_metadata_json();
	assert_non_null(strstr(json, "\"stems\":[{\"name\":\"Drums\""));
	assert_non_null(strstr(json, "\"limiter\""));
	free(json);
}

static const char *tone(const char *name, double seconds, double hz)
{
	static char paths[5][64];
	static int next;
	char *p = paths[next++ % 5];
	snprintf(p, 64, "/tmp/sfa_ni_%d_%s.wav", (int)getpid(), name);
	size_t n = (size_t)(seconds * 44100);
	struct audio_buf b = {malloc(2 * n * sizeof(float)), n, 2, 44100};
	for (size_t i = 0; i < 2 * n; i++)
		b.data[i] = (float)(0.3 * sin(2 * M_PI * hz * (double)(i % n) / 44100));
	char err[256];
	assert_int_equal(audio_write_wav(p, &b, AUDIO_PCM16, err, sizeof err), 0);
	audio_buf_free(&b);
	return p;
}

static void whole_file(void **state)
{
	(void)state;
	const char *paths[5] = {tone("master", 2.0, 220), tone("drums", 2.5, 110),
	                        tone("bass", 1.5, 55), tone("other", 2.0, 440),
	                        tone("vocals", 2.0, 330)};
	char out[64], err[256];
	snprintf(out, sizeof out, "/tmp/sfa_ni_%d.stem.mp4", (int)getpid());
	double seconds = 0;
	int rc = audio_write_nistems(out, paths, "Title", "Artist", &seconds, err, sizeof err);
	if (rc)
		fail_msg("audio_write_nistems: %s", err);
	assert_true(fabs(seconds - 2.0) < 1e-9);
	AVFormatContext *fc = NULL;
	assert_int_equal(avformat_open_input(&fc, out, NULL, NULL), 0);
	assert_true(avformat_find_stream_info(fc, NULL) >= 0);
	assert_int_equal(fc->nb_streams, 5);
	for (unsigned i = 0; i < fc->nb_streams; i++) {
		AVStream *st = fc->streams[i];
		assert_int_equal(st->codecpar->codec_id, AV_CODEC_ID_AAC);
		double d = (double)st->duration * av_q2d(st->time_base);
		if (fabs(d - 2.0) > 0.03)
			fail_msg("track %u lasts %.3f s", i, d);
	}
	avformat_close_input(&fc);
	/* a missing stem fails cleanly and leaves no file */
	const char *bad[5] = {paths[0], paths[1], "/nonexistent.wav", paths[3], paths[4]};
	assert_int_equal(audio_write_nistems(out, bad, "", "", &seconds, err, sizeof err),
	                 SFA_ENOTFOUND);
	assert_non_null(strstr(err, "/nonexistent.wav"));
	struct stat st;
	assert_int_equal(stat(out, &st), -1);
	for (int i = 0; i < 5; i++)
		unlink(paths[i]);
}

/* The master's cover picture becomes the file's cover (an attached picture, MP4 'covr'). */
static void cover_is_kept(void **state)
{
	(void)state;
	char jpg[64], mp3[64], out[64], err[256];
	snprintf(jpg, sizeof jpg, "/tmp/sfa_ni_%d.jpg", (int)getpid());
	snprintf(mp3, sizeof mp3, "/tmp/sfa_ni_%d.mp3", (int)getpid());
	snprintf(out, sizeof out, "/tmp/sfa_ni_cover_%d.stem.mp4", (int)getpid());
	const char *wav = tone("cover", 1.0, 220);
	pid_t pid = fork();
	if (pid == 0) {
		execlp("ffmpeg", "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
		       "color=c=red:s=32x32:d=1", "-frames:v", "1", jpg, (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("ffmpeg (needed to make the test's picture) failed");
	if ((pid = fork()) == 0) {
		execlp("ffmpeg", "ffmpeg", "-v", "error", "-y", "-i", wav, "-i", jpg, "-map", "0",
		       "-map", "1", "-c:a", "libmp3lame", "-c:v", "copy", "-disposition:v",
		       "attached_pic", mp3, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("ffmpeg (needed to make the test's MP3) failed");
	struct stat js;
	assert_int_equal(stat(jpg, &js), 0);
	const char *paths[5] = {mp3, wav, wav, wav, wav};
	double seconds;
	int rc = audio_write_nistems(out, paths, "T", "A", &seconds, err, sizeof err);
	if (rc)
		fail_msg("audio_write_nistems: %s", err);
	AVFormatContext *fc = NULL;
	assert_int_equal(avformat_open_input(&fc, out, NULL, NULL), 0);
	assert_int_equal(fc->nb_streams, 6);
	AVStream *pic = fc->streams[5];
	assert_true(pic->disposition & AV_DISPOSITION_ATTACHED_PIC);
	assert_int_equal(pic->attached_pic.size, (int)js.st_size);
	for (int i = 0; i < 5; i++)
		assert_int_equal(fc->streams[i]->codecpar->codec_type, AVMEDIA_TYPE_AUDIO);
	avformat_close_input(&fc);
	unlink(jpg);
	unlink(mp3);
	unlink(out);
	unlink(wav);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(box_writer),
		cmocka_unit_test(whole_file),
		cmocka_unit_test(cover_is_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
