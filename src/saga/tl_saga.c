/*
 * tl_saga.c: the process-manager runtime (see tl_saga.h for the contract).
 */
#include "saga/tl_saga.h"

#include "util/tl_failpoint.h"
#include "util/tl_handoff.h"
#include "util/tl_slog.h"
#include "util/tl_time.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#define BATCH_EVENTS 256
#define MAX_PMS 8
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 2000

/* A command with the strings it points to. */
typedef struct pm_req {
  tl_cmd_request req;
  char key[192];
  char causation[40];
  char correlation[129];
} pm_req;

struct tl_pm_batch {
  pm_req **reqs;
  size_t n, cap;
  /* The event being handled: */
  const tl_event *ev;
  char event_id[40];
  char correlation[129];
  /* Completion of submitted commands: */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t outstanding;
};

/* A dead-letter operation handed to a runner thread (retry or drop one parked step). */
typedef struct pm_task {
  tl_job job; /* first: the handoff's part */
  int drop;
  int64_t id;
  tl_saga_dlq_result result;
} pm_task;

typedef struct pm_runner {
  tl_saga *saga;
  tl_handoff tasks; /* dead-letter operations for this runner's thread */
  const tl_pm_def *def;
  /* The failing step, if any (runner thread only). */
  int64_t fail_position, park_position;
  int fail_attempts;
  int64_t fail_first_ms, fail_last_ms;
  char fail_error[sizeof(((tl_err *)0)->msg)];
  unsigned rng;
  _Atomic int64_t dlq_depth;
  char fp_step[TL_FP_NAME_MAX]; /* "saga.<name>.step" */
  tl_db *db;
  tl_jdoc data, meta; /* the event being handled, parsed (runner thread) */
  pthread_t thread;
  int started;
  _Atomic int64_t position;
  _Atomic uint64_t commands, retries;
} pm_runner;

struct tl_saga {
  tl_log *log;
  tl_writer *writer;
  tl_saga_opts opts;
  char path[PATH_MAX];
  _Atomic int stopping;
  int n;
  pm_runner runners[MAX_PMS];
};

static const char CHECKPOINTS_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS pm_checkpoints("
    " name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS pm_dlq("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, position INTEGER NOT NULL,"
    " stream TEXT NOT NULL, type TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,"
    " first_failed_at INTEGER NOT NULL, last_failed_at INTEGER NOT NULL,"
    " UNIQUE(name, position));";
static const char SQL_DLQ_PARK[] =
    "INSERT OR REPLACE INTO pm_dlq(name, position, stream, type, error, attempts,"
    " first_failed_at, last_failed_at) VALUES(?,?,?,?,?,?,?,?)";
static const char SQL_DLQ_DEPTH[] = "SELECT COUNT(*) FROM pm_dlq WHERE name = ?";
static const char SQL_DLQ_POS[] = "SELECT position FROM pm_dlq WHERE id = ? AND name = ?";
static const char SQL_DLQ_NAME[] = "SELECT name FROM pm_dlq WHERE id = ?";
static const char SQL_DLQ_DEL[] = "DELETE FROM pm_dlq WHERE id = ?";
static const char SQL_DLQ_AGAIN[] =
    "UPDATE pm_dlq SET attempts = attempts + 1, last_failed_at = ?, error = ? WHERE id = ?";
static const char SQL_DLQ_LIST[] =
    "SELECT id, name, position, stream, type, error, attempts, first_failed_at, last_failed_at"
    " FROM pm_dlq ORDER BY id LIMIT ?";
static const char SQL_CP_GET[] = "SELECT version, position FROM pm_checkpoints WHERE name = ?";
static const char SQL_CP_PUT[] =
    "INSERT INTO pm_checkpoints(name, version, position) VALUES(?,?,?)"
    " ON CONFLICT(name) DO UPDATE SET version = excluded.version, position = excluded.position";

tl_cmd *tl_pm_command(tl_pm_batch *b, tl_cmd_kind kind, const char *target,
                      const char *key_suffix) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    pm_req **r = realloc(b->reqs, cap * sizeof *r);
    if (!r) return NULL;
    b->reqs = r;
    b->cap = cap;
  }
  pm_req *p = malloc(sizeof *p);
  if (!p) return NULL;
  tl_cmd_request_init(&p->req);
  p->req.cmd.kind = kind;
  tl_strcpy(p->req.cmd.id, sizeof p->req.cmd.id, target);
  size_t k = tl_strcpy(p->key, sizeof p->key, "pm:"); /* "pm:%s:%s", no printf */
  k += tl_strcpy(p->key + k, sizeof p->key - k, b->event_id);
  if (k + 1 < sizeof p->key) tl_strcpy(p->key + k, sizeof p->key - k, ":");
  if (k + 1 < sizeof p->key) tl_strcpy(p->key + k + 1, sizeof p->key - k - 1, key_suffix);
  tl_strcpy(p->causation, sizeof p->causation, b->event_id);
  tl_strcpy(p->correlation, sizeof p->correlation, b->correlation);
  p->req.idem_key = p->key;
  p->req.causation_id = p->causation;
  p->req.correlation_id = p->correlation;
  /* The key alone identifies the request: the same event and suffix always ask the same. */
  tl_request_fingerprint("PM", p->key, "", 0, p->req.fingerprint);
  b->reqs[b->n++] = p;
  return &p->req.cmd;
}

