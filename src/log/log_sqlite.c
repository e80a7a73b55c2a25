/*
 * log_sqlite.c: the embedded event-log backend: one SQLite database <dir>/events.db in WAL mode
 * with synchronous=NORMAL: a COMMIT writes the batch's WAL frames without an fsync, and sync
 * makes them durable with one fdatasync of the WAL file (a descriptor of our own: fsync applies
 * to the file, whichever descriptor wrote its pages), while the writer commits the next batch.
 * WAL mode stays consistent with NORMAL (frames carry checksums; SQLite fsyncs a restarted
 * WAL's header and the WAL before every checkpoint), so a crash keeps a prefix of the commits,
 * and every commit a sync covered.
 *
 * Schema: events(position INTEGER PRIMARY KEY, stream, version, type, schema_version, data,
 * metadata, recorded_at) with UNIQUE(stream, version); idempotency(key PRIMARY KEY, fingerprint,
 * status, body, position, created_at); snapshots(stream PRIMARY KEY, version, schema_version,
 * state), the latest snapshot of each stream. A batch is one BEGIN IMMEDIATE ... COMMIT.
 *
 * At open the WAL is fdatasynced before anything is read: after a crash of the process (kill -9,
 * an abort) the kernel may still hold frames of batches the syncer had not synced, which SQLite's
 * recovery reads back as committed; they become durable before anyone acts on them.
 *
 * Snapshots taken during a batch are written in the batch's own transaction, under a savepoint:
 * durable exactly when the events they describe are, and a failure to store them (fail point
 * log.snapshot) rolls back the savepoint only: the batch commits without them.
 */
#include "log/tl_log_int.h"
#include "util/tl_db.h"
#include "util/tl_failpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct sqlite_log {
  tl_db *w;    /* the writer's connection */
  int wal_fd;  /* <dir>/events.db-wal, for sync's fdatasync */
  char path[PATH_MAX];
} sqlite_log;

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS events("
    " position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,"
    " type TEXT NOT NULL, schema_version INTEGER NOT NULL, data TEXT NOT NULL,"
    " metadata TEXT NOT NULL, recorded_at INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS events_stream ON events(stream, version);"
    "CREATE TABLE IF NOT EXISTS idempotency("
    " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,"
    " body TEXT NOT NULL, position INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency(created_at);"
    "CREATE TABLE IF NOT EXISTS snapshots("
    " stream TEXT PRIMARY KEY, version INTEGER NOT NULL, schema_version INTEGER NOT NULL,"
    " state TEXT NOT NULL);";

static const char SQL_INSERT_EVENT[] =
    "INSERT INTO events(position, stream, version, type, schema_version, data, metadata,"
    " recorded_at) VALUES(?,?,?,?,?,?,?,?)";
static const char SQL_INSERT_IDEM[] =
    "INSERT INTO idempotency(key, fingerprint, status, body, position, created_at)"
    " VALUES(?,?,?,?,?,?)";
static const char SQL_READ_STREAM[] =
    "SELECT position, stream, version, type, schema_version, data, metadata, recorded_at"
    " FROM events WHERE stream = ? AND version >= ? ORDER BY version LIMIT ?";
static const char SQL_READ_ALL[] =
    "SELECT position, stream, version, type, schema_version, data, metadata, recorded_at"
    " FROM events WHERE position >= ? ORDER BY position LIMIT ?";
static const char SQL_IDEM_GET[] =
    "SELECT fingerprint, status, body, position FROM idempotency WHERE key = ?";
static const char SQL_IDEM_EXPIRE[] = "DELETE FROM idempotency WHERE created_at < ?";
static const char SQL_PUT_SNAPSHOT[] =
    "INSERT OR REPLACE INTO snapshots(stream, version, schema_version, state) VALUES(?,?,?,?)";
static const char SQL_GET_SNAPSHOT[] =
    "SELECT version, schema_version, state FROM snapshots WHERE stream = ?";

static int sq_open(void **impl, const tl_log_opts *opts, int64_t *head, tl_err *err) {
  *impl = NULL;
  sqlite_log *l = calloc(1, sizeof *l);
  if (!l) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  if (mkdir(opts->dir, 0755) != 0 && errno != EEXIST) {
    free(l);
    return tl_err_set(err, TL_E_IO, "cannot create %s: %s", opts->dir, strerror(errno));
  }
  int n = snprintf(l->path, sizeof l->path, "%s/events.db", opts->dir);
  if (n < 0 || (size_t)n >= sizeof l->path) {
    free(l);
    return tl_err_set(err, TL_E_INVALID, "data directory path too long");
  }
  l->wal_fd = -1;
  int rc = tl_db_open(&l->w, l->path, 0, "NORMAL", err);
  if (rc == TL_OK) rc = tl_db_exec(l->w, SCHEMA, err);
  if (rc == TL_OK) rc = tl_db_checkpoint_in_background(l->w, l->path, "NORMAL", err);
  if (rc == TL_OK) {
    /* The WAL exists from the first transaction on and is removed only when the last
     * connection closes: this descriptor stays valid while the log is open. */
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", l->path);
    l->wal_fd = open(wal, O_RDWR | O_CLOEXEC);
    if (l->wal_fd < 0) rc = tl_err_set(err, TL_E_IO, "cannot open %s: %s", wal, strerror(errno));
    else if (fdatasync(l->wal_fd) != 0) /* see the file comment */
      rc = tl_err_set(err, TL_E_IO, "fdatasync of %s: %s", wal, strerror(errno));
  }
  sqlite3_stmt *st = NULL;
  if (rc == TL_OK) {
    st = tl_db_stmt(l->w, "SELECT COALESCE(MAX(position), 0) FROM events", err);
    if (!st) rc = TL_E_IO;
  }
  if (rc == TL_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) *head = sqlite3_column_int64(st, 0);
    else rc = tl_db_fail(l->w, sqlite3_errcode(l->w->db), "read head", err);
    sqlite3_reset(st);
  }
  if (rc != TL_OK) {
    if (l->wal_fd >= 0) close(l->wal_fd);
    tl_db_close(l->w);
    free(l);
    return rc;
  }
  *impl = l;
  return TL_OK;
}

