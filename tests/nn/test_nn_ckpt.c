/* Tests of the checkpoint loader: zip reader, restricted pickle interpreter, fp16, the
 * package layout, and refusal of corrupt, foreign and quantised files. The fixtures are
 * the tiny reference checkpoints (random weights in the official format); corrupt
 * variants are generated here from them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bag.h"
#include "nn/ckpt.h"
#include "nn/htdemucs.h"
#include "nn/nn.h"
#include "nn/pickle.h"
#include "nn/zip.h"
#include "util/err.h"

#include "nn_testutil.h"

static const char *fixtures;

static uint8_t *slurp(const char *name, size_t *n) { return nn_test_read(name, n); }

static void fixture_path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", fixtures, name);
}

/* Replaces the first occurrence of `from` by `to` (same length); fails if absent. */
static void patch(uint8_t *d, size_t n, const char *from, const char *to)
{
	size_t k = strlen(from);
	assert_int_equal(k, strlen(to));
	for (size_t i = 0; i + k <= n; i++) {
		if (memcmp(d + i, from, k) == 0) {
			memcpy(d + i, to, k);
			return;
		}
	}
	fail_msg("pattern '%s' not found", from);
}

static void loads_tiny_htdemucs(void **state)
{
	(void)state;
	char path[1024], err[512] = "";
	fixture_path(path, sizeof path, "tiny_htdemucs.th");
	struct nn_ckpt c;
	int rc = nn_ckpt_load(path, &c, err, sizeof err);
	assert_int_equal(rc, 0);
	assert_int_equal(c.klass, NN_PKG_HTDEMUCS);
	assert_int_equal(c.n_tensors, 533);
	assert_int_equal(c.n_weight_floats, 417056);
	long ch;
	assert_int_equal(nn_kw_int(&c, "channels", 0, &ch, err, sizeof err), 0);
	assert_int_equal(ch, 8);
	double seg;
	assert_int_equal(nn_kw_double(&c, "segment", 0, &seg, err, sizeof err), 0);
	assert_true(fabs(seg - 0.2) < 1e-12);
	const struct nn_pk *f = nn_kw(&c, "segment");
	assert_int_equal(f->type, NN_PK_FRACTION);
	assert_int_equal(f->u.frac.num, 1);
	assert_int_equal(f->u.frac.den, 5);
	const struct nn_pk *src = nn_kw(&c, "sources");
	assert_int_equal(src->type, NN_PK_LIST);
	assert_int_equal(src->u.seq.n, 4);
	assert_string_equal(src->u.seq.items[3]->u.str.p, "vocals");
	struct nn_tensor *t = nn_ckpt_find(&c, "decoder.0.rewrite.weight");
	assert_non_null(t);
	assert_int_equal(t->ndim, 4);
	assert_int_equal(t->shape[0], 128);
	assert_int_equal(t->shape[1], 64);
	assert_int_equal(t->shape[2], 3);
	assert_int_equal(t->shape[3], 3);
	/* Weights are finite, non-trivial fp16 values. */
	double sum = 0;
	for (size_t i = 0; i < c.n_weight_floats; i++) {
		assert_true(isfinite(c.weights[i]));
		sum += fabs(c.weights[i]);
	}
	assert_true(sum > 1.0);
	assert_null(nn_ckpt_find(&c, "no.such.tensor"));
	nn_ckpt_free(&c);
}

static void loads_tiny_6s_and_ft(void **state)
{
	(void)state;
	const char *names[] = {"tiny_htdemucs_6s.th", "tiny_ft_b.th", "tiny_ft_c.th",
	                       "tiny_ft_d.th"};
	for (size_t i = 0; i < 4; i++) {
		char path[1024], err[512] = "";
		fixture_path(path, sizeof path, names[i]);
		struct nn_ckpt c;
		assert_int_equal(nn_ckpt_load(path, &c, err, sizeof err), 0);
		assert_int_equal(c.klass, NN_PKG_HTDEMUCS);
		assert_true(c.n_tensors > 500);
		nn_ckpt_free(&c);
	}
}

