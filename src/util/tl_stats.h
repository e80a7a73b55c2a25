/*
 * tl_stats.h: the server's metric instances (one process-wide set), updated by the write lane,
 * the read lane and the HTTP layer, rendered by GET /metrics.
 */
#ifndef TL_STATS_H
#define TL_STATS_H

#include "util/tl_metrics.h"

typedef enum { TL_OUTCOME_OK, TL_OUTCOME_REFUSED, TL_OUTCOME_ERROR, TL_OUTCOME__COUNT } tl_outcome;

typedef enum {
  TL_Q_ORDER,
  TL_Q_CUSTOMER_ORDERS,
  TL_Q_SEARCH,
  TL_Q_SALES_DAILY,
  TL_Q_PRODUCTS,
  TL_Q_PRODUCT,
  TL_Q_HISTORY,
  TL_Q_STATE,
  TL_Q_STREAM,
  TL_Q_LOG,
  TL_Q__COUNT
} tl_query_kind;

#define TL_STATS_MAX_COMMANDS 16

typedef struct tl_stats {
  _Atomic uint64_t commands[TL_STATS_MAX_COMMANDS][TL_OUTCOME__COUNT];
  tl_hist command_seconds[TL_STATS_MAX_COMMANDS];
  _Atomic uint64_t queries[TL_Q__COUNT][TL_OUTCOME__COUNT];
  tl_hist query_seconds[TL_Q__COUNT];
  _Atomic uint64_t events_appended;
  _Atomic uint64_t fsyncs;
  /* Queries answered from the read lane's view cache ([kind][1]) or the read model ([kind][0]):
   * order views, customer pages and searches (read/view_cache.h). */
  _Atomic uint64_t view_cache[TL_Q__COUNT][2];
  tl_hist batch_size;      /* commands per durable commit */
  /* Aggregate loads (writer cache misses) and snapshots, see docs/architecture.md. */
  _Atomic uint64_t loads_from_log;       /* full folds: no usable snapshot */
  _Atomic uint64_t loads_from_snapshot;  /* snapshot + tail */
  _Atomic uint64_t load_events;          /* events folded by loads (the tails, with snapshots) */
  _Atomic uint64_t snapshots_written;
  _Atomic uint64_t snapshots_ignored;    /* another schema version, unreadable, or inconsistent */
  _Atomic uint64_t snapshot_write_errors;
  tl_hist visible_lag;     /* event recorded -> committed in the read models, seconds */
} tl_stats;

extern tl_stats tl_g_stats;

void tl_stats_init(void);
const char *tl_outcome_name(tl_outcome o);
const char *tl_query_name(tl_query_kind q);
tl_outcome tl_outcome_of_status(int http_status);

#endif
