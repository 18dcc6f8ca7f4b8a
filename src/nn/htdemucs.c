/* htdemucs.c - see htdemucs.h.
 *
 * Layout conventions: the frequency branch is (channels, freq, frames) and the time branch
 * (channels, samples), both row-major with the last axis fastest. Transformer tokens are
 * (tokens, dim) rows: frequency tokens ordered frame-major then frequency ("b (t1 fr) c"),
 * as HTDemucs rearranges them.
 *
 * Workspace discipline (workspace.h is a stack): the forward pass first reserves every encoder
 * output, outermost level first; they double as the skip connections. The inputs and
 * each layer's temporaries are pushed above and popped when the layer ends. Decoder
 * level k adds its input into skip k in place and pops the stack down to just above
 * skip k (its input and every deeper skip are dead by then) before pushing its output,
 * so the peak is "all skips + the bottleneck's working set" (~165 MB for htdemucs on a
 * 7.8 s segment), not the sum of the layers.
 *
 * Memory-bound layers are tiled: frequency-branch DConv and decoders run in tiles of
 * frequency rows (everything before the transposed conv is row-local); the time branch's
 * DConv, whose GroupNorm spans a whole 86k-sample row, recomputes its cheap 1x1
 * expansion per tile instead of storing it.
 *
 * Debug hook names follow the reference layer dumps (see bench/separate/layer_check.c).
 */
#include "nn/htdemucs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/netutil.h"
#include "nn/ops.h"
#include "nn/stft.h"
#include "util/err.h"

void (*nn_htdemucs_debug_hook)(const char *name, const float *data, size_t n);

enum { MAX_DEPTH = 8, MAX_DCONV = 4, MAX_TLAYERS = 16 };

static const float GN_EPS = 1e-5f, LN_EPS = 1e-5f;

struct layer_w {
	int chin, chout;      /* enc: conv in/out; dec: the layer's channels in, conv_tr out */
	int ker, stride, pad; /* main conv / conv_tr */
	const float *w, *b;   /* conv (enc) or conv_tr (dec) */
	const float *rw, *rb; /* rewrite conv, NULL without rewrite */
	int rk;               /* rewrite kernel size (square for the frequency branch) */
	int n_dconv;          /* 0 = no DConv */
	int dconv_hidden;
	struct nn_dconv_w dconv[MAX_DCONV];
};

struct tlayer_w {
	int cross;
	const float *in_w, *in_b, *out_w, *out_b, *l1w, *l1b, *l2w, *l2b;
	const float *n1w, *n1b, *n2w, *n2b, *n3w, *n3b, *now, *nob, *g1, *g2;
};

struct nn_htdemucs {
	struct nn_htdemucs_info info;
	struct nn_ckpt ckpt; /* owns the weights */
	struct nn_stft *stft;
	int nfft, depth, dconv_comp, context, context_enc, bottom, dim, heads, hidden, t_layers;
	int classic_parity;
	float freq_emb_w; /* 0 = no frequency embedding */
	float emb_scale, t_max_period, t_weight_pos;
	const float *freq_emb; /* (freq_emb_rows, channels) */
	int freq_emb_rows;
	struct layer_w enc[MAX_DEPTH], tenc[MAX_DEPTH], dec[MAX_DEPTH], tdec[MAX_DEPTH];
	const float *up_w, *up_b, *down_w, *down_b, *upt_w, *upt_b, *downt_w, *downt_b;
	const float *nin_w, *nin_b, *nint_w, *nint_b;
	struct tlayer_w tl[MAX_TLAYERS], tlt[MAX_TLAYERS];
	int kernel, stride;
	int cz[MAX_DEPTH + 1]; /* frequency-branch channels at each level */
	int ct[MAX_DEPTH + 1]; /* time-branch channels at each level */
	int fz[MAX_DEPTH + 1]; /* frequency rows at each level (fz[0] = nfft/2) */
};

/* Lengths for one chunk of `len` samples. */
struct shapes {
	int frames;            /* STFT frames T */
	int lt[MAX_DEPTH + 1]; /* time-branch length at each level */
};

