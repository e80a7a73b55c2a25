/*
 * tl_handoff.h: hands one job at a time to a worker thread and waits for its result.
 *
 * The projector and each process-manager runner own a handoff: an operator's request (a DLQ
 * operation, a rebuild's swap) posts a job, wakes the worker and waits; the worker takes it
 * between two batches, runs it with its own connection, and finishes it. A job the worker has
 * not taken when the deadline passes is withdrawn (nothing happened); once taken it is always
 * finished. A worker that exits closes its handoff: a pending job and later ones get
 * TL_E_CLOSED.
 */
#ifndef TL_HANDOFF_H
#define TL_HANDOFF_H

#include "util/tl_common.h"

#include <pthread.h>

/* Embedded first in the caller's job struct. */
typedef struct tl_job {
  int taken, done, rc;
  tl_err err; /* the worker's message when rc != 0 */
} tl_job;

typedef struct tl_handoff {
  pthread_mutex_t lock; /* guards pending and closed (cond: taken/done) */
  pthread_cond_t cond;
  pthread_mutex_t callers; /* one job at a time */
  tl_job *pending;
  int closed;
} tl_handoff;

void tl_handoff_init(tl_handoff *h);
void tl_handoff_destroy(tl_handoff *h);

/* Posts job, calls wake(wake_arg) so that an idle worker looks, and waits: the job's rc (its
 * message in *err), TL_E_TIMEOUT if the worker did not take it within timeout_ms, or
 * TL_E_CLOSED. */
int tl_handoff_run(tl_handoff *h, tl_job *job, int timeout_ms, void (*wake)(void *), void *wake_arg,
                   tl_err *err);

/* Worker side: the pending job, now taken (NULL if none), and its completion. */
tl_job *tl_handoff_take(tl_handoff *h);
void tl_handoff_finish(tl_handoff *h, tl_job *job, int rc);

/* Worker side, when it exits. */
void tl_handoff_close(tl_handoff *h);

#endif
