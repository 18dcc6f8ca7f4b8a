/* hdemucs.c - see hdemucs.h.
 *
 * Levels: level k is encoder[k] / decoder[depth-1-k] (and tencoder[k] / tdecoder[kc-k]
 * while the time branch exists). Levels 0..kc-1 are frequency levels with a time branch;
 * level kc is the collapsing one (its frequency conv has kernel = the remaining bins, no
 * padding; its time conv is bare and its output is added to the frequency conv's output
 * before GroupNorm, HDemucs' "inject"; its time decoder is a bare transposed conv fed with
 * the frequency decoder's activation before the transposed conv); levels above kc are time
 * convolutions (kernel 2*time_stride, stride time_stride) on the one remaining row.
 *
 * Layout as in htdemucs.c: (channels, rows, frames) row-major for the main branch (rows =
 * frequency bins, 1 from level kc up), (channels, samples) for the time branch. The
 * workspace discipline is the same too: skips outermost first, each decoder level pops
 * the stack down to just above its own skip.
 *
 * GroupNorm layers (level >= norm_starts) are computed on whole tensors; they only occur
 * on the small, collapsed levels of the release models. The wide outer levels have no
 * GroupNorm, so their rewrite convs and decoders run in tiles of rows as in HTDemucs.
 *
 * BiLSTM (demucs.BLSTM, 2 layers, max_steps 200): sequences longer than 200 are cut into
 * frames of 200 with stride 100 (zero-padded at the end, n = ceil(T/100)); every frame
 * goes through the LSTM as an independent batch item and the output keeps frame 0's
 * first 150 steps, the middle 100 of each inner frame and the last frame's tail. The input
 * projection of all frames and steps is one sgemm per direction; the recurrence is one
 * small sgemm (frames x 4H x H) per step followed by the gate nonlinearities.
 *
 * LocalState: per head, the (T x T) score matrix q^T k / sqrt(d) plus the decay term
 * -|t-s|/sqrt(ndecay) * sum_f (f+1) sigmoid(decay_q[f][s])/2, self-score -100, softmax
 * over keys, values by sgemm, then a 1x1 projection added to the input.
 */
#include "nn/hdemucs.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nn/netutil.h"
#include "nn/ops.h"
#include "nn/stft.h"
#include "util/err.h"

enum {
	MAX_LEVELS = 8,
	MAX_DC = 4,
	LSTM_MAX_STEPS = 200,
	ATTN_HEADS = 4,
	ATTN_NDECAY = 4,
	DEC_TILE = 1 << 20,
};

static const float GN_EPS = 1e-5f;

struct lstm_w {
	const float *wih[2][2], *whh[2][2], *bih[2][2], *bhh[2][2]; /* [layer][direction] */
	const float *lin_w, *lin_b;
};

struct attn_w {
	const float *cw, *cb, *qw, *qb, *kw, *kb, *dw, *db, *pw, *pb;
};

/* What an HDemucs DConv layer has beyond the plain one: BiLSTM and LocalState. */
struct dc_w {
	struct lstm_w lstm;
	struct attn_w attn;
};

struct dconv {
	int n, hid, lstm, attn;
	struct nn_dconv_w w[MAX_DC]; /* the plain layer */
	struct dc_w l[MAX_DC];       /* its BiLSTM / LocalState */
};

struct hlayer {
	int chin, chout; /* enc: conv chin -> chout; dec: the layer's chin -> conv_tr chout */
	int freq;        /* the conv runs along frequency rows (2-D) */
	int ker, stride, pad;
	int empty;            /* bare conv (enc) / bare conv_tr + norm (dec) */
	int groups;           /* GroupNorm groups, 0 = Identity */
	const float *w, *b;   /* conv or conv_tr */
	const float *rw, *rb; /* rewrite, NULL without */
	int rk;               /* rewrite kernel (square when freq) */
	const float *n1w, *n1b, *n2w, *n2b;
	struct dconv dc;
};

struct nn_hdemucs {
	struct nn_htdemucs_info info;
	struct nn_ckpt ckpt; /* owns the weights */
	struct nn_stft *stft;
	int nfft, depth, kc, cac, hybrid_old, time_stride, kernel, stride;
	float freq_emb_scale;  /* freq_emb * emb_scale; 0 = none */
	const float *freq_emb; /* (fz[1], cz[1]) */
	struct hlayer enc[MAX_LEVELS], dec[MAX_LEVELS], tenc[MAX_LEVELS], tdec[MAX_LEVELS];
	int cz[MAX_LEVELS + 1]; /* main-branch channels entering level k */
	int fz[MAX_LEVELS + 1]; /* rows entering level k (1 above kc) */
	int ct[MAX_LEVELS + 1]; /* time-branch channels entering level k (k <= kc) */
};

struct shapes {
	int frames;             /* STFT frames T */
	int w[MAX_LEVELS + 1];  /* main-branch width entering level k */
	int lt[MAX_LEVELS + 1]; /* time-branch length entering level k (k <= kc + 1) */
};

static int round_up(int l, int s) { return l % s ? l + s - l % s : l; }

