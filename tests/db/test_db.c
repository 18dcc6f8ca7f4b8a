/* test_db.c - db.h: lists returned as arrays (the caller may call the database again for
 * every row, which once deadlocked the server), a track's jobs cancelled together, and the
 * conformance cases where SQLite and PostgreSQL differ underneath (case-insensitive search,
 * constraint conflicts, concurrent claims, rollback, the analysis summary, every library
 * order). The same tests run once per backend: as "db" on SQLite, and as "db-pg" under
 * tests/with-postgres.sh on a private PostgreSQL cluster (testdb.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <poll.h>
#include <pthread.h>

#include <cmocka.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "core/library.h"
#include "db/db.h"
#include "db/driver.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/str.h"
#include "util/uuid.h"

#include "testdb.h"

struct fixture {
	struct testdb t;
	char *dir;
	struct db *db;
	char user[UUID_STR_LEN];
	char track[UUID_STR_LEN];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	if (!f || testdb_open(&f->t, 0))
		return -1;
	f->dir = f->t.dir;
	f->db = f->t.db;
	struct db_user u = {0};
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, "db@example.com");
	str_copy(u.password_hash, sizeof u.password_hash, "x");
	struct db_track t = {0};
	uuid_v4(t.id);
	str_copy(t.user_id, sizeof t.user_id, u.id);
	str_copy(t.title, sizeof t.title, "Song");
	str_copy(t.source, sizeof t.source, "upload");
	if (db_user_insert(f->db, &u) || db_track_insert(f->db, &t))
		return -1;
	str_copy(f->user, sizeof f->user, u.id);
	str_copy(f->track, sizeof f->track, t.id);
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

static void add_job(struct fixture *f, const char *type, char *id_out)
{
	struct db_job j = {0};
	uuid_v4(j.id);
	str_copy(j.user_id, sizeof j.user_id, f->user);
	str_copy(j.track_id, sizeof j.track_id, f->track);
	str_copy(j.type, sizeof j.type, type);
	j.max_attempts = 2;
	assert_int_equal(db_job_insert(f->db, &j), 0);
	if (id_out)
		str_copy(id_out, UUID_STR_LEN, j.id);
}

/* The next payload on l, waiting up to 10 s for it to arrive (poll on its descriptor). */
static int next_note(struct db_listener *l, char *out, size_t n)
{
	for (int i = 0; i < 100; i++) {
		int rc = db_listener_next(l, out, n);
		if (rc != 0)
			return rc;
		struct pollfd p = {.fd = db_listener_fd(l), .events = POLLIN};
		poll(&p, 1, 100);
	}
	return 0;
}

/* Notifications: in order, by channel, to every listener; none waiting reads as 0; a
 * payload too long is refused. Between processes on PostgreSQL, within one on SQLite. */
static void notifications(void **state)
{
	struct fixture *f = *state;
	struct db_listener *a1, *a2, *b;
	assert_int_equal(db_listen(f->db, "chan_a", &a1), 0);
	assert_int_equal(db_listen(f->db, "chan_a", &a2), 0);
	assert_int_equal(db_listen(f->db, "chan_b", &b), 0);
	assert_true(db_listener_fd(a1) >= 0);
	char note[DB_NOTIFY_MAX];
	assert_int_equal(db_listener_next(a1, note, sizeof note), 0);
	assert_int_equal(db_notify(f->db, "chan_a", "one"), 0);
	assert_int_equal(db_notify(f->db, "chan_a", "two"), 0);
	assert_int_equal(db_notify(f->db, "chan_b", "other"), 0);
	struct db_listener *ls[] = {a1, a2};
	for (int i = 0; i < 2; i++) {
		assert_int_equal(next_note(ls[i], note, sizeof note), 1);
		assert_string_equal(note, "one");
		assert_int_equal(next_note(ls[i], note, sizeof note), 1);
		assert_string_equal(note, "two");
	}
	assert_int_equal(next_note(b, note, sizeof note), 1);
	assert_string_equal(note, "other");
	assert_int_equal(db_listener_next(a1, note, sizeof note), 0);
	assert_int_equal(db_listener_next(b, note, sizeof note), 0);
	char big[DB_NOTIFY_MAX + 1];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(db_notify(f->db, "chan_a", big), SFA_EINVAL);
	db_listener_close(a1);
	/* The others still hear after one closed. */
	assert_int_equal(db_notify(f->db, "chan_a", "three"), 0);
	assert_int_equal(next_note(a2, note, sizeof note), 1);
	assert_string_equal(note, "three");
	db_listener_close(a2);
	db_listener_close(b);
}

/* Leases (migration 11): only the owner renews, a renewal reads a cancel request, a lease
 * is taken back only once it passed (failing a cancelled job), and start-up recovery with
 * an owner leaves other nodes' jobs alone. */