static void sq_close(void *impl) {
  sqlite_log *l = impl;
  if (!l) return;
  tl_db_close(l->w);
  if (l->wal_fd >= 0) close(l->wal_fd);
  free(l);
}

static int step_done(tl_db *d, sqlite3_stmt *st, const char *what, tl_err *err) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return tl_db_fail(d, rc, what, err);
  return TL_OK;
}

/* Upserts snapshots on d, inside the caller's transaction. */
static int put_snapshots(tl_db *d, const tl_snapshot_in *snaps, size_t n, tl_err *err) {
  int rc = TL_OK;
  for (size_t i = 0; i < n && rc == TL_OK; i++) {
    sqlite3_stmt *st = tl_db_stmt(d, SQL_PUT_SNAPSHOT, err);
    if (!st) return TL_E_IO;
    sqlite3_bind_text(st, 1, snaps[i].stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, snaps[i].version);
    sqlite3_bind_int(st, 3, snaps[i].schema_version);
    sqlite3_bind_text(st, 4, snaps[i].state, -1, SQLITE_STATIC);
    rc = step_done(d, st, "store snapshot", err);
  }
  return rc;
}

static int sq_append(void *impl, const tl_log_batch *b, tl_err *err) {
  sqlite_log *l = impl;
  tl_db *d = l->w;
  int rc = tl_db_run(d, "BEGIN IMMEDIATE", err);
  if (rc != TL_OK) return rc;
  for (size_t i = 0; i < b->n_events && rc == TL_OK; i++) {
    const tl_log_event_in *e = &b->events[i];
    sqlite3_stmt *st = tl_db_stmt(d, SQL_INSERT_EVENT, err);
    if (!st) {
      rc = TL_E_IO;
      break;
    }
    sqlite3_bind_int64(st, 1, e->position);
    sqlite3_bind_text(st, 2, e->stream, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, e->version);
    sqlite3_bind_text(st, 4, e->type, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, e->schema_version);
    sqlite3_bind_text(st, 6, e->data, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, e->metadata, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, e->recorded_ms ? e->recorded_ms : b->recorded_ms);
    rc = step_done(d, st, "append event", err);
  }
  for (size_t i = 0; i < b->n_idem && rc == TL_OK; i++) {
    const tl_log_idem_in *k = &b->idem[i];
    sqlite3_stmt *st = tl_db_stmt(d, SQL_INSERT_IDEM, err);
    if (!st) {
      rc = TL_E_IO;
      break;
    }
    sqlite3_bind_text(st, 1, k->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, k->status);
    sqlite3_bind_text(st, 4, k->body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, k->position);
    sqlite3_bind_int64(st, 6, b->recorded_ms);
    rc = step_done(d, st, "store idempotency key", err);
  }
  if (rc == TL_OK && b->n_snaps > 0) {
    /* Best effort: a snapshot that cannot be stored must not fail the batch. */
    tl_err serr = {0};
    int src = tl_db_run(d, "SAVEPOINT snaps", &serr);
    if (src == TL_OK) src = put_snapshots(d, b->snaps, b->n_snaps, &serr);
    if (src == TL_OK && tl_fp("log.snapshot"))
      src = tl_err_set(&serr, TL_E_IO, "snapshot write failed (fail point log.snapshot)");
    if (src != TL_OK) {
      if (b->snaps_failed) *b->snaps_failed = 1;
      if (tl_db_run(d, "ROLLBACK TO snaps", NULL) != TL_OK) rc = src; /* the batch is unsure */
    }
    if (rc == TL_OK) rc = tl_db_run(d, "RELEASE snaps", err);
  }
  /* log.commit stands for a COMMIT that fails after the rows were inserted. */
  if (rc == TL_OK && tl_fp("log.commit"))
    rc = tl_err_set(err, TL_E_IO, "commit failed (fail point log.commit)");
  if (rc == TL_OK) rc = tl_db_run(d, "COMMIT", err);
  if (rc != TL_OK) {
    /* Roll back whatever part was written; a failed COMMIT may already have rolled back. */
    if (!sqlite3_get_autocommit(d->db)) sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
  }
  return rc;
}

