/*
 * order.c: the order aggregate: lifecycle rules (decide) and the fold of its events (evolve).
 *
 *   PENDING --(saga: stock reserved)--> RESERVED --confirm-payment--> PAID --ship--> SHIPPED
 *   PENDING --(saga: out of stock)--> REJECTED
 *   PENDING / RESERVED / PAID --cancel--> CANCELLED
 * CANCELLED and REJECTED are closed: every command on them is 409 ORDER_CLOSED.
 */
#include "domain/domain.h"

#include "util/tl_common.h"
#include "util/tl_money.h"
#include "util/tl_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *tl_order_status_name(tl_order_status s) {
  switch (s) {
  case TL_ORDER_PENDING: return "PENDING";
  case TL_ORDER_RESERVED: return "RESERVED";
  case TL_ORDER_REJECTED: return "REJECTED";
  case TL_ORDER_PAID: return "PAID";
  case TL_ORDER_SHIPPED: return "SHIPPED";
  case TL_ORDER_CANCELLED: return "CANCELLED";
  default: return "NONE";
  }
}

void tl_stream_name(char *out, size_t len, bool is_order, const char *id) {
  size_t k = tl_strcpy(out, len, is_order ? "order-" : "product-"); /* "%s-%s", no printf */
  if (k < len) tl_strcpy(out + k, len - k, id);
}

void tl_decision_clear(tl_decision *d) {
  for (int i = 0; i < d->n_events; i++) json_decref(d->events[i].data);
  tl_problem_clear(&d->problem);
  memset(d, 0, sizeof *d);
}

void tl_order_state_init(tl_order_state *s) {
  memset(s, 0, sizeof *s);
}

void tl_order_state_clear(tl_order_state *s) {
  free(s->items);
  json_decref(s->shipping);
  memset(s, 0, sizeof *s);
}

void tl_order_state_copy(tl_order_state *dst, const tl_order_state *src) {
  *dst = *src;
  dst->items = NULL;
  if (src->n_items > 0) {
    dst->items = malloc(sizeof *dst->items * (size_t)src->n_items);
    if (!dst->items) abort(); /* out of memory while copying state: no sane way on */
    memcpy(dst->items, src->items, sizeof *dst->items * (size_t)src->n_items);
  }
  if (dst->shipping) json_incref(dst->shipping);
}

static int add_event(tl_decision *d, const char *type, json_t *data) {
  if (!data) {
    tl_problem_set(&d->problem, 500, "INTERNAL", "Out of memory building an event.");
    return TL_E_NOMEM;
  }
  d->events[d->n_events].type = type;
  d->events[d->n_events].data = data;
  d->n_events++;
  return TL_OK;
}

static int refuse(tl_decision *d, int rc, int status, const char *code, const char *detail) {
  tl_problem_set(&d->problem, status, code, "%s", detail);
  return rc;
}

static int decide_place(const tl_cmd *c, tl_product_lookup lookup, void *ctx, tl_decision *d) {
  char field[48];
  int64_t total = 0;
  for (int i = 0; i < c->n_items; i++) {
    const tl_order_line *l = &c->items[i];
    const tl_product_state *ps = lookup ? lookup(ctx, l->product_id) : NULL;
    if (!ps || ps->version == 0) {
      snprintf(field, sizeof field, "items[%d].productId", i);
      tl_problem_field(&d->problem, field, "is not a product of the catalog");
    }
    total += l->quantity * l->price_minor; /* bounded: 100 x 10^4 x 10^12 < 2^63 */
  }
  if (total > TL_MONEY_MAX_MINOR)
    tl_problem_field(&d->problem, "items", "the order total must be at most 10000000000.00");
  if (d->problem.errors)
    return refuse(d, TL_E_INVALID, 400, "VALIDATION_FAILED", "The order cannot be placed.");
  json_t *items = json_array();
  if (!items) return TL_E_NOMEM;
  for (int i = 0; i < c->n_items; i++) {
    const tl_order_line *l = &c->items[i];
    json_array_append_new(items, json_pack("{s:s, s:I, s:o}", "productId", l->product_id,
                                           "quantity", (json_int_t)l->quantity, "price",
                                           tl_money_to_json(l->price_minor)));
  }
  json_t *data = json_pack("{s:s, s:s, s:o, s:O, s:s, s:o}", "orderId", c->id, "customerId",
                           c->customer_id, "items", items, "shippingAddress", c->shipping,
                           "currency", c->currency, "total", tl_money_to_json(total));
  return add_event(d, "OrderPlaced", data);
}