static void job_leases(void **state)
{
	struct fixture *f = *state;
	int64_t now = (int64_t)time(NULL);
	char a_id[UUID_STR_LEN], b_id[UUID_STR_LEN], c_id[UUID_STR_LEN];
	add_job(f, "probe", a_id);
	add_job(f, "probe", b_id);
	add_job(f, "probe", c_id);
	struct db_job j;
	assert_int_equal(db_job_claim_leased(f->db, "probe", now, "node-a", now + 30, &j), 0);
	assert_string_equal(j.id, a_id);
	bool cancel = true;
	assert_int_equal(db_job_renew(f->db, a_id, "node-b", now + 60, &cancel), SFA_ENOTFOUND);
	assert_int_equal(db_job_renew(f->db, a_id, "node-a", now + 60, &cancel), 0);
	assert_false(cancel);
	bool was_running = false;
	assert_int_equal(db_job_cancel(f->db, f->user, a_id, now, &was_running), 0);
	assert_true(was_running);
	assert_int_equal(db_job_renew(f->db, a_id, "node-a", now + 60, &cancel), 0);
	assert_true(cancel);
	/* Not yet passed: nothing to take back. Passed: the cancelled job fails. */
	assert_int_equal(db_job_expire_leases(f->db, now + 60), 0);
	assert_int_equal(db_job_expire_leases(f->db, now + 61), 1);
	assert_int_equal(db_job_get(f->db, NULL, a_id, &j), 0);
	assert_string_equal(j.status, "failed");
	assert_string_equal(j.error, "cancelled");
	assert_int_equal(db_job_renew(f->db, a_id, "node-a", now + 90, &cancel), SFA_ENOTFOUND);
	/* A finished job's lease is gone with it: no sweep ever touches it again. */
	assert_int_equal(db_job_expire_leases(f->db, now + 100000), 0);
	/* Start-up recovery of node-b takes back its own job only. */
	assert_int_equal(db_job_claim_leased(f->db, "probe", now, "node-b", now + 30, &j), 0);
	assert_string_equal(j.id, b_id);
	assert_int_equal(db_job_claim_leased(f->db, "probe", now, "node-c", now + 30, &j), 0);
	assert_string_equal(j.id, c_id);
	assert_int_equal(db_job_recover(f->db, now, "node-b"), 1);
	assert_int_equal(db_job_get(f->db, NULL, b_id, &j), 0);
	assert_string_equal(j.status, "queued");
	assert_int_equal(db_job_get(f->db, NULL, c_id, &j), 0);
	assert_string_equal(j.status, "running");
	assert_int_equal(db_job_renew(f->db, c_id, "node-c", now + 30, &cancel), 0);
	/* Without an owner (one node on SQLite): every running job. */
	assert_int_equal(db_job_recover(f->db, now, NULL), 1);
	assert_int_equal(db_job_get(f->db, NULL, c_id, &j), 0);
	assert_string_equal(j.status, "queued");
}

/* Every row of a list can be acted on with the database while iterating: the old
 * callback lists held the lock here and hung. */
