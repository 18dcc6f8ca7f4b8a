/* driver_sqlite.c - driver.h on SQLite: the embedded default, a file in the data dir.
 *
 * One writer connection, guarded by our own mutex, so that a db.h function's several
 * statements form one unit and writes take their turn (calls are short; none waits on
 * anything outside). Beside it, up to n_pool reader connections, opened when first needed:
 * WAL mode lets each read while the writer writes, so read-only calls (acquire_read) of
 * different threads run at once and never queue behind a write. A reader sees every
 * transaction committed before its statement starts. synchronous=NORMAL: a crash loses at
 * most the last transaction, never corrupts. Other processes (job workers, the CLI) open
 * the file too and take their turn at the write lock (busy timeout 5 s).
 *
 * Each connection keeps its last STMT_CACHE prepared statements, found again by their SQL
 * text: db.c prepares the same few statements all day, and parsing and planning them was
 * most of a short call's cost. A statement given back is reset (ending its read) and its
 * bindings cleared; the least recently used one is finalized to make room.
 */
#include "db/driver.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/log.h"

enum { STMT_CACHE = 32 };

struct lite_stmt {
	struct db_stmt base;
	sqlite3_stmt *st;
	sqlite3 *conn;
	bool cached;   /* a slot of its connection's cache (else freed when finalized) */
	bool in_use;   /* handed out by prepare, not yet finalized */
	uint64_t hash; /* of sql */
	uint64_t used; /* the connection's clock when last handed out */
	char *sql;     /* cached slots: the statement's text */
};

struct db_conn {
	sqlite3 *conn;
	bool busy; /* a reader handed out (guarded by the pool's readers_mu) */
	uint64_t clock;
	struct lite_stmt cache[STMT_CACHE];
};

struct db_pool {
	struct db_conn writer;
	pthread_mutex_t writer_mu;
	char *path;
	int n_readers;           /* at most */
	struct db_conn *readers; /* n_readers slots; conn NULL until first needed */
	pthread_mutex_t readers_mu;
	pthread_cond_t reader_free;
};

static sqlite3 *conn_of(struct db_conn *c) { return c->conn; }

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

/* Finalizes c's cached statements and closes it (busy is the pool's, left alone). */
static void conn_close(struct db_conn *c)
{
	for (int i = 0; i < STMT_CACHE; i++) {
		sqlite3_finalize(c->cache[i].st);
		free(c->cache[i].sql);
	}
	memset(c->cache, 0, sizeof c->cache);
	sqlite3_close_v2(c->conn);
	c->conn = NULL;
}

static void lite_close(struct db_pool *p)
{
	if (!p)
		return;
	for (int i = 0; p->readers && i < p->n_readers; i++)
		conn_close(&p->readers[i]);
	if (p->writer.conn) {
		sqlite3_exec(p->writer.conn, "PRAGMA optimize;", NULL, NULL, NULL);
		conn_close(&p->writer);
	}
	pthread_mutex_destroy(&p->writer_mu);
	pthread_mutex_destroy(&p->readers_mu);
	pthread_cond_destroy(&p->reader_free);
	free(p->readers);
	free(p->path);
	free(p);
}

static int lite_open(const char *path, int n_pool, struct db_pool **out, char *err, size_t n_err)
{
	struct db_pool *p = calloc(1, sizeof *p);
	if (!p)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	pthread_mutex_init(&p->writer_mu, NULL);
	pthread_mutex_init(&p->readers_mu, NULL);
	pthread_cond_init(&p->reader_free, NULL);
	p->n_readers = n_pool > 0 ? n_pool : 1;
	p->path = strdup(path);
	p->readers = calloc((size_t)p->n_readers, sizeof *p->readers);
	if (!p->path || !p->readers) {
		lite_close(p);
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	}
	/* Only the server's user may read the database: it holds password hashes and sealed
	 * tokens. SQLite gives the -wal and -shm files the database file's permissions. */
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0) {
		fchmod(fd, 0600);
		close(fd);
	}
	/* Our mutexes guard every connection, so SQLite's own per-connection one is not needed. */
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(path, &p->writer.conn, flags, NULL) != SQLITE_OK) {
		sfa_err(err, n_err, SFA_EDB, "Cannot open the database %s: %s.", path,
		        p->writer.conn ? sqlite3_errmsg(p->writer.conn) : "out of memory");
		lite_close(p);
		return SFA_EDB;
	}
	sqlite3_busy_timeout(p->writer.conn, 5000);
	if (lite_exec(
		    &p->writer,
		    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")) {
		lite_close(p);
		return sfa_err(err, n_err, SFA_EDB,
		               "Cannot configure the database %s (is it corrupt?).", path);
	}
	*out = p;
	return 0;
}

static struct db_conn *lite_acquire(struct db_pool *p)
{
	pthread_mutex_lock(&p->writer_mu);
	return &p->writer;
}

static struct lite_stmt *stmt_get(struct db_conn *c, const char *sql);
static void stmt_put(struct lite_stmt *s);

/* Runs one statement without parameters or rows (BEGIN, COMMIT) from c's cache. */
static int run_cached(struct db_conn *c, const char *sql)
{
	struct lite_stmt *s = stmt_get(c, sql);
	if (!s)
		return SFA_EDB;
	int rc = sqlite3_step(s->st);
	if (rc != SQLITE_DONE)
		log_error("database: %s: %s", sql, sqlite3_errmsg(c->conn));
	stmt_put(s);
	return rc == SQLITE_DONE ? 0 : SFA_EDB;
}

