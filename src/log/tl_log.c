/*
 * tl_log.c: the backend-independent half of the event log: the committed and durable heads,
 * waiting for new events, a window of recent recording times (for lag figures) and a pool of
 * readers bounded by the durable head.
 */
#include "log/tl_log.h"

#include "log/tl_log_int.h"
#include "util/tl_failpoint.h"
#include "util/tl_time.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECENT_WINDOW 65536 /* positions whose recording time is kept in memory */

struct tl_log_reader {
  const tl_log_backend *be;
  void *impl;
  tl_upcast_fn upcast; /* NULL: events as stored */
  tl_log *log;         /* pool readers: read up to its durable head; NULL (the writer's): all */
  tl_log_reader *next; /* pool link */
};

struct tl_log {
  const tl_log_backend *be;
  void *impl;
  _Atomic int64_t head;      /* last durable position: what readers see */
  _Atomic int64_t committed; /* last committed position (writer) */
  /* Successful backend appends, and how many of them the last sync covered: a batch of
   * idempotency records alone moves no position but still needs its sync. */
  _Atomic uint64_t commits;
  uint64_t synced_commits;                  /* tl_log_sync's caller only */
  _Atomic int64_t recent_ms[RECENT_WINDOW]; /* recorded time of position p at p % WINDOW */
  pthread_mutex_t lock;                     /* guards waiting (with cond) and the reader pool */
  pthread_cond_t cond;
  int shutdown;
  uint64_t wakes; /* bumped by tl_log_wake */
  tl_log_reader *pool;
  tl_log_reader writer_reader;
  tl_upcast_fn upcast;
};

void tl_log_event_clear(tl_event *ev) {
  free(ev->stream);
  free(ev->type);
  free(ev->data);
  free(ev->metadata);
  memset(ev, 0, sizeof *ev);
}

int tl_log_open(tl_log **out, const tl_log_opts *opts, tl_err *err) {
  *out = NULL;
  tl_log *log = calloc(1, sizeof *log);
  if (!log) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  log->be = &tl_log_sqlite_backend;
  pthread_mutex_init(&log->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&log->cond, &ca);
  pthread_condattr_destroy(&ca);
  for (size_t i = 0; i < RECENT_WINDOW; i++) atomic_init(&log->recent_ms[i], -1);
  int64_t head = 0;
  int rc = log->be->open(&log->impl, opts, &head, err);
  if (rc != TL_OK) {
    pthread_cond_destroy(&log->cond);
    pthread_mutex_destroy(&log->lock);
    free(log);
    return rc;
  }
  atomic_store(&log->head, head);
  atomic_store(&log->committed, head);
  log->writer_reader.be = log->be;
  log->writer_reader.impl = log->be->writer_reader(log->impl);
  *out = log;
  return TL_OK;
}

void tl_log_close(tl_log *log) {
  if (!log) return;
  tl_log_reader *r = log->pool;
  while (r) {
    tl_log_reader *next = r->next;
    log->be->reader_close(r->impl);
    free(r);
    r = next;
  }
  log->be->close(log->impl);
  pthread_cond_destroy(&log->cond);
  pthread_mutex_destroy(&log->lock);
  free(log);
}

int tl_log_commit(tl_log *log, const tl_log_batch *batch, tl_err *err) {
  int64_t committed = atomic_load(&log->committed);
  for (size_t i = 0; i < batch->n_events; i++)
    assert(batch->events[i].position == committed + 1 + (int64_t)i); /* no gaps */
  if (tl_fp("log.append")) return tl_err_set(err, TL_E_IO, "append failed (fail point log.append)");
  int rc = log->be->append(log->impl, batch, err);
  if (rc != TL_OK) return rc;
  for (size_t i = 0; i < batch->n_events; i++)
    atomic_store(&log->recent_ms[batch->events[i].position % RECENT_WINDOW], batch->recorded_ms);
  /* Both stores follow the backend's write: a syncer that reads either one afterwards and then
   * syncs covers this batch. */
  atomic_store(&log->committed, committed + (int64_t)batch->n_events);
  atomic_fetch_add(&log->commits, 1);
  return TL_OK;
}

