/*
 * commands.c: decoding and validating command bodies into tl_cmd.
 *
 * Every field is checked and every failure is reported (not just the first), so a client gets
 * the whole list of what to fix in one 400. Bodies are read through tl_jv (parsed once by the
 * HTTP thread, no tree of jansson values); only the shipping address is kept as a jansson
 * object, which the order's event carries.
 */
#include "domain/domain.h"

#include "util/tl_common.h"
#include "util/tl_jv.h"
#include "util/tl_money.h"

#include <stdio.h>
#include <string.h>

static const char *const CMD_NAMES[TL_CMD__COUNT] = {
    [TL_CMD_CREATE_PRODUCT] = "create_product",
    [TL_CMD_RESTOCK] = "restock",
    [TL_CMD_PLACE_ORDER] = "place_order",
    [TL_CMD_CONFIRM_PAYMENT] = "confirm_payment",
    [TL_CMD_SHIP] = "ship",
    [TL_CMD_CANCEL] = "cancel",
    [TL_CMD_RESERVE_STOCK] = "reserve_stock",
    [TL_CMD_RELEASE_STOCK] = "release_stock",
    [TL_CMD_COMMIT_STOCK] = "commit_stock",
    [TL_CMD_MARK_RESERVED] = "mark_reserved",
    [TL_CMD_REJECT_ORDER] = "reject_order",
    [TL_CMD_RESERVE_ORDER] = "reserve_order",
};

const char *tl_cmd_name(tl_cmd_kind kind) {
  return (unsigned)kind < TL_CMD__COUNT ? CMD_NAMES[kind] : "unknown";
}

bool tl_cmd_is_order(tl_cmd_kind kind) {
  return kind == TL_CMD_PLACE_ORDER || kind == TL_CMD_CONFIRM_PAYMENT || kind == TL_CMD_SHIP ||
         kind == TL_CMD_CANCEL || kind == TL_CMD_MARK_RESERVED || kind == TL_CMD_REJECT_ORDER ||
         kind == TL_CMD_RESERVE_ORDER;
}

void tl_cmd_init(tl_cmd *c) {
  c->kind = 0;
  c->id[0] = c->name[0] = c->category[0] = c->currency[0] = c->customer_id[0] = '\0';
  c->text[0] = c->order_id[0] = '\0';
  c->price_minor = c->quantity = 0;
  c->n_items = 0;
  c->shipping = NULL;
}

void tl_cmd_clear(tl_cmd *c) {
  json_decref(c->shipping);
  c->shipping = NULL;
}

/* Length of a UTF-8 string in code points (tl_jv, like jansson, guarantees validity for decoded
 * strings, so this only counts). */
