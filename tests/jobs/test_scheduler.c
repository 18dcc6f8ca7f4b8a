/* test_scheduler.c - jobs/jobs.h's scheduler, with real children: `sfa job-exec` of the
 * built binary (SFA_BIN) runs jobs of the "probe" type (a diagnostic that reports steps and
 * fails or crashes on request). Claiming and running a job end to end, cancelling a running
 * one, retries with backoff, per-type concurrency and its override, a node running only
 * some types, and two schedulers with two buses in one process. Every wait is for a bus
 * event (or a row), with a deadline; nothing sleeps.
 *
 * Runs on SQLite as "jobs-scheduler" and on PostgreSQL as "jobs-scheduler-pg" (under
 * tests/with-postgres.sh; testdb.h), where the children find the database through
 * SFA_DATABASE_URL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/jobs.h"
#include "db/db.h"
#include "jobs/bus.h"
#include "jobs/jobs.h"
#include "util/str.h"
#include "util/timeutil.h"
#include "util/uuid.h"

#include "../db/testdb.h"

enum { MAX_EVENTS = 4096, WAIT_MS = 30000 };

/* Every event published on one topic of one bus, in order. */
struct collector {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n;
	char *event[MAX_EVENTS];
	json_t *payload[MAX_EVENTS];
	struct bus_sub *sub;
};

static void collect(void *arg, const char *topic, const char *event, const char *payload)
{
	(void)topic;
	struct collector *c = arg;
	json_error_t je;
	json_t *p = payload ? json_loads(payload, 0, &je) : NULL;
	char *e = strdup(event);
	pthread_mutex_lock(&c->mu);
	if (c->n < MAX_EVENTS) {
		c->event[c->n] = e;
		c->payload[c->n] = p;
		c->n++;
		e = NULL;
		p = NULL;
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	free(e);
	json_decref(p);
}

static void collector_start(struct collector *c, struct bus *b, const char *topic)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->sub = bus_subscribe(b, topic, collect, c);
	assert_non_null(c->sub);
}

static void collector_stop(struct collector *c)
{
	bus_unsubscribe(c->sub);
	for (int i = 0; i < c->n; i++) {
		free(c->event[i]);
		json_decref(c->payload[i]);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
}

static bool matches(struct collector *c, int i, const char *event, const char *job_id)
{
	const char *id = json_string_value(json_object_get(c->payload[i], "job_id"));
	return strcmp(c->event[i], event) == 0 && (!job_id || (id && strcmp(id, job_id) == 0));
}

/* The index of the first event at or after *from named event (for job_id, when given),
 * waiting up to WAIT_MS for it; -1 when it never came. *from moves past it. */
static int wait_event(struct collector *c, int *from, const char *event, const char *job_id)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WAIT_MS / 1000;
	int found = -1;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		for (int i = *from; i < c->n && found < 0; i++)
			if (matches(c, i, event, job_id))
				found = i;
		if (found >= 0 || pthread_cond_timedwait(&c->cv, &c->mu, &until) != 0)
			break;
	}
	/* One more scan: the timed wait may have ended with the event just in. */
	for (int i = *from; found < 0 && i < c->n; i++)
		if (matches(c, i, event, job_id))
			found = i;
	pthread_mutex_unlock(&c->mu);
	if (found >= 0)
		*from = found + 1;
	return found;
}

struct fixture {
	struct testdb t;
	struct config cfg;
	char user[UUID_STR_LEN];
	char topic[64];
	const char *exe;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f || testdb_open(&f->t, 0))
		return -1;
	f->exe = getenv("SFA_BIN");
	if (!f->exe || !*f->exe) {
		fprintf(stderr, "SFA_BIN must name the built sfa binary\n");
		return -1;
	}
	char err[512];
	char *argv[] = {"--data", f->t.dir, NULL};
	int argc = 2;
	if (config_from_env(&f->cfg, err, sizeof err) ||
	    config_take_data_flag(&f->cfg, &argc, argv, err, sizeof err) ||
	    config_prepare_data(&f->cfg, err, sizeof err)) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	if (testdb_is_pg()) {
		/* The children open the database named by the environment. */
		str_copy(f->cfg.database_url, sizeof f->cfg.database_url, f->t.target);
		setenv("SFA_DATABASE_URL", f->t.target, 1);
	}
	f->cfg.job_retry_base_s = 0;
	struct db_user u = {0};
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, "sched@example.com");
	str_copy(u.password_hash, sizeof u.password_hash, "x");
	if (db_user_insert(f->t.db, &u))
		return -1;
	str_copy(f->user, sizeof f->user, u.id);
	snprintf(f->topic, sizeof f->topic, "user:%s", u.id);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int rc = testdb_close(&f->t);
	free(f);
	return rc;
}

