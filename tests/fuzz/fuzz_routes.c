/*
 * fuzz_routes.c: routing and the HTTP layer's value parsers (http/route_match.c): request paths
 * split into segments and matched against route patterns, query-string integers, If-Match,
 * Idempotency-Key and Content-Type.
 *
 * Input: a first byte choosing the mode, then its data:
 *   'p'  a request path, matched against the route table's patterns;
 *   'm'  a route pattern, '\n', a request path;
 *   'u'  8 bytes of a maximum (int64), then the text for tl_route_parse_uint;
 *   'i'  an If-Match value;  'k'  an Idempotency-Key;  'c'  a Content-Type.
 * Any other first byte picks a mode from its value. Text stops at the first NUL, as C sees it.
 *
 * Invariants: each function agrees with a reference written here from its contract in
 * route_match.h; captures point at the segments in the pattern's "{}" places.
 */
#include "fuzz_common.h"

#include "http/route_match.h"
#include "util/tl_common.h"

#include <stdbool.h>
#include <strings.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

/* The patterns of the route table in routes.c (a copy: if they drift apart, this target only
 * loses the matching of real routes, not its checks). */
static const char *const PATTERNS[] = {
    "/health",          "/ready",        "/metrics",      "/admin/projections",
    "/admin/failpoints", "/admin/failpoints/{}", "/products", "/products/{}",
    "/products/{}/restock", "/orders",   "/orders/search", "/orders/{}",
    "/orders/{}/history", "/orders/{}/state", "/orders/{}/confirm-payment", "/orders/{}/ship",
    "/orders/{}/cancel", "/customers/{}/orders", "/sales/daily", "/streams/{}", "/log",
};

typedef char segs[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN];

/* ---- paths and patterns ------------------------------------------------------------------ */

/* Splits text (no leading '/') at every '/' into pieces pointing into a copy; returns the
 * count, or -1 for more than max pieces. */
static int pieces(char *text, char **out, int max) {
  int n = 0;
  for (char *p = text;;) {
    if (n == max) return -1;
    out[n++] = p;
    char *e = strchr(p, '/');
    if (!e) return n;
    *e = '\0';
    p = e + 1;
  }
}

/* The reference split: strip the trailing '/' (and the "//" quirk), then every piece must be
 * non-empty and short, and at most TL_ROUTE_MAX_SEGMENTS of them. */
static int ref_split(const char *path, segs out) {
  if (path[0] != '/') return -1;
  char *body = strdup(path + 1);
  if (!body) abort();
  size_t len = strlen(body);
  if (len > 0 && body[len - 1] == '/') body[--len] = '\0';
  if (len > 1 && body[len - 1] == '/' && body[len - 2] != '/') body[--len] = '\0';
  int n = 0;
  if (len > 0) {
    char *p[TL_ROUTE_MAX_SEGMENTS + 1];
    n = pieces(body, p, TL_ROUTE_MAX_SEGMENTS);
    for (int i = 0; i < n && n >= 0; i++) {
      size_t l = strlen(p[i]);
      if (l == 0 || l >= TL_ROUTE_MAX_SEGMENT_LEN) n = -1;
      else memcpy(out[i], p[i], l + 1);
    }
  } else if (strlen(path + 1) > 0) {
    n = -1; /* "//": nothing before the trailing slashes */
  }
  free(body);
  return n;
}

/* Is pattern of the documented form: '/', then non-empty '/'-separated pieces (or nothing)? */
static bool good_pattern(const char *pattern) {
  if (pattern[0] != '/') return false;
  if (pattern[1] == '\0') return true;
  for (const char *p = pattern + 1; *p; p++)
    if (*p == '/' && (p[1] == '/' || p[1] == '\0')) return false;
  return pattern[1] != '/';
}

/* The reference match: as many pieces as segments, each equal or "{}". */
static bool ref_match(const char *pattern, segs seg, int n, const char *caps[2]) {
  char *copy = strdup(pattern + 1);
  if (!copy) abort();
  char *p[64];
  int np = copy[0] ? pieces(copy, p, 64) : 0;
  bool ok = np == n;
  int nc = 0;
  for (int i = 0; ok && i < n; i++) {
    if (strcmp(p[i], "{}") == 0) {
      if (nc < TL_ROUTE_MAX_CAPTURES) caps[nc++] = seg[i];
    } else if (strcmp(p[i], seg[i]) != 0) {
      ok = false;
    }
  }
  free(copy);
  return ok;
}

