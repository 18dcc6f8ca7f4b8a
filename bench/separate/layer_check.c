/* layer_check - compares every named HTDemucs/HDemucs intermediate against a PyTorch layer dump.
 *
 *   layer_check CKPT INPUT.f32 DUMP_DIR
 *
 * INPUT.f32 is the raw stereo chunk (exactly one training segment); it is normalised the
 * way Demucs' separate does (mono mean/std of the whole chunk) before the forward. For
 * each hook name the file DUMP_DIR/NN_<name>.f32 is looked up; the report gives max |diff|
 * relative to max |ref| per layer, so the first layer that goes wrong stands out. A
 * by-hand debugging tool for the engine; it never runs in the test suite.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rawf32.h"
#include "nn/ckpt.h"
#include "nn/htdemucs.h"
#include "nn/net.h"
#include "nn/workspace.h"

static const char *dump_dir;

static void on_layer(const char *name, const float *data, size_t n)
{
	DIR *dir = opendir(dump_dir);
	if (!dir)
		return;
	struct dirent *e;
	char path[2048] = "";
	size_t k = strlen(name);
	while ((e = readdir(dir))) {
		size_t l = strlen(e->d_name);
		/* NN_<name>.f32 */
		if (l == k + 7 && e->d_name[2] == '_' && strncmp(e->d_name + 3, name, k) == 0 &&
		    strcmp(e->d_name + 3 + k, ".f32") == 0) {
			snprintf(path, sizeof path, "%s/%s", dump_dir, e->d_name);
			break;
		}
	}
	closedir(dir);
	if (!path[0]) {
		printf("%-36s (no dump)\n", name);
		return;
	}
	size_t nr;
	float *ref = raw_f32_read(path, &nr);
	if (!ref || nr != n) {
		printf("%-36s size mismatch: ours %zu, dump %zu\n", name, n, nr);
		free(ref);
		return;
	}
	double mx = 0, md = 0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		if (fabs(ref[i]) > mx)
			mx = fabs(ref[i]);
		double d = fabs((double)ref[i] - data[i]);
		if (d > md) {
			md = d;
			at = i;
		}
	}
	printf("%-36s max|ref| %-10.4g max|diff| %-10.3g rel %-10.3g at %zu (ours %g ref %g)\n",
	       name, mx, md, mx > 0 ? md / mx : md, at, data[at], ref[at]);
	free(ref);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: layer_check CKPT INPUT.f32 DUMP_DIR\n");
		return 2;
	}
	dump_dir = argv[3];
	char err[512];
	struct nn_ckpt c;
	if (nn_ckpt_load(argv[1], &c, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	struct nn_net *m;
	if (nn_net_build(&c, &m, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		nn_ckpt_free(&c);
		return 1;
	}
	const struct nn_htdemucs_info *info = nn_net_info(m);
	size_t n;
	float *in = raw_f32_read(argv[2], &n);
	int C = info->audio_channels;
	int L = nn_net_fixed_length(m) ? info->training_length : (int)(n / (size_t)C);
	if (!in || n != (size_t)C * L || L < 1) {
		fprintf(stderr, "input must hold %d x %d floats\n", C, L);
		return 1;
	}
	/* separate.py normalisation over the mono mix. */
	double s = 0, ss = 0;
	for (int i = 0; i < L; i++)
		s += (in[i] + in[L + i]) / 2.0f;
	float mean = (float)(s / L);
	for (int i = 0; i < L; i++) {
		double d = (in[i] + in[L + i]) / 2.0f - (double)mean;
		ss += d * d;
	}
	float sd = (float)sqrt(ss / (L - 1)) + 1e-8f;
	for (size_t i = 0; i < n; i++)
		in[i] = (in[i] - mean) / sd;
	float *out = malloc((size_t)info->n_sources * C * L * sizeof *out);
	struct nn_ws ws;
	nn_ws_init(&ws, 0);
	nn_htdemucs_debug_hook = on_layer;
	int rc = nn_net_forward(m, &ws, in, L, out, NULL);
	printf("forward rc %d, workspace peak %.1f MB\n", rc, ws.peak_bytes / 1e6);
	nn_ws_free(&ws);
	free(out);
	free(in);
	nn_net_free(m);
	return rc != 0;
}
