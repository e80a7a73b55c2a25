/* test_log.c: the event log's storage (log/tl_log.c, log/log_sqlite.c, util/tl_db.c) on a real
 * events.db in a fresh mkdtemp directory: commit and sync (pool readers see only synced events),
 * tl_log_snapshots_put and tl_log_snapshot_get, grouped reads (tl_log_read_begin/end) and the
 * background WAL checkpointer.
 *
 * One snapshot per stream, replaced by the next; a failed write (fail point log.snapshot)
 * changes nothing; snapshots survive closing and reopening the log; writing them never touches
 * the events or the head. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log/tl_log.h"
#include "util/tl_db.h"
#include "util/tl_failpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct fixture {
  char dir[64];
  tl_log *log;
} fixture;

static void open_log(fixture *f) {
  tl_err err = {0};
  tl_log_opts o = {.dir = f->dir};
  if (tl_log_open(&f->log, &o, &err) != TL_OK) fail_msg("open: %s", err.msg);
}

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/tl-log-test-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  open_log(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tl_log_close(f->log);
  tl_fp_clear_all();
  const char *names[] = {"events.db", "events.db-wal", "events.db-shm", "events.db-journal"};
  for (size_t i = 0; i < TL_ARRAY_LEN(names); i++) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", f->dir, names[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

/* Commits n events to stream (versions from+1 ...), as the writer does; sync: and makes them
 * durable. */
static void commit(fixture *f, const char *stream, int64_t from, int n, int sync) {
  tl_log_event_in ev[8];
  assert_true(n <= 8);
  int64_t head = tl_log_committed(f->log);
  for (int i = 0; i < n; i++)
    ev[i] = (tl_log_event_in){.position = head + 1 + i,
                              .stream = stream,
                              .version = from + 1 + i,
                              .type = "ProductRestocked",
                              .schema_version = 1,
                              .data = "{\"quantity\":1}",
                              .metadata = "{}"};
  tl_log_batch b = {.events = ev, .n_events = (size_t)n, .recorded_ms = 1700000000000LL};
  tl_err err = {0};
  int rc = sync ? tl_log_append(f->log, &b, &err) : tl_log_commit(f->log, &b, &err);
  if (rc != TL_OK) fail_msg("append: %s", err.msg);
}

static void append(fixture *f, const char *stream, int64_t from, int n) {
  commit(f, stream, from, n, 1);
}

static int count_event(void *arg, const tl_event *ev) {
  (void)ev;
  (*(int *)arg)++;
  return 0;
}

/* Events of the whole log and of stream that reader r sees. */
static void seen(tl_log_reader *r, const char *stream, int *all, int *in_stream) {
  tl_err err = {0};
  *all = *in_stream = 0;
  assert_int_equal(tl_log_read_all(r, 1, 0, count_event, all, &err), TL_OK);
  assert_int_equal(tl_log_read_stream(r, stream, 1, 0, count_event, in_stream, &err), TL_OK);
}

/* A committed batch is the writer's at once and everyone's after the sync that covers it: pool
 * readers (projector, process managers, queries) never see an event a power loss could take
 * back. */
