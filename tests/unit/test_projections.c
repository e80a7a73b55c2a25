/* test_projections.c: the read models of read/projections.c, driven one event at a time through
 * tl_projection_apply_one and checked through the queries of read/queries.c.
 *
 * Each test gets a fresh read.db in its own mkdtemp directory with every projection set up.
 * Events are fed in position order the way the projector does it (inside a transaction), and
 * the data JSON is the text the log stores (money as JSON numbers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "read/tl_read.h"
#include "util/tl_common.h"
#include "util/tl_id.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include "tmp_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CUST_A "123e4567-e89b-12d3-a456-426614174000"
#define CUST_B "9b2f0c1e-4a6d-4c8b-9f1e-2d3c4b5a6978"
#define ADDRESS           \
  "{\"street\":\"1 Main " \
  "St\",\"city\":\"Springfield\",\"country\":\"US\",\"postalCode\":\"12345\"}"

typedef struct fixture {
  tmp_db t;
  tl_db *db; /* t.db */
} fixture;

/* ---- fixture ------------------------------------------------------------------------------- */

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  if (!f) return -1;
  if (tmp_db_open(&f->t, "proj", "read.db") != TL_OK) {
    free(f);
    return -1;
  }
  f->db = f->t.db;
  tl_err err = {0};
  for (int i = 0; i < tl_projections_count; i++) {
    if (tl_projection_setup(f->db, tl_projections[i], &err) != TL_OK) {
      print_error("setup %s: %s\n", tl_projections[i]->name, err.msg);
      return -1;
    }
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  tmp_db_remove(&f->t);
  free(f);
  return 0;
}

/* ---- feeding events ------------------------------------------------------------------------ */

/* How apply() feeds an event: 0, in a transaction of its own through tl_projection_apply_one (each
 * event complete on its own); 1, straight to each projection's apply inside the caller's open
 * transaction, as the projector's batch does (counters deferred to the end: tl_db_deferred). */
static int batching;

/* Applies one event to every projection in its own transaction; the apply must succeed. */
static void apply(tl_db *db, int64_t position, const char *stream, int64_t version,
                  const char *type, const char *data_text, int64_t recorded_ms) {
  tl_jdoc doc = {0};
  const tl_jv *data = NULL;
  if (tl_jdoc_parse(&doc, data_text, strlen(data_text), &data) != TL_OK)
    fail_msg("bad event data in test: %s", data_text);
  tl_event ev = {.position = position,
                 .stream = (char *)stream,
                 .version = version,
                 .type = (char *)type,
                 .schema_version = 1,
                 .data = (char *)data_text,
                 .metadata = (char *)"{}",
                 .recorded_ms = recorded_ms};
  tl_err err = {0};
  if (batching) {
    for (int i = 0; i < tl_projections_count; i++)
      if (tl_projections[i]->apply(db, &ev, data, &err) != TL_OK)
        fail_msg("%s: apply %s: %s", tl_projections[i]->name, type, err.msg);
    tl_jdoc_free(&doc);
    return;
  }
  assert_int_equal(tl_db_exec(db, "BEGIN", &err), TL_OK);
  for (int i = 0; i < tl_projections_count; i++) {
    int rc = tl_projection_apply_one(db, tl_projections[i], &ev, data, &err);
    if (rc != TL_OK) fail_msg("%s: apply %s: %s", tl_projections[i]->name, type, err.msg);
  }
  assert_int_equal(tl_db_exec(db, "COMMIT", &err), TL_OK);
  tl_jdoc_free(&doc);
}

static void product_created(tl_db *db, int64_t pos, const char *pid, const char *name,
                            const char *category, const char *price, int stock, int64_t ms) {
  char stream[96], data[2048];
  snprintf(stream, sizeof stream, "product-%s", pid);
  snprintf(data, sizeof data,
           "{\"productId\":\"%s\",\"name\":\"%s\",\"category\":\"%s\",\"price\":%s,"
           "\"currency\":\"USD\",\"stock\":%d}",
           pid, name, category, price, stock);
  apply(db, pos, stream, 1, "ProductCreated", data, ms);
}

static void product_restocked(tl_db *db, int64_t pos, const char *pid, int64_t version, int qty,
                              int64_t ms) {
  char stream[96], data[256];
  snprintf(stream, sizeof stream, "product-%s", pid);
  snprintf(data, sizeof data, "{\"productId\":\"%s\",\"quantity\":%d}", pid, qty);
  apply(db, pos, stream, version, "ProductRestocked", data, ms);
}

/* items: the JSON array text of [{productId, quantity, price}]; total: its sum as JSON text. */
static void order_placed(tl_db *db, int64_t pos, const char *oid, const char *cid,
                         const char *items, const char *total, int64_t ms) {
  char stream[96], data[4096];
  snprintf(stream, sizeof stream, "order-%s", oid);
  snprintf(data, sizeof data,
           "{\"orderId\":\"%s\",\"customerId\":\"%s\",\"items\":%s,\"shippingAddress\":" ADDRESS
           ",\"currency\":\"USD\",\"total\":%s}",
           oid, cid, items, total);
  apply(db, pos, stream, 1, "OrderPlaced", data, ms);
}

/* An order of one unit of product pid at price (JSON number text, also the total). */
static void order_of_one(tl_db *db, int64_t pos, const char *oid, const char *cid, const char *pid,
                         const char *price, int64_t ms) {
  char items[256];
  snprintf(items, sizeof items, "[{\"productId\":\"%s\",\"quantity\":1,\"price\":%s}]", pid, price);
  order_placed(db, pos, oid, cid, items, price, ms);
}

/* PaymentConfirmed, OrderShipped or OrderCancelled at stream version version. */
static void order_event(tl_db *db, int64_t pos, const char *type, const char *oid, int64_t version,
                        int64_t ms) {
  const char *key = strcmp(type, "PaymentConfirmed") == 0 ? "paymentId"
                    : strcmp(type, "OrderShipped") == 0   ? "trackingNumber"
                                                          : "reason";
  char stream[96], data[256];
  snprintf(stream, sizeof stream, "order-%s", oid);
  snprintf(data, sizeof data, "{\"orderId\":\"%s\",\"%s\":\"x-%lld\"}", oid, key, (long long)pos);
  apply(db, pos, stream, version, type, data, ms);
}

/* ---- reading back -------------------------------------------------------------------------- */

static int64_t ms_of(const char *iso) {
  int64_t ms;
  assert_int_equal(tl_time_parse(iso, &ms), TL_OK);
  return ms;
}

static int64_t day_of(const char *date) {
  int64_t d;
  assert_int_equal(tl_date_parse(date, &d), TL_OK);
  return d;
}

/* Order ids are ULIDs; ids made at later times sort later. */
static void ulid_at(const char *iso, char out[TL_ULID_LEN + 1]) {
  tl_ulid_new(ms_of(iso), out);
}

static int64_t money_of(const json_t *j) {
  int64_t v = -1;
  if (tl_money_from_json(j, &v) != TL_OK) fail_msg("not a money amount");
  return v;
}

static const char *str_of(const json_t *obj, const char *key) {
  const char *v = json_string_value(json_object_get(obj, key));
  if (!v) fail_msg("member %s is not a string", key);
  return v;
}

static json_int_t int_of(const json_t *obj, const char *key) {
  const json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v)) fail_msg("member %s is not an integer", key);
  return json_integer_value(v);
}

/* Runs a query the way the HTTP layer does (an open object, the query's members, closed) and
 * parses the text: the tests check what a client receives. NULL when the query set a problem. */
#define ANSWER(p, fn, ...)                        \
  ({                                              \
    tl_jw w_ = {.depth = 0};                      \
    tl_jw_object(&w_);                            \
    parse_answer(&w_, fn(__VA_ARGS__, &w_, (p))); \
  })