static void half_conversion_is_exact(void **state)
{
	(void)state;
	assert_true(nn_half_to_float(0x3c00) == 1.0f);
	assert_true(nn_half_to_float(0xc000) == -2.0f);
	assert_true(nn_half_to_float(0x7bff) == 65504.0f);
	assert_true(nn_half_to_float(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
	assert_true(nn_half_to_float(0x03ff) == ldexpf(1023.0f, -24));
	assert_true(nn_half_to_float(0x0400) == ldexpf(1.0f, -14)); /* smallest normal */
	assert_true(isinf(nn_half_to_float(0x7c00)));
	assert_true(isnan(nn_half_to_float(0x7e00)));
	assert_true(signbit(nn_half_to_float(0x8000)));
	assert_true(nn_half_to_float(0x3555) == 0x1.554p-2f);
}

/* A view of storage st: offset, then (size, stride) pairs for nd dimensions. */
static struct nn_pk view(const struct nn_pk *st, int64_t offset, int nd, const int64_t *size_stride)
{
	struct nn_pk v = {.type = NN_PK_TENSOR};
	v.u.tensor.storage = st;
	v.u.tensor.offset = offset;
	v.u.tensor.ndim = nd;
	for (int k = 0; k < nd; k++) {
		v.u.tensor.size[k] = size_stride[2 * k];
		v.u.tensor.stride[k] = size_stride[2 * k + 1];
	}
	return v;
}

static uint32_t bits_of(float f)
{
	uint32_t b;
	memcpy(&b, &f, sizeof b);
	return b;
}

/* The vectorised path (views laid out back to back) against nn_half_to_float on every fp16
 * pattern (subnormals, inf, signalling and quiet nan) and against the raw bits of fp32, and
 * the stride walk over permuted and strided views of the same storage against it; both
 * also in pieces, as the two loading threads cut them. */
static void gather_paths_agree(void **state)
{
	(void)state;
	enum { N = 1 << 16, R = 256 };
	uint8_t *bytes = malloc(4 * N);
	float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *p = malloc(N * sizeof *p);
	assert_non_null(bytes);
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(p);
	uint64_t rng = 12345;
	for (int dt = 0; dt < 2; dt++) {
		struct nn_pk st = {.type = NN_PK_STORAGE};
		st.u.storage.dtype = dt == 0 ? NN_PK_F16 : NN_PK_F32;
		st.u.storage.numel = N;
		uint32_t raw[8] = {0x7f800000u, 0xff800000u, 0x7f800001u, 0x7fc00000u,
		                   0x00000001u, 0x807fffffu, 0x80000000u, 0x3f800000u};
		for (uint32_t k = 0; k < N; k++) {
			if (dt == 0) {
				bytes[2 * k] = (uint8_t)k;
				bytes[2 * k + 1] = (uint8_t)(k >> 8);
			} else {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				uint32_t r = k < 8 ? raw[k] : (uint32_t)(rng >> 32);
				for (int i = 0; i < 4; i++)
					bytes[4 * k + i] = (uint8_t)(r >> (8 * i));
			}
		}
		/* Back to back: (R, R) in C order. */
		struct nn_pk va = view(&st, 0, 2, (const int64_t[]){R, R, R, 1});
		nn_ckpt_gather(bytes, &va, a, 0, N);
		for (uint32_t k = 0; k < N; k++) {
			uint32_t want;
			if (dt == 0)
				want = bits_of(nn_half_to_float((uint16_t)k));
			else
				want = (uint32_t)bytes[4 * k] | (uint32_t)bytes[4 * k + 1] << 8 |
				       (uint32_t)bytes[4 * k + 2] << 16 |
				       (uint32_t)bytes[4 * k + 3] << 24;
			assert_int_equal(bits_of(a[k]), want);
		}
		/* Transposed: the stride walk. */
		struct nn_pk vb = view(&st, 0, 2, (const int64_t[]){R, 1, R, R});
		nn_ckpt_gather(bytes, &vb, b, 0, N);
		for (int i = 0; i < R; i++)
			for (int j = 0; j < R; j++)
				assert_int_equal(bits_of(b[i * R + j]), bits_of(a[j * R + i]));
		/* Both again in pieces cut anywhere. */
		const struct nn_pk *vs[2] = {&va, &vb};
		size_t cuts[] = {0, 1, 7777, 30001, N - 3, N};
		for (int w = 0; w < 2; w++) {
			for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
				nn_ckpt_gather(bytes, vs[w], p + cuts[c], cuts[c],
				               cuts[c + 1] - cuts[c]);
			assert_memory_equal(p, w ? b : a, N * sizeof *p);
		}
		/* Offset and strided (the walk), and back to back behind a size-1 dimension of
		 * any stride (the vectorised loop). */
		struct nn_pk vc = view(&st, 7, 3, (const int64_t[]){5, 600, 30, 2, 3, 61});
		nn_ckpt_gather(bytes, &vc, p, 0, 450);
		for (int i = 0; i < 5; i++)
			for (int j = 0; j < 30; j++)
				for (int k = 0; k < 3; k++)
					assert_int_equal(bits_of(p[(i * 30 + j) * 3 + k]),
					                 bits_of(a[7 + 600 * i + 2 * j + 61 * k]));
		struct nn_pk vd = view(&st, 1001, 3, (const int64_t[]){1, 5, 300, 7, 7, 1});
		nn_ckpt_gather(bytes, &vd, p, 5, 2095);
		assert_memory_equal(p, a + 1001 + 5, 2095 * sizeof *p);
	}
	free(bytes);
	free(a);
	free(b);
	free(p);
}

static int load_buf(const uint8_t *d, size_t n, char *err, size_t n_err)
{
	struct nn_ckpt c;
	int rc = nn_ckpt_load_mem(d, n, &c, err, n_err);
	if (rc == 0)
		nn_ckpt_free(&c);
	return rc;
}

static void refuses_truncated_files(void **state)
{
	(void)state;
	size_t n;
	uint8_t *d = slurp("tiny_htdemucs.th", &n);
	size_t cuts[] = {0, 1, 21, 100, n / 2, n - 100, n - 23, n - 1};
	for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
		char err[512] = "";
		int rc = load_buf(d, cuts[i], err, sizeof err);
		assert_int_not_equal(rc, 0);
		assert_true(strlen(err) > 10);
	}
	char err[512] = "";
	assert_int_equal(load_buf(d, n / 2, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "not a zip archive"));
	free(d);
}

static void refuses_flipped_structures(void **state)
{
	(void)state;
	size_t n;
	uint8_t *d = slurp("tiny_htdemucs.th", &n);
	char err[512];

	/* A stored member turned into a deflated one. Central headers: find "PK\1\2". */
	uint8_t *cd = NULL;
	for (size_t i = 0; i + 4 <= n; i++)
		if (memcmp(d + i, "PK\1\2", 4) == 0) {
			cd = d + i;
			break;
		}
	assert_non_null(cd);
	cd[10] = 8;
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EUNSUPP);
	assert_non_null(strstr(err, "compressed"));
	cd[10] = 0;
	/* Its local header offset pointing past the end. */
	uint8_t save[4];
	memcpy(save, cd + 42, 4);
	memset(cd + 42, 0x7f, 4);
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "local header"));
	memcpy(cd + 42, save, 4);
	/* The end record's signature. */
	uint8_t *eocd = d + n - 22;
	assert_memory_equal(eocd, "PK\5\6", 4);
	eocd[0] = 'X';
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	eocd[0] = 'P';
	/* Intact again. */
	assert_int_equal(load_buf(d, n, err, sizeof err), 0);
	free(d);
}