/* Opens reader slot r (outside every lock: opening reads the file). */
static bool reader_open(struct db_pool *p, struct db_conn *r)
{
	int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
	if (sqlite3_open_v2(p->path, &r->conn, flags, NULL) != SQLITE_OK) {
		log_error("database: cannot open a reader on %s: %s", p->path,
		          r->conn ? sqlite3_errmsg(r->conn) : "out of memory");
		sqlite3_close_v2(r->conn);
		r->conn = NULL;
		return false;
	}
	sqlite3_busy_timeout(r->conn, 5000);
	return true;
}

/* A free reader, opening one when none is free and fewer than n_readers are open; waits
 * when all are busy. Falls back to the writer when a reader cannot be opened. */
static struct db_conn *lite_acquire_read(struct db_pool *p)
{
	struct db_conn *r = NULL;
	pthread_mutex_lock(&p->readers_mu);
	for (;;) {
		struct db_conn *closed = NULL;
		for (int i = 0; i < p->n_readers && !r; i++) {
			if (p->readers[i].conn && !p->readers[i].busy)
				r = &p->readers[i];
			else if (!p->readers[i].conn && !p->readers[i].busy && !closed)
				closed = &p->readers[i];
		}
		if (!r && closed)
			r = closed;
		if (r)
			break;
		pthread_cond_wait(&p->reader_free, &p->readers_mu);
	}
	r->busy = true;
	pthread_mutex_unlock(&p->readers_mu);
	/* One read transaction for the caller's statements: they see one snapshot, and the
	 * WAL read lock is taken once instead of once per statement. */
	if ((r->conn || reader_open(p, r)) && run_cached(r, "BEGIN") == 0)
		return r;
	pthread_mutex_lock(&p->readers_mu);
	r->busy = false;
	pthread_cond_signal(&p->reader_free);
	pthread_mutex_unlock(&p->readers_mu);
	return lite_acquire(p);
}

static void lite_release(struct db_pool *p, struct db_conn *c)
{
	if (c == &p->writer) {
		pthread_mutex_unlock(&p->writer_mu);
		return;
	}
	if (run_cached(c, "COMMIT")) /* logged; a reader that cannot end its read is closed */
		conn_close(c);
	pthread_mutex_lock(&p->readers_mu);
	c->busy = false;
	pthread_cond_signal(&p->reader_free);
	pthread_mutex_unlock(&p->readers_mu);
}

static int lite_begin(struct db_conn *c) { return lite_exec(c, "BEGIN IMMEDIATE"); }

static uint64_t sql_hash(const char *sql)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

/* A statement for sql on c, ready to bind: a cached one when c has it free, else a new one
 * (kept in the least recently used free slot, or uncached when every slot is in use). */
static struct lite_stmt *stmt_get(struct db_conn *c, const char *sql)
{
	uint64_t h = sql_hash(sql);
	struct lite_stmt *slot = NULL;
	for (int i = 0; i < STMT_CACHE; i++) {
		struct lite_stmt *e = &c->cache[i];
		if (e->in_use)
			continue;
		if (e->st && e->hash == h && strcmp(e->sql, sql) == 0) {
			e->in_use = true;
			e->used = ++c->clock;
			return e;
		}
		if (!slot || (slot->st && (!e->st || e->used < slot->used)))
			slot = e;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v3(c->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) !=
	    SQLITE_OK) {
		log_error("database: %s: %s", sql, sqlite3_errmsg(c->conn));
		return NULL;
	}
	char *copy = slot ? strdup(sql) : NULL;
	if (copy) {
		sqlite3_finalize(slot->st);
		free(slot->sql);
		*slot = (struct lite_stmt){.base.drv = &db_driver_sqlite,
		                           .st = st,
		                           .conn = c->conn,
		                           .cached = true,
		                           .in_use = true,
		                           .hash = h,
		                           .used = ++c->clock,
		                           .sql = copy};
		return slot;
	}
	struct lite_stmt *s = calloc(1, sizeof *s);
	if (!s) {
		sqlite3_finalize(st);
		return NULL;
	}
	*s = (struct lite_stmt){
		.base.drv = &db_driver_sqlite, .st = st, .conn = c->conn, .in_use = true};
	return s;
}

static void stmt_put(struct lite_stmt *s)
{
	if (s->cached) {
		sqlite3_reset(s->st);
		sqlite3_clear_bindings(s->st);
		s->in_use = false;
		return;
	}
	sqlite3_finalize(s->st);
	free(s);
}

static struct db_stmt *lite_prepare(struct db_conn *c, const char *sql, const char *types,
                                    va_list ap)
{
	struct lite_stmt *s = stmt_get(c, sql);
	if (!s)
		return NULL;
	sqlite3_stmt *st = s->st;
	for (int i = 0; types[i]; i++) {
		int rc = SQLITE_OK;
		if (types[i] == 't') {
			rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1,
			                       SQLITE_TRANSIENT);
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
			log_error("database: bind %d of %s: %s", i + 1, sql,
			          sqlite3_errmsg(c->conn));
			stmt_put(s);
			return NULL;
		}
	}
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
	if (st)
		stmt_put((struct lite_stmt *)(void *)st);
}

static int64_t lite_changes(struct db_conn *c) { return sqlite3_changes(conn_of(c)); }

static const char *lite_errmsg(struct db_conn *c) { return sqlite3_errmsg(conn_of(c)); }

const struct db_driver db_driver_sqlite = {
	.dialect = DB_DIALECT_SQLITE,
	.open = lite_open,
	.close = lite_close,
	.acquire = lite_acquire,
	.acquire_read = lite_acquire_read,
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
