/*
 * routes.c: the API contract's routes (../shared/API.md, docs/api-notes.md) and their handlers.
 *
 * Routes are data: a method, a path pattern whose "{}" segments are captured, and a handler.
 * A path that matches a pattern under another method is a 405 with Allow; no match is a 404.
 */
#include "http/http_int.h"
#include "http/route_match.h"

#include "util/tl_buf.h"
#include "util/tl_failpoint.h"
#include "util/tl_money.h"
#include "util/tl_slog.h"
#include "util/tl_stats.h"
#include "util/tl_time.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WAIT_MS 2000
#define MAX_WAIT_MS 10000

/* ---- small parsers (the pure ones are in route_match.c) ---------------------------------- */

/* An optional integer query argument in [min, max] with a default; adds a field error. */
static int int_arg(const tl_req *req, const char *name, int64_t min, int64_t max, int64_t def,
                   int64_t *out, tl_problem *p) {
  const char *s = tl_req_arg(req, name);
  *out = def; /* also when s is invalid: callers read *out only without errors, but set it */
  if (!s) return TL_OK;
  int64_t v;
  if (tl_route_parse_uint(s, INT64_MAX, &v) != TL_OK || v < min || v > max) {
    char msg[96];
    snprintf(msg, sizeof msg, "must be an integer from %lld to %lld", (long long)min,
             (long long)max);
    tl_problem_field(p, name, msg);
    return TL_E_INVALID;
  }
  *out = v;
  return TL_OK;
}

static void validation_failed(tl_resp *resp, tl_problem *p) {
  tl_problem_set(p, 400, "VALIDATION_FAILED", "The request has invalid parameters.");
  tl_resp_problem(resp, p);
}

static void set_position_headers(tl_resp *resp, int64_t version, int64_t position) {
  snprintf(resp->etag, sizeof resp->etag, "\"%lld\"", (long long)version);
  snprintf(resp->position, sizeof resp->position, "%lld", (long long)position);
}

/* ---- commands ---------------------------------------------------------------------------- */

static void count_command(tl_cmd_kind kind, const tl_req *req, const tl_resp *resp) {
  atomic_fetch_add_explicit(&tl_g_stats.commands[kind][tl_outcome_of_status(resp->status)], 1,
                            memory_order_relaxed);
  tl_hist_observe(&tl_g_stats.command_seconds[kind], (double)(tl_mono_ns() - req->t0_ns) / 1e9);
}

static void free_cmd_request(void *p) {
  tl_cmd_request_clear(p);
  free(p);
}

/* The writer's completion callback (the syncer thread, once the command is durable or refused):
 * wake the suspended request. */
static void command_done(tl_cmd_request *cr, void *arg) {
  (void)cr;
  tl_req_resume(arg);
}

/* Second half of a command, on an HTTP thread once the writer has answered. */
static void command_finish(tl_req *req, tl_resp *resp) {
  tl_cmd_request *cr = req->state;
  if (cr->status >= 400) {
    tl_resp_problem(resp, &cr->problem);
    if (cr->status == 503) resp->retry_after = 1;
  } else {
    resp->status = cr->status;
    resp->content_type = "application/json";
    resp->body = cr->body;
    cr->body = NULL;
    resp->replayed = cr->replayed;
    set_position_headers(resp, cr->version, cr->position);
  }
  if (tl_slog_enabled(TL_SLOG_INFO)) {
    char status[8], pos[24];
    snprintf(status, sizeof status, "%d", cr->status);
    snprintf(pos, sizeof pos, "%lld", (long long)cr->position);
    tl_slog(cr->status >= 500 ? TL_SLOG_ERROR : TL_SLOG_INFO, req->correlation_id, "command",
            "command", tl_cmd_name(cr->cmd.kind), "id", cr->cmd.id, "status", status, "position",
            pos, NULL);
  }
  count_command(cr->cmd.kind, req, resp);
  free_cmd_request(cr);
  req->state = NULL;
}

/* Answers 200 with the JSON text written into w (taken), or 503 if it could not be written. */
static void resp_jw(tl_resp *resp, tl_jw *w) {
  char *body = tl_jw_take(w);
  if (!body)
    tl_resp_error(resp, 503, "OUT_OF_MEMORY", "The server is out of memory.");
  else
    tl_resp_text(resp, 200, "application/json", body);
}

/* First half of a command: everything that needs no shared state runs here, in parallel on the
 * HTTP threads; then the request waits (suspended, holding no thread) for the writer. */
/* Is the body declared application/json? Else answers 415 and returns false. */
static bool json_content_type(tl_req *req, tl_resp *resp) {
  if (tl_route_is_json_content_type(tl_req_header(req, "Content-Type"))) return true;
  tl_resp_error(resp, 415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json.");
  return false;
}

/* The request's JSON body, or NULL after answering 415 (not application/json) or 400. */
static json_t *json_body(tl_req *req, tl_resp *resp) {
  if (!json_content_type(req, resp)) return NULL;
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!body) {
    tl_problem p = {0};
    tl_problem_set(&p, 400, "MALFORMED_JSON", "The body is not valid JSON: %s (line %d).",
                   jerr.text, jerr.line);
    tl_resp_problem(resp, &p);
  }
  return body;
}

/* A command's JSON body read into doc (the view is valid until doc is freed), or NULL after
 * answering 415, 400 MALFORMED_JSON (not JSON as json_loadb reads it, or an object that repeats
 * a name, as JSON_REJECT_DUPLICATES refuses) or 503. tl_jv reads what jansson reads (fuzz_jv)
 * in one pass, without a malloc per value: jansson's tree was a quarter of the HTTP thread's
 * instructions per order. */
