/* search_groups.c: which cached searches a changed order can touch (see search_groups.h). */
#include "read/search_groups.h"

#include <stddef.h>
#include <string.h>

/* 0-9, then a-z (either case); -1 for anything else. */
static int alnum_index(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return 10 + c - 'a';
  if (c >= 'A' && c <= 'Z') return 10 + c - 'A';
  return -1;
}

static int group_of(int c1, int c2) { /* c2 < 0: a one-character group */
  return c1 * 37 + (c2 < 0 ? 36 : c2);
}

void tl_search_group_name(int g, char out[3]) {
  static const char CH[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  out[0] = CH[g / 37];
  out[1] = g % 37 == 36 ? '\0' : CH[g % 37];
  out[2] = '\0';
}

int tl_search_group_of(const char *q) {
  const unsigned char *s = (const unsigned char *)q;
  int best = -1;
  size_t best_len = 0;
  for (;;) {
    while (*s && *s < 0x80 && alnum_index(*s) < 0) s++;
    if (!*s) break;
    const unsigned char *w = s;
    while (*s && (*s >= 0x80 || alnum_index(*s) >= 0)) s++;
    size_t len = (size_t)(s - w);
    if (w[0] >= 0x80 || (len > 1 && w[1] >= 0x80) || len < best_len) continue;
    best = group_of(alnum_index(w[0]), len > 1 ? alnum_index(w[1]) : -1);
    best_len = len;
  }
  return best;
}

#define NONASCII 0x100 /* next_char: a character that is not ASCII */

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return 10 + c - 'a';
  if (c >= 'A' && c <= 'F') return 10 + c - 'A';
  return -1;
}

/* The next character of JSON string content at *p, before end, escapes decoded: an ASCII
 * character, NONASCII (a non-ASCII byte or escape, or a malformed escape), or -1 at the end. */
static int next_char(const unsigned char **p, const unsigned char *end) {
  const unsigned char *s = *p;
  if (s >= end) return -1;
  if (*s != '\\') {
    *p = s + 1;
    return *s < 0x80 ? *s : NONASCII;
  }
  if (end - s >= 2 && s[1] != 'u') {
    *p = s + 2;
    return strchr("\"\\/bfnrt", s[1]) ? ' ' : NONASCII; /* all separators */
  }
  int v = 0;
  for (int i = 2; i < 6; i++) {
    int h = s + i < end ? hex_digit(s[i]) : -1;
    if (h < 0) {
      *p = end;
      return NONASCII;
    }
    v = v * 16 + h;
  }
  *p = s + 6;
  return v < 0x80 ? v : NONASCII;
}

/* Marks the groups of the tokens of the string content in [s, end). */
static void touch_tokens(tl_search_touch *t, const unsigned char *s, const unsigned char *end) {
  int c1 = -1; /* in a token: its first character's index; then -2 past its second */
  for (;;) {
    int c = next_char(&s, end);
    if (c == NONASCII) {
      t->all = 1;
      return;
    }
    int i = c >= 0 ? alnum_index((unsigned char)c) : -1;
    if (i < 0) {
      if (c < 0) return;
      c1 = -1;
    } else if (c1 == -1) {
      t->group[group_of(i, -1)] = 1;
      c1 = i;
    } else if (c1 >= 0) {
      t->group[group_of(c1, i)] = 1;
      c1 = -2;
    }
  }
}

void tl_search_touch_items(tl_search_touch *t, const char *items) {
  static const char KEY[] = "\"name\":\"";
  const char *s = items, *k;
  if (*s != '[') {
    t->all = 1;
    return;
  }
  while ((k = strstr(s, KEY)) != NULL) {
    size_t slashes = 0; /* a quote after an odd number of backslashes is inside a string */
    while ((size_t)(k - items) > slashes && k[-1 - (ptrdiff_t)slashes] == '\\') slashes++;
    s = k + sizeof KEY - 1;
    if (slashes % 2) continue;
    const char *v = s;
    while (*s && *s != '"') s += s[0] == '\\' && s[1] ? 2 : 1;
    if (!*s) {
      t->all = 1;
      return;
    }
    touch_tokens(t, (const unsigned char *)v, (const unsigned char *)s);
  }
}
