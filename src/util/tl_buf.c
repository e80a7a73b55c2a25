/* tl_buf.c: growable buffer. */
#include "util/tl_buf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(tl_buf *b, size_t extra) {
  if (b->oom) return -1;
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->oom = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

void tl_buf_append_grow(tl_buf *b, const char *s, size_t n) {
  if (reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void tl_buf_printf(tl_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    tl_buf_append(b, small, (size_t)n);
    return;
  }
  if (reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* Bytes a JSON string literal must escape: control characters, '"' and '\\'. */
static const unsigned char ESCAPE[256] = {
    [0x00 ... 0x1f] = 1,
    ['"'] = 1,
    ['\\'] = 1,
};

/* Does any of the 8 bytes of x need an escape? (Bit tricks: a byte below 0x20, or equal to
 * '"' or '\\'; bytes from 0x80, UTF-8, never do.) */
static inline bool word_needs_escape(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t below_space = (x - ones * 0x20) & ~x & highs;
  uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
  uint64_t quote = (q - ones) & ~q & highs, backslash = (bs - ones) & ~bs & highs;
  return (below_space | quote | backslash) != 0;
}

void tl_buf_json_string_n(tl_buf *b, const char *s, size_t n) {
  static const char HEX[] = "0123456789ABCDEF"; /* as jansson writes \u escapes */
  tl_buf_append(b, "\"", 1);
  size_t run = 0; /* start of the bytes not yet copied */
  size_t i = 0;
  for (;;) {
    /* Skip 8 clean bytes at a time (ids, names: most strings need no escape at all). */
    while (i + 8 <= n) {
      uint64_t x;
      memcpy(&x, s + i, 8);
      if (word_needs_escape(x)) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = (unsigned char)s[i];
    if (!ESCAPE[c]) {
      i++;
      continue;
    }
    tl_buf_append(b, s + run, i - run);
    run = ++i;
    char e[6] = {'\\', (char)c, 0, 0, 0, 0};
    size_t len = 2;
    switch (c) {
    case '"':
    case '\\': break;
    case '\n': e[1] = 'n'; break;
    case '\r': e[1] = 'r'; break;
    case '\t': e[1] = 't'; break;
    case '\b': e[1] = 'b'; break;
    case '\f': e[1] = 'f'; break;
    default:
      e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = HEX[c >> 4], e[5] = HEX[c & 15];
      len = 6;
    }
    tl_buf_append(b, e, len);
  }
  tl_buf_append(b, s + run, n - run);
  tl_buf_append(b, "\"", 1);
}

void tl_buf_json_string(tl_buf *b, const char *s) { tl_buf_json_string_n(b, s, strlen(s)); }

size_t tl_utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (n < len) return 0;
  for (size_t k = 1; k < len; k++) {
    if ((s[k] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (s[k] & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

void tl_buf_free(tl_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}
