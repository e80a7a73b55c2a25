/* tl_db.c: SQLite connection and statement-cache helpers. */
#include "util/tl_db.h"
#include "util/tl_vfs.h"

#include "util/tl_slog.h"
#include "util/tl_time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tl_db_fail(tl_db *d, int sqlite_rc, const char *what, tl_err *err) {
  int code = (sqlite_rc & 0xff) == SQLITE_CONSTRAINT ? TL_E_CONFLICT : TL_E_IO;
  return tl_err_set(err, code, "%s: %s (%d)", what, d && d->db ? sqlite3_errmsg(d->db) : "?",
                    sqlite_rc);
}

int tl_db_init_library(tl_err *err) {
  int rc = sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
  if (rc == SQLITE_OK) rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (rc == SQLITE_OK) rc = sqlite3_initialize();
  if (rc != SQLITE_OK)
    return tl_err_set(err, TL_E_IO, "cannot configure SQLite: %s", sqlite3_errstr(rc));
  return TL_OK;
}

int tl_db_open(tl_db **out, const char *path, int readonly, const char *synchronous, tl_err *err) {
  *out = NULL;
  tl_db *d = calloc(1, sizeof *d);
  if (!d) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  tl_vfs_install(); /* WAL frames in one write per commit (tl_vfs.h); else the default VFS */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (readonly ? 0 : SQLITE_OPEN_CREATE);
  int rc = sqlite3_open_v2(path, &d->db, flags, NULL);
  if (rc != SQLITE_OK) {
    tl_db_fail(d, rc, path, err);
    tl_db_close(d);
    return TL_E_IO;
  }
  sqlite3_extended_result_codes(d->db, 1);
  sqlite3_busy_timeout(d->db, 10000);
  char sql[256];
  snprintf(sql, sizeof sql,
           "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;"
           "PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;%s",
           synchronous ? synchronous : "FULL", readonly ? " PRAGMA query_only=1;" : "");
  rc = tl_db_exec(d, sql, err);
  if (rc != TL_OK) {
    tl_db_close(d);
    return rc;
  }
  *out = d;
  return TL_OK;
}

#define CKPT_SCHEMAS 16 /* databases of one connection whose WAL sizes the hook tells apart */

struct tl_db_ckpt {
  tl_db *own;          /* the checkpointer's connection (its thread, and tl_db_ckpt_exec) */
  pthread_mutex_t use; /* held while own is used */
  pthread_t thread;
  pthread_mutex_t lock; /* guards wanted and stopping */
  pthread_cond_t cond;
  int wanted, stopping;
  atomic_long done; /* checkpoints run by the thread */
  /* Committing thread only (the WAL hook), per database of the connection (main, or an
   * attached one, by schema name): the WAL size at the last commit, and the size at which the
   * thread is woken next, so that it copies ~TL_DB_CKPT_PAGES new frames per run (each run
   * sorts every frame of the WAL; waking it at each commit past the mark would). */
  struct {
    char name[32];
    int last_pages, next_wake;
  } wal[CKPT_SCHEMAS];
  int n_wal;
};

static void ckpt_stop(struct tl_db_ckpt *c) {
  pthread_mutex_lock(&c->lock);
  c->stopping = 1;
  pthread_cond_signal(&c->cond);
  pthread_mutex_unlock(&c->lock);
  pthread_join(c->thread, NULL);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  pthread_mutex_destroy(&c->use);
  tl_db_close(c->own);
  free(c);
}

void tl_db_close(tl_db *d) {
  if (!d) return;
  if (d->ckpt) {
    /* The hook points at d->ckpt: remove it before the thread and its struct go. */
    if (d->db) sqlite3_wal_hook(d->db, NULL, NULL);
    ckpt_stop(d->ckpt);
    d->ckpt = NULL;
  }
  if (d->deferred) d->deferred->destroy(d->deferred);
  for (int i = 0; i < d->n_cache; i++) sqlite3_finalize(d->cache[i].stmt);
  if (d->db) sqlite3_close_v2(d->db);
  free(d);
}

void tl_db_defer(tl_db *d, tl_db_deferred *deferred) {
  if (d->deferred) d->deferred->destroy(d->deferred);
  d->deferred = deferred;
}

int tl_db_flush(tl_db *d, tl_err *err) {
  tl_err local = {0};
  return d->deferred ? d->deferred->flush(d, d->deferred, err ? err : &local) : TL_OK;
}