static void test_pool_readers_see_synced_events_only(void **state) {
  fixture *f = *state;
  append(f, "product-a", 0, 2);
  commit(f, "product-a", 2, 3, 0);
  assert_int_equal(tl_log_head(f->log), 2);
  assert_int_equal(tl_log_committed(f->log), 5);
  tl_log_reader *r = NULL;
  tl_err err = {0};
  assert_int_equal(tl_log_reader_acquire(f->log, &r, &err), TL_OK);
  int all, in_stream;
  seen(r, "product-a", &all, &in_stream);
  assert_int_equal(all, 2);
  assert_int_equal(in_stream, 2);
  int none = 0; /* from past the durable head: nothing, although the rows are there */
  assert_int_equal(tl_log_read_all(r, 3, 10, count_event, &none, &err), TL_OK);
  assert_int_equal(none, 0);
  seen(tl_log_writer_reader(f->log), "product-a", &all, &in_stream);
  assert_int_equal(all, 5);
  assert_int_equal(in_stream, 5);

  int did_sync = 0;
  assert_int_equal(tl_log_sync(f->log, &did_sync, &err), TL_OK);
  assert_true(did_sync);
  assert_int_equal(tl_log_head(f->log), 5);
  assert_int_equal(tl_log_wait(f->log, 4, 0), 5);
  seen(r, "product-a", &all, &in_stream);
  assert_int_equal(all, 5);
  assert_int_equal(in_stream, 5);
  assert_int_equal(tl_log_sync(f->log, &did_sync, &err), TL_OK); /* nothing new: no fsync */
  assert_false(did_sync);

  /* A batch of idempotency records alone moves no position but still needs its fsync. */
  tl_log_idem_in k = {"key-1", "fp", 201, "{}", 5};
  tl_log_batch b = {.idem = &k, .n_idem = 1, .recorded_ms = 1700000000000LL};
  assert_int_equal(tl_log_commit(f->log, &b, &err), TL_OK);
  assert_int_equal(tl_log_sync(f->log, &did_sync, &err), TL_OK);
  assert_true(did_sync);
  assert_int_equal(tl_log_head(f->log), 5);

  /* A failed sync publishes nothing. */
  commit(f, "product-a", 5, 1, 0);
  tl_fp_set("log.fsync", "error", &err);
  assert_int_equal(tl_log_sync(f->log, &did_sync, &err), TL_E_IO);
  assert_false(did_sync);
  assert_int_equal(tl_log_head(f->log), 5);
  seen(r, "product-a", &all, &in_stream);
  assert_int_equal(all, 5);
  tl_log_reader_release(f->log, r);
}

/* The stored snapshot of stream: expects one at version with state text. */
static void expect_snapshot(fixture *f, const char *stream, int64_t version, int schema,
                            const char *state) {
  tl_snapshot s;
  tl_err err = {0};
  int rc = tl_log_snapshot_get(tl_log_writer_reader(f->log), stream, &s, &err);
  if (rc != TL_OK) fail_msg("no snapshot of %s: %d %s", stream, rc, err.msg);
  assert_int_equal(s.version, version);
  assert_int_equal(s.schema_version, schema);
  assert_string_equal(s.state, state);
  free(s.state);
}

/* The writer's way: a batch carries the snapshots its events produced, stored in the same
 * transaction; a failure to store them (fail point log.snapshot) loses them, not the batch. */
static void test_snapshots_ride_with_their_batch(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  tl_log_event_in ev = {.position = 1,
                        .stream = "product-a",
                        .version = 1,
                        .type = "ProductRestocked",
                        .schema_version = 1,
                        .data = "{\"quantity\":1}",
                        .metadata = "{}"};
  tl_snapshot_in snap = {"product-a", 1, 1, "{\"a\":1}"};
  int failed = -1;
  tl_log_batch b = {.events = &ev,
                    .n_events = 1,
                    .recorded_ms = 1700000000000LL,
                    .snaps = &snap,
                    .n_snaps = 1,
                    .snaps_failed = &failed};
  assert_int_equal(tl_log_append(f->log, &b, &err), TL_OK);
  assert_int_equal(failed, -1); /* untouched: stored */
  expect_snapshot(f, "product-a", 1, 1, "{\"a\":1}");

  ev.position = 2;
  ev.version = 2;
  snap = (tl_snapshot_in){"product-a", 2, 1, "{\"a\":2}"};
  assert_int_equal(tl_fp_set("log.snapshot", "error", &err), TL_OK);
  assert_int_equal(tl_log_append(f->log, &b, &err), TL_OK);
  tl_fp_clear_all();
  assert_int_equal(failed, 1);
  assert_int_equal(tl_log_head(f->log), 2);           /* the event is in */
  expect_snapshot(f, "product-a", 1, 1, "{\"a\":1}"); /* the older snapshot stays */
}

