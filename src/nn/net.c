/* net.c - see net.h. */
#include "nn/net.h"

#include <stdlib.h>

#include "nn/hdemucs.h"
#include "util/err.h"

struct nn_net {
	struct nn_htdemucs *ht; /* exactly one of ht, hd is set */
	struct nn_hdemucs *hd;
};

int nn_net_build(struct nn_ckpt *c, struct nn_net **out, char *err, size_t n_err)
{
	struct nn_net *n = calloc(1, sizeof *n);
	if (!n)
		return sfa_err(err, n_err, SFA_ENOMEM, "out of memory");
	int rc;
	if (c->klass == NN_PKG_HDEMUCS)
		rc = nn_hdemucs_build(c, &n->hd, err, n_err);
	else
		rc = nn_htdemucs_build(c, &n->ht, err, n_err);
	if (rc) {
		free(n);
		return rc;
	}
	*out = n;
	return 0;
}

void nn_net_free(struct nn_net *n)
{
	if (!n)
		return;
	nn_htdemucs_free(n->ht);
	nn_hdemucs_free(n->hd);
	free(n);
}

const struct nn_htdemucs_info *nn_net_info(const struct nn_net *n)
{
	return n->hd ? nn_hdemucs_info(n->hd) : nn_htdemucs_info(n->ht);
}

bool nn_net_fixed_length(const struct nn_net *n) { return n->hd == NULL; }

int nn_net_forward(const struct nn_net *n, struct nn_ws *ws, const float *mix, int len, float *out,
                   const volatile int *cancel)
{
	if (n->hd)
		return nn_hdemucs_forward(n->hd, ws, mix, len, out, cancel);
	return nn_htdemucs_forward(n->ht, ws, mix, len, out, cancel);
}
