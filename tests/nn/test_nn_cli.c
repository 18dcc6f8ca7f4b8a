/* The command-line front ends, in process: `sfa separate` end to end on the tiny reference
 * checkpoint installed under the htdemucs signature (stems checked against PyTorch), and
 * `sfa models list / verify / fetch` on a scratch models folder (fetch from a file://
 * mirror: a file whose hash does not match its name is refused and removed; one whose name
 * carries its hash is installed, resuming an interrupted download). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio/audio.h"
#include "nn/cli.h"
#include "nn/catalog.h"
#include "nn/ops.h"
#include "util/fs.h"

static const char *fixtures;
static char tmp[256];

static void copy_file(const char *from, const char *to)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	if (!a)
		fail_msg("missing fixture %s", from);
	assert_non_null(b);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, a)) > 0)
		assert_int_equal(fwrite(buf, 1, n, b), n);
	fclose(a);
	fclose(b);
}

static char *read_all(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot read %s", path);
	char *buf = NULL;
	size_t cap = 0, len = 0, k;
	char chunk[65536];
	while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (len + k > cap) {
			cap = (len + k) * 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		memcpy(buf + len, chunk, k);
		len += k;
	}
	fclose(f);
	*n = len;
	return buf;
}

static void fixture(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", fixtures, name);
}

/* Runs fn(argc, argv) with stdout captured into *text (malloced). */
static int run_captured(int (*fn)(int, char **), int argc, char **argv, char **text)
{
	char path[300];
	snprintf(path, sizeof path, "%s/stdout.txt", tmp);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	int rc = fn(argc, argv);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = calloc(1, 1 << 20);
	assert_non_null(buf);
	size_t got = fread(buf, 1, (1 << 20) - 1, f);
	buf[got] = 0;
	fclose(f);
	*text = buf;
	return rc;
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof tmp, "/tmp/sfa-nn-cli-XXXXXX");
	assert_non_null(mkdtemp(tmp));
	char d[300];
	snprintf(d, sizeof d, "%s/models", tmp);
	assert_int_equal(mkdir(d, 0700), 0);
	setenv("SFA_MODELS_DIR", d, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (strncmp(tmp, "/tmp/sfa-nn-cli-", 16) == 0) /* only our own mkdtemp folder */
		fs_remove_tree(tmp);
	return 0;
}

