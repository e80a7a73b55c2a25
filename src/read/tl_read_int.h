/*
 * tl_read_int.h: the read store's insides, shared by tl_read.c (store, projector, waits, DLQ),
 * fold.c, reconcile.c and rebuild.c. Not for other modules.
 */
#ifndef TL_READ_INT_H
#define TL_READ_INT_H

#include "read/search_groups.h"
#include "read/tl_read.h"
#include "read/view_cache.h"
#include "util/tl_failpoint.h"
#include "util/tl_handoff.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#define TL_MAX_PROJECTIONS 16
#define TL_TOUCHED_MAX 4096 /* changes a batch may announce before every cached answer is dropped \
                             */
#define TL_DLQ_OP_ROWS 10000  /* dead letters one retry-all handles */
#define TL_RETIRED_MAX 8      /* replaced files waiting for their last connection (files.c) */
#define TL_TOUCHED_KEY_MAX 64 /* bytes of an announced key kept; longer: every answer is dropped \
                               */

typedef struct tl_waiter {
  int proj; /* projection index, -1: all */
  int64_t min_position;
  int64_t deadline_ns; /* tl_mono_ns */
  tl_read_wait_fn fn;
  void *arg;
  struct tl_waiter *next;
} tl_waiter;

typedef struct tl_conn_node {
  tl_db *db;
  struct tl_conn_node *next;
} tl_conn_node;

/* A projection's failure on one event (projector thread only). */
typedef struct tl_proj_fail {
  int64_t position; /* the failing event; 0: none */
  int attempts;
  int64_t first_ms, last_ms; /* wall clock */
  int64_t retry_at_ns;       /* tl_mono_ns */
  char error[sizeof(((tl_err *)0)->msg)];
} tl_proj_fail;

/* Work handed to the projector thread (DLQ operations, a rebuild's swap): it runs between two
 * batches, with the projector's connection and log reader, so it never races with applying. */
typedef struct tl_proj_task {
  tl_job job; /* first: the handoff's part */
  int (*run)(tl_read *r, tl_log_reader *reader, void *arg, tl_err *err);
  void *arg;
} tl_proj_task;

/* A projection's database file (files.c) and the statements on it, as attached under the
 * projection's name. */
typedef struct tl_proj_file {
  char path[PATH_MAX]; /* the live generation (guarded by the store's lock) */
  int64_t gen;         /* projector thread (and start-up) */
  char *cp_get, *cp_put, *dlq_park, *dlq_depth, *dlq_one, *dlq_del, *dlq_failed;
} tl_proj_file;

struct tl_read {
  tl_log *log;
  tl_read_opts opts;
  char dir[PATH_MAX];  /* the data directory */
  char path[PATH_MAX]; /* "<dir>/read.db": the stem of scratch databases' names */
  tl_db *w; /* the projector's connection: an in-memory main, every projection's file attached */
  tl_proj_file file[TL_MAX_PROJECTIONS];
  char *sql_dlq_all, *sql_dlq_list;                  /* dead letters of every file */
  char fp_apply[TL_MAX_PROJECTIONS][TL_FP_NAME_MAX]; /* "projection.<name>.apply" */
  pthread_t thread;
  int started;
  _Atomic int stopping;
  unsigned rng; /* jitter (projector thread) */
  tl_jdoc doc;  /* the data of the event being applied (projector thread) */
  /* Rendered answers (view_cache.h; NULL: none): GET /orders/{id} (a group per order),
   * customer pages (a group per customer) and searches (one group). */
  tl_vcache *order_views, *customer_pages, *searches;
  /* What the batch in flight changed, as its projections announced it (TL_CHANGED_*: kind
   * and key), projector thread; see drop_touched_views. */
  struct {
    int kind;
    char key[TL_TOUCHED_KEY_MAX + 1];
  } touched[TL_TOUCHED_MAX];
  int n_touched;
  int touched_overflow;
  /* The searches the batch's orders could show (TL_CHANGED_ITEMS; search_groups.h). */
  tl_search_touch search_touched;

  /* Per projection: applied position, recorded time of that event, failure state. */
  _Atomic int64_t checkpoint[TL_MAX_PROJECTIONS];
  _Atomic int64_t recorded_ms[TL_MAX_PROJECTIONS];
  _Atomic int64_t dlq_depth[TL_MAX_PROJECTIONS];
  _Atomic int attempts[TL_MAX_PROJECTIONS]; /* published copy of fail[i].attempts */
  _Atomic uint64_t retries[TL_MAX_PROJECTIONS];
  tl_proj_fail fail[TL_MAX_PROJECTIONS];
  _Atomic int64_t applied; /* the minimum of the checkpoints */

