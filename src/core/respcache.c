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

/* Empties s, handing its body to *drop (released by the caller after unlocking). */
static void clear_slot(struct respcache *c, struct slot *s, struct respcache_body **drop)
{
	if (s->body)
		c->bytes -= s->body->len;
	*drop = s->body;
	free(s->key);
	*s = (struct slot){0};
}

void respcache_free(struct respcache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++) {
		struct respcache_body *b;
		clear_slot(c, &c->slots[i], &b);
		respcache_release(b);
	}
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
	struct respcache_body *drop = NULL, **dropped = NULL;
	unsigned n_dropped = 0;
	pthread_mutex_lock(&c->mu);
	struct slot *s = slot_of(c, key);
	clear_slot(c, s, &drop);
	if (c->bytes + len > c->max_bytes) {
		/* Full: start over. The bodies are released after unlocking. */
		dropped = malloc(c->n * sizeof *dropped);
		for (unsigned i = 0; dropped && i < c->n; i++)
			if (c->slots[i].key)
				clear_slot(c, &c->slots[i], &dropped[n_dropped++]);
	}
	if (c->bytes + len <= c->max_bytes) {
		*s = (struct slot){.key = k, .version = version, .body = b};
		c->bytes += len;
		k = NULL;
		b = NULL;
	}
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < n_dropped; i++)
		respcache_release(dropped[i]);
	free(dropped);
	respcache_release(drop);
	respcache_release(b);
	free(k);
}
