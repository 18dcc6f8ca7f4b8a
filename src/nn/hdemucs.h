/* hdemucs.h - the Hybrid Demucs v3 network (demucs.hdemucs.HDemucs: the mdx_extra members).
 *
 * Built like HTDemucs (htdemucs.h): the architecture comes from the checkpoint's kwargs
 * (HDemucs constructor defaults for absent keys) and every tensor is checked both ways
 * against the list that architecture implies. What differs from HTDemucs: the U-Net goes
 * deeper than the frequency axis (the layer whose input has <= kernel_size bins collapses
 * it to one row and absorbs the time branch, whose own layer at that depth is a bare conv;
 * later layers are time convolutions of kernel 2*time_stride), GroupNorm from layer
 * norm_starts, DConv blocks with a two-layer BiLSTM and LocalState attention from layers
 * dconv_lstm / dconv_attn, a zeroed bottleneck (the signal passes through the skips only)
 * and three spectrogram variants: complex-as-channels (cac), magnitude masked with the
 * mixture's phase (openunmix wiener with 0 iterations), and hybrid_old (zero STFT padding,
 * old iSTFT crop). Options the release models do not use (multi_freqs, non-hybrid,
 * Wiener iterations > 0, channels_time) are refused with SFA_EUNSUPP naming the kwarg.
 *
 * HDemucs runs at any input length (apply_model does not pad its chunks to a training
 * length): the forward takes len >= 1 samples.
 *
 *
 * Threading: as htdemucs.h: a built network is read-only, so several threads may run its
 * forward at once, each with its own workspace.
 */
#ifndef SFA_NN_HDEMUCS_H
#define SFA_NN_HDEMUCS_H

#include <stddef.h>

#include "nn/ckpt.h"
#include "nn/htdemucs.h"
#include "nn/workspace.h"

struct nn_hdemucs;

/* Builds the network from ckpt (klass demucs.hdemucs.HDemucs). On success the network owns
 * the checkpoint's weights (ckpt is emptied); on failure ckpt is left to the caller. */
int nn_hdemucs_build(struct nn_ckpt *ckpt, struct nn_hdemucs **out, char *err, size_t n_err);
void nn_hdemucs_free(struct nn_hdemucs *m);
/* The info fields are those of HTDemucs; training_length is the default chunk. Points into
 * m. */
const struct nn_htdemucs_info *nn_hdemucs_info(const struct nn_hdemucs *m);

/* mix: audio_channels planes of len samples; out: n_sources x audio_channels planes of len.
 * Returns 0, SFA_EINVAL (len < 1), SFA_ENOMEM (workspace) or SFA_ECANCELED. Debug names
 * go to nn_htdemucs_debug_hook (same naming as the reference dumps). */
int nn_hdemucs_forward(const struct nn_hdemucs *m, struct nn_ws *ws, const float *mix, int len,
                       float *out, const volatile int *cancel);

/* DConv of encoder layer `layer` alone, in place on x (channels, t): for the unit test of
 * the BiLSTM framing and LocalState. SFA_EINVAL if the layer has no DConv. */
int nn_hdemucs_encoder_dconv(const struct nn_hdemucs *m, struct nn_ws *ws, int layer, float *x,
                             int channels, int t);

#endif
