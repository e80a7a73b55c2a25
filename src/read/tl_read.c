/*
 * tl_read.c: the read store and its projector thread (see tl_read.h).
 */
#include "read/tl_read.h"

#include "util/tl_failpoint.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "util/tl_time.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_EVENTS 512
#define MAX_PROJECTIONS 16

typedef struct waiter {
  int64_t min_position;
  int64_t deadline_ns; /* tl_mono_ns */
  tl_read_wait_fn fn;
  void *arg;
  struct waiter *next;
} waiter;

typedef struct conn_node {
  tl_db *db;
  struct conn_node *next;
} conn_node;

struct tl_read {
  tl_log *log;
  char path[PATH_MAX];
  tl_db *w; /* the projector's connection */
  char fp_apply[MAX_PROJECTIONS][TL_FP_NAME_MAX]; /* "projection.<name>.apply" */
  pthread_t thread;
  int started;
  _Atomic int stopping;

  /* Applied position of each projection (all equal between batches today: one thread applies
   * them together) and the recorded time of the event at the minimum. */
  _Atomic int64_t checkpoint[MAX_PROJECTIONS];
  _Atomic int64_t applied;
  _Atomic int64_t applied_recorded_ms;

  pthread_mutex_t lock; /* guards the waiters (cond and list) and the connection pool */
  pthread_cond_t cond;
  waiter *waiters;      /* asynchronous waits, unordered */
  conn_node *pool;
};

/* Calls back every asynchronous waiter whose position is reached, whose deadline passed, or
 * every one of them when the store is stopping. Callbacks run outside the lock. Returns the
 * earliest remaining deadline (INT64_MAX if none). */
static int64_t fire_waiters(tl_read *r) {
  int64_t now = tl_mono_ns(), next = INT64_MAX;
  int stopping = atomic_load(&r->stopping);
  int64_t applied = atomic_load(&r->applied);
  waiter *due = NULL;
  pthread_mutex_lock(&r->lock);
  waiter **pp = &r->waiters;
  while (*pp) {
    waiter *w = *pp;
    if (stopping || w->min_position <= applied || w->deadline_ns <= now) {
      *pp = w->next;
      w->next = due;
      due = w;
    } else {
      if (w->deadline_ns < next) next = w->deadline_ns;
      pp = &w->next;
    }
  }
  pthread_mutex_unlock(&r->lock);
  while (due) {
    waiter *w = due;
    due = w->next;
    w->fn(w->arg, w->min_position <= applied ? TL_OK : TL_E_TIMEOUT);
    free(w);
  }
  return next;
}

static const char CHECKPOINTS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS rm_checkpoints("
    " name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL,"
    " recorded_at INTEGER) WITHOUT ROWID;";
static const char SQL_CP_GET[] =
    "SELECT version, position, recorded_at FROM rm_checkpoints WHERE name = ?";
static const char SQL_CP_PUT[] =
    "INSERT INTO rm_checkpoints(name, version, position, recorded_at) VALUES(?,?,?,?)"
    " ON CONFLICT(name) DO UPDATE SET version = excluded.version, position = excluded.position,"
    " recorded_at = excluded.recorded_at";

int64_t tl_projection_checkpoint(tl_db *db, const char *name) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_CP_GET, &err);
  if (!st) return -1;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int64_t pos = 0;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) pos = sqlite3_column_int64(st, 1);
  else if (rc != SQLITE_DONE) pos = -1;
  sqlite3_reset(st);
  return pos;
}

