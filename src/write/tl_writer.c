/*
 * tl_writer.c: the single writer (see tl_writer.h for the contract).
 *
 * Pipelined group commit: the writer thread decides a batch and commits it (tl_log_commit, no
 * fsync), then hands its requests to the syncer thread and takes the next batch at once. The
 * syncer makes everything committed so far durable with one tl_log_sync (so one fsync often
 * covers several batches) and only then answers the requests it took, in order: nobody is
 * answered, and no pool reader (projector, process managers, queries) sees an event, before the
 * fsync that covers it. The writer's cycle becomes max(decide, fsync) instead of their sum.
 * Every answer waits, refusals and idempotent replays included: they may rest on events of a
 * batch whose fsync is still running. A commit that fails is rolled back and its batch
 * answered 503 (after the sync of the batches before it). A failed fsync cannot be rolled
 * back (the batches it should have covered are committed, and after a failed fsync the kernel
 * may have dropped their pages): the syncer logs it and ends the process with
 * TL_EXIT_SYNC_FAILED, leaving every request it had not answered unanswered (their outcome is
 * unknown, which is what a closed connection says); a restart recovers from what the WAL
 * holds.
 *
 * Invariants, checked with assert:
 *   - w->next_position == tl_log_committed(log) + 1 between batches;
 *   - a cached aggregate's version equals the number of its events in the log, except for
 *     aggregates touched by the batch in flight (dropped from the cache if the batch fails).
 *
 * Snapshots: every snapshot_every events of a stream (when a staged event's version is a
 * multiple of it), and after a load that had to fold at least that many events, the state is
 * encoded at once and queued; the queue is stored in the batch's own transaction (under a
 * savepoint: if storing it fails, the batch commits without it), so a stored snapshot is
 * durable exactly when the events it describes are, and storing one can never fail or hold
 * back a command. A load takes the stream's snapshot if its schema version is current,
 * it decodes, and its version is in the log, then folds the events after it; anything else
 * folds the whole stream (and the next snapshot replaces the unusable one).
 */
#include "write/tl_writer.h"

#include "domain/upcast.h"

#include "util/tl_jw.h"
#include "util/tl_map.h"
#include "util/tl_money.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "util/tl_time.h"

#include <assert.h>
#include <stdatomic.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IDEM_TTL_MS (24LL * 3600 * 1000)
#define IDEM_EXPIRE_EVERY_MS (10LL * 60 * 1000)

/* Snapshots taken during a batch, stored with it. Owned strings. */
typedef struct pending_snapshot {
  char stream[96];
  int64_t version;
  int schema_version;
  char *state;
} pending_snapshot;

typedef struct snap_list {
  pending_snapshot *v;
  size_t n, cap;
} snap_list;

struct tl_writer {
  tl_log *log;
  pthread_t thread;
  /* The syncer: committed requests wait in sync_head..sync_tail (FIFO, linked by next),
   * guarded by sync_lock. */
  pthread_t syncer;
  pthread_mutex_t sync_lock;
  pthread_cond_t sync_cond;
  tl_cmd_request *sync_head, *sync_tail;
  int sync_stopping;
  pthread_mutex_t lock; /* guards the queue and stopping */
  pthread_cond_t cond;
  tl_cmd_request *q_head, *q_tail;
  int stopping;
  int max_batch;
  /* order id -> tl_order_state*, trimmed to order_cache_capacity (LRU) after each batch, never
   * during one: an order the batch in flight has staged events for holds state the log does
   * not have yet, and must stay in the cache until the commit (or be dropped if it fails). */
  tl_map *orders;
  size_t order_cache_capacity;
  tl_map *products; /* product id -> tl_product_state*, the whole catalog seen so far */
  int64_t next_position;
  int64_t last_expire_ms;
  int64_t snapshot_every; /* events between snapshots of a stream; 0: snapshots off */
  snap_list snaps;        /* taken during the batch in flight (writer thread) */
};

/* What one batch is about to append. Strings in events/idem are owned by `owned`. */
typedef struct batch {
  tl_log_event_in *events;
  size_t n_events, cap_events;
  tl_log_idem_in *idem;
  tl_cmd_request **idem_req; /* the request each idem record answers */
  size_t n_idem, cap_idem, cap_idem_req;
  char **owned;
  size_t n_owned, cap_owned;
  char (*touched)[96]; /* streams whose cached state changed */
  size_t n_touched, cap_touched;
  int64_t now_ms;
  int poisoned; /* a request was half-staged (out of memory): the whole batch must fail */
} batch;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap * 2 : 64;
  while (c < need) c *= 2;
  void *n = realloc(*p, c * elem);
  if (!n) return -1;
  *p = n;
  *cap = c;
  return 0;
}

static char *keep(batch *b, char *s) {
  if (!s) return NULL;
  if (grow((void **)&b->owned, &b->cap_owned, b->n_owned + 1, sizeof *b->owned)) {
    free(s);
    return NULL;
  }
  b->owned[b->n_owned++] = s;
  return s;
}

