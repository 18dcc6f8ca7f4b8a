/* registry.h - every job type, in one table: its name, its worker, how many attempts it
 * gets, how many run at once and for how long (from the configuration), and what its
 * result holds. The scheduler, the worker process, job_enqueue, the API's filters and the
 * docs all read this table; a new type is one row here and one worker function.
 *
 * Threading: the table is constant, read from any thread and from job child processes.
 */
#ifndef SFA_JOBS_REGISTRY_H
#define SFA_JOBS_REGISTRY_H

#include "core/config.h"
#include "jobs/jobs.h"

struct job_type {
	const char *name;
	job_worker_fn run;  /* its worker, run by `sfa job-exec` (workers.h) */
	int max_attempts;
	/* Jobs of this type run at once, and the wall-clock limit of one attempt (before
	 * SFA_JOB_TIMEOUT_S, which overrides every type's), from the configuration. */
	int (*limit)(const struct config *c);
	int (*timeout_s)(const struct config *c);
	const char *result; /* what its result JSON holds */
};

enum { JOB_TYPES_MAX = 16 }; /* room for job_types_n (checked at start-up) */

extern const struct job_type job_types[];
extern const int job_types_n;

/* The type named name, or NULL. */
const struct job_type *job_type_find(const char *name);
/* The wall-clock limit of one attempt of t under c. */
int job_type_attempt_timeout_s(const struct job_type *t, const struct config *c);

#endif