static void lists_are_arrays(void **state)
{
	struct fixture *f = *state;
	for (int i = 0; i < 25; i++)
		add_job(f, i % 2 ? "analysis" : "probe", NULL);
	struct arena a;
	arena_init(&a, 4 << 20);
	struct db_job *jobs;
	size_t n;
	int64_t total;
	assert_int_equal(db_job_list(f->db, f->user, "queued", NULL, f->track, 0, 100, &a, &jobs,
	                             &n, &total),
	                 0);
	assert_int_equal(n, 25);
	assert_int_equal(total, 25);
	for (size_t i = 0; i < n; i++) {
		bool was_running = true;
		assert_int_equal(db_job_cancel(f->db, f->user, jobs[i].id, 1, &was_running), 0);
		assert_false(was_running);
	}
	const char *probes[] = {"probe", NULL};
	assert_int_equal(
		db_job_list(f->db, f->user, "failed", probes, NULL, 10, 10, &a, &jobs, &n, &total),
		0);
	assert_int_equal(total, 13);
	assert_int_equal(n, 3);
	/* Another user's filter sees nothing; an empty list is NULL with n 0. */
	assert_int_equal(db_job_list(f->db, "00000000-0000-4000-8000-000000000000", NULL, NULL,
	                             NULL, 0, 10, &a, &jobs, &n, &total),
	                 0);
	assert_int_equal(n, 0);
	assert_null(jobs);
	struct db_track *tracks;
	assert_int_equal(db_track_list(f->db, f->user, "son", DB_SORT_NEWEST, 0, 10, &a, &tracks,
	                               &n, &total),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(tracks[0].title, "Song");
	/* A list larger than the arena allows fails cleanly. */
	struct arena tiny;
	arena_init(&tiny, 1024);
	assert_int_equal(
		db_job_list(f->db, f->user, NULL, NULL, NULL, 0, 100, &tiny, &jobs, &n, &total),
		SFA_ENOMEM);
	arena_free(&tiny);
	arena_free(&a);
}

/* A filter of several types (the API's ?type=processing: local and lal.ai separations)
 * lists each of them and nothing else; the scheduler's claims stay per stored type, so a
 * lal.ai job never takes a local one's slot. */
static void job_list_of_several_types(void **state)
{
	struct fixture *f = *state;
	char local[UUID_STR_LEN], cloud[UUID_STR_LEN];
	add_job(f, "processing", local);
	add_job(f, "lalalai", cloud);
	add_job(f, "analysis", NULL);
	add_job(f, "probe", NULL);
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_job *jobs;
	size_t n;
	int64_t total;
	const char *seps[] = {"processing", "lalalai", NULL};
	assert_int_equal(
		db_job_list(f->db, f->user, NULL, seps, NULL, 0, 10, &a, &jobs, &n, &total), 0);
	assert_int_equal(n, 2);
	assert_int_equal(total, 2);
	assert_true((strcmp(jobs[0].id, cloud) == 0 && strcmp(jobs[1].id, local) == 0) ||
	            (strcmp(jobs[0].id, local) == 0 && strcmp(jobs[1].id, cloud) == 0));
	const char *three[] = {"processing", "lalalai", "analysis", NULL};
	assert_int_equal(
		db_job_list(f->db, f->user, NULL, three, NULL, 0, 10, &a, &jobs, &n, &total), 0);
	assert_int_equal(total, 3);
	const char *four[] = {"processing", "lalalai", "analysis", "probe", NULL};
	assert_int_equal(
		db_job_list(f->db, f->user, NULL, four, NULL, 0, 10, &a, &jobs, &n, &total),
		SFA_EINVAL);
	const char *one[] = {"lalalai", NULL};
	assert_int_equal(db_job_list(f->db, f->user, NULL, one, NULL, 0, 10, &a, &jobs, &n, &total),
	                 0);
	assert_int_equal(n, 1);
	assert_string_equal(jobs[0].id, cloud);
	struct db_job j;
	assert_int_equal(db_job_claim(f->db, "lalalai", (int64_t)time(NULL) + 10, &j), 0);
	assert_string_equal(j.id, cloud);
	assert_string_equal(j.type, "lalalai");
	assert_int_equal(db_job_claim(f->db, "lalalai", (int64_t)time(NULL) + 10, &j),
	                 SFA_ENOTFOUND);
	assert_int_equal(db_job_claim(f->db, "processing", (int64_t)time(NULL) + 10, &j), 0);
	assert_string_equal(j.id, local);
	arena_free(&a);
}

static void add_track(struct fixture *f, const char *title, const char *artist, char *id_out)
{
	struct db_track t = {0};
	uuid_v4(t.id);
	str_copy(t.user_id, sizeof t.user_id, f->user);
	str_copy(t.title, sizeof t.title, title);
	str_copy(t.artist, sizeof t.artist, artist);
	str_copy(t.source, sizeof t.source, "upload");
	assert_int_equal(db_track_insert(f->db, &t), 0);
	if (id_out)
		str_copy(id_out, UUID_STR_LEN, t.id);
}

static int64_t count_matches(struct fixture *f, const char *q)
{
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_track *t;
	size_t n;
	int64_t total = -1;
	assert_int_equal(db_track_list(f->db, f->user, q, DB_SORT_TITLE, 0, 10, &a, &t, &n, &total),
	                 0);
	assert_int_equal((int64_t)n, total);
	arena_free(&a);
	return total;
}

/* Search ignores case on both (PostgreSQL's LIKE does not by itself) and takes LIKE's
 * wildcards literally. */
static void search_ignores_case(void **state)
{
	struct fixture *f = *state;
	add_track(f, "Hello World", "ABBA", NULL);
	add_track(f, "100% Pure", "Moby", NULL);
	add_track(f, "snake_case", "it's", NULL);
	assert_int_equal(count_matches(f, "hello"), 1);
	assert_int_equal(count_matches(f, "WORLD"), 1);
	assert_int_equal(count_matches(f, "abba"), 1);
	assert_int_equal(count_matches(f, "mOBY"), 1);
	assert_int_equal(count_matches(f, "0% p"), 1);
	assert_int_equal(count_matches(f, "%"), 1);
	assert_int_equal(count_matches(f, "e_c"), 1);
	assert_int_equal(count_matches(f, "_"), 1);
	assert_int_equal(count_matches(f, "it's"), 1);
	assert_int_equal(count_matches(f, "?"), 0);
	assert_int_equal(count_matches(f, NULL), 4);
}

/* A second account with the same email in another case is a conflict, and the lookup
 * ignores case; the failed insert leaves the connection usable. */
static void email_conflict(void **state)
{
	struct fixture *f = *state;
	struct db_user u = {0}, got;
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, "Mixed@Example.com");
	str_copy(u.password_hash, sizeof u.password_hash, "x");
	u.created_at = 5;
	assert_int_equal(db_user_insert(f->db, &u), 0);
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, "mixed@EXAMPLE.COM");
	assert_int_equal(db_user_insert(f->db, &u), SFA_ECONFLICT);
	assert_int_equal(db_user_by_email(f->db, "MIXED@example.com", &got), 0);
	assert_string_equal(got.email, "Mixed@Example.com");
	assert_int_equal(got.created_at, 5);
	assert_true(got.password_set);
	/* In a transaction the conflict is reported the same way; rolling back recovers. */
	assert_int_equal(db_tx_begin(f->db), 0);
	assert_int_equal(db_user_insert(f->db, &u), SFA_ECONFLICT);
	db_tx_rollback(f->db);
	assert_int_equal(db_user_by_id(f->db, got.id, &got), 0);
	assert_int_equal(db_schema_version(f->db), 15);
	char err[256];
	assert_int_equal(db_ping(f->db, err, sizeof err), 0);
}

/* Threads claiming from one queue at once never get the same job (PostgreSQL: FOR UPDATE
 * SKIP LOCKED; SQLite: one writer at a time), and together they get every job. */
enum { N_CLAIM_JOBS = 60, N_CLAIMERS = 6 };

struct claimer {
	struct fixture *f;
	struct db *db;
	char ids[N_CLAIM_JOBS][UUID_STR_LEN];
	int n;
	int error;
};

static void *claimer_run(void *arg)
{
	struct claimer *c = arg;
	for (;;) {
		struct db_job j;
		int rc = db_job_claim(c->db, "analysis", 1000, &j);
		if (rc == SFA_ENOTFOUND)
			break;
		if (rc || c->n == N_CLAIM_JOBS) {
			c->error = rc ? rc : -1;
			break;
		}
		str_copy(c->ids[c->n++], UUID_STR_LEN, j.id);
	}
	return NULL;
}

/* Claims from N_CLAIMERS threads sharing db, which may have fewer connections than
 * threads (they then wait their turn for one). */
