/* cli.c - `sfa analyze FILE [--features LIST] [--frame-rate N] [--pretty]`.
 *
 * A thin front end: argument parsing, dsp_analyze_file, dsp_result_to_json, print. The
 * JSON is exactly the API's result object, so scripts can use either interchangeably.
 */
#include "dsp/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/dsp.h"
#include "dsp/result_json.h"
#include "util/err.h"
#include "util/str.h"

static void usage(FILE *f)
{
	fputs("usage: sfa analyze FILE [--features "
	      "tempo,key,energy,spectral,mfcc,chroma,loudness,sections,chords,key_changes|all]\n"
	      "                        [--frame-rate N] [--pretty]\n"
	      "Prints the analysis of FILE as JSON: tempo, key, energy, spectral features,\n"
	      "loudness (EBU R128), beats and duration, with MFCC and chroma pooled to N\n"
	      "columns per second (default 2).\n",
	      f);
}

/* Value of an option given as "--name VALUE" or "--name=VALUE"; advances *i. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t len = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, len) != 0)
		return NULL;
	if (a[len] == '=')
		return a + len + 1;
	if (a[len] != '\0')
		return NULL;
	if (*i + 1 >= argc)
		return "";
	return argv[++*i];
}

int dsp_cli_analyze(int argc, char **argv)
{
	const char *path = NULL;
	struct dsp_options opt = {DSP_FEAT_ALL, DSP_DEFAULT_FRAME_RATE};
	int pretty = 0;
	char err[512];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--pretty") == 0) {
			pretty = 1;
		} else if ((v = opt_value(argc, argv, &i, "--features")) != NULL) {
			if (dsp_features_parse(v, &opt.features, err, sizeof err) != 0) {
				fprintf(stderr, "sfa analyze: %s\n", err);
				return 2;
			}
		} else if ((v = opt_value(argc, argv, &i, "--frame-rate")) != NULL) {
			double fr = 0;
			if (str_to_double(v, 0, DSP_MAX_FRAME_RATE, &fr) || !(fr > 0.0)) {
				fprintf(stderr,
				        "sfa analyze: --frame-rate wants a number above 0 and at most "
				        "%.2f, not '%s'.\n",
				        DSP_MAX_FRAME_RATE, v);
				return 2;
			}
			opt.frame_rate = fr;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "sfa analyze: unknown option '%s'.\n", a);
			usage(stderr);
			return 2;
		} else if (!path) {
			path = a;
		} else {
			fprintf(stderr, "sfa analyze: one FILE at a time ('%s' is extra).\n", a);
			return 2;
		}
	}
	if (!path) {
		usage(stderr);
		return 2;
	}

	struct dsp_result r;
	if (dsp_analyze_file(path, &opt, &r, err, sizeof err) != 0) {
		fprintf(stderr, "sfa analyze: %s\n", err);
		return 1;
	}
	json_t *j = NULL;
	int rc = dsp_result_to_json(&r, &j, err, sizeof err);
	dsp_result_free(&r);
	if (rc != 0) {
		fprintf(stderr, "sfa analyze: %s\n", err);
		return 1;
	}
	size_t flags = JSON_PRESERVE_ORDER | (pretty ? JSON_INDENT(2) : JSON_COMPACT);
	char *s = json_dumps(j, flags);
	json_decref(j);
	if (!s) {
		fputs("sfa analyze: out of memory while printing the result.\n", stderr);
		return 1;
	}
	int ok = puts(s) >= 0 && fflush(stdout) == 0;
	free(s);
	if (!ok) {
		fputs("sfa analyze: could not write the result to standard output.\n", stderr);
		return 1;
	}
	return 0;
}
