/* keycache.h - API keys recently found valid, so a busy client's requests do not each
 * read (and write) the database.
 *
 * A fixed table of slots chosen by the key's hash (the hex SHA-256 the database keys on),
 * each holding the owner as the database gave it and when that was. An entry serves for
 * ttl_ms; a key revoked on this server is forgotten at once (keycache_forget), one revoked
 * through another server of the same database stops working within ttl_ms. A colliding
 * key simply takes the slot. Thread-safe (one mutex; every call is a few compares and a
 * copy). keycache_new's result is freed with keycache_free.
 */
#ifndef SFA_CORE_KEYCACHE_H
#define SFA_CORE_KEYCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "db/db.h"

struct keycache;

/* NULL when out of memory; the owner frees it with keycache_free. */
struct keycache *keycache_new(unsigned n_slots, int ttl_ms);
void keycache_free(struct keycache *kc);
/* The owner of key_hash when an entry younger than ttl_ms holds it. */
bool keycache_get(struct keycache *kc, const char *key_hash, int64_t now_ms, struct db_user *out);
void keycache_put(struct keycache *kc, const char *key_hash, int64_t now_ms,
                  const struct db_user *u);
void keycache_forget(struct keycache *kc, const char *key_hash);

#endif
