/*
 * tl_handoff.c: see tl_handoff.h.
 */
#include "util/tl_handoff.h"

#include "util/tl_time.h"

#include <errno.h>
#include <time.h>

void tl_handoff_init(tl_handoff *h) {
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->callers, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&h->cond, &ca);
  pthread_condattr_destroy(&ca);
  h->pending = NULL;
  h->closed = 0;
}

void tl_handoff_destroy(tl_handoff *h) {
  pthread_cond_destroy(&h->cond);
  pthread_mutex_destroy(&h->callers);
  pthread_mutex_destroy(&h->lock);
}

int tl_handoff_run(tl_handoff *h, tl_job *job, int timeout_ms, void (*wake)(void *), void *wake_arg,
                   tl_err *err) {
  job->taken = job->done = 0;
  job->rc = TL_OK;
  struct timespec deadline;
  tl_deadline_in(&deadline, timeout_ms);
  pthread_mutex_lock(&h->callers);
  pthread_mutex_lock(&h->lock);
  int rc = TL_OK;
  if (h->closed) {
    rc = tl_err_set(err, TL_E_CLOSED, "the server is shutting down");
  } else {
    h->pending = job;
    if (wake) wake(wake_arg);
    while (!job->done) {
      /* Once taken the job is finished (bounded by storage); before, the deadline withdraws
       * it. */
      if (!job->taken && pthread_cond_timedwait(&h->cond, &h->lock, &deadline) == ETIMEDOUT &&
          !job->taken) {
        h->pending = NULL;
        rc = tl_err_set(err, TL_E_TIMEOUT, "the worker did not take the operation in time");
        break;
      }
      if (job->taken && !job->done) pthread_cond_wait(&h->cond, &h->lock);
    }
    if (job->done) {
      rc = job->rc;
      if (rc != TL_OK && err) *err = job->err;
    }
  }
  pthread_mutex_unlock(&h->lock);
  pthread_mutex_unlock(&h->callers);
  return rc;
}

tl_job *tl_handoff_take(tl_handoff *h) {
  pthread_mutex_lock(&h->lock);
  tl_job *job = h->pending;
  if (job) job->taken = 1;
  pthread_mutex_unlock(&h->lock);
  return job;
}

void tl_handoff_finish(tl_handoff *h, tl_job *job, int rc) {
  pthread_mutex_lock(&h->lock);
  job->rc = rc;
  job->done = 1;
  h->pending = NULL;
  pthread_cond_broadcast(&h->cond);
  pthread_mutex_unlock(&h->lock);
}

void tl_handoff_close(tl_handoff *h) {
  pthread_mutex_lock(&h->lock);
  h->closed = 1;
  if (h->pending && !h->pending->taken) { /* a job nobody will run */
    h->pending->rc = tl_err_set(&h->pending->err, TL_E_CLOSED, "the server is shutting down");
    h->pending->done = 1;
    h->pending = NULL;
    pthread_cond_broadcast(&h->cond);
  }
  pthread_mutex_unlock(&h->lock);
}