static void batch_reset(batch *b) {
  for (size_t i = 0; i < b->n_owned; i++) free(b->owned[i]);
  b->n_owned = b->n_events = b->n_idem = b->n_touched = 0;
  b->poisoned = 0;
}

static void batch_free(batch *b) {
  batch_reset(b);
  free(b->events);
  free(b->idem);
  free(b->idem_req);
  free(b->owned);
  free(b->touched);
}

_Static_assert(offsetof(tl_cmd_request, cmd) == 0 &&
                   offsetof(tl_cmd_request, correlation_id) >= sizeof(tl_cmd),
               "tl_cmd_request_init relies on cmd being first");

void tl_cmd_request_init(tl_cmd_request *req) {
  /* Everything after the command is small; the command is emptied without clearing its
   * buffers (a memset of the whole request was 8 % of the saga's instructions). */
  tl_cmd_init(&req->cmd);
  memset((char *)req + offsetof(tl_cmd_request, correlation_id), 0,
         sizeof *req - offsetof(tl_cmd_request, correlation_id));
  req->if_match = -1;
  sem_init(&req->done, 0, 0);
}

void tl_cmd_request_clear(tl_cmd_request *req) {
  tl_cmd_clear(&req->cmd);
  free(req->body);
  req->body = NULL;
  tl_problem_clear(&req->problem);
  sem_destroy(&req->done);
}

void tl_request_fingerprint(const char *method, const char *path, const char *body,
                            size_t body_len, char out[33]) {
  uint64_t h1 = TL_FNV_OFFSET, h2 = 0x9e3779b97f4a7c15ULL;
  const char sep = '\n';
  h1 = tl_fnv1a(
      tl_fnv1a(tl_fnv1a(tl_fnv1a(h1, method, strlen(method)), &sep, 1), path, strlen(path)), &sep,
      1);
  h2 = tl_fnv1a(
      tl_fnv1a(tl_fnv1a(tl_fnv1a(h2, path, strlen(path)), &sep, 1), method, strlen(method)), &sep,
      1);
  if (body_len) {
    h1 = tl_fnv1a(h1, body, body_len);
    h2 = tl_fnv1a(h2, body, body_len);
  }
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)h1, (unsigned long long)h2);
}

/* ---- snapshots ---------------------------------------------------------------------------- */

static int64_t state_version(int is_order, const void *state) {
  return is_order ? ((const tl_order_state *)state)->version
                  : ((const tl_product_state *)state)->version;
}

/* Encodes state (at its current version) and queues it to be stored after the batch commits.
 * Out of memory only costs the snapshot. */
static void take_snapshot(tl_writer *w, const char *stream, int is_order, const void *state) {
  snap_list *l = &w->snaps;
  if (grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v)) return;
  char *text = is_order ? tl_order_snapshot_encode(state) : tl_product_snapshot_encode(state);
  if (!text) return;
  pending_snapshot *p = &l->v[l->n++];
  tl_strcpy(p->stream, sizeof p->stream, stream);
  p->version = state_version(is_order, state);
  p->schema_version = is_order ? TL_ORDER_SNAPSHOT_SCHEMA : TL_PRODUCT_SNAPSHOT_SCHEMA;
  p->state = text;
}

static void drop_snapshots(snap_list *l) {
  for (size_t i = 0; i < l->n; i++) free(l->v[i].state);
  l->n = 0;
}

/* The snapshots of the batch in flight as the log takes them (NULL when there are none or
 * memory ran out: they are optional). */
static tl_snapshot_in *snapshots_in(const snap_list *l) {
  if (l->n == 0) return NULL;
  tl_snapshot_in *in = malloc(l->n * sizeof *in);
  if (!in) return NULL;
  for (size_t i = 0; i < l->n; i++)
    in[i] =
        (tl_snapshot_in){l->v[i].stream, l->v[i].version, l->v[i].schema_version, l->v[i].state};
  return in;
}

/* ---- loading aggregates ------------------------------------------------------------------ */

typedef struct fold_ctx {
  int is_order;
  void *state;
  int64_t snapshot_version; /* > 0: the first event read must be this version; not folded */
  int snapshot_mismatch;    /* it was not: the snapshot does not match the log */
  int64_t n_folded;
  int rc;
} fold_ctx;

static int fold_event(void *arg, const tl_event *ev) {
  fold_ctx *f = arg;
  if (f->snapshot_version > 0) {
    /* The tail starts at the snapshot's own event: proof that the log has that version. */
    if (ev->version != f->snapshot_version) {
      f->snapshot_mismatch = 1;
      return 1;
    }
    f->snapshot_version = 0;
    return 0;
  }
  json_t *data = json_loads(ev->data, 0, NULL);
  if (!data) {
    f->rc = TL_E_IO;
    return 1;
  }
  if (f->is_order) tl_order_evolve(f->state, ev->type, data, ev->recorded_ms);
  else tl_product_evolve(f->state, ev->type, data, ev->recorded_ms);
  json_decref(data);
  f->n_folded++;
  return 0;
}

