/* bus.c - see bus.h. A mutex-guarded linked list: subscriptions number in the tens
 * (one per joined topic per open socket), so a scan per publish is cheap.
 *
 * Delivery happens outside the lock: a publish takes a snapshot of the matching
 * subscriptions, marking each busy, and calls them with no lock held. Unsubscribing
 * unlinks at once and then waits until no delivery to that subscription is running, so
 * after bus_unsubscribe returns its function is never called again. */
#include "jobs/bus.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bus_sub {
	struct bus_sub *next;
	bus_deliver_fn fn;
	void *arg;
	int busy; /* deliveries running now */
	char topic[];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_idle = PTHREAD_COND_INITIALIZER;
static struct bus_sub *g_subs;

struct bus_sub *bus_subscribe(const char *topic, bus_deliver_fn fn, void *arg)
{
	size_t n = strlen(topic);
	struct bus_sub *s = malloc(sizeof *s + n + 1);
	if (!s)
		return NULL;
	memcpy(s->topic, topic, n + 1);
	s->fn = fn;
	s->arg = arg;
	s->busy = 0;
	pthread_mutex_lock(&g_mu);
	s->next = g_subs;
	g_subs = s;
	pthread_mutex_unlock(&g_mu);
	return s;
}

void bus_unsubscribe(struct bus_sub *sub)
{
	if (!sub)
		return;
	pthread_mutex_lock(&g_mu);
	for (struct bus_sub **pp = &g_subs; *pp; pp = &(*pp)->next) {
		if (*pp == sub) {
			*pp = sub->next;
			break;
		}
	}
	while (sub->busy)
		pthread_cond_wait(&g_idle, &g_mu);
	pthread_mutex_unlock(&g_mu);
	free(sub);
}

void bus_publish(const char *topic, const char *event, const char *payload_json)
{
	struct bus_sub *stack[32], **snap = stack;
	size_t n = 0, cap = sizeof stack / sizeof stack[0];
	pthread_mutex_lock(&g_mu);
	for (struct bus_sub *s = g_subs; s; s = s->next) {
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
	pthread_mutex_unlock(&g_mu);
	for (size_t i = 0; i < n; i++)
		snap[i]->fn(snap[i]->arg, topic, event, payload_json);
	pthread_mutex_lock(&g_mu);
	for (size_t i = 0; i < n; i++)
		snap[i]->busy--;
	pthread_cond_broadcast(&g_idle);
	pthread_mutex_unlock(&g_mu);
	if (snap != stack)
		free(snap);
}
