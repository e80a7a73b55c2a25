/*
 * fuzz_common.h: what the libFuzzer targets of tests/fuzz share.
 *
 * A broken invariant is reported with FUZZ_CHECK, which prints the condition and a message and
 * aborts: libFuzzer then saves the input as a crash artifact, like for a sanitizer report.
 * Header-only on purpose: each target is one translation unit linked against twinlane_core.
 */
#ifndef TL_FUZZ_COMMON_H
#define TL_FUZZ_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond, ...)                                                                   \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "fuzz invariant failed: %s (%s:%d): ", #cond, __FILE__, __LINE__);        \
      fprintf(stderr, __VA_ARGS__);                                                             \
      fputc('\n', stderr);                                                                      \
      abort();                                                                                  \
    }                                                                                           \
  } while (0)

/* A NUL-terminated copy of n bytes of data (which may contain NULs: C code then sees a prefix,
 * as it would from any C string). Caller frees. Aborts when out of memory (the fuzzer's
 * -rss_limit_mb reports that, not us). */
static inline char *fuzz_strndup(const uint8_t *data, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  if (n) memcpy(s, data, n);
  s[n] = '\0';
  return s;
}

/* Makes jansson's object hashing deterministic, so one input always takes one path. Call from
 * LLVMFuzzerInitialize, before any JSON object exists. */
static inline void fuzz_init_jansson(void) {
  json_object_seed(1);
}

/* Splits data at the first '\n': *head is everything before it (NULL if there is none), *rest
 * and *rest_len what follows. */
static inline void fuzz_split_line(const uint8_t *data, size_t size, char **head,
                                   const uint8_t **rest, size_t *rest_len) {
  const uint8_t *nl = memchr(data, '\n', size);
  if (!nl) {
    *head = NULL;
    *rest = data;
    *rest_len = size;
    return;
  }
  *head = fuzz_strndup(data, (size_t)(nl - data));
  *rest = nl + 1;
  *rest_len = size - (size_t)(nl - data) - 1;
}

#endif
