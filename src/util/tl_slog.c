/* tl_slog.c: JSON log lines on stderr. */
#include "util/tl_slog.h"

#include "util/tl_buf.h"
#include "util/tl_common.h"
#include "util/tl_time.h"

#include <stdarg.h>
#include <string.h>
#include <unistd.h>

static tl_slog_level min_level = TL_SLOG_INFO;
static const char *const NAMES[] = {"debug", "info", "warn", "error"};

void tl_slog_set_level(tl_slog_level min) {
  min_level = min;
}

int tl_slog_parse_level(const char *s, tl_slog_level *out) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, NAMES[i]) == 0) {
      *out = (tl_slog_level)i;
      return TL_OK;
    }
  return TL_E_INVALID;
}

int tl_slog_enabled(tl_slog_level level) {
  return level >= min_level;
}

void tl_slog(tl_slog_level level, const char *correlation_id, const char *msg, ...) {
  if (level < min_level) return;
  char ts[TL_ISO_LEN];
  tl_time_format(tl_now_ms(), ts);
  tl_buf b = {0};
  tl_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, NAMES[level]);
  tl_buf_json_string(&b, msg);
  if (correlation_id) {
    tl_buf_append(&b, ",\"correlationId\":", 17);
    tl_buf_json_string(&b, correlation_id);
  }
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    tl_buf_append(&b, ",", 1);
    tl_buf_json_string(&b, k);
    tl_buf_append(&b, ":", 1);
    tl_buf_json_string(&b, v ? v : "");
  }
  va_end(ap);
  tl_buf_append(&b, "}\n", 2);
  if (!b.oom) {
    ssize_t w = write(STDERR_FILENO, b.data, b.len);
    (void)w; /* nothing sensible to do if stderr is gone */
  }
  tl_buf_free(&b);
}
