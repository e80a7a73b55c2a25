/*
 * route_match.c: path splitting, route-pattern matching and the small value parsers of the
 * HTTP layer (see route_match.h). Pure functions: no request, no allocation, no shared state.
 */
#include "http/route_match.h"

#include "util/tl_common.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

int tl_route_split_path(const char *path,
                        char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN]) {
  if (path[0] != '/') return -1;
  int n = 0;
  const char *p = path + 1;
  if (*p == '\0') return 0;
  for (;;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 0) return (e == NULL || e[1] == '\0') && n > 0 ? n : -1;
    if (n == TL_ROUTE_MAX_SEGMENTS || len >= TL_ROUTE_MAX_SEGMENT_LEN) return -1;
    memcpy(seg[n], p, len);
    seg[n][len] = '\0';
    n++;
    if (!e) return n;
    p = e + 1;
    if (*p == '\0') return n;
  }
}

/* Walks the pattern in place (no copies): each '/'-separated piece must equal the segment, or
 * be "{}" which captures it. */
int tl_route_match(const char *pattern, char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN],
                   int n, const char *caps[TL_ROUTE_MAX_CAPTURES]) {
  const char *p = pattern + 1;
  int nc = 0;
  for (int i = 0; i < n; i++) {
    if (*p == '\0') return 0; /* the path is longer */
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 2 && p[0] == '{' && p[1] == '}') {
      if (nc < TL_ROUTE_MAX_CAPTURES) caps[nc++] = seg[i];
    } else if (strlen(seg[i]) != len || memcmp(p, seg[i], len) != 0) {
      return 0;
    }
    p = e ? e + 1 : p + len;
  }
  return *p == '\0';
}

int tl_route_parse_uint(const char *s, int64_t max, int64_t *out) {
  if (!s || !*s) return TL_E_INVALID;
  int64_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return TL_E_INVALID;
    int d = *p - '0';
    /* v * 10 + d <= max, without overflow; max - d < 0 (a small max) refuses at once, as the
     * division would round it up to 0. */
    if (max < d || v > (max - d) / 10) return TL_E_INVALID;
    v = v * 10 + d;
  }
  *out = v;
  return TL_OK;
}

int tl_route_parse_if_match(const char *s, int64_t *out) {
  char buf[32];
  size_t n = strlen(s);
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    if (n - 2 >= sizeof buf) return TL_E_INVALID;
    memcpy(buf, s + 1, n - 2);
    buf[n - 2] = '\0';
  } else {
    if (n >= sizeof buf) return TL_E_INVALID;
    memcpy(buf, s, n + 1);
  }
  return tl_route_parse_uint(buf, INT64_MAX, out);
}

int tl_route_valid_idem_key(const char *k) {
  size_t n = 0;
  for (; k[n]; n++)
    if ((unsigned char)k[n] < 0x20 || (unsigned char)k[n] > 0x7e || n >= 128) return 0;
  return n > 0;
}

int tl_route_is_json_content_type(const char *ct) {
  if (!ct) return 0;
  while (*ct == ' ') ct++;
  size_t n = strlen("application/json");
  return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' ||
                                                          ct[n] == ' ');
}
