/* db.c - db.h written once, as SQL over a driver (driver.h): SQLite or PostgreSQL.
 *
 * db_open picks the driver from its target: a postgresql:// (or postgres://) URL selects
 * driver_pg.c, anything else is a SQLite file (driver_sqlite.c). Every function below is
 * the same SQL on both, in the subset the two engines share; what differs is chosen from
 * the dialect table (below) and nowhere else, and placeholders are SQLite's (?, ?N), which
 * the PostgreSQL driver rewrites to $N.
 *
 * The lock discipline (db.h): every function acquires a connection for its whole body and
 * calls nothing outside this file while holding it. A function that only reads takes it
 * with acquire_read. On SQLite the writing calls take turns on the one writer connection
 * while reading calls run beside them on readers; PostgreSQL has a pool, so calls of
 * different threads run at once and the engine orders them. A thread that enters again while it holds a connection (a callback or
 * a nested call that reached the database) would wait for itself forever on SQLite, so it
 * aborts at once on both, naming both functions, and the mistake fails a test instead of
 * freezing the server. db_tx_begin pins the thread's connection until commit or rollback:
 * every call of that thread in between uses it, and so joins the transaction.
 *
 * Migrations are one numbered list for both engines, applied in order at open inside one
 * transaction each; schema_version holds the last applied number. A migration has a
 * PostgreSQL text of its own only where the engines cannot share one.
 */
#include "db/db.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include "db/driver.h"
#include "util/arena.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"

struct db {
	const struct db_driver *drv;
	struct db_pool *pool;
	/* In-process notifications (drivers without listeners): lmu guards the list and every
	 * listener's queue; nothing else is done under it. */
	pthread_mutex_t lmu;
	struct db_listener *listeners;
};

/* What the two engines spell differently, indexed by enum db_dialect. */
/* the two dialects side by side, hand-aligned */
/* clang-format off */
static const struct dialect {
	/* The summary columns of an analysis (tempo, key_name, camelot, first_beat,
	 * first_downbeat, sections), read from its JSON result bound as ?4. The sections are
	 * JSON text on both (PostgreSQL's jsonb spells it with other spacing and key order). */
	const char *analysis_summary;
	/* Ends the claim's choice of a job: on PostgreSQL, concurrent claims skip the row one
	 * of them has locked instead of both taking it (SQLite runs one writer at a time). */
	const char *claim_lock;
	/* A table of one text column, tid, from the JSON array of strings bound as ?2. */
	const char *id_table;
	/* Sends ?2 on channel ?1 to other processes; NULL: notifications stay in the process. */
	const char *notify;
} dialects[] = {
	[DB_DIALECT_SQLITE] = {
		.analysis_summary = "json_extract(?4, '$.tempo'), json_extract(?4, '$.key'), "
		                    "json_extract(?4, '$.camelot'), json_extract(?4, '$.beats[0]'), "
		                    "json_extract(?4, '$.downbeats[0]'), json_extract(?4, '$.sections')",
		.claim_lock = "",
		.id_table = "(SELECT value AS tid FROM json_each(?2))",
	},
	[DB_DIALECT_PG] = {
		.analysis_summary = "(?4::jsonb->>'tempo')::float8, ?4::jsonb->>'key', "
		                    "?4::jsonb->>'camelot', (?4::jsonb->'beats'->>0)::float8, "
		                    "(?4::jsonb->'downbeats'->>0)::float8, "
		                    "(?4::jsonb->'sections')::text",
		.claim_lock = " FOR UPDATE SKIP LOCKED",
		.id_table = "(SELECT value AS tid FROM json_array_elements_text(?2::json) AS value)",
		.notify = "SELECT pg_notify(?1, ?2)",
	},
};
/* clang-format on */

static const struct dialect *dialect(const struct db *db) { return &dialects[db->drv->dialect]; }

/* Unix times and sizes are BIGINT and fractions DOUBLE PRECISION: SQLite gives those
 * names the same INTEGER and REAL affinity as before, PostgreSQL the 64-bit types. */
#define M6_COLUMNS                                                \
	"ALTER TABLE analyses ADD COLUMN tempo DOUBLE PRECISION;" \
	"ALTER TABLE analyses ADD COLUMN key_name TEXT;"          \
	"ALTER TABLE analyses ADD COLUMN camelot TEXT;"
#define M7_COLUMNS "ALTER TABLE analyses ADD COLUMN first_beat DOUBLE PRECISION;"
#define M9_COLUMNS                                                         \
	"ALTER TABLE analyses ADD COLUMN first_downbeat DOUBLE PRECISION;" \
	"ALTER TABLE analyses ADD COLUMN sections TEXT;"

/* Migration 15's triggers: a write to table t raises its user's library version. */
/* clang-format off */
#define LIBRARY_TOUCH(row) \
	" BEGIN INSERT INTO library_versions (user_id, version) VALUES (" row ".user_id, 1)" \
	" ON CONFLICT (user_id) DO UPDATE SET version = version + 1; END;"
#define LIBRARY_TRIGGERS(t) \
	"CREATE TRIGGER IF NOT EXISTS " t "_library_i AFTER INSERT ON " t LIBRARY_TOUCH("NEW") \
	"CREATE TRIGGER IF NOT EXISTS " t "_library_u AFTER UPDATE ON " t LIBRARY_TOUCH("NEW") \
	"CREATE TRIGGER IF NOT EXISTS " t "_library_d AFTER DELETE ON " t LIBRARY_TOUCH("OLD")
#define PG_LIBRARY_TRIGGER(t) \
	"CREATE OR REPLACE TRIGGER " t "_library AFTER INSERT OR UPDATE OR DELETE ON " t \
	" FOR EACH ROW EXECUTE FUNCTION sfa_library_touch();"
/* clang-format on */