static json_t *parse_answer(tl_jw *w, int rc) {
  if (rc != TL_OK) {
    tl_jw_free(w);
    return NULL;
  }
  tl_jw_end(w);
  char *text = tl_jw_take(w);
  assert_non_null(text);
  json_error_t je;
  json_t *j = json_loads(text, 0, &je);
  if (!j) fail_msg("invalid JSON answer: %s (%s)", text, je.text);
  free(text);
  return j;
}

static json_t *must(json_t *answer, tl_problem *p) {
  if (!answer) fail_msg("query failed: %d %s %s", p->status, p->code ? p->code : "", p->detail);
  return answer;
}

static json_t *get_product(tl_db *db, const char *pid) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_product, db, pid), &p);
  tl_problem_clear(&p);
  return v;
}

static json_t *get_order(tl_db *db, const char *oid) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_order, db, oid), &p);
  tl_problem_clear(&p);
  return v;
}

static json_t *get_sales(tl_db *db, const char *from, const char *to) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_sales_daily, db, day_of(from), day_of(to)), &p);
  tl_problem_clear(&p);
  return v;
}

static json_t *get_search(tl_db *db, const char *q, int limit) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_search, db, q, limit), &p);
  tl_problem_clear(&p);
  return v;
}

static json_t *get_products(tl_db *db, const char *category, int limit, const char *cursor) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_products, db, category, -1, limit, cursor), &p);
  tl_problem_clear(&p);
  return v;
}

static json_t *get_customer(tl_db *db, const char *cid, int limit, const char *cursor) {
  tl_problem p = {0};
  json_t *v = must(ANSWER(&p, tl_query_customer_orders, db, cid, limit, cursor), &p);
  tl_problem_clear(&p);
  return v;
}

/* The orderIds of answer.items, space-separated, into out. */
static const char *ids_of(const json_t *answer, const char *key, char *out, size_t len) {
  const json_t *items = json_object_get(answer, "items");
  assert_true(json_is_array(items));
  size_t o = 0;
  out[0] = '\0';
  for (size_t i = 0; i < json_array_size(items); i++) {
    int w = snprintf(out + o, len - o, "%s%s", i ? " " : "", str_of(json_array_get(items, i), key));
    assert_true(w > 0 && (size_t)w < len - o);
    o += (size_t)w;
  }
  return out;
}

/* The sales row of date in a sales_daily answer. */
static const json_t *sales_day(const json_t *answer, const char *date) {
  const json_t *days = json_object_get(answer, "days");
  for (size_t i = 0; i < json_array_size(days); i++)
    if (strcmp(str_of(json_array_get(days, i), "date"), date) == 0) return json_array_get(days, i);
  fail_msg("no sales row for %s", date);
  return NULL;
}

static void expect_sales(const json_t *answer, const char *date, json_int_t count,
                         int64_t revenue) {
  const json_t *d = sales_day(answer, date);
  assert_int_equal(int_of(d, "orderCount"), count);
  assert_int_equal(money_of(json_object_get(d, "revenue")), revenue);
}

static void expect_checkpoints(tl_db *db, int64_t position) {
  for (int i = 0; i < tl_projections_count; i++)
    assert_int_equal(tl_projection_checkpoint(db, tl_projections[i]->name), position);
}

/* Every query answer over the models, as one canonical text (caller frees). */
static char *snapshot(tl_db *db, const char *oid, const char *pid) {
  tl_problem p = {0};
  json_t *all = json_array();
  json_t *answers[] = {
      ANSWER(&p, tl_query_order, db, oid),
      ANSWER(&p, tl_query_customer_orders, db, CUST_A, 50, NULL),
      ANSWER(&p, tl_query_search, db, "espresso tea", 50),
      ANSWER(&p, tl_query_sales_daily, db, day_of("2026-11-20"), day_of("2026-11-25")),
      ANSWER(&p, tl_query_products, db, NULL, -1, 50, NULL),
      ANSWER(&p, tl_query_product, db, pid),
  };
  for (size_t i = 0; i < TL_ARRAY_LEN(answers); i++)
    json_array_append_new(all, answers[i] ? answers[i] : json_null());
  tl_problem_clear(&p);
  char *text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(all);
  assert_non_null(text);
  return text;
}

/* ---- a batch in one transaction ------------------------------------------------------------ */

/* Sales, reservations, restocks and cancellations of two products over a few days; with
 * `undone`, also an order applied in a savepoint that is rolled back (a refused event). */
static void counters_script(tl_db *db, bool undone, char oids[5][TL_ULID_LEN + 1]) {
  tl_err err = {0};
  product_created(db, 1, "p1", "Espresso Machine", "kitchen", "10.00", 10,
                  ms_of("2026-11-20T09:00:00Z"));
  product_created(db, 2, "p2", "Tea Kettle", "kitchen", "5.00", 10, ms_of("2026-11-20T09:00:00Z"));
  order_placed(db, 3, oids[0], CUST_A, "[{\"productId\":\"p1\",\"quantity\":2,\"price\":10.00}]",
               "20.00", ms_of("2026-11-21T10:00:00Z"));
  char data[256];
  snprintf(data, sizeof data, "{\"productId\":\"p1\",\"quantity\":2,\"orderId\":\"%s\"}", oids[0]);
  apply(db, 4, "product-p1", 2, "StockReserved", data, ms_of("2026-11-21T10:00:01Z"));
  order_placed(db, 5, oids[1], CUST_B,
               "[{\"productId\":\"p1\",\"quantity\":1,\"price\":10.00},"
               "{\"productId\":\"p2\",\"quantity\":1,\"price\":5.00}]",
               "15.00", ms_of("2026-11-22T11:00:00Z"));
  /* The newest sale of p1 goes: its last_sold_at falls back to o1's, read from the lines. */
  order_event(db, 6, "OrderCancelled", oids[1], 2, ms_of("2026-11-22T11:05:00Z"));
  product_restocked(db, 7, "p2", 2, 5, ms_of("2026-11-22T12:00:00Z"));
  if (undone) {
    assert_int_equal(tl_db_run(db, "SAVEPOINT t", &err), TL_OK);
    order_of_one(db, 8, oids[4], CUST_A, "p1", "10.00", ms_of("2026-11-23T08:00:00Z"));
    assert_int_equal(tl_db_run(db, "ROLLBACK TO t", &err), TL_OK);
    assert_int_equal(tl_db_run(db, "RELEASE t", &err), TL_OK);
  }
  order_placed(db, 9, oids[2], CUST_A, "[{\"productId\":\"p2\",\"quantity\":3,\"price\":5.00}]",
               "15.00", ms_of("2026-11-23T09:00:00Z"));
  order_event(db, 10, "OrderRejected", oids[2], 2, ms_of("2026-11-23T09:00:01Z"));
  order_of_one(db, 11, oids[3], CUST_B, "p2", "5.00", ms_of("2026-11-24T09:00:00Z"));
}

/* Every row of the counters' tables, as text. */
static char *counter_rows(tl_db *db) {
  static const char *const SQL[] = {
      "SELECT product_id, stock, reserved, sales_count, revenue_minor, last_sold_at, updated_at,"
      " version, last_position FROM rm_products ORDER BY product_id",
      "SELECT day, order_count, revenue_minor FROM rm_daily_sales ORDER BY day"};
  char *out = calloc(1, 4096);
  assert_non_null(out);
  size_t o = 0;
  for (size_t q = 0; q < TL_ARRAY_LEN(SQL); q++) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db->db, SQL[q], -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(st); c++) {
        const unsigned char *v = sqlite3_column_text(st, c);
        o +=
            (size_t)snprintf(out + o, 4096 - o, "%s%s", c ? "," : "", v ? (const char *)v : "null");
      }
      o += (size_t)snprintf(out + o, 4096 - o, "\n");
      assert_true(o < 4000);
    }
    sqlite3_finalize(st);
  }
  return out;
}

