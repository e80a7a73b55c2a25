/*
 * tl_metrics.h: lock-free counters and fixed-bucket histograms, rendered in the Prometheus text
 * format. Recording is a few relaxed atomic adds, cheap enough for every request.
 */
#ifndef TL_METRICS_H
#define TL_METRICS_H

#include "util/tl_buf.h"

#include <stdatomic.h>
#include <stdint.h>

#define TL_HIST_MAX_BUCKETS 20

typedef struct tl_hist {
  const double *bounds; /* upper bounds, ascending; static */
  int n_bounds;
  _Atomic uint64_t counts[TL_HIST_MAX_BUCKETS + 1]; /* last: +Inf */
  _Atomic uint64_t sum_micro;                       /* sum of values x 1e6 */
} tl_hist;

extern const double TL_HIST_SECONDS[];  /* latency buckets, seconds */
extern const int TL_HIST_SECONDS_N;
extern const double TL_HIST_BATCH[];    /* group-commit batch sizes */
extern const int TL_HIST_BATCH_N;

void tl_hist_init(tl_hist *h, const double *bounds, int n_bounds);
void tl_hist_observe(tl_hist *h, double value);

/* Appends the _bucket/_sum/_count lines of h under name with extra labels (may be "" or
 * "command=\"x\""). */
void tl_hist_render(tl_buf *b, const char *name, const char *labels, const tl_hist *h);

/* Percentile estimate (0 < q < 1) from the buckets, by linear interpolation; 0 if empty. */
double tl_hist_quantile(const tl_hist *h, double q);

#endif
