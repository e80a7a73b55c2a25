/*
 * portable.c: `twinlane export` and `twinlane import`: the event log as JSON lines.
 *
 * One line per event, in position order:
 *   {"position":1,"stream":"order-...","version":1,"type":"OrderPlaced","schemaVersion":1,
 *    "data":{...},"metadata":{...},"recordedAt":"2026-11-23T10:00:00.000Z"}
 * data and metadata are copied byte for byte in both directions (export writes the stored
 * text, import stores the text of the line's members), and events keep their schema version:
 * old events are upcast when the server reads them, never rewritten. Idempotency records and
 * read models are not exported: the server rebuilds read models and process-manager state
 * from the log.
 *
 * Both need the data directory to themselves (they take its LOCK, so a running server makes
 * them fail). Import only fills an empty log, and checks the whole file before writing
 * anything: positions 1, 2, 3...; each stream's versions 1, 2, 3...; every member present
 * and well-typed.
 */
#include "cli/tl_cli.h"

#include "log/tl_log.h"
#include "util/tl_buf.h"
#include "util/tl_common.h"
#include "util/tl_db.h"
#include "util/tl_time.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 1000
#define IMPORT_BATCH 500
#define LINE_MAX_BYTES (16u << 20)
#define STREAM_MAX 200
#define TYPE_MAX 100

static int open_log(const char *dir, int must_exist, tl_log **log, int *lock_fd) {
  tl_err err = {0};
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/events.db", dir);
  if (must_exist && stat(path, &st) != 0) {
    fprintf(stderr, "twinlane: %s has no event log (%s)\n", dir, path);
    return -1;
  }
  if (tl_db_init_library(&err) != TL_OK || (*lock_fd = tl_cli_lock_data_dir(dir, &err)) < 0) {
    fprintf(stderr, "twinlane: %s\n", err.msg);
    return -1;
  }
  tl_log_opts lo = {.dir = dir};
  if (tl_log_open(log, &lo, &err) != TL_OK) {
    fprintf(stderr, "twinlane: %s\n", err.msg);
    close(*lock_fd);
    return -1;
  }
  return 0;
}

/* ---- export ------------------------------------------------------------------------------ */

typedef struct export_ctx {
  FILE *out;
  tl_buf line;
  int64_t last;
  int failed;
} export_ctx;

static int export_event(void *arg, const tl_event *ev) {
  export_ctx *x = arg;
  char iso[TL_ISO_LEN];
  tl_time_format(ev->recorded_ms, iso);
  x->line.len = 0;
  tl_buf_printf(&x->line, "{\"position\":%lld,\"stream\":", (long long)ev->position);
  tl_buf_json_string(&x->line, ev->stream);
  tl_buf_printf(&x->line, ",\"version\":%lld,\"type\":", (long long)ev->version);
  tl_buf_json_string(&x->line, ev->type);
  tl_buf_printf(&x->line,
                ",\"schemaVersion\":%d,\"data\":%s,\"metadata\":%s,\"recordedAt\":\"%s\"}\n",
                ev->schema_version, ev->data, ev->metadata, iso);
  if (x->line.oom || fwrite(x->line.data, 1, x->line.len, x->out) != x->line.len) {
    x->failed = 1;
    return 1;
  }
  x->last = ev->position;
  return 0;
}

