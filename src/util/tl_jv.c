/*
 * tl_jv.c: the one-pass JSON parser behind tl_jv.h.
 *
 * A recursive descent over the bytes, one node appended per value (a container's node is
 * written before its members and its span filled in after them). Strings are decoded into the
 * document's string buffer, which is sized before the parse so that it never moves: a decoded
 * string and its NUL never take more bytes than the quoted text they come from. The rules
 * follow jansson 2.14's load.c (what it accepts, how numbers are read), so that replacing
 * json_loads changes no answer; fuzz_jv checks it.
 */
#include "util/tl_jv.h"

#include "util/tl_buf.h"
#include "util/tl_common.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
  const char *text, *p, *end;
  tl_jdoc *d;
  char *out; /* the next free byte of d->str */
  int rc;    /* TL_OK until the parse fails */
} parser;

/* The parse fails with rc; at: the first byte that is not JSON (invalid input only). */
static int fail_at(parser *ps, int rc, const char *at) {
  if (ps->rc == TL_OK) {
    ps->rc = rc;
    ps->d->err_offset = (size_t)(at - ps->text);
  }
  return rc;
}

static int fail(parser *ps, int rc) {
  return fail_at(ps, rc, ps->p);
}

static void skip_ws(parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

/* Appends a node; returns its index, or -1 when out of memory. */
static long new_node(parser *ps, tl_jv_type type, const char *key) {
  tl_jdoc *d = ps->d;
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    tl_jv *nodes = realloc(d->nodes, cap * sizeof *nodes);
    if (!nodes) return -1;
    d->nodes = nodes;
    d->cap = cap;
  }
  tl_jv *v = &d->nodes[d->n];
  memset(v, 0, sizeof *v);
  v->type = type;
  v->span = 1;
  v->key = key;
  return (long)d->n++;
}

static int hex4(const char *p, const char *end, uint32_t *out) {
  if (end - p < 4) return -1;
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f')
      v |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      v |= (uint32_t)(c - 'A' + 10);
    else
      return -1;
  }
  *out = v;
  return 0;
}

static char *put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) {
    *o++ = (char)cp;
  } else if (cp < 0x800) {
    *o++ = (char)(0xC0 | cp >> 6);
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *o++ = (char)(0xE0 | cp >> 12);
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  } else {
    *o++ = (char)(0xF0 | cp >> 18);
    *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
    *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
    *o++ = (char)(0x80 | (cp & 0x3F));
  }
  return o;
}

/* 1 for the bytes a string holds as they are: printable ASCII but the quote and the backslash
 * (control bytes, escapes and UTF-8 sequences take the slow path). */
static const unsigned char PLAIN[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* A string at ps->p (its opening quote): decoded into the string buffer, NUL-terminated. A
 * decoded NUL (\u0000) makes it invalid: jansson refuses it in values and in names. */
static int parse_string(parser *ps, const char **out, uint32_t *out_len) {
  const char *p = ps->p + 1, *end = ps->end;
  char *o = ps->out, *start = ps->out;
  for (;;) {
    while (p < end && PLAIN[(unsigned char)*p]) *o++ = *p++; /* most bytes: copied */
    if (p == end) return fail_at(ps, TL_E_INVALID, p);
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x20) return fail_at(ps, TL_E_INVALID, p);
    if (c >= 0x80) {
      size_t n = tl_utf8_seq((const unsigned char *)p, (size_t)(end - p));
      if (!n) return fail_at(ps, TL_E_INVALID, p);
      memcpy(o, p, n);
      o += n;
      p += n;
      continue;
    }
    if (++p == end) return fail_at(ps, TL_E_INVALID, p);
    switch (*p++) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        uint32_t cp, low;
        if (hex4(p, end, &cp) != 0) return fail_at(ps, TL_E_INVALID, p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a high surrogate: its low half must follow */
          if (end - p < 2 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, end, &low) != 0 ||
              low < 0xDC00 || low > 0xDFFF)
            return fail_at(ps, TL_E_INVALID, p);
          p += 6;
          cp = ((cp - 0xD800) << 10) + (low - 0xDC00) + 0x10000;
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
          return fail_at(ps, TL_E_INVALID, p);
        }
        o = put_utf8(o, cp);
        break;
      }
      default: return fail_at(ps, TL_E_INVALID, p);
    }
  }
  *o++ = '\0';
  ps->p = p + 1;
  ps->out = o;
  *out = start;
  *out_len = (uint32_t)(o - 1 - start);
  return TL_OK;
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* The value of the unsigned JSON real [p, end) (digits, '.' digits, exponent) when it can be
 * computed exactly from its digits: a mantissa m <= 2^53 and a power of ten 10^k, |k| <= 22,
 * are both exact doubles, so m * 10^k or m / 10^k rounds once, to the double nearest to the
 * number, which is what strtod answers (Clinger's fast path; SSE2 arithmetic, no extended
 * precision). Prices like 81.99 take this path: strtod cost ~700 instructions each. False:
 * use strtod. */
