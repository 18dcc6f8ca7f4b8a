/* arena.c - see arena.h. Blocks are a singly linked list; the head block is the one
 * being filled. A request larger than half the default block gets a block of its own. */
#include "util/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
	struct arena_block *next;
	size_t size;
	size_t used;
	_Alignas(16) unsigned char data[];
};

enum { ARENA_BLOCK_BYTES = 8192 };

void arena_init(struct arena *a, size_t cap_bytes)
{
	a->head = NULL;
	a->n_used_bytes = 0;
	a->cap_bytes = cap_bytes;
}

void *arena_alloc(struct arena *a, size_t n_bytes)
{
	size_t need = (n_bytes + 15u) & ~(size_t)15u;
	if (need < n_bytes)
		return NULL;
	struct arena_block *b = a->head;
	if (!b || b->size - b->used < need) {
		size_t size = ARENA_BLOCK_BYTES;
		if (b && b->size < 256 * 1024)
			size = b->size * 2;
		if (size < need)
			size = need;
		if (a->n_used_bytes + size > a->cap_bytes) {
			if (a->n_used_bytes + need > a->cap_bytes)
				return NULL;
			size = need;
		}
		struct arena_block *nb = malloc(sizeof *nb + size);
		if (!nb)
			return NULL;
		nb->size = size;
		nb->used = 0;
		a->n_used_bytes += size;
		/* Keep a partly filled head in front when the new block is a one-off. */
		if (b && size == need && b->size - b->used > 256) {
			nb->next = b->next;
			b->next = nb;
			nb->used = need;
			return nb->data;
		}
		nb->next = b;
		a->head = nb;
		b = nb;
	}
	void *p = b->data + b->used;
	b->used += need;
	return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = arena_alloc(a, n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *arena_strdup(struct arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(struct arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = arena_alloc(a, (size_t)n + 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void arena_free(struct arena *a)
{
	struct arena_block *b = a->head;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	a->head = NULL;
	a->n_used_bytes = 0;
}
