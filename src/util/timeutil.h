/* timeutil.h - wall and monotonic clocks, RFC 3339 formatting. Thread-safe. */
#ifndef SFA_UTIL_TIMEUTIL_H
#define SFA_UTIL_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Formats t (UTC) as "2026-11-23T22:57:17Z" into out (at least 21 bytes). */
void time_format_rfc3339(time_t t, char *out, size_t n_out);
/* Formats t as an HTTP date ("Mon, 23 Nov 2026 22:57:17 GMT"), out at least 30 bytes. */
void time_format_http(time_t t, char *out, size_t n_out);
/* Monotonic milliseconds, for durations only. */
int64_t time_mono_ms(void);
/* Wall-clock milliseconds since the epoch, for times other processes read. */
int64_t time_real_ms(void);

#endif