static void batch_reset(tl_pm_batch *b) {
  for (size_t i = 0; i < b->n; i++) {
    tl_cmd_request_clear(&b->reqs[i]->req);
    free(b->reqs[i]);
  }
  b->n = 0;
}

tl_pm_batch *tl_pm_batch_new(void) {
  tl_pm_batch *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  pthread_mutex_init(&b->lock, NULL);
  pthread_cond_init(&b->cond, NULL);
  return b;
}

void tl_pm_batch_free(tl_pm_batch *b) {
  if (!b) return;
  batch_reset(b);
  free(b->reqs);
  pthread_cond_destroy(&b->cond);
  pthread_mutex_destroy(&b->lock);
  free(b);
}

void tl_pm_batch_event(tl_pm_batch *b, const char *event_id, const char *correlation_id) {
  tl_strcpy(b->event_id, sizeof b->event_id, event_id ? event_id : "");
  tl_strcpy(b->correlation, sizeof b->correlation, correlation_id ? correlation_id : "");
}

size_t tl_pm_batch_count(const tl_pm_batch *b) {
  return b->n;
}

const tl_cmd_request *tl_pm_batch_get(const tl_pm_batch *b, size_t i) {
  return i < b->n ? &b->reqs[i]->req : NULL;
}

/* ---- running a batch --------------------------------------------------------------------- */

typedef struct handle_ctx {
  pm_runner *r;
  tl_pm_batch *b;
  int64_t last_position;
  int rc;
  int64_t failed_position; /* the event whose step failed (0: the failure was elsewhere) */
  int parked;
  int replay; /* a dead letter retried by an operator: never park it again */
  tl_err err;
} handle_ctx;

/* Records ev as a parked step of r (inside the batch's transaction). */
static int park(pm_runner *r, const tl_event *ev, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(r->db, SQL_DLQ_PARK, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, r->def->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, ev->position);
  sqlite3_bind_text(st, 3, ev->stream, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, ev->type, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, r->fail_error, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 6, r->fail_attempts);
  sqlite3_bind_int64(st, 7, r->fail_first_ms);
  sqlite3_bind_int64(st, 8, r->fail_last_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return tl_db_fail(r->db, rc, "park a step", err);
  char pos[24], att[16];
  snprintf(pos, sizeof pos, "%lld", (long long)ev->position);
  snprintf(att, sizeof att, "%d", r->fail_attempts);
  tl_slog(TL_SLOG_ERROR, NULL, "process manager step parked in the dead-letter queue",
          "processManager", r->def->name, "position", pos, "type", ev->type, "attempts", att,
          "error", r->fail_error, NULL);
  return TL_OK;
}

static int64_t dlq_depth(pm_runner *r) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(r->db, SQL_DLQ_DEPTH, &err);
  if (!st) return -1;
  sqlite3_bind_text(st, 1, r->def->name, -1, SQLITE_STATIC);
  int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_reset(st);
  return n;
}

/* True if the manager handles events of this type (the others are stepped over unread). */
static bool handles(const tl_pm_def *def, const char *type) {
  if (!def->types) return true;
  for (const char *const *t = def->types; *t; t++)
    if (strcmp(*t, type) == 0) return true;
  return false;
}

