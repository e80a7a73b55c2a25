/*
 * domain.h: the order service's write model as pure functions.
 *
 * Commands arrive decoded and validated (tl_cmd_decode), are decided against the aggregate's
 * current state (order_decide / product_decide: state + command -> events or a refusal), and
 * events are folded into state (order_evolve / product_evolve: state + event -> state).
 * Nothing here does I/O, takes a lock or reads a clock: every input is a parameter, so the
 * module is tested without a server and the same fold serves the writer, temporal queries and
 * snapshots (states as text and back: snapshot.c).
 *
 * Event types and their data (money as JSON numbers with two decimals):
 *   ProductCreated            {productId, name, category, price, currency, stock}
 *   ProductRestocked          {productId, quantity}
 *   StockReserved             {productId, orderId, quantity}
 *   StockReservationRejected  {productId, orderId, quantity, available}
 *   StockReleased             {productId, orderId, quantity}
 *   StockCommitted            {productId, orderId, quantity}   (shipped: leaves the stock)
 *   OrderPlaced               {orderId, customerId, items: [{productId, quantity, price}],
 *                              shippingAddress: {street, city, country, postalCode}, currency,
 *                              total}
 *   OrderReserved             {orderId}
 *   OrderRejected             {orderId, reason}
 *   PaymentConfirmed          {orderId, paymentId}
 *   OrderShipped              {orderId, trackingNumber}
 *   OrderCancelled            {orderId, reason}
 * Every type is at schema version 1.
 *
 * Stock: `stock` is units on hand, `reserved` the units held by live orders (one reservation per
 * order and product), available = stock - reserved, never negative: a reservation that does
 * not fit is recorded as StockReservationRejected, not refused, so the order saga learns of it
 * from the log.
 */
#ifndef TL_DOMAIN_H
#define TL_DOMAIN_H

#include "util/tl_id.h"
#include "util/tl_jv.h"
#include "util/tl_jw.h"
#include "util/tl_problem.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define TL_ORDER_MAX_ITEMS 100
#define TL_ORDER_MAX_QTY 10000
#define TL_REASON_CODE_MAX 63 /* rejection reasons are codes, not prose */

typedef enum {
  TL_CMD_CREATE_PRODUCT,
  TL_CMD_RESTOCK,
  TL_CMD_PLACE_ORDER,
  TL_CMD_CONFIRM_PAYMENT,
  TL_CMD_SHIP,
  TL_CMD_CANCEL,
  /* Issued by the order saga (process manager), not by clients: */
  TL_CMD_RESERVE_STOCK, /* product: hold quantity for an order (no-op if it already holds) */
  TL_CMD_RELEASE_STOCK, /* product: give an order's reservation back (no-op if none) */
  TL_CMD_COMMIT_STOCK,  /* product: the order shipped: its reserved units leave the stock */
  TL_CMD_MARK_RESERVED, /* order: every item is reserved */
  TL_CMD_REJECT_ORDER,  /* order: an item could not be reserved */
  TL_CMD_RESERVE_ORDER, /* order: reserve every item's stock at once, all or nothing
                         * (tl_order_decide_reservation); no-op unless PENDING */
  TL_CMD__COUNT
} tl_cmd_kind;

/* Static name of a command kind ("place_order"), for metrics and logs. */
const char *tl_cmd_name(tl_cmd_kind kind);

/* True for commands that act on an order stream (as opposed to a product stream). */
bool tl_cmd_is_order(tl_cmd_kind kind);

typedef struct tl_order_line {
  char product_id[TL_PRODUCT_ID_MAX + 1];
  int64_t quantity;
  int64_t price_minor;
} tl_order_line;

/* A decoded, validated command. Strings are copies; body is a reference the command owns
 * (released by tl_cmd_clear). */
typedef struct tl_cmd {
  tl_cmd_kind kind;
  /* Target aggregate id: productId, or orderId (empty for place_order until the writer assigns
   * one). */
  char id[TL_PRODUCT_ID_MAX + 1];
  /* Limits are in characters; buffers hold 4 bytes of UTF-8 per character. */
  char name[801];
  char category[401];
  char currency[4];
  char customer_id[TL_UUID_LEN + 1];
  char text[2001]; /* paymentId, trackingNumber or reason */
  char order_id[TL_ULID_LEN + 1]; /* the order a stock command is for */
  int64_t price_minor;
  int64_t quantity; /* stock for create_product, quantity for restock and stock commands */
  int n_items;
  tl_order_line items[TL_ORDER_MAX_ITEMS];
  json_t *shipping; /* owned reference: the validated shippingAddress object */
} tl_cmd;

/* Empties a command: every scalar zero, every string empty, no lines. The large buffers are
 * not cleared past their first byte (a tl_cmd is ~12 kB): nothing reads beyond a string's NUL
 * or past n_items. */