static int make_shapes(const struct nn_htdemucs *m, int len, struct shapes *sh)
{
	int hop = m->nfft / 4;
	if (len < m->nfft)
		return -1;
	sh->frames = (len + hop - 1) / hop;
	sh->lt[0] = len;
	for (int k = 0; k < m->depth; k++) {
		int l = sh->lt[k], s = m->stride;
		int lp = l % s ? l + s - l % s : l;
		sh->lt[k + 1] = nn_conv_out(lp, m->kernel, s, m->kernel / 4, 1);
		if (sh->lt[k + 1] < 1)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Building: kwargs -> architecture -> tensor list checked against the checkpoint.     */

static void bind_dconv(struct nn_binder *bd, struct layer_w *l, const char *prefix, int ch,
                       int depth, int comp)
{
	int hid = (int)(ch / comp);
	l->n_dconv = depth;
	l->dconv_hidden = hid;
	for (int d = 0; d < depth; d++) {
		char n[160];
		struct nn_dconv_w *w = &l->dconv[d];
#define DN(suffix) (snprintf(n, sizeof n, "%s.dconv.layers.%d.%s", prefix, d, suffix), n)
		w->c1w = NN_BIND(bd, DN("0.weight"), hid, ch, 3);
		w->c1b = NN_BIND(bd, DN("0.bias"), hid);
		w->g1w = NN_BIND(bd, DN("1.weight"), hid);
		w->g1b = NN_BIND(bd, DN("1.bias"), hid);
		w->c2w = NN_BIND(bd, DN("3.weight"), 2 * ch, hid, 1);
		w->c2b = NN_BIND(bd, DN("3.bias"), 2 * ch);
		w->g2w = NN_BIND(bd, DN("4.weight"), 2 * ch);
		w->g2b = NN_BIND(bd, DN("4.bias"), 2 * ch);
		w->scale = NN_BIND(bd, DN("6.scale"), ch);
#undef DN
	}
}

static void bind_tlayer(struct nn_binder *bd, struct tlayer_w *w, const char *prefix, int cross,
                        int dim, int hidden)
{
	char n[160];
	const char *attn = cross ? "cross_attn" : "self_attn";
	w->cross = cross;
#define TN(suffix) (snprintf(n, sizeof n, "%s.%s", prefix, suffix), n)
#define AN(suffix) (snprintf(n, sizeof n, "%s.%s.%s", prefix, attn, suffix), n)
	w->in_w = NN_BIND(bd, AN("in_proj_weight"), 3 * dim, dim);
	w->in_b = NN_BIND(bd, AN("in_proj_bias"), 3 * dim);
	w->out_w = NN_BIND(bd, AN("out_proj.weight"), dim, dim);
	w->out_b = NN_BIND(bd, AN("out_proj.bias"), dim);
	w->l1w = NN_BIND(bd, TN("linear1.weight"), hidden, dim);
	w->l1b = NN_BIND(bd, TN("linear1.bias"), hidden);
	w->l2w = NN_BIND(bd, TN("linear2.weight"), dim, hidden);
	w->l2b = NN_BIND(bd, TN("linear2.bias"), dim);
	w->n1w = NN_BIND(bd, TN("norm1.weight"), dim);
	w->n1b = NN_BIND(bd, TN("norm1.bias"), dim);
	w->n2w = NN_BIND(bd, TN("norm2.weight"), dim);
	w->n2b = NN_BIND(bd, TN("norm2.bias"), dim);
	if (cross) {
		w->n3w = NN_BIND(bd, TN("norm3.weight"), dim);
		w->n3b = NN_BIND(bd, TN("norm3.bias"), dim);
	}
	w->now = NN_BIND(bd, TN("norm_out.weight"), dim);
	w->nob = NN_BIND(bd, TN("norm_out.bias"), dim);
	w->g1 = NN_BIND(bd, TN("gamma_1.scale"), dim);
	w->g2 = NN_BIND(bd, TN("gamma_2.scale"), dim);
#undef TN
#undef AN
}

/* Refuses a kwarg whose value differs from the only one this engine implements. */
static int require_bool(const struct nn_ckpt *c, const char *key, bool def, bool want, char *err,
                        size_t n_err)
{
	bool v;
	int rc = nn_kw_bool(c, key, def, &v, err, n_err);
	if (rc)
		return rc;
	if (v != want)
		return sfa_err(err, n_err, SFA_EUNSUPP, "HTDemucs option %s=%s is not supported",
		               key, v ? "True" : "False");
	return 0;
}

static int require_int(const struct nn_ckpt *c, const char *key, long def, long want, char *err,
                       size_t n_err)
{
	long v;
	int rc = nn_kw_int(c, key, def, &v, err, n_err);
	if (rc)
		return rc;
	if (v != want)
		return sfa_err(err, n_err, SFA_EUNSUPP, "HTDemucs option %s=%ld is not supported",
		               key, v);
	return 0;
}

int nn_htdemucs_build(struct nn_ckpt *ckpt, struct nn_htdemucs **out, char *err, size_t n_err)
{
	if (ckpt->klass != NN_PKG_HTDEMUCS)
		return sfa_err(err, n_err, SFA_EUNSUPP,
		               "%s is not an HTDemucs checkpoint (models of that class are not "
		               "supported)",
		               nn_pk_global_name(ckpt->klass));
	struct nn_htdemucs *m = calloc(1, sizeof *m);
	if (!m)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	struct nn_htdemucs_info *info = &m->info;
	int rc;
	long audio_channels, channels, growth, nfft, depth, kernel, stride, context, context_enc,
		norm_starts, dconv_mode, dconv_depth, dconv_comp, bottom, t_layers, t_heads,
		samplerate, t_sin_shift;
	double freq_emb, emb_scale, t_hidden_scale, t_max_period, t_weight_pos;
	bool rewrite, cac, t_cross_first;
	const char *t_emb;
	const struct nn_pk *ch_time = nn_kw(ckpt, "channels_time");
	const struct nn_pk *mf = nn_kw(ckpt, "multi_freqs");
#define KW(call) NN_TRY(rc, call, fail)
	KW(nn_kw_int(ckpt, "audio_channels", 2, &audio_channels, err, n_err));
	KW(nn_kw_int(ckpt, "channels", 48, &channels, err, n_err));
	KW(nn_kw_int(ckpt, "growth", 2, &growth, err, n_err));
	KW(nn_kw_int(ckpt, "nfft", 4096, &nfft, err, n_err));
	KW(nn_kw_int(ckpt, "depth", 4, &depth, err, n_err));
	KW(nn_kw_int(ckpt, "kernel_size", 8, &kernel, err, n_err));
	KW(nn_kw_int(ckpt, "stride", 4, &stride, err, n_err));
	KW(nn_kw_int(ckpt, "context", 1, &context, err, n_err));
	KW(nn_kw_int(ckpt, "context_enc", 0, &context_enc, err, n_err));
	KW(nn_kw_int(ckpt, "norm_starts", 4, &norm_starts, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_mode", 1, &dconv_mode, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_depth", 2, &dconv_depth, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_comp", 8, &dconv_comp, err, n_err));
	KW(nn_kw_int(ckpt, "bottom_channels", 0, &bottom, err, n_err));
	KW(nn_kw_int(ckpt, "t_layers", 5, &t_layers, err, n_err));
	KW(nn_kw_int(ckpt, "t_heads", 8, &t_heads, err, n_err));
	KW(nn_kw_int(ckpt, "samplerate", 44100, &samplerate, err, n_err));
	KW(nn_kw_int(ckpt, "t_sin_random_shift", 0, &t_sin_shift, err, n_err));
	KW(nn_kw_double(ckpt, "freq_emb", 0.2, &freq_emb, err, n_err));
	KW(nn_kw_double(ckpt, "emb_scale", 10, &emb_scale, err, n_err));
	KW(nn_kw_double(ckpt, "t_hidden_scale", 4.0, &t_hidden_scale, err, n_err));
	KW(nn_kw_double(ckpt, "t_max_period", 10000.0, &t_max_period, err, n_err));
	KW(nn_kw_double(ckpt, "t_weight_pos_embed", 1.0, &t_weight_pos, err, n_err));
	KW(nn_kw_bool(ckpt, "rewrite", true, &rewrite, err, n_err));
	KW(nn_kw_bool(ckpt, "cac", true, &cac, err, n_err));
	KW(nn_kw_bool(ckpt, "t_cross_first", false, &t_cross_first, err, n_err));
	KW(nn_kw_str(ckpt, "t_emb", "sin", &t_emb, err, n_err));
	/* Options the release models never use. */
	KW(require_bool(ckpt, "use_train_segment", true, true, err, n_err));
	KW(require_bool(ckpt, "t_norm_in", true, true, err, n_err));
	KW(require_bool(ckpt, "t_norm_in_group", false, false, err, n_err));
	KW(require_bool(ckpt, "t_group_norm", false, false, err, n_err));
	KW(require_bool(ckpt, "t_norm_first", true, true, err, n_err));
	KW(require_bool(ckpt, "t_norm_out", true, true, err, n_err));
	KW(require_bool(ckpt, "t_layer_scale", true, true, err, n_err));
	KW(require_bool(ckpt, "t_gelu", true, true, err, n_err));
	KW(require_bool(ckpt, "t_sparse_self_attn", false, false, err, n_err));
	KW(require_bool(ckpt, "t_sparse_cross_attn", false, false, err, n_err));
	KW(require_bool(ckpt, "t_auto_sparsity", false, false, err, n_err));
	KW(require_int(ckpt, "t_sin_random_shift", 0, 0, err, n_err));
#undef KW
	if (!cac) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "HTDemucs with cac=False (magnitude masking) is not supported");
		goto fail;
	}
	if (!t_emb || strcmp(t_emb, "sin") != 0) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP, "HTDemucs option t_emb='%s' is not supported",
		             t_emb ? t_emb : "None");
		goto fail;
	}
	if (mf && !((mf->type == NN_PK_LIST || mf->type == NN_PK_TUPLE) && mf->u.seq.n == 0) &&
	    mf->type != NN_PK_NONE) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "HTDemucs option multi_freqs is not supported");
		goto fail;
	}
	if (ch_time && ch_time->type != NN_PK_NONE &&
	    !(ch_time->type == NN_PK_INT && ch_time->u.i == channels)) {
		rc = sfa_err(
			err, n_err, SFA_EUNSUPP,
			"HTDemucs option channels_time different from channels is not supported");
		goto fail;
	}
	if (audio_channels < 1 || audio_channels > 8 || channels < 1 || channels > 4096 ||
	    growth < 1 || growth > 8 || depth < 1 || depth > MAX_DEPTH || kernel < 2 ||
	    kernel > 64 || stride < 1 || stride > kernel || context < 0 || context > 8 ||
	    context_enc < 0 || context_enc > 8 || dconv_depth < 0 || dconv_depth > MAX_DCONV ||
	    dconv_comp < 1 || bottom < 0 || bottom > 8192 || t_layers < 0 ||
	    t_layers > MAX_TLAYERS || t_heads < 1 || samplerate < 1000 || samplerate > 384000 ||
	    (dconv_mode & ~3L) || nfft < 16 || nfft > 65536 || (nfft & (nfft - 1))) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP, "HTDemucs hyper-parameters out of range");
		goto fail;
	}
	if (norm_starts < depth) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "HTDemucs option norm_starts=%ld < depth (GroupNorm layers) is not "
		             "supported",
		             norm_starts);
		goto fail;
	}
	info->audio_channels = (int)audio_channels;
	info->samplerate = (int)samplerate;
	if ((rc = nn_net_read_sources(ckpt, info, err, n_err)) ||
	    (rc = nn_net_read_segment(ckpt, info, err, n_err)))
		goto fail;
	m->nfft = (int)nfft;
	m->depth = (int)depth;
	m->dconv_comp = (int)dconv_comp;
	m->context = (int)context;
	m->context_enc = (int)context_enc;
	m->bottom = (int)bottom;
	m->t_layers = (int)t_layers;
	m->heads = (int)t_heads;
	m->classic_parity = t_cross_first ? 1 : 0;
	m->emb_scale = (float)emb_scale;
	m->t_max_period = (float)t_max_period;
	m->t_weight_pos = (float)t_weight_pos;

	/* Shapes, following HTDemucs.__init__. */
	int S = info->n_sources, C = info->audio_channels;
	m->kernel = (int)kernel;
	m->stride = (int)stride;
	m->fz[0] = (int)nfft / 2;
	m->cz[0] = 2 * C;
	m->ct[0] = C;
	long chout = channels, chout_z = channels;
	for (int k = 0; k < depth; k++) {
		if (m->fz[k] <= kernel) {
			rc = sfa_err(
				err, n_err, SFA_EUNSUPP,
				"HTDemucs depth %ld collapses the frequency axis (not supported)",
				depth);
			goto fail;
		}
		m->fz[k + 1] = nn_conv_out(m->fz[k], (int)kernel, (int)stride, (int)kernel / 4, 1);
		if ((m->fz[k + 1] - 1) * stride + kernel - 2 * (kernel / 4) != m->fz[k] ||
		    chout_z > 65536) {
			rc = sfa_err(
				err, n_err, SFA_EUNSUPP,
				"HTDemucs frequency sizes do not round-trip (nfft %ld, stride %ld)",
				nfft, stride);
			goto fail;
		}
		m->cz[k + 1] = (int)chout_z;
		m->ct[k + 1] = (int)chout;
		chout *= growth;
		chout_z *= growth;
	}
	struct shapes sh;
	if (make_shapes(m, info->training_length, &sh) != 0) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP, "HTDemucs segment too short for its depth");
		goto fail;
	}
	m->dim = bottom ? (int)bottom : m->cz[depth];
	m->hidden = (int)(m->dim * t_hidden_scale);
	if (m->dim % m->heads || m->dim % 4 || m->hidden < 1 || m->hidden > 65536) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "HTDemucs transformer width %d is not supported", m->dim);
		goto fail;
	}

	/* Tensors. */
	struct nn_binder bd = {.c = ckpt, .err = err, .n_err = n_err};
	char n[160];
	for (int k = 0; k < depth; k++) {
		int pad = (int)kernel / 4;
		int rk = 1 + 2 * (int)context_enc;
		/* Frequency encoder k: Conv2d (k,1) then rewrite. */
		struct layer_w *e = &m->enc[k];
		int ci = m->cz[k], co = m->cz[k + 1];
		*e = (struct layer_w){.chin = ci,
		                      .chout = co,
		                      .ker = (int)kernel,
		                      .stride = (int)stride,
		                      .pad = pad,
		                      .rk = rk};
		snprintf(n, sizeof n, "encoder.%d.conv.weight", k);
		e->w = NN_BIND(&bd, n, co, ci, kernel, 1);
		snprintf(n, sizeof n, "encoder.%d.conv.bias", k);
		e->b = NN_BIND(&bd, n, co);
		if (rewrite) {
			snprintf(n, sizeof n, "encoder.%d.rewrite.weight", k);
			e->rw = NN_BIND(&bd, n, 2 * co, co, rk, rk);
			snprintf(n, sizeof n, "encoder.%d.rewrite.bias", k);
			e->rb = NN_BIND(&bd, n, 2 * co);
		}
		if (dconv_mode & 1) {
			snprintf(n, sizeof n, "encoder.%d", k);
			bind_dconv(&bd, e, n, co, (int)dconv_depth, (int)dconv_comp);
		}
		/* Time encoder k: Conv1d k then rewrite. */
		struct layer_w *te = &m->tenc[k];
		ci = m->ct[k];
		co = m->ct[k + 1];
		*te = (struct layer_w){.chin = ci,
		                       .chout = co,
		                       .ker = (int)kernel,
		                       .stride = (int)stride,
		                       .pad = pad,
		                       .rk = rk};
		snprintf(n, sizeof n, "tencoder.%d.conv.weight", k);
		te->w = NN_BIND(&bd, n, co, ci, kernel);
		snprintf(n, sizeof n, "tencoder.%d.conv.bias", k);
		te->b = NN_BIND(&bd, n, co);
		if (rewrite) {
			snprintf(n, sizeof n, "tencoder.%d.rewrite.weight", k);
			te->rw = NN_BIND(&bd, n, 2 * co, co, rk);
			snprintf(n, sizeof n, "tencoder.%d.rewrite.bias", k);
			te->rb = NN_BIND(&bd, n, 2 * co);
		}
		if (dconv_mode & 1) {
			snprintf(n, sizeof n, "tencoder.%d", k);
			bind_dconv(&bd, te, n, co, (int)dconv_depth, (int)dconv_comp);
		}
		/* Decoders at level k are decoder[depth-1-k]; level 0 outputs the sources. */
		int di = (int)depth - 1 - k;
		int rkd = 1 + 2 * (int)context;
		struct layer_w *d = &m->dec[k];
		int chl = m->cz[k + 1], cod = k == 0 ? S * C * 2 : m->cz[k];
		*d = (struct layer_w){.chin = chl,
		                      .chout = cod,
		                      .ker = (int)kernel,
		                      .stride = (int)stride,
		                      .pad = pad,
		                      .rk = rkd};
		snprintf(n, sizeof n, "decoder.%d.conv_tr.weight", di);
		d->w = NN_BIND(&bd, n, chl, cod, kernel, 1);
		snprintf(n, sizeof n, "decoder.%d.conv_tr.bias", di);
		d->b = NN_BIND(&bd, n, cod);
		if (rewrite) {
			snprintf(n, sizeof n, "decoder.%d.rewrite.weight", di);
			d->rw = NN_BIND(&bd, n, 2 * chl, chl, rkd, rkd);
			snprintf(n, sizeof n, "decoder.%d.rewrite.bias", di);
			d->rb = NN_BIND(&bd, n, 2 * chl);
		}
		if (dconv_mode & 2) {
			snprintf(n, sizeof n, "decoder.%d", di);
			bind_dconv(&bd, d, n, chl, (int)dconv_depth, (int)dconv_comp);
		}
		struct layer_w *td = &m->tdec[k];
		chl = m->ct[k + 1];
		cod = k == 0 ? S * C : m->ct[k];
		*td = (struct layer_w){.chin = chl,
		                       .chout = cod,
		                       .ker = (int)kernel,
		                       .stride = (int)stride,
		                       .pad = pad,
		                       .rk = rkd};
		snprintf(n, sizeof n, "tdecoder.%d.conv_tr.weight", di);
		td->w = NN_BIND(&bd, n, chl, cod, kernel);
		snprintf(n, sizeof n, "tdecoder.%d.conv_tr.bias", di);
		td->b = NN_BIND(&bd, n, cod);
		if (rewrite) {
			snprintf(n, sizeof n, "tdecoder.%d.rewrite.weight", di);
			td->rw = NN_BIND(&bd, n, 2 * chl, chl, rkd);
			snprintf(n, sizeof n, "tdecoder.%d.rewrite.bias", di);
			td->rb = NN_BIND(&bd, n, 2 * chl);
		}
		if (dconv_mode & 2) {
			snprintf(n, sizeof n, "tdecoder.%d", di);
			bind_dconv(&bd, td, n, chl, (int)dconv_depth, (int)dconv_comp);
		}
	}
	if (freq_emb != 0.0) {
		m->freq_emb_w = (float)freq_emb;
		m->freq_emb_rows = m->fz[1];
		m->freq_emb = NN_BIND(&bd, "freq_emb.embedding.weight", m->fz[1], m->cz[1]);
	}
	int tc = m->cz[depth];
	if (bottom) {
		m->up_w = NN_BIND(&bd, "channel_upsampler.weight", bottom, tc, 1);
		m->up_b = NN_BIND(&bd, "channel_upsampler.bias", bottom);
		m->down_w = NN_BIND(&bd, "channel_downsampler.weight", tc, bottom, 1);
		m->down_b = NN_BIND(&bd, "channel_downsampler.bias", tc);
		m->upt_w = NN_BIND(&bd, "channel_upsampler_t.weight", bottom, tc, 1);
		m->upt_b = NN_BIND(&bd, "channel_upsampler_t.bias", bottom);
		m->downt_w = NN_BIND(&bd, "channel_downsampler_t.weight", tc, bottom, 1);
		m->downt_b = NN_BIND(&bd, "channel_downsampler_t.bias", tc);
	}
	if (t_layers > 0) {
		int dim = m->dim;
		m->nin_w = NN_BIND(&bd, "crosstransformer.norm_in.weight", dim);
		m->nin_b = NN_BIND(&bd, "crosstransformer.norm_in.bias", dim);
		m->nint_w = NN_BIND(&bd, "crosstransformer.norm_in_t.weight", dim);
		m->nint_b = NN_BIND(&bd, "crosstransformer.norm_in_t.bias", dim);
		for (int l = 0; l < t_layers; l++) {
			int cross = l % 2 != m->classic_parity;
			snprintf(n, sizeof n, "crosstransformer.layers.%d", l);
			bind_tlayer(&bd, &m->tl[l], n, cross, dim, m->hidden);
			snprintf(n, sizeof n, "crosstransformer.layers_t.%d", l);
			bind_tlayer(&bd, &m->tlt[l], n, cross, dim, m->hidden);
		}
	}
	if (bd.rc) {
		rc = bd.rc;
		goto fail;
	}
	if ((rc = nn_binder_leftover(ckpt, err, n_err)) != 0 ||
	    (rc = nn_net_take(ckpt, (int)nfft, info, &m->ckpt, &m->stft, err, n_err)) != 0)
		goto fail;
	*out = m;
	return 0;
