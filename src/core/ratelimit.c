/* ratelimit.c - see ratelimit.h. Chained hash table, FNV-1a over the key. */
#include "core/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void ratelimit_step(struct rl_window *w, int limit, int window_s, int64_t now,
                    struct rl_result *out)
{
	if (w->start == 0 || now >= w->start + window_s) {
		w->start = now;
		w->count = 0;
	}
	out->limit = limit;
	out->reset_at = w->start + window_s;
	if (w->count < limit) {
		w->count++;
		out->allowed = true;
		out->remaining = limit - w->count;
		out->retry_after_s = 0;
	} else {
		out->allowed = false;
		out->remaining = 0;
		int64_t wait = out->reset_at - now;
		out->retry_after_s = wait < 1 ? 1 : (int)wait;
	}
}

struct rl_entry {
	struct rl_entry *next;
	struct rl_window w;
	char key[];
};

struct ratelimit {
	pthread_mutex_t mu;
	struct rl_entry **buckets;
	size_t n_buckets;
	size_t n_keys;
	size_t max_keys;
	size_t n_overflow;
	int window_s;
};

struct ratelimit *ratelimit_new(size_t max_keys, int window_s)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);
	if (!rl)
		return NULL;
	rl->n_buckets = 1024;
	while (rl->n_buckets < max_keys)
		rl->n_buckets *= 2;
	rl->buckets = calloc(rl->n_buckets, sizeof *rl->buckets);
	if (!rl->buckets) {
		free(rl);
		return NULL;
	}
	rl->max_keys = max_keys;
	rl->window_s = window_s;
	pthread_mutex_init(&rl->mu, NULL);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < rl->n_buckets; i++) {
		struct rl_entry *e = rl->buckets[i];
		while (e) {
			struct rl_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	pthread_mutex_destroy(&rl->mu);
	free(rl->buckets);
	free(rl);
}

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return (size_t)h;
}

/* Drops windows that have ended: they carry no information any more. */
static void sweep(struct ratelimit *rl, int64_t now)
{
	for (size_t i = 0; i < rl->n_buckets; i++) {
		struct rl_entry **pp = &rl->buckets[i];
		while (*pp) {
			struct rl_entry *e = *pp;
			if (now >= e->w.start + rl->window_s) {
				*pp = e->next;
				free(e);
				rl->n_keys--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void ratelimit_hit(struct ratelimit *rl, const char *key, int limit, int64_t now,
                   struct rl_result *out)
{
	pthread_mutex_lock(&rl->mu);
	size_t b = hash(key) & (rl->n_buckets - 1);
	struct rl_entry *e = rl->buckets[b];
	while (e && strcmp(e->key, key) != 0)
		e = e->next;
	if (!e) {
		if (rl->n_keys >= rl->max_keys)
			sweep(rl, now);
		size_t n = strlen(key);
		if (rl->n_keys < rl->max_keys && (e = malloc(sizeof *e + n + 1))) {
			memcpy(e->key, key, n + 1);
			e->w.start = 0;
			e->w.count = 0;
			e->next = rl->buckets[b];
			rl->buckets[b] = e;
			rl->n_keys++;
		}
	}
	if (e) {
		ratelimit_step(&e->w, limit, rl->window_s, now, out);
	} else {
		struct rl_window fresh = {0, 0};
		rl->n_overflow++;
		ratelimit_step(&fresh, limit, rl->window_s, now, out);
	}
	pthread_mutex_unlock(&rl->mu);
}

size_t ratelimit_overflows(struct ratelimit *rl)
{
	pthread_mutex_lock(&rl->mu);
	size_t n = rl->n_overflow;
	pthread_mutex_unlock(&rl->mu);
	return n;
}
