/* libFuzzer harness: the Range header parser (http/range.c). The first 8 bytes are the
 * resource size; the rest is the header. Checks the result always lies inside it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 8)
		return 0;
	uint64_t res;
	memcpy(&res, data, 8);
	char *h = malloc(size - 7);
	if (!h)
		return 0;
	memcpy(h, data + 8, size - 8);
	h[size - 8] = '\0';
	uint64_t first = 0, len = 0;
	if (http_range_parse(h, res, &first, &len) == RANGE_PARTIAL &&
	    (len == 0 || first >= res || len > res - first))
		__builtin_trap();
	free(h);
	return 0;
}
