/*
 * tl_log.h: the event log, the source of truth.
 *
 * An append-only sequence of events, each with a global position (1, 2, 3 ... with no gaps), a
 * stream and a per-stream version (1, 2, 3 ... with no gaps), a type, a schema version, JSON
 * data and JSON metadata, and the time it was recorded. Idempotency records (key -> stored
 * response) are written in the same transaction as the events they answer for. Snapshots of
 * folded aggregate states are kept beside the events, one per stream, outside the appends.
 *
 * One writer appends (tl_log_commit is called by one thread at a time); any number of readers
 * read through their own tl_log_reader handles. The storage sits behind a backend vtable
 * (tl_log_backend): SQLite now, NATS JetStream later.
 *
 * Durability is a step of its own, so that the writer can decide and commit the next batch
 * while the previous one is being made durable (a pipelined group commit):
 *   - tl_log_commit makes a batch atomic and visible to the writer's own reader, not durable;
 *   - tl_log_sync (another thread may call it, concurrently with commits) makes everything
 *     committed so far durable (SQLite: one fdatasync of the WAL) and only then publishes the
 *     new head and wakes tl_log_wait callers.
 * Every other reader (pool readers: the projector, the process managers, the HTTP lane) sees
 * events up to the durable head only, so no read model or process manager ever acts on an event
 * a power loss could take back. A failed commit leaves nothing visible. A failed sync leaves the
 * committed batches in an unknown state (the kernel may have dropped their pages): the caller
 * must stop writing (see tl_writer.c).
 */
#ifndef TL_LOG_H
#define TL_LOG_H

#include "util/tl_common.h"

#include <stdint.h>

typedef struct tl_log tl_log;
typedef struct tl_log_reader tl_log_reader;

/* An event to append. Strings are borrowed for the duration of the call. */
typedef struct tl_log_event_in {
  int64_t position; /* must be exactly head + 1, + 2, ... in batch order */
  const char *stream;
  int64_t version;  /* the stream's new version; (stream, version) is unique */
  const char *type;
  int schema_version;
  const char *data;     /* JSON text */
  const char *metadata; /* JSON text */
  int64_t recorded_ms;  /* 0: the batch's recording time (import keeps the original ones) */
} tl_log_event_in;

/* An idempotency record to store with the batch. Strings borrowed. */
typedef struct tl_log_idem_in {
  const char *key;
  const char *fingerprint; /* identifies the request (method, path, body) */
  int status;              /* HTTP status of the stored answer */
  const char *body;        /* the stored answer's body */
  int64_t position;
} tl_log_idem_in;

typedef struct tl_snapshot_in tl_snapshot_in;

typedef struct tl_log_batch {
  const tl_log_event_in *events;
  size_t n_events;
  const tl_log_idem_in *idem;
  size_t n_idem;
  int64_t recorded_ms; /* one recording time for the whole batch */
  /* Snapshots of states the batch's events (or earlier ones) produced, stored in the same
   * transaction, so durable exactly when those events are; best effort: if they cannot be
   * stored (fail point log.snapshot) the batch commits without them and *snaps_failed (when
   * not NULL) is set to 1. */
  const tl_snapshot_in *snaps;
  size_t n_snaps;
  int *snaps_failed;
} tl_log_batch;

/* An event read back. All strings are owned by the event; free with tl_log_event_clear. */
typedef struct tl_event {
  int64_t position;
  char *stream;
  int64_t version;
  char *type;
  int schema_version;
  char *data;
  char *metadata;
  int64_t recorded_ms;
} tl_event;

void tl_log_event_clear(tl_event *ev);

/* Called for each event read; return 0 to go on, non-zero to stop (that value is returned by
 * the read call). The event is valid only during the call. */
typedef int (*tl_event_fn)(void *arg, const tl_event *ev);

/* Lifts an event's data to the latest schema (see domain/upcast.h for the contract). */
typedef int (*tl_upcast_fn)(const char *type, int version, const char *data, char **out,
                            int *out_version);

/* Installs the upcaster every later read goes through (tl_log_read_stream, tl_log_read_all),
 * so that readers only see the latest schemas. Without one, reads return events as stored
 * (what `twinlane export` wants). Call before any reader is used. */
void tl_log_set_upcaster(tl_log *log, tl_upcast_fn fn);

typedef struct tl_idem_record {
  char fingerprint[65];
  int status;
  char *body; /* owned: free() */
  int64_t position;
} tl_idem_record;

/* A snapshot to store: a stream's folded state at a version (see "Snapshots" in
 * docs/architecture.md). Strings borrowed for the duration of the call. */
struct tl_snapshot_in {
  const char *stream;
  int64_t version;    /* the stream version the state reflects; its events are durable */
  int schema_version; /* the layout of state (TL_*_SNAPSHOT_SCHEMA) */
  const char *state;  /* the state as text */
};

/* A snapshot read back. state is owned: free(). */
typedef struct tl_snapshot {
  int64_t version;
  int schema_version;
  char *state;
} tl_snapshot;

typedef struct tl_log_opts {
  const char *dir; /* data directory; the log lives in <dir>/events.db */
} tl_log_opts;