/* the migrations, one SQL statement per line, hand-aligned */
/* clang-format off */
static const struct migration {
	const char *sql;
	const char *pg; /* PostgreSQL's own text; NULL: sql serves both */
} migrations[] = {
	/* 1: accounts */
	{"CREATE TABLE users ("
	 "  id TEXT PRIMARY KEY,"
	 "  email TEXT NOT NULL,"
	 "  password_hash TEXT NOT NULL,"
	 "  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active','suspended')),"
	 "  role TEXT NOT NULL DEFAULT 'user',"
	 "  created_at BIGINT NOT NULL,"
	 "  updated_at BIGINT NOT NULL);"
	 "CREATE UNIQUE INDEX users_email ON users (lower(email));"
	 "CREATE TABLE sessions ("
	 "  token_hash TEXT PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  remember INTEGER NOT NULL,"
	 "  created_at BIGINT NOT NULL,"
	 "  expires_at BIGINT NOT NULL);"
	 "CREATE INDEX sessions_user ON sessions (user_id);"
	 "CREATE TABLE api_keys ("
	 "  id TEXT PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  name TEXT NOT NULL,"
	 "  prefix TEXT NOT NULL,"
	 "  key_hash TEXT NOT NULL UNIQUE,"
	 "  created_at BIGINT NOT NULL,"
	 "  last_used_at BIGINT,"
	 "  revoked_at BIGINT);"
	 "CREATE INDEX api_keys_user ON api_keys (user_id);", NULL},
	/* 2: library and jobs */
	{"CREATE TABLE tracks ("
	 "  id TEXT PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  spotify_id TEXT, title TEXT NOT NULL, artist TEXT NOT NULL DEFAULT '',"
	 "  album TEXT NOT NULL DEFAULT '', album_art_url TEXT, spotify_url TEXT, isrc TEXT,"
	 "  duration_s BIGINT,"
	 "  source TEXT NOT NULL CHECK (source IN ('spotify','upload')),"
	 "  audio_path TEXT, audio_format TEXT, audio_size BIGINT, audio_rate INTEGER,"
	 "  audio_channels INTEGER, audio_duration DOUBLE PRECISION,"
	 "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
	 "CREATE UNIQUE INDEX tracks_user_spotify ON tracks (user_id, spotify_id)"
	 "  WHERE spotify_id IS NOT NULL;"
	 "CREATE INDEX tracks_user ON tracks (user_id, created_at);"
	 "CREATE TABLE jobs ("
	 "  id TEXT PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  track_id TEXT REFERENCES tracks(id) ON DELETE CASCADE,"
	 "  type TEXT NOT NULL, status TEXT NOT NULL, progress INTEGER NOT NULL DEFAULT 0,"
	 "  message TEXT, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
	 "  run_at BIGINT NOT NULL, error TEXT, payload TEXT NOT NULL DEFAULT '{}', result TEXT,"
	 "  cancel_requested INTEGER NOT NULL DEFAULT 0,"
	 "  created_at BIGINT NOT NULL, started_at BIGINT, finished_at BIGINT);"
	 "CREATE INDEX jobs_queue ON jobs (type, status, run_at);"
	 "CREATE INDEX jobs_user ON jobs (user_id, created_at);"
	 "CREATE INDEX jobs_track ON jobs (track_id);"
	 "CREATE TABLE stems ("
	 "  id TEXT PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  track_id TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,"
	 "  job_id TEXT NOT NULL, stem_type TEXT NOT NULL, file_path TEXT NOT NULL,"
	 "  file_size BIGINT NOT NULL, format TEXT NOT NULL, duration DOUBLE PRECISION NOT NULL,"
	 "  engine TEXT NOT NULL, model TEXT NOT NULL, created_at BIGINT NOT NULL);"
	 "CREATE INDEX stems_track ON stems (track_id, created_at);"
	 "CREATE INDEX stems_path ON stems (file_path);"
	 "CREATE TABLE analyses ("
	 "  id INTEGER PRIMARY KEY,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  track_id TEXT NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,"
	 "  job_id TEXT NOT NULL, result TEXT NOT NULL, created_at BIGINT NOT NULL);"
	 "CREATE INDEX analyses_track ON analyses (track_id, id);"
	 "CREATE INDEX tracks_audio ON tracks (audio_path);", NULL},
	/* 3: Spotify log-in: pending authorizations and linked accounts */
	{"CREATE TABLE oauth_states ("
	 "  state_hash TEXT PRIMARY KEY,"
	 "  browser_hash TEXT NOT NULL,"
	 "  user_id TEXT REFERENCES users(id) ON DELETE CASCADE,"
	 "  verifier TEXT NOT NULL, redirect_uri TEXT NOT NULL,"
	 "  created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);"
	 "CREATE INDEX oauth_states_expiry ON oauth_states (expires_at);"
	 "CREATE TABLE spotify_links ("
	 "  user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
	 "  spotify_user_id TEXT NOT NULL UNIQUE,"
	 "  display_name TEXT, email TEXT,"
	 "  access_token TEXT NOT NULL, refresh_token TEXT, scope TEXT,"
	 "  expires_at BIGINT NOT NULL,"
	 "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);", NULL},
	/* 4: lal.ai: users' own license keys (sealed) and the tasks of lal.ai jobs */
	{"CREATE TABLE lalalai_keys ("
	 "  user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
	 "  sealed_key TEXT NOT NULL, hint TEXT NOT NULL,"
	 "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
	 "CREATE TABLE lalalai_tasks ("
	 "  job_id TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,"
	 "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
	 "  idempotency_key TEXT NOT NULL, source_id TEXT, task_id TEXT,"
	 "  status TEXT NOT NULL DEFAULT 'pending', duration DOUBLE PRECISION NOT NULL DEFAULT 0,"
	 "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);"
	 "CREATE INDEX lalalai_tasks_task ON lalalai_tasks (task_id);"
	 "CREATE INDEX lalalai_tasks_user ON lalalai_tasks (user_id, created_at);", NULL},
	/* 5: accounts created through Spotify log-in have no password of their own yet */
	{"ALTER TABLE users ADD COLUMN password_set INTEGER NOT NULL DEFAULT 1;", NULL},
	/* 6: what a library row shows of an analysis, kept beside it so a page of the library
	 * never parses whole analyses (their per-frame features make them ~100 KB). No
	 * PostgreSQL database predates these columns, so it has no rows to fill. */
	{M6_COLUMNS "UPDATE analyses SET tempo = json_extract(result, '$.tempo'), "
	 "  key_name = json_extract(result, '$.key'), camelot = json_extract(result, '$.camelot');",
	 M6_COLUMNS},
	/* 7: the first beat, where a DJ program's beat grid is anchored */
	{M7_COLUMNS "UPDATE analyses SET first_beat = json_extract(result, '$.beats[0]');",
	 M7_COLUMNS},
	/* 8: a track rendered from another (key-shift, time-stretch) and how */
	{"ALTER TABLE tracks ADD COLUMN parent_id TEXT REFERENCES tracks(id) ON DELETE SET NULL;"
	 "ALTER TABLE tracks ADD COLUMN transform TEXT;", NULL},
	/* 9: the first bar's start (the grid's true anchor) and the sections (cue points) */
	{M9_COLUMNS "UPDATE analyses SET first_downbeat = json_extract(result, '$.downbeats[0]'), "
	 "  sections = json_extract(result, '$.sections');",
	 M9_COLUMNS},
	/* 10: PostgreSQL lacks two things SQLite gives every table: an insertion order (rowid),
	 * which the listings use to break ties of equal times, and INTEGER PRIMARY KEY's
	 * numbering. A sequence column named rowid lets the same SQL order by insertion on
	 * both; SQLite has nothing to do. */
	{"SELECT 1;",
	 "ALTER TABLE analyses ALTER COLUMN id TYPE BIGINT,"
	 "  ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;"
	 "ALTER TABLE api_keys ADD COLUMN rowid BIGSERIAL;"
	 "ALTER TABLE tracks ADD COLUMN rowid BIGSERIAL;"
	 "ALTER TABLE jobs ADD COLUMN rowid BIGSERIAL;"
	 "ALTER TABLE stems ADD COLUMN rowid BIGSERIAL;"
	 "ALTER TABLE lalalai_tasks ADD COLUMN rowid BIGSERIAL;"},
	/* 11: job leases. A running job names the scheduler (node) that runs it and until when
	 * its claim holds; the node renews it while the child runs, and any node re-queues a job
	 * whose lease passed (its node died). Rows of earlier builds have no lease: start-up
	 * recovery handles them as before. */
	{"ALTER TABLE jobs ADD COLUMN lease_owner TEXT;"
	 "ALTER TABLE jobs ADD COLUMN lease_expires_at BIGINT;"
	 "CREATE INDEX jobs_lease ON jobs (lease_expires_at);", NULL},
	/* 12: rate-limit windows, for servers that share the database (db_rate_hit) */
	{"CREATE TABLE rate_windows (key TEXT PRIMARY KEY, start BIGINT NOT NULL,"
	 "  hits INTEGER NOT NULL);", NULL},
	/* 13: lal.ai separations became jobs of their own type, "lalalai" (jobs/registry.h),
	 * with slots of their own; earlier versions stored them as "processing" with engine
	 * "lalalai" in the payload, which json_encode writes compactly. Clients see both as
	 * "processing". */
	{"UPDATE jobs SET type = 'lalalai' WHERE type = 'processing' "
	 "  AND payload LIKE '%\"engine\":\"lalalai\"%';", NULL},
	/* 14: lal.ai check slots per license key (its SHA-256), shared by every job process
	 * of every node of one database (db_lalalai_check_slot) */
	{"CREATE TABLE IF NOT EXISTS lalalai_check_slots (key_hash TEXT PRIMARY KEY,"
	 "  next_at_ms BIGINT NOT NULL);", NULL},
	/* 15: a version of each user's library, raised by every write to their tracks,
	 * analyses and stems from any process or server (db_library_version); repeatable */
	{"CREATE TABLE IF NOT EXISTS library_versions (user_id TEXT PRIMARY KEY,"
	 "  version BIGINT NOT NULL);"
	 LIBRARY_TRIGGERS("tracks") LIBRARY_TRIGGERS("analyses") LIBRARY_TRIGGERS("stems")
	 "CREATE TRIGGER IF NOT EXISTS users_library_d AFTER DELETE ON users"
	 "  BEGIN DELETE FROM library_versions WHERE user_id = OLD.id; END;",
	 "CREATE TABLE IF NOT EXISTS library_versions (user_id TEXT PRIMARY KEY,"
	 "  version BIGINT NOT NULL);"
	 "CREATE OR REPLACE FUNCTION sfa_library_touch() RETURNS trigger LANGUAGE plpgsql"
	 "  SET search_path FROM CURRENT AS $$"
	 "  DECLARE uid TEXT;"
	 "  BEGIN"
	 "    IF TG_OP = 'DELETE' THEN uid := OLD.user_id; ELSE uid := NEW.user_id; END IF;"
	 "    INSERT INTO library_versions (user_id, version) VALUES (uid, 1)"
	 "      ON CONFLICT (user_id) DO UPDATE SET version = library_versions.version + 1;"
	 "    RETURN NULL;"
	 "  END $$;"
	 PG_LIBRARY_TRIGGER("tracks") PG_LIBRARY_TRIGGER("analyses") PG_LIBRARY_TRIGGER("stems")
	 "CREATE OR REPLACE FUNCTION sfa_library_forget() RETURNS trigger LANGUAGE plpgsql"
	 "  SET search_path FROM CURRENT AS $$"
	 "  BEGIN DELETE FROM library_versions WHERE user_id = OLD.id; RETURN NULL; END $$;"
	 "CREATE OR REPLACE TRIGGER users_library AFTER DELETE ON users"
	 "  FOR EACH ROW EXECUTE FUNCTION sfa_library_forget();"},
};
/* clang-format on */

/* See the lock discipline above. t_conn is the connection this thread acquired (NULL when
 * none could be made: every statement then fails with SFA_EDB). */
static _Thread_local const struct db *t_held;
static _Thread_local const char *t_held_by;
static _Thread_local struct db_conn *t_conn;
static _Thread_local const struct db *t_tx; /* db_tx_begin on this thread: calls join it */

/* acquire for a function that writes (or reads what it is about to write); acquire_read
 * for one that only reads, which on SQLite runs beside writes on a reader connection. */
#define acquire(db)      acquire_as(db, __func__, false)
#define acquire_read(db) acquire_as(db, __func__, true)

static void acquire_as(struct db *db, const char *fn, bool read_only)
{
	if (t_tx == db)
		return; /* inside this thread's own transaction: its connection is pinned */
	if (t_held == db) {
		fprintf(stderr,
		        "sfa: database re-entered: %s was called while this thread holds a database "
		        "connection taken by %s (a callback or nested call under it); aborting\n",
		        fn, t_held_by);
		abort();
	}
	/* The driver's functions, not the macros: */
	t_conn = read_only ? (db->drv->acquire_read)(db->pool) : (db->drv->acquire)(db->pool);
	t_held = db;
	t_held_by = fn;
}

static void release(struct db *db)
{
	if (t_tx == db)
		return; /* released by db_tx_commit / db_tx_rollback */
	if (t_conn)
		db->drv->release(db->pool, t_conn);
	t_conn = NULL;
	t_held = NULL;
	t_held_by = NULL;
}

/* Times the database stamps itself (updated_at); unixepoch() is SQLite's alone. */
static int64_t now_s(void) { return (int64_t)time(NULL); }

static int exec(struct db *db, const char *sql)
{
	return t_conn ? db->drv->exec(t_conn, sql) : SFA_EDB;
}

static int begin(struct db *db) { return t_conn ? db->drv->begin(t_conn) : SFA_EDB; }

static int64_t changes(struct db *db) { return t_conn ? db->drv->changes(t_conn) : 0; }

static int step(struct db_stmt *st) { return st->drv->step(st); }

static void finalize(struct db_stmt *st)
{
	if (st)
		st->drv->finalize(st);
}

static int64_t col_int64(struct db_stmt *st, int i) { return st->drv->col_int64(st, i); }

static int col_int(struct db_stmt *st, int i) { return (int)st->drv->col_int64(st, i); }

static double col_double(struct db_stmt *st, int i) { return st->drv->col_double(st, i); }

/* Prepares sql on this thread's connection and binds arguments described by types (see
 * driver.h). Returns NULL on failure (logged). */
static struct db_stmt *prep(struct db *db, const char *sql, const char *types, ...)
{
	if (!t_conn)
		return NULL;
	va_list ap;
	va_start(ap, types);
	struct db_stmt *st = db->drv->prepare(t_conn, sql, types, ap);
	va_end(ap);
	return st;
}

/* Steps a one-row query; 0 with the row read by read(), SFA_ENOTFOUND, or an error. */
static int one_row(struct db *db, struct db_stmt *st, void (*read)(struct db_stmt *, void *),
                   void *out)
{
	(void)db;
	if (!st)
		return SFA_EDB;
	int rc = step(st);
	if (rc == DB_ROW)
		read(st, out);
	finalize(st);
	return rc == DB_ROW ? 0 : rc == DB_DONE ? SFA_ENOTFOUND : rc;
}

static void read_int_cb(struct db_stmt *st, void *out) { *(int *)out = col_int(st, 0); }

static void read_int64_cb(struct db_stmt *st, void *out) { *(int64_t *)out = col_int64(st, 0); }

static int query_int(struct db *db, const char *sql, int *out)
{
	return one_row(db, prep(db, sql, ""), read_int_cb, out);
}

