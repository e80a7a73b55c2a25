/*
 * tl_http.h: the HTTP front end (libmicrohttpd): routes requests of the API contract to the
 * command lane (tl_writer), the query lane (tl_read) and the log, and renders answers and
 * problem+json errors.
 */
#ifndef TL_HTTP_H
#define TL_HTTP_H

#include "log/tl_log.h"
#include "read/tl_read.h"
#include "saga/tl_saga.h"
#include "write/tl_writer.h"

#include <stdint.h>

/* The components a server serves; all borrowed, they outlive the HTTP server. */
typedef struct tl_app {
  tl_log *log;
  tl_writer *writer;
  tl_read *read;
  tl_saga *saga;    /* process managers */
  int ready_lag_ms; /* /ready fails when a projection is further behind than this */
  int failpoints_enabled; /* --enable-failpoints: the /admin/failpoints routes exist */
} tl_app;

typedef struct tl_http tl_http;

/* Starts serving on host:port (port 0: any free port; see tl_http_port) with a pool of
 * `threads` event-loop threads. */
int tl_http_start(tl_http **out, tl_app *app, const char *host, uint16_t port, int threads,
                  tl_err *err);
/* The port actually bound. */
uint16_t tl_http_port(const tl_http *h);
/* Stops accepting, waits (up to 15 s) for suspended requests, then (up to 2 s) for the answers
 * of resumed ones to be sent, stops the daemon and frees h; returns 1. If requests are still suspended then (a command waiting for a stalled fsync), it
 * refuses new requests, leaves the daemon running so that their answers can still be sent, and
 * returns 0: call again once whatever answers them (the writer) has stopped. NULL: 1. */
int tl_http_stop(tl_http *h);

#endif
