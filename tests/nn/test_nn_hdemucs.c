/* Hybrid Demucs v3 (the mdx_extra members) against PyTorch Demucs: the three tiny reference
 * networks (complex-as-channels; magnitude with the mixture's phase; magnitude with
 * hybrid_old padding) through apply_model within max |diff| <= 1e-4 and relative L2 <=
 * 1e-5; the DConv of the collapsing layer on a 301-step input (BiLSTM framing with
 * max_steps 200, LocalState) against its unit dump; the loader's tensor checks; and the
 * mdx_extra bag (built-in definition, segment 44) with tiny networks installed under its
 * member signatures, which must equal the uniform average of its members. */
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

#include "nn/ckpt.h"
#include "nn/hdemucs.h"
#include "nn/net.h"
#include "nn/nn.h"
#include "nn_testutil.h"
#include "util/err.h"

static void cac_split(void **state)
{
	(void)state;
	nn_test_run_case("tiny_hdemucs_cac.th", "tiny_input.f32", 1,
	                 "out_tiny_hdemucs_cac_split.f32");
}

static void cac_nosplit(void **state)
{
	(void)state;
	nn_test_run_case("tiny_hdemucs_cac.th", "tiny_segment_input.f32", 0,
	                 "out_tiny_hdemucs_cac_nosplit.f32");
}

static void mag_split(void **state)
{
	(void)state;
	nn_test_run_case("tiny_hdemucs_mag.th", "tiny_input.f32", 1,
	                 "out_tiny_hdemucs_mag_split.f32");
}

static void mag_old_split(void **state)
{
	(void)state;
	nn_test_run_case("tiny_hdemucs_mag_old.th", "tiny_input.f32", 1,
	                 "out_tiny_hdemucs_mag_old_split.f32");
}

static struct nn_hdemucs *load_hd(const char *name)
{
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/%s", nn_test_fixtures, name);
	struct nn_ckpt c;
	if (nn_ckpt_load(path, &c, err, sizeof err))
		fail_msg("cannot load %s: %s", path, err);
	struct nn_hdemucs *m = NULL;
	if (nn_hdemucs_build(&c, &m, err, sizeof err))
		fail_msg("cannot build %s: %s", path, err);
	return m;
}

/* encoder[4].dconv on T = 301 > max_steps: four overlapping BiLSTM frames and LocalState. */
static void dconv_blstm_framing_and_localstate(void **state)
{
	(void)state;
	struct nn_hdemucs *m = load_hd("tiny_hdemucs_cac.th");
	size_t n, nr;
	float *x = nn_test_read_f32("unit_hdemucs_enc4_dconv_in.f32", &n);
	float *ref = nn_test_read_f32("unit_hdemucs_enc4_dconv_out.f32", &nr);
	assert_int_equal(n, 64 * 301);
	assert_int_equal(nr, n);
	struct nn_ws ws;
	nn_ws_init(&ws, 64u << 20);
	assert_int_equal(nn_hdemucs_encoder_dconv(m, &ws, 4, x, 64, 301), 0);
	double md, rel;
	nn_test_diff(x, ref, n, &md, &rel);
	printf("# enc4 dconv T=301  max|diff| %.3g  rel L2 %.3g\n", md, rel);
	if (!(md <= 1e-5 && rel <= 1e-6))
		fail_msg("encoder[4].dconv: max|diff| %.3g, rel L2 %.3g", md, rel);
	/* Layers without a DConv are refused. */
	assert_int_equal(nn_hdemucs_encoder_dconv(m, &ws, 0, x, 64, 301), SFA_EINVAL);
	nn_ws_free(&ws);
	free(x);
	free(ref);
	nn_hdemucs_free(m);
}

/* Every tensor is checked: a misshapen or missing one is an error naming it. */
static void loader_checks_every_tensor(void **state)
{
	(void)state;
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/tiny_hdemucs_mag.th", nn_test_fixtures);
	struct nn_ckpt c;
	assert_int_equal(nn_ckpt_load(path, &c, err, sizeof err), 0);
	assert_int_equal(c.klass, NN_PKG_HDEMUCS);
	struct nn_net *net = NULL;
	const char *victim = "encoder.5.dconv.layers.1.3.lstm.weight_hh_l1_reverse";
	struct nn_tensor *t = nn_ckpt_find(&c, victim);
	assert_non_null(t);
	t->shape[1]++;
	assert_int_equal(nn_net_build(&c, &net, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, victim));
	t->shape[1]--;
	t = nn_ckpt_find(&c, "encoder.4.dconv.layers.0.4.query_decay.bias");
	assert_non_null(t);
	t->shape[0] = 8;
	assert_int_equal(nn_net_build(&c, &net, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "query_decay.bias"));
	t->shape[0] = 16;
	/* Drop the (alphabetically) last tensor. */
	c.n_tensors--;
	assert_int_equal(nn_net_build(&c, &net, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "lacks tensor"));
	c.n_tensors++;
	assert_int_equal(nn_net_build(&c, &net, err, sizeof err), 0);
	const struct nn_htdemucs_info *info = nn_net_info(net);
	assert_int_equal(info->n_sources, 4);
	assert_int_equal(info->training_length, 8820); /* segment 0.2 (float) */
	assert_false(nn_net_fixed_length(net));
	nn_net_free(net);
}

