/* bus.c - see bus.h. A mutex-guarded linked list: subscriptions number in the tens
 * (one per joined topic per open socket), so a scan per publish is cheap. */
#include "jobs/bus.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct bus_sub {
	struct bus_sub *next;
	bus_deliver_fn fn;
	void *arg;
	char topic[];
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
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
	pthread_mutex_unlock(&g_mu);
	free(sub);
}

void bus_publish(const char *topic, const char *event, const char *payload_json)
{
	pthread_mutex_lock(&g_mu);
	for (struct bus_sub *s = g_subs; s; s = s->next)
		if (strcmp(s->topic, topic) == 0)
			s->fn(s->arg, topic, event, payload_json);
	pthread_mutex_unlock(&g_mu);
}