static int make_shapes(const struct nn_hdemucs *m, int len, struct shapes *sh)
{
	int hop = m->nfft / 4;
	if (len < 1)
		return -1;
	sh->frames = (len + hop - 1) / hop;
	sh->lt[0] = len;
	for (int k = 0; k <= m->kc; k++) {
		const struct hlayer *t = &m->tenc[k];
		sh->lt[k + 1] = nn_conv_out(round_up(sh->lt[k], t->stride), t->ker, t->stride,
		                            t->pad, 1);
		if (sh->lt[k + 1] < 1)
			return -1;
	}
	if (sh->lt[m->kc + 1] != sh->frames)
		return -1;
	for (int k = 0; k <= m->kc + 1 && k <= m->depth; k++)
		sh->w[k] = sh->frames;
	for (int k = m->kc + 1; k < m->depth; k++) {
		const struct hlayer *e = &m->enc[k];
		sh->w[k + 1] = nn_conv_out(round_up(sh->w[k], e->stride), e->ker, e->stride, e->pad,
		                           1);
		if (sh->w[k + 1] < 1)
			return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Building.                                                                          */

static void bind_dconv(struct nn_binder *bd, struct dconv *dc, const char *prefix, int ch,
                       int depth, int comp, int lstm, int attn)
{
	int hid = ch / comp;
	dc->n = depth;
	dc->hid = hid;
	dc->lstm = lstm;
	dc->attn = attn;
	for (int d = 0; d < depth; d++) {
		char n[192];
		struct nn_dconv_w *w = &dc->w[d];
		struct dc_w *e = &dc->l[d];
		int at = 3; /* index of the module after GELU in the Sequential */
#define DN(fmt, ...) (snprintf(n, sizeof n, "%s.dconv.layers.%d." fmt, prefix, d, __VA_ARGS__), n)
		w->c1w = NN_BIND(bd, DN("%d.weight", 0), hid, ch, 3);
		w->c1b = NN_BIND(bd, DN("%d.bias", 0), hid);
		w->g1w = NN_BIND(bd, DN("%d.weight", 1), hid);
		w->g1b = NN_BIND(bd, DN("%d.bias", 1), hid);
		if (lstm) {
			struct lstm_w *l = &e->lstm;
			for (int layer = 0; layer < 2; layer++) {
				for (int dir = 0; dir < 2; dir++) {
					const char *sfx = dir ? "_reverse" : "";
					int din = layer ? 2 * hid : hid;
					l->wih[layer][dir] = NN_BIND(
						bd, DN("%d.lstm.weight_ih_l%d%s", at, layer, sfx),
						4 * hid, din);
					l->whh[layer][dir] = NN_BIND(
						bd, DN("%d.lstm.weight_hh_l%d%s", at, layer, sfx),
						4 * hid, hid);
					l->bih[layer][dir] = NN_BIND(
						bd, DN("%d.lstm.bias_ih_l%d%s", at, layer, sfx),
						4 * hid);
					l->bhh[layer][dir] = NN_BIND(
						bd, DN("%d.lstm.bias_hh_l%d%s", at, layer, sfx),
						4 * hid);
				}
			}
			l->lin_w = NN_BIND(bd, DN("%d.linear.weight", at), hid, 2 * hid);
			l->lin_b = NN_BIND(bd, DN("%d.linear.bias", at), hid);
			at++;
		}
		if (attn) {
			struct attn_w *a = &e->attn;
			a->cw = NN_BIND(bd, DN("%d.content.weight", at), hid, hid, 1);
			a->cb = NN_BIND(bd, DN("%d.content.bias", at), hid);
			a->qw = NN_BIND(bd, DN("%d.query.weight", at), hid, hid, 1);
			a->qb = NN_BIND(bd, DN("%d.query.bias", at), hid);
			a->kw = NN_BIND(bd, DN("%d.key.weight", at), hid, hid, 1);
			a->kb = NN_BIND(bd, DN("%d.key.bias", at), hid);
			a->dw = NN_BIND(bd, DN("%d.query_decay.weight", at),
			                ATTN_HEADS * ATTN_NDECAY, hid, 1);
			a->db = NN_BIND(bd, DN("%d.query_decay.bias", at),
			                ATTN_HEADS * ATTN_NDECAY);
			a->pw = NN_BIND(bd, DN("%d.proj.weight", at), hid, hid, 1);
			a->pb = NN_BIND(bd, DN("%d.proj.bias", at), hid);
			at++;
		}
		w->c2w = NN_BIND(bd, DN("%d.weight", at), 2 * ch, hid, 1);
		w->c2b = NN_BIND(bd, DN("%d.bias", at), 2 * ch);
		w->g2w = NN_BIND(bd, DN("%d.weight", at + 1), 2 * ch);
		w->g2b = NN_BIND(bd, DN("%d.bias", at + 1), 2 * ch);
		w->scale = NN_BIND(bd, DN("%d.scale", at + 3), ch);
#undef DN
	}
}

struct layer_cfg {
	int dconv, ctx, rewrite, depth, comp, lstm, attn;
};

/* HEncLayer(chin, chout, ...) named `prefix`. */
static void bind_enc(struct nn_binder *bd, struct hlayer *l, const char *prefix, int chin,
                     int chout, int ker, int stride, int pad, int freq, int empty, int groups,
                     const struct layer_cfg *cfg)
{
	char n[160];
	*l = (struct hlayer){.chin = chin,
	                     .chout = chout,
	                     .freq = freq,
	                     .ker = ker,
	                     .stride = stride,
	                     .pad = pad,
	                     .empty = empty,
	                     .groups = groups,
	                     .rk = 1 + 2 * cfg->ctx};
	snprintf(n, sizeof n, "%s.conv.weight", prefix);
	l->w = freq ? NN_BIND(bd, n, chout, chin, ker, 1) : NN_BIND(bd, n, chout, chin, ker);
	snprintf(n, sizeof n, "%s.conv.bias", prefix);
	l->b = NN_BIND(bd, n, chout);
	if (empty)
		return;
	if (groups) {
		snprintf(n, sizeof n, "%s.norm1.weight", prefix);
		l->n1w = NN_BIND(bd, n, chout);
		snprintf(n, sizeof n, "%s.norm1.bias", prefix);
		l->n1b = NN_BIND(bd, n, chout);
	}
	if (cfg->rewrite) {
		snprintf(n, sizeof n, "%s.rewrite.weight", prefix);
		l->rw = freq ? NN_BIND(bd, n, 2 * chout, chout, l->rk, l->rk)
		             : NN_BIND(bd, n, 2 * chout, chout, l->rk);
		snprintf(n, sizeof n, "%s.rewrite.bias", prefix);
		l->rb = NN_BIND(bd, n, 2 * chout);
		if (groups) {
			snprintf(n, sizeof n, "%s.norm2.weight", prefix);
			l->n2w = NN_BIND(bd, n, 2 * chout);
			snprintf(n, sizeof n, "%s.norm2.bias", prefix);
			l->n2b = NN_BIND(bd, n, 2 * chout);
		}
	}
	if (cfg->dconv)
		bind_dconv(bd, &l->dc, prefix, chout, cfg->depth, cfg->comp, cfg->lstm, cfg->attn);
}

/* HDecLayer(chin, chout, ...) named `prefix`. */
static void bind_dec(struct nn_binder *bd, struct hlayer *l, const char *prefix, int chin,
                     int chout, int ker, int stride, int pad, int freq, int empty, int groups,
                     const struct layer_cfg *cfg)
{
	char n[160];
	*l = (struct hlayer){.chin = chin,
	                     .chout = chout,
	                     .freq = freq,
	                     .ker = ker,
	                     .stride = stride,
	                     .pad = pad,
	                     .empty = empty,
	                     .groups = groups,
	                     .rk = 1 + 2 * cfg->ctx};
	snprintf(n, sizeof n, "%s.conv_tr.weight", prefix);
	l->w = freq ? NN_BIND(bd, n, chin, chout, ker, 1) : NN_BIND(bd, n, chin, chout, ker);
	snprintf(n, sizeof n, "%s.conv_tr.bias", prefix);
	l->b = NN_BIND(bd, n, chout);
	if (groups) {
		snprintf(n, sizeof n, "%s.norm2.weight", prefix);
		l->n2w = NN_BIND(bd, n, chout);
		snprintf(n, sizeof n, "%s.norm2.bias", prefix);
		l->n2b = NN_BIND(bd, n, chout);
	}
	if (empty)
		return;
	if (cfg->rewrite) {
		snprintf(n, sizeof n, "%s.rewrite.weight", prefix);
		l->rw = freq ? NN_BIND(bd, n, 2 * chin, chin, l->rk, l->rk)
		             : NN_BIND(bd, n, 2 * chin, chin, l->rk);
		snprintf(n, sizeof n, "%s.rewrite.bias", prefix);
		l->rb = NN_BIND(bd, n, 2 * chin);
		if (groups) {
			snprintf(n, sizeof n, "%s.norm1.weight", prefix);
			l->n1w = NN_BIND(bd, n, 2 * chin);
			snprintf(n, sizeof n, "%s.norm1.bias", prefix);
			l->n1b = NN_BIND(bd, n, 2 * chin);
		}
	}
	if (cfg->dconv)
		bind_dconv(bd, &l->dc, prefix, chin, cfg->depth, cfg->comp, cfg->lstm, cfg->attn);
}

static int unsupp(char *err, size_t n_err, const char *what)
{
	return sfa_err(err, n_err, SFA_EUNSUPP, "HDemucs option %s is not supported", what);
}

int nn_hdemucs_build(struct nn_ckpt *ckpt, struct nn_hdemucs **out, char *err, size_t n_err)
{
	if (ckpt->klass != NN_PKG_HDEMUCS)
		return sfa_err(err, n_err, SFA_EUNSUPP, "not an HDemucs checkpoint (%s)",
		               nn_pk_global_name(ckpt->klass));
	struct nn_hdemucs *m = calloc(1, sizeof *m);
	if (!m)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	struct nn_htdemucs_info *info = &m->info;
	int rc;
	long audio_channels, channels, growth, nfft, depth, kernel, stride, time_stride, context,
		context_enc, norm_starts, norm_groups, dconv_mode, dconv_depth, dconv_comp,
		dconv_attn, dconv_lstm, samplerate, wiener_iters, multi_depth;
	double freq_emb, emb_scale;
	bool rewrite, cac, hybrid, hybrid_old;
	const struct nn_pk *ch_time = nn_kw(ckpt, "channels_time");
	const struct nn_pk *mf = nn_kw(ckpt, "multi_freqs");
#define KW(call) NN_TRY(rc, call, fail)
	KW(nn_kw_int(ckpt, "audio_channels", 2, &audio_channels, err, n_err));
	KW(nn_kw_int(ckpt, "channels", 48, &channels, err, n_err));
	KW(nn_kw_int(ckpt, "growth", 2, &growth, err, n_err));
	KW(nn_kw_int(ckpt, "nfft", 4096, &nfft, err, n_err));
	KW(nn_kw_int(ckpt, "depth", 6, &depth, err, n_err));
	KW(nn_kw_int(ckpt, "kernel_size", 8, &kernel, err, n_err));
	KW(nn_kw_int(ckpt, "stride", 4, &stride, err, n_err));
	KW(nn_kw_int(ckpt, "time_stride", 2, &time_stride, err, n_err));
	KW(nn_kw_int(ckpt, "context", 1, &context, err, n_err));
	KW(nn_kw_int(ckpt, "context_enc", 0, &context_enc, err, n_err));
	KW(nn_kw_int(ckpt, "norm_starts", 4, &norm_starts, err, n_err));
	KW(nn_kw_int(ckpt, "norm_groups", 4, &norm_groups, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_mode", 1, &dconv_mode, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_depth", 2, &dconv_depth, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_comp", 4, &dconv_comp, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_attn", 4, &dconv_attn, err, n_err));
	KW(nn_kw_int(ckpt, "dconv_lstm", 4, &dconv_lstm, err, n_err));
	KW(nn_kw_int(ckpt, "samplerate", 44100, &samplerate, err, n_err));
	KW(nn_kw_int(ckpt, "wiener_iters", 0, &wiener_iters, err, n_err));
	KW(nn_kw_int(ckpt, "multi_freqs_depth", 2, &multi_depth, err, n_err));
	KW(nn_kw_double(ckpt, "freq_emb", 0.2, &freq_emb, err, n_err));
	KW(nn_kw_double(ckpt, "emb_scale", 10, &emb_scale, err, n_err));
	KW(nn_kw_bool(ckpt, "rewrite", true, &rewrite, err, n_err));
	KW(nn_kw_bool(ckpt, "cac", true, &cac, err, n_err));
	KW(nn_kw_bool(ckpt, "hybrid", true, &hybrid, err, n_err));
	KW(nn_kw_bool(ckpt, "hybrid_old", false, &hybrid_old, err, n_err));
#undef KW
	(void)multi_depth;
	if (!hybrid) {
		rc = unsupp(err, n_err, "hybrid=False");
		goto fail;
	}
	if (!cac && wiener_iters != 0) {
		rc = unsupp(err, n_err, "wiener_iters > 0");
		goto fail;
	}
	if (mf && !((mf->type == NN_PK_LIST || mf->type == NN_PK_TUPLE) && mf->u.seq.n == 0) &&
	    mf->type != NN_PK_NONE) {
		rc = unsupp(err, n_err, "multi_freqs");
		goto fail;
	}
	if (ch_time && ch_time->type != NN_PK_NONE &&
	    !(ch_time->type == NN_PK_INT && ch_time->u.i == channels)) {
		rc = unsupp(err, n_err, "channels_time (different from channels)");
		goto fail;
	}
	if (audio_channels < 1 || audio_channels > 8 || channels < 1 || channels > 4096 ||
	    growth < 1 || growth > 8 || depth < 1 || depth > MAX_LEVELS || kernel < 2 ||
	    kernel > 64 || stride < 1 || stride > kernel || time_stride < 1 || time_stride > 16 ||
	    context < 0 || context > 8 || context_enc < 0 || context_enc > 8 || dconv_depth < 0 ||
	    dconv_depth > MAX_DC || dconv_comp < 1 || norm_groups < 1 || norm_groups > 64 ||
	    samplerate < 1000 || samplerate > 384000 || (dconv_mode & ~3L) || nfft < 16 ||
	    nfft > 65536 || (nfft & (nfft - 1))) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP, "HDemucs hyper-parameters out of range");
		goto fail;
	}
	info->audio_channels = (int)audio_channels;
	info->samplerate = (int)samplerate;
	if ((rc = nn_net_read_sources(ckpt, info, err, n_err)) ||
	    (rc = nn_net_read_segment(ckpt, info, err, n_err)))
		goto fail;
	m->nfft = (int)nfft;
	m->depth = (int)depth;
	m->cac = cac;
	m->hybrid_old = hybrid_old;
	m->kernel = (int)kernel;
	m->stride = (int)stride;
	m->time_stride = (int)time_stride;
	m->kc = -1;

	/* Following HDemucs.__init__. */
	int S = info->n_sources, C = info->audio_channels;
	long chin = C, chin_z = cac ? 2 * C : C, chout = channels, chout_z = channels;
	long freqs = nfft / 2;
	struct nn_binder bd = {.c = ckpt, .err = err, .n_err = n_err};
	char n[64];
	m->fz[0] = (int)freqs;
	for (int k = 0; k < depth; k++) {
		struct layer_cfg cfg = {.dconv = 0,
		                        .ctx = (int)context_enc,
		                        .rewrite = rewrite,
		                        .depth = (int)dconv_depth,
		                        .comp = (int)dconv_comp,
		                        .lstm = k >= dconv_lstm,
		                        .attn = k >= dconv_attn};
		int groups = k >= norm_starts ? (int)norm_groups : 0;
		int freq = freqs > 1;
		int ker = (int)kernel, stri = (int)stride, pad = 1, last_freq = 0;
		if (!freq) {
			ker = (int)time_stride * 2;
			stri = (int)time_stride;
		}
		if (freq && freqs <= kernel) {
			ker = (int)freqs;
			pad = 0;
			last_freq = 1;
			m->kc = k;
		}
		if (last_freq) {
			chout_z = chout > chout_z ? chout : chout_z;
			chout = chout_z;
		}
		if (chout_z > 65536 ||
		    (cfg.lstm || cfg.attn ? (chout_z / dconv_comp) % ATTN_HEADS : 0) ||
		    chout_z / dconv_comp < 1) {
			rc = sfa_err(err, n_err, SFA_EUNSUPP,
			             "HDemucs channel counts not supported");
			goto fail;
		}
		if (groups &&
		    (chout_z % groups || chout % groups || chin_z % groups || chin % groups)) {
			rc = sfa_err(err, n_err, SFA_EUNSUPP,
			             "HDemucs norm_groups %ld does not divide the channels",
			             norm_groups);
			goto fail;
		}
		m->cz[k] = (int)chin_z;
		if (freq)
			m->ct[k] = (int)chin;
		cfg.dconv = dconv_mode & 1;
		snprintf(n, sizeof n, "encoder.%d", k);
		bind_enc(&bd, &m->enc[k], n, (int)chin_z, (int)chout_z, ker, stri,
		         pad ? ker / 4 : 0, freq, 0, groups, &cfg);
		if (freq) {
			snprintf(n, sizeof n, "tencoder.%d", k);
			bind_enc(&bd, &m->tenc[k], n, (int)chin, (int)chout, (int)kernel,
			         (int)stride, (int)kernel / 4, 0, last_freq, groups, &cfg);
		}
		if (k == 0) {
			chin = (long)C * S;
			chin_z = cac ? 2 * chin : chin;
		}
		cfg.dconv = (dconv_mode & 2) != 0;
		cfg.ctx = (int)context;
		snprintf(n, sizeof n, "decoder.%d", (int)depth - 1 - k);
		bind_dec(&bd, &m->dec[k], n, (int)chout_z, (int)chin_z, ker, stri,
		         pad ? ker / 4 : 0, freq, 0, groups, &cfg);
		if (freq) {
			/* tdecoder is filled by insert(0): level k is tdecoder[kc - k] (kc known at
			 * the end; renamed below). */
			m->tdec[k].chin = (int)chout;
			m->tdec[k].chout = (int)chin;
			m->tdec[k].empty = last_freq;
			m->tdec[k].groups = groups;
		}
		chin = chout;
		chin_z = chout_z;
		chout *= growth;
		chout_z *= growth;
		if (freq)
			freqs = freqs <= kernel ? 1 : freqs / stride;
		m->fz[k + 1] = (int)freqs;
		if (freq && !last_freq &&
		    nn_conv_out(m->fz[k], ker, stri, ker / 4, 1) != m->fz[k + 1]) {
			rc = sfa_err(
				err, n_err, SFA_EUNSUPP,
				"HDemucs frequency sizes do not round-trip (nfft %ld, stride %ld)",
				nfft, stride);
			goto fail;
		}
		if (k == 0 && freq_emb != 0.0) {
			m->freq_emb_scale = (float)(freq_emb * emb_scale);
			m->freq_emb = NN_BIND(&bd, "freq_emb.embedding.weight", freqs, chin_z);
		}
	}
	m->cz[depth] = (int)chin_z;
	if (m->kc < 0) {
		rc = sfa_err(
			err, n_err, SFA_EUNSUPP,
			"HDemucs depth %ld does not collapse the frequency axis (not supported)",
			depth);
		goto fail;
	}
	/* The forward computes level 0 in row tiles (see enc0_rows); every release model
	 * fits: the collapse is deeper, GroupNorm starts later, the encoder rewrite is 1x1. */
	if (m->kc == 0 || norm_starts < 1 || context_enc != 0) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP, "HDemucs with %s is not supported",
		             m->kc == 0        ? "the frequency axis collapsed at the first layer"
		             : norm_starts < 1 ? "norm_starts 0"
		                               : "context_enc > 0");
		goto fail;
	}
	/* The time decoders, now that their indices are known. */
	for (int k = 0; k <= m->kc; k++) {
		struct layer_cfg cfg = {.dconv = (dconv_mode & 2) != 0,
		                        .ctx = (int)context,
		                        .rewrite = rewrite,
		                        .depth = (int)dconv_depth,
		                        .comp = (int)dconv_comp,
		                        .lstm = k >= dconv_lstm,
		                        .attn = k >= dconv_attn};
		struct hlayer t = m->tdec[k];
		snprintf(n, sizeof n, "tdecoder.%d", m->kc - k);
		bind_dec(&bd, &m->tdec[k], n, t.chin, t.chout, (int)kernel, (int)stride,
		         (int)kernel / 4, 0, t.empty, t.groups, &cfg);
	}
	if (bd.rc) {
		rc = bd.rc;
		goto fail;
	}
	if ((rc = nn_binder_leftover(ckpt, err, n_err)) != 0)
		goto fail;
	struct shapes sh;
	if (make_shapes(m, info->training_length, &sh) != 0) {
		rc = sfa_err(err, n_err, SFA_EUNSUPP,
		             "HDemucs time and frequency branches do not align at the collapsing "
		             "layer");
		goto fail;
	}
	if ((rc = nn_net_take(ckpt, (int)nfft, info, &m->ckpt, &m->stft, err, n_err)) != 0)
		goto fail;
	*out = m;
	return 0;
