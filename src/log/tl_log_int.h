/*
 * tl_log_int.h: the storage backend interface behind tl_log (like SQLite's VFS).
 *
 * The generic layer (tl_log.c) owns the head position, waiting, the window of recent recording
 * times and the reader pool; a backend only stores and reads. Backends: log_sqlite.c.
 */
#ifndef TL_LOG_INT_H
#define TL_LOG_INT_H

#include "log/tl_log.h"

typedef struct tl_log_backend {
  const char *name;
  /* Opens storage; sets *impl and the current head position. */
  int (*open)(void **impl, const tl_log_opts *opts, int64_t *head, tl_err *err);
  void (*close)(void *impl);
  /* Atomic append, visible on the writer's connection, not necessarily durable; TL_E_CONFLICT
   * or TL_E_IO leave nothing written. */
  int (*append)(void *impl, const tl_log_batch *batch, tl_err *err);
  /* Makes every append that returned before the call durable. May run on another thread than
   * append, concurrently with it. */
  int (*sync)(void *impl, tl_err *err);
  int (*idem_expire)(void *impl, int64_t before_ms, tl_err *err);
  /* Readers: an independent read handle. */
  int (*reader_open)(void *impl, void **rimpl, tl_err *err);
  void (*reader_close)(void *rimpl);
  /* The read handle that shares the writer's connection. */
  void *(*writer_reader)(void *impl);
  int (*read_stream)(void *rimpl, const char *stream, int64_t from_version, int limit,
                     tl_event_fn fn, void *arg, tl_err *err);
  int (*read_all)(void *rimpl, int64_t from_position, int limit, tl_event_fn fn, void *arg,
                  tl_err *err);
  int (*idem_get)(void *rimpl, const char *key, tl_idem_record *rec, tl_err *err);
  /* Optional (NULL: every read stands alone): the reads of a handle between begin and end
   * share one snapshot. */
  int (*read_begin)(void *rimpl, tl_err *err);
  void (*read_end)(void *rimpl);
  /* Snapshots: put replaces each stream's snapshot in one atomic write that need not be
   * durable yet; get reads the stored one (TL_E_NOTFOUND when there is none). */
  int (*snapshots_put)(void *impl, const tl_snapshot_in *snaps, size_t n, tl_err *err);
  int (*snapshot_get)(void *rimpl, const char *stream, tl_snapshot *out, tl_err *err);
} tl_log_backend;

extern const tl_log_backend tl_log_sqlite_backend;

#endif