static void claim_from_threads(struct fixture *f, struct db *db)
{
	for (int i = 0; i < N_CLAIM_JOBS; i++)
		add_job(f, "analysis", NULL);
	struct claimer *c = calloc(N_CLAIMERS, sizeof *c);
	assert_non_null(c);
	pthread_t t[N_CLAIMERS];
	for (int i = 0; i < N_CLAIMERS; i++) {
		c[i].f = f;
		c[i].db = db;
		assert_int_equal(pthread_create(&t[i], NULL, claimer_run, &c[i]), 0);
	}
	int total = 0;
	for (int i = 0; i < N_CLAIMERS; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(c[i].error, 0);
		total += c[i].n;
	}
	assert_int_equal(total, N_CLAIM_JOBS);
	for (int i = 0; i < N_CLAIMERS; i++)
		for (int k = 0; k < c[i].n; k++)
			for (int i2 = i; i2 < N_CLAIMERS; i2++)
				for (int k2 = i2 == i ? k + 1 : 0; k2 < c[i2].n; k2++)
					if (strcmp(c[i].ids[k], c[i2].ids[k2]) == 0)
						fail_msg("job %s was claimed twice", c[i].ids[k]);
	free(c);
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_job *jobs;
	size_t n;
	int64_t queued;
	assert_int_equal(
		db_job_list(f->db, f->user, "queued", NULL, NULL, 0, 1, &a, &jobs, &n, &queued), 0);
	assert_int_equal(queued, 0);
	arena_free(&a);
}

static void claims_never_overlap(void **state)
{
	struct fixture *f = *state;
	claim_from_threads(f, f->db);
	/* Again through a second handle on the same database with a pool of two. */
	struct db *small;
	char err[512];
	assert_int_equal(db_open(f->t.target, 2, &small, err, sizeof err), 0);
	claim_from_threads(f, small);
	db_close(small);
}

/* A transaction rolled back leaves none of its rows; the thread's calls in between joined
 * it (they saw its rows), and other threads' calls go on afterwards. */
struct reader {
	struct db *db;
	const char *user;
	char track[UUID_STR_LEN];
	int rc;
};

static void *reader_run(void *arg)
{
	struct reader *r = arg;
	struct db_track t;
	r->rc = db_track_get(r->db, r->user, r->track, &t);
	return NULL;
}

/* Reads track in another thread; fails the test if it has not answered within 20 s
 * (it would be waiting for the caller's open write transaction). */
static int read_in_thread(struct fixture *f, const char *track)
{
	struct reader r = {.db = f->db, .user = f->user, .rc = -1};
	str_copy(r.track, sizeof r.track, track);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reader_run, &r), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 20;
	if (pthread_timedjoin_np(th, NULL, &until) != 0)
		fail_msg("a read waited for another thread's open write transaction");
	return r.rc;
}

/* A read-only call does not queue behind a write: while this thread holds a write
 * transaction, another thread reads at once, sees what was committed before and not what
 * the transaction has not committed yet; after the commit it sees that too. */
static void reads_run_beside_a_write(void **state)
{
	struct fixture *f = *state;
	char pending[UUID_STR_LEN];
	assert_int_equal(db_tx_begin(f->db), 0);
	add_track(f, "Pending", "", pending);
	assert_int_equal(read_in_thread(f, f->track), 0);
	assert_int_equal(read_in_thread(f, pending), SFA_ENOTFOUND);
	assert_int_equal(db_tx_commit(f->db), 0);
	assert_int_equal(read_in_thread(f, pending), 0);
}

struct slot_taker {
	struct db *db;
	int64_t slots[10];
	int rc;
};

static void *take_slots(void *arg)
{
	struct slot_taker *t = arg;
	for (int i = 0; i < 10 && t->rc == 0; i++)
		t->rc = db_lalalai_check_slot(t->db, "k-shared", 0, 1, &t->slots[i]);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* lal.ai check slots: one key's are an interval apart whoever reserves them, a slot is
 * never in the past, keys are independent; threads (as processes and nodes would) reserving
 * at once get distinct slots, one interval apart. */
static void lalalai_check_slots(void **state)
{
	struct fixture *f = *state;
	int64_t at = -1;
	assert_int_equal(db_lalalai_check_slot(f->db, "k-a", 1000, 3000, &at), 0);
	assert_int_equal(at, 1000);
	assert_int_equal(db_lalalai_check_slot(f->db, "k-a", 1000, 3000, &at), 0);
	assert_int_equal(at, 4000);
	assert_int_equal(db_lalalai_check_slot(f->db, "k-a", 2000, 3000, &at), 0);
	assert_int_equal(at, 7000);
	assert_int_equal(db_lalalai_check_slot(f->db, "k-b", 2000, 3000, &at), 0);
	assert_int_equal(at, 2000);
	assert_int_equal(db_lalalai_check_slot(f->db, "k-a", 100000, 3000, &at), 0);
	assert_int_equal(at, 100000);
	assert_int_equal(db_lalalai_check_slot(f->db, "k-a", 100001, 3000, &at), 0);
	assert_int_equal(at, 103000);

	struct slot_taker takers[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		takers[i] = (struct slot_taker){.db = f->db};
		assert_int_equal(pthread_create(&th[i], NULL, take_slots, &takers[i]), 0);
	}
	int64_t all[40];
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(takers[i].rc, 0);
		memcpy(all + 10 * i, takers[i].slots, sizeof takers[i].slots);
	}
	qsort(all, 40, sizeof all[0], cmp_i64);
	for (int i = 0; i < 40; i++)
		assert_int_equal(all[i], i);
}

/* Ends every other client connection to the cluster (the pool's among them), as a server
 * restart or a network break would. */
