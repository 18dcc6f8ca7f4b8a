/* cli.c - `sfa separate` and `sfa models`. See cli.h.
 *
 * Thin front ends: argument parsing, audio in/out through src/audio, the engine through
 * nn.h and catalog.h, a JSON summary through jansson. The progress bar is drawn from the
 * engine's worker threads (its callback is serialised) and only when stderr is a tty.
 */
#include "util/fs.h"
#include "nn/cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audio/audio.h"
#include "nn/bag.h"
#include "nn/catalog.h"
#include "nn/nn.h"
#include "nn/ops.h"
#include "util/err.h"
#include "util/json.h"
#include "util/str.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int usage_separate(void)
{
	fprintf(stderr,
	        "usage: sfa separate FILE [--model M] [--out DIR] [--format wav|wav24|f32|flac|mp3]\n"
	        "                         [--shifts N] [--overlap F] [--segment S] [--seed N]\n"
	        "                         [--threads N] [--precision fp32|bf16]\n"
	        "  M is a model name (htdemucs, htdemucs_ft, htdemucs_6s, mdx_extra or a bag in\n"
	        "  $SFA_MODELS_DIR), or a path to a .th checkpoint or a bag .yaml.\n"
	        "  --precision bf16 runs the matrix products in bfloat16 (faster, slightly less\n"
	        "  exact; needs a CPU with AVX512-BF16). The default is fp32.\n");
	return 2;
}

struct bar {
	int tty;
	double t0;
	const char *what;
};

static void draw_bar(void *user, int done, int total)
{
	struct bar *b = user;
	if (!b->tty || total <= 0)
		return;
	int width = 30, fill = (int)((long long)done * width / total);
	double el = now_s() - b->t0;
	double eta = done > 0 ? el * (total - done) / done : 0;
	char line[128];
	int k = 0;
	for (; k < fill; k++)
		line[k] = '=';
	for (; k < width; k++)
		line[k] = ' ';
	line[width] = 0;
	fprintf(stderr, "\r%s [%s] %3d%% %d/%d  %d:%02d left ", b->what, line,
	        (int)((long long)done * 100 / total), done, total, (int)eta / 60, (int)eta % 60);
	if (done == total)
		fputc('\n', stderr);
	fflush(stderr);
}

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	if (str_copy(tmp, sizeof tmp, dir) >= sizeof tmp)
		return -1;
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = 0;
			if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
				return -1;
			*p = '/';
		}
	}
	return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* "dir/song.mp3" -> "song" */
static void track_name(const char *path, char *out, size_t n)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	str_copy(out, n, base);
	char *dot = strrchr(out, '.');
	if (dot && dot != out)
		*dot = 0;
	if (!out[0])
		str_copy(out, n, "track");
}

struct stem_sink {
	struct audio_enc *files[NN_MAX_STEMS];
	int n_sources, n_ch;
};

static int stem_sink(void *user, const float *data, size_t stride, size_t frame0, size_t n)
{
	(void)frame0;
	struct stem_sink *ss = user;
	for (int s = 0; s < ss->n_sources; s++)
		if (audio_enc_write(ss->files[s], data + (size_t)s * ss->n_ch * stride, stride, n,
		                    NULL, 0) != 0)
			return -1;
	return 0;
}

/* Model label for folder names: the name, or a path's file stem. */
static void model_label(const char *spec, char *out, size_t n) { track_name(spec, out, n); }

int nn_cli_separate(int argc, char **argv)
{
	const char *input = NULL, *model = "htdemucs", *out_dir = NULL, *format = "wav";
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || !a[1]) {
			if (input)
				return usage_separate();
			input = a;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage_separate();
			return 0;
		}
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "sfa separate: %s needs a value\n", a);
			return 2;
		}
		i++;
		double d;
		if (!strcmp(a, "--model")) {
			model = v;
		} else if (!strcmp(a, "--out")) {
			out_dir = v;
		} else if (!strcmp(a, "--format")) {
			enum audio_container kind;
			enum audio_sample_format fmt;
			const char *ext;
			if (audio_output_format(v, &kind, &fmt, &ext) != 0) {
				fprintf(stderr,
				        "sfa separate: --format must be " AUDIO_OUTPUT_FORMATS
				        "\n");
				return 2;
			}
			format = v;
		} else if (!strcmp(a, "--shifts")) {
			if (str_to_double(v, 0, 100, &d) || d != floor(d))
				goto bad;
			o.shifts = (int)d;
		} else if (!strcmp(a, "--overlap")) {
			if (str_to_double(v, 0, 0.99, &d))
				goto bad;
			o.overlap = d;
		} else if (!strcmp(a, "--segment")) {
			if (str_to_double(v, 0.01, 3600, &d))
				goto bad;
			o.segment_s = d;
		} else if (!strcmp(a, "--seed")) {
			char *end;
			errno = 0;
			unsigned long long s = strtoull(v, &end, 10);
			if (end == v || *end || errno)
				goto bad;
			o.seed = s;
		} else if (!strcmp(a, "--precision")) {
			if (nn_precision_parse(v, &o.precision) != 0) {
				fprintf(stderr, "sfa separate: --precision must be fp32 or bf16\n");
				return 2;
			}
		} else if (!strcmp(a, "--threads")) {
			if (str_to_double(v, 1, 256, &d) || d != floor(d))
				goto bad;
			o.n_threads = (int)d;
		} else {
			fprintf(stderr, "sfa separate: unknown option %s\n", a);
			return usage_separate();
		}
		continue;
