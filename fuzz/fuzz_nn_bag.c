/* libFuzzer harness: the bag-of-models yaml reader (src/nn/bag.c). Seeds:
 * fuzz/seeds/nn_bag/ (the official formats, block lists, comments). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/bag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nn_bag_spec spec;
	char err[256];
	if (nn_bag_parse((const char *)data, size, &spec, err, sizeof err) == 0) {
		volatile size_t n = 0;
		for (int i = 0; i < spec.n_models; i++)
			n += strlen(spec.models[i]);
		(void)n;
	}
	return 0;
}
