/*
 * tl_jw.h: a streaming JSON writer for the hot answers (the read lane's queries).
 *
 * Building a jansson tree and dumping it costs a query most of its instructions (a malloc per
 * value, vsnprintf per number, the dump's own walk); this writer appends compact JSON straight
 * into one growing buffer and places the commas itself. Keys are trusted literals (written as
 * they are); string values are escaped; tl_jw_raw inserts JSON text the caller vouches for (a
 * read-model column that twinlane itself wrote as JSON).
 *
 *   tl_jw w = {0};
 *   tl_jw_object(&w);
 *   tl_jw_key(&w, "orderId"); tl_jw_string(&w, id);
 *   tl_jw_key(&w, "total");   tl_jw_money(&w, 12345);    -> {"orderId":"...","total":123.45}
 *   tl_jw_end(&w);
 *   char *text = tl_jw_take(&w);   (NULL once an allocation failed)
 *
 * Nesting is at most TL_JW_MAX_DEPTH deep; misuse (a value where a key is due) is the caller's
 * bug and is caught by assertions in debug builds.
 */
#ifndef TL_JW_H
#define TL_JW_H

#include "util/tl_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define TL_JW_MAX_DEPTH 32

typedef struct tl_jw {
  tl_buf buf;
  int depth;
  uint32_t has_member; /* bit d: the container at depth d + 1 already holds a member */
  uint32_t is_array;   /* bit d: the container at depth d + 1 is an array */
  bool after_key;      /* a key was written; its value comes next (no comma) */
} tl_jw;

void tl_jw_object(tl_jw *w);
void tl_jw_array(tl_jw *w);
/* Closes the innermost object or array. */
void tl_jw_end(tl_jw *w);

/* A member name inside an object: a string literal, not escaped. The quotes and the colon are
 * added at compile time, so writing a key is one append. */
#define tl_jw_key(w, key) tl_jw_key_quoted((w), "\"" key "\":", sizeof("\"" key "\":") - 1)
/* n bytes of a quoted member name and its colon ("\"key\":"), as tl_jw_key writes them. */
void tl_jw_key_quoted(tl_jw *w, const char *quoted, size_t n);

void tl_jw_string(tl_jw *w, const char *s);
void tl_jw_string_n(tl_jw *w, const char *s, size_t n);
void tl_jw_int(tl_jw *w, int64_t v);
void tl_jw_bool(tl_jw *w, bool v);
void tl_jw_null(tl_jw *w);
/* An exact amount of minor units as a JSON number with two decimals (as tl_money_format). */
void tl_jw_money(tl_jw *w, int64_t minor);
/* Milliseconds since the epoch as an ISO-8601 string (as tl_time_format). */
void tl_jw_time(tl_jw *w, int64_t ms);
/* n bytes of JSON text the caller vouches for, as one value. */
void tl_jw_raw(tl_jw *w, const char *json, size_t n);
/* n bytes of members ("\"a\":1,\"b\":2", as tl_jw wrote them into another object) for the
 * open object, after its members so far. */
void tl_jw_raw_members(tl_jw *w, const char *members, size_t n);

/* A jansson value, as tl_json_dumps writes it (money placeholders as exact numbers). A value
 * that cannot be written (a string that is not UTF-8) makes the text fail like an allocation. */
void tl_jw_json(tl_jw *w, const json_t *j);

/* True once an allocation failed, or a value could not be written (everything after it was
 * dropped). */
bool tl_jw_failed(const tl_jw *w);
/* The text (malloc'd, the caller frees), or NULL after an allocation failure or when nothing
 * was written; resets w. */
char *tl_jw_take(tl_jw *w);
/* Drops the text; w can be reused. */
void tl_jw_free(tl_jw *w);

#endif
