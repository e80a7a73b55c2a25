/*
 * queries.c: the read lane's queries over the read models of projections.c. Each runs on a
 * query connection (one committed snapshot per statement) and answers a JSON object without
 * "meta" (the HTTP layer adds it).
 */
#include "read/tl_read.h"

#include "util/tl_money.h"
#include "util/tl_time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *db_error(tl_db *db, tl_problem *p) {
  tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "The read model could not be read: %s",
                 sqlite3_errmsg(db->db));
  return NULL;
}

static json_t *stmt_error(tl_problem *p, const tl_err *err) {
  tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "The read model could not be read: %s",
                 err->msg);
  return NULL;
}

static json_t *iso_json(int64_t ms) {
  char iso[TL_ISO_LEN];
  tl_time_format(ms, iso);
  return json_string(iso);
}

static const char *col(sqlite3_stmt *st, int i) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  return s ? s : "";
}

/* Columns: order_id, customer_id, status, total_minor, currency, item_count, created_at,
 * updated_at, version. */
#define SUMMARY_COLS                                                                            \
  "o.order_id, o.customer_id, o.status, o.total_minor, o.currency, o.item_count, o.created_at," \
  " o.updated_at, o.version"

static json_t *summary(sqlite3_stmt *st) {
  return json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:I}", "orderId", col(st, 0),
                   "customerId", col(st, 1), "status", col(st, 2), "total",
                   tl_money_to_json(sqlite3_column_int64(st, 3)), "currency", col(st, 4),
                   "itemCount", (json_int_t)sqlite3_column_int64(st, 5), "createdAt",
                   iso_json(sqlite3_column_int64(st, 6)), "updatedAt",
                   iso_json(sqlite3_column_int64(st, 7)), "version",
                   (json_int_t)sqlite3_column_int64(st, 8));
}

static const char SQL_ORDER[] =
    "SELECT " SUMMARY_COLS ", o.items, o.shipping, o.rejection_reason FROM rm_orders o"
    " WHERE o.order_id = ?";

json_t *tl_query_order(tl_db *db, const char *order_id, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_ORDER, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    tl_problem_set(p, 404, "ORDER_NOT_FOUND", "No order has this id (yet).");
    return NULL;
  }
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return db_error(db, p);
  }
  json_t *o = summary(st);
  json_t *items = json_loads(col(st, 9), 0, NULL);
  json_t *ship = json_loads(col(st, 10), JSON_DECODE_ANY, NULL);
  json_t *reason = sqlite3_column_type(st, 11) == SQLITE_NULL ? json_null()
                                                               : json_string(col(st, 11));
  sqlite3_reset(st);
  json_object_set_new(o, "rejectionReason", reason);
  json_object_del(o, "itemCount");
  json_object_set_new(o, "items", items ? items : json_array());
  json_object_set_new(o, "shippingAddress", ship ? ship : json_null());
  return o;
}

static const char SQL_CUSTOMER_FIRST[] =
    "SELECT " SUMMARY_COLS " FROM rm_orders o WHERE o.customer_id = ?"
    " ORDER BY o.order_id DESC LIMIT ?";
static const char SQL_CUSTOMER_AFTER[] =
    "SELECT " SUMMARY_COLS " FROM rm_orders o WHERE o.customer_id = ? AND o.order_id < ?"
    " ORDER BY o.order_id DESC LIMIT ?";

/* Runs a summary query that was asked for limit + 1 rows: the extra row only says there is a
 * next page. Fills {items, nextCursor} where the cursor is the last item's orderId. */
static json_t *summary_page(tl_db *db, sqlite3_stmt *st, int limit, tl_problem *p) {
  json_t *items = json_array();
  int rc, n = 0;
  int more = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      more = 1;
      break;
    }
    json_array_append_new(items, summary(st));
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    json_decref(items);
    return db_error(db, p);
  }
  json_t *next = json_null();
  if (more && n > 0)
    next = json_string(json_string_value(json_object_get(json_array_get(items, n - 1), "orderId")));
  return json_pack("{s:o, s:o}", "items", items, "nextCursor", next);
}

json_t *tl_query_customer_orders(tl_db *db, const char *customer_id, int limit,
                                 const char *cursor, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, cursor ? SQL_CUSTOMER_AFTER : SQL_CUSTOMER_FIRST, &err);
  if (!st) return stmt_error(p, &err);
  int i = 1;
  sqlite3_bind_text(st, i++, customer_id, -1, SQLITE_TRANSIENT);
  if (cursor) sqlite3_bind_text(st, i++, cursor, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, i, limit + 1);
  return summary_page(db, st, limit, p);
}

