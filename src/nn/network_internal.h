/* network_internal.h - the layout of struct nn_model, shared by network.c and apply.c only.
 *
 * Bags of several networks are not kept resident (mdx_extra: four HDemucs of 83.6 M
 * parameters, 335 MB each in fp32; htdemucs_ft: four HTDemucs, 168 MB each): every member
 * is loaded once at open time to check it, then freed, and nn_separate() loads one member
 * at a time, runs it over the whole track, accumulates its weighted output and frees it
 * before the next (peak: one member's weights instead of all). Single networks stay
 * resident, and so does every member after nn_model_keep_resident() (the same bits; no
 * reloading per separation, for callers that prefer that to the memory).
 *
 * Threading: as nn.h: a loaded model is read-only while nn_separate runs. */
#ifndef SFA_NN_NETWORK_INTERNAL_H
#define SFA_NN_NETWORK_INTERNAL_H

#include "nn/net.h"
#include "nn/nn.h"

struct nn_model {
	struct nn_model_info info;
	int n; /* members */
	/* Resident networks; NULL for a member loaded on demand (see nn_model_member). */
	struct nn_net *nets[NN_MAX_MEMBERS];
	char *paths[NN_MAX_MEMBERS]; /* malloced checkpoint paths of lazy members */
	struct nn_htdemucs_info minfo[NN_MAX_MEMBERS]; /* each member's info (owns the names) */
	float w[NN_MAX_MEMBERS][NN_MAX_STEMS];         /* bag weights */
	float totals[NN_MAX_STEMS];                    /* per-source weight sums */
	int valid_len[NN_MAX_MEMBERS];                 /* forward length (HDemucs: default chunk) */
	bool fixed_len[NN_MAX_MEMBERS];                /* HTDemucs: always runs at valid_len */
	double seg_s[NN_MAX_MEMBERS];                  /* default chunk length per member */
};

/* Member k's network for one separation: the resident one (*owned = false), or member k
 * loaded from its checkpoint now (*owned = true: the caller frees it with nn_net_free once
 * its passes are done). The loaded network is the same as at open time (same file), so
 * results do not depend on whether a member is resident. */
int nn_model_member(const struct nn_model *m, int k, struct nn_net **net, bool *owned, char *err,
                    size_t n_err);

#endif
