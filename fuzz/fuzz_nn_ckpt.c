/* libFuzzer harness: a whole checkpoint load from memory (zip + pickle + package checks +
 * fp16 gather with offsets and strides), src/nn/ckpt.c, then the network builders
 * (kwargs and tensor checks of src/nn/htdemucs.c and src/nn/hdemucs.c via net.c). Seeds:
 * fuzz/seeds/nn_ckpt/ (a 1 KB package with a strided tensor view). */
#include <stddef.h>
#include <stdint.h>

#include "nn/ckpt.h"
#include "nn/net.h"

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
		struct nn_net *net = NULL;
		if (nn_net_build(&c, &net, err, sizeof err) == 0)
			nn_net_free(net);
		else
			nn_ckpt_free(&c);
	}
	return 0;
}