static void free_order(void *p) {
  if (!p) return;
  tl_order_state_clear(p);
  free(p);
}

static void free_product(void *p) {
  if (!p) return;
  tl_product_state_clear(p);
  free(p);
}

static void free_state(int is_order, void *state) {
  if (is_order) free_order(state);
  else free_product(state);
}

static void reset_state(int is_order, void *state) {
  if (is_order) {
    tl_order_state_clear(state);
    tl_order_state_init(state);
  } else {
    tl_product_state_clear(state);
    tl_product_state_init(state);
  }
}

static void snapshot_ignored(const char *stream, const char *why) {
  atomic_fetch_add(&tl_g_stats.snapshots_ignored, 1);
  tl_slog(TL_SLOG_INFO, NULL, "snapshot ignored; folding the whole stream", "stream", stream,
          "reason", why, NULL);
}

/* Fills the empty state s from stream's stored snapshot. Returns 1 when s now holds a usable
 * snapshot (whose version the tail read must still find in the log), else 0 with s empty: no
 * snapshot, one of another schema version or unreadable (counted as ignored), or a read error
 * (logged: the full fold that follows meets the same storage). */
static int restore_snapshot(tl_writer *w, int is_order, const char *id, const char *stream,
                            void *s) {
  tl_snapshot snap;
  tl_err err = {0};
  int rc = tl_log_snapshot_get(tl_log_writer_reader(w->log), stream, &snap, &err);
  if (rc == TL_E_NOTFOUND) return 0;
  if (rc != TL_OK) {
    tl_slog(TL_SLOG_WARN, NULL, "reading a snapshot failed", "stream", stream, "error", err.msg,
            NULL);
    return 0;
  }
  int expected = is_order ? TL_ORDER_SNAPSHOT_SCHEMA : TL_PRODUCT_SNAPSHOT_SCHEMA;
  rc = is_order ? tl_order_snapshot_decode(s, snap.schema_version, snap.state)
                : tl_product_snapshot_decode(s, snap.schema_version, snap.state);
  const char *state_id = is_order ? ((tl_order_state *)s)->order_id
                                  : ((tl_product_state *)s)->product_id;
  const char *why = NULL;
  if (snap.schema_version != expected) why = "another schema version";
  else if (rc == TL_E_NOMEM) why = "out of memory";
  else if (rc != TL_OK) why = "unreadable";
  else if (state_version(is_order, s) != snap.version || strcmp(state_id, id) != 0)
    why = "does not match its row";
  free(snap.state);
  if (!why) return 1;
  reset_state(is_order, s);
  snapshot_ignored(stream, why);
  return 0;
}

/* The cached state of aggregate `id` (an order or a product), loaded on a miss from its
 * snapshot and the events after it, or by folding its whole stream. NULL: no such aggregate,
 * or an I/O error (logged, *io_error set). The pointer is valid until the end of the batch
 * (the caches only shrink between batches). */
static void *load_aggregate(tl_writer *w, int is_order, const char *id, int *io_error) {
  tl_map *cache = is_order ? w->orders : w->products;
  void *s = tl_map_get(cache, id);
  if (s) return s;
  s = malloc(is_order ? sizeof(tl_order_state) : sizeof(tl_product_state));
  if (!s) {
    *io_error = 1;
    return NULL;
  }
  if (is_order) tl_order_state_init(s);
  else tl_product_state_init(s);
  char stream[96];
  tl_stream_name(stream, sizeof stream, is_order, id);
  int from_snapshot = w->snapshot_every > 0 && restore_snapshot(w, is_order, id, stream, s);
  fold_ctx f = {is_order, s, from_snapshot ? state_version(is_order, s) : 0, 0, 0, TL_OK};
  tl_err err = {0};
  int rc = tl_log_read_stream(tl_log_writer_reader(w->log), stream,
                              from_snapshot ? f.snapshot_version : 1, 0, fold_event, &f, &err);
  if (from_snapshot && (f.snapshot_mismatch || (rc == TL_OK && f.snapshot_version > 0))) {
    /* The snapshot claims a version the log does not have: fold the whole stream. */
    snapshot_ignored(stream, "its version is not in the log");
    reset_state(is_order, s);
    from_snapshot = 0;
    f = (fold_ctx){is_order, s, 0, 0, 0, TL_OK};
    rc = tl_log_read_stream(tl_log_writer_reader(w->log), stream, 1, 0, fold_event, &f, &err);
  }
  if (rc != TL_OK || f.rc != TL_OK) {
    tl_slog(TL_SLOG_ERROR, NULL, "loading an aggregate failed", "stream", stream, "error",
            err.msg, NULL);
    *io_error = 1;
  } else if (state_version(is_order, s) > 0) {
    if (tl_map_put(cache, id, s) == 0) {
      atomic_fetch_add(from_snapshot ? &tl_g_stats.loads_from_snapshot : &tl_g_stats.loads_from_log,
                       1);
      atomic_fetch_add(&tl_g_stats.load_events, (uint64_t)f.n_folded);
      /* A long fold (no snapshot yet, an unusable one, or one far behind): snapshot now rather
       * than at the next multiple of snapshot_every. */
      if (w->snapshot_every > 0 && f.n_folded >= w->snapshot_every)
        take_snapshot(w, stream, is_order, s);
      return s;
    }
    *io_error = 1;
  }
  free_state(is_order, s);
  return NULL;
}