void tl_db_discard(tl_db *d) {
  if (d->deferred) d->deferred->discard(d->deferred);
}

/* What a transaction-control statement means for deferred writes (tl_db_deferred). */
static int ends_kept(const char *sql) {
  return strncmp(sql, "COMMIT", 6) == 0 || strncmp(sql, "SAVEPOINT", 9) == 0 ||
         strncmp(sql, "RELEASE", 7) == 0;
}
static int ends_undone(const char *sql) {
  return strncmp(sql, "BEGIN", 5) == 0 || strncmp(sql, "ROLLBACK", 8) == 0;
}

int tl_db_exec(tl_db *d, const char *sql, tl_err *err) {
  char *msg = NULL;
  int rc = sqlite3_exec(d->db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    int code = (rc & 0xff) == SQLITE_CONSTRAINT ? TL_E_CONFLICT : TL_E_IO;
    tl_err_set(err, code, "%s (%d)", msg ? msg : sqlite3_errstr(rc), rc);
    sqlite3_free(msg);
    return code;
  }
  return TL_OK;
}

sqlite3_stmt *tl_db_stmt(tl_db *d, const char *sql, tl_err *err) {
  for (int i = 0; i < d->n_cache; i++) {
    if (d->cache[i].sql == sql) {
      sqlite3_stmt *st = d->cache[i].stmt;
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      return st;
    }
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
  if (rc != SQLITE_OK) {
    tl_db_fail(d, rc, "prepare", err);
    return NULL;
  }
  if (d->n_cache < TL_DB_STMT_CACHE) {
    d->cache[d->n_cache].sql = sql;
    d->cache[d->n_cache].stmt = st;
    d->n_cache++;
    return st;
  }
  /* The cache is sized for every statement twinlane has; running out is a bug. */
  sqlite3_finalize(st);
  tl_err_set(err, TL_E_NOMEM, "statement cache full");
  return NULL;
}

int tl_db_run(tl_db *d, const char *sql, tl_err *err) {
  tl_err local = {0};
  if (d->deferred) {
    if (ends_undone(sql)) {
      tl_db_discard(d);
    } else if (ends_kept(sql)) {
      int rc = tl_db_flush(d, err);
      if (rc != TL_OK) return rc;
    }
  }
  sqlite3_stmt *st = tl_db_stmt(d, sql, err ? err : &local);
  if (!st) return err ? err->code : local.code;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? TL_OK : tl_db_fail(d, rc, sql, err);
}

char *tl_db_column_strdup(sqlite3_stmt *st, int col) {
  const unsigned char *t = sqlite3_column_text(st, col);
  int n = sqlite3_column_bytes(st, col);
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  if (n) memcpy(s, t, (size_t)n);
  s[n] = '\0';
  return s;
}

json_t *tl_db_dead_letters(tl_db *d, sqlite3_stmt *st, const char *owner_key, tl_err *err) {
  json_t *arr = json_array();
  int step = SQLITE_NOMEM;
  while (arr && (step = sqlite3_step(st)) == SQLITE_ROW) {
    char first[TL_ISO_LEN], last[TL_ISO_LEN];
    tl_time_format(sqlite3_column_int64(st, 7), first);
    tl_time_format(sqlite3_column_int64(st, 8), last);
    json_array_append_new(
        arr, json_pack("{s:I, s:s, s:I, s:s, s:s, s:s, s:i, s:s, s:s}", "id",
                       (json_int_t)sqlite3_column_int64(st, 0), owner_key,
                       (const char *)sqlite3_column_text(st, 1), "position",
                       (json_int_t)sqlite3_column_int64(st, 2), "stream",
                       (const char *)sqlite3_column_text(st, 3), "type",
                       (const char *)sqlite3_column_text(st, 4), "error",
                       (const char *)sqlite3_column_text(st, 5), "attempts",
                       sqlite3_column_int(st, 6), "firstFailedAt", first, "lastFailedAt", last));
  }
  sqlite3_reset(st);
  if (step != SQLITE_DONE) {
    json_decref(arr);
    tl_db_fail(d, step, "read dead letters", err);
    return NULL;
  }
  return arr;
}

/* ---- background checkpoints ----------------------------------------------------------- */

static void *ckpt_main(void *arg) {
  struct tl_db_ckpt *c = arg;
  tl_thread_name("tl-checkpoint");
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (!c->wanted && !c->stopping) pthread_cond_wait(&c->cond, &c->lock);
    if (c->stopping) break;
    c->wanted = 0;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&c->use);
    /* NULL: every database of the connection (tl_db_ckpt_exec attaches them). */
    int rc = sqlite3_wal_checkpoint_v2(c->own->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    char msg[160] = "";
    if (rc != SQLITE_OK) snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(c->own->db));
    pthread_mutex_unlock(&c->use);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
      /* Nothing is lost: the frames stay in the WAL, and the next commit asks again. */
      char code[16];
      snprintf(code, sizeof code, "%d", rc);
      tl_slog(TL_SLOG_WARN, NULL, "background checkpoint failed", "error", msg, "code", code, NULL);
    }
    atomic_fetch_add_explicit(&c->done, 1, memory_order_relaxed);
    pthread_mutex_lock(&c->lock);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* SQLite's WAL hook: runs in the committing thread after each commit, with the WAL's size. */