fail:
	nn_binder_reset(ckpt);
	free(m);
	return rc;
}

void nn_htdemucs_free(struct nn_htdemucs *m)
{
	if (m)
		nn_net_release(&m->ckpt, m->stft);
	free(m);
}

const struct nn_htdemucs_info *nn_htdemucs_info(const struct nn_htdemucs *m) { return &m->info; }

/* ---------------------------------------------------------------------------------- */
/* Forward pass.                                                                      */

static void dconv_run(struct nn_ws *ws, const struct layer_w *l, float *x, int ch, int rows, int t,
                      size_t ld)
{
	if (!l->n_dconv)
		return;
	if (rows == 1)
		nn_dconv_long(ws, l->dconv, l->n_dconv, l->dconv_hidden, x, ch, t, GN_EPS);
	else
		nn_dconv_rows(ws, l->dconv, l->n_dconv, l->dconv_hidden, x, ch, rows, t, ld,
		              GN_EPS);
}

/* dst (ch, ho, wo) = GLU(conv(src)) for a conv with 2*ch outputs, in row tiles. src may
 * equal dst only for a pointwise conv. */
static void conv_glu(struct nn_ws *ws, const struct nn_conv *c, const float *src, int h, int w,
                     size_t lds, float *dst, int ho, int wo, size_t ldd)
{
	int ch = c->cout / 2;
	size_t per_row = (size_t)c->cout * wo;
	int rows = (int)(NN_OPS_TILE_FLOATS / per_row);
	if (rows < 1)
		rows = 1;
	if (rows > ho)
		rows = ho;
	size_t mark = nn_ws_mark(ws);
	float *tmp = nn_ws_floats(ws, (size_t)rows * per_row);
	if (!tmp)
		return;
	for (int r0 = 0; r0 < ho; r0 += rows) {
		int r1 = r0 + rows < ho ? r0 + rows : ho;
		size_t n = (size_t)(r1 - r0) * wo;
		nn_conv2d_rows(ws, c, src, h, w, lds, r0, r1, wo, tmp, n);
		for (int k = 0; k < ch; k++)
			nn_glu(tmp + (size_t)k * n, tmp + (size_t)(k + ch) * n,
			       dst + (size_t)k * ldd + (size_t)r0 * wo, n);
	}
	nn_ws_release(ws, mark);
}