/* The projector applies a batch in one transaction, where the product and daily-sales counters
 * are summed in memory and written at COMMIT (or at a savepoint's RELEASE; a rolled-back one
 * forgets its share). The models must end exactly as with every event applied on its own. */
static void test_a_batch_in_one_transaction_equals_events_one_by_one(void **state) {
  fixture *f = *state;
  char oids[5][TL_ULID_LEN + 1];
  ulid_at("2026-11-21T10:00:00Z", oids[0]);
  ulid_at("2026-11-22T11:00:00Z", oids[1]);
  ulid_at("2026-11-23T09:00:00Z", oids[2]);
  ulid_at("2026-11-24T09:00:00Z", oids[3]);
  ulid_at("2026-11-23T08:00:00Z", oids[4]);
  counters_script(f->db, false, oids);

  fixture g = {0};
  assert_int_equal(tmp_db_open(&g.t, "batch", "read.db"), TL_OK);
  tl_err err = {0};
  for (int i = 0; i < tl_projections_count; i++)
    assert_int_equal(tl_projection_setup(g.t.db, tl_projections[i], &err), TL_OK);
  batching = 1;
  assert_int_equal(tl_db_run(g.t.db, "BEGIN", &err), TL_OK);
  counters_script(g.t.db, true, oids);
  assert_int_equal(tl_db_run(g.t.db, "COMMIT", &err), TL_OK);
  batching = 0;

  char *one = counter_rows(f->db), *batch = counter_rows(g.t.db);
  assert_string_equal(batch, one);
  /* p1: o1's 2 units sold, o2's unit back; its last sale is o1's again */
  char p1[96];
  snprintf(p1, sizeof p1, "p1,10,2,2,2000,%lld,", (long long)ms_of("2026-11-21T10:00:00Z"));
  assert_non_null(strstr(one, p1));
  free(one);
  free(batch);
  for (int k = 0; k < 2; k++) {
    one = snapshot(f->db, oids[k], k ? "p2" : "p1");
    batch = snapshot(g.t.db, oids[k], k ? "p2" : "p1");
    assert_string_equal(batch, one);
    free(one);
    free(batch);
  }
  tmp_db_remove(&g.t);
}

/* More products and days in one transaction than the deferred counters hold: the rest are
 * written at once, and every sale still counts exactly once. */
static void test_a_batch_past_the_deferred_capacity_counts_everything(void **state) {
  fixture *f = *state;
  tl_err err = {0};
  char pid[16], oid[TL_ULID_LEN + 1], iso[32];
  for (int i = 0; i < 250; i++) {
    snprintf(pid, sizeof pid, "cap%03d", i);
    product_created(f->db, 1 + i, pid, "Widget", "kitchen", "2.00", 10,
                    ms_of("2026-11-01T09:00:00Z"));
  }
  batching = 1;
  assert_int_equal(tl_db_run(f->db, "BEGIN", &err), TL_OK);
  for (int i = 0; i < 250; i++) {
    snprintf(pid, sizeof pid, "cap%03d", i);
    snprintf(iso, sizeof iso, "2026-11-%02dT10:00:00Z", 2 + i % 12); /* 12 days */
    ulid_at(iso, oid);
    order_of_one(f->db, 251 + i, oid, CUST_A, pid, "2.00", ms_of(iso));
  }
  assert_int_equal(tl_db_run(f->db, "COMMIT", &err), TL_OK);
  batching = 0;
  static const struct {
    const char *sql;
    int64_t want;
  } checks[] = {
      {"SELECT COUNT(*) FROM rm_products WHERE sales_count = 1 AND revenue_minor = 200", 250},
      {"SELECT COUNT(*) FROM rm_daily_sales", 12},
      {"SELECT SUM(order_count) FROM rm_daily_sales", 250},
      {"SELECT SUM(revenue_minor) FROM rm_daily_sales", 50000},
  };
  for (size_t i = 0; i < TL_ARRAY_LEN(checks); i++) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(f->db->db, checks[i].sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    if (sqlite3_column_int64(st, 0) != checks[i].want)
      fail_msg("%s: %lld, wanted %lld", checks[i].sql, (long long)sqlite3_column_int64(st, 0),
               (long long)checks[i].want);
    sqlite3_finalize(st);
  }
}

/* ---- setup and checkpoints ----------------------------------------------------------------- */

static void test_setup_starts_every_projection_at_position_zero(void **state) {
  fixture *f = *state;
  assert_int_equal(tl_projections_count, 3);
  const char *names[] = {"orders", "products", "daily_sales"};
  for (int i = 0; i < tl_projections_count; i++) {
    assert_string_equal(tl_projections[i]->name, names[i]);
    assert_int_equal(tl_projection_checkpoint(f->db, names[i]), 0);
  }
  /* Setting up again (a restart) keeps the models and the checkpoints. */
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5,
                  ms_of("2026-11-22T10:00:00Z"));
  tl_err err = {0};
  for (int i = 0; i < tl_projections_count; i++)
    assert_int_equal(tl_projection_setup(f->db, tl_projections[i], &err), TL_OK);
  expect_checkpoints(f->db, 1);
  json_t *v = get_product(f->db, "p1");
  json_decref(v);
}

static void test_checkpoint_moves_to_each_event_position(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  expect_checkpoints(f->db, 1);
  /* Every projection moves, also those the event type does not concern. */
  product_restocked(f->db, 2, "p1", 2, 3, t + 1);
  expect_checkpoints(f->db, 2);
  char oid[27];
  ulid_at("2026-11-22T10:00:01Z", oid);
  order_placed(f->db, 7, oid, CUST_A, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]",
               "9.99", t + 2);
  expect_checkpoints(f->db, 7);
}

/* Two products, two orders of CUST_A (o1 paid, o2 cancelled) and a restock: positions 1-7. */
static void small_history(tl_db *db, const char *o1, const char *o2, int64_t t) {
  product_created(db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  product_created(db, 2, "p2", "Green Tea", "drinks", "0.20", 10, t);
  order_placed(db, 3, o1, CUST_A,
               "[{\"productId\":\"p1\",\"quantity\":3,\"price\":0.10},"
               "{\"productId\":\"p2\",\"quantity\":1,\"price\":0.20}]",
               "0.50", t + 1000);
  order_placed(db, 4, o2, CUST_A, "[{\"productId\":\"p1\",\"quantity\":2,\"price\":9.99}]", "19.98",
               t + 2000);
  product_restocked(db, 5, "p1", 2, 4, t + 3000);
  order_event(db, 6, "PaymentConfirmed", o1, 2, t + 4000);
  order_event(db, 7, "OrderCancelled", o2, 2, t + 5000);
}

static void test_applying_the_same_events_twice_changes_nothing(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27], o2[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:02Z", o2);
  small_history(f->db, o1, o2, t);
  char *first = snapshot(f->db, o1, "p1");
  expect_checkpoints(f->db, 7);

  /* Redelivering the whole history, twice, changes no answer and no checkpoint. */
  small_history(f->db, o1, o2, t);
  small_history(f->db, o1, o2, t);
  char *again = snapshot(f->db, o1, "p1");
  assert_string_equal(again, first);
  expect_checkpoints(f->db, 7);
  free(again);
  free(first);

  /* And the answers are the right ones: counted once, cancelled once. */
  json_t *p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "stock"), 9);
  assert_int_equal(int_of(p1, "salesCount"), 3);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 30);
  json_decref(p1);
  json_t *sales = get_sales(f->db, "2026-11-22", "2026-11-22");
  expect_sales(sales, "2026-11-22", 1, 50);
  json_decref(sales);
  json_t *o = get_order(f->db, o1);
  assert_string_equal(str_of(o, "status"), "PAID");
  assert_int_equal(int_of(o, "version"), 2);
  json_decref(o);
  char ids[128], want[128];
  json_t *h = get_customer(f->db, CUST_A, 10, NULL);
  snprintf(want, sizeof want, "%s %s", o2, o1);
  assert_string_equal(ids_of(h, "orderId", ids, sizeof ids), want);
  json_decref(h);
  json_t *r = get_search(f->db, "espresso", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), want); /* one FTS row per order */
  json_decref(r);
}