static void refuses_foreign_globals_and_quantised(void **state)
{
	(void)state;
	size_t n;
	uint8_t *d = slurp("tiny_htdemucs.th", &n);
	char err[512];
	patch(d, n, "collections\nOrderedDict", "collections\nOrderedDicx");
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "collections.OrderedDicx"));
	assert_non_null(strstr(err, "not allowed"));
	patch(d, n, "collections\nOrderedDicx", "collections\nOrderedDict");
	patch(d, n, "torch\nHalfStorage", "torch\nByteStorage");
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "torch.ByteStorage"));
	patch(d, n, "torch\nByteStorage", "torch\nHalfStorage");
	patch(d, n, "training_args", "__quantized__");
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EUNSUPP);
	assert_non_null(strstr(err, "diffq"));
	patch(d, n, "__quantized__", "training_args");
	patch(d, n, "demucs.htdemucs\nHTDemucs", "demucs.htdemucs\nHTDemucz");
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "HTDemucz"));
	free(d);
}

static void refuses_foreign_files(void **state)
{
	(void)state;
	size_t n;
	uint8_t *d = slurp("tiny_input.f32", &n);
	char err[512];
	assert_int_equal(load_buf(d, n, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "not a zip"));
	free(d);
	/* A legacy torch pickle starts with the protocol opcode. */
	uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46};
	assert_int_equal(load_buf(legacy, sizeof legacy, err, sizeof err), SFA_EUNSUPP);
	assert_non_null(strstr(err, "legacy"));
	/* A valid zip without data.pkl: one stored member "a/b.txt" holding "hi". */
	uint8_t z[200];
	size_t p = 0;
	const uint8_t lh[] = {'P', 'K', 3, 4, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	                      0,   0,   0, 2, 0,  0, 0, 2, 0, 0, 0, 7, 0, 0, 0};
	memcpy(z + p, lh, sizeof lh);
	p += sizeof lh;
	memcpy(z + p, "a/b.txtHI", 9);
	p += 9;
	size_t cdo = p;
	uint8_t ch[46] = {'P', 'K', 1, 2, 20, 0, 20, 0};
	ch[20] = 2;
	ch[24] = 2;
	ch[28] = 7;
	memcpy(z + p, ch, 46);
	p += 46;
	memcpy(z + p, "a/b.txt", 7);
	p += 7;
	uint8_t e[22] = {'P', 'K', 5, 6};
	e[8] = 1;
	e[10] = 1;
	e[12] = 53;
	e[16] = (uint8_t)cdo;
	memcpy(z + p, e, 22);
	p += 22;
	struct nn_zip zz;
	assert_int_equal(nn_zip_parse(z, p, &zz, err, sizeof err), 0);
	const struct nn_zip_entry *ent = nn_zip_find(&zz, "a/b.txt", 7);
	assert_non_null(ent);
	assert_int_equal(ent->size_bytes, 2);
	assert_memory_equal(ent->data, "HI", 2);
	nn_zip_free(&zz);
	assert_int_equal(load_buf(z, p, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "data.pkl"));
}