/* Encoder layer (HEncLayer without norm/inject). x (chin, h, w) -> y (chout, ho, w).
 * freq: conv along h with kernel (ker, 1) over (chin, F, T); time: (chin, L) viewed as
 * (chin, L, 1), so every time-branch conv also runs along h and tiles by rows. */
static void encoder_run(struct nn_ws *ws, const struct layer_w *l, int freq, const float *x, int h,
                        int w, float *y, int ho)
{
	int wo = w;
	struct nn_conv c = {.w = l->w,
	                    .b = l->b,
	                    .cin = l->chin,
	                    .cout = l->chout,
	                    .kh = l->ker,
	                    .kw = 1,
	                    .sh = l->stride,
	                    .sw = 1,
	                    .ph = l->pad,
	                    .pw = 0,
	                    .dh = 1,
	                    .dw = 1};
	size_t plane = (size_t)ho * wo;
	nn_conv2d(ws, &c, x, h, w, (size_t)h * w, y, ho, wo, plane);
	nn_gelu(y, (size_t)l->chout * plane);
	/* DConv runs along time: rows are frequencies (freq) or the one time row. */
	if (freq)
		dconv_run(ws, l, y, l->chout, ho, wo, plane);
	else
		dconv_run(ws, l, y, l->chout, 1, ho, plane);
	if (!l->rw)
		return;
	int ctx = l->rk / 2;
	struct nn_conv r = {.w = l->rw,
	                    .b = l->rb,
	                    .cin = l->chout,
	                    .cout = 2 * l->chout,
	                    .kh = l->rk,
	                    .kw = freq ? l->rk : 1,
	                    .sh = 1,
	                    .sw = 1,
	                    .ph = ctx,
	                    .pw = freq ? ctx : 0,
	                    .dh = 1,
	                    .dw = 1};
	if (ctx == 0) {
		conv_glu(ws, &r, y, ho, wo, plane, y, ho, wo, plane);
	} else {
		size_t mark = nn_ws_mark(ws);
		float *copy = nn_ws_copy(ws, y, (size_t)l->chout * plane);
		if (!copy)
			return;
		conv_glu(ws, &r, copy, ho, wo, plane, y, ho, wo, plane);
		nn_ws_release(ws, mark);
	}
}