int tl_log_sync(tl_log *log, int *did_sync, tl_err *err) {
  /* Read before the sync: everything these describe was written before it starts. */
  uint64_t commits = atomic_load(&log->commits);
  int64_t upto = atomic_load(&log->committed);
  if (did_sync) *did_sync = 0;
  if (commits == log->synced_commits) return TL_OK;
  if (tl_fp("log.fsync")) return tl_err_set(err, TL_E_IO, "fsync failed (fail point log.fsync)");
  int rc = log->be->sync(log->impl, err);
  if (rc != TL_OK) return rc;
  log->synced_commits = commits;
  if (did_sync) *did_sync = 1;
  if (upto > atomic_load(&log->head)) {
    pthread_mutex_lock(&log->lock);
    atomic_store(&log->head, upto);
    pthread_cond_broadcast(&log->cond);
    pthread_mutex_unlock(&log->lock);
  }
  return TL_OK;
}

int tl_log_append(tl_log *log, const tl_log_batch *batch, tl_err *err) {
  int rc = tl_log_commit(log, batch, err);
  return rc == TL_OK ? tl_log_sync(log, NULL, err) : rc;
}

int64_t tl_log_committed(const tl_log *log) {
  return atomic_load(&((tl_log *)log)->committed);
}

int64_t tl_log_head(const tl_log *log) {
  return atomic_load(&((tl_log *)log)->head);
}

int64_t tl_log_recorded_at(const tl_log *log, int64_t position) {
  int64_t head = tl_log_head(log);
  if (position < 1 || position > head || head - position >= RECENT_WINDOW) return -1;
  return atomic_load(&((tl_log *)log)->recent_ms[position % RECENT_WINDOW]);
}

int64_t tl_log_wait(tl_log *log, int64_t after, int timeout_ms) {
  struct timespec deadline;
  tl_deadline_in(&deadline, timeout_ms);
  pthread_mutex_lock(&log->lock);
  uint64_t wakes = log->wakes;
  while (atomic_load(&log->head) <= after && !log->shutdown && log->wakes == wakes) {
    if (pthread_cond_timedwait(&log->cond, &log->lock, &deadline) == ETIMEDOUT) break;
  }
  int64_t head = atomic_load(&log->head);
  pthread_mutex_unlock(&log->lock);
  return head;
}

void tl_log_wake(tl_log *log) {
  pthread_mutex_lock(&log->lock);
  log->wakes++;
  pthread_cond_broadcast(&log->cond);
  pthread_mutex_unlock(&log->lock);
}

void tl_log_shutdown(tl_log *log) {
  pthread_mutex_lock(&log->lock);
  log->shutdown = 1;
  pthread_cond_broadcast(&log->cond);
  pthread_mutex_unlock(&log->lock);
}

int tl_log_reader_acquire(tl_log *log, tl_log_reader **out, tl_err *err) {
  pthread_mutex_lock(&log->lock);
  tl_log_reader *r = log->pool;
  if (r) log->pool = r->next;
  tl_upcast_fn up = log->upcast;
  pthread_mutex_unlock(&log->lock);
  if (!r) {
    r = calloc(1, sizeof *r);
    if (!r) return tl_err_set(err, TL_E_NOMEM, "out of memory");
    r->be = log->be;
    int rc = log->be->reader_open(log->impl, &r->impl, err);
    if (rc != TL_OK) {
      free(r);
      return rc;
    }
  }
  r->next = NULL;
  r->upcast = up;
  r->log = log;
  *out = r;
  return TL_OK;
}

void tl_log_reader_release(tl_log *log, tl_log_reader *r) {
  if (!r) return;
  pthread_mutex_lock(&log->lock);
  r->next = log->pool;
  log->pool = r;
  pthread_mutex_unlock(&log->lock);
}

tl_log_reader *tl_log_writer_reader(tl_log *log) {
  return &log->writer_reader;
}

void tl_log_set_upcaster(tl_log *log, tl_upcast_fn fn) {
  pthread_mutex_lock(&log->lock);
  log->upcast = fn;
  log->writer_reader.upcast = fn;
  for (tl_log_reader *r = log->pool; r; r = r->next) r->upcast = fn;
  pthread_mutex_unlock(&log->lock);
}

