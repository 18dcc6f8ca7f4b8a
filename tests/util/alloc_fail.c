/* alloc_fail.c - see alloc_fail.h. Each wrapper counts the call, refuses the chosen one,
 * and keeps the count of live blocks that the tests compare before and after a parse. */
#include "alloc_fail.h"

#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long g_fail_at, g_count, g_live;
static bool g_hit, g_hit_jansson;

void alloc_fail_at(long n)
{
	g_fail_at = n;
	g_count = 0;
	g_hit = g_hit_jansson = false;
}

long alloc_fail_count(void) { return g_count; }
bool alloc_fail_hit(void) { return g_hit; }
bool alloc_fail_hit_jansson(void) { return g_hit_jansson; }
long alloc_fail_live(void) { return g_live; }

/* Counts one allocation; true when it is the one to refuse. */
static bool refuse(void)
{
	g_count++;
	if (g_fail_at > 0 && g_count == g_fail_at) {
		g_hit = true;
		return true;
	}
	return false;
}

static void *counted(void *p)
{
	if (p)
		g_live++;
	return p;
}

void *__wrap_malloc(size_t n) { return refuse() ? NULL : counted(__real_malloc(n)); }
void *__wrap_calloc(size_t k, size_t n) { return refuse() ? NULL : counted(__real_calloc(k, n)); }
char *__wrap_strdup(const char *s) { return refuse() ? NULL : counted(__real_strdup(s)); }
char *__wrap_strndup(const char *s, size_t n)
{
	return refuse() ? NULL : counted(__real_strndup(s, n));
}

void *__wrap_realloc(void *p, size_t n)
{
	if (refuse())
		return NULL; /* p stays the caller's, as after a real failure */
	if (!p)
		return counted(__real_realloc(NULL, n));
	return __real_realloc(p, n); /* n > 0 in the project's code: the block moves or grows */
}

void __wrap_free(void *p)
{
	if (p)
		g_live--;
	__real_free(p);
}

void *alloc_fail_malloc(size_t n)
{
	bool before = g_hit;
	void *p = __wrap_malloc(n);
	if (g_hit && !before)
		g_hit_jansson = true;
	return p;
}
void alloc_fail_free(void *p) { __wrap_free(p); }