static void random_corruption_never_crashes(void **state)
{
	(void)state;
	size_t n;
	uint8_t *orig = slurp("tiny_htdemucs.th", &n);
	uint8_t *d = malloc(n);
	assert_non_null(d);
	uint64_t s = 0x9e3779b97f4a7c15u;
	size_t n_fail = 0;
	for (int iter = 0; iter < 300; iter++) {
		memcpy(d, orig, n);
		int k = 1 + iter % 8;
		for (int j = 0; j < k; j++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			/* Aim half the flips at the pickle and the directory, where they matter. */
			size_t at = (iter & 1) ? (size_t)(s % 64300) : (size_t)(s % n);
			if (iter % 3 == 0)
				at = n - 1 - (size_t)(s % 40000);
			d[at] ^= (uint8_t)(1u << (s >> 60 & 7));
		}
		char err[512] = "";
		int rc = load_buf(d, n, err, sizeof err);
		if (rc != 0) {
			n_fail++;
			assert_true(strlen(err) > 5);
		}
	}
	assert_true(n_fail > 50);
	free(d);
	free(orig);
}

/* Patches bytes of the pickle (same length) and tries to build the network. */
static int build_patched(const char *from, size_t n_from, const char *to, char *err, size_t n_err)
{
	size_t n;
	uint8_t *d = slurp("tiny_htdemucs.th", &n);
	int found = 0;
	for (size_t i = 0; i + n_from <= n; i++) {
		if (memcmp(d + i, from, n_from) == 0) {
			memcpy(d + i, to, n_from);
			found = 1;
			break;
		}
	}
	if (!found)
		fail_msg("pattern not found");
	struct nn_ckpt c;
	int rc = nn_ckpt_load_mem(d, n, &c, err, n_err);
	free(d);
	if (rc)
		return rc;
	struct nn_htdemucs *m = NULL;
	rc = nn_htdemucs_build(&c, &m, err, n_err);
	if (rc == 0)
		nn_htdemucs_free(m);
	else
		nn_ckpt_free(&c);
	return rc;
}

