/*
 * tl_writer.h: the command lane's single writer.
 *
 * One thread owns the write model (the aggregate cache) and the log's append side, in the
 * spirit of the LMAX business-logic processor. HTTP threads decode and validate commands in
 * parallel, then hand them to tl_writer_submit, which blocks until the command is decided and,
 * if accepted, durable. The writer drains every queued command into one batch: each is checked
 * against its idempotency key, its If-Match version and the business rules in order (later
 * commands see the state left by earlier ones in the same batch), and all accepted events and
 * idempotency records go to the log in one transaction (group commit). A syncer thread makes
 * committed batches durable with one fsync while the writer decides the next batch (pipelined;
 * tl_writer.c). Nobody is answered before the fsync that covers their batch; if a batch's
 * commit fails, every command in it fails with 503, nothing is acknowledged, and the cached
 * state of the aggregates it touched is dropped; if an fsync fails, the process exits with
 * TL_EXIT_SYNC_FAILED without answering the commands it covered.
 *
 * An aggregate missing from the cache is loaded from its latest snapshot and the events after
 * it (or from its whole stream); snapshots are taken every snapshot_every events of a stream
 * and stored after the commit that made those events durable (tl_writer.c says how).
 */
#ifndef TL_WRITER_H
#define TL_WRITER_H

#include "domain/domain.h"
#include "log/tl_log.h"

#include <semaphore.h>

typedef struct tl_writer tl_writer;

typedef struct tl_cmd_request {
  /* Input, owned by the submitter. cmd first, correlation_id right after it:
   * tl_cmd_request_init empties cmd and clears every byte from correlation_id on. */
  tl_cmd cmd;
  const char *correlation_id;
  const char *causation_id; /* the eventId that caused this command (process managers), or NULL */
  int64_t if_match;       /* expected aggregate version, or -1 for none */
  const char *idem_key;   /* NULL for none */
  char fingerprint[33];   /* hash of method, path and body (with idem_key) */

  /* Output, valid after tl_writer_submit returns. */
  int status;      /* HTTP status */
  char *body;      /* success: response body JSON text (malloc; submitter frees), else NULL */
  int64_t position, version;
  int replayed;    /* answered from a stored idempotency record */
  tl_problem problem; /* status >= 400: the error (submitter clears) */

  /* Completion: when set, called once from the writer thread after the output fields are
   * filled (the request may be freed by it); when NULL, tl_writer_submit blocks instead. */
  void (*on_done)(struct tl_cmd_request *req, void *arg);
  void *on_done_arg;

  /* Private to the writer. */
  sem_t done;
  struct tl_cmd_request *next;
  int n_events;
  struct tl_cmd_request *replay_of; /* an earlier request of the batch with the same key */
} tl_cmd_request;

#define TL_SNAPSHOT_EVERY_DEFAULT 500

/* Exit status of the server when an fsync of the log failed (see tl_writer.c). */
#define TL_EXIT_SYNC_FAILED 3

typedef struct tl_writer_opts {
  size_t order_cache_capacity; /* orders kept in memory between batches (LRU); 0: 100000 */
  int max_batch;               /* commands per group commit; 0: default 1024 */
  /* Events between snapshots of an aggregate's state; 0: TL_SNAPSHOT_EVERY_DEFAULT; negative:
   * snapshots off (none is written, stored ones are not read: every load folds the stream). */
  int snapshot_every;
} tl_writer_opts;

/* Starts the writer thread over log (borrowed; must outlive the writer). Aggregates are loaded
 * into its caches on first use. */
int tl_writer_start(tl_writer **out, tl_log *log, const tl_writer_opts *opts, tl_err *err);

/* Refuses new commands, finishes the queued ones, stops the thread and frees the writer.
 * NULL is a no-op. */
void tl_writer_stop(tl_writer *w);

/* Submits req (see the file comment). With req->on_done NULL, blocks until it is answered;
 * otherwise returns at once and on_done is called exactly once, from the writer thread or (when
 * the writer is stopping) from this call. Output fields are always filled. */
void tl_writer_submit(tl_writer *w, tl_cmd_request *req);

/* Initialises / releases a request's private and output parts. */
void tl_cmd_request_init(tl_cmd_request *req);
void tl_cmd_request_clear(tl_cmd_request *req);

/* Fingerprint of a request for idempotency: 32 hex chars over method, path and body. */
void tl_request_fingerprint(const char *method, const char *path, const char *body,
                            size_t body_len, char out[33]);

#endif