static void test_event_older_than_checkpoint_is_ignored(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27], o9[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:09Z", o9);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  order_placed(f->db, 2, o1, CUST_A, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]",
               "9.99", t + 1000);
  product_restocked(f->db, 6, "p1", 2, 1, t + 2000);
  char *before = snapshot(f->db, o1, "p1");

  /* Events the checkpoint is already past, never seen before: all ignored. */
  product_restocked(f->db, 3, "p1", 2, 1000, t + 3000);
  order_placed(f->db, 4, o9, CUST_A, "[{\"productId\":\"p1\",\"quantity\":4,\"price\":9.99}]",
               "39.96", t + 3000);
  order_event(f->db, 5, "OrderCancelled", o1, 2, t + 3000);
  order_event(f->db, 6, "PaymentConfirmed", o1, 2, t + 3000);

  char *after = snapshot(f->db, o1, "p1");
  assert_string_equal(after, before);
  expect_checkpoints(f->db, 6);
  free(before);
  free(after);

  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_order, f->db, o9));
  assert_int_equal(p.status, 404);
  tl_problem_clear(&p);
  json_t *p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "stock"), 6);
  assert_int_equal(int_of(p1, "salesCount"), 1);
  json_decref(p1);
}

/* ---- products ------------------------------------------------------------------------------ */

static void test_product_created_builds_product_view(void **state) {
  fixture *f = *state;
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5,
                  ms_of("2026-11-22T10:00:00Z"));
  json_t *v = get_product(f->db, "p1");
  assert_string_equal(str_of(v, "productId"), "p1");
  assert_string_equal(str_of(v, "name"), "Espresso Machine");
  assert_string_equal(str_of(v, "category"), "kitchen");
  assert_int_equal(money_of(json_object_get(v, "price")), 999);
  assert_string_equal(str_of(v, "currency"), "USD");
  assert_int_equal(int_of(v, "stock"), 5);
  assert_int_equal(int_of(v, "available"), 5);
  assert_true(json_is_true(json_object_get(v, "inStock")));
  assert_int_equal(int_of(v, "salesCount"), 0);
  assert_int_equal(money_of(json_object_get(v, "revenue")), 0);
  assert_true(json_is_null(json_object_get(v, "lastSoldAt")));
  assert_int_equal(int_of(v, "version"), 1);
  json_decref(v);

  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_product, f->db, "p404"));
  assert_int_equal(p.status, 404);
  assert_string_equal(p.code, "PRODUCT_NOT_FOUND");
  tl_problem_clear(&p);
}

static void test_product_without_stock_is_not_in_stock_until_restocked(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  product_created(f->db, 1, "p0", "Empty Shelf", "misc", "1", 0, t);
  json_t *v = get_product(f->db, "p0");
  assert_int_equal(int_of(v, "stock"), 0);
  assert_int_equal(int_of(v, "available"), 0);
  assert_true(json_is_false(json_object_get(v, "inStock")));
  assert_int_equal(money_of(json_object_get(v, "price")), 100);
  json_decref(v);

  product_restocked(f->db, 2, "p0", 2, 12, t + 1);
  v = get_product(f->db, "p0");
  assert_int_equal(int_of(v, "stock"), 12);
  assert_int_equal(int_of(v, "available"), 12);
  assert_true(json_is_true(json_object_get(v, "inStock")));
  assert_int_equal(int_of(v, "version"), 2);
  json_decref(v);
}

static void test_order_cancelled_removes_product_sales_and_recomputes_last_sold_at(void **state) {
  fixture *f = *state;
  int64_t t0 = ms_of("2026-11-22T09:00:00Z");
  int64_t t1 = ms_of("2026-11-22T10:00:00.250Z");
  int64_t t2 = ms_of("2026-11-23T11:30:00Z");
  char o1[27], o2[27];
  ulid_at("2026-11-22T10:00:00.250Z", o1);
  ulid_at("2026-11-23T11:30:00Z", o2);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "1.50", 50, t0);
  product_created(f->db, 2, "p2", "Green Tea", "drinks", "0.20", 50, t0);
  order_placed(f->db, 3, o1, CUST_A, "[{\"productId\":\"p1\",\"quantity\":2,\"price\":1.50}]",
               "3.00", t1);
  order_placed(f->db, 4, o2, CUST_B,
               "[{\"productId\":\"p1\",\"quantity\":3,\"price\":1.40},"
               "{\"productId\":\"p2\",\"quantity\":1,\"price\":0.20}]",
               "4.40", t2);

  json_t *p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "salesCount"), 5);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 300 + 420);
  assert_string_equal(str_of(p1, "lastSoldAt"), "2026-11-23T11:30:00.000Z");
  assert_int_equal(int_of(p1, "stock"), 50); /* stock is not reserved by orders (yet) */
  json_decref(p1);

  order_event(f->db, 5, "PaymentConfirmed", o2, 2, t2 + 1000);
  order_event(f->db, 6, "OrderCancelled", o2, 3, t2 + 2000);
  p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "salesCount"), 2);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 300);
  assert_string_equal(str_of(p1, "lastSoldAt"), "2026-11-22T10:00:00.250Z");
  json_decref(p1);
  json_t *p2 = get_product(f->db, "p2");
  assert_int_equal(int_of(p2, "salesCount"), 0);
  assert_int_equal(money_of(json_object_get(p2, "revenue")), 0);
  assert_true(json_is_null(json_object_get(p2, "lastSoldAt")));
  json_decref(p2);

  order_event(f->db, 7, "OrderCancelled", o1, 2, t2 + 3000);
  p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "salesCount"), 0);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 0);
  assert_true(json_is_null(json_object_get(p1, "lastSoldAt")));
  json_decref(p1);
}

static void test_same_product_on_two_lines_counts_and_uncounts_both(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "1.50", 50, t);
  order_placed(f->db, 2, o1, CUST_A,
               "[{\"productId\":\"p1\",\"quantity\":1,\"price\":1.50},"
               "{\"productId\":\"p1\",\"quantity\":2,\"price\":1.25}]",
               "4.00", t + 1000);
  json_t *p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "salesCount"), 3);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 400);
  json_decref(p1);
  order_event(f->db, 3, "OrderCancelled", o1, 2, t + 2000);
  p1 = get_product(f->db, "p1");
  assert_int_equal(int_of(p1, "salesCount"), 0);
  assert_int_equal(money_of(json_object_get(p1, "revenue")), 0);
  assert_true(json_is_null(json_object_get(p1, "lastSoldAt")));
  json_decref(p1);
}

