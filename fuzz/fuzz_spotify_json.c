/* libFuzzer harness for the JSON-to-struct half of src/clients/spotify.c: a track object,
 * a page of album tracks or a page of playlist entries, as Spotify (or anything
 * pretending to be Spotify) might send them. The first byte picks the kind. Checks that
 * every accepted track has a valid id, non-NULL title/artist/album and a sane duration.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_spotify_json.c
 *        src/clients/spotify.c src/clients/spotify_url.c src/util/[a-z]*.c
 *        -ljansson -lsodium -lcurl -lpthread -lm
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients/spotify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > (1 << 20))
		return 0;
	enum spotify_kind kind = (enum spotify_kind)(data[0] % 3 + 1);
	struct spotify_result *r = NULL;
	char err[256];
	if (spotify__result_from_json(kind, (const char *)data + 1, size - 1, &r, err,
	                              sizeof err) != 0)
		return 0;
	for (size_t i = 0; i < r->n_tracks; i++) {
		const struct spotify_track *t = &r->tracks[i];
		if (!spotify_id_valid(t->spotify_id, strlen(t->spotify_id)) || !t->title ||
		    !t->artist || !t->album || !t->spotify_url || t->duration_s < 0 ||
		    t->duration_s > 24 * 3600)
			abort();
	}
	spotify_result_free(r);
	return 0;
}