void tl_cmd_init(tl_cmd *c);

/* Decodes and validates body (a JSON object) for a command of kind on the aggregate named by
 * path_id (NULL for creations). Returns 0 with *out filled (out->id is exactly path_id), or
 * TL_E_INVALID with *p holding a 400 VALIDATION_FAILED problem listing every field error, or
 * TL_E_NOTFOUND with a 404 ORDER_NOT_FOUND / PRODUCT_NOT_FOUND problem when the body is valid
 * but path_id is too long to be any aggregate's id (more than TL_PRODUCT_ID_MAX bytes). *out
 * must be released with tl_cmd_clear in every case. */
int tl_cmd_decode(tl_cmd_kind kind, const char *path_id, const tl_jv *body, tl_cmd *out,
                  tl_problem *p);
void tl_cmd_clear(tl_cmd *c);

typedef enum {
  TL_ORDER_NONE = 0, /* no such order (version 0) */
  TL_ORDER_PENDING,   /* placed, stock not yet reserved */
  TL_ORDER_RESERVED,  /* every item's stock is reserved */
  TL_ORDER_REJECTED,  /* an item was out of stock (closed) */
  TL_ORDER_PAID,
  TL_ORDER_SHIPPED,
  TL_ORDER_CANCELLED, /* closed */
} tl_order_status;

const char *tl_order_status_name(tl_order_status s);

typedef struct tl_order_state {
  int64_t version; /* stream version: number of events folded */
  tl_order_status status;
  char order_id[TL_ULID_LEN + 1];
  char customer_id[TL_UUID_LEN + 1];
  char currency[4];
  int64_t total_minor;
  int n_items;
  tl_order_line *items; /* owned array of n_items (malloc), NULL when empty */
  json_t *shipping;     /* owned reference or NULL */
  char rejection_reason[TL_REASON_CODE_MAX + 1]; /* a code such as "OUT_OF_STOCK" */
  int64_t created_ms, updated_ms;
} tl_order_state;

typedef struct tl_product_state {
  int64_t version; /* 0: the product does not exist */
  char product_id[TL_PRODUCT_ID_MAX + 1];
  char name[801];
  char category[401];
  char currency[4];
  int64_t price_minor;
  int64_t stock;    /* units on hand */
  int64_t reserved; /* units held by reservations */
  struct tl_map *reservations; /* owned: order id -> int64_t* units; NULL while empty */
  int64_t created_ms, updated_ms;
} tl_product_state;

/* An event produced by a decision, not yet in the log. data is owned. */
typedef struct tl_new_event {
  const char *type; /* static string */
  json_t *data;
} tl_new_event;

#define TL_DECISION_MAX_EVENTS 2

typedef struct tl_decision {
  int n_events;
  tl_new_event events[TL_DECISION_MAX_EVENTS];
  tl_problem problem; /* filled on refusal */
} tl_decision;

void tl_decision_clear(tl_decision *d);

/* Looks up a product of the catalog for order placement; returns NULL if it does not exist.
 * The pointer stays valid for the duration of the decide call. */
typedef const tl_product_state *(*tl_product_lookup)(void *ctx, const char *product_id);

/* Decides an order command against state s (version 0 = no such order). For place_order,
 * c->id must already hold the new order id and lookup resolves the catalog.
 * Returns 0 with d->events filled, or a negative code with d->problem set:
 *   TL_E_NOTFOUND (404 ORDER_NOT_FOUND), TL_E_CONFLICT (409 with the rule's code),
 *   TL_E_INVALID (400: an unknown product, as a field error). */
int tl_order_decide(const tl_order_state *s, const tl_cmd *c, tl_product_lookup lookup,
                    void *lookup_ctx, tl_decision *d);

/* Decides a product command against state s (version 0 = no such product). Returns 0, or
 * TL_E_CONFLICT (409 PRODUCT_EXISTS), TL_E_NOTFOUND (404 PRODUCT_NOT_FOUND). */
int tl_product_decide(const tl_product_state *s, const tl_cmd *c, tl_decision *d);

/* Units s can still reserve: stock - reserved (saturating on a damaged log). */
int64_t tl_product_available(const tl_product_state *s);

/* The stock decision of kind (reserve / release / commit) for order_id on the existing product
 * s: *ev becomes StockReserved, StockReservationRejected (with `available`), StockReleased or
 * StockCommitted with owned data, or has type NULL when nothing changes (the order already
 * holds a reservation; nothing held to release or commit). quantity (>= 1) is the reserve's.
 * Returns TL_OK or TL_E_NOMEM (ev empty). */
int tl_product_decide_stock(const tl_product_state *s, tl_cmd_kind kind, const char *order_id,
                            int64_t quantity, tl_new_event *ev);

/* A decision over several streams: reserve_order decides the order and every product it lists
 * in one step, so the writer appends their events in one batch (one commit). */