static const tl_jv *command_body(tl_req *req, tl_resp *resp, tl_jdoc *doc) {
  if (!json_content_type(req, resp)) return NULL;
  const tl_jv *body = NULL;
  int rc = tl_jdoc_parse(doc, req->body ? req->body : "", req->body_len, &body);
  bool oom = rc == TL_E_NOMEM;
  const char *dup = rc == TL_OK ? tl_jdoc_repeated_key(doc, &oom) : NULL;
  if (oom) {
    tl_resp_error(resp, 503, "OUT_OF_MEMORY", "The server is out of memory.");
    return NULL;
  }
  if (rc != TL_OK || dup) {
    tl_problem p = {0};
    if (dup) {
      /* At most 64 bytes of the name, cut at a character boundary: the detail must stay UTF-8
       * (an invalid one cannot be written, and the 400 would go out without a body). */
      int n = (int)strlen(dup);
      if (n > 64) {
        n = 64;
        while (n > 0 && ((unsigned char)dup[n] & 0xC0) == 0x80) n--;
      }
      tl_problem_set(&p, 400, "MALFORMED_JSON",
                     "The body is not valid JSON: an object repeats the name \"%.*s\".", n, dup);
    } else {
      /* Where it stops being JSON, as an editor counts: lines from 1, columns in bytes from 1. */
      const char *text = req->body ? req->body : "";
      size_t at = doc->err_offset <= req->body_len ? doc->err_offset : req->body_len;
      size_t line = 1, line_start = 0;
      for (size_t i = 0; i < at; i++)
        if (text[i] == '\n') line++, line_start = i + 1;
      tl_problem_set(&p, 400, "MALFORMED_JSON",
                     "The body is not valid JSON (RFC 8259, UTF-8, an object or an array): at "
                     "line %zu, column %zu (byte %zu).",
                     line, at - line_start + 1, at);
    }
    tl_resp_problem(resp, &p);
    return NULL;
  }
  return body;
}

static void run_command(tl_req *req, tl_resp *resp, tl_cmd_kind kind, const char *path_id) {
  tl_problem p = {0};
  tl_jdoc doc = {0};
  const tl_jv *body = command_body(req, resp, &doc);
  if (!body) {
    tl_jdoc_free(&doc);
    return count_command(kind, req, resp);
  }
  tl_cmd_request *cr = malloc(sizeof *cr);
  if (!cr) {
    tl_jdoc_free(&doc);
    tl_resp_error(resp, 503, "OUT_OF_MEMORY", "The server is out of memory.");
    return count_command(kind, req, resp);
  }
  tl_cmd_request_init(cr);
  cr->correlation_id = req->correlation_id;
  int rc = tl_cmd_decode(kind, path_id, body, &cr->cmd, &p);
  tl_jdoc_free(&doc);
  const char *im = tl_req_header(req, "If-Match");
  const char *key = tl_req_header(req, "Idempotency-Key");
  if (rc == TL_OK && im && tl_route_parse_if_match(im, &cr->if_match) != TL_OK) {
    tl_problem_field(&p, "If-Match", "must be a quoted version number, e.g. \"3\"");
    tl_problem_set(&p, 400, "VALIDATION_FAILED", "The If-Match header is malformed.");
    rc = TL_E_INVALID;
  }
  if (rc == TL_OK && key && !tl_route_valid_idem_key(key)) {
    tl_problem_field(&p, "Idempotency-Key", "must be 1 to 128 printable ASCII characters");
    tl_problem_set(&p, 400, "VALIDATION_FAILED", "The Idempotency-Key header is malformed.");
    rc = TL_E_INVALID;
  }
  if (rc != TL_OK) {
    tl_resp_problem(resp, &p);
    free_cmd_request(cr);
    return count_command(kind, req, resp);
  }
  if (key) {
    cr->idem_key = key;
    tl_request_fingerprint(req->method, req->path, req->body, req->body_len, cr->fingerprint);
  }
  if (tl_req_stopping(req)) {
    free_cmd_request(cr);
    tl_resp_error(resp, 503, "SHUTTING_DOWN", "The server is shutting down.");
    return count_command(kind, req, resp);
  }
  cr->on_done = command_done;
  cr->on_done_arg = req;
  req->state = cr;
  req->free_state = free_cmd_request;
  tl_req_suspend(req, command_finish);
  tl_writer_submit(req->app->writer, cr);
}

static void h_create_product(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_CREATE_PRODUCT, NULL);
}
static void h_restock(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_RESTOCK, req->params[0]);
}
static void h_place_order(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_PLACE_ORDER, NULL);
}
static void h_confirm_payment(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_CONFIRM_PAYMENT, req->params[0]);
}
static void h_ship(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_SHIP, req->params[0]);
}
static void h_cancel(tl_req *req, tl_resp *resp) {
  run_command(req, resp, TL_CMD_CANCEL, req->params[0]);
}

/* ---- queries of the read lane ------------------------------------------------------------ */

/* Parsed arguments of one query. */
typedef struct qargs {
  int64_t limit;
  const char *cursor;
  const char *text;
  int64_t from_day, to_day;
  int in_stock; /* -1: no filter */
} qargs;

/* A query on a connection of the read lane's pool, or (cached_fn) one through tl_read's view
 * cache, which takes a connection itself only on a miss. */
typedef int (*query_fn)(tl_db *db, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p);
typedef int (*cached_fn)(tl_read *rd, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p);

/* A query's state across a read-your-writes wait. */
typedef struct query_state {
  tl_query_kind kind;
  int proj; /* the projection the query reads */
  query_fn fn;
  cached_fn cached; /* instead of fn */
  qargs args;
  int64_t min_position, wait_ms;
} query_state;