static void test_products_rank_by_sales_count_then_id_with_category_filter(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  product_created(f->db, 1, "d", "Dee", "x", "1", 1, t);
  product_created(f->db, 2, "c", "Cee", "x", "1", 1, t);
  product_created(f->db, 3, "b", "Bee", "y", "1", 1, t);
  product_created(f->db, 4, "a", "Ay", "x", "1", 1, t);
  product_created(f->db, 5, "e", "Ee", "y", "1", 1, t);
  char o1[27], o2[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:02Z", o2);
  order_placed(f->db, 6, o1, CUST_A,
               "[{\"productId\":\"c\",\"quantity\":5,\"price\":1},"
               "{\"productId\":\"b\",\"quantity\":2,\"price\":1}]",
               "7", t + 1000);
  order_placed(f->db, 7, o2, CUST_A, "[{\"productId\":\"a\",\"quantity\":2,\"price\":1}]", "2",
               t + 2000);

  char ids[256];
  json_t *all = get_products(f->db, NULL, 10, NULL);
  assert_string_equal(ids_of(all, "productId", ids, sizeof ids), "c a b d e");
  assert_true(json_is_null(json_object_get(all, "nextCursor")));
  json_decref(all);

  json_t *x = get_products(f->db, "x", 10, NULL);
  assert_string_equal(ids_of(x, "productId", ids, sizeof ids), "c a d");
  json_decref(x);
  json_t *none = get_products(f->db, "z", 10, NULL);
  assert_string_equal(ids_of(none, "productId", ids, sizeof ids), "");
  json_decref(none);

  /* Pages of two, following nextCursor. */
  const char *want_all[] = {"c a", "b d", "e"};
  char cursor[128] = "";
  for (size_t i = 0; i < TL_ARRAY_LEN(want_all); i++) {
    json_t *page = get_products(f->db, NULL, 2, i ? cursor : NULL);
    assert_string_equal(ids_of(page, "productId", ids, sizeof ids), want_all[i]);
    const json_t *next = json_object_get(page, "nextCursor");
    if (i + 1 < TL_ARRAY_LEN(want_all)) {
      assert_true(json_is_string(next));
      snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
    } else {
      assert_true(json_is_null(next));
    }
    json_decref(page);
  }
  const char *want_x[] = {"c a", "d"};
  for (size_t i = 0; i < TL_ARRAY_LEN(want_x); i++) {
    json_t *page = get_products(f->db, "x", 2, i ? cursor : NULL);
    assert_string_equal(ids_of(page, "productId", ids, sizeof ids), want_x[i]);
    const json_t *next = json_object_get(page, "nextCursor");
    if (i == 0)
      snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
    else
      assert_true(json_is_null(next));
    json_decref(page);
  }

  /* Cancelling an order drops its products in the ranking. */
  order_event(f->db, 8, "OrderCancelled", o1, 2, t + 3000);
  all = get_products(f->db, NULL, 10, NULL);
  assert_string_equal(ids_of(all, "productId", ids, sizeof ids), "a b c d e");
  json_decref(all);

  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_products, f->db, NULL, -1, 2, "not-a-cursor"));
  assert_int_equal(p.status, 400);
  tl_problem_clear(&p);
}

/* ---- orders -------------------------------------------------------------------------------- */

static void test_order_placed_builds_order_view(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27];
  ulid_at("2026-11-22T10:00:01.500Z", o1);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  product_created(f->db, 2, "p2", "Green Tea", "drinks", "0.20", 5, t);
  order_placed(f->db, 3, o1, CUST_A,
               "[{\"productId\":\"p1\",\"quantity\":3,\"price\":0.10},"
               "{\"productId\":\"p2\",\"quantity\":1,\"price\":0.20}]",
               "0.50", ms_of("2026-11-22T10:00:01.500Z"));

  json_t *o = get_order(f->db, o1);
  assert_int_equal(json_object_size(o), 11); /* with rejectionReason (null) */
  assert_string_equal(str_of(o, "orderId"), o1);
  assert_string_equal(str_of(o, "customerId"), CUST_A);
  assert_string_equal(str_of(o, "status"), "PENDING");
  assert_string_equal(str_of(o, "currency"), "USD");
  assert_int_equal(money_of(json_object_get(o, "total")), 50);
  assert_string_equal(str_of(o, "createdAt"), "2026-11-22T10:00:01.500Z");
  assert_string_equal(str_of(o, "updatedAt"), "2026-11-22T10:00:01.500Z");
  assert_int_equal(int_of(o, "version"), 1);
  json_t *addr = json_loads(ADDRESS, 0, NULL);
  assert_true(json_equal(json_object_get(o, "shippingAddress"), addr));
  json_decref(addr);
  const json_t *items = json_object_get(o, "items");
  assert_int_equal(json_array_size(items), 2);
  const json_t *i0 = json_array_get(items, 0), *i1 = json_array_get(items, 1);
  assert_string_equal(str_of(i0, "productId"), "p1");
  assert_string_equal(str_of(i0, "name"), "Espresso Machine");
  assert_int_equal(int_of(i0, "quantity"), 3);
  assert_int_equal(money_of(json_object_get(i0, "price")), 10); /* the order's price, not 9.99 */
  assert_string_equal(str_of(i1, "productId"), "p2");
  assert_string_equal(str_of(i1, "name"), "Green Tea");
  assert_int_equal(int_of(i1, "quantity"), 1);
  assert_int_equal(money_of(json_object_get(i1, "price")), 20);
  json_decref(o);

  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_order, f->db, "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
  assert_int_equal(p.status, 404);
  assert_string_equal(p.code, "ORDER_NOT_FOUND");
  tl_problem_clear(&p);
}

/* Names are limited in characters (200), so a name can take up to 800 bytes of UTF-8; the order
 * view must carry it whole. */
static void test_order_view_keeps_long_unicode_product_names(void **state) {
  fixture *f = *state;
  char name[2 * 200 + 1];
  for (int i = 0; i < 200; i++) memcpy(name + 2 * i, "\xc3\xa9", 2); /* "é" x 200 */
  name[400] = '\0';
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  product_created(f->db, 1, "p1", name, "kitchen", "9.99", 5, t);
  order_placed(f->db, 2, o1, CUST_A, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]",
               "9.99", t + 1000);
  json_t *o = get_order(f->db, o1);
  const json_t *items = json_object_get(o, "items");
  size_t n_items = json_array_size(items);
  const char *got = json_string_value(json_object_get(json_array_get(items, 0), "name"));
  int same = got && strcmp(got, name) == 0;
  json_decref(o);
  assert_int_equal(n_items, 1); /* the item must not be dropped from the view */
  assert_true(same);            /* nor its name cut short */
}

static void test_payment_and_shipping_update_status_and_version(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  order_placed(f->db, 2, o1, CUST_A, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]",
               "9.99", ms_of("2026-11-22T10:00:01Z"));
  order_event(f->db, 3, "PaymentConfirmed", o1, 2, ms_of("2026-11-22T10:05:00Z"));
  json_t *o = get_order(f->db, o1);
  assert_string_equal(str_of(o, "status"), "PAID");
  assert_int_equal(int_of(o, "version"), 2);
  assert_string_equal(str_of(o, "createdAt"), "2026-11-22T10:00:01.000Z");
  assert_string_equal(str_of(o, "updatedAt"), "2026-11-22T10:05:00.000Z");
  json_decref(o);
  json_t *h = get_customer(f->db, CUST_A, 10, NULL);
  const json_t *summary = json_array_get(json_object_get(h, "items"), 0);
  assert_string_equal(str_of(summary, "status"), "PAID");
  assert_int_equal(int_of(summary, "version"), 2);
  json_decref(h);

  order_event(f->db, 4, "OrderShipped", o1, 3, ms_of("2026-11-23T08:00:00Z"));
  o = get_order(f->db, o1);
  assert_string_equal(str_of(o, "status"), "SHIPPED");
  assert_int_equal(int_of(o, "version"), 3);
  assert_string_equal(str_of(o, "updatedAt"), "2026-11-23T08:00:00.000Z");
  json_decref(o);
  /* Paying and shipping do not change what was sold. */
  json_t *sales = get_sales(f->db, "2026-11-22", "2026-11-23");
  expect_sales(sales, "2026-11-22", 1, 999);
  expect_sales(sales, "2026-11-23", 0, 0);
  json_decref(sales);
}

