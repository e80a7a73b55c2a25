/*
 * snapshot.c: aggregate states as snapshot text, and back (see domain.h, "Snapshots").
 *
 * A snapshot is the JSON of every field of a folded state, money in integer minor units so
 * the round trip is exact, at a schema version that names the layout:
 *
 *   order (TL_ORDER_SNAPSHOT_SCHEMA 1):
 *     {version, status ("PENDING", ...), orderId, customerId, currency, totalMinor,
 *      items: [{productId, quantity, priceMinor}], shippingAddress (object or null),
 *      rejectionReason, createdMs, updatedMs}
 *   product (TL_PRODUCT_SNAPSHOT_SCHEMA 1):
 *     {version, productId, name, category, currency, priceMinor, stock, reserved,
 *      reservations: {orderId: units}, createdMs, updatedMs}
 *
 * Decoding trusts nothing: every member must be present with its type and fit its buffer,
 * and the product's reserved units must be the sum of its reservations. Whatever fails is
 * "not a snapshot"; the caller then folds the whole stream. Change a layout only together with
 * its schema version: old snapshots are then ignored and replaced by the next ones.
 */
#include "domain/domain.h"

#include "util/tl_common.h"
#include "util/tl_map.h"

#include <stdlib.h>
#include <string.h>

/* ---- decoding helpers: 0 when the member is there with the right type, else -1 ------------ */

static int get_int(const json_t *obj, const char *key, int64_t *out) {
  const json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v)) return -1;
  *out = json_integer_value(v);
  return 0;
}

/* A string member copied into buf (size bytes with the NUL); -1 when absent, not a string,
 * too long, or holding a NUL byte. */
static int get_str(const json_t *obj, const char *key, char *buf, size_t size) {
  const json_t *v = json_object_get(obj, key);
  if (!json_is_string(v)) return -1;
  size_t n = json_string_length(v);
  const char *s = json_string_value(v);
  if (n >= size || strlen(s) != n) return -1;
  memcpy(buf, s, n + 1);
  return 0;
}

static char *dump(json_t *j) {
  char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return text;
}

/* Parses text into an object; NULL for anything else. */
static json_t *load_object(const char *text) {
  if (!text) return NULL;
  json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* ---- orders ---------------------------------------------------------------------------------- */

char *tl_order_snapshot_encode(const tl_order_state *s) {
  json_t *items = json_array();
  if (!items) return NULL;
  for (int i = 0; i < s->n_items; i++) {
    const tl_order_line *l = &s->items[i];
    if (json_array_append_new(items, json_pack("{s:s, s:I, s:I}", "productId", l->product_id,
                                               "quantity", (json_int_t)l->quantity, "priceMinor",
                                               (json_int_t)l->price_minor)) != 0) {
      json_decref(items);
      return NULL;
    }
  }
  return dump(json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:o, s:O, s:s, s:I, s:I}", "version",
                        (json_int_t)s->version, "status", tl_order_status_name(s->status),
                        "orderId", s->order_id, "customerId", s->customer_id, "currency",
                        s->currency, "totalMinor", (json_int_t)s->total_minor, "items", items,
                        "shippingAddress", s->shipping ? s->shipping : json_null(),
                        "rejectionReason", s->rejection_reason, "createdMs",
                        (json_int_t)s->created_ms, "updatedMs", (json_int_t)s->updated_ms));
}

static int parse_status(const char *name, tl_order_status *out) {
  for (int st = TL_ORDER_NONE; st <= TL_ORDER_CANCELLED; st++) {
    if (strcmp(name, tl_order_status_name((tl_order_status)st)) == 0) {
      *out = (tl_order_status)st;
      return 0;
    }
  }
  return -1;
}

