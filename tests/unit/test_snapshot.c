/* test_snapshot.c: aggregate snapshots (domain/snapshot.c): tl_order_snapshot_encode/_decode
 * and tl_product_snapshot_encode/_decode.
 *
 * - a round trip gives back every field (product reservations per order included);
 * - another schema version, or text that is not a valid snapshot, is refused with an empty
 *   state, so the writer falls back to a full fold;
 * - snapshot + tail == full fold: for random, decider-made event sequences and every split
 *   point, folding the prefix, encoding, decoding and folding the rest ends in the same state
 *   as folding everything. Event data goes through JSON text as it does through the log.
 *
 * States are compared field by field here, not through the encoder, so a field the encoder
 * forgets cannot hide. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "domain/domain.h"
#include "util/tl_common.h"
#include "util/tl_map.h"
#include "util/tl_money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUSTOMER_ID "123e4567-e89b-12d3-a456-426614174000"
#define T0 1700000000000LL

/* ---- comparing states ---------------------------------------------------------------------- */

static void assert_order_equal(const tl_order_state *a, const tl_order_state *b) {
  assert_int_equal(a->version, b->version);
  assert_int_equal(a->status, b->status);
  assert_string_equal(a->order_id, b->order_id);
  assert_string_equal(a->customer_id, b->customer_id);
  assert_string_equal(a->currency, b->currency);
  assert_int_equal(a->total_minor, b->total_minor);
  assert_int_equal(a->n_items, b->n_items);
  for (int i = 0; i < a->n_items; i++) {
    assert_string_equal(a->items[i].product_id, b->items[i].product_id);
    assert_int_equal(a->items[i].quantity, b->items[i].quantity);
    assert_int_equal(a->items[i].price_minor, b->items[i].price_minor);
  }
  assert_true((a->shipping == NULL) == (b->shipping == NULL));
  if (a->shipping) assert_true(json_equal(a->shipping, b->shipping));
  assert_string_equal(a->rejection_reason, b->rejection_reason);
  assert_int_equal(a->created_ms, b->created_ms);
  assert_int_equal(a->updated_ms, b->updated_ms);
}

static int same_reservation(void *arg, const char *order_id, void *units) {
  const tl_product_state *other = arg;
  return tl_product_reserved_for(other, order_id) == *(int64_t *)units ? 0 : 1;
}

static size_t n_reservations(const tl_product_state *s) {
  return s->reservations ? tl_map_size(s->reservations) : 0;
}

static void assert_product_equal(const tl_product_state *a, const tl_product_state *b) {
  assert_int_equal(a->version, b->version);
  assert_string_equal(a->product_id, b->product_id);
  assert_string_equal(a->name, b->name);
  assert_string_equal(a->category, b->category);
  assert_string_equal(a->currency, b->currency);
  assert_int_equal(a->price_minor, b->price_minor);
  assert_int_equal(a->stock, b->stock);
  assert_int_equal(a->reserved, b->reserved);
  assert_int_equal(n_reservations(a), n_reservations(b));
  if (a->reservations)
    assert_int_equal(tl_map_each(a->reservations, same_reservation, (void *)b), 0);
  assert_int_equal(a->created_ms, b->created_ms);
  assert_int_equal(a->updated_ms, b->updated_ms);
}

/* ---- recorded event sequences ------------------------------------------------------------- */

/* Events as the log holds them: a type, JSON text, a recording time. */
typedef struct rec_event {
  const char *type;
  char *data;
  int64_t ms;
} rec_event;

typedef struct history {
  rec_event ev[512];
  int n;
} history;

static void history_clear(history *h) {
  for (int i = 0; i < h->n; i++) free(h->ev[i].data);
  h->n = 0;
}

static json_t *event_data(const rec_event *e) {
  json_t *j = json_loads(e->data, 0, NULL);
  assert_non_null(j);
  return j;
}