static int put_checkpoint(tl_db *db, const tl_projection_def *def, int64_t position,
                          int64_t recorded_ms, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(db, SQL_CP_PUT, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, def->name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, def->version);
  sqlite3_bind_int64(st, 3, position);
  if (recorded_ms >= 0) sqlite3_bind_int64(st, 4, recorded_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(db, rc, "store checkpoint", err);
}

int tl_projection_setup(tl_db *db, const tl_projection_def *def, tl_err *err) {
  int rc = tl_db_exec(db, CHECKPOINTS_SCHEMA, err);
  if (rc != TL_OK) return rc;
  sqlite3_stmt *st = tl_db_stmt(db, SQL_CP_GET, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, def->name, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  int stored_version = step == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE) return tl_db_fail(db, step, "read checkpoint", err);
  if (stored_version == def->version) return tl_db_exec(db, def->schema_sql, err);
  /* New projection, or its definition changed: new tables, and start again from the beginning
   * of the log. */
  if (stored_version >= 0)
    tl_slog(TL_SLOG_WARN, NULL, "projection version changed; rebuilding from position 0",
            "projection", def->name, NULL);
  rc = tl_db_exec(db, "BEGIN", err);
  if (rc == TL_OK) rc = tl_db_exec(db, def->reset_sql, err);
  if (rc == TL_OK) rc = tl_db_exec(db, def->schema_sql, err);
  if (rc == TL_OK) rc = put_checkpoint(db, def, 0, -1, err);
  if (rc == TL_OK) rc = tl_db_exec(db, "COMMIT", err);
  else sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int tl_projection_apply_one(tl_db *db, const tl_projection_def *def, const tl_event *ev,
                            const json_t *data, tl_err *err) {
  int64_t cp = tl_projection_checkpoint(db, def->name);
  if (cp < 0) return tl_err_set(err, TL_E_IO, "cannot read checkpoint of %s", def->name);
  if (ev->position <= cp) return TL_OK; /* already applied: re-delivery changes nothing */
  int rc = def->apply(db, ev, data, err);
  if (rc == TL_OK) rc = put_checkpoint(db, def, ev->position, ev->recorded_ms, err);
  return rc;
}

/* ---- the projector ----------------------------------------------------------------------- */

typedef struct apply_ctx {
  tl_read *r;
  int64_t last_position, last_recorded_ms;
  int64_t first_recorded_ms;
  int n;
  int rc;
  tl_err err;
  int64_t recorded[BATCH_EVENTS];
} apply_ctx;

static int apply_event(void *arg, const tl_event *ev) {
  apply_ctx *a = arg;
  tl_read *r = a->r;
  assert(ev->position == a->last_position + 1); /* the log has no gaps */
  json_t *data = json_loads(ev->data, 0, NULL);
  if (!data) {
    a->rc = tl_err_set(&a->err, TL_E_IO, "event %lld has unreadable data",
                       (long long)ev->position);
    return 1;
  }
  for (int i = 0; i < tl_projections_count; i++) {
    if (ev->position <= atomic_load(&r->checkpoint[i])) continue;
    int rc = tl_fp(r->fp_apply[i])
                 ? tl_err_set(&a->err, TL_E_IO, "apply failed at event %lld (fail point %s)",
                              (long long)ev->position, r->fp_apply[i])
                 : tl_projections[i]->apply(r->w, ev, data, &a->err);
    if (rc != TL_OK) {
      a->rc = rc;
      json_decref(data);
      return 1;
    }
  }
  json_decref(data);
  if (a->n < BATCH_EVENTS) a->recorded[a->n] = ev->recorded_ms;
  a->n++;
  a->last_position = ev->position;
  a->last_recorded_ms = ev->recorded_ms;
  return 0;
}

/* Applies the next batch of events. Returns the number applied, or -1 on failure (the
 * transaction is rolled back; nothing moved). */
static int project_batch(tl_read *r, tl_log_reader *reader) {
  apply_ctx *a = calloc(1, sizeof *a);
  if (!a) return -1;
  a->r = r;
  a->last_position = atomic_load(&r->applied);
  tl_err err = {0};
  int rc = tl_db_exec(r->w, "BEGIN", &err);
  if (rc == TL_OK) {
    rc = tl_log_read_all(reader, a->last_position + 1, BATCH_EVENTS, apply_event, a, &err);
    if (rc == 1 || a->rc != TL_OK) {
      rc = a->rc ? a->rc : TL_E_IO;
      err = a->err;
    }
  }
  /* A projection already past this batch (reset ones restart behind the others) keeps its
   * checkpoint: checkpoints never move backwards. */
  for (int i = 0; rc == TL_OK && a->n > 0 && i < tl_projections_count; i++)
    if (atomic_load(&r->checkpoint[i]) < a->last_position)
      rc = put_checkpoint(r->w, tl_projections[i], a->last_position, a->last_recorded_ms, &err);
  if (rc == TL_OK) rc = tl_db_exec(r->w, "COMMIT", &err);
  if (rc != TL_OK) {
    if (!sqlite3_get_autocommit(r->w->db)) sqlite3_exec(r->w->db, "ROLLBACK", NULL, NULL, NULL);
    tl_slog(TL_SLOG_ERROR, NULL, "projection batch failed; will retry", "error", err.msg, NULL);
    free(a);
    return -1;
  }
  int n = a->n;
  if (n > 0) {
    int64_t now = tl_now_ms();
    for (int i = 0; i < n && i < BATCH_EVENTS; i++)
      tl_hist_observe(&tl_g_stats.visible_lag, (double)(now - a->recorded[i]) / 1000.0);
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < tl_projections_count; i++)
      if (atomic_load(&r->checkpoint[i]) < a->last_position)
        atomic_store(&r->checkpoint[i], a->last_position);
    atomic_store(&r->applied_recorded_ms, a->last_recorded_ms);
    atomic_store(&r->applied, a->last_position);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
  }
  free(a);
  return n;
}

static void *projector_main(void *arg) {
  tl_read *r = arg;
  tl_log_reader *reader = NULL;
  tl_err err = {0};
  int backoff_ms = 10;
  while (!atomic_load(&r->stopping)) {
    if (!reader && tl_log_reader_acquire(r->log, &reader, &err) != TL_OK) {
      tl_slog(TL_SLOG_ERROR, NULL, "projector cannot read the log", "error", err.msg, NULL);
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    int64_t applied = atomic_load(&r->applied);
    if (tl_log_head(r->log) <= applied) {
      int64_t next = fire_waiters(r);
      int64_t wait_ms = 1000;
      if (next != INT64_MAX) {
        int64_t until = (next - tl_mono_ns()) / 1000000 + 1;
        if (until < wait_ms) wait_ms = until > 0 ? until : 0;
      }
      if (wait_ms > 0) tl_log_wait(r->log, applied, (int)wait_ms);
      continue;
    }
    int n = project_batch(r, reader);
    fire_waiters(r);
    if (n < 0) {
      /* Storage trouble: back off (exponentially, up to 1 s) and try the same batch again. */
      struct timespec ts = {backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L};
      nanosleep(&ts, NULL);
      backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
    } else {
      backoff_ms = 10;
    }
  }
  tl_log_reader_release(r->log, reader);
  fire_waiters(r); /* stopping: everyone still waiting times out */
  return NULL;
}

/* ---- the store --------------------------------------------------------------------------- */

int tl_read_open(tl_read **out, tl_log *log, const char *dir, tl_err *err) {
  *out = NULL;
  tl_read *r = calloc(1, sizeof *r);
  if (!r) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  r->log = log;
  pthread_mutex_init(&r->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cond, &ca);
  pthread_condattr_destroy(&ca);
  int n = snprintf(r->path, sizeof r->path, "%s/read.db", dir);
  int rc = (n < 0 || (size_t)n >= sizeof r->path)
               ? tl_err_set(err, TL_E_INVALID, "data directory path too long")
               : tl_db_open(&r->w, r->path, 0, "NORMAL", err);
  assert(tl_projections_count <= MAX_PROJECTIONS);
  int64_t min_cp = INT64_MAX;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    snprintf(r->fp_apply[i], sizeof r->fp_apply[i], "projection.%s.apply",
             tl_projections[i]->name);
    rc = tl_projection_setup(r->w, tl_projections[i], err);
    int64_t cp = rc == TL_OK ? tl_projection_checkpoint(r->w, tl_projections[i]->name) : -1;
    if (rc == TL_OK && cp < 0) rc = tl_err_set(err, TL_E_IO, "cannot read checkpoints");
    if (rc == TL_OK) {
      atomic_store(&r->checkpoint[i], cp);
      if (cp < min_cp) min_cp = cp;
    }
  }
  if (rc == TL_OK) {
    if (min_cp == INT64_MAX) min_cp = 0;
    if (min_cp > tl_log_head(log))
      rc = tl_err_set(err, TL_E_INVALID,
                      "read models are ahead of the log (position %lld > head %lld): the data "
                      "directory is inconsistent",
                      (long long)min_cp, (long long)tl_log_head(log));
    atomic_store(&r->applied, min_cp);
    sqlite3_stmt *st = tl_db_stmt(r->w, SQL_CP_GET, err);
    if (st) {
      sqlite3_bind_text(st, 1, tl_projections[0]->name, -1, SQLITE_STATIC);
      if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 2) != SQLITE_NULL)
        atomic_store(&r->applied_recorded_ms, sqlite3_column_int64(st, 2));
      sqlite3_reset(st);
    }
  }
  if (rc == TL_OK && pthread_create(&r->thread, NULL, projector_main, r) != 0)
    rc = tl_err_set(err, TL_E_IO, "cannot start the projector thread");
  if (rc != TL_OK) {
    tl_db_close(r->w);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return rc;
  }
  r->started = 1;
  *out = r;
  return TL_OK;
}