int tl_order_snapshot_decode(tl_order_state *out, int schema_version, const char *text) {
  tl_order_state_init(out);
  if (schema_version != TL_ORDER_SNAPSHOT_SCHEMA) return TL_E_INVALID;
  json_t *j = load_object(text);
  if (!j) return TL_E_INVALID;
  int rc = TL_E_INVALID;
  char status[16];
  const json_t *items = json_object_get(j, "items");
  const json_t *shipping = json_object_get(j, "shippingAddress");
  if (get_int(j, "version", &out->version) || out->version < 1 ||
      get_str(j, "status", status, sizeof status) || parse_status(status, &out->status) ||
      get_str(j, "orderId", out->order_id, sizeof out->order_id) ||
      get_str(j, "customerId", out->customer_id, sizeof out->customer_id) ||
      get_str(j, "currency", out->currency, sizeof out->currency) ||
      get_int(j, "totalMinor", &out->total_minor) ||
      get_str(j, "rejectionReason", out->rejection_reason, sizeof out->rejection_reason) ||
      get_int(j, "createdMs", &out->created_ms) || get_int(j, "updatedMs", &out->updated_ms) ||
      !json_is_array(items) || json_array_size(items) > TL_ORDER_MAX_ITEMS ||
      !(json_is_object(shipping) || json_is_null(shipping)))
    goto done;
  size_t n = json_array_size(items);
  if (n > 0) {
    out->items = calloc(n, sizeof *out->items);
    if (!out->items) {
      rc = TL_E_NOMEM;
      goto done;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const json_t *it = json_array_get(items, i);
    tl_order_line *l = &out->items[i];
    if (!json_is_object(it) || get_str(it, "productId", l->product_id, sizeof l->product_id) ||
        get_int(it, "quantity", &l->quantity) || get_int(it, "priceMinor", &l->price_minor))
      goto done;
  }
  out->n_items = (int)n;
  if (json_is_object(shipping)) out->shipping = json_incref((json_t *)shipping);
  rc = TL_OK;
done:
  json_decref(j);
  if (rc != TL_OK) tl_order_state_clear(out);
  return rc;
}

/* ---- products -------------------------------------------------------------------------------- */

static int add_reservation(void *arg, const char *order_id, void *units) {
  return json_object_set_new(arg, order_id, json_integer(*(const int64_t *)units)) != 0;
}

char *tl_product_snapshot_encode(const tl_product_state *s) {
  json_t *res = json_object();
  if (!res) return NULL;
  if (s->reservations && tl_map_each(s->reservations, add_reservation, res) != 0) {
    json_decref(res);
    return NULL;
  }
  return dump(json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:I, s:I}", "version",
                        (json_int_t)s->version, "productId", s->product_id, "name", s->name,
                        "category", s->category, "currency", s->currency, "priceMinor",
                        (json_int_t)s->price_minor, "stock", (json_int_t)s->stock, "reserved",
                        (json_int_t)s->reserved, "reservations", res, "createdMs",
                        (json_int_t)s->created_ms, "updatedMs", (json_int_t)s->updated_ms));
}

int tl_product_snapshot_decode(tl_product_state *out, int schema_version, const char *text) {
  tl_product_state_init(out);
  if (schema_version != TL_PRODUCT_SNAPSHOT_SCHEMA) return TL_E_INVALID;
  json_t *j = load_object(text);
  if (!j) return TL_E_INVALID;
  int rc = TL_E_INVALID;
  const json_t *res = json_object_get(j, "reservations");
  if (get_int(j, "version", &out->version) || out->version < 1 ||
      get_str(j, "productId", out->product_id, sizeof out->product_id) ||
      get_str(j, "name", out->name, sizeof out->name) ||
      get_str(j, "category", out->category, sizeof out->category) ||
      get_str(j, "currency", out->currency, sizeof out->currency) ||
      get_int(j, "priceMinor", &out->price_minor) || get_int(j, "stock", &out->stock) ||
      get_int(j, "reserved", &out->reserved) || get_int(j, "createdMs", &out->created_ms) ||
      get_int(j, "updatedMs", &out->updated_ms) || !json_is_object(res))
    goto done;
  int64_t sum = 0;
  const char *order_id;
  json_t *units;
  json_object_foreach((json_t *)res, order_id, units) {
    /* evolve only ever holds positive reservations; the sum must not overflow */
    if (!json_is_integer(units) || json_integer_value(units) < 1 ||
        json_integer_value(units) > INT64_MAX - sum)
      goto done;
    if (!out->reservations && !(out->reservations = tl_map_new(0, free))) {
      rc = TL_E_NOMEM;
      goto done;
    }
    int64_t *v = malloc(sizeof *v);
    if (!v || tl_map_put(out->reservations, order_id, v) != 0) {
      free(v);
      rc = TL_E_NOMEM;
      goto done;
    }
    *v = json_integer_value(units);
    sum += *v;
  }
  if (sum != out->reserved) goto done;
  rc = TL_OK;
done:
  json_decref(j);
  if (rc != TL_OK) tl_product_state_clear(out);
  return rc;
}
