/*
 * tl_read.c: the read store and its projector thread (see tl_read.h).
 *
 * One thread applies the log to every projection, in batches, one transaction (over the
 * projections' files, files.c) per batch. An event is applied to all its projections inside one
 * SAVEPOINT; if one fails, the event is undone and re-applied projection by projection, each in a
 * savepoint of its own, so that the failing projection is rolled back alone: it sits out the rest
 * of the batch and retries that event after an exponential backoff with jitter, while the other
 * projections go on. After `retry_attempts` failures the event is parked in rm_dlq (same
 * transaction as the checkpoint that moves past it) and the projection continues with the next
 * event. Storage failures of the batch itself (BEGIN/COMMIT, a savepoint) roll everything back and
 * retry the batch.
 */
#include "read/tl_read_int.h"

#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "util/tl_time.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH_EVENTS 512
#define TOUCHED_MAX TL_TOUCHED_MAX
#define MAX_PROJECTIONS TL_MAX_PROJECTIONS
/* Housekeeping (tl_projection_def.tidy): a step runs once no batch was applied for
 * TIDY_QUIET_MS; a new cycle starts once the projection moved TIDY_MIN_EVENTS, or its position
 * divided by TIDY_GROWTH, whichever is more, since the last one ended. A cycle may rewrite all
 * of the projection's index (the orders' full-text index: ~70 bytes per order), so this bounds
 * the rewriting to TIDY_GROWTH times that per order (~1.4 kB; an order writes ~40 kB). */
#define TIDY_QUIET_MS 200
#define TIDY_MIN_EVENTS 500
#define TIDY_GROWTH 20

typedef tl_waiter waiter;
typedef tl_conn_node conn_node;
typedef tl_proj_fail proj_fail;

/* A DLQ operation handed to the projector by an admin request. */
typedef struct dlq_op_arg {
  tl_dlq_op op;
  int64_t id;
  tl_dlq_result result;
} dlq_op_arg;

static int64_t position_of(tl_read *r, int proj) {
  return proj >= 0 ? atomic_load(&r->checkpoint[proj]) : atomic_load(&r->applied);
}

/* Calls back every asynchronous waiter whose position is reached, whose deadline passed, or
 * every one of them when the store is stopping. Callbacks run outside the lock. Returns the
 * earliest remaining deadline (INT64_MAX if none). */
static int64_t fire_waiters(tl_read *r) {
  int64_t now = tl_mono_ns(), next = INT64_MAX;
  int stopping = atomic_load(&r->stopping);
  waiter *due = NULL;
  pthread_mutex_lock(&r->lock);
  waiter **pp = &r->waiters;
  while (*pp) {
    waiter *w = *pp;
    if (stopping || w->min_position <= position_of(r, w->proj) || w->deadline_ns <= now) {
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
    w->fn(w->arg, w->min_position <= position_of(r, w->proj) ? TL_OK : TL_E_TIMEOUT);
    free(w);
  }
  return next;
}

/* ---- checkpoints and the dead-letter table ------------------------------------------------ */

/* In each projection's file (files.c). A dead letter's id is its position times
 * TL_MAX_PROJECTIONS plus the projection's index: unique across the files, in log order. */
const char TL_READ_STORE_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS rm_checkpoints("
    " name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL,"
    " recorded_at INTEGER) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS rm_dlq("
    " id INTEGER PRIMARY KEY, projection TEXT NOT NULL,"
    " position INTEGER NOT NULL, stream TEXT NOT NULL, type TEXT NOT NULL,"
    " error TEXT NOT NULL, attempts INTEGER NOT NULL, first_failed_at INTEGER NOT NULL,"
    " last_failed_at INTEGER NOT NULL, UNIQUE(projection, position));";
static const char SQL_CP_GET[] =
    "SELECT version, position, recorded_at FROM rm_checkpoints WHERE name = ?";
static const char SQL_CP_PUT[] =
    "INSERT INTO rm_checkpoints(name, version, position, recorded_at) VALUES(?,?,?,?)"
    " ON CONFLICT(name) DO UPDATE SET version = excluded.version, position = excluded.position,"
    " recorded_at = excluded.recorded_at";
static const char SQL_DLQ_RESET[] = "DELETE FROM rm_dlq WHERE projection = ?";
static const char SQL_SP_BEGIN[] = "SAVEPOINT tl_apply";
static const char SQL_SP_RELEASE[] = "RELEASE tl_apply";
static const char SQL_SP_ROLLBACK[] = "ROLLBACK TO tl_apply";

int64_t tl_projection_checkpoint(tl_db *db, const char *name) {
  int64_t pos = 0, recorded_ms;
  return tl_projection_checkpoint_read(db, SQL_CP_GET, name, &pos, &recorded_ms) < 0 ? -1 : pos;
}

int tl_projection_checkpoint_read(tl_db *db, const char *sql, const char *name, int64_t *position,
                                  int64_t *recorded_ms) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, sql, &err);
  if (!st) return -1;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *position = sqlite3_column_int64(st, 1);
    *recorded_ms = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
  }
  sqlite3_reset(st);
  return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int tl_read_put_checkpoint(tl_db *db, const char *sql, const tl_projection_def *def,
                           int64_t position, int64_t recorded_ms, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(db, sql ? sql : SQL_CP_PUT, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, def->name, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, def->version);
  sqlite3_bind_int64(st, 3, position);
  if (recorded_ms >= 0) sqlite3_bind_int64(st, 4, recorded_ms);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(db, rc, "store checkpoint", err);
}

int tl_projection_stored_version(tl_db *db, const char *name) {
  tl_err err = {0};
  if (tl_db_exec(db, TL_READ_STORE_SCHEMA, &err) != TL_OK) return -1;
  sqlite3_stmt *st = tl_db_stmt(db, SQL_CP_GET, &err);
  if (!st) return -1;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  sqlite3_reset(st);
  return v;
}