typedef struct read_ctx {
  tl_upcast_fn up;      /* NULL: events as stored */
  int64_t max_position; /* events after it are not the reader's to see */
  tl_event_fn fn;
  void *arg;
  int oom;
  int past_max; /* the read stopped at max_position, not at the callback's word */
} read_ctx;

/* Hands the reader's callback the event in its latest schema, up to max_position. An event no
 * upcaster covers (a schema newer than this build) goes through as stored: its consumers decide
 * (a projection parks it, a decider refuses to load the aggregate). */
static int read_event(void *arg, const tl_event *ev) {
  read_ctx *c = arg;
  if (ev->position > c->max_position) {
    c->past_max = 1;
    return 1;
  }
  if (!c->up) return c->fn(c->arg, ev);
  char *data = NULL;
  int version = ev->schema_version;
  int rc = c->up(ev->type, ev->schema_version, ev->data, &data, &version);
  if (rc == TL_E_NOMEM) {
    c->oom = 1;
    return 1;
  }
  if (!data) return c->fn(c->arg, ev);
  tl_event lifted = *ev;
  lifted.data = data;
  lifted.schema_version = version;
  int r = c->fn(c->arg, &lifted);
  free(data);
  return r;
}

static int finish_read(const read_ctx *c, int rc, tl_err *err) {
  if (c->oom) return tl_err_set(err, TL_E_NOMEM, "out of memory while upcasting an event");
  return c->past_max ? TL_OK : rc;
}

int tl_log_read_stream(tl_log_reader *r, const char *stream, int64_t from_version, int limit,
                       tl_event_fn fn, void *arg, tl_err *err) {
  if (!r->upcast && !r->log)
    return r->be->read_stream(r->impl, stream, from_version, limit, fn, arg, err);
  /* A stream's positions grow with its versions: the first one past the head ends the read. */
  read_ctx c = {r->upcast, r->log ? tl_log_head(r->log) : INT64_MAX, fn, arg, 0, 0};
  int rc = r->be->read_stream(r->impl, stream, from_version, limit, read_event, &c, err);
  return finish_read(&c, rc, err);
}

int tl_log_read_all(tl_log_reader *r, int64_t from_position, int limit, tl_event_fn fn, void *arg,
                    tl_err *err) {
  if (r->log) { /* positions have no gaps: the head bounds the count */
    int64_t head = tl_log_head(r->log);
    if (from_position < 1) from_position = 1;
    if (from_position > head) return TL_OK;
    int64_t avail = head - from_position + 1;
    if (limit <= 0 || limit > avail) limit = avail > INT_MAX ? INT_MAX : (int)avail;
  }
  if (!r->upcast) return r->be->read_all(r->impl, from_position, limit, fn, arg, err);
  read_ctx c = {r->upcast, INT64_MAX, fn, arg, 0, 0};
  int rc = r->be->read_all(r->impl, from_position, limit, read_event, &c, err);
  return finish_read(&c, rc, err);
}

int tl_log_read_begin(tl_log_reader *r, tl_err *err) {
  return r->be->read_begin ? r->be->read_begin(r->impl, err) : TL_OK;
}

void tl_log_read_end(tl_log_reader *r) {
  if (r->be->read_end) r->be->read_end(r->impl);
}

int tl_log_idem_get(tl_log_reader *r, const char *key, tl_idem_record *rec, tl_err *err) {
  return r->be->idem_get(r->impl, key, rec, err);
}

int tl_log_idem_expire(tl_log *log, int64_t before_ms, tl_err *err) {
  return log->be->idem_expire(log->impl, before_ms, err);
}

int tl_log_snapshots_put(tl_log *log, const tl_snapshot_in *snaps, size_t n, tl_err *err) {
  if (n == 0) return TL_OK;
  if (tl_fp("log.snapshot"))
    return tl_err_set(err, TL_E_IO, "snapshot write failed (fail point log.snapshot)");
  return log->be->snapshots_put(log->impl, snaps, n, err);
}

int tl_log_snapshot_get(tl_log_reader *r, const char *stream, tl_snapshot *out, tl_err *err) {
  memset(out, 0, sizeof *out);
  return r->be->snapshot_get(r->impl, stream, out, err);
}
