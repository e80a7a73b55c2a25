/* tl_problem.c: building problem+json bodies. */
#include "util/tl_problem.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tl_problem_set(tl_problem *p, int status, const char *code, const char *fmt, ...) {
  va_list ap;
  p->status = status;
  p->code = code;
  va_start(ap, fmt);
  vsnprintf(p->detail, sizeof p->detail, fmt, ap);
  va_end(ap);
}

void tl_problem_field(tl_problem *p, const char *field, const char *message) {
  if (!p->errors) p->errors = json_array();
  if (!p->errors) return;
  json_array_append_new(p->errors, json_pack("{s:s, s:s}", "field", field, "message", message));
}

void tl_problem_extra(tl_problem *p, const char *key, json_t *value) {
  if (!p->extra) p->extra = json_object();
  if (!p->extra) {
    json_decref(value);
    return;
  }
  json_object_set_new(p->extra, key, value);
}

static const char *title_for(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Content";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

json_t *tl_problem_body(const tl_problem *p) {
  char type[96];
  snprintf(type, sizeof type, "https://twinlane.dev/problems/%s", p->code ? p->code : "error");
  for (char *c = type + strlen("https://twinlane.dev/problems/"); *c; c++)
    if (*c == '_') *c = '-';
  json_t *b = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title_for(p->status),
                        "status", p->status, "detail", p->detail, "code",
                        p->code ? p->code : "ERROR");
  if (!b) return NULL;
  if (p->errors) json_object_set(b, "errors", p->errors);
  if (p->extra) json_object_update(b, p->extra);
  return b;
}

void tl_problem_clear(tl_problem *p) {
  json_decref(p->errors);
  json_decref(p->extra);
  memset(p, 0, sizeof *p);
}
