/* Unit tests for src/api/socket.c: the Phoenix Channels v2 session over a fake transport
 * (no sockets): joins and their refusals, heartbeat, ping, leave, unknown events,
 * malformed input, the topic cap, and delivery of job events published on the bus.
 * Also db_job_owned, the default job-ownership check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/app.h"
#include "api/socket.h"
#include "db/db.h"
#include "jobs/bus.h"
#include "util/err.h"

enum { MAX_SENT = 256 };

struct fake {
	int n;
	char *sent[MAX_SENT];
	int n_close;
	uint16_t close_code;
};

static int fake_send(void *arg, const char *text, size_t n)
{
	struct fake *f = arg;
	assert_true(f->n < MAX_SENT);
	f->sent[f->n] = strndup(text, n);
	f->n++;
	return 0;
}

static void fake_close(void *arg, uint16_t code, const char *reason)
{
	struct fake *f = arg;
	assert_non_null(reason);
	f->n_close++;
	f->close_code = code;
}

static void fake_clear(struct fake *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->sent[i]);
	memset(f, 0, sizeof *f);
}

/* The last message sent, which must exist; then forgets everything sent. */
static void expect_last(struct fake *f, const char *want)
{
	assert_true(f->n > 0);
	assert_string_equal(f->sent[f->n - 1], want);
	fake_clear(f);
}

#define USER  "11111111-1111-4111-8111-111111111111"
#define OTHER "22222222-2222-4222-8222-222222222222"

static struct app g_app;

static bool fake_owner(struct app *app, const char *user_id, const char *job_id)
{
	assert_ptr_equal(app, &g_app);
	return strcmp(user_id, USER) == 0 && strncmp(job_id, "job-", 4) == 0;
}

static bool refuse_all(struct app *app, const char *user_id, const char *job_id) { return false; }

struct fixture {
	struct fake f;
	struct phx_session *s;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);
	socket_job_owner_check = fake_owner;
	struct phx_transport tr = {fake_send, fake_close, &fx->f};
	fx->s = phx_session_new(&g_app, USER, &tr);
	assert_non_null(fx->s);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	phx_session_free(fx->s);
	fake_clear(&fx->f);
	free(fx);
	socket_job_owner_check = socket_job_owner_db;
	return 0;
}

static void in(struct fixture *fx, const char *msg)
{
	phx_session_handle(fx->s, true, (const uint8_t *)msg, strlen(msg));
}

static void join_own_user_topic(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"1\",\"1\",\"user:" USER "\",\"phx_join\",{}]");
	expect_last(&fx->f, "[\"1\",\"1\",\"user:" USER
	                    "\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	assert_int_equal(phx_session_n_topics(fx->s), 1);
}

static void joins_refused(void **state)
{
	struct fixture *fx = *state;
	const char *topics[] = {"user:" OTHER,  "user:", "user:" USER "x",
	                        "jobs:other-9", "jobs:", "rooms:lobby",
	                        "phoenix",      "",      "USER:" USER};
	for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++) {
		char msg[256], want[300];
		snprintf(msg, sizeof msg, "[\"3\",\"4\",\"%s\",\"phx_join\",{}]", topics[i]);
		in(fx, msg);
		snprintf(
			want, sizeof want,
			"[\"3\",\"4\",\"%s\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":"
			"\"unauthorized\"}}]",
			topics[i]);
		expect_last(&fx->f, want);
	}
	/* A topic longer than the cap is refused without being looked at. */
	char msg[400] = "[\"3\",\"4\",\"jobs:job-";
	size_t n = strlen(msg);
	memset(msg + n, 'x', 200);
	memcpy(msg + n + 200, "\",\"phx_join\",{}]", 17);
	in(fx, msg);
	assert_non_null(strstr(fx->f.sent[0], "\"unauthorized\""));
	fake_clear(&fx->f);
	assert_int_equal(phx_session_n_topics(fx->s), 0);
	assert_int_equal(fx->f.n_close, 0);
}

static void join_own_job(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"5\",\"5\",\"jobs:job-1\",\"phx_join\",{\"x\":1}]");
	expect_last(
		&fx->f,
		"[\"5\",\"5\",\"jobs:job-1\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	assert_int_equal(phx_session_n_topics(fx->s), 1);
}

