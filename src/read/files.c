/*
 * files.c: the read store's files and the connections that read and write them.
 *
 * Each projection keeps its tables, its checkpoint and its dead letters in a database file of
 * its own, "read.<projection>.<generation>.db" in the data directory, which every connection
 * of the store attaches under the projection's name (its main database is an empty in-memory
 * one). A projection's rows and the checkpoint that says how far they go are therefore always
 * committed together; the projector's transaction spans the files, and after a crash each
 * projection goes on from its own checkpoint (SQLite commits attached WAL databases one by
 * one, so a batch may survive in one file and not in another: each is consistent in itself).
 *
 * A rebuild (rebuild.c) folds its new copy into a scratch file and installs it whole: the file
 * is renamed to the next generation and attached in place of the live one (tl_files_install).
 * No connection ever has a renamed or deleted file open under its new name: the retired
 * generation is deleted once no connection has it attached any more (pool connections that
 * still have it are closed as they come back), and at start-up every generation but the
 * newest is deleted. The rename is the point of no return: a crash before it leaves the old
 * generation live (and a scratch file, removed at start-up), after it the new one.
 */
#include "read/tl_read_int.h"

#include "util/tl_slog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_CACHE_KIB 8192 /* page cache per attached file and connection (SQLite's unit) */

static const char *const SIDE_FILES[] = {"", "-wal", "-shm", "-journal"};

/* Removes a database file and the files SQLite keeps beside it. */
static void remove_db(const char *path) {
  char p[PATH_MAX + 16];
  for (size_t i = 0; i < sizeof SIDE_FILES / sizeof SIDE_FILES[0]; i++) {
    int n = snprintf(p, sizeof p, "%s%s", path, SIDE_FILES[i]);
    if (n > 0 && (size_t)n < sizeof p) unlink(p);
  }
}

/* The generation of file name `name` if it is one of projection `proj`'s databases
 * ("read.<proj>.<gen>.db", or one of its side files when side is set), else -1. */
static int64_t generation_of(const char *name, const char *proj, int side) {
  size_t pl = strlen(proj);
  if (strncmp(name, "read.", 5) != 0 || strncmp(name + 5, proj, pl) != 0 || name[5 + pl] != '.')
    return -1;
  const char *p = name + 5 + pl + 1;
  int64_t gen = 0;
  const char *digits = p;
  while (*p >= '0' && *p <= '9' && gen < INT64_MAX / 10) gen = gen * 10 + (*p++ - '0');
  if (p == digits || strncmp(p, ".db", 3) != 0) return -1;
  p += 3;
  if (*p == '\0') return gen;
  if (!side) return -1;
  for (size_t i = 1; i < sizeof SIDE_FILES / sizeof SIDE_FILES[0]; i++)
    if (strcmp(p, SIDE_FILES[i]) == 0) return gen;
  return -1;
}

static int file_path(const tl_read *r, int proj, int64_t gen, char *out, size_t cap, tl_err *err) {
  int n =
      snprintf(out, cap, "%s/read.%s.%lld.db", r->dir, tl_projections[proj]->name, (long long)gen);
  if (n < 0 || (size_t)n >= cap)
    return tl_err_set(err, TL_E_INVALID, "data directory path too long");
  return TL_OK;
}

/* Makes a rename in the data directory durable. */
static int sync_dir(const char *dir, tl_err *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return tl_err_set(err, TL_E_IO, "open %s: %s", dir, strerror(errno));
  int rc = fsync(fd) == 0 ? TL_OK : tl_err_set(err, TL_E_IO, "fsync %s: %s", dir, strerror(errno));
  close(fd);
  return rc;
}

int tl_files_sync(const char *path, tl_err *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return tl_err_set(err, TL_E_IO, "open %s: %s", path, strerror(errno));
  int rc = fsync(fd) == 0 ? TL_OK : tl_err_set(err, TL_E_IO, "fsync %s: %s", path, strerror(errno));
  close(fd);
  return rc;
}

