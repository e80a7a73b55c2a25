/*
 * reconcile.c: compares the read models with a fresh fold of the log (see tl_read.h).
 *
 *   1. A scratch database beside read.db gets every projection's tables (empty).
 *   2. A read-only connection to read.db attaches it, opens a read transaction and reads the
 *      checkpoints: the live tables are compared in that snapshot, whatever the projector does
 *      meanwhile.
 *   3. The scratch database is filled by applying the log to each projection up to its live
 *      checkpoint (the projections' own apply functions, no fail points, no retries: an event
 *      a projection cannot apply is counted as a fresh-fold error).
 *   4. Each table is compared both ways with EXCEPT; differing rows are reported by key.
 * The scratch files are removed at the end. Nothing live is written.
 */
#include "read/tl_read.h"

#include "util/tl_slog.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PROJECTIONS 16
#define KEYS_REPORTED 20
#define COMMIT_EVERY 10000

typedef struct fold_ctx {
  tl_db *db;
  int64_t cp[MAX_PROJECTIONS];
  int64_t errors[MAX_PROJECTIONS];
  int64_t applied_in_txn;
  int rc;
  tl_err err;
} fold_ctx;

static int fold_event(void *arg, const tl_event *ev) {
  fold_ctx *f = arg;
  json_t *data = json_loads(ev->data, 0, NULL);
  for (int i = 0; i < tl_projections_count; i++) {
    if (ev->position > f->cp[i]) continue;
    tl_err why = {0};
    if (!data || tl_db_exec(f->db, "SAVEPOINT fold", &f->err) != TL_OK) {
      if (data) { /* storage failure of the scratch database */
        json_decref(data);
        f->rc = TL_E_IO;
        return 1;
      }
      f->errors[i]++;
      continue;
    }
    if (tl_projections[i]->apply(f->db, ev, data, &why) != TL_OK) {
      f->errors[i]++;
      tl_db_exec(f->db, "ROLLBACK TO fold", NULL);
    }
    if (tl_db_exec(f->db, "RELEASE fold", &f->err) != TL_OK) {
      json_decref(data);
      f->rc = TL_E_IO;
      return 1;
    }
  }
  json_decref(data);
  if (++f->applied_in_txn >= COMMIT_EVERY) {
    f->applied_in_txn = 0;
    if (tl_db_exec(f->db, "COMMIT; BEGIN", &f->err) != TL_OK) {
      f->rc = TL_E_IO;
      return 1;
    }
  }
  return 0;
}

/* Folds the log into the scratch database up to each projection's checkpoint. */
static int fold_fresh(tl_log *log, fold_ctx *f, int64_t upto, tl_err *err) {
  tl_log_reader *reader = NULL;
  int rc = tl_log_reader_acquire(log, &reader, err);
  if (rc != TL_OK) return rc;
  rc = tl_db_exec(f->db, "BEGIN", err);
  int64_t from = 1;
  while (rc == TL_OK && from <= upto) {
    int64_t before = from;
    rc = tl_log_read_all(reader, from, 1000, fold_event, f, err);
    if (rc == 1 || f->rc != TL_OK) {
      rc = TL_E_IO;
      *err = f->err;
      break;
    }
    /* tl_log_read_all reads at most 1000 events from `from`; events past upto are skipped by
     * fold_event (their positions exceed every checkpoint). */
    from = before + 1000;
  }
  if (rc == TL_OK) rc = tl_db_exec(f->db, "COMMIT", err);
  tl_log_reader_release(log, reader);
  return rc;
}

static int64_t count_sql(tl_db *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* Compares one table; returns its report or NULL on an SQL error (err set). */
static json_t *compare_table(tl_db *live, const tl_rm_table *t, int64_t *mismatches, tl_err *err) {
  const char *cols = t->cols ? t->cols : "*";
  char diff[1024], sql[1400];
  int n = snprintf(diff, sizeof diff,
                   "SELECT %s FROM (SELECT %s FROM main.%s EXCEPT SELECT %s FROM fresh.%s)"
                   " UNION SELECT %s FROM (SELECT %s FROM fresh.%s EXCEPT SELECT %s FROM main.%s)",
                   t->key, cols, t->name, cols, t->name, t->key, cols, t->name, cols, t->name);
  if (n < 0 || (size_t)n >= sizeof diff) {
    tl_err_set(err, TL_E_INVALID, "comparison of %s too long", t->name);
    return NULL;
  }
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM main.%s", t->name);
  int64_t rows = count_sql(live, sql);
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM fresh.%s", t->name);
  int64_t fresh_rows = count_sql(live, sql);
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM (%s)", diff);
  int64_t bad = count_sql(live, sql);
  if (rows < 0 || fresh_rows < 0 || bad < 0) {
    tl_err_set(err, TL_E_IO, "cannot compare %s: %s", t->name, sqlite3_errmsg(live->db));
    return NULL;
  }
  json_t *keys = json_array();
  snprintf(sql, sizeof sql, "%s LIMIT %d", diff, KEYS_REPORTED);
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(live->db, sql, -1, &st, NULL) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      const char *k = (const char *)sqlite3_column_text(st, 0);
      json_array_append_new(keys, json_string(k ? k : ""));
    }
  }
  sqlite3_finalize(st);
  *mismatches += bad;
  return json_pack("{s:s, s:I, s:I, s:I, s:o}", "table", t->name, "rows", (json_int_t)rows,
                   "freshRows", (json_int_t)fresh_rows, "mismatches", (json_int_t)bad, "keys",
                   keys);
}