static tl_order_state *load_order(tl_writer *w, const char *id, int *io_error) {
  return load_aggregate(w, 1, id, io_error);
}

static tl_product_state *load_product(tl_writer *w, const char *id, int *io_error) {
  return load_aggregate(w, 0, id, io_error);
}

typedef struct lookup_ctx {
  tl_writer *w;
  int io_error;
} lookup_ctx;

static const tl_product_state *lookup_product(void *arg, const char *id) {
  lookup_ctx *lc = arg;
  return load_product(lc->w, id, &lc->io_error);
}

/* ---- deciding one request ---------------------------------------------------------------- */

static void fail(tl_cmd_request *req, int status, const char *code, const char *detail) {
  req->status = status;
  if (status >= 500) req->position = 0; /* nothing of it is in the log */
  tl_problem_set(&req->problem, status, code, "%s", detail);
}

static int touch(batch *b, const char *stream) {
  for (size_t i = 0; i < b->n_touched; i++)
    if (strcmp(b->touched[i], stream) == 0) return 0;
  if (grow((void **)&b->touched, &b->cap_touched, b->n_touched + 1, sizeof *b->touched)) return -1;
  tl_strcpy(b->touched[b->n_touched++], sizeof b->touched[0], stream);
  return 0;
}

/* An event's metadata as JSON text (malloc'd; NULL if out of memory):
 * {"eventId":<UUIDv7>,"correlationId":"...","causationId":"..."|null}, the bytes jansson would
 * write for that object. */
static char *event_metadata(int64_t now_ms, const tl_cmd_request *req) {
  char event_id[TL_UUID_LEN + 1];
  tl_uuid_v7(now_ms, event_id);
  tl_jw m = {0};
  tl_jw_object(&m);
  tl_jw_key(&m, "eventId");
  tl_jw_string(&m, event_id);
  tl_jw_key(&m, "correlationId");
  tl_jw_string(&m, req->correlation_id ? req->correlation_id : "");
  tl_jw_key(&m, "causationId");
  if (req->causation_id) tl_jw_string(&m, req->causation_id);
  else tl_jw_null(&m);
  tl_jw_end(&m);
  return tl_jw_take(&m);
}

/* Appends the decision's events to the batch, folding each into state. */
static int stage_events(tl_writer *w, batch *b, tl_cmd_request *req, const char *stream,
                        tl_decision *d, int is_order, void *state) {
  if (grow((void **)&b->events, &b->cap_events, b->n_events + (size_t)d->n_events,
           sizeof *b->events) ||
      touch(b, stream))
    return TL_E_NOMEM;
  char *stream_copy = keep(b, strdup(stream));
  if (!stream_copy) return TL_E_NOMEM;
  for (int i = 0; i < d->n_events; i++) {
    char *data = keep(b, tl_json_dumps(d->events[i].data));
    char *meta = keep(b, event_metadata(b->now_ms, req));
    if (!data || !meta) return TL_E_NOMEM;
    int64_t *version = is_order ? &((tl_order_state *)state)->version
                                : &((tl_product_state *)state)->version;
    tl_log_event_in *e = &b->events[b->n_events++];
    e->position = w->next_position++;
    e->stream = stream_copy;
    e->type = d->events[i].type;
    e->schema_version = tl_event_schema_version(e->type);
    e->data = data;
    e->metadata = meta;
    e->recorded_ms = 0; /* the batch's */
    int erc = is_order ? tl_order_evolve(state, e->type, d->events[i].data, b->now_ms)
                       : tl_product_evolve(state, e->type, d->events[i].data, b->now_ms);
    /* A decider must only emit events its evolve accepts: anything else is a bug, and the
     * half-staged batch must not be committed. */
    assert(erc == TL_OK || erc == TL_E_NOMEM);
    if (erc != TL_OK) return erc;
    e->version = *version;
    req->position = e->position;
    req->version = *version;
    if (w->snapshot_every > 0 && *version % w->snapshot_every == 0)
      take_snapshot(w, stream, is_order, state);
  }
  req->n_events = d->n_events;
  if (d->n_events == 0) { /* a no-op decision: the aggregate stays as it is */
    req->version = is_order ? ((tl_order_state *)state)->version
                            : ((tl_product_state *)state)->version;
    req->position = w->next_position - 1;
  }
  return TL_OK;
}

/* Stages the product events of a reservation, each on its product's stream (loaded by the
 * decision: a cache hit). The decision's events stay owned by r. */
