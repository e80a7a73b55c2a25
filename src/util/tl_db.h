/*
 * tl_db.h: small helpers over SQLite shared by the log backend and the read store: opening a
 * connection with twinlane's settings, running SQL scripts, and a per-connection cache of
 * prepared statements keyed by their (static) SQL text.
 */
#ifndef TL_DB_H
#define TL_DB_H

#include "util/tl_common.h"

#include <jansson.h>
#include <sqlite3.h>

/* Statements cached per connection (the projector's, the busiest, holds about 20). */
#define TL_DB_STMT_CACHE 64

struct tl_db_ckpt; /* tl_db.c: a connection's background checkpointer */

typedef struct tl_db {
  sqlite3 *db;
  struct tl_db_ckpt *ckpt; /* NULL unless tl_db_checkpoint_in_background */
  struct {
    const char *sql; /* static string: compared by pointer */
    sqlite3_stmt *stmt;
  } cache[TL_DB_STMT_CACHE];
  int n_cache;
  /* Told of every change tl_db_changed announces on this connection (a projection naming the
   * rows it wrote, so that cached answers built from them can be dropped); NULL: nobody
   * listens (scratch databases). */
  void (*on_change)(void *arg, int kind, const char *key);
  void *on_change_arg;
  /* Writes a module deferred within the open transaction (tl_db_defer), NULL: none. */
  struct tl_db_deferred *deferred;
  uint64_t tag; /* the owner's (the read store: the layout of files it attached); 0 at open */
} tl_db;

/* Writes kept in memory within a transaction and written just before it ends: changes that
 * commute (counters summed per row), so that a batch writes each row once. tl_db_run writes
 * them (flush) before it runs COMMIT, SAVEPOINT or RELEASE, and forgets them (discard) when
 * it runs BEGIN or ROLLBACK (also ROLLBACK TO: a SAVEPOINT flushed what came before it), so a
 * transaction or savepoint that is kept holds them and one that is undone does not. A module
 * that reads a deferred value itself calls tl_db_flush first. */
typedef struct tl_db_deferred {
  int (*flush)(tl_db *d, struct tl_db_deferred *self, tl_err *err);
  void (*discard)(struct tl_db_deferred *self);
  void (*destroy)(struct tl_db_deferred *self); /* at tl_db_close */
} tl_db_deferred;

/* Hands d the deferred writes of a module (one per connection; freed by tl_db_close). */
void tl_db_defer(tl_db *d, tl_db_deferred *deferred);
/* Writes what is deferred now (0 or a TL_E code; what could not be written is dropped and
 * the transaction must be rolled back). */
int tl_db_flush(tl_db *d, tl_err *err);
/* Forgets what is deferred now (the statements that deferred it are being rolled back). */
void tl_db_discard(tl_db *d);

/* Announces that a statement on d changed what key (of a kind the listener defines) names. */
static inline void tl_db_changed(tl_db *d, int kind, const char *key) {
  if (d->on_change && key) d->on_change(d->on_change_arg, kind, key);
}

/* Configures the SQLite library for twinlane before any connection exists: multi-thread mode
 * (each connection is used by one thread at a time, so SQLite's per-connection mutexes are
 * dead weight) and no global memory statistics (a global mutex on every allocation). Call once
 * at start-up; returns 0 or TL_E_IO. */
int tl_db_init_library(tl_err *err);

/* Opens path (creating it unless readonly) in WAL mode with the given synchronous level
 * ("FULL", "NORMAL") and a busy timeout; readonly connections set query_only. On failure
 * *out is NULL. Free with tl_db_close. */
int tl_db_open(tl_db **out, const char *path, int readonly, const char *synchronous, tl_err *err);
void tl_db_close(tl_db *d);

