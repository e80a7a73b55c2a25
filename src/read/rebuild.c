/*
 * rebuild.c: zero-downtime rebuild of one projection (see tl_read.h).
 *
 * A background thread folds the log from position 0 into a scratch database beside read.db
 * (the projection's fold schema and its apply function), chunk after chunk, until it is within
 * CATCH_UP_EVENTS of the head, and creates the indexes the fold schema deferred (see
 * tl_projection_def). Then it hands the swap to the projector thread, which folds the
 * last events, and in one read.db transaction replaces the live tables' rows with the new
 * ones, moves the checkpoint to the new copy's position and forgets the projection's parked
 * events. Queries run on their own connections in WAL mode: until the commit they read the old
 * rows, after it the new ones. The projector applies nothing else while it swaps.
 */
#include "read/tl_read_int.h"

#include "util/tl_slog.h"
#include "util/tl_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CATCH_UP_EVENTS 1000 /* the swap folds at most about this many events itself */
#define SWAP_TAKE_MS 60000   /* how long the projector may take to start the swap */

typedef struct rebuild_job {
  tl_read *r;
  int proj;
  char scratch[PATH_MAX + 64];
  char fp[TL_FP_NAME_MAX];
  tl_fold fold;
  int64_t swap_ms; /* how long the projector spent in swap_task (it applies nothing else) */
} rebuild_job;

/* Runs SQL built with sqlite3_vmprintf (%Q quotes a string literal). */
static int exec_fmt(tl_db *db, tl_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *sql = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  if (!sql) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  int rc = tl_db_exec(db, sql, err);
  sqlite3_free(sql);
  return rc;
}

/* Fills every table of d in main, just created empty, with the rows of rb (inside a
 * transaction). */
static int copy_tables(tl_db *db, const tl_projection_def *d, tl_err *err) {
  int rc = TL_OK;
  for (int t = 0; rc == TL_OK && t < d->n_tables; t++) {
    const tl_rm_table *tb = &d->tables[t];
    if (tb->copy)
      rc = exec_fmt(db, err, "INSERT INTO main.%s(%s) SELECT %s FROM rb.%s", tb->name, tb->copy,
                    tb->copy, tb->name);
    else
      rc = exec_fmt(db, err, "INSERT INTO main.%s SELECT * FROM rb.%s", tb->name, tb->name);
  }
  return rc;
}