typedef struct tl_reservation {
  int n_stock;
  struct {
    const char *product_id; /* points into the order state's items */
    tl_new_event event;
  } stock[TL_ORDER_MAX_ITEMS];
  tl_decision order; /* OrderReserved or OrderRejected; no event for a no-op; problem on refusal */
} tl_reservation;

/* Decides reserve_order for order s, all or nothing: lookup resolves each product. Quantities
 * are summed per product (an order may list one twice). If every product exists and has the
 * units available (or already holds them for this order): StockReserved on each product that
 * does not hold them yet, then OrderReserved. Otherwise: StockReservationRejected on each
 * product that lacks the units (with `available`), StockReleased on any that already held some
 * for this order, then OrderRejected {reason: OUT_OF_STOCK}; products that would have fitted
 * record nothing. An order that is not PENDING (settled, or cancelled first) decides nothing.
 * Returns 0, or TL_E_NOTFOUND (404 ORDER_NOT_FOUND in r->order.problem) / TL_E_NOMEM.
 * Release with tl_reservation_clear. */
int tl_order_decide_reservation(const tl_order_state *s, tl_product_lookup lookup, void *lookup_ctx,
                                tl_reservation *r);
void tl_reservation_clear(tl_reservation *r);

/* Folds one event (type, data, recorded time) into s and increments s->version. Unknown types
 * bump the version and the update time only. Returns 0, or TL_E_INVALID if data lacks a field
 * the type needs, has a string too long for the state (strings are never cut) or a count that
 * would overflow int64 (an order total, stock, reserved units); the state is then unchanged
 * apart from the version. A second StockReserved for an order replaces its reservation. */
int tl_order_evolve(tl_order_state *s, const char *type, const json_t *data, int64_t recorded_ms);
int tl_product_evolve(tl_product_state *s, const char *type, const json_t *data,
                      int64_t recorded_ms);

/* Initialise / release states. tl_order_state_copy makes dst an independent copy. */
void tl_order_state_init(tl_order_state *s);
void tl_order_state_clear(tl_order_state *s);
void tl_order_state_copy(tl_order_state *dst, const tl_order_state *src);
void tl_product_state_init(tl_product_state *s);
void tl_product_state_clear(tl_product_state *s);
/* Units order_id holds on the product (0: no reservation). */
int64_t tl_product_reserved_for(const tl_product_state *s, const char *order_id);

/* The name of a product for an order view (NULL or "": unknown). */
typedef const char *(*tl_order_name_fn)(void *arg, const char *product_id);

/* Writes the order as the API shows it, one JSON object value, into out: orderId, customerId,
 * status, items [{productId, quantity, price, and name when name_of is given}], total,
 * currency, shippingAddress, createdAt, updatedAt, version, rejectionReason (null unless
 * REJECTED). Running out of memory shows as tl_jw_failed(out). */
void tl_order_state_write(const tl_order_state *s, tl_jw *out, tl_order_name_fn name_of, void *arg);
/* The same view (without names) read back as a jansson tree, for tests. New reference, or
 * NULL when out of memory. */
json_t *tl_order_state_json(const tl_order_state *s);

/* ---- Snapshots (snapshot.c) ------------------------------------------------------------------
 * A folded state as text, so that loading an aggregate is "decode the latest snapshot, fold the
 * events after its version" instead of a fold of the whole stream. The text carries every field
 * of the state (product reservations per order included) at a schema version; a snapshot of
 * another schema version, or text that is not a valid snapshot, is refused and the caller folds
 * the whole stream instead. Bump a schema version whenever its layout or the meaning of a
 * state field changes. */
#define TL_ORDER_SNAPSHOT_SCHEMA 1
#define TL_PRODUCT_SNAPSHOT_SCHEMA 1

/* The state as snapshot text (compact JSON) of the current schema version. Returns a malloc'd
 * string the caller frees, or NULL when out of memory. */
char *tl_order_snapshot_encode(const tl_order_state *s);
char *tl_product_snapshot_encode(const tl_product_state *s);

/* Rebuilds *out (initialised by the call, released by the caller with tl_*_state_clear) from
 * snapshot text (NUL-terminated) stored at schema_version. Returns 0; TL_E_INVALID when
 * schema_version is not the current one or text is not a valid snapshot (a missing or mistyped
 * member, a string too long for its field, a version below 1, reservations that do not add up
 * to reserved); TL_E_NOMEM. On failure *out is an empty state (version 0). */
int tl_order_snapshot_decode(tl_order_state *out, int schema_version, const char *text);
int tl_product_snapshot_decode(tl_product_state *out, int schema_version, const char *text);

/* Stream names: "order-<id>", "product-<id>". out must hold at least 80 bytes. */
void tl_stream_name(char *out, size_t len, bool is_order, const char *id);

#endif
