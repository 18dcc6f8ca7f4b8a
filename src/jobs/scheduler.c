/* scheduler.c - the server half of the job machinery; jobs.h explains the design.
 *
 * One thread owns every child: it polls their progress pipes, a wake pipe and the jobs
 * channel's listener, reaps exits, enforces cancellation, timeouts and leases, and claims
 * new work. All database writes about a running job happen here, so there is exactly one
 * writer per job (its lease's owner; a node that lost the lease writes nothing more). The
 * job table is the queue: polling it (every tick on SQLite, every 2 s when idle on
 * PostgreSQL, where notifications wake it) also picks up jobs that another process
 * enqueued, such as `sfa job enqueue`. Other nodes' job events arrive as notes on the same
 * listener and are published from the row (relay). The struct scheduler and its children
 * belong to this thread; other threads only write to the wake pipe.
 */
#include "jobs/jobs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/library.h"
#include "jobs/bus.h"
#include "jobs/registry.h"
#include "util/fs.h"
#include "util/err.h"
#include "util/json.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/str.h"
#include "util/timeutil.h"

enum {
	MAX_CHILDREN = 64,
	LINE_MAX_BYTES = 64 * 1024,
	KILL_GRACE_MS = 3000,
	SWEEP_MS = 1000,     /* how often expired leases are looked for */
	TICK_MS = 200,       /* the loop's pace while children run (and on SQLite) */
	EXIT_POLL_MS = 5,    /* while a child has closed its pipe but is not yet reapable */
	IDLE_POLL_MS = 2000, /* an idle node's safety-net poll of a shared database */
};

struct child {
	bool used;
	struct db_job job; /* as claimed */
	pid_t pid;         /* 0 once reaped */
	int status;        /* waitpid status once reaped */
	int fd;            /* progress pipe, -1 after EOF */
	struct buf line;
	char *result; /* JSON text of the reported result */
	char error[DB_ERROR_MAX];
	bool no_retry;
	bool cancelled, timed_out;
	bool lost; /* its lease passed to another node: this attempt writes nothing more */
	int64_t deadline_ms, kill_at_ms, next_check_ms, last_write_ms, next_renew_ms;
	bool progress_dirty; /* a throttled update not yet written to the database */
	int progress;
	char phase[16];
	char message[256];
};

struct scheduler {
	pthread_t thread;
	int wake[2];
	atomic_bool stop;
	const struct config *cfg;
	struct db *db;
	struct bus *bus;
	char exe[PATH_MAX];
	bool run_type[JOB_TYPES_MAX]; /* by index in job_types: whether this node runs it */
	int concurrency;              /* > 0: every type's limit */
	bool runs_jobs;               /* at least one type */
	char node[128];               /* this scheduler's name in the jobs' lease_owner */
	int64_t next_sweep_ms;        /* when to look for expired leases next */
	bool relay;                   /* other nodes' job events go to this node's bus */
	struct db_listener *listener; /* JOBS_CHANNEL; NULL when it could not be opened */
	int64_t next_listen_ms;       /* a broken listener's next reconnection */
	struct child kids[MAX_CHILDREN];
};

void scheduler_wake(struct scheduler *s)
{
	if (s && s->wake[1] >= 0) {
		ssize_t w = write(s->wake[1], "x", 1);
		(void)w;
	}
}

/* Every write about a job is checked: a failed one is logged with the job and what it was
 * (the row then still says "running", and the next start's recovery queues it again). */
static void checked(int rc, const char *what, const char *job_id)
{
	if (rc && rc != SFA_ENOTFOUND) /* a job whose track was deleted meanwhile */
		log_error("job %s: the database did not record %s (%d)", job_id, what, rc);
}

/* The lease a claim or renewal takes now, and how often it is renewed (a third of it, so
 * two renewals may fail before it passes). */
static int64_t lease_until(const struct scheduler *s)
{
	return (int64_t)time(NULL) + s->cfg->job_lease_s;
}

static int64_t renew_every_ms(const struct scheduler *s)
{
	int64_t ms = (int64_t)s->cfg->job_lease_s * 1000 / 3;
	return ms < 300 ? 300 : ms;
}

