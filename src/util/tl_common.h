/*
 * tl_common.h: the status convention and error struct shared by every twinlane module.
 *
 * Functions return 0 (TL_OK) on success and a negative TL_E* code otherwise; when they take a
 * tl_err *, they also leave a human-readable message there. A NULL tl_err * is allowed.
 */
#ifndef TL_COMMON_H
#define TL_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
  TL_OK = 0,
  TL_E_NOMEM = -1,    /* allocation failed */
  TL_E_IO = -2,       /* storage or OS failure */
  TL_E_INVALID = -3,  /* bad input from a caller */
  TL_E_CONFLICT = -4, /* expected version or uniqueness violated */
  TL_E_NOTFOUND = -5, /* no such thing */
  TL_E_CLOSED = -6,   /* the component is shutting down */
  TL_E_TIMEOUT = -7,  /* a bounded wait expired */
};

typedef struct tl_err {
  int code;
  char msg[256];
} tl_err;

/* Records code and a printf-style message in *err (if err is not NULL); returns code. */
int tl_err_set(tl_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Static name of a status code ("TL_E_IO"), for logs. */
const char *tl_strerror(int code);

/* Names the calling thread (at most 15 bytes) so that top, perf and gdb tell the roles apart;
 * best effort. */
void tl_thread_name(const char *name);

#define TL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* FNV-1a over n bytes, continuing from h (start with TL_FNV_OFFSET): the hash of the LRU map,
 * the view cache's slots and request fingerprints. */
#define TL_FNV_OFFSET 1469598103934665603ULL
static inline uint64_t tl_fnv1a(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}
/* FNV-1a of a NUL-terminated string. */
static inline uint64_t tl_fnv1a_str(const char *s) {
  uint64_t h = TL_FNV_OFFSET;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

/* Copies the string src into dst of cap bytes (cap > 0), cut short to fit and always
 * NUL-terminated: snprintf(dst, cap, "%s", src) without the formatting machinery (glibc's
 * costs ~1k instructions even for a short id; a command copied ids through it ~20 times).
 * Returns strlen(src), as snprintf would (a result >= cap means it was cut). */
static inline size_t tl_strcpy(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src), k = n < cap ? n : cap - 1;
  memcpy(dst, src, k);
  dst[k] = '\0';
  return n;
}

#endif