/* Picks each projection's newest generation and deletes the older ones. */
static int find_generations(tl_read *r, tl_err *err) {
  DIR *d = opendir(r->dir);
  if (!d) return tl_err_set(err, TL_E_IO, "cannot list %s: %s", r->dir, strerror(errno));
  struct dirent *e;
  for (int i = 0; i < tl_projections_count; i++) r->file[i].gen = 0;
  while ((e = readdir(d)) != NULL)
    for (int i = 0; i < tl_projections_count; i++) {
      int64_t g = generation_of(e->d_name, tl_projections[i]->name, 0);
      if (g > r->file[i].gen) r->file[i].gen = g;
    }
  rewinddir(d);
  char path[PATH_MAX + 64];
  while ((e = readdir(d)) != NULL)
    for (int i = 0; i < tl_projections_count; i++) {
      int64_t g = generation_of(e->d_name, tl_projections[i]->name, 1);
      if (g < 0 || g == r->file[i].gen) continue;
      int n = snprintf(path, sizeof path, "%s/%s", r->dir, e->d_name);
      if (n > 0 && (size_t)n < sizeof path && unlink(path) == 0)
        tl_slog(TL_SLOG_INFO, NULL, "removed a retired read-model file", "file", path, NULL);
    }
  closedir(d);
  int rc = TL_OK;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    if (r->file[i].gen == 0) r->file[i].gen = 1; /* none yet: created empty */
    rc = file_path(r, i, r->file[i].gen, r->file[i].path, sizeof r->file[i].path, err);
  }
  return rc;
}

/* Before the files of each projection, every read model was in one read.db: it goes, and the
 * projections start again from the beginning of the log. */
static void remove_single_file_layout(const tl_read *r) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/read.db", r->dir);
  int found = access(path, F_OK) == 0;
  remove_db(path); /* and its side files, also those a crash left after it went */
  if (found)
    tl_slog(TL_SLOG_WARN, NULL,
            "read models are kept in one file per projection now: removed read.db, the "
            "projections are folded again from the log",
            "file", path, NULL);
}

/* f with the schema name quoted in its one "%w". */
static char *fmt(const char *f, const char *schema) {
  return sqlite3_mprintf(f, schema);
}

/* The statements on projection i's file, as attached under its name. */
static int build_sql(tl_read *r, tl_err *err) {
  char *all = NULL, *list = NULL;
  for (int i = 0; i < tl_projections_count; i++) {
    tl_proj_file *f = &r->file[i];
    const char *s = tl_projections[i]->name;
    f->cp_get =
        fmt("SELECT version, position, recorded_at FROM \"%w\".rm_checkpoints"
            " WHERE name = ?",
            s);
    f->cp_put =
        fmt("INSERT INTO \"%w\".rm_checkpoints(name, version, position, recorded_at)"
            " VALUES(?,?,?,?) ON CONFLICT(name) DO UPDATE SET version = excluded.version,"
            " position = excluded.position, recorded_at = excluded.recorded_at",
            s);
    f->dlq_park = fmt(TL_DLQ_PARK_SQL("\"%w\"."), s);
    f->dlq_depth = fmt("SELECT COUNT(*) FROM \"%w\".rm_dlq", s);
    f->dlq_one = fmt("SELECT id, projection, position FROM \"%w\".rm_dlq WHERE id = ?", s);
    f->dlq_del = fmt("DELETE FROM \"%w\".rm_dlq WHERE id = ?", s);
    f->dlq_failed =
        fmt("UPDATE \"%w\".rm_dlq SET attempts = attempts + 1, last_failed_at = ?,"
            " error = ? WHERE id = ?",
            s);
    char *a = sqlite3_mprintf("%z%sSELECT id, projection, position FROM \"%w\".rm_dlq", all,
                              i ? " UNION ALL " : "", s);
    char *l = sqlite3_mprintf("%z%sSELECT * FROM \"%w\".rm_dlq", list, i ? " UNION ALL " : "", s);
    all = a;
    list = l;
    if (!f->cp_get || !f->cp_put || !f->dlq_park || !f->dlq_depth || !f->dlq_one || !f->dlq_del ||
        !f->dlq_failed || !all || !list)
      break;
  }
  r->sql_dlq_all = all ? sqlite3_mprintf("%z ORDER BY id LIMIT %d", all, TL_DLQ_OP_ROWS) : NULL;
  r->sql_dlq_list = list ? sqlite3_mprintf(
                               "SELECT id, projection, position, stream, type, error, attempts,"
                               " first_failed_at, last_failed_at FROM (%z)"
                               " WHERE ?1 IS NULL OR projection = ?1 ORDER BY id LIMIT ?2",
                               list)
                         : NULL;
  for (int i = 0; i < tl_projections_count; i++) {
    tl_proj_file *f = &r->file[i];
    if (!f->cp_get || !f->cp_put || !f->dlq_park || !f->dlq_depth || !f->dlq_one || !f->dlq_del ||
        !f->dlq_failed)
      return tl_err_set(err, TL_E_NOMEM, "out of memory");
  }
  return r->sql_dlq_all && r->sql_dlq_list ? TL_OK : tl_err_set(err, TL_E_NOMEM, "out of memory");
}

