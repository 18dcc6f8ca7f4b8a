/* driver_pg.c - driver.h on PostgreSQL through libpq, for deployments that share one
 * database between several processes or machines.
 *
 * Pool: up to n_pool connections, opened when first needed (one at open, to prove the URL
 * works) and kept; acquire waits on a condition variable while all are in use. A broken
 * connection is reset when next acquired (its prepared statements are gone with it).
 *
 * Statements: the SQL arrives with SQLite's placeholders; prepare rewrites them to $N
 * (outside quoted literals and identifiers) and PQprepares each text once per connection,
 * caching the name by the text and the argument types. Arguments travel as text with their
 * types declared (text, int8, float8), so a parameter's type never depends on where the SQL
 * happens to use it; rows come back as text and the getters parse them. The statement runs
 * at prepare; step walks the rows of its result.
 *
 * Errors: SQLSTATE class 23 (integrity constraint) is SFA_ECONFLICT, as SQLITE_CONSTRAINT
 * is in driver_sqlite.c; anything else is SFA_EDB with the server's message logged. A URL
 * is only ever shown without its password.
 *
 * Listeners (LISTEN/NOTIFY) have a connection each, outside the pool, reconnected and
 * listening again after a break; libpq hands their notifications over with PQnotifies.
 *
 * Threads: the pool is shared (its mutex guards the free list); a connection is used by
 * the one thread that acquired it; a listener by the one thread that opened it.
 */
#include "db/driver.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/log.h"
#include "util/str.h"

enum {
	N_BUCKETS = 256,          /* prepared-statement cache buckets per connection */
	SQL_MAX = 16384,          /* longest SQL text db.c writes, after rewriting */
	PARAMS_MAX = 32,          /* most arguments of one statement */
	BEGIN_LOCK_KEY = 7160823, /* advisory lock that serialises begun transactions */
};

/* TEXTOID, INT8OID, FLOAT8OID from the server's catalog (stable since forever). */
enum { OID_TEXT = 25, OID_INT8 = 20, OID_FLOAT8 = 701 };

/* PQprepare calls made by this process, for db_pg_n_prepares (tests). */
static atomic_uint_fast64_t n_prepares;

uint64_t db_pg_n_prepares(void) { return atomic_load(&n_prepares); }

struct prepared {
	char *key; /* types, '\1', sql */
	char name[16];
	struct prepared *next;
};

struct db_conn {
	PGconn *pg;
	struct prepared *cache[N_BUCKETS];
	unsigned n_prepared;
	int64_t changes;
	struct db_conn *next_free;
};

struct db_pool {
	char url[1024];
	char shown[1024]; /* the URL without its password, for sentences and logs */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct db_conn **conns; /* the n_kept connections made, to close at the end */
	int n_max, n_open;      /* n_open: made or being made (at most n_max) */
	int n_kept;
	struct db_conn *free_list;
};

struct pg_stmt {
	struct db_stmt base;
	PGresult *res;
	int row, n_rows;
	int rc; /* an error to report at the first step */
};

/* Copies url into out without the password of its user part or of a password= parameter. */
static void redact_url(const char *url, char *out, size_t n_out)
{
	size_t j = 0;
	const char *p = url;
	const char *auth = strstr(url, "://");
	const char *at = NULL, *colon = NULL;
	if (auth) {
		auth += 3;
		size_t n_auth = strcspn(auth, "/?");
		for (size_t i = 0; i < n_auth; i++)
			if (auth[i] == '@')
				at = auth + i;
		if (at)
			colon = memchr(auth, ':', (size_t)(at - auth));
	}
	while (*p && j + 1 < n_out) {
		if (colon && p == colon) {
			p = at; /* skip ":password" up to the '@' */
			continue;
		}
		if (strncmp(p, "password=", 9) == 0 && p > url && (p[-1] == '?' || p[-1] == '&')) {
			p += 9 + strcspn(p + 9, "&");
			if (*p == '&')
				p++;
			continue;
		}
		out[j++] = *p++;
	}
	out[j] = '\0';
}

static void drop_notice(void *arg, const char *message) { (void)arg, (void)message; }

static void forget_prepared(struct db_conn *c)
{
	for (int b = 0; b < N_BUCKETS; b++) {
		struct prepared *e = c->cache[b];
		while (e) {
			struct prepared *next = e->next;
			free(e->key);
			free(e);
			e = next;
		}
		c->cache[b] = NULL;
	}
}

static void conn_free(struct db_conn *c)
{
	if (!c)
		return;
	forget_prepared(c);
	PQfinish(c->pg);
	free(c);
}

