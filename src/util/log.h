/* log.h - leveled log lines on stderr.
 *
 * Lines are "<RFC 3339 time> <level> <message>", one write(2) per line so lines from
 * different threads never interleave; control characters in a message become '?', so
 * text from outside cannot forge lines. Thread-safe. Nothing secret is ever passed here:
 * callers redact tokens, passwords and keys before logging.
 */
#ifndef SFA_UTIL_LOG_H
#define SFA_UTIL_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
