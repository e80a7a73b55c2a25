/*
 * fuzz_commands.c: the command decoders and validators (domain/commands.c, tl_cmd_decode) for
 * every tl_cmd_kind, and what the write lane does with an accepted command (decide, store as
 * text, fold back).
 *
 * Input: a first line "<command> [<path id>]" and the request body after it, e.g.
 *   restock lamp-1
 *   {"quantity":3}
 * <command> is a tl_cmd_name ("place_order"); any other word picks a kind from its first byte.
 * Without a space there is no path id; creations (create_product, place_order) never get one,
 * as from POST /products and POST /orders.
 * Without a first line the whole input is a create_product body.
 *
 * Invariants:
 *  - decoding returns 0 or a problem with a status, a code and (for VALIDATION_FAILED) at
 *    least one field error; a problem always renders as JSON;
 *  - an accepted command names exactly the aggregate of its path (no silent truncation);
 *  - an accepted command satisfies every rule of the API contract (checked here again, written
 *    independently of commands.c);
 *  - re-encoding an accepted command as a body and decoding that gives the same command;
 *  - the decider's events, stored as text by tl_json_dumps and folded back by evolve, give a
 *    state that holds exactly what the command said.
 */
#include "fuzz_common.h"

#include "domain/domain.h"
#include "util/tl_common.h"
#include "util/tl_id.h"
#include "util/tl_money.h"

#include <stdbool.h>

#define ORDER_ID "01HZY3J6C4Q6V9B8N7M5K3J2H1"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init_jansson();
  return 0;
}

