/* alloc_fail.h - fail the Nth allocation, as curl's torture tests do, for the test binaries
 * linked with alloc_fail_link_args (tests/util/meson.build): -Wl,--wrap for malloc, calloc,
 * realloc, free, strdup and strndup, so every call from the code linked into the binary
 * (the static project libraries included) passes through here. No LD_PRELOAD: the
 * sanitizers' interceptors still sit behind, as __real_malloc.
 *
 * jansson allocates inside its shared library, which --wrap does not reach: a test hands
 * it alloc_fail_malloc/alloc_fail_free with json_set_alloc_funcs first. jansson 2.14's
 * lexer ignores a failure to grow the buffer of the token it is reading and drops that
 * byte, so a string may come out one byte short instead of the load failing; tests tell
 * those runs apart with alloc_fail_hit_jansson.
 *
 * Threading: one thread; the counters are plain globals.
 */
#ifndef SFA_TESTS_ALLOC_FAIL_H
#define SFA_TESTS_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>

/* From now on, the nth allocation (from 1) fails and every later one succeeds; 0 never
 * fails. Resets the count. */
void alloc_fail_at(long n);
/* Allocations made since alloc_fail_at. */
long alloc_fail_count(void);
/* Whether the nth allocation was refused. */
bool alloc_fail_hit(void);
/* Whether the refused allocation was one jansson asked for (through alloc_fail_malloc). */
bool alloc_fail_hit_jansson(void);
/* Blocks allocated through the wrappers and not yet freed. */
long alloc_fail_live(void);

void *alloc_fail_malloc(size_t n);
void alloc_fail_free(void *p);

#endif
