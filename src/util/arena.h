/* arena.h - a bump allocator with a hard cap, for per-request and per-job memory.
 *
 * Everything allocated from an arena is freed at once by arena_free(). Blocks grow
 * geometrically up to cap_bytes in total; an allocation past the cap returns NULL, which
 * callers turn into a "too large" error. One arena belongs to one thread at a time.
 */
#ifndef SFA_UTIL_ARENA_H
#define SFA_UTIL_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
	struct arena_block *head;
	size_t n_used_bytes; /* sum of block sizes handed out by malloc */
	size_t cap_bytes;
};

void arena_init(struct arena *a, size_t cap_bytes);
/* Returns 16-byte aligned memory owned by the arena, or NULL past the cap. */
void *arena_alloc(struct arena *a, size_t n_bytes);
/* Copies n bytes of s and a terminating NUL into the arena. NULL past the cap. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
/* printf into the arena. NULL past the cap. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void arena_free(struct arena *a);

#endif
