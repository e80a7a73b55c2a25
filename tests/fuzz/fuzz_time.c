/*
 * fuzz_time.c: ISO 8601 times and dates (util/tl_time.c), as ?asOf= and ?from=/?to= take them
 * and as every answer writes them.
 *
 * Input: a first byte choosing the mode, then its data:
 *   't'  text for tl_time_parse;
 *   'd'  text for tl_date_parse;
 *   'f'  8 bytes: milliseconds since the epoch for tl_time_format;
 *   'g'  8 bytes: days since the epoch for tl_date_format (brought into its range).
 * Any other first byte picks a mode from its value.
 *
 * Invariants:
 *  - a time is accepted exactly when it has the documented shape
 *    (YYYY-MM-DD[Tt ]HH:MM:SS[.1-9 digits](Z|z|+00:00)) and names a real date and time, and
 *    then it is the same instant as libc's timegm says (milliseconds truncated);
 *  - a date is accepted exactly when it is YYYY-MM-DD of a real date, and formats back to the
 *    same text;
 *  - formatting never fails, writes the fixed-width form, and parsing the result gives the
 *    same value back for every instant of the years 0000 to 9999.
 */
#include "fuzz_common.h"

#include "util/tl_common.h"
#include "util/tl_time.h"

#include <stdbool.h>
#include <time.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

#define MS_PER_DAY INT64_C(86400000)
/* 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z. */
#define MS_MIN INT64_C(-62167219200000)
#define MS_MAX INT64_C(253402300799999)

static bool digits(const char *s, int n) {
  for (int i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

static int num(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
  return v;
}

/* Seconds since the epoch of a UTC civil time, by libc, or false if the fields do not name a
 * real date and time (timegm normalises them: a round trip through gmtime_r tells). */
static bool libc_seconds(int y, int mo, int d, int h, int mi, int sec, int64_t *out) {
  struct tm tm = {0};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  struct tm back;
  if (!gmtime_r(&t, &back)) return false;
  if (back.tm_year != y - 1900 || back.tm_mon != mo - 1 || back.tm_mday != d ||
      back.tm_hour != h || back.tm_min != mi || back.tm_sec != sec)
    return false;
  *out = (int64_t)t;
  return true;
}

/* The reference reading of a time: true with *ms if s is one. */
static bool ref_time(const char *s, int64_t *ms) {
  if (strlen(s) < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
      !digits(s + 8, 2) || !strchr("Tt ", s[10]) || s[10] == '\0' || !digits(s + 11, 2) ||
      s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
    return false;
  const char *p = s + 19;
  int frac = 0, n = 0;
  if (*p == '.') {
    for (p++; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3) frac = frac * 10 + (*p - '0');
    if (n < 1 || n > 9) return false;
    for (int i = n; i < 3; i++) frac *= 10;
  }
  if (strcmp(p, "Z") != 0 && strcmp(p, "z") != 0 && strcmp(p, "+00:00") != 0) return false;
  int64_t sec;
  if (!libc_seconds(num(s, 4), num(s + 5, 2), num(s + 8, 2), num(s + 11, 2), num(s + 14, 2),
                    num(s + 17, 2), &sec))
    return false;
  *ms = sec * 1000 + frac;
  return true;
}

static bool ref_date(const char *s, int64_t *days) {
  if (strlen(s) != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
      !digits(s + 8, 2))
    return false;
  int64_t sec;
  if (!libc_seconds(num(s, 4), num(s + 5, 2), num(s + 8, 2), 0, 0, 0, &sec)) return false;
  *days = sec / 86400 - (sec % 86400 < 0);
  return true;
}

static void check_formatted_time(int64_t ms) {
  char iso[TL_ISO_LEN];
  memset(iso, 0x55, sizeof iso);
  tl_time_format(ms, iso);
  FUZZ_CHECK(strlen(iso) == TL_ISO_LEN - 1, "format of %lld: '%s'", (long long)ms, iso);
  if (ms < MS_MIN || ms > MS_MAX) return; /* years beyond 0000-9999 have no 4-digit form */
  int64_t back = 0;
  FUZZ_CHECK(tl_time_parse(iso, &back) == TL_OK && back == ms, "%lld formats as '%s'",
             (long long)ms, iso);
}

static void mode_time(const uint8_t *data, size_t size) {
  char *s = fuzz_strndup(data, size);
  int64_t ms = 0, want = 0;
  int rc = tl_time_parse(s, &ms);
  bool ok = ref_time(s, &want);
  FUZZ_CHECK((rc == TL_OK) == ok, "'%s': rc %d, reference %s", s, rc, ok ? "accepts" : "refuses");
  if (ok) {
    FUZZ_CHECK(ms == want, "'%s' is %lld, not %lld", s, (long long)ms, (long long)want);
    check_formatted_time(ms);
  }
  free(s);
}

static void mode_date(const uint8_t *data, size_t size) {
  char *s = fuzz_strndup(data, size);
  int64_t days = 0, want = 0;
  int rc = tl_date_parse(s, &days);
  bool ok = ref_date(s, &want);
  FUZZ_CHECK((rc == TL_OK) == ok, "'%s': rc %d, reference %s", s, rc, ok ? "accepts" : "refuses");
  if (ok) {
    FUZZ_CHECK(days == want, "'%s' is day %lld, not %lld", s, (long long)days, (long long)want);
    char out[11];
    tl_date_format(days, out);
    FUZZ_CHECK(strcmp(out, s) == 0, "'%s' formats back as '%s'", s, out);
  }
  free(s);
}

static int64_t int64_of(const uint8_t *data, size_t size) {
  int64_t v = 0;
  memcpy(&v, data, size < sizeof v ? size : sizeof v);
  return v;
}

static void mode_format_time(const uint8_t *data, size_t size) {
  check_formatted_time(int64_of(data, size));
}

static void mode_format_date(const uint8_t *data, size_t size) {
  /* Any day of the documented range, TL_DAYS_MIN to TL_DAYS_MAX. */
  uint64_t span = (uint64_t)(TL_DAYS_MAX - TL_DAYS_MIN) + 1;
  int64_t days = TL_DAYS_MIN + (int64_t)((uint64_t)int64_of(data, size) % span);
  char out[11];
  memset(out, 0x55, sizeof out);
  tl_date_format(days, out);
  FUZZ_CHECK(strlen(out) == 10, "format of day %lld: '%s'", (long long)days, out);
  if (days < MS_MIN / MS_PER_DAY || days > MS_MAX / MS_PER_DAY) return;
  int64_t back = 0;
  FUZZ_CHECK(tl_date_parse(out, &back) == TL_OK && back == days, "day %lld formats as '%s'",
             (long long)days, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  if (mode != 't' && mode != 'd' && mode != 'f' && mode != 'g') mode = "tdfg"[mode % 4];
  data++, size--;
  switch (mode) {
  case 't': mode_time(data, size); break;
  case 'd': mode_date(data, size); break;
  case 'f': mode_format_time(data, size); break;
  default: mode_format_date(data, size); break;
  }
  return 0;
}
