/* accounts.h - users, passwords, sessions and API keys: the rules, not the storage.
 *
 * Passwords are hashed with argon2id (libsodium crypto_pwhash_str, interactive limits).
 * A log-in attempt for an unknown email still runs one hash, so response time does not
 * tell which emails exist. Sessions and API keys are random tokens (token.h) stored only
 * as hashes. Validation failures are collected per field in struct field_errors so a
 * form can show all of them at once. Thread-safe (state lives in the database).
 */
#ifndef SFA_CORE_ACCOUNTS_H
#define SFA_CORE_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/keycache.h"
#include "core/token.h"
#include "db/db.h"

enum {
	ACCOUNTS_PASSWORD_MIN = 12,
	ACCOUNTS_PASSWORD_MAX = 72,
	ACCOUNTS_SESSION_S = 24 * 3600,       /* a browser session without "remember me" */
	ACCOUNTS_REMEMBER_S = 14 * 24 * 3600, /* with "remember me" */
	ACCOUNTS_MAX_FIELD_ERRORS = 8,
	ACCOUNTS_MAX_API_KEYS = 100,
};

struct field_error {
	char field[32];
	char message[160];
};

struct field_errors {
	int n;
	struct field_error e[ACCOUNTS_MAX_FIELD_ERRORS];
};

void field_errors_add(struct field_errors *fe, const char *field, const char *message);
/* The first message for field (borrowed from fe), or NULL. */
const char *field_errors_get(const struct field_errors *fe, const char *field);

/* Appends the reasons email / password are unacceptable to fe (nothing when valid). */
void accounts_check_email(const char *email, struct field_errors *fe, const char *field);
void accounts_check_password(const char *password, struct field_errors *fe, const char *field);

/* Hashes password into out (DB_HASH_MAX bytes). */
int accounts_hash_password(const char *password, char out[DB_HASH_MAX]);
bool accounts_password_matches(const struct db_user *u, const char *password);

/* Creates an active user. SFA_EINVAL with fe filled on bad input (email taken included). */
int accounts_register(struct db *db, const char *email, const char *password, int64_t now,
                      struct db_user *out, struct field_errors *fe);
/* SFA_EAUTH for any wrong combination, unknown email or suspended user. */
int accounts_authenticate(struct db *db, const char *email, const char *password,
                          struct db_user *out);

/* Starts a session; token receives the cookie value. */
int accounts_session_start(struct db *db, const char *user_id, bool remember, int64_t now,
                           char token[TOKEN_STR_LEN]);
/* The user of a session cookie value (SFA_EAUTH if invalid/expired/suspended). */
int accounts_session_user(struct db *db, const char *token, int64_t now, struct db_user *out);
int accounts_session_end(struct db *db, const char *token);

/* Changes the password after checking the current one (not asked of an account that has
 * never had a password: one made by Spotify log-in); ends every other session of the
 * user (keep_token: the session to keep, may be NULL). */
int accounts_change_password(struct db *db, const struct db_user *u, const char *current,
                             const char *next, const char *keep_token, struct field_errors *fe);
int accounts_change_email(struct db *db, const struct db_user *u, const char *current,
                          const char *email, struct field_errors *fe);

/* Creates an API key. key receives the full key (shown once); rec the stored record. */
int accounts_api_key_create(struct db *db, const char *user_id, const char *name, int64_t now,
                            char key[TOKEN_STR_LEN], struct db_api_key *rec,
                            struct field_errors *fe);
/* The active owner of an API key; kc (may be NULL) serves keys verified within its
 * lifetime without asking the database. SFA_EAUTH for an unknown or revoked key. */
int accounts_api_key_user(struct db *db, struct keycache *kc, const char *key, int64_t now,
                          struct db_user *out);

#endif
