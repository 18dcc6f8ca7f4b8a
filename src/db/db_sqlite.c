/* db_sqlite.c - the SQLite backend of db.h.
 *
 * One connection, opened with SQLITE_OPEN_FULLMUTEX and additionally guarded by our own
 * mutex so that a function's several statements form one unit. WAL mode with
 * synchronous=NORMAL: readers never block the writer and a crash loses at most the last
 * transaction, never corrupts. Migrations are numbered SQL scripts applied in order at
 * open inside one transaction each; schema_version holds the last applied number.
 */
#include "db/db.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"
#include "util/str.h"

struct db {
	sqlite3 *conn;
	pthread_mutex_t mu;
};

static const char *const migrations[] = {
	/* 1: accounts */
	"CREATE TABLE users ("
	"  id TEXT PRIMARY KEY,"
	"  email TEXT NOT NULL,"
	"  password_hash TEXT NOT NULL,"
	"  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','suspended')),"
	"  role TEXT NOT NULL DEFAULT 'user',"
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL);"
	"CREATE UNIQUE INDEX users_email ON users (lower(email));"
	"CREATE TABLE sessions ("
	"  token_hash TEXT PRIMARY KEY,"
	"  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  remember INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  expires_at INTEGER NOT NULL);"
	"CREATE INDEX sessions_user ON sessions (user_id);"
	"CREATE TABLE api_keys ("
	"  id TEXT PRIMARY KEY,"
	"  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  prefix TEXT NOT NULL,"
	"  key_hash TEXT NOT NULL UNIQUE,"
	"  created_at INTEGER NOT NULL,"
	"  last_used_at INTEGER,"
	"  revoked_at INTEGER);"
	"CREATE INDEX api_keys_user ON api_keys (user_id);",
};

static void lock(struct db *db) { pthread_mutex_lock(&db->mu); }
static void unlock(struct db *db) { pthread_mutex_unlock(&db->mu); }

static int fail(struct db *db, const char *what)
{
	log_error("database: %s: %s", what, sqlite3_errmsg(db->conn));
	return SFA_EDB;
}

static int exec(struct db *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("database: %s", msg ? msg : "exec failed");
		sqlite3_free(msg);
		return SFA_EDB;
	}
	return 0;
}

static int query_int(struct db *db, const char *sql, int *out)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(db, "prepare");
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : SFA_ENOTFOUND;
}

static int migrate(struct db *db, char *err, size_t n_err)
{
	if (exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"))
		return sfa_err(err, n_err, SFA_EDB, "Cannot create the schema_version table.");
	int version = 0;
	if (query_int(db, "SELECT version FROM schema_version", &version) == SFA_ENOTFOUND &&
	    exec(db, "INSERT INTO schema_version VALUES (0)"))
		return sfa_err(err, n_err, SFA_EDB, "Cannot initialise the schema version.");
	int n = (int)(sizeof migrations / sizeof migrations[0]);
	if (version > n)
		return sfa_err(err, n_err, SFA_EDB,
		               "The database was written by a newer sfa (schema %d, this build knows "
		               "%d); upgrade sfa.",
		               version, n);
	for (int v = version; v < n; v++) {
		char set[64];
		snprintf(set, sizeof set, "UPDATE schema_version SET version = %d;", v + 1);
		if (exec(db, "BEGIN IMMEDIATE") || exec(db, migrations[v]) || exec(db, set) ||
		    exec(db, "COMMIT")) {
			exec(db, "ROLLBACK");
			return sfa_err(err, n_err, SFA_EDB, "Database migration %d failed.", v + 1);
		}
	}
	return 0;
}

int db_open(const char *path, struct db **out, char *err, size_t n_err)
{
	struct db *db = calloc(1, sizeof *db);
	if (!db)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	pthread_mutex_init(&db->mu, NULL);
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
	if (sqlite3_open_v2(path, &db->conn, flags, NULL) != SQLITE_OK) {
		sfa_err(err, n_err, SFA_EDB, "Cannot open the database: %s.",
		        db->conn ? sqlite3_errmsg(db->conn) : "out of memory");
		db_close(db);
		return SFA_EDB;
	}
	sqlite3_busy_timeout(db->conn, 5000);
	int rc = 0;
	if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"))
		rc = sfa_err(err, n_err, SFA_EDB, "Cannot configure the database (is it corrupt?).");
	else
		rc = migrate(db, err, n_err);
	if (rc) {
		db_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	if (db->conn) {
		sqlite3_exec(db->conn, "PRAGMA optimize;", NULL, NULL, NULL);
		sqlite3_close_v2(db->conn);
	}
	pthread_mutex_destroy(&db->mu);
	free(db);
}

int db_ping(struct db *db, char *err, size_t n_err)
{
	lock(db);
	int v = 0;
	int rc = query_int(db, "SELECT count(*) FROM schema_version", &v);
	if (rc)
		sfa_err(err, n_err, SFA_EDB, "the database does not answer: %s",
		        sqlite3_errmsg(db->conn));
	unlock(db);
	return rc ? SFA_EDB : 0;
}

int db_schema_version(struct db *db)
{
	lock(db);
	int v = -1;
	query_int(db, "SELECT version FROM schema_version", &v);
	unlock(db);
	return v;
}

/* Prepares sql and binds text/int arguments described by types ('t' text, 'i' int64,
 * 'n' null). Returns NULL on failure (logged). */
static sqlite3_stmt *prep(struct db *db, const char *sql, const char *types, ...)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK) {
		fail(db, sql);
		return NULL;
	}
	va_list ap;
	va_start(ap, types);
	for (int i = 0; types[i]; i++) {
		int rc = SQLITE_OK;
		if (types[i] == 't')
			rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		else if (types[i] == 'i')
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		else
			rc = sqlite3_bind_null(st, i + 1);
		if (rc != SQLITE_OK) {
			va_end(ap);
			fail(db, "bind");
			sqlite3_finalize(st);
			return NULL;
		}
	}
	va_end(ap);
	return st;
}