static void test_snapshots_put_get_replace(void **state) {
  fixture *f = *state;
  tl_snapshot s;
  tl_err err = {0};
  assert_int_equal(tl_log_snapshot_get(tl_log_writer_reader(f->log), "product-a", &s, &err),
                   TL_E_NOTFOUND);
  assert_null(s.state);
  append(f, "product-a", 0, 5);
  append(f, "product-b", 0, 2);
  tl_snapshot_in in[] = {{"product-a", 3, 1, "{\"a\":3}"},
                         {"product-b", 2, 1, "{\"b\":2}"},
                         {"product-a", 5, 1, "{\"a\":5}"}}; /* later entries win */
  assert_int_equal(tl_log_snapshots_put(f->log, in, 3, &err), TL_OK);
  expect_snapshot(f, "product-a", 5, 1, "{\"a\":5}");
  expect_snapshot(f, "product-b", 2, 1, "{\"b\":2}");
  assert_int_equal(tl_log_head(f->log), 7); /* snapshots are not events */

  /* A pooled reader (another connection) sees them as well. */
  tl_log_reader *r = NULL;
  assert_int_equal(tl_log_reader_acquire(f->log, &r, &err), TL_OK);
  assert_int_equal(tl_log_snapshot_get(r, "product-b", &s, &err), TL_OK);
  assert_int_equal(s.version, 2);
  free(s.state);
  tl_log_reader_release(f->log, r);

  /* The next snapshot of a stream replaces the previous one, whatever its schema. */
  append(f, "product-b", 2, 3);
  tl_snapshot_in next = {"product-b", 5, 2, "{\"b\":5}"};
  assert_int_equal(tl_log_snapshots_put(f->log, &next, 1, &err), TL_OK);
  expect_snapshot(f, "product-b", 5, 2, "{\"b\":5}");
  assert_int_equal(tl_log_snapshots_put(f->log, NULL, 0, &err), TL_OK);

  /* They outlive the process: close and reopen. */
  tl_log_close(f->log);
  f->log = NULL;
  open_log(f);
  assert_int_equal(tl_log_head(f->log), 10);
  expect_snapshot(f, "product-a", 5, 1, "{\"a\":5}");
  expect_snapshot(f, "product-b", 5, 2, "{\"b\":5}");
}

static void test_failed_snapshot_write_changes_nothing(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  append(f, "order-x", 0, 4);
  tl_snapshot_in first = {"order-x", 2, 1, "{\"v\":2}"};
  assert_int_equal(tl_log_snapshots_put(f->log, &first, 1, &err), TL_OK);
  assert_int_equal(tl_fp_set("log.snapshot", "error*1", &err), TL_OK);
  tl_snapshot_in in[] = {{"order-x", 4, 1, "{\"v\":4}"}, {"order-y", 1, 1, "{}"}};
  assert_int_equal(tl_log_snapshots_put(f->log, in, 2, &err), TL_E_IO);
  assert_non_null(strstr(err.msg, "log.snapshot"));
  expect_snapshot(f, "order-x", 2, 1, "{\"v\":2}");
  tl_snapshot s;
  assert_int_equal(tl_log_snapshot_get(tl_log_writer_reader(f->log), "order-y", &s, &err),
                   TL_E_NOTFOUND);
  /* The fault cleared: the same write goes through, and appends were never affected. */
  assert_int_equal(tl_log_snapshots_put(f->log, in, 2, &err), TL_OK);
  expect_snapshot(f, "order-x", 4, 1, "{\"v\":4}");
  append(f, "order-x", 4, 1);
  assert_int_equal(tl_log_head(f->log), 5);
}