static int stage_stock_events(tl_writer *w, batch *b, tl_cmd_request *req, tl_reservation *r) {
  for (int i = 0; i < r->n_stock; i++) {
    int io_error = 0;
    tl_product_state *p = load_product(w, r->stock[i].product_id, &io_error);
    if (!p) return TL_E_IO;
    char stream[96];
    tl_stream_name(stream, sizeof stream, false, r->stock[i].product_id);
    tl_decision one = {.n_events = 1, .events = {r->stock[i].event}};
    int rc = stage_events(w, b, req, stream, &one, 0, p);
    if (rc != TL_OK) return rc;
  }
  return TL_OK;
}

/* The name of a product for the order view (tl_order_name_fn; arg: the writer). */
static const char *product_name(void *arg, const char *product_id) {
  int io_error = 0;
  const tl_product_state *p = load_product(arg, product_id, &io_error);
  return p ? p->name : "";
}

static char *success_body(tl_writer *w, const tl_cmd_request *req, const void *state) {
  const tl_cmd *c = &req->cmd;
  tl_jw j = {0};
  tl_jw_object(&j);
  if (c->kind == TL_CMD_CREATE_PRODUCT) {
    tl_jw_key(&j, "productId");
    tl_jw_string(&j, c->id);
  } else if (c->kind == TL_CMD_RESERVE_STOCK || c->kind == TL_CMD_RELEASE_STOCK ||
             c->kind == TL_CMD_COMMIT_STOCK) {
    const tl_product_state *p = state;
    tl_jw_key(&j, "productId");
    tl_jw_string(&j, c->id);
    tl_jw_key(&j, "orderId");
    tl_jw_string(&j, c->order_id);
    tl_jw_key(&j, "reserved");
    tl_jw_int(&j, tl_product_reserved_for(p, c->order_id));
    tl_jw_key(&j, "available");
    tl_jw_int(&j, p->stock - p->reserved);
  } else if (c->kind == TL_CMD_RESTOCK) {
    const tl_product_state *p = state;
    tl_jw_key(&j, "productId");
    tl_jw_string(&j, c->id);
    tl_jw_key(&j, "stock");
    tl_jw_int(&j, p->stock);
  } else {
    const tl_order_state *o = state;
    tl_jw_key(&j, "orderId");
    tl_jw_string(&j, o->order_id);
    tl_jw_key(&j, "status");
    tl_jw_string(&j, tl_order_status_name(o->status));
  }
  tl_jw_key(&j, "version");
  tl_jw_int(&j, req->version);
  tl_jw_key(&j, "position");
  tl_jw_int(&j, req->position);
  if (c->kind == TL_CMD_PLACE_ORDER) {
    tl_jw_key(&j, "order");
    tl_order_state_write(state, &j, product_name, w);
  }
  tl_jw_end(&j);
  return tl_jw_take(&j);
}

/* Answers req from a stored idempotency record. */
static void replay(tl_cmd_request *req, int status, const char *body, int64_t position) {
  req->status = status;
  req->body = strdup(body);
  req->position = position;
  req->replayed = 1;
  json_t *j = json_loads(body, 0, NULL);
  req->version = j ? json_integer_value(json_object_get(j, "version")) : 0;
  json_decref(j);
  if (!req->body) fail(req, 500, "INTERNAL", "Out of memory.");
}