static int migrate(struct db *db, char *err, size_t n_err)
{
	int rc = 0;
	acquire(db);
	if (exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);")) {
		rc = sfa_err(err, n_err, SFA_EDB, "Cannot create the schema_version table.");
		goto out;
	}
	int n = (int)(sizeof migrations / sizeof migrations[0]);
	/* Each step reads the version inside its transaction, so two processes opening a new
	 * database at once apply every migration exactly once. */
	for (;;) {
		int version = 0;
		if (begin(db)) {
			rc = sfa_err(err, n_err, SFA_EDB, "Cannot start a migration transaction.");
			goto out;
		}
		int q = query_int(db, "SELECT version FROM schema_version", &version);
		if (q == SFA_ENOTFOUND && exec(db, "INSERT INTO schema_version VALUES (0)"))
			q = SFA_EDB;
		else if (q == SFA_ENOTFOUND)
			q = 0;
		if (q) {
			exec(db, "ROLLBACK");
			rc = sfa_err(err, n_err, SFA_EDB, "Cannot read the schema version.");
			goto out;
		}
		if (version >= n) {
			exec(db, "ROLLBACK");
			if (version > n)
				rc = sfa_err(
					err, n_err, SFA_EDB,
					"The database was written by a newer sfa (schema %d, this build "
					"knows %d); upgrade sfa.",
					version, n);
			goto out;
		}
		const struct migration *m = &migrations[version];
		const char *sql = db->drv->dialect == DB_DIALECT_PG && m->pg ? m->pg : m->sql;
		char set[64];
		snprintf(set, sizeof set, "UPDATE schema_version SET version = %d;", version + 1);
		if (exec(db, sql) || exec(db, set) || exec(db, "COMMIT")) {
			exec(db, "ROLLBACK");
			rc = sfa_err(err, n_err, SFA_EDB, "Database migration %d failed.",
			             version + 1);
			goto out;
		}
	}
out:
	release(db);
	return rc;
}

static bool is_pg_url(const char *target)
{
	return strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0;
}

int db_open(const char *target, int n_pool, struct db **out, char *err, size_t n_err)
{
	struct db *db = calloc(1, sizeof *db);
	if (!db)
		return sfa_err(err, n_err, SFA_ENOMEM, "Out of memory opening the database.");
	db->drv = is_pg_url(target) ? &db_driver_pg : &db_driver_sqlite;
	pthread_mutex_init(&db->lmu, NULL);
	int rc = db->drv->open(target, n_pool > 0 ? n_pool : DB_POOL_DEFAULT, &db->pool, err,
	                       n_err);
	if (rc) {
		pthread_mutex_destroy(&db->lmu);
		free(db);
		return rc;
	}
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
	db->drv->close(db->pool);
	pthread_mutex_destroy(&db->lmu);
	free(db);
}

/* ---- Notifications ------------------------------------------------------------------ */

enum { QUEUE_MAX = 1024 }; /* in-process: notifications a listener may have unread */

struct db_listener {
	struct db *db;
	struct db_listen_conn *conn; /* the driver's (PostgreSQL); NULL in-process */
	/* In-process: a pipe whose byte says "something queued", and a ring of payloads. */
	int pipe[2];
	char channel[64];
	char (*queue)[DB_NOTIFY_MAX];
	unsigned head, n; /* guarded by db->lmu */
	struct db_listener *next;
};

static int run(struct db *db, struct db_stmt *st, bool need_change);

int db_notify(struct db *db, const char *channel, const char *payload)
{
	if (strlen(payload) >= DB_NOTIFY_MAX)
		return SFA_EINVAL;
	const char *sql = dialect(db)->notify;
	if (sql) {
		acquire(db);
		int rc = run(db, prep(db, sql, "tt", channel, payload), false);
		release(db);
		return rc;
	}
	int n_dropped = 0;
	pthread_mutex_lock(&db->lmu);
	for (struct db_listener *l = db->listeners; l; l = l->next) {
		if (strcmp(l->channel, channel) != 0)
			continue;
		if (l->n == QUEUE_MAX) {
			n_dropped++; /* a listener that stopped reading: the row stays the truth */
			continue;
		}
		str_copy(l->queue[(l->head + l->n) % QUEUE_MAX], DB_NOTIFY_MAX, payload);
		l->n++;
		ssize_t w = write(l->pipe[1], "x", 1); /* full pipe: a byte is already waiting */
		(void)w;
	}
	pthread_mutex_unlock(&db->lmu);
	if (n_dropped)
		log_warn("database: %d listener(s) of %s are %d notifications behind; one dropped",
		         n_dropped, channel, QUEUE_MAX);
	return 0;
}

int db_listen(struct db *db, const char *channel, struct db_listener **out)
{
	struct db_listener *l = calloc(1, sizeof *l);
	if (!l)
		return SFA_ENOMEM;
	l->db = db;
	l->pipe[0] = l->pipe[1] = -1;
	str_copy(l->channel, sizeof l->channel, channel);
	if (db->drv->listen_open) {
		l->conn = db->drv->listen_open(db->pool, channel);
		if (!l->conn) {
			free(l);
			return SFA_ENOMEM;
		}
		*out = l;
		return 0;
	}
	l->queue = calloc(QUEUE_MAX, sizeof *l->queue);
	if (!l->queue || pipe2(l->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		free(l->queue);
		free(l);
		return SFA_EIO;
	}
	pthread_mutex_lock(&db->lmu);
	l->next = db->listeners;
	db->listeners = l;
	pthread_mutex_unlock(&db->lmu);
	*out = l;
	return 0;
}

int db_listener_fd(struct db_listener *l)
{
	return l->conn ? l->db->drv->listen_fd(l->conn) : l->pipe[0];
}

int db_listener_next(struct db_listener *l, char *out, size_t n_out)
{
	if (l->conn)
		return l->db->drv->listen_next(l->conn, out, n_out);
	char drain[64];
	while (read(l->pipe[0], drain, sizeof drain) > 0) {
	}
	int got = 0;
	pthread_mutex_lock(&l->db->lmu);
	if (l->n) {
		str_copy(out, n_out, l->queue[l->head]);
		l->head = (l->head + 1) % QUEUE_MAX;
		l->n--;
		got = 1;
	}
	pthread_mutex_unlock(&l->db->lmu);
	return got;
}

void db_listener_close(struct db_listener *l)
{
	if (!l)
		return;
	if (l->conn) {
		l->db->drv->listen_close(l->conn);
	} else {
		pthread_mutex_lock(&l->db->lmu);
		for (struct db_listener **pp = &l->db->listeners; *pp; pp = &(*pp)->next) {
			if (*pp == l) {
				*pp = l->next;
				break;
			}
		}
		pthread_mutex_unlock(&l->db->lmu);
		close(l->pipe[0]);
		close(l->pipe[1]);
		free(l->queue);
	}
	free(l);
}

int db_ping(struct db *db, char *err, size_t n_err)
{
	acquire_read(db);
	int v = 0;
	int rc = query_int(db, "SELECT count(*) FROM schema_version", &v);
	if (rc)
		sfa_err(err, n_err, SFA_EDB, "the database does not answer: %s",
		        t_conn ? db->drv->errmsg(t_conn) : "no connection could be made");
	release(db);
	return rc ? SFA_EDB : 0;
}

int db_schema_version(struct db *db)
{
	acquire_read(db);
	int v = -1;
	query_int(db, "SELECT version FROM schema_version", &v);
	release(db);
	return v;
}

bool db_is_shared(const struct db *db) { return db->drv->dialect == DB_DIALECT_PG; }

int db_tx_begin(struct db *db)
{
	acquire(db);
	if (begin(db)) {
		release(db);
		return SFA_EDB;
	}
	t_tx = db;
	return 0;
}

int db_tx_commit(struct db *db)
{
	t_tx = NULL;
	int rc = exec(db, "COMMIT");
	if (rc)
		exec(db, "ROLLBACK");
	release(db);
	return rc;
}

void db_tx_rollback(struct db *db)
{
	t_tx = NULL;
	exec(db, "ROLLBACK");
	release(db);
}

/* Runs a statement that returns no rows; constraint violations are SFA_ECONFLICT and
 * "no row changed" is SFA_ENOTFOUND when need_change is set. */
static int run(struct db *db, struct db_stmt *st, bool need_change)
{
	if (!st)
		return SFA_EDB;
	int rc = step(st);
	finalize(st);
	if (rc < 0)
		return rc;
	if (need_change && changes(db) == 0)
		return SFA_ENOTFOUND;
	return 0;
}

static void col_text(struct db_stmt *st, int i, char *dst, size_t n)
{
	const char *t = st->drv->col_text(st, i);
	str_copy(dst, n, t ? t : "");
}

#define USER_COLS "u.id, u.email, u.password_hash, u.status, u.role, u.created_at, u.password_set"

static void read_user_row(struct db_stmt *st, void *out)
{
	struct db_user *u = out;
	col_text(st, 0, u->id, sizeof u->id);
	col_text(st, 1, u->email, sizeof u->email);
	col_text(st, 2, u->password_hash, sizeof u->password_hash);
	col_text(st, 3, u->status, sizeof u->status);
	col_text(st, 4, u->role, sizeof u->role);
	u->created_at = col_int64(st, 5);
	u->password_set = col_int(st, 6) != 0;
}

/* Steps every row of st, reading each with read() into a growing array of row_size
 * elements, and hands the rows over as one array allocated from a. */
static int all_rows(struct db *db, struct db_stmt *st, size_t row_size,
                    void (*read)(struct db_stmt *, void *), struct arena *a, void **out,
                    size_t *n_out, const char *what)
{
	(void)db, (void)what;
	if (!st)
		return SFA_EDB;
	unsigned char *rows = NULL;
	size_t n = 0, cap = 0;
	int rc = 0, s;
	while ((s = step(st)) == DB_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			unsigned char *grown = realloc(rows, ncap * row_size);
			if (!grown) {
				rc = SFA_ENOMEM;
				break;
			}
			rows = grown;
			cap = ncap;
		}
		read(st, rows + n * row_size);
		n++;
	}
	if (!rc && s < 0)
		rc = s;
	finalize(st);
	void *copy = NULL;
	if (!rc && n) {
		copy = arena_alloc(a, n * row_size);
		if (!copy)
			rc = SFA_ENOMEM;
		else
			memcpy(copy, rows, n * row_size);
	}
	free(rows);
	if (!rc) {
		*out = copy;
		*n_out = n;
	}
	return rc;
}

static int read_user(struct db *db, struct db_stmt *st, struct db_user *out)
{
	return one_row(db, st, read_user_row, out);
}

int db_user_insert(struct db *db, const struct db_user *u)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO users (id, email, password_hash, status, role, created_at, "
	                  "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
	                  "tttttii", u->id, u->email, u->password_hash,
	                  u->status[0] ? u->status : "active", u->role[0] ? u->role : "user",
	                  u->created_at, u->created_at),
	             false);
	release(db);
	return rc;
}

