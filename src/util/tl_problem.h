/*
 * tl_problem.h: an RFC 9457 problem (the body of every error answer), built by the domain and
 * the HTTP layer alike.
 */
#ifndef TL_PROBLEM_H
#define TL_PROBLEM_H

#include <jansson.h>

typedef struct tl_problem {
  int status;          /* HTTP status: 400, 404, 409, 412, 422, 503 ... */
  const char *code;    /* static machine-readable code, e.g. "ALREADY_PAID" */
  char detail[256];    /* human-readable sentence */
  json_t *errors;      /* owned: array of {field, message}, or NULL */
  json_t *extra;       /* owned: extra members merged into the body, or NULL */
} tl_problem;

/* Sets status, code and detail (printf-style). Keeps errors/extra. */
void tl_problem_set(tl_problem *p, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends a field error {field, message} to p->errors (creating the array). */
void tl_problem_field(tl_problem *p, const char *field, const char *message);

/* Adds member key=value (value reference stolen) to p->extra. */
void tl_problem_extra(tl_problem *p, const char *key, json_t *value);

/* The response body as a new JSON object (type, title, status, detail, code, errors, extra). */
json_t *tl_problem_body(const tl_problem *p);

/* Frees errors and extra and zeroes *p; safe on a zeroed problem. */
void tl_problem_clear(tl_problem *p);

#endif
