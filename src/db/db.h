/* db.h - the database interface. Handlers and core logic see only this header.
 *
 * db.c implements it once over a driver (driver.h): SQLite in WAL mode (driver_sqlite.c,
 * one writer connection behind a mutex and up to n_pool readers beside it) by default, or
 * PostgreSQL (driver_pg.c, a pool of connections) when db_open is given a postgresql://
 * URL. Every function here is one atomic unit and may be called from any thread; the ones
 * that only read run at once on both, and never wait for a write.
 *
 * Re-entrancy: no function here calls back into its caller. Lists are returned whole, as
 * arrays allocated from the caller's arena, so a caller is free to call the database again
 * for each row. The functions are not re-entrant: db.c records which thread holds a
 * connection, and a second call on that thread while it holds one (only possible from code
 * the backend itself would call) aborts with a message naming both functions.
 *
 * Transactions: between db_tx_begin and db_tx_commit (or db_tx_rollback) the calling
 * thread keeps its connection; every function it calls joins the transaction, and other
 * threads' transactions wait (on SQLite every other writing call waits). So a transaction must be
 * short and call nothing but this header: never wait for another thread inside one.
 * Functions documented as transactions of their own (db_track_cancel_jobs,
 * db_track_upsert_spotify, db_analysis_insert) cannot be nested.
 *
 * Conventions: functions return 0 or a negative SFA_E* code (SFA_ENOTFOUND for a missing
 * row, SFA_ECONFLICT for a constraint violation such as a taken unique key, SFA_EDB for
 * anything else, with the reason logged, never shown to users). Out-structs are written
 * only on success. Times are unix seconds. Every lookup of a user's resource takes the
 * user id, so scoping cannot be forgotten by a caller.
 */
#ifndef SFA_DB_DB_H
#define SFA_DB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/arena.h"
#include "util/uuid.h"

struct db;

enum { DB_EMAIL_MAX = 254, DB_HASH_MAX = 128, DB_NAME_MAX = 100 };

struct db_user {
	char id[UUID_STR_LEN];
	char email[DB_EMAIL_MAX + 1];
	char password_hash[DB_HASH_MAX];
	char status[16]; /* "active" | "suspended" */
	char role[16];   /* "user" | "admin" */
	int64_t created_at;
	bool password_set; /* false for accounts made by Spotify log-in until they set one */
};

struct db_api_key {
	char id[UUID_STR_LEN];
	char name[DB_NAME_MAX + 1];
	char prefix[16];
	int64_t created_at;
	int64_t last_used_at; /* 0: never */
	int64_t revoked_at;   /* 0: active */
};

/* A transaction on this thread (see above). Begin takes the write lock at once. */
int db_tx_begin(struct db *db);
/* Commits; on failure everything is rolled back and SFA_EDB returned. */
int db_tx_commit(struct db *db);
void db_tx_rollback(struct db *db);

enum { DB_POOL_DEFAULT = 16 };

/* Opens the database and applies pending migrations. target is a SQLite file (created
 * when missing) or a postgresql:// (postgres://) URL; n_pool is the most PostgreSQL
 * connections open at once, or SQLite readers beside its one writer (<= 0:
 * DB_POOL_DEFAULT). err is a sentence for the user, naming a URL without its password.
 * *out is the caller's: db_close frees it. */
int db_open(const char *target, int n_pool, struct db **out, char *err, size_t n_err);
void db_close(struct db *db);
/* A cheap query proving the database answers; err says why not. */
int db_ping(struct db *db, char *err, size_t n_err);
int db_schema_version(struct db *db);
/* True when processes on other machines may share this database (PostgreSQL), false for a
 * SQLite file (one machine; one process runs its jobs). Counters that must hold across
 * servers (rate limits) then live in it. */
bool db_is_shared(const struct db *db);

/* ---- Notifications between processes -------------------------------------------------- */

/* A payload is shorter than this. Listeners read what arrived; a notification says that
 * something changed (the rows are the truth), so one that is lost (a listener's connection
 * broke) costs only latency, and every user of them keeps a slower poll as a safety net. */