static bool exact_real(const char *p, const char *end, double *out) {
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
  (void)p, (void)end, (void)out;
  return false; /* x87 extended precision would round twice: strtod it is */
#endif
  static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const uint64_t max_exact = (uint64_t)1 << 53;
  uint64_t m = 0;
  int k = 0; /* the power of ten: minus the fraction's digits, plus the exponent */
  for (; p < end && is_digit(*p); p++) {
    m = m * 10 + (uint64_t)(*p - '0');
    if (m > max_exact) return false;
  }
  if (p < end && *p == '.') {
    for (p++; p < end && is_digit(*p); p++, k--) {
      m = m * 10 + (uint64_t)(*p - '0');
      if (m > max_exact || k < -1000) return false;
    }
  }
  if (p < end) { /* 'e' or 'E', a sign, digits (checked by the caller) */
    bool eneg = false;
    int e = 0;
    p++;
    if (*p == '+' || *p == '-') eneg = *p++ == '-';
    for (; p < end; p++) {
      e = e * 10 + (*p - '0');
      if (e > 1000) return false;
    }
    k += eneg ? -e : e;
  }
  if (k < -22 || k > 22) return false;
  *out = k < 0 ? (double)m / POW10[-k] : (double)m * POW10[k];
  return true;
}

/* A number at ps->p into node v: an integer when it has neither fraction nor exponent (refused
 * outside int64, as strtoll's ERANGE makes jansson refuse it), else a real: exact_real's when
 * it can, else strtod's (refused when it overflows; an underflow reads as the small or zero
 * result). */