static void separate_end_to_end(void **state)
{
	(void)state;
	char from[1024], to[400], wav[1024], out[400];
	fixture(from, sizeof from, "tiny_htdemucs.th");
	snprintf(to, sizeof to, "%s/models/955717e8.th", tmp);
	copy_file(from, to); /* installed under the htdemucs signature */
	fixture(wav, sizeof wav, "tiny_input.wav");
	snprintf(out, sizeof out, "%s/out", tmp);
	char *argv[] = {"separate", wav,   "--model",  "htdemucs", "--out",     out,
	                "--format", "f32", "--shifts", "0",        "--threads", "2"};
	char *text;
	int rc = run_captured(nn_cli_separate, 12, argv, &text);
	assert_int_equal(rc, 0);
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	if (!j)
		fail_msg("separate printed no JSON: %s", text);
	assert_int_equal(json_integer_value(json_object_get(j, "frames")), 17640);
	assert_int_equal(json_array_size(json_object_get(j, "sources")), 4);
	json_t *files = json_object_get(j, "files");
	char ref_path[1024];
	fixture(ref_path, sizeof ref_path, "out_tiny_htdemucs_split.f32");
	FILE *f = fopen(ref_path, "rb");
	assert_non_null(f);
	float *ref = malloc(4 * 2 * 17640 * sizeof *ref);
	assert_int_equal(fread(ref, sizeof *ref, 4 * 2 * 17640, f), 4 * 2 * 17640);
	fclose(f);
	const char *stems[] = {"drums", "bass", "other", "vocals"};
	for (int s = 0; s < 4; s++) {
		const char *p = json_string_value(json_object_get(files, stems[s]));
		assert_non_null(p);
		struct audio_buf b = {0};
		char err[512];
		if (audio_decode(p, 0, 0, 0, &b, err, sizeof err))
			fail_msg("cannot read back %s: %s", p, err);
		assert_int_equal(b.n_frames, 17640);
		assert_int_equal(b.n_channels, 2);
		double md = 0;
		for (size_t i = 0; i < 2 * 17640; i++)
			md = fmax(md, fabs((double)b.data[i] - ref[(size_t)s * 2 * 17640 + i]));
		assert_true(md <= 1e-4);
		audio_buf_free(&b);
	}
	free(ref);
	json_decref(j);
	free(text);

	/* 16- and 24-bit WAV, streamed as segments finish, are byte for byte what
	 * audio_write_wav makes of the float stems. */
	const char *fmts[] = {"wav", "wav24"};
	for (int fi = 0; fi < 2; fi++) {
		char out2[400];
		snprintf(out2, sizeof out2, "%s/out2", tmp);
		char *argv2[] = {"separate", wav,        "--model",        "htdemucs", "--out",
		                 out2,       "--format", (char *)fmts[fi], "--shifts", "0"};
		assert_int_equal(run_captured(nn_cli_separate, 10, argv2, &text), 0);
		free(text);
		for (int s = 0; s < 4; s++) {
			char pf[500], pw[500], pr[500];
			snprintf(pf, sizeof pf, "%s/%s.wav", out, stems[s]);
			snprintf(pw, sizeof pw, "%s/%s.wav", out2, stems[s]);
			snprintf(pr, sizeof pr, "%s/ref.wav", tmp);
			struct audio_buf b = {0};
			char err[512];
			assert_int_equal(audio_decode(pf, 0, 0, 0, &b, err, sizeof err), 0);
			assert_int_equal(audio_write_wav(pr, &b, fi ? AUDIO_PCM24 : AUDIO_PCM16,
			                                 err, sizeof err),
			                 0);
			audio_buf_free(&b);
			FILE *fa = fopen(pw, "rb"), *fb = fopen(pr, "rb");
			assert_non_null(fa);
			assert_non_null(fb);
			int ca, cb;
			long at = 0;
			do {
				ca = fgetc(fa);
				cb = fgetc(fb);
				if (ca != cb)
					fail_msg("%s differs from audio_write_wav at byte %ld", pw,
					         at);
				at++;
			} while (ca != EOF);
			fclose(fa);
			fclose(fb);
			unlink(pw);
			unlink(pr);
		}
		rmdir(out2);
	}

	/* Usage errors exit 2, failures 1. */
	char *bad1[] = {"separate"};
	assert_int_equal(nn_cli_separate(1, bad1), 2);
	char *bad2[] = {"separate", wav, "--format", "ogg"};
	assert_int_equal(nn_cli_separate(4, bad2), 2);
	char *bad3[] = {"separate", wav, "--model", "no_such_model"};
	assert_int_equal(nn_cli_separate(4, bad3), 1);
	char *bad4[] = {"separate", "/nonexistent.wav", "--model", "htdemucs"};
	assert_int_equal(nn_cli_separate(4, bad4), 1);
}

/* Runs fn(argc, argv) with stderr captured into *text (malloced). */
static int run_stderr(int (*fn)(int, char **), int argc, char **argv, char **text)
{
	char path[300];
	snprintf(path, sizeof path, "%s/stderr.txt", tmp);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	dup2(fd, STDERR_FILENO);
	close(fd);
	int rc = fn(argc, argv);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	size_t n;
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = calloc(1, 1 << 16);
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 16) - 1, f);
	buf[n] = 0;
	fclose(f);
	*text = buf;
	return rc;
}

/* --precision: fp32|bf16 only (usage error otherwise); bf16 refused with a sentence on a
 * CPU without AVX512-BF16 (forced here with SFA_CPU_NO_BF16=1, so this runs anywhere)
 * before anything is written; where the CPU has it, bf16 runs and says so in the summary. */