enum { DB_NOTIFY_MAX = 256 };

struct db_listener;

/* Sends payload on channel (a plain identifier) to every listener of the database: on
 * PostgreSQL every process's (NOTIFY; inside a transaction it is sent at commit), on SQLite
 * those of this process (db_listen on the same db). 0, SFA_EINVAL (too long) or SFA_EDB. */
int db_notify(struct db *db, const char *channel, const char *payload);
/* A new listener on channel (caller frees with db_listener_close, before db_close). On
 * PostgreSQL it has a connection of its own, reconnected after a break. Threading: a
 * listener is read by one thread; db_notify may run on any. */
int db_listen(struct db *db, const char *channel, struct db_listener **out);
/* The descriptor to poll for input; -1 while its connection is broken (then call
 * db_listener_next now and then: it reconnects). */
int db_listener_fd(struct db_listener *l);
/* Copies the next payload into out: 1, 0 when none is waiting, or SFA_EDB when the
 * connection is broken. Does not block (but to reconnect). */
int db_listener_next(struct db_listener *l, char *out, size_t n_out);
void db_listener_close(struct db_listener *l);

/* Users. Emails are compared case-insensitively (stored as given, unique on lower()). */
int db_user_insert(struct db *db, const struct db_user *u);
int db_user_by_email(struct db *db, const char *email, struct db_user *out);
int db_user_by_id(struct db *db, const char *id, struct db_user *out);
int db_user_set_email(struct db *db, const char *user_id, const char *email);
/* The account has only an unknown random password (made by Spotify log-in). */
int db_user_mark_passwordless(struct db *db, const char *user_id);
int db_user_set_password(struct db *db, const char *user_id, const char *password_hash);

/* Sessions, keyed by the hex SHA-256 of the cookie token. */
int db_session_insert(struct db *db, const char *token_hash, const char *user_id,
                      int64_t expires_at, bool remember);
/* The active user of an unexpired session. */
int db_session_user(struct db *db, const char *token_hash, int64_t now, struct db_user *out);
int db_session_delete(struct db *db, const char *token_hash);
/* Deletes every session of the user except keep_hash (NULL: all). */
int db_session_delete_others(struct db *db, const char *user_id, const char *keep_hash);

/* API keys, keyed by the hex SHA-256 of the key. */
int db_api_key_insert(struct db *db, const char *user_id, const struct db_api_key *k,
                      const char *key_hash);
/* The active owner of an unrevoked key; also records last use (to the minute: the time is
 * written when the stored one is a minute old or more). */
int db_api_key_user(struct db *db, const char *key_hash, int64_t now, struct db_user *out);
/* Lists up to n_max keys of the user, newest first. *n_out is the number written. */
int db_api_key_list(struct db *db, const char *user_id, struct db_api_key *out, size_t n_max,
                    size_t *n_out);
/* key_hash (65 bytes, may be NULL) receives the revoked key's hash, so whatever it opened
 * (a socket) can be closed too. */
int db_api_key_revoke(struct db *db, const char *user_id, const char *key_id, int64_t now,
                      char *key_hash);

/* ---- Tracks ---------------------------------------------------------------------- */

enum { DB_TEXT_MAX = 512, DB_URL_MAX = 1024, DB_PATH_MAX = 1024 };

struct db_track {
	char id[UUID_STR_LEN];
	char user_id[UUID_STR_LEN];
	char spotify_id[32]; /* "" when none */
	char title[DB_TEXT_MAX];
	char artist[DB_TEXT_MAX];
	char album[DB_TEXT_MAX];
	char album_art_url[DB_URL_MAX];
	char spotify_url[256];
	char isrc[32];
	int64_t duration_s;           /* 0: unknown */
	char source[16];              /* "spotify" | "upload" */
	char audio_path[DB_PATH_MAX]; /* relative to data/uploads (the /files/ URL space);
	                                 "" until there is audio */
	char audio_format[32];
	int64_t audio_size;
	int audio_rate_hz;
	int audio_channels;
	double audio_duration_s;
	int64_t created_at;
	int64_t updated_at;
	char parent_id[UUID_STR_LEN]; /* the track this one was rendered from; "" when none */
	char transform[128];          /* how, as JSON {"semitones", "tempo_ratio"}; "" when none */
};