int tl_files_open(tl_read *r, tl_err *err) {
  remove_single_file_layout(r);
  int rc = find_generations(r, err);
  if (rc == TL_OK) rc = build_sql(r, err);
  return rc;
}

void tl_files_free(tl_read *r) {
  for (int i = 0; i < TL_MAX_PROJECTIONS; i++) {
    tl_proj_file *f = &r->file[i];
    char **sql[] = {&f->cp_get,  &f->cp_put,  &f->dlq_park,  &f->dlq_depth,
                    &f->dlq_one, &f->dlq_del, &f->dlq_failed};
    for (size_t k = 0; k < sizeof sql / sizeof sql[0]; k++) {
      sqlite3_free(*sql[k]);
      *sql[k] = NULL;
    }
  }
  sqlite3_free(r->sql_dlq_all);
  sqlite3_free(r->sql_dlq_list);
  r->sql_dlq_all = r->sql_dlq_list = NULL;
}

/* The SQL that attaches path as schema (and, for a connection that writes, puts it in WAL
 * mode); sqlite3_free it. */
static char *attach_sql(const char *schema, const char *path, int writes) {
  char *sql = sqlite3_mprintf(
      "ATTACH DATABASE %Q AS \"%w\"; PRAGMA \"%w\".synchronous=NORMAL;"
      " PRAGMA \"%w\".cache_size=-%d;",
      path, schema, schema, schema, FILE_CACHE_KIB);
  if (sql && writes) sql = sqlite3_mprintf("%z PRAGMA \"%w\".journal_mode=WAL;", sql, schema);
  return sql;
}

static int exec_sql(tl_db *db, char *sql, int on_ckpt, tl_err *err) {
  if (!sql) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  int rc = on_ckpt ? tl_db_ckpt_exec(db, sql, err) : tl_db_exec(db, sql, err);
  sqlite3_free(sql);
  return rc;
}

static void count_out(tl_read *r, const tl_db *db);

/* Attaches the live file of every projection to db, tagged with the layout they belong to;
 * on_ckpt: to db's checkpointer's connection instead. A query connection (query) is counted
 * out as it copies the paths, so that no file it is about to attach is deleted meanwhile; on
 * failure it is given back with tl_read_conn_drop. */
static int attach_all(tl_read *r, tl_db *db, int writes, int on_ckpt, int query, tl_err *err) {
  char(*paths)[PATH_MAX] = malloc(sizeof(char[PATH_MAX]) * (size_t)tl_projections_count);
  pthread_mutex_lock(&r->lock);
  if (!on_ckpt) db->tag = r->layout;
  for (int i = 0; paths && i < tl_projections_count; i++)
    memcpy(paths[i], r->file[i].path, PATH_MAX);
  if (query) count_out(r, db);
  pthread_mutex_unlock(&r->lock);
  if (!paths) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  int rc = TL_OK;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++)
    rc = exec_sql(db, attach_sql(tl_projections[i]->name, paths[i], writes), on_ckpt, err);
  free(paths);
  return rc;
}

int tl_files_setup(tl_read *r, int proj, int *stored, tl_err *err) {
  tl_db *db = NULL;
  int rc = tl_db_open(&db, r->file[proj].path, 0, "NORMAL", err);
  if (rc != TL_OK) return rc;
  *stored = tl_projection_stored_version(db, tl_projections[proj]->name);
  if (*stored > 0 && *stored != tl_projections[proj]->version) {
    /* A new version: the old copy keeps answering while the new one is built beside it
     * (rebuild.c); the projector leaves it alone meanwhile. */
    rc = tl_db_exec(db, TL_READ_STORE_SCHEMA, err);
  } else {
    rc = tl_projection_setup(db, tl_projections[proj], err);
  }
  tl_db_close(db);
  return rc;
}

int tl_files_connect_writer(tl_read *r, tl_err *err) {
  int rc = tl_db_open(&r->w, ":memory:", 0, "NORMAL", err);
  /* Each projection's file, its page cache, and the reconciliation's scratch database. */
  if (rc == TL_OK && tl_projections_count + 1 > sqlite3_limit(r->w->db, SQLITE_LIMIT_ATTACHED, -1))
    rc = tl_err_set(err, TL_E_INVALID, "more projections than SQLite attaches");
  if (rc == TL_OK) rc = tl_db_checkpoint_in_background(r->w, ":memory:", "NORMAL", err);
  if (rc == TL_OK) rc = attach_all(r, r->w, 1, 0, 0, err);
  if (rc == TL_OK) rc = attach_all(r, r->w, 0, 1, 0, err);
  return rc;
}