static void separate_precision(void **state)
{
	(void)state;
	char from[1024], to[400], wav[1024], out[400];
	fixture(from, sizeof from, "tiny_htdemucs.th");
	snprintf(to, sizeof to, "%s/models/955717e8.th", tmp);
	copy_file(from, to);
	fixture(wav, sizeof wav, "tiny_input.wav");
	snprintf(out, sizeof out, "%s/out_bf16", tmp);
	char *text;
	char *bad[] = {"separate", wav, "--model", "htdemucs", "--out", out, "--precision", "fp16"};
	assert_int_equal(run_stderr(nn_cli_separate, 8, bad, &text), 2);
	if (!strstr(text, "--precision must be fp32 or bf16"))
		fail_msg("unexpected message for --precision fp16: %s", text);
	free(text);
	char *argv[] = {"separate", wav,   "--model",  "htdemucs", "--out",       out,
	                "--format", "f32", "--shifts", "0",        "--precision", "bf16"};
	setenv("SFA_CPU_NO_BF16", "1", 1);
	int rc = run_stderr(nn_cli_separate, 12, argv, &text);
	unsetenv("SFA_CPU_NO_BF16");
	assert_int_equal(rc, 1);
	if (!strstr(text, "AVX512-BF16"))
		fail_msg("the refusal does not name what is missing: %s", text);
	free(text);
	struct stat st;
	if (stat(out, &st) == 0)
		fail_msg("a refused separation created %s", out);
	char why[200];
	if (!nn_bf16_supported(why, sizeof why))
		fail_msg("the bf16 run needs AVX512-BF16 and cannot be tested here: %s", why);
	assert_int_equal(run_captured(nn_cli_separate, 12, argv, &text), 0);
	json_t *j = json_loads(text, 0, NULL);
	if (!j)
		fail_msg("separate printed no JSON: %s", text);
	assert_string_equal(json_string_value(json_object_get(j, "precision")), "bf16");
	json_decref(j);
	free(text);
}

static void models_list_and_verify(void **state)
{
	(void)state;
	char from[1024], to[400];
	fixture(from, sizeof from, "tiny_htdemucs.th");
	snprintf(to, sizeof to, "%s/models/955717e8.th", tmp);
	copy_file(from, to);
	char *text;
	char *list[] = {"models", "list", "--json"};
	assert_int_equal(run_captured(nn_cli_models, 3, list, &text), 0);
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	json_t *arr = json_object_get(j, "models");
	assert_true(json_array_size(arr) >= 4);
	int seen = 0;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *e = json_array_get(arr, i);
		const char *name = json_string_value(json_object_get(e, "name"));
		if (!strcmp(name, "htdemucs")) {
			assert_true(json_is_true(json_object_get(e, "installed")));
			seen++;
		}
		if (!strcmp(name, "htdemucs_ft")) {
			assert_true(json_is_false(json_object_get(e, "installed")));
			seen++;
		}
	}
	assert_int_equal(seen, 2);
	json_decref(j);
	free(text);

	/* A plain <sig>.th cannot be verified; a hashed name that lies is a mismatch. */
	char *verify[] = {"models", "verify", "htdemucs"};
	assert_int_equal(run_captured(nn_cli_models, 3, verify, &text), 0);
	assert_non_null(strstr(text, "unverifiable"));
	free(text);
	unlink(to);
	snprintf(to, sizeof to, "%s/models/955717e8-8726e21a.th", tmp);
	copy_file(from, to);
	assert_int_equal(run_captured(nn_cli_models, 3, verify, &text), 1);
	assert_non_null(strstr(text, "MISMATCH"));
	free(text);
	/* A file named after its real hash verifies. */
	snprintf(to, sizeof to, "%s/models/tiny-1c678583.th", tmp);
	copy_file(from, to);
	char *verify_all[] = {"models", "verify"};
	assert_int_equal(run_captured(nn_cli_models, 2, verify_all, &text), 1);
	assert_non_null(strstr(text, "tiny-1c678583.th                 OK"));
	free(text);
	char *usage[] = {"models", "frobnicate"};
	assert_int_equal(nn_cli_models(2, usage), 2);
}

static void fetch_refuses_a_wrong_hash(void **state)
{
	(void)state;
	char d[400], from[1024], to[500], url[400];
	snprintf(d, sizeof d, "%s/mirror", tmp);
	mkdir(d, 0700);
	snprintf(d, sizeof d, "%s/mirror/hybrid_transformer", tmp);
	mkdir(d, 0700);
	fixture(from, sizeof from, "tiny_htdemucs_6s.th");
	snprintf(to, sizeof to, "%s/5c90dfd2-34c22ccb.th", d);
	copy_file(from, to);
	snprintf(url, sizeof url, "file://%s/mirror/", tmp);
	setenv("SFA_MODELS_URL", url, 1);
	char *fetch[] = {"models", "fetch", "htdemucs_6s"};
	char *text;
	assert_int_equal(run_captured(nn_cli_models, 3, fetch, &text), 1);
	free(text);
	char p[500];
	snprintf(p, sizeof p, "%s/models/5c90dfd2-34c22ccb.th", tmp);
	assert_int_not_equal(access(p, F_OK), 0);
	snprintf(p, sizeof p, "%s/models/5c90dfd2-34c22ccb.th.part", tmp);
	assert_int_not_equal(access(p, F_OK), 0);
	char *unknown[] = {"models", "fetch", "htdemucs_7s"};
	assert_int_equal(run_captured(nn_cli_models, 3, unknown, &text), 1);
	free(text);
	unsetenv("SFA_MODELS_URL");
}

