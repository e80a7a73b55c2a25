/* product.c: the product aggregate: catalog entry and units on hand. */
#include "domain/domain.h"

#include "util/tl_common.h"
#include "util/tl_money.h"

#include <stdio.h>
#include <string.h>

void tl_product_state_init(tl_product_state *s) {
  memset(s, 0, sizeof *s);
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
    if (!id || !name || !cat ||
        tl_money_from_json(json_object_get(data, "price"), &s->price_minor) != TL_OK)
      return TL_E_INVALID;
    snprintf(s->product_id, sizeof s->product_id, "%s", id);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->category, sizeof s->category, "%s", cat);
    snprintf(s->currency, sizeof s->currency, "%s", cur ? cur : "USD");
    s->stock = json_integer_value(json_object_get(data, "stock"));
    s->created_ms = recorded_ms;
  } else if (strcmp(type, "ProductRestocked") == 0) {
    s->stock += json_integer_value(json_object_get(data, "quantity"));
  }
  s->updated_ms = recorded_ms;
  return TL_OK;
}