/* ---- the pool of query connections -------------------------------------------------------- */

/* Deletes the retired generations once no connection has one attached (lock held). The paths
 * are moved out so that the files are deleted outside the lock. */
static int take_retired(tl_read *r, char (*out)[PATH_MAX]) {
  if (r->stale_out > 0) return 0;
  int n = r->n_retired;
  for (int k = 0; k < n; k++) memcpy(out[k], r->retired[k], PATH_MAX);
  r->n_retired = 0;
  return n;
}

typedef struct retired_list {
  int n;
  char paths[TL_RETIRED_MAX][PATH_MAX];
} retired_list;

static void *remove_retired_main(void *arg) {
  retired_list *l = arg;
  tl_thread_name("tl-unlink");
  for (int k = 0; k < l->n; k++) {
    remove_db(l->paths[k]);
    tl_slog(TL_SLOG_INFO, NULL, "removed a retired read-model file", "file", l->paths[k], NULL);
  }
  free(l);
  return NULL;
}

/* Deletes the n files at paths on a thread of its own: unlinking a big file takes a while
 * (200 MB: ~0.1 s), which neither the projector nor a query should wait for. A file a stop
 * cuts short is deleted at the next start. */
static void remove_retired(char (*paths)[PATH_MAX], int n) {
  if (n == 0) return;
  retired_list *l = malloc(sizeof *l);
  if (l) {
    l->n = n;
    memcpy(l->paths, paths, sizeof(char[PATH_MAX]) * (size_t)n);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, remove_retired_main, l);
    pthread_attr_destroy(&a);
    if (rc == 0) return;
    free(l);
  }
  for (int k = 0; k < n; k++) remove_db(paths[k]); /* no thread: here, then */
}

/* Counts a connection out (lock held): attached to the live files, or to a retired one. */
static void count_out(tl_read *r, const tl_db *db) {
  if (db->tag == r->layout)
    r->live_out++;
  else
    r->stale_out++;
}