/* Renews c's lease; a job no longer ours (its lease passed and another node took it back,
 * or its row is gone) is stopped and forgotten without another write. */
static void renew(struct scheduler *s, struct child *c, int64_t now_ms)
{
	bool cancel = false;
	int rc = db_job_renew(s->db, c->job.id, s->node, lease_until(s), &cancel);
	c->next_renew_ms = now_ms + renew_every_ms(s);
	if (rc == SFA_ENOTFOUND && !c->lost) {
		c->lost = true;
		log_warn("job %s: this node (%s) no longer holds its lease; stopping its worker",
		         c->job.id, s->node);
	} else if (rc) {
		checked(rc, "its lease renewal", c->job.id);
	} else if (cancel) {
		c->cancelled = true;
	}
}

/* Publishes on this node's bus (topics jobs:<id> and user:<id>); consumes payload. */
static void publish_local(struct scheduler *s, const struct db_job *j, const char *event,
                          json_t *payload)
{
	char *text = json_encode(payload);
	json_decref(payload);
	if (!text)
		return;
	char topic[64];
	snprintf(topic, sizeof topic, "jobs:%s", j->id);
	bus_publish(s->bus, topic, event, text);
	snprintf(topic, sizeof topic, "user:%s", j->user_id);
	bus_publish(s->bus, topic, event, text);
	free(text);
}

/* Tells every node's relay (this one's skips it) that job j's row changed: event is
 * "progress", "completed" or "failed". The payload is small; readers take the row. */
static void announce(struct scheduler *s, const struct db_job *j, const char *event)
{
	char note[DB_NOTIFY_MAX];
	snprintf(note, sizeof note, "event %s %s %s", j->id, event, s->node);
	checked(db_notify(s->db, JOBS_CHANNEL, note), "the notice of its event", j->id);
}

/* publish_local, and a final event (completed, failed) announced to the other nodes; a
 * progress event is announced where its row is written. */
static void publish(struct scheduler *s, const struct db_job *j, const char *event, json_t *payload)
{
	publish_local(s, j, event, payload);
	if (strcmp(event, "job:progress") != 0)
		announce(s, j, event + 4);
}

static void publish_progress(struct scheduler *s, struct child *c)
{
	publish(s, &c->job, "job:progress",
	        json_pack("{s:s, s:s, s:i, s:s}", "job_id", c->job.id, "status", c->phase,
	                  "progress", c->progress, "message", c->message));
}

static void work_dir(const struct scheduler *s, const char *job_id, char *out, size_t n)
{
	snprintf(out, n, "%s/tmp/jobs/%s", s->cfg->data_dir, job_id);
}

/* Forks and execs `sfa job-exec <id>` with the progress pipe on fd 3. */
static int spawn(struct scheduler *s, struct child *c)
{
	char dir[PATH_MAX + 64];
	work_dir(s, c->job.id, dir, sizeof dir);
	fs_remove_tree(dir);
	char parent[PATH_MAX + 64];
	snprintf(parent, sizeof parent, "%s/tmp/jobs", s->cfg->data_dir);
	if (fs_mkdirs(parent, 0700) || mkdir(dir, 0700) != 0) {
		log_error("job %s: cannot create its scratch directory: %s", c->job.id,
		          strerror(errno));
		return SFA_EIO;
	}
	char *argv[] = {"sfa", "job-exec", c->job.id, "--data", (char *)s->cfg->data_dir, NULL};
	struct proc_spawn_opts po = {
		.out_fd = 3, .memory_mb = s->cfg->job_memory_mb, .nice = s->cfg->job_nice};
	return proc_spawn(s->exe, argv, &po, &c->pid, &c->fd);
}