int db_user_by_email(struct db *db, const char *email, struct db_user *out)
{
	acquire_read(db);
	int rc = read_user(db,
	                   prep(db,
	                        "SELECT " USER_COLS " FROM users u WHERE lower(u.email) = lower(?)",
	                        "t", email),
	                   out);
	release(db);
	return rc;
}

int db_user_by_id(struct db *db, const char *id, struct db_user *out)
{
	acquire_read(db);
	int rc = read_user(
		db, prep(db, "SELECT " USER_COLS " FROM users u WHERE u.id = ?", "t", id), out);
	release(db);
	return rc;
}

int db_user_mark_passwordless(struct db *db, const char *user_id)
{
	acquire(db);
	int rc = run(db, prep(db, "UPDATE users SET password_set = 0 WHERE id = ?", "t", user_id),
	             true);
	release(db);
	return rc;
}

int db_user_set_email(struct db *db, const char *user_id, const char *email)
{
	acquire(db);
	int rc = run(db,
	             prep(db, "UPDATE users SET email = ?, updated_at = ? WHERE id = ?", "tit",
	                  email, now_s(), user_id),
	             true);
	release(db);
	return rc;
}

int db_user_set_password(struct db *db, const char *user_id, const char *password_hash)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE users SET password_hash = ?, password_set = 1, "
	                  "updated_at = ? WHERE id = ?",
	                  "tit", password_hash, now_s(), user_id),
	             true);
	release(db);
	return rc;
}

int db_session_insert(struct db *db, const char *token_hash, const char *user_id,
                      int64_t expires_at, bool remember)
{
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "INSERT INTO sessions (token_hash, user_id, remember, created_at, expires_at) "
	             "VALUES (?, ?, ?, ?, ?)",
	             "ttiii", token_hash, user_id, (int64_t)remember, now_s(), expires_at),
		false);
	release(db);
	return rc;
}

int db_session_user(struct db *db, const char *token_hash, int64_t now, struct db_user *out)
{
	acquire_read(db);
	int rc = read_user(
		db,
		prep(db,
	             "SELECT " USER_COLS " FROM sessions s JOIN users u ON u.id = s.user_id "
	             "WHERE s.token_hash = ? AND s.expires_at > ? AND u.status = 'active'",
	             "ti", token_hash, now),
		out);
	release(db);
	return rc;
}

int db_session_delete(struct db *db, const char *token_hash)
{
	acquire(db);
	int rc = run(db, prep(db, "DELETE FROM sessions WHERE token_hash = ?", "t", token_hash),
	             false);
	release(db);
	return rc;
}

int db_session_delete_others(struct db *db, const char *user_id, const char *keep_hash)
{
	acquire(db);
	int rc = run(db,
	             prep(db, "DELETE FROM sessions WHERE user_id = ? AND token_hash <> ?", "tt",
	                  user_id, keep_hash ? keep_hash : ""),
	             false);
	release(db);
	return rc;
}

int db_api_key_insert(struct db *db, const char *user_id, const struct db_api_key *k,
                      const char *key_hash)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) "
	                  "VALUES (?, ?, ?, ?, ?, ?)",
	                  "ttttti", k->id, user_id, k->name, k->prefix, key_hash, k->created_at),
	             false);
	release(db);
	return rc;
}

int db_api_key_user(struct db *db, const char *key_hash, int64_t now, struct db_user *out)
{
	acquire(db);
	int rc = read_user(
		db,
		prep(db,
	             "SELECT " USER_COLS " FROM api_keys k JOIN users u ON u.id = k.user_id "
	             "WHERE k.key_hash = ? AND k.revoked_at IS NULL AND u.status = 'active'",
	             "t", key_hash),
		out);
	if (rc == 0)
		run(db,
		    /* at most once a minute per key: a busy client does not write on every call */
		    prep(db,
		         "UPDATE api_keys SET last_used_at = ?1 WHERE key_hash = ?2 AND "
		         "coalesce(last_used_at, 0) <= ?1 - 60",
		         "it", now, key_hash),
		    false);
	release(db);
	return rc;
}

int db_api_key_list(struct db *db, const char *user_id, struct db_api_key *out, size_t n_max,
                    size_t *n_out)
{
	acquire_read(db);
	struct db_stmt *st = prep(db,
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
	int s;
	while (n < n_max && (s = step(st)) == DB_ROW) {
		struct db_api_key *k = &out[n++];
		col_text(st, 0, k->id, sizeof k->id);
		col_text(st, 1, k->name, sizeof k->name);
		col_text(st, 2, k->prefix, sizeof k->prefix);
		k->created_at = col_int64(st, 3);
		k->last_used_at = col_int64(st, 4);
		k->revoked_at = col_int64(st, 5);
	}
	finalize(st);
	if (s < 0)
		rc = s;
	else
		*n_out = n;
out:
	release(db);
	return rc;
}

static void read_hash_cb(struct db_stmt *st, void *out) { col_text(st, 0, out, 65); }

int db_api_key_revoke(struct db *db, const char *user_id, const char *key_id, int64_t now,
                      char *key_hash)
{
	char hash[65];
	acquire(db);
	int rc = one_row(db,
	                 prep(db,
	                      "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND "
	                      "revoked_at IS NULL RETURNING key_hash",
	                      "itt", now, key_id, user_id),
	                 read_hash_cb, hash);
	release(db);
	if (rc == 0 && key_hash)
		memcpy(key_hash, hash, sizeof hash);
	return rc;
}

/* ---- Tracks ------------------------------------------------------------------------ */

#define TRACK_COLS                                                                                 \
	"id, user_id, coalesce(spotify_id,''), title, artist, album, coalesce(album_art_url,''), " \
	"coalesce(spotify_url,''), coalesce(isrc,''), coalesce(duration_s,0), source, "            \
	"coalesce(audio_path,''), coalesce(audio_format,''), coalesce(audio_size,0), "             \
	"coalesce(audio_rate,0), coalesce(audio_channels,0), coalesce(audio_duration,0), "         \
	"created_at, updated_at, coalesce(parent_id,''), coalesce(transform,'')"

static void read_track_row(struct db_stmt *st, struct db_track *t)
{
	col_text(st, 0, t->id, sizeof t->id);
	col_text(st, 1, t->user_id, sizeof t->user_id);
	col_text(st, 2, t->spotify_id, sizeof t->spotify_id);
	col_text(st, 3, t->title, sizeof t->title);
	col_text(st, 4, t->artist, sizeof t->artist);
	col_text(st, 5, t->album, sizeof t->album);
	col_text(st, 6, t->album_art_url, sizeof t->album_art_url);
	col_text(st, 7, t->spotify_url, sizeof t->spotify_url);
	col_text(st, 8, t->isrc, sizeof t->isrc);
	t->duration_s = col_int64(st, 9);
	col_text(st, 10, t->source, sizeof t->source);
	col_text(st, 11, t->audio_path, sizeof t->audio_path);
	col_text(st, 12, t->audio_format, sizeof t->audio_format);
	t->audio_size = col_int64(st, 13);
	t->audio_rate_hz = col_int(st, 14);
	t->audio_channels = col_int(st, 15);
	t->audio_duration_s = col_double(st, 16);
	t->created_at = col_int64(st, 17);
	t->updated_at = col_int64(st, 18);
	col_text(st, 19, t->parent_id, sizeof t->parent_id);
	col_text(st, 20, t->transform, sizeof t->transform);
}

static void read_track_cb(struct db_stmt *st, void *out) { read_track_row(st, out); }

int db_track_insert(struct db *db, const struct db_track *t)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO tracks (id, user_id, spotify_id, title, artist, album, "
	                  "album_art_url, spotify_url, isrc, duration_s, source, audio_path, "
	                  "audio_format, audio_size, audio_rate, audio_channels, audio_duration, "
	                  "created_at, updated_at, parent_id, transform) "
	                  "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
	                  "ttzttt"
	                  "zzzitzziiidii"
	                  "zz",
	                  t->id, t->user_id, t->spotify_id, t->title, t->artist, t->album,
	                  t->album_art_url, t->spotify_url, t->isrc, t->duration_s, t->source,
	                  t->audio_path, t->audio_format, t->audio_size, (int64_t)t->audio_rate_hz,
	                  (int64_t)t->audio_channels, t->audio_duration_s, t->created_at,
	                  t->created_at, t->parent_id, t->transform),
	             false);
	release(db);
	return rc;
}

int db_track_get(struct db *db, const char *user_id, const char *id, struct db_track *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db, "SELECT " TRACK_COLS " FROM tracks WHERE id = ? AND user_id = ?",
	                      "tt", id, user_id),
	                 read_track_cb, out);
	release(db);
	return rc;
}

/* Escapes LIKE wildcards so a search for "50%" matches literally. */
static void like_pattern(const char *q, char *out, size_t n_out)
{
	size_t j = 0;
	if (n_out < 4)
		return;
	out[j++] = '%';
	for (; *q && j + 3 < n_out; q++) {
		if (*q == '%' || *q == '_' || *q == '\\')
			out[j++] = '\\';
		out[j++] = *q;
	}
	out[j++] = '%';
	out[j] = '\0';
}

/* The latest analysis's column c of the row's track, for ORDER BY. */
#define LATEST_ANALYSIS(c)                                                                       \
	"(SELECT " c " FROM analyses WHERE analyses.track_id = tracks.id AND " c " IS NOT NULL " \
	"ORDER BY analyses.id DESC LIMIT 1)"

int db_track_list(struct db *db, const char *user_id, const char *q, enum db_track_sort sort,
                  int64_t offset, int64_t limit, struct arena *a, struct db_track **out,
                  size_t *n_out, int64_t *total)
{
	/* indexed by enum db_track_sort; each ends in a unique key so pages never overlap */
	static const char *const orders[] = {
		"created_at DESC, rowid DESC",
		"created_at ASC, rowid ASC",
		"lower(title) ASC, created_at DESC, rowid DESC",
		"lower(artist) = '' ASC, lower(artist) ASC, lower(title) ASC, rowid DESC",
		"coalesce(nullif(audio_duration, 0), nullif(duration_s, 0)) IS NULL ASC, "
		"coalesce(nullif(audio_duration, 0), nullif(duration_s, 0)) ASC, rowid DESC",
		LATEST_ANALYSIS("tempo") " IS NULL ASC, " LATEST_ANALYSIS(
			"tempo") " ASC, rowid DESC",
		LATEST_ANALYSIS(
			"camelot") " IS NULL ASC, "
				   "CAST(substr(" LATEST_ANALYSIS("camelot") ", 1, length(" LATEST_ANALYSIS(
					   "camelot") ") - 1) AS INTEGER) ASC, " LATEST_ANALYSIS("camelot") " ASC, rowid DESC",
	};
	if ((unsigned)sort >= sizeof orders / sizeof *orders)
		return SFA_EINVAL;
	char pat[600];
	like_pattern(q ? q : "", pat, sizeof pat);
	char sql[2048];
	/* PostgreSQL's LIKE is case-sensitive and SQLite's is not: lower() on both sides
	 * makes the search the same on both. */
#define TRACK_MATCH                                                                       \
	" FROM tracks WHERE user_id = ? AND (lower(title) LIKE lower(?2) ESCAPE '\\' OR " \
	"lower(artist) LIKE lower(?2) ESCAPE '\\')"
	snprintf(sql, sizeof sql, "SELECT " TRACK_COLS TRACK_MATCH " ORDER BY %s LIMIT ? OFFSET ?",
	         orders[sort]);
	acquire_read(db);
	int rc = one_row(db, prep(db, "SELECT count(*)" TRACK_MATCH, "tt", user_id, pat),
	                 read_int64_cb, total);
	if (rc)
		goto out;
	struct db_stmt *st = prep(db, sql, "ttii", user_id, pat, limit, offset);
	rc = all_rows(db, st, sizeof **out, read_track_cb, a, (void **)out, n_out, "list tracks");
out:
	release(db);
	return rc;
}