/* A new connection, or NULL with the reason in err. */
static struct db_conn *conn_new(struct db_pool *p, char *err, size_t n_err)
{
	struct db_conn *c = calloc(1, sizeof *c);
	if (!c) {
		sfa_err(err, n_err, SFA_ENOMEM, "Out of memory connecting to PostgreSQL.");
		return NULL;
	}
	c->pg = PQconnectdb(p->url);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		char why[512];
		str_copy(why, sizeof why, c->pg ? PQerrorMessage(c->pg) : "out of memory");
		why[strcspn(why, "\n")] = '\0';
		sfa_err(err, n_err, SFA_EDB,
		        "Cannot connect to PostgreSQL at %s (SFA_DATABASE_URL): %s. Check that the "
		        "server runs and the URL's user, database and password are right.",
		        p->shown, why);
		conn_free(c);
		return NULL;
	}
	/* NOTICEs (such as "relation already exists, skipping") are not errors. */
	PQsetNoticeProcessor(c->pg, drop_notice, NULL);
	return c;
}

static void pg_close(struct db_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_kept; i++)
		conn_free(p->conns[i]);
	free(p->conns);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static int pg_open(const char *url, int n_pool, struct db_pool **out, char *err, size_t n_err)
{
	struct db_pool *p = calloc(1, sizeof *p);
	if (!p)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	redact_url(url, p->shown, sizeof p->shown);
	if (strlen(url) >= sizeof p->url) {
		pg_close(p);
		return sfa_err(err, n_err, SFA_EINVAL,
		               "SFA_DATABASE_URL is longer than %zu characters.",
		               sizeof p->url - 1);
	}
	str_copy(p->url, sizeof p->url, url);
	p->n_max = n_pool;
	p->conns = calloc((size_t)n_pool, sizeof *p->conns);
	struct db_conn *c = p->conns ? conn_new(p, err, n_err) : NULL;
	if (!c) {
		if (!p->conns)
			sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
		pg_close(p);
		return SFA_EDB;
	}
	p->conns[p->n_kept++] = c;
	p->n_open++;
	p->free_list = c;
	*out = p;
	return 0;
}

static struct db_conn *pg_acquire(struct db_pool *p)
{
	pthread_mutex_lock(&p->mu);
	while (!p->free_list && p->n_open >= p->n_max)
		pthread_cond_wait(&p->cv, &p->mu);
	struct db_conn *c = p->free_list;
	if (c) {
		p->free_list = c->next_free;
		pthread_mutex_unlock(&p->mu);
		if (PQstatus(c->pg) != CONNECTION_OK) {
			log_error("database: the connection to %s was lost; reconnecting",
			          p->shown);
			forget_prepared(c);
			c->n_prepared = 0;
			PQreset(c->pg);
		}
		return c;
	}
	p->n_open++; /* reserve a place, connect outside the lock */
	pthread_mutex_unlock(&p->mu);
	char err[768];
	c = conn_new(p, err, sizeof err);
	pthread_mutex_lock(&p->mu);
	if (c) {
		p->conns[p->n_kept++] = c;
	} else {
		p->n_open--; /* the place is free again for a waiting caller */
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	if (!c)
		log_error("database: %s", err); /* logged outside the pool's lock */
	return c;
}

static void pg_release(struct db_pool *p, struct db_conn *c)
{
	/* A function that left a transaction open (it never should) must not hand it on. */
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
		PGresult *r = PQexec(c->pg, "ROLLBACK");
		PQclear(r);
	}
	pthread_mutex_lock(&p->mu);
	c->next_free = p->free_list;
	p->free_list = c;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* SFA_ECONFLICT for an integrity constraint (class 23), else SFA_EDB; both logged. */
static int result_error(PGresult *r, const char *what)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (state && strncmp(state, "23", 2) == 0)
		return SFA_ECONFLICT;
	char msg[512];
	str_copy(msg, sizeof msg, r ? PQresultErrorMessage(r) : "out of memory");
	msg[strcspn(msg, "\n")] = '\0';
	log_error("database: %s: %s", what, msg);
	return SFA_EDB;
}

static int pg_exec(struct db_conn *c, const char *sql)
{
	PGresult *r = PQexec(c->pg, sql);
	ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
	int rc = 0;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
		rc = result_error(r, sql);
	else if (strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "ROLLBACK") == 0)
		rc = result_error(r, "COMMIT of a failed transaction rolled it back");
	PQclear(r);
	return rc;
}

static int pg_begin(struct db_conn *c)
{
	/* SQLite's BEGIN IMMEDIATE lets one transaction write at a time; the transaction-level
	 * advisory lock gives begun transactions the same order here, so a check-then-write
	 * transaction (a track's delete) cannot interleave with another. */
	char sql[96];
	snprintf(sql, sizeof sql, "BEGIN; SELECT pg_advisory_xact_lock(%d)", BEGIN_LOCK_KEY);
	return pg_exec(c, sql);
}

