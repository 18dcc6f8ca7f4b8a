/* http.c - see http.h. */
#include "clients/http.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "util/str.h"

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
	case CURLE_HTTP2_STREAM: return true;
	default: return false;
	}
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