bad:
		fprintf(stderr, "sfa separate: bad value '%s' for %s\n", v, a);
		return 2;
	}
	if (!input)
		return usage_separate();

	char err[1024];
	if (o.precision == NN_PRECISION_BF16 && !nn_bf16_supported(err, sizeof err)) {
		fprintf(stderr, "sfa separate: %s\n", err);
		return 1;
	}
	double t0 = now_s();
	struct nn_model *m = NULL;
	if (nn_model_open(model, NULL, &m, err, sizeof err) != 0) {
		fprintf(stderr, "sfa separate: %s\n", err);
		return 1;
	}
	const struct nn_model_info *info = nn_model_info(m);
	struct audio_buf in = {0};
	if (audio_decode(input, info->samplerate, info->audio_channels, 0, &in, err, sizeof err)) {
		fprintf(stderr, "sfa separate: %s: %s\n", input, err);
		nn_model_free(m);
		return 1;
	}
	char dir[4096], label[256], track[256];
	model_label(model, label, sizeof label);
	track_name(input, track, sizeof track);
	if (out_dir)
		str_copy(dir, sizeof dir, out_dir);
	else
		snprintf(dir, sizeof dir, "separated/%s/%s", label, track);
	if (mkdir_p(dir) != 0) {
		fprintf(stderr, "sfa separate: cannot create %s: %s\n", dir, strerror(errno));
		audio_buf_free(&in);
		nn_model_free(m);
		return 1;
	}
	struct bar bar = {.tty = isatty(STDERR_FILENO), .t0 = now_s(), .what = "separating"};
	o.progress = draw_bar;
	o.progress_user = &bar;
	enum audio_container kind;
	enum audio_sample_format fmt;
	const char *ext;
	audio_output_format(format, &kind, &fmt, &ext); /* checked with the arguments */
	int C = info->audio_channels;
	json_t *files = json_object();
	char paths[NN_MAX_STEMS][4400];
	for (int s = 0; s < info->n_sources; s++)
		snprintf(paths[s], sizeof paths[s], "%s/%s.%s", dir, info->sources[s], ext);

	/* Stems are streamed to disk as segments finish. */
	struct stem_sink ss = {.n_sources = info->n_sources, .n_ch = C};
	int rc = 0, opened = 0;
	for (; opened < info->n_sources && rc == 0; opened++)
		rc = audio_enc_open(&ss.files[opened], paths[opened], kind, fmt, in.n_frames, C,
		                    info->samplerate, err, sizeof err);
	o.sink = stem_sink;
	o.sink_user = &ss;
	o.scratch_dir = dir; /* bags sum their members next to the stems */
	double t1 = now_s();
	if (rc == 0)
		rc = nn_separate(m, in.data, in.n_frames, &o, NULL, err, sizeof err);
	double t_sep = now_s() - t1;
	for (int s = 0; s < opened; s++)
		if (audio_enc_close(ss.files[s], rc != 0, rc ? NULL : err, sizeof err) != 0 &&
		    rc == 0)
			rc = SFA_EIO;
	if (rc)
		fprintf(stderr, "sfa separate: %s\n", err);
	for (int s = 0; s < info->n_sources && rc == 0; s++)
		json_object_set_new(files, info->sources[s], json_string(paths[s]));
	if (rc == 0) {
		double dur = (double)in.n_frames / info->samplerate;
		json_t *src = json_array();
		for (int s = 0; s < info->n_sources; s++)
			json_array_append_new(src, json_string(info->sources[s]));
		json_t *j = json_pack(
			"{s:s, s:s, s:o, s:i, s:I, s:f, s:s, s:s, s:O, s:i, s:f, s:f, "
			"s:I, s:s, s:f, s:f}",
			"input", input, "model", model, "sources", src, "samplerate",
			info->samplerate, "frames", (json_int_t)in.n_frames, "duration_s", dur,
			"format", format, "out_dir", dir, "files", files, "shifts", o.shifts,
			"overlap", o.overlap, "segment_s",
			o.segment_s > 0 ? o.segment_s : info->segment_s, "seed", (json_int_t)o.seed,
			"precision", nn_precision_name(o.precision), "separate_s", t_sep, "total_s",
			now_s() - t0);
		char *text = j ? json_encode(j) : NULL;
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(j);
	}
	json_decref(files);
	audio_buf_free(&in);
	nn_model_free(m);
	return rc ? 1 : 0;
}