static void decide_one(tl_writer *w, batch *b, tl_cmd_request *req) {
  /* 1. Idempotency: a key seen in this batch or stored in the log. */
  if (req->idem_key) {
    for (size_t i = 0; i < b->n_idem; i++) {
      if (strcmp(b->idem[i].key, req->idem_key) == 0) {
        if (strcmp(b->idem[i].fingerprint, req->fingerprint) != 0)
          return fail(req, 422, "IDEMPOTENCY_KEY_REUSED",
                      "This Idempotency-Key was used with another request.");
        req->replay_of = b->idem_req[i]; /* answered from that request after the commit */
        return;
      }
    }
    tl_idem_record rec = {0};
    tl_err err = {0};
    int rc = tl_log_idem_get(tl_log_writer_reader(w->log), req->idem_key, &rec, &err);
    if (rc == TL_OK) {
      if (strcmp(rec.fingerprint, req->fingerprint) != 0)
        fail(req, 422, "IDEMPOTENCY_KEY_REUSED",
             "This Idempotency-Key was used with another request.");
      else
        replay(req, rec.status, rec.body, rec.position);
      free(rec.body);
      return;
    }
    if (rc != TL_E_NOTFOUND) return fail(req, 503, "STORAGE_UNAVAILABLE", "The log is unavailable.");
  }

  /* 2. The aggregate. */
  tl_cmd *c = &req->cmd;
  int is_order = tl_cmd_is_order(c->kind);
  int io_error = 0;
  void *state = NULL;
  tl_order_state fresh_order;
  tl_product_state fresh_product;
  tl_order_state_init(&fresh_order);
  tl_product_state_init(&fresh_product);
  if (c->kind == TL_CMD_PLACE_ORDER) {
    tl_ulid_new(b->now_ms, c->id);
    state = &fresh_order;
  } else if (is_order) {
    state = tl_ulid_valid(c->id) ? load_order(w, c->id, &io_error) : NULL;
    if (!state) state = &fresh_order;
  } else {
    state = load_product(w, c->id, &io_error);
    if (!state) state = &fresh_product;
  }
  if (io_error) return fail(req, 503, "STORAGE_UNAVAILABLE", "The log is unavailable.");
  int64_t version = is_order ? ((tl_order_state *)state)->version
                             : ((tl_product_state *)state)->version;

  /* 3. Optimistic concurrency requested by the client. */
  if (req->if_match >= 0 && version > 0 && version != req->if_match) {
    fail(req, 412, "VERSION_MISMATCH", "The aggregate is at another version than If-Match.");
    tl_problem_extra(&req->problem, "currentVersion", json_integer(version));
    return;
  }

  /* 4. The business rules. reserve_order decides the order and its products together; its
   * decision on the order itself is r.order, the products' events come with it. */
  tl_decision d;
  tl_reservation r;
  tl_decision *dp = &d;
  memset(&d, 0, sizeof d);
  r.n_stock = 0;
  memset(&r.order, 0, sizeof r.order);
  lookup_ctx lc = {w, 0};
  int rc;
  if (c->kind == TL_CMD_RESERVE_ORDER) {
    rc = tl_order_decide_reservation(state, lookup_product, &lc, &r);
    dp = &r.order;
  } else {
    rc = is_order ? tl_order_decide(state, c, lookup_product, &lc, &d)
                  : tl_product_decide(state, c, &d);
  }
  if (lc.io_error) {
    tl_reservation_clear(&r);
    tl_decision_clear(&d);
    return fail(req, 503, "STORAGE_UNAVAILABLE", "The log is unavailable.");
  }
  if (rc != TL_OK) {
    req->status = dp->problem.status;
    req->problem = dp->problem;
    memset(&dp->problem, 0, sizeof dp->problem);
    tl_reservation_clear(&r);
    tl_decision_clear(&d);
    return;
  }

  /* 5. Accepted: the new aggregate goes into the cache, events into the batch. */
  char stream[96];
  tl_stream_name(stream, sizeof stream, is_order, c->id);
  if (state == &fresh_order || state == &fresh_product) {
    void *heap = malloc(is_order ? sizeof fresh_order : sizeof fresh_product);
    if (!heap || tl_map_put(is_order ? w->orders : w->products, c->id, heap) != 0) {
      free(heap);
      tl_decision_clear(&d);
      return fail(req, 500, "INTERNAL", "Out of memory.");
    }
    memcpy(heap, state, is_order ? sizeof fresh_order : sizeof fresh_product);
    state = heap;
  }
  rc = stage_stock_events(w, b, req, &r);
  if (rc == TL_OK) rc = stage_events(w, b, req, stream, dp, is_order, state);
  tl_reservation_clear(&r);
  tl_decision_clear(&d);
  if (rc == TL_OK) {
    req->status = (c->kind == TL_CMD_PLACE_ORDER || c->kind == TL_CMD_CREATE_PRODUCT) ? 201 : 200;
    req->body = success_body(w, req, state);
    if (!req->body) rc = TL_E_NOMEM;
  }
  if (rc == TL_OK && req->idem_key) {
    if (grow((void **)&b->idem, &b->cap_idem, b->n_idem + 1, sizeof *b->idem) ||
        grow((void **)&b->idem_req, &b->cap_idem_req, b->n_idem + 1, sizeof *b->idem_req)) {
      rc = TL_E_NOMEM;
    } else {
      b->idem[b->n_idem] = (tl_log_idem_in){req->idem_key, req->fingerprint, req->status,
                                            req->body, req->position};
      b->idem_req[b->n_idem] = req;
      b->n_idem++;
    }
  }
  if (rc != TL_OK) {
    /* The batch may already hold part of this request: fail the whole batch (rare: OOM). */
    free(req->body);
    req->body = NULL;
    b->poisoned = 1;
    fail(req, 500, "INTERNAL", "Out of memory while staging events.");
  }
}

/* ---- the batch: commit, answer, recover -------------------------------------------------- */

/* Drops the cached state of every aggregate the failed batch touched: the log is the truth and
 * they are reloaded from it on next use. */
static void forget_touched(tl_writer *w, batch *b) {
  for (size_t i = 0; i < b->n_touched; i++) {
    const char *s = b->touched[i];
    if (strncmp(s, "order-", 6) == 0) tl_map_remove(w->orders, s + 6);
    else if (strncmp(s, "product-", 8) == 0) tl_map_remove(w->products, s + 8);
  }
}

