/* bus.c - see bus.h. A mutex-guarded linked list: subscriptions number in the tens
 * (one per joined topic per open socket), so a scan per publish is cheap.
 *
 * Delivery happens outside the lock: a publish takes a snapshot of the matching
 * subscriptions, marking each busy, and calls them with no lock held. Unsubscribing
 * unlinks at once and then waits until no delivery to that subscription is running, so
 * after bus_unsubscribe returns its function is never called again. Each bus has its own
 * lock and list; a subscription points back at its bus. */
#include "jobs/bus.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bus_sub {
	struct bus_sub *next;
	struct bus *bus;
	bus_deliver_fn fn;
	void *arg;
	int busy; /* deliveries running now */
	char topic[];
};

struct bus {
	pthread_mutex_t mu;
	pthread_cond_t idle;
	struct bus_sub *subs;
};

struct bus *bus_new(void)
{
	struct bus *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	pthread_mutex_init(&b->mu, NULL);
	pthread_cond_init(&b->idle, NULL);
	return b;
}

void bus_free(struct bus *b)
{
	if (!b)
		return;
	pthread_cond_destroy(&b->idle);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

struct bus_sub *bus_subscribe(struct bus *b, const char *topic, bus_deliver_fn fn, void *arg)
{
	size_t n = strlen(topic);
	struct bus_sub *s = malloc(sizeof *s + n + 1);
	if (!s)
		return NULL;
	memcpy(s->topic, topic, n + 1);
	s->fn = fn;
	s->arg = arg;
	s->busy = 0;
	s->bus = b;
	pthread_mutex_lock(&b->mu);
	s->next = b->subs;
	b->subs = s;
	pthread_mutex_unlock(&b->mu);
	return s;
}

void bus_unsubscribe(struct bus_sub *sub)
{
	if (!sub)
		return;
	struct bus *b = sub->bus;
	pthread_mutex_lock(&b->mu);
	for (struct bus_sub **pp = &b->subs; *pp; pp = &(*pp)->next) {
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	}
	while (sub->busy)
		pthread_cond_wait(&b->idle, &b->mu);
	pthread_mutex_unlock(&b->mu);
	free(sub);
}

void bus_publish(struct bus *b, const char *topic, const char *event, const char *payload_json)
{
	struct bus_sub *stack[32], **snap = stack;
	size_t n = 0, cap = sizeof stack / sizeof stack[0];
	pthread_mutex_lock(&b->mu);
	for (struct bus_sub *s = b->subs; s; s = s->next) {
		if (strcmp(s->topic, topic) != 0)
			continue;
		if (n == cap) {
			struct bus_sub **grown = malloc(2 * cap * sizeof *grown);
			if (!grown)
				break; /* out of memory: the remaining subscribers miss this event */
			memcpy(grown, snap, n * sizeof *grown);
			if (snap != stack)
				free(snap);
			snap = grown;
			cap *= 2;
		}
		s->busy++;
		snap[n++] = s;
	}
	pthread_mutex_unlock(&b->mu);
	for (size_t i = 0; i < n; i++)
		snap[i]->fn(snap[i]->arg, topic, event, payload_json);
	pthread_mutex_lock(&b->mu);
	for (size_t i = 0; i < n; i++)
		snap[i]->busy--;
	pthread_cond_broadcast(&b->idle);
	pthread_mutex_unlock(&b->mu);
	if (snap != stack)
		free(snap);
}
