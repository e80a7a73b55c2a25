/*
 * tl_http.c: libmicrohttpd plumbing: a small pool of epoll threads serves every connection;
 * a handler that has to wait (for the group commit, or for the read lane to reach a position)
 * suspends its connection instead of blocking a thread, and is resumed by the writer or the
 * projector. Also: body accumulation with the 1 MiB limit, correlation ids, and turning a
 * tl_resp into a response.
 */
#include "http/http_int.h"

#include "util/tl_id.h"
#include "util/tl_money.h"
#include "util/tl_slog.h"
#include "util/tl_time.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

struct tl_http {
  struct MHD_Daemon *daemon;
  tl_app *app;
  uint16_t port;
  /* Requests suspended and not yet continued: the daemon must not be stopped while any is
   * left (their continuation reaches the app). */
  _Atomic int suspended;
  /* Requests continued after a wait whose answer is not sent yet (or their peer gone): the stop
   * gives them a short grace, so that an answer just queued is not cut off. */
  _Atomic int sending;
  _Atomic int stopping;
  _Atomic int abandoned; /* tl_http_stop left the daemon running: the rest of the app is gone */
};

/* Per-request state, from the first call of the access handler to the completion callback. */
typedef struct conn_state {
  char *body;
  size_t len, cap;
  int too_large; /* 1: over the limit, 2: the 413 is already queued */
  int started;   /* the route handler has run */
  tl_req req;
} conn_state;

void tl_req_suspend(tl_req *req, tl_req_cont cont) {
  atomic_fetch_add(&req->http->suspended, 1);
  req->cont = cont;
  req->suspending = 1;
  MHD_suspend_connection(req->conn);
}

void tl_req_resume(tl_req *req) {
  MHD_resume_connection(req->conn);
}

int tl_req_stopping(const tl_req *req) {
  return atomic_load(&req->http->stopping);
}

void tl_resp_text(tl_resp *resp, int status, const char *content_type, char *body) {
  resp->status = status;
  resp->content_type = content_type;
  free(resp->body);
  resp->body = body;
}

void tl_resp_json(tl_resp *resp, int status, json_t *body) {
  char *text = body ? tl_json_dumps(body) : NULL;
  json_decref(body);
  if (body && !text)
    tl_resp_text(resp, 500, "application/problem+json", NULL);
  else
    tl_resp_text(resp, status, "application/json", text);
}

void tl_resp_problem(tl_resp *resp, tl_problem *p) {
  json_t *b = tl_problem_body(p);
  tl_resp_json(resp, p->status, b);
  resp->content_type = "application/problem+json";
  tl_problem_clear(p);
}

void tl_resp_error(tl_resp *resp, int status, const char *code, const char *detail) {
  tl_problem p = {0};
  tl_problem_set(&p, status, code, "%s", detail);
  tl_resp_problem(resp, &p);
}