int tl_projection_setup(tl_db *db, const tl_projection_def *def, tl_err *err) {
  int rc = tl_db_exec(db, TL_READ_STORE_SCHEMA, err);
  if (rc != TL_OK) return rc;
  sqlite3_stmt *st = tl_db_stmt(db, SQL_CP_GET, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, def->name, -1, SQLITE_STATIC);
  int step = sqlite3_step(st);
  int stored_version = step == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  sqlite3_reset(st);
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    return tl_db_fail(db, step, "read checkpoint", err);
  if (stored_version == def->version) return tl_db_exec(db, def->schema_sql, err);
  /* New projection, or its definition changed: new tables, no parked events, and start again
   * from the beginning of the log. */
  if (stored_version >= 0)
    tl_slog(TL_SLOG_WARN, NULL, "projection version changed; rebuilding from position 0",
            "projection", def->name, NULL);
  rc = tl_db_run(db, "BEGIN", err);
  if (rc == TL_OK) rc = tl_db_exec(db, def->reset_sql, err);
  if (rc == TL_OK) rc = tl_db_exec(db, def->schema_sql, err);
  if (rc == TL_OK) {
    st = tl_db_stmt(db, SQL_DLQ_RESET, err);
    if (!st)
      rc = TL_E_IO;
    else {
      sqlite3_bind_text(st, 1, def->name, -1, SQLITE_STATIC);
      int s2 = sqlite3_step(st);
      sqlite3_reset(st);
      if (s2 != SQLITE_DONE) rc = tl_db_fail(db, s2, "clear dead letters", err);
    }
  }
  if (rc == TL_OK) rc = tl_read_put_checkpoint(db, NULL, def, 0, -1, err);
  if (rc == TL_OK)
    rc = tl_db_run(db, "COMMIT", err);
  else
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int tl_projection_apply_one(tl_db *db, const tl_projection_def *def, const tl_event *ev,
                            const tl_jv *data, tl_err *err) {
  int64_t cp = tl_projection_checkpoint(db, def->name);
  if (cp < 0) return tl_err_set(err, TL_E_IO, "cannot read checkpoint of %s", def->name);
  if (ev->position <= cp) return TL_OK; /* already applied: re-delivery changes nothing */
  int rc = def->apply(db, ev, data, err);
  if (rc == TL_OK)
    rc = tl_db_flush(db, err); /* its deferred counters too (tl_db_deferred) */
  else
    tl_db_discard(db); /* of the part it applied: the caller rolls the rest back */
  if (rc == TL_OK) rc = tl_read_put_checkpoint(db, NULL, def, ev->position, ev->recorded_ms, err);
  return rc;
}

const tl_jv *tl_read_parse_data(tl_jdoc *doc, const tl_event *ev) {
  const tl_jv *root = NULL;
  tl_jdoc_parse(doc, ev->data, strlen(ev->data), &root);
  return root;
}

int tl_projection_index(const char *name) {
  for (int i = 0; i < tl_projections_count; i++)
    if (strcmp(tl_projections[i]->name, name) == 0) return i;
  return -1;
}

/* ---- applying one event to one projection -------------------------------------------------- */

enum { APPLIED = 0, REFUSED = 1 }; /* else: a negative TL_E code, the batch must fail */

/* Applies ev to projection i in the caller's open savepoint (its fail point is skipped when
 * `fp` is 0: it was evaluated already). 0, or the projection's own failure (message in *why). */
static int apply_one(tl_read *r, int i, const tl_event *ev, const tl_jv *data, int fp,
                     tl_err *why) {
  if (!data) return tl_err_set(why, TL_E_INVALID, TL_UNREADABLE_DATA, (long long)ev->position);
  if (fp && tl_fp(r->fp_apply[i]))
    return tl_err_set(why, TL_E_IO, "apply failed at event %lld (fail point %s)",
                      (long long)ev->position, r->fp_apply[i]);
  return tl_projections[i]->apply(r->w, ev, data, why);
}

/* Ends the open savepoint: kept (ok) or rolled back. A storage failure of the savepoint itself
 * is returned (err set). */
static int end_savepoint(tl_read *r, int ok, tl_err *err) {
  if (ok) return tl_db_run(r->w, SQL_SP_RELEASE, err);
  int rc = tl_db_run(r->w, SQL_SP_ROLLBACK, err);
  return rc == TL_OK ? tl_db_run(r->w, SQL_SP_RELEASE, err) : rc;
}

/* Applies ev to projection i inside a savepoint of its own. APPLIED, REFUSED (the projection's
 * own failure, rolled back, message in *why) or a storage failure of the savepoint (err set). */
static int apply_guarded(tl_read *r, int i, const tl_event *ev, const tl_jv *data, int fp,
                         tl_err *why, tl_err *err) {
  int rc = tl_db_run(r->w, SQL_SP_BEGIN, err);
  if (rc != TL_OK) return rc;
  int applied = apply_one(r, i, ev, data, fp, why) == TL_OK;
  rc = end_savepoint(r, applied, err);
  return rc != TL_OK ? rc : applied ? APPLIED : REFUSED;
}

int tl_read_park(tl_db *db, const char *sql, int proj, const tl_event *ev, const char *error,
                 int attempts, int64_t first_ms, int64_t last_ms, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(db, sql, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_text(st, 1, tl_projections[proj]->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, ev->position);
  sqlite3_bind_text(st, 3, ev->stream, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, ev->type, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, error, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 6, attempts);
  sqlite3_bind_int64(st, 7, first_ms);
  sqlite3_bind_int64(st, 8, last_ms);
  sqlite3_bind_int64(st, 9, ev->position * TL_MAX_PROJECTIONS + proj);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(db, rc, "park event", err);
}

/* Parks ev for projection i in the dead-letter table of its file. */
static int park(tl_read *r, int i, const tl_event *ev, const proj_fail *f, tl_err *err) {
  return tl_read_park(r->w, r->file[i].dlq_park, i, ev, f->error, f->attempts, f->first_ms,
                      f->last_ms, err);
}

/* The delay before attempt `attempts + 1`: base * 2^(attempts-1), capped, with equal jitter
 * (half fixed, half random) so that retries of many projections do not synchronise. */
static int64_t backoff_ms(tl_read *r, int attempts) {
  int64_t d = r->opts.retry_base_ms;
  for (int k = 1; k < attempts && d < r->opts.retry_cap_ms; k++) d *= 2;
  if (d > r->opts.retry_cap_ms) d = r->opts.retry_cap_ms;
  return d / 2 + (int64_t)(rand_r(&r->rng) % (unsigned)(d / 2 + 1));
}

/* ---- the projector ----------------------------------------------------------------------- */

typedef struct batch_ctx {
  tl_read *r;
  int64_t now_ms, now_ns;
  int held[MAX_PROJECTIONS];       /* sits out the rest of this batch */
  int64_t cp[MAX_PROJECTIONS];     /* checkpoints as the batch moves them */
  int64_t rec[MAX_PROJECTIONS];    /* recorded time of the event at cp */
  int64_t parked[MAX_PROJECTIONS]; /* events parked by this batch */
  int64_t last_position;
  int n;
  int rc;
  tl_err err;
  /* The batch runs first without savepoints (fast: FTS5 flushes its pending terms at every
   * savepoint); the first refusal stops that pass, which is rolled back, and the batch runs
   * again with savepoints (careful). The refusal is remembered so that the careful pass does
   * not ask the projection (and its fail point) a second time. */
  int careful;
  int64_t refused_position; /* 0: none */
  int refused_proj;
  tl_err refused_why;
  int64_t recorded[BATCH_EVENTS]; /* of the events some projection applied, for the lag histogram */
} batch_ctx;

static void on_refused(batch_ctx *b, int i, const tl_event *ev, const tl_err *why) {
  tl_read *r = b->r;
  proj_fail *f = &r->fail[i];
  if (f->position != ev->position) {
    memset(f, 0, sizeof *f);
    f->position = ev->position;
    f->first_ms = b->now_ms;
  }
  f->attempts++;
  f->last_ms = b->now_ms;
  tl_strcpy(f->error, sizeof f->error, why->msg[0] ? why->msg : tl_strerror(why->code));
  atomic_fetch_add(&r->retries[i], 1);
  char pos[24], att[16];
  snprintf(pos, sizeof pos, "%lld", (long long)ev->position);
  snprintf(att, sizeof att, "%d", f->attempts);
  if (f->attempts >= r->opts.retry_attempts) {
    int rc = park(r, i, ev, f, &b->err);
    if (rc != TL_OK) {
      b->rc = rc;
      return;
    }
    tl_slog(TL_SLOG_ERROR, NULL, "event parked in the dead-letter queue", "projection",
            tl_projections[i]->name, "position", pos, "type", ev->type, "attempts", att, "error",
            f->error, NULL);
    memset(f, 0, sizeof *f);
    b->cp[i] = ev->position;
    b->rec[i] = ev->recorded_ms;
    b->parked[i]++;
    return;
  }
  f->retry_at_ns = b->now_ns + backoff_ms(r, f->attempts) * 1000000;
  b->held[i] = 1;
  tl_slog(TL_SLOG_WARN, NULL, "projection failed on an event; will retry", "projection",
          tl_projections[i]->name, "position", pos, "attempts", att, "error", f->error, NULL);
}

/* The fast pass: every projection that wants the event applies it, no savepoint. Stops the
 * batch at the first refusal (returns 1), remembering it for the careful pass. */
static int apply_event_fast(batch_ctx *b, const tl_event *ev, const tl_jv *data) {
  for (int i = 0; i < tl_projections_count; i++) {
    if (b->held[i] || ev->position <= b->cp[i]) continue;
    tl_err why = {0};
    if (apply_one(b->r, i, ev, data, 1, &why) != TL_OK) {
      b->refused_position = ev->position;
      b->refused_proj = i;
      b->refused_why = why;
      return 1;
    }
  }
  for (int i = 0; i < tl_projections_count; i++) {
    if (b->held[i] || ev->position <= b->cp[i]) continue;
    b->cp[i] = ev->position;
    b->rec[i] = ev->recorded_ms;
    if (b->r->fail[i].position == ev->position) memset(&b->r->fail[i], 0, sizeof b->r->fail[i]);
  }
  return 0;
}

/* Projection i on ev in the careful pass: the fast pass's refusal when it was this one. */
static int apply_careful(batch_ctx *b, int i, const tl_event *ev, const tl_jv *data, tl_err *why) {
  if (ev->position == b->refused_position && i == b->refused_proj) {
    *why = b->refused_why;
    return TL_E_INVALID;
  }
  return apply_one(b->r, i, ev, data, 1, why);
}

/* The projector connection's listener (tl_db_changed): remembers what the batch in flight
 * changed; its cached answers are dropped after the commit (drop_touched_views). More than the
 * list holds: every cached answer is. */
static void note_change(void *arg, int kind, const char *key) {
  tl_read *r = arg;
  if (kind == TL_CHANGED_ITEMS) {
    tl_search_touch_items(&r->search_touched, key);
    return;
  }
  size_t n = strlen(key);
  if (n > TL_TOUCHED_KEY_MAX || r->n_touched == TOUCHED_MAX) {
    r->touched_overflow = 1;
    return;
  }
  r->touched[r->n_touched].kind = kind;
  memcpy(r->touched[r->n_touched].key, key, n + 1);
  r->n_touched++;
}

/* Every cached answer (a rebuild swapped tables in). */
static void drop_all_views(tl_read *r) {
  if (r->order_views) tl_vcache_invalidate_all(r->order_views);
  if (r->customer_pages) tl_vcache_invalidate_all(r->customer_pages);
  if (r->searches) tl_vcache_invalidate_all(r->searches);
}

/* Forgets what the batch in flight changed (after dropping it, or with the batch). */
static void forget_touched(tl_read *r) {
  r->n_touched = 0;
  r->touched_overflow = 0;
  memset(&r->search_touched, 0, sizeof r->search_touched);
}

/* After a batch's commit and before its checkpoints are published (view_cache.h): the views of
 * the orders it changed, the pages of the customers whose orders changed, and the searches
 * that could show the orders it changed. */
static void drop_touched_views(tl_read *r) {
  if (r->touched_overflow) {
    drop_all_views(r);
  } else {
    for (int i = 0; i < r->n_touched; i++) {
      tl_vcache *c = r->touched[i].kind == TL_CHANGED_ORDER ? r->order_views : r->customer_pages;
      if (c) tl_vcache_invalidate(c, r->touched[i].key);
    }
    if (r->searches && r->search_touched.all) {
      tl_vcache_invalidate_all(r->searches);
    } else if (r->searches) {
      char name[3];
      for (int g = 0; g < TL_SEARCH_GROUPS; g++)
        if (r->search_touched.group[g]) {
          tl_search_group_name(g, name);
          tl_vcache_invalidate(r->searches, name);
        }
    }
  }
  forget_touched(r);
}

static void free_views(tl_read *r) {
  tl_vcache_free(r->order_views);
  tl_vcache_free(r->customer_pages);
  tl_vcache_free(r->searches);
}

static int apply_event(void *arg, const tl_event *ev) {
  batch_ctx *b = arg;
  tl_read *r = b->r;
  assert(ev->position == b->last_position + 1); /* the log has no gaps */
  b->last_position = ev->position;
  int needed = 0;
  for (int i = 0; i < tl_projections_count; i++)
    if (!b->held[i] && ev->position > b->cp[i]) needed = 1;
  if (!needed) return 0;
  const tl_jv *data = tl_read_parse_data(&r->doc, ev);
  if (!b->careful) {
    if (apply_event_fast(b, ev, data)) return 1;
    if (b->n < BATCH_EVENTS) b->recorded[b->n] = ev->recorded_ms;
    b->n++;
    return 0;
  }
  /* The common case in one savepoint: every projection that wants the event applies it. */
  int failed = -1;
  tl_err failed_why = {0};
  int rc = tl_db_run(r->w, SQL_SP_BEGIN, &b->err);
  for (int i = 0; rc == TL_OK && i < tl_projections_count && failed < 0; i++)
    if (!b->held[i] && ev->position > b->cp[i] &&
        apply_careful(b, i, ev, data, &failed_why) != TL_OK)
      failed = i;
  if (rc == TL_OK) rc = end_savepoint(r, failed < 0, &b->err);
  /* One failed: the event is undone, and each projection applies it in a savepoint of its own
   * so that the failing one is rolled back alone (its fail point is not asked twice). */
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    if (b->held[i] || ev->position <= b->cp[i]) continue;
    assert(ev->position == b->cp[i] + 1);
    tl_err why = i == failed ? failed_why : (tl_err){0};
    int outcome = failed < 0    ? APPLIED
                  : i == failed ? REFUSED
                                : apply_guarded(r, i, ev, data, i > failed, &why, &b->err);
    if (outcome == APPLIED) {
      b->cp[i] = ev->position;
      b->rec[i] = ev->recorded_ms;
      if (r->fail[i].position == ev->position) memset(&r->fail[i], 0, sizeof r->fail[i]);
    } else if (outcome == REFUSED) {
      on_refused(b, i, ev, &why);
      rc = b->rc;
    } else {
      rc = outcome;
    }
  }
  if (rc != TL_OK && b->rc == TL_OK) b->rc = rc;
  if (b->rc != TL_OK) return 1;
  if (b->n < BATCH_EVENTS) b->recorded[b->n] = ev->recorded_ms;
  b->n++;
  return 0;
}

/* Publishes the lowest checkpoint as the applied position and wakes the waiters (lock held). */
static void publish_applied(tl_read *r) {
  int64_t min = INT64_MAX;
  for (int k = 0; k < tl_projections_count; k++)
    if (atomic_load(&r->checkpoint[k]) < min) min = atomic_load(&r->checkpoint[k]);
  atomic_store(&r->applied, min == INT64_MAX ? 0 : min);
  pthread_cond_broadcast(&r->cond);
}

/* After a commit: publishes checkpoints, failure counts and DLQ depths; wakes waiters. */
static void publish(tl_read *r, const batch_ctx *b) {
  pthread_mutex_lock(&r->lock);
  for (int i = 0; i < tl_projections_count; i++) {
    if (b->cp[i] > atomic_load(&r->checkpoint[i])) {
      atomic_store(&r->recorded_ms[i], b->rec[i]);
      atomic_store(&r->checkpoint[i], b->cp[i]);
    }
    if (b->parked[i]) atomic_fetch_add(&r->dlq_depth[i], b->parked[i]);
    atomic_store(&r->attempts[i], r->fail[i].attempts);
  }
  publish_applied(r);
  pthread_mutex_unlock(&r->lock);
}

/* After a batch failed: its COMMIT may have been a partial one. SQLite commits attached WAL
 * databases one after the other, and a storage error on a later file leaves the earlier ones
 * committed (nothing to roll back there). Each file's checkpoint says how far it got:
 * publishes those that moved, so that their events are not applied again, and drops every
 * cached answer (what changed is not known any more). */
static void resync_checkpoints(tl_read *r) {
  int moved = 0;
  for (int i = 0; i < tl_projections_count; i++) {
    int64_t cp, rec;
    if (tl_projection_checkpoint_read(r->w, r->file[i].cp_get, tl_projections[i]->name, &cp,
                                      &rec) != 1 ||
        cp <= atomic_load(&r->checkpoint[i]))
      continue;
    pthread_mutex_lock(&r->lock);
    if (rec >= 0) atomic_store(&r->recorded_ms[i], rec);
    atomic_store(&r->checkpoint[i], cp);
    pthread_mutex_unlock(&r->lock);
    moved = 1;
  }
  if (!moved) return;
  tl_slog(TL_SLOG_WARN, NULL,
          "a projection batch was committed in some read-model files only; going on from each "
          "file's checkpoint",
          NULL);
  drop_all_views(r);
  tl_err ignored = {0};
  tl_read_refresh_dlq_depths(r, &ignored);
  pthread_mutex_lock(&r->lock);
  publish_applied(r);
  pthread_mutex_unlock(&r->lock);
}

/* Applies the next batch of events to every projection not waiting for a retry. Returns the
 * number of events read, 0 when there was nothing to do, -1 on a storage failure (the
 * transaction is rolled back; nothing moved). */
static int project_batch(tl_read *r, tl_log_reader *reader) {
  batch_ctx *b = calloc(1, sizeof *b);
  if (!b) return -1;
  b->r = r;
  b->now_ms = tl_now_ms();
  b->now_ns = tl_mono_ns();
  int64_t head = tl_log_head(r->log), start = INT64_MAX;
  for (int i = 0; i < tl_projections_count; i++) {
    b->cp[i] = atomic_load(&r->checkpoint[i]);
    b->rec[i] = atomic_load(&r->recorded_ms[i]);
    b->held[i] = (r->fail[i].attempts > 0 && b->now_ns < r->fail[i].retry_at_ns) ||
                 atomic_load(&r->version_hold[i]);
    if (!b->held[i] && b->cp[i] < start) start = b->cp[i];
  }
  if (start == INT64_MAX || start >= head) {
    free(b);
    return 0;
  }
  proj_fail saved[MAX_PROJECTIONS];
  memcpy(saved, r->fail, sizeof saved);
  batch_ctx first = *b; /* the state the careful pass starts from */
  b->last_position = start;
  tl_err err = {0};
  int rc = tl_db_run(r->w, "BEGIN", &err);
  if (rc == TL_OK) {
    rc = tl_log_read_all(reader, start + 1, BATCH_EVENTS, apply_event, b, &err);
    if (rc == 1 && b->rc == TL_OK && b->refused_position > 0) {
      /* A projection refused an event in the fast pass: undo it, and run the batch again with
       * a savepoint per event (rare: failures and fail points). */
      int64_t pos = b->refused_position;
      int proj = b->refused_proj;
      tl_err why = b->refused_why;
      rc = tl_db_run(r->w, "ROLLBACK", &err);
      memcpy(r->fail, saved, sizeof saved);
      *b = first;
      b->careful = 1;
      b->refused_position = pos;
      b->refused_proj = proj;
      b->refused_why = why;
      b->last_position = start;
      if (rc == TL_OK) rc = tl_db_run(r->w, "BEGIN", &err);
      if (rc == TL_OK) rc = tl_log_read_all(reader, start + 1, BATCH_EVENTS, apply_event, b, &err);
    }
    if (rc == 1 || b->rc != TL_OK) {
      rc = b->rc ? b->rc : TL_E_IO;
      err = b->err;
    }
  }
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++)
    if (b->cp[i] > atomic_load(&r->checkpoint[i]))
      rc = tl_read_put_checkpoint(r->w, r->file[i].cp_put, tl_projections[i], b->cp[i], b->rec[i],
                                  &err);
  if (rc == TL_OK) rc = tl_db_run(r->w, "COMMIT", &err);
  /* A COMMIT that fails after it wrote every file: as one that wrote some and not others. */
  if (rc == TL_OK && tl_fp("read.commit"))
    rc = tl_err_set(&err, TL_E_IO, "commit failed (fail point read.commit)");
  if (rc != TL_OK) {
    if (!sqlite3_get_autocommit(r->w->db)) sqlite3_exec(r->w->db, "ROLLBACK", NULL, NULL, NULL);
    memcpy(r->fail, saved, sizeof saved); /* nothing of this batch happened */
    forget_touched(r);                    /* nor changed any view */
    tl_slog(TL_SLOG_ERROR, NULL, "projection batch failed; will retry", "error", err.msg, NULL);
    resync_checkpoints(r); /* unless its COMMIT was a partial one */
    free(b);
    return -1;
  }
  drop_touched_views(r);
  int64_t now = tl_now_ms();
  if (b->n > 0) r->last_batch_ns = tl_mono_ns();
  for (int k = 0; k < b->n && k < BATCH_EVENTS; k++)
    tl_hist_observe(&tl_g_stats.visible_lag, (double)(now - b->recorded[k]) / 1000.0);
  publish(r, b);
  int n = (int)(b->last_position - start);
  free(b);
  return n > 0 ? n : 0;
}