static int parse_number(parser *ps, tl_jv *v) {
  const char *start = ps->p, *p = ps->p, *end = ps->end;
  bool neg = false, real = false;
  if (*p == '-') neg = true, p++;
  if (p == end) return fail_at(ps, TL_E_INVALID, p);
  if (*p == '0') {
    p++;
    if (p < end && is_digit(*p)) return fail_at(ps, TL_E_INVALID, p);
  } else if (is_digit(*p)) {
    while (p < end && is_digit(*p)) p++;
  } else {
    return fail_at(ps, TL_E_INVALID, p);
  }
  if (p < end && *p == '.') {
    p++;
    if (p == end || !is_digit(*p)) return fail_at(ps, TL_E_INVALID, p);
    while (p < end && is_digit(*p)) p++;
    real = true;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p == end || !is_digit(*p)) return fail_at(ps, TL_E_INVALID, p);
    while (p < end && is_digit(*p)) p++;
    real = true;
  }
  ps->p = p;
  if (!real) {
    /* The negative side holds one more than the positive (INT64_MIN). */
    const uint64_t limit = (uint64_t)INT64_MAX + (neg ? 1u : 0u);
    uint64_t acc = 0;
    for (const char *q = start + neg; q < p; q++) {
      uint64_t digit = (uint64_t)(*q - '0');
      if (acc > (limit - digit) / 10) return fail_at(ps, TL_E_INVALID, start);
      acc = acc * 10 + digit;
    }
    v->type = TL_JV_INTEGER;
    v->u.i = neg ? (acc ? -(int64_t)(acc - 1) - 1 : 0) : (int64_t)acc;
    return TL_OK;
  }
  double fast;
  if (exact_real(start + neg, p, &fast)) {
    v->type = TL_JV_REAL;
    v->u.r = neg ? -fast : fast;
    return TL_OK;
  }
  /* strtod needs a NUL after the number: a copy (on the stack unless it is very long). */
  size_t n = (size_t)(p - start);
  char small[64], *copy = n < sizeof small ? small : malloc(n + 1);
  if (!copy) return fail(ps, TL_E_NOMEM);
  memcpy(copy, start, n);
  copy[n] = '\0';
  errno = 0;
  double r = strtod(copy, NULL);
  int overflow = errno == ERANGE && (r == HUGE_VAL || r == -HUGE_VAL);
  if (copy != small) free(copy);
  if (overflow) return fail_at(ps, TL_E_INVALID, start);
  v->type = TL_JV_REAL;
  v->u.r = r;
  return TL_OK;
}

static int parse_value(parser *ps, int depth, const char *key);

/* An object or an array at ps->p (its opening bracket) whose node is at index at. */
static int parse_members(parser *ps, long at, int depth, bool object) {
  char close = object ? '}' : ']';
  uint32_t count = 0;
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return TL_OK;
  }
  for (;;) {
    const char *key = NULL;
    skip_ws(ps);
    if (object) {
      uint32_t key_len;
      if (ps->p == ps->end || *ps->p != '"') return fail(ps, TL_E_INVALID);
      if (parse_string(ps, &key, &key_len) != TL_OK) return ps->rc;
      skip_ws(ps);
      if (ps->p == ps->end || *ps->p != ':') return fail(ps, TL_E_INVALID);
      ps->p++;
    }
    if (parse_value(ps, depth + 1, key) != TL_OK) return ps->rc;
    count++;
    skip_ws(ps);
    if (ps->p == ps->end) return fail(ps, TL_E_INVALID);
    char c = *ps->p++;
    if (c == close) break;
    if (c != ',') return fail(ps, TL_E_INVALID);
  }
  ps->d->nodes[at].count = count;
  return TL_OK;
}

static int keyword(parser *ps, const char *word, size_t n) {
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return fail(ps, TL_E_INVALID);
  ps->p += n;
  return TL_OK;
}

/* One value at ps->p (after optional white space), a member called key when key is not NULL. */
static int parse_value(parser *ps, int depth, const char *key) {
  if (depth > TL_JV_MAX_DEPTH) return fail(ps, TL_E_INVALID);
  skip_ws(ps);
  if (ps->p == ps->end) return fail(ps, TL_E_INVALID);
  long at = new_node(ps, TL_JV_NULL, key);
  if (at < 0) return fail(ps, TL_E_NOMEM);
  char c = *ps->p;
  int rc;
  switch (c) {
    case '{':
    case '[':
      ps->d->nodes[at].type = c == '{' ? TL_JV_OBJECT : TL_JV_ARRAY;
      rc = parse_members(ps, at, depth, c == '{');
      break;
    case '"': {
      const char *s;
      uint32_t len;
      rc = parse_string(ps, &s, &len);
      tl_jv *v = &ps->d->nodes[at];
      v->type = TL_JV_STRING;
      v->u.s = s;
      v->len = len;
      break;
    }
    case 't':
      ps->d->nodes[at].type = TL_JV_TRUE;
      rc = keyword(ps, "true", 4);
      break;
    case 'f':
      ps->d->nodes[at].type = TL_JV_FALSE;
      rc = keyword(ps, "false", 5);
      break;
    case 'n': rc = keyword(ps, "null", 4); break;
    default:
      if (c != '-' && !is_digit(c)) return fail(ps, TL_E_INVALID);
      rc = parse_number(ps, &ps->d->nodes[at]);
      break;
  }
  if (rc != TL_OK) return rc;
  ps->d->nodes[at].span = (uint32_t)(ps->d->n - (size_t)at);
  return TL_OK;
}

