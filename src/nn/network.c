/* network.c - a loaded model: a bag of HTDemucs/HDemucs networks with per-source weights, and the
 * resolution of a user's model spec (name, .th or .yaml) into one. See nn.h, catalog.h.
 *
 * Bags of several members keep only their checkpoint paths after open (each member is
 * loaded once there, checked, and freed); apply.c loads them one at a time with
 * nn_model_member(), unless nn_model_keep_resident() loaded them for good. See
 * network_internal.h. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/bag.h"
#include "nn/ckpt.h"
#include "nn/network_internal.h"
#include "nn/catalog.h"
#include "nn/nn.h"
#include "util/err.h"
#include "util/str.h"

static int wrap_single(struct nn_net *net, struct nn_model **out, char *err, size_t n_err)
{
	struct nn_model *m = calloc(1, sizeof *m);
	if (!m) {
		nn_net_free(net);
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	}
	m->n = 1;
	m->nets[0] = net;
	m->minfo[0] = *nn_net_info(net);
	m->fixed_len[0] = nn_net_fixed_length(net);
	*out = m;
	return 0;
}

static int load_net(const char *path, struct nn_net **net, char *err, size_t n_err)
{
	struct nn_ckpt c;
	int rc = nn_ckpt_load(path, &c, err, n_err);
	if (rc)
		return rc;
	char sub[512];
	rc = nn_net_build(&c, net, sub, sizeof sub);
	if (rc) {
		nn_ckpt_free(&c);
		return sfa_err(err, n_err, rc, "%s: %s", path, sub);
	}
	return 0;
}

int nn_model_member(const struct nn_model *m, int k, struct nn_net **net, bool *owned, char *err,
                    size_t n_err)
{
	if (m->nets[k]) {
		*net = m->nets[k];
		*owned = false;
		return 0;
	}
	int rc = load_net(m->paths[k], net, err, n_err);
	if (rc)
		return rc;
	/* The file may have been replaced since open: the plan was made from minfo. */
	const struct nn_htdemucs_info *now = nn_net_info(*net);
	if (now->n_sources != m->minfo[k].n_sources ||
	    now->audio_channels != m->minfo[k].audio_channels ||
	    now->samplerate != m->minfo[k].samplerate || now->n_params != m->minfo[k].n_params ||
	    nn_net_fixed_length(*net) != m->fixed_len[k]) {
		nn_net_free(*net);
		*net = NULL;
		return sfa_err(err, n_err, SFA_EFORMAT, "%s changed since the model was opened",
		               m->paths[k]);
	}
	*owned = true;
	return 0;
}

/* Fills info and the per-member lengths once minfo and fixed_len are in place. */
static int finish(struct nn_model *m, const struct nn_bag_spec *spec, char *err, size_t n_err)
{
	const struct nn_htdemucs_info *first = &m->minfo[0];
	struct nn_model_info *info = &m->info;
	info->n_sources = first->n_sources;
	info->audio_channels = first->audio_channels;
	info->samplerate = first->samplerate;
	info->n_members = m->n;
	for (int s = 0; s < first->n_sources; s++)
		info->sources[s] = m->minfo[0].sources[s];
	double min_seg = 1e300;
	for (int i = 0; i < m->n; i++) {
		const struct nn_htdemucs_info *mi = &m->minfo[i];
		if (mi->n_sources != first->n_sources || mi->samplerate != first->samplerate ||
		    mi->audio_channels != first->audio_channels)
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "bag members disagree on sources, sample rate or channels");
		for (int s = 0; s < mi->n_sources; s++)
			if (strcmp(mi->sources[s], first->sources[s]) != 0)
				return sfa_err(err, n_err, SFA_EFORMAT,
				               "bag members disagree on sources");
		double seg = (double)mi->segment_num / (double)mi->segment_den;
		int len = mi->training_length;
		if (spec && spec->has_segment) {
			/* BagOfModels(segment=...) overrides each member's segment, which for
			 * HTDemucs is also the length its forward runs at (HDemucs: the default
			 * chunk length; it runs at any length). */
			seg = spec->segment_s;
			len = (int)(spec->segment_s * mi->samplerate);
		}
		m->valid_len[i] = len;
		info->n_params += mi->n_params;
		m->seg_s[i] = seg;
		if (m->fixed_len[i] && seg < min_seg)
			min_seg = seg;
		for (int s = 0; s < mi->n_sources; s++)
			m->w[i][s] = spec && spec->has_weights ? (float)spec->weights[i][s] : 1.0f;
	}
	if (spec && spec->has_weights && spec->n_weight_cols != first->n_sources)
		return sfa_err(err, n_err, SFA_EFORMAT,
		               "bag weights have %d columns for %d sources", spec->n_weight_cols,
		               first->n_sources);
	for (int s = 0; s < first->n_sources; s++) {
		double t = 0;
		for (int i = 0; i < m->n; i++)
			t += m->w[i][s];
		if (!(t > 0))
			return sfa_err(err, n_err, SFA_EFORMAT,
			               "bag weights give source '%s' no model", first->sources[s]);
		m->totals[s] = (float)t;
	}
	info->segment_s = m->seg_s[0];
	/* HDemucs takes any length: the cap is then only the sanity limit of apply.c. */
	info->max_segment_s = min_seg < 1e300 ? min_seg : NN_MAX_SEGMENT_S;
	return 0;
}