struct summary_rows {
	const struct db_track *tracks;
	struct db_track_summary *s;
	size_t n;
	struct arena *a; /* for the sections' text */
	bool nomem;      /* the sections could not be copied */
};

static void read_summary(struct db_stmt *st, void *out)
{
	struct summary_rows *r = out;
	const char *id = st->drv->col_text(st, 0);
	size_t i = 0;
	while (id && i < r->n && strcmp(r->tracks[i].id, id) != 0)
		i++;
	if (!id || i == r->n)
		return;
	struct db_track_summary *s = &r->s[i];
	s->tempo_bpm = col_double(st, 1);
	col_text(st, 2, s->key, sizeof s->key);
	col_text(st, 3, s->camelot, sizeof s->camelot);
	s->first_beat_s = col_double(st, 4);
	const char *t = st->drv->col_text(st, 5);
	s->sections_json = t ? arena_strdup(r->a, t) : NULL;
	r->nomem |= t && !s->sections_json;
	s->n_stems = col_int(st, 6);
}

int db_track_summaries(struct db *db, const char *user_id, const struct db_track *tracks, size_t n,
                       struct arena *a, struct db_track_summary **out)
{
	if (n == 0) {
		*out = NULL;
		return 0;
	}
	struct db_track_summary *s = arena_alloc(a, n * sizeof *s);
	/* The tracks' ids as a JSON array of strings (ids are UUIDs: nothing to escape). */
	size_t cap = n * (UUID_STR_LEN + 3) + 3;
	char *ids = arena_alloc(a, cap);
	if (!s || !ids)
		return SFA_ENOMEM;
	memset(s, 0, n * sizeof *s);
	size_t len = 1;
	ids[0] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(ids + len, cap - len, "%s\"%s\"", i ? "," : "",
		                        tracks[i].id);
	snprintf(ids + len, cap - len, "]");
	/* One statement for the whole page: each track's latest analysis values and the stem
	 * count of its latest separation. */
	char sql[2048];
	snprintf(sql, sizeof sql,
	         "SELECT tid, "
	         "coalesce((SELECT tempo FROM analyses WHERE user_id = ?1 AND track_id = tid AND "
	         "tempo IS NOT NULL ORDER BY id DESC LIMIT 1), 0), "
	         "coalesce((SELECT key_name FROM analyses WHERE user_id = ?1 AND track_id = tid "
	         "AND key_name IS NOT NULL ORDER BY id DESC LIMIT 1), ''), "
	         "coalesce((SELECT camelot FROM analyses WHERE user_id = ?1 AND track_id = tid "
	         "AND camelot IS NOT NULL ORDER BY id DESC LIMIT 1), ''), "
	         "coalesce((SELECT coalesce(first_downbeat, first_beat) FROM analyses "
	         "WHERE user_id = ?1 AND track_id = tid AND tempo IS NOT NULL "
	         "ORDER BY id DESC LIMIT 1), -1), "
	         "(SELECT sections FROM analyses WHERE user_id = ?1 AND track_id = tid "
	         "AND sections IS NOT NULL ORDER BY id DESC LIMIT 1), "
	         "(SELECT count(*) FROM stems WHERE user_id = ?1 AND track_id = tid "
	         "AND job_id = (SELECT job_id FROM stems WHERE user_id = ?1 AND "
	         "track_id = tid ORDER BY created_at DESC, rowid DESC LIMIT 1)) "
	         "FROM %s AS ids",
	         dialect(db)->id_table);
	struct summary_rows rows = {tracks, s, n, a, false};
	acquire_read(db);
	struct db_stmt *st = prep(db, sql, "tt", user_id, ids);
	int rc = st ? 0 : SFA_EDB;
	while (st && (rc = step(st)) == DB_ROW)
		read_summary(st, &rows);
	finalize(st);
	release(db);
	if (rc)
		return rc;
	if (rows.nomem)
		return SFA_ENOMEM;
	*out = s;
	return 0;
}

int db_track_update_meta(struct db *db, const char *user_id, const char *id, const char *title,
                         const char *artist, const char *album)
{
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "UPDATE tracks SET title = coalesce(?, title), artist = coalesce(?, artist), "
	             "album = coalesce(?, album), updated_at = ? "
	             "WHERE id = ? AND user_id = ?",
	             "zzzitt", title, artist, album, now_s(), id, user_id),
		true);
	release(db);
	return rc;
}

int db_track_set_audio(struct db *db, const char *id, const struct db_track *a)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE tracks SET audio_path = ?, audio_format = ?, audio_size = ?, "
	                  "audio_rate = ?, audio_channels = ?, audio_duration = ?, "
	                  "updated_at = ? WHERE id = ?",
	                  "zziiidit", a->audio_path, a->audio_format, a->audio_size,
	                  (int64_t)a->audio_rate_hz, (int64_t)a->audio_channels,
	                  a->audio_duration_s, now_s(), id),
	             true);
	release(db);
	return rc;
}

int db_track_delete(struct db *db, const char *user_id, const char *id)
{
	acquire(db);
	int rc = run(db,
	             prep(db, "DELETE FROM tracks WHERE id = ? AND user_id = ?", "tt", id, user_id),
	             true);
	release(db);
	return rc;
}

/* ---- Jobs -------------------------------------------------------------------------- */

bool db_job_status_is_running(const char *status)
{
	return strcmp(status, "queued") != 0 && strcmp(status, "completed") != 0 &&
	       strcmp(status, "failed") != 0;
}

#define JOB_COLS                                                                             \
	"id, user_id, coalesce(track_id,''), type, status, progress, coalesce(message,''), " \
	"attempts, max_attempts, run_at, coalesce(error,''), payload, coalesce(result,''), " \
	"cancel_requested, created_at, coalesce(started_at,0), coalesce(finished_at,0)"

static void read_job_row(struct db_stmt *st, struct db_job *j)
{
	col_text(st, 0, j->id, sizeof j->id);
	col_text(st, 1, j->user_id, sizeof j->user_id);
	col_text(st, 2, j->track_id, sizeof j->track_id);
	col_text(st, 3, j->type, sizeof j->type);
	col_text(st, 4, j->status, sizeof j->status);
	j->progress = col_int(st, 5);
	col_text(st, 6, j->message, sizeof j->message);
	j->attempts = col_int(st, 7);
	j->max_attempts = col_int(st, 8);
	j->run_at = col_int64(st, 9);
	col_text(st, 10, j->error, sizeof j->error);
	col_text(st, 11, j->payload, sizeof j->payload);
	col_text(st, 12, j->result, sizeof j->result);
	j->cancel_requested = col_int(st, 13) != 0;
	j->created_at = col_int64(st, 14);
	j->started_at = col_int64(st, 15);
	j->finished_at = col_int64(st, 16);
}

static void read_job_cb(struct db_stmt *st, void *out) { read_job_row(st, out); }

int db_job_insert(struct db *db, const struct db_job *j)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO jobs (id, user_id, track_id, type, status, progress, "
	                  "max_attempts, run_at, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
	                  "ttzttiiiti", j->id, j->user_id, j->track_id, j->type,
	                  j->status[0] ? j->status : "queued", (int64_t)j->progress,
	                  (int64_t)j->max_attempts, j->run_at, j->payload[0] ? j->payload : "{}",
	                  j->created_at),
	             false);
	release(db);
	return rc;
}

int db_job_get(struct db *db, const char *user_id, const char *id, struct db_job *out)
{
	acquire_read(db);
	int rc = one_row(
		db,
		user_id ? prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ? AND user_id = ?",
	                       "tt", id, user_id)
			: prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", "t", id),
		read_job_cb, out);
	release(db);
	return rc;
}

static void read_nothing(struct db_stmt *st, void *out) { (void)st, (void)out; }

int db_job_owned(struct db *db, const char *user_id, const char *job_id)
{
	acquire_read(db);
	int rc = one_row(
		db,
		prep(db, "SELECT 1 FROM jobs WHERE id = ? AND user_id = ?", "tt", job_id, user_id),
		read_nothing, NULL);
	release(db);
	return rc;
}

int db_job_list(struct db *db, const char *user_id, const char *status, const char *const *types,
                const char *track_id, int64_t offset, int64_t limit, struct arena *a,
                struct db_job **out, size_t *n_out, int64_t *total)
{
	/* ?3, ?7, ?8: up to DB_JOB_TYPES_MAX types (unused ones NULL, which match nothing). */
	static const char where[] = " FROM jobs WHERE user_id = ?1 AND (?2 IS NULL OR status = ?2) "
				    "AND (?3 IS NULL OR type IN (?3, ?7, ?8)) "
				    "AND (?6 IS NULL OR track_id = ?6)";
	const char *t[DB_JOB_TYPES_MAX] = {NULL, NULL, NULL};
	for (int i = 0; types && types[i]; i++) {
		if (i == DB_JOB_TYPES_MAX)
			return SFA_EINVAL;
		t[i] = types[i];
	}
	char sql[512];
	acquire_read(db);
	int rc = 0;
	snprintf(sql, sizeof sql, "SELECT count(*)%s", where);
	rc = one_row(
		db,
		prep(db, sql, "tzzinzzz", user_id, status, t[0], (int64_t)0, track_id, t[1], t[2]),
		read_int64_cb, total);
	if (rc)
		goto out;
	snprintf(sql, sizeof sql,
	         "SELECT " JOB_COLS "%s ORDER BY created_at DESC, rowid DESC LIMIT ?4 OFFSET ?5",
	         where);
	struct db_stmt *st = prep(db, sql, "tzziizzz", user_id, status, t[0], limit, offset,
	                          track_id, t[1], t[2]);
	rc = all_rows(db, st, sizeof **out, read_job_cb, a, (void **)out, n_out, "list jobs");
out:
	release(db);
	return rc;
}