int tl_cli_export(int argc, char **argv) {
  const char *dir = NULL, *out_path = NULL;
  static const struct option OPTS[] = {{"data", required_argument, NULL, 'd'},
                                       {"out", required_argument, NULL, 'o'},
                                       {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:o:", OPTS, NULL)) != -1) {
    if (c == 'd')
      dir = optarg;
    else if (c == 'o')
      out_path = optarg;
    else
      return fprintf(stderr, "usage: twinlane export --data DIR [--out FILE]\n"), 2;
  }
  if (!dir || optind != argc)
    return fprintf(stderr, "usage: twinlane export --data DIR [--out FILE]\n"), 2;
  tl_log *log = NULL;
  int lock_fd = -1;
  if (open_log(dir, 1, &log, &lock_fd) != 0) return 1;
  export_ctx x = {.out = out_path ? fopen(out_path, "w") : stdout};
  int rc = 1;
  tl_log_reader *r = NULL;
  tl_err err = {0};
  if (!x.out) {
    fprintf(stderr, "twinlane: cannot write %s\n", out_path);
  } else if (tl_log_reader_acquire(log, &r, &err) != TL_OK) {
    fprintf(stderr, "twinlane: %s\n", err.msg);
  } else {
    int64_t head = tl_log_head(log);
    int step = TL_OK;
    while (step == TL_OK && x.last < head)
      step = tl_log_read_all(r, x.last + 1, PAGE, export_event, &x, &err);
    tl_log_reader_release(log, r);
    if (x.failed || step != TL_OK || fflush(x.out) != 0) {
      fprintf(stderr, "twinlane: export failed after position %lld: %s\n", (long long)x.last,
              x.failed ? "cannot write the output" : err.msg);
    } else {
      fprintf(stderr, "twinlane: exported %lld events\n", (long long)x.last);
      rc = 0;
    }
  }
  if (x.out && x.out != stdout && fclose(x.out) != 0) rc = 1;
  tl_buf_free(&x.line);
  tl_log_close(log);
  close(lock_fd);
  return rc;
}

/* ---- import ------------------------------------------------------------------------------ */

/* The raw text of the value of top-level member `key` of the JSON object in line (already
 * validated by jansson, so the scan can trust the syntax). NULL if absent. */
static const char *member_span(const char *line, const char *key, size_t *len) {
  size_t klen = strlen(key);
  int depth = 0;
  for (const char *p = line; *p; p++) {
    if (*p == '"') {
      const char *start = p + 1;
      for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && p[1]) p++;
      if (depth == 1 && (size_t)(p - start) == klen && memcmp(start, key, klen) == 0) {
        const char *v = p + 1;
        while (*v == ' ' || *v == '\t' || *v == ':') v++;
        const char *e = v;
        int d = 0;
        for (; *e; e++) { /* the value: a string, a number or a nested object/array */
          if (*e == '"') {
            for (e++; *e && *e != '"'; e++)
              if (*e == '\\' && e[1]) e++;
            if (d == 0) {
              e++;
              break;
            }
          } else if (*e == '{' || *e == '[') {
            d++;
          } else if (*e == '}' || *e == ']') {
            if (d == 0) break;
            if (--d == 0) {
              e++;
              break;
            }
          } else if (d == 0 && *e == ',') {
            break;
          }
        }
        *len = (size_t)(e - v);
        return v;
      }
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      depth--;
    }
  }
  return NULL;
}

typedef struct imp_event {
  int64_t position, version, recorded_ms;
  int schema_version;
  char *stream, *type, *data, *metadata;
} imp_event;

static void imp_clear(imp_event *e) {
  free(e->stream);
  free(e->type);
  free(e->data);
  free(e->metadata);
  memset(e, 0, sizeof *e);
}

/* Parses and checks one line; versions maps stream -> last version (updated). */
static int parse_line(const char *line, int64_t expect_position, json_t *versions, imp_event *e,
                      char *why, size_t why_len) {
  json_error_t jerr;
  json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
  int ok = 0;
  if (!json_is_object(j)) {
    snprintf(why, why_len, "not a JSON object (%s)", j ? "another value" : jerr.text);
    goto out;
  }
  json_t *pos = json_object_get(j, "position"), *ver = json_object_get(j, "version");
  json_t *sv = json_object_get(j, "schemaVersion");
  const char *stream = json_string_value(json_object_get(j, "stream"));
  const char *type = json_string_value(json_object_get(j, "type"));
  const char *at = json_string_value(json_object_get(j, "recordedAt"));
  if (!json_is_integer(pos) || json_integer_value(pos) != expect_position) {
    snprintf(why, why_len, "position must be %lld", (long long)expect_position);
    goto out;
  }
  if (!stream || !*stream || strlen(stream) > STREAM_MAX) {
    snprintf(why, why_len, "stream must be a string of 1 to %d characters", STREAM_MAX);
    goto out;
  }
  json_int_t last = json_integer_value(json_object_get(versions, stream));
  if (!json_is_integer(ver) || json_integer_value(ver) != last + 1) {
    snprintf(why, why_len, "version of %.100s must be %lld", stream, (long long)last + 1);
    goto out;
  }
  if (!type || !*type || strlen(type) > TYPE_MAX) {
    snprintf(why, why_len, "type must be a string of 1 to %d characters", TYPE_MAX);
    goto out;
  }
  if (!json_is_integer(sv) || json_integer_value(sv) < 1 || json_integer_value(sv) > 1000) {
    snprintf(why, why_len, "schemaVersion must be an integer from 1 to 1000");
    goto out;
  }
  if (!json_is_object(json_object_get(j, "data")) ||
      !json_is_object(json_object_get(j, "metadata"))) {
    snprintf(why, why_len, "data and metadata must be objects");
    goto out;
  }
  int64_t ms;
  if (!at || tl_time_parse(at, &ms) != TL_OK) {
    snprintf(why, why_len, "recordedAt must be a time like 2026-11-23T10:00:00.000Z");
    goto out;
  }
  if (e) {
    size_t dl = 0, ml = 0;
    const char *d = member_span(line, "data", &dl), *m = member_span(line, "metadata", &ml);
    if (!d || !m) {
      snprintf(why, why_len, "data or metadata unreadable");
      goto out;
    }
    e->position = expect_position;
    e->version = last + 1;
    e->recorded_ms = ms;
    e->schema_version = (int)json_integer_value(sv);
    e->stream = strdup(stream);
    e->type = strdup(type);
    e->data = strndup(d, dl);
    e->metadata = strndup(m, ml);
    if (!e->stream || !e->type || !e->data || !e->metadata) {
      snprintf(why, why_len, "out of memory");
      goto out;
    }
  }
  json_object_set_new(versions, stream, json_integer(last + 1));
  ok = 1;
out:
  json_decref(j);
  return ok ? 0 : -1;
}

