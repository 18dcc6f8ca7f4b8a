/* fuzz_audio_decode.c - libFuzzer driver for src/audio/decode.c.
 *
 * Each input is written to a memfd and handed to audio_decode_fd (or audio_probe_fd) with a
 * 10-second duration cap, so a hostile header cannot make one run slow or large. The input
 * length picks the request, so every path - native, mono at 22050 Hz (the analysis
 * engine's), stereo at 44100 Hz (Demucs') and the probe - gets exercised without a
 * selector byte in front of the media data, which keeps the seeds real files.
 *
 * Build (the lead wires it into the fuzz build):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_audio_decode.c \
 *     src/audio/decode.c src/util/str.c src/util/log.c src/util/timeutil.c \
 *     -lavformat -lavcodec -lavutil -lswresample -lm -lpthread
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audio/audio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	int fd = memfd_create("fuzz_audio", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	size_t done = 0;
	while (done < size) {
		ssize_t w = write(fd, data + done, size - done);
		if (w <= 0) {
			close(fd);
			return 0;
		}
		done += (size_t)w;
	}
	char err[256];
	struct audio_buf b = {0};
	struct audio_info info;
	switch (size % 4) {
	case 0:
		if (audio_decode_fd(fd, 0, 0, 10.0, &b, err, sizeof err) == 0)
			audio_buf_free(&b);
		break;
	case 1:
		if (audio_decode_fd(fd, 22050, 1, 10.0, &b, err, sizeof err) == 0)
			audio_buf_free(&b);
		break;
	case 2:
		if (audio_decode_fd(fd, 44100, 2, 10.0, &b, err, sizeof err) == 0)
			audio_buf_free(&b);
		break;
	default:
		audio_probe_fd(fd, &info, err, sizeof err);
		break;
	}
	close(fd);
	return 0;
}