/* ---- dead-letter operations (projector thread) ---------------------------------------------- */

typedef struct retry_ctx {
  tl_read *r;
  int proj;
  int64_t id;
  int found;
  int rc; /* APPLIED, REFUSED or a storage failure */
  tl_err why;
} retry_ctx;

static int retry_event(void *arg, const tl_event *ev) {
  retry_ctx *c = arg;
  c->found = 1;
  const tl_jv *data = tl_read_parse_data(&c->r->doc, ev);
  tl_err err = {0};
  c->rc = apply_guarded(c->r, c->proj, ev, data, 1, &c->why, &err);
  if (c->rc < 0) c->why = err;
  return 1; /* one event */
}

static int del_row(tl_read *r, int proj, int64_t id, tl_err *err) {
  sqlite3_stmt *st = tl_db_stmt(r->w, r->file[proj].dlq_del, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_int64(st, 1, id);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? TL_OK : tl_db_fail(r->w, rc, "delete dead letter", err);
}

/* Applies one parked event again (the projection's later state is protected by its per-row
 * position guards); on success the row goes, else its attempts and error are updated. */
static int retry_row(tl_read *r, tl_log_reader *reader, int64_t id, int proj, int64_t position,
                     tl_dlq_result *res, tl_err *err) {
  retry_ctx c = {.r = r, .proj = proj, .id = id};
  int rc = tl_log_read_all(reader, position, 1, retry_event, &c, err);
  if (rc == 1) rc = TL_OK;
  if (rc != TL_OK) return rc;
  if (c.rc < 0) {
    *err = c.why;
    return c.rc;
  }
  if (c.found && c.rc == APPLIED) {
    res->applied++;
    return del_row(r, proj, id, err);
  }
  if (!c.found) tl_err_set(&c.why, TL_E_NOTFOUND, "the event is not in the log");
  res->failed++;
  sqlite3_stmt *st = tl_db_stmt(r->w, r->file[proj].dlq_failed, err);
  if (!st) return TL_E_IO;
  sqlite3_bind_int64(st, 1, tl_now_ms());
  sqlite3_bind_text(st, 2, c.why.msg, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 3, id);
  int s = sqlite3_step(st);
  sqlite3_reset(st);
  return s == SQLITE_DONE ? TL_OK : tl_db_fail(r->w, s, "update dead letter", err);
}

int tl_read_refresh_dlq_depths(tl_read *r, tl_err *err) {
  for (int i = 0; i < tl_projections_count; i++) {
    sqlite3_stmt *st = tl_db_stmt(r->w, r->file[i].dlq_depth, err);
    if (!st) return TL_E_IO;
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) atomic_store(&r->dlq_depth[i], sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    if (s != SQLITE_ROW) return tl_db_fail(r->w, s, "count dead letters", err);
  }
  return TL_OK;
}

static int dlq_run(tl_read *r, tl_log_reader *reader, void *arg, tl_err *err) {
  dlq_op_arg *q = arg;
  /* A dead letter's id names its projection (TL_READ_STORE_SCHEMA). */
  int proj = q->id >= 0 ? (int)(q->id % TL_MAX_PROJECTIONS) : -1;
  if (q->op != TL_DLQ_RETRY_ALL && (proj < 0 || proj >= tl_projections_count)) {
    q->result = (tl_dlq_result){0};
    return TL_OK; /* found: 0 */
  }
  const char *sql = q->op == TL_DLQ_RETRY_ALL ? r->sql_dlq_all : r->file[proj].dlq_one;
  int rc = tl_db_run(r->w, "BEGIN", err);
  sqlite3_stmt *st = rc == TL_OK ? tl_db_stmt(r->w, sql, err) : NULL;
  if (rc == TL_OK && !st) rc = TL_E_IO;
  /* Collect the rows first: the statement must be reset before the rows change. */
  int64_t(*rows)[3] = NULL;
  int n = 0;
  if (rc == TL_OK) {
    rows = calloc(TL_DLQ_OP_ROWS, sizeof *rows);
    if (!rows) rc = tl_err_set(err, TL_E_NOMEM, "out of memory");
  }
  if (rc == TL_OK) {
    if (q->op != TL_DLQ_RETRY_ALL) sqlite3_bind_int64(st, 1, q->id);
    int s;
    while (n < TL_DLQ_OP_ROWS && (s = sqlite3_step(st)) == SQLITE_ROW) {
      rows[n][0] = sqlite3_column_int64(st, 0);
      rows[n][1] = rows[n][0] % TL_MAX_PROJECTIONS;
      rows[n][2] = sqlite3_column_int64(st, 2);
      n++;
    }
    sqlite3_reset(st);
  }
  q->result.found = n;
  for (int k = 0; rc == TL_OK && k < n; k++) {
    if (q->op == TL_DLQ_DROP) {
      rc = del_row(r, (int)rows[k][1], rows[k][0], err);
      if (rc == TL_OK) q->result.dropped++;
    } else {
      rc = retry_row(r, reader, rows[k][0], (int)rows[k][1], rows[k][2], &q->result, err);
    }
  }
  free(rows);
  if (rc == TL_OK) rc = tl_read_refresh_dlq_depths(r, err);
  if (rc == TL_OK) rc = tl_db_run(r->w, "COMMIT", err);
  if (rc != TL_OK) {
    if (!sqlite3_get_autocommit(r->w->db)) sqlite3_exec(r->w->db, "ROLLBACK", NULL, NULL, NULL);
    memset(&q->result, 0, sizeof q->result);
    tl_read_refresh_dlq_depths(r, &(tl_err){0});
  }
  return rc;
}

/* Takes and runs the pending projector task, if any. */
static void serve_task(tl_read *r, tl_log_reader *reader) {
  tl_job *job = tl_handoff_take(&r->tasks);
  if (!job) return;
  tl_proj_task *t = (tl_proj_task *)job;
  int rc = t->run(r, reader, t->arg, &job->err);
  drop_touched_views(r); /* of the dead letters it applied (a swap drops every view itself) */
  tl_handoff_finish(&r->tasks, job, rc);
}

void tl_read_publish_rebuilt(tl_read *r, int i, int64_t position, int64_t recorded_ms) {
  drop_all_views(r); /* new tables, maybe a new shape */
  pthread_mutex_lock(&r->lock);
  memset(&r->fail[i], 0, sizeof r->fail[i]);
  atomic_store(&r->attempts[i], 0);
  /* The swap rewrote the projection's tables: tidy them at the next quiet moment. */
  r->tidy_from[i] = -TIDY_MIN_EVENTS;
  r->tidy_running[i] = 0;
  if (position >= atomic_load(&r->checkpoint[i])) {
    atomic_store(&r->recorded_ms[i], recorded_ms);
    atomic_store(&r->checkpoint[i], position);
  }
  publish_applied(r);
  pthread_mutex_unlock(&r->lock);
}

/* ---- housekeeping (tl_projection_def.tidy) ------------------------------------------------ */

/* Whether projection i has a tidy cycle under way, or due. Not while a rebuild runs: it has the
 * cores first (the swap makes a cycle due anyway). */
static bool tidy_wanted(tl_read *r, int i) {
  if (!tl_projections[i]->tidy || r->fail[i].attempts > 0 || atomic_load(&r->version_hold[i]) ||
      atomic_load(&r->rebuilding) >= 0)
    return false;
  if (r->tidy_running[i]) return true;
  int64_t from = r->tidy_from[i];
  int64_t due = from / TIDY_GROWTH > TIDY_MIN_EVENTS ? from / TIDY_GROWTH : TIDY_MIN_EVENTS;
  return atomic_load(&r->checkpoint[i]) - from >= due;
}

/* Runs one tidy step, in a transaction of its own, once no batch was applied for
 * TIDY_QUIET_MS. A step is short (the projection bounds it) and the loop checks the log
 * between steps, so new events wait at most one step. Returns 1 if a step ran. */
static int tidy_step(tl_read *r) {
  if (tl_mono_ns() - r->last_batch_ns < (int64_t)TIDY_QUIET_MS * 1000000) return 0;
  for (int i = 0; i < tl_projections_count; i++) {
    if (!tidy_wanted(r, i)) continue;
    tl_err err = {0};
    int more = tl_db_run(r->w, "BEGIN", &err);
    if (more == TL_OK) more = tl_projections[i]->tidy(r->w, &err);
    if (more >= 0) {
      int rc = tl_db_run(r->w, "COMMIT", &err);
      if (rc != TL_OK) more = rc;
    }
    if (more < 0) {
      if (!sqlite3_get_autocommit(r->w->db)) sqlite3_exec(r->w->db, "ROLLBACK", NULL, NULL, NULL);
      /* Nothing is lost: queries answer the same, only slower; the next cycle tries again. */
      tl_slog(TL_SLOG_WARN, NULL, "projection housekeeping failed", "projection",
              tl_projections[i]->name, "error", err.msg, NULL);
    }
    atomic_fetch_add(&r->tidy_steps[i], 1);
    r->tidy_running[i] = more > 0;
    if (!r->tidy_running[i]) r->tidy_from[i] = atomic_load(&r->checkpoint[i]);
    return 1;
  }
  return 0;
}

/* How long the projector may sleep: until a waiter's deadline, a projection's retry or the end
 * of the quiet time before a due tidy step, at most a second. */
static int64_t idle_ms(tl_read *r, int64_t next_deadline_ns) {
  int64_t now = tl_mono_ns(), until = next_deadline_ns;
  int64_t head = tl_log_head(r->log);
  int64_t tidy_at = r->last_batch_ns + (int64_t)TIDY_QUIET_MS * 1000000;
  for (int i = 0; i < tl_projections_count; i++) {
    if (r->fail[i].attempts > 0 && atomic_load(&r->checkpoint[i]) < head &&
        r->fail[i].retry_at_ns < until)
      until = r->fail[i].retry_at_ns;
    if (tidy_at < until && tidy_wanted(r, i)) until = tidy_at;
  }
  int64_t ms = 1000;
  if (until != INT64_MAX) {
    int64_t d = (until - now) / 1000000 + 1;
    if (d < ms) ms = d > 0 ? d : 0;
  }
  return ms;
}

static void *projector_main(void *arg) {
  tl_read *r = arg;
  tl_thread_name("tl-projector");
  tl_log_reader *reader = NULL;
  tl_err err = {0};
  int backoff = 10;
  while (!atomic_load(&r->stopping)) {
    if (!reader && tl_log_reader_acquire(r->log, &reader, &err) != TL_OK) {
      tl_slog(TL_SLOG_ERROR, NULL, "projector cannot read the log", "error", err.msg, NULL);
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    serve_task(r, reader);
    if (r->detached) tl_files_heal(r); /* before a batch that would fail without the file */
    int64_t head = tl_log_head(r->log);
    int n = project_batch(r, reader);
    int64_t next = fire_waiters(r);
    if (n < 0) {
      /* Storage trouble: back off (exponentially, up to 1 s) and try the same batch again,
       * with every projection's file attached. */
      tl_files_heal(r);
      struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
      nanosleep(&ts, NULL);
      backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
      continue;
    }
    backoff = 10;
    if (n > 0) continue;
    /* Nothing to apply now (all caught up, or the ones behind wait for a retry). */
    if (tidy_step(r)) continue;
    int64_t ms = idle_ms(r, next);
    if (ms > 0) tl_log_wait(r->log, head, (int)ms);
  }
  tl_log_reader_release(r->log, reader);
  fire_waiters(r); /* stopping: everyone still waiting times out */
  tl_handoff_close(&r->tasks);
  return NULL;
}

/* ---- the store --------------------------------------------------------------------------- */

/* Scratch databases of a reconciliation or rebuild cut short by a crash. */
static void remove_leftovers(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  char path[PATH_MAX];
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "read.db.rebuild-", 16) != 0 &&
        strncmp(e->d_name, "read.db.reconcile-", 18) != 0)
      continue;
    int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (n > 0 && (size_t)n < sizeof path && unlink(path) == 0)
      tl_slog(TL_SLOG_INFO, NULL, "removed a leftover scratch database", "file", path, NULL);
  }
  closedir(d);
}

