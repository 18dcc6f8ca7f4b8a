/* testdb.c - see testdb.h. */
#include "testdb.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *pg_host(void)
{
	const char *h = getenv("SFA_TEST_PG_HOST");
	return h && *h ? h : NULL;
}

bool testdb_is_pg(void) { return pg_host() != NULL; }

static void quiet(void *arg, const char *message) { (void)arg, (void)message; }

/* Runs one statement on the cluster's maintenance database. */
static int admin(const char *sql)
{
	char url[512];
	snprintf(url, sizeof url, "postgresql://sfa@/postgres?host=%s", pg_host());
	PGconn *c = PQconnectdb(url);
	int rc = 0;
	PQsetNoticeProcessor(c, quiet, NULL); /* "drop cascades to ..." */
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "testdb: cannot connect to %s: %s", url, PQerrorMessage(c));
		rc = -1;
	} else {
		PGresult *r = PQexec(c, sql);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			fprintf(stderr, "testdb: %s: %s", sql, PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	PQfinish(c);
	return rc;
}

int testdb_open(struct testdb *t, int n_pool)
{
	static int n_made;
	memset(t, 0, sizeof *t);
	/* Files the test writes (uploads, stems) go here on either backend. */
	snprintf(t->dir, sizeof t->dir, "/tmp/sfa-testdb-XXXXXX");
	if (!mkdtemp(t->dir))
		return -1;
	if (pg_host()) {
		/* One schema per test program, found through search_path, emptied before each
		 * test: as fresh as a new database, without paying for the migrations' DDL (about
		 * half a second) or CREATE DATABASE (about a second) per test. */
		snprintf(t->name, sizeof t->name, "t_%d", (int)getpid());
		char sql[512];
		if (n_made++ == 0)
			snprintf(sql, sizeof sql, "CREATE SCHEMA %s", t->name);
		else
			snprintf(
				sql, sizeof sql,
				"DO $$ DECLARE r record; BEGIN FOR r IN SELECT tablename FROM pg_tables "
				"WHERE schemaname = '%s' AND tablename <> 'schema_version' LOOP "
				"EXECUTE format('DELETE FROM %s.%%I', r.tablename); END LOOP; END $$",
				t->name, t->name);
		if (admin(sql))
			return -1;
		snprintf(t->target, sizeof t->target,
		         "postgresql://sfa@/postgres?host=%s&options=-csearch_path%%3D%s",
		         pg_host(), t->name);
	} else {
		snprintf(t->target, sizeof t->target, "%s/sfa.db", t->dir);
	}
	char err[512];
	if (db_open(t->target, n_pool, &t->db, err, sizeof err)) {
		fprintf(stderr, "db_open %s: %s\n", t->target, err);
		return -1;
	}
	return 0;
}

int testdb_close(struct testdb *t)
{
	db_close(t->db);
	t->db = NULL;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
	return system(cmd) == 0 ? 0 : -1;
}
