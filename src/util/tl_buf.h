/* tl_buf.h: a growable byte buffer for building text (metrics, log lines). */
#ifndef TL_BUF_H
#define TL_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct tl_buf {
  char *data; /* owned, always NUL-terminated when len > 0 or after any append */
  size_t len, cap;
  int oom;    /* set once an allocation failed; later appends are dropped */
} tl_buf;

void tl_buf_printf(tl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends n bytes of s. Inline for the common case (they fit): JSON answers are built from
 * many short appends, and the call was a fifth of a customer page's instructions. */
void tl_buf_append_grow(tl_buf *b, const char *s, size_t n);
static inline void tl_buf_append(tl_buf *b, const char *s, size_t n) {
  if (b->len + n < b->cap && !b->oom) {
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return;
  }
  tl_buf_append_grow(b, s, n);
}
/* Appends s as a JSON string literal (quotes, escapes for '"', '\\' and control characters;
 * other bytes, UTF-8 included, as they are). The _n form takes n bytes, NULs included. */
void tl_buf_json_string(tl_buf *b, const char *s);
void tl_buf_json_string_n(tl_buf *b, const char *s, size_t n);
/* The length of the UTF-8 sequence that starts the n bytes at s (n > 0): 1 for ASCII, 2 to 4
 * for a valid multi-byte sequence, 0 when it is not valid UTF-8 (a stray continuation byte, an
 * overlong form, a surrogate, a code point past U+10FFFF, a sequence cut off by n): the rules
 * jansson applies to what it reads and dumps. */
size_t tl_utf8_seq(const unsigned char *s, size_t n);
/* Releases the data; the buffer can be reused. */
void tl_buf_free(tl_buf *b);

#endif
