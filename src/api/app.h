/* app.h - the state every handler shares: configuration, database, rate limiter, the
 * cache of verified API keys, the bus of live job events and the job scheduler.
 *
 * Built once by `sfa serve` before the server starts and read-only afterwards (its
 * members are themselves thread-safe), so handlers on any worker thread may use it.
 */
#ifndef SFA_API_APP_H
#define SFA_API_APP_H

#include "core/config.h"
#include "core/keycache.h"
#include "core/respcache.h"
#include "core/ratelimit.h"
#include "db/db.h"
#include "util/storage.h"

#include <limits.h>

struct bus;
struct scheduler;

struct app {
	struct config cfg;
	char exe[PATH_MAX]; /* this binary, to start worker processes with */
	struct db *db;
	struct storage store; /* the stored files, resolved once at start */
	struct ratelimit *rl;
	struct keycache *keys;   /* API keys verified in the last few seconds */
	struct respcache *lists; /* rendered library lists; NULL: none kept */
	struct bus *bus;         /* live job events, for the sockets (jobs/bus.h) */
	struct scheduler *sched; /* this process's job scheduler; NULL when it runs no jobs
	                            (`serve --no-jobs`): enqueues then only write the row */
};

#endif
