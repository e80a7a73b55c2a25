/* tl_money.c: conversion between JSON numbers and integer minor units. */
#include "util/tl_money.h"

#include "util/tl_buf.h"
#include "util/tl_common.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define MONEY_MARK '\x01'

/* Parses the decimal text of a placeholder ("-123.45", always two decimals). */
static int parse_mark(const char *s, int64_t *minor) {
  int neg = *s == '-';
  if (neg) s++;
  /* INT64_MIN has no positive counterpart: the negative side holds one more. */
  const uint64_t limit = (uint64_t)INT64_MAX + (uint64_t)neg;
  uint64_t v = 0;
  int digits = 0, decimals = -1;
  for (; *s; s++) {
    if (*s == '.' && decimals < 0) {
      decimals = 0;
      continue;
    }
    if (*s < '0' || *s > '9') return TL_E_INVALID;
    uint64_t d = (uint64_t)(*s - '0');
    if (v > (limit - d) / 10) return TL_E_INVALID; /* v * 10 + d would pass the limit */
    v = v * 10 + d;
    digits++;
    if (decimals >= 0) decimals++;
  }
  if (decimals != 2 || digits < 3) return TL_E_INVALID;
  *minor = neg && v > 0 ? -(int64_t)(v - 1) - 1 : (int64_t)v;
  return TL_OK;
}

static int money_from_string(const char *s, int64_t *minor) {
  if (s[0] != MONEY_MARK) return TL_E_INVALID;
  return parse_mark(s + 1, minor);
}

static int money_from_integer(int64_t v, int64_t *minor) {
  if (v > TL_MONEY_MAX_MINOR / 100 || v < -TL_MONEY_MAX_MINOR / 100) return TL_E_INVALID;
  *minor = v * 100;
  return TL_OK;
}

static int money_from_real(double v, int64_t *minor) {
  if (!isfinite(v)) return TL_E_INVALID;
  double cents = v * 100.0;
  if (fabs(cents) > (double)TL_MONEY_MAX_MINOR) return TL_E_INVALID;
  double r = nearbyint(cents);
  /* The product v * 100 is off by at most a few ulps of cents (|cents| * 2.2e-16 each); anything
   * further from a whole cent had more than two decimals in its text. The bound is relative
   * only: an absolute slack would let amounts below it (1e-12) pass as 0 cents, and 0 itself
   * is exact. */
  if (fabs(cents - r) > fabs(cents) * 1e-15) return TL_E_INVALID;
  *minor = (int64_t)r;
  return TL_OK;
}

int tl_money_from_json(const json_t *j, int64_t *minor) {
  if (json_is_string(j)) return money_from_string(json_string_value(j), minor);
  if (json_is_integer(j)) return money_from_integer(json_integer_value(j), minor);
  if (json_is_real(j)) return money_from_real(json_real_value(j), minor);
  return TL_E_INVALID;
}

int tl_money_from_jv(const tl_jv *v, int64_t *minor) {
  if (tl_jv_is(v, TL_JV_STRING)) return money_from_string(tl_jv_string(v), minor);
  if (tl_jv_is(v, TL_JV_INTEGER)) return money_from_integer(tl_jv_integer(v), minor);
  if (tl_jv_is(v, TL_JV_REAL)) return money_from_real(tl_jv_real(v), minor);
  return TL_E_INVALID;
}

json_t *tl_money_to_json(int64_t minor) {
  char buf[40];
  buf[0] = MONEY_MARK;
  tl_money_format(minor, buf + 1, sizeof buf - 1);
  return json_string(buf);
}

/* True if the n bytes at s are an amount as tl_money_format writes it: -?[0-9]+.[0-9][0-9]
 * with 1 to 17 digits before the point (an int64 of minor units) and no leading zero. Only such
 * placeholders are written as numbers: the text is one any JSON parser reads. */
static bool is_amount_text(const char *s, size_t n) {
  const char *p = s, *e = s + n;
  if (p < e && *p == '-') p++;
  const char *digits = p;
  while (p < e && *p >= '0' && *p <= '9') p++;
  size_t nd = (size_t)(p - digits);
  if (nd == 0 || nd > 17 || (digits[0] == '0' && nd > 1)) return false;
  return e - p == 3 && p[0] == '.' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9';
}

/* True if the n bytes at s are valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): what jansson requires of a string it dumps. */
static bool valid_utf8(const unsigned char *s, size_t n) {
  for (size_t i = 0, len; i < n; i += len)
    if ((len = tl_utf8_seq(s + i, n - i)) == 0) return false;
  return true;
}

static bool dump_string(tl_buf *b, const char *s, size_t n) {
  if (!valid_utf8((const unsigned char *)s, n)) return false;
  tl_buf_json_string_n(b, s, n);
  return true;
}

/* A real as jansson writes it with JSON_REAL_PRECISION(15): "%.15g", with ".0" added when the
 * text would read back as an integer, and no '+' or leading zeros in the exponent. */
static bool dump_real(tl_buf *b, double v) {
  char t[48];
  int len = snprintf(t, sizeof t, "%.15g", v);
  if (len < 0 || (size_t)len + 3 >= sizeof t) return false;
  if (!strchr(t, '.') && !strchr(t, 'e')) {
    memcpy(t + len, ".0", 3);
    len += 2;
  }
  char *start = strchr(t, 'e');
  if (start) {
    start++;
    char *end = start + 1;
    if (*start == '-') start++;
    while (*end == '0') end++;
    if (end != start) {
      memmove(start, end, (size_t)len - (size_t)(end - t) + 1);
      len -= (int)(end - start);
    }
  }
  tl_buf_append(b, t, (size_t)len);
  return true;
}

