/* bench_analysis - wall time and peak memory of one full analysis, single-threaded.
 *
 * Usage: bench_analysis [FILE] [--runs N]
 *
 * With FILE, decodes it (mono, 22050 Hz; timed alone), analyses the samples (best and mean
 * of N runs, default 3), then times the whole process as `sfa analyze` runs it
 * (dsp_analyze_file: one decode feeding the analysis and, through the decoder's tap, the
 * loudness meter; every feature; best of N). Without, analyses a generated 4-minute song
 * (rock drums at 120 BPM over an A minor progression, plus a little noise); there is no file
 * to decode or to measure. Also prints seconds of analysis per minute of audio, the JSON
 * build time and the process's peak RSS. Last, with FILE, the process a user runs: `sfa
 * analyze FILE --features all` (the sfa of this build, ../../sfa from this program) in a
 * fresh process, its JSON to /dev/null, N times: start-up, cold memory and the JSON
 * included. Everything runs on one CPU (this program pins itself, and the children inherit
 * it). The target: the whole process (decode included) with every feature, for a
 * 4-minute song, under 1 s on one core (the reference project's librosa path takes tens of
 * seconds); judged on the fresh processes' median scaled to 4 minutes, so only with a FILE.
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audio/audio.h"
#include "dsp/dsp.h"
#include "dsp/result_json.h"
#include "synth.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long peak_rss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss; /* KiB on Linux */
}

/* Wall time of `sfa analyze file --features all` in a new process, output to /dev/null;
 * -1 when it cannot be started or fails. */
