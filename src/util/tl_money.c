/* tl_money.c: conversion between JSON numbers and integer minor units. */
#include "util/tl_money.h"

#include "util/tl_common.h"

#include <math.h>
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

int tl_money_from_json(const json_t *j, int64_t *minor) {
  if (json_is_string(j)) {
    const char *s = json_string_value(j);
    if (s[0] != MONEY_MARK) return TL_E_INVALID;
    return parse_mark(s + 1, minor);
  }
  if (json_is_integer(j)) {
    json_int_t v = json_integer_value(j);
    if (v > TL_MONEY_MAX_MINOR / 100 || v < -TL_MONEY_MAX_MINOR / 100) return TL_E_INVALID;
    *minor = (int64_t)v * 100;
    return TL_OK;
  }
  if (!json_is_real(j)) return TL_E_INVALID;
  double v = json_real_value(j);
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

json_t *tl_money_to_json(int64_t minor) {
  char buf[40];
  buf[0] = MONEY_MARK;
  tl_money_format(minor, buf + 1, sizeof buf - 1);
  return json_string(buf);
}

/* The end of the placeholder whose text starts at m (a match of MARK), or NULL if the match is
 * not one. A placeholder is a whole JSON string value: m is its opening quote (not a quote
 * escaped inside another string, as in "a\"\u0001"), the text after the mark is the amount as
 * tl_money_format writes it (-?[0-9]+.[0-9][0-9] with 1 to 17 digits before the point and no
 * leading zero: a JSON number any parser reads), then the closing quote, not followed by ':' (a
 * member name). before is the character that preceded m in the text json_dumps wrote (0 at its
 * start). Returns a pointer to the closing quote. */
static const char *placeholder_end(const char *m, size_t mark_len, char before) {
  if (before == '\\') return NULL; /* an escaped quote: m is inside a string */
  const char *p = m + mark_len;
  if (*p == '-') p++;
  const char *digits = p;
  while (*p >= '0' && *p <= '9') p++;
  /* An int64 of minor units has at most 17 digits before the point. */
  if (p == digits || p - digits > 17 || (digits[0] == '0' && p - digits > 1) || p[0] != '.' ||
      p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' || p[3] != '"' || p[4] == ':')
    return NULL;
  return p + 3;
}

char *tl_json_dumps(const json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
  if (!s) return NULL;
  /* Rewrite in place: "\u0001123.45" -> 123.45 (the output only shrinks). Jumps from mark to
   * mark with strstr, copying the text between; a match that is not a placeholder (a string
   * holding a quote and U+0001) is copied as it is. */
  static const char MARK[] = "\"\\u0001";
  char *r = strstr(s, MARK);
  if (!r) return s;
  char *w = r;
  char before = r > s ? r[-1] : '\0'; /* the original character before the match at r */
  while (r) {
    const char *end = placeholder_end(r, sizeof MARK - 1, before);
    if (end) {
      r += sizeof MARK - 1;
      while (r < end) *w++ = *r++;
      r++; /* the closing quote */
      before = '"';
    } else {
      *w++ = *r++; /* the quote; the search goes on after it */
      before = '"';
    }
    char *next = strstr(r, MARK);
    if (next && next > r) before = next[-1]; /* not yet overwritten: w <= r <= next - 1 */
    size_t n = next ? (size_t)(next - r) : strlen(r);
    memmove(w, r, n);
    w += n;
    r = next;
  }
  *w = '\0';
  return s;
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
