/*
 * fold.c: applies the log to projections in a scratch database (reconciliation, rebuilds).
 */
#include "read/tl_read_int.h"

#include "util/tl_time.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMMIT_EVERY 10000
#define READ_CHUNK 1000

typedef struct fold_ctx {
  tl_fold *f;
  int64_t chunk_end; /* the last event of the chunk (transaction) being folded */
  /* A chunk is folded first without savepoints (fast: FTS5 flushes its pending terms at every
   * savepoint). A projection that refuses an event stops that pass (refused); the chunk is
   * rolled back and folded again with a savepoint per event and projection (careful), so that
   * only the refused applications are left out, as the projector does. */
  int careful;
  int refused;
  int rc;
  tl_err err;
  tl_jdoc doc; /* the data of the event being folded */
} fold_ctx;

static const char SQL_PARK[] = TL_DLQ_PARK_SQL("");

/* Projection i could not apply ev (why): counted, and parked when the copy goes live. */
static int refused(fold_ctx *c, int i, const tl_event *ev, const char *why) {
  tl_fold *f = c->f;
  f->errors[i]++;
  if (!f->park) return TL_OK;
  int64_t now = tl_now_ms();
  return tl_read_park(f->db, SQL_PARK, i, ev, why, 1, now, now, &c->err);
}

/* Projection i applies ev in a savepoint of its own: a refusal is rolled back (and parked). */
static int apply_careful(fold_ctx *c, int i, const tl_event *ev, const tl_jv *data) {
  tl_fold *f = c->f;
  tl_err why = {0};
  if (tl_db_run(f->db, "SAVEPOINT fold", &c->err) != TL_OK) return TL_E_IO;
  if (tl_projections[i]->apply(f->db, ev, data, &why) != TL_OK) {
    if (tl_db_run(f->db, "ROLLBACK TO fold", &c->err) != TL_OK) return TL_E_IO;
    if (refused(c, i, ev, why.msg[0] ? why.msg : "the projection refused the event") != TL_OK)
      return TL_E_IO;
  }
  return tl_db_run(f->db, "RELEASE fold", &c->err) != TL_OK ? TL_E_IO : TL_OK;
}

static int fold_event(void *arg, const tl_event *ev) {
  fold_ctx *c = arg;
  tl_fold *f = c->f;
  if (ev->position > c->chunk_end) return 1; /* the chunk is done */
  if (f->stop && atomic_load(f->stop)) {
    c->rc = tl_err_set(&c->err, TL_E_CLOSED, "stopped");
    return 1;
  }
  if (f->fp_point) tl_fp(f->fp_point); /* delays only: a fold has no failure to inject */
  const tl_jv *data = tl_read_parse_data(&c->doc, ev);
  for (int i = 0; i < tl_projections_count && c->rc == TL_OK && !c->refused; i++) {
    if (ev->position > f->upto[i]) continue;
    if (!data) {
      char why[64];
      snprintf(why, sizeof why, TL_UNREADABLE_DATA, (long long)ev->position);
      if (refused(c, i, ev, why) != TL_OK) c->rc = TL_E_IO;
      continue;
    }
    if (c->careful) {
      c->rc = apply_careful(c, i, ev, data);
    } else {
      tl_err why = {0};
      if (tl_projections[i]->apply(f->db, ev, data, &why) != TL_OK) c->refused = 1;
    }
  }
  if (c->rc != TL_OK || c->refused) return 1;
  f->position = ev->position;
  f->recorded_ms = ev->recorded_ms;
  if (f->progress) atomic_store(f->progress, ev->position);
  return 0;
}

/* Folds events up to c->chunk_end inside the open transaction; stops early on a refusal in
 * the fast pass (c->refused). */
static int fold_chunk(fold_ctx *c, tl_log_reader *reader, tl_err *err) {
  tl_fold *f = c->f;
  while (f->position < c->chunk_end) {
    int64_t before = f->position;
    int rc = tl_log_read_all(reader, f->position + 1, READ_CHUNK, fold_event, c, err);
    if (c->rc != TL_OK) {
      *err = c->err;
      return c->rc;
    }
    if (c->refused) return TL_OK;
    if (rc < 0) return rc;
    if (rc == TL_OK && f->position == before)
      return tl_err_set(err, TL_E_IO, "the log ends at %lld, before %lld", (long long)before,
                        (long long)c->chunk_end);
  }
  return TL_OK;
}

int tl_fold_create_tables(tl_db *db, const tl_projection_def *d, tl_err *err) {
  return tl_db_exec(db, d->fold_schema_sql ? d->fold_schema_sql : d->schema_sql, err);
}

int tl_fold_run(tl_log *log, tl_fold *f, tl_err *err) {
  int64_t upto = -1;
  for (int i = 0; i < tl_projections_count; i++)
    if (f->upto[i] > upto) upto = f->upto[i];
  if (f->position >= upto) return TL_OK;
  tl_log_reader *reader = NULL;
  int rc = tl_log_reader_acquire(log, &reader, err);
  if (rc != TL_OK) return rc;
  fold_ctx c = {.f = f};
  while (rc == TL_OK && f->position < upto) {
    /* One chunk: remembered so that a refusal can fold it again, carefully. */
    int64_t position = f->position, recorded_ms = f->recorded_ms;
    int64_t errors[TL_MAX_PROJECTIONS];
    memcpy(errors, f->errors, sizeof errors);
    c.chunk_end = upto - position > COMMIT_EVERY ? position + COMMIT_EVERY : upto;
    c.careful = c.refused = 0;
    rc = tl_db_run(f->db, "BEGIN", err);
    if (rc == TL_OK) rc = fold_chunk(&c, reader, err);
    if (rc == TL_OK && c.refused) {
      rc = tl_db_run(f->db, "ROLLBACK", err);
      f->position = position;
      f->recorded_ms = recorded_ms;
      memcpy(f->errors, errors, sizeof errors);
      c.careful = 1;
      c.refused = 0;
      if (rc == TL_OK) rc = tl_db_run(f->db, "BEGIN", err);
      if (rc == TL_OK) rc = fold_chunk(&c, reader, err);
    }
    if (rc == TL_OK) rc = tl_db_run(f->db, "COMMIT", err);
  }
  if (rc != TL_OK && !sqlite3_get_autocommit(f->db->db))
    sqlite3_exec(f->db->db, "ROLLBACK", NULL, NULL, NULL);
  tl_log_reader_release(log, reader);
  tl_jdoc_free(&c.doc);
  return rc;
}

int tl_fold_scratch_path(const tl_read *r, const char *what, char *out, size_t cap, tl_err *err) {
  static _Atomic unsigned counter;
  int n = snprintf(out, cap, "%s.%s-%ld-%u", r->path, what, (long)getpid(),
                   atomic_fetch_add(&counter, 1));
  if (n < 0 || (size_t)n >= cap)
    return tl_err_set(err, TL_E_INVALID, "data directory path too long");
  return TL_OK;
}

void tl_fold_remove(const char *path) {
  static const char *const SUFFIX[] = {"", "-wal", "-shm", "-journal"};
  char p[PATH_MAX + 16];
  for (size_t i = 0; i < sizeof SUFFIX / sizeof SUFFIX[0]; i++) {
    snprintf(p, sizeof p, "%s%s", path, SUFFIX[i]);
    unlink(p);
  }
}
