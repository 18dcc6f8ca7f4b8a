/* http.c - see http.h. */
#include "clients/http.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#include "util/err.h"
#include "util/log.h"

enum { SLEEP_SLICE_MS = 50, RETRY_AFTER_MAX_S = 1000000 };

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_OK;

static void init_once(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

CURLcode http_global_init(void)
{
	pthread_once(&g_once, init_once);
	return g_init_rc;
}

bool http_curl_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

/* Failures that happen before the request left this machine: safe to retry anything. */
static bool curl_before_send(CURLcode cc)
{
	return cc == CURLE_COULDNT_RESOLVE_HOST || cc == CURLE_COULDNT_CONNECT ||
	       cc == CURLE_SSL_CONNECT_ERROR;
}

long http_backoff_ms(long base_ms, long max_ms, int attempt)
{
	long d = base_ms;
	for (int i = 1; i < attempt && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	long half = d / 2;
	return half + (long)randombytes_uniform((uint32_t)half + 1);
}

static bool aborted(const volatile sig_atomic_t *flag) { return flag && *flag; }

void http_sleep_ms(long ms, const volatile sig_atomic_t *abort_flag)
{
	if (!abort_flag) {
		if (ms <= 0)
			return;
		struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
		}
		return;
	}
	while (ms > 0 && !aborted(abort_flag)) {
		long slice = ms < SLEEP_SLICE_MS ? ms : SLEEP_SLICE_MS;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = slice * 1000000L};
		nanosleep(&ts, NULL); /* EINTR (a cancel signal) just ends the slice */
		ms -= slice;
	}
}

const char *http_protocols_for(const char *url)
{
	return str_starts_with(url, "http://") ? "http" : "https";
}

void http_headers_free(struct curl_slist *h)
{
	for (struct curl_slist *s = h; s; s = s->next)
		sodium_memzero(s->data, strlen(s->data));
	curl_slist_free_all(h);
}

void http_resp_free(struct http_resp *rs)
{
	buf_free(&rs->body);
	free(rs->location);
	rs->location = NULL;
}

size_t http_body_sink(char *p, size_t size, size_t nmemb, void *ud)
{
	struct http_resp *rs = ud;
	size_t n = size * nmemb;
	int rc = buf_append(&rs->body, p, n);
	if (rc) {
		rs->body_rc = rc;
		return 0; /* makes curl stop with CURLE_WRITE_ERROR */
	}
	return n;
}

/* Status, Retry-After and the redirect target of a completed transfer. */
static void read_answer(CURL *h, struct http_resp *rs)
{
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
	curl_off_t ra = 0;
	if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		rs->retry_after_s = ra > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (long)ra;
	char *loc = NULL;
	if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) {
		rs->location = strdup(loc);
		if (!rs->location)
			rs->body_rc = SFA_ENOMEM;
	}
}

int http_perform(const struct http_policy *p, CURL *h, http_attempt_fn attempt, void *arg,
                 size_t max_body_bytes, struct http_resp *rs, char *err, size_t n_err)
{
	const char *who = p->service;
	int n_timeouts = 0;
	for (int i = 1;; i++) {
		if (aborted(p->abort_flag))
			return sfa_err(err, n_err, SFA_ECANCELED, "Cancelled.");
		http_resp_free(rs);
		memset(rs, 0, sizeof *rs);
		buf_init(&rs->body, max_body_bytes);
		CURLcode cc = attempt(arg, h, rs);
		if (cc == CURLE_OK)
			read_answer(h, rs);
		bool last = i >= p->max_tries;
		if (rs->body_rc == SFA_ETOOBIG)
			return sfa_err(err, n_err, SFA_ETOOBIG,
			               "%s's answer is larger than the %zu KiB allowed.", who,
			               max_body_bytes >> 10);
		if (rs->body_rc || cc == CURLE_OUT_OF_MEMORY)
			return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory reading %s's answer.",
			               who);
		if (cc == CURLE_ABORTED_BY_CALLBACK)
			return sfa_err(err, n_err, SFA_ECANCELED, "Cancelled.");
		if (cc == CURLE_READ_ERROR)
			return sfa_err(err, n_err, SFA_EIO,
			               "The file to upload could not be read.");
		if (cc != CURLE_OK) {
			bool timeout = cc == CURLE_OPERATION_TIMEDOUT;
			n_timeouts += timeout;
			bool again = http_curl_retryable(cc) &&
			             (p->idempotent || curl_before_send(cc)) && !last &&
			             n_timeouts < p->max_timeouts;
			if (!again) {
				if (timeout && p->timeout_ms > 0)
					return sfa_err(
						err, n_err, SFA_ETIMEOUT,
						"%s did not answer within %ld ms (%d tries).", who,
						p->timeout_ms, i);
				if (timeout)
					return sfa_err(err, n_err, SFA_ETIMEOUT,
					               "%s did not answer in time (%d tries).", who,
					               i);
				return sfa_err(err, n_err, SFA_EUPSTREAM,
				               "Could not talk to %s after %d tries: %s.", who, i,
				               curl_easy_strerror(cc));
			}
			log_warn("%s: %s, retrying (try %d of %d)", who, curl_easy_strerror(cc), i,
			         p->max_tries);
			http_sleep_ms(http_backoff_ms(p->backoff_base_ms, p->backoff_max_ms, i),
			              p->abort_flag);
			continue;
		}
		long st = rs->status;
		if (st == 429) {
			if (rs->retry_after_s > p->retry_after_cap_s)
				return sfa_err(
					err, n_err, SFA_EUPSTREAM,
					"%s is rate-limiting %s and asked to wait %ld s, longer "
					"than the %ld s we wait; try again later.",
					who, p->caller, rs->retry_after_s, p->retry_after_cap_s);
			if (last || !p->idempotent)
				return sfa_err(
					err, n_err, SFA_EUPSTREAM,
					"%s is still rate-limiting %s after %d tries; try again "
					"later.",
					who, p->caller, i);
			long wait = rs->retry_after_s > 0 ? rs->retry_after_s * 1000
			                                  : http_backoff_ms(p->backoff_base_ms,
			                                                    p->backoff_max_ms, i);
			log_warn("%s: rate-limited, waiting %ld ms (try %d of %d)", who, wait, i,
			         p->max_tries);
			http_sleep_ms(wait, p->abort_flag);
			continue;
		}
		if (st == 408 || st >= 500) {
			if (last || !p->idempotent)
				return sfa_err(err, n_err, SFA_EUPSTREAM,
				               "%s failed with HTTP %ld (%d tries).", who, st, i);
			log_warn("%s: HTTP %ld, retrying (try %d of %d)", who, st, i, p->max_tries);
			http_sleep_ms(http_backoff_ms(p->backoff_base_ms, p->backoff_max_ms, i),
			              p->abort_flag);
			continue;
		}
		return 0;
	}
}