/* Runs a statement that returns no rows; maps constraint violations to SFA_ECONFLICT and
 * "no row changed" to SFA_ENOTFOUND when need_change is set. */
static int run(struct db *db, sqlite3_stmt *st, bool need_change)
{
	if (!st)
		return SFA_EDB;
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT)
		return SFA_ECONFLICT;
	if (rc != SQLITE_DONE)
		return fail(db, "step");
	if (need_change && sqlite3_changes(db->conn) == 0)
		return SFA_ENOTFOUND;
	return 0;
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t n)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	str_copy(dst, n, t ? (const char *)t : "");
}

#define USER_COLS "u.id, u.email, u.password_hash, u.status, u.role, u.created_at"

static int read_user(struct db *db, sqlite3_stmt *st, struct db_user *out)
{
	if (!st)
		return SFA_EDB;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		col_text(st, 0, out->id, sizeof out->id);
		col_text(st, 1, out->email, sizeof out->email);
		col_text(st, 2, out->password_hash, sizeof out->password_hash);
		col_text(st, 3, out->status, sizeof out->status);
		col_text(st, 4, out->role, sizeof out->role);
		out->created_at = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? SFA_ENOTFOUND : fail(db, "user query");
}

int db_user_insert(struct db *db, const struct db_user *u)
{
	lock(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO users (id, email, password_hash, status, role, created_at, "
	                  "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	                  "tttttii", u->id, u->email, u->password_hash,
	                  u->status[0] ? u->status : "active", u->role[0] ? u->role : "user",
	                  u->created_at, u->created_at),
	             false);
	unlock(db);
	return rc;
}

int db_user_by_email(struct db *db, const char *email, struct db_user *out)
{
	lock(db);
	int rc = read_user(
		db, prep(db, "SELECT " USER_COLS " FROM users u WHERE lower(u.email) = lower(?)", "t", email),
		out);
	unlock(db);
	return rc;
}

int db_user_by_id(struct db *db, const char *id, struct db_user *out)
{
	lock(db);
	int rc = read_user(db, prep(db, "SELECT " USER_COLS " FROM users u WHERE u.id = ?", "t", id),
	                   out);
	unlock(db);
	return rc;
}

int db_user_set_email(struct db *db, const char *user_id, const char *email)
{
	lock(db);
	int rc = run(db, prep(db, "UPDATE users SET email = ?, updated_at = unixepoch() WHERE id = ?",
	                      "tt", email, user_id),
	             true);
	unlock(db);
	return rc;
}

int db_user_set_password(struct db *db, const char *user_id, const char *password_hash)
{
	lock(db);
	int rc = run(db,
	             prep(db, "UPDATE users SET password_hash = ?, updated_at = unixepoch() WHERE id = ?",
	                  "tt", password_hash, user_id),
	             true);
	unlock(db);
	return rc;
}

int db_session_insert(struct db *db, const char *token_hash, const char *user_id,
                      int64_t expires_at, bool remember)
{
	lock(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO sessions (token_hash, user_id, remember, created_at, expires_at) "
	                  "VALUES (?, ?, ?, unixepoch(), ?)",
	                  "ttii", token_hash, user_id, (int64_t)remember, expires_at),
	             false);
	unlock(db);
	return rc;
}

