/*
 * fuzz_evolve.c: the event decoder of the write model: tl_order_evolve and tl_product_evolve
 * (domain/order.c, product.c), which turn a stored event's type and JSON data into aggregate
 * state, whenever the writer loads an aggregate or GET /orders/{id}/state folds a stream.
 *
 * Input: one event per line, "<type> <JSON data>", e.g.
 *   OrderPlaced {"orderId":"01HZY3J6C4Q6V9B8N7M5K3J2H1","customerId":"...","items":[...]}
 * Lines whose data is not a JSON object or array are skipped (the writer refuses to fold
 * unreadable data). Every event is folded into one order state and one product state, as if
 * the stream held it: each evolver must cope with every type.
 *
 * Invariants:
 *  - every fold bumps the version by one, whatever the event;
 *  - a refused event (TL_E_INVALID) changes nothing else in the state;
 *  - an accepted OrderPlaced holds its items and their exact total; the status follows the
 *    event type;
 *  - a product's reserved units are the sum of its reservations; restock and commit move the
 *    stock by exactly their quantity;
 *  - the order view (GET /orders/{id}/state) renders for every state, and copies are equal;
 *  - every command is decided on the folded states without undefined behaviour: refused with a
 *    problem, or answered with events;
 *  - reserve_order (every product of the order resolving to the folded product) decides
 *    nothing unless the order is PENDING, then exactly one order event, and only events the
 *    evolvers accept (product events on a copy of the product, the order's on a copy of it).
 */
#include "fuzz_common.h"

#include "domain/domain.h"
#include "util/tl_common.h"
#include "util/tl_money.h"

#include <stdbool.h>

#define MAX_EVENTS 64

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_init_jansson();
  return 0;
}

/* ---- a shadow of the product's reservations ---------------------------------------------- */

typedef struct shadow {
  int n;
  char *order_id[MAX_EVENTS]; /* owned copies */
  int64_t units[MAX_EVENTS];
} shadow;

static int shadow_find(const shadow *sh, const char *oid) {
  for (int i = 0; i < sh->n; i++)
    if (strcmp(sh->order_id[i], oid) == 0) return i;
  return -1;
}

static int64_t shadow_get(const shadow *sh, const char *oid) {
  int i = shadow_find(sh, oid);
  return i < 0 ? 0 : sh->units[i];
}

static void shadow_put(shadow *sh, const char *oid, int64_t units) {
  int i = shadow_find(sh, oid);
  if (i < 0) {
    FUZZ_CHECK(sh->n < MAX_EVENTS, "shadow full");
    i = sh->n++;
    sh->order_id[i] = strdup(oid);
    if (!sh->order_id[i]) abort();
  }
  sh->units[i] = units;
}

static void shadow_remove(shadow *sh, const char *oid) {
  int i = shadow_find(sh, oid);
  if (i < 0) return;
  free(sh->order_id[i]);
  sh->n--;
  sh->order_id[i] = sh->order_id[sh->n];
  sh->units[i] = sh->units[sh->n];
}

/* The order a stock command of check_decisions is for: the first one holding units, if any. */
static char sh_first_order[TL_ULID_LEN + 1];

static void shadow_clear(shadow *sh) {
  for (int i = 0; i < sh->n; i++) free(sh->order_id[i]);
  sh->n = 0;
}

static __int128 shadow_sum(const shadow *sh) {
  __int128 sum = 0;
  for (int i = 0; i < sh->n; i++) sum += sh->units[i];
  return sum;
}

/* ---- order ------------------------------------------------------------------------------- */

static bool same_order(const tl_order_state *a, const tl_order_state *b) {
  if (a->status != b->status || strcmp(a->order_id, b->order_id) != 0 ||
      strcmp(a->customer_id, b->customer_id) != 0 || strcmp(a->currency, b->currency) != 0 ||
      a->total_minor != b->total_minor || a->n_items != b->n_items ||
      strcmp(a->rejection_reason, b->rejection_reason) != 0 || a->created_ms != b->created_ms ||
      a->updated_ms != b->updated_ms || a->shipping != b->shipping)
    return false;
  return a->n_items == 0 || memcmp(a->items, b->items, sizeof *a->items * (size_t)a->n_items) == 0;
}