int db_job_claim(struct db *db, const char *type, int64_t now, struct db_job *out)
{
	return db_job_claim_leased(db, type, now, NULL, 0, out);
}

int db_job_claim_leased(struct db *db, const char *type, int64_t now, const char *owner,
                        int64_t lease_expires_at, struct db_job *out)
{
	char sql[1024];
	snprintf(sql, sizeof sql,
	         "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
	         "started_at = ?2, progress = 0, message = NULL, cancel_requested = 0, "
	         "lease_owner = ?3, lease_expires_at = nullif(?4, 0) "
	         "WHERE id = (SELECT id FROM jobs WHERE type = ?1 AND status = 'queued' "
	         "AND run_at <= ?2 ORDER BY run_at, created_at, rowid LIMIT 1%s) "
	         "RETURNING " JOB_COLS,
	         dialect(db)->claim_lock);
	acquire(db);
	int rc = one_row(db, prep(db, sql, "tizi", type, now, owner, owner ? lease_expires_at : 0),
	                 read_job_cb, out);
	release(db);
	return rc;
}

int db_job_renew(struct db *db, const char *id, const char *owner, int64_t lease_expires_at,
                 bool *cancel_requested)
{
	int v = 0;
	acquire(db);
	int rc = one_row(
		db,
		prep(db,
	             "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? "
	             "AND status NOT IN ('queued','completed','failed') "
	             "RETURNING cancel_requested",
	             "itt", lease_expires_at, id, owner),
		read_int_cb, &v);
	release(db);
	if (!rc)
		*cancel_requested = v != 0;
	return rc;
}

int db_job_expire_leases(struct db *db, int64_t now)
{
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "UPDATE jobs SET status = 'failed', finished_at = ?1, lease_owner = NULL, "
	             "lease_expires_at = NULL, error = CASE WHEN cancel_requested = 1 THEN "
	             "'cancelled' ELSE 'The node running this job stopped answering and it "
	             "has no attempts left; start it again.' END "
	             "WHERE lease_expires_at < ?1 AND status NOT IN ('queued','completed','failed') "
	             "AND (attempts >= max_attempts OR cancel_requested = 1)",
	             "i", now),
		false);
	int n = rc ? 0 : (int)changes(db);
	if (!rc)
		rc = run(
			db,
			prep(db,
		             "UPDATE jobs SET status = 'queued', run_at = ?1, progress = 0, "
		             "message = NULL, lease_owner = NULL, lease_expires_at = NULL, error = "
		             "'The node running this job stopped answering; it was queued again.' "
		             "WHERE lease_expires_at < ?1 AND status NOT IN "
		             "('queued','completed','failed')",
		             "i", now),
			false);
	if (!rc)
		n += (int)changes(db);
	release(db);
	return rc ? rc : n;
}

int db_job_progress(struct db *db, const char *id, const char *status, int progress,
                    const char *message)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE jobs SET status = coalesce(?, status), progress = ?, message = ? "
	                  "WHERE id = ? AND status NOT IN ('queued','completed','failed')",
	                  "zizt", status, (int64_t)progress, message, id),
	             false);
	release(db);
	return rc;
}

int db_job_complete(struct db *db, const char *id, const char *result_json, int64_t now)
{
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "UPDATE jobs SET status = 'completed', progress = 100, error = NULL, "
	             "result = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL "
	             "WHERE id = ?",
	             "zit", result_json, now, id),
		true);
	release(db);
	return rc;
}

int db_job_fail(struct db *db, const char *id, const char *error, int64_t now)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, "
	                  "lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
	                  "tit", error, now, id),
	             true);
	release(db);
	return rc;
}

int db_job_requeue(struct db *db, const char *id, int64_t run_at, const char *error,
                   bool refund_attempt)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE jobs SET status = 'queued', run_at = ?, error = ?, progress = 0, "
	                  "message = NULL, attempts = attempts - ?, lease_owner = NULL, "
	                  "lease_expires_at = NULL WHERE id = ?",
	                  "izit", run_at, error, (int64_t)(refund_attempt ? 1 : 0), id),
	             true);
	release(db);
	return rc;
}

int db_job_cancel(struct db *db, const char *user_id, const char *id, int64_t now,
                  bool *was_running)
{
	acquire(db);
	struct db_job j;
	int rc = one_row(db,
	                 prep(db, "SELECT " JOB_COLS " FROM jobs WHERE id = ? AND user_id = ?",
	                      "tt", id, user_id),
	                 read_job_cb, &j);
	if (rc)
		goto out;
	if (strcmp(j.status, "queued") == 0) {
		rc = run(
			db,
			prep(db,
		             "UPDATE jobs SET status = 'failed', error = 'cancelled', finished_at = ? "
		             "WHERE id = ? AND status = 'queued'",
		             "it", now, id),
			true);
		*was_running = false;
	} else if (db_job_status_is_running(j.status)) {
		rc = run(db, prep(db, "UPDATE jobs SET cancel_requested = 1 WHERE id = ?", "t", id),
		         true);
		*was_running = true;
	} else {
		rc = SFA_ECONFLICT;
	}
out:
	release(db);
	return rc;
}

int db_track_cancel_jobs(struct db *db, const char *user_id, const char *track_id, int64_t now,
                         int *n_running)
{
	acquire(db);
	int rc = begin(db);
	if (!rc)
		rc = run(
			db,
			prep(db,
		             "UPDATE jobs SET status = 'failed', error = 'cancelled', finished_at = ? "
		             "WHERE user_id = ? AND track_id = ? AND status = 'queued'",
		             "itt", now, user_id, track_id),
			false);
	if (!rc)
		rc = run(
			db,
			prep(db,
		             "UPDATE jobs SET cancel_requested = 1 WHERE user_id = ? AND track_id = ? "
		             "AND status NOT IN ('queued','completed','failed')",
		             "tt", user_id, track_id),
			false);
	int n = rc ? 0 : (int)changes(db);
	if (!rc)
		rc = exec(db, "COMMIT");
	if (rc)
		exec(db, "ROLLBACK");
	else
		*n_running = n;
	release(db);
	return rc;
}

static void read_two_ints_cb(struct db_stmt *st, void *out)
{
	int *v = out;
	v[0] = col_int(st, 0);
	v[1] = col_int(st, 1);
}

int db_track_job_counts(struct db *db, const char *user_id, const char *track_id, int *n_running,
                        int *n_queued)
{
	int v[2] = {0, 0};
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT coalesce(sum(CASE WHEN status NOT IN "
	                      "('queued','completed','failed') THEN 1 ELSE 0 END), 0), "
	                      "coalesce(sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0) "
	                      "FROM jobs "
	                      "WHERE user_id = ? AND track_id = ?",
	                      "tt", user_id, track_id),
	                 read_two_ints_cb, v);
	release(db);
	*n_running = v[0];
	*n_queued = v[1];
	return rc;
}

bool db_job_cancel_requested(struct db *db, const char *id)
{
	int v = 0;
	acquire_read(db);
	int rc = one_row(db, prep(db, "SELECT cancel_requested FROM jobs WHERE id = ?", "t", id),
	                 read_int_cb, &v);
	release(db);
	/* A job whose row is gone (its track was deleted) is cancelled too; a database error
	 * is not a cancel (it is logged, and asked again on the next check). */
	return rc == SFA_ENOTFOUND || (rc == 0 && v != 0);
}

int db_job_recover(struct db *db, int64_t now, const char *owner)
{
	/* ?2 NULL: every running job; else only the owner's and those without a lease. */
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "UPDATE jobs SET status = 'failed', finished_at = ?1, lease_owner = NULL, "
	             "lease_expires_at = NULL, error = "
	             "'The server stopped while this job was running and it has no attempts "
	             "left; start it again.' WHERE status NOT IN ('queued','completed','failed') "
	             "AND (?2 IS NULL OR lease_owner IS NULL OR lease_owner = ?2) "
	             "AND (attempts >= max_attempts OR cancel_requested = 1)",
	             "iz", now, owner),
		false);
	int n = rc ? 0 : (int)changes(db);
	if (!rc)
		rc = run(
			db,
			prep(db,
		             "UPDATE jobs SET status = 'queued', run_at = ?1, progress = 0, "
		             "message = NULL, lease_owner = NULL, lease_expires_at = NULL, "
		             "error = 'The server stopped while this job was running; it was queued "
		             "again.' WHERE status NOT IN ('queued','completed','failed') "
		             "AND (?2 IS NULL OR lease_owner IS NULL OR lease_owner = ?2)",
		             "iz", now, owner),
			false);
	if (!rc)
		n += (int)changes(db);
	release(db);
	return rc ? rc : n;
}

int db_job_active_for_track(struct db *db, const char *user_id, const char *track_id,
                            const char *type, struct db_job *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT " JOB_COLS
	                      " FROM jobs WHERE user_id = ? AND track_id = ? AND "
	                      "type = ? AND status NOT IN ('completed','failed') "
	                      "ORDER BY created_at DESC LIMIT 1",
	                      "ttt", user_id, track_id, type),
	                 read_job_cb, out);
	release(db);
	return rc;
}

/* ---- Stems and analyses ------------------------------------------------------------ */

#define STEM_COLS                                                                            \
	"id, user_id, track_id, job_id, stem_type, file_path, file_size, format, duration, " \
	"engine, model, created_at"

static void read_stem_row(struct db_stmt *st, struct db_stem *s)
{
	col_text(st, 0, s->id, sizeof s->id);
	col_text(st, 1, s->user_id, sizeof s->user_id);
	col_text(st, 2, s->track_id, sizeof s->track_id);
	col_text(st, 3, s->job_id, sizeof s->job_id);
	col_text(st, 4, s->stem_type, sizeof s->stem_type);
	col_text(st, 5, s->file_path, sizeof s->file_path);
	s->file_size = col_int64(st, 6);
	col_text(st, 7, s->format, sizeof s->format);
	s->duration_s = col_double(st, 8);
	col_text(st, 9, s->engine, sizeof s->engine);
	col_text(st, 10, s->model, sizeof s->model);
	s->created_at = col_int64(st, 11);
}

static void read_stem_cb(struct db_stmt *st, void *out) { read_stem_row(st, out); }

int db_stem_insert(struct db *db, const struct db_stem *s)
{
	acquire(db);
	int rc = run(db,
	             prep(db, "INSERT INTO stems (" STEM_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
	                  "ttttttitdtti", s->id, s->user_id, s->track_id, s->job_id, s->stem_type,
	                  s->file_path, s->file_size, s->format, s->duration_s, s->engine, s->model,
	                  s->created_at),
	             false);
	release(db);
	return rc;
}

int db_stem_delete_for_job(struct db *db, const char *job_id)
{
	acquire(db);
	int rc = run(db, prep(db, "DELETE FROM stems WHERE job_id = ?", "t", job_id), false);
	release(db);
	return rc;
}