/* FTS5 walks its doclists in rowid order, so "ORDER BY rowid DESC LIMIT n" inside the index
 * stops after n matches instead of sorting every match (rowid = seq = the position of
 * OrderPlaced, so this is newest first). */
static const char SQL_SEARCH[] =
    "SELECT " SUMMARY_COLS " FROM rm_orders o WHERE o.seq IN ("
    " SELECT rowid FROM rm_orders_fts WHERE rm_orders_fts MATCH ? ORDER BY rowid DESC LIMIT ?)"
    " ORDER BY o.seq DESC";

/* Builds an FTS5 query where every word of q must match as a prefix: "word1"* "word2"*.
 * Words are runs of letters and digits (and any non-ASCII byte); everything else separates
 * words, so no FTS5 syntax can be injected. Returns the number of words. */
static int fts_query(const char *q, char *out, size_t len) {
  size_t o = 0;
  int words = 0;
  const unsigned char *s = (const unsigned char *)q;
  while (*s) {
    while (*s && !(isalnum(*s) || *s >= 0x80)) s++;
    if (!*s) break;
    if (o + 4 >= len) break;
    if (words) out[o++] = ' ';
    out[o++] = '"';
    while (*s && (isalnum(*s) || *s >= 0x80) && o + 3 < len) out[o++] = (char)*s++;
    while (*s && (isalnum(*s) || *s >= 0x80)) s++; /* truncated word */
    out[o++] = '"';
    out[o++] = '*';
    words++;
  }
  out[o] = '\0';
  return words;
}

json_t *tl_query_search(tl_db *db, const char *q, int limit, tl_problem *p) {
  char match[1024];
  if (fts_query(q, match, sizeof match) == 0) {
    tl_problem_set(p, 400, "VALIDATION_FAILED", "q must contain at least one word.");
    tl_problem_field(p, "q", "must contain at least one word");
    return NULL;
  }
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_SEARCH, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, match, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, limit);
  json_t *items = json_array();
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) json_array_append_new(items, summary(st));
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    json_decref(items);
    return db_error(db, p);
  }
  return json_pack("{s:o}", "items", items);
}

static const char SQL_SALES[] =
    "SELECT day, order_count, revenue_minor FROM rm_daily_sales WHERE day BETWEEN ? AND ?"
    " ORDER BY day";

json_t *tl_query_sales_daily(tl_db *db, int64_t from_day, int64_t to_day, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_SALES, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_int64(st, 1, from_day);
  sqlite3_bind_int64(st, 2, to_day);
  json_t *days = json_array();
  int64_t next_day = from_day;
  int rc;
  char date[11];
  /* Every date of the range appears; days without live orders are zero. */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t day = sqlite3_column_int64(st, 0);
    for (; next_day < day; next_day++) {
      tl_date_format(next_day, date);
      json_array_append_new(days, json_pack("{s:s, s:i, s:o}", "date", date, "orderCount", 0,
                                            "revenue", tl_money_to_json(0)));
    }
    tl_date_format(day, date);
    json_array_append_new(days, json_pack("{s:s, s:I, s:o}", "date", date, "orderCount",
                                          (json_int_t)sqlite3_column_int64(st, 1), "revenue",
                                          tl_money_to_json(sqlite3_column_int64(st, 2))));
    next_day = day + 1;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    json_decref(days);
    return db_error(db, p);
  }
  for (; next_day <= to_day; next_day++) {
    tl_date_format(next_day, date);
    json_array_append_new(days, json_pack("{s:s, s:i, s:o}", "date", date, "orderCount", 0,
                                          "revenue", tl_money_to_json(0)));
  }
  return json_pack("{s:o}", "days", days);
}

#define PRODUCT_COLS                                                                            \
  "product_id, name, category, price_minor, currency, stock, reserved, sales_count,"            \
  " revenue_minor, last_sold_at, version"