int nn_model_load(const char *path, struct nn_model **out, char *err, size_t n_err)
{
	struct nn_net *net;
	int rc = load_net(path, &net, err, n_err);
	if (rc)
		return rc;
	struct nn_model *m = NULL;
	if ((rc = wrap_single(net, &m, err, n_err)))
		return rc;
	if ((rc = finish(m, NULL, err, n_err))) {
		nn_model_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int nn_model_load_bag(const char *dir, const struct nn_bag_spec *spec, const char *what,
                      struct nn_model **out, char *err, size_t n_err)
{
	struct nn_model *m = calloc(1, sizeof *m);
	if (!m)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	int rc = 0;
	/* Members of a bag of several are freed right after their check (HTDemucs and HDemucs
	 * alike: apply.c loads them one at a time); a single network stays resident. */
	bool lazy = spec->n_models > 1;
	for (int i = 0; i < spec->n_models; i++) {
		char path[4096];
		if (nn_models_find_member(dir, spec->models[i], path, sizeof path) != 0) {
			rc = sfa_err(
				err, n_err, SFA_ENOTFOUND,
				"model '%s' needs %s.th (or %s-<hash>.th) in %s; run `sfa models "
				"fetch %s`",
				what, spec->models[i], spec->models[i], dir, what);
			goto fail;
		}
		if ((rc = load_net(path, &m->nets[i], err, n_err)))
			goto fail;
		m->n = i + 1;
		m->minfo[i] = *nn_net_info(m->nets[i]);
		m->fixed_len[i] = nn_net_fixed_length(m->nets[i]);
		if (lazy) {
			if (!(m->paths[i] = strdup(path))) {
				rc = sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
				goto fail;
			}
			nn_net_free(m->nets[i]);
			m->nets[i] = NULL;
		}
	}
	if ((rc = finish(m, spec, err, n_err)))
		goto fail;
	*out = m;
	return 0;
fail:
	nn_model_free(m);
	return rc;
}

int nn_model_keep_resident(struct nn_model *m, char *err, size_t n_err)
{
	for (int k = 0; k < m->n; k++) {
		if (m->nets[k])
			continue;
		struct nn_net *net;
		bool owned;
		int rc = nn_model_member(m, k, &net, &owned, err, n_err);
		if (rc)
			return rc;
		m->nets[k] = net;
	}
	return 0;
}

void nn_model_free(struct nn_model *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n; i++) {
		nn_net_free(m->nets[i]);
		free(m->paths[i]);
	}
	free(m);
}

const struct nn_model_info *nn_model_info(const struct nn_model *m) { return &m->info; }

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int read_small_file(const char *path, char **text, size_t *n, char *err, size_t n_err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return sfa_err(err, n_err, errno == ENOENT ? SFA_ENOTFOUND : SFA_EIO,
		               "cannot open %s: %s", path, strerror(errno));
	char *buf = malloc(NN_BAG_MAX_BYTES + 1);
	if (!buf) {
		fclose(f);
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	}
	size_t got = fread(buf, 1, NN_BAG_MAX_BYTES + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || got > NN_BAG_MAX_BYTES) {
		free(buf);
		return sfa_err(err, n_err, bad ? SFA_EIO : SFA_ETOOBIG, "%s: %s", path,
		               bad ? "read error" : "bag file too large");
	}
	*text = buf;
	*n = got;
	return 0;
}

static int open_yaml(const char *path, const char *what, struct nn_model **out, char *err,
                     size_t n_err)
{
	char *text = NULL;
	size_t n = 0;
	int rc = read_small_file(path, &text, &n, err, n_err);
	if (rc)
		return rc;
	struct nn_bag_spec spec;
	char sub[512];
	rc = nn_bag_parse(text, n, &spec, sub, sizeof sub);
	free(text);
	if (rc)
		return sfa_err(err, n_err, rc, "%s: %s", path, sub);
	char dir[4096];
	str_copy(dir, sizeof dir, path);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		str_copy(dir, sizeof dir, ".");
	return nn_model_load_bag(dir, &spec, what, out, err, n_err);
}

static int file_exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int nn_model_open(const char *spec, const char *models_dir, struct nn_model **out, char *err,
                  size_t n_err)
{
	if (!spec || !*spec)
		return sfa_err(err, n_err, SFA_EINVAL, "no model given");
	if (strchr(spec, '/') || ends_with(spec, ".th") || ends_with(spec, ".yaml") ||
	    ends_with(spec, ".yml")) {
		if (ends_with(spec, ".yaml") || ends_with(spec, ".yml"))
			return open_yaml(spec, spec, out, err, n_err);
		return nn_model_load(spec, out, err, n_err);
	}
	const char *dir = models_dir ? models_dir : nn_models_dir();
	char path[4096];
	int k = snprintf(path, sizeof path, "%s/%s.yaml", dir, spec);
	if (k < 0 || (size_t)k >= sizeof path)
		return sfa_err(err, n_err, SFA_EINVAL, "model name too long");
	if (file_exists(path))
		return open_yaml(path, spec, out, err, n_err);
	const struct nn_builtin *b = nn_builtin_find(spec);
	if (b) {
		struct nn_bag_spec bs;
		int rc = nn_bag_parse(b->yaml, strlen(b->yaml), &bs, err, n_err);
		if (rc)
			return rc;
		return nn_model_load_bag(dir, &bs, spec, out, err, n_err);
	}
	/* A bare signature installed in the folder. */
	for (const char *p = spec; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			return sfa_err(err, n_err, SFA_EINVAL, "'%s' is not a valid model name",
			               spec);
	if (nn_models_find_member(dir, spec, path, sizeof path) == 0)
		return nn_model_load(path, out, err, n_err);
	return sfa_err(err, n_err, SFA_ENOTFOUND,
	               "unknown model '%s' (built in: htdemucs, htdemucs_ft, htdemucs_6s, "
	               "mdx_extra; or give a .th/.yaml path)",
	               spec);
}