static void fold_order(tl_order_state *s, const history *h, int from, int to) {
  for (int i = from; i < to; i++) {
    json_t *d = event_data(&h->ev[i]);
    tl_order_evolve(s, h->ev[i].type, d, h->ev[i].ms);
    json_decref(d);
  }
}

static void fold_product(tl_product_state *s, const history *h, int from, int to) {
  for (int i = from; i < to; i++) {
    json_t *d = event_data(&h->ev[i]);
    tl_product_evolve(s, h->ev[i].type, d, h->ev[i].ms);
    json_decref(d);
  }
}

/* Records the decision's events in h and folds them into s (order or product). */
static void record(history *h, tl_decision *d, int64_t ms, tl_order_state *order,
                   tl_product_state *product) {
  for (int i = 0; i < d->n_events; i++) {
    assert_true(h->n < (int)TL_ARRAY_LEN(h->ev));
    rec_event *e = &h->ev[h->n++];
    e->type = d->events[i].type;
    e->data = tl_json_dumps(d->events[i].data);
    e->ms = ms;
    assert_non_null(e->data);
    json_t *back = event_data(e);
    if (order)
      assert_int_equal(tl_order_evolve(order, e->type, back, ms), TL_OK);
    else
      assert_int_equal(tl_product_evolve(product, e->type, back, ms), TL_OK);
    json_decref(back);
  }
}

/* A deterministic generator (xorshift64*), so a failure replays. */
static uint64_t rng_state;

static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

static int64_t rng_range(int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
}

/* ---- building states ---------------------------------------------------------------------- */

/* Every product an order names exists (version 1): placement is not what is tested here. */
static tl_product_state catalog_entry = {.version = 1};

static const tl_product_state *lookup(void *ctx, const char *product_id) {
  (void)ctx;
  (void)product_id;
  return &catalog_entry;
}

static void order_id_of(int n, char out[TL_ULID_LEN + 1]) {
  snprintf(out, TL_ULID_LEN + 1, "01HZY3J6C4Q6V9B8N7M5K%05d", n);
}

/* Places order n with 1..4 lines (random when random is set) and records it. */
static void place(history *h, tl_order_state *s, int n, int random, int64_t ms) {
  tl_cmd c;
  memset(&c, 0, sizeof c);
  c.kind = TL_CMD_PLACE_ORDER;
  order_id_of(n, c.id);
  snprintf(c.customer_id, sizeof c.customer_id, CUSTOMER_ID);
  memcpy(c.currency, random && rng() % 2 ? "EUR" : "USD", 4);
  c.n_items = random ? (int)rng_range(1, 4) : 3;
  for (int i = 0; i < c.n_items; i++) {
    snprintf(c.items[i].product_id, sizeof c.items[i].product_id, "sku-%d", i);
    c.items[i].quantity = random ? rng_range(1, TL_ORDER_MAX_QTY) : i + 1;
    c.items[i].price_minor = random ? rng_range(1, 9999999) : 1999 + i; /* total <= 4e11 */
  }
  c.shipping = json_pack("{s:s, s:s, s:s, s:s}", "street", "1 Main St", "city", "Zürich", "country",
                         "CH", "postalCode", random ? "8001" : "12345");
  tl_decision d;
  memset(&d, 0, sizeof d);
  assert_int_equal(tl_order_decide(s, &c, lookup, NULL, &d), TL_OK);
  record(h, &d, ms, s, NULL);
  tl_decision_clear(&d);
  tl_cmd_clear(&c);
}

/* Decides an order command; records and folds its events when accepted. */
static void order_cmd(history *h, tl_order_state *s, tl_cmd_kind kind, const char *text,
                      int64_t ms) {
  tl_cmd c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  snprintf(c.id, sizeof c.id, "%s", s->order_id);
  snprintf(c.text, sizeof c.text, "%s", text);
  tl_decision d;
  memset(&d, 0, sizeof d);
  if (tl_order_decide(s, &c, lookup, NULL, &d) == TL_OK) record(h, &d, ms, s, NULL);
  tl_decision_clear(&d);
}