/* Code points of valid UTF-8 (jansson guarantees validity of decoded strings). */
static long chars(const char *s) {
  long n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static bool clean_text(const char *s, long min, long max) {
  for (const char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
  long n = chars(s);
  return n >= min && n <= max;
}

static bool money_ok(int64_t minor) {
  return minor > 0 && minor <= TL_MONEY_MAX_MINOR;
}

/* The API contract's rules for an accepted command, restated. */
static void check_rules(const tl_cmd *c) {
  switch (c->kind) {
  case TL_CMD_CREATE_PRODUCT:
    FUZZ_CHECK(tl_product_id_valid(c->id), "productId '%s'", c->id);
    FUZZ_CHECK(clean_text(c->name, 1, 200), "name '%s'", c->name);
    FUZZ_CHECK(clean_text(c->category, 1, 100), "category '%s'", c->category);
    FUZZ_CHECK(money_ok(c->price_minor), "price %lld", (long long)c->price_minor);
    FUZZ_CHECK(tl_currency_valid(c->currency), "currency '%s'", c->currency);
    FUZZ_CHECK(c->quantity >= 0 && c->quantity <= 1000000000, "stock %lld",
               (long long)c->quantity);
    break;
  case TL_CMD_RESTOCK:
    FUZZ_CHECK(c->quantity >= 1 && c->quantity <= 1000000000, "quantity %lld",
               (long long)c->quantity);
    break;
  case TL_CMD_PLACE_ORDER:
    FUZZ_CHECK(tl_uuid_valid(c->customer_id), "customerId '%s'", c->customer_id);
    FUZZ_CHECK(tl_currency_valid(c->currency), "currency '%s'", c->currency);
    FUZZ_CHECK(c->n_items >= 1 && c->n_items <= TL_ORDER_MAX_ITEMS, "%d items", c->n_items);
    for (int i = 0; i < c->n_items; i++) {
      const tl_order_line *l = &c->items[i];
      FUZZ_CHECK(tl_product_id_valid(l->product_id), "items[%d].productId", i);
      FUZZ_CHECK(l->quantity >= 1 && l->quantity <= TL_ORDER_MAX_QTY, "items[%d].quantity", i);
      FUZZ_CHECK(money_ok(l->price_minor), "items[%d].price %lld", i,
                 (long long)l->price_minor);
    }
    FUZZ_CHECK(json_is_object(c->shipping) && json_object_size(c->shipping) == 4,
               "shippingAddress");
    {
      static const struct {
        const char *key;
        long min, max;
      } F[] = {{"street", 1, 200}, {"city", 1, 200}, {"country", 2, 56}, {"postalCode", 1, 20}};
      for (size_t i = 0; i < TL_ARRAY_LEN(F); i++) {
        const char *v = json_string_value(json_object_get(c->shipping, F[i].key));
        FUZZ_CHECK(v && clean_text(v, F[i].min, F[i].max), "shippingAddress.%s", F[i].key);
      }
    }
    break;
  case TL_CMD_CONFIRM_PAYMENT:
  case TL_CMD_SHIP: FUZZ_CHECK(clean_text(c->text, 1, 128), "text '%s'", c->text); break;
  case TL_CMD_CANCEL: FUZZ_CHECK(clean_text(c->text, 0, 500), "reason '%s'", c->text); break;
  default: FUZZ_CHECK(false, "%s is not a client command but was accepted", tl_cmd_name(c->kind));
  }
}

/* The command as a client would send it, with exact money (tl_json_dumps writes the amounts as
 * JSON numbers). Caller frees. */
static char *encode(const tl_cmd *c) {
  json_t *b = NULL;
  switch (c->kind) {
  case TL_CMD_CREATE_PRODUCT:
    b = json_pack("{s:s, s:s, s:s, s:o, s:s, s:I}", "productId", c->id, "name", c->name,
                  "category", c->category, "price", tl_money_to_json(c->price_minor), "currency",
                  c->currency, "stock", (json_int_t)c->quantity);
    break;
  case TL_CMD_RESTOCK: b = json_pack("{s:I}", "quantity", (json_int_t)c->quantity); break;
  case TL_CMD_PLACE_ORDER: {
    json_t *items = json_array();
    for (int i = 0; i < c->n_items; i++)
      json_array_append_new(items, json_pack("{s:s, s:I, s:o}", "productId",
                                             c->items[i].product_id, "quantity",
                                             (json_int_t)c->items[i].quantity, "price",
                                             tl_money_to_json(c->items[i].price_minor)));
    b = json_pack("{s:s, s:s, s:o, s:O}", "customerId", c->customer_id, "currency", c->currency,
                  "items", items, "shippingAddress", c->shipping);
    break;
  }
  case TL_CMD_CONFIRM_PAYMENT: b = json_pack("{s:s}", "paymentId", c->text); break;
  case TL_CMD_SHIP: b = json_pack("{s:s}", "trackingNumber", c->text); break;
  case TL_CMD_CANCEL: b = json_pack("{s:s}", "reason", c->text); break;
  default: break;
  }
  FUZZ_CHECK(b, "cannot re-encode %s", tl_cmd_name(c->kind));
  char *text = tl_json_dumps(b);
  json_decref(b);
  FUZZ_CHECK(text, "tl_json_dumps failed");
  return text;
}

static bool same_cmd(const tl_cmd *a, const tl_cmd *b) {
  if (a->kind != b->kind || strcmp(a->id, b->id) != 0 || strcmp(a->name, b->name) != 0 ||
      strcmp(a->category, b->category) != 0 || strcmp(a->currency, b->currency) != 0 ||
      strcmp(a->customer_id, b->customer_id) != 0 || strcmp(a->text, b->text) != 0 ||
      a->price_minor != b->price_minor || a->quantity != b->quantity || a->n_items != b->n_items)
    return false;
  for (int i = 0; i < a->n_items; i++)
    if (strcmp(a->items[i].product_id, b->items[i].product_id) != 0 ||
        a->items[i].quantity != b->items[i].quantity ||
        a->items[i].price_minor != b->items[i].price_minor)
      return false;
  return (!a->shipping && !b->shipping) || json_equal(a->shipping, b->shipping);
}

/* Stores an event's data the way the writer does (tl_json_dumps) and reads it back the way a
 * fold does (json_loads). New reference. */
static json_t *stored(const json_t *data) {
  char *text = tl_json_dumps(data);
  FUZZ_CHECK(text, "tl_json_dumps of event data failed");
  json_error_t je;
  json_t *back = json_loads(text, 0, &je);
  FUZZ_CHECK(back, "stored event data is not JSON: %s (%s)", text, je.text);
  free(text);
  return back;
}

static tl_product_state catalog_entry;

static const tl_product_state *any_product(void *ctx, const char *product_id) {
  (void)ctx;
  snprintf(catalog_entry.product_id, sizeof catalog_entry.product_id, "%s", product_id);
  catalog_entry.version = 1;
  return &catalog_entry;
}

static void check_product_fold(const tl_cmd *c) {
  tl_product_state s;
  tl_product_state_init(&s);
  tl_decision d = {0};
  int rc;
  if (c->kind == TL_CMD_RESTOCK && !tl_product_id_valid(c->id)) {
    /* No product can have this id (creation validates it): the writer finds none. */
    rc = tl_product_decide(&s, c, &d);
    FUZZ_CHECK(rc == TL_E_NOTFOUND && d.problem.status == 404, "restock of '%s': %d", c->id, rc);
    tl_decision_clear(&d);
    return;
  }
  if (c->kind == TL_CMD_RESTOCK) { /* an existing product with some stock */
    snprintf(s.product_id, sizeof s.product_id, "%s", c->id);
    s.version = 1;
    s.stock = 7;
  }
  rc = tl_product_decide(&s, c, &d);
  FUZZ_CHECK(rc == TL_OK && d.n_events == 1, "product decide refused: %d", rc);
  json_t *data = stored(d.events[0].data);
  int64_t stock_before = s.stock;
  FUZZ_CHECK(tl_product_evolve(&s, d.events[0].type, data, 1) == TL_OK, "evolve %s",
             d.events[0].type);
  if (c->kind == TL_CMD_CREATE_PRODUCT) {
    FUZZ_CHECK(strcmp(s.product_id, c->id) == 0 && strcmp(s.name, c->name) == 0 &&
                   strcmp(s.category, c->category) == 0 &&
                   strcmp(s.currency, c->currency) == 0,
               "created product differs from the command");
    FUZZ_CHECK(s.price_minor == c->price_minor && s.stock == c->quantity,
               "price %lld / stock %lld after the fold", (long long)s.price_minor,
               (long long)s.stock);
  } else {
    FUZZ_CHECK(s.stock == stock_before + c->quantity, "restock");
  }
  json_decref(data);
  tl_decision_clear(&d);
  tl_product_state_clear(&s);
}

static void check_order_fold(tl_cmd *c) {
  tl_order_state s;
  tl_order_state_init(&s);
  tl_decision d = {0};
  if (c->kind == TL_CMD_PLACE_ORDER) {
    snprintf(c->id, sizeof c->id, "%s", ORDER_ID); /* the writer assigns it */
    int64_t total = 0;
    for (int i = 0; i < c->n_items; i++) total += c->items[i].quantity * c->items[i].price_minor;
    int rc = tl_order_decide(&s, c, any_product, NULL, &d);
    if (total > TL_MONEY_MAX_MINOR) {
      FUZZ_CHECK(rc == TL_E_INVALID && d.problem.status == 400, "total over the limit: %d", rc);
      tl_decision_clear(&d);
      return;
    }
    FUZZ_CHECK(rc == TL_OK && d.n_events == 1, "place_order refused: %d", rc);
    json_t *data = stored(d.events[0].data);
    FUZZ_CHECK(tl_order_evolve(&s, d.events[0].type, data, 1) == TL_OK, "evolve OrderPlaced");
    json_decref(data);
    FUZZ_CHECK(s.status == TL_ORDER_PENDING && s.n_items == c->n_items && s.total_minor == total &&
                   strcmp(s.customer_id, c->customer_id) == 0 &&
                   strcmp(s.currency, c->currency) == 0 && json_equal(s.shipping, c->shipping),
               "placed order differs from the command");
    for (int i = 0; i < c->n_items; i++)
      FUZZ_CHECK(strcmp(s.items[i].product_id, c->items[i].product_id) == 0 &&
                     s.items[i].quantity == c->items[i].quantity &&
                     s.items[i].price_minor == c->items[i].price_minor,
                 "line %d differs", i);
    /* The order view is what GET /orders/{id}/state answers: it must be valid JSON text. */
    json_t *view = tl_order_state_json(&s);
    FUZZ_CHECK(view, "tl_order_state_json failed");
    json_t *back = stored(view);
    json_decref(back);
    json_decref(view);
  } else {
    /* confirm_payment, ship, cancel from the state where each is allowed. */
    snprintf(s.order_id, sizeof s.order_id, "%s", ORDER_ID);
    s.version = 2;
    s.status = c->kind == TL_CMD_CONFIRM_PAYMENT ? TL_ORDER_RESERVED
               : c->kind == TL_CMD_SHIP          ? TL_ORDER_PAID
                                                 : TL_ORDER_PENDING;
    int rc = tl_order_decide(&s, c, NULL, NULL, &d);
    FUZZ_CHECK(rc == TL_OK && d.n_events == 1, "%s refused: %d", tl_cmd_name(c->kind), rc);
    json_t *data = stored(d.events[0].data);
    const char *key = c->kind == TL_CMD_CONFIRM_PAYMENT ? "paymentId"
                      : c->kind == TL_CMD_SHIP          ? "trackingNumber"
                                                        : "reason";
    const char *v = json_string_value(json_object_get(data, key));
    FUZZ_CHECK(v && strcmp(v, c->text) == 0, "%s does not survive storage", key);
    FUZZ_CHECK(tl_order_evolve(&s, d.events[0].type, data, 1) == TL_OK, "evolve");
    FUZZ_CHECK(s.status == (c->kind == TL_CMD_CONFIRM_PAYMENT ? TL_ORDER_PAID
                            : c->kind == TL_CMD_SHIP          ? TL_ORDER_SHIPPED
                                                              : TL_ORDER_CANCELLED),
               "status %s after the fold", tl_order_status_name(s.status));
    json_decref(data);
  }
  tl_decision_clear(&d);
  tl_order_state_clear(&s);
}

static tl_cmd_kind pick_kind(const char *word, uint8_t first) {
  for (int k = 0; k < TL_CMD__COUNT; k++)
    if (strcmp(word, tl_cmd_name((tl_cmd_kind)k)) == 0) return (tl_cmd_kind)k;
  return (tl_cmd_kind)(first % TL_CMD__COUNT);
}

static tl_jdoc doc, doc2; /* reused across inputs, as an HTTP thread's would be */

/* Decodes one body and checks every invariant; the problem is cleared on return. */
static void run(tl_cmd_kind kind, const char *path_id, const tl_jv *body) {
  static tl_cmd cmd, again; /* static: 12 KB apiece, kept off the stack */
  tl_problem p = {0};
  int rc = tl_cmd_decode(kind, path_id, body, &cmd, &p);
  FUZZ_CHECK(cmd.kind == kind, "kind");
  if (rc != TL_OK) {
    FUZZ_CHECK(rc == TL_E_INVALID || rc == TL_E_NOTFOUND, "rc %d", rc);
    FUZZ_CHECK(p.status == 400 || p.status == 404, "status %d", p.status);
    FUZZ_CHECK(p.code, "a problem without a code");
    if (strcmp(p.code, "VALIDATION_FAILED") == 0 && tl_jv_is(body, TL_JV_OBJECT) &&
        kind <= TL_CMD_CANCEL)
      FUZZ_CHECK(json_array_size(p.errors) > 0, "VALIDATION_FAILED without field errors");
    json_t *pb = tl_problem_body(&p);
    FUZZ_CHECK(pb, "tl_problem_body failed");
    json_decref(stored(pb));
    json_decref(pb);
    tl_problem_clear(&p);
    tl_cmd_clear(&cmd);
    return;
  }
  FUZZ_CHECK(p.status == 0 && json_array_size(p.errors) == 0, "accepted with a problem");
  if (path_id)
    FUZZ_CHECK(strcmp(cmd.id, path_id) == 0, "path id '%s' became '%s'", path_id, cmd.id);
  check_rules(&cmd);

  char *text = encode(&cmd);
  const tl_jv *b2 = NULL;
  bool oom = false;
  FUZZ_CHECK(tl_jdoc_parse(&doc2, text, strlen(text), &b2) == TL_OK &&
                 !tl_jdoc_repeated_key(&doc2, &oom) && !oom,
             "re-encoded body is not JSON: %s", text);
  tl_problem p2 = {0};
  rc = tl_cmd_decode(kind, path_id, b2, &again, &p2);
  FUZZ_CHECK(rc == TL_OK, "re-encoded body refused: %s", text);
  FUZZ_CHECK(same_cmd(&cmd, &again), "re-encoded body decodes differently: %s", text);
  tl_cmd_clear(&again);
  tl_problem_clear(&p2);
  free(text);

  if (kind == TL_CMD_CREATE_PRODUCT || kind == TL_CMD_RESTOCK) check_product_fold(&cmd);
  else check_order_fold(&cmd);
  tl_cmd_clear(&cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *line;
  const uint8_t *body_text;
  size_t body_len;
  fuzz_split_line(data, size, &line, &body_text, &body_len);
  tl_cmd_kind kind = TL_CMD_CREATE_PRODUCT;
  const char *path_id = NULL;
  if (line) {
    char *sp = strchr(line, ' ');
    if (sp) {
      *sp = '\0';
      path_id = sp + 1;
    }
    kind = pick_kind(line, size ? data[0] : 0);
  }
  if (kind == TL_CMD_CREATE_PRODUCT || kind == TL_CMD_PLACE_ORDER)
    path_id = NULL; /* creations name their aggregate in the body (or get one assigned) */
  /* As the HTTP lane reads a body (routes.c, command_body): tl_jv, repeated names refused. */
  const tl_jv *body = NULL;
  bool oom = false;
  if (tl_jdoc_parse(&doc, (const char *)body_text, body_len, &body) != TL_OK ||
      tl_jdoc_repeated_key(&doc, &oom))
    body = NULL;
  FUZZ_CHECK(!oom, "out of memory");
  run(kind, path_id, body); /* a NULL body is what the HTTP layer never passes: still defined */
  free(line);
  return 0;
}
