/* anchor_librosa.c - the librosa-equivalent values of our engine on one audio file, as an
 * anchor for bench/analysis-accuracy.
 *
 *   anchor_librosa FILE   ->   {"tempo": 123.05, "key": "A minor", "beats": [0.51, ...]}
 *
 * tempo and beats are librosa.beat.beat_track's (the engine keeps them beside its own
 * corrected values: tempo_librosa_bpm, beats_librosa, equal to librosa 0.10.2 frame for
 * frame). The key is the Krumhansl-Kessler rule on librosa's mean chroma_stft
 * (ANALYSIS.md), computed here rather than taken from the engine's key, so the anchor
 * stays what it is while the engine's key method changes.
 */
#include <math.h>
#include <stdio.h>

#include "dsp/dsp.h"

static const double KK_MAJOR[12] = {6.35, 2.23, 3.48, 2.33, 4.38, 4.09,
                                    2.52, 5.19, 2.39, 3.66, 2.29, 2.88};
static const double KK_MINOR[12] = {6.33, 2.68, 3.52, 5.38, 2.60, 3.53,
                                    2.54, 4.75, 3.98, 2.69, 3.34, 3.17};

/* Pearson correlation of x with profile p rotated to tonic rot. */
static double corr(const double *x, const double *p, int rot)
{
	double mx = 0.0, mp = 0.0;
	for (int i = 0; i < 12; i++) {
		mx += x[i] / 12.0;
		mp += p[i] / 12.0;
	}
	double sxy = 0.0, sxx = 0.0, spp = 0.0;
	for (int i = 0; i < 12; i++) {
		double dx = x[(i + rot) % 12] - mx, dp = p[i] - mp;
		sxy += dx * dp;
		sxx += dx * dx;
		spp += dp * dp;
	}
	return sxx > 0.0 && spp > 0.0 ? sxy / sqrt(sxx * spp) : NAN;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: anchor_librosa FILE\n");
		return 2;
	}
	struct dsp_options opt = {.features = DSP_FEAT_TEMPO | DSP_FEAT_KEY};
	struct dsp_result r;
	char err[512];
	if (dsp_analyze_file(argv[1], &opt, &r, err, sizeof err) != 0) {
		fprintf(stderr, "anchor_librosa: %s\n", err);
		return 1;
	}
	int best = -1;
	double best_r = -2.0;
	for (int pc = 0; pc < 12; pc++)
		for (int minor = 0; minor < 2; minor++) {
			double c = corr(r.chroma_mean, minor ? KK_MINOR : KK_MAJOR, pc);
			if (isfinite(c) && c > best_r) {
				best_r = c;
				best = 2 * pc + minor;
			}
		}
	printf("{\"tempo\": %.4f, \"key\": ", r.tempo_librosa_bpm);
	if (best >= 0)
		printf("\"%s %s\"", dsp_pitch_name(best / 2), best % 2 ? "minor" : "major");
	else
		printf("null");
	printf(", \"beats\": [");
	for (size_t i = 0; i < r.n_beats_librosa; i++)
		printf("%s%.4f", i ? ", " : "", (double)r.beats_librosa[i] * 512.0 / 22050.0);
	printf("]}\n");
	dsp_result_free(&r);
	return 0;
}
