/* lalalai.h - a client of the lal.ai API v1.1 (cloud stem separation).
 *
 * Every call sends `X-License-Key`. The calls map one to one onto lal.ai's endpoints:
 * upload (raw body + Content-Disposition), split/multistem (with an idempotency key),
 * check (batched), cancel, delete, limits/minutes_left, plus plain GET downloads of the
 * result tracks to a file.
 *
 * Retries: network errors, 408, 429 and 5xx are retried with exponential backoff and
 * jitter (at most max_tries attempts); a 429's Retry-After is honoured up to
 * retry_after_cap_s, a longer one fails at once. Other 4xx are never retried. A split is
 * retried too: its idempotency key makes a repeated request safe (lal.ai answers
 * idempotency_key_used instead of charging twice).
 *
 * Transfers (upload, download) have no total timeout but a low-speed abort: less than
 * low_speed_bytes per second for low_speed_time_s seconds. Downloads go to "<dest>.part",
 * resume with a Range request after a connection that closed mid-body, are checked
 * against Content-Length and the size lal.ai announced, and are renamed to dest only when
 * complete.
 *
 * Errors (negative SFA_E* with a sentence in err; never the key):
 *   SFA_EAUTH      lal.ai answered 401 or 403: "lal.ai rejected the license key"
 *   SFA_EINVAL     400 / 422 validation errors (lal.ai's own detail in the sentence)
 *   LALALAI_EIDEMPOTENT (= SFA_ECONFLICT)  the split's idempotency key was used already
 *   SFA_ETOOBIG    400 exceeded_duration / max_duration / exceeded_size, or an answer or
 *                  download above its cap
 *   SFA_ENOTFOUND  a download answered 404 (the link expired)
 *   SFA_ETIMEOUT   no answer within the timeout, or a stalled transfer
 *   SFA_ECANCELED  *abort_flag became non-zero during a call
 *   SFA_EUPSTREAM  anything else: 5xx after the retries, malformed JSON, a truncated
 *                  download after the retries
 *   SFA_EIO / SFA_ENOMEM  local files, memory
 *
 * Threading: a client holds no mutable state after lalalai_client_new; it may be used
 * by several threads at once (each call uses its own CURL handle).
 */
#ifndef SFA_CLIENTS_LALALAI_H
#define SFA_CLIENTS_LALALAI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

enum {
	LALALAI_EIDEMPOTENT = SFA_ECONFLICT,
	LALALAI_ID_MAX = 128,    /* source and task ids (with the NUL) */
	LALALAI_MAX_TASKS = 32,  /* per check / cancel call */
	LALALAI_MAX_TRACKS = 16, /* result tracks per task */
	LALALAI_RESPONSE_MAX_BYTES = 1 << 20,
	LALALAI_URL_MAX = 2048,
};

/* Configuration. Strings are copied by lalalai_client_new; NULL or 0 picks the default. */
struct lalalai_config {
	const char *base_url;       /* default https://www.lalal.ai (no trailing /) */
	const char *license_key;    /* required */
	long connect_timeout_ms;    /* default 10000 */
	long timeout_ms;            /* whole-request limit of API calls; default 30000 */
	long low_speed_time_s;      /* transfers: abort when slower than ... for this long; 30 */
	long low_speed_bytes;       /* ... this many bytes per second; default 1024 */
	int max_tries;              /* attempts per request incl. the first; default 5 */
	long backoff_base_ms;       /* first retry delay before jitter; default 1000 */
	long backoff_max_ms;        /* a single delay never exceeds this; default 60000 */
	long retry_after_cap_s;     /* longest Retry-After honoured; default 60 */
	int64_t max_download_bytes; /* per result track; default 2 GiB */
	/* When non-NULL and non-zero, every call stops as soon as it can (SFA_ECANCELED).
	 * Set from a signal handler by the worker. */
	const volatile sig_atomic_t *abort_flag;
};

struct lalalai_client;