static void kill_other_connections(void)
{
	char url[512];
	snprintf(url, sizeof url, "postgresql://sfa@/postgres?host=%s", getenv("SFA_TEST_PG_HOST"));
	PGconn *c = PQconnectdb(url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c,
	                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	                     "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_true(PQntuples(r) >= 1);
	PQclear(r);
	PQfinish(c);
}

/* PostgreSQL: a statement is prepared once per connection and run again from the cache; a
 * connection that broke is reset with an empty cache, so its statements are prepared anew
 * (running a cached name on the new session would fail on every call). */
static void statements_prepared_once(void **state)
{
	(void)state;
	if (!testdb_is_pg())
		return; /* SQLite's statement cache has no server side to check (cmocka's skip()
		         * prints a TAP line meson counts as a failure) */
	struct testdb t;
	assert_int_equal(testdb_open(&t, 1), 0); /* one connection: every call shares it */
	struct db_user u = {0};
	uuid_v4(u.id);
	str_copy(u.email, sizeof u.email, "prep@example.com");
	str_copy(u.password_hash, sizeof u.password_hash, "x");
	assert_int_equal(db_user_insert(t.db, &u), 0);
	struct db_user got;
	uint64_t n0 = db_pg_n_prepares();
	assert_int_equal(db_user_by_id(t.db, u.id, &got), 0);
	uint64_t n_first = db_pg_n_prepares() - n0;
	assert_true(n_first >= 1);
	for (int i = 0; i < 50; i++)
		assert_int_equal(db_user_by_id(t.db, u.id, &got), 0);
	assert_int_equal(db_pg_n_prepares() - n0, n_first);

	kill_other_connections();
	/* The call that finds the connection broken fails (the pool cannot know before it
	 * asks); the next one gets it reset. */
	int rc = db_user_by_id(t.db, u.id, &got);
	if (rc)
		rc = db_user_by_id(t.db, u.id, &got);
	assert_int_equal(rc, 0);
	assert_string_equal(got.email, "prep@example.com");
	uint64_t n1 = db_pg_n_prepares();
	assert_int_equal(n1 - n0, 2 * n_first);
	for (int i = 0; i < 50; i++)
		assert_int_equal(db_user_by_id(t.db, u.id, &got), 0);
	assert_int_equal(db_pg_n_prepares(), n1);
	assert_int_equal(testdb_close(&t), 0);
}

static void rollback_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	char track[UUID_STR_LEN], job[UUID_STR_LEN];
	assert_int_equal(db_tx_begin(f->db), 0);
	add_track(f, "Tentative", "", track);
	struct db_job j = {0};
	uuid_v4(j.id);
	str_copy(j.user_id, sizeof j.user_id, f->user);
	str_copy(j.track_id, sizeof j.track_id, track);
	str_copy(j.type, sizeof j.type, "analysis");
	j.max_attempts = 1;
	assert_int_equal(db_job_insert(f->db, &j), 0);
	str_copy(job, sizeof job, j.id);
	struct db_track t;
	assert_int_equal(db_track_get(f->db, f->user, track, &t), 0);
	assert_int_equal(db_job_get(f->db, f->user, job, &j), 0);
	db_tx_rollback(f->db);
	assert_int_equal(db_track_get(f->db, f->user, track, &t), SFA_ENOTFOUND);
	assert_int_equal(db_job_get(f->db, f->user, job, &j), SFA_ENOTFOUND);
	/* A committed one stays, and another thread sees it. */
	assert_int_equal(db_tx_begin(f->db), 0);
	add_track(f, "Kept", "", track);
	assert_int_equal(db_tx_commit(f->db), 0);
	struct reader r = {.db = f->db, .user = f->user, .rc = -1};
	str_copy(r.track, sizeof r.track, track);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, reader_run, &r), 0);
	pthread_join(th, NULL);
	assert_int_equal(r.rc, 0);
	/* A batch that fails halfway (the second track's id is the first's) keeps nothing. */
	struct db_track batch[2];
	memset(batch, 0, sizeof batch);
	for (int i = 0; i < 2; i++) {
		uuid_v4(batch[i].id);
		snprintf(batch[i].spotify_id, sizeof batch[i].spotify_id, "sp%d", i);
		str_copy(batch[i].title, sizeof batch[i].title, "Spot");
		str_copy(batch[i].artist, sizeof batch[i].artist, "");
		str_copy(batch[i].album, sizeof batch[i].album, "");
	}
	str_copy(batch[1].id, sizeof batch[1].id, batch[0].id);
	assert_int_equal(db_track_upsert_spotify(f->db, f->user, batch, 2, 50), SFA_ECONFLICT);
	assert_int_equal(count_matches(f, "spot"), 0);
}

/* The summary columns are read out of the analysis JSON by the database on both. */
static void analysis_summary_extracted(void **state)
{
	struct fixture *f = *state;
	char job[UUID_STR_LEN];
	uuid_v4(job);
	assert_int_equal(db_analysis_insert(f->db, f->user, f->track, job,
	                                    "{\"tempo\": 128.52, \"key\": \"A minor\", "
	                                    "\"camelot\": \"8A\", \"beats\": [0.3125, 0.78], "
	                                    "\"downbeats\": [0.78], \"sections\": [{\"start\": "
	                                    "0.78, \"label\": \"intro\"}], \"energy\": 0.5}",
	                                    30),
	                 0);
	/* A later analysis without tempo or key does not hide the earlier one's. */
	uuid_v4(job);
	assert_int_equal(db_analysis_insert(f->db, f->user, f->track, job, "{\"energy\": 0.7}", 31),
	                 0);
	struct db_track t;
	assert_int_equal(db_track_get(f->db, f->user, f->track, &t), 0);
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_track_summary *s;
	assert_int_equal(db_track_summaries(f->db, f->user, &t, 1, &a, &s), 0);
	assert_true(s[0].tempo_bpm == 128.52);
	assert_true(s[0].first_beat_s == 0.78); /* the first bar's start, before the first beat */
	/* The sections come back as JSON text (spacing and key order are the engine's). */
	assert_non_null(s[0].sections_json);
	json_error_t jerr;
	json_t *sections = json_loads(s[0].sections_json, 0, &jerr);
	assert_non_null(sections);
	assert_int_equal(json_array_size(sections), 1);
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(sections, 0), "label")), "intro");
	assert_true(json_real_value(json_object_get(json_array_get(sections, 0), "start")) == 0.78);
	json_decref(sections);
	assert_string_equal(s[0].key, "A minor");
	assert_string_equal(s[0].camelot, "8A");
	assert_int_equal(s[0].n_stems, 0);
	char *json = NULL;
	assert_int_equal(db_analysis_latest(f->db, f->user, f->track, &json), 0);
	assert_string_equal(json, "{\"energy\": 0.7}");
	free(json);
	assert_int_equal(db_analysis_for_job(f->db, f->user, job, &json), 0);
	free(json);
	/* Retrying the job replaces its analysis. */
	assert_int_equal(db_analysis_insert(f->db, f->user, f->track, job, "{\"tempo\": 99}", 32),
	                 0);
	assert_int_equal(db_track_summaries(f->db, f->user, &t, 1, &a, &s), 0);
	assert_true(s[0].tempo_bpm == 99);
	assert_true(s[0].first_beat_s == -1);
	assert_non_null(
		s[0].sections_json); /* the earlier analysis's, still the latest with some */
	assert_string_equal(s[0].key, "A minor");
	arena_free(&a);
}