static void test_customer_history_is_newest_first_with_pagination(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27], o2[27], o3[27], ob[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:02Z", o2);
  ulid_at("2026-11-22T10:00:03Z", ob);
  ulid_at("2026-11-23T10:00:04Z", o3);
  const char *items = "[{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]";
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  order_placed(f->db, 2, o1, CUST_A, items, "9.99", t + 1000);
  order_placed(f->db, 3, o2, CUST_A, items, "9.99", t + 2000);
  order_placed(f->db, 4, ob, CUST_B, items, "9.99", t + 3000);
  order_placed(f->db, 5, o3, CUST_A, items, "9.99", t + 86400000);

  char ids[256], want[256];
  json_t *all = get_customer(f->db, CUST_A, 10, NULL);
  snprintf(want, sizeof want, "%s %s %s", o3, o2, o1);
  assert_string_equal(ids_of(all, "orderId", ids, sizeof ids), want);
  assert_true(json_is_null(json_object_get(all, "nextCursor")));
  const json_t *s0 = json_array_get(json_object_get(all, "items"), 0);
  assert_string_equal(str_of(s0, "customerId"), CUST_A);
  assert_int_equal(int_of(s0, "itemCount"), 1);
  assert_int_equal(money_of(json_object_get(s0, "total")), 999);
  json_decref(all);

  const char *pages[] = {o3, o2, o1};
  char cursor[64] = "";
  for (size_t i = 0; i < TL_ARRAY_LEN(pages); i++) {
    json_t *page = get_customer(f->db, CUST_A, 1, i ? cursor : NULL);
    assert_string_equal(ids_of(page, "orderId", ids, sizeof ids), pages[i]);
    const json_t *next = json_object_get(page, "nextCursor");
    if (i + 1 < TL_ARRAY_LEN(pages)) {
      assert_true(json_is_string(next));
      assert_string_equal(json_string_value(next), pages[i]);
      snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
    } else {
      assert_true(json_is_null(next));
    }
    json_decref(page);
  }

  json_t *b = get_customer(f->db, CUST_B, 10, NULL);
  assert_string_equal(ids_of(b, "orderId", ids, sizeof ids), ob);
  json_decref(b);
  json_t *nobody = get_customer(f->db, "00000000-0000-4000-8000-000000000000", 10, NULL);
  assert_string_equal(ids_of(nobody, "orderId", ids, sizeof ids), "");
  assert_true(json_is_null(json_object_get(nobody, "nextCursor")));
  json_decref(nobody);
}

/* A customer page is read from the rm_orders_customer index alone (it holds every column of
 * a summary): at tens of thousands of orders, visiting each row's table page made the page
 * half as fast. The columns are queries.c's SUMMARY_COLS. */
static void test_customer_page_reads_only_the_covering_index(void **state) {
  fixture *f = *state;
  const char *sql[] = {
      "EXPLAIN QUERY PLAN SELECT o.order_id, o.customer_id, o.status, o.total_minor, o.currency,"
      " o.item_count, o.created_at, o.updated_at, o.version FROM rm_orders o"
      " WHERE o.customer_id = ? ORDER BY o.order_id DESC LIMIT ?",
      "EXPLAIN QUERY PLAN SELECT o.order_id, o.customer_id, o.status, o.total_minor, o.currency,"
      " o.item_count, o.created_at, o.updated_at, o.version FROM rm_orders o"
      " WHERE o.customer_id = ? AND o.order_id < ? ORDER BY o.order_id DESC LIMIT ?"};
  for (size_t i = 0; i < TL_ARRAY_LEN(sql); i++) {
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(f->db->db, sql[i], -1, &st, NULL), SQLITE_OK);
    char plan[512] = "";
    size_t n = 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < sizeof plan - 1)
      n += (size_t)snprintf(plan + n, sizeof plan - n, "%s;", sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    if (!strstr(plan, "USING COVERING INDEX rm_orders_customer") || strstr(plan, "TEMP B-TREE"))
      fail_msg("customer page plan: %s", plan);
  }
}

/* Prefixes of every length match, those with a prefix index (2 to 8 characters) and those
 * without (1, and 9 and more); a longer word than the product's does not. Newest first. */
static void test_search_matches_prefixes_of_every_length(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27], o2[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:02Z", o2);
  product_created(f->db, 1, "p1", "Extraordinarily Comfortable Chair", "home", "99.00", 5, t);
  product_created(f->db, 2, "p2", "Extra Pillow", "home", "9.00", 5, t);
  order_of_one(f->db, 3, o1, CUST_A, "p1", "99.00", t + 1000);
  order_of_one(f->db, 4, o2, CUST_B, "p2", "9.00", t + 2000);
  const char *word = "extraordinarily";
  char q[32], ids[128], both[128];
  snprintf(both, sizeof both, "%s %s", o2, o1);
  for (size_t len = 1; len <= strlen(word); len++) {
    snprintf(q, sizeof q, "%.*s", (int)len, word);
    json_t *r = get_search(f->db, q, 10);
    /* "e" .. "extra" also match the pillow's "Extra". */
    const char *want = len <= 5 ? both : o1;
    if (strcmp(ids_of(r, "orderId", ids, sizeof ids), want) != 0)
      fail_msg("search %s: got [%s], want [%s]", q, ids, want);
    json_decref(r);
  }
  json_t *r = get_search(f->db, "extraordinarilyx", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), "");
  json_decref(r);
  r = get_search(f->db, "extraordina comfo ch", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), o1);
  json_decref(r);
}

static void test_search_by_word_prefix_finds_the_order(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  char o1[27], o2[27], o3[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  ulid_at("2026-11-22T10:00:02Z", o2);
  ulid_at("2026-11-22T10:00:03Z", o3);
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 5, t);
  product_created(f->db, 2, "p2", "Green Tea", "drinks", "0.20", 5, t);
  order_of_one(f->db, 3, o1, CUST_A, "p1", "9.99", t + 1000);
  order_of_one(f->db, 4, o2, CUST_B, "p2", "0.20", t + 2000);
  order_placed(f->db, 5, o3, CUST_A,
               "[{\"productId\":\"p2\",\"quantity\":1,\"price\":0.20},"
               "{\"productId\":\"p1\",\"quantity\":1,\"price\":9.99}]",
               "10.19", t + 3000);

  char ids[256], want[256];
  snprintf(want, sizeof want, "%s %s", o3, o1);
  json_t *r = get_search(f->db, "espr", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), want);
  json_decref(r);
  r = get_search(f->db, "MACH", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), want);
  json_decref(r);
  snprintf(want, sizeof want, "%s %s", o3, o2);
  r = get_search(f->db, "tea", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), want);
  json_decref(r);
  /* Every word must match. */
  r = get_search(f->db, "espresso te", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), o3);
  json_decref(r);
  r = get_search(f->db, "coffee", 10);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), "");
  json_decref(r);
  r = get_search(f->db, "tea", 1);
  assert_string_equal(ids_of(r, "orderId", ids, sizeof ids), o3);
  json_decref(r);
  /* FTS syntax in the query is only a separator. */
  r = get_search(f->db, "\"green\" OR (machine*", 10);
  json_decref(r);

  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_search, f->db, " -- ", 10));
  assert_int_equal(p.status, 400);
  tl_problem_clear(&p);
}

static int64_t fts_segments(tl_db *db) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db->db, "SELECT count(DISTINCT segid) FROM rm_orders_fts_idx",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

/* The orders projection's tidy merges the full-text index's segments (one per commit here)
 * into one, a bounded step at a time, and says when nothing is left; searches answer the same
 * before and after. The other projections have no tidy. */
