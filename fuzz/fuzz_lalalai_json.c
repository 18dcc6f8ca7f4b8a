/* libFuzzer harness for the JSON half of src/clients/lalalai.c: a check answer
 * ({"result": {"<task>": state}}) as lal.ai (or anything pretending to be it) might send.
 * The first byte picks how many of three task ids are asked for. Checks that every
 * accepted state is consistent: progress within 0..100, at most LALALAI_MAX_TRACKS
 * tracks, each with an http(s) URL and printable strings.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_lalalai_json.c
 *        src/clients/lalalai.c src/util/{log,str,json,arena,timeutil}.c
 *        -ljansson -lsodium -lcurl -lpthread -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients/lalalai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1 << 20))
		return 0;
	static const char *const ids[] = {"t1", "t2", "task-x"};
	size_t n = (size_t)(data[0] % 3) + 1;
	struct lalalai_status st[3];
	char err[256];
	if (lalalai_parse_check((const char *)data + 1, size - 1, ids, n, st, err, sizeof err) != 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (st[i].progress < 0 || st[i].progress > 100 ||
		    st[i].n_tracks > LALALAI_MAX_TRACKS)
			abort();
		must_be_printable(st[i].error);
		for (size_t k = 0; k < st[i].n_tracks; k++) {
			const struct lalalai_track *t = &st[i].tracks[k];
			if (strncmp(t->url, "http://", 7) != 0 &&
			    strncmp(t->url, "https://", 8) != 0)
				abort();
			must_be_printable(t->url);
			must_be_printable(t->label);
			must_be_printable(t->type);
		}
	}
	return 0;
}
