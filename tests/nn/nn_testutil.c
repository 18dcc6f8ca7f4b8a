/* nn_testutil.c - see nn_testutil.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn_testutil.h"

const char *nn_test_fixtures = "tests/fixtures/nn";

void *nn_test_read(const char *name, size_t *n_bytes)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", nn_test_fixtures, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("missing fixture %s (copy it from the Demucs reference data)", path);
	fseek(f, 0, SEEK_END);
	long len = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *d = malloc((size_t)len);
	assert_non_null(d);
	assert_int_equal(fread(d, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	*n_bytes = (size_t)len;
	return d;
}

float *nn_test_read_f32(const char *name, size_t *n)
{
	size_t n_bytes;
	float *d = nn_test_read(name, &n_bytes);
	*n = n_bytes / sizeof(float);
	return d;
}

struct nn_model *nn_test_open_model(const char *name)
{
	char path[1024], err[512] = "";
	snprintf(path, sizeof path, "%s/%s", nn_test_fixtures, name);
	struct nn_model *m = NULL;
	if (nn_model_open(path, NULL, &m, err, sizeof err))
		fail_msg("cannot open %s: %s", path, err);
	return m;
}

float *nn_test_separate(const struct nn_model *m, const float *in, size_t frames,
                        const struct nn_separate_opts *o)
{
	char err[512] = "";
	float *out = NULL;
	if (nn_separate(m, in, frames, o, &out, err, sizeof err))
		fail_msg("nn_separate: %s", err);
	return out;
}

void nn_test_diff(const float *a, const float *ref, size_t n, double *max_abs, double *rel_l2)
{
	double num = 0, den = 0;
	*max_abs = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - ref[i];
		if (fabs(d) > *max_abs)
			*max_abs = fabs(d);
		num += d * d;
		den += (double)ref[i] * ref[i];
	}
	*rel_l2 = sqrt(num / den);
}

void nn_test_run_case(const char *model, const char *input, int split, const char *ref_name)
{
	struct nn_model *m = nn_test_open_model(model);
	const struct nn_model_info *info = nn_model_info(m);
	size_t n, nr;
	float *in = nn_test_read_f32(input, &n);
	size_t frames = n / 2;
	struct nn_separate_opts o;
	nn_separate_opts_init(&o);
	o.shifts = 0;
	o.split = split;
	float *out = nn_test_separate(m, in, frames, &o);
	float *ref = nn_test_read_f32(ref_name, &nr);
	assert_int_equal(nr, (size_t)info->n_sources * 2 * frames);
	double md, rel;
	nn_test_diff(out, ref, nr, &md, &rel);
	printf("# %-32s %-8s max|diff| %.3g  rel L2 %.3g\n", model, split ? "split" : "nosplit", md,
	       rel);
	if (!(md <= 1e-4 && rel <= 1e-5))
		fail_msg("%s: max|diff| %.3g (limit 1e-4), rel L2 %.3g (limit 1e-5)", model, md,
		         rel);
	free(ref);
	free(out);
	free(in);
	nn_model_free(m);
}