static void test_tidy_merges_the_search_index_and_keeps_answers(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "9.99", 500, t);
  product_created(f->db, 2, "p2", "Green Tea", "drinks", "0.20", 500, t);
  for (int i = 0; i < 60; i++) {
    char iso[32], oid[27];
    snprintf(iso, sizeof iso, "2026-11-22T10:%02d:%02dZ", 1 + i / 60, i % 60);
    ulid_at(iso, oid);
    order_of_one(f->db, 3 + i, oid, i % 2 ? CUST_A : CUST_B, i % 3 ? "p1" : "p2",
                 i % 3 ? "9.99" : "0.20", ms_of(iso));
  }
  assert_true(fts_segments(f->db) > 1);
  static const char *const QUERIES[] = {"espr", "tea", "ma", "green te", "e"};
  char before[5][2048], after[2048];
  for (int q = 0; q < 5; q++) {
    json_t *r = get_search(f->db, QUERIES[q], 100);
    ids_of(r, "orderId", before[q], sizeof before[q]);
    json_decref(r);
  }
  const tl_projection_def *orders = tl_projections[tl_projection_index("orders")];
  assert_non_null(orders->tidy);
  tl_err err = {0};
  int steps = 0, more = 1;
  while (more == 1 && steps < 1000) {
    assert_int_equal(tl_db_exec(f->db, "BEGIN", &err), TL_OK);
    more = orders->tidy(f->db, &err);
    assert_int_equal(tl_db_exec(f->db, "COMMIT", &err), TL_OK);
    steps++;
  }
  assert_int_equal(more, 0);
  assert_true(steps >= 2); /* at least one step merged something */
  assert_int_equal(fts_segments(f->db), 1);
  assert_int_equal(orders->tidy(f->db, &err), 0); /* nothing left: a no-op */
  for (int q = 0; q < 5; q++) {
    json_t *r = get_search(f->db, QUERIES[q], 100);
    assert_string_equal(ids_of(r, "orderId", after, sizeof after), before[q]);
    json_decref(r);
  }
  assert_string_not_equal(before[1], "");
  assert_null(tl_projections[tl_projection_index("products")]->tidy);
  assert_null(tl_projections[tl_projection_index("daily_sales")]->tidy);
}

/* The search document of an order holds the names of all its items (up to 100 of up to 200
 * characters each), so an item late in a large order is found like the first one. */
static void test_search_finds_every_item_of_a_large_order(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  enum { N = 60 };
  char items[N * 64 + 16];
  size_t o = 0;
  o += (size_t)snprintf(items + o, sizeof items - o, "[");
  for (int i = 0; i < N; i++) {
    char pid[16], name[256];
    snprintf(pid, sizeof pid, "p%02d", i);
    /* "Item07 xxxx...x": 200 characters, one searchable word per product. */
    int n = snprintf(name, sizeof name, "Item%02d ", i);
    memset(name + n, 'x', (size_t)(200 - n));
    name[200] = '\0';
    product_created(f->db, 1 + i, pid, name, "bulk", "1", 100, t);
    o += (size_t)snprintf(items + o, sizeof items - o,
                          "%s{\"productId\":\"%s\",\"quantity\":1,\"price\":1}", i ? "," : "", pid);
  }
  snprintf(items + o, sizeof items - o, "]");
  char o1[27];
  ulid_at("2026-11-22T10:00:01Z", o1);
  order_placed(f->db, N + 1, o1, CUST_A, items, "60", t + 1000);

  json_t *ord = get_order(f->db, o1);
  assert_int_equal(json_array_size(json_object_get(ord, "items")), N);
  json_decref(ord);
  char ids[64];
  const char *words[] = {"item00", "item30", "item45", "item58", "item59"};
  for (size_t i = 0; i < TL_ARRAY_LEN(words); i++) {
    json_t *r = get_search(f->db, words[i], 10);
    ids_of(r, "orderId", ids, sizeof ids);
    json_decref(r);
    if (strcmp(ids, o1) != 0) fail_msg("search for %s did not find the order", words[i]);
  }
}

/* ---- daily sales --------------------------------------------------------------------------- */

static void test_sales_daily_counts_orders_on_their_utc_date(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-01T00:00:00Z");
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "19.99", 50, t);
  product_created(f->db, 2, "p2", "Green Tea", "drinks", "0.10", 50, t);
  char o1[27], o2[27], o3[27];
  ulid_at("2026-11-21T23:59:59.999Z", o1);
  ulid_at("2026-11-22T00:00:00Z", o2);
  ulid_at("2026-11-22T23:59:59.999Z", o3);
  order_placed(f->db, 3, o1, CUST_A,
               "[{\"productId\":\"p2\",\"quantity\":3,\"price\":0.10},"
               "{\"productId\":\"p2\",\"quantity\":1,\"price\":0.20}]",
               "0.50", ms_of("2026-11-21T23:59:59.999Z"));
  order_placed(f->db, 4, o2, CUST_A, "[{\"productId\":\"p2\",\"quantity\":3,\"price\":0.10}]",
               "0.30", ms_of("2026-11-22T00:00:00Z"));
  order_placed(f->db, 5, o3, CUST_B, "[{\"productId\":\"p1\",\"quantity\":3,\"price\":19.99}]",
               "59.97", ms_of("2026-11-22T23:59:59.999Z"));

  json_t *s = get_sales(f->db, "2026-11-20", "2026-11-23");
  const json_t *days = json_object_get(s, "days");
  assert_int_equal(json_array_size(days), 4); /* every date of the range, in order */
  assert_string_equal(str_of(json_array_get(days, 0), "date"), "2026-11-20");
  assert_string_equal(str_of(json_array_get(days, 3), "date"), "2026-11-23");
  expect_sales(s, "2026-11-20", 0, 0);
  expect_sales(s, "2026-11-21", 1, 50);
  expect_sales(s, "2026-11-22", 2, 30 + 5997);
  expect_sales(s, "2026-11-23", 0, 0);
  json_decref(s);

  /* Many small prices still add up to exact cents. */
  char o4[27];
  ulid_at("2026-11-22T12:00:00Z", o4);
  order_placed(f->db, 6, o4, CUST_A, "[{\"productId\":\"p2\",\"quantity\":10000,\"price\":0.01}]",
               "100", ms_of("2026-11-22T12:00:00Z"));
  s = get_sales(f->db, "2026-11-22", "2026-11-22");
  assert_int_equal(json_array_size(json_object_get(s, "days")), 1);
  expect_sales(s, "2026-11-22", 3, 30 + 5997 + 10000);
  json_decref(s);
}

static void test_order_cancelled_leaves_daily_sales(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-01T00:00:00Z");
  product_created(f->db, 1, "p1", "Espresso Machine", "kitchen", "19.99", 50, t);
  char o1[27], o2[27], o3[27];
  ulid_at("2026-11-22T09:00:00Z", o1);
  ulid_at("2026-11-22T10:00:00Z", o2);
  ulid_at("2026-11-23T10:00:00Z", o3);
  order_placed(f->db, 2, o1, CUST_A, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":19.99}]",
               "19.99", ms_of("2026-11-22T09:00:00Z"));
  order_placed(f->db, 3, o2, CUST_A, "[{\"productId\":\"p1\",\"quantity\":2,\"price\":0.15}]",
               "0.30", ms_of("2026-11-22T10:00:00Z"));
  order_placed(f->db, 4, o3, CUST_B, "[{\"productId\":\"p1\",\"quantity\":1,\"price\":5}]", "5",
               ms_of("2026-11-23T10:00:00Z"));

  /* Cancelled the next day: the sale leaves the day it was placed on. */
  order_event(f->db, 5, "PaymentConfirmed", o1, 2, ms_of("2026-11-22T09:30:00Z"));
  order_event(f->db, 6, "OrderCancelled", o1, 3, ms_of("2026-11-23T12:00:00Z"));
  json_t *s = get_sales(f->db, "2026-11-22", "2026-11-23");
  expect_sales(s, "2026-11-22", 1, 30);
  expect_sales(s, "2026-11-23", 1, 500);
  json_decref(s);
  json_t *o = get_order(f->db, o1);
  assert_string_equal(str_of(o, "status"), "CANCELLED");
  assert_int_equal(int_of(o, "version"), 3);
  assert_string_equal(str_of(o, "updatedAt"), "2026-11-23T12:00:00.000Z");
  json_decref(o);

  order_event(f->db, 7, "OrderCancelled", o3, 2, ms_of("2026-11-23T13:00:00Z"));
  s = get_sales(f->db, "2026-11-22", "2026-11-23");
  expect_sales(s, "2026-11-22", 1, 30);
  expect_sales(s, "2026-11-23", 0, 0);
  json_decref(s);

  /* The cancelled orders stay in the customer's history, marked. */
  json_t *h = get_customer(f->db, CUST_A, 10, NULL);
  assert_int_equal(json_array_size(json_object_get(h, "items")), 2);
  json_decref(h);
}

