/* bag.h - parsing bag-of-models files (the yaml format of Demucs' remote folder).
 *
 *   models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']
 *   weights: [[1., 0., 0., 0.], [0., 1., 0., 0.], [0., 0., 1., 0.], [0., 0., 0., 1.]]
 *   segment: 44
 *
 * Only this YAML subset is read: top-level `key: value` lines, flow lists `[a, b]` that
 * may span lines, block lists (`- item` lines), quoted or plain scalars, `#` comments.
 * Unknown keys are ignored (Demucs ignores them too); anything malformed is an error with
 * the line number. Inputs are capped (NN_BAG_MAX_BYTES) and so are the list sizes.
 * Member names must be plain file-name stems ([A-Za-z0-9_.-], not starting with '.'),
 * so a bag can never point outside its folder. Pure, thread-safe.
 */
#ifndef SFA_NN_BAG_H
#define SFA_NN_BAG_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/nn.h"

enum { NN_BAG_MAX_BYTES = 64 * 1024, NN_BAG_NAME_BYTES = 64 };

struct nn_bag_spec {
	int n_models;
	char models[NN_MAX_MEMBERS][NN_BAG_NAME_BYTES];
	bool has_weights;
	int n_weight_rows; /* one per model */
	int n_weight_cols; /* sources per row; every row has the same count */
	double weights[NN_MAX_MEMBERS][NN_MAX_STEMS];
	bool has_segment;
	double segment_s;
};

int nn_bag_parse(const char *text, size_t n, struct nn_bag_spec *out, char *err, size_t n_err);

#endif
