/* ratelimit.c - see ratelimit.h. Chained hash table, FNV-1a over the key. */
#include "core/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "util/log.h"

/* The verdict on a window opened at start that has had hits requests, this one included. */
static void verdict(int64_t start, int hits, int limit, int window_s, int64_t now,
                    struct rl_result *out)
{
	out->limit = limit;
	out->reset_at = start + window_s;
	out->allowed = hits <= limit;
	out->remaining = out->allowed ? limit - hits : 0;
	int64_t wait = out->reset_at - now;
	out->retry_after_s = out->allowed ? 0 : wait < 1 ? 1 : (int)wait;
}

void ratelimit_step(struct rl_window *w, int limit, int window_s, int64_t now,
                    struct rl_result *out)
{
	if (w->start == 0 || now >= w->start + window_s) {
		w->start = now;
		w->count = 0;
	}
	if (w->count <= limit) /* past the limit the count stays: refused is refused */
		w->count++;
	verdict(w->start, w->count, limit, window_s, now, out);
}

struct rl_entry {
	struct rl_entry *next;
	struct rl_window w; /* shared mode: the window as the database last gave it */
	int pending;        /* shared mode: hits let through here, not yet counted there */
	bool refused;       /* shared mode: the database said the window is full */
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
	struct db *shared;          /* the windows live in this database instead (ratelimit.h) */
	atomic_uint shared_hits;    /* writes to it, to sweep ended windows now and then */
	atomic_llong shared_logged; /* when a failure of it was last logged */
};

enum { SHARED_SWEEP_EVERY = 4096 };

struct ratelimit *ratelimit_new(size_t max_keys, int window_s, struct db *shared)
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
	rl->shared = shared;
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

/* key's entry, made when missing (mutex held); NULL when the table is full. */
static struct rl_entry *entry(struct ratelimit *rl, const char *key, int64_t now)
{
	size_t b = hash(key) & (rl->n_buckets - 1);
	struct rl_entry *e = rl->buckets[b];
	while (e && strcmp(e->key, key) != 0)
		e = e->next;
	if (e)
		return e;
	if (rl->n_keys >= rl->max_keys)
		sweep(rl, now);
	size_t n = strlen(key);
	if (rl->n_keys >= rl->max_keys || !(e = malloc(sizeof *e + n + 1)))
		return NULL;
	memcpy(e->key, key, n + 1);
	e->w.start = 0;
	e->w.count = 0;
	e->pending = 0;
	e->refused = false;
	e->next = rl->buckets[b];
	rl->buckets[b] = e;
	rl->n_keys++;
	return e;
}

/* Whether a hit on e may pass without asking the database (mutex held; ratelimit.h): the
 * window is known and either full, or this server's uncounted hits stay under an eighth of
 * what is left of the first half of the limit. */
static bool shared_local(struct ratelimit *rl, struct rl_entry *e, int limit, int64_t now,
                         struct rl_result *out)
{
	if (e->w.start == 0 || now >= e->w.start + rl->window_s) {
		e->w.start = 0;
		e->pending = 0;
		e->refused = false;
		return false;
	}
	if (e->refused) {
		verdict(e->w.start, limit + 1, limit, rl->window_s, now, out);
		return true;
	}
	if (e->pending + 1 > (limit / 2 - e->w.count) / 8)
		return false;
	e->pending++;
	verdict(e->w.start, e->w.count + e->pending, limit, rl->window_s, now, out);
	return true;
}

/* The window in the shared database, told this server's uncounted hits and this one. When
 * the database cannot count, the request passes (it will meet the same database in its
 * handler) and the failure is logged once a minute. */
static void shared_hit(struct ratelimit *rl, const char *key, int limit, int64_t now,
                       struct rl_result *out)
{
	pthread_mutex_lock(&rl->mu);
	struct rl_entry *e = entry(rl, key, now);
	if (e && shared_local(rl, e, limit, now, out)) {
		pthread_mutex_unlock(&rl->mu);
		return;
	}
	int n = 1;
	if (e) {
		n += e->pending;
		e->pending = 0;
	}
	pthread_mutex_unlock(&rl->mu);
	int64_t start = now;
	int hits = n;
	if (db_rate_hit(rl->shared, key, rl->window_s, now, n, &start, &hits)) {
		long long last = atomic_load(&rl->shared_logged);
		if (now - last >= 60 &&
		    atomic_compare_exchange_strong(&rl->shared_logged, &last, now))
			log_error("rate limits: the database could not count a request; letting "
			          "requests through until it can");
		verdict(now, 1, limit, rl->window_s, now, out);
		return;
	}
	verdict(start, hits, limit, rl->window_s, now, out);
	pthread_mutex_lock(&rl->mu);
	/* Looked up again: the entry may have been swept meanwhile. Another thread's answer
	 * may be newer than this one: the later window, then the higher count, wins. */
	if ((e = entry(rl, key, now)) &&
	    (start > e->w.start || (start == e->w.start && hits > e->w.count))) {
		e->w.start = start;
		e->w.count = hits;
		e->refused = hits >= limit;
	}
	pthread_mutex_unlock(&rl->mu);
	if (atomic_fetch_add(&rl->shared_hits, 1) % SHARED_SWEEP_EVERY == SHARED_SWEEP_EVERY - 1)
		db_rate_sweep(rl->shared, rl->window_s, now);
}

void ratelimit_hit(struct ratelimit *rl, const char *key, int limit, int64_t now,
                   struct rl_result *out)
{
	if (rl->shared) {
		shared_hit(rl, key, limit, now, out);
		return;
	}
	pthread_mutex_lock(&rl->mu);
	struct rl_entry *e = entry(rl, key, now);
	if (e) {
		ratelimit_step(&e->w, limit, rl->window_s, now, out);
	} else {
		struct rl_window fresh = {0, 0};
		rl->n_overflow++;
		ratelimit_step(&fresh, limit, rl->window_s, now, out);
	}
	pthread_mutex_unlock(&rl->mu);
}

size_t ratelimit_shared_writes(struct ratelimit *rl) { return atomic_load(&rl->shared_hits); }

size_t ratelimit_overflows(struct ratelimit *rl)
{
	pthread_mutex_lock(&rl->mu);
	size_t n = rl->n_overflow;
	pthread_mutex_unlock(&rl->mu);
	return n;
}