enum { DEC_TILE = 1 << 20 };

/* Frequency decoder (HDecLayer without norm) on k = input + skip (chin, h, w): rewrite
 * 3x3 + GLU, DConv, ConvTranspose (ker, 1) / stride, crop pad -> z (chout, hout, w).
 * Everything before the transposed conv is row-local (DConv runs per frequency row, the
 * rewrite only reads neighbouring rows of k), so the layer runs in row tiles and never
 * holds its whole intermediate activation. */
static void decoder_freq(struct nn_ws *ws, const struct layer_w *l, int last, const float *k, int h,
                         int w, float *z, int hout)
{
	size_t plane = (size_t)h * w, oplane = (size_t)hout * w;
	nn_fill_channels(z, l->chout, l->b, oplane, oplane);
	int nr = nn_tile_rows(DEC_TILE, (size_t)l->chin * w, h);
	size_t mark = nn_ws_mark(ws);
	float *y = nn_ws_floats(ws, (size_t)l->chin * nr * w);
	float *tmp = nn_ws_floats(ws, (size_t)2 * l->chin * nr * w);
	if (!y || !tmp)
		return;
	int ctx = l->rk / 2;
	struct nn_conv r = {.w = l->rw,
	                    .b = l->rb,
	                    .cin = l->chin,
	                    .cout = 2 * l->chin,
	                    .kh = l->rk,
	                    .kw = l->rk,
	                    .sh = 1,
	                    .sw = 1,
	                    .ph = ctx,
	                    .pw = ctx,
	                    .dh = 1,
	                    .dw = 1};
	for (int r0 = 0; r0 < h; r0 += nr) {
		int r1 = r0 + nr < h ? r0 + nr : h;
		size_t n = (size_t)(r1 - r0) * w;
		if (l->rw) {
			nn_conv2d_rows(ws, &r, k, h, w, plane, r0, r1, w, tmp, n);
			nn_glu_channels(tmp, l->chin, n, y, n);
		} else {
			for (int c = 0; c < l->chin; c++)
				memcpy(y + (size_t)c * n, k + (size_t)c * plane + (size_t)r0 * w,
				       n * sizeof *y);
		}
		dconv_run(ws, l, y, l->chin, r1 - r0, w, n);
		nn_convtr_h_rows(ws, l->w, l->chin, l->chout, l->ker, l->stride, l->pad, y, n, r0,
		                 r1 - r0, w, z, hout);
	}
	if (!last)
		nn_gelu(z, (size_t)l->chout * oplane);
	nn_ws_release(ws, mark);
}

/* Time decoder on k = input + skip (chin, len) -> z (chout, hout), hout the length the
 * matching encoder saw. The DConv's GroupNorm spans the whole row, so the rewritten
 * activation is kept whole here (one row of chin x len). */
static void decoder_time(struct nn_ws *ws, const struct layer_w *l, int last, const float *k,
                         int len, float *z, int hout)
{
	size_t mark = nn_ws_mark(ws);
	const float *y = k;
	if (l->rw || l->n_dconv) {
		float *yb = nn_ws_floats(ws, (size_t)l->chin * len);
		if (!yb)
			return;
		if (l->rw) {
			int ctx = l->rk / 2;
			struct nn_conv r = {.w = l->rw,
			                    .b = l->rb,
			                    .cin = l->chin,
			                    .cout = 2 * l->chin,
			                    .kh = l->rk,
			                    .kw = 1,
			                    .sh = 1,
			                    .sw = 1,
			                    .ph = ctx,
			                    .pw = 0,
			                    .dh = 1,
			                    .dw = 1};
			conv_glu(ws, &r, k, len, 1, (size_t)len, yb, len, 1, (size_t)len);
		} else {
			memcpy(yb, k, (size_t)l->chin * len * sizeof *yb);
		}
		dconv_run(ws, l, yb, l->chin, 1, len, (size_t)len);
		y = yb;
	}
	nn_convtr_h(ws, l->w, l->b, l->chin, l->chout, l->ker, l->stride, l->pad, y, len, 1, z,
	            hout);
	if (!last)
		nn_gelu(z, (size_t)l->chout * hout);
	nn_ws_release(ws, mark);
}