static void count_query(tl_query_kind kind, const tl_req *req, const tl_resp *resp) {
  atomic_fetch_add_explicit(&tl_g_stats.queries[kind][tl_outcome_of_status(resp->status)], 1,
                            memory_order_relaxed);
  tl_hist_observe(&tl_g_stats.query_seconds[kind], (double)(tl_mono_ns() - req->t0_ns) / 1e9);
}

/* Runs the query itself and adds meta. */
static void query_answer(tl_req *req, tl_resp *resp, const query_state *q) {
  tl_problem p = {0};
  tl_read *rd = req->app->read;
  /* Meta first: the answer reflects at least this position (the snapshot the query reads is
   * taken after it). */
  tl_read_meta meta = tl_read_meta_of(rd, q->proj);
  tl_jw out = {0};
  tl_jw_object(&out);
  int rc;
  if (q->cached) {
    rc = q->cached(rd, req, &q->args, &out, &p);
  } else {
    tl_db *db = NULL;
    tl_err err = {0};
    if (tl_read_conn_acquire(rd, &db, &err) != TL_OK) {
      tl_jw_free(&out);
      tl_resp_error(resp, 503, "READ_MODEL_UNAVAILABLE", err.msg);
      return count_query(q->kind, req, resp);
    }
    rc = q->fn(db, req, &q->args, &out, &p);
    tl_read_conn_release(rd, db);
  }
  if (rc != TL_OK) {
    tl_jw_free(&out);
    tl_resp_problem(resp, &p);
    return count_query(q->kind, req, resp);
  }
  tl_jw_key(&out, "meta");
  tl_read_meta_write(&meta, &out);
  tl_jw_end(&out);
  resp_jw(resp, &out);
  count_query(q->kind, req, resp);
}

static void stale(tl_req *req, tl_resp *resp, const query_state *q) {
  tl_problem p = {0};
  tl_problem_set(&p, 503, "STALE_READ_MODEL",
                 "The read model has not reached position %lld within %lld ms.",
                 (long long)q->min_position, (long long)q->wait_ms);
  tl_problem_extra(&p, "position", json_integer(tl_read_position_of(req->app->read, q->proj)));
  tl_problem_extra(&p, "minPosition", json_integer(q->min_position));
  tl_resp_problem(resp, &p);
  resp->retry_after = 1;
  count_query(q->kind, req, resp);
}

/* The projector's callback when the wait ends (projector thread). */
static void query_wait_done(void *arg, int rc) {
  tl_req *req = arg;
  req->wait_rc = rc;
  tl_req_resume(req);
}

static void query_after_wait(tl_req *req, tl_resp *resp) {
  query_state *q = req->state;
  if (req->wait_rc != TL_OK)
    stale(req, resp, q);
  else
    query_answer(req, resp, q);
  free(q);
  req->state = NULL;
}

/* The projection whose tables a query reads: its position is the one the query waits for
 * and reports, so a projection stuck on a failing event does not hold back the others. */
static int query_projection(tl_query_kind kind) {
  static _Atomic int idx[3] = {-2, -2, -2};
  static const char *const NAMES[3] = {"orders", "products", "daily_sales"};
  int k = kind == TL_Q_SALES_DAILY ? 2 : (kind == TL_Q_PRODUCT || kind == TL_Q_PRODUCTS) ? 1 : 0;
  int i = atomic_load_explicit(&idx[k], memory_order_relaxed);
  if (i == -2) {
    i = tl_projection_index(NAMES[k]);
    atomic_store_explicit(&idx[k], i, memory_order_relaxed);
  }
  return i;
}

/* Runs a read-lane query: minPosition / waitMs (waiting suspended, woken by the projector),
 * a query connection, meta, metrics. */
static void run_query_with(tl_req *req, tl_resp *resp, tl_query_kind kind, query_fn fn,
                           cached_fn cached, const qargs *a) {
  tl_problem p = {0};
  query_state q = {.kind = kind,
                   .proj = query_projection(kind),
                   .fn = fn,
                   .cached = cached,
                   .min_position = 0,
                   .wait_ms = DEFAULT_WAIT_MS};
  if (a) q.args = *a;
  const char *mp = tl_req_arg(req, "minPosition");
  if (!mp) mp = tl_req_header(req, "X-Min-Position");
  if (mp && tl_route_parse_uint(mp, INT64_MAX, &q.min_position) != TL_OK)
    tl_problem_field(&p, "minPosition", "must be a non-negative integer");
  int_arg(req, "waitMs", 0, MAX_WAIT_MS, DEFAULT_WAIT_MS, &q.wait_ms, &p);
  if (p.errors) {
    validation_failed(resp, &p);
    return count_query(kind, req, resp);
  }
  tl_read *rd = req->app->read;
  if (q.min_position <= tl_read_position_of(rd, q.proj)) return query_answer(req, resp, &q);
  if (q.wait_ms == 0 || tl_req_stopping(req)) return stale(req, resp, &q);
  query_state *heap = malloc(sizeof *heap);
  if (!heap) {
    tl_resp_error(resp, 503, "OUT_OF_MEMORY", "The server is out of memory.");
    return count_query(kind, req, resp);
  }
  *heap = q;
  req->state = heap;
  req->free_state = free;
  tl_req_suspend(req, query_after_wait);
  if (tl_read_wait_async(rd, q.proj, q.min_position, (int)q.wait_ms, query_wait_done, req) ==
      TL_OK) {
    req->wait_rc = TL_OK; /* reached in the meantime: the callback will not come */
    tl_req_resume(req);
  }
}

