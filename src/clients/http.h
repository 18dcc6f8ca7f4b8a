/* http.h - what every client of an outside service shares: libcurl's one-time set-up, the
 * request loop with its retry policy (which transport errors are worth another try,
 * 408/429/5xx answers, Retry-After, exponential backoff with equal jitter, a cap on
 * timeouts), the response body gathered under a cap, the protocol allow-list for a base
 * URL, and freeing header lists that held secrets.
 *
 * A client describes one attempt (headers, options, body) as an http_attempt_fn and hands
 * it to http_perform, which runs it as often as the policy allows and turns every way of
 * failing into a sentence naming the service. Thread-safe: nothing here is shared between
 * calls; a CURL handle and a response belong to the thread performing them.
 */
#ifndef SFA_CLIENTS_HTTP_H
#define SFA_CLIENTS_HTTP_H

#include <curl/curl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/str.h"

/* curl_global_init, once per process; returns its result every time. */
CURLcode http_global_init(void);
/* Transport failures that another attempt may cure (connect, timeout, reset, TLS). */
bool http_curl_retryable(CURLcode cc);
/* Delay before retry number `attempt` (from 1): base doubled per attempt up to max, half
 * of it fixed and half random so that clients that failed together do not retry together. */
long http_backoff_ms(long base_ms, long max_ms, int attempt);
/* Sleeps ms; with an abort flag, in short slices that end as soon as it is set. */
void http_sleep_ms(long ms, const volatile sig_atomic_t *abort_flag);
/* The protocols libcurl may use for url: "http" for http:// URLs (tests, mirrors on a
 * LAN), else "https" (static strings). */
const char *http_protocols_for(const char *url);
/* Zeroes every header line (they may hold keys or tokens) and frees the list. */
void http_headers_free(struct curl_slist *h);

/* One answer. The body is the caller's to free with http_resp_free in every case. */
struct http_resp {
	long status;
	struct buf body;    /* capped at the request's max_body_bytes */
	long retry_after_s; /* 0 when absent */
	char *location;     /* absolute redirect target (malloced) or NULL */
	int body_rc;        /* SFA_ETOOBIG / SFA_ENOMEM when the body sink refused */
};
void http_resp_free(struct http_resp *rs);
/* CURLOPT_WRITEFUNCTION for CURLOPT_WRITEDATA = a struct http_resp. */
size_t http_body_sink(char *p, size_t size, size_t nmemb, void *rs);

/* Sets the handle up for one attempt and performs it (curl_easy_perform's result); the
 * body goes to rs through http_body_sink. Status, Retry-After and Location are read by
 * http_perform afterwards. */
typedef CURLcode (*http_attempt_fn)(void *arg, CURL *h, struct http_resp *rs);

struct http_policy {
	const char *service; /* "Spotify", "lal.ai": names it in sentences and logs */
	const char *caller;  /* who is rate-limited: "this app", "this server" */
	int max_tries;       /* attempts in all (>= 1) */
	int max_timeouts;    /* timeouts after which no other attempt is made */
	long backoff_base_ms;
	long backoff_max_ms;
	long retry_after_cap_s; /* a longer Retry-After fails at once */
	long timeout_ms;        /* named in the timeout sentence; 0: no total limit to name */
	bool idempotent;        /* otherwise only failures before sending are tried again */
	const volatile sig_atomic_t *abort_flag; /* NULL: never; set: "Cancelled." */
};

/* Performs attempts until one gets an answer whose status is neither 408, 429 nor 5xx,
 * which it returns with 0 in *rs (the caller judges 2xx/3xx/4xx), or fails with a
 * negative code and a sentence in err. *rs starts zeroed or holding an earlier answer,
 * which is freed; each attempt starts it afresh with a body cap of max_body_bytes. The
 * caller frees it with http_resp_free in every case. */
int http_perform(const struct http_policy *p, CURL *h, http_attempt_fn attempt, void *arg,
                 size_t max_body_bytes, struct http_resp *rs, char *err, size_t n_err);

#endif
