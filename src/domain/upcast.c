/*
 * upcast.c: the registry of event schema versions and upcasters (see upcast.h).
 */
#include "domain/upcast.h"

#include "util/tl_money.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* One step: rewrites data (owned, a JSON object) from version `from` to `from + 1`. */
typedef int (*upcast_fn)(json_t *data);

typedef struct upcaster {
  const char *type;
  int from;
  upcast_fn fn;
} upcaster;

typedef struct schema {
  const char *type;
  int latest;
} schema;

/* OrderPlaced v1 was written before orders had a currency: they were all in US dollars. */
static int order_placed_v1_v2(json_t *data) {
  if (json_object_get(data, "currency")) return TL_OK;
  return json_object_set_new(data, "currency", json_string("USD")) == 0 ? TL_OK : TL_E_NOMEM;
}

static const schema SCHEMAS[] = {{"OrderPlaced", 2}};
static const upcaster UPCASTERS[] = {{"OrderPlaced", 1, order_placed_v1_v2}};

int tl_event_schema_version(const char *type) {
  for (size_t i = 0; i < TL_ARRAY_LEN(SCHEMAS); i++)
    if (strcmp(SCHEMAS[i].type, type) == 0) return SCHEMAS[i].latest;
  return 1;
}

static upcast_fn find(const char *type, int from) {
  for (size_t i = 0; i < TL_ARRAY_LEN(UPCASTERS); i++)
    if (UPCASTERS[i].from == from && strcmp(UPCASTERS[i].type, type) == 0) return UPCASTERS[i].fn;
  return NULL;
}

int tl_upcast(const char *type, int version, const char *data, char **out, int *out_version) {
  *out = NULL;
  int latest = tl_event_schema_version(type);
  if (version == latest) return TL_OK;
  if (version < 1 || version > latest) return TL_E_INVALID;
  json_t *j = json_loads(data, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    return TL_E_INVALID;
  }
  int rc = TL_OK;
  for (int v = version; rc == TL_OK && v < latest; v++) {
    upcast_fn fn = find(type, v);
    rc = fn ? fn(j) : TL_E_INVALID;
  }
  if (rc == TL_OK) {
    /* tl_json_dumps keeps exact amounts (money placeholders) as the writer does. */
    *out = tl_json_dumps(j);
    if (!*out)
      rc = TL_E_NOMEM;
    else
      *out_version = latest;
  }
  json_decref(j);
  return rc;
}