int db_track_insert(struct db *db, const struct db_track *t);
int db_track_get(struct db *db, const char *user_id, const char *id, struct db_track *out);
/* The orders of a library listing. By tempo and key (Camelot wheel: 1A, 1B, 2A ... 12B)
 * the latest analysis that has them counts, and tracks without one come last; ties go
 * newest first. */
enum db_track_sort {
	DB_SORT_NEWEST,
	DB_SORT_OLDEST,
	DB_SORT_TITLE,
	DB_SORT_ARTIST,
	DB_SORT_DURATION,
	DB_SORT_TEMPO,
	DB_SORT_KEY,
};
/* The user's tracks in that order, whose title or artist contains q (NULL: all), skipping
 * offset and at most limit: *out (from a, NULL when none) holds *n_out rows; *total
 * receives the number matching. */
int db_track_list(struct db *db, const char *user_id, const char *q, enum db_track_sort sort,
                  int64_t offset, int64_t limit, struct arena *a, struct db_track **out,
                  size_t *n_out, int64_t *total);
/* What a library row (and a DJ export) shows of a track beyond its own columns: tempo,
 * key and Camelot code of its latest analysis that has them (0 / "" when none), its grid
 * anchor and sections, and how many stems its latest separation made. */
struct db_track_summary {
	double tempo_bpm;
	double first_beat_s; /* the first bar's start (else the first beat) of the analysis the
	                        tempo is from; -1 when it has no beat */
	const char *sections_json; /* the latest analysis's sections (a JSON array, from a);
	                              NULL when none has them */
	char key[32];
	char camelot[8];
	int n_stems;
};
/* One summary per track of tracks[0..n), in the same order, into *out (from a). */
int db_track_summaries(struct db *db, const char *user_id, const struct db_track *tracks, size_t n,
                       struct arena *a, struct db_track_summary **out);
/* The version of the user's library: the database raises it on every write to the user's
 * tracks, analyses and stems (triggers, so writes by job processes and other servers
 * count too); 0 before the first. Read it before the rows it versions. */
int db_library_version(struct db *db, const char *user_id, int64_t *out);
int db_track_update_meta(struct db *db, const char *user_id, const char *id, const char *title,
                         const char *artist, const char *album);
int db_track_set_audio(struct db *db, const char *id, const struct db_track *audio);
int db_track_delete(struct db *db, const char *user_id, const char *id);

/* ---- Jobs -------------------------------------------------------------------------- */

enum { DB_JSON_SMALL = 4096, DB_ERROR_MAX = 1024 };

struct db_job {
	char id[UUID_STR_LEN];
	char user_id[UUID_STR_LEN];
	char track_id[UUID_STR_LEN]; /* "" when none */
	char type[16];   /* a name in jobs/registry.h: "download", "processing", "lalalai"... */
	char status[16]; /* "queued", a running phase ("running", "downloading",
	                      "processing", "analyzing"), "completed" | "failed" */
	int progress;    /* 0..100 */
	char message[256];
	int attempts;
	int max_attempts;
	int64_t run_at;
	char error[DB_ERROR_MAX];
	char payload[DB_JSON_SMALL]; /* JSON object */
	char result[DB_JSON_SMALL];  /* JSON object, "" until completed */
	bool cancel_requested;
	int64_t created_at, started_at, finished_at; /* 0: not yet */
};

bool db_job_status_is_running(const char *status);

