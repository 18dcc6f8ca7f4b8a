/* bench_daw - wall time and peak memory of a DAW export (issue 9): N stems of M minutes
 * mixed by `sfa daw-render`'s code path, the way POST /api/daw/export runs it.
 *
 * Usage: bench_daw [--minutes M] [--stems N] [--resample] [--keep] [--dir DIR]
 *
 * Generates N stereo 16-bit WAV stems of M minutes (default 6 x 10 min) at 44.1 kHz -
 * with --resample every other one at 48 kHz, so half the stems go through soxr - in a
 * scratch directory (timed separately), writes a manifest with edits on every stem (trim,
 * offset, region gain, fades, silence, pans) and normalisation on, then forks a
 * renderer process that runs mixer_cli_render exactly as the server's child does: it
 * decodes every stem to a temporary file, scans the mix, prints its first line and
 * streams the WAV into a pipe that this process drains, as the server's relay does.
 * Prints the time to the first line (when the server can send its headers), the total
 * wall time, the speed against real time, the output size and the renderer's peak RSS
 * (from wait4), plus this process's own peak RSS.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audio/mixer_cli.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void put_le(unsigned char *p, uint32_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static int write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A stem: a few partials at a stem-specific pitch, with a slow tremolo and some noise. */
static int make_stem(const char *path, int idx, int rate, double seconds)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	uint32_t n = (uint32_t)llround(seconds * rate);
	uint32_t data = n * 4;
	unsigned char h[44];
	memcpy(h, "RIFF", 4);
	put_le(h + 4, 36 + data, 4);
	memcpy(h + 8, "WAVEfmt ", 8);
	put_le(h + 16, 16, 4);
	put_le(h + 20, 1, 2);
	put_le(h + 22, 2, 2);
	put_le(h + 24, (uint32_t)rate, 4);
	put_le(h + 28, (uint32_t)rate * 4, 4);
	put_le(h + 32, 4, 2);
	put_le(h + 34, 16, 2);
	memcpy(h + 36, "data", 4);
	put_le(h + 40, data, 4);
	int rc = write_all(fd, h, sizeof h);
	enum { B = 8192 };
	static int16_t buf[2 * B];
	uint64_t noise = 0x2545F4914F6CDD1Du + (uint64_t)idx;
	double f0 = 55.0 * pow(2.0, idx * 5 / 12.0);
	for (uint32_t i0 = 0; rc == 0 && i0 < n; i0 += B) {
		uint32_t k = n - i0 < B ? n - i0 : B;
		for (uint32_t j = 0; j < k; j++) {
			double t = (double)(i0 + j) / rate;
			double v = 0.25 * sin(2 * M_PI * f0 * t) +
			           0.1 * sin(2 * M_PI * 2.01 * f0 * t) +
			           0.05 * sin(2 * M_PI * 3.03 * f0 * t);
			v *= 0.75 + 0.25 * sin(2 * M_PI * (0.2 + 0.05 * idx) * t);
			noise ^= noise << 13;
			noise ^= noise >> 7;
			noise ^= noise << 17;
			double r = (double)(noise >> 11) / 9007199254740992.0 * 2.0 - 1.0;
			buf[2 * j] = (int16_t)lrint(32767 * (v + 0.02 * r));
			buf[2 * j + 1] = (int16_t)lrint(32767 * (0.9 * v - 0.02 * r));
		}
		rc = write_all(fd, buf, (size_t)k * 4);
	}
	close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	double minutes = 10;
	int n_stems = 6;
	int resample = 0, keep = 0;
	const char *base = getenv("TMPDIR");
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--minutes") == 0 && i + 1 < argc)
			minutes = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--stems") == 0 && i + 1 < argc)
			n_stems = (int)strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
			base = argv[++i];
		else if (strcmp(argv[i], "--resample") == 0)
			resample = 1;
		else if (strcmp(argv[i], "--keep") == 0)
			keep = 1;
		else {
			fprintf(stderr,
			        "usage: bench_daw [--minutes M] [--stems N] [--resample] [--keep] "
			        "[--dir DIR]\n");
			return 2;
		}
	}
	if (!(minutes > 0 && minutes <= 60) || n_stems < 1 || n_stems > 16) {
		fprintf(stderr, "bench_daw: 0 < minutes <= 60 and 1 <= stems <= 16\n");
		return 2;
	}
	char dir[512];
	snprintf(dir, sizeof dir, "%s/sfa-bench-daw-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bench_daw: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	double seconds = minutes * 60.0;
	char paths[16][600];
	double t0 = now_s();
	for (int i = 0; i < n_stems; i++) {
		snprintf(paths[i], sizeof paths[i], "%s/stem%d.wav", dir, i);
		int rate = resample && i % 2 ? 48000 : 44100;
		if (make_stem(paths[i], i, rate, seconds) != 0) {
			fprintf(stderr, "bench_daw: cannot write %s\n", paths[i]);
			return 1;
		}
	}
	double t_gen = now_s() - t0;

	/* The manifest: every stem edited; the mix lasts the full length. */
	char manifest[8192];
	size_t n = (size_t)snprintf(manifest, sizeof manifest,
	                            "{\"normalize\": true, \"stems\": [");
	double ms = seconds * 1000.0;
	for (int i = 0; i < n_stems; i++) {
		n += (size_t)snprintf(
			manifest + n, sizeof manifest - n,
			"%s{\"file\": %d, \"volume\": %.2f, \"pan\": %.2f, \"edits\": ["
			"{\"type\": \"trim\", \"start_ms\": %d, \"end_ms\": %.0f},"
			"{\"type\": \"offset\", \"position_ms\": %d},"
			"{\"type\": \"gain\", \"start_ms\": 30000, \"end_ms\": 90000, \"level\": 0.5},"
			"{\"type\": \"fade_in\", \"duration_ms\": 2000},"
			"{\"type\": \"fade_out\", \"duration_ms\": 5000},"
			"{\"type\": \"silence\", \"start_ms\": 120000, \"end_ms\": 121000}]}",
			i ? "," : "", i, 0.5 + 0.1 * i, -0.6 + 0.25 * i, 100 * i,
			ms - 100.0 * (n_stems - i), 100 * i);
	}
	snprintf(manifest + n, sizeof manifest - n, "]}");
	char mpath[600];
	snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
	int mfd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (mfd < 0 || write_all(mfd, manifest, strlen(manifest)) != 0) {
		fprintf(stderr, "bench_daw: cannot write the manifest\n");
		return 1;
	}
	close(mfd);

	char *args[8 + 2 * 16];
	int na = 0;
	args[na++] = "--manifest";
	args[na++] = mpath;
	args[na++] = "--work";
	args[na++] = dir;
	for (int i = 0; i < n_stems; i++) {
		args[na++] = "--file";
		args[na++] = paths[i];
	}
	int p[2];
	if (pipe(p) != 0)
		return 1;
	fflush(stdout);
	t0 = now_s();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		_exit(mixer_cli_render(na, args));
	}
	close(p[1]);
	static char buf[1 << 16];
	char line[1024] = "";
	size_t n_line = 0;
	uint64_t total = 0;
	double t_first = 0;
	for (;;) {
		ssize_t r = read(p[0], buf, sizeof buf);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (!t_first) {
			char *nl = memchr(buf, '\n', (size_t)r);
			size_t k = nl ? (size_t)(nl - buf) : (size_t)r;
			if (n_line + k < sizeof line) {
				memcpy(line + n_line, buf, k);
				n_line += k;
				line[n_line] = '\0';
			}
			if (nl) {
				t_first = now_s() - t0;
				total += (uint64_t)(r - (ssize_t)k - 1);
			}
			continue;
		}
		total += (uint64_t)r;
	}
	close(p[0]);
	int status;
	struct rusage ru;
	wait4(pid, &status, 0, &ru);
	double t_total = now_s() - t0;
	if (!keep) {
		for (int i = 0; i < n_stems; i++)
			unlink(paths[i]);
		unlink(mpath);
		rmdir(dir);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "bench_daw: the renderer failed (status %d): %s\n", status, line);
		return 1;
	}
	struct rusage self;
	getrusage(RUSAGE_SELF, &self);
	printf("input: %d stereo 16-bit WAV stems of %.1f min (%s), generated in %.2f s\n", n_stems,
	       minutes, resample ? "half at 48 kHz, resampled to 44.1 kHz" : "44.1 kHz", t_gen);
	printf("renderer's first line: %s\n", line);
	printf("time to first byte (decode %d stems + scan): %.2f s\n", n_stems, t_first);
	printf("total export wall time: %.2f s (%.0fx real time; output %.1f MiB)\n", t_total,
	       seconds / t_total, (double)total / (1 << 20));
	printf("renderer CPU: %.2f s user, %.2f s system\n",
	       (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	printf("peak RSS: renderer %.1f MiB, benchmark process %.1f MiB\n", ru.ru_maxrss / 1024.0,
	       self.ru_maxrss / 1024.0);
	return 0;
}
