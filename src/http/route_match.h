/*
 * route_match.h: the pure parsing half of routing: splitting a request path into segments,
 * matching them against a route pattern, and the small parsers of header and query-string
 * values that the handlers share.
 *
 * Nothing here touches a request, a connection or shared state: every function is a function of
 * its arguments, so routes.c uses them and tests/fuzz/fuzz_routes.c drives them directly.
 */
#ifndef TL_ROUTE_MATCH_H
#define TL_ROUTE_MATCH_H

#include <stdint.h>

#define TL_ROUTE_MAX_SEGMENTS 8
#define TL_ROUTE_MAX_SEGMENT_LEN 256 /* including the NUL */
#define TL_ROUTE_MAX_CAPTURES 2

/* Splits path (which must start with '/') into its segments, copied into seg. A trailing '/'
 * is ignored ("/orders/" is "/orders"), and so is a trailing "//" after a segment ("/orders//",
 * kept as routes.c always accepted it); "/" has no segments. Returns the count, or -1 if the
 * path does not start with '/', has an empty segment anywhere else ("//", "/a//b", "/a///"),
 * more than TL_ROUTE_MAX_SEGMENTS segments or a segment of TL_ROUTE_MAX_SEGMENT_LEN bytes or
 * more. */
int tl_route_split_path(const char *path,
                        char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN]);

/* Does pattern ("/orders/{}/ship": '/'-separated pieces, "{}" captures one segment) match the
 * n segments? Returns 1 and points caps[0..] at the captured segments (in seg, at most
 * TL_ROUTE_MAX_CAPTURES; caps beyond the captures are left untouched), or 0. */
int tl_route_match(const char *pattern, char seg[TL_ROUTE_MAX_SEGMENTS][TL_ROUTE_MAX_SEGMENT_LEN],
                   int n, const char *caps[TL_ROUTE_MAX_CAPTURES]);

/* Parses a non-negative decimal integer (digits only: no sign, no spaces, not empty) of at
 * most max. Returns 0 with *out set, or TL_E_INVALID (then *out is untouched). */
int tl_route_parse_uint(const char *s, int64_t max, int64_t *out);

/* Parses an If-Match value: a version number of at most 31 digits, quoted ("3") or not; W/ tags
 * are refused. Returns 0 with *out set, or TL_E_INVALID. */
int tl_route_parse_if_match(const char *s, int64_t *out);

/* True if k is a valid Idempotency-Key: 1 to 128 printable ASCII characters. */
int tl_route_valid_idem_key(const char *k);

/* True if the Content-Type value ct (may be NULL) is application/json, with or without
 * parameters ("application/json; charset=utf-8"), in any case, after leading spaces. */
int tl_route_is_json_content_type(const char *ct);

#endif
