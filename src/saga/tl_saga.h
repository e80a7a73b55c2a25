/*
 * tl_saga.h: the process-manager (saga) runtime.
 *
 * A process manager follows the log like a projection and answers events with commands. The
 * runtime gives each one a thread, a checkpoint and a place for per-instance state in
 * <dir>/saga.db, and issues its commands through the normal write lane:
 *
 *   1. read the next batch of events after the checkpoint;
 *   2. in one saga.db transaction, hand each event to the manager's `handle`, which updates its
 *      instance state and asks for commands (tl_pm_command);
 *   3. submit every command to the writer and wait until all are answered (durable or refused);
 *   4. move the checkpoint and COMMIT. On a storage failure (503) roll back and retry the same
 *      batch with exponential backoff.
 *
 * A crash between 3 and 4 replays the batch from the old state, so `handle` asks for the same
 * commands again; each carries an idempotency key derived from the causing event's id (and a
 * suffix the manager chooses), so the writer answers a repeat from its idempotency records and
 * nothing is applied twice. Every event a command causes records the causing event's id as
 * causationId and keeps its correlation id.
 *
 * Writing another process manager: define a tl_pm_def (name, version, schema, handle), list it
 * in tl_process_managers (order_saga.c shows one), keep every decision a function of the event
 * and the instance state in saga.db, and give each command a distinct key suffix per event.
 */
#ifndef TL_SAGA_H
#define TL_SAGA_H

#include "domain/domain.h"
#include "log/tl_log.h"
#include "util/tl_db.h"
#include "util/tl_jv.h"
#include "write/tl_writer.h"

#include <jansson.h>

typedef struct tl_pm_batch tl_pm_batch;

typedef struct tl_pm_def {
  const char *name;
  int version;
  const char *schema_sql; /* instance tables (IF NOT EXISTS) */
  /* Handles one event inside the runtime's open saga.db transaction. Returns 0 or a TL_E code
   * (the batch is then retried). */
  int (*handle)(tl_db *db, const tl_event *ev, const tl_jv *data, tl_pm_batch *out, tl_err *err);
  /* The event types handle wants, NULL-terminated; the runtime steps over the others without
   * parsing them. NULL: every event. */
  const char *const *types;
} tl_pm_def;

extern const tl_pm_def *const tl_process_managers[];
extern const int tl_process_managers_count;

/* Asks for a command of kind on aggregate `target` (product or order id) caused by the event
 * being handled; key_suffix makes its idempotency key unique among that event's commands.
 * Returns the command to fill in (order_id, quantity, text), or NULL when out of memory. */
tl_cmd *tl_pm_command(tl_pm_batch *b, tl_cmd_kind kind, const char *target,
                      const char *key_suffix);

/* For unit tests of a manager's handle: a batch outside the runtime. tl_pm_batch_event sets the
 * causing event's id and correlation id that the next commands take. */
tl_pm_batch *tl_pm_batch_new(void);
void tl_pm_batch_free(tl_pm_batch *b);
void tl_pm_batch_event(tl_pm_batch *b, const char *event_id, const char *correlation_id);
size_t tl_pm_batch_count(const tl_pm_batch *b);
/* The i-th command asked for (idem_key, causation_id, correlation_id and cmd filled). */
const tl_cmd_request *tl_pm_batch_get(const tl_pm_batch *b, size_t i);

typedef struct tl_saga tl_saga;

typedef struct tl_pm_status {
  const char *name;
  int64_t position, lag_events, lag_ms;
  uint64_t commands, retries;
  int64_t dlq_depth; /* events whose step was parked */
} tl_pm_status;

/* How a failing step is retried; 0 fields take the defaults (200 ms, 30 s, 8 attempts). A step
 * (the manager's handle on one event) that fails `retry_attempts` times is parked in pm_dlq
 * and the manager goes on with the next event. Commands that cannot be made durable (5xx) are
 * storage trouble, not a failing step: they are retried without limit. */
typedef struct tl_saga_opts {
  int retry_base_ms, retry_cap_ms, retry_attempts;
} tl_saga_opts;

/* Opens <dir>/saga.db and starts one thread per process manager. log and writer are borrowed
 * and must outlive the runtime. opts may be NULL. */
int tl_saga_start(tl_saga **out, tl_log *log, tl_writer *writer, const char *dir,
                  const tl_saga_opts *opts, tl_err *err);

typedef struct tl_saga_dlq_result {
  int found, applied, failed, dropped;
} tl_saga_dlq_result;

/* Retries (drop 0: re-runs the step against the manager's current state, with the same
 * idempotency keys, and removes it once its commands are durable) or drops (drop 1) the parked
 * step `id`, on its manager's thread, and waits. found 0 when no step has this id. TL_E_TIMEOUT
 * if the manager did not take it within timeout_ms (nothing happened), TL_E_CLOSED at
 * shutdown. */
int tl_saga_dlq_op(tl_saga *s, int drop, int64_t id, int timeout_ms, tl_saga_dlq_result *out,
                   tl_err *err);

/* Parked steps of every manager, oldest first, at most limit, as a JSON array of
 * {id, processManager, position, stream, type, error, attempts, firstFailedAt, lastFailedAt}
 * (new reference), read on a connection of its own; NULL on a storage error. */
json_t *tl_saga_dlq(tl_saga *s, int limit, tl_err *err);
/* Stops the threads (finishing the batch in flight) and frees. NULL is a no-op. */
void tl_saga_stop(tl_saga *s);
/* Fills up to max statuses; returns the number of process managers. */
int tl_saga_status(tl_saga *s, tl_pm_status *out, int max);

#endif
