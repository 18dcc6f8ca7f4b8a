/* ratelimit.h - fixed-window request counters per caller and bucket.
 *
 * A window opens at a caller's first request and lasts window_s seconds; up to `limit`
 * requests pass in it, the rest are refused until it ends. The arithmetic is the pure
 * function ratelimit_step (unit-tested); struct ratelimit is a mutex-guarded table of
 * windows keyed by strings such as "api:user:<id>" or "auth:ip:1.2.3.4", holding at most
 * max_keys entries (expired ones are swept when it fills; past that, new keys are let
 * through and counted in n_overflow, so a flood of addresses cannot exhaust memory).
 * Refused requests count too, so the arithmetic is the same whoever keeps the window.
 *
 * Shared mode: servers that share one database (db_is_shared: PostgreSQL) keep the windows
 * in it instead (db_rate_hit, an atomic upsert), so a limit holds for the whole service,
 * not per server; ended windows are swept now and then. Not every request writes: while a
 * window is in the first half of its limit, a server lets hits through on its own and
 * tells the database their number with a later one (at most an eighth of what is left of
 * that half: with up to 8 servers the limit still holds), and once the database has said
 * a window is full, the server refuses until it ends without asking again. Past the first
 * half every hit is counted there at once, so small limits (log-in attempts) are exact.
 * "remaining" is then this server's view of the window.
 *
 * Threading: one struct ratelimit is shared by every HTTP worker thread; its mutex guards
 * the table (in shared mode too, which calls the database with it released). Nothing is
 * handed out.
 */
#ifndef SFA_CORE_RATELIMIT_H
#define SFA_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rl_window {
	int64_t start; /* unix seconds; 0 = no window open */
	int count;
};

struct rl_result {
	bool allowed;
	int limit;
	int remaining;     /* after this request */
	int64_t reset_at;  /* unix seconds when the window ends */
	int retry_after_s; /* > 0 only when refused */
};

void ratelimit_step(struct rl_window *w, int limit, int window_s, int64_t now,
                    struct rl_result *out);

struct ratelimit;
struct db;

/* shared: the database to keep the windows in, or NULL for this process's own table.
 * NULL when out of memory; the owner frees it with ratelimit_free. */
struct ratelimit *ratelimit_new(size_t max_keys, int window_s, struct db *shared);
void ratelimit_free(struct ratelimit *rl);
void ratelimit_hit(struct ratelimit *rl, const char *key, int limit, int64_t now,
                   struct rl_result *out);
size_t ratelimit_overflows(struct ratelimit *rl);
/* Shared mode: how many times the database was told of hits (for tests). */
size_t ratelimit_shared_writes(struct ratelimit *rl);

#endif
