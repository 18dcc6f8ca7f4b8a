/* key.c - musical key by Krumhansl-Kessler profile correlation, and Camelot codes.
 *
 * The mean chroma vector (C..B) is correlated (Pearson) with the 24 rotations of the
 * Krumhansl-Kessler major and minor profiles; the best correlation names the key and is
 * reported as key_confidence. The reference project's "argmax of the mean chroma plus
 * binary templates" confuses C major with G major and D major with B minor on clean
 * chords; the profiles weigh the tonic, fifth and third and do not (ANALYSIS.md).
 *
 * Camelot wheel: C major = 8B, A minor = 8A, each fifth up adds one hour (mod 12).
 */
#include "dsp/dsp.h"
#include "dsp/dsp_internal.h"

#include <math.h>
#include <stdio.h>

static const double KK_MAJOR[12] = {6.35, 2.23, 3.48, 2.33, 4.38, 4.09,
                                    2.52, 5.19, 2.39, 3.66, 2.29, 2.88};
static const double KK_MINOR[12] = {6.33, 2.68, 3.52, 5.38, 2.60, 3.53,
                                    2.54, 4.75, 3.98, 2.69, 3.34, 3.17};

static const char *const PITCH_NAMES[12] = {"C",  "C#", "D",  "D#", "E",  "F",
                                            "F#", "G",  "G#", "A",  "A#", "B"};

const char *dsp_pitch_name(int pc) { return (pc >= 0 && pc < 12) ? PITCH_NAMES[pc] : "?"; }

static double pearson(const double *x, const double *prof, int rot)
{
	/* template for tonic rot: t[(rot + i) % 12] = prof[i] */
	double t[12];
	for (int i = 0; i < 12; i++)
		t[(rot + i) % 12] = prof[i];
	double mx = 0.0, mt = 0.0;
	for (int i = 0; i < 12; i++) {
		mx += x[i];
		mt += t[i];
	}
	mx /= 12.0;
	mt /= 12.0;
	double sxy = 0.0, sxx = 0.0, stt = 0.0;
	for (int i = 0; i < 12; i++) {
		double dx = x[i] - mx, dt = t[i] - mt;
		sxy += dx * dt;
		sxx += dx * dx;
		stt += dt * dt;
	}
	if (!(sxx > 0.0) || !(stt > 0.0))
		return NAN;
	return sxy / sqrt(sxx * stt);
}

int dsp_key_kk(const double *chroma_mean, double *scores)
{
	for (int i = 0; i < 12; i++)
		if (!isfinite(chroma_mean[i]))
			return -1;
	int best = -1;
	for (int pc = 0; pc < 12; pc++) {
		scores[2 * pc] = pearson(chroma_mean, KK_MAJOR, pc);
		scores[2 * pc + 1] = pearson(chroma_mean, KK_MINOR, pc);
	}
	for (int i = 0; i < 24; i++) {
		if (isnan(scores[i]))
			return -1;
		if (best < 0 || scores[i] > scores[best])
			best = i;
	}
	return best;
}

void dsp_camelot(int pc, int minor, char *out)
{
	/* fifths above the wheel's 8 o'clock key: C for major, A for minor */
	int ref = minor ? 9 : 0;
	int fifths = (((pc - ref) % 12 + 12) % 12) * 7 % 12;
	int hour = (fifths + 7) % 12 + 1;
	snprintf(out, 4, "%d%c", hour, minor ? 'A' : 'B');
}