/* ---------------------------------------------------------------------------------- */

static int usage_models(void)
{
	fprintf(stderr, "usage: sfa models list [--json]\n"
	                "       sfa models fetch NAME...\n"
	                "       sfa models verify [NAME...]\n"
	                "  models live in $SFA_MODELS_DIR (default data/models)\n");
	return 2;
}

static long long file_size(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* Member signatures of a model name: <dir>/<name>.yaml, else the built-in. */
static int model_members(const char *dir, const char *name, struct nn_bag_spec *spec, char *err,
                         size_t n_err)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s.yaml", dir, name);
	FILE *f = fopen(path, "rb");
	if (f) {
		char *buf = malloc(NN_BAG_MAX_BYTES + 1);
		size_t n = buf ? fread(buf, 1, NN_BAG_MAX_BYTES + 1, f) : 0;
		fclose(f);
		int rc = buf ? nn_bag_parse(buf, n, spec, err, n_err)
		             : sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
		free(buf);
		return rc;
	}
	const struct nn_builtin *b = nn_builtin_find(name);
	if (!b)
		return sfa_err(err, n_err, SFA_ENOTFOUND, "unknown model '%s'", name);
	return nn_bag_parse(b->yaml, strlen(b->yaml), spec, err, n_err);
}

static int models_list(const char *dir, int as_json)
{
	json_t *arr = json_array();
	if (!as_json)
		printf("%-12s %-38s %-10s %9s  %s\n", "NAME", "STEMS", "INSTALLED", "SIZE", "NOTE");
	/* Built-ins, then bag files of the folder that are not built-in names. */
	char names[64][NN_BAG_NAME_BYTES];
	int n_names = 0;
	for (int i = 0; i < nn_builtin_count() && n_names < 64; i++)
		str_copy(names[n_names++], NN_BAG_NAME_BYTES, nn_builtin_at(i)->name);
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) && n_names < 64) {
			size_t l = strlen(e->d_name);
			if (l > 5 && l < NN_BAG_NAME_BYTES && !strcmp(e->d_name + l - 5, ".yaml")) {
				char nm[NN_BAG_NAME_BYTES];
				str_copy(nm, sizeof nm, e->d_name);
				nm[l - 5] = 0;
				if (!nn_builtin_find(nm))
					str_copy(names[n_names++], NN_BAG_NAME_BYTES, nm);
			}
		}
		closedir(d);
	}
	for (int i = 0; i < n_names; i++) {
		const struct nn_builtin *b = nn_builtin_find(names[i]);
		struct nn_bag_spec spec;
		char err[512];
		int ok = model_members(dir, names[i], &spec, err, sizeof err) == 0;
		int have = 0;
		long long size = 0;
		for (int k = 0; ok && k < spec.n_models; k++) {
			char path[4096];
			if (nn_models_find_member(dir, spec.models[k], path, sizeof path) == 0) {
				have++;
				size += file_size(path);
			}
		}
		int installed = ok && have == spec.n_models;
		const char *note = !ok ? err : b ? b->description : "bag file";
		const char *stems = b ? b->stems : "?";
		if (as_json) {
			json_array_append_new(
				arr, json_pack("{s:s, s:s, s:b, s:I, s:i, s:i, s:b, s:s}", "name",
			                       names[i], "stems", stems, "installed", installed,
			                       "bytes", (json_int_t)size, "members",
			                       ok ? spec.n_models : 0, "members_installed", have,
			                       "supported", b ? b->supported : 1, "note", note));
		} else {
			char inst[32];
			if (installed)
				str_copy(inst, sizeof inst, "yes");
			else if (have)
				snprintf(inst, sizeof inst, "%d/%d", have, spec.n_models);
			else
				str_copy(inst, sizeof inst, "no");
			char sz[32] = "-";
			if (size > 0)
				snprintf(sz, sizeof sz, "%.1f MB", size / 1e6);
			printf("%-12s %-38s %-10s %9s  %s\n", names[i], stems, inst, sz, note);
		}
	}
	if (as_json) {
		json_t *j = json_pack("{s:s, s:o}", "models_dir", dir, "models", arr);
		char *text = json_encode(j);
		if (text)
			printf("%s\n", text);
		free(text);
		json_decref(j);
	} else {
		json_decref(arr);
		printf("models dir: %s\n", dir);
	}
	return 0;
}

