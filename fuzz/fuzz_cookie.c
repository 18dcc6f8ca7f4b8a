/* libFuzzer harness: the Cookie request header (http/cookie.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/cookie.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct arena a;
	arena_init(&a, 1 << 20);
	struct kv_list l;
	if (cookie_parse(&a, s, &l) == 0)
		for (size_t i = 0; i < l.n; i++)
			if (!*l.items[i].key || strchr(l.items[i].value, ';'))
				__builtin_trap();
	arena_free(&a);
	free(s);
	return 0;
}