/* The projector thread's half: the last events, then the swap. */
static int swap_task(tl_read *r, tl_log_reader *reader, void *arg, tl_err *err) {
  (void)reader;
  rebuild_job *j = arg;
  const tl_projection_def *d = tl_projections[j->proj];
  int64_t t0 = tl_mono_ns();
  j->fold.upto[j->proj] = tl_log_head(r->log);
  int rc = tl_fold_run(r->log, &j->fold, err);
  if (rc != TL_OK) return rc;
  rc = exec_fmt(r->w, err, "ATTACH DATABASE %Q AS rb", j->scratch);
  if (rc != TL_OK) return rc;
  rc = tl_db_run(r->w, "BEGIN IMMEDIATE", err);
  /* The live tables are dropped and created again (as they must be for a new version of the
   * projection, whose tables may differ), then filled: dropping frees their pages without
   * reading their rows, where a DELETE of the full-text index tokenizes every row again to
   * remove it. */
  if (rc == TL_OK) rc = tl_db_exec(r->w, d->reset_sql, err);
  if (rc == TL_OK) rc = tl_db_exec(r->w, d->schema_sql, err);
  if (rc == TL_OK) rc = copy_tables(r->w, d, err);
  if (rc == TL_OK) rc = tl_read_put_checkpoint(r->w, d, j->fold.position, j->fold.recorded_ms, err);
  if (rc == TL_OK) rc = exec_fmt(r->w, err, "DELETE FROM rm_dlq WHERE projection = %Q", d->name);
  if (rc == TL_OK) rc = tl_db_run(r->w, "COMMIT", err);
  if (rc != TL_OK && !sqlite3_get_autocommit(r->w->db))
    sqlite3_exec(r->w->db, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_exec(r->w->db, "DETACH DATABASE rb", NULL, NULL, NULL);
  j->swap_ms = (tl_mono_ns() - t0) / 1000000;
  if (rc != TL_OK) return rc;
  tl_err ignored = {0};
  tl_read_refresh_dlq_depths(r, &ignored);
  atomic_store(&r->version_hold[j->proj], 0);
  tl_read_publish_rebuilt(r, j->proj, j->fold.position, j->fold.recorded_ms);
  return TL_OK;
}

/* SQLite's progress handler: non-zero interrupts the statement. */
static int stop_requested(void *stopping) {
  return atomic_load((_Atomic int *)stopping);
}

/* Builds the new copy of projection `proj` and has the projector swap it in. */
static int rebuild_one(tl_read *r, int proj, tl_err *err) {
  const tl_projection_def *d = tl_projections[proj];
  rebuild_job *j = calloc(1, sizeof *j);
  if (!j) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  j->r = r;
  j->proj = proj;
  for (int i = 0; i < TL_MAX_PROJECTIONS; i++) j->fold.upto[i] = -1;
  snprintf(j->fp, sizeof j->fp, "projection.%s.rebuild", d->name);
  j->fold.fp_point = j->fp;
  j->fold.stop = &r->stopping;
  j->fold.progress = &r->rebuild_position;
  atomic_store(&r->rebuild_position, 0);
  int64_t t0 = tl_mono_ns();
  int rc = tl_fold_scratch_path(r, "rebuild", j->scratch, sizeof j->scratch, err);
  if (rc == TL_OK) rc = tl_db_open(&j->fold.db, j->scratch, 0, "OFF", err);
  /* The deferred indexes are built by sorting every row: past the cache, in temporary files,
   * not on the heap (temp_store=MEMORY: +35 MB of peak RSS at 300k orders). */
  if (rc == TL_OK) rc = tl_db_exec(j->fold.db, "PRAGMA temp_store=FILE", err);
  if (rc == TL_OK) rc = tl_fold_create_tables(j->fold.db, d, err);
  while (rc == TL_OK) {
    j->fold.upto[proj] = tl_log_head(r->log);
    rc = tl_fold_run(r->log, &j->fold, err);
    if (rc == TL_OK && tl_log_head(r->log) - j->fold.position <= CATCH_UP_EVENTS) break;
  }
  if (rc == TL_OK && d->deferred_index_sql) {
    /* A sort of every row (seconds at a million): a shutdown interrupts it. */
    sqlite3_progress_handler(j->fold.db->db, 10000, stop_requested, (void *)&r->stopping);
    rc = tl_db_exec(j->fold.db, d->deferred_index_sql, err);
    sqlite3_progress_handler(j->fold.db->db, 0, NULL, NULL);
  }
  if (rc == TL_OK) {
    tl_proj_task t = {.run = swap_task, .arg = j};
    rc = tl_read_run_task(r, &t, SWAP_TAKE_MS, err);
  }
  char pos[24], ms[24], swap_ms[24];
  snprintf(pos, sizeof pos, "%lld", (long long)j->fold.position);
  snprintf(ms, sizeof ms, "%lld", (long long)((tl_mono_ns() - t0) / 1000000));
  snprintf(swap_ms, sizeof swap_ms, "%lld", (long long)j->swap_ms);
  if (rc == TL_OK) /* ms: the whole rebuild; swap_ms: its part on the projector's thread */
    tl_slog(TL_SLOG_INFO, NULL, "projection rebuilt and swapped in", "projection", d->name,
            "position", pos, "ms", ms, "swap_ms", swap_ms, NULL);
  else
    tl_slog(TL_SLOG_ERROR, NULL, "projection rebuild failed; the live copy is unchanged",
            "projection", d->name, "error", err->msg, NULL);
  tl_db_close(j->fold.db);
  if (j->scratch[0]) tl_fold_remove(j->scratch);
  free(j);
  return rc;
}

/* The rebuild thread: one projection (arg >= 0), or (-1) every projection whose version
 * changed, one after the other. */
typedef struct thread_arg {
  tl_read *r;
  int proj;
} thread_arg;

static void *rebuild_main(void *arg) {
  thread_arg a = *(thread_arg *)arg;
  free(arg);
  tl_read *r = a.r;
  int proj = a.proj;
  tl_thread_name("tl-rebuild");
  tl_err err = {0};
  if (proj >= 0) {
    rebuild_one(r, proj, &err);
  } else {
    for (int i = 0; i < tl_projections_count && !atomic_load(&r->stopping); i++) {
      if (!atomic_load(&r->version_hold[i])) continue;
      atomic_store(&r->rebuilding, i);
      memset(&err, 0, sizeof err);
      rebuild_one(r, i, &err);
    }
  }
  atomic_store(&r->rebuilding, -1);
  return NULL;
}

/* Starts the rebuild thread for proj (or -1: the version-changed ones); rebuilding is set. */
static int start_thread(tl_read *r, int proj, tl_err *err) {
  thread_arg *arg = malloc(sizeof *arg);
  if (!arg) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  *arg = (thread_arg){r, proj};
  pthread_mutex_lock(&r->lock);
  if (r->rebuild_joinable) { /* the previous rebuild has ended: reap its thread */
    pthread_join(r->rebuild_thread, NULL);
    r->rebuild_joinable = 0;
  }
  int rc = TL_OK;
  if (pthread_create(&r->rebuild_thread, NULL, rebuild_main, arg) != 0) {
    free(arg);
    rc = tl_err_set(err, TL_E_IO, "cannot start the rebuild thread");
  } else {
    r->rebuild_joinable = 1;
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

int tl_read_rebuild_start(tl_read *r, const char *name, tl_err *err) {
  int proj = tl_projection_index(name);
  if (proj < 0) return tl_err_set(err, TL_E_NOTFOUND, "no projection is called '%.64s'", name);
  if (atomic_load(&r->stopping)) return tl_err_set(err, TL_E_CLOSED, "shutting down");
  int idle = -1;
  if (!atomic_compare_exchange_strong(&r->rebuilding, &idle, proj))
    return tl_err_set(err, TL_E_CONFLICT, "projection %s is being rebuilt",
                      tl_projections[idle]->name);
  int rc = start_thread(r, proj, err);
  if (rc != TL_OK) {
    atomic_store(&r->rebuilding, -1);
    return rc;
  }
  tl_slog(TL_SLOG_INFO, NULL, "projection rebuild started", "projection", name, NULL);
  return TL_OK;
}

int tl_read_rebuild_versions(tl_read *r, tl_err *err) {
  int first = -1;
  for (int i = 0; i < tl_projections_count && first < 0; i++)
    if (atomic_load(&r->version_hold[i])) first = i;
  if (first < 0) return TL_OK;
  atomic_store(&r->rebuilding, first);
  int rc = start_thread(r, -1, err);
  if (rc != TL_OK) atomic_store(&r->rebuilding, -1);
  return rc;
}
