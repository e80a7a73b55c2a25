/*
 * fuzz_money.c: exact money (util/tl_money.c): JSON numbers to minor units, the exact-output
 * placeholders, formatting, and tl_json_dumps.
 *
 * Input: a first byte choosing the mode, then its data:
 *   'n'  a JSON value (text) given to tl_money_from_json, as a client price is;
 *   'p'  the bytes of a money placeholder's text (after its \x01 mark);
 *   'm'  8 bytes: an int64 amount in minor units, written out and read back;
 *   'd'  a JSON document written by tl_json_dumps.
 * Any other first byte picks a mode from its value.
 *
 * Invariants:
 *  - a JSON number is accepted exactly when its decimal text is a whole number of cents of at
 *    most TL_MONEY_MAX_MINOR, and then gives that number (checked against an exact decimal
 *    parser here, for literals of at most 15 significant digits, which a double carries, and
 *    off a whole cent by at least 1e-14 of the amount, which its rounding cannot hide);
 *  - a placeholder is accepted exactly when it is "-?D+.DD" and fits an int64, and formatting
 *    the amount gives the same text back (up to leading zeros and the sign of zero);
 *  - every amount survives tl_money_to_json -> tl_money_from_json, and, up to
 *    TL_MONEY_MAX_MINOR, tl_json_dumps -> json_loads -> tl_money_from_json;
 *  - tl_json_dumps always writes valid JSON: json_dumps' text, except that every placeholder
 *    (and nothing else) becomes a number of the same amount.
 */
#include "fuzz_common.h"

#include "util/tl_common.h"
#include "util/tl_money.h"

#include <stdbool.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init_jansson();
  return 0;
}

/* ---- an exact reference for JSON number literals --------------------------------------- */

typedef enum { REF_REFUSE, REF_ACCEPT, REF_UNKNOWN } ref_verdict;

/* Decides a JSON number literal (RFC 8259 grammar, surrounding whitespace allowed) exactly:
 * REF_ACCEPT with *cents when it is a whole number of cents within TL_MONEY_MAX_MINOR,
 * REF_REFUSE when it is not, REF_UNKNOWN when it has more than 15 significant digits or is
 * below 1e-300 (a double cannot tell) or is not a plain number literal. */
static ref_verdict ref_number(const char *s, int64_t *cents) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  bool neg = *s == '-';
  if (neg) s++;
  if (*s < '0' || *s > '9') return REF_UNKNOWN;
  int64_t mant = 0; /* significant digits, at most 15 */
  int sig = 0, scale = 0; /* value = mant * 10^(scale) */
  bool leading = true;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (leading && *s == '0') continue;
    leading = false;
    if (sig == 15) return REF_UNKNOWN;
    mant = mant * 10 + (*s - '0');
    sig++;
  }
  if (*s == '.') {
    s++;
    if (*s < '0' || *s > '9') return REF_UNKNOWN;
    for (; *s >= '0' && *s <= '9'; s++) {
      scale--;
      if (leading && *s == '0') continue;
      leading = false;
      if (sig == 15) return REF_UNKNOWN;
      mant = mant * 10 + (*s - '0');
      sig++;
    }
  }
  if (*s == 'e' || *s == 'E') {
    s++;
    bool eneg = *s == '-';
    if (*s == '+' || *s == '-') s++;
    if (*s < '0' || *s > '9') return REF_UNKNOWN;
    long e = 0;
    for (; *s >= '0' && *s <= '9'; s++)
      if (e < 100000) e = e * 10 + (*s - '0');
    scale += (int)(eneg ? -e : e);
  }
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  if (*s) return REF_UNKNOWN;
  if (mant == 0) {
    *cents = 0;
    return REF_ACCEPT;
  }
  if (scale + sig < -300) return REF_UNKNOWN; /* may underflow to 0.0 in jansson's strtod */
  int k = scale + 2; /* cents = mant * 10^k */
  if (k < 0) {
    if (k < -18) return REF_REFUSE; /* mant < 10^15 cannot be a multiple of 10^19 */
    int64_t p = 1;
    for (int i = 0; i < -k; i++) p *= 10;
    int64_t rem = mant % p, off = rem < p - rem ? rem : p - rem; /* from the nearest cent */
    /* A double holds the amount to about 1e-16 of its size, and tl_money_from_json allows
     * 1e-15: an offset under 1e-14 of the amount may or may not be seen (9999999999.00001
     * passes as 9999999999.00). Any third decimal is far above that. */
    if (off != 0) return (__int128)off * 100000000000000 > mant ? REF_REFUSE : REF_UNKNOWN;
    mant /= p;
  } else {
    for (int i = 0; i < k; i++) {
      if (mant > TL_MONEY_MAX_MINOR) return REF_REFUSE;
      mant *= 10;
    }
  }
  if (mant > TL_MONEY_MAX_MINOR) return REF_REFUSE;
  *cents = neg ? -mant : mant;
  return REF_ACCEPT;
}