/* Returns 0 and *out (free with lalalai_client_free), SFA_EINVAL for a missing key or a
 * base URL that is not http(s), SFA_ENOMEM. */
int lalalai_client_new(const struct lalalai_config *cfg, struct lalalai_client **out, char *err,
                       size_t n_err);
void lalalai_client_free(struct lalalai_client *c);

/* Progress of a transfer: done and total bytes (total 0 when unknown). */
typedef void (*lalalai_progress_fn)(void *user, int64_t done, int64_t total);

/* What lal.ai says about an uploaded file. */
struct lalalai_source {
	char id[LALALAI_ID_MAX];
	double duration_s; /* 0 when lal.ai gave none */
	int64_t size;
};

/* POST /api/v1/upload/ with the file at path as the raw body and file_name (UTF-8) in
 * Content-Disposition. */
int lalalai_upload(struct lalalai_client *c, const char *path, const char *file_name,
                   lalalai_progress_fn progress, void *user, struct lalalai_source *out, char *err,
                   size_t n_err);

/* POST /api/v1/split/multistem/ with stem_list (n_stems of vocals, drum, piano, bass,
 * electric_guitar, acoustic_guitar), encoder_format wav. task_id receives the task. */
int lalalai_split(struct lalalai_client *c, const char *source_id, const char *const *stems,
                  size_t n_stems, const char *idempotency_key, char task_id[LALALAI_ID_MAX],
                  char *err, size_t n_err);

enum lalalai_state {
	LALALAI_UNKNOWN = 0, /* lal.ai did not mention the task */
	LALALAI_PROGRESS,    /* queued (progress 0) or running */
	LALALAI_SUCCESS,
	LALALAI_ERROR,
	LALALAI_CANCELLED,
	LALALAI_SERVER_ERROR,
};

struct lalalai_track {
	char type[16];  /* "stem" | "back" */
	char label[32]; /* "vocals", "drum", ..., "no_multistem" */
	char url[LALALAI_URL_MAX];
	int64_t size; /* -1 when not given */
};

struct lalalai_status {
	enum lalalai_state state;
	int progress;      /* 0..100 */
	double duration_s; /* success: lal.ai's duration */
	struct lalalai_track tracks[LALALAI_MAX_TRACKS];
	size_t n_tracks;
	char error[256]; /* error / server_error: lal.ai's text (printable) */
};

/* POST /api/v1/check/ for n task ids (1..LALALAI_MAX_TASKS); out[i] answers ids[i]. */
int lalalai_check(struct lalalai_client *c, const char *const *ids, size_t n,
                  struct lalalai_status *out, char *err, size_t n_err);

/* Parses a check answer (the body of a 200) for ids: the JSON half of lalalai_check,
 * for tests and fuzzing. Track URLs must be http(s). */
int lalalai_parse_check(const char *body, size_t n_body, const char *const *ids, size_t n,
                        struct lalalai_status *out, char *err, size_t n_err);

/* POST /api/v1/cancel/ for n task ids. ok[i] is true when lal.ai cancelled ids[i], false
 * when it answered that the task is not in progress (finished or unknown). */
int lalalai_cancel(struct lalalai_client *c, const char *const *ids, size_t n, bool *ok, char *err,
                   size_t n_err);

/* POST /api/v1/delete/ {"source_id"}. */
int lalalai_delete_source(struct lalalai_client *c, const char *source_id, char *err, size_t n_err);

/* POST /api/v1/limits/minutes_left/. */
int lalalai_minutes_left(struct lalalai_client *c, double *minutes, char *err, size_t n_err);

/* GET url (no key sent: result links are public) into dest via "<dest>.part". expect_size
 * is the size lal.ai announced, or -1. */
int lalalai_download(struct lalalai_client *c, const char *url, const char *dest,
                     int64_t expect_size, lalalai_progress_fn progress, void *user, char *err,
                     size_t n_err);

#endif
