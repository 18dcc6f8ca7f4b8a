/* log.c - see log.h. */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/timeutil.h"

static enum log_level g_level = LOG_INFO;

void log_set_level(enum log_level level) { g_level = level; }

enum { LINE_MAX_BYTES = 2048, BATCH_BYTES = 64 * 1024, BATCH_MS = 100 };

/* The batch (log_batched): lines wait here until it fills, BATCH_MS pass, an unbatched
 * line comes (which must not overtake them) or log_batch_stop. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static char g_batch[BATCH_BYTES];
static size_t g_batch_len;
static bool g_batching, g_stopping;
static pthread_t g_flusher;

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			return; /* nowhere to report a failing log; the line is dropped */
		p += w;
		n -= (size_t)w;
	}
}

/* Caller holds g_mu. */
static void flush_locked(void)
{
	write_all(g_batch, g_batch_len);
	g_batch_len = 0;
}

/* "<time> <level> <message>\n" into line (LINE_MAX_BYTES); returns its length. */
static size_t format_line(char *line, enum log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char ts[32];
	time_format_rfc3339(time(NULL), ts, sizeof ts);
	int n = snprintf(line, LINE_MAX_BYTES, "%s %s ", ts, names[level]);
	int m = vsnprintf(line + n, LINE_MAX_BYTES - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > LINE_MAX_BYTES - 2)
		len = LINE_MAX_BYTES - 2;
	/* One event, one line: control characters from outside text (a path, a tag) must not
	 * start forged lines or drive a terminal, so each becomes '?'. */
	for (size_t i = (size_t)n; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[len++] = '\n';
	return len;
}

/* One line: batched when asked and a batch is running, else written at once after the
 * batch (which it must not overtake). */
static void vlog(enum log_level level, bool batched, const char *fmt, va_list ap)
{
	if (level < g_level)
		return;
	char line[LINE_MAX_BYTES];
	size_t len = format_line(line, level, fmt, ap);
	pthread_mutex_lock(&g_mu);
	if (batched && g_batching) {
		if (g_batch_len + len > sizeof g_batch)
			flush_locked();
		memcpy(g_batch + g_batch_len, line, len);
		g_batch_len += len;
		pthread_mutex_unlock(&g_mu);
		return;
	}
	if (g_batch_len)
		flush_locked();
	pthread_mutex_unlock(&g_mu);
	write_all(line, len); /* one write(2): lines of different threads never interleave */
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, false, fmt, ap);
	va_end(ap);
}

void log_batched(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(level, true, fmt, ap);
	va_end(ap);
}

static void *flusher(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&g_mu);
	while (!g_stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += BATCH_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&g_wake, &g_mu, &until);
		if (g_batch_len)
			flush_locked();
	}
	pthread_mutex_unlock(&g_mu);
	return NULL;
}

void log_batch_start(void)
{
	pthread_mutex_lock(&g_mu);
	bool start = !g_batching;
	g_stopping = false;
	g_batching = start && pthread_create(&g_flusher, NULL, flusher, NULL) == 0;
	pthread_mutex_unlock(&g_mu);
}

void log_batch_stop(void)
{
	pthread_mutex_lock(&g_mu);
	bool was = g_batching;
	g_batching = false;
	g_stopping = true;
	pthread_cond_signal(&g_wake);
	pthread_mutex_unlock(&g_mu);
	if (was)
		pthread_join(g_flusher, NULL);
	pthread_mutex_lock(&g_mu);
	if (g_batch_len)
		flush_locked();
	pthread_mutex_unlock(&g_mu);
}

int sfa_err(char *err, size_t n_err, int code, const char *fmt, ...)
{
	if (err && n_err > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, n_err, fmt, ap);
		va_end(ap);
	}
	return code;
}