int tl_read_conn_acquire(tl_read *r, tl_db **out, tl_err *err) {
  pthread_mutex_lock(&r->lock);
  tl_conn_node *c = r->pool; /* pooled connections have the live files attached */
  if (c) {
    r->pool = c->next;
    count_out(r, c->db);
  }
  pthread_mutex_unlock(&r->lock);
  if (c) {
    *out = c->db;
    free(c);
    return TL_OK;
  }
  int rc = tl_db_open(out, ":memory:", 1, "NORMAL", err);
  if (rc != TL_OK) return rc;
  /* Whoever closes a replaced file last would copy its WAL into it first (SQLite's
   * checkpoint on close); the file is deleted anyway. The projector's connection, closed
   * last at shutdown, checkpoints the live files. */
  sqlite3_db_config((*out)->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
  rc = attach_all(r, *out, 0, 0, 1, err);
  if (rc != TL_OK) {
    tl_read_conn_drop(r, *out);
    *out = NULL;
  }
  return rc;
}

/* Counts db back in; keep: into the pool, unless it has a replaced file attached. */
static void give_back(tl_read *r, tl_db *db, int keep) {
  if (!db) return;
  tl_conn_node *c = keep ? malloc(sizeof *c) : NULL;
  char retired[TL_RETIRED_MAX][PATH_MAX];
  int n_retired = 0;
  pthread_mutex_lock(&r->lock);
  int stale = db->tag != r->layout;
  if (stale) {
    r->stale_out--;
    n_retired = take_retired(r, retired);
  } else {
    r->live_out--;
    if (c) {
      c->db = db;
      c->next = r->pool;
      r->pool = c;
    }
  }
  pthread_mutex_unlock(&r->lock);
  if (stale || !c) { /* a retired generation attached (or not kept): closed */
    free(c);
    tl_db_close(db);
  }
  remove_retired(retired, n_retired);
}

void tl_read_conn_release(tl_read *r, tl_db *db) {
  give_back(r, db, 1);
}

void tl_read_conn_drop(tl_read *r, tl_db *db) {
  give_back(r, db, 0);
}

/* Closes the connections of a list taken out of the pool. */
static void close_nodes(tl_conn_node *c) {
  while (c) {
    tl_conn_node *next = c->next;
    tl_db_close(c->db);
    free(c);
    c = next;
  }
}

void tl_files_close_pool(tl_read *r) {
  pthread_mutex_lock(&r->lock);
  tl_conn_node *c = r->pool;
  r->pool = NULL;
  pthread_mutex_unlock(&r->lock);
  close_nodes(c);
}

/* ---- installing a rebuilt copy ----------------------------------------------------------- */

/* Attaches path as projection proj's schema on the projector's connection and on its
 * checkpointer's, in place of what is attached there now. */
static int reattach(tl_read *r, int proj, const char *path, tl_err *err) {
  const char *s = tl_projections[proj]->name;
  tl_err ignored = {0};
  tl_db_reset_all(r->w); /* DETACH refuses while a statement holds the file */
  /* A DETACH that fails leaves the schema attached: the ATTACH then fails too. Closing the
   * replaced file last, this connection would checkpoint it first (its WAL copied into a
   * file about to go, on the projector's thread): not at this DETACH. */
  sqlite3_db_config(r->w->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
  exec_sql(r->w, sqlite3_mprintf("DETACH DATABASE \"%w\"", s), 0, &ignored);
  sqlite3_db_config(r->w->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, NULL);
  int rc = tl_fp("read.attach")
               ? tl_err_set(err, TL_E_IO, "attach %s failed (fail point read.attach)", path)
               : exec_sql(r->w, attach_sql(s, path, 1), 0, err);
  exec_sql(r->w, sqlite3_mprintf("DETACH DATABASE \"%w\"", s), 1, &ignored);
  tl_err ck = {0};
  if (exec_sql(r->w, attach_sql(s, path, 0), 1, &ck) != TL_OK) /* only the backstop then */
    tl_slog(TL_SLOG_WARN, NULL, "the checkpointer cannot attach a read-model file", "file", path,
            "error", ck.msg, NULL);
  return rc;
}

int tl_files_install(tl_read *r, int proj, const char *built, tl_err *err) {
  char next[PATH_MAX];
  int64_t gen = r->file[proj].gen + 1;
  int rc = file_path(r, proj, gen, next, sizeof next, err);
  if (rc == TL_OK) rc = tl_files_sync(built, err);
  if (rc == TL_OK && rename(built, next) != 0)
    rc = tl_err_set(err, TL_E_IO, "rename %s: %s", built, strerror(errno));
  if (rc != TL_OK) return rc;
  /* From here on the new generation is the projection's, also after a crash. */
  rc = sync_dir(r->dir, err);
  if (rc == TL_OK) rc = reattach(r, proj, next, err);
  if (rc != TL_OK) { /* back to the old copy: the new file goes */
    tl_err again = {0};
    if (reattach(r, proj, r->file[proj].path, &again) != TL_OK) {
      r->detached = true;
      tl_slog(TL_SLOG_ERROR, NULL,
              "cannot attach a projection's file again: the projector tries again before its "
              "next batch",
              "file", r->file[proj].path, "error", again.msg, NULL);
    }
    tl_err ignored = {0};
    remove_db(next);
    sync_dir(r->dir, &ignored);
    return rc;
  }
  char retired[TL_RETIRED_MAX][PATH_MAX];
  int n_retired = 0;
  pthread_mutex_lock(&r->lock);
  if (r->n_retired < TL_RETIRED_MAX) /* else left for the next start-up to delete */
    memcpy(r->retired[r->n_retired++], r->file[proj].path, PATH_MAX);
  memcpy(r->file[proj].path, next, PATH_MAX);
  r->file[proj].gen = gen;
  r->layout++;
  /* Every connection out now has the old file attached; the idle ones are closed. */
  r->stale_out += r->live_out;
  r->live_out = 0;
  tl_conn_node *idle = r->pool;
  r->pool = NULL;
  n_retired = take_retired(r, retired);
  pthread_mutex_unlock(&r->lock);
  close_nodes(idle);
  remove_retired(retired, n_retired);
  return TL_OK;
}

int tl_files_heal(tl_read *r) {
  int healed = 0, missing = 0;
  for (int i = 0; i < tl_projections_count; i++) {
    const char *name = tl_projections[i]->name;
    if (sqlite3_db_filename(r->w->db, name)) continue; /* attached */
    tl_err err = {0};
    if (reattach(r, i, r->file[i].path, &err) == TL_OK) {
      healed++;
      tl_slog(TL_SLOG_WARN, NULL, "a projection's file was attached again", "projection", name,
              "file", r->file[i].path, NULL);
    } else {
      missing++;
      tl_slog(TL_SLOG_ERROR, NULL, "cannot attach a projection's file; trying again later",
              "projection", name, "file", r->file[i].path, "error", err.msg, NULL);
    }
  }
  r->detached = missing > 0;
  return healed;
}
