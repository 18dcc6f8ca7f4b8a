/* db.h - the database interface. Handlers and core logic see only this header.
 *
 * The only backend today is db_sqlite.c (SQLite in WAL mode, one connection guarded by
 * a mutex, so every function here is one atomic unit and may be called from any thread).
 * A PostgreSQL backend would be db_pg.c implementing the same functions, chosen at build
 * time, as Redis picks ae_epoll.c or ae_select.c behind ae.h.
 *
 * Conventions: functions return 0 or a negative SFA_E* code (SFA_ENOTFOUND for a missing
 * row, SFA_ECONFLICT for a unique violation, SFA_EDB for anything else, with the reason
 * logged, never shown to users). Out-structs are written only on success. Times are unix
 * seconds. Every lookup of a user's resource takes the user id, so scoping cannot be
 * forgotten by a caller.
 */
#ifndef SFA_DB_DB_H
#define SFA_DB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
};

struct db_api_key {
	char id[UUID_STR_LEN];
	char name[DB_NAME_MAX + 1];
	char prefix[16];
	int64_t created_at;
	int64_t last_used_at; /* 0: never */
	int64_t revoked_at;   /* 0: active */
};

/* Opens (creating) the database at path and applies pending migrations. */
int db_open(const char *path, struct db **out, char *err, size_t n_err);
void db_close(struct db *db);
/* A cheap query proving the database answers; err says why not. */
int db_ping(struct db *db, char *err, size_t n_err);
int db_schema_version(struct db *db);

/* Users. Emails are compared case-insensitively (stored as given, unique on lower()). */
int db_user_insert(struct db *db, const struct db_user *u);
int db_user_by_email(struct db *db, const char *email, struct db_user *out);
int db_user_by_id(struct db *db, const char *id, struct db_user *out);
int db_user_set_email(struct db *db, const char *user_id, const char *email);
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
/* The active owner of an unrevoked key; also records last use. */
int db_api_key_user(struct db *db, const char *key_hash, int64_t now, struct db_user *out);
/* Lists up to n_max keys of the user, newest first. *n_out is the number written. */
int db_api_key_list(struct db *db, const char *user_id, struct db_api_key *out, size_t n_max,
                    size_t *n_out);
int db_api_key_revoke(struct db *db, const char *user_id, const char *key_id, int64_t now);

/* Jobs. 0 when job_id exists and belongs to user_id; SFA_ENOTFOUND when it does not, or
 * when this database has no jobs table yet. */
int db_job_owned(struct db *db, const char *user_id, const char *job_id);

#endif