/* Rewrites SQLite placeholders to $N outside quotes; *n_params receives the highest N. */
static int rewrite(const char *sql, char *out, size_t n_out, int *n_params)
{
	size_t j = 0;
	int max = 0;
	char quote = 0;
	for (const char *p = sql; *p; p++) {
		if (j + 16 >= n_out)
			return -1;
		if (quote) {
			if (*p == quote)
				quote = 0; /* a doubled quote reopens at once on the next character */
			out[j++] = *p;
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
			out[j++] = *p;
		} else if (*p == '?') {
			int n;
			if (p[1] >= '0' && p[1] <= '9') {
				n = 0;
				while (p[1] >= '0' && p[1] <= '9')
					n = n * 10 + (*++p - '0');
			} else {
				n = max + 1;
			}
			if (n > max)
				max = n;
			j += (size_t)snprintf(out + j, n_out - j, "$%d", n);
		} else {
			out[j++] = *p;
		}
	}
	out[j] = '\0';
	*n_params = max;
	return 0;
}

static unsigned hash_key(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The name of the statement prepared for key on c, preparing it first if needed. */
static const char *prepared_name(struct db_conn *c, const char *key, const char *sql,
                                 const char *types, int n_params)
{
	unsigned b = hash_key(key) % N_BUCKETS;
	for (struct prepared *e = c->cache[b]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->name;
	Oid oids[PARAMS_MAX] = {0};
	for (int i = 0; i < n_params; i++) {
		char t = i < (int)strlen(types) ? types[i] : 'n';
		oids[i] = t == 'i' ? OID_INT8 : t == 'd' ? OID_FLOAT8 : OID_TEXT;
	}
	struct prepared *e = calloc(1, sizeof *e);
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	snprintf(e->name, sizeof e->name, "s%u", c->n_prepared++);
	atomic_fetch_add(&n_prepares, 1);
	PGresult *r = PQprepare(c->pg, e->name, sql, n_params, oids);
	if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
		result_error(r, sql);
		PQclear(r);
		free(e->key);
		free(e);
		return NULL;
	}
	PQclear(r);
	e->next = c->cache[b];
	c->cache[b] = e;
	return e->name;
}

static struct db_stmt *pg_prepare(struct db_conn *c, const char *sql, const char *types, va_list ap)
{
	size_t n_types = strlen(types);
	size_t n_sql = strlen(sql);
	char *key = malloc(n_types + 1 + SQL_MAX);
	struct pg_stmt *s = calloc(1, sizeof *s);
	char nums[PARAMS_MAX][32];
	const char *values[PARAMS_MAX] = {0};
	int n_params = 0;
	if (!key || !s || n_types > PARAMS_MAX || n_sql >= SQL_MAX / 2) {
		log_error("database: cannot prepare %s (out of memory or too long)", sql);
		goto fail;
	}
	memcpy(key, types, n_types);
	key[n_types] = '\1';
	if (rewrite(sql, key + n_types + 1, SQL_MAX, &n_params) || n_params > PARAMS_MAX) {
		log_error("database: cannot rewrite the placeholders of %s", sql);
		goto fail;
	}
	for (size_t i = 0; i < n_types; i++) {
		if (types[i] == 't') {
			values[i] = va_arg(ap, const char *);
		} else if (types[i] == 'z') {
			const char *z = va_arg(ap, const char *);
			values[i] = z && *z ? z : NULL;
		} else if (types[i] == 'i') {
			snprintf(nums[i], sizeof nums[i], "%lld", (long long)va_arg(ap, int64_t));
			values[i] = nums[i];
		} else if (types[i] == 'd') {
			snprintf(nums[i], sizeof nums[i], "%.17g", va_arg(ap, double));
			values[i] = nums[i];
		}
	}
	const char *name = prepared_name(c, key, key + n_types + 1, types, n_params);
	if (!name)
		goto fail;
	s->base.drv = &db_driver_pg;
	s->res = PQexecPrepared(c->pg, name, n_params, values, NULL, NULL, 0);
	ExecStatusType st = s->res ? PQresultStatus(s->res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		s->n_rows = PQntuples(s->res);
		/* As sqlite3_changes: only writes count (PQcmdTuples also counts a SELECT's). */
		const char *cmd = PQcmdStatus(s->res);
		if (strncmp(cmd, "INSERT", 6) == 0 || strncmp(cmd, "UPDATE", 6) == 0 ||
		    strncmp(cmd, "DELETE", 6) == 0)
			c->changes = strtoll(PQcmdTuples(s->res), NULL, 10);
	} else {
		s->rc = result_error(s->res, sql);
	}
	free(key);
	return &s->base;
fail:
	free(key);
	free(s);
	return NULL;
}

static struct pg_stmt *pg_of(struct db_stmt *st) { return (struct pg_stmt *)(void *)st; }

static int pg_step(struct db_stmt *st)
{
	struct pg_stmt *s = pg_of(st);
	if (s->rc)
		return s->rc;
	if (s->row >= s->n_rows)
		return DB_DONE;
	s->row++;
	return DB_ROW;
}

static const char *pg_col_text(struct db_stmt *st, int i)
{
	struct pg_stmt *s = pg_of(st);
	if (s->row < 1 || PQgetisnull(s->res, s->row - 1, i))
		return NULL;
	return PQgetvalue(s->res, s->row - 1, i);
}

static int64_t pg_col_int64(struct db_stmt *st, int i)
{
	const char *t = pg_col_text(st, i);
	return t ? strtoll(t, NULL, 10) : 0;
}

static double pg_col_double(struct db_stmt *st, int i)
{
	const char *t = pg_col_text(st, i);
	return t ? strtod(t, NULL) : 0;
}

static void pg_finalize(struct db_stmt *st)
{
	if (!st)
		return;
	PQclear(pg_of(st)->res);
	free(st);
}

/* ---- Listeners: LISTEN on a connection of their own ---------------------------------- */

struct db_listen_conn {
	PGconn *pg;
	char url[1024];
	char shown[1024];
	char channel[64];
	bool listening;
};

/* (Re)issues LISTEN; false (logged) when the connection cannot. */
static bool listen_start(struct db_listen_conn *l)
{
	char sql[96];
	snprintf(sql, sizeof sql, "LISTEN %s", l->channel);
	PGresult *r = PQexec(l->pg, sql);
	l->listening = r && PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!l->listening)
		result_error(r, sql);
	PQclear(r);
	return l->listening;
}

