/*
 * queries.c: the read lane's queries over the read models of projections.c. Each runs on a
 * query connection (one committed snapshot per statement) and writes the members of the answer
 * object into a tl_jw whose object the caller opened (the HTTP layer adds "meta" and closes it).
 *
 * The answers are written straight from the columns (no jansson tree): the hot path of the
 * read lane (docs/performance.md). JSON-valued columns (items, shipping) were written by the
 * projections with tl_json_dumps and are copied as they are.
 */
#include "read/tl_read.h"

#include "util/tl_jw.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int db_error(tl_db *db, tl_problem *p) {
  tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "The read model could not be read: %s",
                 sqlite3_errmsg(db->db));
  return TL_E_IO;
}

static int stmt_error(tl_problem *p, const tl_err *err) {
  tl_problem_set(p, 503, "READ_MODEL_UNAVAILABLE", "The read model could not be read: %s",
                 err->msg);
  return TL_E_IO;
}

static void col_string(tl_jw *w, sqlite3_stmt *st, int i) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  tl_jw_string_n(w, s ? s : "", s ? (size_t)sqlite3_column_bytes(st, i) : 0);
}

/* Copies a text column into buf (cut to cap - 1 bytes; "" for NULL). */
static void copy_col(sqlite3_stmt *st, int i, char *buf, size_t cap) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  size_t n = s ? (size_t)sqlite3_column_bytes(st, i) : 0;
  if (n >= cap) n = cap - 1;
  if (n) memcpy(buf, s, n);
  buf[n] = '\0';
}

/* A column holding JSON text written by a projection, or fallback when it is empty. */
static void col_json(tl_jw *w, sqlite3_stmt *st, int i, const char *fallback) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  int n = s ? sqlite3_column_bytes(st, i) : 0;
  if (n > 0)
    tl_jw_raw(w, s, (size_t)n);
  else
    tl_jw_raw(w, fallback, strlen(fallback));
}

/* Columns: order_id, customer_id, status, total_minor, currency, item_count, created_at,
 * updated_at, version. All of them are in the rm_orders_customer index (projections.c), so a
 * customer page reads index entries only; keep the two lists together. */
#define SUMMARY_COLS                                                                            \
  "o.order_id, o.customer_id, o.status, o.total_minor, o.currency, o.item_count, o.created_at," \
  " o.updated_at, o.version"

/* The members an order summary and the order view share; the summary adds itemCount. */
static void summary_members(tl_jw *w, sqlite3_stmt *st, bool item_count) {
  tl_jw_key(w, "orderId");
  col_string(w, st, 0);
  tl_jw_key(w, "customerId");
  col_string(w, st, 1);
  tl_jw_key(w, "status");
  col_string(w, st, 2);
  tl_jw_key(w, "total");
  tl_jw_money(w, sqlite3_column_int64(st, 3));
  tl_jw_key(w, "currency");
  col_string(w, st, 4);
  if (item_count) {
    tl_jw_key(w, "itemCount");
    tl_jw_int(w, sqlite3_column_int64(st, 5));
  }
  tl_jw_key(w, "createdAt");
  tl_jw_time(w, sqlite3_column_int64(st, 6));
  tl_jw_key(w, "updatedAt");
  tl_jw_time(w, sqlite3_column_int64(st, 7));
  tl_jw_key(w, "version");
  tl_jw_int(w, sqlite3_column_int64(st, 8));
}

static void summary(tl_jw *w, sqlite3_stmt *st) {
  tl_jw_object(w);
  summary_members(w, st, true);
  tl_jw_end(w);
}

static const char SQL_ORDER[] = "SELECT " SUMMARY_COLS
                                ", o.items, o.shipping, o.rejection_reason FROM rm_orders o"
                                " WHERE o.order_id = ?";

int tl_query_order(tl_db *db, const char *order_id, tl_jw *out, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_ORDER, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, order_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    tl_problem_set(p, 404, "ORDER_NOT_FOUND", "No order has this id (yet).");
    return TL_E_NOTFOUND;
  }
  if (rc != SQLITE_ROW) {
    sqlite3_reset(st);
    return db_error(db, p);
  }
  summary_members(out, st, false);
  tl_jw_key(out, "rejectionReason");
  if (sqlite3_column_type(st, 11) == SQLITE_NULL)
    tl_jw_null(out);
  else
    col_string(out, st, 11);
  tl_jw_key(out, "items");
  col_json(out, st, 9, "[]");
  tl_jw_key(out, "shippingAddress");
  col_json(out, st, 10, "null");
  sqlite3_reset(st);
  return TL_OK;
}

