/* tl_metrics.c: histograms. */
#include "util/tl_metrics.h"

#include <assert.h>

const double TL_HIST_SECONDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                  0.05,   0.1,     0.25,   0.5,   1,     2.5,   5,    10};
const int TL_HIST_SECONDS_N = sizeof TL_HIST_SECONDS / sizeof TL_HIST_SECONDS[0];
const double TL_HIST_BATCH[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const int TL_HIST_BATCH_N = sizeof TL_HIST_BATCH / sizeof TL_HIST_BATCH[0];

void tl_hist_init(tl_hist *h, const double *bounds, int n_bounds) {
  assert(n_bounds <= TL_HIST_MAX_BUCKETS);
  h->bounds = bounds;
  h->n_bounds = n_bounds;
  for (int i = 0; i <= TL_HIST_MAX_BUCKETS; i++) atomic_init(&h->counts[i], 0);
  atomic_init(&h->sum_micro, 0);
}

void tl_hist_observe(tl_hist *h, double value) {
  int i = 0;
  while (i < h->n_bounds && value > h->bounds[i]) i++;
  atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
  if (value > 0)
    atomic_fetch_add_explicit(&h->sum_micro, (uint64_t)(value * 1e6), memory_order_relaxed);
}

void tl_hist_render(tl_buf *b, const char *name, const char *labels, const tl_hist *h) {
  uint64_t cum = 0;
  const char *sep = labels[0] ? "," : "";
  for (int i = 0; i <= h->n_bounds; i++) {
    cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    if (i < h->n_bounds)
      tl_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, h->bounds[i],
                    (unsigned long long)cum);
    else
      tl_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                    (unsigned long long)cum);
  }
  double sum = (double)atomic_load_explicit(&h->sum_micro, memory_order_relaxed) / 1e6;
  if (labels[0]) {
    tl_buf_printf(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels,
                  (unsigned long long)cum);
  } else {
    tl_buf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)cum);
  }
}

double tl_hist_quantile(const tl_hist *h, double q) {
  uint64_t total = 0, counts[TL_HIST_MAX_BUCKETS + 1];
  for (int i = 0; i <= h->n_bounds; i++) {
    counts[i] = atomic_load_explicit(&h->counts[i], memory_order_relaxed);
    total += counts[i];
  }
  if (total == 0) return 0;
  double rank = q * (double)total, cum = 0;
  for (int i = 0; i <= h->n_bounds; i++) {
    if (cum + (double)counts[i] >= rank && counts[i] > 0) {
      double lo = i == 0 ? 0 : h->bounds[i - 1];
      double hi = i < h->n_bounds ? h->bounds[i] : h->bounds[h->n_bounds - 1];
      return lo + (hi - lo) * ((rank - cum) / (double)counts[i]);
    }
    cum += (double)counts[i];
  }
  return h->bounds[h->n_bounds - 1];
}
