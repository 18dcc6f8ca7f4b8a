/* transform_cli.c - see transform_cli.h. */
#include "audio/transform_cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audio/audio.h"
#include "util/str.h"

static int usage(void)
{
	fprintf(stderr,
	        "usage: sfa transform FILE [--semitones N] [--tempo-ratio R] [--formants] --out FILE\n"
	        "  N: -12 to 12 (fractions allowed); R: 0.5 to 2 (1.07 plays 7 %% faster);\n"
	        "  --formants keeps a voice's timbre; the output is WAV, FLAC or MP3 by its\n"
	        "  extension.\n");
	return 2;
}

int transform_cli(int argc, char **argv)
{
	const char *in_path = NULL, *out_path = NULL;
	double semitones = 0, ratio = 1;
	bool formants = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--formants")) {
			formants = true;
		} else if (!strcmp(a, "--semitones") && i + 1 < argc) {
			if (str_to_double(argv[++i], -AUDIO_MAX_SEMITONES, AUDIO_MAX_SEMITONES,
			                  &semitones))
				return usage();
		} else if (!strcmp(a, "--tempo-ratio") && i + 1 < argc) {
			if (str_to_double(argv[++i], AUDIO_MIN_TEMPO_RATIO, AUDIO_MAX_TEMPO_RATIO,
			                  &ratio))
				return usage();
		} else if (!strcmp(a, "--out") && i + 1 < argc) {
			out_path = argv[++i];
		} else if (a[0] != '-' && !in_path) {
			in_path = a;
		} else {
			return usage();
		}
	}
	const char *dot = out_path ? strrchr(out_path, '.') : NULL;
	enum audio_container kind;
	if (!in_path || !dot)
		return usage();
	if (!strcasecmp(dot, ".wav"))
		kind = AUDIO_WAV;
	else if (!strcasecmp(dot, ".flac"))
		kind = AUDIO_FLAC;
	else if (!strcasecmp(dot, ".mp3"))
		kind = AUDIO_MP3;
	else
		return usage();
	char err[512];
	struct audio_buf in = {0}, out = {0};
	int rc = audio_decode(in_path, 0, 0, 0, &in, err, sizeof err);
	if (!rc)
		rc = audio_transform(&in, semitones, ratio, formants, &out, err, sizeof err);
	if (!rc)
		rc = audio_write(out_path, &out, kind, AUDIO_PCM16, err, sizeof err);
	if (rc) {
		fprintf(stderr, "sfa transform: %s\n", err);
		audio_buf_free(&in);
		audio_buf_free(&out);
		return 1;
	}
	printf("{\"semitones\":%.4f,\"tempo_ratio\":%.6f,\"frames_in\":%zu,\"frames_out\":%zu,"
	       "\"sample_rate\":%d,\"channels\":%d}\n",
	       semitones, ratio, in.n_frames, out.n_frames, out.sample_rate_hz, out.n_channels);
	audio_buf_free(&in);
	audio_buf_free(&out);
	return 0;
}