/* WAL pages at which a connection's background checkpointer is woken, and at which the
 * committing thread checkpoints by itself. The second is needed even when the background
 * thread keeps up: the WAL restarts from its beginning only after a checkpoint that copied
 * every frame, and under steady commits the background one always finds a few new frames at
 * its end. The committing thread's PASSIVE checkpoint copies just the frames the background
 * thread has not, so the next commit restarts the WAL: at most ~16 MiB of WAL. */
#define TL_DB_CKPT_PAGES 1000
#define TL_DB_CKPT_BACKSTOP_PAGES 4000

/* Moves the WAL checkpoints of d (a connection that commits) to a thread of their own with a
 * connection of their own to path, opened with the given synchronous level: the thread that
 * commits on d no longer copies WAL frames into the database file nor waits for that file's
 * fsync (SQLite's automatic checkpoint does both inside the COMMIT that crosses 1000 pages).
 * d's WAL hook wakes the thread once the WAL holds TL_DB_CKPT_PAGES pages; it runs a PASSIVE
 * checkpoint, which never blocks writers or readers and is as durable as SQLite's own. When
 * the WAL reaches TL_DB_CKPT_BACKSTOP_PAGES, the committing thread checkpoints (PASSIVE)
 * itself, which restarts the WAL. Other connections that commit to the same file should set wal_autocheckpoint=0: the
 * WAL they grow is counted by d's next commit. tl_db_close(d) stops the thread first. Call once
 * per connection; returns 0, TL_E_IO or TL_E_NOMEM (d is unchanged on failure). */
int tl_db_checkpoint_in_background(tl_db *d, const char *path, const char *synchronous,
                                   tl_err *err);

/* Checkpoints the background thread of d has run (0 without one). For tests and metrics. */
long tl_db_background_checkpoints(const tl_db *d);

/* Runs sql on the background checkpointer's own connection, between two of its checkpoints:
 * to ATTACH (or DETACH) there the databases d has attached, so that its checkpoints cover
 * them too (it checkpoints every database its connection has; d's WAL hook counts each one's
 * pages apart). TL_E_INVALID without a checkpointer. */
int tl_db_ckpt_exec(tl_db *d, const char *sql, tl_err *err);

/* Resets every cached statement of d: none then holds a database open (DETACH refuses while
 * one does). */
void tl_db_reset_all(tl_db *d);

/* Runs one or more statements without results. */
int tl_db_exec(tl_db *d, const char *sql, tl_err *err);
/* Runs one statement without results through the statement cache (sql: a string literal, as
 * for tl_db_stmt): for the BEGIN / COMMIT / SAVEPOINT of every batch, which tl_db_exec would
 * compile again each time (~10k instructions each). Writes or forgets deferred writes first
 * (tl_db_deferred). 0 or a TL_E code (err set when not NULL). */
int tl_db_run(tl_db *d, const char *sql, tl_err *err);

/* The cached prepared statement for sql (a string literal or other static string), reset and
 * with bindings cleared. NULL on a prepare error (err set). Not to be finalized by callers. */
sqlite3_stmt *tl_db_stmt(tl_db *d, const char *sql, tl_err *err);

/* Records sqlite3_errmsg into err with code TL_E_IO (or TL_E_CONFLICT for a constraint
 * violation); returns that code. */
int tl_db_fail(tl_db *d, int sqlite_rc, const char *what, tl_err *err);

/* Steps st (bound, selecting id, owner, position, stream, type, error, attempts,
 * first_failed_at, last_failed_at) to its end: the dead letters of a projection's or a process
 * manager's queue as a JSON array, the owner under `owner_key` ("projection",
 * "processManager"), times in ISO 8601. NULL (err set) on a storage error. st is reset. */
json_t *tl_db_dead_letters(tl_db *d, sqlite3_stmt *st, const char *owner_key, tl_err *err);

/* sqlite3_column_text copied into a new malloc'd string ("" for NULL); NULL if out of memory. */
char *tl_db_column_strdup(sqlite3_stmt *st, int col);

#endif
