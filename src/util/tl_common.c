/* tl_common.c: error recording shared by all modules. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "util/tl_common.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

int tl_err_set(tl_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

const char *tl_strerror(int code) {
  switch (code) {
  case TL_OK: return "TL_OK";
  case TL_E_NOMEM: return "TL_E_NOMEM";
  case TL_E_IO: return "TL_E_IO";
  case TL_E_INVALID: return "TL_E_INVALID";
  case TL_E_CONFLICT: return "TL_E_CONFLICT";
  case TL_E_NOTFOUND: return "TL_E_NOTFOUND";
  case TL_E_CLOSED: return "TL_E_CLOSED";
  case TL_E_TIMEOUT: return "TL_E_TIMEOUT";
  default: return "TL_E_UNKNOWN";
  }
}

void tl_thread_name(const char *name) {
  char n[16];
  tl_strcpy(n, sizeof n, name);
  (void)pthread_setname_np(pthread_self(), n);
}
