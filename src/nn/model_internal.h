/* model_internal.h - the layout of struct nn_model, shared by model.c and apply.c only. */
#ifndef SFA_NN_MODEL_INTERNAL_H
#define SFA_NN_MODEL_INTERNAL_H

#include "nn/net.h"
#include "nn/nn.h"

struct nn_model {
	struct nn_model_info info;
	int n;                                  /* members */
	struct nn_net *nets[NN_MAX_MEMBERS];
	float w[NN_MAX_MEMBERS][NN_MAX_STEMS];  /* bag weights */
	float totals[NN_MAX_STEMS];             /* per-source weight sums */
	int valid_len[NN_MAX_MEMBERS];          /* forward length (HDemucs: default chunk) */
	bool fixed_len[NN_MAX_MEMBERS];         /* HTDemucs: always runs at valid_len */
	double seg_s[NN_MAX_MEMBERS];           /* default chunk length per member */
};

#endif