int db_job_insert(struct db *db, const struct db_job *j);
/* user_id NULL: any owner (the scheduler); else scoped to that user. */
int db_job_get(struct db *db, const char *user_id, const char *id, struct db_job *out);
int db_job_owned(struct db *db, const char *user_id, const char *job_id);
/* The user's jobs, newest first, optionally of one status, of some types (a NULL-terminated
 * list of at most DB_JOB_TYPES_MAX stored type names: the API's ?type=processing selects
 * local and lal.ai separations) and of one track (each NULL: any); as db_track_list. */
enum { DB_JOB_TYPES_MAX = 3 };
int db_job_list(struct db *db, const char *user_id, const char *status, const char *const *types,
                const char *track_id, int64_t offset, int64_t limit, struct arena *a,
                struct db_job **out, size_t *n_out, int64_t *total);
/* Atomically moves the oldest due queued job of type to "running" (attempts + 1), without a
 * lease (as db_job_claim_leased with owner NULL). */
int db_job_claim(struct db *db, const char *type, int64_t now, struct db_job *out);
/* The same, leased to owner (a scheduler's node id) until lease_expires_at: until then no
 * other node touches it; afterwards db_job_expire_leases on any node takes it back. */
int db_job_claim_leased(struct db *db, const char *type, int64_t now, const char *owner,
                        int64_t lease_expires_at, struct db_job *out);
/* Extends owner's lease of a running job to lease_expires_at and reads whether a cancel was
 * requested. SFA_ENOTFOUND when the job is no longer owner's to run (it finished, its row
 * is gone, or its lease passed and another node took it back). */
int db_job_renew(struct db *db, const char *id, const char *owner, int64_t lease_expires_at,
                 bool *cancel_requested);
/* Running jobs whose lease passed before now (their node died or stalled) go back to the
 * queue, or fail when out of attempts or cancelled. Returns the number touched, or a
 * negative code. Any node may call it at any time. */
int db_job_expire_leases(struct db *db, int64_t now);
int db_job_progress(struct db *db, const char *id, const char *status, int progress,
                    const char *message);
/* Final states. result may be NULL. */
int db_job_complete(struct db *db, const char *id, const char *result_json, int64_t now);
int db_job_fail(struct db *db, const char *id, const char *error, int64_t now);
/* Puts a job back in the queue to run at run_at, keeping error as the last failure. */
int db_job_requeue(struct db *db, const char *id, int64_t run_at, const char *error,
                   bool refund_attempt);
/* Queued: fails it with "cancelled" at once. Running: sets cancel_requested.
 * SFA_ECONFLICT when it already finished. *was_running tells which happened. */
int db_job_cancel(struct db *db, const char *user_id, const char *id, int64_t now,
                  bool *was_running);
bool db_job_cancel_requested(struct db *db, const char *id);
/* Start-up recovery: running jobs go back to the queue, or fail when out of attempts.
 * owner NULL: every running job (the one process that runs jobs on a SQLite database);
 * else only jobs leased to owner (a node id that survived its restart) or without a lease.
 * Returns the number of jobs touched, or a negative code. */
int db_job_recover(struct db *db, int64_t now, const char *owner);
/* Cancels every active job of the track in one transaction: queued ones fail with
 * "cancelled" at once, running ones get cancel_requested (the scheduler stops them).
 * *n_running receives how many were running. */
int db_track_cancel_jobs(struct db *db, const char *user_id, const char *track_id, int64_t now,
                         int *n_running);
/* How many of the track's jobs are running (their worker has not ended) and queued. */
int db_track_job_counts(struct db *db, const char *user_id, const char *track_id, int *n_running,
                        int *n_queued);
/* Active (queued or running) job of type for the track, if any. */
int db_job_active_for_track(struct db *db, const char *user_id, const char *track_id,
                            const char *type, struct db_job *out);

/* ---- Stems and analyses ------------------------------------------------------------ */

struct db_stem {
	char id[UUID_STR_LEN];
	char user_id[UUID_STR_LEN];
	char track_id[UUID_STR_LEN];
	char job_id[UUID_STR_LEN];
	char stem_type[32];
	char file_path[DB_PATH_MAX]; /* relative to the data dir */
	int64_t file_size;
	char format[16];
	double duration_s;
	char engine[16];
	char model[32];
	int64_t created_at;
};

