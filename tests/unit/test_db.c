/* test_db.c: the SQLite helpers of util/tl_db.c: the statement cache and tl_db_run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/tl_common.h"
#include "util/tl_db.h"

#include "tmp_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fixture {
  tmp_db t;
  tl_db *db; /* t.db */
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(tmp_db_open(&f->t, "test-db", "t.db"), TL_OK);
  f->db = f->t.db;
  tl_err err = {0};
  assert_int_equal(tl_db_exec(f->db, "CREATE TABLE t(x INTEGER)", &err), TL_OK);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tmp_db_remove(&f->t);
  free(f);
  return 0;
}

static int64_t count(tl_db *db) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db->db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

static const char INSERT[] = "INSERT INTO t(x) VALUES(1)";

/* tl_db_run commits and rolls back like tl_db_exec, and compiles each statement once. */
static void test_run_transactions_from_the_cache(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(tl_db_run(f->db, "BEGIN", &err), TL_OK);
    assert_int_equal(tl_db_run(f->db, INSERT, &err), TL_OK);
    assert_int_equal(tl_db_run(f->db, i == 1 ? "ROLLBACK" : "COMMIT", &err), TL_OK);
  }
  assert_int_equal(count(f->db), 2);
  assert_int_equal(f->db->n_cache, 4); /* BEGIN, INSERT, ROLLBACK, COMMIT: once each */
  assert_true(sqlite3_get_autocommit(f->db->db));
}

/* A failing statement gives a TL_E code and a message naming it, with err or without. */
static void test_run_failures(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  assert_int_equal(tl_db_run(f->db, "COMMIT", &err), TL_E_IO);
  assert_non_null(strstr(err.msg, "COMMIT"));
  assert_int_equal(tl_db_run(f->db, "COMMIT", NULL), TL_E_IO);
  memset(&err, 0, sizeof err);
  assert_int_equal(tl_db_run(f->db, "SELECT * FROM no_such_table", &err), TL_E_IO);
  assert_non_null(strstr(err.msg, "no_such_table"));
  assert_int_equal(tl_db_run(f->db, "SELECT * FROM no_such_table", NULL), TL_E_IO);
  /* The connection still works. */
  assert_int_equal(tl_db_run(f->db, INSERT, &err), TL_OK);
  assert_int_equal(count(f->db), 1);
}

int main(void) {
  tl_err err = {0};
  if (tl_db_init_library(&err) != TL_OK) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_run_transactions_from_the_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_run_failures, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
