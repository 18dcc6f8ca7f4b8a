/* libFuzzer harness for src/clients/spotify_url.c: the pasted-link parser and the
 * short-link recogniser. Checks the parser's promises on every input: an accepted link
 * yields a known kind and a 22-character base62 id; a refused one leaves *out untouched
 * and says why; a recognised short link's URL starts with http(s)://.
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_spotify_url.c
 *        src/clients/spotify_url.c src/util/str.c src/util/log.c src/util/timeutil.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clients/spotify_url.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 3 * SPOTIFY_URL_MAX_BYTES)
		return 0;
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	struct spotify_ref ref;
	memset(&ref, 0x5a, sizeof ref);
	char err[256];
	err[0] = '\0';
	int rc = spotify_url_parse(s, &ref, err, sizeof err);
	if (rc == 0) {
		if (ref.kind != SPOTIFY_TRACK && ref.kind != SPOTIFY_ALBUM &&
		    ref.kind != SPOTIFY_PLAYLIST)
			abort();
		if (strlen(ref.id) != SPOTIFY_ID_LEN || !spotify_id_valid(ref.id, SPOTIFY_ID_LEN))
			abort();
		char url[64];
		spotify_canonical_url(&ref, url, sizeof url);
		struct spotify_ref again;
		if (spotify_url_parse(url, &again, NULL, 0) != 0 || again.kind != ref.kind ||
		    strcmp(again.id, ref.id) != 0)
			abort(); /* the canonical form must parse back to the same thing */
	} else {
		if (rc != SFA_EINVAL || err[0] == '\0')
			abort();
		const unsigned char *p = (const unsigned char *)&ref;
		for (size_t i = 0; i < sizeof ref; i++)
			if (p[i] != 0x5a)
				abort();
	}

	char link[SPOTIFY_URL_MAX_BYTES + 16];
	for (int loop = 0; loop < 2; loop++) {
		if (spotify_url_short_link(s, loop == 1, link, sizeof link) &&
		    strncmp(link, "https://", 8) != 0 && strncmp(link, "http://", 7) != 0)
			abort();
	}
	free(s);
	return 0;
}