static void mode_number(const uint8_t *data, size_t size) {
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
  if (!j) return;
  int64_t minor = 0x5a5a5a5a;
  int rc = tl_money_from_json(j, &minor);
  FUZZ_CHECK(rc == TL_OK || rc == TL_E_INVALID, "rc %d", rc);
  if (!json_is_number(j)) {
    /* Only placeholders (strings starting with \x01) may pass besides numbers. */
    if (rc == TL_OK) FUZZ_CHECK(json_is_string(j) && json_string_value(j)[0] == '\x01', "kind");
    json_decref(j);
    return;
  }
  if (rc == TL_OK)
    FUZZ_CHECK(minor >= -TL_MONEY_MAX_MINOR && minor <= TL_MONEY_MAX_MINOR, "%lld out of range",
               (long long)minor);
  char *text = fuzz_strndup(data, size);
  int64_t want = 0;
  ref_verdict v = ref_number(text, &want);
  if (v == REF_ACCEPT) {
    FUZZ_CHECK(rc == TL_OK, "'%s' is %lld cents but was refused", text, (long long)want);
    FUZZ_CHECK(minor == want, "'%s' read as %lld, not %lld", text, (long long)minor,
               (long long)want);
  } else if (v == REF_REFUSE) {
    FUZZ_CHECK(rc != TL_OK, "'%s' is not a whole number of cents but read as %lld", text,
               (long long)minor);
  }
  free(text);
  json_decref(j);
}

/* ---- placeholders ------------------------------------------------------------------------ */

/* The reference grammar of a placeholder's text: -?[0-9]+\.[0-9][0-9], a value that fits an
 * int64 (down to INT64_MIN). Returns true with *minor. */
static bool ref_mark(const char *s, int64_t *minor) {
  bool neg = *s == '-';
  if (neg) s++;
  const char *dot = strchr(s, '.');
  if (!dot || dot == s || strlen(dot + 1) != 2) return false;
  __int128 v = 0;
  for (const char *p = s; *p; p++) {
    if (p == dot) continue;
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
    if (v > (__int128)INT64_MAX + 1) return false;
  }
  if (neg) v = -v;
  if (v > INT64_MAX || v < INT64_MIN) return false;
  *minor = (int64_t)v;
  return true;
}

static void mode_placeholder(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 2);
  if (!buf) abort();
  buf[0] = '\x01';
  memcpy(buf + 1, data, size);
  buf[size + 1] = '\0';
  json_t *j = json_string_nocheck(buf); /* any bytes: the point is what parse_mark accepts */
  FUZZ_CHECK(j, "json_string_nocheck");
  int64_t minor = 0, want = 0;
  int rc = tl_money_from_json(j, &minor);
  bool ok = ref_mark(buf + 1, &want);
  FUZZ_CHECK((rc == TL_OK) == ok, "placeholder '%s': rc %d, reference %s", buf + 1, rc,
             ok ? "accepts" : "refuses");
  if (ok) {
    FUZZ_CHECK(minor == want, "placeholder '%s' read as %lld", buf + 1, (long long)minor);
    /* Formatting gives the canonical text: no leading zeros, no sign on zero. */
    char out[40];
    tl_money_format(minor, out, sizeof out);
    int64_t again = 0;
    FUZZ_CHECK(ref_mark(out, &again) && again == minor, "format '%s' of %lld", out,
               (long long)minor);
    const char *digits = out[0] == '-' ? out + 1 : out;
    FUZZ_CHECK(digits[0] != '0' || digits[1] == '.', "leading zero in '%s'", out);
    FUZZ_CHECK(minor != 0 || out[0] != '-', "negative zero '%s'", out);
  }
  json_decref(j);
  free(buf);
}

/* ---- amounts ----------------------------------------------------------------------------- */

