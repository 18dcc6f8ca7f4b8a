/* netutil.c - see netutil.h. */
#include "nn/netutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/ops.h"
#include "util/err.h"

/* Returns the data of tensor `name` if its shape is exactly dims[0..nd); records the
 * first error otherwise. */
const float *nn_bindv(struct nn_binder *bd, const char *name, int nd, const long *dims)
{
	if (bd->rc)
		return NULL;
	struct nn_tensor *t = nn_ckpt_find(bd->c, name);
	char want[128] = "", got[128] = "";
	size_t o = 0;
	for (int i = 0; i < nd && o < sizeof want; i++)
		o += (size_t)snprintf(want + o, sizeof want - o, "%s%ld", i ? ", " : "", dims[i]);
	if (!t) {
		bd->rc = sfa_err(bd->err, bd->n_err, SFA_EFORMAT,
		                 "checkpoint lacks tensor '%s' (%s) that its kwargs imply", name,
		                 want);
		return NULL;
	}
	int ok = t->ndim == nd;
	for (int i = 0; ok && i < nd; i++)
		ok = t->shape[i] == dims[i];
	if (!ok) {
		o = 0;
		for (int i = 0; i < t->ndim && o < sizeof got; i++)
			o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "",
			                      (long long)t->shape[i]);
		bd->rc = sfa_err(
			bd->err, bd->n_err, SFA_EFORMAT,
			"checkpoint tensor '%s' has shape (%s), the architecture needs (%s)", name,
			got, want);
		return NULL;
	}
	t->used = true;
	return t->data;
}

int nn_net_read_sources(const struct nn_ckpt *c, struct nn_htdemucs_info *info, char *err,
                        size_t n_err)
{
	const struct nn_pk *src = nn_kw(c, "sources");
	if (!src && c->args && c->args->u.seq.n >= 1)
		src = c->args->u.seq.items[0];
	if (c->args && c->args->u.seq.n > 1)
		return sfa_err(err, n_err, SFA_EUNSUPP,
		               "HTDemucs with positional arguments beyond "
		               "'sources' is not supported");
	if (!src || (src->type != NN_PK_LIST && src->type != NN_PK_TUPLE))
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "checkpoint kwargs lack the list of sources");
	if (src->u.seq.n < 1 || src->u.seq.n > NN_MAX_SOURCES)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "checkpoint has %zu sources (1..%d allowed)", src->u.seq.n,
		               NN_MAX_SOURCES);
	info->n_sources = (int)src->u.seq.n;
	for (size_t i = 0; i < src->u.seq.n; i++) {
		const struct nn_pk *s = src->u.seq.items[i];
		if (s->type != NN_PK_STR || s->u.str.n == 0 || s->u.str.n >= NN_SOURCE_NAME_BYTES)
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "checkpoint source %zu has a bad name", i);
		for (size_t j = 0; j < s->u.str.n; j++) {
			char ch = s->u.str.p[j];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
				return sfa_err(err, n_err, SFA_EFORMAT,
				               "checkpoint source name '%s' has unsafe characters",
				               s->u.str.p);
		}
		memcpy(info->sources[i], s->u.str.p, s->u.str.n + 1);
	}
	return 0;
}

int nn_net_read_segment(const struct nn_ckpt *c, struct nn_htdemucs_info *info, char *err,
                        size_t n_err)
{
	const struct nn_pk *seg = nn_kw(c, "segment");
	long num = 10, den = 1;
	if (seg) {
		if (seg->type == NN_PK_FRACTION) {
			num = (long)seg->u.frac.num;
			den = (long)seg->u.frac.den;
		} else if (seg->type == NN_PK_INT) {
			num = (long)seg->u.i;
		} else if (seg->type == NN_PK_FLOAT && seg->u.f > 0 && seg->u.f < 3600) {
			/* Python's int(float_segment * samplerate) truncates the product. */
			double len = floor(seg->u.f * info->samplerate);
			num = (long)len;
			den = info->samplerate;
		} else {
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "checkpoint kwarg 'segment' is not usable");
		}
	}
	if (num <= 0 || den <= 0 || num / den > 3600)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "checkpoint segment %ld/%ld is out of range", num, den);
	info->segment_num = num;
	info->segment_den = den;
	info->training_length = (int)((long long)num * info->samplerate / den);
	return 0;
}

int nn_binder_leftover(const struct nn_ckpt *c, char *err, size_t n_err)
{
	for (size_t i = 0; i < c->n_tensors; i++)
		if (!c->tensors[i].used)
			return sfa_err(
				err, n_err, SFA_EFORMAT,
				"checkpoint has tensor '%s' that the architecture in its kwargs "
				"does not use",
				c->tensors[i].name);
	return 0;
}

void nn_binder_reset(struct nn_ckpt *c)
{
	for (size_t i = 0; i < c->n_tensors; i++)
		c->tensors[i].used = false;
}

int nn_layer_status(const struct nn_ws *ws, const volatile int *cancel)
{
	if (ws->failed)
		return SFA_ENOMEM;
	if (cancel && *cancel)
		return SFA_ECANCELED;
	return 0;
}

void nn_mean_std(const float *x, size_t n, double *mean, double *std)
{
	double s = 0.0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	double mu = s / (double)n;
	double ss = 0.0;
	for (size_t i = 0; i < n; i++) {
		double d = x[i] - mu;
		ss += d * d;
	}
	*mean = mu;
	*std = n > 1 ? sqrt(ss / (double)(n - 1)) : 0.0; /* unbiased, as torch.std */
}

void nn_standardize(const float *x, size_t n, float *out, double *mean, double *std)
{
	nn_mean_std(x, n, mean, std);
	float m = (float)*mean, sd = (float)(1e-5 + *std);
	for (size_t i = 0; i < n; i++)
		out[i] = (x[i] - m) / sd;
}

int nn_tile_rows(size_t budget, size_t row_floats, int h)
{
	int nr = (int)(budget / row_floats);
	if (nr < 1)
		nr = 1;
	if (nr > h)
		nr = h;
	return nr;
}

int nn_net_take(struct nn_ckpt *ckpt, int nfft, struct nn_htdemucs_info *info, struct nn_ckpt *dst,
                struct nn_stft **stft, char *err, size_t n_err)
{
	int rc = nn_stft_new(nfft, stft, err, n_err);
	if (rc)
		return rc;
	nn_ops_init();
	info->n_params = ckpt->n_weight_floats;
	*dst = *ckpt;
	memset(ckpt, 0, sizeof *ckpt);
	return 0;
}

void nn_net_release(struct nn_ckpt *weights, struct nn_stft *stft)
{
	nn_stft_free(stft);
	nn_ckpt_free(weights);
}