static double fresh_process_s(const char *sfa, const char *file)
{
	posix_spawn_file_actions_t fa;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1.0;
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	char *args[] = {(char *)sfa, "analyze", (char *)file, "--features", "all", NULL};
	extern char **environ;
	double t0 = now_s();
	pid_t pid;
	int rc = posix_spawn(&pid, sfa, &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	int st;
	if (rc != 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return -1.0;
	return now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int runs = 3;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			runs = (int)strtol(argv[++i], NULL, 10);
			if (runs < 1 || runs > 100)
				runs = 3;
		} else {
			path = argv[i];
		}
	}
	/* one core, for this process and the sfa processes it starts */
	cpu_set_t one;
	int cpu = sched_getcpu();
	CPU_ZERO(&one);
	CPU_SET(cpu >= 0 ? cpu : 0, &one);
	sched_setaffinity(0, sizeof one, &one);
	float *x = NULL;
	size_t n = 0;
	struct audio_buf buf = {0};
	char err[512];
	double t_decode = 0.0;
	if (path) {
		double t0 = now_s();
		if (audio_decode(path, 22050, 1, 0, &buf, err, sizeof err) != 0) {
			fprintf(stderr, "bench_analysis: %s\n", err);
			return 1;
		}
		t_decode = now_s() - t0;
		x = buf.data;
		n = buf.n_frames;
	} else {
		x = synth_alloc(240.0, &n);
		if (!x)
			return 1;
		static const int prog[4] = {1, 6, 4, 5};
		synth_drums(x, n, 120.0, SYNTH_BACKBEAT, 0.4, 1);
		synth_chords(x, n, 9, 1, prog, 4, 2.0, 1, 0.3);
		synth_noise(x, n, 0.01, 2);
	}
	long rss_input = peak_rss_kib();
	double minutes = (double)n / 22050.0 / 60.0;
	double best = 1e30, sum = 0.0, t_json = 0.0;
	struct dsp_result r;
	for (int k = 0; k < runs; k++) {
		double t0 = now_s();
		if (dsp_analyze(x, n, NULL, &r, err, sizeof err) != 0) {
			fprintf(stderr, "bench_analysis: %s\n", err);
			return 1;
		}
		double t = now_s() - t0;
		best = t < best ? t : best;
		sum += t;
		t0 = now_s();
		json_t *j = NULL;
		if (dsp_result_to_json(&r, &j, err, sizeof err) == 0) {
			char *s = json_dumps(j, JSON_COMPACT);
			free(s);
			json_decref(j);
		}
		t_json = now_s() - t0;
		if (k + 1 < runs)
			dsp_result_free(&r);
	}
	printf("input: %s, %.1f s of audio (%zu samples at 22050 Hz)\n",
	       path ? path : "generated 4-minute song", (double)n / 22050.0, n);
	if (path)
		printf("decode + resample: %.3f s\n", t_decode);
	printf("analysis (all features, 1 thread): best %.3f s, mean %.3f s over %d runs\n", best,
	       sum / runs, runs);
	printf("seconds per minute of audio: %.4f\n", best / minutes);
	double whole = 1e30;
	if (path) {
		/* The whole process, as `sfa analyze` runs it: one decode feeding the analysis
		 * and the loudness meter, every feature. */
		for (int k = 0; k < runs; k++) {
			struct dsp_result w;
			double t0 = now_s();
			if (dsp_analyze_file(path, NULL, &w, err, sizeof err) != 0) {
				fprintf(stderr, "bench_analysis: %s\n", err);
				return 1;
			}
			double t = now_s() - t0;
			whole = t < whole ? t : whole;
			if (k == 0)
				printf("loudness: %.1f LUFS, range %.1f LU, true peak %.2f dBTP\n",
				       w.loudness.integrated_lufs, w.loudness.range_lu,
				       w.loudness.true_peak_dbtp);
			dsp_result_free(&w);
		}
		printf("whole process (dsp_analyze_file: decode, analysis, loudness): best %.3f s "
		       "over %d runs; the loudness meter's share %.3f s\n",
		       whole, runs, whole - t_decode - best);
	}
	printf("JSON result build + encode: %.4f s\n", t_json);
	printf("peak RSS: %.1f MiB (input alone: %.1f MiB)\n", peak_rss_kib() / 1024.0,
	       rss_input / 1024.0);
	printf("result: tempo %.2f BPM (confidence %.3f; librosa %.2f), key %s (%s, confidence "
	       "%.3f; librosa %s, r %.3f), %zu beats, %zu sections, %zu chord segments\n",
	       r.tempo_bpm, r.tempo_confidence, r.tempo_librosa_bpm,
	       r.key_pc >= 0 ? r.key_name : "none", r.key_pc >= 0 ? r.camelot : "-",
	       r.key_confidence, r.key_kk_pc >= 0 ? r.key_kk_name : "none", r.key_kk_r, r.n_beats,
	       r.n_sections, r.n_chords);
	if (path) {
		printf("whole process scaled to a 4-minute song: %.3f s (without loudness %.3f s)\n",
		       whole / minutes * 4.0, (t_decode + best) / minutes * 4.0);
		char exe[PATH_MAX], sfa[PATH_MAX + 16];
		ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
		double t[100];
		int ok = len > 0;
		if (ok) {
			exe[len] = '\0';
			snprintf(sfa, sizeof sfa, "%s/../../sfa", dirname(exe));
		}
		for (int k = 0; ok && k < runs; k++)
			ok = (t[k] = fresh_process_s(sfa, path)) >= 0.0;
		if (!ok) {
			printf("target: `%s analyze %s --features all` could not run: build sfa (make "
			       "build) beside this program\n",
			       len > 0 ? sfa : "sfa", path);
		} else {
			qsort(t, (size_t)runs, sizeof t[0], cmp_double);
			double med = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
			double four = med / minutes * 4.0;
			printf("sfa analyze FILE --features all, a fresh process on one CPU: median %.3f "
			       "s, best %.3f s over %d runs (4-minute song: %.3f s)\n",
			       med, t[0], runs, four);
			printf("target: a 4-minute song under 1 s, every feature, decode included -> "
			       "%s\n",
			       four < 1.0 ? "met" : "NOT met");
		}
	} else {
		printf("target: needs a FILE (decode and loudness are part of it); the analysis "
		       "alone: %.3f s for 4 minutes\n",
		       best / minutes * 4.0);
	}
	dsp_result_free(&r);
	if (path)
		audio_buf_free(&buf);
	else
		free(x);
	return 0;
}
