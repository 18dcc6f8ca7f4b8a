/* driver.h - what db.c needs from a database engine: connections, statements, rows.
 *
 * db.c writes every function of db.h once, as SQL over this interface; driver_sqlite.c
 * and driver_pg.c implement it, as Redis's ae.c runs over ae_epoll.c or ae_select.c.
 * The SQL is the subset both engines understand; where they differ, db.c picks a variant
 * from its one dialect table by driver->dialect, never from scattered checks.
 *
 * Statements: prepare takes the SQL with SQLite's placeholders (? numbered in order, ?N
 * numbered explicitly; a ? after a ?N is N + 1, as SQLite counts) and binds the arguments
 * described by a type string: 't' text, 'z' text or NULL when NULL or empty, 'i' int64,
 * 'd' double, 'n' NULL. step returns DB_ROW while rows come, DB_DONE at the end, or a
 * negative SFA_E* code: SFA_ECONFLICT for a constraint violation, SFA_EDB for anything
 * else (the engine's reason logged). Column getters read the current row; col_text gives
 * NULL for SQL NULL and the text stays valid until the next step or finalize.
 *
 * Connections: a driver owns a pool of them. acquire blocks until one is free; the caller
 * uses it alone until release. acquire_read gives one for statements that only read, which
 * may be a separate reader: SQLite has one writer connection (its pool is a mutex) and up
 * to n_pool readers beside it; PostgreSQL has up to n_pool connections, any of which does
 * either. Statements and connections belong to the thread that acquired them.
 *
 * Listeners: a driver whose engine carries notifications between processes (PostgreSQL's
 * LISTEN/NOTIFY) opens a listener on a connection of its own, outside the pool, and
 * belonging to the one thread that reads it; db.c sends with the dialect's notify SQL. A
 * driver without them (SQLite: one process) leaves the four functions NULL, and db.c
 * delivers notifications within the process instead.
 */
#ifndef SFA_DB_DRIVER_H
#define SFA_DB_DRIVER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

enum db_dialect { DB_DIALECT_SQLITE, DB_DIALECT_PG };

enum { DB_DONE = 0, DB_ROW = 1 };

struct db_pool;
struct db_conn;
struct db_driver;
struct db_listen_conn;

/* Every driver's statement begins with this, so db.c can reach the driver from a row. */
struct db_stmt {
	const struct db_driver *drv;
};

struct db_driver {
	enum db_dialect dialect;
	/* Opens the pool for target (a file path, or a postgresql:// URL); err is a sentence
	 * for the user (a URL appears without its password). Connections may open lazily. */
	int (*open)(const char *target, int n_pool, struct db_pool **out, char *err, size_t n_err);
	void (*close)(struct db_pool *p);
	/* NULL when no connection can be made (logged). */
	struct db_conn *(*acquire)(struct db_pool *p);
	/* The same for a unit of read-only statements. NULL when none can be made (logged). */
	struct db_conn *(*acquire_read)(struct db_pool *p);
	void (*release)(struct db_pool *p, struct db_conn *c);
	/* Runs SQL without parameters or rows (several statements allowed): 0 or SFA_EDB. */
	int (*exec)(struct db_conn *c, const char *sql);
	/* Starts a transaction that holds the write side at once, as SQLite's BEGIN
	 * IMMEDIATE does: two begun transactions never interleave their writes. */
	int (*begin)(struct db_conn *c);
	/* NULL on failure (logged). The caller finalizes what it got. */
	struct db_stmt *(*prepare)(struct db_conn *c, const char *sql, const char *types,
	                           va_list ap);
	int (*step)(struct db_stmt *st);
	const char *(*col_text)(struct db_stmt *st, int i);
	int64_t (*col_int64)(struct db_stmt *st, int i);
	double (*col_double)(struct db_stmt *st, int i);
	void (*finalize)(struct db_stmt *st);
	/* Rows changed by the connection's last finished INSERT, UPDATE or DELETE. */
	int64_t (*changes)(struct db_conn *c);
	/* The engine's last error on this connection, for logs and db_ping. */
	const char *(*errmsg)(struct db_conn *c);
	/* A new connection listening on channel (a plain identifier); NULL on failure (logged).
	 * The caller closes it with listen_close. */
	struct db_listen_conn *(*listen_open)(struct db_pool *p, const char *channel);
	/* The descriptor to poll for input; -1 while the connection is broken. */
	int (*listen_fd)(struct db_listen_conn *l);
	/* Copies the next notification's payload into out: 1, 0 when none has arrived, or
	 * SFA_EDB when the connection is broken (each call then tries to reconnect and listen
	 * again; what was sent meanwhile is lost). Never blocks but to reconnect. */
	int (*listen_next)(struct db_listen_conn *l, char *out, size_t n_out);
	void (*listen_close)(struct db_listen_conn *l);
};

/* How many statements driver_pg.c has prepared (PQprepare) in this process, over all its
 * pools: a test's proof that a statement run again on the same connection is not prepared
 * again, and is after the connection was reset. */
uint64_t db_pg_n_prepares(void);

extern const struct db_driver db_driver_sqlite;
extern const struct db_driver db_driver_pg;

#endif
