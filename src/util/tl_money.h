/*
 * tl_money.h: exact money. Amounts live as int64 minor units (cents) everywhere inside
 * twinlane; JSON numbers with at most two decimals are the wire form.
 */
#ifndef TL_MONEY_H
#define TL_MONEY_H

#include "util/tl_buf.h"
#include "util/tl_jv.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest amount accepted on the wire: 10,000,000,000.00 in minor units. Sums of up to
 * 100 items x 10,000 units of such amounts still fit in int64 without overflow. */
#define TL_MONEY_MAX_MINOR 1000000000000LL

/* Converts a JSON number with at most two decimals to minor units (or an exact money value made
 * by tl_money_to_json). Returns 0, or TL_E_INVALID for a non-number, more than two decimals, NaN/inf or a magnitude over TL_MONEY_MAX_MINOR.
 * Integers are taken exactly; a real is accepted only when v * 100 is within rounding error
 * (a few ulps) of a whole number of cents, so any third decimal is refused across the whole
 * accepted range. */
int tl_money_from_json(const json_t *j, int64_t *minor);
/* The same for a parsed value of tl_jv.h. */
int tl_money_from_jv(const tl_jv *v, int64_t *minor);

/* A new JSON value for an exact amount. Doubles cannot carry every int64 number of cents, so
 * the value is a placeholder (a string "\x01<decimal text>") that tl_json_dumps writes out as
 * the JSON number 123.45, exactly, whatever its size. Caller owns the reference. Client input
 * must be checked with json_is_number before tl_money_from_json, so a client can never send a
 * placeholder. */
json_t *tl_money_to_json(int64_t minor);

/* json_dumps (JSON_COMPACT) that writes money placeholders as exact numbers. Caller frees. */
char *tl_json_dumps(const json_t *j);
/* Appends tl_json_dumps' text of j to b. False for NULL, a string that is not UTF-8 or a
 * document too deep (b may then hold part of the text); an allocation failure sets b->oom. */
bool tl_json_dump_into(tl_buf *b, const json_t *j);
/* The same text for a value of tl_jv.h (that json_loads would have read as j), except that an
 * object's repeated name is written each time (jansson keeps it once). Caller frees; NULL for
 * NULL, invalid UTF-8 or out of memory. */
char *tl_jv_dumps(const tl_jv *v);

/* Writes "123.45" / "-0.05" into buf (at least 32 bytes). */
void tl_money_format(int64_t minor, char *buf, size_t len);

/* True if s is a currency code of ISO 4217 shape: three upper-case ASCII letters. */
int tl_currency_valid(const char *s);

#endif