static void copy_file(const char *from, const char *to)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	assert_non_null(a);
	assert_non_null(b);
	char buf[65536];
	size_t k;
	while ((k = fread(buf, 1, sizeof buf, a)) > 0)
		assert_int_equal(fwrite(buf, 1, k, b), k);
	fclose(a);
	assert_int_equal(fclose(b), 0);
}

/* mdx_extra from its built-in definition (four members, segment 44) with the tiny networks
 * installed under the member signatures, in the release order (CaC, magnitude hybrid_old,
 * magnitude, CaC): the bag equals the average of its members run alone, does not depend on
 * the number of threads, and loads its members per separation. */
static void mdx_extra_bag(void **state)
{
	(void)state;
	char dir[] = "/tmp/sfa_test_mdx_XXXXXX";
	assert_non_null(mkdtemp(dir));
	const char *sig[4] = {"e51eebcc", "a1d90b5c", "5d2d6c55", "cfa93e08"};
	const char *file[4] = {"tiny_hdemucs_cac.th", "tiny_hdemucs_mag_old.th",
	                       "tiny_hdemucs_mag.th", "tiny_hdemucs_cac.th"};
	char from[1024], to[1024], err[512] = "";
	struct nn_model *bag = NULL;
	/* Missing members are named. */
	assert_int_equal(nn_model_open("mdx_extra", dir, &bag, err, sizeof err), SFA_ENOTFOUND);
	assert_non_null(strstr(err, "e51eebcc"));
	for (int i = 0; i < 4; i++) {
		snprintf(from, sizeof from, "%s/%s", nn_test_fixtures, file[i]);
		snprintf(to, sizeof to, "%s/%s-0123abcd.th", dir, sig[i]);
		copy_file(from, to);
	}
	if (nn_model_open("mdx_extra", dir, &bag, err, sizeof err))
		fail_msg("mdx_extra: %s", err);
	const struct nn_model_info *info = nn_model_info(bag);
	assert_int_equal(info->n_members, 4);
	assert_int_equal(info->n_sources, 4);
	assert_string_equal(info->sources[0], "drums");
	assert_true(fabs(info->segment_s - 44.0) < 1e-9);
	size_t n;
	float *in = nn_test_read_f32("tiny_input.f32", &n);
	size_t frames = n / 2, total = 4 * 2 * frames;
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 0;
	o.n_threads = 2;
	float *y = nn_test_separate(bag, in, frames, &o);
	double *avg = calloc(total, sizeof *avg);
	assert_non_null(avg);
	o.segment_s = 44.0; /* the bag's segment: one chunk, as in the bag */
	for (int i = 0; i < 4; i++) {
		struct nn_model *m = nn_test_open_model(file[i]);
		float *yi = nn_test_separate(m, in, frames, &o);
		for (size_t k = 0; k < total; k++)
			avg[k] += yi[k] / 4.0;
		free(yi);
		nn_model_free(m);
	}
	double md = 0;
	for (size_t k = 0; k < total; k++)
		if (fabs(y[k] - avg[k]) > md)
			md = fabs(y[k] - avg[k]);
	printf("# mdx_extra (tiny) bag vs mean of members: max|diff| %.3g\n", md);
	assert_true(md < 1e-6);
	/* A longer track than one short chunk: 3 chunks of 0.2 s with overlap (the members
	 * run every chunk at its own length). */
	o.segment_s = 0.15;
	o.shifts = 1;
	o.seed = 5;
	float *z = nn_test_separate(bag, in, frames, &o);
	for (size_t k = 0; k < total; k++)
		assert_true(isfinite(z[k]));
	free(z);
	/* The threads share one segment at a time (GEMM team) in an HDemucs bag: 1 and 3
	 * threads give the 2-thread output bit for bit. */
	o.segment_s = 0.0;
	o.shifts = 0;
	for (int th = 1; th <= 3; th += 2) {
		o.n_threads = th;
		float *yt = nn_test_separate(bag, in, frames, &o);
		assert_memory_equal(yt, y, total * sizeof *y);
		free(yt);
	}
	/* Members are loaded per separation (one at a time): a member file gone since the
	 * open is reported by name, and nothing is returned. */
	snprintf(to, sizeof to, "%s/%s-0123abcd.th", dir, sig[2]);
	assert_int_equal(unlink(to), 0);
	float *gone = NULL;
	assert_int_not_equal(nn_separate(bag, in, frames, &o, &gone, err, sizeof err), 0);
	assert_null(gone);
	assert_non_null(strstr(err, sig[2]));
	free(avg);
	free(y);
	free(in);
	nn_model_free(bag);
	for (int i = 0; i < 4; i++) {
		snprintf(to, sizeof to, "%s/%s-0123abcd.th", dir, sig[i]);
		unlink(to);
	}
	rmdir(dir);
}

int main(int argc, char **argv)
{
	nn_test_fixtures = argc > 1 ? argv[1] : "tests/fixtures/nn";
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(cac_split),
		cmocka_unit_test(cac_nosplit),
		cmocka_unit_test(mag_split),
		cmocka_unit_test(mag_old_split),
		cmocka_unit_test(dconv_blstm_framing_and_localstate),
		cmocka_unit_test(loader_checks_every_tensor),
		cmocka_unit_test(mdx_extra_bag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