static void check_match(const char *pattern, segs seg, int n) {
  const char *caps[TL_ROUTE_MAX_CAPTURES] = {NULL, NULL};
  const char *want[TL_ROUTE_MAX_CAPTURES] = {NULL, NULL};
  int m = tl_route_match(pattern, seg, n, caps);
  bool ok = ref_match(pattern, seg, n, want);
  FUZZ_CHECK((m == 1) == ok, "pattern '%s' on %d segments: %d, reference %d", pattern, n, m, ok);
  if (ok)
    for (int k = 0; k < TL_ROUTE_MAX_CAPTURES; k++)
      FUZZ_CHECK(caps[k] == want[k], "pattern '%s': capture %d", pattern, k);
}

static void check_path(const char *path, const char *pattern) {
  static segs seg, want;
  int n = tl_route_split_path(path, seg);
  int m = ref_split(path, want);
  FUZZ_CHECK(n == m, "split '%s': %d segments, reference %d", path, n, m);
  for (int i = 0; i < n; i++)
    FUZZ_CHECK(strcmp(seg[i], want[i]) == 0, "split '%s': segment %d '%s', reference '%s'",
               path, i, seg[i], want[i]);
  if (n < 0) return;
  if (pattern) {
    if (good_pattern(pattern)) check_match(pattern, seg, n);
    return;
  }
  for (size_t i = 0; i < TL_ARRAY_LEN(PATTERNS); i++) check_match(PATTERNS[i], seg, n);
}

/* ---- value parsers ----------------------------------------------------------------------- */

static bool ref_uint(const char *s, int64_t max, int64_t *out) {
  if (!*s) return false;
  __int128 v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
    if (v > max) return false;
  }
  *out = (int64_t)v;
  return true;
}

static void check_uint(const char *s, int64_t max) {
  int64_t got = -7, want = 0;
  int rc = tl_route_parse_uint(s, max, &got);
  bool ok = ref_uint(s, max, &want);
  FUZZ_CHECK((rc == TL_OK) == ok, "'%s' up to %lld: rc %d, reference %s", s, (long long)max, rc,
             ok ? "accepts" : "refuses");
  if (ok) FUZZ_CHECK(got == want, "'%s' read as %lld", s, (long long)got);
  else FUZZ_CHECK(got == -7, "'%s' refused but *out changed", s);
}

static void check_if_match(const char *s) {
  size_t n = strlen(s);
  char *inner = strdup(s);
  if (!inner) abort();
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    memmove(inner, s + 1, n - 2);
    inner[n - 2] = '\0';
  }
  int64_t got = 0, want = 0;
  bool ok = strlen(inner) <= 31 && ref_uint(inner, INT64_MAX, &want);
  int rc = tl_route_parse_if_match(s, &got);
  FUZZ_CHECK((rc == TL_OK) == ok, "If-Match '%s': rc %d", s, rc);
  if (ok) FUZZ_CHECK(got == want, "If-Match '%s' read as %lld", s, (long long)got);
  free(inner);
}

static void check_idem_key(const char *k) {
  size_t n = strlen(k);
  bool ok = n >= 1 && n <= 128;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e) ok = false;
  FUZZ_CHECK(!tl_route_valid_idem_key(k) == !ok, "Idempotency-Key '%s'", k);
}

static void check_content_type(const char *ct) {
  const char *p = ct + strspn(ct, " ");
  size_t n = strlen("application/json");
  bool ok = strncasecmp(p, "application/json", n) == 0 && strchr(" ;", p[n]);
  FUZZ_CHECK(!tl_route_is_json_content_type(ct) == !ok, "Content-Type '%s'", ct);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  if (!strchr("pmuikc", mode) || mode == 0) mode = "pmuikc"[mode % 6];
  data++, size--;
  if (mode == 'u') {
    int64_t max = 0;
    memcpy(&max, data, size < sizeof max ? size : sizeof max);
    size_t skip = size < sizeof max ? size : sizeof max;
    char *s = fuzz_strndup(data + skip, size - skip);
    check_uint(s, max);
    check_uint(s, INT64_MAX); /* what every caller passes */
    free(s);
    return 0;
  }
  if (mode == 'm') {
    char *pattern;
    const uint8_t *rest;
    size_t rest_len;
    fuzz_split_line(data, size, &pattern, &rest, &rest_len);
    if (!pattern) return 0;
    char *path = fuzz_strndup(rest, rest_len);
    check_path(path, pattern);
    free(path);
    free(pattern);
    return 0;
  }
  char *s = fuzz_strndup(data, size);
  switch (mode) {
  case 'p': check_path(s, NULL); break;
  case 'i': check_if_match(s); break;
  case 'k': check_idem_key(s); break;
  default: check_content_type(s); break;
  }
  free(s);
  return 0;
}
