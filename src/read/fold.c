/*
 * fold.c: applies the log to projections in a scratch database (reconciliation, rebuilds).
 */
#include "read/tl_read_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COMMIT_EVERY 10000
#define READ_CHUNK 1000

typedef struct fold_ctx {
  tl_fold *f;
  int64_t upto; /* the largest of f->upto: later events end the fold */
  int64_t in_txn;
  int rc;
  tl_err err;
} fold_ctx;

static int fold_event(void *arg, const tl_event *ev) {
  fold_ctx *c = arg;
  tl_fold *f = c->f;
  if (ev->position > c->upto) return 1; /* done (the log grew meanwhile) */
  if (f->stop && atomic_load(f->stop)) {
    c->rc = tl_err_set(&c->err, TL_E_CLOSED, "stopped");
    return 1;
  }
  if (f->fp_point) tl_fp(f->fp_point); /* delays only: a fold has no failure to inject */
  json_t *data = json_loads(ev->data, 0, NULL);
  for (int i = 0; i < tl_projections_count; i++) {
    if (ev->position > f->upto[i]) continue;
    if (!data) {
      f->errors[i]++;
      continue;
    }
    tl_err why = {0};
    if (tl_db_exec(f->db, "SAVEPOINT fold", &c->err) != TL_OK) {
      c->rc = TL_E_IO;
      break;
    }
    if (tl_projections[i]->apply(f->db, ev, data, &why) != TL_OK) {
      f->errors[i]++;
      if (tl_db_exec(f->db, "ROLLBACK TO fold", &c->err) != TL_OK) {
        c->rc = TL_E_IO;
        break;
      }
    }
    if (tl_db_exec(f->db, "RELEASE fold", &c->err) != TL_OK) {
      c->rc = TL_E_IO;
      break;
    }
  }
  json_decref(data);
  if (c->rc != TL_OK) return 1;
  f->position = ev->position;
  f->recorded_ms = ev->recorded_ms;
  if (f->progress) atomic_store(f->progress, ev->position);
  if (++c->in_txn >= COMMIT_EVERY) {
    c->in_txn = 0;
    if (tl_db_exec(f->db, "COMMIT; BEGIN", &c->err) != TL_OK) {
      c->rc = TL_E_IO;
      return 1;
    }
  }
  return 0;
}

int tl_fold_run(tl_log *log, tl_fold *f, tl_err *err) {
  int64_t upto = -1;
  for (int i = 0; i < tl_projections_count; i++)
    if (f->upto[i] > upto) upto = f->upto[i];
  if (f->position >= upto) return TL_OK;
  tl_log_reader *reader = NULL;
  int rc = tl_log_reader_acquire(log, &reader, err);
  if (rc != TL_OK) return rc;
  fold_ctx c = {.f = f, .upto = upto};
  rc = tl_db_exec(f->db, "BEGIN", err);
  while (rc == TL_OK && f->position < upto) {
    int64_t before = f->position;
    rc = tl_log_read_all(reader, f->position + 1, READ_CHUNK, fold_event, &c, err);
    if (c.rc != TL_OK) {
      rc = c.rc;
      *err = c.err;
    } else if (rc == 1) {
      rc = TL_OK; /* reached upto */
    } else if (rc == TL_OK && f->position == before) {
      rc = tl_err_set(err, TL_E_IO, "the log ends at %lld, before %lld", (long long)before,
                      (long long)upto);
    }
  }
  if (rc == TL_OK)
    rc = tl_db_exec(f->db, "COMMIT", err);
  else if (!sqlite3_get_autocommit(f->db->db))
    sqlite3_exec(f->db->db, "ROLLBACK", NULL, NULL, NULL);
  tl_log_reader_release(log, reader);
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
