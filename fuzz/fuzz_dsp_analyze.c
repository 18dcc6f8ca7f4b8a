/* fuzz_dsp_analyze - libFuzzer harness for the analysis engine (src/dsp).
 *
 * Input layout: byte 0 = feature mask (low 6 bits; 0 = all), the loudness meter (bit 6)
 * and sample format (bit 7: raw little-endian float32, which reaches the NaN/infinity/range
 * checks; else int16); byte 1 = frame-rate selector; then the samples. Inputs shorter than
 * 3 s are repeated to 3 s so that the tempo, beat and key paths run. The same bytes also go
 * through dsp_features_parse as a string. With bit 6 the samples also feed the loudness
 * meter (loudness.c) as a file's would, at a rate (8 to 192 kHz: every true-peak
 * oversampling), a channel count and a chunk size picked by byte 1. Invariants checked: an
 * accepted input gives finite numbers everywhere and a JSON object; a rejected one leaves
 * an error message; the meter's readings are finite or -inf (silence), a peak not NaN.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_dsp_analyze.c
 *   src/dsp/{fft,frames,mel,chroma,onset,tempo,beats,key,analyze,result_json,cli}.c
 *   src/audio/ALL.c src/util/ALL.c $(pkg-config --cflags --libs fftw3f jansson libavformat
 *   libavcodec libavutil libswresample libsodium) -lm -lpthread -o /tmp/fuzz_dsp
 * (ALL.c: every .c file of the folder.) Seeds: fuzz/seeds/dsp_analyze/
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audio/audio.h"
#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"
#include "dsp/result_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_finite(double v)
{
	if (!isfinite(v))
		abort();
}

/* The samples x[0..n) as a file of the rate and channels that sel picks (planar: the first
 * half of x on the left, the rest on the right for stereo), in chunks of 1 to 4097 frames. */
static void meter(const float *x, size_t n, unsigned sel)
{
	static const int rates[] = {8000, 22050, 44100, 48000, 96000, 192000};
	struct audio_stream_info info = {.in_rate_hz = rates[sel % 6],
	                                 .in_channels = 1 + (int)(sel / 6 % 3)};
	size_t frames = info.in_channels > 1 ? n / 2 : n, chunk = 1 + (sel * 257u) % 4097u;
	struct dsp_meter *m = dsp_meter_new(&info);
	if (!m)
		return;
	for (size_t i = 0; i < frames; i += chunk) {
		size_t k = frames - i < chunk ? frames - i : chunk;
		const float *planes[3] = {x + i, x + frames + i, x + frames + i};
		if (dsp_meter_sink(m, planes, k) != 0)
			break;
	}
	struct dsp_loudness l;
	char err[256];
	if (dsp_meter_finish(m, &l, err, sizeof err) != 0) {
		if (err[0] == '\0')
			abort();
		return;
	}
	if (isnan(l.integrated_lufs) || l.integrated_lufs == HUGE_VAL || !isfinite(l.range_lu) ||
	    isnan(l.true_peak_dbtp))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (size > 0) {
		char names[64];
		size_t k = size < sizeof names - 1 ? size : sizeof names - 1;
		memcpy(names, data, k);
		names[k] = '\0';
		unsigned m = 0;
		if (dsp_features_parse(names, &m, err, sizeof err) != 0 && err[0] == '\0')
			abort();
	}
	if (size < 2)
		return 0;
	struct dsp_options opt = {data[0] & 0x3fu, 0.5 + (data[1] % 16) * 2.5};
	int raw_float = (data[0] & 0x80) != 0;
	const uint8_t *p = data + 2;
	size_t nbytes = size - 2, width = raw_float ? 4 : 2, n_in = nbytes / width;
	size_t n = n_in;
	if (n_in > 0 && n_in < 3 * 22050)
		n = (n_in * 64 < 3 * 22050) ? n_in * 64 : 3 * 22050;
	float *x = malloc(sizeof(float) * (n ? n : 1));
	if (!x)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *s = p + (i % n_in) * width;
		if (raw_float) {
			uint32_t u = (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
			             (uint32_t)s[3] << 24;
			memcpy(&x[i], &u, sizeof u);
		} else {
			x[i] = (float)(int16_t)(uint16_t)(s[0] | s[1] << 8) / 32768.0f;
		}
	}
	if (data[0] & 0x40)
		meter(x, n, data[1]);
	struct dsp_result r;
	if (dsp_analyze(x, n, &opt, &r, err, sizeof err) != 0) {
		if (err[0] == '\0')
			abort();
		free(x);
		return 0;
	}
	check_finite(r.tempo_bpm);
	check_finite(r.energy);
	check_finite(r.spectral_centroid_hz);
	check_finite(r.spectral_rolloff_hz);
	check_finite(r.zero_crossing_rate);
	check_finite(r.key_confidence);
	check_finite(r.tempo_confidence);
	for (size_t i = 0; r.mfcc && i < r.n_frames * 13; i++)
		check_finite(r.mfcc[i]);
	for (size_t i = 0; r.chroma && i < r.n_frames * 12; i++)
		check_finite(r.chroma[i]);
	json_t *j = NULL;
	if (dsp_result_to_json(&r, &j, err, sizeof err) != 0 || !json_is_object(j))
		abort();
	json_decref(j);
	dsp_result_free(&r);
	free(x);
	return 0;
}
