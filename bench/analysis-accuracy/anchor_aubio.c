/* anchor_aubio.c - aubio's tempo and beat tracker (Debian libaubio-dev) on one audio file,
 * as an anchor for bench/analysis-accuracy. aubio has no key detector.
 *
 *   anchor_aubio FILE   ->   {"tempo": 124.0, "beats": [0.51, ...]}
 *
 * aubio_tempo with the "default" onset function (specflux), window 1024, hop 512, at the
 * file's own rate, read with aubio_source (mono mix): what `aubio beat` and aubiotrack
 * run. One tempo for the file: 60 / the median beat interval, as `aubio tempo` reports it.
 */
#include <aubio/aubio.h>

#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: anchor_aubio FILE\n");
		return 2;
	}
	const uint_t win = 1024, hop = 512;
	aubio_source_t *src = new_aubio_source(argv[1], 0, hop);
	if (!src) {
		fprintf(stderr, "anchor_aubio: cannot open %s\n", argv[1]);
		return 1;
	}
	uint_t sr = aubio_source_get_samplerate(src);
	aubio_tempo_t *tempo = new_aubio_tempo("default", win, hop, sr);
	fvec_t *in = new_fvec(hop), *out = new_fvec(1);
	size_t n_beats = 0, cap = 1024;
	double *beats = malloc(cap * sizeof *beats);
	if (!tempo || !in || !out || !beats) {
		fprintf(stderr, "anchor_aubio: out of memory\n");
		return 1;
	}
	uint_t read = 0;
	do {
		aubio_source_do(src, in, &read);
		aubio_tempo_do(tempo, in, out);
		if (out->data[0] != 0) {
			if (n_beats == cap) {
				double *nb = realloc(beats, 2 * cap * sizeof *beats);
				if (!nb) {
					fprintf(stderr, "anchor_aubio: out of memory\n");
					return 1;
				}
				beats = nb;
				cap *= 2;
			}
			beats[n_beats++] = aubio_tempo_get_last_s(tempo);
		}
	} while (read == hop);

	double bpm = 0.0;
	if (n_beats >= 2) {
		double *ibi = malloc((n_beats - 1) * sizeof *ibi);
		if (!ibi)
			return 1;
		for (size_t i = 1; i < n_beats; i++)
			ibi[i - 1] = beats[i] - beats[i - 1];
		qsort(ibi, n_beats - 1, sizeof *ibi, cmp_double);
		size_t m = n_beats - 1;
		double med = m % 2 ? ibi[m / 2] : 0.5 * (ibi[m / 2 - 1] + ibi[m / 2]);
		if (med > 0)
			bpm = 60.0 / med;
		free(ibi);
	}
	printf("{\"tempo\": %.4f, \"beats\": [", bpm);
	for (size_t i = 0; i < n_beats; i++)
		printf("%s%.4f", i ? ", " : "", beats[i]);
	printf("]}\n");
	free(beats);
	del_fvec(in);
	del_fvec(out);
	del_aubio_tempo(tempo);
	del_aubio_source(src);
	aubio_cleanup();
	return 0;
}