static const char SQL_CUSTOMER_FIRST[] = "SELECT " SUMMARY_COLS
                                         " FROM rm_orders o WHERE o.customer_id = ?"
                                         " ORDER BY o.order_id DESC LIMIT ?";
static const char SQL_CUSTOMER_AFTER[] =
    "SELECT " SUMMARY_COLS
    " FROM rm_orders o WHERE o.customer_id = ? AND o.order_id < ?"
    " ORDER BY o.order_id DESC LIMIT ?";

/* Runs a summary query that was asked for limit + 1 rows: the extra row only says there is a
 * next page. Writes {items, nextCursor} where the cursor is the last item's orderId. */
static int summary_page(tl_db *db, sqlite3_stmt *st, int limit, tl_jw *out, tl_problem *p) {
  int rc, n = 0;
  int more = 0;
  char last[128] = "";
  tl_jw_key(out, "items");
  tl_jw_array(out);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      more = 1;
      break;
    }
    summary(out, st);
    copy_col(st, 0, last, sizeof last);
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db, p);
  tl_jw_end(out);
  tl_jw_key(out, "nextCursor");
  if (more && n > 0)
    tl_jw_string(out, last);
  else
    tl_jw_null(out);
  return TL_OK;
}

int tl_query_customer_orders(tl_db *db, const char *customer_id, int limit, const char *cursor,
                             tl_jw *out, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, cursor ? SQL_CUSTOMER_AFTER : SQL_CUSTOMER_FIRST, &err);
  if (!st) return stmt_error(p, &err);
  int i = 1;
  sqlite3_bind_text(st, i++, customer_id, -1, SQLITE_TRANSIENT);
  if (cursor) sqlite3_bind_text(st, i++, cursor, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, i, limit + 1);
  return summary_page(db, st, limit, out, p);
}

/* FTS5 walks its doclists in rowid order and tells SQLite it delivers "ORDER BY rowid DESC"
 * itself, so the join below runs with the full-text index as the outer loop, newest first
 * (rowid = seq = the position of OrderPlaced), looks each order up by its primary key and
 * stops after n rows: no list of rowids to build and sort first. */
static const char SQL_SEARCH[] = "SELECT " SUMMARY_COLS
                                 " FROM rm_orders_fts f JOIN rm_orders o ON o.seq = f.rowid"
                                 " WHERE rm_orders_fts MATCH ? ORDER BY f.rowid DESC LIMIT ?";

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

int tl_query_search(tl_db *db, const char *q, int limit, tl_jw *out, tl_problem *p) {
  char match[1024];
  if (fts_query(q, match, sizeof match) == 0) {
    tl_problem_set(p, 400, "VALIDATION_FAILED", "q must contain at least one word.");
    tl_problem_field(p, "q", "must contain at least one word");
    return TL_E_INVALID;
  }
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_SEARCH, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, match, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 2, limit);
  tl_jw_key(out, "items");
  tl_jw_array(out);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) summary(out, st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return db_error(db, p);
  tl_jw_end(out);
  return TL_OK;
}

static const char SQL_SALES[] =
    "SELECT day, order_count, revenue_minor FROM rm_daily_sales WHERE day BETWEEN ? AND ?"
    " ORDER BY day";

static void sales_day(tl_jw *w, int64_t day, int64_t count, int64_t revenue_minor) {
  char date[11];
  tl_date_format(day, date);
  tl_jw_object(w);
  tl_jw_key(w, "date");
  tl_jw_string(w, date);
  tl_jw_key(w, "orderCount");
  tl_jw_int(w, count);
  tl_jw_key(w, "revenue");
  tl_jw_money(w, revenue_minor);
  tl_jw_end(w);
}