static int64_t library_version(struct fixture *f, const char *user_id)
{
	int64_t v = -1;
	assert_int_equal(db_library_version(f->db, user_id, &v), 0);
	return v;
}

/* Every write to a user's tracks, analyses and stems raises that user's library version
 * (the database's triggers, so job processes and other servers count too); reads and other
 * users' writes do not. */
static void library_version_follows_writes(void **state)
{
	struct fixture *f = *state;
	struct db_user other = {0};
	uuid_v4(other.id);
	str_copy(other.email, sizeof other.email, "other@example.com");
	str_copy(other.password_hash, sizeof other.password_hash, "x");
	assert_int_equal(db_user_insert(f->db, &other), 0);
	int64_t v = library_version(f, f->user), o = library_version(f, other.id);
	char tid[UUID_STR_LEN];
	add_track(f, "Versioned", "Lab", tid);
	assert_true(library_version(f, f->user) > v);
	v = library_version(f, f->user);
	assert_int_equal(db_track_update_meta(f->db, f->user, tid, "Renamed", NULL, NULL), 0);
	assert_true(library_version(f, f->user) > v);
	v = library_version(f, f->user);
	char job[UUID_STR_LEN];
	add_job(f, "analysis", job);
	assert_int_equal(library_version(f, f->user), v); /* jobs are not the library */
	assert_int_equal(db_analysis_insert(f->db, f->user, tid, job, "{\"tempo\": 120}", 40), 0);
	assert_true(library_version(f, f->user) > v);
	v = library_version(f, f->user);
	add_job(f, "processing", job);
	struct db_stem st = {0};
	uuid_v4(st.id);
	str_copy(st.user_id, sizeof st.user_id, f->user);
	str_copy(st.track_id, sizeof st.track_id, tid);
	str_copy(st.job_id, sizeof st.job_id, job);
	str_copy(st.stem_type, sizeof st.stem_type, "vocals");
	str_copy(st.file_path, sizeof st.file_path, "stems/x/vocals.wav");
	str_copy(st.format, sizeof st.format, "wav");
	assert_int_equal(db_stem_insert(f->db, &st), 0);
	assert_true(library_version(f, f->user) > v);
	v = library_version(f, f->user);
	assert_int_equal(db_stem_delete_for_job(f->db, job), 0);
	assert_true(library_version(f, f->user) > v);
	v = library_version(f, f->user);
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_track *t;
	size_t n;
	int64_t total;
	assert_int_equal(
		db_track_list(f->db, f->user, "", DB_SORT_NEWEST, 0, 10, &a, &t, &n, &total), 0);
	arena_free(&a);
	assert_int_equal(library_version(f, f->user), v);
	assert_int_equal(db_track_delete(f->db, f->user, tid), 0);
	assert_true(library_version(f, f->user) > v);
	assert_int_equal(library_version(f, other.id), o);
	assert_int_equal(db_library_version(f->db, "no such user", &v), 0);
	assert_int_equal(v, 0);
}

/* Every library order, with the tracks that lack the value last and pages that tile. */
static void library_sorts(void **state)
{
	struct fixture *f = *state;
	/* title, artist, duration, tempo, camelot ("": no analysis); the fixture's "Song" has
	 * none of them and is the oldest */
	static const struct {
		const char *title, *artist;
		double duration, tempo;
		const char *camelot;
	} rows[] = {
		{"beta", "Zed", 200, 128, "10A"},
		{"Alpha", "", 90, 0, ""},
		{"gamma", "abba", 300, 90.5, "2B"},
		{"Delta", "Moby", 0, 174, "2A"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		struct db_track t = {0};
		uuid_v4(t.id);
		str_copy(t.user_id, sizeof t.user_id, f->user);
		str_copy(t.title, sizeof t.title, rows[i].title);
		str_copy(t.artist, sizeof t.artist, rows[i].artist);
		str_copy(t.source, sizeof t.source, "upload");
		t.duration_s = (int64_t)rows[i].duration;
		t.created_at = 10 + (int64_t)i;
		assert_int_equal(db_track_insert(f->db, &t), 0);
		if (rows[i].tempo > 0) {
			char json[160], job[UUID_STR_LEN];
			uuid_v4(job);
			snprintf(json, sizeof json,
			         "{\"tempo\": %g, \"key\": \"C major\", \"camelot\": \"%s\"}",
			         rows[i].tempo, rows[i].camelot);
			assert_int_equal(db_analysis_insert(f->db, f->user, t.id, job, json, 20),
			                 0);
		}
	}
	static const struct {
		enum db_track_sort sort;
		const char *want;
	} cases[] = {
		{DB_SORT_NEWEST, "Delta gamma Alpha beta Song"},
		{DB_SORT_OLDEST, "Song beta Alpha gamma Delta"},
		{DB_SORT_TITLE, "Alpha beta Delta gamma Song"},
		{DB_SORT_ARTIST, "gamma Delta beta Alpha Song"},
		{DB_SORT_DURATION, "Alpha beta gamma Delta Song"},
		{DB_SORT_TEMPO, "gamma beta Delta Alpha Song"},
		{DB_SORT_KEY, "Delta gamma beta Alpha Song"},
	};
	struct arena a;
	arena_init(&a, 1 << 20);
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		char got[1200] = "";
		/* two rows a page: the pages together are the whole order */
		for (int64_t off = 0; off < 5; off += 2) {
			struct db_track *t;
			size_t n;
			int64_t total;
			assert_int_equal(db_track_list(f->db, f->user, NULL, cases[c].sort, off, 2,
			                               &a, &t, &n, &total),
			                 0);
			assert_int_equal(total, 5);
			for (size_t i = 0; i < n; i++)
				snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s",
				         *got ? " " : "", t[i].title);
		}
		assert_string_equal(got, cases[c].want);
	}
	arena_free(&a);
}