int tl_read_open(tl_read **out, tl_log *log, const char *dir, const tl_read_opts *opts,
                 tl_err *err) {
  *out = NULL;
  tl_read *r = calloc(1, sizeof *r);
  if (!r) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  r->log = log;
  r->opts = (tl_read_opts){.retry_base_ms = 200,
                           .retry_cap_ms = 30000,
                           .retry_attempts = 8,
                           .view_cache = TL_READ_VIEW_CACHE_DEFAULT,
                           .fold_from = TL_READ_FOLD_FROM_DEFAULT};
  if (opts) {
    if (opts->retry_base_ms > 0) r->opts.retry_base_ms = opts->retry_base_ms;
    if (opts->retry_cap_ms > 0) r->opts.retry_cap_ms = opts->retry_cap_ms;
    if (opts->retry_attempts > 0) r->opts.retry_attempts = opts->retry_attempts;
    r->opts.view_cache = opts->view_cache;
    r->opts.fold_from = opts->fold_from;
  }
  if (r->opts.retry_cap_ms < r->opts.retry_base_ms) r->opts.retry_cap_ms = r->opts.retry_base_ms;
  r->rng = (unsigned)tl_mono_ns();
  atomic_store(&r->rebuilding, -1);
  if (r->opts.view_cache > 0) { /* a power of two, rounded down; NULL: every view is queried */
    unsigned log2 = 0;
    while (log2 < 20 && (1L << (log2 + 1)) <= r->opts.view_cache) log2++;
    unsigned groups = log2 < 16 ? log2 : 16; /* orders and customers: counters per group hash */
    r->order_views = tl_vcache_new(log2, groups, TL_READ_VIEW_CACHE_BYTES);
    r->customer_pages =
        tl_vcache_new(log2 > 2 ? log2 - 2 : 0, groups, TL_READ_VIEW_CACHE_BYTES / 2);
    r->searches = tl_vcache_new(log2 > 6 ? log2 - 6 : 0, groups > 11 ? 11 : groups,
                                TL_READ_VIEW_CACHE_BYTES / 4);
  }
  pthread_mutex_init(&r->lock, NULL);
  tl_handoff_init(&r->tasks);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cond, &ca);
  pthread_condattr_destroy(&ca);
  remove_leftovers(dir);
  int n = snprintf(r->path, sizeof r->path, "%s/read.db", dir);
  int rc = (n < 0 || (size_t)n >= sizeof r->path)
               ? tl_err_set(err, TL_E_INVALID, "data directory path too long")
               : TL_OK;
  if (rc == TL_OK) {
    tl_strcpy(r->dir, sizeof r->dir, dir);
    rc = tl_files_open(r, err);
  }
  int stored[MAX_PROJECTIONS];
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++)
    rc = tl_files_setup(r, i, &stored[i], err);
  if (rc == TL_OK) rc = tl_files_connect_writer(r, err);
  /* The projector's statement journals (a batch's savepoints) spill to disk past 64 KiB
   * instead of holding every changed page in memory. */
  if (rc == TL_OK) rc = tl_db_exec(r->w, "PRAGMA temp_store=FILE", err);
  if (rc == TL_OK) { /* what the projections change here: cached answers to drop */
    r->w->on_change = note_change;
    r->w->on_change_arg = r;
  }
  assert(tl_projections_count <= MAX_PROJECTIONS);
  int64_t min_cp = INT64_MAX, max_cp = 0;
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    snprintf(r->fp_apply[i], sizeof r->fp_apply[i], "projection.%s.apply", tl_projections[i]->name);
    int sv = stored[i];
    if (sv > 0 && sv != tl_projections[i]->version) {
      atomic_store(&r->version_hold[i], 1);
      char from[16], to[16];
      snprintf(from, sizeof from, "%d", sv);
      snprintf(to, sizeof to, "%d", tl_projections[i]->version);
      tl_slog(TL_SLOG_WARN, NULL, "projection version changed; rebuilding beside the old copy",
              "projection", tl_projections[i]->name, "from", from, "to", to, NULL);
    }
    int64_t cp, rec;
    if (tl_projection_checkpoint_read(r->w, r->file[i].cp_get, tl_projections[i]->name, &cp,
                                      &rec) != 1) {
      rc = tl_err_set(err, TL_E_IO, "cannot read checkpoints");
      break;
    }
    atomic_store(&r->checkpoint[i], cp);
    if (rec >= 0) atomic_store(&r->recorded_ms[i], rec);
    if (cp < min_cp) min_cp = cp;
    if (cp > max_cp) max_cp = cp;
  }
  int64_t head = tl_log_head(log);
  for (int i = 0; rc == TL_OK && i < tl_projections_count; i++) {
    if (r->opts.fold_from <= 0 || head < r->opts.fold_from || atomic_load(&r->checkpoint[i]) ||
        atomic_load(&r->version_hold[i]))
      continue;
    atomic_store(&r->version_hold[i], 1);
    atomic_store(&r->fold_start[i], 1);
    char events[24];
    snprintf(events, sizeof events, "%lld", (long long)head);
    tl_slog(TL_SLOG_INFO, NULL, "projection starts empty; folding the log into a new copy",
            "projection", tl_projections[i]->name, "events", events, NULL);
  }
  if (rc == TL_OK) rc = tl_read_refresh_dlq_depths(r, err);
  if (rc == TL_OK) {
    if (min_cp == INT64_MAX) min_cp = 0;
    if (max_cp > tl_log_head(log))
      rc = tl_err_set(err, TL_E_INVALID,
                      "read models are ahead of the log (position %lld > head %lld): the data "
                      "directory is inconsistent",
                      (long long)max_cp, (long long)tl_log_head(log));
    atomic_store(&r->applied, min_cp);
  }
  if (rc == TL_OK && pthread_create(&r->thread, NULL, projector_main, r) != 0)
    rc = tl_err_set(err, TL_E_IO, "cannot start the projector thread");
  if (rc != TL_OK) {
    tl_db_close(r->w);
    tl_files_free(r);
    free_views(r);
    pthread_cond_destroy(&r->cond);
    tl_handoff_destroy(&r->tasks);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return rc;
  }
  r->started = 1;
  tl_err rb = {0};
  if (tl_read_rebuild_versions(r, &rb) != TL_OK) { /* the old copies keep serving, frozen */
    tl_slog(TL_SLOG_ERROR, NULL, "cannot start rebuilding new projection versions", "error", rb.msg,
            NULL);
    for (int i = 0; i < tl_projections_count; i++) tl_read_fold_start_fallback(r, i);
  }
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
  /* A rebuild sees `stopping` (its fold ends, or its swap is refused) and ends too. */
  pthread_mutex_lock(&r->lock);
  int joinable = r->rebuild_joinable;
  r->rebuild_joinable = 0;
  pthread_mutex_unlock(&r->lock);
  if (joinable) pthread_join(r->rebuild_thread, NULL);
  tl_files_close_pool(r);
  tl_db_close(r->w);
  tl_files_free(r);
  tl_jdoc_free(&r->doc);
  free_views(r);
  pthread_cond_destroy(&r->cond);
  tl_handoff_destroy(&r->tasks);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