static void architecture_is_checked_both_ways(void **state)
{
	(void)state;
	char err[512];
	/* Unpatched: builds, with the kwargs' shapes. */
	assert_int_equal(build_patched("bottom_channels", 15, "bottom_channels", err, sizeof err),
	                 0);
	/* bottom_channels 32 -> 16: the bottleneck convs no longer fit. */
	static const char bc[] = "bottom_channelsq!K ", bc2[] = "bottom_channelsq!K\x10";
	assert_int_equal(build_patched(bc, sizeof bc - 1, bc2, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "channel_upsampler"));
	assert_non_null(strstr(err, "(32, 64, 1)"));
	assert_non_null(strstr(err, "(16, 64, 1)"));
	/* A tensor renamed: the expected one is missing. */
	assert_int_equal(
		build_patched("encoder.0.conv.bias", 19, "encoder.0.conv.biaz", err, sizeof err),
		SFA_EFORMAT);
	assert_non_null(strstr(err, "lacks tensor 'encoder.0.conv.bias'"));
	/* t_layers 5 -> 3: layers 3 and 4 are left over. */
	static const char tl[] = "t_layersq\"K\x05", tl2[] = "t_layersq\"K\x03";
	assert_int_equal(build_patched(tl, sizeof tl - 1, tl2, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "crosstransformer.layers"));
	assert_non_null(strstr(err, "does not use"));
	/* An option this engine does not implement. */
	static const char sp[] = "t_sparse_self_attnq9\x89", sp2[] = "t_sparse_self_attnq9\x88";
	assert_int_equal(build_patched(sp, sizeof sp - 1, sp2, err, sizeof err), SFA_EUNSUPP);
	assert_non_null(strstr(err, "t_sparse_self_attn"));
}

static void other_classes_are_refused(void **state)
{
	(void)state;
	char path[1024], err[512];
	fixture_path(path, sizeof path, "tiny_htdemucs.th");
	struct nn_ckpt c;
	assert_int_equal(nn_ckpt_load(path, &c, err, sizeof err), 0);
	c.klass = NN_PKG_HDEMUCS; /* as an mdx_extra member would be */
	struct nn_htdemucs *m;
	assert_int_equal(nn_htdemucs_build(&c, &m, err, sizeof err), SFA_EUNSUPP);
	assert_non_null(strstr(err, "HDemucs"));
	nn_ckpt_free(&c);
}

static void strided_views_and_float_storage(void **state)
{
	(void)state;
	char path[1024], err[512];
	fixture_path(path, sizeof path, "tiny_package.th");
	struct nn_ckpt c;
	assert_int_equal(nn_ckpt_load(path, &c, err, sizeof err), 0);
	struct nn_tensor *t = nn_ckpt_find(&c, "b.t"); /* offset 1, size (2, 2), stride (1, 3) */
	assert_non_null(t);
	assert_true(t->data[0] == -2.0f && t->data[1] == 0.25f && t->data[2] == 0.5f &&
	            t->data[3] == -1.0f);
	t = nn_ckpt_find(&c, "a.weight");
	assert_true(t->data[0] == 1.0f && t->data[5] == -1.0f);
	const struct nn_pk *seg = nn_kw(&c, "segment");
	assert_int_equal(seg->type, NN_PK_FRACTION);
	assert_int_equal(seg->u.frac.num, 39);
	long v;
	assert_int_equal(nn_kw_int(&c, "channels", 0, &v, err, sizeof err), 0);
	assert_int_equal(v, 4);
	assert_int_equal(nn_kw_int(&c, "sources", 0, &v, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "sources"));
	/* Not a full HTDemucs: the build names the first missing tensor. */
	struct nn_htdemucs *m;
	assert_int_equal(nn_htdemucs_build(&c, &m, err, sizeof err), SFA_EFORMAT);
	assert_non_null(strstr(err, "lacks tensor"));
	nn_ckpt_free(&c);
}

