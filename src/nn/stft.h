/* stft.h - the STFT and inverse STFT exactly as HTDemucs calls them (_spec / _ispec).
 *
 * Forward (HTDemucs._spec on one channel of length L): hop h = nfft/4, le = ceil(L/h);
 * reflect-pad 3h/2 on the left and 3h/2 + le*h - L on the right (Demucs' pad1d, which
 * zero-extends first when the signal is too short to reflect); then torch.stft with a
 * periodic Hann window, normalized (1/sqrt(nfft)), centred; drop the Nyquist bin and keep
 * frames [2, 2+le). Frame t therefore covers padded samples [t*h, t*h + nfft).
 *
 * Inverse (HTDemucs._ispec): re-add a zero Nyquist bin and two zero frames on each side,
 * torch.istft (irfft normalized by 1/sqrt(nfft), Hann window, overlap-add divided by the
 * summed squared window of all frames, centred) and crop [3h/2, 3h/2 + L).
 *
 * FFTW plans (FFTW_ESTIMATE: deterministic) are made once per nfft under a process-wide
 * lock, since FFTW's planner is not thread-safe; executing them is, so one nn_stft may be
 * shared by all workers. Scratch comes from the caller's workspace.
 */
#ifndef SFA_NN_STFT_H
#define SFA_NN_STFT_H

#include <stdbool.h>

#include "nn/workspace.h"

struct nn_stft;

/* Plans the transforms of nfft points; *out is the caller's (nn_stft_free). */
int nn_stft_new(int nfft, struct nn_stft **out, char *err, size_t n_err);
void nn_stft_free(struct nn_stft *s);

/* Number of frames le = ceil(len / hop). */
int nn_stft_frames(const struct nn_stft *s, int len);

/* x[0..len) -> re, im, each (nfft/2, le) row-major (frequency rows, frame columns), with
 * channel stride ld between re and im not used: re and im are separate planes. */
void nn_stft_spec(const struct nn_stft *s, struct nn_ws *ws, const float *x, int len, float *re,
                  float *im);

/* HDemucs hybrid_old variant: zero padding instead of reflect. */
void nn_stft_spec_ex(const struct nn_stft *s, struct nn_ws *ws, const float *x, int len,
                     bool zero_pad, float *re, float *im);

/* re, im (nfft/2, le) -> y[0..len), with le = nn_stft_frames(len). */
void nn_stft_ispec(const struct nn_stft *s, struct nn_ws *ws, const float *re, const float *im,
                   int le, int len, float *y);

/* HDemucs hybrid_old variant: old_crop keeps istft's first len samples instead of
 * skipping 3h/2 (hybrid_old ran istft at length h*le and cropped [:len]). */
void nn_stft_ispec_ex(const struct nn_stft *s, struct nn_ws *ws, const float *re, const float *im,
                      int le, int len, bool old_crop, float *y);

#endif