static void heartbeat_and_ping(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[null,\"7\",\"phoenix\",\"heartbeat\",{}]");
	expect_last(&fx->f,
	            "[null,\"7\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	in(fx, "[\"1\",\"1\",\"user:" USER "\",\"phx_join\",{}]");
	fake_clear(&fx->f);
	in(fx, "[\"1\",\"8\",\"user:" USER "\",\"ping\",{}]");
	expect_last(&fx->f, "[\"1\",\"8\",\"user:" USER
	                    "\",\"phx_reply\",{\"status\":\"ok\",\"response\":{\"pong\":true}}]");
	in(fx, "[null,\"9\",\"phoenix\",\"ping\",{}]");
	expect_last(
		&fx->f,
		"[null,\"9\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{\"pong\":true}}]");
	/* Integer refs are echoed as they came. */
	in(fx, "[null,12,\"phoenix\",\"heartbeat\",{}]");
	expect_last(&fx->f,
	            "[null,12,\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
}

static void unknown_events_and_unmatched_topics(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"1\",\"1\",\"jobs:job-1\",\"phx_join\",{}]");
	fake_clear(&fx->f);
	in(fx, "[\"1\",\"2\",\"jobs:job-1\",\"explode\",{}]");
	expect_last(&fx->f,
	            "[\"1\",\"2\",\"jobs:job-1\",\"phx_reply\",{\"status\":\"error\",\"response\":"
	            "{\"reason\":\"unknown event\"}}]");
	in(fx, "[\"1\",\"3\",\"jobs:job-2\",\"ping\",{}]");
	expect_last(&fx->f,
	            "[\"1\",\"3\",\"jobs:job-2\",\"phx_reply\",{\"status\":\"error\",\"response\":"
	            "{\"reason\":\"unmatched topic\"}}]");
	in(fx, "[\"1\",\"4\",\"jobs:job-2\",\"phx_leave\",{}]");
	expect_last(&fx->f,
	            "[\"1\",\"4\",\"jobs:job-2\",\"phx_reply\",{\"status\":\"error\",\"response\":"
	            "{\"reason\":\"unmatched topic\"}}]");
	in(fx, "[null,\"5\",\"phoenix\",\"whatever\",{}]");
	assert_non_null(strstr(fx->f.sent[0], "\"status\":\"error\""));
	fake_clear(&fx->f);
	assert_int_equal(fx->f.n_close, 0);
}

static void leave_unsubscribes(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"1\",\"1\",\"jobs:job-7\",\"phx_join\",{}]");
	fake_clear(&fx->f);
	bus_publish(g_app.bus, "jobs:job-7", "job:progress", "{\"progress\":1}");
	assert_int_equal(fx->f.n, 1);
	fake_clear(&fx->f);
	in(fx, "[\"1\",\"2\",\"jobs:job-7\",\"phx_leave\",{}]");
	expect_last(
		&fx->f,
		"[\"1\",\"2\",\"jobs:job-7\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]");
	assert_int_equal(phx_session_n_topics(fx->s), 0);
	bus_publish(g_app.bus, "jobs:job-7", "job:progress", "{\"progress\":2}");
	assert_int_equal(fx->f.n, 0);
}

static void bus_events_become_pushes(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"10\",\"10\",\"jobs:job-1\",\"phx_join\",{}]");
	in(fx, "[\"11\",\"11\",\"user:" USER "\",\"phx_join\",{}]");
	fake_clear(&fx->f);
	bus_publish(
		g_app.bus, "jobs:job-1", "job:progress",
		"{\"job_id\":\"job-1\",\"status\":\"running\",\"progress\":50,\"message\":\"half\"}");
	expect_last(&fx->f, "[\"10\",null,\"jobs:job-1\",\"job:progress\",{\"job_id\":\"job-1\","
	                    "\"status\":\"running\",\"progress\":50,\"message\":\"half\"}]");
	bus_publish(
		g_app.bus, "user:" USER, "job:completed",
		"{\"job_id\":\"job-1\",\"job_type\":\"probe\",\"track_id\":null,\"result\":{}}");
	expect_last(&fx->f,
	            "[\"11\",null,\"user:" USER "\",\"job:completed\",{\"job_id\":\"job-1\","
	            "\"job_type\":\"probe\",\"track_id\":null,\"result\":{}}]");
	bus_publish(g_app.bus, "user:" USER, "job:failed", NULL);
	expect_last(&fx->f, "[\"11\",null,\"user:" USER "\",\"job:failed\",{}]");
	/* Other topics never reach this session. */
	bus_publish(g_app.bus, "user:" OTHER, "job:failed", "{}");
	bus_publish(g_app.bus, "jobs:job-2", "job:progress", "{}");
	assert_int_equal(fx->f.n, 0);
	/* Event names are JSON-escaped. */
	bus_publish(g_app.bus, "jobs:job-1", "odd\"name", "{}");
	expect_last(&fx->f, "[\"10\",null,\"jobs:job-1\",\"odd\\\"name\",{}]");
}

