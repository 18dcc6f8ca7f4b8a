/* libFuzzer harness: a whole checkpoint load from memory (zip + pickle + package checks +
 * fp16 gather with offsets and strides), src/nn/ckpt.c. Seeds: fuzz/seeds/nn_ckpt/ (a
 * 1 KB package with a strided tensor view). */
#include <stddef.h>
#include <stdint.h>

#include "nn/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nn_ckpt c;
	char err[512];
	if (nn_ckpt_load_mem(data, size, &c, err, sizeof err) == 0) {
		volatile float sink = 0;
		for (size_t i = 0; i < c.n_weight_floats; i++)
			sink += c.weights[i];
		(void)sink;
		nn_ckpt_free(&c);
	}
	return 0;
}