static void run_query(tl_req *req, tl_resp *resp, tl_query_kind kind, query_fn fn, const qargs *a) {
  run_query_with(req, resp, kind, fn, NULL, a);
}

static void run_cached_query(tl_req *req, tl_resp *resp, tl_query_kind kind, cached_fn fn,
                             const qargs *a) {
  run_query_with(req, resp, kind, NULL, fn, a);
}

static int q_order(tl_read *rd, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  (void)a;
  return tl_read_order_view(rd, req->params[0], out, p);
}

static void h_get_order(tl_req *req, tl_resp *resp) {
  run_cached_query(req, resp, TL_Q_ORDER, q_order, NULL);
}

static int q_customer(tl_read *rd, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  return tl_read_customer_orders(rd, req->params[0], (int)a->limit, a->cursor, out, p);
}

static void h_customer_orders(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  qargs a = {0};
  if (!tl_uuid_valid(req->params[0])) tl_problem_field(&p, "customerId", "must be a UUID");
  int_arg(req, "limit", 1, 100, 20, &a.limit, &p);
  a.cursor = tl_req_arg(req, "cursor");
  if (a.cursor && !tl_ulid_valid(a.cursor)) tl_problem_field(&p, "cursor", "is invalid");
  if (p.errors) return validation_failed(resp, &p);
  run_cached_query(req, resp, TL_Q_CUSTOMER_ORDERS, q_customer, &a);
}

static int q_search(tl_read *rd, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  (void)req;
  return tl_read_search(rd, a->text, (int)a->limit, out, p);
}

static void h_search(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  qargs a = {0};
  a.text = tl_req_arg(req, "q");
  if (!a.text || !*a.text)
    tl_problem_field(&p, "q", "is required");
  else if (strlen(a.text) > 500)
    tl_problem_field(&p, "q", "must be at most 500 characters");
  int_arg(req, "limit", 1, 100, 20, &a.limit, &p);
  if (p.errors) return validation_failed(resp, &p);
  run_cached_query(req, resp, TL_Q_SEARCH, q_search, &a);
}

static int q_sales(tl_db *db, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  (void)req;
  return tl_query_sales_daily(db, a->from_day, a->to_day, out, p);
}

static void h_sales_daily(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  qargs a = {0};
  int64_t today = tl_now_ms() / 86400000;
  const char *from = tl_req_arg(req, "from"), *to = tl_req_arg(req, "to");
  a.from_day = a.to_day = today;
  if (from && tl_date_parse(from, &a.from_day) != TL_OK)
    tl_problem_field(&p, "from", "must be a date YYYY-MM-DD");
  if (to && tl_date_parse(to, &a.to_day) != TL_OK)
    tl_problem_field(&p, "to", "must be a date YYYY-MM-DD");
  if (!p.errors && a.from_day > a.to_day) tl_problem_field(&p, "from", "must not be after to");
  if (!p.errors && a.to_day - a.from_day >= 366)
    tl_problem_field(&p, "to", "the range must be at most 366 days");
  if (p.errors) return validation_failed(resp, &p);
  run_query(req, resp, TL_Q_SALES_DAILY, q_sales, &a);
}

static int q_products(tl_db *db, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  return tl_query_products(db, tl_req_arg(req, "category"), a->in_stock, (int)a->limit, a->cursor,
                           out, p);
}

static void h_products(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  qargs a = {0};
  int_arg(req, "limit", 1, 100, 20, &a.limit, &p);
  a.cursor = tl_req_arg(req, "cursor");
  const char *in_stock = tl_req_arg(req, "inStock");
  a.in_stock = -1;
  if (in_stock && strcmp(in_stock, "true") == 0)
    a.in_stock = 1;
  else if (in_stock && strcmp(in_stock, "false") == 0)
    a.in_stock = 0;
  else if (in_stock)
    tl_problem_field(&p, "inStock", "must be true or false");
  if (p.errors) return validation_failed(resp, &p);
  run_query(req, resp, TL_Q_PRODUCTS, q_products, &a);
}

static int q_product(tl_db *db, const tl_req *req, const qargs *a, tl_jw *out, tl_problem *p) {
  (void)a;
  return tl_query_product(db, req->params[0], out, p);
}

static void h_product(tl_req *req, tl_resp *resp) {
  run_query(req, resp, TL_Q_PRODUCT, q_product, NULL);
}

/* ---- strongly consistent reads of the log ------------------------------------------------ */

/* Appends one event of the log as JSON. data and metadata are copied as stored (compact JSON
 * written by tl_json_dumps), so amounts come out exactly as they were recorded. */
static int append_event(void *arg, const tl_event *ev) {
  tl_buf *b = arg;
  char iso[TL_ISO_LEN];
  tl_time_format(ev->recorded_ms, iso);
  tl_buf_printf(b, "%s{\"position\":%lld,\"stream\":", b->len > 1 ? "," : "",
                (long long)ev->position);
  tl_buf_json_string(b, ev->stream);
  tl_buf_printf(b, ",\"version\":%lld,\"type\":", (long long)ev->version);
  tl_buf_json_string(b, ev->type);
  tl_buf_printf(b, ",\"schemaVersion\":%d,\"data\":%s,\"metadata\":%s,\"recordedAt\":\"%s\"}",
                ev->schema_version, ev->data, ev->metadata, iso);
  return 0;
}

/* Reads events (stream != NULL: that stream from version `from`; else the log from position
 * `from`) into a JSON array answer. */
