/*
 * tl_failpoint.c: the armed points, a small table under one mutex (see tl_failpoint.h).
 */
#include "util/tl_failpoint.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_ERRORS 1000000000L
#define MAX_DELAY_MS 60000L

typedef enum { FP_ERROR, FP_ERROR_N, FP_DELAY } fp_kind;

typedef struct fp {
  tl_fp_info info;
  fp_kind kind;
  long arg; /* FP_ERROR_N: failures left; FP_DELAY: milliseconds */
} fp;

_Atomic int tl_fp_armed;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static fp g_points[TL_FP_MAX];
static int g_n;

/* Known names: a literal, or a template whose "*" is one name of [a-z0-9_]. */
static const char *const TEMPLATES[] = {
    "log.append",           "log.commit",  "log.fsync",   "log.snapshot",   "projection.*.apply",
    "projection.*.rebuild", "read.attach", "read.commit", "read.reconcile", "saga.*.step"};

static int name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int matches(const char *tpl, const char *s) {
  for (; *tpl; tpl++) {
    if (*tpl == '*') {
      if (!name_char(*s)) return 0;
      while (name_char(*s)) s++;
    } else if (*tpl != *s++) {
      return 0;
    }
  }
  return *s == '\0';
}

int tl_fp_known(const char *point) {
  if (!point || strlen(point) >= TL_FP_NAME_MAX) return 0;
  for (size_t i = 0; i < TL_ARRAY_LEN(TEMPLATES); i++)
    if (matches(TEMPLATES[i], point)) return 1;
  return 0;
}

/* Parses a whole decimal number in [min, max]. */
static int parse_long(const char *s, long min, long max, long *out) {
  if (!*s) return TL_E_INVALID;
  long v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return TL_E_INVALID;
    v = v * 10 + (*s - '0');
    if (v > max) return TL_E_INVALID;
  }
  if (v < min) return TL_E_INVALID;
  *out = v;
  return TL_OK;
}

/* Parses an action other than "off". */
static int parse_action(const char *a, fp_kind *kind, long *arg) {
  if (strlen(a) >= TL_FP_ACTION_MAX) return TL_E_INVALID;
  if (strcmp(a, "error") == 0) {
    *kind = FP_ERROR;
    *arg = 0;
    return TL_OK;
  }
  if (strncmp(a, "error*", 6) == 0) {
    *kind = FP_ERROR_N;
    return parse_long(a + 6, 1, MAX_ERRORS, arg);
  }
  if (strncmp(a, "delay:", 6) == 0) {
    *kind = FP_DELAY;
    return parse_long(a + 6, 0, MAX_DELAY_MS, arg);
  }
  return TL_E_INVALID;
}

static int find(const char *point) {
  for (int i = 0; i < g_n; i++)
    if (strcmp(g_points[i].info.point, point) == 0) return i;
  return -1;
}

static void remove_at(int i) {
  memmove(&g_points[i], &g_points[i + 1], (size_t)(g_n - i - 1) * sizeof g_points[0]);
  g_n--;
}

static int validate(const char *point, const char *action, fp_kind *kind, long *arg, tl_err *err) {
  if (!tl_fp_known(point))
    return tl_err_set(
        err, TL_E_INVALID,
        "unknown fail point '%.64s' (known: log.append, log.commit, log.fsync, "
        "log.snapshot, "
        "projection.<name>.apply, projection.<name>.rebuild, read.attach, read.commit, "
        "read.reconcile, "
        "saga.<name>.step)",
        point ? point : "");
  if (!action || strcmp(action, "off") == 0) return TL_OK;
  if (parse_action(action, kind, arg) != TL_OK)
    return tl_err_set(err, TL_E_INVALID,
                      "bad action '%.32s' for %s (error, error*N with N >= 1, delay:MS with MS "
                      "up to %ld, off)",
                      action, point, MAX_DELAY_MS);
  return TL_OK;
}

/* Caller holds g_lock and validated the arguments. */
static int set_locked(const char *point, const char *action, fp_kind kind, long arg, tl_err *err) {
  int i = find(point);
  if (!action || strcmp(action, "off") == 0) {
    if (i >= 0) remove_at(i);
    return TL_OK;
  }
  if (i < 0) {
    if (g_n == TL_FP_MAX) return tl_err_set(err, TL_E_INVALID, "too many armed fail points");
    i = g_n++;
  }
  fp *f = &g_points[i];
  memset(f, 0, sizeof *f);
  tl_strcpy(f->info.point, sizeof f->info.point, point);
  tl_strcpy(f->info.action, sizeof f->info.action, action);
  f->kind = kind;
  f->arg = arg;
  return TL_OK;
}

