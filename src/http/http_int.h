/*
 * http_int.h: what the HTTP plumbing (tl_http.c) and the route handlers (routes.c) share.
 */
#ifndef TL_HTTP_INT_H
#define TL_HTTP_INT_H

#include "http/tl_http.h"
#include "util/tl_problem.h"

#include <jansson.h>
#include <microhttpd.h>

#define TL_HTTP_MAX_BODY (1024 * 1024)

typedef struct tl_req tl_req;
typedef struct tl_resp tl_resp;

/* A handler's continuation after an asynchronous wait. */
typedef void (*tl_req_cont)(tl_req *req, tl_resp *resp);

struct tl_req {
  struct MHD_Connection *conn;
  struct tl_http *http;
  tl_app *app;
  const char *method;
  const char *path;
  char params[2][256]; /* path segments captured by {} in the route (copies: they outlive a
                          * suspension) */
  const char *body;      /* NUL-terminated; body_len bytes */
  size_t body_len;
  char correlation_id[129];
  int64_t t0_ns; /* when handling started, for latency metrics */

  /* Asynchronous handling (see tl_req_suspend). */
  tl_req_cont cont;
  int suspending;           /* set by tl_req_suspend during the current call */
  int waited;               /* was suspended: counted in unanswered until its response is sent */
  void *state;              /* the handler's state across the wait (owned) */
  void (*free_state)(void *state);
  int wait_rc;              /* result of a read-lane wait */
};

struct tl_resp {
  int status;
  char *body; /* malloc'd, owned; NULL for an empty body */
  const char *content_type;
  char etag[32];
  char position[24];
  char allow[64];
  int retry_after; /* seconds, 0: none */
  int replayed;    /* Idempotent-Replayed: true */
};

/* Suspends the request: the handler returns without a response, and once another thread calls
 * tl_req_resume, cont(req, resp) runs on an HTTP thread to answer (or suspend again). Call it
 * before starting the asynchronous work, so the resume can never come first. */
void tl_req_suspend(tl_req *req, tl_req_cont cont);
/* Resumes a suspended request; safe from any thread. */
void tl_req_resume(tl_req *req);
/* True once the server is stopping: handlers must answer at once instead of suspending. */
int tl_req_stopping(const tl_req *req);

/* Fills resp with a body already rendered (malloc'd text, ownership taken) and status. */
void tl_resp_text(tl_resp *resp, int status, const char *content_type, char *body);
/* Fills resp with a JSON body (reference stolen) and status. */
void tl_resp_json(tl_resp *resp, int status, json_t *body);
/* Fills resp with the problem's body (problem+json) and clears the problem. */
void tl_resp_problem(tl_resp *resp, tl_problem *p);
/* Shorthand for a problem without field errors. */
void tl_resp_error(tl_resp *resp, int status, const char *code, const char *detail);

/* The value of a query-string argument, or NULL. */
const char *tl_req_arg(const tl_req *req, const char *name);
/* The value of a request header, or NULL. */
const char *tl_req_header(const tl_req *req, const char *name);

/* Dispatches req to its route; always fills resp. */
void tl_route(tl_req *req, tl_resp *resp);

/* Renders the Prometheus text of /metrics. */
char *tl_metrics_text(tl_app *app);

#endif
