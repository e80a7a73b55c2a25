/* test_vfs.c: the tl-walbuf VFS (util/tl_vfs.c) against real SQLite files: every commit is
 * visible to another connection as soon as COMMIT returns (its frames were in the file before
 * SQLite published them), transactions larger than the buffer and than the unix VFS's largest
 * write, spills and savepoint rollbacks keep the database intact, the buffer is used at all,
 * and a process killed in the middle of its transactions leaves exactly a prefix of its
 * commits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "util/tl_db.h"
#include "util/tl_vfs.h"

#include "tmp_db.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int64_t count_rows(tl_db *db) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db->db, "SELECT COUNT(*) FROM t", -1, &st, NULL), SQLITE_OK);
  int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  return n;
}

static void integrity_ok(tl_db *db) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db->db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
}

/* Inserts rows of `bytes` random bytes each, in one statement. */
static void insert(tl_db *db, int rows, int bytes) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %d)"
           " INSERT INTO t(b) SELECT randomblob(%d) FROM c",
           rows, bytes);
  tl_err err = {0};
  assert_int_equal(tl_db_exec(db, sql, &err), TL_OK);
}

static void test_every_commit_is_visible_to_another_connection_at_once(void **s) {
  (void)s;
  tmp_db w;
  assert_int_equal(tmp_db_open(&w, "vfs", "a.db"), TL_OK);
  tl_err err = {0};
  assert_int_equal(tl_db_exec(w.db, "CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB)", &err), TL_OK);
  tl_db *r = NULL;
  assert_int_equal(tl_db_open(&r, w.path, 1, "NORMAL", &err), TL_OK);
  long long saved = tl_vfs_writes_saved();
  int64_t want = 0;
  /* One page, a few pages, past 128 KiB (the unix VFS's largest write), past the 256 KiB
   * buffer, and 4 MB: each visible to the reader right after its COMMIT. */
  static const int ROWS[] = {1, 10, 40, 100, 1000, 1};
  for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
    assert_int_equal(tl_db_exec(w.db, "BEGIN", &err), TL_OK);
    insert(w.db, ROWS[i], 3000);
    assert_int_equal(tl_db_exec(w.db, "COMMIT", &err), TL_OK);
    want += ROWS[i];
    assert_int_equal(count_rows(r), want);
  }
  integrity_ok(r);
  tl_db_close(r);
  tmp_db_remove(&w);
  assert_true(tl_vfs_writes_saved() > saved); /* the buffer was used (counted at close) */
}

static void test_spills_and_savepoint_rollbacks_keep_the_database_intact(void **s) {
  (void)s;
  tmp_db w;
  assert_int_equal(tmp_db_open(&w, "vfs", "b.db"), TL_OK);
  tl_err err = {0};
  /* A 64-page cache: the transaction below spills pages into the WAL before its commit and
   * then writes some of them again (SQLite rewrites such frames in place). */
  assert_int_equal(tl_db_exec(w.db,
                              "PRAGMA cache_size=64; CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB);"
                              "CREATE INDEX t_b ON t(b)",
                              &err),
                   TL_OK);
  tl_db *r = NULL;
  assert_int_equal(tl_db_open(&r, w.path, 1, "NORMAL", &err), TL_OK);
  for (int round = 0; round < 5; round++) {
    assert_int_equal(tl_db_exec(w.db, "BEGIN", &err), TL_OK);
    insert(w.db, 300, 500);
    assert_int_equal(tl_db_exec(w.db, "SAVEPOINT sp", &err), TL_OK);
    insert(w.db, 300, 500);
    assert_int_equal(tl_db_exec(w.db, "ROLLBACK TO sp; RELEASE sp", &err), TL_OK);
    assert_int_equal(tl_db_exec(w.db, "UPDATE t SET b = randomblob(500) WHERE a % 7 = 0", &err),
                     TL_OK);
    assert_int_equal(tl_db_exec(w.db, "COMMIT", &err), TL_OK);
    assert_int_equal(count_rows(r), 300 * (round + 1));
    /* A transaction rolled back whole: nothing of it is seen, before or after the next one. */
    assert_int_equal(tl_db_exec(w.db, "BEGIN", &err), TL_OK);
    insert(w.db, 500, 500);
    assert_int_equal(tl_db_exec(w.db, "ROLLBACK", &err), TL_OK);
    assert_int_equal(count_rows(r), 300 * (round + 1));
  }
  integrity_ok(r);
  integrity_ok(w.db);
  tl_db_close(r);
  tmp_db_remove(&w);
}

/* The child commits transactions of 1-60 rows for ever, telling the parent each commit's
 * total row count after COMMIT returned; the parent kills it and opens the database. */
static void test_a_process_killed_mid_transaction_keeps_a_prefix_of_its_commits(void **s) {
  (void)s;
  tmp_db w;
  assert_int_equal(tmp_db_open(&w, "vfs", "c.db"), TL_OK);
  tl_err err = {0};
  assert_int_equal(tl_db_exec(w.db, "CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB)", &err), TL_OK);
  tl_db_close(w.db);
  w.db = NULL;
  for (int trial = 0; trial < 3; trial++) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      tl_db *db = NULL;
      tl_err e = {0};
      if (tl_db_open(&db, w.path, 0, "NORMAL", &e) != TL_OK) _exit(2);
      int64_t total = count_rows(db);
      for (unsigned k = 0;; k++) {
        int rows = 1 + (int)((k * 2654435761u) % 60);
        if (tl_db_exec(db, "BEGIN", &e) != TL_OK) _exit(3);
        insert(db, rows, 2000);
        if (tl_db_exec(db, "COMMIT", &e) != TL_OK) _exit(4);
        total += rows;
        if (write(fds[1], &total, sizeof total) != (ssize_t)sizeof total) _exit(5);
      }
    }
    close(fds[1]);
    int64_t committed = -1, v;
    usleep(150000 + 50000 * (useconds_t)trial);
    kill(pid, SIGKILL);
    while (read(fds[0], &v, sizeof v) == (ssize_t)sizeof v) committed = v;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_true(committed > 0);
    assert_int_equal(tl_db_open(&w.db, w.path, 0, "NORMAL", &err), TL_OK);
    /* Every acknowledged commit is there; at most the one in flight (committed, not yet
     * reported) is there too, whole. */
    int64_t n = count_rows(w.db);
    assert_true(n >= committed && n <= committed + 60);
    integrity_ok(w.db);
    tl_db_close(w.db);
    w.db = NULL;
  }
  assert_int_equal(tl_db_open(&w.db, w.path, 0, "NORMAL", &err), TL_OK);
  tmp_db_remove(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_commit_is_visible_to_another_connection_at_once),
      cmocka_unit_test(test_spills_and_savepoint_rollbacks_keep_the_database_intact),
      cmocka_unit_test(test_a_process_killed_mid_transaction_keeps_a_prefix_of_its_commits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
