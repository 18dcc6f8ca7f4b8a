/* respcache.h - rendered answers of library lists, kept while the library they show has
 * not changed, so a client that polls its list is answered without the queries and the
 * JSON that built it.
 *
 * An entry holds a key (the user and what the request asked for), the version of the
 * user's library it was rendered from (db_library_version: the database raises it on every
 * write to the user's tracks, analyses and stems, by any process or server of that
 * database) and the body. A get for another version misses, so an answer is never older
 * than the library the database holds when the get asks. A fixed table of slots chosen by
 * the key's hash: a colliding key takes the slot; when the bodies would pass max_bytes the
 * table starts over. Thread-safe: one mutex, held for compares, reference counts and
 * frees (bodies are shared, not copied). respcache_new's result is freed with respcache_free;
 * a body from respcache_get with respcache_release.
 */
#ifndef SFA_CORE_RESPCACHE_H
#define SFA_CORE_RESPCACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct respcache;

struct respcache_body {
	atomic_int refs;
	size_t len;
	char data[];
};

/* NULL when out of memory. */
struct respcache *respcache_new(unsigned n_slots, size_t max_bytes);
void respcache_free(struct respcache *c);
/* The body kept under key for version, or NULL; the caller releases it. */
struct respcache_body *respcache_get(struct respcache *c, const char *key, int64_t version);
void respcache_release(struct respcache_body *b);
/* Keeps a copy of body for key at version (nothing when out of memory or too large). */
void respcache_put(struct respcache *c, const char *key, int64_t version, const char *body,
                   size_t len);

#endif