static void handle_line(struct scheduler *s, struct child *c, const char *line)
{
	json_error_t je;
	json_t *j = json_loads(line, 0, &je);
	if (!json_is_object(j)) {
		log_warn("job %s: ignoring a malformed progress line", c->job.id);
		json_decref(j);
		return;
	}
	json_t *result = json_object_get(j, "result");
	const char *error = json_str(j, "error");
	if (result) {
		free(c->result);
		c->result = json_encode(result);
	} else if (error) {
		str_copy(c->error, sizeof c->error, error);
		c->no_retry = json_is_false(json_object_get(j, "retry"));
	} else if (json_is_integer(json_object_get(j, "progress"))) {
		json_int_t p = json_integer_value(json_object_get(j, "progress"));
		c->progress = p < 0 ? 0 : p > 100 ? 100 : (int)p;
		const char *phase = json_str(j, "status");
		if (phase && *phase && db_job_status_is_running(phase))
			str_copy(c->phase, sizeof c->phase, phase);
		const char *msg = json_str(j, "message");
		str_copy(c->message, sizeof c->message, msg ? msg : "");
		int64_t now = time_mono_ms();
		bool write = now - c->last_write_ms >= 250 || c->progress == 100;
		if (write) {
			checked(db_job_progress(s->db, c->job.id, c->phase, c->progress,
			                        c->message),
			        "its progress", c->job.id);
			c->last_write_ms = now;
			c->progress_dirty = false;
		} else {
			c->progress_dirty =
				true; /* written by supervise() once the interval passed */
		}
		publish_progress(s, c);
		if (write)
			announce(s, &c->job, "progress");
	}
	json_decref(j);
}

static void read_child(struct scheduler *s, struct child *c)
{
	char chunk[8192];
	for (;;) {
		ssize_t n = read(c->fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(c->fd);
			c->fd = -1;
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] == '\n') {
				if (c->line.data)
					handle_line(s, c, c->line.data);
				c->line.len = 0;
				if (c->line.data)
					c->line.data[0] = '\0';
			} else if (buf_append(&c->line, chunk + i, 1)) {
				/* An overlong line is a broken worker: drop it. */
				c->line.len = 0;
			}
		}
	}
}

static int64_t backoff_s(const struct scheduler *s, int attempts)
{
	int64_t base = s->cfg->job_retry_base_s;
	int64_t d = base;
	for (int i = 1; i < attempts && d < 3600; i++)
		d *= 2;
	if (d > 3600)
		d = 3600;
	return d + (d > 1 ? (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1)) : 0);
}