static int sq_sync(void *impl, tl_err *err) {
  sqlite_log *l = impl;
  struct stat st;
  if (fstat(l->wal_fd, &st) != 0 || st.st_nlink == 0)
    return tl_err_set(err, TL_E_IO, "the log's WAL file is gone");
  while (fdatasync(l->wal_fd) != 0) {
    if (errno != EINTR)
      return tl_err_set(err, TL_E_IO, "fdatasync of the log: %s", strerror(errno));
  }
  return TL_OK;
}

static int sq_idem_expire(void *impl, int64_t before_ms, tl_err *err) {
  sqlite_log *l = impl;
  sqlite3_stmt *st = tl_db_stmt(l->w, SQL_IDEM_EXPIRE, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_int64(st, 1, before_ms);
  return step_done(l->w, st, "expire idempotency keys", err);
}

static int sq_snapshots_put(void *impl, const tl_snapshot_in *snaps, size_t n, tl_err *err) {
  sqlite_log *l = impl;
  tl_db *d = l->w;
  int rc = tl_db_run(d, "BEGIN IMMEDIATE", err);
  if (rc == TL_OK) rc = put_snapshots(d, snaps, n, err);
  if (rc == TL_OK) rc = tl_db_run(d, "COMMIT", err);
  if (rc != TL_OK && !sqlite3_get_autocommit(d->db))
    sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* Runs the cached one-row look-up sql for key: TL_OK with the row at hand (the caller reads it
 * and resets the statement), TL_E_NOTFOUND, or TL_E_IO (both with the statement reset). */
static int lookup(tl_db *d, const char *sql, const char *key, const char *what, sqlite3_stmt **out,
                  tl_err *err) {
  sqlite3_stmt *st = *out = tl_db_stmt(d, sql, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return TL_OK;
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_E_NOTFOUND : tl_db_fail(d, rc, what, err);
}

static int sq_snapshot_get(void *rimpl, const char *stream, tl_snapshot *out, tl_err *err) {
  tl_db *d = rimpl;
  sqlite3_stmt *st;
  int rc = lookup(d, SQL_GET_SNAPSHOT, stream, "read snapshot", &st, err);
  if (rc != TL_OK) return rc;
  out->version = sqlite3_column_int64(st, 0);
  out->schema_version = sqlite3_column_int(st, 1);
  out->state = tl_db_column_strdup(st, 2);
  sqlite3_reset(st);
  if (!out->state) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  return TL_OK;
}

static int sq_reader_open(void *impl, void **rimpl, tl_err *err) {
  sqlite_log *l = impl;
  tl_db *d = NULL;
  int rc = tl_db_open(&d, l->path, 1, "NORMAL", err);
  *rimpl = d;
  return rc;
}

static void sq_reader_close(void *rimpl) {
  tl_db_close(rimpl);
}

static void *sq_writer_reader(void *impl) {
  return ((sqlite_log *)impl)->w;
}

/* Steps a prepared event query, calling fn for each row. */
static int emit_rows(tl_db *d, sqlite3_stmt *st, tl_event_fn fn, void *arg, tl_err *err) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    tl_event ev = {
        .position = sqlite3_column_int64(st, 0),
        .stream = (char *)sqlite3_column_text(st, 1),
        .version = sqlite3_column_int64(st, 2),
        .type = (char *)sqlite3_column_text(st, 3),
        .schema_version = sqlite3_column_int(st, 4),
        .data = (char *)sqlite3_column_text(st, 5),
        .metadata = (char *)sqlite3_column_text(st, 6),
        .recorded_ms = sqlite3_column_int64(st, 7),
    };
    int stop = fn(arg, &ev);
    if (stop) {
      sqlite3_reset(st);
      return stop;
    }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return tl_db_fail(d, rc, "read events", err);
  return TL_OK;
}

static int sq_read_stream(void *rimpl, const char *stream, int64_t from_version, int limit,
                          tl_event_fn fn, void *arg, tl_err *err) {
  tl_db *d = rimpl;
  sqlite3_stmt *st = tl_db_stmt(d, SQL_READ_STREAM, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, stream, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, from_version);
  sqlite3_bind_int64(st, 3, limit > 0 ? limit : -1);
  return emit_rows(d, st, fn, arg, err);
}

static int sq_read_all(void *rimpl, int64_t from_position, int limit, tl_event_fn fn, void *arg,
                       tl_err *err) {
  tl_db *d = rimpl;
  sqlite3_stmt *st = tl_db_stmt(d, SQL_READ_ALL, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_int64(st, 1, from_position);
  sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
  return emit_rows(d, st, fn, arg, err);
}

static int sq_read_begin(void *rimpl, tl_err *err) {
  tl_db *d = rimpl;
  /* A deferred BEGIN takes no lock: the first read (any table) starts the read transaction. */
  int rc = tl_db_run(d, "BEGIN", err);
  if (rc != TL_OK) return rc;
  sqlite3_stmt *st = tl_db_stmt(d, "SELECT 1 FROM events LIMIT 1", err);
  if (!st) {
    (void)tl_db_run(d, "ROLLBACK", NULL);
    return TL_E_IO;
  }
  int s = sqlite3_step(st);
  sqlite3_reset(st);
  if (s != SQLITE_ROW && s != SQLITE_DONE) {
    tl_db_fail(d, s, "begin read", err);
    (void)tl_db_run(d, "ROLLBACK", NULL);
    return TL_E_IO;
  }
  return TL_OK;
}

static void sq_read_end(void *rimpl) {
  tl_db *d = rimpl;
  if (!sqlite3_get_autocommit(d->db) && tl_db_run(d, "COMMIT", NULL) != TL_OK)
    (void)tl_db_run(d, "ROLLBACK", NULL);
}

static int sq_idem_get(void *rimpl, const char *key, tl_idem_record *rec, tl_err *err) {
  tl_db *d = rimpl;
  sqlite3_stmt *st;
  int rc = lookup(d, SQL_IDEM_GET, key, "read idempotency key", &st, err);
  if (rc != TL_OK) return rc;
  snprintf(rec->fingerprint, sizeof rec->fingerprint, "%s",
           (const char *)sqlite3_column_text(st, 0));
  rec->status = sqlite3_column_int(st, 1);
  rec->body = tl_db_column_strdup(st, 2);
  rec->position = sqlite3_column_int64(st, 3);
  sqlite3_reset(st);
  if (!rec->body) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  return TL_OK;
}

const tl_log_backend tl_log_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .append = sq_append,
    .sync = sq_sync,
    .idem_expire = sq_idem_expire,
    .reader_open = sq_reader_open,
    .reader_close = sq_reader_close,
    .writer_reader = sq_writer_reader,
    .read_stream = sq_read_stream,
    .read_all = sq_read_all,
    .idem_get = sq_idem_get,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
    .snapshots_put = sq_snapshots_put,
    .snapshot_get = sq_snapshot_get,
};
