/* tl_money.c: conversion between JSON numbers and integer minor units. */
#include "util/tl_money.h"

#include "util/tl_common.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int tl_money_from_json(const json_t *j, int64_t *minor) {
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
   * further from a whole cent had more than two decimals in its text. */
  if (fabs(cents - r) > fabs(cents) * 1e-15 + 1e-9) return TL_E_INVALID;
  *minor = (int64_t)r;
  return TL_OK;
}

json_t *tl_money_to_json(int64_t minor) {
  return json_real((double)minor / 100.0);
}

void tl_money_format(int64_t minor, char *buf, size_t len) {
  const char *sign = minor < 0 ? "-" : "";
  uint64_t a = minor < 0 ? (uint64_t)(-(minor + 1)) + 1 : (uint64_t)minor;
  snprintf(buf, len, "%s%llu.%02llu", sign, (unsigned long long)(a / 100),
           (unsigned long long)(a % 100));
}

int tl_currency_valid(const char *s) {
  if (!s || strlen(s) != 3) return 0;
  for (int i = 0; i < 3; i++)
    if (s[i] < 'A' || s[i] > 'Z') return 0;
  return 1;
}