static void finish(struct scheduler *s, struct child *c)
{
	int64_t now = (int64_t)time(NULL);
	struct db_job *j = &c->job;
	bool ok = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0 && c->result;
	int stored_rc = 0;
	char *stored = NULL;
	/* The scratch folder goes first: whoever sees the job's final state (a client polling,
	 * a track being deleted) can rely on it being gone. */
	char dir[PATH_MAX + 64];
	work_dir(s, j->id, dir, sizeof dir);
	fs_remove_tree(dir);
	/* Whatever the attempt ended with is written only while the job is still ours: a node
	 * that stalled past its lease must not overwrite the attempt another node now runs. */
	bool cancelled = c->cancelled; /* a cancel that came after the end changes nothing */
	if (!c->lost)
		renew(s, c, time_mono_ms());
	c->cancelled = cancelled;
	if (c->lost) {
		log_info("job %s (%s): the attempt of this node ended after its lease passed; "
		         "nothing recorded",
		         j->id, j->type);
	} else if (c->cancelled) {
		checked(db_job_fail(s->db, j->id, "cancelled", now), "its cancellation", j->id);
		publish(s, j, "job:failed",
		        json_pack("{s:s, s:s, s:s}", "job_id", j->id, "job_type",
		                  job_type_shown(j->type), "error", "cancelled"));
		log_info("job %s cancelled", j->id);
	} else if (ok &&
	           (stored_rc = library_job_complete(s->db, j, c->result, now, &stored)) == 0) {
		json_error_t je;
		json_t *res = json_loads(stored, 0, &je);
		free(stored);
		publish(s, j, "job:completed",
		        json_pack("{s:s, s:s, s:s?, s:o}", "job_id", j->id, "job_type",
		                  job_type_shown(j->type), "track_id",
		                  j->track_id[0] ? j->track_id : NULL, "result",
		                  res ? res : json_object()));
		log_info("job %s (%s) completed", j->id, j->type);
	} else {
		if (ok) {
			/* The worker succeeded but its result could not be recorded: a retry redoes it
			 * (the stems folder and rows of this job are replaced, never duplicated). */
			log_error("job %s: its result could not be recorded (%d)", j->id,
			          stored_rc);
			c->no_retry = stored_rc ==
			              SFA_EINVAL; /* a malformed result would be again */
			str_copy(c->error, sizeof c->error,
			         stored_rc == SFA_EINVAL
			                 ? "The worker reported a malformed result."
			                 : "The result could not be saved in the database.");
		}
		char err[DB_ERROR_MAX];
		if (c->timed_out)
			snprintf(
				err, sizeof err,
				"The job ran longer than its time limit and was stopped; try a shorter "
				"file or raise SFA_JOB_TIMEOUT_S.");
		else if (c->error[0])
			str_copy(err, sizeof err, c->error);
		else if (WIFSIGNALED(c->status))
			snprintf(
				err, sizeof err,
				"The worker process crashed (signal %d: %s); the server log has details.",
				WTERMSIG(c->status), strsignal(WTERMSIG(c->status)));
		else if (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 127)
			snprintf(err, sizeof err, "The worker process could not be started.");
		else
			snprintf(err, sizeof err,
			         "The worker process stopped without a result (exit %d).",
			         WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1);
		if (c->no_retry || c->timed_out || j->attempts >= j->max_attempts) {
			checked(db_job_fail(s->db, j->id, err, now), "its failure", j->id);
			publish(s, j, "job:failed",
			        json_pack("{s:s, s:s, s:s}", "job_id", j->id, "job_type",
			                  job_type_shown(j->type), "error", err));
			log_info("job %s (%s) failed after %d attempt(s): %s", j->id, j->type,
			         j->attempts, err);
		} else {
			int64_t delay = backoff_s(s, j->attempts);
			checked(db_job_requeue(s->db, j->id, now + delay, err, false), "its retry",
			        j->id);
			char msg[256];
			snprintf(msg, sizeof msg, "attempt %d of %d failed; retrying in %lld s",
			         j->attempts, j->max_attempts, (long long)delay);
			str_copy(c->phase, sizeof c->phase, "queued");
			str_copy(c->message, sizeof c->message, msg);
			c->progress = 0;
			publish_progress(s, c);
			announce(s, j, "progress");
			log_info("job %s: %s: %s", j->id, msg, err);
		}
	}
	if (c->fd >= 0)
		close(c->fd);
	buf_free(&c->line);
	free(c->result);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

static void signal_child(struct child *c, int64_t now)
{
	if (c->kill_at_ms)
		return;
	kill(-c->pid, SIGTERM);
	c->kill_at_ms = now + KILL_GRACE_MS;
}

static void supervise(struct scheduler *s, int64_t now)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &s->kids[i];
		if (!c->used || c->pid <= 0)
			continue;
		if (c->progress_dirty && now - c->last_write_ms >= 250) {
			checked(db_job_progress(s->db, c->job.id, c->phase, c->progress,
			                        c->message),
			        "its progress", c->job.id);
			c->last_write_ms = now;
			c->progress_dirty = false;
			announce(s, &c->job, "progress");
		}
		if (now >= c->next_renew_ms)
			renew(s, c, now);
		if (now >= c->next_check_ms) {
			c->next_check_ms = now + 300;
			if (!c->cancelled && db_job_cancel_requested(s->db, c->job.id))
				c->cancelled = true;
		}
		if (c->cancelled || c->lost)
			signal_child(c, now);
		if (!c->timed_out && now >= c->deadline_ms) {
			c->timed_out = true;
			signal_child(c, now);
		}
		if (c->kill_at_ms && now >= c->kill_at_ms)
			kill(-c->pid, SIGKILL);
	}
}

static void reap(struct scheduler *s)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &s->kids[i];
		if (!c->used)
			continue;
		if (c->pid > 0) {
			int st;
			pid_t r = waitpid(c->pid, &st, WNOHANG);
			if (r == c->pid) {
				c->status = st;
				c->pid = 0;
				/* Make sure nothing of the group survives its leader. */
				kill(-r, SIGKILL);
			}
		}
		if (c->pid == 0) {
			if (c->fd >= 0)
				read_child(s, c); /* whatever is left in the pipe */
			finish(s, c);
		}
	}
}