static void fold_order(tl_order_state *s, const char *type, const json_t *data, int64_t ms) {
  tl_order_state before;
  tl_order_state_copy(&before, s);
  int rc = tl_order_evolve(s, type, data, ms);
  FUZZ_CHECK(rc == TL_OK || rc == TL_E_INVALID, "order evolve %s: rc %d", type, rc);
  FUZZ_CHECK(s->version == before.version + 1, "order version");
  if (rc != TL_OK) {
    FUZZ_CHECK(same_order(s, &before), "a refused %s changed the order", type);
  } else if (strcmp(type, "OrderPlaced") == 0) {
    const json_t *items = json_object_get(data, "items");
    FUZZ_CHECK(s->status == TL_ORDER_PENDING && s->created_ms == ms, "placed");
    FUZZ_CHECK(s->n_items == (int)json_array_size(items), "%d items", s->n_items);
    __int128 total = 0;
    for (int i = 0; i < s->n_items; i++)
      total += (__int128)s->items[i].quantity * s->items[i].price_minor;
    FUZZ_CHECK(total == s->total_minor, "total %lld is not the sum of its lines",
               (long long)s->total_minor);
  } else {
    static const struct {
      const char *type;
      tl_order_status status;
    } T[] = {{"OrderReserved", TL_ORDER_RESERVED}, {"OrderRejected", TL_ORDER_REJECTED},
             {"PaymentConfirmed", TL_ORDER_PAID},  {"OrderShipped", TL_ORDER_SHIPPED},
             {"OrderCancelled", TL_ORDER_CANCELLED}};
    tl_order_status want = before.status;
    for (size_t i = 0; i < TL_ARRAY_LEN(T); i++)
      if (strcmp(type, T[i].type) == 0) want = T[i].status;
    FUZZ_CHECK(s->status == want, "%s left status %s", type, tl_order_status_name(s->status));
  }
  tl_order_state_clear(&before);
}

static void check_order_view(const tl_order_state *s) {
  json_t *view = tl_order_state_json(s);
  FUZZ_CHECK(view, "no order view for a state at version %lld", (long long)s->version);
  char *text = tl_json_dumps(view);
  FUZZ_CHECK(text, "tl_json_dumps of the view");
  json_error_t je;
  json_t *back = json_loads(text, 0, &je);
  FUZZ_CHECK(back, "the view is not JSON: %s (%s)", text, je.text);
  json_decref(back);
  free(text);
  json_decref(view);
  tl_order_state copy;
  tl_order_state_copy(&copy, s);
  FUZZ_CHECK(same_order(&copy, s) && copy.version == s->version, "copy differs");
  tl_order_state_clear(&copy);
}

/* ---- product ----------------------------------------------------------------------------- */

/* Equal apart from the version? Reservations are compared through the shadow. */
static bool same_product(const tl_product_state *a, const tl_product_state *b) {
  return strcmp(a->product_id, b->product_id) == 0 && strcmp(a->name, b->name) == 0 &&
         strcmp(a->category, b->category) == 0 && strcmp(a->currency, b->currency) == 0 &&
         a->price_minor == b->price_minor && a->stock == b->stock && a->reserved == b->reserved &&
         a->reservations == b->reservations && a->created_ms == b->created_ms &&
         a->updated_ms == b->updated_ms;
}

static void fold_product(tl_product_state *s, shadow *sh, const char *type, const json_t *data,
                         int64_t ms) {
  tl_product_state before = *s; /* shallow: reservations are checked through the shadow */
  int rc = tl_product_evolve(s, type, data, ms);
  FUZZ_CHECK(rc == TL_OK || rc == TL_E_INVALID, "product evolve %s: rc %d", type, rc);
  FUZZ_CHECK(s->version == before.version + 1, "product version");
  const char *oid = json_string_value(json_object_get(data, "orderId"));
  int64_t q = json_integer_value(json_object_get(data, "quantity"));
  if (rc != TL_OK) {
    FUZZ_CHECK(same_product(&before, s), "a refused %s changed the product", type);
    if (oid)
      FUZZ_CHECK(tl_product_reserved_for(s, oid) == shadow_get(sh, oid), "refused %s", type);
    return;
  }
  FUZZ_CHECK(s->updated_ms == ms, "updated time");
  if (strcmp(type, "ProductRestocked") == 0) {
    FUZZ_CHECK(s->stock == before.stock + q, "restock by %lld", (long long)q);
  } else if (strcmp(type, "StockReserved") == 0) {
    shadow_put(sh, oid, q);
  } else if (strcmp(type, "StockReleased") == 0 || strcmp(type, "StockCommitted") == 0) {
    int64_t held = shadow_get(sh, oid);
    shadow_remove(sh, oid);
    if (type[5] == 'C')
      FUZZ_CHECK(s->stock == before.stock - held, "commit of %lld", (long long)held);
    else
      FUZZ_CHECK(s->stock == before.stock, "release moved the stock");
  } else if (strcmp(type, "ProductCreated") != 0) {
    FUZZ_CHECK(s->stock == before.stock && s->reserved == before.reserved, "%s moved stock", type);
  }
  FUZZ_CHECK(s->reserved == shadow_sum(sh), "reserved %lld is not the sum of the reservations",
             (long long)s->reserved);
  if (oid)
    FUZZ_CHECK(tl_product_reserved_for(s, oid) == shadow_get(sh, oid), "reservation of %s", oid);
}

/* decide must cope with every state the fold can reach: each command is refused or answered
 * with well-formed events. */
