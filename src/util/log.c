/* log.c - see log.h. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "util/err.h"
#include "util/timeutil.h"

static enum log_level g_level = LOG_INFO;

void log_set_level(enum log_level level) { g_level = level; }

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	char line[2048];
	if (level < g_level)
		return;
	char ts[32];
	time_format_rfc3339(time(NULL), ts, sizeof ts);
	int n = snprintf(line, sizeof line, "%s %s ", ts, names[level]);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	/* One event, one line: control characters from outside text (a path, a tag) must not
	 * start forged lines or drive a terminal, so each becomes '?'. */
	for (size_t i = (size_t)n; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
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