static int handle_event(void *arg, const tl_event *ev) {
  handle_ctx *h = arg;
  assert(ev->position == h->last_position + 1);
  /* Only the events the manager handles are parsed: most of the log is not its business. */
  bool wanted = handles(h->r->def, ev->type);
  const tl_jv *data = NULL, *meta = NULL;
  if (wanted && (tl_jdoc_parse(&h->r->data, ev->data, strlen(ev->data), &data) != TL_OK ||
                 tl_jdoc_parse(&h->r->meta, ev->metadata, strlen(ev->metadata), &meta) != TL_OK)) {
    h->rc = tl_err_set(&h->err, TL_E_IO, "event %lld is unreadable", (long long)ev->position);
    return 1;
  }
  const char *eid = tl_jv_string(tl_jv_get(meta, "eventId"));
  const char *cid = tl_jv_string(tl_jv_get(meta, "correlationId"));
  tl_strcpy(h->b->event_id, sizeof h->b->event_id, eid ? eid : "");
  tl_strcpy(h->b->correlation, sizeof h->b->correlation, cid ? cid : "");
  if (!eid) snprintf(h->b->event_id, sizeof h->b->event_id, "pos%lld", (long long)ev->position);
  h->b->ev = ev;
  if (!h->replay && ev->position == h->r->park_position) { /* failed too often: park it */
    h->rc = park(h->r, ev, &h->err);
    if (h->rc != TL_OK) return 1;
    h->parked = 1;
    h->last_position = ev->position;
    return 0;
  }
  if (tl_fp(h->r->fp_step))
    h->rc = tl_err_set(&h->err, TL_E_IO, "step failed at event %lld (fail point %s)",
                       (long long)ev->position, h->r->fp_step);
  else if (wanted)
    h->rc = h->r->def->handle(h->r->db, ev, data, h->b, &h->err);
  if (h->rc != TL_OK) {
    h->failed_position = ev->position;
    return 1;
  }
  h->last_position = ev->position;
  return 0;
}

static void command_done(tl_cmd_request *req, void *arg) {
  (void)req;
  tl_pm_batch *b = arg;
  pthread_mutex_lock(&b->lock);
  if (--b->outstanding == 0) pthread_cond_signal(&b->cond);
  pthread_mutex_unlock(&b->lock);
}

/* Submits every command of the batch and waits for all answers. Returns 0, or TL_E_IO if any
 * command could not be made durable (5xx): the batch must then be retried as a whole. */
static int run_commands(pm_runner *r, tl_pm_batch *b) {
  if (b->n == 0) return TL_OK;
  pthread_mutex_lock(&b->lock);
  b->outstanding = b->n;
  pthread_mutex_unlock(&b->lock);
  for (size_t i = 0; i < b->n; i++) {
    b->reqs[i]->req.on_done = command_done;
    b->reqs[i]->req.on_done_arg = b;
    tl_writer_submit(r->saga->writer, &b->reqs[i]->req);
  }
  pthread_mutex_lock(&b->lock);
  while (b->outstanding > 0) pthread_cond_wait(&b->cond, &b->lock);
  pthread_mutex_unlock(&b->lock);
  atomic_fetch_add(&r->commands, b->n);
  int rc = TL_OK;
  for (size_t i = 0; i < b->n; i++) {
    const tl_cmd_request *q = &b->reqs[i]->req;
    if (q->status >= 500 || q->status == 0) {
      rc = TL_E_IO;
      tl_slog(TL_SLOG_WARN, b->reqs[i]->correlation, "process manager command failed; retrying",
              "processManager", r->def->name, "command", tl_cmd_name(q->cmd.kind), "key",
              b->reqs[i]->key, "detail", q->problem.detail, NULL);
    } else if (q->status >= 400 && tl_slog_enabled(TL_SLOG_DEBUG)) {
      tl_slog(TL_SLOG_DEBUG, b->reqs[i]->correlation, "process manager command refused",
              "processManager", r->def->name, "command", tl_cmd_name(q->cmd.kind), "code",
              q->problem.code ? q->problem.code : "", NULL);
    }
  }
  return rc;
}

static int put_checkpoint(pm_runner *r, int64_t position, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(r->db, SQL_CP_PUT, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, r->def->name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, r->def->version);
  sqlite3_bind_int64(st, 3, position);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(r->db, rc, "store checkpoint", err);
}