static void bag_files(void **state)
{
	(void)state;
	struct nn_bag_spec b;
	char err[256];
	static const char ft[] = "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\n"
				 "weights: [\n  [1., 0., 0., 0.],\n  [0., 1., 0., 0.],\n"
				 "  [0., 0., 1., 0.],\n  [0., 0., 0., 1.],\n]\n";
	assert_int_equal(nn_bag_parse(ft, sizeof ft - 1, &b, err, sizeof err), 0);
	assert_int_equal(b.n_models, 4);
	assert_string_equal(b.models[2], "92cfc3b6");
	assert_true(b.has_weights);
	assert_int_equal(b.n_weight_cols, 4);
	assert_true(b.weights[3][3] == 1.0 && b.weights[3][0] == 0.0);
	assert_false(b.has_segment);
	static const char mdx[] = "models: ['e51eebcc', 'a1d90b5c', '5d2d6c55', 'cfa93e08']\n"
				  "segment: 44\n";
	assert_int_equal(nn_bag_parse(mdx, sizeof mdx - 1, &b, err, sizeof err), 0);
	assert_true(b.has_segment && b.segment_s == 44.0);
	static const char blk[] = "# comment\nmodels:\n- a1\n- \"b2\"  # two\nweights:\n"
				  "- [1, 0.5]\n- [0., 2]\nsegment: 7.8\nignored: [x, [y]]\n";
	assert_int_equal(nn_bag_parse(blk, sizeof blk - 1, &b, err, sizeof err), 0);
	assert_int_equal(b.n_models, 2);
	assert_string_equal(b.models[1], "b2");
	assert_true(b.weights[1][1] == 2.0 && b.segment_s == 7.8);
	const char *bad[] = {
		"models: ['../etc/passwd']\n",      /* not a plain file name */
		"models: [a, b]\nweights: [[1]]\n", /* one row for two models */
		"models: [a]\nweights: [[1, x]]\n", /* not a number */
		"models: [a\n",                     /* unterminated */
		"weights: [[1]]\n",                 /* no models */
		"models: 'abc\n",                   /* unterminated quote */
		"  models: [a]\n",                  /* key not at column 0 */
		"models: [[[[a]]]]\n",              /* too deep */
		"segment: -1\nmodels: [a]\n",       /* bad segment */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int rc = nn_bag_parse(bad[i], strlen(bad[i]), &b, err, sizeof err);
		if (rc == 0)
			fail_msg("accepted bad bag file %zu: %s", i, bad[i]);
		assert_true(strlen(err) > 5);
	}
}

static void model_names_resolve(void **state)
{
	(void)state;
	char err[512];
	struct nn_model *m = NULL;
	/* Built-in name, folder without its file: says what to fetch. */
	assert_int_equal(nn_model_open("htdemucs_ft", fixtures, &m, err, sizeof err),
	                 SFA_ENOTFOUND);
	assert_non_null(strstr(err, "f7e0c4bc"));
	assert_non_null(strstr(err, "sfa models fetch htdemucs_ft"));
	/* A bag file of the folder is found by name; a bare stem as a signature. */
	assert_int_equal(nn_model_open("tiny_htdemucs_ft", fixtures, &m, err, sizeof err), 0);
	assert_int_equal(nn_model_info(m)->n_members, 4);
	nn_model_free(m);
	assert_int_equal(nn_model_open("tiny_htdemucs_6s", fixtures, &m, err, sizeof err), 0);
	assert_int_equal(nn_model_info(m)->n_sources, 6);
	assert_string_equal(nn_model_info(m)->sources[5], "piano");
	nn_model_free(m);
	assert_int_equal(nn_model_open("nope", fixtures, &m, err, sizeof err), SFA_ENOTFOUND);
	assert_int_equal(nn_model_open("a b", fixtures, &m, err, sizeof err), SFA_EINVAL);
}

static int pk(const char *bytes, size_t n, struct arena *a, const struct nn_pk **out, char *err)
{
	return nn_pickle_load((const uint8_t *)bytes, n, a, out, err, 512);
}