static void product_cmd(history *h, tl_product_state *s, tl_cmd_kind kind, const char *order_id,
                        int64_t quantity, int64_t ms) {
  tl_cmd c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  snprintf(c.id, sizeof c.id, "lamp-1");
  snprintf(c.order_id, sizeof c.order_id, "%s", order_id ? order_id : "");
  c.quantity = quantity;
  if (kind == TL_CMD_CREATE_PRODUCT) {
    snprintf(c.name, sizeof c.name, "Desk Lamp \"Ω\" 60W");
    snprintf(c.category, sizeof c.category, "lighting");
    memcpy(c.currency, "EUR", 4);
    c.price_minor = 1999;
  }
  tl_decision d;
  memset(&d, 0, sizeof d);
  if (tl_product_decide(s, &c, &d) == TL_OK) record(h, &d, ms, NULL, s);
  tl_decision_clear(&d);
}

/* A product with stock 20 + 5, reservations for orders 1, 2 and 4 (5, 3 and 1 units) after
 * order 3's reservation was released and order 0's committed (shipped). */
static void busy_product(history *h, tl_product_state *s) {
  char oid[TL_ULID_LEN + 1];
  int64_t ms = T0;
  product_cmd(h, s, TL_CMD_CREATE_PRODUCT, NULL, 20, ms++);
  product_cmd(h, s, TL_CMD_RESTOCK, NULL, 5, ms++);
  const int64_t units[] = {2, 5, 3, 4, 1};
  for (int i = 0; i < 5; i++) {
    order_id_of(i, oid);
    product_cmd(h, s, TL_CMD_RESERVE_STOCK, oid, units[i], ms++);
  }
  order_id_of(3, oid);
  product_cmd(h, s, TL_CMD_RELEASE_STOCK, oid, 0, ms++);
  order_id_of(0, oid);
  product_cmd(h, s, TL_CMD_COMMIT_STOCK, oid, 0, ms++);
  assert_int_equal(s->version, 9);
  assert_int_equal(s->stock, 23);
  assert_int_equal(s->reserved, 9);
}

/* A placed, reserved and paid order. */
static void paid_order(history *h, tl_order_state *s) {
  place(h, s, 7, 0, T0);
  order_cmd(h, s, TL_CMD_MARK_RESERVED, "", T0 + 10);
  order_cmd(h, s, TL_CMD_CONFIRM_PAYMENT, "pay_123", T0 + 20);
  assert_int_equal(s->version, 3);
  assert_int_equal(s->status, TL_ORDER_PAID);
}

/* ---- round trips ---------------------------------------------------------------------------- */

static void test_order_round_trip(void **state) {
  (void)state;
  history h = {.n = 0};
  tl_order_state s, back;
  tl_order_state_init(&s);
  paid_order(&h, &s);
  char *text = tl_order_snapshot_encode(&s);
  assert_non_null(text);
  assert_int_equal(tl_order_snapshot_decode(&back, TL_ORDER_SNAPSHOT_SCHEMA, text), TL_OK);
  assert_order_equal(&s, &back);
  assert_int_equal(back.total_minor, 1999 + 2 * 2000 + 3 * 2001);
  /* Encoding the decoded state gives the same snapshot (nothing is lost or added). */
  char *again = tl_order_snapshot_encode(&back);
  assert_string_equal(text, again);
  free(again);
  free(text);
  tl_order_state_clear(&back);
  tl_order_state_clear(&s);
  history_clear(&h);

  /* A rejected order keeps its reason; an empty state (no items, no address) survives too. */
  tl_order_state_init(&s);
  place(&h, &s, 8, 0, T0);
  order_cmd(&h, &s, TL_CMD_REJECT_ORDER, "OUT_OF_STOCK", T0 + 5);
  assert_int_equal(s.status, TL_ORDER_REJECTED);
  text = tl_order_snapshot_encode(&s);
  assert_int_equal(tl_order_snapshot_decode(&back, TL_ORDER_SNAPSHOT_SCHEMA, text), TL_OK);
  assert_order_equal(&s, &back);
  assert_string_equal(back.rejection_reason, "OUT_OF_STOCK");
  free(text);
  tl_order_state_clear(&back);
  tl_order_state_clear(&s);
  history_clear(&h);

  tl_order_state_init(&s);
  s.version = 1; /* an unknown first event: version 1, nothing else */
  text = tl_order_snapshot_encode(&s);
  assert_int_equal(tl_order_snapshot_decode(&back, TL_ORDER_SNAPSHOT_SCHEMA, text), TL_OK);
  assert_order_equal(&s, &back);
  assert_null(back.items);
  assert_null(back.shipping);
  free(text);
  tl_order_state_clear(&back);
}

