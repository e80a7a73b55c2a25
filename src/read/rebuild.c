/*
 * rebuild.c: zero-downtime rebuild of one projection (see tl_read.h).
 *
 * A background thread folds the log from position 0 into a scratch database beside the live
 * files (the projection's fold schema and its apply function), chunk after chunk, until it is
 * within CATCH_UP_EVENTS of the head, and turns the fold schema into the live one
 * (tl_projection_def.finish_sql: indexes built in one sorted pass, the full-text index filled
 * in one statement) with the checkpoint table beside it. Then it hands the swap to the
 * projector thread, which folds the last events into the scratch database, stores its
 * checkpoint there, closes it and installs it as the projection's next file generation
 * (files.c: a rename and an ATTACH in place of the old file). Queries that run meanwhile read
 * the old file; the projector applies nothing else while it swaps, which now takes about as
 * long as the last events' fold.
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

/* The scratch database, folded up to the end, with its checkpoint, closed and out of WAL
 * mode: a single file that can be renamed (files.c). */
static int seal_scratch(rebuild_job *j, tl_err *err) {
  const tl_projection_def *d = tl_projections[j->proj];
  tl_db *db = j->fold.db;
  int rc = tl_db_run(db, "BEGIN", err);
  if (rc == TL_OK)
    rc = tl_read_put_checkpoint(db, NULL, d, j->fold.position, j->fold.recorded_ms, err);
  if (rc == TL_OK) rc = tl_db_run(db, "COMMIT", err);
  if (rc != TL_OK && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  /* journal_mode=DELETE copies the WAL into the file and removes it (this is the only
   * connection); the live connections set WAL again when they attach it. */
  if (rc == TL_OK) rc = tl_db_exec(db, "PRAGMA journal_mode=DELETE", err);
  if (rc == TL_OK) {
    tl_db_close(db);
    j->fold.db = NULL;
  }
  return rc;
}

/* The projector thread's half: the last events, then the swap. */
static int swap_task(tl_read *r, tl_log_reader *reader, void *arg, tl_err *err) {
  (void)reader;
  rebuild_job *j = arg;
  int64_t t0 = tl_mono_ns();
  j->fold.upto[j->proj] = tl_log_head(r->log);
  int rc = tl_fold_run(r->log, &j->fold, err);
  if (rc == TL_OK) rc = seal_scratch(j, err);
  if (rc == TL_OK) rc = tl_files_install(r, j->proj, j->scratch, err);
  j->swap_ms = (tl_mono_ns() - t0) / 1000000;
  if (rc != TL_OK) return rc;
  tl_err ignored = {0};
  tl_read_refresh_dlq_depths(r, &ignored); /* the new file's: what the fold parked */
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
  /* The checkpoint and the dead letters: events the projection cannot apply are parked here
   * again (the live copy's dead letters are folded like every other event). */
  if (rc == TL_OK) rc = tl_db_exec(j->fold.db, TL_READ_STORE_SCHEMA, err);
  j->fold.park = true;
  while (rc == TL_OK) {
    j->fold.upto[proj] = tl_log_head(r->log);
    rc = tl_fold_run(r->log, &j->fold, err);
    if (rc == TL_OK && tl_log_head(r->log) - j->fold.position <= CATCH_UP_EVENTS) break;
  }
  int64_t fold_ms = (tl_mono_ns() - t0) / 1000000, t1 = tl_mono_ns();
  if (rc == TL_OK && d->finish_sql) {
    /* Sorts and indexes of every row (seconds at a million): a shutdown interrupts them. One
     * transaction: a crash leaves the scratch file, removed at start-up. */
    sqlite3_progress_handler(j->fold.db->db, 10000, stop_requested, (void *)&r->stopping);
    rc = tl_db_run(j->fold.db, "BEGIN", err);
    if (rc == TL_OK) rc = tl_db_exec(j->fold.db, d->finish_sql, err);
    if (rc == TL_OK) rc = tl_db_run(j->fold.db, "COMMIT", err);
    if (rc != TL_OK && !sqlite3_get_autocommit(j->fold.db->db))
      sqlite3_exec(j->fold.db->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_progress_handler(j->fold.db->db, 0, NULL, NULL);
  }
  /* Everything so far on the disk, here: the swap's fsync then writes only the last events'
   * pages (at 1M orders a whole file's fsync kept the projector 0.5-0.8 s). */
  if (rc == TL_OK) rc = tl_db_exec(j->fold.db, "PRAGMA wal_checkpoint(TRUNCATE)", err);
  if (rc == TL_OK) rc = tl_files_sync(j->scratch, err);
  int64_t finish_ms = (tl_mono_ns() - t1) / 1000000;
  if (rc == TL_OK) {
    tl_proj_task t = {.run = swap_task, .arg = j};
    rc = tl_read_run_task(r, &t, SWAP_TAKE_MS, err);
  }
  char pos[24], ms[24], fold[24], finish[24], swap_ms[24];
  snprintf(pos, sizeof pos, "%lld", (long long)j->fold.position);
  snprintf(ms, sizeof ms, "%lld", (long long)((tl_mono_ns() - t0) / 1000000));
  snprintf(fold, sizeof fold, "%lld", (long long)fold_ms);
  snprintf(finish, sizeof finish, "%lld", (long long)finish_ms);
  snprintf(swap_ms, sizeof swap_ms, "%lld", (long long)j->swap_ms);
  /* ms: the whole rebuild; fold_ms and finish_ms: its parts on the rebuild thread (the fold,
   * then finish_sql); swap_ms: its part on the projector's thread (the last events, the
   * install), which applies nothing else meanwhile. */
  if (rc == TL_OK)
    tl_slog(TL_SLOG_INFO, NULL, "projection rebuilt and swapped in", "projection", d->name,
            "position", pos, "ms", ms, "fold_ms", fold, "finish_ms", finish, "swap_ms", swap_ms,
            NULL);
  else
    tl_slog(TL_SLOG_ERROR, NULL, "projection rebuild failed; the live copy is unchanged",
            "projection", d->name, "error", err->msg, NULL);
  tl_db_close(j->fold.db);
  if (j->scratch[0]) tl_fold_remove(j->scratch);
  free(j);
  return rc;
}

void tl_read_fold_start_fallback(tl_read *r, int i) {
  if (!atomic_exchange(&r->fold_start[i], 0)) return; /* a changed version cannot */
  tl_slog(TL_SLOG_WARN, NULL, "the projector catches the projection up instead", "projection",
          tl_projections[i]->name, NULL);
  atomic_store(&r->version_hold[i], 0);
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
      if (rebuild_one(r, i, &err) != TL_OK && !atomic_load(&r->stopping))
        tl_read_fold_start_fallback(r, i);
      atomic_store(&r->fold_start[i], 0);
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