int db_session_user(struct db *db, const char *token_hash, int64_t now, struct db_user *out)
{
	lock(db);
	int rc = read_user(db,
	                   prep(db,
	                        "SELECT " USER_COLS " FROM sessions s JOIN users u ON u.id = s.user_id "
	                        "WHERE s.token_hash = ? AND s.expires_at > ? AND u.status = 'active'",
	                        "ti", token_hash, now),
	                   out);
	unlock(db);
	return rc;
}

int db_session_delete(struct db *db, const char *token_hash)
{
	lock(db);
	int rc = run(db, prep(db, "DELETE FROM sessions WHERE token_hash = ?", "t", token_hash), false);
	unlock(db);
	return rc;
}

int db_session_delete_others(struct db *db, const char *user_id, const char *keep_hash)
{
	lock(db);
	int rc = run(db,
	             prep(db, "DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?", "tt",
	                  user_id, keep_hash ? keep_hash : ""),
	             false);
	unlock(db);
	return rc;
}

int db_api_key_insert(struct db *db, const char *user_id, const struct db_api_key *k,
                      const char *key_hash)
{
	lock(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) "
	                  "VALUES (?, ?, ?, ?, ?, ?)",
	                  "ttttti", k->id, user_id, k->name, k->prefix, key_hash, k->created_at),
	             false);
	unlock(db);
	return rc;
}

int db_api_key_user(struct db *db, const char *key_hash, int64_t now, struct db_user *out)
{
	lock(db);
	int rc = read_user(db,
	                   prep(db,
	                        "SELECT " USER_COLS " FROM api_keys k JOIN users u ON u.id = k.user_id "
	                        "WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.status = 'active'",
	                        "t", key_hash),
	                   out);
	if (rc == 0)
		run(db,
		    prep(db, "UPDATE api_keys SET last_used_at = ? WHERE key_hash = ?", "it", now,
		         key_hash),
		    false);
	unlock(db);
	return rc;
}

int db_api_key_list(struct db *db, const char *user_id, struct db_api_key *out, size_t n_max,
                    size_t *n_out)
{
	lock(db);
	sqlite3_stmt *st = prep(db,
	                        "SELECT id, name, prefix, created_at, coalesce(last_used_at, 0), "
	                        "coalesce(revoked_at, 0) FROM api_keys WHERE user_id = ? "
	                        "ORDER BY created_at DESC, rowid DESC",
	                        "t", user_id);
	int rc = 0;
	size_t n = 0;
	if (!st) {
		rc = SFA_EDB;
		goto out;
	}
	int step;
	while (n < n_max && (step = sqlite3_step(st)) == SQLITE_ROW) {
		struct db_api_key *k = &out[n++];
		col_text(st, 0, k->id, sizeof k->id);
		col_text(st, 1, k->name, sizeof k->name);
		col_text(st, 2, k->prefix, sizeof k->prefix);
		k->created_at = sqlite3_column_int64(st, 3);
		k->last_used_at = sqlite3_column_int64(st, 4);
		k->revoked_at = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	*n_out = n;
out:
	unlock(db);
	return rc;
}

int db_api_key_revoke(struct db *db, const char *user_id, const char *key_id, int64_t now)
{
	lock(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND "
	                  "revoked_at IS NULL",
	                  "itt", now, key_id, user_id),
	             true);
	unlock(db);
	return rc;
}

int db_job_owned(struct db *db, const char *user_id, const char *job_id)
{
	lock(db);
	sqlite3_stmt *st;
	int rc = SFA_ENOTFOUND;
	/* Prepared directly rather than through prep(): a database from before the jobs
	 * migration has no such table, which is an answer ("not yours"), not an error. */
	if (sqlite3_prepare_v2(db->conn, "SELECT 1 FROM jobs WHERE id = ? AND user_id = ?", -1, &st,
	                       NULL) != SQLITE_OK) {
		if (!strstr(sqlite3_errmsg(db->conn), "no such table"))
			rc = fail(db, "job owner query");
		goto out;
	}
	if (sqlite3_bind_text(st, 1, job_id, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
	    sqlite3_bind_text(st, 2, user_id, -1, SQLITE_TRANSIENT) != SQLITE_OK) {
		rc = fail(db, "bind");
	} else {
		int s = sqlite3_step(st);
		rc = s == SQLITE_ROW ? 0 : s == SQLITE_DONE ? SFA_ENOTFOUND : fail(db, "job owner query");
	}
	sqlite3_finalize(st);
out:
	unlock(db);
	return rc;
}