static int ckpt_hook(void *arg, sqlite3 *db, const char *name, int pages) {
  struct tl_db_ckpt *c = arg;
  int k = 0;
  while (k < c->n_wal && strcmp(c->wal[k].name, name) != 0) k++;
  if (k == c->n_wal && k < CKPT_SCHEMAS && strlen(name) < sizeof c->wal[k].name) {
    tl_strcpy(c->wal[k].name, sizeof c->wal[k].name, name);
    c->wal[k].last_pages = 0;
    c->wal[k].next_wake = TL_DB_CKPT_PAGES;
    c->n_wal++;
  }
  if (k == c->n_wal) { /* more databases than counted apart: the backstop alone */
    if (pages >= TL_DB_CKPT_BACKSTOP_PAGES)
      (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
  }
  if (pages < c->wal[k].last_pages) c->wal[k].next_wake = TL_DB_CKPT_PAGES; /* WAL restarted */
  c->wal[k].last_pages = pages;
  if (pages >= TL_DB_CKPT_BACKSTOP_PAGES) {
    (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  } else if (pages >= c->wal[k].next_wake) {
    c->wal[k].next_wake = pages + TL_DB_CKPT_PAGES;
    pthread_mutex_lock(&c->lock);
    if (!c->wanted) {
      c->wanted = 1;
      pthread_cond_signal(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
  }
  return SQLITE_OK;
}

int tl_db_checkpoint_in_background(tl_db *d, const char *path, const char *synchronous,
                                   tl_err *err) {
  if (d->ckpt) return tl_err_set(err, TL_E_INVALID, "%s: checkpointer already running", path);
  struct tl_db_ckpt *c = calloc(1, sizeof *c);
  if (!c) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  int rc = tl_db_open(&c->own, path, 0, synchronous, err);
  if (rc != TL_OK) {
    free(c);
    return rc;
  }
  atomic_init(&c->done, 0);
  /* Never the last connection of its files (closed before d): a checkpoint on close would only
   * be one more on a file that d or a successor closes later, or that is being deleted. */
  sqlite3_db_config(c->own->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
  pthread_mutex_init(&c->use, NULL);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
  int prc = pthread_create(&c->thread, NULL, ckpt_main, c);
  if (prc != 0) {
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->use);
    tl_db_close(c->own);
    free(c);
    return tl_err_set(err, TL_E_IO, "cannot start the checkpointer of %s: %s", path, strerror(prc));
  }
  d->ckpt = c;
  sqlite3_wal_hook(d->db, ckpt_hook, c); /* replaces the automatic checkpoint */
  return TL_OK;
}

long tl_db_background_checkpoints(const tl_db *d) {
  return d->ckpt ? atomic_load_explicit(&d->ckpt->done, memory_order_relaxed) : 0;
}

int tl_db_ckpt_exec(tl_db *d, const char *sql, tl_err *err) {
  if (!d->ckpt) return tl_err_set(err, TL_E_INVALID, "no background checkpointer");
  pthread_mutex_lock(&d->ckpt->use);
  int rc = tl_db_exec(d->ckpt->own, sql, err);
  pthread_mutex_unlock(&d->ckpt->use);
  return rc;
}

void tl_db_reset_all(tl_db *d) {
  for (int i = 0; i < d->n_cache; i++) sqlite3_reset(d->cache[i].stmt);
}
