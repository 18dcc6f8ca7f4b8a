/* libFuzzer harness: the DAW manifest parser at the edge (audio/mixer_manifest.c) and the
 * mixer that runs what it accepts (audio/mixer.c).
 *
 * Input layout: byte 0 is the number of uploaded files (mod 17), byte 1 seeds the source
 * lengths and says which stem ids the "database" knows; the rest is the manifest JSON.
 * Checks: a rejected manifest has at least one error, every error has a path and a
 * message, and accepted manifests only index existing files. An accepted manifest is
 * planned at 1000 Hz (1 ms = 1 frame) over short in-memory sources and rendered: the
 * whole mix through the scan and the WAV writer when it is short, else its first and last
 * blocks; the writer must produce exactly the size the plan announced, and the two passes
 * must count the same clipped samples.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audio/mixer.h"
#include "audio/mixer_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static const char *known_ids(void *arg, int stem, const char *id)
{
	unsigned seed = *(const unsigned *)arg;
	(void)stem;
	return ((unsigned char)id[0] + seed) % 3 == 0 ? "is not one of your stems" : NULL;
}

static int fuzz_read(void *arg, int stem, int64_t frame, size_t n, float *lr)
{
	const int64_t *len = arg;
	for (size_t i = 0; i < n; i++) {
		int64_t f = frame + (int64_t)i;
		bool in = f >= 0 && f < len[stem];
		/* A loud saw, so clipping happens. */
		float v = in ? (float)((f * 37 + stem * 11) % 200) / 50.0f - 2.0f : 0.0f;
		lr[2 * i] = v;
		lr[2 * i + 1] = -v;
	}
	return 0;
}

struct counter {
	uint64_t n;
};

static int count_write(void *arg, const void *p, size_t n)
{
	(void)p;
	((struct counter *)arg)->n += n;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int n_files = data[0] % (MIXER_MAX_FILES + 1);
	unsigned seed = data[1];
	static struct mixer_errors errs;
	memset(&errs, 0, sizeof errs);
	struct mixer_manifest m;
	memset(&m, 0, sizeof m);
	int rc = mixer_manifest_parse((const char *)data + 2, size - 2, n_files, known_ids, &seed,
	                              &m, &errs);
	if (rc) {
		check(errs.n > 0);
		for (int i = 0; i < errs.n; i++)
			check(errs.e[i].msg[0] != '\0' && strlen(errs.e[i].path) < MIXER_PATH_MAX);
		return 0;
	}
	check(errs.n == 0 && m.n_stems >= 1 && m.n_stems <= MIXER_MAX_STEMS);
	int64_t len[MIXER_MAX_STEMS];
	for (int i = 0; i < m.n_stems; i++) {
		check(m.stems[i].file < n_files);
		check((m.stems[i].file >= 0) != (m.stems[i].stem_id[0] != '\0'));
		check(m.stems[i].n_edits <= MIXER_MAX_EDITS);
		len[i] = (int64_t)((seed * 7919u + (unsigned)i * 104729u) % 3000u);
	}
	struct mixer_plan *p = NULL;
	char err[256];
	rc = mixer_plan_new(&m, 1000, len, &p, err, sizeof err);
	mixer_manifest_free(&m);
	check(rc == 0); /* at 1000 Hz nothing reaches 4 GiB */
	int64_t n = mixer_plan_frames(p);
	check(n >= 0 && n <= 2 * (int64_t)MIXER_MAX_MS + 3000);
	if (n <= 20000) {
		struct mixer_stats st;
		check(mixer_scan(p, fuzz_read, len, &st) == 0);
		struct counter c = {0};
		uint64_t clipped = 0;
		check(mixer_write_wav(p, fuzz_read, len, &st, count_write, &c, &clipped) == 0);
		check(c.n == mixer_plan_wav_bytes(p));
		check(clipped == st.n_clipped);
	} else {
		static float lr[2 * MIXER_BLOCK_FRAMES];
		check(mixer_render_block(p, 0, MIXER_BLOCK_FRAMES, fuzz_read, len, lr) == 0);
		check(mixer_render_block(p, n - 100, 100, fuzz_read, len, lr) == 0);
	}
	mixer_plan_free(p);
	return 0;
}