static struct scheduler *start_relay(struct fixture *f, struct bus *b, const char *types,
                                     int concurrency, bool relay)
{
	char err[512] = "";
	struct scheduler_opts o = {.cfg = &f->cfg,
	                           .db = f->t.db,
	                           .bus = b,
	                           .exe = f->exe,
	                           .types = types,
	                           .concurrency = concurrency,
	                           .relay = relay};
	struct scheduler *s = scheduler_new(&o, err, sizeof err);
	if (!s)
		fprintf(stderr, "scheduler_new: %s\n", err);
	assert_non_null(s);
	return s;
}

static struct scheduler *start(struct fixture *f, struct bus *b, const char *types, int concurrency)
{
	return start_relay(f, b, types, concurrency, false);
}

static void enqueue(struct fixture *f, struct scheduler *s, const char *payload, char *id)
{
	json_error_t je;
	struct db_job j;
	assert_int_equal(
		job_enqueue(f->t.db, s, f->user, NULL, "probe", json_loads(payload, 0, &je), &j),
		0);
	str_copy(id, UUID_STR_LEN, j.id);
}

static void runs_a_job_end_to_end(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, NULL, 0);
	char id[UUID_STR_LEN];
	enqueue(f, s, "{\"steps\": 3}", id);
	int at = 0;
	int started = wait_event(&c, &at, "job:progress", id);
	assert_true(started >= 0);
	assert_string_equal(json_string_value(json_object_get(c.payload[started], "status")),
	                    "running");
	int done = wait_event(&c, &at, "job:completed", id);
	assert_true(done >= 0);
	json_t *res = json_object_get(c.payload[done], "result");
	assert_int_equal(json_integer_value(json_object_get(res, "steps")), 3);
	assert_int_equal(json_integer_value(json_object_get(res, "attempt")), 1);
	/* Steps reported by the child came through as progress between start and end. */
	int n_steps = 0;
	for (int i = started + 1; i < done; i++)
		n_steps += matches(&c, i, "job:progress", id);
	assert_true(n_steps >= 3);
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_string_equal(j.status, "completed");
	assert_int_equal(j.progress, 100);
	assert_int_equal(j.attempts, 1);
	assert_true(j.started_at > 0 && j.finished_at >= j.started_at);
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

static void cancels_a_running_job(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, NULL, 0);
	char id[UUID_STR_LEN];
	enqueue(f, s, "{\"steps\": 200, \"step_ms\": 100}", id);
	int at = 0;
	assert_true(wait_event(&c, &at, "job:progress", id) >= 0);
	bool was_running = false;
	int64_t t0 = time_mono_ms();
	assert_int_equal(db_job_cancel(f->t.db, f->user, id, (int64_t)time(NULL), &was_running), 0);
	assert_true(was_running);
	scheduler_wake(s);
	int failed = wait_event(&c, &at, "job:failed", id);
	assert_true(failed >= 0);
	assert_true(time_mono_ms() - t0 < 5000);
	assert_string_equal(json_string_value(json_object_get(c.payload[failed], "error")),
	                    "cancelled");
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_string_equal(j.status, "failed");
	assert_string_equal(j.error, "cancelled");
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

static void retries_a_failed_attempt_after_a_backoff(void **state)
{
	struct fixture *f = *state;
	f->cfg.job_retry_base_s = 1;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, NULL, 0);
	char id[UUID_STR_LEN];
	enqueue(f, s, "{\"fail_attempts\": 1}", id);
	int at = 0;
	int retry = -1;
	/* The failed attempt is announced as a progress event back to "queued". */
	while (retry < 0) {
		int i = wait_event(&c, &at, "job:progress", id);
		assert_true(i >= 0);
		if (strcmp(json_string_value(json_object_get(c.payload[i], "status")), "queued") ==
		    0)
			retry = i;
	}
	int64_t announced = time_mono_ms();
	const char *msg = json_string_value(json_object_get(c.payload[retry], "message"));
	assert_non_null(strstr(msg, "attempt 1 of 2 failed; retrying in "));
	int delay_s = (int)strtol(strstr(msg, "retrying in ") + 12, NULL, 10);
	assert_true(delay_s >= 1 && delay_s <= 2); /* base 1 s, plus up to half of it as jitter */
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_string_equal(j.status, "queued");
	assert_non_null(strstr(j.error, "failed on purpose"));
	int done = wait_event(&c, &at, "job:completed", id);
	assert_true(done >= 0);
	/* Not before its time: run_at is in whole seconds, so at least delay - 1 s later. */
	assert_true(time_mono_ms() - announced >= (delay_s - 1) * 1000);
	json_t *res = json_object_get(c.payload[done], "result");
	assert_int_equal(json_integer_value(json_object_get(res, "attempt")), 2);
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_int_equal(j.attempts, 2);
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