static struct db_listen_conn *pg_listen_open(struct db_pool *p, const char *channel)
{
	struct db_listen_conn *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	str_copy(l->url, sizeof l->url, p->url);
	str_copy(l->shown, sizeof l->shown, p->shown);
	str_copy(l->channel, sizeof l->channel, channel);
	l->pg = PQconnectdb(l->url);
	if (!l->pg || PQstatus(l->pg) != CONNECTION_OK) {
		log_error("database: cannot open a listening connection to %s: %s", l->shown,
		          l->pg ? PQerrorMessage(l->pg) : "out of memory");
	} else {
		PQsetNoticeProcessor(l->pg, drop_notice, NULL);
		listen_start(l);
	}
	return l; /* broken or not: listen_next reconnects */
}

static int pg_listen_fd(struct db_listen_conn *l)
{
	return l->pg && l->listening && PQstatus(l->pg) == CONNECTION_OK ? PQsocket(l->pg) : -1;
}

static int pg_listen_next(struct db_listen_conn *l, char *out, size_t n_out)
{
	if (!l->pg || PQstatus(l->pg) != CONNECTION_OK || !l->listening) {
		if (!l->pg)
			l->pg = PQconnectdb(l->url);
		else
			PQreset(l->pg);
		if (!l->pg || PQstatus(l->pg) != CONNECTION_OK || !listen_start(l))
			return SFA_EDB;
		log_info("database: listening again on %s", l->shown);
	}
	PGnotify *nf = PQnotifies(l->pg);
	if (!nf) {
		if (!PQconsumeInput(l->pg)) {
			log_error("database: the listening connection to %s broke: %s", l->shown,
			          PQerrorMessage(l->pg));
			l->listening = false;
			return SFA_EDB;
		}
		nf = PQnotifies(l->pg);
	}
	if (!nf)
		return 0;
	str_copy(out, n_out, nf->extra ? nf->extra : "");
	PQfreemem(nf);
	return 1;
}

static void pg_listen_close(struct db_listen_conn *l)
{
	if (!l)
		return;
	PQfinish(l->pg);
	free(l);
}

static int64_t pg_changes(struct db_conn *c) { return c->changes; }

static const char *pg_errmsg(struct db_conn *c) { return PQerrorMessage(c->pg); }

const struct db_driver db_driver_pg = {
	.dialect = DB_DIALECT_PG,
	.open = pg_open,
	.close = pg_close,
	.acquire = pg_acquire,
	.acquire_read = pg_acquire,
	.release = pg_release,
	.exec = pg_exec,
	.begin = pg_begin,
	.prepare = pg_prepare,
	.step = pg_step,
	.col_text = pg_col_text,
	.col_int64 = pg_col_int64,
	.col_double = pg_col_double,
	.finalize = pg_finalize,
	.changes = pg_changes,
	.errmsg = pg_errmsg,
	.listen_open = pg_listen_open,
	.listen_fd = pg_listen_fd,
	.listen_next = pg_listen_next,
	.listen_close = pg_listen_close,
};