int tl_order_decide(const tl_order_state *s, const tl_cmd *c, tl_product_lookup lookup,
                    void *lookup_ctx, tl_decision *d) {
  if (c->kind == TL_CMD_PLACE_ORDER) {
    if (s->version != 0)
      return refuse(d, TL_E_CONFLICT, 409, "ORDER_EXISTS", "The order already exists.");
    return decide_place(c, lookup, lookup_ctx, d);
  }
  if (s->version == 0)
    return refuse(d, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND", "No order has this id.");
  bool closed = s->status == TL_ORDER_CANCELLED || s->status == TL_ORDER_REJECTED;
  switch (c->kind) {
  case TL_CMD_CONFIRM_PAYMENT:
    if (closed) return refuse(d, TL_E_CONFLICT, 409, "ORDER_CLOSED", "The order is closed.");
    if (s->status == TL_ORDER_PENDING)
      return refuse(d, TL_E_CONFLICT, 409, "ORDER_NOT_RESERVED",
                    "The order's stock is not reserved yet.");
    if (s->status != TL_ORDER_RESERVED)
      return refuse(d, TL_E_CONFLICT, 409, "ALREADY_PAID", "The order is already paid.");
    return add_event(d, "PaymentConfirmed",
                     json_pack("{s:s, s:s}", "orderId", s->order_id, "paymentId", c->text));
  case TL_CMD_SHIP:
    if (closed) return refuse(d, TL_E_CONFLICT, 409, "ORDER_CLOSED", "The order is closed.");
    if (s->status == TL_ORDER_SHIPPED)
      return refuse(d, TL_E_CONFLICT, 409, "ALREADY_SHIPPED", "The order is already shipped.");
    if (s->status != TL_ORDER_PAID)
      return refuse(d, TL_E_CONFLICT, 409, "NOT_PAID", "The order is not paid yet.");
    return add_event(d, "OrderShipped", json_pack("{s:s, s:s}", "orderId", s->order_id,
                                                  "trackingNumber", c->text));
  case TL_CMD_CANCEL:
    if (closed) return refuse(d, TL_E_CONFLICT, 409, "ORDER_CLOSED", "The order is closed.");
    if (s->status == TL_ORDER_SHIPPED)
      return refuse(d, TL_E_CONFLICT, 409, "ALREADY_SHIPPED",
                    "A shipped order cannot be cancelled.");
    return add_event(d, "OrderCancelled",
                     json_pack("{s:s, s:s}", "orderId", s->order_id, "reason", c->text));
  case TL_CMD_MARK_RESERVED:
    /* Saga step. Already past PENDING (a redelivery, or paid since): nothing to do. */
    if (closed) return refuse(d, TL_E_CONFLICT, 409, "ORDER_CLOSED", "The order is closed.");
    if (s->status != TL_ORDER_PENDING) return TL_OK;
    return add_event(d, "OrderReserved", json_pack("{s:s}", "orderId", s->order_id));
  case TL_CMD_REJECT_ORDER:
    if (c->text[0] == '\0' || strlen(c->text) > TL_REASON_CODE_MAX)
      return refuse(d, TL_E_INVALID, 400, "VALIDATION_FAILED",
                    "A rejection reason is a code of 1 to 63 characters.");
    if (s->status == TL_ORDER_REJECTED) return TL_OK;
    if (s->status != TL_ORDER_PENDING)
      return refuse(d, TL_E_CONFLICT, 409, "ORDER_CLOSED", "The order is no longer pending.");
    return add_event(d, "OrderRejected",
                     json_pack("{s:s, s:s}", "orderId", s->order_id, "reason", c->text));
  default:
    return refuse(d, TL_E_INVALID, 400, "VALIDATION_FAILED", "Not an order command.");
  }
}

static void drop_stock_events(tl_reservation *r) {
  for (int i = 0; i < r->n_stock; i++) json_decref(r->stock[i].event.data);
  r->n_stock = 0;
}

void tl_reservation_clear(tl_reservation *r) {
  drop_stock_events(r);
  tl_decision_clear(&r->order);
}

int tl_order_decide_reservation(const tl_order_state *s, tl_product_lookup lookup, void *lookup_ctx,
                                tl_reservation *r) {
  r->n_stock = 0;
  memset(&r->order, 0, sizeof r->order);
  if (s->version == 0)
    return refuse(&r->order, TL_E_NOTFOUND, 404, "ORDER_NOT_FOUND", "No order has this id.");
  if (s->status != TL_ORDER_PENDING) return TL_OK; /* settled, or cancelled before this */

  /* One quantity per product, in the order of first mention. */
  int first[TL_ORDER_MAX_ITEMS];
  int64_t qty[TL_ORDER_MAX_ITEMS];
  const tl_product_state *ps[TL_ORDER_MAX_ITEMS]; /* NULL: no such product */
  bool held[TL_ORDER_MAX_ITEMS], lacks[TL_ORDER_MAX_ITEMS];
  int n = 0;
  for (int i = 0; i < s->n_items && i < TL_ORDER_MAX_ITEMS; i++) {
    int k = 0;
    while (k < n && strcmp(s->items[first[k]].product_id, s->items[i].product_id) != 0) k++;
    if (k == n) {
      first[n] = i;
      qty[n++] = 0;
    }
    if (__builtin_add_overflow(qty[k], s->items[i].quantity, &qty[k])) qty[k] = INT64_MAX;
  }
  /* Does every product have the units (a damaged log's quantity below 1 never does)? */
  bool fits = n > 0;
  for (int k = 0; k < n; k++) {
    const tl_product_state *p = lookup ? lookup(lookup_ctx, s->items[first[k]].product_id) : NULL;
    ps[k] = p && p->version > 0 && qty[k] >= 1 ? p : NULL;
    held[k] = ps[k] && tl_product_reserved_for(ps[k], s->order_id) > 0;
    lacks[k] = ps[k] && !held[k] && qty[k] > tl_product_available(ps[k]);
    if (!ps[k] || lacks[k]) fits = false;
  }
  for (int k = 0; k < n; k++) {
    /* Rejected: a product that had the units records nothing, one that held some gives them
     * back. Reserved: each product records its reservation (none if it already holds one). */
    if (!ps[k] || (!fits && !held[k] && !lacks[k])) continue;
    tl_cmd_kind kind = !fits && held[k] ? TL_CMD_RELEASE_STOCK : TL_CMD_RESERVE_STOCK;
    tl_new_event ev;
    if (tl_product_decide_stock(ps[k], kind, s->order_id, qty[k], &ev) != TL_OK) {
      tl_reservation_clear(r);
      return refuse(&r->order, TL_E_NOMEM, 500, "INTERNAL", "Out of memory building an event.");
    }
    if (!ev.type) continue;
    r->stock[r->n_stock].product_id = s->items[first[k]].product_id;
    r->stock[r->n_stock++].event = ev;
  }
  int rc =
      fits ? add_event(&r->order, "OrderReserved", json_pack("{s:s}", "orderId", s->order_id))
           : add_event(&r->order, "OrderRejected",
                       json_pack("{s:s, s:s}", "orderId", s->order_id, "reason", "OUT_OF_STOCK"));
  if (rc != TL_OK) drop_stock_events(r); /* keeps the problem add_event set */
  return rc;
}

/* Does the string fit a state buffer of size bytes? A string that does not is refused, never
 * cut: a cut id names another aggregate, and a cut in a UTF-8 sequence is not text. */
static bool fits(const char *v, size_t size) {
  return strlen(v) < size;
}

static int evolve_placed(tl_order_state *s, const json_t *data, int64_t ms) {
  const char *oid = json_string_value(json_object_get(data, "orderId"));
  const char *cid = json_string_value(json_object_get(data, "customerId"));
  const char *cur = json_string_value(json_object_get(data, "currency"));
  const json_t *items = json_object_get(data, "items");
  /* currency is in every OrderPlaced since schema v2; v1 events are upcast before they get here */
  if (!oid || !cid || !cur || !json_is_array(items)) return TL_E_INVALID;
  if (!fits(oid, sizeof s->order_id) || !fits(cid, sizeof s->customer_id) ||
      !fits(cur, sizeof s->currency))
    return TL_E_INVALID;
  size_t n = json_array_size(items);
  if (n > TL_ORDER_MAX_ITEMS) return TL_E_INVALID;
  tl_order_line *lines = n ? calloc(n, sizeof *lines) : NULL;
  if (n && !lines) return TL_E_NOMEM;
  int64_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *it = json_array_get(items, i);
    const char *pid = json_string_value(json_object_get(it, "productId"));
    if (!pid || strlen(pid) > TL_PRODUCT_ID_MAX ||
        tl_money_from_json(json_object_get(it, "price"), &lines[i].price_minor) != TL_OK) {
      free(lines);
      return TL_E_INVALID;
    }
    memcpy(lines[i].product_id, pid, strlen(pid) + 1);
    lines[i].quantity = json_integer_value(json_object_get(it, "quantity"));
    /* decide bounds every total far below int64; a stored one that overflows is refused. */
    int64_t amount;
    if (__builtin_mul_overflow(lines[i].quantity, lines[i].price_minor, &amount) ||
        __builtin_add_overflow(total, amount, &total)) {
      free(lines);
      return TL_E_INVALID;
    }
  }
  /* The state owns its own copy of the address: data may share it with the command, which
   * another thread (the HTTP request's) releases, and jansson's reference counts are not
   * meant to be shared between threads. */
  const json_t *ship = json_object_get(data, "shippingAddress");
  json_t *ship_copy = ship ? json_deep_copy(ship) : NULL;
  if (ship && !ship_copy) {
    free(lines);
    return TL_E_NOMEM;
  }
  free(s->items);
  s->items = lines;
  s->n_items = (int)n;
  tl_strcpy(s->order_id, sizeof s->order_id, oid);
  tl_strcpy(s->customer_id, sizeof s->customer_id, cid);
  tl_strcpy(s->currency, sizeof s->currency, cur);
  s->total_minor = total;
  json_decref(s->shipping);
  s->shipping = ship_copy;
  s->status = TL_ORDER_PENDING;
  s->created_ms = ms;
  return TL_OK;
}

