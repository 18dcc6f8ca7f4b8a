/* Numerics of the whole engine against PyTorch Demucs: every tiny HTDemucs reference case
 * (4 and 6 sources, split and not, and the htdemucs_ft-style bag) must match within
 * max |diff| <= 1e-4 and relative L2 <= 1e-5, the tolerances. Also: the output
 * does not depend on the thread count, shifts are seeded, progress and cancel work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/nn.h"
#include "nn/ops.h"
#include "nn_testutil.h"
#include "util/err.h"

static void htdemucs_split(void **state)
{
	(void)state;
	nn_test_run_case("tiny_htdemucs.th", "tiny_input.f32", 1, "out_tiny_htdemucs_split.f32");
}

static void htdemucs_nosplit(void **state)
{
	(void)state;
	nn_test_run_case("tiny_htdemucs.th", "tiny_segment_input.f32", 0,
	                 "out_tiny_htdemucs_nosplit.f32");
}

static void htdemucs_6s_split(void **state)
{
	(void)state;
	nn_test_run_case("tiny_htdemucs_6s.th", "tiny_input.f32", 1,
	                 "out_tiny_htdemucs_6s_split.f32");
}

static void htdemucs_6s_nosplit(void **state)
{
	(void)state;
	nn_test_run_case("tiny_htdemucs_6s.th", "tiny_segment_input.f32", 0,
	                 "out_tiny_htdemucs_6s_nosplit.f32");
}

static void htdemucs_ft_bag_split(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs_ft.yaml");
	const struct nn_model_info *info = nn_model_info(m);
	assert_int_equal(info->n_members, 4);
	assert_int_equal(info->n_sources, 4);
	assert_string_equal(info->sources[3], "vocals");
	nn_model_free(m);
	nn_test_run_case("tiny_htdemucs_ft.yaml", "tiny_input.f32", 1,
	                 "out_tiny_htdemucs_ft_split.f32");
}

struct prog {
	int calls, last, total;
	int cancel_at;
	volatile int *cancel;
};

static void on_progress(void *user, int done, int total)
{
	struct prog *p = user;
	assert_int_equal(done, p->last + 1); /* in order, one at a time */
	p->last = done;
	p->total = total;
	p->calls++;
	if (p->cancel && done == p->cancel_at)
		*p->cancel = 1;
}

static void thread_count_does_not_change_output(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2;
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 2;
	o.seed = 7;
	o.overlap = 0.5;
	o.n_threads = 1;
	struct prog p = {0};
	o.progress = on_progress;
	o.progress_user = &p;
	float *a = nn_test_separate(m, in, frames, &o);
	assert_true(p.calls > 4);
	assert_int_equal(p.last, p.total);
	o.progress = NULL;
	size_t total = 4 * 2 * frames;
	for (int t = 2; t <= 3; t++) {
		o.n_threads = t;
		float *b = nn_test_separate(m, in, frames, &o);
		assert_memory_equal(a, b, total * sizeof(float));
		free(b);
	}
	/* Same seed, same shifts; another seed, other shifts. */
	o.n_threads = 2;
	float *c = nn_test_separate(m, in, frames, &o);
	assert_memory_equal(a, c, total * sizeof(float));
	free(c);
	o.seed = 8;
	float *d = nn_test_separate(m, in, frames, &o);
	assert_true(memcmp(a, d, total * sizeof(float)) != 0);
	free(d);
	free(a);
	free(in);
	nn_model_free(m);
}

/* Fewer segments than threads (a short clip, the last wave of a track): the idle threads
 * join the running HTDemucs network as its team. The output is the 1-thread one bit for
 * bit, and work was offered to the team's helpers (else the tail was not shared; whether
 * a helper then took a part is up to the scheduler, so that is not asserted). */