int db_stem_insert(struct db *db, const struct db_stem *s);
/* Removes the stem rows of one separation job (a retry's leftovers). */
int db_stem_delete_for_job(struct db *db, const char *job_id);
int db_stem_get(struct db *db, const char *user_id, const char *id, struct db_stem *out);
/* Stems of one separation job (job_id), or of the track's latest job that has stems
 * (job_id NULL), in insertion order: *out (from a, NULL when none) holds *n_out rows. */
int db_stem_list(struct db *db, const char *user_id, const char *track_id, const char *job_id,
                 struct arena *a, struct db_stem **out, size_t *n_out);
/* Every stem of the track, of every separation; as db_stem_list. */
int db_stem_list_all(struct db *db, const char *user_id, const char *track_id, struct arena *a,
                     struct db_stem **out, size_t *n_out);

/* Stores the analysis a job made, replacing one an earlier attempt of that job stored. */
int db_analysis_insert(struct db *db, const char *user_id, const char *track_id, const char *job_id,
                       const char *result_json, int64_t now);
/* The latest analysis of the track: *out_json is malloced (caller frees). */
int db_analysis_latest(struct db *db, const char *user_id, const char *track_id, char **out_json);
/* The analysis a job produced: *out_json is malloced (caller frees). */
int db_analysis_for_job(struct db *db, const char *user_id, const char *job_id, char **out_json);

/* ---- Spotify ----------------------------------------------------------------------- */

/* Inserts or refreshes n Spotify tracks of the user in one transaction, keyed by
 * (user, spotify_id). In: each tracks[i] has spotify_id and the metadata set, and a fresh
 * id used only when the track is new. An existing track keeps its id, audio and the
 * title/artist/album the user may have edited; its album art, link, ISRC and duration
 * are refreshed. Out: each tracks[i] is overwritten with the stored row. */
int db_track_upsert_spotify(struct db *db, const char *user_id, struct db_track *tracks, size_t n,
                            int64_t now);

/* Pending Spotify log-ins (authorization code + PKCE), keyed by the hex SHA-256 of the
 * state sent to Spotify. browser_hash binds the state to the browser that started it;
 * user_id is "" when nobody was logged in. verifier is sealed (core/sealed.h). */
struct db_oauth_state {
	char state_hash[65];
	char browser_hash[65];
	char user_id[UUID_STR_LEN];
	char verifier[256];
	char redirect_uri[512];
	int64_t expires_at;
};
/* Inserts a state, first deleting every expired one. */
int db_oauth_state_insert(struct db *db, const struct db_oauth_state *st, int64_t now);
/* Deletes the state and returns it (single use): SFA_ENOTFOUND when unknown or used. */
int db_oauth_state_take(struct db *db, const char *state_hash, struct db_oauth_state *out);

/* A user's linked Spotify account. Tokens are sealed texts (core/sealed.h). */
struct db_spotify_link {
	char user_id[UUID_STR_LEN];
	char spotify_user_id[128];
	char display_name[DB_TEXT_MAX];
	char email[DB_EMAIL_MAX + 1];
	char access_token[2048];
	char refresh_token[2048]; /* "" when Spotify gave none */
	char scope[512];
	int64_t expires_at; /* when the access token expires (unix s) */
	int64_t created_at, updated_at;
};
/* Links (or re-links) l->user_id to l->spotify_user_id. An empty refresh_token keeps the
 * stored one. SFA_ECONFLICT when that Spotify account is linked to another user. */
int db_spotify_link_upsert(struct db *db, const struct db_spotify_link *l, int64_t now);
int db_spotify_link_get(struct db *db, const char *user_id, struct db_spotify_link *out);
int db_spotify_link_by_spotify_id(struct db *db, const char *spotify_user_id,
                                  struct db_spotify_link *out);