  /* Housekeeping (tl_projection_def.tidy; projector thread): the checkpoint at which the last
   * tidy cycle ended, whether a cycle is under way, and when the last batch was applied. */
  int64_t tidy_from[TL_MAX_PROJECTIONS];
  int tidy_running[TL_MAX_PROJECTIONS];
  _Atomic uint64_t tidy_steps[TL_MAX_PROJECTIONS];
  int64_t last_batch_ns;

  pthread_mutex_t lock; /* guards the waiters, the pool and the files (cond: the first two) */
  pthread_cond_t cond;
  tl_waiter *waiters; /* asynchronous waits, unordered */
  tl_conn_node *pool; /* idle query connections, each with the live files attached */
  /* The files' layout (bumped by each rebuilt file installed; a connection's tag says which it
   * attached), the connections out of the pool attached to the live files or to a replaced
   * one, and the replaced files to delete once stale_out is 0 (files.c). */
  uint64_t layout;
  int live_out, stale_out;
  char retired[TL_RETIRED_MAX][PATH_MAX];
  int n_retired;
  /* A swap could attach neither the new file nor the old one again (files.c): the projector
   * attaches the missing ones before its next batch. Projector thread only. */
  bool detached;
  tl_handoff tasks; /* projector tasks (DLQ operations, a rebuild's swap) */

  /* A rebuild in progress (rebuild.c): the projection's index or -1, and how far it got. */
  _Atomic int rebuilding;
  _Atomic int64_t rebuild_position;
  /* Projections whose stored version differs from their definition: the projector leaves their
   * old tables alone (they keep answering) until the rebuild swaps the new version in. */
  _Atomic int version_hold[TL_MAX_PROJECTIONS];
  /* Of those, the ones held because they start empty on a long log (tl_read_opts.fold_from):
   * folded into a new copy like a rebuild; if that fails, the projector catches them up. */
  _Atomic int fold_start[TL_MAX_PROJECTIONS];
  pthread_t rebuild_thread;
  int rebuild_joinable; /* guarded by lock */
};

/* Starts rebuilding, one after the other, the projections held for a version change or an
 * empty start (at start-up, once the projector runs). */
int tl_read_rebuild_versions(tl_read *r, tl_err *err);
/* If projection i is held to be folded from empty (fold_start) and that fold cannot run or
 * failed: lifts the hold, so that the projector catches it up. */
void tl_read_fold_start_fallback(tl_read *r, int i);

/* Runs t on the projector thread and waits: TL_E_TIMEOUT if the projector did not take it in
 * timeout_ms (nothing happened), TL_E_CLOSED at shutdown, else t's result. */
int tl_read_run_task(tl_read *r, tl_proj_task *t, int timeout_ms, tl_err *err);

/* ev's data parsed into doc (valid until doc's next parse), or NULL when it is no JSON object
 * or array json_loads would read (or memory ran out): every projection then refuses the event. */
const tl_jv *tl_read_parse_data(tl_jdoc *doc, const tl_event *ev);

/* The table of checkpoints and dead letters in each projection's file. */
extern const char TL_READ_STORE_SCHEMA[];
/* Parks an event in the rm_dlq of `schema` ("" or a quoted name and a dot): ?1 projection,
 * ?2 position, ?3 stream, ?4 type, ?5 error, ?6 attempts, ?7 first and ?8 last failure (ms),
 * ?9 id (position * TL_MAX_PROJECTIONS + projection index). Parked again, it counts the
 * attempts and keeps the last error. */
#define TL_DLQ_PARK_SQL(schema)                                          \
  "INSERT INTO " schema                                                  \
  "rm_dlq(id, projection, position, stream, type, error, attempts,"      \
  " first_failed_at, last_failed_at) VALUES(?9,?1,?2,?3,?4,?5,?6,?7,?8)" \
  " ON CONFLICT(id) DO UPDATE SET error = excluded.error,"               \
  " attempts = attempts + excluded.attempts, last_failed_at = excluded.last_failed_at"
/* Parks ev for projection proj with sql (TL_DLQ_PARK_SQL of the database that holds its
 * rm_dlq): its error, attempts and first and last failure times (ms). 0 or TL_E_IO. */
int tl_read_park(tl_db *db, const char *sql, int proj, const tl_event *ev, const char *error,
                 int attempts, int64_t first_ms, int64_t last_ms, tl_err *err);
/* The error of an event whose data is not JSON (a printf format of its position). */
#define TL_UNREADABLE_DATA "event %lld has unreadable data"
/* Stores a projection's checkpoint (inside the caller's transaction) with sql (NULL: in the
 * main database; else a tl_proj_file's cp_put). */
int tl_read_put_checkpoint(tl_db *db, const char *sql, const tl_projection_def *def,
                           int64_t position, int64_t recorded_ms, tl_err *err);
