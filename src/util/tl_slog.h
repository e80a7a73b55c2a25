/*
 * tl_slog.h: structured log lines, one JSON object per line on stderr:
 *   {"ts":"2026-11-22T10:30:00.123Z","level":"info","msg":"...","correlationId":"...",...}
 * Lines are written with a single write(2) so concurrent threads never interleave.
 */
#ifndef TL_SLOG_H
#define TL_SLOG_H

typedef enum { TL_SLOG_DEBUG, TL_SLOG_INFO, TL_SLOG_WARN, TL_SLOG_ERROR } tl_slog_level;

void tl_slog_set_level(tl_slog_level min);
int tl_slog_parse_level(const char *s, tl_slog_level *out); /* 0 or TL_E_INVALID */
int tl_slog_enabled(tl_slog_level level);

/* Logs msg with optional correlation id (NULL: none) and extra members given as alternating
 * key/value C strings ending with NULL: tl_slog(TL_SLOG_INFO, cid, "command done",
 * "command", "place_order", "status", "201", NULL). Values are JSON-escaped strings. */
void tl_slog(tl_slog_level level, const char *correlation_id, const char *msg, ...)
    __attribute__((sentinel));

#endif