/* GroupNorm(1, dim) over a whole (n, dim) token sequence, per-channel affine. */
static void groupnorm_tokens(float *x, int n, int dim, const float *w, const float *b)
{
	double sum = 0.0;
	size_t total = (size_t)n * dim;
	for (size_t i = 0; i < total; i++)
		sum += x[i];
	double mean = sum / (double)total;
	double ss = 0.0;
	for (size_t i = 0; i < total; i++) {
		double d = x[i] - mean;
		ss += d * d;
	}
	double inv = 1.0 / sqrt(ss / (double)total + GN_EPS);
	for (int i = 0; i < n; i++) {
		float *row = x + (size_t)i * dim;
		for (int c = 0; c < dim; c++)
			row[c] = (float)((row[c] - mean) * inv) * w[c] + b[c];
	}
}

enum { FFN_TOKENS = 512 };

/* The feed-forward block of a transformer layer on tokens [t0, t0 + tb) of y into a: a part
 * of a team (token blocks are independent; the same blocks with or without a team). */
struct ffn {
	const struct tlayer_w *w;
	const float *y;
	float *a;
	int n, dim, hidden, tb;
};

static void ffn_part(void *arg, int part, struct nn_ws *ws)
{
	const struct ffn *f = arg;
	int t0 = part * f->tb, nt = f->n - t0 < f->tb ? f->n - t0 : f->tb;
	float *hb = nn_ws_floats(ws, (size_t)f->tb * f->hidden);
	if (!hb)
		return;
	nn_linear(f->y + (size_t)t0 * f->dim, nt, f->dim, f->w->l1w, f->w->l1b, f->hidden, hb,
	          f->hidden);
	nn_gelu(hb, (size_t)nt * f->hidden);
	nn_linear(hb, nt, f->hidden, f->w->l2w, f->w->l2b, f->dim, f->a + (size_t)t0 * f->dim,
	          f->dim);
}

/* One transformer layer in place on x (n, dim). Self-attention when kv == NULL, else
 * cross-attention with keys/values from kv (nk, dim). Norm-first, LayerScale, norm_out. */
static void tlayer_run(struct nn_ws *ws, const struct nn_htdemucs *m, const struct tlayer_w *w,
                       float *x, int n, const float *kv, int nk)
{
	int dim = m->dim, hidden = m->hidden;
	size_t mark = nn_ws_mark(ws);
	float *y = nn_ws_floats(ws, (size_t)n * dim);
	float *a = nn_ws_floats(ws, (size_t)n * dim);
	if (!y || !a)
		return;
	nn_layernorm(x, y, n, dim, w->n1w, w->n1b, LN_EPS);
	if (!kv) {
		float *qkv = nn_ws_floats(ws, (size_t)n * 3 * dim);
		if (!qkv)
			return;
		nn_linear(y, n, dim, w->in_w, w->in_b, 3 * dim, qkv, 3 * dim);
		nn_attention(ws, qkv, 3 * dim, n, qkv + dim, 3 * dim, qkv + 2 * dim, 3 * dim, n,
		             dim, m->heads, a, dim);
	} else {
		float *q = nn_ws_floats(ws, (size_t)n * dim);
		float *yk = nn_ws_floats(ws, (size_t)nk * dim);
		float *kvp = nn_ws_floats(ws, (size_t)nk * 2 * dim);
		if (!q || !yk || !kvp)
			return;
		nn_linear(y, n, dim, w->in_w, w->in_b, dim, q, dim);
		nn_layernorm(kv, yk, nk, dim, w->n2w, w->n2b, LN_EPS);
		nn_linear(yk, nk, dim, w->in_w + (size_t)dim * dim, w->in_b + dim, 2 * dim, kvp,
		          2 * dim);
		nn_attention(ws, q, dim, n, kvp, 2 * dim, kvp + dim, 2 * dim, nk, dim, m->heads, a,
		             dim);
	}
	nn_linear(a, n, dim, w->out_w, w->out_b, dim, y, dim);
	for (int i = 0; i < n; i++) {
		float *xr = x + (size_t)i * dim;
		const float *yr = y + (size_t)i * dim;
		for (int c = 0; c < dim; c++)
			xr[c] += w->g1[c] * yr[c];
	}
	/* Feed-forward, in token blocks to bound the hidden activations (and to share them). */
	const float *nw = kv ? w->n3w : w->n2w, *nb = kv ? w->n3b : w->n2b;
	nn_layernorm(x, y, n, dim, nw, nb, LN_EPS);
	struct ffn f = {.w = w,
	                .y = y,
	                .a = a,
	                .n = n,
	                .dim = dim,
	                .hidden = hidden,
	                .tb = n < FFN_TOKENS ? n : FFN_TOKENS};
	nn_team_parts(ws, (n + f.tb - 1) / f.tb, ffn_part, &f);
	for (int i = 0; i < n; i++) {
		float *xr = x + (size_t)i * dim;
		const float *ar = a + (size_t)i * dim;
		for (int c = 0; c < dim; c++)
			xr[c] += w->g2[c] * ar[c];
	}
	groupnorm_tokens(x, n, dim, w->now, w->nob);
	nn_ws_release(ws, mark);
}

/* Adds the sinusoidal embeddings, mimicking PyTorch's float32 arithmetic so that the
 * phases (up to ~1000 rad) round the same way. */
static void add_pos_2d(float *x, int fr, int t1, int dim, float max_period, float weight)
{
	int half = dim / 2;
	float step = -(logf(max_period) / (float)half);
	for (int t = 0; t < t1; t++) {
		for (int f = 0; f < fr; f++) {
			float *row = x + ((size_t)t * fr + f) * dim;
			for (int i = 0; i < half / 2; i++) {
				float div = expf((float)(2 * i) * step);
				float pw = (float)t * div, ph = (float)f * div;
				row[2 * i] += weight * sinf(pw);
				row[2 * i + 1] += weight * cosf(pw);
				row[half + 2 * i] += weight * sinf(ph);
				row[half + 2 * i + 1] += weight * cosf(ph);
			}
		}
	}
}

static void add_pos_1d(float *x, int n, int dim, float max_period, float weight)
{
	int half = dim / 2;
	for (int i = 0; i < half; i++) {
		float e = (float)i / (float)(half - 1);
		float p = powf(max_period, e);
		for (int t = 0; t < n; t++) {
			float phase = (float)t / p;
			x[(size_t)t * dim + i] += weight * cosf(phase);
			x[(size_t)t * dim + half + i] += weight * sinf(phase);
		}
	}
}

