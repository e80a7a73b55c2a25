/* tl_time.c: clocks and ISO 8601 conversion without locale or timezone state. */
#include "util/tl_time.h"

#include "util/tl_common.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t tl_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tl_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void tl_deadline_in(struct timespec *out, int timeout_ms) {
  clock_gettime(CLOCK_MONOTONIC, out);
  out->tv_sec += timeout_ms / 1000;
  out->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (out->tv_nsec >= 1000000000L) {
    out->tv_sec++;
    out->tv_nsec -= 1000000000L;
  }
}

/* Howard Hinnant's civil-from-days / days-from-civil, valid for the proleptic Gregorian
 * calendar over the whole int64 range we use. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m) {
  static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
  return dm[m - 1];
}

void tl_time_format(int64_t ms, char out[TL_ISO_LEN]) {
  int64_t y;
  int m, d;
  /* Floor division by hand: days * 86400000 would overflow for the earliest int64 times. */
  int64_t days = ms / 86400000, rem = ms % 86400000;
  if (rem < 0) {
    rem += 86400000;
    days--;
  }
  civil_from_days(days, &y, &m, &d);
  int hh = (int)(rem / 3600000), mm = (int)(rem / 60000 % 60), ss = (int)(rem / 1000 % 60);
  int fff = (int)(rem % 1000);
  int yy = (int)(y % 10000);
  if (yy >= 0) { /* every year a server meets: digits by hand, no printf on the query path */
    static const char D[] = "0123456789";
    char *o = out;
    *o++ = D[yy / 1000], *o++ = D[yy / 100 % 10], *o++ = D[yy / 10 % 10], *o++ = D[yy % 10];
    *o++ = '-', *o++ = D[m / 10], *o++ = D[m % 10], *o++ = '-', *o++ = D[d / 10];
    *o++ = D[d % 10], *o++ = 'T', *o++ = D[hh / 10], *o++ = D[hh % 10], *o++ = ':';
    *o++ = D[mm / 10], *o++ = D[mm % 10], *o++ = ':', *o++ = D[ss / 10], *o++ = D[ss % 10];
    *o++ = '.', *o++ = D[fff / 100], *o++ = D[fff / 10 % 10], *o++ = D[fff % 10], *o++ = 'Z';
    *o = '\0';
    return;
  }
  char tmp[96];
  snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)(y % 10000), m, d, hh, mm,
           ss, fff);
  memcpy(out, tmp, TL_ISO_LEN - 1);
  out[TL_ISO_LEN - 1] = '\0';
}

void tl_date_format(int64_t days, char out[11]) {
  assert(days >= TL_DAYS_MIN && days <= TL_DAYS_MAX); /* else the civil arithmetic overflows */
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  char tmp[64];
  snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", (int)(y % 10000), m, d);
  memcpy(out, tmp, 10);
  out[10] = '\0';
}

/* Reads exactly n decimal digits from *p; advances *p. */
static int read_digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9') return TL_E_INVALID;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return TL_OK;
}

static int parse_date_part(const char **p, int64_t *days) {
  int y, m, d;
  if (read_digits(p, 4, &y) || **p != '-') return TL_E_INVALID;
  (*p)++;
  if (read_digits(p, 2, &m) || **p != '-') return TL_E_INVALID;
  (*p)++;
  if (read_digits(p, 2, &d)) return TL_E_INVALID;
  if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return TL_E_INVALID;
  *days = days_from_civil(y, m, d);
  return TL_OK;
}

int tl_date_parse(const char *s, int64_t *days) {
  if (!s) return TL_E_INVALID;
  const char *p = s;
  if (parse_date_part(&p, days) || *p != '\0') return TL_E_INVALID;
  return TL_OK;
}

int tl_time_parse(const char *s, int64_t *ms) {
  if (!s) return TL_E_INVALID;
  const char *p = s;
  int64_t days;
  int hh, mi, ss, frac = 0;
  if (parse_date_part(&p, &days)) return TL_E_INVALID;
  if (*p != 'T' && *p != 't' && *p != ' ') return TL_E_INVALID;
  p++;
  if (read_digits(&p, 2, &hh) || *p++ != ':') return TL_E_INVALID;
  if (read_digits(&p, 2, &mi) || *p++ != ':') return TL_E_INVALID;
  if (read_digits(&p, 2, &ss)) return TL_E_INVALID;
  if (hh > 23 || mi > 59 || ss > 59) return TL_E_INVALID;
  if (*p == '.') {
    p++;
    int ndig = 0;
    while (*p >= '0' && *p <= '9') {
      if (ndig < 3) frac = frac * 10 + (*p - '0');
      ndig++;
      p++;
    }
    if (ndig == 0 || ndig > 9) return TL_E_INVALID;
    for (int i = ndig; i < 3; i++) frac *= 10;
  }
  if (*p == 'Z' || *p == 'z')
    p++;
  else if (strcmp(p, "+00:00") == 0)
    p += 6;
  else
    return TL_E_INVALID;
  if (*p != '\0') return TL_E_INVALID;
  *ms = days * 86400000 + (int64_t)hh * 3600000 + mi * 60000 + ss * 1000 + frac;
  return TL_OK;
}
