/* registry.h - every job type, in one table: its name, its worker, how many attempts it
 * gets, how many run at once and for how long (from the configuration), and what its
 * result holds. The scheduler, the worker process, job_enqueue, the API's filters and the
 * docs all read this table; a new type is one row here and one worker function.
 *
 * A type's name is what the jobs table stores and the scheduler claims by, so each type
 * has its own slots. A type may be shown to clients under another type's name (shown_as):
 * lal.ai separations are type "lalalai" here, with slots of their own so a cloud job never
 * holds up local ones, but the contract knows them as "processing" jobs, and every edge
 * (job JSON, the ?type filter, WebSocket events) shows job_type_shown(name).
 *
 * Threading: the table is constant, read from any thread and from job child processes.
 */
#ifndef SFA_JOBS_REGISTRY_H
#define SFA_JOBS_REGISTRY_H

#include "core/config.h"
#include "jobs/jobs.h"

struct job_type {
	const char *name;
	job_worker_fn run; /* its worker, run by `sfa job-exec` (workers.h) */
	int max_attempts;
	/* Jobs of this type run at once, and the wall-clock limit of one attempt (before
	 * SFA_JOB_TIMEOUT_S, which overrides every type's), from the configuration. */
	int (*limit)(const struct config *c);
	int (*timeout_s)(const struct config *c);
	const char *result;   /* what its result JSON holds */
	const char *shown_as; /* the type clients see; NULL: name */
};

enum { JOB_TYPES_MAX = 16 }; /* room for job_types_n (checked at start-up) */

extern const struct job_type job_types[];
extern const int job_types_n;

/* The type named name (a row of the static table), or NULL. */
const struct job_type *job_type_find(const char *name);
/* The type clients see for a job of stored type name (name itself when it is shown as
 * itself or unknown). Static storage or name: nothing to free. */
const char *job_type_shown(const char *name);
/* The stored type names shown to clients as shown (a name in the contract's sense), into
 * out[0..n_out-2], NULL-terminated: what the API's ?type=shown filter selects. Returns how
 * many (0 when shown is no type clients see). */
int job_types_shown_as(const char *shown, const char **out, int n_out);
/* The wall-clock limit of one attempt of t under c. */
int job_type_attempt_timeout_s(const struct job_type *t, const struct config *c);

#endif