/* The most jobs running at once over the events: a job runs from its first progress event
 * until its completion. */
static int peak_running(struct fixture *f, struct scheduler *s, struct collector *c, int n_jobs)
{
	char ids[8][UUID_STR_LEN];
	for (int i = 0; i < n_jobs; i++)
		enqueue(f, s, "{\"steps\": 6, \"step_ms\": 100}", ids[i]);
	for (int i = 0; i < n_jobs; i++) {
		int at = 0;
		assert_true(wait_event(c, &at, "job:completed", ids[i]) >= 0);
	}
	int running = 0, peak = 0;
	bool started[8] = {false};
	pthread_mutex_lock(&c->mu);
	for (int e = 0; e < c->n; e++) {
		for (int i = 0; i < n_jobs; i++) {
			if (!started[i] && matches(c, e, "job:progress", ids[i])) {
				started[i] = true;
				running++;
			} else if (matches(c, e, "job:completed", ids[i])) {
				running--;
			}
		}
		peak = running > peak ? running : peak;
	}
	pthread_mutex_unlock(&c->mu);
	return peak;
}

static void runs_each_type_up_to_its_limit(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, NULL, 0);
	assert_int_equal(peak_running(f, s, &c, 5), 2); /* probe: two at once */
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

static void concurrency_overrides_the_limit(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, "probe", 3);
	assert_int_equal(peak_running(f, s, &c, 5), 3);
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

/* Two schedulers on one database, each with its own bus: A runs analysis jobs only, B
 * probes. A probe is run by B, and its events reach B's bus alone. */
static void two_schedulers_two_buses(void **state)
{
	struct fixture *f = *state;
	struct bus *ba = bus_new(), *bb = bus_new();
	struct collector ca, cb;
	collector_start(&ca, ba, f->topic);
	collector_start(&cb, bb, f->topic);
	struct scheduler *sa = start(f, ba, "analysis", 0);
	struct scheduler *sb = start(f, bb, "probe", 0);
	char id[UUID_STR_LEN];
	enqueue(f, sa, "{\"steps\": 2}", id); /* wakes A, which does not run probes */
	scheduler_wake(sb);
	int at = 0;
	assert_true(wait_event(&cb, &at, "job:completed", id) >= 0);
	scheduler_free(sa);
	scheduler_free(sb);
	pthread_mutex_lock(&ca.mu);
	assert_int_equal(ca.n, 0);
	pthread_mutex_unlock(&ca.mu);
	collector_stop(&ca);
	collector_stop(&cb);
	bus_free(ba);
	bus_free(bb);
}

/* A probe job queued to run in an hour (so no scheduler claims it), then claimed by a node
 * "dead-node" whose lease is already over, as if that node had died running it. */
static void claimed_by_a_dead_node(struct fixture *f, const char *payload, char *id)
{
	struct db_job j = {0};
	uuid_v4(j.id);
	str_copy(j.user_id, sizeof j.user_id, f->user);
	str_copy(j.type, sizeof j.type, "probe");
	str_copy(j.status, sizeof j.status, "queued");
	str_copy(j.payload, sizeof j.payload, payload);
	j.max_attempts = 2;
	j.created_at = (int64_t)time(NULL);
	j.run_at = j.created_at + 3600;
	assert_int_equal(db_job_insert(f->t.db, &j), 0);
	struct db_job claimed;
	assert_int_equal(db_job_claim_leased(f->t.db, "probe", j.run_at, "dead-node",
	                                     (int64_t)time(NULL) - 1, &claimed),
	                 0);
	assert_string_equal(claimed.id, j.id);
	str_copy(id, UUID_STR_LEN, j.id);
}

static void takes_back_a_job_whose_lease_passed(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, "probe", 0);
	char id[UUID_STR_LEN];
	claimed_by_a_dead_node(f, "{\"steps\": 2}", id);
	int at = 0;
	int done = wait_event(&c, &at, "job:completed", id);
	assert_true(done >= 0);
	json_t *res = json_object_get(c.payload[done], "result");
	assert_int_equal(json_integer_value(json_object_get(res, "attempt")), 2);
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_string_equal(j.status, "completed");
	assert_int_equal(j.attempts, 2); /* the dead node's attempt counted */
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

