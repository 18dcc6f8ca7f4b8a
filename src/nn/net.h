/* net.h - one network of a bag, whatever its class (HTDemucs v4 or HDemucs v3).
 *
 * network.c and apply.c see networks only through this switch: build from a loaded
 * checkpoint (dispatching on its klass), info, forward. The two classes differ in how
 * apply_model feeds them: HTDemucs always runs at its training length (chunks are padded
 * to it, centred), HDemucs runs at the chunk's own length (nn_net_fixed_length false).
 *
 *
 * Threading: a built network is read-only; forwards run from several threads at once, each
 * with its own workspace. nn_net_free releases what the builder allocated.
 */
#ifndef SFA_NN_NET_H
#define SFA_NN_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "nn/ckpt.h"
#include "nn/htdemucs.h"
#include "nn/workspace.h"

struct nn_net;

/* On success *out owns the checkpoint's weights (c is emptied); on failure c is the
 * caller's. SFA_EUNSUPP for other classes. */
int nn_net_build(struct nn_ckpt *c, struct nn_net **out, char *err, size_t n_err);
void nn_net_free(struct nn_net *n);
/* Points into n. */
const struct nn_htdemucs_info *nn_net_info(const struct nn_net *n);
/* true: forward only at info->training_length (or a bag's segment); false: any length. */
bool nn_net_fixed_length(const struct nn_net *n);
int nn_net_forward(const struct nn_net *n, struct nn_ws *ws, const float *mix, int len, float *out,
                   const volatile int *cancel);

#endif