static void check_decisions(const tl_order_state *o, const tl_product_state *p) {
  static tl_cmd c;
  for (int k = 0; k < 2 * TL_CMD__COUNT; k++) {
    memset(&c, 0, sizeof c);
    c.kind = (tl_cmd_kind)(k % TL_CMD__COUNT);
    if (c.kind == TL_CMD_PLACE_ORDER) continue; /* needs a catalog: fuzz_commands.c covers it */
    /* Stock commands for an order holding units, then for one holding none. */
    snprintf(c.order_id, sizeof c.order_id, "%s", k < TL_CMD__COUNT ? sh_first_order : "new");
    snprintf(c.text, sizeof c.text, "%s", c.kind == TL_CMD_REJECT_ORDER ? "OUT_OF_STOCK" : "x");
    c.quantity = 1;
    tl_decision d = {0};
    int rc = tl_cmd_is_order(c.kind) ? tl_order_decide(o, &c, NULL, NULL, &d)
                                     : tl_product_decide(p, &c, &d);
    if (rc == TL_OK) {
      for (int i = 0; i < d.n_events; i++)
        FUZZ_CHECK(d.events[i].type && json_is_object(d.events[i].data), "%s: event %d",
                   tl_cmd_name(c.kind), i);
    } else {
      FUZZ_CHECK(d.problem.status >= 400 && d.problem.code, "%s: refusal without a problem",
                 tl_cmd_name(c.kind));
    }
    tl_decision_clear(&d);
  }
}

static const tl_product_state *lookup_fuzzed(void *ctx, const char *product_id) {
  (void)product_id;
  return ctx;
}

static void check_reservation(const tl_order_state *o, const tl_product_state *p, int64_t ms) {
  tl_reservation r;
  int rc = tl_order_decide_reservation(o, lookup_fuzzed, (void *)p, &r);
  if (rc != TL_OK) {
    FUZZ_CHECK((rc == TL_E_NOTFOUND && o->version == 0) || rc == TL_E_NOMEM,
               "reserve_order refused with %d", rc);
    FUZZ_CHECK(r.n_stock == 0 && r.order.n_events == 0, "a refusal with events");
    tl_reservation_clear(&r);
    return;
  }
  if (o->status != TL_ORDER_PENDING) {
    FUZZ_CHECK(r.n_stock == 0 && r.order.n_events == 0, "reserve_order of a %s order decided",
               tl_order_status_name(o->status));
    tl_reservation_clear(&r);
    return;
  }
  FUZZ_CHECK(r.order.n_events == 1 && r.n_stock <= o->n_items, "%d order events, %d stock",
             r.order.n_events, r.n_stock);
  char *snap = p->version > 0 ? tl_product_snapshot_encode(p) : NULL;
  for (int i = 0; i < r.n_stock; i++) {
    tl_product_state copy;
    FUZZ_CHECK(snap && tl_product_snapshot_decode(&copy, TL_PRODUCT_SNAPSHOT_SCHEMA, snap) == TL_OK,
               "a stock event for a product that does not exist");
    const char *type = r.stock[i].event.type;
    FUZZ_CHECK(tl_product_evolve(&copy, type, r.stock[i].event.data, ms) == TL_OK,
               "reserve_order decided a %s the product refuses", type);
    tl_product_state_clear(&copy);
  }
  free(snap);
  tl_order_state copy;
  tl_order_state_copy(&copy, o);
  const char *type = r.order.events[0].type;
  FUZZ_CHECK(tl_order_evolve(&copy, type, r.order.events[0].data, ms) == TL_OK,
             "reserve_order decided a %s the order refuses", type);
  FUZZ_CHECK(copy.status == TL_ORDER_RESERVED || copy.status == TL_ORDER_REJECTED,
             "reserve_order left the order %s", tl_order_status_name(copy.status));
  tl_order_state_clear(&copy);
  tl_reservation_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_strndup(data, size);
  tl_order_state order;
  tl_product_state product;
  tl_order_state_init(&order);
  tl_product_state_init(&product);
  static shadow sh;
  int64_t ms = 1700000000000;
  int n = 0;
  for (char *line = text; line && n < MAX_EVENTS; n++) {
    char *next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *sp = strchr(line, ' ');
    if (sp) {
      *sp = '\0';
      json_t *d = json_loads(sp + 1, 0, NULL);
      if (d) {
        ms += 1000;
        fold_order(&order, line, d, ms);
        fold_product(&product, &sh, line, d, ms);
        json_decref(d);
      }
    }
    line = next;
  }
  check_order_view(&order);
  snprintf(sh_first_order, sizeof sh_first_order, "%s", sh.n ? sh.order_id[0] : "o");
  check_decisions(&order, &product);
  check_reservation(&order, &product, ms + 1000);
  tl_order_state_clear(&order);
  tl_product_state_clear(&product);
  shadow_clear(&sh);
  free(text);
  return 0;
}