fail:
	nn_binder_reset(ckpt);
	free(m);
	return rc;
}

void nn_hdemucs_free(struct nn_hdemucs *m)
{
	if (m)
		nn_net_release(&m->ckpt, m->stft);
	free(m);
}

const struct nn_htdemucs_info *nn_hdemucs_info(const struct nn_hdemucs *m) { return &m->info; }

/* ---------------------------------------------------------------------------------- */
/* Kernels.                                                                           */

/* GroupNorm(groups, C) on a contiguous (C, n) tensor. */
static void groupnorm(float *x, int c, size_t n, int groups, const float *w, const float *b)
{
	int cg = c / groups;
	for (int g = 0; g < groups; g++) {
		float *blk = x + (size_t)g * cg * n;
		size_t cnt = (size_t)cg * n;
		double mean = nn_sum(blk, cnt) / (double)cnt;
		double var = nn_ssd(blk, cnt, (float)mean) / (double)cnt;
		nn_groupnorm_apply(blk, cg, n, n, mean, var, w + (size_t)g * cg, b + (size_t)g * cg,
		                   GN_EPS);
	}
}

/* y (cout, t) = w (cout, cin) x (cin, t) + b, x channels ldx apart. */
static void conv1x1(const float *w, const float *b, int cin, int cout, const float *x, size_t ldx,
                    int t, float *y)
{
	for (int c = 0; c < cout; c++)
		for (int i = 0; i < t; i++)
			y[(size_t)c * t + i] = b[c];
	nn_gemm(false, false, cout, t, cin, 1.0f, w, cin, x, (int)ldx, 1.0f, y, t);
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

/* One direction of one layer of the BLSTM below: in (N, din) -> its half of out (N, 2H). */
struct lstm_dir {
	const struct lstm_w *w;
	int H, layer, width, nfr;
	size_t N;
	const float *in;
	float *out;
};

static void lstm_dir_part(void *arg, int dir, struct nn_ws *ws)
{
	const struct lstm_dir *a = arg;
	const struct lstm_w *w = a->w;
	int H = a->H, G = 4 * H, layer = a->layer, width = a->width, nfr = a->nfr;
	int din = layer ? 2 * H : H;
	size_t N = a->N;
	float *g = nn_ws_floats(ws, N * 4 * H);
	float *hs = nn_ws_floats(ws, (size_t)nfr * H);
	float *cs = nn_ws_floats(ws, (size_t)nfr * H);
	float *gs = nn_ws_floats(ws, (size_t)nfr * 4 * H);
	float *whh = nn_ws_floats(ws, NN_FEW_ROWS_FLOATS(G, H));
	if (!g || !hs || !cs || !gs || !whh)
		return;
	nn_few_rows_pack(w->whh[layer][dir], G, H, H, whh);
	const float *bih = w->bih[layer][dir], *bhh = w->bhh[layer][dir];
	for (size_t r = 0; r < N; r++)
		for (int c = 0; c < G; c++)
			g[r * G + c] = bih[c] + bhh[c];
	nn_gemm(false, true, (int)N, G, din, 1.0f, a->in, din, w->wih[layer][dir], din, 1.0f, g, G);
	memset(hs, 0, (size_t)nfr * H * sizeof *hs);
	memset(cs, 0, (size_t)nfr * H * sizeof *cs);
	for (int s = 0; s < width; s++) {
		int j = dir ? width - 1 - s : s;
		for (int f = 0; f < nfr; f++)
			memcpy(gs + (size_t)f * G, g + ((size_t)f * width + j) * G,
			       (size_t)G * sizeof *gs);
		nn_gemm_few_rows(nfr, G, H, hs, H, whh, gs, G);
		for (int f = 0; f < nfr; f++) {
			float *hr = hs + (size_t)f * H;
			nn_lstm_cell(gs + (size_t)f * G, cs + (size_t)f * H, hr, H);
			memcpy(a->out + ((size_t)f * width + j) * 2 * H + (size_t)dir * H, hr,
			       (size_t)H * sizeof *hr);
		}
	}
}

/* BLSTM(dim=H, layers=2, max_steps=200, skip=True) in place on x (H, t), channels ld apart. */
static void blstm_run(struct nn_ws *ws, const struct lstm_w *w, int H, float *x, int t, size_t ld)
{
	int framed = t > LSTM_MAX_STEPS;
	int width = framed ? LSTM_MAX_STEPS : t, fs = LSTM_MAX_STEPS / 2;
	int nfr = framed ? (t + fs - 1) / fs : 1;
	size_t N = (size_t)nfr * width;
	size_t mark = nn_ws_mark(ws);
	float *in = nn_ws_floats(ws, N * 2 * H);
	float *out = nn_ws_floats(ws, N * 2 * H);
	if (!in || !out)
		return;
	for (int f = 0; f < nfr; f++)
		for (int j = 0; j < width; j++) {
			int src = f * fs + j;
			float *row = in + ((size_t)f * width + j) * H;
			for (int c = 0; c < H; c++)
				row[c] = src < t ? x[(size_t)c * ld + src] : 0.0f;
		}
	for (int layer = 0; layer < 2; layer++) {
		/* The two directions are independent (each writes its half of every output row):
		 * parts of a team. */
		struct lstm_dir a = {.w = w,
		                     .H = H,
		                     .layer = layer,
		                     .width = width,
		                     .nfr = nfr,
		                     .N = N,
		                     .in = in,
		                     .out = out};
		nn_team_parts(ws, 2, lstm_dir_part, &a);
		float *tmp = in;
		in = out;
		out = tmp;
	}
	/* Linear 2H -> H into `out`, then un-frame and add (skip=True). */
	nn_linear(in, (int)N, 2 * H, w->lin_w, w->lin_b, H, out, H);
	int limit = fs / 2;
	for (int tt = 0; tt < t; tt++) {
		int f = 0;
		if (framed) {
			f = (tt - limit) / fs;
			if (tt < limit || f < 0)
				f = 0;
			if (f > nfr - 1)
				f = nfr - 1;
		}
		const float *row = out + ((size_t)f * width + (tt - f * fs)) * H;
		for (int c = 0; c < H; c++)
			x[(size_t)c * ld + tt] += row[c];
	}
	nn_ws_release(ws, mark);
}

/* One head of LocalState below (heads are independent: parts of a team). */
struct local_head {
	const float *q, *k, *v, *dq;
	float *res;
	int hd, t;
};

static void local_head_part(void *arg, int h, struct nn_ws *ws)
{
	const struct local_head *a = arg;
	int hd = a->hd, t = a->t, nd = ATTN_NDECAY;
	float *dots = nn_ws_floats(ws, (size_t)t * t);
	if (!dots)
		return;
	float scale = (float)sqrt((double)hd), sqnd = (float)sqrt((double)nd);
	const float *qh = a->q + (size_t)h * hd * t, *kh = a->k + (size_t)h * hd * t;
	/* dots[s][j]: query s, key j. */
	nn_gemm(true, false, t, t, hd, 1.0f, qh, t, kh, t, 0.0f, dots, t);
	const float *dqh = a->dq + (size_t)h * nd * t;
	for (int s = 0; s < t; s++) {
		float *row = dots + (size_t)s * t;
		for (int j = 0; j < t; j++) {
			float delta = fabsf((float)(j - s));
			float acc = 0.0f;
			for (int f = 0; f < nd; f++)
				acc += (-(float)(f + 1) * delta / sqnd) * dqh[(size_t)f * t + s];
			row[j] = row[j] / scale + acc;
		}
		row[s] = -100.0f;
	}
	nn_softmax_rows(dots, t, t, t);
	nn_gemm(false, true, hd, t, t, 1.0f, a->v + (size_t)h * hd * t, t, dots, t, 0.0f,
	        a->res + (size_t)h * hd * t, t);
}

/* LocalState(C, heads 4, ndecay 4) in place on x (C, t), channels ld apart. */
static void localstate_run(struct nn_ws *ws, const struct attn_w *w, int C, float *x, int t,
                           size_t ld)
{
	int hd = C / ATTN_HEADS, nd = ATTN_NDECAY;
	size_t mark = nn_ws_mark(ws);
	size_t n = (size_t)C * t;
	float *q = nn_ws_floats(ws, n), *k = nn_ws_floats(ws, n), *v = nn_ws_floats(ws, n);
	float *res = nn_ws_floats(ws, n);
	float *dq = nn_ws_floats(ws, (size_t)ATTN_HEADS * nd * t);
	if (!q || !k || !v || !res || !dq)
		return;
	conv1x1(w->qw, w->qb, C, C, x, ld, t, q);
	conv1x1(w->kw, w->kb, C, C, x, ld, t, k);
	conv1x1(w->cw, w->cb, C, C, x, ld, t, v);
	conv1x1(w->dw, w->db, C, ATTN_HEADS * nd, x, ld, t, dq);
	for (size_t i = 0; i < (size_t)ATTN_HEADS * nd * t; i++)
		dq[i] = sigm(dq[i]) / 2.0f;
	struct local_head a = {.q = q, .k = k, .v = v, .dq = dq, .res = res, .hd = hd, .t = t};
	nn_team_parts(ws, ATTN_HEADS, local_head_part, &a);
	conv1x1(w->pw, w->pb, C, C, res, (size_t)t, t, q);
	for (int c = 0; c < C; c++)
		for (int i = 0; i < t; i++)
			x[(size_t)c * ld + i] += q[(size_t)c * t + i];
	nn_ws_release(ws, mark);
}

/* One DConv residual layer with BiLSTM and/or LocalState on one row x (ch, t). */
static void dconv_layer_seq(struct nn_ws *ws, const struct dconv *dc, int d, float *x, int ch,
                            int t, size_t ld)
{
	const struct nn_dconv_w *w = &dc->w[d];
	const struct dc_w *e = &dc->l[d];
	int hid = dc->hid, dil = 1 << d;
	size_t mark = nn_ws_mark(ws);
	float *h = nn_ws_floats(ws, (size_t)hid * t);
	float *z = nn_ws_floats(ws, (size_t)2 * ch * t);
	if (!h || !z)
		return;
	struct nn_conv c1 = {.w = w->c1w,
	                     .b = w->c1b,
	                     .cin = ch,
	                     .cout = hid,
	                     .kh = 1,
	                     .kw = 3,
	                     .sh = 1,
	                     .sw = 1,
	                     .ph = 0,
	                     .pw = dil,
	                     .dh = 1,
	                     .dw = dil};
	nn_conv2d(ws, &c1, x, 1, t, ld, h, 1, t, (size_t)t);
	nn_groupnorm1_slices(h, hid, 1, t, (size_t)t, w->g1w, w->g1b, GN_EPS);
	nn_gelu(h, (size_t)hid * t);
	if (dc->lstm)
		blstm_run(ws, &e->lstm, hid, h, t, (size_t)t);
	if (dc->attn)
		localstate_run(ws, &e->attn, hid, h, t, (size_t)t);
	conv1x1(w->c2w, w->c2b, hid, 2 * ch, h, (size_t)t, t, z);
	nn_groupnorm1_slices(z, 2 * ch, 1, t, (size_t)t, w->g2w, w->g2b, GN_EPS);
	nn_glu_scale_add_channels(z, ch, (size_t)t, w->scale, x, ld);
	nn_ws_release(ws, mark);
}

/* DConv in place on x (ch, rows, t), channel stride ld; it runs along t, per row. */
static void dconv_run(struct nn_ws *ws, const struct dconv *dc, float *x, int ch, int rows, int t,
                      size_t ld)
{
	if (!dc->n)
		return;
	if (dc->lstm || dc->attn) {
		for (int r = 0; r < rows; r++)
			for (int d = 0; d < dc->n; d++)
				dconv_layer_seq(ws, dc, d, x + (size_t)r * t, ch, t, ld);
	} else if (rows == 1) {
		nn_dconv_long(ws, dc->w, dc->n, dc->hid, x, ch, t, GN_EPS);
	} else {
		nn_dconv_rows(ws, dc->w, dc->n, dc->hid, x, ch, rows, t, ld, GN_EPS);
	}
}

struct cng {
	const struct nn_conv *c;
	int groups;
	const float *gw, *gb, *src;
	int h, w;
	size_t lds;
	float *dst;
	int ho, wo;
	size_t ldd;
	int rows; /* per part */
};

static void cng_part(void *arg, int part, struct nn_ws *ws)
{
	const struct cng *a = arg;
	int ch = a->c->cout / 2, r0 = part * a->rows;
	int r1 = r0 + a->rows < a->ho ? r0 + a->rows : a->ho;
	size_t n = (size_t)(r1 - r0) * a->wo;
	float *tmp = nn_ws_floats(ws, (size_t)a->c->cout * n);
	if (!tmp)
		return;
	nn_conv2d_rows(ws, a->c, a->src, a->h, a->w, a->lds, r0, r1, a->wo, tmp, n);
	if (a->groups)
		groupnorm(tmp, a->c->cout, n, a->groups, a->gw, a->gb);
	nn_glu_channels(tmp, ch, n, a->dst + (size_t)r0 * a->wo, a->ldd);
}

/* dst (cout/2, ho, wo) = GLU(norm(conv(src))). Without GroupNorm the conv runs in row
 * tiles (shared by a team); with it the whole output is needed for the statistics. src
 * may equal dst only for a pointwise conv. */
static void conv_norm_glu(struct nn_ws *ws, const struct nn_conv *c, int groups, const float *gw,
                          const float *gb, const float *src, int h, int w, size_t lds, float *dst,
                          int ho, int wo, size_t ldd)
{
	size_t per_row = (size_t)c->cout * wo;
	int rows = groups ? ho : (int)(NN_OPS_TILE_FLOATS / per_row);
	if (rows < 1)
		rows = 1;
	if (rows > ho)
		rows = ho;
	struct cng a = {.c = c,
	                .groups = groups,
	                .gw = gw,
	                .gb = gb,
	                .src = src,
	                .h = h,
	                .w = w,
	                .lds = lds,
	                .dst = dst,
	                .ho = ho,
	                .wo = wo,
	                .ldd = ldd,
	                .rows = rows};
	nn_team_parts(ws, (ho + rows - 1) / rows, cng_part, &a);
}

/* HEncLayer: x (chin, h, w) -> y (chout, ho, w). Frequency layers convolve along the rows
 * (h = bins, w = frames); time layers see (chin, len) as (chin, len, 1), right-padded
 * with zeros to a multiple of the stride. inject (chout, w) is added to every row. */
static void enc_run(struct nn_ws *ws, const struct hlayer *l, const float *x, int h, int w,
                    float *y, int ho, const float *inject)
{
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
	size_t plane = (size_t)ho * w;
	nn_conv2d(ws, &c, x, h, w, (size_t)h * w, y, ho, w, plane);
	if (l->empty)
		return;
	if (inject)
		for (int co = 0; co < l->chout; co++)
			for (int r = 0; r < ho; r++)
				for (int j = 0; j < w; j++)
					y[(size_t)co * plane + (size_t)r * w + j] +=
						inject[(size_t)co * w + j];
	if (l->groups)
		groupnorm(y, l->chout, plane, l->groups, l->n1w, l->n1b);
	nn_gelu(y, (size_t)l->chout * plane);
	if (l->freq)
		dconv_run(ws, &l->dc, y, l->chout, ho, w, plane);
	else
		dconv_run(ws, &l->dc, y, l->chout, 1, ho, plane);
	if (!l->rw)
		return;
	int ctx = l->rk / 2;
	struct nn_conv r = {.w = l->rw,
	                    .b = l->rb,
	                    .cin = l->chout,
	                    .cout = 2 * l->chout,
	                    .kh = l->rk,
	                    .kw = l->freq ? l->rk : 1,
	                    .sh = 1,
	                    .sw = 1,
	                    .ph = ctx,
	                    .pw = l->freq ? ctx : 0,
	                    .dh = 1,
	                    .dw = 1};
	if (ctx == 0 && !l->groups) {
		conv_norm_glu(ws, &r, 0, NULL, NULL, y, ho, w, plane, y, ho, w, plane);
	} else {
		size_t mark = nn_ws_mark(ws);
		float *copy = nn_ws_copy(ws, y, (size_t)l->chout * plane);
		if (!copy)
			return;
		conv_norm_glu(ws, &r, l->groups, l->n2w, l->n2b, copy, ho, w, plane, y, ho, w,
		              plane);
		nn_ws_release(ws, mark);
	}
}

/* HDecLayer on k = input + skip (chin, h, w) -> z (chout, hout, w). Frequency layers
 * (w = frames) crop pad rows on each side of the transposed conv's output; time layers
 * (w = 1, h = len) keep [pad, pad + hout). With pre != NULL the activation before the
 * transposed conv is copied there (chin, h, w). */
static void dec_run(struct nn_ws *ws, const struct hlayer *l, int last, const float *k, int h,
                    int w, float *z, int hout, float *pre)
{
	size_t plane = (size_t)h * w, oplane = (size_t)hout * w;
	int ctx = l->rk / 2;
	struct nn_conv r = {.w = l->rw,
	                    .b = l->rb,
	                    .cin = l->chin,
	                    .cout = 2 * l->chin,
	                    .kh = l->rk,
	                    .kw = l->freq ? l->rk : 1,
	                    .sh = 1,
	                    .sw = 1,
	                    .ph = ctx,
	                    .pw = l->freq ? ctx : 0,
	                    .dh = 1,
	                    .dw = 1};
	size_t mark = nn_ws_mark(ws);
	if ((l->freq || !l->dc.n) && !l->groups && !pre && !l->empty) {
		/* Row tiles (frequency rows, or stretches of samples for a time layer without
		 * DConv): everything before the transposed conv is local to them. */
		nn_fill_channels(z, l->chout, l->b, oplane, oplane);
		int nr = nn_tile_rows(DEC_TILE, (size_t)l->chin * w, h);
		float *y = nn_ws_floats(ws, (size_t)l->chin * nr * w);
		if (!y)
			return;
		for (int r0 = 0; r0 < h; r0 += nr) {
			int r1 = r0 + nr < h ? r0 + nr : h;
			size_t n = (size_t)(r1 - r0) * w;
			if (l->rw) {
				size_t m2 = nn_ws_mark(ws);
				float *tmp = nn_ws_floats(ws, (size_t)2 * l->chin * n);
				if (!tmp)
					return;
				nn_conv2d_rows(ws, &r, k, h, w, plane, r0, r1, w, tmp, n);
				nn_glu_channels(tmp, l->chin, n, y, n);
				nn_ws_release(ws, m2);
			} else {
				for (int c = 0; c < l->chin; c++)
					memcpy(y + (size_t)c * n,
					       k + (size_t)c * plane + (size_t)r0 * w,
					       n * sizeof *y);
			}
			dconv_run(ws, &l->dc, y, l->chin, r1 - r0, w, n);
			nn_convtr_h_rows(ws, l->w, l->chin, l->chout, l->ker, l->stride, l->pad, y,
			                 n, r0, r1 - r0, w, z, hout);
		}
	} else {
		const float *y = k;
		if (!l->empty && (l->rw || l->dc.n)) {
			float *yb = nn_ws_floats(ws, (size_t)l->chin * plane);
			if (!yb)
				return;
			if (l->rw)
				conv_norm_glu(ws, &r, l->groups, l->n1w, l->n1b, k, h, w, plane, yb,
				              h, w, plane);
			else
				memcpy(yb, k, (size_t)l->chin * plane * sizeof *yb);
			if (l->freq)
				dconv_run(ws, &l->dc, yb, l->chin, h, w, plane);
			else
				dconv_run(ws, &l->dc, yb, l->chin, 1, h, plane);
			y = yb;
		}
		if (pre)
			nn_copy_channels(pre, plane, y, plane, l->chin, plane);
		int hfull = (h - 1) * l->stride + l->ker;
		if (l->groups) {
			size_t fplane = (size_t)hfull * w;
			float *full = nn_ws_floats(ws, (size_t)l->chout * fplane);
			if (!full)
				return;
			nn_convtr_h(ws, l->w, l->b, l->chin, l->chout, l->ker, l->stride, 0, y, h,
			            w, full, hfull);
			groupnorm(full, l->chout, fplane, l->groups, l->n2w, l->n2b);
			nn_copy_channels(z, oplane, full + (size_t)l->pad * w, fplane, l->chout,
			                 oplane);
		} else {
			nn_convtr_h(ws, l->w, l->b, l->chin, l->chout, l->ker, l->stride, l->pad, y,
			            h, w, z, hout);
		}
	}
	if (!last)
		nn_gelu(z, (size_t)l->chout * oplane);
	nn_ws_release(ws, mark);
}

/* openunmix's atan2 (v1.3.0, used by its wiener()): atan(y/x) with quadrant fixes, in
 * float, and 0 where x == y == 0. */
static float unmix_atan2(float y, float x)
{
	const float pi = 3.14159265358979323846f;
	if (x == 0.0f && y == 0.0f)
		x = 1.0f;
	float out = atanf(y / x);
	if (y >= 0.0f && x < 0.0f)
		out += pi;
	if (y < 0.0f && x < 0.0f)
		out -= pi;
	if (y > 0.0f && x == 0.0f)
		out = pi / 2.0f;
	if (y < 0.0f && x == 0.0f)
		out = -pi / 2.0f;
	return out;
}

int nn_hdemucs_encoder_dconv(const struct nn_hdemucs *m, struct nn_ws *ws, int layer, float *x,
                             int channels, int t)
{
	if (layer < 0 || layer >= m->depth || !m->enc[layer].dc.n ||
	    m->enc[layer].chout != channels || t < 1)
		return SFA_EINVAL;
	dconv_run(ws, &m->enc[layer].dc, x, channels, 1, t, (size_t)t);
	return ws->failed ? SFA_ENOMEM : 0;
}

/* Activations that grow with the segment (the skips, the decoder outputs, the
 * spectrograms) are mapped for exactly their lifetime and unmapped after, so that the
 * resident memory follows what is alive; the workspace keeps only kernel tiles. The
 * mappings ask for transparent huge pages (where the kernel offers them on request), so
 * that mapping ~1.5 GB per 44 s segment costs a few thousand page faults, not ~400,000.
 * A mapping starts at a 2 MiB boundary with a 64-byte header: where the mmap began, and
 * its size. */
enum { BIG_ALIGN = 2 << 20, BIG_HEADER_FLOATS = 16 };

static float *big_new(size_t n)
{
	size_t bytes = (n + BIG_HEADER_FLOATS) * sizeof(float) + BIG_ALIGN;
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t at = ((uintptr_t)p + BIG_ALIGN - 1) & ~(uintptr_t)(BIG_ALIGN - 1);
	madvise((void *)at, (uintptr_t)p + bytes - at, MADV_HUGEPAGE);
	size_t *h = (size_t *)at;
	h[0] = (size_t)(uintptr_t)p;
	h[1] = bytes;
	return (float *)at + BIG_HEADER_FLOATS;
}

static void big_free(float **pp)
{
	if (!*pp)
		return;
	const size_t *h = (const size_t *)(void *)(*pp - BIG_HEADER_FLOATS);
	munmap((void *)(uintptr_t)h[0], h[1]);
	*pp = NULL;
}

/* The spectrogram of one channel of mix (a part of a team: the channels are independent):
 * re and im into planes 2c and 2c+1 of dst, or with mag its magnitude into plane c (the
 * complex planes then in a buffer of the part's own, one per thread at most: below the
 * level-1 peak). */
struct spec_job {
	const struct nn_hdemucs *m;
	const float *mix;
	int L, T, mag;
	float *dst;
	_Atomic int failed;
};

static void spec_channel(void *arg, int c, struct nn_ws *ws)
{
	struct spec_job *a = arg;
	const struct nn_hdemucs *m = a->m;
	size_t fplane = (size_t)m->fz[0] * a->T;
	float *z = a->mag ? big_new(2 * fplane) : NULL;
	if (a->mag && !z) {
		a->failed = 1;
		return;
	}
	float *re = a->mag ? z : a->dst + (size_t)(2 * c) * fplane, *im = re + fplane;
	nn_stft_spec_ex(m->stft, ws, a->mix + (size_t)c * a->L, a->L, m->hybrid_old, re, im);
	if (a->mag)
		for (size_t i = 0; i < fplane; i++)
			a->dst[(size_t)c * fplane + i] = hypotf(re[i], im[i]);
	big_free(&z);
}

/* The network's frequency input (cin planes of fz[0] x T): the mixture's spectrogram, as
 * re/im channels (CaC) or magnitudes, standardised; its mean and std come back for the
 * output. 0 or SFA_ENOMEM. */
static int spec_input(const struct nn_hdemucs *m, struct nn_ws *ws, const float *mix, int L, int T,
                      float *xf, double *mean, double *std)
{
	int C = m->info.audio_channels, cin = m->cac ? 2 * C : C;
	struct spec_job a = {.m = m, .mix = mix, .L = L, .T = T, .dst = xf, .mag = !m->cac};
	nn_team_parts(ws, C, spec_channel, &a);
	if (a.failed)
		return SFA_ENOMEM;
	nn_standardize(xf, (size_t)cin * (size_t)m->fz[0] * T, xf, mean, std);
	return 0;
}

/* Encoder level 0 on its output rows [r0, r1): conv, GELU, DConv, 1x1 rewrite + GLU, into
 * dst (chout channels ldd apart, row r0 first). Every step is local to a row at this level
 * (nn_hdemucs_build refuses GroupNorm or a wider rewrite there), so the level can run in
 * row tiles; the tiles are always the same (enc0_tile_rows), hence the same bits whether
 * it runs for the encoder or again for the decoder. */
static void enc0_rows(struct nn_ws *ws, const struct nn_hdemucs *m, const float *xf, int T, int r0,
                      int r1, float *dst, size_t ldd)
{
	const struct hlayer *l = &m->enc[0];
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
	int nr = r1 - r0;
	size_t n = (size_t)nr * T;
	nn_conv2d_rows(ws, &c, xf, m->fz[0], T, (size_t)m->fz[0] * T, r0, r1, T, dst, ldd);
	for (int co = 0; co < l->chout; co++)
		nn_gelu(dst + (size_t)co * ldd, n);
	dconv_run(ws, &l->dc, dst, l->chout, nr, T, ldd);
	if (l->rw) {
		struct nn_conv r = {.w = l->rw,
		                    .b = l->rb,
		                    .cin = l->chout,
		                    .cout = 2 * l->chout,
		                    .kh = 1,
		                    .kw = 1,
		                    .sh = 1,
		                    .sw = 1,
		                    .dh = 1,
		                    .dw = 1};
		conv_norm_glu(ws, &r, 0, NULL, NULL, dst, nr, T, ldd, dst, nr, T, ldd);
	}
}

/* Adds freq_emb (scaled) to rows [r0, r1) of x (cz[1] channels ld apart, row r0 first). */
static void add_freq_emb(const struct nn_hdemucs *m, float *x, size_t ld, int r0, int r1, int T)
{
	if (!m->freq_emb)
		return;
	for (int c = 0; c < m->cz[1]; c++)
		for (int f = r0; f < r1; f++) {
			float e = m->freq_emb_scale * m->freq_emb[(size_t)f * m->cz[1] + c];
			float *row = x + (size_t)c * ld + (size_t)(f - r0) * T;
			for (int j = 0; j < T; j++)
				row[j] += e;
		}
}

static int enc0_tile_rows(const struct nn_hdemucs *m, int T)
{
	int r = (int)(NN_OPS_TILE_FLOATS / ((size_t)m->cz[1] * T));
	return r < 1 ? 1 : r;
}

/* Level 0 of the encoder, tile by tile (parts of a team): stored into skip0 (add = NULL),
 * or computed again with freq_emb and added into add. */
struct enc0_job {
	const struct nn_hdemucs *m;
	const float *xf;
	int T, tile;
	float *skip0, *add;
};

static void enc0_part(void *arg, int part, struct nn_ws *ws)
{
	const struct enc0_job *a = arg;
	const struct nn_hdemucs *m = a->m;
	int T = a->T, r0 = part * a->tile, fz1 = m->fz[1];
	int r1 = r0 + a->tile < fz1 ? r0 + a->tile : fz1;
	size_t plane1 = (size_t)fz1 * T;
	if (!a->add) {
		enc0_rows(ws, m, a->xf, T, r0, r1, a->skip0 + (size_t)r0 * T, plane1);
		return;
	}
	size_t n = (size_t)(r1 - r0) * T;
	float *t0 = nn_ws_floats(ws, (size_t)m->cz[1] * n);
	if (!t0)
		return;
	enc0_rows(ws, m, a->xf, T, r0, r1, t0, n);
	add_freq_emb(m, t0, n, r0, r1, T);
	for (int c = 0; c < m->cz[1]; c++)
		nn_add(a->add + (size_t)c * plane1 + (size_t)r0 * T, t0 + (size_t)c * n, n);
}

/* The outermost frequency decoder after its rewrite (y), one source per part of a team:
 * the transposed conv to the source's C * cz_out channels, the standardisation undone,
 * the complex spectrogram (CaC) or the magnitude with the mixture's phase (zm), iSTFT,
 * added to the time part already in out. */
struct dec0_job {
	const struct nn_hdemucs *m;
	const float *y, *zm;
	float *out;
	int T, L;
	double fmean, fstd;
	float *dbg_dec, *dbg_istft; /* whole copies for the debug hook, or NULL */
};

static void dec0_source(void *arg, int s, struct nn_ws *ws)
{
	const struct dec0_job *a = arg;
	const struct nn_hdemucs *m = a->m;
	const struct hlayer *d0 = &m->dec[0];
	int C = m->info.audio_channels, T = a->T, L = a->L, cs = C * (m->cac ? 2 : 1);
	size_t fplane = (size_t)m->fz[0] * T, wrow = (size_t)cs * d0->ker;
	float *zs = big_new((size_t)cs * fplane);
	float *bre = m->cac ? NULL : big_new(fplane), *bim = m->cac ? NULL : big_new(fplane);
	float *wsub = nn_ws_floats(ws, (size_t)d0->chin * wrow);
	float *audio = nn_ws_floats(ws, (size_t)L);
	if (!zs || (!m->cac && (!bre || !bim)) || !wsub || !audio) {
		ws->failed = true;
		goto done;
	}
	/* The source's slice of the (chin, chout * ker) weights. */
	for (int ci = 0; ci < d0->chin; ci++)
		memcpy(wsub + (size_t)ci * wrow,
		       d0->w + (size_t)ci * d0->chout * d0->ker + s * wrow, wrow * sizeof *wsub);
	nn_convtr_h(ws, wsub, d0->b + (size_t)s * cs, d0->chin, cs, d0->ker, d0->stride, d0->pad,
	            a->y, m->fz[1], T, zs, m->fz[0]);
	if (a->dbg_dec)
		memcpy(a->dbg_dec + (size_t)s * cs * fplane, zs, (size_t)cs * fplane * sizeof *zs);
	for (size_t i = 0; i < (size_t)cs * fplane; i++)
		zs[i] = zs[i] * (float)a->fstd + (float)a->fmean;
	for (int c = 0; c < C; c++) {
		const float *re, *im;
		if (m->cac) {
			re = zs + (size_t)(2 * c) * fplane;
			im = re + fplane;
		} else {
			const float *mag = zs + (size_t)c * fplane;
			const float *xr = a->zm + (size_t)(2 * c) * fplane, *xi = xr + fplane;
			for (size_t i = 0; i < fplane; i++) {
				float ang = unmix_atan2(xi[i], xr[i]);
				bre[i] = mag[i] * cosf(ang);
				bim[i] = mag[i] * sinf(ang);
			}
			re = bre;
			im = bim;
		}
		nn_stft_ispec_ex(m->stft, ws, re, im, T, L, m->hybrid_old, audio);
		float *o = a->out + (size_t)(s * C + c) * L;
		if (a->dbg_istft)
			memcpy(a->dbg_istft + (size_t)(s * C + c) * L, audio,
			       (size_t)L * sizeof *audio);
		for (int i = 0; i < L; i++)
			o[i] = audio[i] + o[i];
	}
done:
	big_free(&zs);
	big_free(&bre);
	big_free(&bim);
}

/* A layer boundary: stop when the workspace ran out or a cancel came. */
#define CHECK_LAYER() NN_TRY(rc, nn_layer_status(ws, cancel), out)
#define BIG(p, n)                          \
	do {                               \
		if (!((p) = big_new(n))) { \
			rc = SFA_ENOMEM;   \
			goto out;          \
		}                          \
	} while (0)

/* The order of the forward pass is chosen for memory (mdx_extra, 44 s segment, in MiB):
 * the level-0 skip (178) is not kept through the U-Net but computed again, from the
 * spectrogram, when the level-0 decoder needs it, each skip is unmapped once its decoder
 * has run, the time decoders run before the frequency ones, and the outermost frequency
 * decoder's output (238) is produced one source at a time and turned into audio at once.
 * The peak is then at encoder level 1 (~400) instead of ~640. */
int nn_hdemucs_forward(const struct nn_hdemucs *m, struct nn_ws *ws, const float *mix, int len,
                       float *out, const volatile int *cancel)
{
	const struct nn_htdemucs_info *info = &m->info;
	struct shapes sh;
	if (make_shapes(m, len, &sh) != 0)
		return SFA_EINVAL;
	int L = len, C = info->audio_channels, S = info->n_sources;
	int T = sh.frames, depth = m->depth, kc = m->kc;
	int cin = m->cac ? 2 * C : C, cz_out = m->cac ? 2 : 1;
	int rc = 0;
	char name[64];
	size_t mark0 = nn_ws_mark(ws);
	size_t fplane = (size_t)m->fz[0] * T, plane1 = (size_t)m->fz[1] * T;
	float *skip[MAX_LEVELS] = {0}, *tskip[MAX_LEVELS] = {0};
	float *xf = NULL, *xt = NULL, *inj = NULL, *zf = NULL, *zt = NULL, *zn = NULL, *pre = NULL;
	float *y = NULL, *zm = NULL, *dbg_dec = NULL, *dbg_istft = NULL;
	int tile = enc0_tile_rows(m, T);
	double fmean, fstd, tmean, tstd;

	/* Level 0: the inputs, the time encoder, then the frequency encoder in row tiles. */
	BIG(xf, (size_t)cin * fplane);
	BIG(xt, (size_t)C * L);
	if ((rc = spec_input(m, ws, mix, L, T, xf, &fmean, &fstd)) != 0)
		goto out;
	nn_standardize(mix, (size_t)C * L, xt, &tmean, &tstd);
	nn_debug_hook("time_in_norm", xt, (size_t)C * L);
	nn_debug_hook("freq_in_norm", xf, (size_t)cin * fplane);
	BIG(tskip[0], (size_t)m->ct[1] * sh.lt[1]);
	enc_run(ws, &m->tenc[0], xt, sh.lt[0], 1, tskip[0], sh.lt[1], NULL);
	nn_debug_hook("tenc0_out", tskip[0], (size_t)m->ct[1] * sh.lt[1]);
	big_free(&xt);
	BIG(skip[0], (size_t)m->cz[1] * plane1);
	struct enc0_job e0 = {.m = m, .xf = xf, .T = T, .tile = tile, .skip0 = skip[0]};
	nn_team_parts(ws, (m->fz[1] + tile - 1) / tile, enc0_part, &e0);
	big_free(&xf);
	nn_debug_hook("enc0_out", skip[0], (size_t)m->cz[1] * plane1);
	add_freq_emb(m, skip[0], plane1, 0, m->fz[1], T);
	nn_debug_hook("enc0_out_plus_freq_emb", skip[0], (size_t)m->cz[1] * plane1);
	CHECK_LAYER();

	/* Encoders 1.. (kc >= 1: nn_hdemucs_build refuses a collapse at level 0). */
	for (int k = 1; k < depth; k++) {
		const float *inject = NULL;
		if (k < kc) {
			BIG(tskip[k], (size_t)m->ct[k + 1] * sh.lt[k + 1]);
			enc_run(ws, &m->tenc[k], tskip[k - 1], sh.lt[k], 1, tskip[k], sh.lt[k + 1],
			        NULL);
			snprintf(name, sizeof name, "tenc%d_out", k);
			nn_debug_hook(name, tskip[k], (size_t)m->ct[k + 1] * sh.lt[k + 1]);
		} else if (k == kc) {
			BIG(inj, (size_t)m->tenc[k].chout * sh.lt[k + 1]);
			enc_run(ws, &m->tenc[k], tskip[k - 1], sh.lt[k], 1, inj, sh.lt[k + 1],
			        NULL);
			snprintf(name, sizeof name, "tenc%d_out", k);
			nn_debug_hook(name, inj, (size_t)m->tenc[k].chout * sh.lt[k + 1]);
			inject = inj;
		}
		size_t plane = (size_t)m->fz[k + 1] * sh.w[k + 1];
		BIG(skip[k], (size_t)m->cz[k + 1] * plane);
		if (k <= kc)
			enc_run(ws, &m->enc[k], skip[k - 1], m->fz[k], T, skip[k], m->fz[k + 1],
			        inject);
		else
			enc_run(ws, &m->enc[k], skip[k - 1], sh.w[k], 1, skip[k], sh.w[k + 1],
			        NULL);
		snprintf(name, sizeof name, "enc%d_out", k);
		nn_debug_hook(name, skip[k], (size_t)m->cz[k + 1] * plane);
		big_free(&inj);
		if (k == 1)
			big_free(&skip[0]); /* computed again for decoder level 0 */
		CHECK_LAYER();
	}

	/* Decoders down to level 1, innermost first; the bottleneck input is zero, so the
	 * innermost decoder sees its skip alone. zf / zt: the previous level's outputs. */
	for (int k = depth - 1; k >= 1; k--) {
		int idx = depth - 1 - k;
		if (zf) {
			nn_add(skip[k], zf, (size_t)m->cz[k + 1] * m->fz[k + 1] * sh.w[k + 1]);
			big_free(&zf);
		}
		if (k < kc && zt) {
			nn_add(tskip[k], zt, (size_t)m->ct[k + 1] * sh.lt[k + 1]);
			big_free(&zt);
		}
		const struct hlayer *d = &m->dec[k];
		int ho = k <= kc ? m->fz[k] : sh.w[k];
		int wo = k <= kc ? T : 1;
		if (k < kc) {
			/* The time decoder first, added into the next level's skip at once. */
			const struct hlayer *td = &m->tdec[k];
			BIG(zn, (size_t)td->chout * sh.lt[k]);
			dec_run(ws, td, 0, tskip[k], sh.lt[k + 1], 1, zn, sh.lt[k], NULL);
			snprintf(name, sizeof name, "tdec%d_out", kc - k);
			nn_debug_hook(name, zn, (size_t)td->chout * sh.lt[k]);
			nn_add(tskip[k - 1], zn, (size_t)td->chout * sh.lt[k]);
			big_free(&zn);
			big_free(&tskip[k]);
		}
		BIG(zn, (size_t)d->chout * ho * wo);
		if (k == kc) {
			BIG(pre, (size_t)d->chin * T);
			BIG(zt, (size_t)m->tdec[k].chout * sh.lt[k]);
		}
		CHECK_LAYER();
		if (k <= kc)
			dec_run(ws, d, 0, skip[k], m->fz[k + 1], T, zn, ho, pre);
		else
			dec_run(ws, d, 0, skip[k], sh.w[k + 1], 1, zn, ho, NULL);
		snprintf(name, sizeof name, "dec%d_out", idx);
		nn_debug_hook(name, zn, (size_t)d->chout * ho * wo);
		big_free(&skip[k]);
		zf = zn;
		zn = NULL;
		if (k == kc) {
			/* Its input is the frequency decoder's activation (pre). */
			const struct hlayer *td = &m->tdec[k];
			dec_run(ws, td, 0, pre, T, 1, zt, sh.lt[k], NULL);
			snprintf(name, sizeof name, "tdec%d_out", kc - k);
			nn_debug_hook(name, zt, (size_t)td->chout * sh.lt[k]);
			big_free(&pre);
		}
		CHECK_LAYER();
	}

	/* Level 0, time: its decoder writes the sources' time part straight into out. */
	if (zt) {
		nn_add(tskip[0], zt, (size_t)m->ct[1] * sh.lt[1]);
		big_free(&zt);
	}
	dec_run(ws, &m->tdec[0], 1, tskip[0], sh.lt[1], 1, out, L, NULL);
	snprintf(name, sizeof name, "tdec%d_out", kc);
	nn_debug_hook(name, out, (size_t)S * C * L);
	big_free(&tskip[0]);
	nn_affine(out, (size_t)S * C * L, (float)tstd, (float)tmean);
	CHECK_LAYER();

	/* Level 0, frequency: the decoder's input is the level-1 output plus the level-0 skip,
	 * computed again tile by tile from the spectrogram. */
	BIG(xf, (size_t)cin * fplane);
	if ((rc = spec_input(m, ws, mix, L, T, xf, &fmean, &fstd)) != 0)
		goto out;
	e0.xf = xf;
	e0.add = zf;
	nn_team_parts(ws, (m->fz[1] + tile - 1) / tile, enc0_part, &e0);
	big_free(&xf);
	CHECK_LAYER();

	/* Its rewrite + GLU (and DConv, if any) on the whole input; then the rest one source
	 * at a time, the sources shared by a team (dec0_source). */
	const struct hlayer *d0 = &m->dec[0];
	BIG(y, (size_t)d0->chin * plane1);
	if (d0->rw) {
		int ctx = d0->rk / 2;
		struct nn_conv r = {.w = d0->rw,
		                    .b = d0->rb,
		                    .cin = d0->chin,
		                    .cout = 2 * d0->chin,
		                    .kh = d0->rk,
		                    .kw = d0->rk,
		                    .sh = 1,
		                    .sw = 1,
		                    .ph = ctx,
		                    .pw = ctx,
		                    .dh = 1,
		                    .dw = 1};
		conv_norm_glu(ws, &r, 0, NULL, NULL, zf, m->fz[1], T, plane1, y, m->fz[1], T,
		              plane1);
	} else {
		memcpy(y, zf, (size_t)d0->chin * plane1 * sizeof *y);
	}
	big_free(&zf);
	dconv_run(ws, &d0->dc, y, d0->chin, m->fz[1], T, plane1);
	CHECK_LAYER();
	int cs = C * cz_out; /* output channels of one source */
	if (!m->cac) {
		BIG(zm, (size_t)2 * C * fplane);
		struct spec_job sj = {.m = m, .mix = mix, .L = L, .T = T, .dst = zm};
		nn_team_parts(ws, C, spec_channel, &sj);
	}
	if (nn_htdemucs_debug_hook) {
		BIG(dbg_dec, (size_t)S * cs * fplane);
		BIG(dbg_istft, (size_t)S * C * L);
	}
	struct dec0_job dj = {.m = m,
	                      .y = y,
	                      .zm = zm,
	                      .out = out,
	                      .T = T,
	                      .L = L,
	                      .fmean = fmean,
	                      .fstd = fstd,
	                      .dbg_dec = dbg_dec,
	                      .dbg_istft = dbg_istft};
	nn_team_parts(ws, S, dec0_source, &dj);
	CHECK_LAYER();
	snprintf(name, sizeof name, "dec%d_out", depth - 1);
	nn_debug_hook(name, dbg_dec, (size_t)S * cs * fplane);
	nn_debug_hook("istft_out", dbg_istft, (size_t)S * C * L);
out:
	for (int k = 0; k < MAX_LEVELS; k++) {
		big_free(&skip[k]);
		big_free(&tskip[k]);
	}
	float **bigs[] = {&xf, &xt, &inj, &zf, &zt, &zn, &pre, &y, &zm, &dbg_dec, &dbg_istft};
	for (size_t i = 0; i < sizeof bigs / sizeof *bigs; i++)
		big_free(bigs[i]);
	nn_ws_release(ws, mark0);
	return rc;
}
