/*
 * fuzz_projections.c: the read lane's event decoder: every projection's apply
 * (read/projections.c) on a scratch in-memory read store, and the queries (read/queries.c)
 * over what they built.
 *
 * Input: one event per line, "<stream> <type> <JSON data>", e.g.
 *   product-lamp-1 ProductCreated {"productId":"lamp-1","name":"Desk Lamp",...}
 *   order-01HZY3J6C4Q6V9B8N7M5K3J2H1 OrderPlaced {"orderId":"01HZY3J6C4Q6V9B8N7M5K3J2H1",...}
 * Lines whose data is not a JSON object or array are skipped (the projector stops at unreadable
 * data). Positions count from 1, versions per stream; each event is recorded an hour after the
 * one before, so orders fall on different days.
 *
 * Every input runs in one transaction that is rolled back at the end, so inputs do not see each
 * other, and the store is set up once.
 *
 * Invariants:
 *  - every projection applies every event (a failure would stall the projector for good);
 *  - applying the same events again changes nothing (the checkpoints make re-delivery a no-op);
 *  - daily sales count exactly the live orders of each day (the counting rule);
 *  - every query answers valid JSON, or a problem with a status.
 */
#include "fuzz_common.h"

#include "read/tl_read.h"
#include "util/tl_common.h"
#include "util/tl_money.h"

#include <stdbool.h>

#define MAX_EVENTS 32
#define T0 INT64_C(1700000000000) /* 2023-11-14T22:13:20.000Z */
#define HOUR_MS INT64_C(3600000)

static tl_db *db;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init_jansson();
  tl_err err = {0};
  if (tl_db_open(&db, ":memory:", 0, "OFF", &err) != TL_OK) {
    fprintf(stderr, "fuzz_projections: %s\n", err.msg);
    abort();
  }
  for (int i = 0; i < tl_projections_count; i++)
    if (tl_projection_setup(db, tl_projections[i], &err) != TL_OK) {
      fprintf(stderr, "fuzz_projections: setup %s: %s\n", tl_projections[i]->name, err.msg);
      abort();
    }
  return 0;
}

typedef struct event {
  tl_event ev;
  json_t *data;
} event;

static void exec(const char *sql) {
  tl_err err = {0};
  FUZZ_CHECK(tl_db_exec(db, sql, &err) == TL_OK, "%s: %s", sql, err.msg);
}

static void apply_all(event *evs, int n) {
  static tl_jdoc doc; /* reused, as the projector reuses its own */
  for (int i = 0; i < n; i++) {
    const tl_jv *data = NULL;
    FUZZ_CHECK(tl_jdoc_parse(&doc, evs[i].ev.data, strlen(evs[i].ev.data), &data) == TL_OK,
               "json_loads reads %s, tl_jdoc_parse does not", evs[i].ev.data);
    for (int k = 0; k < tl_projections_count; k++) {
      tl_err err = {0};
      int rc = tl_projection_apply_one(db, tl_projections[k], &evs[i].ev, data, &err);
      FUZZ_CHECK(rc == TL_OK, "%s cannot apply %s at %lld: %s", tl_projections[k]->name,
                 evs[i].ev.type, (long long)evs[i].ev.position, err.msg);
    }
  }
}

/* Every row of every read-model table, as text: what "changes nothing" is checked against. */
static char *digest(void) {
  static const char *const TABLES[] = {
      "SELECT * FROM rm_orders ORDER BY seq",
      "SELECT rowid, names FROM rm_orders_fts ORDER BY rowid",
      "SELECT * FROM rm_order_product_names ORDER BY product_id",
      "SELECT * FROM rm_products ORDER BY product_id",
      "SELECT * FROM rm_product_lines ORDER BY order_id, product_id",
      "SELECT * FROM rm_daily_sales ORDER BY day",
      "SELECT * FROM rm_sales_orders ORDER BY order_id",
      "SELECT name, position, recorded_at FROM rm_checkpoints ORDER BY name",
  };
  size_t cap = 4096, len = 0;
  char *out = malloc(cap);
  if (!out) abort();
  for (size_t t = 0; t < TL_ARRAY_LEN(TABLES); t++) {
    sqlite3_stmt *st = NULL;
    FUZZ_CHECK(sqlite3_prepare_v2(db->db, TABLES[t], -1, &st, NULL) == SQLITE_OK, "%s: %s",
               TABLES[t], sqlite3_errmsg(db->db));
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(st); c++) {
        const char *v = (const char *)sqlite3_column_text(st, c);
        size_t n = v ? strlen(v) : 4;
        while (len + n + 2 > cap) {
          cap *= 2;
          out = realloc(out, cap);
          if (!out) abort();
        }
        memcpy(out + len, v ? v : "NULL", n);
        len += n;
        out[len++] = '|';
      }
      out[len++] = '\n';
    }
    sqlite3_finalize(st);
  }
  out[len] = '\0';
  return out;
}