/* Waits until the job's row has status (nothing publishes what a sweep does to a dead
 * node's job: the row is the event), polling it every 20 ms up to WAIT_MS. */
static void wait_row(struct fixture *f, const char *id, const char *status, struct db_job *j)
{
	int64_t deadline = time_mono_ms() + WAIT_MS;
	while (db_job_get(f->t.db, NULL, id, j) == 0 && strcmp(j->status, status) != 0 &&
	       time_mono_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_string_equal(j->status, status);
}

/* A scheduler that runs no probes still sweeps: it takes the job back from one dead node,
 * and fails it when a second dead node held its last attempt. */
static void a_dead_nodes_last_attempt_fails(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct scheduler *s = start(f, b, "analysis", 0);
	char id[UUID_STR_LEN];
	claimed_by_a_dead_node(f, "{}", id);
	struct db_job j;
	wait_row(f, id, "queued", &j);
	assert_non_null(strstr(j.error, "stopped answering; it was queued again"));
	assert_int_equal(db_job_claim_leased(f->t.db, "probe", (int64_t)time(NULL), "dead-node-2",
	                                     (int64_t)time(NULL) - 1, &j),
	                 0);
	assert_string_equal(j.id, id);
	assert_int_equal(j.attempts, 2);
	wait_row(f, id, "failed", &j);
	assert_non_null(strstr(j.error, "has no attempts left"));
	scheduler_free(s);
	bus_free(b);
}

/* A lease of 1 s, renewed every third of it, holds through a 3 s job while another
 * scheduler sweeps for expired leases all along. */
static void a_live_nodes_lease_is_renewed(void **state)
{
	struct fixture *f = *state;
	f->cfg.job_lease_s = 1;
	struct bus *b = bus_new(), *other = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, "probe", 0);
	struct scheduler *sweeper = start(f, other, "analysis", 0);
	char id[UUID_STR_LEN];
	enqueue(f, s, "{\"steps\": 15, \"step_ms\": 200}", id);
	int at = 0;
	assert_true(wait_event(&c, &at, "job:completed", id) >= 0);
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_int_equal(j.attempts, 1);
	scheduler_free(sweeper);
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
	bus_free(other);
}

/* Whether a `sfa job-exec <id>` process is alive (not a zombie). */
static bool worker_alive(const char *id)
{
	DIR *d = opendir("/proc");
	bool found = false;
	struct dirent *e;
	while (d && !found && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300], argv[512] = "", stat[512] = "";
		snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
		FILE *fp = fopen(path, "r");
		size_t n = fp ? fread(argv, 1, sizeof argv - 1, fp) : 0;
		if (fp)
			fclose(fp);
		argv[n] = '\0';
		/* argv[0] "sfa", then "job-exec", then the id, NUL-separated */
		const char *a1 = argv + strlen(argv) + 1;
		if (n == 0 || a1 >= argv + n || strcmp(a1, "job-exec") != 0 ||
		    strcmp(a1 + strlen(a1) + 1, id) != 0)
			continue;
		snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
		fp = fopen(path, "r");
		n = fp ? fread(stat, 1, sizeof stat - 1, fp) : 0;
		if (fp)
			fclose(fp);
		stat[n] = '\0';
		const char *close_paren = strrchr(stat, ')');
		found = close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z';
	}
	if (d)
		closedir(d);
	return found;
}

/* A node that finds its lease gone (another node took the job back while it stalled)
 * stops its worker and records nothing of that attempt. */
static void a_node_that_lost_its_lease_stops_its_worker(void **state)
{
	struct fixture *f = *state;
	f->cfg.job_lease_s = 3;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, "probe", 0);
	char id[UUID_STR_LEN];
	enqueue(f, s, "{\"steps\": 300, \"step_ms\": 100}", id);
	int at = 0;
	assert_true(wait_event(&c, &at, "job:progress", id) >= 0); /* started */
	assert_true(wait_event(&c, &at, "job:progress", id) >= 0); /* a step of the child's */
	assert_true(worker_alive(id));
	/* Another node's sweep with its clock an hour ahead: the job goes back to the queue, due
	 * in an hour, so nobody claims it again during the test. */
	assert_int_equal(db_job_expire_leases(f->t.db, (int64_t)time(NULL) + 3600), 1);
	int64_t deadline = time_mono_ms() + WAIT_MS;
	while (worker_alive(id) && time_mono_ms() < deadline) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	assert_false(worker_alive(id));
	scheduler_free(s);
	struct db_job j;
	assert_int_equal(db_job_get(f->t.db, NULL, id, &j), 0);
	assert_string_equal(j.status, "queued");
	assert_non_null(strstr(j.error, "stopped answering"));
	pthread_mutex_lock(&c.mu);
	for (int i = 0; i < c.n; i++) {
		assert_false(matches(&c, i, "job:completed", id));
		assert_false(matches(&c, i, "job:failed", id));
	}
	pthread_mutex_unlock(&c.mu);
	collector_stop(&c);
	bus_free(b);
}