int tl_query_sales_daily(tl_db *db, int64_t from_day, int64_t to_day, tl_jw *out, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_SALES, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_int64(st, 1, from_day);
  sqlite3_bind_int64(st, 2, to_day);
  tl_jw_key(out, "days");
  tl_jw_array(out);
  int64_t next_day = from_day;
  int rc;
  /* Every date of the range appears; days without live orders are zero. */
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t day = sqlite3_column_int64(st, 0);
    for (; next_day < day; next_day++) sales_day(out, next_day, 0, 0);
    sales_day(out, day, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    next_day = day + 1;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return db_error(db, p);
  for (; next_day <= to_day; next_day++) sales_day(out, next_day, 0, 0);
  tl_jw_end(out);
  return TL_OK;
}

#define PRODUCT_COLS                                                                 \
  "product_id, name, category, price_minor, currency, stock, reserved, sales_count," \
  " revenue_minor, last_sold_at, version"

static void product_members(tl_jw *w, sqlite3_stmt *st) {
  int64_t stock = sqlite3_column_int64(st, 5), reserved = sqlite3_column_int64(st, 6);
  int64_t available; /* saturates: a damaged log can put any stock in the read model */
  if (__builtin_sub_overflow(stock, reserved, &available))
    available = reserved > 0 ? INT64_MIN : INT64_MAX;
  tl_jw_key(w, "productId");
  col_string(w, st, 0);
  tl_jw_key(w, "name");
  col_string(w, st, 1);
  tl_jw_key(w, "category");
  col_string(w, st, 2);
  tl_jw_key(w, "price");
  tl_jw_money(w, sqlite3_column_int64(st, 3));
  tl_jw_key(w, "currency");
  col_string(w, st, 4);
  tl_jw_key(w, "stock");
  tl_jw_int(w, stock);
  tl_jw_key(w, "available");
  tl_jw_int(w, available);
  tl_jw_key(w, "inStock");
  tl_jw_bool(w, available > 0);
  tl_jw_key(w, "salesCount");
  tl_jw_int(w, sqlite3_column_int64(st, 7));
  tl_jw_key(w, "revenue");
  tl_jw_money(w, sqlite3_column_int64(st, 8));
  tl_jw_key(w, "lastSoldAt");
  if (sqlite3_column_type(st, 9) == SQLITE_NULL)
    tl_jw_null(w);
  else
    tl_jw_time(w, sqlite3_column_int64(st, 9));
  tl_jw_key(w, "version");
  tl_jw_int(w, sqlite3_column_int64(st, 10));
}

static const char SQL_PRODUCT[] = "SELECT " PRODUCT_COLS " FROM rm_products WHERE product_id = ?";

int tl_query_product(tl_db *db, const char *product_id, tl_jw *out, tl_problem *p) {
  tl_err err = {0};
  sqlite3_stmt *st = tl_db_stmt(db, SQL_PRODUCT, &err);
  if (!st) return stmt_error(p, &err);
  sqlite3_bind_text(st, 1, product_id, -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) product_members(out, st);
  sqlite3_reset(st);
  if (rc == SQLITE_DONE) {
    tl_problem_set(p, 404, "PRODUCT_NOT_FOUND", "No product has this id (yet).");
    return TL_E_NOTFOUND;
  }
  if (rc != SQLITE_ROW) return db_error(db, p);
  return TL_OK;
}

/* Popularity pages are keyed by (sales_count DESC, product_id ASC); the cursor is
 * "<salesCount>:<productId>" of the last item (opaque to clients). */
static const char SQL_PRODUCTS_ALL[] =
    "SELECT " PRODUCT_COLS
    " FROM rm_products"
    " WHERE (?1 IS NULL OR sales_count < ?1 OR (sales_count = ?1 AND product_id > ?2))"
    " AND (?5 IS NULL OR (stock - reserved > 0) = ?5)"
    " ORDER BY sales_count DESC, product_id LIMIT ?3";
static const char SQL_PRODUCTS_CAT[] =
    "SELECT " PRODUCT_COLS
    " FROM rm_products WHERE category = ?4"
    " AND (?1 IS NULL OR sales_count < ?1 OR (sales_count = ?1 AND product_id > ?2))"
    " AND (?5 IS NULL OR (stock - reserved > 0) = ?5)"
    " ORDER BY sales_count DESC, product_id LIMIT ?3";

int tl_query_products(tl_db *db, const char *category, int in_stock, int limit, const char *cursor,
                      tl_jw *out, tl_problem *p) {
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
      return TL_E_INVALID;
    }
    tl_strcpy(cur_id, sizeof cur_id, colon + 1);
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
  int rc, n = 0, more = 0;
  long long last_count = 0; /* the cursor's parts, of the last item */
  char last_id[96] = "";
  tl_jw_key(out, "items");
  tl_jw_array(out);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n == limit) {
      more = 1;
      break;
    }
    tl_jw_object(out);
    product_members(out, st);
    tl_jw_end(out);
    last_count = (long long)sqlite3_column_int64(st, 7);
    copy_col(st, 0, last_id, sizeof last_id);
    n++;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return db_error(db, p);
  tl_jw_end(out);
  tl_jw_key(out, "nextCursor");
  if (more) {
    char next_cursor[128];
    snprintf(next_cursor, sizeof next_cursor, "%lld:%s", last_count, last_id);
    tl_jw_string(out, next_cursor);
  } else {
    tl_jw_null(out);
  }
  return TL_OK;
}