void tl_read_shutdown(tl_read *r) {
  if (!r) return;
  atomic_store(&r->stopping, 1);
  pthread_mutex_lock(&r->lock);
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
  tl_log_wake(r->log); /* the projector may sleep in tl_log_wait */
}

void tl_read_close(tl_read *r) {
  if (!r) return;
  tl_read_shutdown(r);
  if (r->started) pthread_join(r->thread, NULL);
  conn_node *c = r->pool;
  while (c) {
    conn_node *next = c->next;
    tl_db_close(c->db);
    free(c);
    c = next;
  }
  tl_db_close(r->w);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

int64_t tl_read_position(tl_read *r) {
  return atomic_load(&r->applied);
}

int tl_read_wait_async(tl_read *r, int64_t min_position, int timeout_ms, tl_read_wait_fn fn,
                       void *arg) {
  if (atomic_load(&r->applied) >= min_position) return TL_OK;
  waiter *w = malloc(sizeof *w);
  if (!w) {
    fn(arg, TL_E_TIMEOUT);
    return 1;
  }
  w->min_position = min_position;
  w->deadline_ns = tl_mono_ns() + (int64_t)timeout_ms * 1000000;
  w->fn = fn;
  w->arg = arg;
  pthread_mutex_lock(&r->lock);
  w->next = r->waiters;
  r->waiters = w;
  pthread_mutex_unlock(&r->lock);
  /* The projector may be asleep until a later deadline, or may have applied the position
   * between the check above and the insertion: wake it to look at the list again. When the
   * store is stopping the projector may be gone: answer here. */
  if (atomic_load(&r->stopping)) fire_waiters(r);
  else tl_log_wake(r->log);
  return 1;
}

int tl_read_wait(tl_read *r, int64_t min_position, int timeout_ms) {
  if (atomic_load(&r->applied) >= min_position) return TL_OK;
  struct timespec deadline;
  tl_deadline_in(&deadline, timeout_ms);
  int rc = TL_OK;
  pthread_mutex_lock(&r->lock);
  while (atomic_load(&r->applied) < min_position) {
    if (atomic_load(&r->stopping) ||
        pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT) {
      rc = atomic_load(&r->applied) >= min_position ? TL_OK : TL_E_TIMEOUT;
      break;
    }
  }
  pthread_mutex_unlock(&r->lock);
  return rc;
}

static int64_t lag_ms_at(tl_read *r, int64_t position, int64_t now) {
  if (position >= tl_log_head(r->log)) return 0;
  int64_t t = tl_log_recorded_at(r->log, position + 1);
  if (t < 0) t = atomic_load(&r->applied_recorded_ms); /* older than the window: a bound */
  int64_t lag = now - t;
  return lag > 0 ? lag : 0;
}

json_t *tl_read_meta(tl_read *r) {
  int64_t pos = atomic_load(&r->applied);
  int64_t rec = atomic_load(&r->applied_recorded_ms);
  json_t *as_of = json_null();
  if (pos > 0 && rec > 0) {
    char iso[TL_ISO_LEN];
    tl_time_format(rec, iso);
    as_of = json_string(iso);
  }
  return json_pack("{s:I, s:o, s:I}", "position", (json_int_t)pos, "dataAsOf", as_of, "lagMs",
                   (json_int_t)lag_ms_at(r, pos, tl_now_ms()));
}

int tl_read_status(tl_read *r, tl_proj_status *out, int max) {
  int64_t head = tl_log_head(r->log), now = tl_now_ms();
  for (int i = 0; i < tl_projections_count && i < max; i++) {
    int64_t cp = atomic_load(&r->checkpoint[i]);
    out[i] = (tl_proj_status){
        .name = tl_projections[i]->name,
        .version = tl_projections[i]->version,
        .position = cp,
        .lag_events = head > cp ? head - cp : 0,
        .lag_ms = lag_ms_at(r, cp, now),
        .dlq_depth = 0,
        .status = "running",
    };
  }
  return tl_projections_count;
}

int tl_read_conn_acquire(tl_read *r, tl_db **out, tl_err *err) {
  pthread_mutex_lock(&r->lock);
  conn_node *c = r->pool;
  if (c) r->pool = c->next;
  pthread_mutex_unlock(&r->lock);
  if (c) {
    *out = c->db;
    free(c);
    return TL_OK;
  }
  return tl_db_open(out, r->path, 1, "NORMAL", err);
}

void tl_read_conn_release(tl_read *r, tl_db *db) {
  if (!db) return;
  conn_node *c = malloc(sizeof *c);
  if (!c) {
    tl_db_close(db);
    return;
  }
  c->db = db;
  pthread_mutex_lock(&r->lock);
  c->next = r->pool;
  r->pool = c;
  pthread_mutex_unlock(&r->lock);
}