/* A query's answer is valid JSON text once the caller's object is closed, or it is a problem
 * with a status. */
static void check_answer(tl_jw *w, int rc, tl_problem *p, const char *what) {
  if (rc != TL_OK) {
    FUZZ_CHECK(p->status >= 400 && p->code, "%s: no answer and no problem", what);
    tl_problem_clear(p);
    tl_jw_free(w);
    return;
  }
  tl_jw_end(w);
  char *text = tl_jw_take(w);
  FUZZ_CHECK(text, "%s: no text", what);
  json_error_t je;
  json_t *back = json_loads(text, 0, &je);
  FUZZ_CHECK(back && json_is_object(back), "%s answered invalid JSON: %s (%s)", what, text,
             je.text);
  json_decref(back);
  free(text);
}

/* Runs one query into a fresh writer and checks its answer. */
#define CHECK_QUERY(what, fn, ...)                         \
  do {                                                     \
    tl_jw w_ = {.depth = 0};                                        \
    tl_jw_object(&w_);                                     \
    check_answer(&w_, fn(__VA_ARGS__, &w_, &p), &p, what); \
  } while (0)

static void run_queries(event *evs, int n) {
  tl_problem p = {0};
  CHECK_QUERY("products", tl_query_products, db, NULL, -1, 100, NULL);
  CHECK_QUERY("products in stock", tl_query_products, db, NULL, 1, 100, NULL);
  CHECK_QUERY("daily sales", tl_query_sales_daily, db, T0 / 86400000,
              (T0 + MAX_EVENTS * HOUR_MS) / 86400000);
  for (int i = 0; i < n; i++) {
    const json_t *d = evs[i].data;
    const char *oid = json_string_value(json_object_get(d, "orderId"));
    const char *cid = json_string_value(json_object_get(d, "customerId"));
    const char *pid = json_string_value(json_object_get(d, "productId"));
    const char *cat = json_string_value(json_object_get(d, "category"));
    const char *name = json_string_value(json_object_get(d, "name"));
    if (oid) CHECK_QUERY("order", tl_query_order, db, oid);
    if (cid) CHECK_QUERY("customer", tl_query_customer_orders, db, cid, 100, NULL);
    if (pid) CHECK_QUERY("product", tl_query_product, db, pid);
    if (cat) CHECK_QUERY("category", tl_query_products, db, cat, -1, 100, NULL);
    if (name) CHECK_QUERY("search", tl_query_search, db, name, 100);
  }
}

/* The counting rule: each day counts its live orders. Returns the number of days that do not. */
static int64_t wrong_days(void) {
  sqlite3_stmt *st = NULL;
  const char *sql =
      "SELECT count(*) FROM rm_daily_sales d WHERE d.order_count !="
      " (SELECT count(*) FROM rm_sales_orders s WHERE s.day = d.day AND s.live)";
  FUZZ_CHECK(sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) == SQLITE_OK, "%s",
             sqlite3_errmsg(db->db));
  FUZZ_CHECK(sqlite3_step(st) == SQLITE_ROW, "%s", sqlite3_errmsg(db->db));
  int64_t wrong = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return wrong;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_strndup(data, size);
  static event evs[MAX_EVENTS];
  int n = 0;
  for (char *line = text; line && n < MAX_EVENTS;) {
    char *next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp2) {
      *sp1 = *sp2 = '\0';
      json_t *d = json_loads(sp2 + 1, 0, NULL);
      if (d) {
        int64_t version = 1;
        for (int i = 0; i < n; i++)
          if (strcmp(evs[i].ev.stream, line) == 0) version++;
        evs[n].data = d;
        evs[n].ev = (tl_event){.position = n + 1,
                               .stream = line,
                               .version = version,
                               .type = sp1 + 1,
                               .schema_version = 1,
                               .data = sp2 + 1,
                               .metadata = (char *)"{}",
                               .recorded_ms = T0 + n * HOUR_MS};
        n++;
      }
    }
    line = next;
  }

  exec("BEGIN");
  apply_all(evs, n);
  FUZZ_CHECK(wrong_days() == 0, "a day of rm_daily_sales does not count its live orders");
  char *before = digest();
  apply_all(evs, n); /* re-delivery: every checkpoint is already there */
  char *after = digest();
  FUZZ_CHECK(strcmp(before, after) == 0, "applying the events again changed the read models");
  free(before);
  free(after);
  run_queries(evs, n);
  exec("ROLLBACK");

  for (int i = 0; i < n; i++) json_decref(evs[i].data);
  free(text);
  return 0;
}
