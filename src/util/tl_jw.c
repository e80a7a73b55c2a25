/* tl_jw.c: streaming JSON writer (see tl_jw.h). */
#include "util/tl_jw.h"

#include "util/tl_money.h"
#include "util/tl_time.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* The separator a value or key needs where it starts: none after a key or first in its
 * container, else a comma. */
static void begin_item(tl_jw *w) {
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (w->depth == 0) return;
  uint32_t bit = 1u << (w->depth - 1);
  if (w->has_member & bit)
    tl_buf_append(&w->buf, ",", 1);
  else
    w->has_member |= bit;
}

static void open_container(tl_jw *w, char c) {
  assert(w->depth < TL_JW_MAX_DEPTH);
  begin_item(w);
  tl_buf_append(&w->buf, &c, 1);
  w->depth++;
  uint32_t bit = 1u << (w->depth - 1);
  w->has_member &= ~bit;
  if (c == '[')
    w->is_array |= bit;
  else
    w->is_array &= ~bit;
}

void tl_jw_object(tl_jw *w) {
  open_container(w, '{');
}

void tl_jw_array(tl_jw *w) {
  open_container(w, '[');
}

void tl_jw_end(tl_jw *w) {
  assert(w->depth > 0 && !w->after_key);
  uint32_t bit = 1u << (w->depth - 1);
  char c = (w->is_array & bit) ? ']' : '}';
  w->depth--;
  tl_buf_append(&w->buf, &c, 1);
}

void tl_jw_key_quoted(tl_jw *w, const char *quoted, size_t n) {
  assert(!w->after_key);
  assert(n >= 3 && quoted[0] == '"' && quoted[n - 1] == ':');
  begin_item(w);
  tl_buf_append(&w->buf, quoted, n);
  w->after_key = true;
}

void tl_jw_string_n(tl_jw *w, const char *s, size_t n) {
  begin_item(w);
  tl_buf_json_string_n(&w->buf, s, n);
}

void tl_jw_string(tl_jw *w, const char *s) {
  tl_jw_string_n(w, s, strlen(s));
}

void tl_jw_int(tl_jw *w, int64_t v) {
  begin_item(w);
  char tmp[24];
  char *p = tmp + sizeof tmp;
  uint64_t a = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
  do {
    *--p = (char)('0' + a % 10);
    a /= 10;
  } while (a);
  if (v < 0) *--p = '-';
  tl_buf_append(&w->buf, p, (size_t)(tmp + sizeof tmp - p));
}

void tl_jw_bool(tl_jw *w, bool v) {
  begin_item(w);
  if (v)
    tl_buf_append(&w->buf, "true", 4);
  else
    tl_buf_append(&w->buf, "false", 5);
}

void tl_jw_null(tl_jw *w) {
  begin_item(w);
  tl_buf_append(&w->buf, "null", 4);
}

void tl_jw_money(tl_jw *w, int64_t minor) {
  char tmp[40];
  tl_money_format(minor, tmp, sizeof tmp);
  tl_jw_raw(w, tmp, strlen(tmp));
}

void tl_jw_time(tl_jw *w, int64_t ms) {
  char iso[TL_ISO_LEN];
  tl_time_format(ms, iso);
  begin_item(w);
  tl_buf_append(&w->buf, "\"", 1);
  tl_buf_append(&w->buf, iso, strlen(iso));
  tl_buf_append(&w->buf, "\"", 1);
}

void tl_jw_raw(tl_jw *w, const char *json, size_t n) {
  begin_item(w);
  tl_buf_append(&w->buf, json, n);
}

void tl_jw_raw_members(tl_jw *w, const char *members, size_t n) {
  if (n == 0) return;
  begin_item(w); /* the comma after earlier members, and the object now holds one */
  tl_buf_append(&w->buf, members, n);
}

void tl_jw_json(tl_jw *w, const json_t *j) {
  begin_item(w);
  if (!tl_json_dump_into(&w->buf, j)) w->buf.oom = 1;
}

bool tl_jw_failed(const tl_jw *w) {
  return w->buf.oom != 0;
}

char *tl_jw_take(tl_jw *w) {
  char *s = w->buf.oom ? NULL : w->buf.data;
  if (!s) tl_buf_free(&w->buf);
  memset(w, 0, sizeof *w);
  return s;
}

void tl_jw_free(tl_jw *w) {
  tl_buf_free(&w->buf);
  memset(w, 0, sizeof *w);
}