/* Opens (creating if needed) the log. On error *out is NULL and err says why. */
int tl_log_open(tl_log **out, const tl_log_opts *opts, tl_err *err);
/* Closes the log; readers must be released first. NULL is a no-op. */
void tl_log_close(tl_log *log);

/* Commits a batch atomically, not yet durably (see the file comment): the writer's reader sees
 * it at once, other readers after the tl_log_sync that covers it. Returns 0, TL_E_CONFLICT (a
 * (stream, version) or position already exists: nothing written), or TL_E_IO (nothing
 * written; fail point log.append). Single caller at a time (the writer). */
int tl_log_commit(tl_log *log, const tl_log_batch *batch, tl_err *err);

/* Makes every batch committed before the call durable, then publishes the new head and wakes
 * tl_log_wait callers. *did_sync (may be NULL) says whether there was anything to sync (an
 * fsync ran). 0 or TL_E_IO: the durability of
 * the batches committed since the last successful sync is unknown, and the log must not be
 * written again (fail point log.fsync). One caller at a time; may run concurrently with
 * tl_log_commit. */
int tl_log_sync(tl_log *log, int *did_sync, tl_err *err);

/* tl_log_commit then tl_log_sync: one durable batch, for callers that do not pipeline (import,
 * tools, tests). */
int tl_log_append(tl_log *log, const tl_log_batch *batch, tl_err *err);

/* The position of the last durable event (0 for an empty log). Thread-safe, lock-free. */
int64_t tl_log_head(const tl_log *log);

/* The position of the last committed event (>= tl_log_head). For the writer. */
int64_t tl_log_committed(const tl_log *log);

/* Recording time of the event at position, if still in the in-memory window of recent events;
 * else -1. Thread-safe. */
int64_t tl_log_recorded_at(const tl_log *log, int64_t position);

/* Waits until head > after or timeout_ms elapse or tl_log_shutdown is called. Returns the head
 * at wake-up. */
int64_t tl_log_wait(tl_log *log, int64_t after, int timeout_ms);

/* Wakes every current tl_log_wait caller once (they return the unchanged head). */
void tl_log_wake(tl_log *log);

/* Wakes every waiter for good (shutdown). */
void tl_log_shutdown(tl_log *log);

/* Readers: each has its own connection and prepared statements. A reader is used by one
 * thread at a time. acquire takes one from a pool (creating it if needed); release returns it.
 * A pool reader returns events up to the durable head only (tl_log_head at the call). */
int tl_log_reader_acquire(tl_log *log, tl_log_reader **out, tl_err *err);
void tl_log_reader_release(tl_log *log, tl_log_reader *r);

/* Reads a stream's events with version >= from_version, oldest first, at most limit (<= 0:
 * all). Returns 0 (or the callback's non-zero value) or TL_E_IO. */
int tl_log_read_stream(tl_log_reader *r, const char *stream, int64_t from_version, int limit,
                       tl_event_fn fn, void *arg, tl_err *err);

/* Reads the global log from position from_position (inclusive), at most limit events. */
int tl_log_read_all(tl_log_reader *r, int64_t from_position, int limit, tl_event_fn fn, void *arg,
                    tl_err *err);

/* Groups the reads of r until tl_log_read_end into one read transaction: they see one snapshot
 * of the log and pay for one transaction instead of one each (SQLite: the WAL read lock's
 * fcntl calls). No append may run on the same connection in between (the writer reads its
 * batch's keys and aggregates between the two, then appends). Returns 0 or TL_E_IO; after an
 * error, reads still work, each on its own. */
int tl_log_read_begin(tl_log_reader *r, tl_err *err);
void tl_log_read_end(tl_log_reader *r);

/* Looks up an idempotency key. Returns 0 with *rec filled (caller frees rec->body),
 * TL_E_NOTFOUND, or TL_E_IO. */
int tl_log_idem_get(tl_log_reader *r, const char *key, tl_idem_record *rec, tl_err *err);

/* Deletes idempotency records created before before_ms. Writer thread only. */
int tl_log_idem_expire(tl_log *log, int64_t before_ms, tl_err *err);

/* Stores snapshots outside a batch (tools and tests; the writer stores them with its batches,
 * see tl_log_batch), each replacing its stream's previous one (later entries of snaps win), in
 * one atomic write, for versions whose events are already durable. The write is not waited for
 * to become durable (no fsync of its own; the next sync or checkpoint makes it durable), so a
 * crash may lose it, never half of it. Writer's thread only. Returns 0, or TL_E_IO with nothing
 * changed (fail point log.snapshot). */
int tl_log_snapshots_put(tl_log *log, const tl_snapshot_in *snaps, size_t n, tl_err *err);

/* The latest snapshot of stream, as stored: the caller checks its schema version and content.
 * Returns 0 with *out filled (caller frees out->state), TL_E_NOTFOUND, TL_E_NOMEM or TL_E_IO. */
int tl_log_snapshot_get(tl_log_reader *r, const char *stream, tl_snapshot *out, tl_err *err);

/* The writer's own reader (same connection as appends: sees its own commits, durable or not).
 * Writer thread only. */
tl_log_reader *tl_log_writer_reader(tl_log *log);

#endif