/* Reads the next line (without its newline) into *buf; 1 when there was one, 0 at the end,
 * -1 when a line is too long. */
static int next_line(FILE *f, char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, f);
  if (n < 0) return 0;
  if ((size_t)n > LINE_MAX_BYTES) return -1;
  while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = '\0';
  return 1;
}

static int flush_batch(tl_log *log, imp_event *evs, size_t n, tl_err *err) {
  if (n == 0) return TL_OK;
  tl_log_event_in in[IMPORT_BATCH];
  for (size_t i = 0; i < n; i++)
    in[i] = (tl_log_event_in){.position = evs[i].position,
                              .stream = evs[i].stream,
                              .version = evs[i].version,
                              .type = evs[i].type,
                              .schema_version = evs[i].schema_version,
                              .data = evs[i].data,
                              .metadata = evs[i].metadata,
                              .recorded_ms = evs[i].recorded_ms};
  tl_log_batch b = {.events = in, .n_events = n, .recorded_ms = tl_now_ms()};
  return tl_log_append(log, &b, err);
}

int tl_cli_import(int argc, char **argv) {
  const char *dir = NULL;
  static const struct option OPTS[] = {{"data", required_argument, NULL, 'd'}, {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "d:", OPTS, NULL)) != -1) {
    if (c == 'd')
      dir = optarg;
    else
      return fprintf(stderr, "usage: twinlane import --data DIR FILE\n"), 2;
  }
  if (!dir || optind != argc - 1)
    return fprintf(stderr, "usage: twinlane import --data DIR FILE\n"), 2;
  const char *path = argv[optind];
  FILE *f = fopen(path, "r");
  if (!f) return fprintf(stderr, "twinlane: cannot read %s\n", path), 1;
  tl_log *log = NULL;
  int lock_fd = -1;
  if (open_log(dir, 0, &log, &lock_fd) != 0) {
    fclose(f);
    return 1;
  }
  int rc = 1;
  char *buf = NULL, why[256];
  size_t cap = 0;
  int64_t n = 0;
  json_t *versions = json_object();
  if (tl_log_head(log) != 0) {
    fprintf(stderr, "twinlane: the log in %s is not empty: import only fills a new one\n", dir);
    goto out;
  }
  /* Pass 1: check everything; nothing is written if any line is wrong. */
  int got;
  while ((got = next_line(f, &buf, &cap)) == 1) {
    if (!buf[0]) continue;
    if (parse_line(buf, n + 1, versions, NULL, why, sizeof why) != 0) {
      fprintf(stderr, "twinlane: %s: line %lld: %s; nothing imported\n", path, (long long)n + 1,
              why);
      goto out;
    }
    n++;
  }
  if (got < 0) {
    fprintf(stderr, "twinlane: %s: line %lld is too long; nothing imported\n", path,
            (long long)n + 1);
    goto out;
  }
  /* Pass 2: append, IMPORT_BATCH events per transaction. */
  rewind(f);
  json_object_clear(versions);
  imp_event batch[IMPORT_BATCH];
  memset(batch, 0, sizeof batch);
  size_t nb = 0;
  int64_t done = 0;
  tl_err err = {0};
  int step = TL_OK;
  while (step == TL_OK && next_line(f, &buf, &cap) == 1) {
    if (!buf[0]) continue;
    if (parse_line(buf, done + 1, versions, &batch[nb], why, sizeof why) != 0) {
      step = tl_err_set(&err, TL_E_IO, "line %lld changed while importing: %s", (long long)done + 1,
                        why);
      break;
    }
    done++;
    if (++nb == IMPORT_BATCH) {
      step = flush_batch(log, batch, nb, &err);
      for (size_t i = 0; i < nb; i++) imp_clear(&batch[i]);
      nb = 0;
    }
  }
  if (step == TL_OK) step = flush_batch(log, batch, nb, &err);
  for (size_t i = 0; i < nb; i++) imp_clear(&batch[i]);
  if (step != TL_OK) {
    /* After a failed sync the log may hold more than its durable head: name what it holds. */
    fprintf(stderr, "twinlane: import failed: %s (the log now ends at %lld: remove %s and retry)\n",
            err.msg, (long long)tl_log_committed(log), dir);
    goto out;
  }
  fprintf(stderr, "twinlane: imported %lld events into %s\n", (long long)done, dir);
  rc = 0;
out:
  json_decref(versions);
  free(buf);
  fclose(f);
  tl_log_close(log);
  close(lock_fd);
  return rc;
}