static void start_due(struct scheduler *s, int64_t now_ms)
{
	for (int k = 0; k < job_types_n; k++) {
		const struct job_type *t = &job_types[k];
		if (!s->run_type[k])
			continue;
		int limit = s->concurrency > 0 ? s->concurrency : t->limit(s->cfg);
		int running = 0;
		for (int i = 0; i < MAX_CHILDREN; i++)
			running += s->kids[i].used && strcmp(s->kids[i].job.type, t->name) == 0;
		while (running < limit) {
			int slot = -1;
			for (int i = 0; i < MAX_CHILDREN && slot < 0; i++)
				if (!s->kids[i].used)
					slot = i;
			if (slot < 0)
				return;
			struct child *c = &s->kids[slot];
			memset(c, 0, sizeof *c);
			c->fd = -1;
			if (db_job_claim_leased(s->db, t->name, (int64_t)time(NULL), s->node,
			                        lease_until(s), &c->job) != 0)
				break;
			c->next_renew_ms = now_ms + renew_every_ms(s);
			c->used = true;
			buf_init(&c->line, LINE_MAX_BYTES);
			str_copy(c->phase, sizeof c->phase, "running");
			c->deadline_ms = now_ms +
			                 (int64_t)job_type_attempt_timeout_s(t, s->cfg) * 1000;
			if (spawn(s, c) != 0) {
				checked(db_job_requeue(
						s->db, c->job.id,
						(int64_t)time(NULL) + backoff_s(s, c->job.attempts),
						"The worker process could not be started.", false),
				        "its retry", c->job.id);
				buf_free(&c->line);
				memset(c, 0, sizeof *c);
				c->fd = -1;
				return;
			}
			log_info("job %s (%s) started, attempt %d of %d", c->job.id, c->job.type,
			         c->job.attempts, c->job.max_attempts);
			publish_progress(s, c);
			announce(s, &c->job, "progress");
			running++;
		}
	}
}

/* Takes back the jobs of nodes that died (their leases passed); any node does it. */
static void sweep(struct scheduler *s, int64_t now_ms)
{
	s->next_sweep_ms = now_ms + SWEEP_MS;
	int n = db_job_expire_leases(s->db, (int64_t)time(NULL));
	if (n > 0)
		log_info(
			"%d job(s) whose node stopped renewing its lease went back to the queue (or "
			"failed, out of attempts)",
			n);
	else if (n < 0)
		checked(n, "the return of expired leases", "-");
}

/* Another node's job event (see announce): published on this node's bus as that node did,
 * from the row. A progress note read after the job ended is dropped (its end follows). */
static void relay(struct scheduler *s, const char *id, const char *event)
{
	struct db_job j;
	if (db_job_get(s->db, NULL, id, &j) != 0)
		return;
	json_error_t je;
	if (strcmp(event, "progress") == 0 &&
	    (db_job_status_is_running(j.status) || strcmp(j.status, "queued") == 0)) {
		publish_local(s, &j, "job:progress",
		              json_pack("{s:s, s:s, s:i, s:s}", "job_id", j.id, "status", j.status,
		                        "progress", j.progress, "message", j.message));
	} else if (strcmp(event, "completed") == 0 && strcmp(j.status, "completed") == 0) {
		json_t *res = json_loads(j.result, 0, &je);
		publish_local(s, &j, "job:completed",
		              json_pack("{s:s, s:s, s:s?, s:o}", "job_id", j.id, "job_type",
		                        job_type_shown(j.type), "track_id",
		                        j.track_id[0] ? j.track_id : NULL, "result",
		                        res ? res : json_object()));
	} else if (strcmp(event, "failed") == 0 && strcmp(j.status, "failed") == 0) {
		publish_local(s, &j, "job:failed",
		              json_pack("{s:s, s:s, s:s}", "job_id", j.id, "job_type",
		                        job_type_shown(j.type), "error", j.error));
	}
}

/* Reads every note waiting on the jobs channel: "queued <type>" only wakes (the loop claims
 * next), "event <job id> <event> <node>" is relayed when it is another node's. */