static void mode_amount(const uint8_t *data, size_t size) {
  int64_t minor = 0;
  memcpy(&minor, data, size < sizeof minor ? size : sizeof minor);
  json_t *j = tl_money_to_json(minor);
  FUZZ_CHECK(j, "tl_money_to_json(%lld)", (long long)minor);
  int64_t back = 0;
  FUZZ_CHECK(tl_money_from_json(j, &back) == TL_OK && back == minor,
             "placeholder of %lld read back as %lld", (long long)minor, (long long)back);
  /* Written out as a number inside a document, then read the way a stored event is. */
  json_t *doc = json_pack("{s:[o]}", "a", j);
  FUZZ_CHECK(doc, "json_pack");
  char *text = tl_json_dumps(doc);
  FUZZ_CHECK(text, "tl_json_dumps");
  json_error_t je;
  json_t *parsed = json_loads(text, 0, &je);
  FUZZ_CHECK(parsed, "'%s' is not JSON: %s", text, je.text);
  const json_t *num = json_array_get(json_object_get(parsed, "a"), 0);
  FUZZ_CHECK(json_is_number(num), "'%s' holds no number", text);
  if (minor >= -TL_MONEY_MAX_MINOR && minor <= TL_MONEY_MAX_MINOR) {
    FUZZ_CHECK(tl_money_from_json(num, &back) == TL_OK && back == minor,
               "%lld written as '%s' read back as %lld", (long long)minor, text,
               (long long)back);
  }
  free(text);
  json_decref(parsed);
  json_decref(doc);
}

/* ---- tl_json_dumps ----------------------------------------------------------------------- */

/* Is j a placeholder tl_money_to_json could have made ("\x01" then -?[0-9]+.[0-9][0-9] with at
 * most 17 digits before the point and no leading zeros, and nothing else, not even after a NUL)?
 */
static bool is_placeholder(const json_t *j) {
  const char *s = json_string_value(j);
  if (!s || s[0] != '\x01') return false;
  const char *p = s + 1;
  if (*p == '-') p++;
  size_t int_digits = strspn(p, "0123456789");
  if ((int_digits > 1 && p[0] == '0') || int_digits > 17) return false; /* not from an int64 */
  p += int_digits;
  return int_digits > 0 && p[0] == '.' && strspn(p + 1, "0123456789") == 2 && p[3] == '\0' &&
         (size_t)(p + 3 - s) == json_string_length(j);
}

/* Compares the original document with what tl_json_dumps made of it (parsed back): the same,
 * except that placeholders became numbers of the same amount. Returns the placeholder count. */
static int same_but_money(const json_t *orig, const json_t *out) {
  int64_t minor = 0;
  if (is_placeholder(orig)) {
    FUZZ_CHECK(json_is_number(out), "a placeholder was not written as a number");
    int64_t back = 0;
    if (ref_mark(json_string_value(orig) + 1, &minor) && minor >= -TL_MONEY_MAX_MINOR &&
        minor <= TL_MONEY_MAX_MINOR)
      FUZZ_CHECK(tl_money_from_json(out, &back) == TL_OK && back == minor,
                 "placeholder '%s' written as a number worth %lld", json_string_value(orig) + 1,
                 (long long)back);
    return 1;
  }
  if (json_is_array(orig)) {
    FUZZ_CHECK(json_is_array(out) && json_array_size(out) == json_array_size(orig), "array");
    int n = 0;
    for (size_t i = 0; i < json_array_size(orig); i++)
      n += same_but_money(json_array_get(orig, i), json_array_get(out, i));
    return n;
  }
  if (json_is_object(orig)) {
    FUZZ_CHECK(json_is_object(out) && json_object_size(out) == json_object_size(orig), "object");
    const char *key;
    const json_t *v;
    int n = 0;
    json_object_foreach((json_t *)orig, key, v) {
      const json_t *o = json_object_get(out, key);
      FUZZ_CHECK(o, "member '%s' lost", key);
      n += same_but_money(v, o);
    }
    return n;
  }
  FUZZ_CHECK(json_equal(orig, out) || (json_is_real(orig) && json_is_number(out)),
             "a value changed");
  return 0;
}

static void mode_dumps(const uint8_t *data, size_t size) {
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
  if (!j) return;
  char *ours = tl_json_dumps(j);
  FUZZ_CHECK(ours, "tl_json_dumps");
  json_error_t je;
  json_t *back = json_loads(ours, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
  FUZZ_CHECK(back, "tl_json_dumps wrote invalid JSON: %s (%s)", ours, je.text);
  if (same_but_money(j, back) == 0) {
    char *plain = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    FUZZ_CHECK(plain && strcmp(ours, plain) == 0, "tl_json_dumps changed '%s' into '%s'",
               plain ? plain : "(null)", ours);
    free(plain);
  }
  json_decref(back);
  free(ours);
  json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  if (mode != 'n' && mode != 'p' && mode != 'm' && mode != 'd') mode = "npmd"[mode % 4];
  data++, size--;
  switch (mode) {
  case 'n': mode_number(data, size); break;
  case 'p': mode_placeholder(data, size); break;
  case 'm': mode_amount(data, size); break;
  default: mode_dumps(data, size); break;
  }
  return 0;
}
