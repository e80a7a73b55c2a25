/*
 * product.c: the product aggregate: catalog entry, units on hand, and per-order reservations.
 * available = stock - reserved never goes below zero: a reservation that does not fit is
 * recorded as rejected, and shipping consumes exactly what the order had reserved.
 */
#include "domain/domain.h"

#include "util/tl_common.h"
#include "util/tl_map.h"
#include "util/tl_money.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

void tl_product_state_init(tl_product_state *s) {
  memset(s, 0, sizeof *s);
}

void tl_product_state_clear(tl_product_state *s) {
  tl_map_free(s->reservations);
  memset(s, 0, sizeof *s);
}

int64_t tl_product_reserved_for(const tl_product_state *s, const char *order_id) {
  if (!s->reservations) return 0;
  const int64_t *q = tl_map_get(s->reservations, order_id);
  return q ? *q : 0;
}

/* A stock command's event {productId, orderId, quantity}. */
static json_t *stock_event(const tl_product_state *s, const char *order_id, int64_t quantity) {
  return json_pack("{s:s, s:s, s:I}", "productId", s->product_id, "orderId", order_id, "quantity",
                   (json_int_t)quantity);
}

int64_t tl_product_available(const tl_product_state *s) {
  /* stock >= reserved >= 0 in every state decide leads to; a damaged log can hold any stock,
   * so the difference saturates instead of overflowing. */
  int64_t available;
  if (__builtin_sub_overflow(s->stock, s->reserved, &available))
    available = s->reserved > 0 ? INT64_MIN : INT64_MAX;
  return available;
}

int tl_product_decide_stock(const tl_product_state *s, tl_cmd_kind kind, const char *order_id,
                            int64_t quantity, tl_new_event *ev) {
  ev->type = NULL;
  ev->data = NULL;
  int64_t held = tl_product_reserved_for(s, order_id);
  if (kind == TL_CMD_RESERVE_STOCK) {
    if (held > 0) return TL_OK; /* one reservation per order: a repeat changes nothing */
    int64_t available = tl_product_available(s);
    ev->data = stock_event(s, order_id, quantity);
    if (quantity <= available) {
      ev->type = "StockReserved";
    } else {
      ev->type = "StockReservationRejected";
      if (ev->data && json_object_set_new(ev->data, "available", json_integer(available)) != 0) {
        json_decref(ev->data);
        ev->data = NULL;
      }
    }
  } else {
    if (held == 0) return TL_OK; /* nothing held: nothing to give back or ship */
    ev->data = stock_event(s, order_id, held);
    ev->type = kind == TL_CMD_RELEASE_STOCK ? "StockReleased" : "StockCommitted";
  }
  if (!ev->data) {
    ev->type = NULL;
    return TL_E_NOMEM;
  }
  return TL_OK;
}

int tl_product_decide(const tl_product_state *s, const tl_cmd *c, tl_decision *d) {
  json_t *data = NULL;
  switch (c->kind) {
  case TL_CMD_CREATE_PRODUCT:
    if (s->version != 0) {
      tl_problem_set(&d->problem, 409, "PRODUCT_EXISTS", "Product %s already exists.", c->id);
      return TL_E_CONFLICT;
    }
    data = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I}", "productId", c->id, "name", c->name,
                     "category", c->category, "price", tl_money_to_json(c->price_minor),
                     "currency", c->currency, "stock", (json_int_t)c->quantity);
    d->events[0].type = "ProductCreated";
    break;
  case TL_CMD_RESTOCK:
    if (s->version == 0) {
      tl_problem_set(&d->problem, 404, "PRODUCT_NOT_FOUND", "No product has this id.");
      return TL_E_NOTFOUND;
    }
    data = json_pack("{s:s, s:I}", "productId", s->product_id, "quantity",
                     (json_int_t)c->quantity);
    d->events[0].type = "ProductRestocked";
    break;
  case TL_CMD_RESERVE_STOCK:
  case TL_CMD_RELEASE_STOCK:
  case TL_CMD_COMMIT_STOCK: {
    if (s->version == 0) {
      tl_problem_set(&d->problem, 404, "PRODUCT_NOT_FOUND", "No product has this id.");
      return TL_E_NOTFOUND;
    }
    if (c->order_id[0] == '\0' || (c->kind == TL_CMD_RESERVE_STOCK && c->quantity < 1)) {
      tl_problem_set(&d->problem, 400, "VALIDATION_FAILED",
                     "A stock command needs an order and a quantity of at least 1.");
      return TL_E_INVALID;
    }
    tl_new_event ev;
    if (tl_product_decide_stock(s, c->kind, c->order_id, c->quantity, &ev) != TL_OK) break;
    if (!ev.type) return TL_OK; /* nothing to record */
    d->events[0].type = ev.type;
    data = ev.data;
    break;
  }
  default:
    tl_problem_set(&d->problem, 400, "VALIDATION_FAILED", "Not a product command.");
    return TL_E_INVALID;
  }
  if (!data) {
    tl_problem_set(&d->problem, 500, "INTERNAL", "Out of memory building an event.");
    return TL_E_NOMEM;
  }
  d->events[0].data = data;
  d->n_events = 1;
  return TL_OK;
}