static void process_batch(tl_writer *w, tl_cmd_request *list, batch *b) {
  batch_reset(b);
  b->now_ms = tl_now_ms();
  int n_requests = 0, n_writing = 0;
  /* The batch's key look-ups and aggregate loads share one read transaction. If it cannot be
   * begun, each read runs on its own (and fails on its own if storage is gone). */
  tl_log_reader *reader = tl_log_writer_reader(w->log);
  tl_err rerr = {0};
  int grouped = tl_log_read_begin(reader, &rerr) == TL_OK;
  for (tl_cmd_request *r = list; r; r = r->next) {
    decide_one(w, b, r);
    n_requests++;
    if (r->n_events > 0) n_writing++;
  }
  if (grouped) tl_log_read_end(reader);

  int failed = b->poisoned;
  if (!failed && (b->n_events > 0 || b->n_idem > 0 || w->snaps.n > 0)) {
    tl_snapshot_in *snaps = snapshots_in(&w->snaps);
    int snaps_failed = 0;
    tl_log_batch lb = {.events = b->events,
                       .n_events = b->n_events,
                       .idem = b->idem,
                       .n_idem = b->n_idem,
                       .recorded_ms = b->now_ms,
                       .snaps = snaps,
                       .n_snaps = snaps ? w->snaps.n : 0,
                       .snaps_failed = &snaps_failed};
    tl_err err = {0};
    int rc = tl_log_commit(w->log, &lb, &err);
    free(snaps);
    if (rc != TL_OK) {
      failed = 1;
      tl_slog(TL_SLOG_ERROR, NULL, "group commit failed; batch not acknowledged", "error",
              err.msg, NULL);
    } else {
      if (snaps_failed || (!snaps && w->snaps.n > 0)) {
        atomic_fetch_add(&tl_g_stats.snapshot_write_errors, 1);
        tl_slog(TL_SLOG_WARN, NULL, "storing snapshots failed; loads fold more events", NULL);
      } else {
        atomic_fetch_add(&tl_g_stats.snapshots_written, lb.n_snaps);
      }
      atomic_fetch_add(&tl_g_stats.events_appended, b->n_events);
      tl_hist_observe(&tl_g_stats.batch_size, (double)n_writing);
    }
  }
  if (failed) {
    forget_touched(w, b);
    w->next_position = tl_log_committed(w->log) + 1;
    /* Every answer of the batch may depend on state the failed commit would have made (a
     * refusal such as ALREADY_PAID included), so only stored replays keep theirs. */
    for (tl_cmd_request *r = list; r; r = r->next) {
      if (!r->replayed) {
        free(r->body);
        r->body = NULL;
        tl_problem_clear(&r->problem);
        fail(r, 503, "STORAGE_UNAVAILABLE",
             "The command could not be made durable; nothing was recorded. Retry.");
      }
    }
  }
  assert(w->next_position == tl_log_committed(w->log) + 1);
  tl_map_trim(w->orders, w->order_cache_capacity);

  /* Requests that repeated a key of this batch take the first one's answer. */
  for (tl_cmd_request *r = list; r; r = r->next) {
    if (!r->replay_of) continue;
    const tl_cmd_request *o = r->replay_of;
    if (o->status >= 200 && o->status < 300 && o->body) {
      replay(r, o->status, o->body, o->position);
    } else {
      /* Same request, same state: the same refusal (or the same 503). */
      r->status = o->status;
      tl_problem_set(&r->problem, o->problem.status, o->problem.code, "%s", o->problem.detail);
      r->problem.errors = json_deep_copy(o->problem.errors);
      r->problem.extra = json_deep_copy(o->problem.extra);
    }
  }
  (void)n_requests;
  drop_snapshots(&w->snaps); /* stored with the batch, or lost with it */
  /* To the syncer: answered once the log is durable past them. */
  tl_cmd_request *tail = list;
  while (tail->next) tail = tail->next;
  pthread_mutex_lock(&w->sync_lock);
  if (w->sync_tail)
    w->sync_tail->next = list;
  else
    w->sync_head = list;
  w->sync_tail = tail;
  pthread_cond_signal(&w->sync_cond);
  pthread_mutex_unlock(&w->sync_lock);
}

/* The syncer thread: one tl_log_sync for everything committed since the last, then the answers
 * of the batches it covered (see the file comment). */
static void *syncer_main(void *arg) {
  tl_writer *w = arg;
  tl_thread_name("tl-syncer");
  for (;;) {
    pthread_mutex_lock(&w->sync_lock);
    while (!w->sync_head && !w->sync_stopping) pthread_cond_wait(&w->sync_cond, &w->sync_lock);
    if (!w->sync_head) { /* stopping, and nothing is left */
      pthread_mutex_unlock(&w->sync_lock);
      break;
    }
    tl_cmd_request *list = w->sync_head;
    w->sync_head = w->sync_tail = NULL;
    pthread_mutex_unlock(&w->sync_lock);

    tl_err err = {0};
    int did_sync = 0;
    if (tl_log_sync(w->log, &did_sync, &err) != TL_OK) {
      tl_slog(TL_SLOG_ERROR, NULL,
              "fsync of the log failed: stopping; commands not answered may or may not be "
              "recorded, a restart recovers what the log holds",
              "error", err.msg, NULL);
      _exit(TL_EXIT_SYNC_FAILED);
    }
    if (did_sync) atomic_fetch_add(&tl_g_stats.fsyncs, 1);
    /* Answer everyone; once answered a request may be freed by its owner. */
    while (list) {
      tl_cmd_request *next = list->next;
      if (list->on_done)
        list->on_done(list, list->on_done_arg);
      else
        sem_post(&list->done);
      list = next;
    }
  }
  return NULL;
}