struct fetch_seen {
	int calls;
	long long first_done;
};

static void on_fetch(void *user, const char *file, long long done, long long total)
{
	(void)file;
	(void)total;
	struct fetch_seen *s = user;
	if (s->calls++ == 0)
		s->first_done = done;
}

static void assert_same_file(const char *a, const char *b)
{
	size_t na, nb;
	char *x = read_all(a, &na), *y = read_all(b, &nb);
	assert_int_equal(na, nb);
	assert_memory_equal(x, y, na);
	free(x);
	free(y);
}

static void write_prefix(const char *from, size_t n, const char *to, int extra_garbage)
{
	size_t len;
	char *data = read_all(from, &len);
	FILE *f = fopen(to, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n < len ? n : len, f), n < len ? n : len);
	for (int i = 0; i < extra_garbage; i++)
		fputc('x', f);
	assert_int_equal(fclose(f), 0);
	free(data);
}

/* A model file whose name carries its real hash, from a file:// mirror: an interrupted
 * download (a .part) is resumed from where it stopped, an installed file is not fetched
 * again, and a .part that cannot be resumed (longer than the file) starts over. */
static void fetch_installs_and_resumes(void **state)
{
	(void)state;
	char src[1024], hex[65], err[512], mirror[400], rel[64], path[600], part[620], dir[300];
	fixture(src, sizeof src, "tiny_htdemucs.th");
	assert_int_equal(nn_models_sha256_file(src, hex, err, sizeof err), 0);
	snprintf(mirror, sizeof mirror, "%s/mirror/x", tmp);
	assert_int_equal(fs_mkdirs(mirror, 0700), 0);
	snprintf(rel, sizeof rel, "x/abcd1234-%.8s.th", hex);
	snprintf(path, sizeof path, "%s/mirror/%s", tmp, rel);
	copy_file(src, path);
	snprintf(path, sizeof path, "file://%s/mirror/", tmp);
	setenv("SFA_MODELS_URL", path, 1);
	snprintf(dir, sizeof dir, "%s/models", tmp);
	snprintf(path, sizeof path, "%s/abcd1234-%.8s.th", dir, hex);
	snprintf(part, sizeof part, "%s.part", path);
	const char *files[] = {rel};

	write_prefix(src, 1000, part, 0);
	struct fetch_seen seen = {0};
	if (nn_models_fetch_files(files, 1, dir, on_fetch, &seen, err, sizeof err) != 0)
		fail_msg("fetch: %s", err);
	assert_true(seen.calls > 0);
	assert_true(seen.first_done >= 1000); /* the progress counts what was already there */
	assert_same_file(src, path);
	assert_int_not_equal(access(part, F_OK), 0);

	seen = (struct fetch_seen){0};
	assert_int_equal(nn_models_fetch_files(files, 1, dir, on_fetch, &seen, err, sizeof err), 0);
	assert_int_equal(seen.calls, 0);

	assert_int_equal(unlink(path), 0);
	write_prefix(src, (size_t)-1, part, 100);
	if (nn_models_fetch_files(files, 1, dir, NULL, NULL, err, sizeof err) != 0)
		fail_msg("fetch after a bad .part: %s", err);
	assert_same_file(src, path);
	unsetenv("SFA_MODELS_URL");
}

int main(int argc, char **argv)
{
	fixtures = argc > 1 ? argv[1] : "tests/fixtures/nn";
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(separate_end_to_end, setup, teardown),
		cmocka_unit_test_setup_teardown(separate_precision, setup, teardown),
		cmocka_unit_test_setup_teardown(models_list_and_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(fetch_refuses_a_wrong_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(fetch_installs_and_resumes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