static void read_notes(struct scheduler *s, int64_t now_ms)
{
	if (!s->listener)
		return;
	if (db_listener_fd(s->listener) < 0) {
		if (now_ms < s->next_listen_ms)
			return;
		s->next_listen_ms = now_ms + IDLE_POLL_MS; /* reconnect at the safety-poll pace */
	}
	char note[DB_NOTIFY_MAX];
	int rc;
	while ((rc = db_listener_next(s->listener, note, sizeof note)) == 1) {
		char id[UUID_STR_LEN], event[16], node[128];
		if (s->relay && sscanf(note, "event %36s %15s %127s", id, event, node) == 3 &&
		    strcmp(node, s->node) != 0)
			relay(s, id, event);
	}
}

static void *loop(void *arg)
{
	struct scheduler *s = arg;
	struct pollfd pfd[MAX_CHILDREN + 2]; /* the wake pipe, children, the listener */
	int owner[MAX_CHILDREN + 2];
	while (!atomic_load(&s->stop)) {
		int n = 0;
		pfd[n].fd = s->wake[0];
		pfd[n].events = POLLIN;
		owner[n++] = -1;
		int n_kids = 0;
		bool exiting = false; /* a child closed its pipe and is about to exit */
		for (int i = 0; i < MAX_CHILDREN; i++) {
			n_kids += s->kids[i].used;
			exiting |= s->kids[i].used && s->kids[i].fd < 0 && s->kids[i].pid > 0;
			if (s->kids[i].used && s->kids[i].fd >= 0) {
				pfd[n].fd = s->kids[i].fd;
				pfd[n].events = POLLIN;
				owner[n++] = i;
			}
		}
		int listen_fd = s->listener ? db_listener_fd(s->listener) : -1;
		if (listen_fd >= 0) {
			pfd[n].fd = listen_fd;
			pfd[n].events = POLLIN;
			owner[n++] = -1;
		}
		/* Children need their timers (cancel checks, renewals, progress writes); an idle
		 * node on a shared database is woken by notifications and polls the queue slowly as
		 * a safety net; on SQLite the queue is polled as before (`sfa job enqueue` from
		 * another process has no way to wake it). */
		bool woken = db_is_shared(s->db) && listen_fd >= 0;
		/* A child's end of the pipe closes just before it exits: reap it within
		 * milliseconds then, not a whole tick later (its slot and its job's completion
		 * wait on it). */
		poll(pfd, (nfds_t)n,
		     exiting            ? EXIT_POLL_MS
		     : n_kids || !woken ? TICK_MS
		                        : IDLE_POLL_MS);
		if (pfd[0].revents & POLLIN) {
			char drain[64];
			while (read(s->wake[0], drain, sizeof drain) > 0) {
			}
		}
		for (int k = 1; k < n; k++)
			if (pfd[k].revents && owner[k] >= 0)
				read_child(s, &s->kids[owner[k]]);
		int64_t now = time_mono_ms();
		read_notes(s, now);
		reap(s);
		supervise(s, now);
		if (now >= s->next_sweep_ms)
			sweep(s, now);
		if (!atomic_load(&s->stop))
			start_due(s, now);
	}
	/* Shutdown: running jobs go back to the queue, their attempt refunded. */
	int64_t deadline = time_mono_ms() + KILL_GRACE_MS;
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (s->kids[i].used && s->kids[i].pid > 0)
			kill(-s->kids[i].pid, SIGTERM);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &s->kids[i];
		if (!c->used)
			continue;
		while (c->pid > 0) {
			int st;
			if (waitpid(c->pid, &st, WNOHANG) == c->pid)
				break;
			if (time_mono_ms() > deadline)
				kill(-c->pid, SIGKILL);
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		if (!c->lost)
			checked(db_job_requeue(
					s->db, c->job.id, (int64_t)time(NULL),
					"The server was stopped while this job ran; it was queued "
					"again.",
					true),
			        "its return to the queue", c->job.id);
		log_info("job %s (%s) stopped with the server; queued again", c->job.id,
		         c->job.type);
		char dir[PATH_MAX + 64];
		work_dir(s, c->job.id, dir, sizeof dir);
		fs_remove_tree(dir);
		if (c->fd >= 0)
			close(c->fd);
		buf_free(&c->line);
		free(c->result);
		memset(c, 0, sizeof *c);
	}
	return NULL;
}