static void test_product_round_trip(void **state) {
  (void)state;
  history h = {.n = 0};
  tl_product_state s, back;
  tl_product_state_init(&s);
  busy_product(&h, &s);
  char *text = tl_product_snapshot_encode(&s);
  assert_non_null(text);
  assert_int_equal(tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, text), TL_OK);
  assert_product_equal(&s, &back);
  char oid[TL_ULID_LEN + 1];
  order_id_of(1, oid);
  assert_int_equal(tl_product_reserved_for(&back, oid), 5);
  order_id_of(3, oid);
  assert_int_equal(tl_product_reserved_for(&back, oid), 0);
  assert_int_equal(n_reservations(&back), 3);
  /* The decoded state decides like the original: releasing order 1 gives back its 5 units. */
  history h2 = {.n = 0};
  order_id_of(1, oid);
  product_cmd(&h2, &back, TL_CMD_RELEASE_STOCK, oid, 0, T0 + 100);
  assert_int_equal(h2.n, 1);
  assert_int_equal(back.reserved, 4);
  history_clear(&h2);
  free(text);
  tl_product_state_clear(&back);
  tl_product_state_clear(&s);
  history_clear(&h);

  /* No reservations at all (never held any): none after decoding either. */
  tl_product_state_init(&s);
  product_cmd(&h, &s, TL_CMD_CREATE_PRODUCT, NULL, 3, T0);
  text = tl_product_snapshot_encode(&s);
  assert_int_equal(tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, text), TL_OK);
  assert_product_equal(&s, &back);
  assert_null(back.reservations);
  free(text);
  tl_product_state_clear(&back);
  tl_product_state_clear(&s);
  history_clear(&h);
}

/* ---- refusals ------------------------------------------------------------------------------- */

static void test_other_schema_versions_are_refused(void **state) {
  (void)state;
  history h = {.n = 0};
  tl_product_state p, pback;
  tl_product_state_init(&p);
  busy_product(&h, &p);
  char *ptext = tl_product_snapshot_encode(&p);
  const int others[] = {0, TL_PRODUCT_SNAPSHOT_SCHEMA + 1, -1, 999};
  for (size_t i = 0; i < TL_ARRAY_LEN(others); i++) {
    assert_int_equal(tl_product_snapshot_decode(&pback, others[i], ptext), TL_E_INVALID);
    assert_int_equal(pback.version, 0);
    assert_null(pback.reservations);
  }
  free(ptext);
  tl_product_state_clear(&p);
  history_clear(&h);

  tl_order_state o, oback;
  tl_order_state_init(&o);
  paid_order(&h, &o);
  char *otext = tl_order_snapshot_encode(&o);
  for (size_t i = 0; i < TL_ARRAY_LEN(others); i++) {
    int other =
        others[i] == TL_PRODUCT_SNAPSHOT_SCHEMA + 1 ? TL_ORDER_SNAPSHOT_SCHEMA + 1 : others[i];
    assert_int_equal(tl_order_snapshot_decode(&oback, other, otext), TL_E_INVALID);
    assert_int_equal(oback.version, 0);
    assert_null(oback.items);
    assert_null(oback.shipping);
  }
  free(otext);
  tl_order_state_clear(&o);
  history_clear(&h);
}

