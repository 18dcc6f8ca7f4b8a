/* test_bus.c - jobs/bus.h: delivery by topic, unsubscribe, two buses that share nothing,
 * and unsubscribe waiting for a delivery running on another thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs/bus.h"

struct seen {
	int n;
	char last[256]; /* "topic|event|payload" */
};

static void record(void *arg, const char *topic, const char *event, const char *payload)
{
	struct seen *s = arg;
	s->n++;
	snprintf(s->last, sizeof s->last, "%s|%s|%s", topic, event, payload ? payload : "(null)");
}

static void delivers_by_topic_until_unsubscribed(void **state)
{
	(void)state;
	struct bus *b = bus_new();
	assert_non_null(b);
	struct seen a = {0}, c = {0};
	struct bus_sub *sa = bus_subscribe(b, "jobs:1", record, &a);
	struct bus_sub *sc = bus_subscribe(b, "user:9", record, &c);
	assert_non_null(sa);
	assert_non_null(sc);
	bus_publish(b, "jobs:1", "job:progress", "{\"progress\":5}");
	assert_int_equal(a.n, 1);
	assert_string_equal(a.last, "jobs:1|job:progress|{\"progress\":5}");
	assert_int_equal(c.n, 0);
	bus_publish(b, "jobs:2", "job:progress", "{}"); /* nobody's topic */
	bus_publish(b, "jobs:", "job:progress", "{}");  /* a prefix is not the topic */
	assert_int_equal(a.n, 1);
	bus_publish(b, "user:9", "job:failed", NULL);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.last, "user:9|job:failed|(null)");
	bus_unsubscribe(sa);
	bus_publish(b, "jobs:1", "job:progress", "{}");
	assert_int_equal(a.n, 1);
	bus_unsubscribe(sc);
	bus_unsubscribe(NULL);
	bus_free(b);
	bus_free(NULL);
}

static void every_subscriber_of_a_topic_gets_it(void **state)
{
	(void)state;
	struct bus *b = bus_new();
	enum { N = 40 }; /* more than the publisher's on-stack snapshot holds */
	struct seen s[N];
	struct bus_sub *subs[N];
	memset(s, 0, sizeof s);
	for (int i = 0; i < N; i++)
		assert_non_null(subs[i] = bus_subscribe(b, "t", record, &s[i]));
	bus_publish(b, "t", "e", "{}");
	for (int i = 0; i < N; i++) {
		assert_int_equal(s[i].n, 1);
		bus_unsubscribe(subs[i]);
	}
	bus_free(b);
}

static void two_buses_share_nothing(void **state)
{
	(void)state;
	struct bus *b1 = bus_new(), *b2 = bus_new();
	assert_non_null(b1);
	assert_non_null(b2);
	struct seen s1 = {0}, s2 = {0};
	struct bus_sub *x = bus_subscribe(b1, "jobs:1", record, &s1);
	struct bus_sub *y = bus_subscribe(b2, "jobs:1", record, &s2);
	bus_publish(b1, "jobs:1", "job:completed", "{\"from\":1}");
	assert_int_equal(s1.n, 1);
	assert_int_equal(s2.n, 0);
	bus_publish(b2, "jobs:1", "job:completed", "{\"from\":2}");
	assert_int_equal(s1.n, 1);
	assert_int_equal(s2.n, 1);
	assert_string_equal(s2.last, "jobs:1|job:completed|{\"from\":2}");
	/* Unsubscribing from one bus leaves the other's subscription alone. */
	bus_unsubscribe(x);
	bus_publish(b2, "jobs:1", "job:completed", "{}");
	assert_int_equal(s2.n, 2);
	bus_unsubscribe(y);
	bus_free(b1);
	bus_free(b2);
}

/* A delivery that blocks until released, so unsubscribe can be called while it runs. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered, released, delivery_done;
	struct bus *bus;
	struct bus_sub *sub;
};

static void blocking(void *arg, const char *topic, const char *event, const char *payload)
{
	(void)topic, (void)event, (void)payload;
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->released)
		pthread_cond_wait(&g->cv, &g->mu);
	g->delivery_done = true;
	pthread_mutex_unlock(&g->mu);
}

static void *publisher(void *arg)
{
	struct gate *g = arg;
	bus_publish(g->bus, "t", "e", "{}");
	return NULL;
}

static void *unsubscriber(void *arg)
{
	struct gate *g = arg;
	bus_unsubscribe(g->sub);
	return NULL;
}

static void unsubscribe_waits_for_a_running_delivery(void **state)
{
	(void)state;
	struct gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	g.bus = bus_new();
	g.sub = bus_subscribe(g.bus, "t", blocking, &g);
	pthread_t pub, unsub;
	assert_int_equal(pthread_create(&pub, NULL, publisher, &g), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(pthread_create(&unsub, NULL, unsubscriber, &g), 0);
	/* While the delivery runs, unsubscribe must not return (a bounded wait for an event
	 * that must not happen). */
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += 200 * 1000 * 1000;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	assert_int_equal(pthread_timedjoin_np(unsub, NULL, &until), ETIMEDOUT);
	pthread_mutex_lock(&g.mu);
	g.released = true;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	assert_int_equal(pthread_join(unsub, NULL), 0);
	assert_true(g.delivery_done); /* unsubscribe returned only after the delivery ended */
	assert_int_equal(pthread_join(pub, NULL), 0);
	bus_free(g.bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(delivers_by_topic_until_unsubscribed),
		cmocka_unit_test(every_subscriber_of_a_topic_gets_it),
		cmocka_unit_test(two_buses_share_nothing),
		cmocka_unit_test(unsubscribe_waits_for_a_running_delivery),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
