/* http.h - what every client of an outside service shares: libcurl's one-time set-up, the
 * retry policy (which transport errors are worth another try, exponential backoff with
 * equal jitter), the protocol allow-list for a base URL, and freeing header lists that
 * held secrets. Thread-safe.
 */
#ifndef SFA_CLIENTS_HTTP_H
#define SFA_CLIENTS_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>

/* curl_global_init, once per process; returns its result every time. */
CURLcode http_global_init(void);
/* Transport failures that another attempt may cure (connect, timeout, reset, TLS). */
bool http_curl_retryable(CURLcode cc);
/* Delay before retry number `attempt` (from 1): base doubled per attempt up to max, half
 * of it fixed and half random so that clients that failed together do not retry together. */
long http_backoff_ms(long base_ms, long max_ms, int attempt);
/* The protocols libcurl may use for url: "http" for http:// URLs (tests, mirrors on a
 * LAN), else "https". */
const char *http_protocols_for(const char *url);
/* Zeroes every header line (they may hold keys or tokens) and frees the list. */
void http_headers_free(struct curl_slist *h);

#endif
