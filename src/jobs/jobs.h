/* jobs.h - durable background jobs: enqueueing, the scheduler, and the worker side.
 *
 * A job is a row in the jobs table (db.h). The scheduler, a thread of the server, claims
 * due queued jobs up to a concurrency limit per type and runs each in a child process
 * (`sfa job-exec <id>`): in its own process group, with resource limits, killed with the
 * server (PR_SET_PDEATHSIG). The child reports on file descriptor 3, one JSON object per
 * line: {"progress": 0..100, "status": "...", "message": "..."}, then {"result": {...}}
 * or {"error": "<sentence>", "retry": false}. The scheduler records progress, publishes
 * job:progress / job:completed / job:failed on the bus (topics jobs:<id>, user:<id>),
 * kills cancelled or timed-out jobs' process groups, and retries failed attempts with
 * exponential backoff and jitter until max_attempts. Each job has a scratch directory,
 * data/tmp/jobs/<id>, removed when its process ends, so no partial file outlives it.
 *
 * The server process never does a job's work itself; a crash of a child fails only that
 * attempt. At start-up, jobs left running by a crash are queued again (db_job_recover): on
 * SQLite every running job (one process runs a SQLite database's jobs), on PostgreSQL only
 * this node's own (SFA_NODE_ID) and unleased ones.
 *
 * Leases (several nodes on one PostgreSQL database): a claim leases the job to this
 * scheduler's node id for SFA_JOB_LEASE_S seconds, renewed every third of that while the
 * child runs. Every scheduler sweeps once a second for leases that passed (their node died
 * or stalled) and puts those jobs back in the queue, or fails them when out of attempts or
 * cancelled. A node that finds its lease gone stops its child and records nothing of that
 * attempt. A cancel is a flag in the row, which the owning node reads every 300 ms, so a
 * cancel on any node reaches the child within a second. Nodes' clocks must agree to well
 * within a lease (NTP).
 *
 * A scheduler is a value (scheduler_new): `sfa serve` makes one, and a test may run two in
 * one process against one database. It publishes on the bus it was given.
 *
 * Notifications (db_notify on JOBS_CHANNEL; PostgreSQL's LISTEN/NOTIFY, within the process on
 * SQLite): an enqueue wakes idle schedulers at once, so on PostgreSQL an idle node polls the
 * queue only every 2 s as a safety net (on SQLite every 200 ms, as `sfa job enqueue` in
 * another process cannot notify it). Each write of a running job's row is announced with the
 * job id and event; a scheduler with relay set (`serve`, also with --no-jobs) reads the row
 * and publishes the event on its own bus, so a socket on one node sees a job another runs.
 *
 * Threading: scheduler_new and scheduler_free are called by the thread that owns the
 * scheduler (main); scheduler_wake from any thread while it exists. Everything else runs on
 * the scheduler's own thread.
 */
#ifndef SFA_JOBS_JOBS_H
#define SFA_JOBS_JOBS_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "db/db.h"
#include "util/storage.h"

struct bus;
struct scheduler;

/* What a scheduler runs, and with what. Everything is borrowed and must outlive it. */
struct scheduler_opts {
	const struct config *cfg;
	struct db *db;
	struct bus *bus;   /* where job events are published */
	const char *exe;   /* the sfa binary to run children with */
	const char *types; /* comma-separated type names this node runs; NULL: every type,
	                      "": none */
	int concurrency;   /* > 0: how many jobs of each type run at once (else the type's
	                      SFA_JOBS_* limit) */
	bool relay;        /* publish other nodes' job events on bus too (a node with sockets) */
};

/* The notification channel of the job queue (db_notify). Notes: "queued <type>" when a job
 * is enqueued (idle schedulers wake and claim), "event <job id> <progress|completed|failed>
 * <node id>" when a scheduler wrote a job's row (relays read the row and publish it). */
#define JOBS_CHANNEL "sfa_jobs"

/* Recovers the jobs of the last run, then starts the scheduler's thread. Returns the
 * scheduler (freed by scheduler_free), or NULL with err set (a sentence). */
struct scheduler *scheduler_new(const struct scheduler_opts *o, char *err, size_t n_err);
/* Kills running children (they are queued again, their attempt refunded), joins the thread
 * and frees s. NULL is a no-op. */
void scheduler_free(struct scheduler *s);
/* Wakes the scheduler now (after an enqueue or a cancel request). NULL is a no-op (a
 * process without a scheduler: the CLI, or `sfa serve --no-jobs`). */
void scheduler_wake(struct scheduler *s);

/* Worker side: `sfa job-exec <id>`. Returns the process exit status. */
int job_exec_main(const struct config *cfg, const char *job_id);

/* What a job type's worker function gets. */
struct job_run {
	const struct config *cfg;
	struct db *db;
	struct storage store; /* the stored files (uploads, stems) */
	struct db_job job;
	json_t *payload;              /* the job's payload object (borrowed) */
	char work_dir[PATH_MAX + 64]; /* scratch, removed after the job */
	json_t *result;               /* set by the worker on success (owned by job_run) */
	char error[1024];             /* set by the worker on failure: a sentence for the user */
	bool retry;                   /* whether a failure may be retried (default true) */
};

/* Reports progress (clamped to 0..100; status NULL keeps the current phase). */
void job_report(struct job_run *r, int progress, const char *status, const char *message);
/* Worker functions return 0 or a negative code with r->error filled. */
typedef int (*job_worker_fn)(struct job_run *r);

#endif