/* The version a projection's checkpoint in db's main database was written by; -1 if none (or
 * unreadable). Creates the checkpoint table if missing. */
int tl_projection_stored_version(tl_db *db, const char *name);
/* Reads projection `name`'s checkpoint with sql (SQL_CP_GET's columns: a tl_proj_file's cp_get):
 * 1 and *position, *recorded_ms (-1: none), 0 when there is none, -1 on a storage error. */
int tl_projection_checkpoint_read(tl_db *db, const char *sql, const char *name, int64_t *position,
                                  int64_t *recorded_ms);

/* ---- the files (files.c) ------------------------------------------------------------------ */

/* Finds each projection's live file in r->dir (deleting older generations and a read.db of the
 * single-file layout) and prepares the statements on them. */
int tl_files_open(tl_read *r, tl_err *err);
void tl_files_free(tl_read *r);
/* Creates or checks projection proj's file; *stored: the version its checkpoint was written
 * by (-1: none). A file of another version is left as it is (it keeps answering until a
 * rebuild replaces it). */
int tl_files_setup(tl_read *r, int proj, int *stored, tl_err *err);
/* Opens r->w (and its checkpointer) with every projection's file attached. */
int tl_files_connect_writer(tl_read *r, tl_err *err);
/* Closes a query connection taken with tl_read_conn_acquire instead of pooling it. */
void tl_read_conn_drop(tl_read *r, tl_db *db);
/* fsync of the file at path (0 or TL_E_IO). */
int tl_files_sync(const char *path, tl_err *err);
/* Closes the idle query connections. */
void tl_files_close_pool(tl_read *r);
/* Makes `built` (a closed database with projection proj's tables, checkpoint and no WAL) the
 * projection's live file: renamed to the next generation, attached on the projector's
 * connection in place of the old one, which is deleted once no query connection has it
 * attached. Projector thread, outside a transaction. On failure the old file stays live. */
int tl_files_install(tl_read *r, int proj, const char *built, tl_err *err);
/* Attaches again, on the projector's connection and its checkpointer's, each projection's
 * live file that is not attached there (a swap whose failure could not attach the old file
 * back leaves it so, and sets r->detached; every batch would fail until then). Clears
 * r->detached once every file is attached. Projector thread, outside a transaction. Returns
 * how many it attached. */
int tl_files_heal(tl_read *r);
/* Re-reads every projection's DLQ depth from r->w. */
int tl_read_refresh_dlq_depths(tl_read *r, tl_err *err);
/* After a rebuild swapped projection i in at position (recorded_ms): forget its failure and
 * publish the checkpoint (which never moves backwards), wake waiters. Projector thread. */
void tl_read_publish_rebuilt(tl_read *r, int i, int64_t position, int64_t recorded_ms);

/* ---- folding the log into a scratch database (fold.c) ------------------------------------ */

typedef struct tl_fold {
  tl_db *db;                          /* the scratch database (tl_fold_create_tables) */
  int64_t upto[TL_MAX_PROJECTIONS];   /* apply events up to this position; -1: not this one */
  int64_t errors[TL_MAX_PROJECTIONS]; /* events a projection could not apply */
  int64_t position;                   /* the last event folded */
  int64_t recorded_ms;                /* its recording time */
  const char *fp_point;               /* evaluated once per event (e.g. to slow a rebuild) */
  _Atomic int *stop;                  /* when set and non-zero: the fold ends with TL_E_CLOSED */
  _Atomic int64_t *progress;          /* when set: the position of each event folded */
  /* A copy that goes live (a rebuild): each event a projection cannot apply is parked in the
   * scratch database's rm_dlq (TL_READ_STORE_SCHEMA, created by the caller), as the projector
   * parks it; else it is only counted. */
  bool park;
} tl_fold;

/* Creates projection d's tables, empty, in the scratch database db: its fold schema, else its
 * live schema (tl_projection_def.fold_schema_sql). Returns 0 or a TL_E code. */
int tl_fold_create_tables(tl_db *db, const tl_projection_def *d, tl_err *err);

/* Folds events from f->position + 1 up to the largest upto into f->db, committing every 10,000
 * events. Returns 0, or an error with nothing of the last uncommitted chunk kept. */
int tl_fold_run(tl_log *log, tl_fold *f, tl_err *err);

/* A scratch database path in the data directory: "<dir>/read.db.<what>-<pid>-<n>" (the name
 * the single-file layout's scratch databases had: start-up removes leftovers of both). */
int tl_fold_scratch_path(const tl_read *r, const char *what, char *out, size_t cap, tl_err *err);
/* Removes a scratch database and its -wal/-shm/-journal files. */
void tl_fold_remove(const char *path);

#endif