static void answer_events(tl_req *req, tl_resp *resp, tl_query_kind kind, const char *stream,
                          int64_t from, int64_t limit, int not_found_if_empty) {
  int64_t t0 = tl_mono_ns();
  tl_log_reader *r = NULL;
  tl_err err = {0};
  tl_buf b = {0};
  tl_buf_append(&b, "[", 1);
  int rc = tl_log_reader_acquire(req->app->log, &r, &err);
  if (rc == TL_OK) {
    rc = stream ? tl_log_read_stream(r, stream, from, (int)limit, append_event, &b, &err)
                : tl_log_read_all(r, from, (int)limit, append_event, &b, &err);
    tl_log_reader_release(req->app->log, r);
  }
  tl_buf_append(&b, "]", 1);
  if (rc == TL_OK && b.oom) rc = tl_err_set(&err, TL_E_NOMEM, "out of memory");
  if (rc != TL_OK) {
    tl_resp_error(resp, 503, "STORAGE_UNAVAILABLE", err.msg);
    tl_buf_free(&b);
  } else if (not_found_if_empty && b.len == 2) {
    tl_resp_error(resp, 404, "ORDER_NOT_FOUND", "No order has this id.");
    tl_buf_free(&b);
  } else {
    resp->status = 200;
    resp->content_type = "application/json";
    resp->body = b.data; /* ownership moves to the response */
    snprintf(resp->position, sizeof resp->position, "%lld", (long long)tl_log_head(req->app->log));
  }
  atomic_fetch_add_explicit(&tl_g_stats.queries[kind][tl_outcome_of_status(resp->status)], 1,
                            memory_order_relaxed);
  tl_hist_observe(&tl_g_stats.query_seconds[kind], (double)(tl_mono_ns() - t0) / 1e9);
}

static void h_history(tl_req *req, tl_resp *resp) {
  char stream[96];
  tl_stream_name(stream, sizeof stream, true, req->params[0]);
  answer_events(req, resp, TL_Q_HISTORY, stream, 1, 0, 1);
}

static void h_stream(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  int64_t from, limit;
  if (strlen(req->params[0]) > 80) tl_problem_field(&p, "stream", "must be at most 80 characters");
  int_arg(req, "fromVersion", 1, INT64_MAX, 1, &from, &p);
  int_arg(req, "limit", 1, 1000, 100, &limit, &p);
  if (p.errors) return validation_failed(resp, &p);
  answer_events(req, resp, TL_Q_STREAM, req->params[0], from, limit, 0);
}

static void h_log(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  int64_t from, limit;
  int_arg(req, "fromPosition", 1, INT64_MAX, 1, &from, &p);
  int_arg(req, "limit", 1, 1000, 100, &limit, &p);
  if (p.errors) return validation_failed(resp, &p);
  answer_events(req, resp, TL_Q_LOG, NULL, from, limit, 0);
}

typedef struct fold_state {
  tl_order_state s;
  int64_t as_of_version; /* -1: none */
  int64_t as_of_ms;      /* -1: none */
} fold_state;

static int fold_order(void *arg, const tl_event *ev) {
  fold_state *f = arg;
  if (f->as_of_version >= 0 && ev->version > f->as_of_version) return 1;
  if (f->as_of_ms >= 0 && ev->recorded_ms > f->as_of_ms) return 1;
  json_t *data = json_loads(ev->data, 0, NULL);
  if (data) tl_order_evolve(&f->s, ev->type, data, ev->recorded_ms);
  json_decref(data);
  return 0;
}

static void h_state(tl_req *req, tl_resp *resp) {
  int64_t t0 = tl_mono_ns();
  tl_problem p = {0};
  fold_state f;
  tl_order_state_init(&f.s);
  f.as_of_version = -1;
  f.as_of_ms = -1;
  const char *v = tl_req_arg(req, "asOfVersion"), *t = tl_req_arg(req, "asOf");
  if (v && (tl_route_parse_uint(v, INT64_MAX, &f.as_of_version) != TL_OK || f.as_of_version < 1))
    tl_problem_field(&p, "asOfVersion", "must be an integer >= 1");
  if (t && tl_time_parse(t, &f.as_of_ms) != TL_OK)
    tl_problem_field(&p, "asOf", "must be an ISO 8601 UTC time, e.g. 2026-11-22T10:30:00.123Z");
  if (p.errors) {
    validation_failed(resp, &p);
    goto done;
  }
  char stream[96];
  tl_stream_name(stream, sizeof stream, true, req->params[0]);
  tl_log_reader *r = NULL;
  tl_err err = {0};
  int rc = tl_log_reader_acquire(req->app->log, &r, &err);
  if (rc == TL_OK) {
    rc = tl_log_read_stream(r, stream, 1, 0, fold_order, &f, &err);
    if (rc == 1) rc = TL_OK; /* stopped at the requested point */
    tl_log_reader_release(req->app->log, r);
  }
  if (rc != TL_OK)
    tl_resp_error(resp, 503, "STORAGE_UNAVAILABLE", err.msg);
  else if (f.s.version == 0)
    tl_resp_error(resp, 404, "ORDER_NOT_FOUND", "The order did not exist at that point.");
  else {
    set_position_headers(resp, f.s.version, tl_log_head(req->app->log));
    tl_jw out = {0};
    tl_order_state_write(&f.s, &out, NULL, NULL);
    resp_jw(resp, &out);
  }
  tl_order_state_clear(&f.s);
done:
  atomic_fetch_add_explicit(&tl_g_stats.queries[TL_Q_STATE][tl_outcome_of_status(resp->status)], 1,
                            memory_order_relaxed);
  tl_hist_observe(&tl_g_stats.query_seconds[TL_Q_STATE], (double)(tl_mono_ns() - t0) / 1e9);
}