static void *writer_main(void *arg) {
  tl_writer *w = arg;
  tl_thread_name("tl-writer");
  batch b;
  memset(&b, 0, sizeof b);
  for (;;) {
    pthread_mutex_lock(&w->lock);
    while (!w->q_head && !w->stopping) pthread_cond_wait(&w->cond, &w->lock);
    if (!w->q_head && w->stopping) {
      pthread_mutex_unlock(&w->lock);
      break;
    }
    /* Take up to max_batch queued commands: everything that arrived while the last batch was
     * decided and committed. */
    tl_cmd_request *list = w->q_head, *last = list;
    for (int n = 1; n < w->max_batch && last->next; n++) last = last->next;
    w->q_head = last->next;
    if (!w->q_head) w->q_tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&w->lock);

    process_batch(w, list, &b);

    int64_t now = tl_now_ms();
    if (now - w->last_expire_ms > IDEM_EXPIRE_EVERY_MS) {
      tl_err err = {0};
      if (tl_log_idem_expire(w->log, now - IDEM_TTL_MS, &err) != TL_OK)
        tl_slog(TL_SLOG_WARN, NULL, "expiring idempotency keys failed", "error", err.msg, NULL);
      w->last_expire_ms = now;
    }
  }
  batch_free(&b);
  return NULL;
}

/* Lets the syncer finish what it was handed, then joins it. */
static void stop_syncer(tl_writer *w) {
  pthread_mutex_lock(&w->sync_lock);
  w->sync_stopping = 1;
  pthread_cond_signal(&w->sync_cond);
  pthread_mutex_unlock(&w->sync_lock);
  pthread_join(w->syncer, NULL);
}

static void free_writer(tl_writer *w) {
  free(w->snaps.v);
  pthread_cond_destroy(&w->sync_cond);
  pthread_mutex_destroy(&w->sync_lock);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

int tl_writer_start(tl_writer **out, tl_log *log, const tl_writer_opts *opts, tl_err *err) {
  *out = NULL;
  tl_writer *w = calloc(1, sizeof *w);
  if (!w) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  w->log = log;
  w->max_batch = opts && opts->max_batch > 0 ? opts->max_batch : 1024;
  w->order_cache_capacity =
      opts && opts->order_cache_capacity ? opts->order_cache_capacity : 100000;
  w->orders = tl_map_new(0, free_order); /* bounded by tl_map_trim between batches */
  w->products = tl_map_new(0, free_product);
  w->next_position = tl_log_committed(log) + 1;
  int every = opts ? opts->snapshot_every : 0;
  w->snapshot_every = every == 0 ? TL_SNAPSHOT_EVERY_DEFAULT : every < 0 ? 0 : every;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  pthread_mutex_init(&w->sync_lock, NULL);
  pthread_cond_init(&w->sync_cond, NULL);
  int rc = TL_OK;
  if (!w->orders || !w->products)
    rc = tl_err_set(err, TL_E_NOMEM, "out of memory");
  else if (pthread_create(&w->syncer, NULL, syncer_main, w) != 0)
    rc = tl_err_set(err, TL_E_IO, "cannot start the syncer thread");
  else if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
    rc = tl_err_set(err, TL_E_IO, "cannot start the writer thread");
    stop_syncer(w);
  }
  if (rc != TL_OK) {
    tl_map_free(w->orders);
    tl_map_free(w->products);
    free_writer(w);
    return rc;
  }
  *out = w;
  return TL_OK;
}

void tl_writer_stop(tl_writer *w) {
  if (!w) return;
  pthread_mutex_lock(&w->lock);
  w->stopping = 1;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  stop_syncer(w); /* answers what the writer handed over last */
  drop_snapshots(&w->snaps);
  tl_map_free(w->orders);
  tl_map_free(w->products);
  free_writer(w);
}

void tl_writer_submit(tl_writer *w, tl_cmd_request *req) {
  req->next = NULL;
  pthread_mutex_lock(&w->lock);
  if (w->stopping) {
    pthread_mutex_unlock(&w->lock);
    fail(req, 503, "SHUTTING_DOWN", "The server is shutting down.");
    if (req->on_done) req->on_done(req, req->on_done_arg);
    return;
  }
  if (w->q_tail) w->q_tail->next = req;
  else w->q_head = req;
  w->q_tail = req;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  if (req->on_done) return;
  while (sem_wait(&req->done) != 0) {
    /* EINTR: wait again */
  }
}
