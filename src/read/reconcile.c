/*
 * reconcile.c: compares the read models with a fresh fold of the log (see tl_read.h).
 *
 *   1. A scratch database in the data directory gets every projection's tables (empty; its fold
 *      schema: the compared columns are the live ones, the indexes may differ).
 *   2. A query connection (the live files attached) attaches it, opens a read transaction and
 *      reads the checkpoints: the live tables are compared in that snapshot, whatever the
 *      projector does meanwhile.
 *   3. The scratch database is filled by applying the log to each projection up to its live
 *      checkpoint (the projections' own apply functions, no fail points, no retries: an event
 *      a projection cannot apply is counted as a fresh-fold error).
 *   4. Each table is compared both ways with EXCEPT; differing rows are reported by key.
 * The scratch files are removed at the end. Nothing live is written.
 */
#include "read/tl_read_int.h"

#include "util/tl_slog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS_REPORTED 20

static int64_t count_sql(tl_db *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* Compares one table; returns its report or NULL on an SQL error (err set). */
static json_t *compare_table(tl_db *live, const char *schema, const tl_rm_table *t,
                             int64_t *mismatches, tl_err *err) {
  const char *cols = t->cols ? t->cols : "*";
  const char *s = schema;
  char diff[1024], sql[1400];
  int n =
      snprintf(diff, sizeof diff,
               "SELECT %s FROM (SELECT %s FROM \"%s\".%s EXCEPT SELECT %s FROM fresh.%s)"
               " UNION SELECT %s FROM (SELECT %s FROM fresh.%s EXCEPT SELECT %s FROM \"%s\".%s)",
               t->key, cols, s, t->name, cols, t->name, t->key, cols, t->name, cols, s, t->name);
  if (n < 0 || (size_t)n >= sizeof diff) {
    tl_err_set(err, TL_E_INVALID, "comparison of %s too long", t->name);
    return NULL;
  }
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM \"%s\".%s", s, t->name);
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

int tl_read_reconcile(tl_read *r, json_t **report, tl_err *err) {
  *report = NULL;
  char scratch[PATH_MAX + 64];
  int rc = tl_fold_scratch_path(r, "reconcile", scratch, sizeof scratch, err);
  if (rc != TL_OK) return rc;
  tl_fold *f = calloc(1, sizeof *f);
  if (!f) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  tl_db *live = NULL;
  f->fp_point = "read.reconcile"; /* delays only, per event folded (tests) */
  rc = tl_db_open(&f->db, scratch, 0, "OFF", err);
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++)
    rc = tl_fold_create_tables(f->db, tl_projections[i], err);
  if (rc == TL_OK) rc = tl_read_conn_acquire(r, &live, err);
  if (rc == TL_OK) {
    char *q = sqlite3_mprintf("ATTACH DATABASE %Q AS fresh", scratch);
    rc = q ? tl_db_exec(live, q, err) : tl_err_set(err, TL_E_NOMEM, "out of memory");
    sqlite3_free(q);
  }
  /* The snapshot of the live read models: checkpoints and tables as of this transaction. */
  if (rc == TL_OK) rc = tl_db_run(live, "BEGIN", err);
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    int64_t rec;
    f->upto[i] = 0;
    if (tl_projection_checkpoint_read(live, r->file[i].cp_get, tl_projections[i]->name, &f->upto[i],
                                      &rec) < 0)
      rc = tl_err_set(err, TL_E_IO, "cannot read checkpoints");
  }
  if (rc == TL_OK) rc = tl_fold_run(r->log, f, err);
  json_t *projections = json_array();
  int64_t total = 0;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    const tl_projection_def *d = tl_projections[i];
    json_t *tables = json_array();
    int64_t bad = 0;
    for (int t = 0; rc == TL_OK && t < d->n_tables; t++) {
      json_t *tr = compare_table(live, d->name, &d->tables[t], &bad, err);
      if (!tr)
        rc = TL_E_IO;
      else
        json_array_append_new(tables, tr);
    }
    total += bad;
    json_array_append_new(projections,
                          json_pack("{s:s, s:I, s:I, s:I, s:o}", "name", d->name, "position",
                                    (json_int_t)f->upto[i], "mismatches", (json_int_t)bad,
                                    "freshFoldErrors", (json_int_t)f->errors[i], "tables", tables));
  }
  if (live) {
    if (!sqlite3_get_autocommit(live->db)) sqlite3_exec(live->db, "COMMIT", NULL, NULL, NULL);
    if (sqlite3_exec(live->db, "DETACH DATABASE fresh", NULL, NULL, NULL) == SQLITE_OK)
      tl_read_conn_release(r, live);
    else
      tl_read_conn_drop(r, live); /* not back to the pool with the scratch attached */
  }
  tl_db_close(f->db);
  tl_fold_remove(scratch);
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
