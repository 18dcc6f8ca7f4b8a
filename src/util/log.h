/* log.h - leveled log lines on stderr.
 *
 * Lines are "<RFC 3339 time> <level> <message>", written whole so lines from different
 * threads never interleave; control characters in a message become '?', so text from
 * outside cannot forge lines. Thread-safe. Nothing secret is ever passed here: callers
 * redact tokens, passwords and keys before logging.
 *
 * Busy lines (the HTTP server's request lines, thousands a second) go through
 * log_batched: between log_batch_start and log_batch_stop they are gathered and written
 * together when 64 KiB fill, 100 ms pass, or before any log_msg line (which never
 * overtakes them); otherwise log_batched is log_msg.
 */
#ifndef SFA_UTIL_LOG_H
#define SFA_UTIL_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_batched(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Starts the batch's flusher thread; stop writes what is left and joins it. */
void log_batch_start(void);
void log_batch_stop(void);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
