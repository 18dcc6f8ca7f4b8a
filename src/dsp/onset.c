/* onset.c - onset strength, as librosa.beat.beat_track computes it.
 *
 * onset_strength(y, sr, aggregate=np.median): the positive first difference (lag 1) of
 * every band of the clamped mel dB spectrogram, the median across the 128 bands, then
 * n_fft / (2 * hop) + lag = 3 leading zeros (librosa's centring compensation), cut to T
 * frames. All float32, like librosa. The median of 128 values is the mean of the 64th and
 * 65th smallest, which a selection finds in linear time.
 */
#include "dsp/dsp_internal.h"

#include <string.h>

void dsp_onset_env(const float *db, size_t n_frames, float *env, float *scratch)
{
	memset(env, 0, sizeof(float) * n_frames);
	for (size_t t = 3; t < n_frames; t++) {
		const float *cur = db + (t - 2) * DSP_N_MELS, *prev = db + (t - 3) * DSP_N_MELS;
		for (int m = 0; m < DSP_N_MELS; m++) {
			float d = cur[m] - prev[m];
			scratch[m] = d > 0.0f ? d : 0.0f;
		}
		env[t] = dsp_median_f32(scratch, DSP_N_MELS);
	}
}