static void pickle_fractions_and_errors(void **state)
{
	(void)state;
	struct arena a;
	arena_init(&a, 1 << 20);
	const struct nn_pk *o;
	char err[512];
	/* Fraction('39/5') as older Pythons pickle it. */
	static const char s1[] = "\x80\x02"
				 "cfractions\nFraction\nX\x04\x00\x00\x00"
				 "39/5\x85R.";
	assert_int_equal(pk(s1, sizeof s1 - 1, &a, &o, err), 0);
	assert_int_equal(o->type, NN_PK_FRACTION);
	assert_int_equal(o->u.frac.num, 39);
	assert_int_equal(o->u.frac.den, 5);
	/* Fraction(78, 10) reduces. */
	static const char s2[] = "\x80\x02"
				 "cfractions\nFraction\nKNK\x0a\x86R.";
	assert_int_equal(pk(s2, sizeof s2 - 1, &a, &o, err), 0);
	assert_int_equal(o->u.frac.num, 39);
	assert_int_equal(o->u.frac.den, 5);
	/* A decimal string. */
	static const char s3[] = "\x80\x02"
				 "cfractions\nFraction\nX\x03\x00\x00\x00"
				 "7.8\x85R.";
	assert_int_equal(pk(s3, sizeof s3 - 1, &a, &o, err), 0);
	assert_int_equal(o->u.frac.num, 39);
	assert_int_equal(o->u.frac.den, 5);
	/* os.system is the classic pickle exploit. */
	static const char s4[] = "\x80\x02"
				 "cos\nsystem\nX\x02\x00\x00\x00ls\x85R.";
	assert_int_equal(pk(s4, sizeof s4 - 1, &a, &o, err), SFA_EFORMAT);
	assert_non_null(strstr(err, "'os.system' is not allowed"));
	/* Unknown opcode (INST 'i'). */
	static const char s5[] = "\x80\x02i";
	assert_int_equal(pk(s5, sizeof s5 - 1, &a, &o, err), SFA_EFORMAT);
	assert_non_null(strstr(err, "opcode 0x69"));
	/* No STOP. */
	static const char s6[] = "\x80\x02K\x01";
	assert_int_equal(pk(s6, sizeof s6 - 1, &a, &o, err), SFA_EFORMAT);
	assert_non_null(strstr(err, "STOP"));
	/* String longer than the data. */
	static const char s7[] = "\x80\x02X\xff\x00\x00\x00ab";
	assert_int_equal(pk(s7, sizeof s7 - 1, &a, &o, err), SFA_EFORMAT);
	assert_non_null(strstr(err, "truncated"));
	/* Stack underflow, GET of an unset memo slot, calling a class marker. */
	static const char s8[] = "\x80\x02\x86.";
	assert_int_equal(pk(s8, sizeof s8 - 1, &a, &o, err), SFA_EFORMAT);
	static const char s9[] = "\x80\x02h\x07.";
	assert_int_equal(pk(s9, sizeof s9 - 1, &a, &o, err), SFA_EFORMAT);
	static const char s10[] = "\x80\x02"
				  "cdemucs.htdemucs\nHTDemucs\n)R.";
	assert_int_equal(pk(s10, sizeof s10 - 1, &a, &o, err), SFA_EFORMAT);
	assert_non_null(strstr(err, "calling"));
	/* Containers, memo, LONG1, floats, nested dicts. */
	static const char s11[] = "\x80\x02}q\x00(X\x01\x00\x00\x00"
				  "a]q\x01(K\x01\x8a\x02\xff\x7fG?\xf0\x00\x00\x00\x00\x00\x00"
				  "eX\x01\x00\x00\x00"
				  "bh\x01u.";
	assert_int_equal(pk(s11, sizeof s11 - 1, &a, &o, err), 0);
	assert_int_equal(o->type, NN_PK_DICT);
	const struct nn_pk *l = nn_pk_get(o, "a");
	assert_non_null(l);
	assert_int_equal(l->type, NN_PK_LIST);
	assert_int_equal(l->u.seq.n, 3);
	assert_int_equal(l->u.seq.items[1]->u.i, 0x7fff);
	assert_true(l->u.seq.items[2]->u.f == 1.0);
	assert_ptr_equal(nn_pk_get(o, "b"), l);
	arena_free(&a);
}

int main(int argc, char **argv)
{
	fixtures = argc > 1 ? argv[1] : "tests/fixtures/nn";
	nn_test_fixtures = fixtures;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(loads_tiny_htdemucs),
		cmocka_unit_test(loads_tiny_6s_and_ft),
		cmocka_unit_test(half_conversion_is_exact),
		cmocka_unit_test(gather_paths_agree),
		cmocka_unit_test(refuses_truncated_files),
		cmocka_unit_test(refuses_flipped_structures),
		cmocka_unit_test(refuses_foreign_globals_and_quantised),
		cmocka_unit_test(refuses_foreign_files),
		cmocka_unit_test(random_corruption_never_crashes),
		cmocka_unit_test(pickle_fractions_and_errors),
		cmocka_unit_test(architecture_is_checked_both_ways),
		cmocka_unit_test(other_classes_are_refused),
		cmocka_unit_test(strided_views_and_float_storage),
		cmocka_unit_test(bag_files),
		cmocka_unit_test(model_names_resolve),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