static void remove_scratch(const char *path) {
  static const char *const SUFFIX[] = {"", "-wal", "-shm", "-journal"};
  char p[4200];
  for (size_t i = 0; i < sizeof SUFFIX / sizeof SUFFIX[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, SUFFIX[i]);
    unlink(p);
  }
}

int tl_read_reconcile(tl_read *r, json_t **report, tl_err *err) {
  static _Atomic unsigned counter;
  *report = NULL;
  const char *read_path = tl_read_db_path(r);
  char scratch[4096];
  int n = snprintf(scratch, sizeof scratch, "%s.reconcile-%ld-%u", read_path, (long)getpid(),
                   atomic_fetch_add(&counter, 1));
  if (n < 0 || (size_t)n >= sizeof scratch)
    return tl_err_set(err, TL_E_INVALID, "data directory path too long");
  fold_ctx *f = calloc(1, sizeof *f);
  if (!f) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  tl_db *live = NULL;
  int rc = tl_db_open(&f->db, scratch, 0, "OFF", err);
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++)
    rc = tl_db_exec(f->db, tl_projections[i]->schema_sql, err);
  if (rc == TL_OK) rc = tl_db_open(&live, read_path, 1, "NORMAL", err);
  if (rc == TL_OK) {
    char *q = sqlite3_mprintf("ATTACH DATABASE %Q AS fresh", scratch);
    rc = q ? tl_db_exec(live, q, err) : tl_err_set(err, TL_E_NOMEM, "out of memory");
    sqlite3_free(q);
  }
  /* The snapshot of the live read models: checkpoints and tables as of this transaction. */
  if (rc == TL_OK) rc = tl_db_exec(live, "BEGIN", err);
  int64_t upto = 0;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    f->cp[i] = tl_projection_checkpoint(live, tl_projections[i]->name);
    if (f->cp[i] < 0) rc = tl_err_set(err, TL_E_IO, "cannot read checkpoints");
    if (f->cp[i] > upto) upto = f->cp[i];
  }
  if (rc == TL_OK) rc = fold_fresh(tl_read_log(r), f, upto, err);
  json_t *projections = json_array();
  int64_t total = 0;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    const tl_projection_def *d = tl_projections[i];
    json_t *tables = json_array();
    int64_t bad = 0;
    for (int t = 0; rc == TL_OK && t < d->n_tables; t++) {
      json_t *tr = compare_table(live, &d->tables[t], &bad, err);
      if (!tr)
        rc = TL_E_IO;
      else
        json_array_append_new(tables, tr);
    }
    total += bad;
    json_array_append_new(projections,
                          json_pack("{s:s, s:I, s:I, s:I, s:o}", "name", d->name, "position",
                                    (json_int_t)f->cp[i], "mismatches", (json_int_t)bad,
                                    "freshFoldErrors", (json_int_t)f->errors[i], "tables", tables));
  }
  if (live) {
    if (!sqlite3_get_autocommit(live->db)) sqlite3_exec(live->db, "COMMIT", NULL, NULL, NULL);
    sqlite3_exec(live->db, "DETACH DATABASE fresh", NULL, NULL, NULL);
    tl_db_close(live);
  }
  tl_db_close(f->db);
  remove_scratch(scratch);
  free(f);
  if (rc != TL_OK) {
    json_decref(projections);
    return rc;
  }
  *report = json_pack("{s:b, s:I, s:o}", "clean", total == 0, "mismatches", (json_int_t)total,
                      "projections", projections);
  if (total > 0) {
    char m[24];
    snprintf(m, sizeof m, "%lld", (long long)total);
    tl_slog(TL_SLOG_WARN, NULL, "reconciliation found mismatches", "mismatches", m, NULL);
  }
  return *report ? TL_OK : tl_err_set(err, TL_E_NOMEM, "out of memory");
}