/* Sets which types s runs from a comma-separated list of names (NULL: every type). */
static int choose_types(struct scheduler *s, const char *types, char *err, size_t n_err)
{
	for (int k = 0; k < job_types_n; k++)
		s->run_type[k] = types == NULL;
	while (types && *types) {
		size_t n = strcspn(types, ",");
		bool known = false;
		for (int k = 0; k < job_types_n; k++) {
			if (strlen(job_types[k].name) == n &&
			    strncmp(job_types[k].name, types, n) == 0) {
				s->run_type[k] = true;
				known = true;
			}
		}
		if (!known && n)
			return sfa_err(err, n_err, SFA_EINVAL, "There is no job type \"%.*s\".",
			               (int)n, types);
		types += n;
		if (*types == ',')
			types++;
	}
	return 0;
}

struct scheduler *scheduler_new(const struct scheduler_opts *o, char *err, size_t n_err)
{
	struct scheduler *s = calloc(1, sizeof *s);
	if (!s) {
		sfa_err(err, n_err, SFA_ENOMEM, "Out of memory starting the job scheduler.");
		return NULL;
	}
	s->cfg = o->cfg;
	s->db = o->db;
	s->bus = o->bus;
	s->concurrency = o->concurrency;
	s->relay = o->relay;
	s->wake[0] = s->wake[1] = -1;
	str_copy(s->exe, sizeof s->exe, o->exe);
	atomic_store(&s->stop, false);
	for (int i = 0; i < MAX_CHILDREN; i++)
		s->kids[i].fd = -1;
	if (choose_types(s, o->types, err, n_err))
		goto fail;
	for (int k = 0; k < job_types_n; k++)
		s->runs_jobs |= s->run_type[k];
	if (s->cfg->node_id[0]) {
		str_copy(s->node, sizeof s->node, s->cfg->node_id);
	} else {
		char host[64] = "";
		gethostname(host, sizeof host - 1);
		snprintf(s->node, sizeof s->node, "%s-%d-%08x", host[0] ? host : "node",
		         (int)getpid(), randombytes_random());
	}
	if (s->runs_jobs) {
		/* Jobs left running by a crash: on SQLite this is the one process that runs jobs, so
		 * every running job is one of its last run's; on PostgreSQL other nodes may be running
		 * theirs, so only this node's own (a fixed SFA_NODE_ID) and unleased ones; the others
		 * come back when their leases pass. */
		bool shared = db_is_shared(s->db);
		int n = db_job_recover(s->db, (int64_t)time(NULL), shared ? s->node : NULL);
		if (n < 0) {
			sfa_err(err, n_err, SFA_EDB, "Could not recover the jobs of the last run.");
			goto fail;
		}
		if (n > 0)
			log_info("recovered %d job(s) left running by the previous run", n);
	}
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		sfa_err(err, n_err, SFA_EIO, "Cannot create the scheduler's wake pipe.");
		goto fail;
	}
	/* Without a listener the node still works, at the safety-poll pace (and relays nothing). */
	if (db_listen(s->db, JOBS_CHANNEL, &s->listener) != 0)
		log_warn("job scheduler: cannot listen for job notifications; polling instead");
	char names[256] = "";
	for (int k = 0; k < job_types_n; k++)
		if (s->run_type[k])
			snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
			         names[0] ? "," : "", job_types[k].name);
	log_info("job scheduler: node %s, lease %d s, runs %s", s->node, s->cfg->job_lease_s,
	         names[0] ? names : "no jobs");
	if (pthread_create(&s->thread, NULL, loop, s) != 0) {
		sfa_err(err, n_err, SFA_EIO, "Cannot start the job scheduler thread.");
		goto fail;
	}
	return s;
fail:
	db_listener_close(s->listener);
	if (s->wake[0] >= 0) {
		close(s->wake[0]);
		close(s->wake[1]);
	}
	free(s);
	return NULL;
}

void scheduler_free(struct scheduler *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, true);
	scheduler_wake(s);
	pthread_join(s->thread, NULL);
	db_listener_close(s->listener);
	close(s->wake[0]);
	close(s->wake[1]);
	free(s);
}
