/* testdb.h - a fresh database for one test, on the backend the suite runs against.
 *
 * Without SFA_TEST_PG_HOST: a SQLite file in a new temporary directory. With it (set by
 * tests/with-postgres.sh, which runs a private cluster): the test program's own schema in
 * that cluster, emptied of every row before each test. The same cmocka tests thus run
 * once per backend. */
#ifndef SFA_TESTS_TESTDB_H
#define SFA_TESTS_TESTDB_H

#include <stdbool.h>
#include <stddef.h>

#include "db/db.h"

struct testdb {
	struct db *db;
	char dir[64];     /* a new temporary directory (SQLite's file is sfa.db in it) */
	char name[64];    /* PostgreSQL: the schema (one per test program) */
	char target[512]; /* what db_open was given */
};

/* True when the suite runs on PostgreSQL. */
bool testdb_is_pg(void);
/* Creates and opens a fresh database with n_pool connections (0: the default). 0 or -1
 * (the reason printed on stderr). */
int testdb_open(struct testdb *t, int n_pool);
/* Closes it and removes its directory. 0 or -1. */
int testdb_close(struct testdb *t);

#endif