static void track_jobs_cancel_together(void **state)
{
	struct fixture *f = *state;
	char queued[UUID_STR_LEN], running[UUID_STR_LEN], done[UUID_STR_LEN];
	add_job(f, "analysis", done);
	struct db_job claimed;
	assert_int_equal(db_job_claim(f->db, "analysis", 100, &claimed), 0);
	assert_int_equal(db_job_complete(f->db, done, "{}", 101), 0);
	add_job(f, "processing", running);
	assert_int_equal(db_job_claim(f->db, "processing", 100, &claimed), 0);
	assert_string_equal(claimed.id, running);
	add_job(f, "processing", queued);
	int n_running = -1, n_now = -1, n_queued = -1;
	assert_int_equal(db_track_cancel_jobs(f->db, f->user, f->track, 200, &n_running), 0);
	assert_int_equal(n_running, 1);
	struct db_job j;
	assert_int_equal(db_job_get(f->db, f->user, queued, &j), 0);
	assert_string_equal(j.status, "failed");
	assert_string_equal(j.error, "cancelled");
	assert_int_equal(db_job_get(f->db, f->user, done, &j), 0);
	assert_string_equal(j.status, "completed");
	assert_true(db_job_cancel_requested(f->db, running));
	assert_int_equal(db_track_job_counts(f->db, f->user, f->track, &n_now, &n_queued), 0);
	assert_int_equal(n_now, 1);
	assert_int_equal(n_queued, 0);
	assert_int_equal(db_job_fail(f->db, running, "cancelled", 201), 0);
	add_job(f, "analysis", NULL); /* queued after the cancel */
	assert_int_equal(db_track_job_counts(f->db, f->user, f->track, &n_now, &n_queued), 0);
	assert_int_equal(n_now, 0);
	assert_int_equal(n_queued, 1);
	/* Deleting the track takes its jobs with it. */
	assert_int_equal(db_track_delete(f->db, f->user, f->track), 0);
	assert_int_equal(db_job_get(f->db, f->user, running, &j), SFA_ENOTFOUND);
}

/* Completing a separation writes its stem rows and its status in one transaction, and a
 * retry's completion replaces what an earlier attempt of the same job left. */