const char *tl_req_arg(const tl_req *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *tl_req_header(const tl_req *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

static int valid_correlation_id(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e || n >= 128) return 0;
  return n > 0;
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, const tl_req *req, tl_resp *resp) {
  size_t len = resp->body ? strlen(resp->body) : 0;
  struct MHD_Response *r = MHD_create_response_from_buffer(len, resp->body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(resp->body);
    resp->body = NULL;
    return MHD_NO;
  }
  resp->body = NULL; /* owned by the response now */
  if (len) MHD_add_response_header(r, "Content-Type", resp->content_type);
  MHD_add_response_header(r, "X-Correlation-Id", req->correlation_id);
  if (resp->etag[0]) MHD_add_response_header(r, "ETag", resp->etag);
  if (resp->position[0]) MHD_add_response_header(r, "X-Position", resp->position);
  if (resp->allow[0]) MHD_add_response_header(r, "Allow", resp->allow);
  if (resp->replayed) MHD_add_response_header(r, "Idempotent-Replayed", "true");
  if (resp->retry_after > 0) {
    char ra[16];
    snprintf(ra, sizeof ra, "%d", resp->retry_after);
    MHD_add_response_header(r, "Retry-After", ra);
  }
  enum MHD_Result ok = MHD_queue_response(conn, (unsigned)resp->status, r);
  MHD_destroy_response(r);
  return ok;
}

static void init_req(tl_req *req, struct MHD_Connection *conn, tl_http *h, const char *method,
                     const char *url) {
  memset(req, 0, sizeof *req);
  req->conn = conn;
  req->http = h;
  req->app = h->app;
  req->method = method;
  req->path = url;
  req->t0_ns = tl_mono_ns();
  const char *cid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Correlation-Id");
  if (cid && valid_correlation_id(cid))
    tl_strcpy(req->correlation_id, sizeof req->correlation_id, cid);
  else
    tl_uuid_v4(req->correlation_id);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  tl_http *h = cls;
  conn_state *cs = *con_cls;
  if (!cs) {
    cs = calloc(1, sizeof *cs);
    if (!cs) return MHD_NO;
    *con_cls = cs;
    /* Refuse a declared oversize body before reading it. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > TL_HTTP_MAX_BODY) {
      tl_req req;
      init_req(&req, conn, h, method, url);
      tl_resp resp = {0};
      tl_resp_error(&resp, 413, "BODY_TOO_LARGE", "The body is larger than 1 MiB.");
      cs->too_large = 2; /* answered */
      return send_resp(conn, &req, &resp);
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (cs->too_large) return MHD_YES;
    if (cs->len + n > TL_HTTP_MAX_BODY) {
      cs->too_large = 1;
      free(cs->body);
      cs->body = NULL;
      cs->len = cs->cap = 0;
      return MHD_YES;
    }
    if (cs->len + n + 1 > cs->cap) {
      size_t cap = cs->cap ? cs->cap : 1024;
      while (cap < cs->len + n + 1) cap *= 2;
      char *b = realloc(cs->body, cap);
      if (!b) return MHD_NO;
      cs->body = b;
      cs->cap = cap;
    }
    memcpy(cs->body + cs->len, upload_data, n);
    cs->len += n;
    cs->body[cs->len] = '\0';
    return MHD_YES;
  }
  if (cs->too_large == 2) return MHD_YES; /* the 413 is queued already */

  tl_req *req = &cs->req;
  tl_resp resp = {0};
  if (!cs->started) {
    cs->started = 1;
    init_req(req, conn, h, method, url);
    req->body = cs->body ? cs->body : "";
    req->body_len = cs->len;
    if (cs->too_large)
      tl_resp_error(&resp, 413, "BODY_TOO_LARGE", "The body is larger than 1 MiB.");
    else if (atomic_load(&h->abandoned))
      tl_resp_error(&resp, 503, "SHUTTING_DOWN", "The server is shutting down.");
    else
      tl_route(req, &resp);
  } else if (req->cont) {
    tl_req_cont cont = req->cont; /* resumed after a wait */
    req->cont = NULL;
    if (!req->waited) atomic_fetch_add(&h->sending, 1); /* before the drop below: never both 0 */
    req->waited = 1;
    atomic_fetch_sub(&h->suspended, 1);
    cont(req, &resp);
  } else {
    return MHD_YES; /* spurious call while suspended; cannot happen */
  }
  if (req->suspending) {
    req->suspending = 0;
    return MHD_YES;
  }
  if (resp.status >= 500)
    tl_slog(TL_SLOG_ERROR, req->correlation_id, "request failed", "method", method, "path", url,
            "detail", resp.body ? resp.body : "", NULL);
  (void)version;
  return send_resp(conn, req, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)conn;
  (void)toe;
  conn_state *cs = *con_cls;
  if (!cs) return;
  tl_http *h = cls;
  if (cs->req.cont)
    atomic_fetch_sub(&h->suspended, 1); /* resumed, then closed by the peer */
  else if (cs->req.waited)
    atomic_fetch_sub(&h->sending, 1); /* sent, or the peer left */
  if (cs->req.state && cs->req.free_state) cs->req.free_state(cs->req.state);
  free(cs->body);
  free(cs);
  *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  tl_slog(TL_SLOG_WARN, NULL, "http", "detail", msg, NULL);
}

int tl_http_start(tl_http **out, tl_app *app, const char *host, uint16_t port, int threads,
                  tl_err *err) {
  *out = NULL;
  if (threads < 1) threads = 1;
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
    return tl_err_set(err, TL_E_INVALID, "listen address %s is not an IPv4 address", host);
  tl_http *h = calloc(1, sizeof *h);
  if (!h) return tl_err_set(err, TL_E_NOMEM, "out of memory");
  h->app = app;
  h->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, port, NULL,
      NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)2048, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
      /* Per-connection pool (headers, read buffer): MHD clears it for every request, so its
       * size is paid by every request (32 KiB by default: a third of an order view's
       * instructions). 16 KiB still takes 12 KiB of headers; more gets 431. */
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_THREAD_POOL_SIZE,
      (unsigned)threads, MHD_OPTION_END);
  if (!h->daemon) {
    free(h);
    return tl_err_set(err, TL_E_IO, "cannot listen on %s:%u", host, port);
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
  h->port = info ? info->port : port;
  *out = h;
  return TL_OK;
}

uint16_t tl_http_port(const tl_http *h) {
  return h->port;
}

int tl_http_stop(tl_http *h) {
  if (!h) return 1;
  /* libmicrohttpd must not be stopped with suspended connections: refuse new commands and
   * waits (503 and stale answers from here on), and give the writer and the projector (still
   * running) time to answer the suspended ones. The listening socket stays open meanwhile:
   * MHD_quiesce_daemon on an epoll daemon with its own threads races with the worker threads,
   * which remove the listen socket from their epoll sets too, and the loser aborts the process
   * ("Failed to remove listen FD from epoll set", an open defect of libmicrohttpd 0.9.75; it
   * failed a CI run's SIGTERM at random). */
  atomic_store(&h->stopping, 1);
  int64_t give_up_ns = tl_mono_ns() + 15000LL * 1000000;
  while (atomic_load(&h->suspended) > 0 && tl_mono_ns() < give_up_ns) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  if (atomic_load(&h->suspended) > 0) {
    /* A command still waits for its fsync (a stalled disk): the syncer will resume its
     * connection when the writer is stopped, so the daemon must stay alive. The process is
     * exiting: leave it running rather than free what the syncer will touch. */
    tl_slog(TL_SLOG_ERROR, NULL,
            "requests still suspended at shutdown; leaving the HTTP daemon until they are answered",
            NULL);
    atomic_store(&h->abandoned, 1); /* new requests must not reach the stores being closed */
    return 0;
  }
  /* Answers of continued requests still on their way out: a short grace (a peer that does not
   * read is cut off after it). */
  int64_t grace_ns = tl_mono_ns() + 2000LL * 1000000;
  while (atomic_load(&h->sending) > 0 && tl_mono_ns() < grace_ns) {
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  MHD_stop_daemon(h->daemon);
  free(h);
  return 1;
}