static void rejoin_replaces(void **state)
{
	struct fixture *fx = *state;
	in(fx, "[\"1\",\"1\",\"jobs:job-1\",\"phx_join\",{}]");
	in(fx, "[\"5\",\"5\",\"jobs:job-1\",\"phx_join\",{}]");
	assert_int_equal(phx_session_n_topics(fx->s), 1);
	fake_clear(&fx->f);
	bus_publish(g_app.bus, "jobs:job-1", "job:progress", "{}");
	expect_last(&fx->f, "[\"5\",null,\"jobs:job-1\",\"job:progress\",{}]");
	/* A refused rejoin (the job changed hands, say) leaves the topic not joined at all. */
	socket_job_owner_check = refuse_all;
	in(fx, "[\"6\",\"6\",\"jobs:job-1\",\"phx_join\",{}]");
	assert_non_null(strstr(fx->f.sent[0], "\"unauthorized\""));
	fake_clear(&fx->f);
	assert_int_equal(phx_session_n_topics(fx->s), 0);
	bus_publish(g_app.bus, "jobs:job-1", "job:progress", "{}");
	assert_int_equal(fx->f.n, 0);
	socket_job_owner_check = fake_owner;
}

static void topic_cap(void **state)
{
	struct fixture *fx = *state;
	char msg[128];
	for (int i = 0; i < PHX_MAX_TOPICS; i++) {
		snprintf(msg, sizeof msg, "[\"%d\",\"%d\",\"jobs:job-%d\",\"phx_join\",{}]", i, i,
		         i);
		in(fx, msg);
		assert_non_null(strstr(fx->f.sent[fx->f.n - 1], "\"ok\""));
	}
	fake_clear(&fx->f);
	assert_int_equal(phx_session_n_topics(fx->s), PHX_MAX_TOPICS);
	in(fx, "[\"x\",\"x\",\"jobs:job-extra\",\"phx_join\",{}]");
	expect_last(&fx->f, "[\"x\",\"x\",\"jobs:job-extra\",\"phx_reply\",{\"status\":\"error\","
	                    "\"response\":{\"reason\":\"too many topics\"}}]");
	/* Rejoining one already joined still works at the cap. */
	in(fx, "[\"y\",\"y\",\"jobs:job-3\",\"phx_join\",{}]");
	assert_non_null(strstr(fx->f.sent[0], "\"ok\""));
	fake_clear(&fx->f);
	bus_publish(g_app.bus, "jobs:job-99", "job:progress", "{}");
	expect_last(&fx->f, "[\"99\",null,\"jobs:job-99\",\"job:progress\",{}]");
}

static void malformed_messages_close(void **state)
{
	struct fixture *fx = *state;
	const char *bad[] = {
		"hello",
		"",
		"{}",
		"[]",
		"[null,null,\"phoenix\",\"heartbeat\"]",
		"[null,null,\"phoenix\",\"heartbeat\",{},1]",
		"[null,\"1\",7,\"heartbeat\",{}]",
		"[null,\"1\",\"phoenix\",null,{}]",
		"[{},\"1\",\"phoenix\",\"heartbeat\",{}]",
		"[null,[1],\"phoenix\",\"heartbeat\",{}]",
		"[null,1.5,\"phoenix\",\"heartbeat\",{}]",
		"[null,\"1\",\"phoenix\",\"heartbeat\",{}",
		"[null,\"1\",\"phoenix\",\"heartbeat\",{}]x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		in(fx, bad[i]);
		assert_int_equal(fx->f.n_close, 1);
		assert_int_equal(fx->f.close_code, 1007);
		assert_int_equal(fx->f.n, 0);
		fake_clear(&fx->f);
	}
	phx_session_handle(fx->s, false, (const uint8_t *)"\x00\x01", 2);
	assert_int_equal(fx->f.n_close, 1);
	assert_int_equal(fx->f.close_code, 1003);
	fake_clear(&fx->f);
	/* A payload that is not an object is still a well-formed message. */
	in(fx, "[null,\"1\",\"phoenix\",\"heartbeat\",\"x\"]");
	assert_int_equal(fx->f.n_close, 0);
	assert_int_equal(fx->f.n, 1);
}