int tl_product_evolve(tl_product_state *s, const char *type, const json_t *data,
                      int64_t recorded_ms) {
  s->version++;
  if (strcmp(type, "ProductCreated") == 0) {
    const char *id = json_string_value(json_object_get(data, "productId"));
    const char *name = json_string_value(json_object_get(data, "name"));
    const char *cat = json_string_value(json_object_get(data, "category"));
    const char *cur = json_string_value(json_object_get(data, "currency"));
    /* Strings that do not fit are refused, never cut (a cut id names another product). */
    if (!id || !name || !cat || strlen(id) >= sizeof s->product_id ||
        strlen(name) >= sizeof s->name || strlen(cat) >= sizeof s->category ||
        (cur && strlen(cur) >= sizeof s->currency) ||
        tl_money_from_json(json_object_get(data, "price"), &s->price_minor) != TL_OK)
      return TL_E_INVALID;
    tl_strcpy(s->product_id, sizeof s->product_id, id);
    tl_strcpy(s->name, sizeof s->name, name);
    tl_strcpy(s->category, sizeof s->category, cat);
    tl_strcpy(s->currency, sizeof s->currency, cur ? cur : "USD");
    s->stock = json_integer_value(json_object_get(data, "stock"));
    s->created_ms = recorded_ms;
  } else if (strcmp(type, "ProductRestocked") == 0) {
    /* Here and below: counts that would overflow int64 cannot come from decide; refused. */
    int64_t stock;
    if (__builtin_add_overflow(s->stock, json_integer_value(json_object_get(data, "quantity")),
                               &stock))
      return TL_E_INVALID;
    s->stock = stock;
  } else if (strcmp(type, "StockReserved") == 0) {
    const char *oid = json_string_value(json_object_get(data, "orderId"));
    int64_t q = json_integer_value(json_object_get(data, "quantity"));
    if (!oid || q <= 0) return TL_E_INVALID;
    /* One reservation per order: a second one replaces the first (decide never asks for it,
     * but the fold must keep reserved equal to the sum of what the map holds). */
    int64_t held = tl_product_reserved_for(s, oid), reserved;
    if (__builtin_add_overflow(s->reserved, q - held, &reserved)) return TL_E_INVALID;
    if (!s->reservations) s->reservations = tl_map_new(0, free);
    int64_t *v = malloc(sizeof *v);
    if (!s->reservations || !v || tl_map_put(s->reservations, oid, v) != 0) {
      free(v);
      return TL_E_NOMEM;
    }
    *v = q;
    s->reserved = reserved;
  } else if (strcmp(type, "StockReleased") == 0 || strcmp(type, "StockCommitted") == 0) {
    const char *oid = json_string_value(json_object_get(data, "orderId"));
    if (!oid) return TL_E_INVALID;
    int64_t held = tl_product_reserved_for(s, oid);
    bool commit = strcmp(type, "StockCommitted") == 0; /* the units left, shipped */
    int64_t stock = s->stock;
    if (commit && __builtin_sub_overflow(s->stock, held, &stock)) return TL_E_INVALID;
    s->reserved -= held; /* held is part of reserved, the sum of the reservations */
    s->stock = stock;
    if (held) tl_map_remove(s->reservations, oid);
  }
  s->updated_ms = recorded_ms;
  return TL_OK;
}
