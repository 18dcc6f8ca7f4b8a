/* htdemucs.h - the Hybrid Transformer Demucs network (demucs.htdemucs.HTDemucs, v4).
 *
 * nn_htdemucs_build() reads the architecture from a checkpoint's kwargs (with the
 * HTDemucs constructor's defaults for absent keys, as capture_init only records what was
 * passed), lists every tensor that architecture owns with its exact shape, and checks the
 * checkpoint against that list both ways: a missing, misshapen or unexpected tensor is an
 * error naming it. Options outside what the release models use (sparse attention, CAPE
 * embeddings, multi-band layers, GroupNorm inside the U-Net, magnitude/Wiener output...)
 * are refused with SFA_EUNSUPP naming the kwarg.
 *
 * nn_htdemucs_forward() is HTDemucs.forward for one chunk of exactly training_length
 * samples (apply.c pads and trims). It allocates only from the worker's workspace and is
 * safe to call from several threads at once on the same network (weights are read-only).
 */
#ifndef SFA_NN_HTDEMUCS_H
#define SFA_NN_HTDEMUCS_H

#include <stddef.h>

#include "nn/ckpt.h"
#include "nn/workspace.h"

enum { NN_MAX_SOURCES = 16, NN_SOURCE_NAME_BYTES = 32 };

struct nn_htdemucs;

struct nn_htdemucs_info {
	int n_sources;
	char sources[NN_MAX_SOURCES][NN_SOURCE_NAME_BYTES];
	int audio_channels;
	int samplerate;
	long segment_num, segment_den; /* the training segment in seconds, as a fraction */
	int training_length;           /* int(segment * samplerate) samples */
	size_t n_params;
};

/* Builds the network from ckpt. On success the network owns the checkpoint's weights
 * (ckpt is emptied); on failure ckpt is left to the caller. */
int nn_htdemucs_build(struct nn_ckpt *ckpt, struct nn_htdemucs **out, char *err, size_t n_err);
void nn_htdemucs_free(struct nn_htdemucs *m);
/* Points into m. */
const struct nn_htdemucs_info *nn_htdemucs_info(const struct nn_htdemucs *m);

/* mix: audio_channels planes of len samples (HTDemucs always runs at its training length,
 * or at a bag's segment override). out: n_sources x audio_channels planes of len samples.
 * Returns 0, SFA_EINVAL (len too short for the network), SFA_ENOMEM (workspace) or
 * SFA_ECANCELED when *cancel became non-zero (checked between layers; may be NULL). */
int nn_htdemucs_forward(const struct nn_htdemucs *m, struct nn_ws *ws, const float *mix, int len,
                        float *out, const volatile int *cancel);

/* Debugging aid for the layer-dump comparison tool: when set, called with every named
 * intermediate ("tenc0_out", "enc0_out", ..., "istft_out") in execution order. */
extern void (*nn_htdemucs_debug_hook)(const char *name, const float *data, size_t n);

/* Calls the hook if one is set (HTDemucs and HDemucs forwards). */
static inline void nn_debug_hook(const char *name, const float *data, size_t n)
{
	if (nn_htdemucs_debug_hook)
		nn_htdemucs_debug_hook(name, data, n);
}

#endif
