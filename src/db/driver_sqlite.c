/* driver_sqlite.c - driver.h on SQLite: the embedded default, a file in the data dir.
 *
 * One connection, opened with SQLITE_OPEN_FULLMUTEX and additionally guarded by our own
 * mutex (the "pool" of one), so that a db.h function's several statements form one unit:
 * inside this process every call, read or write, takes its turn (calls are short; none
 * waits on anything outside). WAL mode with synchronous=NORMAL lets other processes (the
 * job workers, the CLI) read while one writes, and a crash loses at most the last
 * transaction, never corrupts.
 */
#include "db/driver.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

struct db_pool {
	sqlite3 *conn;
	pthread_mutex_t mu;
};

struct lite_stmt {
	struct db_stmt base;
	sqlite3_stmt *st;
	sqlite3 *conn;
};

/* The pool has one connection, so the connection is the pool. */
static sqlite3 *conn_of(struct db_conn *c) { return ((struct db_pool *)(void *)c)->conn; }

static int lite_exec(struct db_conn *c, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(conn_of(c), sql, NULL, NULL, &msg) != SQLITE_OK) {
		log_error("database: %s", msg ? msg : "exec failed");
		sqlite3_free(msg);
		return SFA_EDB;
	}
	return 0;
}

static void lite_close(struct db_pool *p)
{
	if (!p)
		return;
	if (p->conn) {
		sqlite3_exec(p->conn, "PRAGMA optimize;", NULL, NULL, NULL);
		sqlite3_close_v2(p->conn);
	}
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static int lite_open(const char *path, int n_pool, struct db_pool **out, char *err, size_t n_err)
{
	(void)n_pool;
	struct db_pool *p = calloc(1, sizeof *p);
	if (!p)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	pthread_mutex_init(&p->mu, NULL);
	/* Only the server's user may read the database: it holds password hashes and sealed
	 * tokens. SQLite gives the -wal and -shm files the database file's permissions. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		fchmod(fd, 0600);
		close(fd);
	}
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
	if (sqlite3_open_v2(path, &p->conn, flags, NULL) != SQLITE_OK) {
		sfa_err(err, n_err, SFA_EDB, "Cannot open the database %s: %s.", path,
		        p->conn ? sqlite3_errmsg(p->conn) : "out of memory");
		lite_close(p);
		return SFA_EDB;
	}
	sqlite3_busy_timeout(p->conn, 5000);
	if (lite_exec((struct db_conn *)(void *)p,
	              "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")) {
		lite_close(p);
		return sfa_err(err, n_err, SFA_EDB, "Cannot configure the database %s (is it corrupt?).",
		               path);
	}
	*out = p;
	return 0;
}

static struct db_conn *lite_acquire(struct db_pool *p)
{
	pthread_mutex_lock(&p->mu);
	return (struct db_conn *)(void *)p;
}

static void lite_release(struct db_pool *p, struct db_conn *c)
{
	(void)c;
	pthread_mutex_unlock(&p->mu);
}

static int lite_begin(struct db_conn *c) { return lite_exec(c, "BEGIN IMMEDIATE"); }

static struct db_stmt *lite_prepare(struct db_conn *c, const char *sql, const char *types,
                                    va_list ap)
{
	sqlite3 *conn = conn_of(c);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(conn, sql, -1, &st, NULL) != SQLITE_OK) {
		log_error("database: %s: %s", sql, sqlite3_errmsg(conn));
		return NULL;
	}
	for (int i = 0; types[i]; i++) {
		int rc = SQLITE_OK;
		if (types[i] == 't') {
			rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		} else if (types[i] == 'i') {
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
		} else if (types[i] == 'd') {
			rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
		} else if (types[i] == 'z') {
			const char *z = va_arg(ap, const char *);
			rc = z && *z ? sqlite3_bind_text(st, i + 1, z, -1, SQLITE_TRANSIENT)
			             : sqlite3_bind_null(st, i + 1);
		} else {
			rc = sqlite3_bind_null(st, i + 1);
		}
		if (rc != SQLITE_OK) {
			log_error("database: bind %d of %s: %s", i + 1, sql, sqlite3_errmsg(conn));
			sqlite3_finalize(st);
			return NULL;
		}
	}
	struct lite_stmt *s = malloc(sizeof *s);
	if (!s) {
		sqlite3_finalize(st);
		return NULL;
	}
	s->base.drv = &db_driver_sqlite;
	s->st = st;
	s->conn = conn;
	return &s->base;
}

static sqlite3_stmt *st_of(struct db_stmt *st) { return ((struct lite_stmt *)(void *)st)->st; }

static int lite_step(struct db_stmt *st)
{
	int rc = sqlite3_step(st_of(st));
	if (rc == SQLITE_ROW)
		return DB_ROW;
	if (rc == SQLITE_DONE)
		return DB_DONE;
	if (rc == SQLITE_CONSTRAINT)
		return SFA_ECONFLICT;
	log_error("database: %s", sqlite3_errmsg(((struct lite_stmt *)(void *)st)->conn));
	return SFA_EDB;
}

static const char *lite_col_text(struct db_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st_of(st), i);
}

static int64_t lite_col_int64(struct db_stmt *st, int i)
{
	return sqlite3_column_int64(st_of(st), i);
}

static double lite_col_double(struct db_stmt *st, int i)
{
	return sqlite3_column_double(st_of(st), i);
}

static void lite_finalize(struct db_stmt *st)
{
	if (!st)
		return;
	sqlite3_finalize(st_of(st));
	free(st);
}

static int64_t lite_changes(struct db_conn *c) { return sqlite3_changes(conn_of(c)); }

static const char *lite_errmsg(struct db_conn *c) { return sqlite3_errmsg(conn_of(c)); }

const struct db_driver db_driver_sqlite = {
	.dialect = DB_DIALECT_SQLITE,
	.open = lite_open,
	.close = lite_close,
	.acquire = lite_acquire,
	.release = lite_release,
	.exec = lite_exec,
	.begin = lite_begin,
	.prepare = lite_prepare,
	.step = lite_step,
	.col_text = lite_col_text,
	.col_int64 = lite_col_int64,
	.col_double = lite_col_double,
	.finalize = lite_finalize,
	.changes = lite_changes,
	.errmsg = lite_errmsg,
};