/* good with member key replaced by value (a JSON text; NULL removes the member). */
static char *mutate(const char *good, const char *key, const char *value) {
  json_t *j = json_loads(good, 0, NULL);
  assert_non_null(j);
  if (value) {
    json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    assert_non_null(v);
    json_object_set_new(j, key, v);
  } else {
    json_object_del(j, key);
  }
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  assert_non_null(text);
  return text;
}

typedef struct bad_member {
  const char *key;
  const char *value; /* NULL: the member is missing */
} bad_member;

static const char *const NOT_SNAPSHOTS[] = {
    "",
    "garbage",
    "null",
    "[]",
    "42",
    "\"text\"",
    "{}",
    "{\"version\": 3",
    "{\"version\": 3}",
    "\xff\xfe{}",
};

static void test_garbage_is_refused(void **state) {
  (void)state;
  history h = {.n = 0};
  tl_product_state p, back;
  tl_product_state_init(&p);
  busy_product(&h, &p);
  char *good = tl_product_snapshot_encode(&p);
  assert_int_equal(tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, NULL),
                   TL_E_INVALID);
  for (size_t i = 0; i < TL_ARRAY_LEN(NOT_SNAPSHOTS); i++) {
    assert_int_equal(
        tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, NOT_SNAPSHOTS[i]),
        TL_E_INVALID);
    assert_int_equal(back.version, 0);
  }
  /* A truncated snapshot (a torn write) is not one. */
  char *cut = strdup(good);
  cut[strlen(cut) / 2] = '\0';
  assert_int_equal(tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, cut),
                   TL_E_INVALID);
  free(cut);
  char long_name[1000];
  memset(long_name, 'n', sizeof long_name);
  long_name[0] = '"';
  long_name[sizeof long_name - 2] = '"';
  long_name[sizeof long_name - 1] = '\0';
  const bad_member bad[] = {
      {"version", NULL},
      {"version", "0"},
      {"version", "\"9\""},
      {"version", "9.0"},
      {"productId", NULL},
      {"productId", "7"},
      {"name", long_name},
      {"name", "\"a\\u0000b\""},
      {"currency", "\"EURO\""},
      {"stock", "null"},
      {"reserved", "8"},
      {"reservations", NULL},
      {"reservations", "[]"},
      {"reservations", "{\"x\": 0}"},
      {"reservations", "{\"x\": -3}"},
      {"reservations", "{\"x\": \"3\"}"},
      {"reservations", "{\"x\": 9223372036854775807, \"y\": 9223372036854775807}"},
      {"priceMinor", "19.99"},
      {"createdMs", NULL},
      {"updatedMs", "\"now\""},
  };
  for (size_t i = 0; i < TL_ARRAY_LEN(bad); i++) {
    char *text = mutate(good, bad[i].key, bad[i].value);
    if (tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, text) != TL_E_INVALID)
      fail_msg("accepted a product snapshot with %s = %s", bad[i].key,
               bad[i].value ? bad[i].value : "(missing)");
    assert_int_equal(back.version, 0);
    assert_null(back.reservations);
    free(text);
  }
  /* Duplicate members are ambiguous: refused. */
  char dup[4096];
  snprintf(dup, sizeof dup, "{\"stock\": 1, %s", good + 1);
  assert_int_equal(tl_product_snapshot_decode(&back, TL_PRODUCT_SNAPSHOT_SCHEMA, dup),
                   TL_E_INVALID);
  free(good);
  tl_product_state_clear(&p);
  history_clear(&h);

  tl_order_state o, oback;
  tl_order_state_init(&o);
  paid_order(&h, &o);
  good = tl_order_snapshot_encode(&o);
  for (size_t i = 0; i < TL_ARRAY_LEN(NOT_SNAPSHOTS); i++) {
    assert_int_equal(tl_order_snapshot_decode(&oback, TL_ORDER_SNAPSHOT_SCHEMA, NOT_SNAPSHOTS[i]),
                     TL_E_INVALID);
    assert_int_equal(oback.version, 0);
  }
  char many_items[16384];
  size_t off = (size_t)snprintf(many_items, sizeof many_items, "[");
  for (int i = 0; i <= TL_ORDER_MAX_ITEMS; i++)
    off += (size_t)snprintf(many_items + off, sizeof many_items - off,
                            "%s{\"productId\": \"p\", \"quantity\": 1, \"priceMinor\": 1}",
                            i ? ", " : "");
  snprintf(many_items + off, sizeof many_items - off, "]");
  const bad_member obad[] = {
      {"version", "-1"},
      {"status", "\"LOST\""},
      {"status", "3"},
      {"orderId", "\"01HZY3J6C4Q6V9B8N7M5K3J2H1-and-much-too-long\""},
      {"customerId", NULL},
      {"totalMinor", "\"1.00\""},
      {"items", NULL},
      {"items", "{}"},
      {"items", "[1]"},
      {"items", "[{\"productId\": \"p\", \"quantity\": 1}]"},
      {"items", "[{\"productId\": \"p\", \"quantity\": \"1\", \"priceMinor\": 1}]"},
      {"items", many_items},
      {"shippingAddress", NULL},
      {"shippingAddress", "\"1 Main St\""},
      {"rejectionReason", "null"},
      {"createdMs", "1.5"},
  };
  for (size_t i = 0; i < TL_ARRAY_LEN(obad); i++) {
    char *text = mutate(good, obad[i].key, obad[i].value);
    if (tl_order_snapshot_decode(&oback, TL_ORDER_SNAPSHOT_SCHEMA, text) != TL_E_INVALID)
      fail_msg("accepted an order snapshot with %s = %.60s", obad[i].key,
               obad[i].value ? obad[i].value : "(missing)");
    assert_int_equal(oback.version, 0);
    assert_null(oback.items);
    assert_null(oback.shipping);
    free(text);
  }
  free(good);
  tl_order_state_clear(&o);
  history_clear(&h);
}

