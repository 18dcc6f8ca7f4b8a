/* libFuzzer harness: the NI Stems box writer (audio/nistems.c nistems_insert_box), given
 * any bytes as the moov box it rebuilds (the file it patches comes from libavformat, but
 * the writer must not trust that) and the metadata JSON.
 *
 * Checks: a refusal changes nothing; an accepted moov comes back as one well-formed moov
 * box whose one udta holds exactly one 'stem' box with the JSON, and every other child of
 * the input moov is kept, byte for byte, in order; inserting again gives the same bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audio/nistems.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
	if (!ok)
		__builtin_trap();
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Counts the boxes of kind in buf (well-formed: sizes tile it exactly); -1 when not. */
static int count(const uint8_t *buf, size_t n, const char *kind, size_t *at, size_t *len)
{
	int c = 0;
	for (size_t o = 0; o < n;) {
		if (n - o < 8 || be32(buf + o) < 8 || be32(buf + o) > n - o)
			return -1;
		if (memcmp(buf + o + 4, kind, 4) == 0) {
			c++;
			*at = o;
			*len = be32(buf + o);
		}
		o += be32(buf + o);
	}
	return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t n_json = data[0] % 64;
	if (n_json > size - 1)
		n_json = size - 1;
	char json[64];
	memcpy(json, data + 1, n_json);
	json[n_json] = '\0';
	n_json = strlen(json);
	const uint8_t *moov = data + 1 + n_json;
	size_t n = size - 1 - n_json;
	uint8_t *out = NULL;
	size_t n_out = 0;
	if (nistems_insert_box(moov, n, json, &out, &n_out) != 0) {
		check(out == NULL);
		return 0;
	}
	check(n_out >= 8 && be32(out) == n_out && memcmp(out + 4, "moov", 4) == 0);
	size_t u_at = 0, u_len = 0, s_at = 0, s_len = 0;
	check(count(out + 8, n_out - 8, "udta", &u_at, &u_len) == 1);
	const uint8_t *udta = out + 8 + u_at + 8;
	check(count(udta, u_len - 8, "stem", &s_at, &s_len) == 1);
	check(s_len == 8 + n_json && memcmp(udta + s_at + 8, json, n_json) == 0);
	/* the input's other top-level children survive in order */
	size_t o_in = 8, o_out = 8;
	while (o_in < n) {
		uint32_t sz = be32(moov + o_in);
		if (memcmp(moov + o_in + 4, "udta", 4) != 0) {
			while (memcmp(out + o_out + 4, "udta", 4) == 0)
				o_out += be32(out + o_out);
			check(o_out < n_out && be32(out + o_out) == sz &&
			      memcmp(out + o_out, moov + o_in, sz) == 0);
			o_out += sz;
		}
		o_in += sz;
	}
	uint8_t *again = NULL;
	size_t n_again = 0;
	check(nistems_insert_box(out, n_out, json, &again, &n_again) == 0);
	check(n_again == n_out && memcmp(again, out, n_out) == 0);
	free(again);
	free(out);
	return 0;
}
