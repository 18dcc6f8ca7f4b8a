/* libFuzzer harness: urlencoded form bodies and query strings (http/form.c). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http/form.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	if (form_parse(&a, (const char *)data, size, FORM_MAX_PAIRS, &l) == 0) {
		for (size_t i = 0; i < l.n; i++) {
			/* Decoded keys and values are C strings with no embedded NUL. */
			if (strlen(l.items[i].key) == 0)
				__builtin_trap();
			(void)kv_get(&l, l.items[i].key);
			char enc[256];
			(void)url_encode(l.items[i].value, enc, sizeof enc);
		}
	}
	arena_free(&a);
	return 0;
}