/* Cross transformer on the bottom activations. xf (cb, fb, t) and xt (cb, lb) are read;
 * the results (cb, fb, t) and (cb, lb) go to of and ot. */
static void transformer_run(struct nn_ws *ws, const struct nn_htdemucs *m, const struct shapes *sh,
                            const float *xf, const float *xt, float *of, float *ot)
{
	int cb = m->cz[m->depth], fb = m->fz[m->depth], t = sh->frames, lb = sh->lt[m->depth];
	int dim = m->dim;
	size_t nf = (size_t)fb * t;
	size_t mark = nn_ws_mark(ws);
	const float *uf = xf, *ut = xt;
	if (m->bottom) {
		float *bf = nn_ws_floats(ws, (size_t)dim * nf);
		float *bt = nn_ws_floats(ws, (size_t)dim * lb);
		if (!bf || !bt)
			return;
		struct nn_conv up = {.w = m->up_w,
		                     .b = m->up_b,
		                     .cin = cb,
		                     .cout = dim,
		                     .kh = 1,
		                     .kw = 1,
		                     .sh = 1,
		                     .sw = 1,
		                     .dh = 1,
		                     .dw = 1};
		nn_conv2d(ws, &up, xf, 1, (int)nf, nf, bf, 1, (int)nf, nf);
		struct nn_conv upt = {.w = m->upt_w,
		                      .b = m->upt_b,
		                      .cin = cb,
		                      .cout = dim,
		                      .kh = 1,
		                      .kw = 1,
		                      .sh = 1,
		                      .sw = 1,
		                      .dh = 1,
		                      .dw = 1};
		nn_conv2d(ws, &upt, xt, 1, lb, (size_t)lb, bt, 1, lb, (size_t)lb);
		nn_debug_hook("channel_upsampler_out", bf, (size_t)dim * nf);
		nn_debug_hook("channel_upsampler_t_out", bt, (size_t)dim * lb);
		uf = bf;
		ut = bt;
	}
	nn_debug_hook("transformer_in_freq", uf, (size_t)dim * nf);
	nn_debug_hook("transformer_in_time", ut, (size_t)dim * lb);
	int n1 = (int)nf, n2 = lb;
	float *x1 = nn_ws_floats(ws, (size_t)n1 * dim);
	float *x2 = nn_ws_floats(ws, (size_t)n2 * dim);
	float *old = nn_ws_floats(ws, (size_t)n1 * dim);
	if (!x1 || !x2 || !old)
		return;
	/* "b c fr t1 -> b (t1 fr) c" */
	for (int c = 0; c < dim; c++)
		for (int f = 0; f < fb; f++)
			for (int j = 0; j < t; j++)
				x1[((size_t)j * fb + f) * dim + c] =
					uf[(size_t)c * nf + (size_t)f * t + j];
	for (int c = 0; c < dim; c++)
		for (int j = 0; j < n2; j++)
			x2[(size_t)j * dim + c] = ut[(size_t)c * n2 + j];
	nn_layernorm(x1, x1, n1, dim, m->nin_w, m->nin_b, LN_EPS);
	add_pos_2d(x1, fb, t, dim, m->t_max_period, m->t_weight_pos);
	nn_layernorm(x2, x2, n2, dim, m->nint_w, m->nint_b, LN_EPS);
	add_pos_1d(x2, n2, dim, m->t_max_period, m->t_weight_pos);
	nn_debug_hook("transformer_layer0_in_freq", x1, (size_t)n1 * dim);
	nn_debug_hook("transformer_layer0_in_time", x2, (size_t)n2 * dim);
	for (int l = 0; l < m->t_layers; l++) {
		char name[64];
		if (!m->tl[l].cross) {
			tlayer_run(ws, m, &m->tl[l], x1, n1, NULL, 0);
			tlayer_run(ws, m, &m->tlt[l], x2, n2, NULL, 0);
		} else {
			memcpy(old, x1, (size_t)n1 * dim * sizeof *old);
			tlayer_run(ws, m, &m->tl[l], x1, n1, x2, n2);
			tlayer_run(ws, m, &m->tlt[l], x2, n2, old, n1);
		}
		snprintf(name, sizeof name, "transformer_layer%d_out_freq", l);
		nn_debug_hook(name, x1, (size_t)n1 * dim);
		snprintf(name, sizeof name, "transformer_layer%d_out_time", l);
		nn_debug_hook(name, x2, (size_t)n2 * dim);
	}
	/* Back to channels-first; reuse `old` as the (dim, fb, t) buffer. */
	for (int c = 0; c < dim; c++)
		for (int f = 0; f < fb; f++)
			for (int j = 0; j < t; j++)
				old[(size_t)c * nf + (size_t)f * t + j] =
					x1[((size_t)j * fb + f) * dim + c];
	nn_debug_hook("transformer_out_freq", old, (size_t)dim * nf);
	if (m->bottom) {
		float *bt = nn_ws_floats(ws, (size_t)dim * n2);
		if (!bt)
			return;
		for (int c = 0; c < dim; c++)
			for (int j = 0; j < n2; j++)
				bt[(size_t)c * n2 + j] = x2[(size_t)j * dim + c];
		nn_debug_hook("transformer_out_time", bt, (size_t)dim * n2);
		struct nn_conv dn = {.w = m->down_w,
		                     .b = m->down_b,
		                     .cin = dim,
		                     .cout = cb,
		                     .kh = 1,
		                     .kw = 1,
		                     .sh = 1,
		                     .sw = 1,
		                     .dh = 1,
		                     .dw = 1};
		nn_conv2d(ws, &dn, old, 1, (int)nf, nf, of, 1, (int)nf, nf);
		struct nn_conv dnt = {.w = m->downt_w,
		                      .b = m->downt_b,
		                      .cin = dim,
		                      .cout = cb,
		                      .kh = 1,
		                      .kw = 1,
		                      .sh = 1,
		                      .sw = 1,
		                      .dh = 1,
		                      .dw = 1};
		nn_conv2d(ws, &dnt, bt, 1, n2, (size_t)n2, ot, 1, n2, (size_t)n2);
	} else {
		memcpy(of, old, (size_t)dim * nf * sizeof *of);
		for (int c = 0; c < dim; c++)
			for (int j = 0; j < n2; j++)
				ot[(size_t)c * n2 + j] = x2[(size_t)j * dim + c];
		nn_debug_hook("transformer_out_time", ot, (size_t)dim * n2);
	}
	nn_debug_hook("channel_downsampler_out", of, (size_t)cb * nf);
	nn_debug_hook("channel_downsampler_t_out", ot, (size_t)cb * n2);
	nn_ws_release(ws, mark);
}

/* A layer boundary: stop when the workspace ran out or a cancel came. */
#define CHECK_LAYER() NN_TRY(rc, nn_layer_status(ws, cancel), out)