static void test_grouped_reads_see_one_snapshot(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  append(f, "product-a", 0, 3);
  tl_log_reader *w = tl_log_writer_reader(f->log);
  tl_log_reader *r = NULL;
  assert_int_equal(tl_log_reader_acquire(f->log, &r, &err), TL_OK);
  assert_int_equal(tl_log_read_begin(r, &err), TL_OK);
  int n = 0;
  assert_int_equal(tl_log_read_all(r, 1, 0, count_event, &n, &err), TL_OK);
  assert_int_equal(n, 3);
  append(f, "product-a", 3, 2); /* another connection commits meanwhile */
  n = 0;
  assert_int_equal(tl_log_read_all(r, 1, 0, count_event, &n, &err), TL_OK);
  assert_int_equal(n, 3); /* still the snapshot the group began with */
  tl_log_read_end(r);
  n = 0;
  assert_int_equal(tl_log_read_all(r, 1, 0, count_event, &n, &err), TL_OK);
  assert_int_equal(n, 5);
  tl_log_reader_release(f->log, r);

  /* The writer's own reader: group, end, then append on the same connection. */
  assert_int_equal(tl_log_read_begin(w, &err), TL_OK);
  tl_idem_record rec = {0};
  assert_int_equal(tl_log_idem_get(w, "no-such-key", &rec, &err), TL_E_NOTFOUND);
  n = 0;
  assert_int_equal(tl_log_read_stream(w, "product-a", 1, 0, count_event, &n, &err), TL_OK);
  assert_int_equal(n, 5);
  tl_log_read_end(w);
  append(f, "product-a", 5, 1);
  assert_int_equal(tl_log_head(f->log), 6);
}

static off_t file_size(const char *dir, const char *name) {
  char p[128];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat st;
  return stat(p, &st) == 0 ? st.st_size : -1;
}

static void test_background_checkpoints(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  /* Commit ~4,600 pages in small transactions, as group commits do: past the wake-up mark
   * and past the backstop. */
  tl_db *db = NULL;
  char path[128];
  snprintf(path, sizeof path, "%s/ckpt.db", f->dir);
  assert_int_equal(tl_db_open(&db, path, 0, "FULL", &err), TL_OK);
  assert_int_equal(tl_db_checkpoint_in_background(db, path, "FULL", &err), TL_OK);
  assert_int_equal(tl_db_checkpoint_in_background(db, path, "FULL", &err), TL_E_INVALID);
  assert_int_equal(tl_db_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)", &err), TL_OK);
  for (int i = 0; i < 600; i++)
    assert_int_equal(tl_db_exec(db,
                                "BEGIN; INSERT INTO t(v) SELECT randomblob(3000) FROM"
                                " (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL"
                                " SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL"
                                " SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL"
                                " SELECT 10); COMMIT",
                                &err),
                     TL_OK);
  /* The thread ran, and the WAL was restarted rather than holding every commit (18 MB). */
  for (int i = 0; i < 500 && tl_db_background_checkpoints(db) == 0; i++)
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
  assert_true(tl_db_background_checkpoints(db) > 0);
  off_t wal = file_size(f->dir, "ckpt.db-wal");
  assert_true(wal > 0);
  assert_true(wal < (off_t)(TL_DB_CKPT_BACKSTOP_PAGES + 100) * 4120);
  assert_true(file_size(f->dir, "ckpt.db") > 6000 * 1000); /* pages reached the database */
  /* Closing stops the thread; everything is there when the file is opened again. */
  tl_db_close(db);
  assert_int_equal(tl_db_open(&db, path, 1, "FULL", &err), TL_OK);
  sqlite3_stmt *st = tl_db_stmt(db, "SELECT count(*), sum(length(v)) FROM t", &err);
  assert_non_null(st);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(st, 0), 6000);
  assert_int_equal(sqlite3_column_int64(st, 1), 6000 * 3000);
  sqlite3_reset(st);
  tl_db_close(db);
  const char *names[] = {"ckpt.db", "ckpt.db-wal", "ckpt.db-shm"};
  for (size_t i = 0; i < TL_ARRAY_LEN(names); i++) {
    snprintf(path, sizeof path, "%s/%s", f->dir, names[i]);
    unlink(path);
  }
}

int main(void) {
  tl_err err = {0};
  if (tl_db_init_library(&err) != TL_OK) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_pool_readers_see_synced_events_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshots_ride_with_their_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshots_put_get_replace, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failed_snapshot_write_changes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_grouped_reads_see_one_snapshot, setup, teardown),
      cmocka_unit_test_setup_teardown(test_background_checkpoints, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