tl_log *tl_read_log(const tl_read *r) {
  return r->log;
}

int64_t tl_read_position(tl_read *r) {
  return atomic_load(&r->applied);
}

int64_t tl_read_position_of(tl_read *r, int proj) {
  return proj >= 0 && proj < tl_projections_count ? atomic_load(&r->checkpoint[proj])
                                                  : atomic_load(&r->applied);
}

int tl_read_wait_async(tl_read *r, int proj, int64_t min_position, int timeout_ms,
                       tl_read_wait_fn fn, void *arg) {
  if (proj >= tl_projections_count) proj = -1;
  if (position_of(r, proj) >= min_position) return TL_OK;
  waiter *w = malloc(sizeof *w);
  if (!w) {
    fn(arg, TL_E_TIMEOUT);
    return 1;
  }
  w->proj = proj;
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
  if (atomic_load(&r->stopping))
    fire_waiters(r);
  else
    tl_log_wake(r->log);
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

/* Milliseconds between now and the recording of the first event after `position` (0 when
 * caught up); `recorded_ms` (of the event at position) bounds it beyond the log's window. */
static int64_t lag_ms_at(tl_read *r, int64_t position, int64_t recorded_ms, int64_t now) {
  if (position >= tl_log_head(r->log)) return 0;
  int64_t t = tl_log_recorded_at(r->log, position + 1);
  if (t < 0) t = recorded_ms;
  int64_t lag = now - t;
  return lag > 0 ? lag : 0;
}

tl_read_meta tl_read_meta_of(tl_read *r, int proj) {
  if (proj < 0 || proj >= tl_projections_count) { /* the slowest projection */
    proj = 0;
    for (int i = 1; i < tl_projections_count; i++)
      if (atomic_load(&r->checkpoint[i]) < atomic_load(&r->checkpoint[proj])) proj = i;
  }
  int64_t pos = atomic_load(&r->checkpoint[proj]);
  int64_t rec = atomic_load(&r->recorded_ms[proj]);
  return (tl_read_meta){.position = pos,
                        .recorded_ms = pos > 0 && rec > 0 ? rec : 0,
                        .lag_ms = lag_ms_at(r, pos, rec, tl_now_ms())};
}

void tl_read_meta_write(const tl_read_meta *m, tl_jw *out) {
  tl_jw_object(out);
  tl_jw_key(out, "position");
  tl_jw_int(out, m->position);
  tl_jw_key(out, "dataAsOf");
  if (m->recorded_ms > 0)
    tl_jw_time(out, m->recorded_ms);
  else
    tl_jw_null(out);
  tl_jw_key(out, "lagMs");
  tl_jw_int(out, m->lag_ms);
  tl_jw_end(out);
}

int tl_read_status(tl_read *r, tl_proj_status *out, int max) {
  int64_t head = tl_log_head(r->log), now = tl_now_ms();
  for (int i = 0; i < tl_projections_count && i < max; i++) {
    int64_t cp = atomic_load(&r->checkpoint[i]);
    int attempts = atomic_load(&r->attempts[i]);
    out[i] = (tl_proj_status){
        .name = tl_projections[i]->name,
        .version = tl_projections[i]->version,
        .position = cp,
        .lag_events = head > cp ? head - cp : 0,
        .lag_ms = lag_ms_at(r, cp, atomic_load(&r->recorded_ms[i]), now),
        .dlq_depth = atomic_load(&r->dlq_depth[i]),
        .retries = atomic_load(&r->retries[i]),
        .attempts = attempts,
        .status = atomic_load(&r->rebuilding) == i ? "rebuilding"
                  : attempts > 0                   ? "retrying"
                                                   : "running",
        .rebuild_position =
            atomic_load(&r->rebuilding) == i ? atomic_load(&r->rebuild_position) : -1,
        .tidy_steps = atomic_load(&r->tidy_steps[i]),
    };
  }
  return tl_projections_count;
}

static void wake_projector(void *log) {
  tl_log_wake(log);
}

int tl_read_run_task(tl_read *r, tl_proj_task *t, int timeout_ms, tl_err *err) {
  if (atomic_load(&r->stopping)) return tl_err_set(err, TL_E_CLOSED, "shutting down");
  return tl_handoff_run(&r->tasks, &t->job, timeout_ms, wake_projector, r->log, err);
}

int tl_read_dlq(tl_read *r, tl_dlq_op op, int64_t id, int timeout_ms, tl_dlq_result *out,
                tl_err *err) {
  dlq_op_arg q = {.op = op, .id = id};
  tl_proj_task t = {.run = dlq_run, .arg = &q};
  int rc = tl_read_run_task(r, &t, timeout_ms, err);
  *out = rc == TL_OK ? q.result : (tl_dlq_result){0};
  return rc;
}

json_t *tl_read_dlq_list(tl_read *r, const char *projection, int limit, tl_problem *p) {
  tl_db *db = NULL;
  tl_err err = {0};
  if (tl_read_conn_acquire(r, &db, &err) != TL_OK) {
    tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "%s", err.msg);
    return NULL;
  }
  sqlite3_stmt *st = tl_db_stmt(db, r->sql_dlq_list, &err);
  json_t *arr = NULL;
  if (st) {
    if (projection) sqlite3_bind_text(st, 1, projection, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, limit);
    arr = tl_db_dead_letters(db, st, "projection", &err);
  }
  tl_read_conn_release(r, db);
  if (!arr)
    tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "The dead-letter queue cannot be read: %s",
                   err.msg);
  return arr;
}