/* ---- snapshot + tail == full fold ----------------------------------------------------------- */

/* Folds h[0..k), snapshots, decodes, folds h[k..n) and compares with full, for every k. */
static void check_every_split_product(const history *h, const tl_product_state *full) {
  for (int k = 1; k <= h->n; k++) {
    tl_product_state prefix, loaded;
    tl_product_state_init(&prefix);
    fold_product(&prefix, h, 0, k);
    char *text = tl_product_snapshot_encode(&prefix);
    assert_non_null(text);
    assert_int_equal(tl_product_snapshot_decode(&loaded, TL_PRODUCT_SNAPSHOT_SCHEMA, text), TL_OK);
    assert_int_equal(loaded.version, k);
    fold_product(&loaded, h, k, h->n);
    assert_product_equal(&loaded, full);
    free(text);
    tl_product_state_clear(&loaded);
    tl_product_state_clear(&prefix);
  }
}

static void check_every_split_order(const history *h, const tl_order_state *full) {
  for (int k = 1; k <= h->n; k++) {
    tl_order_state prefix, loaded;
    tl_order_state_init(&prefix);
    fold_order(&prefix, h, 0, k);
    char *text = tl_order_snapshot_encode(&prefix);
    assert_non_null(text);
    assert_int_equal(tl_order_snapshot_decode(&loaded, TL_ORDER_SNAPSHOT_SCHEMA, text), TL_OK);
    fold_order(&loaded, h, k, h->n);
    assert_order_equal(&loaded, full);
    free(text);
    tl_order_state_clear(&loaded);
    tl_order_state_clear(&prefix);
  }
}