/* A job run by node A reaches the bus of node B, which runs no jobs, through the database's
 * notifications (NOTIFY on PostgreSQL, in-process on SQLite) and the row; each node
 * publishes its own events once. */
static void relays_events_of_jobs_run_elsewhere(void **state)
{
	struct fixture *f = *state;
	struct bus *ba = bus_new(), *bb = bus_new();
	struct collector ca, cb;
	collector_start(&ca, ba, f->topic);
	collector_start(&cb, bb, f->topic);
	struct scheduler *sa = start_relay(f, ba, "probe", 0, true);
	struct scheduler *sb = start_relay(f, bb, "", 0, true);
	char id[UUID_STR_LEN];
	enqueue(f, NULL, "{\"steps\": 4, \"step_ms\": 300}", id); /* wakes nobody directly */
	int at = 0;
	int progress = wait_event(&cb, &at, "job:progress", id);
	assert_true(progress >= 0);
	int done = wait_event(&cb, &at, "job:completed", id);
	assert_true(done >= 0);
	json_t *res = json_object_get(cb.payload[done], "result");
	assert_int_equal(json_integer_value(json_object_get(res, "attempt")), 1);
	assert_string_equal(json_string_value(json_object_get(cb.payload[done], "job_type")),
	                    "probe");
	/* Node A's own bus has the completion once: its relay skips its own notes. */
	int at_a = 0;
	assert_true(wait_event(&ca, &at_a, "job:completed", id) >= 0);
	scheduler_free(sa);
	scheduler_free(sb);
	int n_completed = 0;
	for (int i = 0; i < ca.n; i++)
		n_completed += matches(&ca, i, "job:completed", id);
	assert_int_equal(n_completed, 1);
	collector_stop(&ca);
	collector_stop(&cb);
	bus_free(ba);
	bus_free(bb);
}

/* An idle node starts an enqueued job at once: woken by the enqueue's notification, not by
 * its safety poll (2 s on PostgreSQL: eight starts under 1 s each by polling alone would
 * happen four times in a thousand runs). */
static void an_enqueue_wakes_an_idle_node(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	struct collector c;
	collector_start(&c, b, f->topic);
	struct scheduler *s = start(f, b, "probe", 0);
	char line[256] = "# enqueue to start (ms):";
	for (int k = 0; k < 8; k++) {
		char id[UUID_STR_LEN];
		int64_t t0 = time_mono_ms();
		enqueue(f, NULL, "{\"steps\": 1}", id);
		int at = 0;
		assert_true(wait_event(&c, &at, "job:progress", id) >= 0);
		int64_t waited = time_mono_ms() - t0;
		snprintf(line + strlen(line), sizeof line - strlen(line), " %lld",
		         (long long)waited);
		assert_true(waited < 1000);
		assert_true(wait_event(&c, &at, "job:completed", id) >= 0);
	}
	printf("%s\n", line);
	scheduler_free(s);
	collector_stop(&c);
	bus_free(b);
}

static void refuses_an_unknown_type(void **state)
{
	struct fixture *f = *state;
	struct bus *b = bus_new();
	char err[512] = "";
	struct scheduler_opts o = {
		.cfg = &f->cfg, .db = f->t.db, .bus = b, .exe = f->exe, .types = "probe,nonesuch"};
	assert_null(scheduler_new(&o, err, sizeof err));
	assert_non_null(strstr(err, "nonesuch"));
	bus_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(runs_a_job_end_to_end, setup, teardown),
		cmocka_unit_test_setup_teardown(cancels_a_running_job, setup, teardown),
		cmocka_unit_test_setup_teardown(retries_a_failed_attempt_after_a_backoff, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(runs_each_type_up_to_its_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrency_overrides_the_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(two_schedulers_two_buses, setup, teardown),
		cmocka_unit_test_setup_teardown(takes_back_a_job_whose_lease_passed, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(a_dead_nodes_last_attempt_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(a_live_nodes_lease_is_renewed, setup, teardown),
		cmocka_unit_test_setup_teardown(a_node_that_lost_its_lease_stops_its_worker, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(relays_events_of_jobs_run_elsewhere, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(an_enqueue_wakes_an_idle_node, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_an_unknown_type, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