/* One query of the read lane through a view cache (NULL: none): the cached members of key, or
 * the query's on a connection of the pool, then cached under the miss's ticket. */
typedef int (*view_query_fn)(tl_db *db, const void *arg, tl_jw *out, tl_problem *p);

static int cached_query(tl_read *r, tl_vcache *cache, tl_query_kind kind, const char *group,
                        const char *key, view_query_fn fn, const void *arg, tl_jw *out,
                        tl_problem *p) {
  uint64_t ticket = 0;
  bool hit = cache && tl_vcache_get(cache, group, key, out, &ticket);
  atomic_fetch_add_explicit(&tl_g_stats.view_cache[kind][hit], 1, memory_order_relaxed);
  if (hit) return TL_OK;
  tl_db *db = NULL;
  tl_err err = {0};
  if (tl_read_conn_acquire(r, &db, &err) != TL_OK) {
    tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "%s", err.msg);
    return TL_E_IO;
  }
  size_t start = out->buf.len;
  int rc = fn(db, arg, out, p);
  tl_read_conn_release(r, db);
  /* The members just written, as the next hit will append them (tl_jw_raw_members). */
  if (rc == TL_OK && cache && !tl_jw_failed(out) && out->buf.len > start)
    tl_vcache_put(cache, group, key, ticket, out->buf.data + start, out->buf.len - start);
  return rc;
}