int nn_htdemucs_forward(const struct nn_htdemucs *m, struct nn_ws *ws, const float *mix, int len,
                        float *out, const volatile int *cancel)
{
	const struct nn_htdemucs_info *info = &m->info;
	struct shapes sh;
	if (make_shapes(m, len, &sh) != 0)
		return SFA_EINVAL;
	int L = len, C = info->audio_channels, S = info->n_sources;
	int T = sh.frames, depth = m->depth;
	int rc = 0;
	char name[64];
	size_t mark0 = nn_ws_mark(ws);
	/* Skips outermost first: when decoder level k runs, every level above is dead and the
	 * stack can be popped down to just above skip k. */
	float *skip[MAX_DEPTH], *tskip[MAX_DEPTH];
	size_t mark_level[MAX_DEPTH];
	for (int k = 0; k < depth; k++) {
		skip[k] = nn_ws_floats(ws, (size_t)m->cz[k + 1] * m->fz[k + 1] * T);
		tskip[k] = nn_ws_floats(ws, (size_t)m->ct[k + 1] * sh.lt[k + 1]);
		mark_level[k] = nn_ws_mark(ws);
	}
	CHECK_LAYER();

	/* Inputs: the CaC spectrogram and the waveform, each standardised. */
	size_t mark_in = nn_ws_mark(ws);
	size_t fplane = (size_t)m->fz[0] * T;
	float *xf = nn_ws_floats(ws, (size_t)2 * C * fplane);
	float *xt = nn_ws_floats(ws, (size_t)C * L);
	CHECK_LAYER();
	for (int c = 0; c < C; c++)
		nn_stft_spec(m->stft, ws, mix + (size_t)c * L, L, xf + (size_t)(2 * c) * fplane,
		             xf + (size_t)(2 * c + 1) * fplane);
	CHECK_LAYER();
	double fmean, fstd, tmean, tstd;
	nn_standardize(xf, (size_t)2 * C * fplane, xf, &fmean, &fstd);
	nn_standardize(mix, (size_t)C * L, xt, &tmean, &tstd);
	nn_debug_hook("time_in_norm", xt, (size_t)C * L);
	nn_debug_hook("freq_in_norm", xf, (size_t)2 * C * fplane);

	/* Encoders. */
	const float *cur = xf, *curt = xt;
	for (int k = 0; k < depth; k++) {
		encoder_run(ws, &m->tenc[k], 0, curt, sh.lt[k], 1, tskip[k], sh.lt[k + 1]);
		snprintf(name, sizeof name, "tenc%d_out", k);
		nn_debug_hook(name, tskip[k], (size_t)m->ct[k + 1] * sh.lt[k + 1]);
		encoder_run(ws, &m->enc[k], 1, cur, m->fz[k], T, skip[k], m->fz[k + 1]);
		size_t plane = (size_t)m->fz[k + 1] * T;
		snprintf(name, sizeof name, "enc%d_out", k);
		nn_debug_hook(name, skip[k], (size_t)m->cz[k + 1] * plane);
		if (k == 0 && m->freq_emb) {
			float scale = m->freq_emb_w * m->emb_scale;
			for (int c = 0; c < m->cz[1]; c++)
				for (int f = 0; f < m->fz[1]; f++) {
					float e = scale * m->freq_emb[(size_t)f * m->cz[1] + c];
					float *row = skip[0] + (size_t)c * plane + (size_t)f * T;
					for (int j = 0; j < T; j++)
						row[j] += e;
				}
			nn_debug_hook("enc0_out_plus_freq_emb", skip[0], (size_t)m->cz[1] * plane);
		}
		if (k == 0)
			nn_ws_release(ws, mark_in); /* the inputs are dead */
		cur = skip[k];
		curt = tskip[k];
		CHECK_LAYER();
	}

	/* Bottleneck. */
	size_t nb = (size_t)m->cz[depth] * m->fz[depth] * T,
	       nbt = (size_t)m->ct[depth] * sh.lt[depth];
	float *bf = nn_ws_floats(ws, nb);
	float *bt = nn_ws_floats(ws, nbt);
	CHECK_LAYER();
	if (m->t_layers > 0) {
		transformer_run(ws, m, &sh, skip[depth - 1], tskip[depth - 1], bf, bt);
	} else {
		memcpy(bf, skip[depth - 1], nb * sizeof *bf);
		memcpy(bt, tskip[depth - 1], nbt * sizeof *bt);
	}
	CHECK_LAYER();

	/* Decoders, innermost first. */
	float *zf = bf, *zt = bt;
	for (int k = depth - 1; k >= 0; k--) {
		size_t nf = (size_t)m->cz[k + 1] * m->fz[k + 1] * T;
		size_t ntk = (size_t)m->ct[k + 1] * sh.lt[k + 1];
		for (size_t i = 0; i < nf; i++)
			skip[k][i] += zf[i];
		for (size_t i = 0; i < ntk; i++)
			tskip[k][i] += zt[i];
		nn_ws_release(ws, mark_level[k]); /* the input and every deeper level are dead */
		int fo = m->fz[k], lo = sh.lt[k];
		zf = nn_ws_floats(ws, (size_t)m->dec[k].chout * fo * T);
		zt = nn_ws_floats(ws, (size_t)m->tdec[k].chout * lo);
		CHECK_LAYER();
		decoder_freq(ws, &m->dec[k], k == 0, skip[k], m->fz[k + 1], T, zf, fo);
		snprintf(name, sizeof name, "dec%d_out", depth - 1 - k);
		nn_debug_hook(name, zf, (size_t)m->dec[k].chout * fo * T);
		decoder_time(ws, &m->tdec[k], k == 0, tskip[k], sh.lt[k + 1], zt, lo);
		snprintf(name, sizeof name, "tdec%d_out", depth - 1 - k);
		nn_debug_hook(name, zt, (size_t)m->tdec[k].chout * lo);
		CHECK_LAYER();
	}

	/* Output: undo the spectrogram standardisation, iSTFT, add the time branch. */
	size_t n_f = (size_t)S * C * 2 * fplane;
	for (size_t i = 0; i < n_f; i++)
		zf[i] = zf[i] * (float)fstd + (float)fmean;
	for (int s = 0; s < S; s++) {
		for (int c = 0; c < C; c++) {
			const float *re = zf + (size_t)((s * C + c) * 2) * fplane;
			nn_stft_ispec(m->stft, ws, re, re + fplane, T, L,
			              out + (size_t)(s * C + c) * L);
		}
	}
	CHECK_LAYER();
	nn_debug_hook("istft_out", out, (size_t)S * C * L);
	float tsd = (float)tstd, tm = (float)tmean;
	for (size_t i = 0; i < (size_t)S * C * L; i++)
		out[i] += zt[i] * tsd + tm;
out:
	nn_ws_release(ws, mark0);
	return rc;
}