/* New tokens after a refresh; refresh_token NULL or "" keeps the stored one. */
int db_spotify_link_set_tokens(struct db *db, const char *user_id, const char *access_token,
                               const char *refresh_token, int64_t expires_at, int64_t now);
/* SFA_ENOTFOUND when the user had no link. */
int db_spotify_link_delete(struct db *db, const char *user_id);
/* Whether the user stored a lal.ai key of their own and linked a Spotify account, in one
 * query (GET /api/me answers both on every call). */
int db_user_links(struct db *db, const char *user_id, bool *lalalai_key, bool *spotify);

/* ---- lal.ai ------------------------------------------------------------------------ */

/* A user's own lal.ai license key: sealed text (core/sealed.h) and a masked hint. */
int db_lalalai_key_set(struct db *db, const char *user_id, const char *sealed_key, const char *hint,
                       int64_t now);
/* Either out buffer may be NULL. SFA_ENOTFOUND when the user has no key. */
int db_lalalai_key_get(struct db *db, const char *user_id, char *sealed, size_t n_sealed,
                       char *hint, size_t n_hint);
int db_lalalai_key_delete(struct db *db, const char *user_id);

/* The lal.ai side of one processing job: what a retried attempt needs so that it never
 * uploads or pays twice, and what the cancel and quota routes read. */
struct db_lalalai_task {
	char job_id[UUID_STR_LEN];
	char user_id[UUID_STR_LEN];
	char idempotency_key[64];
	char source_id[128]; /* "" until uploaded */
	char task_id[128];   /* "" until split */
	char status[16];     /* pending | progress | success | error | cancelled */
	double duration_s;   /* of the uploaded audio */
	int64_t created_at, updated_at;
	char job_status[16]; /* the job's status (read only) */
};
/* Creates the row for job_id unless it exists, then reads it. */
int db_lalalai_task_ensure(struct db *db, const char *job_id, const char *user_id,
                           const char *idempotency_key, int64_t now, struct db_lalalai_task *out);
/* Writes source_id, task_id, status and duration of t->job_id. */
int db_lalalai_task_update(struct db *db, const struct db_lalalai_task *t, int64_t now);
int db_lalalai_task_get(struct db *db, const char *user_id, const char *job_id,
                        struct db_lalalai_task *out);
int db_lalalai_task_by_task_id(struct db *db, const char *user_id, const char *task_id,
                               struct db_lalalai_task *out);
/* The user's tasks whose job is queued or running, oldest first (at most n_max). */
int db_lalalai_task_list_active(struct db *db, const char *user_id, struct db_lalalai_task *out,
                                size_t n_max, size_t *n_out);
/* Seconds of audio of the user's successful tasks finished at or after since. */
int db_lalalai_used_seconds(struct db *db, const char *user_id, int64_t since, double *out);

/* lal.ai allows 20 check calls a minute per license key, whichever process makes them:
 * reserves the next check slot of the key whose SHA-256 (hex) is key_hash for a call at
 * now_ms or later, interval_ms after the slot reserved before it. *at_ms: the slot, the
 * later of now_ms and that one (milliseconds since the epoch; the caller waits for it).
 * Every process of one database shares the slots, so their calls together stay spaced
 * (their clocks must agree, as NTP keeps them, to well within interval_ms). */
int db_lalalai_check_slot(struct db *db, const char *key_hash, int64_t now_ms, int interval_ms,
                          int64_t *at_ms);

/* ---- Rate-limit windows shared by every server of one database (core/ratelimit.h) ---- */

/* Counts n hits in key's window of window_s seconds, opening a new window at now when
 * there is none or the last has ended; gives the window's start and its hits, these
 * included. */
int db_rate_hit(struct db *db, const char *key, int window_s, int64_t now, int n, int64_t *start,
                int *count);
/* Forgets the windows of window_s seconds that ended at or before now. */
int db_rate_sweep(struct db *db, int window_s, int64_t now);

/* Whether the user owns a file under the data dir (relative path), through a track's
 * audio or a stem. */
bool db_file_owned(struct db *db, const char *user_id, const char *rel_path);

#endif