int db_stem_get(struct db *db, const char *user_id, const char *id, struct db_stem *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db, "SELECT " STEM_COLS " FROM stems WHERE id = ? AND user_id = ?",
	                      "tt", id, user_id),
	                 read_stem_cb, out);
	release(db);
	return rc;
}

int db_stem_list(struct db *db, const char *user_id, const char *track_id, const char *job_id,
                 struct arena *a, struct db_stem **out, size_t *n_out)
{
	acquire_read(db);
	int rc = all_rows(
		db,
		job_id ? prep(db,
	                      "SELECT " STEM_COLS
	                      " FROM stems WHERE user_id = ? AND track_id = ? AND "
	                      "job_id = ? ORDER BY rowid",
	                      "ttt", user_id, track_id, job_id)
		       : prep(db,
	                      "SELECT " STEM_COLS
	                      " FROM stems WHERE user_id = ?1 AND track_id = ?2 AND "
	                      "job_id = (SELECT job_id FROM stems WHERE user_id = ?1 AND track_id = ?2 "
	                      "ORDER BY created_at DESC, rowid DESC LIMIT 1) ORDER BY rowid",
	                      "tt", user_id, track_id),
		sizeof **out, read_stem_cb, a, (void **)out, n_out, "list stems");
	release(db);
	return rc;
}

int db_stem_list_all(struct db *db, const char *user_id, const char *track_id, struct arena *a,
                     struct db_stem **out, size_t *n_out)
{
	acquire_read(db);
	int rc = all_rows(db,
	                  prep(db,
	                       "SELECT " STEM_COLS " FROM stems WHERE user_id = ? AND track_id = ? "
	                       "ORDER BY rowid",
	                       "tt", user_id, track_id),
	                  sizeof **out, read_stem_cb, a, (void **)out, n_out, "list stems");
	release(db);
	return rc;
}

int db_analysis_insert(struct db *db, const char *user_id, const char *track_id, const char *job_id,
                       const char *result_json, int64_t now)
{
	char sql[512];
	snprintf(sql, sizeof sql,
	         "INSERT INTO analyses (user_id, track_id, job_id, result, created_at, tempo, "
	         "key_name, camelot, first_beat, first_downbeat, sections) "
	         "VALUES (?1,?2,?3,?4,?5, %s)",
	         dialect(db)->analysis_summary);
	/* One analysis per job: a retried attempt replaces what a failed one stored. */
	int rc = db_tx_begin(db);
	if (rc)
		return rc;
	rc = run(db, prep(db, "DELETE FROM analyses WHERE job_id = ?", "t", job_id), false);
	if (!rc)
		rc = run(db, prep(db, sql, "tttti", user_id, track_id, job_id, result_json, now),
		         false);
	if (rc) {
		db_tx_rollback(db);
		return rc;
	}
	return db_tx_commit(db);
}

static void read_text_dup(struct db_stmt *st, void *out)
{
	const char *t = st->drv->col_text(st, 0);
	*(char **)out = t ? strdup(t) : NULL;
}

/* The newest analysis result matching `where` (user_id and one more key). */
static int analysis_text(struct db *db, const char *where, const char *user_id, const char *key,
                         char **out_json)
{
	char sql[200];
	snprintf(
		sql, sizeof sql,
		"SELECT result FROM analyses WHERE user_id = ? AND %s = ? ORDER BY id DESC LIMIT 1",
		where);
	char *s = NULL;
	acquire_read(db);
	int rc = one_row(db, prep(db, sql, "tt", user_id, key), read_text_dup, &s);
	release(db);
	if (rc == 0 && !s)
		return SFA_ENOMEM;
	if (rc == 0)
		*out_json = s;
	return rc;
}

int db_analysis_latest(struct db *db, const char *user_id, const char *track_id, char **out_json)
{
	return analysis_text(db, "track_id", user_id, track_id, out_json);
}

int db_analysis_for_job(struct db *db, const char *user_id, const char *job_id, char **out_json)
{
	return analysis_text(db, "job_id", user_id, job_id, out_json);
}

bool db_file_owned(struct db *db, const char *user_id, const char *rel_path)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT 1 WHERE EXISTS (SELECT 1 FROM tracks WHERE user_id = ?1 AND "
	                      "audio_path = ?2) OR EXISTS (SELECT 1 FROM stems WHERE user_id = ?1 "
	                      "AND file_path = ?2)",
	                      "tt", user_id, rel_path),
	                 read_nothing, NULL);
	release(db);
	return rc == 0;
}

/* ---- Spotify ----------------------------------------------------------------------- */

int db_track_upsert_spotify(struct db *db, const char *user_id, struct db_track *tracks, size_t n,
                            int64_t now)
{
	acquire(db);
	int rc = begin(db);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct db_track *t = &tracks[i];
		struct db_track row;
		rc = one_row(
			db,
			prep(db,
		             "INSERT INTO tracks (id, user_id, spotify_id, title, artist, album, "
		             "album_art_url, spotify_url, isrc, duration_s, source, created_at, "
		             "updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,'spotify',?11,?11) "
		             "ON CONFLICT (user_id, spotify_id) WHERE spotify_id IS NOT NULL "
		             "DO UPDATE SET album_art_url = coalesce(excluded.album_art_url, "
		             "tracks.album_art_url), spotify_url = coalesce(excluded.spotify_url, "
		             "tracks.spotify_url), isrc = coalesce(excluded.isrc, tracks.isrc), "
		             "duration_s = excluded.duration_s, updated_at = excluded.updated_at "
		             "RETURNING " TRACK_COLS,
		             "ttttttzzzii", t->id, user_id, t->spotify_id, t->title, t->artist,
		             t->album, t->album_art_url, t->spotify_url, t->isrc, t->duration_s,
		             now),
			read_track_cb, &row);
		if (rc == 0)
			*t = row;
	}
	if (rc == 0)
		rc = exec(db, "COMMIT");
	if (rc) {
		exec(db, "ROLLBACK");
		if (rc == SFA_ENOTFOUND)
			rc = SFA_EDB;
	}
	release(db);
	return rc;
}

/* ---- Spotify log-in ------------------------------------------------------------------ */

int db_oauth_state_insert(struct db *db, const struct db_oauth_state *st, int64_t now)
{
	acquire(db);
	int rc = run(db, prep(db, "DELETE FROM oauth_states WHERE expires_at <= ?", "i", now),
	             false);
	if (rc == 0)
		rc = run(
			db,
			prep(db,
		             "INSERT INTO oauth_states (state_hash, browser_hash, user_id, verifier, "
		             "redirect_uri, created_at, expires_at) VALUES (?,?,?,?,?,?,?)",
		             "ttzttii", st->state_hash, st->browser_hash, st->user_id, st->verifier,
		             st->redirect_uri, now, st->expires_at),
			false);
	release(db);
	return rc;
}

static void read_oauth_state_cb(struct db_stmt *st, void *out)
{
	struct db_oauth_state *s = out;
	col_text(st, 0, s->state_hash, sizeof s->state_hash);
	col_text(st, 1, s->browser_hash, sizeof s->browser_hash);
	col_text(st, 2, s->user_id, sizeof s->user_id);
	col_text(st, 3, s->verifier, sizeof s->verifier);
	col_text(st, 4, s->redirect_uri, sizeof s->redirect_uri);
	s->expires_at = col_int64(st, 5);
}

int db_oauth_state_take(struct db *db, const char *state_hash, struct db_oauth_state *out)
{
	acquire(db);
	int rc = one_row(
		db,
		prep(db,
	             "DELETE FROM oauth_states WHERE state_hash = ? RETURNING state_hash, "
	             "browser_hash, coalesce(user_id,''), verifier, redirect_uri, expires_at",
	             "t", state_hash),
		read_oauth_state_cb, out);
	release(db);
	return rc;
}

#define LINK_COLS                                                                                 \
	"user_id, spotify_user_id, coalesce(display_name,''), coalesce(email,''), access_token, " \
	"coalesce(refresh_token,''), coalesce(scope,''), expires_at, created_at, updated_at"

static void read_link_cb(struct db_stmt *st, void *out)
{
	struct db_spotify_link *l = out;
	col_text(st, 0, l->user_id, sizeof l->user_id);
	col_text(st, 1, l->spotify_user_id, sizeof l->spotify_user_id);
	col_text(st, 2, l->display_name, sizeof l->display_name);
	col_text(st, 3, l->email, sizeof l->email);
	col_text(st, 4, l->access_token, sizeof l->access_token);
	col_text(st, 5, l->refresh_token, sizeof l->refresh_token);
	col_text(st, 6, l->scope, sizeof l->scope);
	l->expires_at = col_int64(st, 7);
	l->created_at = col_int64(st, 8);
	l->updated_at = col_int64(st, 9);
}

int db_spotify_link_upsert(struct db *db, const struct db_spotify_link *l, int64_t now)
{
	acquire(db);
	/* The Spotify account may be linked to one user only: a link held by another user is
	 * a conflict, never silently moved. */
	int rc = one_row(
		db,
		prep(db, "SELECT 1 FROM spotify_links WHERE spotify_user_id = ? AND user_id <> ?",
	             "tt", l->spotify_user_id, l->user_id),
		read_nothing, NULL);
	if (rc == 0) {
		rc = SFA_ECONFLICT;
	} else if (rc == SFA_ENOTFOUND) {
		rc = run(
			db,
			prep(db,
		             "INSERT INTO spotify_links (user_id, spotify_user_id, display_name, email, "
		             "access_token, refresh_token, scope, expires_at, created_at, updated_at) "
		             "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?9) ON CONFLICT (user_id) DO UPDATE SET "
		             "spotify_user_id = excluded.spotify_user_id, display_name = "
		             "excluded.display_name, email = excluded.email, access_token = "
		             "excluded.access_token, refresh_token = coalesce(excluded.refresh_token, "
		             "spotify_links.refresh_token), scope = excluded.scope, expires_at = "
		             "excluded.expires_at, "
		             "updated_at = excluded.updated_at",
		             "ttzztzzii", l->user_id, l->spotify_user_id, l->display_name, l->email,
		             l->access_token, l->refresh_token, l->scope, l->expires_at, now),
			false);
	}
	release(db);
	return rc;
}

int db_spotify_link_get(struct db *db, const char *user_id, struct db_spotify_link *out)
{
	acquire_read(db);
	int rc = one_row(
		db,
		prep(db, "SELECT " LINK_COLS " FROM spotify_links WHERE user_id = ?", "t", user_id),
		read_link_cb, out);
	release(db);
	return rc;
}

struct user_links {
	bool *lalalai_key, *spotify;
};

static void read_links_cb(struct db_stmt *st, void *out)
{
	struct user_links *l = out;
	*l->lalalai_key = col_int(st, 0) != 0;
	*l->spotify = col_int(st, 1) != 0;
}