/* One batch: returns the number of events handled, or -1 (rolled back, to retry). */
static int run_batch(pm_runner *r, tl_log_reader *reader, tl_pm_batch *b) {
  handle_ctx h = {.r = r, .b = b, .last_position = atomic_load(&r->position)};
  int rc = tl_db_run(r->db, "BEGIN IMMEDIATE", &h.err);
  if (rc == TL_OK) {
    rc = tl_log_read_all(reader, h.last_position + 1, BATCH_EVENTS, handle_event, &h, &h.err);
    if (rc == 1 || h.rc != TL_OK) rc = h.rc ? h.rc : TL_E_IO;
  }
  if (rc == TL_OK) rc = run_commands(r, b);
  if (rc == TL_OK) rc = put_checkpoint(r, h.last_position, &h.err);
  if (rc == TL_OK) rc = tl_db_run(r->db, "COMMIT", &h.err);
  int n = (int)(h.last_position - atomic_load(&r->position));
  batch_reset(b);
  if (rc != TL_OK && h.failed_position > 0) { /* the step failed, not storage */
    if (r->fail_position != h.failed_position) {
      r->fail_position = h.failed_position;
      r->fail_attempts = 0;
      r->fail_first_ms = tl_now_ms();
    }
    r->fail_attempts++;
    r->fail_last_ms = tl_now_ms();
    tl_strcpy(r->fail_error, sizeof r->fail_error, h.err.msg);
    if (r->fail_attempts >= r->saga->opts.retry_attempts) r->park_position = h.failed_position;
  }
  if (rc != TL_OK) {
    if (!sqlite3_get_autocommit(r->db->db)) sqlite3_exec(r->db->db, "ROLLBACK", NULL, NULL, NULL);
    if (h.err.msg[0])
      tl_slog(TL_SLOG_ERROR, NULL, "process manager batch failed; will retry", "processManager",
              r->def->name, "error", h.err.msg, NULL);
    return -1;
  }
  atomic_store(&r->position, h.last_position);
  if (r->fail_position && r->fail_position <= h.last_position) { /* applied or parked */
    r->fail_position = r->park_position = 0;
    r->fail_attempts = 0;
  }
  if (h.parked) atomic_store(&r->dlq_depth, dlq_depth(r));
  return n;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int exec_id(pm_runner *r, const char *sql, int64_t id, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(r->db, sql, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(r->db, rc, "dead letter", err);
}

/* Retries (re-runs the step against the manager's state as it is now, with the same
 * idempotency keys) or drops one parked step of r. */
static int run_task(pm_runner *r, tl_log_reader *reader, tl_pm_batch *b, pm_task *t) {
  tl_err *err = &t->job.err;
  int rc = tl_db_run(r->db, "BEGIN IMMEDIATE", err);
  sqlite3_stmt *st = rc == TL_OK ? tl_db_stmt(r->db, SQL_DLQ_POS, err) : NULL;
  if (rc == TL_OK && !st) rc = TL_E_IO;
  int64_t position = 0;
  if (rc == TL_OK) {
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_text(st, 2, r->def->name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) position = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
  }
  if (rc == TL_OK && position > 0) {
    t->result.found = 1;
    if (t->drop) {
      rc = exec_id(r, SQL_DLQ_DEL, t->id, err);
      if (rc == TL_OK) t->result.dropped = 1;
    } else {
      handle_ctx h = {.r = r, .b = b, .last_position = position - 1, .replay = 1};
      int read = tl_log_read_all(reader, position, 1, handle_event, &h, err);
      int step = h.rc != TL_OK ? h.rc : read;
      if (step == TL_OK) step = run_commands(r, b);
      batch_reset(b);
      if (step == TL_OK) {
        rc = exec_id(r, SQL_DLQ_DEL, t->id, err);
        if (rc == TL_OK) t->result.applied = 1;
      } else {
        /* The step failed again: nothing of it stays; count the attempt. */
        sqlite3_exec(r->db->db, "ROLLBACK", NULL, NULL, NULL);
        t->result.failed = 1;
        sqlite3_stmt *up = tl_db_stmt(r->db, SQL_DLQ_AGAIN, err);
        if (!up) return TL_E_IO;
        sqlite3_bind_int64(up, 1, tl_now_ms());
        sqlite3_bind_text(up, 2, h.err.msg[0] ? h.err.msg : "its commands failed", -1,
                          SQLITE_TRANSIENT);
        sqlite3_bind_int64(up, 3, t->id);
        int s2 = sqlite3_step(up);
        sqlite3_reset(up);
        return s2 == SQLITE_DONE ? TL_OK : tl_db_fail(r->db, s2, "count a dead letter", err);
      }
    }
  }
  if (rc == TL_OK) rc = tl_db_run(r->db, "COMMIT", err);
  if (rc != TL_OK && !sqlite3_get_autocommit(r->db->db))
    sqlite3_exec(r->db->db, "ROLLBACK", NULL, NULL, NULL);
  if (rc == TL_OK) atomic_store(&r->dlq_depth, dlq_depth(r));
  return rc;
}

static void serve_task(pm_runner *r, tl_log_reader *reader, tl_pm_batch *b) {
  tl_job *job = tl_handoff_take(&r->tasks);
  if (job) tl_handoff_finish(&r->tasks, job, run_task(r, reader, b, (pm_task *)job));
}

static void *runner_main(void *arg) {
  pm_runner *r = arg;
  tl_saga *s = r->saga;
  tl_thread_name("tl-saga");
  tl_log_reader *reader = NULL;
  tl_err err = {0};
  tl_pm_batch *b = tl_pm_batch_new();
  if (!b) {
    tl_slog(TL_SLOG_ERROR, NULL, "process manager out of memory", "processManager", r->def->name,
            NULL);
    return NULL;
  }
  int backoff_ms = BACKOFF_MIN_MS;
  while (!atomic_load(&s->stopping)) {
    if (!reader && tl_log_reader_acquire(s->log, &reader, &err) != TL_OK) {
      tl_slog(TL_SLOG_ERROR, NULL, "process manager cannot read the log", "error", err.msg, NULL);
      sleep_ms(100);
      continue;
    }
    serve_task(r, reader, b);
    int64_t pos = atomic_load(&r->position);
    if (tl_log_head(s->log) <= pos) {
      tl_log_wait(s->log, pos, 500);
      continue;
    }
    if (run_batch(r, reader, b) < 0) {
      atomic_fetch_add(&r->retries, 1);
      if (r->park_position) continue; /* the next run parks the step */
      if (r->fail_position) {         /* a failing step: the configured backoff */
        int64_t d = s->opts.retry_base_ms;
        for (int k = 1; k < r->fail_attempts && d < s->opts.retry_cap_ms; k++) d *= 2;
        if (d > s->opts.retry_cap_ms) d = s->opts.retry_cap_ms;
        sleep_ms((int)(d / 2 + (int64_t)(rand_r(&r->rng) % (unsigned)(d / 2 + 1))));
        continue;
      }
      /* Storage trouble: exponential backoff with equal jitter, without limit. */
      int jittered = backoff_ms / 2 + (int)(rand_r(&r->rng) % (unsigned)(backoff_ms / 2 + 1));
      sleep_ms(jittered);
      backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    } else {
      backoff_ms = BACKOFF_MIN_MS;
    }
  }
  tl_log_reader_release(s->log, reader);
  tl_pm_batch_free(b);
  tl_handoff_close(&r->tasks);
  return NULL;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static int open_runner(pm_runner *r, const char *path, tl_err *err) {
  int rc = tl_db_open(&r->db, path, 0, "NORMAL", err);
  if (rc == TL_OK) rc = tl_db_checkpoint_in_background(r->db, path, "NORMAL", err);
  if (rc == TL_OK) rc = tl_db_exec(r->db, CHECKPOINTS_SCHEMA, err);
  if (rc == TL_OK) rc = tl_db_exec(r->db, r->def->schema_sql, err);
  if (rc != TL_OK) return rc;
  sqlite3_stmt *st = tl_db_stmt(r->db, SQL_CP_GET, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, r->def->name, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  int64_t pos = step == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE) return tl_db_fail(r->db, step, "checkpoint", err);
  atomic_store(&r->position, pos);
  return TL_OK;
}

int tl_saga_start(tl_saga **out, tl_log *log, tl_writer *writer, const char *dir,
                  const tl_saga_opts *opts, tl_err *err) {
  *out = NULL;
  tl_saga *s = calloc(1, sizeof *s);
  if (!s) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  s->log = log;
  s->writer = writer;
  s->opts = (tl_saga_opts){.retry_base_ms = 200, .retry_cap_ms = 30000, .retry_attempts = 8};
  if (opts && opts->retry_base_ms > 0) s->opts.retry_base_ms = opts->retry_base_ms;
  if (opts && opts->retry_cap_ms > 0) s->opts.retry_cap_ms = opts->retry_cap_ms;
  if (opts && opts->retry_attempts > 0) s->opts.retry_attempts = opts->retry_attempts;
  if (s->opts.retry_cap_ms < s->opts.retry_base_ms) s->opts.retry_cap_ms = s->opts.retry_base_ms;
  char *path = s->path;
  int n = snprintf(path, sizeof s->path, "%s/saga.db", dir);
  int rc = (n < 0 || (size_t)n >= sizeof s->path)
               ? tl_err_set(err, TL_E_INVALID, "data directory path too long")
               : TL_OK;
  assert(tl_process_managers_count <= MAX_PMS);
  for (int i = 0; rc == TL_OK && i < tl_process_managers_count; i++) {
    pm_runner *r = &s->runners[i];
    r->saga = s;
    r->def = tl_process_managers[i];
    snprintf(r->fp_step, sizeof r->fp_step, "saga.%s.step", r->def->name);
    r->rng = (unsigned)tl_mono_ns() + (unsigned)i;
    tl_handoff_init(&r->tasks);
    s->n++;
    rc = open_runner(r, path, err);
    if (rc == TL_OK) atomic_store(&r->dlq_depth, dlq_depth(r));
    if (rc == TL_OK && atomic_load(&r->position) > tl_log_head(log))
      rc = tl_err_set(err, TL_E_INVALID, "process manager %s is ahead of the log", r->def->name);
  }
  for (int i = 0; rc == TL_OK && i < s->n; i++) {
    if (pthread_create(&s->runners[i].thread, NULL, runner_main, &s->runners[i]) != 0)
      rc = tl_err_set(err, TL_E_IO, "cannot start a process manager thread");
    else
      s->runners[i].started = 1;
  }
  if (rc != TL_OK) {
    tl_saga_stop(s);
    return rc;
  }
  *out = s;
  return TL_OK;
}

void tl_saga_stop(tl_saga *s) {
  if (!s) return;
  atomic_store(&s->stopping, 1);
  tl_log_wake(s->log);
  for (int i = 0; i < s->n; i++) {
    if (s->runners[i].started) pthread_join(s->runners[i].thread, NULL);
    tl_db_close(s->runners[i].db);
    tl_jdoc_free(&s->runners[i].data);
    tl_jdoc_free(&s->runners[i].meta);
    tl_handoff_destroy(&s->runners[i].tasks);
  }
  free(s);
}

static void wake_runner(void *log) {
  tl_log_wake(log);
}

int tl_saga_dlq_op(tl_saga *s, int drop, int64_t id, int timeout_ms, tl_saga_dlq_result *out,
                   tl_err *err) {
  memset(out, 0, sizeof *out);
  /* Which manager parked it: its runner runs the operation. */
  tl_db *db = NULL;
  if (tl_db_open(&db, s->path, 1, "NORMAL", err) != TL_OK) return TL_E_IO;
  sqlite3_stmt *st = tl_db_stmt(db, SQL_DLQ_NAME, err);
  pm_runner *r = NULL;
  if (st) {
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW)
      for (int i = 0; i < s->n; i++)
        if (strcmp(s->runners[i].def->name, (const char *)sqlite3_column_text(st, 0)) == 0)
          r = &s->runners[i];
    sqlite3_reset(st);
  }
  tl_db_close(db);
  if (!st) return TL_E_IO;
  if (!r) return TL_OK; /* not found */
  if (atomic_load(&s->stopping)) return tl_err_set(err, TL_E_CLOSED, "shutting down");
  pm_task t = {.drop = drop, .id = id};
  int rc = tl_handoff_run(&r->tasks, &t.job, timeout_ms, wake_runner, s->log, err);
  if (rc == TL_OK) *out = t.result;
  return rc;
}

int tl_saga_status(tl_saga *s, tl_pm_status *out, int max) {
  int64_t head = tl_log_head(s->log), now = tl_now_ms();
  for (int i = 0; i < s->n && i < max; i++) {
    pm_runner *r = &s->runners[i];
    int64_t pos = atomic_load(&r->position), lag_ms = 0;
    if (pos < head) {
      int64_t t = tl_log_recorded_at(s->log, pos + 1);
      lag_ms = t > 0 && now > t ? now - t : 0;
    }
    out[i] = (tl_pm_status){r->def->name,
                            pos,
                            head > pos ? head - pos : 0,
                            lag_ms,
                            atomic_load(&r->commands),
                            atomic_load(&r->retries),
                            atomic_load(&r->dlq_depth)};
  }
  return s->n;
}

json_t *tl_saga_dlq(tl_saga *s, int limit, tl_err *err) {
  tl_db *db = NULL;
  if (tl_db_open(&db, s->path, 1, "NORMAL", err) != TL_OK) return NULL;
  sqlite3_stmt *st = tl_db_stmt(db, SQL_DLQ_LIST, err);
  json_t *arr = NULL;
  if (st) {
    sqlite3_bind_int(st, 1, limit);
    arr = tl_db_dead_letters(db, st, "processManager", err);
  }
  tl_db_close(db);
  return arr;
}