static void free_unsubscribes_everything(void **state)
{
	(void)state;
	struct fake f = {0};
	socket_job_owner_check = fake_owner;
	struct phx_transport tr = {fake_send, fake_close, &f};
	struct phx_session *s = phx_session_new(&g_app, USER, &tr);
	const char *j1 = "[\"1\",\"1\",\"jobs:job-1\",\"phx_join\",{}]";
	const char *j2 = "[\"2\",\"2\",\"user:" USER "\",\"phx_join\",{}]";
	phx_session_handle(s, true, (const uint8_t *)j1, strlen(j1));
	phx_session_handle(s, true, (const uint8_t *)j2, strlen(j2));
	assert_int_equal(phx_session_n_topics(s), 2);
	fake_clear(&f);
	phx_session_free(s);
	/* Under ASan a delivery to a freed session would be caught here. */
	bus_publish(g_app.bus, "jobs:job-1", "job:progress", "{}");
	bus_publish(g_app.bus, "user:" USER, "job:progress", "{}");
	assert_int_equal(f.n, 0);
	phx_session_free(NULL);
	socket_job_owner_check = socket_job_owner_db;
}

static void db_job_owned_checks_the_owner(void **state)
{
	(void)state;
	char dir[] = "/tmp/sfa-socket-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof path, "%s/sfa.db", dir);
	struct db *db;
	char err[256];
	assert_int_equal(db_open(path, 0, &db, err, sizeof err), 0);
	sqlite3 *raw;
	assert_int_equal(sqlite3_open(path, &raw), SQLITE_OK);
	assert_int_equal(db_job_owned(db, USER, "job-1"), SFA_ENOTFOUND);
	int rc = sqlite3_exec(raw,
	                      "INSERT INTO jobs (id, user_id, type, status, max_attempts, run_at, "
	                      "created_at) VALUES ('job-1', '" USER
	                      "', 'probe', 'queued', 1, 0, 0),"
	                      " ('job-2', '" OTHER "', 'probe', 'queued', 1, 0, 0)",
	                      NULL, NULL, NULL);
	assert_int_equal(rc, SQLITE_OK);
	sqlite3_close(raw);
	assert_int_equal(db_job_owned(db, USER, "job-1"), 0);
	assert_int_equal(db_job_owned(db, USER, "job-2"), SFA_ENOTFOUND);
	assert_int_equal(db_job_owned(db, OTHER, "job-2"), 0);
	assert_int_equal(db_job_owned(db, USER, "job-3"), SFA_ENOTFOUND);
	assert_int_equal(db_job_owned(db, USER, "' OR 1=1 --"), SFA_ENOTFOUND);
	struct app app = {.db = db};
	assert_true(socket_job_owner_db(&app, USER, "job-1"));
	assert_false(socket_job_owner_db(&app, OTHER, "job-1"));
	db_close(db);
	char cmd[160];
	snprintf(cmd, sizeof cmd, "%s/sfa.db", dir);
	unlink(cmd);
	snprintf(cmd, sizeof cmd, "%s/sfa.db-wal", dir);
	unlink(cmd);
	snprintf(cmd, sizeof cmd, "%s/sfa.db-shm", dir);
	unlink(cmd);
	rmdir(dir);
}

static void per_user_socket_cap(void **state)
{
	(void)state;
	const char *a = "33333333-3333-4333-8333-333333333333";
	const char *b = "44444444-4444-4444-8444-444444444444";
	for (int i = 0; i < PHX_MAX_SOCKETS_PER_USER; i++)
		assert_int_equal(socket_user_acquire(a), 0);
	assert_int_equal(socket_user_acquire(a), SFA_ETOOBIG);
	assert_int_equal(socket_user_count(a), PHX_MAX_SOCKETS_PER_USER);
	assert_int_equal(socket_user_acquire(b), 0); /* others are not affected */
	socket_user_release(a);
	assert_int_equal(socket_user_acquire(a), 0);
	for (int i = 0; i < PHX_MAX_SOCKETS_PER_USER; i++)
		socket_user_release(a);
	socket_user_release(b);
	assert_int_equal(socket_user_count(a), 0);
	assert_int_equal(socket_user_count(b), 0);
	socket_user_release(b); /* unknown: a no-op */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(join_own_user_topic, setup, teardown),
		cmocka_unit_test_setup_teardown(joins_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(join_own_job, setup, teardown),
		cmocka_unit_test_setup_teardown(heartbeat_and_ping, setup, teardown),
		cmocka_unit_test_setup_teardown(unknown_events_and_unmatched_topics, setup,
	                                        teardown),
		cmocka_unit_test_setup_teardown(leave_unsubscribes, setup, teardown),
		cmocka_unit_test_setup_teardown(bus_events_become_pushes, setup, teardown),
		cmocka_unit_test_setup_teardown(rejoin_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(topic_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(malformed_messages_close, setup, teardown),
		cmocka_unit_test(free_unsubscribes_everything),
		cmocka_unit_test(db_job_owned_checks_the_owner),
		cmocka_unit_test(per_user_socket_cap),
	};
	g_app.bus = bus_new();
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	bus_free(g_app.bus);
	return rc;
}