int db_user_links(struct db *db, const char *user_id, bool *lalalai_key, bool *spotify)
{
	struct user_links l = {lalalai_key, spotify};
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT CASE WHEN EXISTS (SELECT 1 FROM lalalai_keys WHERE "
	                      "user_id = ?1) THEN 1 ELSE 0 END, CASE WHEN EXISTS (SELECT 1 "
	                      "FROM spotify_links WHERE user_id = ?1) THEN 1 ELSE 0 END",
	                      "t", user_id),
	                 read_links_cb, &l);
	release(db);
	return rc;
}

int db_library_version(struct db *db, const char *user_id, int64_t *out)
{
	acquire_read(db);
	*out = 0;
	int rc = one_row(
		db,
		prep(db, "SELECT version FROM library_versions WHERE user_id = ?", "t", user_id),
		read_int64_cb, out);
	release(db);
	return rc == SFA_ENOTFOUND ? 0 : rc;
}

int db_spotify_link_by_spotify_id(struct db *db, const char *spotify_user_id,
                                  struct db_spotify_link *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT " LINK_COLS " FROM spotify_links WHERE spotify_user_id = ?",
	                      "t", spotify_user_id),
	                 read_link_cb, out);
	release(db);
	return rc;
}

int db_spotify_link_set_tokens(struct db *db, const char *user_id, const char *access_token,
                               const char *refresh_token, int64_t expires_at, int64_t now)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE spotify_links SET access_token = ?, refresh_token = coalesce(?, "
	                  "refresh_token), expires_at = ?, updated_at = ? WHERE user_id = ?",
	                  "tziit", access_token, refresh_token, expires_at, now, user_id),
	             true);
	release(db);
	return rc;
}

int db_spotify_link_delete(struct db *db, const char *user_id)
{
	acquire(db);
	int rc = run(db, prep(db, "DELETE FROM spotify_links WHERE user_id = ?", "t", user_id),
	             true);
	release(db);
	return rc;
}

/* ---- lal.ai ------------------------------------------------------------------------ */

int db_lalalai_key_set(struct db *db, const char *user_id, const char *sealed_key, const char *hint,
                       int64_t now)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "INSERT INTO lalalai_keys (user_id, sealed_key, hint, created_at, "
	                  "updated_at) VALUES (?1,?2,?3,?4,?4) ON CONFLICT (user_id) DO UPDATE SET "
	                  "sealed_key = excluded.sealed_key, hint = excluded.hint, updated_at = "
	                  "excluded.updated_at",
	                  "ttti", user_id, sealed_key, hint, now),
	             false);
	release(db);
	return rc;
}

struct key_out {
	char *sealed;
	size_t n_sealed;
	char *hint;
	size_t n_hint;
};

static void read_key_row(struct db_stmt *st, void *out)
{
	struct key_out *k = out;
	if (k->sealed)
		col_text(st, 0, k->sealed, k->n_sealed);
	if (k->hint)
		col_text(st, 1, k->hint, k->n_hint);
}

int db_lalalai_key_get(struct db *db, const char *user_id, char *sealed, size_t n_sealed,
                       char *hint, size_t n_hint)
{
	struct key_out k = {sealed, n_sealed, hint, n_hint};
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db, "SELECT sealed_key, hint FROM lalalai_keys WHERE user_id = ?",
	                      "t", user_id),
	                 read_key_row, &k);
	release(db);
	return rc;
}

int db_lalalai_key_delete(struct db *db, const char *user_id)
{
	acquire(db);
	int rc = run(db, prep(db, "DELETE FROM lalalai_keys WHERE user_id = ?", "t", user_id),
	             true);
	release(db);
	return rc;
}

#define LTASK_COLS                                                                               \
	"t.job_id, t.user_id, t.idempotency_key, t.source_id, t.task_id, t.status, t.duration, " \
	"t.created_at, t.updated_at, j.status"

static void read_ltask_row(struct db_stmt *st, void *out)
{
	struct db_lalalai_task *t = out;
	col_text(st, 0, t->job_id, sizeof t->job_id);
	col_text(st, 1, t->user_id, sizeof t->user_id);
	col_text(st, 2, t->idempotency_key, sizeof t->idempotency_key);
	col_text(st, 3, t->source_id, sizeof t->source_id);
	col_text(st, 4, t->task_id, sizeof t->task_id);
	col_text(st, 5, t->status, sizeof t->status);
	t->duration_s = col_double(st, 6);
	t->created_at = col_int64(st, 7);
	t->updated_at = col_int64(st, 8);
	col_text(st, 9, t->job_status, sizeof t->job_status);
}

int db_lalalai_task_ensure(struct db *db, const char *job_id, const char *user_id,
                           const char *idempotency_key, int64_t now, struct db_lalalai_task *out)
{
	acquire(db);
	int rc = run(
		db,
		prep(db,
	             "INSERT INTO lalalai_tasks (job_id, user_id, idempotency_key, created_at, "
	             "updated_at) VALUES (?1,?2,?3,?4,?4) ON CONFLICT (job_id) DO NOTHING",
	             "ttti", job_id, user_id, idempotency_key, now),
		false);
	if (rc == 0)
		rc = one_row(db,
		             prep(db,
		                  "SELECT " LTASK_COLS
		                  " FROM lalalai_tasks t JOIN jobs j ON j.id = "
		                  "t.job_id WHERE t.job_id = ?",
		                  "t", job_id),
		             read_ltask_row, out);
	release(db);
	return rc;
}

int db_lalalai_task_update(struct db *db, const struct db_lalalai_task *t, int64_t now)
{
	acquire(db);
	int rc = run(db,
	             prep(db,
	                  "UPDATE lalalai_tasks SET source_id = ?, task_id = ?, status = ?, "
	                  "duration = ?, updated_at = ? WHERE job_id = ?",
	                  "zztdit", t->source_id, t->task_id, t->status, t->duration_s, now,
	                  t->job_id),
	             true);
	release(db);
	return rc;
}

int db_lalalai_task_get(struct db *db, const char *user_id, const char *job_id,
                        struct db_lalalai_task *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT " LTASK_COLS " FROM lalalai_tasks t JOIN jobs j ON j.id = "
	                      "t.job_id WHERE t.job_id = ? AND t.user_id = ?",
	                      "tt", job_id, user_id),
	                 read_ltask_row, out);
	release(db);
	return rc;
}

int db_lalalai_task_by_task_id(struct db *db, const char *user_id, const char *task_id,
                               struct db_lalalai_task *out)
{
	acquire_read(db);
	int rc = one_row(db,
	                 prep(db,
	                      "SELECT " LTASK_COLS " FROM lalalai_tasks t JOIN jobs j ON j.id = "
	                      "t.job_id WHERE t.task_id = ? AND t.user_id = ?",
	                      "tt", task_id, user_id),
	                 read_ltask_row, out);
	release(db);
	return rc;
}

int db_lalalai_task_list_active(struct db *db, const char *user_id, struct db_lalalai_task *out,
                                size_t n_max, size_t *n_out)
{
	acquire_read(db);
	*n_out = 0;
	struct db_stmt *st = prep(db,
	                          "SELECT " LTASK_COLS
	                          " FROM lalalai_tasks t JOIN jobs j ON j.id = "
	                          "t.job_id WHERE t.user_id = ? AND j.status NOT IN "
	                          "('completed','failed') ORDER BY t.created_at, t.rowid LIMIT ?",
	                          "ti", user_id, (int64_t)n_max);
	int rc = st ? 0 : SFA_EDB;
	int s = DB_DONE;
	while (st && *n_out < n_max && (s = step(st)) == DB_ROW)
		read_ltask_row(st, &out[(*n_out)++]);
	if (s < 0)
		rc = s;
	finalize(st);
	release(db);
	return rc;
}

static void read_double(struct db_stmt *st, void *out) { *(double *)out = col_double(st, 0); }

int db_lalalai_used_seconds(struct db *db, const char *user_id, int64_t since, double *out)
{
	acquire_read(db);
	int rc = one_row(
		db,
		prep(db,
	             "SELECT coalesce(sum(duration), 0) FROM lalalai_tasks WHERE user_id = ? "
	             "AND status = 'success' AND updated_at >= ?",
	             "ti", user_id, since),
		read_double, out);
	release(db);
	return rc;
}

int db_lalalai_check_slot(struct db *db, const char *key_hash, int64_t now_ms, int interval_ms,
                          int64_t *at_ms)
{
	int64_t next = 0;
	acquire(db);
	/* One statement: two processes reserving at once are ordered by the row's lock (on
	 * SQLite by its one writer) and get slots interval_ms apart. */
	int rc = one_row(db,
	                 prep(db,
	                      "INSERT INTO lalalai_check_slots (key_hash, next_at_ms) "
	                      "VALUES (?1, ?2 + ?3) ON CONFLICT (key_hash) DO UPDATE SET "
	                      "next_at_ms = CASE WHEN lalalai_check_slots.next_at_ms > ?2 "
	                      "THEN lalalai_check_slots.next_at_ms ELSE ?2 END + ?3 "
	                      "RETURNING next_at_ms",
	                      "tii", key_hash, now_ms, (int64_t)interval_ms),
	                 read_int64_cb, &next);
	release(db);
	if (rc == 0)
		*at_ms = next - interval_ms;
	return rc == SFA_ENOTFOUND ? SFA_EDB : rc;
}

struct rate_row {
	int64_t start;
	int hits;
};

static void read_rate_row(struct db_stmt *st, void *out)
{
	struct rate_row *r = out;
	r->start = col_int64(st, 0);
	r->hits = col_int(st, 1);
}

int db_rate_hit(struct db *db, const char *key, int window_s, int64_t now, int n, int64_t *start,
                int *count)
{
	struct rate_row r = {0, 0};
	acquire(db);
	int rc = one_row(db,
	                 prep(db,
	                      "INSERT INTO rate_windows (key, start, hits) VALUES (?1, ?2, ?4) "
	                      "ON CONFLICT (key) DO UPDATE SET "
	                      "start = CASE WHEN rate_windows.start + ?3 <= ?2 THEN ?2 "
	                      "ELSE rate_windows.start END, "
	                      "hits = CASE WHEN rate_windows.start + ?3 <= ?2 THEN ?4 "
	                      "ELSE rate_windows.hits + ?4 END "
	                      "RETURNING start, hits",
	                      "tiii", key, now, (int64_t)window_s, (int64_t)n),
	                 read_rate_row, &r);
	release(db);
	*start = r.start;
	*count = r.hits;
	return rc == SFA_ENOTFOUND ? SFA_EDB : rc;
}

int db_rate_sweep(struct db *db, int window_s, int64_t now)
{
	acquire(db);
	int rc = run(db,
	             prep(db, "DELETE FROM rate_windows WHERE start + ? <= ?", "ii",
	                  (int64_t)window_s, now),
	             false);
	release(db);
	return rc;
}