int tl_fp_set(const char *point, const char *action, tl_err *err) {
  fp_kind kind = FP_ERROR;
  long arg = 0;
  int rc = validate(point, action, &kind, &arg, err);
  if (rc != TL_OK) return rc;
  pthread_mutex_lock(&g_lock);
  rc = set_locked(point, action, kind, arg, err);
  atomic_store(&tl_fp_armed, g_n);
  pthread_mutex_unlock(&g_lock);
  return rc;
}

/* Splits spec into items in place; calls fn(point, action) for each. */
static int each_item(char *spec, int (*fn)(const char *, const char *, void *), void *arg,
                     tl_err *err) {
  char *save = NULL;
  for (char *item = strtok_r(spec, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
    while (*item == ' ') item++;
    size_t len = strlen(item);
    while (len > 0 && item[len - 1] == ' ') item[--len] = '\0';
    if (len == 0) continue;
    char *eq = strchr(item, '=');
    if (!eq) return tl_err_set(err, TL_E_INVALID, "fail point item '%.64s' has no '='", item);
    *eq = '\0';
    char *point = item, *action = eq + 1;
    size_t pl = strlen(point);
    while (pl > 0 && point[pl - 1] == ' ') point[--pl] = '\0';
    while (*action == ' ') action++;
    int rc = fn(point, action, arg);
    if (rc != TL_OK) return rc;
  }
  return TL_OK;
}

typedef struct cfg_ctx {
  tl_err *err;
  int apply;
} cfg_ctx;

static int cfg_item(const char *point, const char *action, void *arg) {
  cfg_ctx *c = arg;
  fp_kind kind = FP_ERROR;
  long n = 0;
  int rc = validate(point, action, &kind, &n, c->err);
  if (rc == TL_OK && c->apply) rc = set_locked(point, action, kind, n, c->err);
  return rc;
}

int tl_fp_configure(const char *spec, tl_err *err) {
  if (!spec) return TL_OK;
  size_t len = strlen(spec);
  if (len > 4096) return tl_err_set(err, TL_E_INVALID, "fail point specification too long");
  char a[4097], b[4097];
  memcpy(a, spec, len + 1);
  memcpy(b, spec, len + 1);
  cfg_ctx check = {err, 0}, apply = {err, 1};
  int rc = each_item(a, cfg_item, &check, err); /* validate everything first */
  if (rc != TL_OK) return rc;
  pthread_mutex_lock(&g_lock);
  fp saved[TL_FP_MAX];
  int saved_n = g_n;
  memcpy(saved, g_points, sizeof saved);
  rc = each_item(b, cfg_item, &apply, err);
  if (rc != TL_OK) { /* too many points: undo */
    memcpy(g_points, saved, sizeof saved);
    g_n = saved_n;
  }
  atomic_store(&tl_fp_armed, g_n);
  pthread_mutex_unlock(&g_lock);
  return rc;
}

void tl_fp_clear_all(void) {
  pthread_mutex_lock(&g_lock);
  g_n = 0;
  atomic_store(&tl_fp_armed, 0);
  pthread_mutex_unlock(&g_lock);
}

int tl_fp_eval(const char *point) {
  long delay_ms = 0;
  int fail = 0;
  pthread_mutex_lock(&g_lock);
  int i = find(point);
  if (i >= 0) {
    fp *f = &g_points[i];
    f->info.hits++;
    switch (f->kind) {
      case FP_ERROR: fail = 1; break;
      case FP_ERROR_N:
        if (f->arg > 0) {
          f->arg--;
          fail = 1;
        }
        break;
      case FP_DELAY: delay_ms = f->arg; break;
    }
    if (fail) f->info.fired++;
  }
  pthread_mutex_unlock(&g_lock);
  if (delay_ms > 0) {
    struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  return fail;
}

int tl_fp_list(tl_fp_info *out, int max) {
  pthread_mutex_lock(&g_lock);
  int n = g_n < max ? g_n : max;
  for (int i = 0; i < n; i++) out[i] = g_points[i].info;
  pthread_mutex_unlock(&g_lock);
  return n;
}

int tl_fp_get(const char *point, tl_fp_info *out) {
  pthread_mutex_lock(&g_lock);
  int i = find(point);
  if (i >= 0) *out = g_points[i].info;
  pthread_mutex_unlock(&g_lock);
  return i >= 0 ? TL_OK : TL_E_NOTFOUND;
}