static void short_clip_tail_is_shared_by_a_team(void **state)
{
	(void)state;
	const char *models[] = {"tiny_htdemucs.th", "tiny_htdemucs_ft.yaml"};
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2;
	for (int mi = 0; mi < 2; mi++) {
		struct nn_model *m = nn_test_open_model(models[mi]);
		struct nn_separate_opts o;
		nn_separate_opts_init(&o);
		o.shifts = 0;
		/* 0.4 s in 0.2 s segments, overlap 0.25: 3 chunks per member, so 2 threads run
		 * one wave of 2 and a tail of 1; 4 threads a tail of 3 (fewer than 4). */
		o.n_threads = 1;
		unsigned long long before = nn_ops_team_shared_count();
		float *a = nn_test_separate(m, in, frames, &o);
		assert_true(nn_ops_team_shared_count() == before); /* one thread: no team */
		size_t total = 4 * 2 * frames;
		for (int t = 2; t <= 4; t += 2) {
			o.n_threads = t;
			before = nn_ops_team_shared_count();
			float *b = nn_test_separate(m, in, frames, &o);
			if (nn_ops_team_shared_count() == before)
				fail_msg("%s, %d threads: the tail was not shared", models[mi], t);
			assert_memory_equal(a, b, total * sizeof(float));
			free(b);
		}
		/* A clip of one segment: the whole job is a tail. */
		o.n_threads = 1;
		size_t short_frames = frames / 4;
		float *sh = malloc(2 * short_frames * sizeof *sh);
		assert_non_null(sh);
		for (int c = 0; c < 2; c++)
			memcpy(sh + c * short_frames, in + c * frames, short_frames * sizeof *sh);
		float *c1 = nn_test_separate(m, sh, short_frames, &o);
		o.n_threads = 2;
		before = nn_ops_team_shared_count();
		float *c2 = nn_test_separate(m, sh, short_frames, &o);
		assert_true(nn_ops_team_shared_count() > before);
		assert_memory_equal(c1, c2, 4 * 2 * short_frames * sizeof(float));
		free(c1);
		free(c2);
		free(sh);
		free(a);
		nn_model_free(m);
	}
	free(in);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* apply_model's shift trick: the track is delayed by d = max_shift - offset inside zeros,
 * separated, and the first d samples dropped. With the documented offset sequence
 * (splitmix64 of the seed, modulo max_shift + 1) and no standardisation, that must equal
 * separating the zero-prefixed track without shifts, bit for bit. */
static void shift_equals_zero_prefix(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2;
	uint64_t seed = 1234, s = seed;
	int max_shift = 22050;
	int d = max_shift - (int)(splitmix64(&s) % (uint64_t)(max_shift + 1));
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.normalize = false;
	o.shifts = 1;
	o.seed = seed;
	float *a = nn_test_separate(m, in, frames, &o);
	size_t f2 = frames + (size_t)d;
	float *pre = calloc(2 * f2, sizeof *pre);
	assert_non_null(pre);
	for (int c = 0; c < 2; c++)
		memcpy(pre + c * f2 + d, in + c * frames, frames * sizeof *pre);
	o.shifts = 0;
	float *b = nn_test_separate(m, pre, f2, &o);
	for (int k = 0; k < 8; k++)
		assert_memory_equal(a + k * frames, b + k * f2 + d, frames * sizeof *a);
	free(a);
	free(b);
	free(pre);
	free(in);
	nn_model_free(m);
}

struct collect {
	float *buf; /* planes of n frames */
	size_t n, next;
	int planes, calls;
};

static int collect_sink(void *user, const float *data, size_t stride, size_t frame0,
                        size_t n_frames)
{
	struct collect *c = user;
	assert_int_equal(frame0, c->next); /* in order, no gap, no overlap */
	for (int p = 0; p < c->planes; p++)
		memcpy(c->buf + (size_t)p * c->n + frame0, data + (size_t)p * stride,
		       n_frames * sizeof(float));
	c->next += n_frames;
	c->calls++;
	return 0;
}

/* The streaming sink sees exactly what nn_separate returns, for a single network (held
 * as a sliding window), and for a bag or several shifts (summed in a temporary file and
 * handed over at the end in blocks of 16384 frames: two for this 17640-frame input). */
static void streaming_output_equals_buffered(void **state)
{
	(void)state;
	const char *models[] = {"tiny_htdemucs.th", "tiny_htdemucs_ft.yaml", "tiny_htdemucs.th"};
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2;
	for (int mi = 0; mi < 3; mi++) {
		struct nn_model *m = nn_test_open_model(models[mi]);
		struct nn_separate_opts o;
		nn_separate_opts_init(&o);
		o.shifts = mi == 2 ? 2 : 1;
		o.seed = 3;
		o.overlap = 0.5;
		o.n_threads = 2;
		float *a = nn_test_separate(m, in, frames, &o);
		struct collect c = {.n = frames, .planes = 8};
		c.buf = calloc(8 * frames, sizeof(float));
		o.sink = collect_sink;
		o.sink_user = &c;
		char err[256];
		assert_int_equal(nn_separate(m, in, frames, &o, NULL, err, sizeof err), 0);
		assert_int_equal(c.next, frames);
		assert_true(mi == 0 ? c.calls > 2 : c.calls == 2);
		assert_memory_equal(a, c.buf, 8 * frames * sizeof(float));
		if (mi == 1) {
			/* No room for the sums' file: a sentence naming the folder. */
			o.scratch_dir = "/nonexistent/sfa-scratch";
			assert_int_equal(nn_separate(m, in, frames, &o, NULL, err, sizeof err),
			                 SFA_EIO);
			assert_non_null(strstr(err, "/nonexistent/sfa-scratch"));
		}
		free(c.buf);
		free(a);
		nn_model_free(m);
	}
	free(in);
}

/* A bag of HTDemucs runs one member at a time (loaded, run over the track, freed): the
 * output is that of the resident bag bit for bit, buffered and streamed (the sums' file),
 * at 1 and 2 threads; a member file gone since the open is reported by name. */
static void htdemucs_bag_one_member_at_a_time(void **state)
{
	(void)state;
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2, total = 4 * 2 * frames;
	struct nn_model *res = nn_test_open_model("tiny_htdemucs_ft.yaml");
	char err[256];
	if (nn_model_keep_resident(res, err, sizeof err))
		fail_msg("keep resident: %s", err);
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 1;
	o.seed = 11;
	o.overlap = 0.5;
	o.n_threads = 2;
	float *a = nn_test_separate(res, in, frames, &o);
	nn_model_free(res);
	/* The bag from a copy of the fixtures, to remove a member afterwards. */
	char dir[] = "/tmp/sfa-nn-bag-XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *files[] = {"tiny_htdemucs_ft.yaml", "tiny_htdemucs.th", "tiny_ft_b.th",
	                       "tiny_ft_c.th", "tiny_ft_d.th"};
	char path[512];
	for (int i = 0; i < 5; i++) {
		size_t nb;
		void *data = nn_test_read(files[i], &nb);
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(data, 1, nb, f), nb);
		fclose(f);
		free(data);
	}
	snprintf(path, sizeof path, "%s/%s", dir, files[0]);
	struct nn_model *lazy = NULL;
	if (nn_model_open(path, NULL, &lazy, err, sizeof err))
		fail_msg("%s: %s", path, err);
	for (int t = 1; t <= 2; t++) {
		o.n_threads = t;
		float *b = nn_test_separate(lazy, in, frames, &o);
		assert_memory_equal(a, b, total * sizeof(float));
		free(b);
	}
	struct collect c = {.n = frames, .planes = 8};
	c.buf = calloc(total, sizeof(float));
	assert_non_null(c.buf);
	o.sink = collect_sink;
	o.sink_user = &c;
	assert_int_equal(nn_separate(lazy, in, frames, &o, NULL, err, sizeof err), 0);
	assert_memory_equal(a, c.buf, total * sizeof(float));
	o.sink = NULL;
	snprintf(path, sizeof path, "%s/%s", dir, files[3]);
	assert_int_equal(unlink(path), 0);
	float *gone = NULL;
	assert_int_not_equal(nn_separate(lazy, in, frames, &o, &gone, err, sizeof err), 0);
	assert_null(gone);
	assert_non_null(strstr(err, "tiny_ft_c"));
	nn_model_free(lazy);
	for (int i = 0; i < 5; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	free(c.buf);
	free(a);
	free(in);
}

