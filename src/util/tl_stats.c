/* tl_stats.c: the process-wide metric instances. */
#include "util/tl_stats.h"

tl_stats tl_g_stats;

void tl_stats_init(void) {
  for (int i = 0; i < TL_STATS_MAX_COMMANDS; i++) {
    for (int o = 0; o < TL_OUTCOME__COUNT; o++) atomic_init(&tl_g_stats.commands[i][o], 0);
    tl_hist_init(&tl_g_stats.command_seconds[i], TL_HIST_SECONDS, TL_HIST_SECONDS_N);
  }
  for (int i = 0; i < TL_Q__COUNT; i++) {
    for (int o = 0; o < TL_OUTCOME__COUNT; o++) atomic_init(&tl_g_stats.queries[i][o], 0);
    tl_hist_init(&tl_g_stats.query_seconds[i], TL_HIST_SECONDS, TL_HIST_SECONDS_N);
    atomic_init(&tl_g_stats.view_cache[i][0], 0);
    atomic_init(&tl_g_stats.view_cache[i][1], 0);
  }
  atomic_init(&tl_g_stats.events_appended, 0);
  atomic_init(&tl_g_stats.fsyncs, 0);
  atomic_init(&tl_g_stats.loads_from_log, 0);
  atomic_init(&tl_g_stats.loads_from_snapshot, 0);
  atomic_init(&tl_g_stats.load_events, 0);
  atomic_init(&tl_g_stats.snapshots_written, 0);
  atomic_init(&tl_g_stats.snapshots_ignored, 0);
  atomic_init(&tl_g_stats.snapshot_write_errors, 0);
  tl_hist_init(&tl_g_stats.batch_size, TL_HIST_BATCH, TL_HIST_BATCH_N);
  tl_hist_init(&tl_g_stats.visible_lag, TL_HIST_SECONDS, TL_HIST_SECONDS_N);
}

const char *tl_outcome_name(tl_outcome o) {
  static const char *const N[] = {"ok", "refused", "error"};
  return (unsigned)o < TL_OUTCOME__COUNT ? N[o] : "error";
}

const char *tl_query_name(tl_query_kind q) {
  static const char *const N[TL_Q__COUNT] = {"order",    "customer_orders", "search", "sales_daily",
                                             "products", "product",         "history", "state",
                                             "stream",   "log"};
  return (unsigned)q < TL_Q__COUNT ? N[q] : "unknown";
}

tl_outcome tl_outcome_of_status(int http_status) {
  if (http_status < 400) return TL_OUTCOME_OK;
  if (http_status < 500) return TL_OUTCOME_REFUSED;
  return TL_OUTCOME_ERROR;
}