/* Found by tests/fuzz/fuzz_projections.c: an OrderPlaced without shippingAddress made the
 * orders projection fail with "out of memory" (json_dumps of nothing), which would stall the
 * projector for good. The view says null instead. */
static void test_order_without_address_is_applied_with_a_null_address(void **state) {
  fixture *f = *state;
  product_created(f->db, 1, "sku-1", "Lamp", "lighting", "1.00", 5, ms_of("2026-11-22T10:00:00Z"));
  apply(f->db, 2, "order-X", 1, "OrderPlaced",
        "{\"orderId\":\"X\",\"customerId\":\"" CUST_A
        "\",\"currency\":\"USD\","
        "\"items\":[{\"productId\":\"sku-1\",\"quantity\":2,\"price\":1.00}]}",
        ms_of("2026-11-22T11:00:00Z"));
  json_t *o = get_order(f->db, "X");
  assert_true(json_is_null(json_object_get(o, "shippingAddress")));
  assert_int_equal(money_of(json_object_get(o, "total")), 200);
  json_decref(o);
}

/* Found by tests/fuzz/fuzz_projections.c (the total) and while fixing it (the available units):
 * amounts and counts of a damaged log overflowed int64, undefined behaviour. An OrderPlaced whose
 * total overflows is skipped by every projection, as tl_order_evolve refuses it; available
 * saturates. */
static void test_amounts_that_overflow_are_not_computed(void **state) {
  fixture *f = *state;
  int64_t t = ms_of("2026-11-22T10:00:00Z");
  apply(f->db, 1, "product-p", 1, "ProductCreated",
        "{\"productId\":\"p\",\"name\":\"n\",\"category\":\"c\",\"price\":1,"
        "\"stock\":-9223372036854775808}",
        t);
  apply(f->db, 2, "product-p", 2, "StockReserved",
        "{\"productId\":\"p\",\"orderId\":\"Y\",\"quantity\":1}", t);
  apply(f->db, 3, "order-Y", 1, "OrderPlaced",
        "{\"orderId\":\"Y\",\"customerId\":\"" CUST_A
        "\",\"items\":[{\"productId\":\"p\","
        "\"quantity\":9223372036854775807,\"price\":2}],\"shippingAddress\":" ADDRESS "}",
        t);
  expect_checkpoints(f->db, 3);
  tl_problem p = {0};
  assert_null(ANSWER(&p, tl_query_order, f->db, "Y"));
  assert_int_equal(p.status, 404);
  tl_problem_clear(&p);
  json_t *v = get_product(f->db, "p");
  assert_true(int_of(v, "available") == INT64_MIN);
  assert_int_equal(int_of(v, "salesCount"), 0);
  json_decref(v);
  json_t *sales = get_sales(f->db, "2026-11-22", "2026-11-22");
  expect_sales(sales, "2026-11-22", 0, 0);
  json_decref(sales);
}

/* Every table and index of db as SQLite stores them, in one string (sorted; FTS5's shadow
 * tables included). */
static void schema_of(sqlite3 *db, char *out, size_t cap) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT COALESCE(group_concat(d, ';'), '') FROM (SELECT"
                                      " type || ' ' || name || ' ' || tbl_name || ' ' ||"
                                      " COALESCE(sql, '') AS d FROM sqlite_master ORDER BY d)",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int n = snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
  assert_true(n > 0 && (size_t)n < cap);
  sqlite3_finalize(st);
}

/* A scratch fold's tables (fold_schema_sql), once a rebuild has run finish_sql on them, are the
 * live schema exactly (the rebuilt file is installed as it is), rows included: a full-text
 * table kept plain during the fold keeps its rows. Reconciliation's tables (fold_schema_sql
 * alone) have the compared columns. */
static void test_fold_schema_finishes_as_the_live_schema(void **state) {
  (void)state;
  for (int i = 0; i < tl_projections_count; i++) {
    const tl_projection_def *d = tl_projections[i];
    sqlite3 *live = NULL, *fold = NULL;
    assert_int_equal(sqlite3_open(":memory:", &live), SQLITE_OK);
    assert_int_equal(sqlite3_open(":memory:", &fold), SQLITE_OK);
    assert_int_equal(sqlite3_exec(live, d->schema_sql, NULL, NULL, NULL), SQLITE_OK);
    const char *fold_sql = d->fold_schema_sql ? d->fold_schema_sql : d->schema_sql;
    assert_int_equal(sqlite3_exec(fold, fold_sql, NULL, NULL, NULL), SQLITE_OK);
    for (int t = 0; t < d->n_tables; t++) {
      char sql[512];
      snprintf(sql, sizeof sql, "SELECT %s FROM %s", d->tables[t].cols ? d->tables[t].cols : "*",
               d->tables[t].name);
      assert_int_equal(sqlite3_exec(fold, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    if (strcmp(d->name, "orders") == 0) /* a row of the plain names table survives finish */
      assert_int_equal(
          sqlite3_exec(fold, "INSERT INTO rm_orders_fts(rowid, names) VALUES(7, 'blue widget')",
                       NULL, NULL, NULL),
          SQLITE_OK);
    if (d->finish_sql)
      assert_int_equal(sqlite3_exec(fold, d->finish_sql, NULL, NULL, NULL), SQLITE_OK);
    char a[16384], b[16384];
    schema_of(live, a, sizeof a);
    schema_of(fold, b, sizeof b);
    assert_string_not_equal(a, "");
    assert_string_equal(a, b);
    if (strcmp(d->name, "orders") == 0) {
      sqlite3_stmt *st = NULL;
      assert_int_equal(sqlite3_prepare_v2(
                           fold, "SELECT rowid FROM rm_orders_fts WHERE rm_orders_fts MATCH 'wid*'",
                           -1, &st, NULL),
                       SQLITE_OK);
      assert_int_equal(sqlite3_step(st), SQLITE_ROW);
      assert_int_equal(sqlite3_column_int64(st, 0), 7);
      sqlite3_finalize(st);
    }
    sqlite3_close(live);
    sqlite3_close(fold);
  }
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_setup_starts_every_projection_at_position_zero),
      T(test_a_batch_in_one_transaction_equals_events_one_by_one),
      T(test_a_batch_past_the_deferred_capacity_counts_everything),
      T(test_checkpoint_moves_to_each_event_position),
      T(test_applying_the_same_events_twice_changes_nothing),
      T(test_event_older_than_checkpoint_is_ignored),
      T(test_product_created_builds_product_view),
      T(test_product_without_stock_is_not_in_stock_until_restocked),
      T(test_order_cancelled_removes_product_sales_and_recomputes_last_sold_at),
      T(test_same_product_on_two_lines_counts_and_uncounts_both),
      T(test_products_rank_by_sales_count_then_id_with_category_filter),
      T(test_order_placed_builds_order_view),
      T(test_order_view_keeps_long_unicode_product_names),
      T(test_payment_and_shipping_update_status_and_version),
      T(test_customer_history_is_newest_first_with_pagination),
      T(test_customer_page_reads_only_the_covering_index),
      T(test_search_matches_prefixes_of_every_length),
      T(test_search_by_word_prefix_finds_the_order),
      T(test_tidy_merges_the_search_index_and_keeps_answers),
      T(test_search_finds_every_item_of_a_large_order),
      T(test_sales_daily_counts_orders_on_their_utc_date),
      T(test_order_cancelled_leaves_daily_sales),
      T(test_order_without_address_is_applied_with_a_null_address),
      T(test_amounts_that_overflow_are_not_computed),
      T(test_fold_schema_finishes_as_the_live_schema),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