static long utf8_len(const char *s) {
  long n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

/* Has a control character (below 0x20 or DEL)? */
static bool has_control(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return true;
  return false;
}

/* Validates a required (or optional) string member and copies it to out. Returns true if ok. */
static bool get_string(const tl_jv *obj, const char *key, const char *field, bool required,
                       long min_len, long max_len, char *out, size_t out_len, tl_problem *p) {
  const tl_jv *v = tl_jv_get(obj, key);
  char msg[96];
  if (!v || tl_jv_is(v, TL_JV_NULL)) {
    if (!required) {
      if (out_len) out[0] = '\0';
      return true;
    }
    tl_problem_field(p, field, "is required");
    return false;
  }
  if (!tl_jv_is(v, TL_JV_STRING)) {
    tl_problem_field(p, field, "must be a string");
    return false;
  }
  const char *s = tl_jv_string(v);
  long n = utf8_len(s);
  if (n < min_len || n > max_len || strlen(s) >= out_len) {
    snprintf(msg, sizeof msg, "must be %ld to %ld characters", min_len, max_len);
    tl_problem_field(p, field, msg);
    return false;
  }
  if (has_control(s)) {
    tl_problem_field(p, field, "must not contain control characters");
    return false;
  }
  memcpy(out, s, strlen(s) + 1);
  return true;
}

/* Validates an integer member in [min, max]. */
static bool get_int(const tl_jv *obj, const char *key, const char *field, int64_t min, int64_t max,
                    int64_t *out, tl_problem *p) {
  const tl_jv *v = tl_jv_get(obj, key);
  char msg[96];
  if (!v || tl_jv_is(v, TL_JV_NULL)) {
    tl_problem_field(p, field, "is required");
    return false;
  }
  if (!tl_jv_is(v, TL_JV_INTEGER) || tl_jv_integer(v) < min || tl_jv_integer(v) > max) {
    snprintf(msg, sizeof msg, "must be an integer from %lld to %lld", (long long)min,
             (long long)max);
    tl_problem_field(p, field, msg);
    return false;
  }
  *out = tl_jv_integer(v);
  return true;
}

/* Validates a positive money amount. */
static bool get_price(const tl_jv *obj, const char *key, const char *field, int64_t *out,
                      tl_problem *p) {
  const tl_jv *v = tl_jv_get(obj, key);
  if (!v || tl_jv_is(v, TL_JV_NULL)) {
    tl_problem_field(p, field, "is required");
    return false;
  }
  int64_t minor;
  if (!(tl_jv_is(v, TL_JV_INTEGER) || tl_jv_is(v, TL_JV_REAL)) ||
      tl_money_from_jv(v, &minor) != TL_OK) {
    tl_problem_field(p, field,
                     "must be a number with at most two decimals, at most 10000000000.00");
    return false;
  }
  if (minor <= 0) {
    tl_problem_field(p, field, "must be greater than 0");
    return false;
  }
  *out = minor;
  return true;
}

static bool get_currency(const tl_jv *obj, char out[4], tl_problem *p) {
  const tl_jv *v = tl_jv_get(obj, "currency");
  if (!v || tl_jv_is(v, TL_JV_NULL)) {
    memcpy(out, "USD", 4);
    return true;
  }
  if (!tl_jv_is(v, TL_JV_STRING) || !tl_currency_valid(tl_jv_string(v))) {
    tl_problem_field(p, "currency", "must be an ISO 4217 code of three upper-case letters");
    return false;
  }
  memcpy(out, tl_jv_string(v), 4);
  return true;
}

static void decode_create_product(const tl_jv *b, tl_cmd *c, tl_problem *p) {
  const char *id = tl_jv_string(tl_jv_get(b, "productId"));
  if (!id || !tl_product_id_valid(id))
    tl_problem_field(p, "productId", "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -");
  else
    memcpy(c->id, id, strlen(id) + 1);
  get_string(b, "name", "name", true, 1, 200, c->name, sizeof c->name, p);
  get_string(b, "category", "category", true, 1, 100, c->category, sizeof c->category, p);
  get_price(b, "price", "price", &c->price_minor, p);
  get_currency(b, c->currency, p);
  get_int(b, "stock", "stock", 0, 1000000000, &c->quantity, p);
}

static void decode_address(const tl_jv *b, tl_cmd *c, tl_problem *p) {
  const tl_jv *a = tl_jv_get(b, "shippingAddress");
  if (!a || !tl_jv_is(a, TL_JV_OBJECT)) {
    tl_problem_field(p, "shippingAddress", a ? "must be an object" : "is required");
    return;
  }
  static const struct {
    const char *key, *field;
    long min, max;
  } F[] = {{"street", "shippingAddress.street", 1, 200},
           {"city", "shippingAddress.city", 1, 200},
           {"country", "shippingAddress.country", 2, 56},
           {"postalCode", "shippingAddress.postalCode", 1, 20}};
  char buf[1024];
  bool ok = true;
  for (size_t i = 0; i < TL_ARRAY_LEN(F); i++)
    ok &= get_string(a, F[i].key, F[i].field, true, F[i].min, F[i].max, buf, sizeof buf, p);
  if (!ok) return;
  /* Keep exactly the four known members: unknown ones are ignored, not stored. */
  c->shipping = json_pack("{s:s, s:s, s:s, s:s}", "street", tl_jv_string(tl_jv_get(a, "street")),
                          "city", tl_jv_string(tl_jv_get(a, "city")), "country",
                          tl_jv_string(tl_jv_get(a, "country")), "postalCode",
                          tl_jv_string(tl_jv_get(a, "postalCode")));
  if (!c->shipping) tl_problem_field(p, "shippingAddress", "could not be stored");
}

static void decode_place_order(const tl_jv *b, tl_cmd *c, tl_problem *p) {
  const char *cid = tl_jv_string(tl_jv_get(b, "customerId"));
  if (!cid || !tl_uuid_valid(cid))
    tl_problem_field(p, "customerId", "must be a UUID");
  else
    memcpy(c->customer_id, cid, TL_UUID_LEN + 1);
  get_currency(b, c->currency, p);
  decode_address(b, c, p);

  const tl_jv *items = tl_jv_get(b, "items");
  if (!items || !tl_jv_is(items, TL_JV_ARRAY)) {
    tl_problem_field(p, "items", items ? "must be an array" : "is required");
    return;
  }
  size_t n = tl_jv_size(items);
  if (n < 1 || n > TL_ORDER_MAX_ITEMS) {
    tl_problem_field(p, "items", "must hold 1 to 100 items");
    return;
  }
  char field[48];
  size_t i = 0;
  TL_JV_FOREACH(it, items) {
    tl_order_line *l = &c->items[i++];
    if (!tl_jv_is(it, TL_JV_OBJECT)) {
      snprintf(field, sizeof field, "items[%zu]", i - 1);
      tl_problem_field(p, field, "must be an object");
      continue;
    }
    const char *pid = tl_jv_string(tl_jv_get(it, "productId"));
    snprintf(field, sizeof field, "items[%zu].productId", i - 1);
    if (!pid || !tl_product_id_valid(pid))
      tl_problem_field(p, field, "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -");
    else
      memcpy(l->product_id, pid, strlen(pid) + 1);
    snprintf(field, sizeof field, "items[%zu].quantity", i - 1);
    get_int(it, "quantity", field, 1, TL_ORDER_MAX_QTY, &l->quantity, p);
    snprintf(field, sizeof field, "items[%zu].price", i - 1);
    get_price(it, "price", field, &l->price_minor, p);
  }
  c->n_items = (int)n;
}

int tl_cmd_decode(tl_cmd_kind kind, const char *path_id, const tl_jv *body, tl_cmd *out,
                  tl_problem *p) {
  tl_cmd_init(out);
  out->kind = kind;
  /* A path id longer than any aggregate id names no aggregate. It must not be cut to fit: the
   * prefix could be another product's id, and the command would act on that one. */
  bool path_too_long = path_id && strlen(path_id) >= sizeof out->id;
  if (path_id && !path_too_long) memcpy(out->id, path_id, strlen(path_id) + 1);
  if (!tl_jv_is(body, TL_JV_OBJECT)) {
    tl_problem_set(p, 400, "MALFORMED_JSON", "The body must be a JSON object.");
    return TL_E_INVALID;
  }
  switch (kind) {
  case TL_CMD_CREATE_PRODUCT: decode_create_product(body, out, p); break;
  case TL_CMD_RESTOCK: get_int(body, "quantity", "quantity", 1, 1000000000, &out->quantity, p); break;
  case TL_CMD_PLACE_ORDER: decode_place_order(body, out, p); break;
  case TL_CMD_CONFIRM_PAYMENT:
    get_string(body, "paymentId", "paymentId", true, 1, 128, out->text, sizeof out->text, p);
    break;
  case TL_CMD_SHIP:
    get_string(body, "trackingNumber", "trackingNumber", true, 1, 128, out->text,
               sizeof out->text, p);
    break;
  case TL_CMD_CANCEL:
    get_string(body, "reason", "reason", false, 0, 500, out->text, sizeof out->text, p);
    break;
  default:
    tl_problem_set(p, 400, "VALIDATION_FAILED", "Unknown command.");
    return TL_E_INVALID;
  }
  if (p->errors && json_array_size(p->errors) > 0) {
    tl_problem_set(p, 400, "VALIDATION_FAILED", "The command has %zu invalid field(s).",
                   json_array_size(p->errors));
    return TL_E_INVALID;
  }
  if (path_too_long) { /* answered as for any id that was never created */
    if (tl_cmd_is_order(kind)) tl_problem_set(p, 404, "ORDER_NOT_FOUND", "No order has this id.");
    else tl_problem_set(p, 404, "PRODUCT_NOT_FOUND", "No product has this id.");
    return TL_E_NOTFOUND;
  }
  return TL_OK;
}
