/* libFuzzer harness: the zip reader of the checkpoint loader (src/nn/zip.c). Every entry
 * it accepts is read in full, so an offset check that lets a range escape the buffer
 * shows up as an ASan error. Seeds: fuzz/seeds/nn_zip/. */
#include <stddef.h>
#include <stdint.h>

#include "nn/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nn_zip z;
	char err[256];
	if (nn_zip_parse(data, size, &z, err, sizeof err) != 0)
		return 0;
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < z.n_entries; i++) {
		const struct nn_zip_entry *e = &z.entries[i];
		for (uint64_t k = 0; k < e->size_bytes; k++)
			sink ^= e->data[k];
		for (size_t k = 0; k < e->name_len; k++)
			sink ^= (uint8_t)e->name[k];
		(void)nn_zip_find(&z, e->name, e->name_len);
	}
	(void)sink;
	nn_zip_free(&z);
	return 0;
}