/* Random product histories: reservations, releases, commits (shipping) and restocks for a pool
 * of orders, with repeats and no-ops mixed in, as the saga and clients produce them. */
static void test_product_snapshot_plus_tail_is_the_full_fold(void **state) {
  (void)state;
  static history h;
  for (uint64_t seed = 1; seed <= 12; seed++) {
    rng_state = seed * 0x9E3779B97F4A7C15ULL;
    h.n = 0;
    tl_product_state full;
    tl_product_state_init(&full);
    int64_t ms = T0;
    product_cmd(&h, &full, TL_CMD_CREATE_PRODUCT, NULL, rng_range(0, 30), ms);
    while (h.n < 300) {
      char oid[TL_ULID_LEN + 1];
      order_id_of((int)rng_range(0, 24), oid);
      ms += rng_range(0, 3);
      switch (rng() % 8) {
        case 0: product_cmd(&h, &full, TL_CMD_RESTOCK, NULL, rng_range(1, 9), ms); break;
        case 1:
        case 2:
        case 3: product_cmd(&h, &full, TL_CMD_RESERVE_STOCK, oid, rng_range(1, 7), ms); break;
        case 4:
        case 5: product_cmd(&h, &full, TL_CMD_RELEASE_STOCK, oid, 0, ms); break;
        default: product_cmd(&h, &full, TL_CMD_COMMIT_STOCK, oid, 0, ms); break;
      }
      assert_true(full.reserved >= 0 && full.reserved <= full.stock);
    }
    assert_int_equal(full.version, h.n);
    check_every_split_product(&h, &full);
    tl_product_state_clear(&full);
    history_clear(&h);
  }
}

/* Random order lifecycles: every command the saga or a client can send, in random order;
 * refused ones record nothing. */
static void test_order_snapshot_plus_tail_is_the_full_fold(void **state) {
  (void)state;
  static const tl_cmd_kind KINDS[] = {TL_CMD_MARK_RESERVED, TL_CMD_REJECT_ORDER,
                                      TL_CMD_CONFIRM_PAYMENT, TL_CMD_SHIP, TL_CMD_CANCEL};
  static const char *const TEXTS[] = {"", "OUT_OF_STOCK", "pay_1", "1Z999", "changed my mind"};
  static history h;
  int lengths[6] = {0};
  for (uint64_t seed = 1; seed <= 300; seed++) {
    rng_state = seed * 0xD1B54A32D192ED03ULL;
    h.n = 0;
    tl_order_state full;
    tl_order_state_init(&full);
    int64_t ms = T0;
    place(&h, &full, (int)seed, 1, ms);
    for (int i = 0; i < 8; i++) {
      size_t k = (size_t)(rng() % TL_ARRAY_LEN(KINDS));
      ms += rng_range(1, 1000);
      order_cmd(&h, &full, KINDS[k], TEXTS[k], ms);
    }
    assert_int_equal(full.version, h.n);
    lengths[h.n < 5 ? h.n : 5]++;
    check_every_split_order(&h, &full);
    tl_order_state_clear(&full);
    history_clear(&h);
  }
  /* The walks reached the interesting lengths: 2 (reserved, rejected or cancelled), 3 (e.g.
   * paid, or reserved then cancelled) and 4 (paid, then shipped or cancelled). */
  for (int n = 2; n <= 4; n++) assert_true(lengths[n] > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_round_trip),
      cmocka_unit_test(test_product_round_trip),
      cmocka_unit_test(test_other_schema_versions_are_refused),
      cmocka_unit_test(test_garbage_is_refused),
      cmocka_unit_test(test_product_snapshot_plus_tail_is_the_full_fold),
      cmocka_unit_test(test_order_snapshot_plus_tail_is_the_full_fold),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