static int order_fn(tl_db *db, const void *arg, tl_jw *out, tl_problem *p) {
  return tl_query_order(db, arg, out, p);
}

int tl_read_order_view(tl_read *r, const char *order_id, tl_jw *out, tl_problem *p) {
  return cached_query(r, r->order_views, TL_Q_ORDER, order_id, order_id, order_fn, order_id, out,
                      p);
}

typedef struct page_args {
  const char *id, *cursor, *text;
  int limit;
} page_args;

static int customer_fn(tl_db *db, const void *arg, tl_jw *out, tl_problem *p) {
  const page_args *a = arg;
  return tl_query_customer_orders(db, a->id, a->limit, a->cursor, out, p);
}

int tl_read_customer_orders(tl_read *r, const char *customer_id, int limit, const char *cursor,
                            tl_jw *out, tl_problem *p) {
  page_args a = {.id = customer_id, .cursor = cursor, .limit = limit};
  /* The key: the customer, the page size and the cursor, none of which holds a newline. A key
   * that does not fit is not cached. */
  char key[192];
  int n = snprintf(key, sizeof key, "%s\n%d\n%s", customer_id, limit, cursor ? cursor : "");
  tl_vcache *cache = n > 0 && (size_t)n < sizeof key ? r->customer_pages : NULL;
  return cached_query(r, cache, TL_Q_CUSTOMER_ORDERS, customer_id, key, customer_fn, &a, out, p);
}

static int search_fn(tl_db *db, const void *arg, tl_jw *out, tl_problem *p) {
  const page_args *a = arg;
  return tl_query_search(db, a->text, a->limit, out, p);
}

int tl_read_search(tl_read *r, const char *q, int limit, tl_jw *out, tl_problem *p) {
  page_args a = {.text = q, .limit = limit};
  /* The key: the page size, a newline (not a digit: it ends the size), the text as given. */
  char key[640], group[3] = "";
  int n = snprintf(key, sizeof key, "%d\n%s", limit, q);
  int g = tl_search_group_of(q);
  if (g >= 0) tl_search_group_name(g, group);
  tl_vcache *cache = n > 0 && (size_t)n < sizeof key && g >= 0 ? r->searches : NULL;
  return cached_query(r, cache, TL_Q_SEARCH, group, key, search_fn, &a, out, p);
}