struct fetch_bar {
	int tty;
	double last;
};

static void fetch_progress(void *user, const char *file, long long done, long long total)
{
	struct fetch_bar *b = user;
	if (!b->tty)
		return;
	double t = now_s();
	if (t - b->last < 0.1 && done != total)
		return;
	b->last = t;
	if (total > 0)
		fprintf(stderr, "\r%s %6.1f / %.1f MB (%3d%%) ", file, done / 1e6, total / 1e6,
		        (int)(done * 100 / total));
	else
		fprintf(stderr, "\r%s %6.1f MB ", file, done / 1e6);
	fflush(stderr);
}

static int models_fetch(const char *dir, int argc, char **argv)
{
	if (argc < 1)
		return usage_models();
	int rc = 0;
	for (int i = 0; i < argc; i++) {
		char err[1024];
		struct fetch_bar b = {.tty = isatty(STDERR_FILENO)};
		if (nn_models_fetch(argv[i], dir, fetch_progress, &b, err, sizeof err) != 0) {
			if (b.tty)
				fputc('\n', stderr);
			fprintf(stderr, "sfa models: %s\n", err);
			rc = 1;
			continue;
		}
		if (b.tty)
			fputc('\n', stderr);
		printf("%s: installed in %s\n", argv[i], dir);
	}
	return rc;
}

/* Checks one file whose name carries a hash prefix: <sig>-<8 hex>.th. */
static int verify_file(const char *dir, const char *fname, int *bad)
{
	char path[4400], hex[65], err[512];
	snprintf(path, sizeof path, "%s/%s", dir, fname);
	const char *dash = strrchr(fname, '-');
	size_t l = strlen(fname);
	if (!dash || l < 4 || strcmp(fname + l - 3, ".th") != 0 ||
	    (size_t)(fname + l - 3 - dash) != 9) {
		printf("%-32s unverifiable (no hash in the file name)\n", fname);
		return 0;
	}
	if (nn_models_sha256_file(path, hex, err, sizeof err) != 0) {
		printf("%-32s ERROR %s\n", fname, err);
		*bad = 1;
		return 0;
	}
	if (strncmp(hex, dash + 1, 8) == 0) {
		printf("%-32s OK (sha256 %.16s...)\n", fname, hex);
	} else {
		printf("%-32s MISMATCH: sha256 starts with %.8s, the name says %.8s\n", fname, hex,
		       dash + 1);
		*bad = 1;
	}
	return 0;
}

static int models_verify(const char *dir, int argc, char **argv)
{
	int bad = 0, n = 0;
	if (argc == 0) {
		DIR *d = opendir(dir);
		if (!d) {
			fprintf(stderr, "sfa models: cannot open %s: %s\n", dir, strerror(errno));
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			size_t l = strlen(e->d_name);
			if (l > 3 && !strcmp(e->d_name + l - 3, ".th")) {
				verify_file(dir, e->d_name, &bad);
				n++;
			}
		}
		closedir(d);
		if (!n)
			printf("no checkpoints in %s\n", dir);
		return bad;
	}
	for (int i = 0; i < argc; i++) {
		struct nn_bag_spec spec;
		char err[512];
		if (model_members(dir, argv[i], &spec, err, sizeof err) != 0) {
			fprintf(stderr, "sfa models: %s\n", err);
			bad = 1;
			continue;
		}
		for (int k = 0; k < spec.n_models; k++) {
			char path[4096];
			if (nn_models_find_member(dir, spec.models[k], path, sizeof path) != 0) {
				printf("%-32s MISSING (run `sfa models fetch %s`)\n",
				       spec.models[k], argv[i]);
				bad = 1;
				continue;
			}
			verify_file(dir, strrchr(path, '/') + 1, &bad);
		}
	}
	return bad;
}

int nn_cli_models(int argc, char **argv)
{
	if (argc < 2)
		return usage_models();
	const char *dir = nn_models_dir();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "list")) {
		int as_json = argc > 2 && !strcmp(argv[2], "--json");
		if (argc > 2 + as_json)
			return usage_models();
		return models_list(dir, as_json);
	}
	if (!strcmp(cmd, "fetch"))
		return models_fetch(dir, argc - 2, argv + 2);
	if (!strcmp(cmd, "verify"))
		return models_verify(dir, argc - 2, argv + 2);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
		usage_models();
		return 0;
	}
	return usage_models();
}