static void completion_is_one_transaction(void **state)
{
	struct fixture *f = *state;
	char id[UUID_STR_LEN];
	add_job(f, "processing", id);
	struct db_job j;
	assert_int_equal(db_job_claim(f->db, "processing", 10, &j), 0);
	/* What a first attempt that died after writing one row would have left. */
	struct db_stem stray = {0};
	uuid_v4(stray.id);
	str_copy(stray.user_id, sizeof stray.user_id, f->user);
	str_copy(stray.track_id, sizeof stray.track_id, f->track);
	str_copy(stray.job_id, sizeof stray.job_id, id);
	str_copy(stray.stem_type, sizeof stray.stem_type, "drums");
	str_copy(stray.file_path, sizeof stray.file_path, "stems/x/drums.wav");
	str_copy(stray.format, sizeof stray.format, "wav");
	str_copy(stray.engine, sizeof stray.engine, "local");
	str_copy(stray.model, sizeof stray.model, "htdemucs");
	assert_int_equal(db_stem_insert(f->db, &stray), 0);
	char result[1024];
	snprintf(
		result, sizeof result,
		"{\"model\":\"htdemucs\",\"stems\":["
		"{\"stem_type\":\"drums\",\"file_path\":\"stems/%s/drums.wav\",\"file_size\":10,"
		"\"format\":\"wav\",\"duration\":1.5,\"engine\":\"local\",\"model\":\"htdemucs\"},"
		"{\"stem_type\":\"bass\",\"file_path\":\"stems/%s/bass.wav\",\"file_size\":11,"
		"\"format\":\"wav\",\"duration\":1.5,\"engine\":\"local\",\"model\":\"htdemucs\"}]}",
		id, id);
	char *stored = NULL;
	assert_int_equal(library_job_complete(f->db, &j, result, 20, &stored), 0);
	struct arena a;
	arena_init(&a, 1 << 20);
	struct db_stem *rows;
	size_t n;
	assert_int_equal(db_stem_list(f->db, f->user, f->track, id, &a, &rows, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[0].stem_type, "drums");
	char want[80];
	snprintf(want, sizeof want, "stems/%s/drums.wav", id);
	assert_string_equal(rows[0].file_path, want);
	assert_int_equal(rows[1].file_size, 11);
	/* The stored result names the rows by id, as the API shows it. */
	assert_non_null(strstr(stored, rows[0].id));
	assert_null(strstr(stored, "file_path"));
	free(stored);
	struct db_job done;
	assert_int_equal(db_job_get(f->db, f->user, id, &done), 0);
	assert_string_equal(done.status, "completed");
	/* Another job's folder, or a path leaving it, is refused and changes nothing. */
	char other[512];
	snprintf(other, sizeof other,
	         "{\"stems\":[{\"stem_type\":\"x\",\"file_path\":\"stems/%s/x.wav\","
	         "\"file_size\":1,\"format\":\"wav\",\"engine\":\"local\",\"model\":\"m\"}]}",
	         stray.id);
	add_job(f, "processing", id);
	assert_int_equal(db_job_claim(f->db, "processing", 10, &j), 0);
	assert_int_equal(library_job_complete(f->db, &j, other, 30, &stored), SFA_EINVAL);
	/* A malformed list changes nothing. */
	add_job(f, "processing", id);
	assert_int_equal(db_job_claim(f->db, "processing", 10, &j), 0);
	assert_int_equal(library_job_complete(f->db, &j,
	                                      "{\"stems\":[{\"stem_type\":\"x\",\"file_path\":"
	                                      "\"../../etc/passwd\"}]}",
	                                      30, &stored),
	                 SFA_EINVAL);
	assert_int_equal(db_job_get(f->db, f->user, id, &done), 0);
	assert_string_equal(done.status, "running");
	arena_free(&a);
}

/* The scheduler's part in a delete that races a new job (run on another thread): when the
 * running job A is asked to stop, a job B of the same track starts and writes a file
 * before A ends; B must then be asked to stop too, and its file must go with the track. */
struct racer {
	struct fixture *f;
	char a[UUID_STR_LEN];
	char b[UUID_STR_LEN];
	const char *failure;
};

static bool wait_cancel_requested(struct db *db, const char *id)
{
	for (int i = 0; i < 400; i++) { /* 20 s */
		if (db_job_cancel_requested(db, id))
			return true;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return false;
}

static void *racer_run(void *arg)
{
	struct racer *r = arg;
	struct fixture *f = r->f;
	if (!wait_cancel_requested(f->db, r->a)) {
		r->failure = "the running job was never asked to stop";
		db_job_fail(f->db, r->a, "cancelled", 300);
		return NULL;
	}
	/* Queued and started in one transaction, so the delete's cancel pass cannot fall
	 * between the two (the race under test is a job that is already running). */
	struct db_job j;
	int crc = db_tx_begin(f->db);
	if (!crc) {
		add_job(f, "analysis", r->b);
		crc = db_job_claim(f->db, "analysis", 300, &j);
		if (crc)
			db_tx_rollback(f->db);
		else
			crc = db_tx_commit(f->db);
	}
	if (crc != 0) {
		r->failure = "the new job could not start";
		db_job_fail(f->db, r->a, "cancelled", 300);
		return NULL;
	}
	char path[256];
	snprintf(path, sizeof path, "%s/uploads", f->dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/uploads/stems", f->dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/uploads/stems/%s", f->dir, r->b);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/uploads/stems/%s/part.wav", f->dir, r->b);
	FILE *fp = fopen(path, "w");
	if (fp)
		fclose(fp);
	db_job_fail(f->db, r->a, "cancelled", 301);
	if (!wait_cancel_requested(f->db, r->b))
		r->failure = "the job started during the delete was never asked to stop";
	db_job_fail(f->db, r->b, "cancelled", 302);
	return NULL;
}

static void delete_stops_a_job_started_meanwhile(void **state)
{
	struct fixture *f = *state;
	struct racer r = {.f = f};
	add_job(f, "processing", r.a);
	struct db_job j;
	assert_int_equal(db_job_claim(f->db, "processing", 10, &j), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, racer_run, &r), 0);
	char err[256] = "";
	int rc = library_track_delete(f->db, NULL, f->dir, f->user, f->track, err, sizeof err);
	pthread_join(t, NULL);
	if (r.failure)
		fail_msg("%s", r.failure);
	if (rc)
		fail_msg("the delete failed (%d): %s", rc, err);
	struct db_track tr;
	assert_int_equal(db_track_get(f->db, f->user, f->track, &tr), SFA_ENOTFOUND);
	assert_int_equal(db_job_get(f->db, f->user, r.b, &j), SFA_ENOTFOUND);
	char path[256];
	snprintf(path, sizeof path, "%s/uploads/stems/%s", f->dir, r.b);
	if (access(path, F_OK) == 0)
		fail_msg("the new job's folder %s was left behind", path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(lists_are_arrays, setup, teardown),
		cmocka_unit_test_setup_teardown(job_list_of_several_types, setup, teardown),
		cmocka_unit_test_setup_teardown(library_sorts, setup, teardown),
		cmocka_unit_test_setup_teardown(library_version_follows_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(track_jobs_cancel_together, setup, teardown),
		cmocka_unit_test_setup_teardown(completion_is_one_transaction, setup, teardown),
		cmocka_unit_test_setup_teardown(delete_stops_a_job_started_meanwhile, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(search_ignores_case, setup, teardown),
		cmocka_unit_test_setup_teardown(email_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(claims_never_overlap, setup, teardown),
		cmocka_unit_test_setup_teardown(job_leases, setup, teardown),
		cmocka_unit_test_setup_teardown(notifications, setup, teardown),
		cmocka_unit_test_setup_teardown(rollback_leaves_nothing, setup, teardown),
		cmocka_unit_test(statements_prepared_once),
		cmocka_unit_test_setup_teardown(lalalai_check_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(reads_run_beside_a_write, setup, teardown),
		cmocka_unit_test_setup_teardown(analysis_summary_extracted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
