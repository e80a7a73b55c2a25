/* metrics.c: the Prometheus text of GET /metrics. */
#include "http/http_int.h"

#include "domain/domain.h"
#include "util/tl_stats.h"

#include <stdlib.h>

_Static_assert(TL_CMD__COUNT <= TL_STATS_MAX_COMMANDS, "tl_g_stats has a row per command kind");

char *tl_metrics_text(tl_app *app) {
  tl_buf b = {0};
  char labels[128];

  tl_buf_printf(&b, "# HELP tl_commands_total Commands handled, by command and outcome.\n"
                    "# TYPE tl_commands_total counter\n");
  for (int k = 0; k < TL_CMD__COUNT; k++)
    for (int o = 0; o < TL_OUTCOME__COUNT; o++)
      tl_buf_printf(&b, "tl_commands_total{command=\"%s\",outcome=\"%s\"} %llu\n",
                    tl_cmd_name((tl_cmd_kind)k), tl_outcome_name((tl_outcome)o),
                    (unsigned long long)atomic_load(&tl_g_stats.commands[k][o]));
  tl_buf_printf(&b, "# HELP tl_command_duration_seconds Command latency, parse to answer.\n"
                    "# TYPE tl_command_duration_seconds histogram\n");
  for (int k = 0; k < TL_CMD__COUNT; k++) {
    snprintf(labels, sizeof labels, "command=\"%s\"", tl_cmd_name((tl_cmd_kind)k));
    tl_hist_render(&b, "tl_command_duration_seconds", labels, &tl_g_stats.command_seconds[k]);
  }

  tl_buf_printf(&b, "# HELP tl_queries_total Queries handled, by query and outcome.\n"
                    "# TYPE tl_queries_total counter\n");
  for (int q = 0; q < TL_Q__COUNT; q++)
    for (int o = 0; o < TL_OUTCOME__COUNT; o++)
      tl_buf_printf(&b, "tl_queries_total{query=\"%s\",outcome=\"%s\"} %llu\n",
                    tl_query_name((tl_query_kind)q), tl_outcome_name((tl_outcome)o),
                    (unsigned long long)atomic_load(&tl_g_stats.queries[q][o]));
  tl_buf_printf(&b, "# HELP tl_query_duration_seconds Query latency, parse to answer.\n"
                    "# TYPE tl_query_duration_seconds histogram\n");
  for (int q = 0; q < TL_Q__COUNT; q++) {
    snprintf(labels, sizeof labels, "query=\"%s\"", tl_query_name((tl_query_kind)q));
    tl_hist_render(&b, "tl_query_duration_seconds", labels, &tl_g_stats.query_seconds[q]);
  }

  int64_t head = tl_log_head(app->log);
  tl_buf_printf(
      &b,
      "# HELP tl_log_position Position of the last durable event.\n"
      "# TYPE tl_log_position gauge\ntl_log_position %lld\n"
      "# HELP tl_log_committed_position Position of the last committed event; ahead of "
      "tl_log_position while an fsync runs.\n"
      "# TYPE tl_log_committed_position gauge\ntl_log_committed_position %lld\n"
      "# HELP tl_events_appended_total Events appended since start.\n"
      "# TYPE tl_events_appended_total counter\ntl_events_appended_total %llu\n"
      "# HELP tl_fsyncs_total fsyncs of the log since start; each makes every batch "
      "committed before it durable.\n"
      "# TYPE tl_fsyncs_total counter\ntl_fsyncs_total %llu\n"
      "# HELP tl_group_commit_batch_size Commands that appended events, per group commit.\n"
      "# TYPE tl_group_commit_batch_size histogram\n",
      (long long)head, (long long)tl_log_committed(app->log),
      (unsigned long long)atomic_load(&tl_g_stats.events_appended),
      (unsigned long long)atomic_load(&tl_g_stats.fsyncs));
  tl_hist_render(&b, "tl_group_commit_batch_size", "", &tl_g_stats.batch_size);
  tl_buf_printf(&b,
                "# HELP tl_view_cache_total Queries answered from the in-memory view cache "
                "(hit) or the read model (miss), by query.\n"
                "# TYPE tl_view_cache_total counter\n");
  static const tl_query_kind CACHED[] = {TL_Q_ORDER, TL_Q_CUSTOMER_ORDERS, TL_Q_SEARCH};
  for (size_t i = 0; i < sizeof CACHED / sizeof CACHED[0]; i++)
    for (int hit = 1; hit >= 0; hit--)
      tl_buf_printf(&b, "tl_view_cache_total{query=\"%s\",result=\"%s\"} %llu\n",
                    tl_query_name(CACHED[i]), hit ? "hit" : "miss",
                    (unsigned long long)atomic_load(&tl_g_stats.view_cache[CACHED[i]][hit]));
  tl_buf_printf(
      &b,
      "# HELP tl_aggregate_loads_total Aggregates loaded into the writer's cache, by source: a "
      "full fold of the log, or a snapshot and the events after it.\n"
      "# TYPE tl_aggregate_loads_total counter\n"
      "tl_aggregate_loads_total{from=\"log\"} %llu\ntl_aggregate_loads_total{from=\"snapshot\"} "
      "%llu\n"
      "# HELP tl_aggregate_load_events_total Events folded by aggregate loads.\n"
      "# TYPE tl_aggregate_load_events_total counter\ntl_aggregate_load_events_total %llu\n"
      "# HELP tl_snapshots_written_total Aggregate snapshots stored.\n"
      "# TYPE tl_snapshots_written_total counter\ntl_snapshots_written_total %llu\n"
      "# HELP tl_snapshots_ignored_total Stored snapshots not used (another schema version, "
      "unreadable, or not matching the log): the stream was folded in full.\n"
      "# TYPE tl_snapshots_ignored_total counter\ntl_snapshots_ignored_total %llu\n"
      "# HELP tl_snapshot_write_errors_total Snapshot writes that failed (commands are not "
      "affected).\n"
      "# TYPE tl_snapshot_write_errors_total counter\ntl_snapshot_write_errors_total %llu\n",
      (unsigned long long)atomic_load(&tl_g_stats.loads_from_log),
      (unsigned long long)atomic_load(&tl_g_stats.loads_from_snapshot),
      (unsigned long long)atomic_load(&tl_g_stats.load_events),
      (unsigned long long)atomic_load(&tl_g_stats.snapshots_written),
      (unsigned long long)atomic_load(&tl_g_stats.snapshots_ignored),
      (unsigned long long)atomic_load(&tl_g_stats.snapshot_write_errors));

  tl_proj_status st[16];
  int n = tl_read_status(app->read, st, 16);
  static const char *const HEADS[] = {
      "# HELP tl_projection_position Log position applied by the projection.\n"
      "# TYPE tl_projection_position gauge\n",
      "# HELP tl_projection_lag_events Events the projection has not applied yet.\n"
      "# TYPE tl_projection_lag_events gauge\n",
      "# HELP tl_projection_lag_seconds Age of the oldest event the projection has not applied.\n"
      "# TYPE tl_projection_lag_seconds gauge\n",
      "# HELP tl_projection_dlq_depth Events parked in the projection's dead-letter queue.\n"
      "# TYPE tl_projection_dlq_depth gauge\n",
      "# HELP tl_projection_retries_total Failed applications of an event, retried or parked.\n"
      "# TYPE tl_projection_retries_total counter\n",
      "# HELP tl_projection_tidy_steps_total Housekeeping steps run while the log is quiet"
      " (orders: merges of the full-text index).\n"
      "# TYPE tl_projection_tidy_steps_total counter\n"};
  for (int m = 0; m < 6; m++) {
    tl_buf_printf(&b, "%s", HEADS[m]);
    for (int i = 0; i < n && i < 16; i++) {
      switch (m) {
      case 0: tl_buf_printf(&b, "tl_projection_position{projection=\"%s\"} %lld\n", st[i].name, (long long)st[i].position); break;
      case 1: tl_buf_printf(&b, "tl_projection_lag_events{projection=\"%s\"} %lld\n", st[i].name, (long long)st[i].lag_events); break;
      case 2: tl_buf_printf(&b, "tl_projection_lag_seconds{projection=\"%s\"} %.3f\n", st[i].name, (double)st[i].lag_ms / 1000.0); break;
      case 3: tl_buf_printf(&b, "tl_projection_dlq_depth{projection=\"%s\"} %lld\n", st[i].name, (long long)st[i].dlq_depth); break;
      case 4:
        tl_buf_printf(&b, "tl_projection_retries_total{projection=\"%s\"} %llu\n", st[i].name,
                      (unsigned long long)st[i].retries);
        break;
      default:
        tl_buf_printf(&b, "tl_projection_tidy_steps_total{projection=\"%s\"} %llu\n", st[i].name,
                      (unsigned long long)st[i].tidy_steps);
        break;
      }
    }
  }
  tl_pm_status pm[8];
  int npm = tl_saga_status(app->saga, pm, 8);
  tl_buf_printf(&b, "# HELP tl_process_manager_position Log position a process manager has "
                    "handled.\n# TYPE tl_process_manager_position gauge\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_position{name=\"%s\"} %lld\n", pm[i].name,
                  (long long)pm[i].position);
  tl_buf_printf(&b, "# HELP tl_process_manager_lag_events Events not handled yet.\n"
                    "# TYPE tl_process_manager_lag_events gauge\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_lag_events{name=\"%s\"} %lld\n", pm[i].name,
                  (long long)pm[i].lag_events);
  tl_buf_printf(&b, "# HELP tl_process_manager_lag_seconds Age of the oldest event not handled "
                    "yet.\n# TYPE tl_process_manager_lag_seconds gauge\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_lag_seconds{name=\"%s\"} %.3f\n", pm[i].name,
                  (double)pm[i].lag_ms / 1000.0);
  tl_buf_printf(&b, "# HELP tl_process_manager_commands_total Commands issued.\n"
                    "# TYPE tl_process_manager_commands_total counter\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_commands_total{name=\"%s\"} %llu\n", pm[i].name,
                  (unsigned long long)pm[i].commands);
  tl_buf_printf(&b, "# HELP tl_process_manager_retries_total Batches retried after a failure.\n"
                    "# TYPE tl_process_manager_retries_total counter\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_retries_total{name=\"%s\"} %llu\n", pm[i].name,
                  (unsigned long long)pm[i].retries);
  tl_buf_printf(&b, "# HELP tl_process_manager_dlq_depth Steps parked after failing too often.\n"
                    "# TYPE tl_process_manager_dlq_depth gauge\n");
  for (int i = 0; i < npm && i < 8; i++)
    tl_buf_printf(&b, "tl_process_manager_dlq_depth{name=\"%s\"} %lld\n", pm[i].name,
                  (long long)pm[i].dlq_depth);
  tl_buf_printf(&b, "# HELP tl_projection_visible_lag_seconds Event recorded to committed in "
                    "the read models.\n# TYPE tl_projection_visible_lag_seconds histogram\n");
  tl_hist_render(&b, "tl_projection_visible_lag_seconds", "", &tl_g_stats.visible_lag);
  if (b.oom) {
    tl_buf_free(&b);
    return NULL;
  }
  return b.data;
}
