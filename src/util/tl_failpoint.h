/*
 * tl_failpoint.h: named fault-injection points.
 *
 * Code that can fail in production (a projection's apply, a saga step, an append, an fsync)
 * asks tl_fp("log.fsync") at that spot; a non-zero answer means "fail here now, as the real
 * fault would". Tests arm points with actions:
 *
 *   error      every hit fails
 *   error*N    the first N hits fail (N >= 1), later hits pass
 *   delay:MS   every hit sleeps MS milliseconds (0..60000), then passes
 *   off        disarmed (removes the point)
 *
 * from TWINLANE_FAILPOINTS="point=action;point=action" at start-up, or at run time through the
 * admin API when the server runs with --enable-failpoints. Names follow known templates
 * (tl_fp_known); "*" stands for one projection or process-manager name.
 *
 * Cost when nothing is armed: one relaxed atomic load per hit.
 */
#ifndef TL_FAILPOINT_H
#define TL_FAILPOINT_H

#include "util/tl_common.h"

#include <stdatomic.h>
#include <stdint.h>

#define TL_FP_NAME_MAX 64   /* a point's name, with its NUL */
#define TL_FP_ACTION_MAX 32 /* an action's text, with its NUL */
#define TL_FP_MAX 32        /* armed points at once */

extern _Atomic int tl_fp_armed; /* number of armed points */

/* The slow path of tl_fp: looks the point up, counts the hit, sleeps for delays. */
int tl_fp_eval(const char *point);

/* 1 when the caller must fail at `point` now, else 0 (possibly after a delay). */
static inline int tl_fp(const char *point) {
  return atomic_load_explicit(&tl_fp_armed, memory_order_relaxed) ? tl_fp_eval(point) : 0;
}

/* Is `point` a name twinlane has (log.append, log.commit, log.fsync, log.snapshot,
 * projection.<name>.apply, projection.<name>.rebuild, read.attach, read.commit, read.reconcile,
 * saga.<name>.step)? Names of
 * projections and process managers are not checked here. */
int tl_fp_known(const char *point);

/* Arms (or, with "off", disarms) one point. TL_E_INVALID with a message for an unknown point, a
 * malformed action, or more than TL_FP_MAX points; nothing changes then. */
int tl_fp_set(const char *point, const char *action, tl_err *err);

/* Applies "point=action;point=action..." (spaces around items allowed, empty items skipped):
 * all of it, or nothing when any item is invalid. */
int tl_fp_configure(const char *spec, tl_err *err);

/* Disarms every point. */
void tl_fp_clear_all(void);

typedef struct tl_fp_info {
  char point[TL_FP_NAME_MAX];
  char action[TL_FP_ACTION_MAX]; /* as armed, e.g. "error*3" */
  uint64_t hits;                 /* times the point was reached while armed */
  uint64_t fired;                /* of which failed */
} tl_fp_info;

/* Copies up to max armed points into out (in arming order); returns how many. */
int tl_fp_list(tl_fp_info *out, int max);

/* The armed point named `point`; TL_E_NOTFOUND when it is not armed. */
int tl_fp_get(const char *point, tl_fp_info *out);

#endif