int tl_order_evolve(tl_order_state *s, const char *type, const json_t *data, int64_t recorded_ms) {
  int rc = TL_OK;
  s->version++;
  if (strcmp(type, "OrderPlaced") == 0) rc = evolve_placed(s, data, recorded_ms);
  else if (strcmp(type, "OrderReserved") == 0) s->status = TL_ORDER_RESERVED;
  else if (strcmp(type, "OrderRejected") == 0) {
    const char *reason = json_string_value(json_object_get(data, "reason"));
    if (reason && !fits(reason, sizeof s->rejection_reason)) {
      rc = TL_E_INVALID;
    } else {
      s->status = TL_ORDER_REJECTED;
      tl_strcpy(s->rejection_reason, sizeof s->rejection_reason, reason ? reason : "");
    }
  } else if (strcmp(type, "PaymentConfirmed") == 0) s->status = TL_ORDER_PAID;
  else if (strcmp(type, "OrderShipped") == 0) s->status = TL_ORDER_SHIPPED;
  else if (strcmp(type, "OrderCancelled") == 0) s->status = TL_ORDER_CANCELLED;
  if (rc == TL_OK) s->updated_ms = recorded_ms;
  return rc;
}

void tl_order_state_write(const tl_order_state *s, tl_jw *out, tl_order_name_fn name_of,
                          void *arg) {
  tl_jw_object(out);
  tl_jw_key(out, "orderId");
  tl_jw_string(out, s->order_id);
  tl_jw_key(out, "customerId");
  tl_jw_string(out, s->customer_id);
  tl_jw_key(out, "status");
  tl_jw_string(out, tl_order_status_name(s->status));
  tl_jw_key(out, "items");
  tl_jw_array(out);
  for (int i = 0; i < s->n_items; i++) {
    tl_jw_object(out);
    tl_jw_key(out, "productId");
    tl_jw_string(out, s->items[i].product_id);
    tl_jw_key(out, "quantity");
    tl_jw_int(out, s->items[i].quantity);
    tl_jw_key(out, "price");
    tl_jw_money(out, s->items[i].price_minor);
    if (name_of) {
      const char *name = name_of(arg, s->items[i].product_id);
      tl_jw_key(out, "name");
      tl_jw_string(out, name ? name : "");
    }
    tl_jw_end(out);
  }
  tl_jw_end(out);
  tl_jw_key(out, "total");
  tl_jw_money(out, s->total_minor);
  tl_jw_key(out, "currency");
  tl_jw_string(out, s->currency);
  tl_jw_key(out, "shippingAddress");
  if (s->shipping)
    tl_jw_json(out, s->shipping);
  else
    tl_jw_null(out);
  tl_jw_key(out, "createdAt");
  tl_jw_time(out, s->created_ms);
  tl_jw_key(out, "updatedAt");
  tl_jw_time(out, s->updated_ms);
  tl_jw_key(out, "version");
  tl_jw_int(out, s->version);
  tl_jw_key(out, "rejectionReason");
  if (s->rejection_reason[0])
    tl_jw_string(out, s->rejection_reason);
  else
    tl_jw_null(out);
  tl_jw_end(out);
}

json_t *tl_order_state_json(const tl_order_state *s) {
  tl_jw w = {0};
  tl_order_state_write(s, &w, NULL, NULL);
  char *text = tl_jw_take(&w);
  json_t *j = text ? json_loads(text, 0, NULL) : NULL;
  free(text);
  return j;
}
