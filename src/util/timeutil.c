/* timeutil.c - see timeutil.h. */
#include "util/timeutil.h"

void time_format_rfc3339(time_t t, char *out, size_t n_out)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n_out, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void time_format_http(time_t t, char *out, size_t n_out)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n_out, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_real_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
