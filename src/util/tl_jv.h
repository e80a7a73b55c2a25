/*
 * tl_jv.h: a read-only view of a JSON document, parsed in one pass without a malloc per value.
 *
 * The projector and the folds read the data of every event in the log. jansson's json_loads
 * builds a tree of separately allocated values with a hash table per object: 6 us for a
 * 400-byte OrderPlaced, about a quarter of the projector's CPU per event under load
 * (docs/performance.md). tl_jdoc_parse writes the values into one array of nodes in document
 * order (a container is followed by its members, each followed by its own) and the decoded
 * strings into one buffer; the document keeps both and reuses them for the next parse.
 *
 * What it accepts and reads is exactly what json_loads(text, 0) would (the fuzz target
 * fuzz_jv compares the two on every input): RFC 8259 JSON with an object or an array at the
 * top, valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), no \u0000,
 * integers that fit int64 and reals that do not overflow a double (both refused otherwise),
 * at most TL_JV_MAX_DEPTH levels of values. A name that repeats in an object is kept each
 * time; tl_jv_get finds the last one, the value jansson keeps.
 *
 *   tl_jdoc doc = {0};
 *   const tl_jv *root;
 *   if (tl_jdoc_parse(&doc, text, strlen(text), &root) == TL_OK) {
 *     const char *id = tl_jv_string(tl_jv_get(root, "orderId"));   (NULL: absent or no string)
 *     TL_JV_FOREACH(item, tl_jv_get(root, "items")) { ... }
 *   }
 *   tl_jdoc_free(&doc);
 *
 * Every accessor takes NULL or a value of another type and then answers "nothing" (NULL, 0),
 * like jansson's, so a missing member needs no check before the next call.
 */
#ifndef TL_JV_H
#define TL_JV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* jansson's JSON_PARSER_MAX_DEPTH: the top value is at depth 1. */
#define TL_JV_MAX_DEPTH 2048

typedef enum {
  TL_JV_OBJECT,
  TL_JV_ARRAY,
  TL_JV_STRING,
  TL_JV_INTEGER,
  TL_JV_REAL,
  TL_JV_TRUE,
  TL_JV_FALSE,
  TL_JV_NULL
} tl_jv_type;

/* One value. Valid until its document is parsed again or freed. */
typedef struct tl_jv {
  tl_jv_type type;
  uint32_t span;   /* nodes of this value, its members included: the next sibling is this + span */
  uint32_t count;  /* an object's members or an array's elements (0 for the others) */
  uint32_t len;    /* a string's length in bytes (it is also NUL-terminated) */
  const char *key; /* the member's name (decoded, NUL-terminated) inside an object, else NULL */
  union {
    const char *s; /* TL_JV_STRING, decoded */
    int64_t i;     /* TL_JV_INTEGER */
    double r;      /* TL_JV_REAL */
  } u;
} tl_jv;

/* A parsed document: owns the nodes and the strings. Zero-initialise; free with tl_jdoc_free.
 * One thread at a time. */
typedef struct tl_jdoc {
  tl_jv *nodes;
  size_t n, cap;
  char *str; /* decoded strings, one after the other */
  size_t str_cap;
  /* After a parse refused as not JSON (TL_E_INVALID): the offset of the first byte that made
   * it so (the start of a wrong token or value, the offending byte inside a string or number,
   * or the length when the text ends too early). */
  size_t err_offset;
} tl_jdoc;

/* Parses the len bytes at text (a NUL among them makes the text invalid, as it would end
 * jansson's). Returns TL_OK and the top value in *root, TL_E_INVALID for text json_loads
 * refuses, or TL_E_NOMEM (*root is NULL then). The values of the previous parse are gone. The
 * document keeps its buffers for the next parse, unless they are over 64 KiB and four times
 * what the new text needs. */
int tl_jdoc_parse(tl_jdoc *d, const char *text, size_t len, const tl_jv **root);
/* Releases the buffers; d can be parsed into again. */
void tl_jdoc_free(tl_jdoc *d);

/* A name that some object of the last successful parse holds twice, or NULL: what
 * json_loads(text, JSON_REJECT_DUPLICATES) refuses on top of json_loads(text, 0) (request
 * bodies, where a repeated name is ambiguous). O(n log n) in the members of the largest object.
 * NULL also when memory runs out for a large object's sort (*oom set then). */
const char *tl_jdoc_repeated_key(const tl_jdoc *d, bool *oom);

/* The last member called key of an object, or NULL. */
const tl_jv *tl_jv_get(const tl_jv *object, const char *key);

static inline bool tl_jv_is(const tl_jv *v, tl_jv_type type) {
  return v && v->type == type;
}
/* A string's decoded bytes (NUL-terminated), or NULL. */
static inline const char *tl_jv_string(const tl_jv *v) {
  return tl_jv_is(v, TL_JV_STRING) ? v->u.s : NULL;
}
static inline size_t tl_jv_string_len(const tl_jv *v) {
  return tl_jv_is(v, TL_JV_STRING) ? v->len : 0;
}
/* An integer's value, or 0 (also for a real, as json_integer_value). */
static inline int64_t tl_jv_integer(const tl_jv *v) {
  return tl_jv_is(v, TL_JV_INTEGER) ? v->u.i : 0;
}
/* A real's value, or 0. */
static inline double tl_jv_real(const tl_jv *v) {
  return tl_jv_is(v, TL_JV_REAL) ? v->u.r : 0.0;
}
/* Elements of an array, members of an object (each repeat of a name counted), else 0. */
static inline size_t tl_jv_size(const tl_jv *v) {
  return v && (v->type == TL_JV_OBJECT || v->type == TL_JV_ARRAY) ? v->count : 0;
}

/* The first member or element of a container and the end of its members (both NULL for
 * anything else), for TL_JV_FOREACH. */
static inline const tl_jv *tl_jv_first(const tl_jv *v) {
  return tl_jv_size(v) ? v + 1 : NULL;
}
static inline const tl_jv *tl_jv_end(const tl_jv *v) {
  return tl_jv_size(v) ? v + v->span : NULL;
}
/* Visits the elements of an array or the members of an object (child->key is the name), in
 * document order; nothing for another value or NULL. */
#define TL_JV_FOREACH(child, container)                                                   \
  for (const tl_jv *child = tl_jv_first(container), *child##_end_ = tl_jv_end(container); \
       child != child##_end_; child += child->span)

#endif
