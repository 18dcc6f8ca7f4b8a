/* jobs.h - queueing work: a job is a row the scheduler (jobs/jobs.h) claims and runs in a
 * child process. Every route and command that starts work goes through job_enqueue.
 *
 * Threading: any thread; the database serialises the writes. */
#ifndef SFA_CORE_JOBS_H
#define SFA_CORE_JOBS_H

#include <jansson.h>

#include "db/db.h"

struct scheduler;

/* Creates a queued job of type (a name in jobs/registry.h) with its attempts from the
 * registry, and wakes sched (NULL: none in this process; another process's scheduler finds
 * the row). payload is consumed (may be NULL). SFA_EINVAL for an unknown type, SFA_ETOOBIG
 * for a payload over DB_JSON_SMALL. */
int job_enqueue(struct db *db, struct scheduler *sched, const char *user_id, const char *track_id,
                const char *type, json_t *payload, struct db_job *out);

#endif