static json_t *product_view(sqlite3_stmt *st) {
  int64_t stock = sqlite3_column_int64(st, 5), reserved = sqlite3_column_int64(st, 6);
  int64_t available; /* saturates: a damaged log can put any stock in the read model */
  if (__builtin_sub_overflow(stock, reserved, &available))
    available = reserved > 0 ? INT64_MIN : INT64_MAX;
  json_t *last = sqlite3_column_type(st, 9) == SQLITE_NULL ? json_null()
                                                           : iso_json(sqlite3_column_int64(st, 9));
  return json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:b, s:I, s:o, s:o, s:I}", "productId",
                   col(st, 0), "name", col(st, 1), "category", col(st, 2), "price",
                   tl_money_to_json(sqlite3_column_int64(st, 3)), "currency", col(st, 4),
                   "stock", (json_int_t)stock, "available", (json_int_t)available, "inStock",
                   available > 0, "salesCount", (json_int_t)sqlite3_column_int64(st, 7),
                   "revenue", tl_money_to_json(sqlite3_column_int64(st, 8)), "lastSoldAt", last,
                   "version", (json_int_t)sqlite3_column_int64(st, 10));
}

static const char SQL_PRODUCT[] = "SELECT " PRODUCT_COLS " FROM rm_products WHERE product_id = ?";

json_t *tl_query_product(tl_db *db, const char *product_id, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_PRODUCT, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, product_id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  json_t *v = rc == SQLITE_ROW ? product_view(st) : NULL;
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) {
    tl_problem_set(p, 404, "PRODUCT_NOT_FOUND", "No product has this id (yet).");
    return NULL;
  }
  if (rc != SQLITE_ROW) return db_error(db, p);
  return v;
}

/* Popularity pages are keyed by (sales_count DESC, product_id ASC); the cursor is
 * "<salesCount>:<productId>" of the last item (opaque to clients). */
static const char SQL_PRODUCTS_ALL[] =
    "SELECT " PRODUCT_COLS " FROM rm_products"
    " WHERE (?1 IS NULL OR sales_count < ?1 OR (sales_count = ?1 AND product_id > ?2))"
    " AND (?5 IS NULL OR (stock - reserved > 0) = ?5)"
    " ORDER BY sales_count DESC, product_id LIMIT ?3";
static const char SQL_PRODUCTS_CAT[] =
    "SELECT " PRODUCT_COLS " FROM rm_products WHERE category = ?4"
    " AND (?1 IS NULL OR sales_count < ?1 OR (sales_count = ?1 AND product_id > ?2))"
    " AND (?5 IS NULL OR (stock - reserved > 0) = ?5)"
    " ORDER BY sales_count DESC, product_id LIMIT ?3";

json_t *tl_query_products(tl_db *db, const char *category, int in_stock, int limit,
                          const char *cursor, tl_problem *p) {
  long long cur_count = 0;
  char cur_id[65] = "";
  if (cursor) {
    char *colon = strchr(cursor, ':');
    char *end = NULL;
    cur_count = colon ? strtoll(cursor, &end, 10) : -1;
    if (!colon || end != colon || cur_count < 0 || strlen(colon + 1) >= sizeof cur_id ||
        colon[1] == '\0') {
      tl_problem_set(p, 400, "VALIDATION_FAILED", "cursor is not one this server gave out.");
      tl_problem_field(p, "cursor", "is invalid");
      return NULL;
    }
    snprintf(cur_id, sizeof cur_id, "%s", colon + 1);
  }
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, category ? SQL_PRODUCTS_CAT : SQL_PRODUCTS_ALL, &err);
  if (!st) return stmt_error(p, &err);
  if (cursor) {
    sqlite3_bind_int64(st, 1, cur_count);
    sqlite3_bind_text(st, 2, cur_id, -1, SQLITE_TRANSIENT);
  }
  sqlite3_bind_int(st, 3, limit + 1);
  if (category) sqlite3_bind_text(st, 4, category, -1, SQLITE_TRANSIENT);
  if (in_stock >= 0) sqlite3_bind_int(st, 5, in_stock);
  json_t *items = json_array();
  int rc, n = 0, more = 0;
  char next_cursor[96] = "";
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      more = 1;
      break;
    }
    json_array_append_new(items, product_view(st));
    snprintf(next_cursor, sizeof next_cursor, "%lld:%s", (long long)sqlite3_column_int64(st, 7),
             col(st, 0));
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    json_decref(items);
    return db_error(db, p);
  }
  return json_pack("{s:o, s:o}", "items", items, "nextCursor",
                   more ? json_string(next_cursor) : json_null());
}