/* Buffers larger than this are given back once a document a quarter of their size comes:
 * one big event must not keep megabytes for the life of the thread that parsed it. */
#define KEEP_BYTES (64 * 1024)

int tl_jdoc_parse(tl_jdoc *d, const char *text, size_t len, const tl_jv **root) {
  *root = NULL;
  d->n = 0;
  d->err_offset = 0;
  if (len >= UINT32_MAX) return TL_E_INVALID; /* spans and lengths are 32-bit */
  if (d->str_cap > KEEP_BYTES && len + 1 <= d->str_cap / 4) tl_jdoc_free(d);
  /* Every decoded string with its NUL fits in the bytes of its quoted text. */
  if (d->str_cap < len + 1) {
    char *str = malloc(len + 1);
    if (!str) return TL_E_NOMEM;
    free(d->str);
    d->str = str;
    d->str_cap = len + 1;
  }
  parser ps = {.text = text, .p = text, .end = text + len, .d = d, .out = d->str, .rc = TL_OK};
  skip_ws(&ps);
  if (ps.p == ps.end || (*ps.p != '{' && *ps.p != '[')) return fail(&ps, TL_E_INVALID);
  if (parse_value(&ps, 1, NULL) != TL_OK) {
    d->n = 0;
    return ps.rc;
  }
  skip_ws(&ps);
  if (ps.p != ps.end) {
    d->n = 0;
    return fail(&ps, TL_E_INVALID);
  }
  *root = &d->nodes[0];
  return TL_OK;
}

void tl_jdoc_free(tl_jdoc *d) {
  free(d->nodes);
  free(d->str);
  memset(d, 0, sizeof *d);
}

static int cmp_key(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A name object o holds twice, or NULL. Small objects (a request body's) by pairs, large ones
 * (a hostile body's) by sorting the names. */
static const char *repeated_in(const tl_jv *o, bool *oom) {
  if (o->count < 2) return NULL;
  if (o->count <= 16) {
    TL_JV_FOREACH(a, o) {
      for (const tl_jv *b = a + a->span, *end = o + o->span; b != end; b += b->span)
        if (strcmp(a->key, b->key) == 0) return a->key;
    }
    return NULL;
  }
  const char **keys = malloc(o->count * sizeof *keys);
  if (!keys) {
    *oom = true;
    return NULL;
  }
  size_t n = 0;
  TL_JV_FOREACH(m, o) keys[n++] = m->key;
  qsort(keys, n, sizeof *keys, cmp_key);
  const char *dup = NULL;
  for (size_t i = 1; i < n && !dup; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
  free(keys);
  return dup;
}

const char *tl_jdoc_repeated_key(const tl_jdoc *d, bool *oom) {
  *oom = false;
  for (size_t i = 0; i < d->n; i++) {
    if (d->nodes[i].type != TL_JV_OBJECT) continue;
    const char *dup = repeated_in(&d->nodes[i], oom);
    if (dup || *oom) return dup;
  }
  return NULL;
}

const tl_jv *tl_jv_get(const tl_jv *object, const char *key) {
  if (!tl_jv_is(object, TL_JV_OBJECT)) return NULL;
  const tl_jv *found = NULL;
  const char first = key[0]; /* most names differ there: no call for them */
  TL_JV_FOREACH(m, object) {
    if (m->key[0] == first && strcmp(m->key, key) == 0) found = m;
  }
  return found;
}