static void cancel_stops_the_job(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	volatile int cancel = 0;
	struct prog p = {.cancel = &cancel, .cancel_at = 2};
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 3;
	o.n_threads = 1;
	o.cancel = &cancel;
	o.progress = on_progress;
	o.progress_user = &p;
	char err[256];
	float *out = NULL;
	assert_int_equal(nn_separate(m, in, n / 2, &o, &out, err, sizeof err), SFA_ECANCELED);
	assert_null(out);
	assert_true(p.last >= 2 && p.last < p.total);
	free(in);
	nn_model_free(m);
}

static void bad_options_are_refused(void **state)
{
	(void)state;
	struct nn_model *m = nn_test_open_model("tiny_htdemucs.th");
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	struct nn_separate_opts o;
	char err[256];
	float *out = NULL;
	nn_separate_opts_init(&o);
	o.segment_s = 0.5; /* the tiny model was trained on 0.2 s */
	assert_int_equal(nn_separate(m, in, n / 2, &o, &out, err, sizeof err), SFA_EINVAL);
	assert_non_null(strstr(err, "longer than the model"));
	nn_separate_opts_init(&o);
	o.overlap = 1.0;
	assert_int_equal(nn_separate(m, in, n / 2, &o, &out, err, sizeof err), SFA_EINVAL);
	nn_separate_opts_init(&o);
	o.split = false; /* 0.4 s does not fit one 0.2 s forward */
	o.shifts = 0;
	assert_int_equal(nn_separate(m, in, n / 2, &o, &out, err, sizeof err), SFA_EINVAL);
	assert_int_equal(nn_separate(m, in, 0, &o, &out, err, sizeof err), SFA_EINVAL);
	/* Very short tracks are padded like any last chunk. */
	nn_separate_opts_init(&o);
	for (size_t k = 1; k <= 100; k += 99) {
		float tiny[200];
		for (size_t i = 0; i < 2 * k; i++)
			tiny[i] = in[i];
		float *t = NULL;
		assert_int_equal(nn_separate(m, tiny, k, &o, &t, err, sizeof err), 0);
		for (size_t i = 0; i < 8 * k; i++)
			assert_true(isfinite(t[i]));
		free(t);
	}
	/* A shorter segment than the model's is fine (chunks are padded to its length). */
	nn_separate_opts_init(&o);
	o.segment_s = 0.1;
	o.shifts = 0;
	assert_int_equal(nn_separate(m, in, n / 2, &o, &out, err, sizeof err), 0);
	free(out);
	free(in);
	nn_model_free(m);
}

int main(int argc, char **argv)
{
	nn_test_fixtures = argc > 1 ? argv[1] : "tests/fixtures/nn";
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(htdemucs_split),
		cmocka_unit_test(htdemucs_nosplit),
		cmocka_unit_test(htdemucs_6s_split),
		cmocka_unit_test(htdemucs_6s_nosplit),
		cmocka_unit_test(htdemucs_ft_bag_split),
		cmocka_unit_test(thread_count_does_not_change_output),
		cmocka_unit_test(short_clip_tail_is_shared_by_a_team),
		cmocka_unit_test(shift_equals_zero_prefix),
		cmocka_unit_test(streaming_output_equals_buffered),
		cmocka_unit_test(htdemucs_bag_one_member_at_a_time),
		cmocka_unit_test(cancel_stops_the_job),
		cmocka_unit_test(bad_options_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
