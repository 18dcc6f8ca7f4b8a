/* respcache.c - see respcache.h. */
#include "core/respcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char *key; /* NULL when empty */
	int64_t version;
	struct respcache_body *body;
};

struct respcache {
	pthread_mutex_t mu;
	unsigned n;
	size_t max_bytes, bytes;
	struct slot *slots;
};

struct respcache *respcache_new(unsigned n_slots, size_t max_bytes)
{
	struct respcache *c = calloc(1, sizeof *c);
	if (!c || n_slots == 0 || !(c->slots = calloc(n_slots, sizeof *c->slots))) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	c->n = n_slots;
	c->max_bytes = max_bytes;
	return c;
}

void respcache_release(struct respcache_body *b)
{
	if (b && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

/* Empties s, dropping its reference to the body (a reader may still hold one). */
static void clear_slot(struct respcache *c, struct slot *s)
{
	if (s->body)
		c->bytes -= s->body->len;
	respcache_release(s->body);
	free(s->key);
	*s = (struct slot){0};
}

void respcache_free(struct respcache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++)
		clear_slot(c, &c->slots[i]);
	pthread_mutex_destroy(&c->mu);
	free(c->slots);
	free(c);
}

/* FNV-1a. */
static struct slot *slot_of(struct respcache *c, const char *key)
{
	uint64_t h = 1469598103934665603ull;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return &c->slots[h % c->n];
}

struct respcache_body *respcache_get(struct respcache *c, const char *key, int64_t version)
{
	struct respcache_body *b = NULL;
	pthread_mutex_lock(&c->mu);
	struct slot *s = slot_of(c, key);
	if (s->key && s->version == version && strcmp(s->key, key) == 0) {
		b = s->body;
		atomic_fetch_add(&b->refs, 1);
	}
	pthread_mutex_unlock(&c->mu);
	return b;
}

void respcache_put(struct respcache *c, const char *key, int64_t version, const char *body,
                   size_t len)
{
	if (len > c->max_bytes)
		return;
	struct respcache_body *b = malloc(sizeof *b + len);
	char *k = strdup(key);
	if (!b || !k) {
		free(b);
		free(k);
		return;
	}
	atomic_init(&b->refs, 1);
	b->len = len;
	memcpy(b->data, body, len);
	pthread_mutex_lock(&c->mu);
	struct slot *s = slot_of(c, key);
	clear_slot(c, s);
	if (c->bytes + len > c->max_bytes) /* full: start over */
		for (unsigned i = 0; i < c->n; i++)
			clear_slot(c, &c->slots[i]);
	*s = (struct slot){.key = k, .version = version, .body = b};
	c->bytes += len;
	pthread_mutex_unlock(&c->mu);
}
