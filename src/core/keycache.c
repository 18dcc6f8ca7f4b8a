/* keycache.c - see keycache.h. */
#include "core/keycache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	char hash[65]; /* "" when empty */
	int64_t at_ms;
	struct db_user user;
};

struct keycache {
	pthread_mutex_t mu;
	unsigned n;
	int ttl_ms;
	struct slot *slots;
};

struct keycache *keycache_new(unsigned n_slots, int ttl_ms)
{
	struct keycache *kc = calloc(1, sizeof *kc);
	if (!kc || n_slots == 0 || !(kc->slots = calloc(n_slots, sizeof *kc->slots))) {
		free(kc);
		return NULL;
	}
	pthread_mutex_init(&kc->mu, NULL);
	kc->n = n_slots;
	kc->ttl_ms = ttl_ms;
	return kc;
}

void keycache_free(struct keycache *kc)
{
	if (!kc)
		return;
	pthread_mutex_destroy(&kc->mu);
	free(kc->slots);
	free(kc);
}

/* The hash is already uniform: its first eight hex digits pick the slot. */
static struct slot *slot_of(struct keycache *kc, const char *h)
{
	unsigned v = 0;
	for (int i = 0; i < 8 && h[i]; i++)
		v = v * 16 + (unsigned)(h[i] <= '9' ? h[i] - '0' : (h[i] | 0x20) - 'a' + 10);
	return &kc->slots[v % kc->n];
}

bool keycache_get(struct keycache *kc, const char *key_hash, int64_t now_ms, struct db_user *out)
{
	pthread_mutex_lock(&kc->mu);
	struct slot *s = slot_of(kc, key_hash);
	bool hit = strcmp(s->hash, key_hash) == 0 && now_ms - s->at_ms < kc->ttl_ms &&
	           now_ms >= s->at_ms;
	if (hit)
		*out = s->user;
	pthread_mutex_unlock(&kc->mu);
	return hit;
}

void keycache_put(struct keycache *kc, const char *key_hash, int64_t now_ms,
                  const struct db_user *u)
{
	if (strlen(key_hash) >= sizeof((struct slot *)0)->hash)
		return;
	pthread_mutex_lock(&kc->mu);
	struct slot *s = slot_of(kc, key_hash);
	memcpy(s->hash, key_hash, strlen(key_hash) + 1);
	s->at_ms = now_ms;
	s->user = *u;
	pthread_mutex_unlock(&kc->mu);
}

void keycache_forget(struct keycache *kc, const char *key_hash)
{
	pthread_mutex_lock(&kc->mu);
	struct slot *s = slot_of(kc, key_hash);
	if (strcmp(s->hash, key_hash) == 0)
		s->hash[0] = '\0';
	pthread_mutex_unlock(&kc->mu);
}