/* ---- operations -------------------------------------------------------------------------- */

static void h_health(tl_req *req, tl_resp *resp) {
  (void)req;
  tl_resp_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static json_t *projection_json(const tl_proj_status *s) {
  return json_pack("{s:s, s:i, s:I, s:I, s:I, s:s, s:I, s:i, s:I, s:o}", "name", s->name, "version",
                   s->version, "position", (json_int_t)s->position, "lagEvents",
                   (json_int_t)s->lag_events, "lagMs", (json_int_t)s->lag_ms, "status", s->status,
                   "dlqDepth", (json_int_t)s->dlq_depth, "failedAttempts", s->attempts, "retries",
                   (json_int_t)s->retries, "rebuildPosition",
                   s->rebuild_position >= 0 ? json_integer(s->rebuild_position) : json_null());
}

static void h_rebuild(tl_req *req, tl_resp *resp) {
  tl_err err = {0};
  int rc = tl_read_rebuild_start(req->app->read, req->params[0], &err);
  if (rc == TL_E_NOTFOUND) return tl_resp_error(resp, 404, "PROJECTION_NOT_FOUND", err.msg);
  if (rc == TL_E_CONFLICT) return tl_resp_error(resp, 409, "REBUILD_IN_PROGRESS", err.msg);
  if (rc == TL_E_CLOSED)
    return tl_resp_error(resp, 503, "SHUTTING_DOWN", "The server is shutting down.");
  if (rc != TL_OK) return tl_resp_error(resp, 503, "READ_MODEL_UNAVAILABLE", err.msg);
  tl_resp_json(resp, 202, json_pack("{s:s, s:s}", "name", req->params[0], "status", "rebuilding"));
}

static void h_ready(tl_req *req, tl_resp *resp) {
  tl_proj_status st[16];
  int n = tl_read_status(req->app->read, st, 16);
  json_t *laggards = json_array();
  for (int i = 0; i < n && i < 16; i++)
    if (st[i].lag_ms > req->app->ready_lag_ms)
      json_array_append_new(
          laggards, json_pack("{s:s, s:I, s:I}", "name", st[i].name, "lagEvents",
                              (json_int_t)st[i].lag_events, "lagMs", (json_int_t)st[i].lag_ms));
  tl_pm_status pm[8];
  int npm = tl_saga_status(req->app->saga, pm, 8);
  for (int i = 0; i < npm && i < 8; i++)
    if (pm[i].lag_ms > req->app->ready_lag_ms)
      json_array_append_new(
          laggards, json_pack("{s:s, s:I, s:I}", "name", pm[i].name, "lagEvents",
                              (json_int_t)pm[i].lag_events, "lagMs", (json_int_t)pm[i].lag_ms));
  /* Parked events do not make the server unready (every instance would be: they share the
   * data), but they are reported so that an operator sees them. */
  json_t *dlq = json_object();
  for (int i = 0; i < n && i < 16; i++)
    if (st[i].dlq_depth > 0) json_object_set_new(dlq, st[i].name, json_integer(st[i].dlq_depth));
  for (int i = 0; i < npm && i < 8; i++)
    if (pm[i].dlq_depth > 0) json_object_set_new(dlq, pm[i].name, json_integer(pm[i].dlq_depth));
  if (json_array_size(laggards) > 0) {
    tl_resp_json(
        resp, 503,
        json_pack("{s:s, s:o, s:o}", "status", "not-ready", "laggards", laggards, "dlq", dlq));
    resp->retry_after = 1;
  } else {
    json_decref(laggards);
    tl_resp_json(resp, 200,
                 json_pack("{s:s, s:I, s:o}", "status", "ready", "position",
                           (json_int_t)tl_log_head(req->app->log), "dlq", dlq));
  }
}

static void h_projections(tl_req *req, tl_resp *resp) {
  tl_proj_status st[16];
  int n = tl_read_status(req->app->read, st, 16);
  json_t *arr = json_array();
  for (int i = 0; i < n && i < 16; i++) json_array_append_new(arr, projection_json(&st[i]));
  tl_resp_json(resp, 200, arr);
}

/* ---- the projections' dead-letter queue --------------------------------------------------- */

#define DLQ_OP_TIMEOUT_MS 10000

static void h_dlq_list(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  int64_t limit;
  int_arg(req, "limit", 1, 1000, 100, &limit, &p);
  const char *proj = tl_req_arg(req, "projection");
  if (proj && tl_projection_index(proj) < 0)
    tl_problem_field(&p, "projection", "is not a projection of this server");
  if (p.errors) return validation_failed(resp, &p);
  json_t *out = tl_read_dlq_list(req->app->read, proj, (int)limit, &p);
  if (!out) return tl_resp_problem(resp, &p);
  tl_resp_json(resp, 200, out);
}

/* Runs a DLQ operation; answers its problem and returns non-zero if it failed. */
static int dlq_op(tl_req *req, tl_resp *resp, tl_dlq_op op, int64_t id, tl_dlq_result *res) {
  tl_err err = {0};
  int rc = tl_read_dlq(req->app->read, op, id, DLQ_OP_TIMEOUT_MS, res, &err);
  if (rc == TL_OK) return 0;
  if (rc == TL_E_CLOSED)
    tl_resp_error(resp, 503, "SHUTTING_DOWN", "The server is shutting down.");
  else if (rc == TL_E_TIMEOUT)
    tl_resp_error(resp, 503, "PROJECTOR_BUSY", err.msg);
  else
    tl_resp_error(resp, 503, "READ_MODEL_UNAVAILABLE", err.msg);
  resp->retry_after = 1;
  return 1;
}

/* The {id} of /admin/dlq/{id}[/retry]; answers 404 and returns non-zero if it is no id. */
static int dlq_id(tl_req *req, tl_resp *resp, int64_t *id) {
  if (tl_route_parse_uint(req->params[0], INT64_MAX, id) == TL_OK && *id > 0) return 0;
  tl_resp_error(resp, 404, "DLQ_ENTRY_NOT_FOUND", "No parked event has this id.");
  return 1;
}

static json_t *dlq_result_json(const tl_dlq_result *r) {
  return json_pack("{s:i, s:i, s:i}", "found", r->found, "applied", r->applied, "failed",
                   r->failed);
}

static void h_pm_dlq_list(tl_req *req, tl_resp *resp) {
  tl_problem p = {0};
  int64_t limit;
  int_arg(req, "limit", 1, 1000, 100, &limit, &p);
  if (p.errors) return validation_failed(resp, &p);
  tl_err err = {0};
  json_t *out = tl_saga_dlq(req->app->saga, (int)limit, &err);
  if (!out) return tl_resp_error(resp, 503, "STORAGE_UNAVAILABLE", err.msg);
  tl_resp_json(resp, 200, out);
}

/* POST /admin/process-managers/dlq/{id}/retry and DELETE /admin/process-managers/dlq/{id}. */
static void pm_dlq_op(tl_req *req, tl_resp *resp, int drop) {
  int64_t id;
  if (dlq_id(req, resp, &id)) return;
  tl_saga_dlq_result res;
  tl_err err = {0};
  int rc = tl_saga_dlq_op(req->app->saga, drop, id, DLQ_OP_TIMEOUT_MS, &res, &err);
  if (rc == TL_E_CLOSED)
    return tl_resp_error(resp, 503, "SHUTTING_DOWN", "The server is shutting down.");
  if (rc == TL_E_TIMEOUT) return tl_resp_error(resp, 503, "PROCESS_MANAGER_BUSY", err.msg);
  if (rc != TL_OK) return tl_resp_error(resp, 503, "STORAGE_UNAVAILABLE", err.msg);
  if (!res.found)
    return tl_resp_error(resp, 404, "DLQ_ENTRY_NOT_FOUND", "No parked step has this id.");
  if (drop) return tl_resp_json(resp, 204, NULL);
  tl_resp_json(resp, 200,
               json_pack("{s:i, s:i, s:i}", "found", res.found, "applied", res.applied, "failed",
                         res.failed));
}

static void h_pm_dlq_retry(tl_req *req, tl_resp *resp) {
  pm_dlq_op(req, resp, 0);
}

static void h_pm_dlq_drop(tl_req *req, tl_resp *resp) {
  pm_dlq_op(req, resp, 1);
}

static void h_dlq_retry(tl_req *req, tl_resp *resp) {
  int64_t id;
  tl_dlq_result res;
  if (dlq_id(req, resp, &id) || dlq_op(req, resp, TL_DLQ_RETRY, id, &res)) return;
  if (res.found == 0)
    return tl_resp_error(resp, 404, "DLQ_ENTRY_NOT_FOUND", "No parked event has this id.");
  tl_resp_json(resp, 200, dlq_result_json(&res));
}

static void h_dlq_retry_all(tl_req *req, tl_resp *resp) {
  tl_dlq_result res;
  if (dlq_op(req, resp, TL_DLQ_RETRY_ALL, 0, &res)) return;
  tl_resp_json(resp, 200, dlq_result_json(&res));
}

static void h_dlq_drop(tl_req *req, tl_resp *resp) {
  int64_t id;
  tl_dlq_result res;
  if (dlq_id(req, resp, &id) || dlq_op(req, resp, TL_DLQ_DROP, id, &res)) return;
  if (res.dropped == 0)
    return tl_resp_error(resp, 404, "DLQ_ENTRY_NOT_FOUND", "No parked event has this id.");
  tl_slog(TL_SLOG_WARN, req->correlation_id, "dead letter dropped", "id", req->params[0], NULL);
  tl_resp_json(resp, 204, NULL);
}

/* Blocks this HTTP thread for the time of a fresh fold of the log: an operator's tool. */
static void h_reconcile(tl_req *req, tl_resp *resp) {
  json_t *report = NULL;
  tl_err err = {0};
  if (tl_read_reconcile(req->app->read, &report, &err) != TL_OK)
    return tl_resp_error(resp, 503, "READ_MODEL_UNAVAILABLE", err.msg);
  tl_resp_json(resp, 200, report);
}

/* ---- fault injection (--enable-failpoints) ----------------------------------------------- */

static json_t *failpoint_json(const tl_fp_info *f) {
  return json_pack("{s:s, s:s, s:I, s:I}", "point", f->point, "action", f->action, "hits",
                   (json_int_t)f->hits, "fired", (json_int_t)f->fired);
}

/* Without --enable-failpoints the routes do not exist. */
static int failpoints_off(tl_req *req, tl_resp *resp) {
  if (req->app->failpoints_enabled) return 0;
  tl_resp_error(resp, 404, "NOT_FOUND", "No such resource.");
  return 1;
}

static void h_failpoints(tl_req *req, tl_resp *resp) {
  if (failpoints_off(req, resp)) return;
  tl_fp_info fps[TL_FP_MAX];
  int n = tl_fp_list(fps, TL_FP_MAX);
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(arr, failpoint_json(&fps[i]));
  tl_resp_json(resp, 200, arr);
}

static void h_failpoint_put(tl_req *req, tl_resp *resp) {
  if (failpoints_off(req, resp)) return;
  json_t *body = json_body(req, resp);
  if (!body) return;
  tl_problem p = {0};
  const char *action = json_string_value(json_object_get(body, "action"));
  tl_err err = {0};
  if (!json_is_object(body) || !action) {
    tl_problem_field(&p, "action", "is required: error, error*N, delay:MS or off");
  } else if (tl_fp_set(req->params[0], action, &err) != TL_OK) {
    tl_problem_field(&p, tl_fp_known(req->params[0]) ? "action" : "point", err.msg);
  } else {
    tl_slog(TL_SLOG_WARN, req->correlation_id, "fail point set", "point", req->params[0], "action",
            action, NULL);
    tl_fp_info f = {0};
    json_t *out = tl_fp_get(req->params[0], &f) == TL_OK
                      ? failpoint_json(&f)
                      : json_pack("{s:s, s:s}", "point", req->params[0], "action", "off");
    json_decref(body);
    return tl_resp_json(resp, 200, out);
  }
  json_decref(body);
  validation_failed(resp, &p);
}

static void h_failpoint_delete(tl_req *req, tl_resp *resp) {
  if (failpoints_off(req, resp)) return;
  tl_err err = {0};
  if (tl_fp_set(req->params[0], "off", &err) != TL_OK) {
    tl_problem p = {0};
    tl_problem_field(&p, "point", err.msg);
    return validation_failed(resp, &p);
  }
  tl_slog(TL_SLOG_WARN, req->correlation_id, "fail point cleared", "point", req->params[0], NULL);
  tl_resp_json(resp, 204, NULL);
}

static void h_metrics(tl_req *req, tl_resp *resp) {
  resp->status = 200;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
  resp->body = tl_metrics_text(req->app);
  if (!resp->body) tl_resp_error(resp, 500, "INTERNAL", "Out of memory.");
}

/* ---- the route table --------------------------------------------------------------------- */

typedef void (*handler_fn)(tl_req *req, tl_resp *resp);

typedef struct route {
  const char *method;
  const char *pattern; /* segments separated by '/', "{}" captures one segment */
  handler_fn handler;
} route;

/* Literal segments are listed before captures at the same depth (/orders/search before
 * /orders/{}), and matching takes the first route that fits. */
static const route ROUTES[] = {
    {"GET", "/health", h_health},
    {"GET", "/ready", h_ready},
    {"GET", "/metrics", h_metrics},
    {"GET", "/admin/projections", h_projections},
    {"POST", "/admin/projections/{}/rebuild", h_rebuild},
    {"POST", "/admin/reconcile", h_reconcile},
    {"GET", "/admin/dlq", h_dlq_list},
    {"GET", "/admin/process-managers/dlq", h_pm_dlq_list},
    {"DELETE", "/admin/process-managers/dlq/{}", h_pm_dlq_drop},
    {"POST", "/admin/process-managers/dlq/{}/retry", h_pm_dlq_retry},
    {"POST", "/admin/dlq/retry-all", h_dlq_retry_all},
    {"DELETE", "/admin/dlq/{}", h_dlq_drop},
    {"POST", "/admin/dlq/{}/retry", h_dlq_retry},
    {"GET", "/admin/failpoints", h_failpoints},
    {"PUT", "/admin/failpoints/{}", h_failpoint_put},
    {"DELETE", "/admin/failpoints/{}", h_failpoint_delete},
    {"POST", "/products", h_create_product},
    {"GET", "/products", h_products},
    {"GET", "/products/{}", h_product},
    {"POST", "/products/{}/restock", h_restock},
    {"POST", "/orders", h_place_order},
    {"GET", "/orders/search", h_search},
    {"GET", "/orders/{}", h_get_order},
    {"GET", "/orders/{}/history", h_history},
    {"GET", "/orders/{}/state", h_state},
    {"POST", "/orders/{}/confirm-payment", h_confirm_payment},
    {"POST", "/orders/{}/ship", h_ship},
    {"POST", "/orders/{}/cancel", h_cancel},
    {"GET", "/customers/{}/orders", h_customer_orders},
    {"GET", "/sales/daily", h_sales_daily},
    {"GET", "/streams/{}", h_stream},
    {"GET", "/log", h_log},
};

void tl_route(tl_req *req, tl_resp *resp) {
  char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN];
  int n = tl_route_split_path(req->path, seg);
  if (n < 0) return tl_resp_error(resp, 404, "NOT_FOUND", "No such resource.");
  char allow[64] = "";
  for (size_t i = 0; i < TL_ARRAY_LEN(ROUTES); i++) {
    const char *caps[TL_ROUTE_MAX_CAPTURES] = {NULL, NULL};
    if (!tl_route_match(ROUTES[i].pattern, seg, n, caps)) continue;
    if (strcmp(ROUTES[i].method, req->method) == 0 ||
        (strcmp(req->method, "HEAD") == 0 && strcmp(ROUTES[i].method, "GET") == 0)) {
      for (int k = 0; k < 2; k++)
        tl_strcpy(req->params[k], sizeof req->params[k], caps[k] ? caps[k] : "");
      ROUTES[i].handler(req, resp);
      return;
    }
    if (!strstr(allow, ROUTES[i].method)) {
      size_t l = strlen(allow);
      snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", ROUTES[i].method);
    }
  }
  if (allow[0]) {
    tl_resp_error(resp, 405, "METHOD_NOT_ALLOWED", "This resource does not accept that method.");
    tl_strcpy(resp->allow, sizeof resp->allow, allow);
    return;
  }
  tl_resp_error(resp, 404, "NOT_FOUND", "No such resource.");
}
