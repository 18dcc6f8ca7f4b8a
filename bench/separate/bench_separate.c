/* bench_separate - times the Demucs engine on one input, by hand (never from the tests).
 *
 *   bench_separate MODEL [--input RAW.f32 | --seconds N] [--ref OUT.f32] [--threads N]
 *                  [--shifts N] [--overlap F] [--segment S] [--nosplit] [--stream]
 *                  [--out OUT.f32] [--precision fp32|bf16] [--vs-fp32]
 *
 * MODEL is a .th/.yaml path or a model name. RAW.f32 is planar stereo float32 at 44.1 kHz
 * (the reference-data format); without it, N seconds (default 30) of a synthetic mix are
 * generated. Prints wall time, seconds per audio second, CPU time and cores busy (CPU time /
 * wall time of the separation), peak RSS, the engine's achieved GFLOP/s (sgemm work / wall
 * time) and, with --ref, the comparison with a reference output (max |diff| and relative
 * L2, the tolerances being 1e-4 and 1e-5); --out writes the
 * stems in that same raw format (to compare two builds bit for bit with cmp). Shifts default
 * to 0 so that a run is comparable with the references. --stream hands the stems to a
 * sink that drops them (what `sfa separate` does with WAV output, writing them instead),
 * so the peak RSS is the engine's own, not that of a whole-track output buffer.
 * --precision bf16 runs the products in bfloat16 (nn.h); --vs-fp32 then separates the same
 * input once more in fp32 (timed too) and prints, per stem, the SNR of the first output
 * against the fp32 one: 10 log10(sum fp32^2 / sum (out - fp32)^2) over both channels.
 *
 * The bf16 figures (README): real-ish input, full-size checkpoint, 60 s at 2 threads:
 *   bench_separate /work/shared/ref/demucs/full_htdemucs.th --input MIX.f32 --threads 2 \
 *                  --precision bf16 --vs-fp32
 *
 * Beside PyTorch Demucs on the same input and settings (medians of 3, ratios; says what is
 * missing when torch or demucs cannot be imported): bench/separate/vs_pytorch.py MODEL.
 *
 * mdx_extra offline (the release files cannot be fetched everywhere): random weights with
 * the official architecture, ~670 MB in a temporary folder, never committed:
 *   bench/make_checkpoint.py /tmp/mdx --bag
 *   bench_separate /tmp/mdx/mdx_extra_random.yaml --seconds 60 --threads 2
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "rawf32.h"
#include "nn/nn.h"

static int drop_sink(void *user, const float *data, size_t stride, size_t frame0, size_t n)
{
	(void)user;
	(void)data;
	(void)stride;
	(void)frame0;
	(void)n;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* User and system time of the whole process so far. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static void on_progress(void *user, int done, int total)
{
	(void)user;
	fprintf(stderr, "\r%d/%d forward passes", done, total);
	if (done == total)
		fputc('\n', stderr);
}

int main(int argc, char **argv)
{
	nn_blas_pick_core(argv);
	if (argc < 2) {
		fprintf(stderr, "usage: bench_separate MODEL [--input RAW.f32 | --seconds N] "
		                "[--ref OUT.f32] [--threads N] [--shifts N] [--overlap F] "
		                "[--segment S] [--nosplit] [--stream] [--out OUT.f32] "
		                "[--precision fp32|bf16] [--vs-fp32]\n");
		return 2;
	}
	const char *input = NULL, *ref = NULL, *out_path = NULL;
	double seconds = 30;
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 0;
	int stream = 0, vs_fp32 = 0;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--nosplit")) {
			o.split = false;
			continue;
		}
		if (!strcmp(a, "--stream")) {
			stream = 1;
			continue;
		}
		if (!strcmp(a, "--vs-fp32")) {
			vs_fp32 = 1;
			continue;
		}
		if (!v) {
			fprintf(stderr, "%s needs a value\n", a);
			return 2;
		}
		i++;
		if (!strcmp(a, "--input"))
			input = v;
		else if (!strcmp(a, "--ref"))
			ref = v;
		else if (!strcmp(a, "--out"))
			out_path = v;
		else if (!strcmp(a, "--seconds"))
			seconds = strtod(v, NULL);
		else if (!strcmp(a, "--threads"))
			o.n_threads = (int)strtol(v, NULL, 10);
		else if (!strcmp(a, "--shifts"))
			o.shifts = (int)strtol(v, NULL, 10);
		else if (!strcmp(a, "--overlap"))
			o.overlap = strtod(v, NULL);
		else if (!strcmp(a, "--segment"))
			o.segment_s = strtod(v, NULL);
		else if (!strcmp(a, "--precision")) {
			if (nn_precision_parse(v, &o.precision)) {
				fprintf(stderr, "--precision is fp32 or bf16\n");
				return 2;
			}
		} else {
			fprintf(stderr, "unknown option %s\n", a);
			return 2;
		}
	}
	char err[1024];
	double t0 = now_s();
	struct nn_model *m;
	if (nn_model_open(argv[1], NULL, &m, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double t_load = now_s() - t0;
	const struct nn_model_info *info = nn_model_info(m);
	size_t n = 0, frames;
	float *mix;
	if (input) {
		mix = raw_f32_read(input, &n);
		if (!mix) {
			fprintf(stderr, "cannot read %s\n", input);
			return 1;
		}
		frames = n / 2;
	} else {
		frames = (size_t)(seconds * info->samplerate);
		mix = malloc(2 * frames * sizeof *mix);
		uint64_t s = 1;
		for (size_t i = 0; i < frames; i++) {
			double t = (double)i / info->samplerate;
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			double noise = ((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.05;
			mix[i] = (float)(0.1 * sin(2 * M_PI * 220 * t) +
			                 0.05 * sin(2 * M_PI * 1375 * t) + noise);
			mix[frames + i] = (float)(0.1 * sin(2 * M_PI * 277.18 * t + 1) +
			                          0.04 * sin(2 * M_PI * 6000 * t) + noise * 0.7);
		}
	}
	o.progress = on_progress;
	if (stream) {
		if (ref || vs_fp32) {
			fprintf(stderr,
			        "--ref and --vs-fp32 need the whole output: drop --stream\n");
			return 2;
		}
		o.sink = drop_sink;
	}
	float *out = NULL;
	unsigned long long f0 = nn_flop_count();
	double c1 = cpu_s(), t1 = now_s();
	if (nn_separate(m, mix, frames, &o, stream ? NULL : &out, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double wall = now_s() - t1, cpu = cpu_s() - c1;
	double gflop = (double)(nn_flop_count() - f0) / 1e9;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double audio_s = (double)frames / info->samplerate;
	printf("model %s: %d member(s), %zu parameters, %d sources, load %.2f s\n", argv[1],
	       info->n_members, info->n_params, info->n_sources, t_load);
	printf("audio %.2f s, threads %d, shifts %d, overlap %.2f, precision %s%s\n", audio_s,
	       o.n_threads, o.shifts, o.overlap, nn_precision_name(o.precision),
	       stream ? ", streamed output" : "");
	printf("wall %.2f s, %.3f s per audio second\n", wall, wall / audio_s);
	printf("cpu %.2f s, %.2f cores busy\n", cpu, cpu / wall);
	printf("peak RSS %.0f MB\n", ru.ru_maxrss / 1024.0);
	printf("sgemm work %.1f GFLOP (%.1f per audio second), achieved %.1f GFLOP/s\n", gflop,
	       gflop / audio_s, gflop / wall);
	int rc = 0;
	if (vs_fp32) {
		struct nn_separate_opts o32 = o;
		o32.precision = NN_PRECISION_FP32;
		float *out32 = NULL;
		double t2 = now_s();
		if (nn_separate(m, mix, frames, &o32, &out32, err, sizeof err)) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		double wall32 = now_s() - t2;
		printf("fp32 run: wall %.2f s, %.3f s per audio second (%s is %.2fx faster)\n",
		       wall32, wall32 / audio_s, nn_precision_name(o.precision), wall32 / wall);
		for (int si = 0; si < info->n_sources; si++) {
			double sig = 0, noise = 0;
			size_t base = (size_t)si * 2 * frames;
			for (size_t i = 0; i < 2 * frames; i++) {
				double d = (double)out[base + i] - out32[base + i];
				sig += (double)out32[base + i] * out32[base + i];
				noise += d * d;
			}
			printf("SNR %s vs fp32, %-8s %.1f dB\n", nn_precision_name(o.precision),
			       info->sources[si], noise > 0 ? 10 * log10(sig / noise) : INFINITY);
		}
		free(out32);
	}
	if (out_path && out) {
		FILE *f = fopen(out_path, "wb");
		size_t k = (size_t)info->n_sources * 2 * frames;
		int bad = !f || fwrite(out, sizeof *out, k, f) != k;
		if (f && fclose(f) != 0)
			bad = 1;
		if (bad) {
			fprintf(stderr, "cannot write %s\n", out_path);
			rc = 1;
		}
	}
	if (ref) {
		size_t nr;
		float *r = raw_f32_read(ref, &nr);
		size_t total = (size_t)info->n_sources * 2 * frames;
		if (!r || nr != total) {
			fprintf(stderr, "reference %s missing or of the wrong size\n", ref);
			return 1;
		}
		double md = 0, num = 0, den = 0;
		for (size_t i = 0; i < total; i++) {
			double d = (double)out[i] - r[i];
			md = fabs(d) > md ? fabs(d) : md;
			num += d * d;
			den += (double)r[i] * r[i];
		}
		double rel = sqrt(num / den);
		int ok = md <= 1e-4 && rel <= 1e-5;
		printf("reference: max|diff| %.3g, rel L2 %.3g -> %s\n", md, rel,
		       ok ? "PASS" : "FAIL");
		rc = !ok;
		free(r);
	}
	free(out);
	free(mix);
	nn_model_free(m);
	return rc;
}