/* A string value: a money placeholder comes out as the exact number it holds. */
static bool dump_string_value(tl_buf *b, const char *s, size_t n) {
  if (n > 1 && s[0] == MONEY_MARK && is_amount_text(s + 1, n - 1)) {
    tl_buf_append(b, s + 1, n - 1);
    return true;
  }
  return dump_string(b, s, n);
}

static void dump_integer(tl_buf *b, int64_t v) {
  char t[24];
  int len = snprintf(t, sizeof t, "%" PRId64, v);
  tl_buf_append(b, t, (size_t)len);
}

/* jansson's parser refuses deeper documents, so nothing twinlane dumps is deeper. */
#define DUMP_MAX_DEPTH 2048

static bool dump_value(tl_buf *b, const json_t *j, int depth) {
  if (depth > DUMP_MAX_DEPTH) return false;
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    tl_buf_append(b, "{", 1);
    int first = 1;
    for (void *it = json_object_iter((json_t *)j); it;
         it = json_object_iter_next((json_t *)j, it)) {
      if (!first) tl_buf_append(b, ",", 1);
      first = 0;
      if (!dump_string(b, json_object_iter_key(it), json_object_iter_key_len(it))) return false;
      tl_buf_append(b, ":", 1);
      if (!dump_value(b, json_object_iter_value(it), depth + 1)) return false;
    }
    tl_buf_append(b, "}", 1);
    return true;
  }
  case JSON_ARRAY: {
    tl_buf_append(b, "[", 1);
    size_t n = json_array_size(j);
    for (size_t i = 0; i < n; i++) {
      if (i) tl_buf_append(b, ",", 1);
      if (!dump_value(b, json_array_get(j, i), depth + 1)) return false;
    }
    tl_buf_append(b, "]", 1);
    return true;
  }
  case JSON_STRING: return dump_string_value(b, json_string_value(j), json_string_length(j));
  case JSON_INTEGER: dump_integer(b, json_integer_value(j)); return true;
  case JSON_REAL: return dump_real(b, json_real_value(j));
  case JSON_TRUE: tl_buf_append(b, "true", 4); return true;
  case JSON_FALSE: tl_buf_append(b, "false", 5); return true;
  case JSON_NULL: tl_buf_append(b, "null", 4); return true;
  }
  return false;
}

char *tl_json_dumps(const json_t *j) {
  /* The same text as json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))
   * (the fuzz target fuzz_money checks it byte for byte), except that money placeholders come
   * out as numbers; written in one pass into one buffer, without jansson's per-value
   * callbacks and the rewrite pass the placeholders needed. */
  if (!j) return NULL;
  tl_buf b = {0};
  if (!tl_json_dump_into(&b, j) || b.oom) {
    tl_buf_free(&b);
    return NULL;
  }
  return b.data;
}

bool tl_json_dump_into(tl_buf *b, const json_t *j) {
  return j && dump_value(b, j, 0);
}

static bool dump_jv(tl_buf *b, const tl_jv *v) {
  switch (v->type) {
    case TL_JV_OBJECT:
    case TL_JV_ARRAY: {
      bool object = v->type == TL_JV_OBJECT, first = true;
      tl_buf_append(b, object ? "{" : "[", 1);
      TL_JV_FOREACH(m, v) {
        if (!first) tl_buf_append(b, ",", 1);
        first = false;
        if (object) {
          if (!dump_string(b, m->key, strlen(m->key))) return false;
          tl_buf_append(b, ":", 1);
        }
        if (!dump_jv(b, m)) return false;
      }
      tl_buf_append(b, object ? "}" : "]", 1);
      return true;
    }
    case TL_JV_STRING: return dump_string_value(b, tl_jv_string(v), tl_jv_string_len(v));
    case TL_JV_INTEGER: dump_integer(b, tl_jv_integer(v)); return true;
    case TL_JV_REAL: return dump_real(b, tl_jv_real(v));
    case TL_JV_TRUE: tl_buf_append(b, "true", 4); return true;
    case TL_JV_FALSE: tl_buf_append(b, "false", 5); return true;
    case TL_JV_NULL: tl_buf_append(b, "null", 4); return true;
  }
  return false;
}

char *tl_jv_dumps(const tl_jv *v) {
  /* Parsed documents are at most TL_JV_MAX_DEPTH deep: the recursion is bounded. */
  if (!v) return NULL;
  tl_buf b = {0};
  if (!dump_jv(&b, v) || b.oom) {
    tl_buf_free(&b);
    return NULL;
  }
  return b.data;
}

void tl_money_format(int64_t minor, char *buf, size_t len) {
  uint64_t a = minor < 0 ? (uint64_t)(-(minor + 1)) + 1 : (uint64_t)minor;
  /* Right to left into tmp: "-" (at most 1) + 18 digits + "." + 2 digits. */
  char tmp[32];
  char *p = tmp + sizeof tmp;
  *--p = (char)('0' + a % 10);
  *--p = (char)('0' + a / 10 % 10);
  *--p = '.';
  uint64_t units = a / 100;
  do {
    *--p = (char)('0' + units % 10);
    units /= 10;
  } while (units);
  if (minor < 0) *--p = '-';
  size_t n = (size_t)(tmp + sizeof tmp - p);
  if (len == 0) return;
  if (n >= len) n = len - 1; /* truncated, as snprintf would */
  memcpy(buf, p, n);
  buf[n] = '\0';
}

int tl_currency_valid(const char *s) {
  if (!s || strlen(s) != 3) return 0;
  for (int i = 0; i < 3; i++)
    if (s[i] < 'A' || s[i] > 'Z') return 0;
  return 1;
}
