/*
 * twinlane-bench: a closed-loop HTTP/1.1 load generator for the twinlane server.
 *
 * One thread drives --connections keep-alive connections with non-blocking sockets and epoll.
 * Every connection has at most one request in flight and sends the next one as soon as the
 * answer is in (closed loop: no pipelining, no think time), so the offered load follows what the
 * server can do and the client stays cheap on a machine whose cores it shares with the server.
 *
 * A run goes through these phases:
 *   probe     GET /health on a control connection until it answers 2xx (else: unreachable);
 *   seed      optional: POST /products bench-p<i> (--seed-products), and in reads mode a few
 *             hundred orders so that there is something to read; not measured;
 *   sync      after seeding: one query with minPosition = the last setup position, so that the
 *             load starts on a read lane that reflects the setup;
 *   load      warm-up (--warmup-s), then the measured window (--duration-s). GET /metrics is
 *             read on the control connection when the window opens;
 *   drain     no new requests; GET /metrics once more, and the answers still due are awaited
 *             (at most DRAIN_BUDGET_MS); then the report.
 * Only requests that start and finish inside the measured window are counted, except that a
 * request still unanswered when the drain gives up counts as a failure wherever it started.
 *
 * Guarantees: the run is bounded in time (setup at most SETUP_BUDGET_S, the load phase at most
 * warm-up + duration + 10 s, enforced by SIGALRM as a last resort); the exit status is 0 on
 * success, 1 on a usage error, 2 when the server was unreachable or the setup failed, 3 when the
 * hard time limit fired, 4 when more than 1% of the measured requests failed (any non-2xx answer
 * or a transport failure) or none completed.
 *
 * Nothing here parses JSON in general: request bodies are built with snprintf and the few fields
 * the workload needs (orderId, position) are pulled out of answers by a small scanner that only
 * looks at the members of the outermost object.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Limits and constants
 * ------------------------------------------------------------------------------------------- */

enum {
  EXIT_USAGE = 1,
  EXIT_UNREACHABLE = 2, /* also: the setup failed */
  EXIT_HARD_STOP = 3,
  EXIT_TOO_MANY_ERRORS = 4,
  EXIT_MISMATCH = 5, /* flash-sale: the outcome of the orders or the stock is not what it must be */
};

#define SETUP_BUDGET_S 60     /* probe + seeding, whatever the size of the catalogue */
#define PROBE_BUDGET_MS 5000  /* how long the first GET /health may keep failing */
#define DRAIN_BUDGET_MS 5000  /* how long the final GET /metrics and late answers may take */
#define HARD_STOP_GRACE_S 10  /* load phase: warm-up + duration + this, then SIGALRM */
#define CONNECT_BACKOFF_MS 50 /* delay before reconnecting after a failed connect */
#define MAX_CONNECTIONS 4096
#define WBUF_CAP 4096 /* one request: head and body */
#define RBUF_INITIAL 16384
#define RBUF_MAX (64u << 20)         /* one response, head and body, at most 64 MiB */
#define HEAD_MAX 65536               /* status line and headers */
#define ID_MAX 72                    /* an orderId (a ULID is 26 chars) with room to spare */
#define UNPAID_MAX 8                 /* orders a connection remembers for confirm-payment */
#define POOL_MAX 4096                /* recently placed orders, for GET /orders/{id} */
#define POOL_MIN_AGE_NS 500000000ull /* a pooled order is read only once acked this long ago */
#define N_CUSTOMERS 1000
#define READS_SEED_ORDERS 500 /* default --seed-orders: orders placed in setup by --mode reads */
#define ERROR_SAMPLES 8       /* failed requests kept verbatim for the report */
#define LAG_BUCKETS_MAX 128   /* buckets of one Prometheus histogram */
#define PAY_MIN_AGE_NS 500000000ull /* mixed: an order is paid only once acked this long ago */
#define FLASH_SETTLE_BUDGET_S 30    /* flash-sale: how long the orders may take to settle */
#define FLASH_ORDERS_MAX 100000
#define FLASH_ID_MAX 32           /* an orderId kept by the flash-sale tracker (ULID: 26) */
#define TAIL_PAGE 1000            /* events per GET /log page (the server's maximum) */
#define TAIL_IDLE_NS 1000000ull   /* pause after a short GET /log page */
#define SAGA_POLL_NS 20000000ull  /* pause between GET /metrics while the saga catches up */

/* ---------------------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------------------- */

typedef enum { MODE_MIXED, MODE_HEALTH, MODE_ORDERS, MODE_READS, MODE_FLASH, MODE_COUNT } bench_mode;

static const char *const mode_names[MODE_COUNT] = {"mixed", "health", "orders", "reads",
                                                   "flash-sale"};

/* --reads: the queries a read is drawn from. READS_ALL is the mix of build_read(); any other
 * value makes every read that one query, so that a phase measures a single query kind. */
typedef enum {
  READS_ALL,
  READS_ORDER,
  READS_CUSTOMER,
  READS_SEARCH,
  READS_PRODUCT,
  READS_PRODUCTS,
  READS_COUNT
} reads_kind;

static const char *const reads_names[READS_COUNT] = {"all",    "order",   "customer",
                                                     "search", "product", "products"};

typedef struct {
  const char *host;
  int port;
  int connections;
  double duration_s;
  double warmup_s;
  int reads_per_write;
  int products;
  bench_mode mode;
  bool seed_products;
  const char *json_path; /* NULL: no JSON file */
  int ryw_every;         /* every Nth acked command is followed by a read-your-write read */
  uint64_t rng_seed;
  int flash_stock;  /* flash-sale: units of the product on sale */
  int flash_orders; /* flash-sale: acknowledged orders wanted */
  reads_kind reads; /* which queries the reads are */
  int seed_orders;  /* reads mode: orders placed in setup so that there is something to read */
  double rate_per_s; /* > 0: open loop, a request is due every 1/rate s; 0: closed loop */
} bench_opts;

/* ---------------------------------------------------------------------------------------------
 * Time and randomness
 * ------------------------------------------------------------------------------------------- */

/* Monotonic time in nanoseconds. CLOCK_MONOTONIC cannot fail on Linux; abort if it does. */
static uint64_t now_ns(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
    perror("twinlane-bench: clock_gettime");
    abort();
  }
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* A uniform integer in [0, n); n must be > 0. Lemire's multiply-shift, bias < 2^-32. */
static uint32_t rand_below(uint64_t *state, uint32_t n) {
  return (uint32_t)(((splitmix64(state) >> 32) * (uint64_t)n) >> 32);
}

/* ---------------------------------------------------------------------------------------------
 * Latency histogram, HDR-like: exact below 128 us, then 128 linear sub-buckets per power of two,
 * so any recorded value is known within 1/128 (< 0.8%). Fixed size, no allocation per sample.
 * ------------------------------------------------------------------------------------------- */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_EXP 36 /* values are clamped to 2^37 - 1 us (about 38 hours) */
#define HIST_BUCKETS (HIST_SUB + (HIST_MAX_EXP - HIST_SUB_BITS + 1) * HIST_SUB)

typedef struct {
  uint64_t counts[HIST_BUCKETS];
  uint64_t total;
  uint64_t max_us;
} hist;

static size_t hist_index(uint64_t v) {
  if (v < HIST_SUB) return (size_t)v;
  int k = 63 - __builtin_clzll(v);
  if (k > HIST_MAX_EXP) {
    k = HIST_MAX_EXP;
    v = (2ull << HIST_MAX_EXP) - 1;
  }
  unsigned shift = (unsigned)(k - HIST_SUB_BITS);
  size_t sub = (size_t)(v >> shift) - HIST_SUB;
  return HIST_SUB + (size_t)(k - HIST_SUB_BITS) * HIST_SUB + sub;
}

static void hist_record(hist *h, uint64_t us) {
  h->counts[hist_index(us)]++;
  h->total++;
  if (us > h->max_us) h->max_us = us;
}

/* The value at quantile q (0 < q <= 1) in microseconds: the middle of the bucket that holds the
 * ceil(q * total)-th smallest sample, never above the largest sample. NAN when empty. */
static double hist_quantile_us(const hist *h, double q) {
  if (h->total == 0) return NAN;
  uint64_t rank = (uint64_t)ceil(q * (double)h->total);
  if (rank < 1) rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      double lo, width;
      if (i < HIST_SUB) {
        lo = (double)i;
        width = 1;
      } else {
        size_t k = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
        size_t sub = (i - HIST_SUB) % HIST_SUB;
        width = (double)(1ull << (k - HIST_SUB_BITS));
        lo = (double)(HIST_SUB + sub) * width;
      }
      double mid = lo + (width - 1) / 2;
      return mid > (double)h->max_us ? (double)h->max_us : mid;
    }
  }
  return (double)h->max_us;
}

/* ---------------------------------------------------------------------------------------------
 * Request kinds and result accounting
 * ------------------------------------------------------------------------------------------- */

typedef enum {
  CLASS_COMMAND,
  CLASS_QUERY,
  CLASS_RYW,
  CLASS_HEALTH,
  CLASS_COUNT,
  CLASS_SETUP = CLASS_COUNT, /* never measured */
} req_class;

static const char *const class_names[CLASS_COUNT] = {"commands", "queries", "ryw", "health"};

typedef enum {
  REQ_PROBE,
  REQ_METRICS,
  REQ_SEED_PRODUCT,
  REQ_SEED_ORDER,
  REQ_SYNC,
  REQ_HEALTH,
  REQ_PLACE_ORDER,
  REQ_CONFIRM_PAYMENT,
  REQ_GET_ORDER,
  REQ_CUSTOMER_ORDERS,
  REQ_SEARCH_ORDERS,
  REQ_GET_PRODUCT,
  REQ_LIST_PRODUCTS,
  REQ_RYW_READ,
  REQ_SAGA_SYNC,
  REQ_FLASH_ORDER,
  REQ_TAIL_LOG,
  REQ_FLASH_PRODUCT,
  REQ_KIND_COUNT
} req_kind;

static const struct {
  const char *label;
  req_class cls;
  bool is_get; /* safe to send again when a reused keep-alive socket was closed under it */
} kind_info[REQ_KIND_COUNT] = {
    [REQ_PROBE] = {"GET /health (probe)", CLASS_SETUP, true},
    [REQ_METRICS] = {"GET /metrics", CLASS_SETUP, true},
    [REQ_SEED_PRODUCT] = {"POST /products (setup)", CLASS_SETUP, false},
    [REQ_SEED_ORDER] = {"POST /orders (setup)", CLASS_SETUP, false},
    [REQ_SYNC] = {"GET /products?minPosition (setup)", CLASS_SETUP, true},
    [REQ_HEALTH] = {"GET /health", CLASS_HEALTH, true},
    [REQ_PLACE_ORDER] = {"POST /orders", CLASS_COMMAND, false},
    [REQ_CONFIRM_PAYMENT] = {"POST /orders/{id}/confirm-payment", CLASS_COMMAND, false},
    [REQ_GET_ORDER] = {"GET /orders/{id}", CLASS_QUERY, true},
    [REQ_CUSTOMER_ORDERS] = {"GET /customers/{id}/orders", CLASS_QUERY, true},
    [REQ_SEARCH_ORDERS] = {"GET /orders/search", CLASS_QUERY, true},
    [REQ_GET_PRODUCT] = {"GET /products/{id}", CLASS_QUERY, true},
    [REQ_LIST_PRODUCTS] = {"GET /products", CLASS_QUERY, true},
    [REQ_RYW_READ] = {"GET /orders/{id}?minPosition", CLASS_RYW, true},
    [REQ_SAGA_SYNC] = {"GET /metrics (saga sync)", CLASS_SETUP, true},
    [REQ_FLASH_ORDER] = {"POST /orders", CLASS_COMMAND, false},
    [REQ_TAIL_LOG] = {"GET /log (settle tracker)", CLASS_SETUP, true},
    [REQ_FLASH_PRODUCT] = {"GET /products/{id} (final)", CLASS_SETUP, true},
};

#define STATUS_SLOTS 600 /* index 0: transport failure (no HTTP answer) */

typedef struct {
  hist latency; /* successful (2xx) requests only */
  uint64_t ok;
  uint64_t errors;
  uint64_t refused; /* expected business refusals (409 ORDER_NOT_RESERVED / ORDER_CLOSED) */
  uint64_t by_status[STATUS_SLOTS];
} req_stats;

/* ---------------------------------------------------------------------------------------------
 * HTTP/1.1 response parser. It works on the connection's receive buffer in place: headers are
 * read once complete, a Content-Length body is taken as is, a chunked body is decoded into the
 * same buffer (the decoded bytes never overtake the raw ones), and a response with neither is
 * read until the server closes. 1xx interim responses are skipped.
 * ------------------------------------------------------------------------------------------- */

typedef enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE } body_mode;
typedef enum { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER } chunk_state;

typedef struct {
  bool head_done;
  size_t scan_from; /* where the search for the blank line resumes */
  size_t head_len;  /* bytes of status line and headers, blank line included */
  int status;
  bool close_after; /* the server will close the socket after this response */
  body_mode mode;
  uint64_t content_length;
  size_t body_len; /* decoded body: rbuf[head_len .. head_len + body_len) */
  size_t raw_pos;  /* chunked: first raw byte not decoded yet */
  uint64_t chunk_left;
  chunk_state cstate;
  size_t consumed;    /* complete: raw bytes this response used */
  int64_t x_position; /* X-Position header, -1 when absent */
} http_resp;

static void http_resp_reset(http_resp *r) {
  memset(r, 0, sizeof *r);
  r->x_position = -1;
}

static bool token_eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static void trim(const char **s, size_t *n) {
  while (*n > 0 && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*n)--;
  }
  while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

/* Parses an unsigned decimal of 1-18 digits that fills s[0..n). */
static bool parse_u64(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 18) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  *out = v;
  return true;
}

/* Parses an optionally negative decimal of 1-18 digits that fills s[0..n). */
static bool parse_i64(const char *s, size_t n, long long *out) {
  uint64_t u;
  bool neg = n > 0 && s[0] == '-';
  if (!parse_u64(s + neg, n - neg, &u)) return false;
  *out = neg ? -(long long)u : (long long)u;
  return true;
}

/* Does the comma-separated list s[0..n) hold `tok` (case-insensitive)? With last_only, only its
 * last element counts (Transfer-Encoding: chunked must be the final coding). */
static bool list_has(const char *s, size_t n, const char *tok, bool last_only) {
  bool found = false;
  while (n > 0) {
    const char *comma = memchr(s, ',', n);
    size_t len = comma ? (size_t)(comma - s) : n;
    const char *item = s;
    size_t ilen = len;
    trim(&item, &ilen);
    bool match = token_eq(item, ilen, tok);
    if (last_only)
      found = match;
    else if (match)
      return true;
    if (!comma) break;
    s = comma + 1;
    n -= len + 1;
  }
  return found;
}

/* Reads the status line and headers in buf[0..r->head_len). Returns 0, or -1 with *err set. */
static int http_parse_head(http_resp *r, const char *buf, const char **err) {
  const char *end = buf + r->head_len - 2; /* the blank line's CRLF */
  if (r->head_len < 16 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
      buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' ||
      buf[11] < '0' || buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r')) {
    *err = "malformed status line";
    return -1;
  }
  bool http10 = buf[7] == '0';
  r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
  bool keep_alive = false, chunked = false, have_length = false;
  const char *line = memchr(buf, '\n', (size_t)(end - buf));
  if (line == NULL) {
    *err = "malformed status line";
    return -1;
  }
  line++;
  while (line < end) {
    const char *eol = memchr(line, '\n', (size_t)(end - line) + 1);
    if (eol == NULL || eol == line || eol[-1] != '\r') {
      *err = "header line not ended by CRLF";
      return -1;
    }
    size_t len = (size_t)(eol - 1 - line);
    if (line[0] == ' ' || line[0] == '\t') {
      *err = "obsolete folded header line";
      return -1;
    }
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line) {
      *err = "header line without a name";
      return -1;
    }
    size_t name_len = (size_t)(colon - line);
    const char *val = colon + 1;
    size_t val_len = len - name_len - 1;
    trim(&val, &val_len);
    if (token_eq(line, name_len, "content-length")) {
      uint64_t cl;
      if (!parse_u64(val, val_len, &cl) || (have_length && cl != r->content_length)) {
        *err = "bad or conflicting Content-Length";
        return -1;
      }
      have_length = true;
      r->content_length = cl;
    } else if (token_eq(line, name_len, "transfer-encoding")) {
      if (!list_has(val, val_len, "chunked", true)) {
        *err = "unsupported Transfer-Encoding (only chunked is understood)";
        return -1;
      }
      chunked = true;
    } else if (token_eq(line, name_len, "connection")) {
      if (list_has(val, val_len, "close", false)) r->close_after = true;
      if (list_has(val, val_len, "keep-alive", false)) keep_alive = true;
    } else if (token_eq(line, name_len, "x-position")) {
      uint64_t pos;
      if (parse_u64(val, val_len, &pos)) r->x_position = (int64_t)pos;
    }
    line = eol + 1;
  }
  if (http10 && !keep_alive) r->close_after = true;
  if (r->status < 200 || r->status == 204 || r->status == 304)
    r->mode = BODY_NONE;
  else if (chunked)
    r->mode = BODY_CHUNKED; /* RFC 9112 6.3: chunked wins over Content-Length */
  else if (have_length)
    r->mode = BODY_LENGTH;
  else {
    r->mode = BODY_UNTIL_CLOSE;
    r->close_after = true;
  }
  if (r->content_length > RBUF_MAX) {
    *err = "response body too large";
    return -1;
  }
  return 0;
}

/* Decodes as much of a chunked body as buf[0..len) holds. Returns 1 when the last chunk and the
 * trailers are in, 0 when more bytes are needed, -1 on malformed framing (*err set). */
static int http_dechunk(http_resp *r, char *buf, size_t len, const char **err) {
  for (;;) {
    switch (r->cstate) {
      case CH_SIZE:
      case CH_TRAILER: {
        const char *lf = memchr(buf + r->raw_pos, '\n', len - r->raw_pos);
        if (lf == NULL) {
          if (len - r->raw_pos > 4096) {
            *err = "chunk size or trailer line too long";
            return -1;
          }
          return 0;
        }
        size_t line_len = (size_t)(lf - (buf + r->raw_pos));
        if (line_len == 0 || lf[-1] != '\r') {
          *err = "chunk line not ended by CRLF";
          return -1;
        }
        const char *s = buf + r->raw_pos;
        r->raw_pos += line_len + 1;
        line_len--; /* drop the CR */
        if (r->cstate == CH_TRAILER) {
          if (line_len == 0) {
            r->consumed = r->raw_pos;
            return 1;
          }
          continue; /* a trailer field: ignored */
        }
        uint64_t size = 0;
        size_t i = 0;
        for (; i < line_len; i++) {
          int d;
          char ch = s[i];
          if (ch >= '0' && ch <= '9')
            d = ch - '0';
          else if (ch >= 'a' && ch <= 'f')
            d = ch - 'a' + 10;
          else if (ch >= 'A' && ch <= 'F')
            d = ch - 'A' + 10;
          else
            break;
          if (i >= 15) {
            *err = "chunk size too large";
            return -1;
          }
          size = size * 16 + (uint64_t)d;
        }
        if (i == 0 || (i < line_len && s[i] != ';' && s[i] != ' ' && s[i] != '\t')) {
          *err = "malformed chunk size";
          return -1;
        }
        if (r->head_len + r->body_len + size > RBUF_MAX) {
          *err = "response body too large";
          return -1;
        }
        r->chunk_left = size;
        r->cstate = size == 0 ? CH_TRAILER : CH_DATA;
        break;
      }
      case CH_DATA: {
        size_t avail = len - r->raw_pos;
        size_t n = avail < r->chunk_left ? avail : (size_t)r->chunk_left;
        memmove(buf + r->head_len + r->body_len, buf + r->raw_pos, n);
        r->body_len += n;
        r->raw_pos += n;
        r->chunk_left -= n;
        if (r->chunk_left > 0) return 0;
        r->cstate = CH_DATA_CRLF;
        break;
      }
      case CH_DATA_CRLF:
        if (len - r->raw_pos < 2) return 0;
        if (buf[r->raw_pos] != '\r' || buf[r->raw_pos + 1] != '\n') {
          *err = "chunk data not followed by CRLF";
          return -1;
        }
        r->raw_pos += 2;
        r->cstate = CH_SIZE;
        break;
    }
  }
}

/* Advances the parse of the response in buf[0..*len). eof says the server closed the socket and
 * no more bytes will come. Returns 1 when the response is complete (r->consumed raw bytes, body
 * at buf + r->head_len for r->body_len bytes), 0 when more bytes are needed, -1 when the answer
 * is malformed or cut short (*err says why). Interim 1xx responses are removed from buf. */
static int http_resp_parse(http_resp *r, char *buf, size_t *len, bool eof, const char **err) {
  for (;;) {
    if (!r->head_done) {
      size_t from = r->scan_from;
      const char *blank = NULL;
      if (*len >= 4) {
        blank = memmem(buf + from, *len - from, "\r\n\r\n", 4);
        r->scan_from = *len - 3;
      }
      if (blank == NULL) {
        if (*len > HEAD_MAX) {
          *err = "response headers too large";
          return -1;
        }
        if (eof) {
          *err = *len ? "connection closed inside the response headers"
                      : "connection closed before any response";
          return -1;
        }
        return 0;
      }
      r->head_len = (size_t)(blank - buf) + 4;
      if (http_parse_head(r, buf, err) != 0) return -1;
      r->head_done = true;
      r->raw_pos = r->head_len;
      if (r->status >= 100 && r->status < 200) {
        if (r->status == 101) {
          *err = "unexpected 101 Switching Protocols";
          return -1;
        }
        size_t h = r->head_len;
        memmove(buf, buf + h, *len - h);
        *len -= h;
        http_resp_reset(r);
        continue;
      }
    }
    switch (r->mode) {
      case BODY_NONE:
        r->consumed = r->head_len;
        return 1;
      case BODY_LENGTH:
        if (*len - r->head_len >= r->content_length) {
          r->body_len = (size_t)r->content_length;
          r->consumed = r->head_len + r->body_len;
          return 1;
        }
        break;
      case BODY_UNTIL_CLOSE:
        if (eof) {
          r->body_len = *len - r->head_len;
          r->consumed = *len;
          return 1;
        }
        break;
      case BODY_CHUNKED: {
        int rc = http_dechunk(r, buf, *len, err);
        if (rc != 0) return rc;
        break;
      }
    }
    if (eof) {
      *err = "connection closed inside the response body";
      return -1;
    }
    return 0;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Targeted JSON scanning
 * ------------------------------------------------------------------------------------------- */

static bool json_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Finds the member `key` of the outermost object in js[0..len). On success sets *val / *val_len
 * to the raw scalar value: the characters between the quotes of a string (escapes left as they
 * are) or the literal of a number, true, false or null. Members of nested objects never match,
 * so "position" finds the command's position, not meta.position of an embedded view. Returns
 * false when the key is absent, its value is an object or array, or the text is malformed. */
static bool json_top_field(const char *js, size_t len, const char *key, const char **val,
                           size_t *val_len) {
  size_t key_len = strlen(key);
  int depth = 0;
  size_t i = 0;
  while (i < len) {
    char ch = js[i];
    if (ch == '"') {
      size_t start = ++i;
      while (i < len && js[i] != '"') i += js[i] == '\\' ? 2 : 1;
      if (i >= len) return false;
      size_t end = i++;
      if (depth != 1) continue;
      size_t j = i;
      while (j < len && json_ws(js[j])) j++;
      if (j >= len || js[j] != ':') continue; /* a string value, not a key */
      if (end - start != key_len || memcmp(js + start, key, key_len) != 0) {
        i = j + 1;
        continue;
      }
      j++;
      while (j < len && json_ws(js[j])) j++;
      if (j >= len || js[j] == '{' || js[j] == '[') return false;
      if (js[j] == '"') {
        size_t s = ++j;
        while (j < len && js[j] != '"') j += js[j] == '\\' ? 2 : 1;
        if (j >= len) return false;
        *val = js + s;
        *val_len = j - s;
        return true;
      }
      size_t s = j;
      while (j < len && js[j] != ',' && js[j] != '}' && js[j] != ']' && !json_ws(js[j])) j++;
      *val = js + s;
      *val_len = j - s;
      return j > s;
    }
    if (ch == '{' || ch == '[')
      depth++;
    else if (ch == '}' || ch == ']')
      depth--;
    i++;
  }
  return false;
}

/* Copies the top-level string member `key` into out (NUL-terminated) when it is a plain id:
 * 1..cap-1 characters of [A-Za-z0-9_-]. Returns false otherwise. */
static bool json_top_id(const char *js, size_t len, const char *key, char *out, size_t cap) {
  const char *v;
  size_t n;
  if (!json_top_field(js, len, key, &v, &n) || n == 0 || n >= cap) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_'))
      return false;
  }
  memcpy(out, v, n);
  out[n] = '\0';
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Prometheus text parsing: only the series the report needs, summed over their label sets.
 * ------------------------------------------------------------------------------------------- */

typedef struct {
  double le; /* +INFINITY for the last bucket */
  double cumulative;
} prom_bucket;

typedef struct {
  bool present; /* a 2xx answer to GET /metrics was parsed */
  bool has_batch;
  double batch_sum, batch_count;
  bool has_fsyncs;
  double fsyncs;
  bool has_events;
  double events;
  bool has_pm; /* tl_process_manager_position: the lowest over the process managers */
  double pm_min_position;
  size_t n_lag;
  prom_bucket lag[LAG_BUCKETS_MAX]; /* tl_projection_visible_lag_seconds, sorted by le */
} metrics_snap;

static int cmp_bucket(const void *a, const void *b) {
  double x = ((const prom_bucket *)a)->le, y = ((const prom_bucket *)b)->le;
  return (x > y) - (x < y);
}

/* Fills *m from the exposition text[0..len). Unknown series and malformed lines are skipped. */
static void metrics_parse(metrics_snap *m, const char *text, size_t len) {
  memset(m, 0, sizeof *m);
  m->present = true;
  const char *p = text, *end = text + len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    const char *line = p;
    p = eol + 1;
    while (line < eol && (*line == ' ' || *line == '\t')) line++;
    if (line >= eol || *line == '#') continue;
    const char *name_end = line;
    while (name_end < eol && *name_end != '{' && *name_end != ' ' && *name_end != '\t') name_end++;
    size_t name_len = (size_t)(name_end - line);
    const char *labels = NULL, *labels_end = NULL, *q = name_end;
    if (q < eol && *q == '{') {
      labels = q + 1;
      bool in_str = false;
      for (q = labels; q < eol; q++) {
        if (in_str && *q == '\\')
          q++;
        else if (*q == '"')
          in_str = !in_str;
        else if (!in_str && *q == '}')
          break;
      }
      if (q >= eol) continue;
      labels_end = q++;
    }
    char num[64];
    while (q < eol && (*q == ' ' || *q == '\t')) q++;
    size_t nlen = 0;
    while (q < eol && *q != ' ' && *q != '\t' && *q != '\r' && nlen < sizeof num - 1)
      num[nlen++] = *q++;
    num[nlen] = '\0';
    char *num_end;
    double v = strtod(num, &num_end);
    if (nlen == 0 || *num_end != '\0') continue;
#define NAME_IS(lit) (name_len == sizeof(lit) - 1 && memcmp(line, lit, name_len) == 0)
    if (NAME_IS("tl_group_commit_batch_size_sum")) {
      m->has_batch = true;
      m->batch_sum += v;
    } else if (NAME_IS("tl_group_commit_batch_size_count")) {
      m->has_batch = true;
      m->batch_count += v;
    } else if (NAME_IS("tl_fsyncs_total")) {
      m->has_fsyncs = true;
      m->fsyncs += v;
    } else if (NAME_IS("tl_events_appended_total")) {
      m->has_events = true;
      m->events += v;
    } else if (NAME_IS("tl_process_manager_position")) {
      if (!m->has_pm || v < m->pm_min_position) m->pm_min_position = v;
      m->has_pm = true;
    } else if (NAME_IS("tl_projection_visible_lag_seconds_bucket") && labels != NULL) {
      const char *le = memmem(labels, (size_t)(labels_end - labels), "le=\"", 4);
      if (le == NULL || (le != labels && le[-1] != ',' && le[-1] != ' ')) continue;
      le += 4;
      const char *le_end = memchr(le, '"', (size_t)(labels_end - le));
      if (le_end == NULL || le_end - le >= 63) continue;
      char lebuf[64];
      memcpy(lebuf, le, (size_t)(le_end - le));
      lebuf[le_end - le] = '\0';
      char *lend;
      double bound = strtod(lebuf, &lend); /* also reads "+Inf" */
      if (lend == lebuf || *lend != '\0') continue;
      size_t i = 0;
      while (i < m->n_lag && m->lag[i].le != bound) i++;
      if (i == m->n_lag) {
        if (m->n_lag == LAG_BUCKETS_MAX) continue;
        m->lag[m->n_lag++] = (prom_bucket){bound, 0};
      }
      m->lag[i].cumulative += v;
    }
#undef NAME_IS
  }
  qsort(m->lag, m->n_lag, sizeof m->lag[0], cmp_bucket);
}

/* Estimates quantile q of the lag observed between two snapshots, the way Prometheus'
 * histogram_quantile does: the difference of the cumulative bucket counts, then linear
 * interpolation inside the bucket that holds the rank (from 0 for the first bucket). When the
 * rank falls in the +Inf bucket the largest finite bound is returned and *above is set.
 * Returns false when no observation was made in between. *count gets the number made. */
static bool lag_quantile(const metrics_snap *before, const metrics_snap *after, double q,
                         double *out_s, bool *above, double *count) {
  double delta[LAG_BUCKETS_MAX];
  size_t n = after->n_lag;
  if (!before->present || !after->present || n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    double prev = 0;
    for (size_t j = 0; j < before->n_lag; j++)
      if (before->lag[j].le == after->lag[i].le) prev = before->lag[j].cumulative;
    delta[i] = after->lag[i].cumulative - prev;
  }
  double total = delta[n - 1];
  *count = total;
  *above = false;
  if (total <= 0) return false;
  double rank = q * total;
  for (size_t i = 0; i < n; i++) {
    if (delta[i] < rank) continue;
    if (isinf(after->lag[i].le)) {
      *above = true;
      *out_s = i > 0 ? after->lag[i - 1].le : 0;
      return true;
    }
    double lower = i > 0 ? after->lag[i - 1].le : 0;
    double below = i > 0 ? delta[i - 1] : 0;
    double inside = delta[i] - below;
    double frac = inside > 0 ? (rank - below) / inside : 1;
    *out_s = lower + (after->lag[i].le - lower) * frac;
    return true;
  }
  *out_s = after->lag[n - 1].le;
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Connections and the run
 * ------------------------------------------------------------------------------------------- */

typedef enum { CONN_CLOSED, CONN_CONNECTING, CONN_OPEN } conn_state;

typedef struct {
  int fd; /* -1 when closed */
  conn_state state;
  bool control;         /* the probe / metrics connection, not part of the load */
  uint32_t ev_mask;     /* what epoll watches now */
  uint64_t retry_at_ns; /* closed after a failed connect: no new attempt before this */
  unsigned served;      /* responses read on the current socket */

  /* The request in flight, if busy. */
  bool busy;
  req_kind kind;
  uint64_t t_start_ns;   /* when it was handed to the connection (connect time included) */
  bool resent;           /* already sent again once after a keep-alive close */
  bool metrics_after;    /* REQ_METRICS: the snapshot after the window, not before */
  char order_id[ID_MAX]; /* the order a confirm-payment or ryw read is about */
  char wbuf[WBUF_CAP];
  size_t wlen, wsent;

  /* Receive buffer, owned; grows up to RBUF_MAX. */
  char *rbuf;
  size_t rlen, rcap;
  http_resp resp;

  /* Workload state of this connection. */
  uint64_t rng;
  char unpaid[UNPAID_MAX][ID_MAX]; /* orders it placed and has not paid yet, oldest first */
  uint64_t unpaid_ack_ns[UNPAID_MAX]; /* when each was acknowledged */
  int n_unpaid;
  bool ryw_pending;
  char ryw_order[ID_MAX];
  uint64_t ryw_position;
  uint64_t ryw_ack_ns;
} bench_conn;

typedef enum {
  PH_PROBE,
  PH_SEED_PRODUCTS,
  PH_SEED_ORDERS,
  PH_SYNC,      /* waits until the read lane reflects the setup */
  PH_SAGA_SYNC, /* flash-sale: waits until the process managers have handled the setup */
  PH_LOAD,
  PH_SETTLE, /* flash-sale: every order acknowledged; waits until each one settled */
  PH_DRAIN,
  PH_DONE
} phase;

/* flash-sale: one order of the product on sale, as the acknowledgements and the log tell. */
typedef struct {
  char id[FLASH_ID_MAX]; /* "": a free slot */
  bool acked;            /* its 201 arrived while placing */
  bool placed;           /* its OrderPlaced was read from the log */
  uint8_t outcome;       /* 0: not settled yet, 1: OrderReserved, 2: OrderRejected */
  uint64_t ack_ns, settled_ns;
} flash_order;

enum { OUTCOME_NONE, OUTCOME_RESERVED, OUTCOME_REJECTED };

typedef struct {
  char product[64];
  flash_order *orders; /* open addressing, fcap slots (a power of two) */
  size_t fcap;
  int inflight, attempts, acked;
  bool stop;        /* no new order is sent */
  uint64_t t_last_answer;
  uint64_t stop_ns; /* when it stopped */
  bool placing_done;
  uint64_t t_place_end;
  uint64_t max_ack_position;
  /* What the log tail found. */
  uint64_t tail_next; /* next position to read */
  uint64_t tail_pages, tail_events, tail_failures;
  int tail_last_status;
  int placed_seen, reserved, rejected, rejected_other_reason;
  int acked_settled, settled_before_ack;
  int untracked;         /* 201s without a usable orderId (or twice the same) */
  int duplicate_settles; /* a second OrderReserved/OrderRejected for one order */
  hist settle; /* acked orders: 201 -> settling event read from the log, us */
  bool settled;
  bool settle_timeout;
  uint64_t t_settled, settle_deadline;
  /* Setup. */
  bool saga_synced;
  uint64_t t_saga_wait_start, t_saga_synced;
  /* The product view once every order settled. */
  bool product_want, product_done;
  int product_status;
  long long product_stock, product_available;
  int product_in_stock; /* -1: absent */
} flash_state;

typedef struct {
  char id[ID_MAX];
  uint64_t ack_ns;
} pooled_order;

/* Open loop (--rate): request k is due at t_load_start + k / rate, whatever the answers. An idle
 * connection takes the oldest due request; when none is idle the request waits for one and is
 * counted as queued. Latency runs from the due time, not from the send, so that a slow server
 * cannot hide its queue by slowing the client down (coordinated omission). The due requests are
 * a counter, not a queue: due(k) is a formula. */
typedef struct {
  double interval_ns;    /* 1e9 / rate */
  uint64_t next;         /* index of the oldest due request not sent yet */
  uint64_t queued_below; /* requests below this index found no idle connection when due */
  /* Requests handed to a connection inside the measured window: */
  uint64_t sent, queued;
  hist send_delay; /* due time -> handed to a connection, us */
  /* Requests due and not sent yet when the window opened and when it closed. */
  uint64_t backlog_start, backlog_end;
} open_loop;

typedef struct {
  bench_opts o;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  char host_header[300];

  int epfd;
  int n_conns; /* load connections; conns[n_conns] is the control connection */
  bench_conn *conns;
  phase ph;
  int exit_code; /* set by a fatal condition; ends the run */

  uint64_t t_setup_deadline, t_probe_deadline;
  uint64_t t_load_start, t_measure_start, t_measure_end, t_drain_deadline, t_done;
  bool measuring; /* t_measure_* are valid */
  bool probe_ok;
  int probe_last_status;
  char probe_last_error[160];

  int seed_next, seed_done, seed_failed; /* products or setup orders */
  int seed_target;
  char seed_first_error[400];
  uint64_t setup_position; /* highest log position acked during the setup */
  bool sync_ok;

  bool want_metrics_before, metrics_before_sent, want_metrics_after, metrics_after_done;
  int metrics_last_status; /* 0: GET /metrics never answered */
  metrics_snap metrics_before, metrics_after;

  req_stats cls[CLASS_COUNT];
  req_stats kinds[REQ_KIND_COUNT];
  req_stats all; /* every class but ryw, whose latency runs from an acknowledgement */
  open_loop loop;
  uint64_t commands_acked; /* successful commands in the load phase, for the ryw cadence */
  double window_s;         /* the measured window in seconds: what rates are per */
  uint64_t refused_not_reserved, refused_closed;
  flash_state flash;
  uint64_t reconnects, connect_failures, resends;

  pooled_order pool[POOL_MAX];
  size_t pool_len, pool_next;
  char customers[N_CUSTOMERS][40];

  int n_error_samples;
  char error_samples[ERROR_SAMPLES][400];
  uint64_t t_last_progress;
} bench;

static const char *const words[] = {"amber",  "basalt", "cobalt", "dune",    "ember", "fjord",
                                    "garnet", "harbor", "indigo", "juniper", "kelp",  "lagoon",
                                    "maple",  "nickel", "onyx",   "pepper"};
#define N_WORDS (sizeof words / sizeof words[0])
static const char *const categories[] = {"tools", "garden", "kitchen", "office", "toys"};
static const char *const cities[] = {"Lyon", "Porto", "Leeds", "Graz", "Turku", "Gdansk"};
static const char *const countries[] = {"FR", "PT", "GB", "AT", "FI", "PL"};

static int product_price_cents(int i) { return (5 + i % 90) * 100 + 99; }

static void conn_close(bench *b, bench_conn *c);
static void conn_kick(bench *b, bench_conn *c, uint64_t now);

/* Records a sample of a failed request for the report: request line, status and body start. */
static void note_error_sample(bench *b, const bench_conn *c, int status, const char *body,
                              size_t body_len, const char *why) {
  if (b->n_error_samples >= ERROR_SAMPLES) return;
  const char *req_end = memchr(c->wbuf, '\r', c->wlen);
  int req_len = req_end ? (int)(req_end - c->wbuf) : 0;
  const char *req_body = strstr(c->wbuf, "\r\n\r\n");
  int rb_len = req_body ? (int)(c->wbuf + c->wlen - (req_body + 4)) : 0;
  if (rb_len > 120) rb_len = 120;
  int bl = body_len > 160 ? 160 : (int)body_len;
  char *dst = b->error_samples[b->n_error_samples++];
  if (status == 0)
    snprintf(dst, 400, "%.*s %.*s -> %s", req_len, c->wbuf, rb_len, req_body ? req_body + 4 : "",
             why);
  else
    snprintf(dst, 400, "%.*s %.*s -> %d %.*s", req_len, c->wbuf, rb_len,
             req_body ? req_body + 4 : "", status, bl, body ? body : "");
  for (char *s = dst; *s; s++)
    if (*s == '\n' || *s == '\r') *s = ' ';
}

/* Does a request of kind `kind` that started at t_start and ended at t_done count? Closed loop:
 * when it started and ended inside the window. Open loop: when it ended inside the window; it
 * may have been due before the window opened when the client runs behind its schedule, and its
 * latency, from the due time, then says so. */
static bool in_window(const bench *b, req_kind kind, uint64_t t_start, uint64_t t_done) {
  if (kind_info[kind].cls == CLASS_SETUP || !b->measuring || t_done > b->t_measure_end)
    return false;
  return b->o.rate_per_s > 0 ? t_done >= b->t_measure_start : t_start >= b->t_measure_start;
}

/* Counts the outcome of a request of kind `kind` that started at t_start and ended at t_done,
 * if it lies inside the measured window. status 0 means no HTTP answer; `refused` marks an
 * expected business refusal, counted apart from the errors. Latency is recorded for 2xx
 * answers only; `lat_from` is the instant latency is measured from. */
static void record(bench *b, req_kind kind, int status, bool refused, uint64_t lat_from,
                   uint64_t t_start, uint64_t t_done) {
  req_class cls = kind_info[kind].cls;
  if (!in_window(b, kind, t_start, t_done)) return;
  req_stats *targets[3] = {&b->cls[cls], &b->kinds[kind], &b->all};
  int n_targets = cls == CLASS_RYW ? 2 : 3;
  bool ok = status >= 200 && status <= 299;
  uint64_t us = (t_done - lat_from) / 1000;
  for (int i = 0; i < n_targets; i++) {
    req_stats *s = targets[i];
    if (ok) {
      s->ok++;
      hist_record(&s->latency, us);
    } else if (refused) {
      s->refused++;
    } else {
      s->errors++;
      s->by_status[status >= 0 && status < STATUS_SLOTS ? status : 0]++;
    }
  }
}

/* ---- request building ---------------------------------------------------------------------- */

/* Appends printf output at buf + *off. Returns -1 (buf unchanged past *off) when it does not fit.
 */
static int appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int appendf(char *buf, size_t cap, size_t *off, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + *off, cap - *off, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= cap - *off) return -1;
  *off += (size_t)n;
  return 0;
}

/* Makes c->wbuf the request `method target` with an optional JSON body and marks the connection
 * busy with it. Returns 0, or -1 if the request does not fit WBUF_CAP (a bug in this file). */
static int set_request(bench *b, bench_conn *c, req_kind kind, const char *method,
                       const char *target, const char *body, uint64_t now) {
  size_t off = 0;
  int rc = appendf(c->wbuf, sizeof c->wbuf, &off,
                   "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: twinlane-bench\r\n", method, target,
                   b->host_header);
  if (rc == 0 && body != NULL)
    rc = appendf(c->wbuf, sizeof c->wbuf, &off,
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body),
                 body);
  else if (rc == 0)
    rc = appendf(c->wbuf, sizeof c->wbuf, &off, "\r\n");
  if (rc != 0) {
    fprintf(stderr, "twinlane-bench: request for %s %s does not fit %d bytes\n", method, target,
            WBUF_CAP);
    return -1;
  }
  c->wlen = off;
  c->wsent = 0;
  c->kind = kind;
  c->busy = true;
  c->resent = false;
  c->t_start_ns = now;
  return 0;
}

static int build_seed_product(bench *b, bench_conn *c, int i, uint64_t now) {
  char body[512], target[64];
  size_t off = 0;
  int cents = product_price_cents(i);
  if (appendf(body, sizeof body, &off,
              "{\"productId\":\"bench-p%d\",\"name\":\"Widget %d %s\",\"category\":\"%s\","
              "\"price\":%d.%02d,\"currency\":\"USD\",\"stock\":1000000}",
              i, i, words[(unsigned)i % N_WORDS],
              categories[(unsigned)i % (sizeof categories / sizeof categories[0])], cents / 100,
              cents % 100) != 0)
    return -1;
  snprintf(target, sizeof target, "/products");
  return set_request(b, c, REQ_SEED_PRODUCT, "POST", target, body, now);
}

/* POST /orders: 1-3 distinct products of the catalogue at their catalogue price, a customer from
 * the pool, a filled shipping address. */
static int build_place_order(bench *b, bench_conn *c, req_kind kind, uint64_t now) {
  char body[1536];
  size_t off = 0;
  const char *customer = b->customers[rand_below(&c->rng, N_CUSTOMERS)];
  int n_items = 1 + (int)rand_below(&c->rng, 3);
  if (n_items > b->o.products) n_items = b->o.products;
  int chosen[3];
  int rc = appendf(body, sizeof body, &off, "{\"customerId\":\"%s\",\"items\":[", customer);
  for (int k = 0; k < n_items && rc == 0; k++) {
    int p = (int)rand_below(&c->rng, (uint32_t)b->o.products);
    for (int again = 1; again;) { /* distinct products within the order */
      again = 0;
      for (int j = 0; j < k; j++)
        if (chosen[j] == p) {
          p = (p + 1) % b->o.products;
          again = 1;
        }
    }
    chosen[k] = p;
    int cents = product_price_cents(p);
    rc = appendf(body, sizeof body, &off,
                 "%s{\"productId\":\"bench-p%d\",\"quantity\":%u,\"price\":%d.%02d}", k ? "," : "",
                 p, 1 + rand_below(&c->rng, 3), cents / 100, cents % 100);
  }
  unsigned city = rand_below(&c->rng, sizeof cities / sizeof cities[0]);
  if (rc == 0)
    rc = appendf(body, sizeof body, &off,
                 "],\"shippingAddress\":{\"street\":\"%u Bench Street\",\"city\":\"%s\","
                 "\"country\":\"%s\",\"postalCode\":\"%05u\"},\"currency\":\"USD\"}",
                 1 + rand_below(&c->rng, 999), cities[city], countries[city],
                 1000 + rand_below(&c->rng, 90000));
  if (rc != 0) return -1;
  return set_request(b, c, kind, "POST", "/orders", body, now);
}

/* flash-sale setup: the product on sale, with --flash-stock units. */
static int build_flash_product(bench *b, bench_conn *c, uint64_t now) {
  char body[512];
  size_t off = 0;
  if (appendf(body, sizeof body, &off,
              "{\"productId\":\"%s\",\"name\":\"Flash sale widget\",\"category\":\"toys\","
              "\"price\":9.99,\"currency\":\"USD\",\"stock\":%d}",
              b->flash.product, b->o.flash_stock) != 0)
    return -1;
  return set_request(b, c, REQ_SEED_PRODUCT, "POST", "/products", body, now);
}

/* flash-sale: POST /orders of one unit of the product on sale. */
static int build_flash_order(bench *b, bench_conn *c, uint64_t now) {
  char body[768];
  size_t off = 0;
  unsigned city = rand_below(&c->rng, sizeof cities / sizeof cities[0]);
  if (appendf(body, sizeof body, &off,
              "{\"customerId\":\"%s\",\"items\":[{\"productId\":\"%s\",\"quantity\":1,"
              "\"price\":9.99}],\"shippingAddress\":{\"street\":\"%u Bench Street\","
              "\"city\":\"%s\",\"country\":\"%s\",\"postalCode\":\"%05u\"},"
              "\"currency\":\"USD\"}",
              b->customers[rand_below(&c->rng, N_CUSTOMERS)], b->flash.product,
              1 + rand_below(&c->rng, 999), cities[city], countries[city],
              1000 + rand_below(&c->rng, 90000)) != 0)
    return -1;
  return set_request(b, c, REQ_FLASH_ORDER, "POST", "/orders", body, now);
}

/* Can this connection pay an order now? Only one acknowledged at least PAY_MIN_AGE_NS ago: the
 * inventory saga has reserved its stock by then unless it lags (payment is accepted only from
 * RESERVED). */
static bool can_pay(const bench_conn *c, uint64_t now) {
  return c->n_unpaid > 0 && now - c->unpaid_ack_ns[0] >= PAY_MIN_AGE_NS;
}

/* POST /orders/{id}/confirm-payment for the oldest order this connection placed and has not paid
 * (the one most likely to be settled everywhere). Returns -1 when it has none. */
static int build_confirm_payment(bench *b, bench_conn *c, uint64_t now) {
  char target[160], body[128];
  if (c->n_unpaid <= 0) return -1;
  memcpy(c->order_id, c->unpaid[0], ID_MAX);
  memmove(c->unpaid[0], c->unpaid[1], (size_t)(c->n_unpaid - 1) * ID_MAX);
  memmove(&c->unpaid_ack_ns[0], &c->unpaid_ack_ns[1],
          (size_t)(c->n_unpaid - 1) * sizeof c->unpaid_ack_ns[0]);
  c->n_unpaid--;
  snprintf(target, sizeof target, "/orders/%s/confirm-payment", c->order_id);
  snprintf(body, sizeof body, "{\"paymentId\":\"pay-%016llx\"}",
           (unsigned long long)splitmix64(&c->rng));
  return set_request(b, c, REQ_CONFIRM_PAYMENT, "POST", target, body, now);
}

/* Picks an order from the shared pool that was acked at least POOL_MIN_AGE_NS ago, so that a
 * 404 from the read lane means real trouble rather than ordinary projection lag. */
static const char *pick_pooled_order(bench *b, bench_conn *c, uint64_t now) {
  for (int attempt = 0; attempt < 2 && b->pool_len > 0; attempt++) {
    const pooled_order *po = &b->pool[rand_below(&c->rng, (uint32_t)b->pool_len)];
    if (now - po->ack_ns >= POOL_MIN_AGE_NS) return po->id;
  }
  return NULL;
}

/* The first percentile of each query's band in the read mix of build_read(). */
static const uint32_t reads_band[READS_COUNT] = {
    [READS_ALL] = 0,     [READS_ORDER] = 0,    [READS_CUSTOMER] = 30,
    [READS_SEARCH] = 50, [READS_PRODUCT] = 65, [READS_PRODUCTS] = 90,
};

/* One query of the read mix: by order id 30%, a customer's orders 20%, full-text search 15%,
 * one product 25%, the product list 10%; or always the query --reads names. Returns 1 when a
 * request is ready, 0 when there is nothing to read yet (--reads order before any order is old
 * enough: the connection tries again CONNECT_BACKOFF_MS later), -1 on a bug. */
static int build_read(bench *b, bench_conn *c, uint64_t now) {
  char target[256];
  uint32_t r = b->o.reads == READS_ALL ? rand_below(&c->rng, 100) : reads_band[b->o.reads];
  if (r < 30) {
    const char *id = pick_pooled_order(b, c, now);
    if (id != NULL) {
      snprintf(target, sizeof target, "/orders/%s", id);
      return set_request(b, c, REQ_GET_ORDER, "GET", target, NULL, now) == 0 ? 1 : -1;
    }
    if (b->o.reads == READS_ORDER) {
      c->retry_at_ns = now + CONNECT_BACKOFF_MS * 1000000ull;
      return 0;
    }
    r = 65; /* no order old enough yet: read a product instead */
  }
  if (r < 50) {
    snprintf(target, sizeof target, "/customers/%s/orders?limit=20",
             b->customers[rand_below(&c->rng, N_CUSTOMERS)]);
    return set_request(b, c, REQ_CUSTOMER_ORDERS, "GET", target, NULL, now) == 0 ? 1 : -1;
  }
  if (r < 65) {
    if (rand_below(&c->rng, 3) == 0)
      snprintf(target, sizeof target, "/orders/search?q=widget+%s&limit=20",
               words[rand_below(&c->rng, N_WORDS)]);
    else
      snprintf(target, sizeof target, "/orders/search?q=widget&limit=20");
    return set_request(b, c, REQ_SEARCH_ORDERS, "GET", target, NULL, now) == 0 ? 1 : -1;
  }
  if (r < 90) {
    snprintf(target, sizeof target, "/products/bench-p%u",
             rand_below(&c->rng, (uint32_t)b->o.products));
    return set_request(b, c, REQ_GET_PRODUCT, "GET", target, NULL, now) == 0 ? 1 : -1;
  }
  int rc = set_request(b, c, REQ_LIST_PRODUCTS, "GET", "/products?limit=20", NULL, now);
  return rc == 0 ? 1 : -1;
}

/* Open loop: the index of the first request not due at `now` (every request below it is due). */
static uint64_t loop_due_end(const bench *b, uint64_t now) {
  if (now < b->t_load_start) return 0;
  return (uint64_t)((double)(now - b->t_load_start) / b->loop.interval_ns) + 1;
}

/* Open loop: when request k is due. */
static uint64_t loop_due_ns(const bench *b, uint64_t k) {
  return b->t_load_start + (uint64_t)((double)k * b->loop.interval_ns);
}

/* Open loop: how many requests fell due inside the measured window. */
static uint64_t loop_due_in_window(const bench *b) {
  if (!b->measuring) return 0;
  uint64_t first =
      b->t_measure_start > b->t_load_start ? loop_due_end(b, b->t_measure_start - 1) : 0;
  return loop_due_end(b, b->t_measure_end - 1) - first;
}

/* Open loop: requests due at t and not handed to a connection yet. */
static uint64_t loop_backlog(const bench *b, uint64_t t) {
  uint64_t due = loop_due_end(b, t);
  return due > b->loop.next ? due - b->loop.next : 0;
}

/* Chooses the next request of a load connection for the current phase and sets it up.
 * Returns 1 when a request is ready, 0 when the connection has nothing to do, -1 on a bug. */
static int workload_next(bench *b, bench_conn *c, uint64_t now) {
  switch (b->ph) {
    case PH_SEED_PRODUCTS:
      if (b->seed_next >= b->seed_target) return 0;
      if (b->o.mode == MODE_FLASH) {
        b->seed_next++;
        return build_flash_product(b, c, now) == 0 ? 1 : -1;
      }
      return build_seed_product(b, c, b->seed_next++, now) == 0 ? 1 : -1;
    case PH_SEED_ORDERS:
      if (b->seed_next >= b->seed_target) return 0;
      b->seed_next++;
      return build_place_order(b, c, REQ_SEED_ORDER, now) == 0 ? 1 : -1;
    case PH_LOAD:
      break;
    default:
      return 0;
  }
  int rc;
  if (b->o.mode == MODE_FLASH) {
    /* Enough orders in flight to reach the target if they all succeed; failures are made up
     * for, up to twice the target in all. */
    flash_state *f = &b->flash;
    if (f->stop || f->acked + f->inflight >= b->o.flash_orders) return 0;
    if (f->attempts >= 2 * b->o.flash_orders) {
      f->stop = true;
      f->stop_ns = now;
      return 0;
    }
    f->attempts++;
    f->inflight++;
    return build_flash_order(b, c, now) == 0 ? 1 : -1;
  }
  if (c->ryw_pending) {
    char target[256];
    c->ryw_pending = false;
    snprintf(target, sizeof target, "/orders/%s?minPosition=%llu&waitMs=5000", c->ryw_order,
             (unsigned long long)c->ryw_position);
    rc = set_request(b, c, REQ_RYW_READ, "GET", target, NULL, now);
    memcpy(c->order_id, c->ryw_order, ID_MAX);
    return rc == 0 ? 1 : -1;
  }
  bool paced = b->o.rate_per_s > 0;
  if (paced && b->loop.next >= loop_due_end(b, now)) return 0; /* nothing due yet */
  switch (b->o.mode) {
    case MODE_HEALTH:
      rc = set_request(b, c, REQ_HEALTH, "GET", "/health", NULL, now) == 0 ? 1 : -1;
      break;
    case MODE_ORDERS:
      rc = build_place_order(b, c, REQ_PLACE_ORDER, now) == 0 ? 1 : -1;
      break;
    case MODE_READS:
      rc = build_read(b, c, now);
      break;
    case MODE_MIXED:
    default:
      if (rand_below(&c->rng, (uint32_t)b->o.reads_per_write + 1) != 0)
        rc = build_read(b, c, now);
      else if (rand_below(&c->rng, 5) == 0 && can_pay(c, now))
        rc = build_confirm_payment(b, c, now) == 0 ? 1 : -1; /* about 20% of writes */
      else
        rc = build_place_order(b, c, REQ_PLACE_ORDER, now) == 0 ? 1 : -1;
      break;
  }
  if (rc == 1 && paced) {
    /* The oldest due request goes out on this connection; its latency runs from its due time. */
    open_loop *l = &b->loop;
    uint64_t k = l->next++;
    uint64_t due = loop_due_ns(b, k);
    c->t_start_ns = due;
    if (b->measuring && now >= b->t_measure_start && now < b->t_measure_end) {
      l->sent++;
      if (k < l->queued_below) l->queued++;
      hist_record(&l->send_delay, now > due ? (now - due) / 1000 : 0);
    }
  }
  return rc;
}

/* Open loop, after every idle connection had its chance: the requests due now that none of them
 * took wait for a busy connection to answer; they are counted as queued when sent. */
static void loop_note_backlog(bench *b, uint64_t now) {
  if (b->o.rate_per_s <= 0 || b->ph != PH_LOAD) return;
  uint64_t end = loop_due_end(b, now);
  if (b->loop.next < end && b->loop.queued_below < end) b->loop.queued_below = end;
}

/* ---- socket handling ----------------------------------------------------------------------- */

static int conn_watch(bench *b, bench_conn *c, uint32_t mask) {
  if (c->ev_mask == mask) return 0;
  struct epoll_event ev = {.events = mask, .data.ptr = c};
  if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
    perror("twinlane-bench: epoll_ctl");
    return -1;
  }
  c->ev_mask = mask;
  return 0;
}

static void conn_close(bench *b, bench_conn *c) {
  (void)b;
  if (c->fd >= 0) {
    /* Closing the fd removes it from the epoll set. */
    if (close(c->fd) != 0 && errno != EINTR) perror("twinlane-bench: close");
    c->fd = -1;
  }
  c->state = CONN_CLOSED;
  c->ev_mask = 0;
  c->rlen = 0;
  c->served = 0;
  http_resp_reset(&c->resp);
}

/* The request in flight (if any) failed without an HTTP answer: count it, drop the socket and
 * let the connection start afresh (after a back-off when connecting itself failed). */
static void conn_fail(bench *b, bench_conn *c, const char *why, bool connect_failed, uint64_t now) {
  if (c->busy) {
    record(b, c->kind, 0, false, c->t_start_ns, c->t_start_ns, now);
    if (b->ph == PH_LOAD && b->measuring && c->t_start_ns >= b->t_measure_start)
      note_error_sample(b, c, 0, NULL, 0, why);
    if (c->kind == REQ_SEED_PRODUCT || c->kind == REQ_SEED_ORDER) {
      b->seed_done++;
      b->seed_failed++;
      if (b->seed_first_error[0] == '\0')
        snprintf(b->seed_first_error, sizeof b->seed_first_error, "%s", why);
    } else if (c->kind == REQ_METRICS && c->metrics_after) {
      b->metrics_after_done = true;
    } else if (c->kind == REQ_FLASH_ORDER) {
      b->flash.inflight--;
    } else if (c->kind == REQ_TAIL_LOG) {
      b->flash.tail_failures++;
      b->flash.tail_last_status = 0;
    } else if (c->kind == REQ_FLASH_PRODUCT) {
      b->flash.product_done = true;
      b->flash.product_status = 0;
      fprintf(stderr, "twinlane-bench: GET /products/%s: %s\n", b->flash.product, why);
    }
    c->busy = false;
  }
  if (c->control && b->ph == PH_PROBE)
    snprintf(b->probe_last_error, sizeof b->probe_last_error, "%s", why);
  conn_close(b, c);
  if (connect_failed) {
    b->connect_failures++;
    c->retry_at_ns = now + CONNECT_BACKOFF_MS * 1000000ull;
  }
}

static void conn_send(bench *b, bench_conn *c, uint64_t now) {
  while (c->wsent < c->wlen) {
    ssize_t n = send(c->fd, c->wbuf + c->wsent, c->wlen - c->wsent, MSG_NOSIGNAL);
    if (n > 0) {
      c->wsent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (conn_watch(b, c, EPOLLIN | EPOLLOUT) != 0)
        conn_fail(b, c, "epoll_ctl failed", false, now);
      return;
    }
    conn_fail(b, c, n < 0 ? strerror(errno) : "send returned 0", false, now);
    return;
  }
  if (conn_watch(b, c, EPOLLIN) != 0) conn_fail(b, c, "epoll_ctl failed", false, now);
}

/* Opens a socket and starts a non-blocking connect. The busy request is sent once connected. */
static void conn_connect(bench *b, bench_conn *c, uint64_t now) {
  int fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    conn_fail(b, c, strerror(errno), true, now);
    return;
  }
  int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    int e = errno;
    if (close(fd) != 0) perror("twinlane-bench: close");
    conn_fail(b, c, strerror(e), true, now);
    return;
  }
  c->fd = fd;
  b->reconnects++;
  int rc = connect(fd, (const struct sockaddr *)&b->addr, b->addr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    char why[160];
    snprintf(why, sizeof why, "connect: %s", strerror(errno));
    conn_fail(b, c, why, true, now);
    return;
  }
  c->state = rc == 0 ? CONN_OPEN : CONN_CONNECTING;
  c->ev_mask = EPOLLIN | EPOLLOUT;
  struct epoll_event ev = {.events = c->ev_mask, .data.ptr = c};
  if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    perror("twinlane-bench: epoll_ctl");
    conn_fail(b, c, "epoll_ctl failed", true, now);
    return;
  }
  if (c->state == CONN_OPEN && c->busy) conn_send(b, c, now);
}

/* Gives an idle connection its next request (or nothing) and starts sending it. */
static void conn_kick(bench *b, bench_conn *c, uint64_t now) {
  if (c->busy || b->ph == PH_DONE || now < c->retry_at_ns) return;
  int rc;
  if (c->control) {
    if (b->ph == PH_PROBE) {
      rc = set_request(b, c, REQ_PROBE, "GET", "/health", NULL, now) == 0 ? 1 : -1;
    } else if (b->ph == PH_SYNC && !b->sync_ok) {
      char target[128];
      snprintf(target, sizeof target, "/products?limit=1&minPosition=%llu&waitMs=5000",
               (unsigned long long)b->setup_position);
      rc = set_request(b, c, REQ_SYNC, "GET", target, NULL, now) == 0 ? 1 : -1;
    } else if (b->ph == PH_SAGA_SYNC && !b->flash.saga_synced) {
      rc = set_request(b, c, REQ_SAGA_SYNC, "GET", "/metrics", NULL, now) == 0 ? 1 : -1;
    } else if ((b->want_metrics_before && !b->metrics_before_sent) ||
               (b->want_metrics_after && !b->metrics_after_done)) {
      rc = set_request(b, c, REQ_METRICS, "GET", "/metrics", NULL, now) == 0 ? 1 : -1;
      c->metrics_after = b->metrics_before_sent; /* before is always asked first */
      b->metrics_before_sent = true;
    } else if (b->flash.product_want && !b->flash.product_done) {
      /* The product view once it reflects every settling event read. */
      char target[192];
      snprintf(target, sizeof target, "/products/%s?minPosition=%llu&waitMs=5000",
               b->flash.product, (unsigned long long)(b->flash.tail_next - 1));
      rc = set_request(b, c, REQ_FLASH_PRODUCT, "GET", target, NULL, now) == 0 ? 1 : -1;
    } else if (b->o.mode == MODE_FLASH && (b->ph == PH_LOAD || b->ph == PH_SETTLE) &&
               !b->flash.settled) {
      char target[128];
      snprintf(target, sizeof target, "/log?fromPosition=%llu&limit=%d",
               (unsigned long long)b->flash.tail_next, TAIL_PAGE);
      rc = set_request(b, c, REQ_TAIL_LOG, "GET", target, NULL, now) == 0 ? 1 : -1;
    } else {
      rc = 0;
    }
  } else {
    rc = workload_next(b, c, now);
  }
  if (rc < 0) {
    b->exit_code = EXIT_USAGE;
    b->ph = PH_DONE;
    return;
  }
  if (rc == 0) return;
  if (c->state == CONN_CLOSED)
    conn_connect(b, c, now);
  else if (c->state == CONN_OPEN)
    conn_send(b, c, now);
}

static void remember_order(bench *b, bench_conn *c, const char *order_id, uint64_t now,
                           bool for_payment) {
  pooled_order *po = &b->pool[b->pool_next];
  snprintf(po->id, sizeof po->id, "%s", order_id);
  po->ack_ns = now;
  b->pool_next = (b->pool_next + 1) % POOL_MAX;
  if (b->pool_len < POOL_MAX) b->pool_len++;
  if (!for_payment) return;
  if (c->n_unpaid == UNPAID_MAX) { /* forget the oldest */
    memmove(c->unpaid[0], c->unpaid[1], (size_t)(UNPAID_MAX - 1) * ID_MAX);
    memmove(&c->unpaid_ack_ns[0], &c->unpaid_ack_ns[1],
            (size_t)(UNPAID_MAX - 1) * sizeof c->unpaid_ack_ns[0]);
    c->n_unpaid--;
  }
  c->unpaid_ack_ns[c->n_unpaid] = now;
  snprintf(c->unpaid[c->n_unpaid++], ID_MAX, "%s", order_id);
}

/* The log position a command answer reports: header X-Position, else the top-level "position"
 * of the body; -1 when neither is there. */
static int64_t answer_position(const char *body, size_t body_len, int64_t x_position) {
  const char *v;
  size_t vl;
  uint64_t parsed;
  if (x_position >= 0) return x_position;
  if (json_top_field(body, body_len, "position", &v, &vl) && parse_u64(v, vl, &parsed))
    return (int64_t)parsed;
  return -1;
}

/* ---- flash-sale: following every order until it settles ----------------------------------- */

static bool lit_eq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
  return h;
}

/* The tracked order with id s[0..n), or (create) a new slot for it; NULL when absent, or when
 * the id does not fit or the table is full. The table holds at most twice --flash-orders
 * orders (the attempts) at half load, so it never fills unless the log holds orders of the
 * product that this run did not send. */
static flash_order *flash_slot(flash_state *f, const char *s, size_t n, bool create) {
  if (n == 0 || n >= FLASH_ID_MAX || f->orders == NULL) return NULL;
  size_t mask = f->fcap - 1, i = (size_t)fnv1a(s, n) & mask;
  for (size_t probes = 0; probes < f->fcap; probes++, i = (i + 1) & mask) {
    flash_order *o = &f->orders[i];
    if (o->id[0] == '\0') {
      if (!create) return NULL;
      memcpy(o->id, s, n);
      o->id[n] = '\0';
      return o;
    }
    if (strncmp(o->id, s, n) == 0 && o->id[n] == '\0') return o;
  }
  return NULL;
}

/* An acknowledged order whose settling event was read: its settle time. */
static void flash_sample(flash_state *f, const flash_order *o) {
  uint64_t us = 0;
  if (o->settled_ns > o->ack_ns)
    us = (o->settled_ns - o->ack_ns) / 1000;
  else
    f->settled_before_ack++; /* the tail read it before the 201 arrived */
  hist_record(&f->settle, us);
  f->acked_settled++;
}

/* One event of a GET /log page, ev[0..n) an object. */
static void flash_event(flash_state *f, const char *ev, size_t n, uint64_t now) {
  const char *v, *stream;
  size_t vl, sl;
  uint64_t pos;
  if (json_top_field(ev, n, "position", &v, &vl) && parse_u64(v, vl, &pos) &&
      pos >= f->tail_next)
    f->tail_next = pos + 1;
  if (!json_top_field(ev, n, "type", &v, &vl) ||
      !json_top_field(ev, n, "stream", &stream, &sl) || sl <= 6 ||
      memcmp(stream, "order-", 6) != 0)
    return;
  stream += 6;
  sl -= 6;
  if (lit_eq(v, vl, "OrderPlaced")) {
    /* Ours when it names the product on sale (a unique id per run). */
    char needle[80];
    int nl = snprintf(needle, sizeof needle, "\"%s\"", f->product);
    if (memmem(ev, n, needle, (size_t)nl) == NULL) return;
    flash_order *o = flash_slot(f, stream, sl, true);
    if (o != NULL && !o->placed) {
      o->placed = true;
      f->placed_seen++;
    }
    return;
  }
  bool reserved = lit_eq(v, vl, "OrderReserved");
  if (!reserved && !lit_eq(v, vl, "OrderRejected")) return;
  flash_order *o = flash_slot(f, stream, sl, false);
  if (o == NULL) return; /* not an order of this run */
  if (o->outcome != OUTCOME_NONE) {
    f->duplicate_settles++; /* settled twice: the tail or the server is wrong */
    return;
  }
  o->outcome = reserved ? OUTCOME_RESERVED : OUTCOME_REJECTED;
  o->settled_ns = now;
  if (reserved) {
    f->reserved++;
  } else {
    f->rejected++;
    if (memmem(ev, n, "\"OUT_OF_STOCK\"", 14) == NULL) f->rejected_other_reason++;
  }
  if (o->acked) flash_sample(f, o);
}

/* A GET /log page: a JSON array of events. Returns the number of events, or -1 if the page
 * cannot be read. */
static int flash_tail_page(flash_state *f, const char *js, size_t len, uint64_t now) {
  size_t i = 0;
  int n = 0;
  while (i < len && json_ws(js[i])) i++;
  if (i >= len || js[i] != '[') return -1;
  i++;
  for (;;) {
    while (i < len && (json_ws(js[i]) || js[i] == ',')) i++;
    if (i >= len) return -1;
    if (js[i] == ']') return n;
    if (js[i] != '{') return -1;
    size_t start = i;
    int depth = 0;
    for (; i < len; i++) {
      char ch = js[i];
      if (ch == '"') {
        for (i++; i < len && js[i] != '"'; i += js[i] == '\\' ? 2 : 1) {
        }
        if (i >= len) return -1;
      } else if (ch == '{' || ch == '[') {
        depth++;
      } else if ((ch == '}' || ch == ']') && --depth == 0) {
        break;
      }
    }
    if (i >= len) return -1;
    i++;
    flash_event(f, js + start, i - start, now);
    n++;
  }
}

/* The 201 of an order of the sale. */
static void flash_ack(bench *b, const char *body, size_t body_len, int64_t position,
                      uint64_t now) {
  flash_state *f = &b->flash;
  char id[ID_MAX];
  f->acked++;
  if (position > 0 && (uint64_t)position > f->max_ack_position)
    f->max_ack_position = (uint64_t)position;
  flash_order *o = json_top_id(body, body_len, "orderId", id, sizeof id)
                       ? flash_slot(f, id, strlen(id), true)
                       : NULL;
  if (o == NULL || o->acked) {
    f->untracked++;
    return;
  }
  o->acked = true;
  o->ack_ns = now;
  if (o->outcome != OUTCOME_NONE) flash_sample(f, o);
}

/* Handles a complete response to the busy request: accounting, workload state, phase state. */
static void on_response(bench *b, bench_conn *c, int status, const char *body, size_t body_len,
                        int64_t x_position, uint64_t now) {
  req_kind kind = c->kind;
  bool ok = status >= 200 && status <= 299;
  uint64_t lat_from = kind == REQ_RYW_READ ? c->ryw_ack_ns : c->t_start_ns;
  uint64_t window_start = kind == REQ_RYW_READ ? c->ryw_ack_ns : c->t_start_ns;
  /* A payment of an order whose stock is not reserved (yet), or that was rejected or cancelled,
   * is a business refusal the workload expects now and then, not a failure. */
  bool refused = false, not_reserved = false;
  if (kind == REQ_CONFIRM_PAYMENT && status == 409) {
    const char *v;
    size_t vl;
    if (json_top_field(body, body_len, "code", &v, &vl)) {
      not_reserved = lit_eq(v, vl, "ORDER_NOT_RESERVED");
      refused = not_reserved || lit_eq(v, vl, "ORDER_CLOSED");
    }
  }
  record(b, kind, status, refused, lat_from, window_start, now);
  if (in_window(b, kind, window_start, now)) {
    if (refused && not_reserved)
      b->refused_not_reserved++;
    else if (refused)
      b->refused_closed++;
    else if (!ok)
      note_error_sample(b, c, status, body, body_len, NULL);
  }
  c->busy = false;

  switch (kind) {
    case REQ_PROBE:
      b->probe_last_status = status;
      if (ok) b->probe_ok = true;
      break;
    case REQ_SYNC:
      if (ok) {
        b->sync_ok = true;
      } else if (status != 503) { /* 503: not there yet; the next kick asks again */
        int bl = body_len > 300 ? 300 : (int)body_len;
        fprintf(stderr, "twinlane-bench: setup: GET /products?minPosition=%llu answered %d %.*s\n",
                (unsigned long long)b->setup_position, status, bl, body);
        b->exit_code = EXIT_UNREACHABLE;
        b->ph = PH_DONE;
      }
      break;
    case REQ_METRICS: {
      metrics_snap *m = c->metrics_after ? &b->metrics_after : &b->metrics_before;
      b->metrics_last_status = status;
      if (ok) metrics_parse(m, body, body_len);
      if (c->metrics_after) b->metrics_after_done = true;
      break;
    }
    case REQ_SAGA_SYNC:
      if (ok) {
        metrics_snap *m = malloc(sizeof *m);
        if (m == NULL) {
          fprintf(stderr, "twinlane-bench: out of memory\n");
          b->exit_code = EXIT_USAGE;
          b->ph = PH_DONE;
          break;
        }
        metrics_parse(m, body, body_len);
        bool has_pm = m->has_pm;
        double pm_pos = m->pm_min_position;
        free(m);
        if (!has_pm) {
          fprintf(stderr,
                  "twinlane-bench: setup: GET /metrics has no tl_process_manager_position: "
                  "this server runs no inventory saga, a flash sale cannot settle\n");
          b->exit_code = EXIT_UNREACHABLE;
          b->ph = PH_DONE;
          break;
        }
        if (pm_pos >= (double)b->setup_position) {
          b->flash.saga_synced = true;
          b->flash.t_saga_synced = now;
          break;
        }
      }
      c->retry_at_ns = now + SAGA_POLL_NS; /* not there yet: ask again a little later */
      break;
    case REQ_FLASH_ORDER:
      b->flash.inflight--;
      b->flash.t_last_answer = now;
      if (ok && b->ph == PH_LOAD && !b->flash.placing_done)
        flash_ack(b, body, body_len, answer_position(body, body_len, x_position), now);
      break;
    case REQ_TAIL_LOG: {
      int n = ok ? flash_tail_page(&b->flash, body, body_len, now) : -1;
      b->flash.tail_pages++;
      b->flash.tail_last_status = status;
      if (n < 0) {
        b->flash.tail_failures++;
        c->retry_at_ns = now + 10 * TAIL_IDLE_NS;
      } else {
        b->flash.tail_events += (uint64_t)n;
        if (n < TAIL_PAGE) c->retry_at_ns = now + TAIL_IDLE_NS; /* caught up: pause */
      }
      break;
    }
    case REQ_FLASH_PRODUCT: {
      flash_state *f = &b->flash;
      const char *v;
      size_t vl;
      long long i64;
      f->product_done = true;
      f->product_status = status;
      if (!ok) {
        int bl = body_len > 300 ? 300 : (int)body_len;
        fprintf(stderr, "twinlane-bench: GET /products/%s answered %d %.*s\n", f->product,
                status, bl, body);
        break;
      }
      if (json_top_field(body, body_len, "stock", &v, &vl) && parse_i64(v, vl, &i64))
        f->product_stock = i64;
      if (json_top_field(body, body_len, "available", &v, &vl) && parse_i64(v, vl, &i64))
        f->product_available = i64;
      if (json_top_field(body, body_len, "inStock", &v, &vl))
        f->product_in_stock = lit_eq(v, vl, "true") ? 1 : lit_eq(v, vl, "false") ? 0 : -1;
      break;
    }
    case REQ_SEED_PRODUCT:
    case REQ_SEED_ORDER:
      b->seed_done++;
      /* A product left by an earlier run against the same data is fine (not the one on sale,
       * whose id is new for every run). */
      if (!ok && !(kind == REQ_SEED_PRODUCT && status == 409 && b->o.mode != MODE_FLASH)) {
        b->seed_failed++;
        if (b->seed_first_error[0] == '\0') {
          int bl = body_len > 300 ? 300 : (int)body_len;
          snprintf(b->seed_first_error, sizeof b->seed_first_error, "HTTP %d: %.*s", status, bl,
                   body);
        }
      }
      if (ok) {
        int64_t pos = answer_position(body, body_len, x_position);
        if (pos > 0 && (uint64_t)pos > b->setup_position) b->setup_position = (uint64_t)pos;
      }
      if (kind == REQ_SEED_ORDER && ok) {
        char id[ID_MAX];
        if (json_top_id(body, body_len, "orderId", id, sizeof id))
          remember_order(b, c, id, now - POOL_MIN_AGE_NS, false);
      }
      break;
    case REQ_PLACE_ORDER:
    case REQ_CONFIRM_PAYMENT: {
      if (!ok) break;
      char id[ID_MAX];
      if (kind == REQ_PLACE_ORDER) {
        if (!json_top_id(body, body_len, "orderId", id, sizeof id)) break;
        remember_order(b, c, id, now, b->o.mode == MODE_MIXED);
      } else {
        memcpy(id, c->order_id, ID_MAX);
      }
      int64_t pos = answer_position(body, body_len, x_position);
      b->commands_acked++;
      if (b->ph == PH_LOAD && pos >= 0 && b->o.ryw_every > 0 && b->o.rate_per_s <= 0 &&
          b->commands_acked % (uint64_t)b->o.ryw_every == 0) {
        c->ryw_pending = true;
        memcpy(c->ryw_order, id, ID_MAX);
        c->ryw_position = (uint64_t)pos;
        c->ryw_ack_ns = now;
      }
      break;
    }
    default:
      break;
  }
}

/* Reads what the socket has and completes the response when it can. */
static void conn_read(bench *b, bench_conn *c, uint64_t now) {
  for (;;) {
    if (c->rcap - c->rlen < 4096) {
      size_t ncap = c->rcap * 2;
      if (ncap > RBUF_MAX + 4096) {
        conn_fail(b, c, "response larger than 64 MiB", false, now);
        return;
      }
      char *nb = realloc(c->rbuf, ncap);
      if (nb == NULL) {
        conn_fail(b, c, "out of memory", false, now);
        return;
      }
      c->rbuf = nb;
      c->rcap = ncap;
    }
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    bool eof = n == 0;
    if (n < 0) {
      /* A reset: treat like a close so that a keep-alive race can be retried. */
      if (errno != ECONNRESET) {
        conn_fail(b, c, strerror(errno), false, now);
        return;
      }
      eof = true;
    } else {
      c->rlen += (size_t)n;
    }
    if (!c->busy) {
      if (!eof) {
        conn_fail(b, c, "bytes from the server with no request in flight", false, now);
        return;
      }
      conn_close(b, c); /* an idle keep-alive socket closed by the server */
      return;
    }
    if (eof && c->rlen == 0 && c->served > 0 && kind_info[c->kind].is_get && !c->resent) {
      /* The server closed a reused socket before reading our request (keep-alive race):
       * send the same GET again on a fresh socket, once. */
      conn_close(b, c);
      c->resent = true;
      c->wsent = 0;
      b->resends++;
      conn_connect(b, c, now);
      return;
    }
    const char *err = NULL;
    int rc = http_resp_parse(&c->resp, c->rbuf, &c->rlen, eof, &err);
    if (rc < 0) {
      conn_fail(b, c, err, false, now);
      return;
    }
    if (rc == 0) {
      if (eof) {
        conn_fail(b, c, "connection closed", false, now);
        return;
      }
      continue;
    }
    if (c->resp.consumed != c->rlen) {
      conn_fail(b, c, "extra bytes after the response", false, now);
      return;
    }
    bool close_after = c->resp.close_after || eof;
    int status = c->resp.status;
    int64_t x_position = c->resp.x_position;
    /* The body stays valid until the buffer is reset below. */
    on_response(b, c, status, c->rbuf + c->resp.head_len, c->resp.body_len, x_position, now);
    c->rlen = 0;
    c->served++;
    http_resp_reset(&c->resp);
    if (close_after) conn_close(b, c);
    conn_kick(b, c, now);
    return;
  }
}

static void conn_on_event(bench *b, bench_conn *c, uint32_t events, uint64_t now) {
  if (c->fd < 0) return;
  if (c->state == CONN_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      char why[160];
      snprintf(why, sizeof why, "connect: %s", strerror(err));
      conn_fail(b, c, why, true, now);
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    c->state = CONN_OPEN;
    if (c->busy)
      conn_send(b, c, now);
    else if (conn_watch(b, c, EPOLLIN) != 0)
      conn_fail(b, c, "epoll_ctl failed", false, now);
    return;
  }
  if ((events & EPOLLOUT) && c->busy && c->wsent < c->wlen) {
    conn_send(b, c, now);
    if (c->fd < 0) return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(b, c, now);
}

/* ---- phases -------------------------------------------------------------------------------- */

/* Counts every load request still unanswered when the drain gives up as a failure without an
 * HTTP answer, wherever it started: it hung for at least DRAIN_BUDGET_MS. */
static void count_unanswered(bench *b, uint64_t now) {
  for (int i = 0; i < b->n_conns; i++) {
    const bench_conn *c = &b->conns[i];
    req_class cls = kind_info[c->kind].cls;
    if (!c->busy || cls == CLASS_SETUP) continue;
    b->cls[cls].errors++;
    b->cls[cls].by_status[0]++;
    b->kinds[c->kind].errors++;
    b->kinds[c->kind].by_status[0]++;
    if (cls != CLASS_RYW) {
      b->all.errors++;
      b->all.by_status[0]++;
    }
    char why[96];
    snprintf(why, sizeof why, "no answer after %.1f s", (double)(now - c->t_start_ns) / 1e9);
    note_error_sample(b, c, 0, NULL, 0, why);
  }
}

static void kick_all(bench *b, uint64_t now) {
  for (int i = 0; i <= b->n_conns && b->ph != PH_DONE; i++) conn_kick(b, &b->conns[i], now);
}

static void arm_alarm(double seconds) { alarm((unsigned)ceil(seconds)); }

static void enter_load(bench *b, uint64_t now) {
  b->ph = PH_LOAD;
  if (b->o.mode == MODE_FLASH) {
    /* No warm-up: a flash sale starts cold. The window is the placing, however long it takes
     * (at most --duration-s); the settling after it is bounded by FLASH_SETTLE_BUDGET_S. */
    arm_alarm(b->o.duration_s + DRAIN_BUDGET_MS / 1000.0 + FLASH_SETTLE_BUDGET_S +
              2 * DRAIN_BUDGET_MS / 1000.0 + HARD_STOP_GRACE_S);
    b->t_load_start = b->t_measure_start = now;
    b->t_measure_end = UINT64_MAX; /* set when the placing ends */
    b->measuring = true;
    b->want_metrics_before = true;
    b->t_last_progress = now;
    b->flash.tail_next = b->setup_position + 1;
    fprintf(stderr,
            "twinlane-bench: load: flash-sale, %d connections, %d single-unit orders of %s "
            "(stock %d), at most %.3g s\n",
            b->n_conns, b->o.flash_orders, b->flash.product, b->o.flash_stock,
            b->o.duration_s);
    return;
  }
  arm_alarm(b->o.warmup_s + b->o.duration_s + HARD_STOP_GRACE_S);
  b->t_load_start = now;
  b->t_measure_start = now + (uint64_t)(b->o.warmup_s * 1e9);
  b->t_measure_end = b->t_measure_start + (uint64_t)(b->o.duration_s * 1e9);
  b->measuring = true;
  b->t_last_progress = now;
  fprintf(stderr, "twinlane-bench: load: %s, %d connections, %.3g s warm-up + %.3g s measured\n",
          mode_names[b->o.mode], b->n_conns, b->o.warmup_s, b->o.duration_s);
}

/* After seeding, the load starts only once the read lane reflects every setup write (so that
 * the first reads do not 404 on products or orders the projections have not applied yet). */
static void enter_sync_or_load(bench *b, uint64_t now) {
  if (b->setup_position > 0) {
    b->ph = PH_SYNC;
    fprintf(stderr, "twinlane-bench: setup: waiting for the read lane to reach position %llu\n",
            (unsigned long long)b->setup_position);
  } else {
    enter_load(b, now);
  }
}

static void enter_seed_orders_or_load(bench *b, uint64_t now) {
  if (b->o.mode == MODE_FLASH) {
    /* Orders placed by earlier runs may still be in the saga's queue: start the sale only when
     * it has handled everything up to the product's creation, so that the settle times are
     * this sale's own. */
    b->ph = PH_SAGA_SYNC;
    b->flash.t_saga_wait_start = now;
    fprintf(stderr,
            "twinlane-bench: setup: waiting for the process managers to reach position %llu\n",
            (unsigned long long)b->setup_position);
  } else if (b->o.mode == MODE_READS && b->o.seed_orders > 0) {
    b->ph = PH_SEED_ORDERS;
    b->seed_next = b->seed_done = b->seed_failed = 0;
    b->seed_target = b->o.seed_orders;
    fprintf(stderr, "twinlane-bench: setup: placing %d orders to read\n", b->seed_target);
  } else {
    enter_sync_or_load(b, now);
  }
}

static void progress(bench *b, uint64_t now) {
  if (now - b->t_last_progress < 1000000000ull || !isatty(STDERR_FILENO)) return;
  b->t_last_progress = now;
  double t = (double)(now - b->t_load_start) / 1e9;
  uint64_t ok = 0, err = 0;
  for (int i = 0; i < CLASS_COUNT; i++) {
    ok += b->cls[i].ok;
    err += b->cls[i].errors;
  }
  if (b->o.mode == MODE_FLASH)
    fprintf(stderr, "  t=%5.1fs acked=%d settled=%d (of %d placed) errors=%llu\n", t,
            b->flash.acked, b->flash.reserved + b->flash.rejected, b->flash.placed_seen,
            (unsigned long long)err);
  else
    fprintf(stderr, "  t=%5.1fs %s ok=%llu errors=%llu\n", t,
            now < b->t_measure_start ? "(warm-up)" : "", (unsigned long long)ok,
            (unsigned long long)err);
}

/* flash-sale, load and settle phases: stop placing at the target or the time limit, end the
 * window when every order is answered, then wait until every order settled. */
static void flash_tick(bench *b, uint64_t now) {
  flash_state *f = &b->flash;
  if (b->ph == PH_LOAD) {
    if (!f->stop &&
        (f->acked >= b->o.flash_orders || now >= b->t_measure_start + (uint64_t)(b->o.duration_s * 1e9))) {
      f->stop = true;
      f->stop_ns = now;
    }
    if (!f->stop || (f->inflight > 0 && now <= f->stop_ns + DRAIN_BUDGET_MS * 1000000ull)) return;
    if (f->inflight > 0) {
      /* Orders unanswered DRAIN_BUDGET_MS after the placing stopped: failures. */
      count_unanswered(b, now);
      for (int i = 0; i < b->n_conns; i++) {
        bench_conn *c = &b->conns[i];
        if (!c->busy) continue;
        c->busy = false;
        conn_close(b, c);
      }
      f->inflight = 0;
    }
    uint64_t end = f->t_last_answer > b->t_measure_start ? f->t_last_answer : now;
    f->placing_done = true;
    f->t_place_end = end;
    b->t_measure_end = end;
    b->window_s = (double)(end - b->t_measure_start) / 1e9;
    if (b->window_s < 1e-3) b->window_s = 1e-3;
    f->settle_deadline = now + FLASH_SETTLE_BUDGET_S * 1000000000ull;
    b->ph = PH_SETTLE;
    return;
  }
  /* PH_SETTLE */
  bool all = f->acked_settled >= f->acked - f->untracked &&
             f->reserved + f->rejected >= f->placed_seen;
  if (!all && now <= f->settle_deadline) return;
  f->settled = all;
  f->settle_timeout = !all;
  f->t_settled = now;
  if (!all)
    fprintf(stderr, "twinlane-bench: %d of %d orders did not settle within %d s\n",
            f->placed_seen - f->reserved - f->rejected, f->placed_seen, FLASH_SETTLE_BUDGET_S);
  b->ph = PH_DRAIN;
  b->want_metrics_after = true;
  f->product_want = true;
  b->t_drain_deadline = now + 2 * DRAIN_BUDGET_MS * 1000000ull; /* the product view may wait 5 s */
  conn_kick(b, &b->conns[b->n_conns], now);
}

/* Moves the run to its next phase when the current one is over, and fails it when a phase
 * overruns its budget. */
static void phase_tick(bench *b, uint64_t now) {
  switch (b->ph) {
    case PH_PROBE:
      if (b->probe_ok) {
        if (b->o.seed_products || b->o.mode == MODE_FLASH) {
          b->ph = PH_SEED_PRODUCTS;
          b->seed_next = b->seed_done = b->seed_failed = 0;
          b->seed_target = b->o.mode == MODE_FLASH ? 1 : b->o.products;
          if (b->o.mode == MODE_FLASH)
            fprintf(stderr, "twinlane-bench: setup: creating %s with stock %d\n",
                    b->flash.product, b->o.flash_stock);
          else
            fprintf(stderr, "twinlane-bench: setup: creating %d products\n", b->seed_target);
        } else {
          enter_seed_orders_or_load(b, now);
        }
        kick_all(b, now);
      } else if (now > b->t_probe_deadline) {
        if (b->probe_last_status)
          fprintf(stderr, "twinlane-bench: %s:%d answers GET /health with %d\n", b->o.host,
                  b->o.port, b->probe_last_status);
        else
          fprintf(stderr, "twinlane-bench: server %s:%d unreachable: %s\n", b->o.host, b->o.port,
                  b->probe_last_error[0] ? b->probe_last_error : "no answer to GET /health in 5 s");
        b->exit_code = EXIT_UNREACHABLE;
        b->ph = PH_DONE;
      }
      break;
    case PH_SEED_PRODUCTS:
    case PH_SEED_ORDERS:
      if (b->seed_done >= b->seed_target) {
        if (b->seed_failed > 0) {
          fprintf(stderr, "twinlane-bench: setup: %d of %d %s failed; first: %s\n", b->seed_failed,
                  b->seed_target, b->ph == PH_SEED_PRODUCTS ? "POST /products" : "POST /orders",
                  b->seed_first_error);
          b->exit_code = EXIT_UNREACHABLE;
          b->ph = PH_DONE;
          break;
        }
        if (b->ph == PH_SEED_PRODUCTS)
          enter_seed_orders_or_load(b, now);
        else
          enter_sync_or_load(b, now);
        kick_all(b, now);
      } else if (now > b->t_setup_deadline) {
        fprintf(stderr, "twinlane-bench: setup: only %d of %d done in %d s\n", b->seed_done,
                b->seed_target, SETUP_BUDGET_S);
        b->exit_code = EXIT_UNREACHABLE;
        b->ph = PH_DONE;
      }
      break;
    case PH_SYNC:
      if (b->sync_ok) {
        enter_load(b, now);
        kick_all(b, now);
      } else if (now > b->t_setup_deadline) {
        fprintf(stderr,
                "twinlane-bench: setup: the read lane did not reach position %llu in %d s\n",
                (unsigned long long)b->setup_position, SETUP_BUDGET_S);
        b->exit_code = EXIT_UNREACHABLE;
        b->ph = PH_DONE;
      }
      break;
    case PH_SAGA_SYNC:
      if (b->flash.saga_synced) {
        enter_load(b, now);
        kick_all(b, now);
      } else if (now > b->t_setup_deadline) {
        fprintf(stderr,
                "twinlane-bench: setup: the process managers did not reach position %llu in %d "
                "s\n",
                (unsigned long long)b->setup_position, SETUP_BUDGET_S);
        b->exit_code = EXIT_UNREACHABLE;
        b->ph = PH_DONE;
      }
      break;
    case PH_SETTLE:
      progress(b, now);
      flash_tick(b, now);
      break;
    case PH_LOAD:
      progress(b, now);
      if (b->o.mode == MODE_FLASH) {
        flash_tick(b, now);
        break;
      }
      if (!b->want_metrics_before && now >= b->t_measure_start) {
        b->want_metrics_before = true;
        if (b->o.rate_per_s > 0) b->loop.backlog_start = loop_backlog(b, b->t_measure_start);
        conn_kick(b, &b->conns[b->n_conns], now);
      }
      if (now >= b->t_measure_end) {
        if (b->o.rate_per_s > 0) b->loop.backlog_end = loop_backlog(b, b->t_measure_end);
        b->ph = PH_DRAIN;
        b->want_metrics_after = true;
        b->t_drain_deadline = now + DRAIN_BUDGET_MS * 1000000ull;
        conn_kick(b, &b->conns[b->n_conns], now);
      }
      break;
    case PH_DRAIN: {
      /* Wait for the final metrics and for the answers still due, so that a request the
       * server never answers shows up in the report as unanswered. */
      bool waiting = false;
      for (int i = 0; i < b->n_conns && !waiting; i++) waiting = b->conns[i].busy;
      if ((b->metrics_after_done && !waiting &&
           (b->o.mode != MODE_FLASH || b->flash.product_done)) ||
          now > b->t_drain_deadline) {
        b->t_done = now;
        count_unanswered(b, now);
        b->ph = PH_DONE;
      }
      break;
    }
    case PH_DONE:
      break;
  }
}

/* How long the loop may sleep in epoll, in nanoseconds: until the next deadline of the phase, the
 * next open-loop request due (when one is not already waiting for a busy connection: then an
 * answer wakes the loop) or the next connection retry, and never longer than 50 ms. */
static uint64_t next_timeout_ns(const bench *b, uint64_t now) {
  uint64_t next = now + 50000000ull;
  if (b->ph == PH_LOAD) {
    if (!b->want_metrics_before && b->t_measure_start < next) next = b->t_measure_start;
    if (b->t_measure_end < next) next = b->t_measure_end;
    if (b->o.rate_per_s > 0) {
      uint64_t due = loop_due_ns(b, b->loop.next);
      if (due > now && due < next) next = due;
    }
  }
  for (int i = 0; i <= b->n_conns; i++) {
    const bench_conn *c = &b->conns[i];
    if (!c->busy && c->retry_at_ns > now && c->retry_at_ns < next) next = c->retry_at_ns;
  }
  return next > now ? next - now : 0;
}

/* epoll_wait with a timeout in nanoseconds: epoll_pwait2 where the kernel has it (Linux 5.11),
 * so that open-loop requests go out on time; else epoll_wait, rounding up to whole ms. */
static int wait_events(int epfd, struct epoll_event *evs, int max, uint64_t timeout_ns) {
  static bool no_pwait2;
  if (!no_pwait2) {
    struct timespec ts = {.tv_sec = (time_t)(timeout_ns / 1000000000ull),
                          .tv_nsec = (long)(timeout_ns % 1000000000ull)};
    int n = epoll_pwait2(epfd, evs, max, &ts, NULL);
    if (n >= 0 || errno != ENOSYS) return n;
    no_pwait2 = true;
  }
  return epoll_wait(epfd, evs, max, (int)((timeout_ns + 999999) / 1000000));
}

static int run(bench *b) {
  struct epoll_event evs[256];
  uint64_t now = now_ns();
  b->t_probe_deadline = now + PROBE_BUDGET_MS * 1000000ull;
  b->t_setup_deadline = now + SETUP_BUDGET_S * 1000000000ull;
  arm_alarm(SETUP_BUDGET_S + 10);
  kick_all(b, now);
  while (b->ph != PH_DONE) {
    now = now_ns();
    phase_tick(b, now);
    if (b->ph == PH_DONE) break;
    for (int i = 0; i <= b->n_conns; i++) {
      bench_conn *c = &b->conns[i];
      if (!c->busy && now >= c->retry_at_ns) conn_kick(b, c, now);
    }
    loop_note_backlog(b, now);
    int n = wait_events(b->epfd, evs, (int)(sizeof evs / sizeof evs[0]), next_timeout_ns(b, now));
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("twinlane-bench: epoll_wait");
      return -1;
    }
    now = now_ns();
    for (int i = 0; i < n; i++) conn_on_event(b, evs[i].data.ptr, evs[i].events, now);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Report
 * ------------------------------------------------------------------------------------------- */

typedef struct {
  double p50_ms, p99_ms, p999_ms, max_ms, ops_per_s;
  uint64_t ok, errors, refused;
} stats_view;

static stats_view view_of(const bench *b, const req_stats *s) {
  stats_view v;
  v.ok = s->ok;
  v.errors = s->errors;
  v.refused = s->refused;
  v.ops_per_s = (double)s->ok / b->window_s;
  v.p50_ms = hist_quantile_us(&s->latency, 0.50) / 1000;
  v.p99_ms = hist_quantile_us(&s->latency, 0.99) / 1000;
  v.p999_ms = hist_quantile_us(&s->latency, 0.999) / 1000;
  v.max_ms = s->latency.total ? (double)s->latency.max_us / 1000 : NAN;
  return v;
}

static void fmt_ms(char *out, size_t cap, double ms) {
  if (isnan(ms))
    snprintf(out, cap, "-");
  else if (ms < 10)
    snprintf(out, cap, "%.3f", ms);
  else if (ms < 1000)
    snprintf(out, cap, "%.1f", ms);
  else
    snprintf(out, cap, "%.0f", ms);
}

typedef struct {
  bool lag_ok;
  double lag_p50_s, lag_p99_s, lag_events;
  bool lag_p50_above, lag_p99_above;
  bool batch_ok;
  double batch_mean, batch_count;
  bool fsyncs_ok, events_ok;
  double fsyncs, events;
  uint64_t total_ok, total_errors, total_refused;
  uint64_t by_status[STATUS_SLOTS];
  int in_flight;
  double oldest_in_flight_ms;
} derived;

static derived derive(const bench *b, uint64_t t_end) {
  derived d;
  memset(&d, 0, sizeof d);
  const metrics_snap *m0 = &b->metrics_before, *m1 = &b->metrics_after;
  double n1 = 0;
  d.lag_ok = lag_quantile(m0, m1, 0.50, &d.lag_p50_s, &d.lag_p50_above, &d.lag_events) &&
             lag_quantile(m0, m1, 0.99, &d.lag_p99_s, &d.lag_p99_above, &n1);
  if (m0->present && m1->present && m0->has_batch && m1->has_batch) {
    d.batch_count = m1->batch_count - m0->batch_count;
    if (d.batch_count > 0) {
      d.batch_ok = true;
      d.batch_mean = (m1->batch_sum - m0->batch_sum) / d.batch_count;
    }
  }
  if (m0->present && m1->present && m0->has_fsyncs && m1->has_fsyncs) {
    d.fsyncs_ok = true;
    d.fsyncs = m1->fsyncs - m0->fsyncs;
  }
  if (m0->present && m1->present && m0->has_events && m1->has_events) {
    d.events_ok = true;
    d.events = m1->events - m0->events;
  }
  for (int c = 0; c < CLASS_COUNT; c++) {
    d.total_ok += b->cls[c].ok;
    d.total_errors += b->cls[c].errors;
    d.total_refused += b->cls[c].refused;
    for (int s = 0; s < STATUS_SLOTS; s++) d.by_status[s] += b->cls[c].by_status[s];
  }
  for (int i = 0; i < b->n_conns; i++) {
    const bench_conn *c = &b->conns[i];
    if (c->busy) {
      d.in_flight++;
      double age = (double)(t_end - c->t_start_ns) / 1e6;
      if (age > d.oldest_in_flight_ms) d.oldest_in_flight_ms = age;
    }
  }
  return d;
}

/* flash-sale: what the orders and the product must have come to, and whether they did. */
typedef struct {
  int expected_reserved, expected_rejected;
  int acked_not_in_log;  /* acknowledged, yet no OrderPlaced of the product read for it */
  int placed_not_acked;  /* in the log, but its request failed or was abandoned */
  long long expected_available;
  bool counts_ok, product_ok, ok;
} flash_verdict;

static flash_verdict flash_judge(const bench *b) {
  const flash_state *f = &b->flash;
  flash_verdict v;
  memset(&v, 0, sizeof v);
  for (size_t i = 0; i < f->fcap; i++) {
    const flash_order *o = &f->orders[i];
    if (o->id[0] == '\0') continue;
    if (o->acked && !o->placed) v.acked_not_in_log++;
    if (o->placed && !o->acked) v.placed_not_acked++;
  }
  /* Every order of the product in the log counts, acknowledged or not: the stock went to
   * whichever came first. */
  v.expected_reserved = f->placed_seen < b->o.flash_stock ? f->placed_seen : b->o.flash_stock;
  v.expected_rejected = f->placed_seen - v.expected_reserved;
  v.expected_available = (long long)b->o.flash_stock - f->reserved;
  v.counts_ok = f->settled && f->reserved == v.expected_reserved &&
                f->rejected == v.expected_rejected && f->rejected_other_reason == 0 &&
                f->duplicate_settles == 0 && f->untracked == 0 && v.acked_not_in_log == 0;
  v.product_ok = f->product_status >= 200 && f->product_status <= 299 &&
                 f->product_stock == b->o.flash_stock &&
                 f->product_available == v.expected_available &&
                 f->product_in_stock == (v.expected_available > 0 ? 1 : 0);
  v.ok = v.counts_ok && v.product_ok;
  return v;
}

static void print_flash(const bench *b, const derived *d, const flash_verdict *v) {
  const flash_state *f = &b->flash;
  char p50[32], p99[32], p999[32], mx[32];
  printf("%-34s %s: stock %d, %d single-unit orders wanted\n", "flash sale", f->product,
         b->o.flash_stock, b->o.flash_orders);
  printf("  %-32s %d acknowledged (201) in %.3f s: %.1f commands/s, %llu errors", "placed",
         f->acked, b->window_s, (double)f->acked / b->window_s,
         (unsigned long long)d->total_errors);
  if (f->acked < b->o.flash_orders)
    printf(" (short of %d: %s)", b->o.flash_orders,
           f->attempts >= 2 * b->o.flash_orders ? "too many failures" : "time limit");
  printf("\n  %-32s %d orders of the product read from the log", "", f->placed_seen);
  if (v->placed_not_acked) printf(", %d of them without a 201", v->placed_not_acked);
  if (v->acked_not_in_log) printf(", %d acknowledged orders MISSING", v->acked_not_in_log);
  printf("\n  %-32s RESERVED %d (expected %d), REJECTED %d (expected %d)", "settled",
         f->reserved, v->expected_reserved, f->rejected, v->expected_rejected);
  if (f->rejected_other_reason)
    printf(", %d rejected for another reason than OUT_OF_STOCK", f->rejected_other_reason);
  if (f->duplicate_settles) printf(", %d settled twice", f->duplicate_settles);
  if (f->untracked) printf(", %d 201s without a trackable orderId", f->untracked);
  if (f->settle_timeout)
    printf(", %d not settled after %d s", f->placed_seen - f->reserved - f->rejected,
           FLASH_SETTLE_BUDGET_S);
  printf(": %s\n", v->counts_ok ? "OK" : "MISMATCH");
  fmt_ms(p50, sizeof p50, hist_quantile_us(&f->settle, 0.50) / 1000);
  fmt_ms(p99, sizeof p99, hist_quantile_us(&f->settle, 0.99) / 1000);
  fmt_ms(p999, sizeof p999, hist_quantile_us(&f->settle, 0.999) / 1000);
  fmt_ms(mx, sizeof mx, f->settle.total ? (double)f->settle.max_us / 1000 : NAN);
  printf("  %-32s p50 %s ms   p99 %s ms   p99.9 %s ms   max %s ms   (%d orders", "settle time",
         p50, p99, p999, mx, f->acked_settled);
  if (f->settled_before_ack) printf(", %d settled before their 201 arrived", f->settled_before_ack);
  printf(")\n  %-32s all settled %.3f s after the last 201\n", "",
         (double)(f->t_settled - f->t_place_end) / 1e9);
  if (f->product_status >= 200 && f->product_status <= 299)
    printf("  %-32s stock %lld, available %lld (expected %lld), inStock %s: %s\n",
           "product view", f->product_stock, f->product_available, v->expected_available,
           f->product_in_stock < 0 ? "?" : f->product_in_stock ? "true" : "false",
           v->product_ok ? "OK" : "MISMATCH");
  else
    printf("  %-32s GET /products/%s answered %d: MISMATCH\n", "product view", f->product,
           f->product_status);
  printf("  %-32s GET /log: %llu pages, %llu events, %llu failed; the saga caught up %.3f s "
         "before the sale\n",
         "settle tracker", (unsigned long long)f->tail_pages, (unsigned long long)f->tail_events,
         (unsigned long long)f->tail_failures,
         (double)(f->t_saga_synced - f->t_saga_wait_start) / 1e9);
  printf("%-34s %s\n", "flash sale check", v->ok ? "OK" : "MISMATCH");
}

static void print_report(const bench *b, const derived *d) {
  char p50[32], p99[32], p999[32], mx[32];
  printf("\ntwinlane-bench  %s:%d  mode=%s  connections=%d", b->o.host, b->o.port,
         mode_names[b->o.mode], b->n_conns);
  if (b->o.mode == MODE_FLASH)
    printf("  placing=%.3gs (limit %gs)  stock=%d  orders=%d", b->window_s, b->o.duration_s,
           b->o.flash_stock, b->o.flash_orders);
  else
    printf("  warm-up=%gs  measured=%gs", b->o.warmup_s, b->o.duration_s);
  if (b->o.mode == MODE_MIXED) printf("  reads/write=%d", b->o.reads_per_write);
  if ((b->o.mode == MODE_MIXED || b->o.mode == MODE_READS) && b->o.reads != READS_ALL)
    printf("  reads=%s", reads_names[b->o.reads]);
  if (b->o.rate_per_s > 0) printf("  open loop at %g/s", b->o.rate_per_s);
  if (b->o.mode != MODE_HEALTH && b->o.mode != MODE_FLASH) printf("  products=%d", b->o.products);
  printf("\n\n%-34s %9s %10s %9s %9s %9s %9s %7s %7s\n", "class", "ok", "ops/s", "p50 ms",
         "p99 ms", "p99.9 ms", "max ms", "errors", "refused");
  for (int c = 0; c < CLASS_COUNT; c++) {
    const req_stats *s = &b->cls[c];
    bool relevant = (b->o.mode == MODE_HEALTH) == (c == CLASS_HEALTH);
    if (!relevant && s->ok + s->errors == 0) continue;
    if (c == CLASS_RYW &&
        (b->o.mode == MODE_HEALTH || b->o.mode == MODE_READS || b->o.rate_per_s > 0))
      continue;
    if (c == CLASS_COMMAND && b->o.mode == MODE_READS) continue;
    if (c == CLASS_QUERY && (b->o.mode == MODE_ORDERS || b->o.mode == MODE_FLASH)) continue;
    if (c == CLASS_RYW && b->o.mode == MODE_FLASH) continue;
    stats_view v = view_of(b, s);
    fmt_ms(p50, sizeof p50, v.p50_ms);
    fmt_ms(p99, sizeof p99, v.p99_ms);
    fmt_ms(p999, sizeof p999, v.p999_ms);
    fmt_ms(mx, sizeof mx, v.max_ms);
    printf("%-34s %9llu %10.1f %9s %9s %9s %9s %7llu %7llu\n", class_names[c],
           (unsigned long long)v.ok, v.ops_per_s, p50, p99, p999, mx,
           (unsigned long long)v.errors, (unsigned long long)v.refused);
  }
  int kinds_used = 0;
  for (int k = 0; k < REQ_KIND_COUNT; k++)
    kinds_used += b->kinds[k].ok + b->kinds[k].errors + b->kinds[k].refused > 0;
  if (kinds_used > 1) {
    printf("by request:\n");
    for (int k = 0; k < REQ_KIND_COUNT; k++) {
      const req_stats *s = &b->kinds[k];
      if (s->ok + s->errors + s->refused == 0) continue;
      stats_view v = view_of(b, s);
      fmt_ms(p50, sizeof p50, v.p50_ms);
      fmt_ms(p99, sizeof p99, v.p99_ms);
      fmt_ms(p999, sizeof p999, v.p999_ms);
      fmt_ms(mx, sizeof mx, v.max_ms);
      printf("  %-32s %9llu %10.1f %9s %9s %9s %9s %7llu %7llu\n", kind_info[k].label,
             (unsigned long long)v.ok, v.ops_per_s, p50, p99, p999, mx,
             (unsigned long long)v.errors, (unsigned long long)v.refused);
    }
  }
  printf("\n");
  if (b->o.rate_per_s > 0) {
    const open_loop *l = &b->loop;
    uint64_t due = loop_due_in_window(b);
    char a[32], c[32];
    fmt_ms(a, sizeof a, hist_quantile_us(&l->send_delay, 0.50) / 1000);
    fmt_ms(c, sizeof c, hist_quantile_us(&l->send_delay, 0.99) / 1000);
    printf("%-34s target %.1f/s, achieved %.1f/s (2xx answers in the window)\n", "open loop",
           b->o.rate_per_s, (double)b->all.ok / b->window_s);
    printf("  %-32s %llu due in the window, %llu sent (%llu of them queued: no idle connection "
           "when due)\n",
           "", (unsigned long long)due, (unsigned long long)l->sent,
           (unsigned long long)l->queued);
    printf("  %-32s backlog (due, not sent): %llu when the window opened, %llu when it closed\n",
           "", (unsigned long long)l->backlog_start, (unsigned long long)l->backlog_end);
    printf("  %-32s send delay after the due time p50 %s ms   p99 %s ms; latencies above run "
           "from the due time\n",
           "", a, c);
  }
  if (b->o.mode == MODE_FLASH) {
    flash_verdict fv = flash_judge(b);
    print_flash(b, d, &fv);
  }
  if (b->o.mode != MODE_HEALTH) {
    if (d->lag_ok) {
      char a[32], c[32];
      fmt_ms(a, sizeof a, d->lag_p50_s * 1000);
      fmt_ms(c, sizeof c, d->lag_p99_s * 1000);
      printf("%-34s p50 %s%s ms   p99 %s%s ms   (%.0f events, server histogram)\n",
             "projection lag", d->lag_p50_above ? ">" : "", a, d->lag_p99_above ? ">" : "", c,
             d->lag_events);
    } else if (!b->metrics_after.present || !b->metrics_before.present) {
      if (b->metrics_last_status == 0)
        printf("%-34s n/a (GET /metrics did not answer)\n", "projection lag");
      else
        printf("%-34s n/a (GET /metrics answered %d)\n", "projection lag", b->metrics_last_status);
    } else {
      printf("%-34s n/a (%s)\n", "projection lag",
             b->metrics_after.n_lag == 0 ? "no tl_projection_visible_lag_seconds in /metrics"
                                         : "no event applied in the window");
    }
    const req_stats *ryw = &b->cls[CLASS_RYW];
    if (ryw->ok > 0) {
      char a[32], c[32];
      fmt_ms(a, sizeof a, hist_quantile_us(&ryw->latency, 0.50) / 1000);
      fmt_ms(c, sizeof c, hist_quantile_us(&ryw->latency, 0.99) / 1000);
      printf("%-34s p50 %s ms   p99 %s ms   (%llu reads, client: ack -> read answered)\n",
             "ryw lag", a, c, (unsigned long long)ryw->ok);
    } else if ((b->o.mode == MODE_MIXED || b->o.mode == MODE_ORDERS) && b->o.rate_per_s <= 0) {
      printf("%-34s n/a (no read-your-write read completed)\n", "ryw lag");
    }
    if (d->batch_ok)
      printf("%-34s %.2f commands per fsync   (%.0f batches)\n", "group commit mean batch",
             d->batch_mean, d->batch_count);
    else
      printf("%-34s n/a (%s)\n", "group commit mean batch",
             b->metrics_after.present ? "no batch observed" : "no /metrics");
    if ((d->fsyncs_ok || d->events_ok) && b->o.mode == MODE_FLASH) {
      /* The snapshots bracket the placing and the settling: totals, no rate. */
      printf("%-34s", "server log");
      if (d->events_ok) printf(" %.0f events appended", d->events);
      if (d->fsyncs_ok) printf("  %.0f fsyncs", d->fsyncs);
      printf("   (placing and settling)\n");
    } else if (d->fsyncs_ok || d->events_ok) {
      printf("%-34s", "server log");
      if (d->events_ok)
        printf(" %.0f events appended (%.1f/s)", d->events, d->events / b->window_s);
      if (d->fsyncs_ok) printf("  %.0f fsyncs (%.1f/s)", d->fsyncs, d->fsyncs / b->window_s);
      printf("\n");
    }
  }
  uint64_t total = d->total_ok + d->total_errors + d->total_refused;
  if (d->total_refused > 0 || b->o.mode == MODE_MIXED)
    printf("%-34s %llu confirm-payment answers 409: ORDER_NOT_RESERVED x%llu, ORDER_CLOSED x%llu "
           "(expected business refusals, not errors)\n",
           "refused", (unsigned long long)d->total_refused,
           (unsigned long long)b->refused_not_reserved, (unsigned long long)b->refused_closed);
  printf("%-34s %llu of %llu requests (%.2f%%)", "errors", (unsigned long long)d->total_errors,
         (unsigned long long)total, total ? 100.0 * (double)d->total_errors / (double)total : 0);
  const char *sep = ": ";
  for (int s = 0; s < STATUS_SLOTS; s++) {
    if (d->by_status[s] == 0) continue;
    if (s == 0)
      printf("%sno answer x%llu", sep, (unsigned long long)d->by_status[s]);
    else
      printf("%s%d x%llu", sep, s, (unsigned long long)d->by_status[s]);
    sep = ", ";
  }
  printf("\n");
  printf("%-34s %llu sockets opened, %llu failed connects, %llu GETs re-sent\n", "client",
         (unsigned long long)b->reconnects, (unsigned long long)b->connect_failures,
         (unsigned long long)b->resends);
  if (d->in_flight > 0)
    printf(
        "%-34s %d requests still unanswered %.1f s after the window closed (oldest sent "
        "%.0f ms before giving up)\n",
        "unanswered", d->in_flight, (double)(b->t_done - b->t_measure_end) / 1e9,
        d->oldest_in_flight_ms);
  for (int i = 0; i < b->n_error_samples; i++) printf("  error sample: %s\n", b->error_samples[i]);
  fflush(stdout);
}

static void json_num(FILE *f, double v) {
  if (isnan(v) || isinf(v))
    fprintf(f, "null");
  else
    fprintf(f, "%.6g", v);
}

static void json_stats(FILE *f, const bench *b, const req_stats *s) {
  stats_view v = view_of(b, s);
  fprintf(f, "{\"ok\": %llu, \"errors\": %llu, \"refused\": %llu, \"ops_per_s\": ",
          (unsigned long long)v.ok, (unsigned long long)v.errors, (unsigned long long)v.refused);
  json_num(f, v.ops_per_s);
  fprintf(f, ", \"p50_ms\": ");
  json_num(f, v.p50_ms);
  fprintf(f, ", \"p99_ms\": ");
  json_num(f, v.p99_ms);
  fprintf(f, ", \"p999_ms\": ");
  json_num(f, v.p999_ms);
  fprintf(f, ", \"max_ms\": ");
  json_num(f, v.max_ms);
  fprintf(f, "}");
}

/* Writes the results to path as one JSON object with one top-level member per line, so that a
 * shell script can pick a figure with grep/sed. Returns 0, or -1 with a message on stderr. */
static int write_json(const bench *b, const derived *d, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "twinlane-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  double total_per_s = (double)d->total_ok / b->window_s;
  fprintf(f,
          "{\n  \"mode\": \"%s\",\n  \"connections\": %d,\n  \"warmup_s\": %g,\n"
          "  \"duration_s\": %g,\n  \"reads_per_write\": %d,\n  \"products\": %d,\n",
          mode_names[b->o.mode], b->n_conns, b->o.mode == MODE_FLASH ? 0 : b->o.warmup_s,
          b->window_s, b->o.reads_per_write,
          b->o.products);
  fprintf(f, "  \"reads\": \"%s\",\n  \"seed_orders\": %d,\n", reads_names[b->o.reads],
          b->o.mode == MODE_READS ? b->o.seed_orders : 0);
  fprintf(f, "  \"requests_per_s\": ");
  json_num(f, total_per_s);
  fprintf(f, ",\n  \"requests\": ");
  json_stats(f, b, &b->all);
  fprintf(f, ",\n  \"rate_target_per_s\": ");
  json_num(f, b->o.rate_per_s > 0 ? b->o.rate_per_s : NAN);
  if (b->o.rate_per_s > 0) {
    const open_loop *l = &b->loop;
    uint64_t due = loop_due_in_window(b);
    fprintf(f,
            ",\n  \"rate_achieved_per_s\": %.6g,\n  \"rate_due\": %llu,\n  \"rate_sent\": %llu,"
            "\n  \"rate_queued\": %llu,\n  \"rate_backlog_start\": %llu,\n"
            "  \"rate_backlog_end\": %llu,\n  \"rate_send_delay_p50_ms\": ",
            (double)b->all.ok / b->window_s, (unsigned long long)due,
            (unsigned long long)l->sent, (unsigned long long)l->queued,
            (unsigned long long)l->backlog_start, (unsigned long long)l->backlog_end);
    json_num(f, hist_quantile_us(&l->send_delay, 0.50) / 1000);
    fprintf(f, ",\n  \"rate_send_delay_p99_ms\": ");
    json_num(f, hist_quantile_us(&l->send_delay, 0.99) / 1000);
  }
  for (int c = 0; c < CLASS_COUNT; c++) {
    fprintf(f, ",\n  \"%s_per_s\": ", class_names[c]);
    json_num(f, (double)b->cls[c].ok / b->window_s);
  }
  for (int c = 0; c < CLASS_COUNT; c++) {
    fprintf(f, ",\n  \"%s\": ", class_names[c]);
    json_stats(f, b, &b->cls[c]);
  }
  fprintf(f, ",\n  \"by_request\": {");
  const char *sep = "";
  for (int k = 0; k < REQ_KIND_COUNT; k++) {
    if (b->kinds[k].ok + b->kinds[k].errors + b->kinds[k].refused == 0) continue;
    fprintf(f, "%s\"%s\": ", sep, kind_info[k].label);
    json_stats(f, b, &b->kinds[k]);
    sep = ", ";
  }
  fprintf(f,
          "},\n  \"refused\": %llu,\n  \"refused_by_code\": {\"ORDER_NOT_RESERVED\": %llu, "
          "\"ORDER_CLOSED\": %llu},",
          (unsigned long long)d->total_refused, (unsigned long long)b->refused_not_reserved,
          (unsigned long long)b->refused_closed);
  fprintf(f, "\n  \"errors\": %llu,\n  \"error_ratio\": ", (unsigned long long)d->total_errors);
  uint64_t total = d->total_ok + d->total_errors + d->total_refused;
  json_num(f, total ? (double)d->total_errors / (double)total : 0);
  fprintf(f, ",\n  \"errors_by_status\": {");
  sep = "";
  for (int s = 0; s < STATUS_SLOTS; s++) {
    if (d->by_status[s] == 0) continue;
    if (s == 0)
      fprintf(f, "%s\"no_answer\": %llu", sep, (unsigned long long)d->by_status[s]);
    else
      fprintf(f, "%s\"%d\": %llu", sep, s, (unsigned long long)d->by_status[s]);
    sep = ", ";
  }
  fprintf(f, "},\n  \"projection_lag_p50_ms\": ");
  json_num(f, d->lag_ok ? d->lag_p50_s * 1000 : NAN);
  fprintf(f, ",\n  \"projection_lag_p99_ms\": ");
  json_num(f, d->lag_ok ? d->lag_p99_s * 1000 : NAN);
  fprintf(f, ",\n  \"projection_lag_events\": ");
  json_num(f, d->lag_ok ? d->lag_events : NAN);
  const req_stats *ryw = &b->cls[CLASS_RYW];
  fprintf(f, ",\n  \"ryw_lag_p50_ms\": ");
  json_num(f, hist_quantile_us(&ryw->latency, 0.50) / 1000);
  fprintf(f, ",\n  \"ryw_lag_p99_ms\": ");
  json_num(f, hist_quantile_us(&ryw->latency, 0.99) / 1000);
  fprintf(f, ",\n  \"group_commit_mean_batch\": ");
  json_num(f, d->batch_ok ? d->batch_mean : NAN);
  fprintf(f, ",\n  \"group_commit_batches\": ");
  json_num(f, d->batch_ok ? d->batch_count : NAN);
  fprintf(f, ",\n  \"fsyncs\": ");
  json_num(f, d->fsyncs_ok ? d->fsyncs : NAN);
  fprintf(f, ",\n  \"events_appended\": ");
  json_num(f, d->events_ok ? d->events : NAN);
  if (b->o.mode == MODE_FLASH) {
    const flash_state *fs = &b->flash;
    flash_verdict v = flash_judge(b);
    fprintf(f, ",\n  \"flash_product\": \"%s\",\n  \"flash_stock\": %d,\n  \"flash_orders\": %d",
            fs->product, b->o.flash_stock, b->o.flash_orders);
    fprintf(f, ",\n  \"flash_acked\": %d,\n  \"flash_placed_in_log\": %d,\n  \"flash_place_s\": ",
            fs->acked, fs->placed_seen);
    json_num(f, b->window_s);
    fprintf(f, ",\n  \"flash_commands_per_s\": ");
    json_num(f, (double)fs->acked / b->window_s);
    fprintf(f,
            ",\n  \"flash_reserved\": %d,\n  \"flash_rejected\": %d,\n"
            "  \"flash_expected_reserved\": %d,\n  \"flash_expected_rejected\": %d,\n"
            "  \"flash_unsettled\": %d",
            fs->reserved, fs->rejected, v.expected_reserved, v.expected_rejected,
            fs->placed_seen - fs->reserved - fs->rejected);
    fprintf(f, ",\n  \"flash_settle_p50_ms\": ");
    json_num(f, hist_quantile_us(&fs->settle, 0.50) / 1000);
    fprintf(f, ",\n  \"flash_settle_p99_ms\": ");
    json_num(f, hist_quantile_us(&fs->settle, 0.99) / 1000);
    fprintf(f, ",\n  \"flash_settle_p999_ms\": ");
    json_num(f, hist_quantile_us(&fs->settle, 0.999) / 1000);
    fprintf(f, ",\n  \"flash_settle_max_ms\": ");
    json_num(f, fs->settle.total ? (double)fs->settle.max_us / 1000 : NAN);
    fprintf(f, ",\n  \"flash_settled_before_ack\": %d,\n  \"flash_all_settled_after_s\": ",
            fs->settled_before_ack);
    json_num(f, (double)(fs->t_settled - fs->t_place_end) / 1e9);
    fprintf(f, ",\n  \"flash_product_stock\": ");
    json_num(f, fs->product_stock >= 0 ? (double)fs->product_stock : NAN);
    fprintf(f, ",\n  \"flash_available\": ");
    json_num(f, fs->product_done && fs->product_status == 200 ? (double)fs->product_available
                                                                : NAN);
    fprintf(f, ",\n  \"flash_expected_available\": %lld,\n  \"flash_check\": \"%s\"",
            v.expected_available, v.ok ? "OK" : "MISMATCH");
  }
  fprintf(f, ",\n  \"unanswered_at_end\": %d\n}\n", d->in_flight);
  if (ferror(f) != 0) {
    fprintf(stderr, "twinlane-bench: %s: write error\n", path);
    if (fclose(f) != 0) perror("twinlane-bench: fclose");
    return -1;
  }
  if (fclose(f) != 0) {
    fprintf(stderr, "twinlane-bench: %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Set-up and main
 * ------------------------------------------------------------------------------------------- */

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "twinlane-bench: hard time limit reached, giving up\n";
  ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)w;
  _exit(EXIT_HARD_STOP);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: twinlane-bench [options]\n"
          "  --host H              server address (default 127.0.0.1)\n"
          "  --port N              server port (default 8080)\n"
          "  --connections N       keep-alive connections (default 64)\n"
          "  --duration-s S        measured seconds (default 10)\n"
          "  --warmup-s S          warm-up seconds before measuring (default 2)\n"
          "  --reads-per-write R   mixed mode: a write with probability 1/(1+R) (default 10)\n"
          "  --products N          catalogue size, products bench-p0..bench-p<N-1> (default 100)\n"
          "  --mode M              mixed | health | orders | reads | flash-sale (default mixed)\n"
          "  --seed-products       create the products before the run (409 is fine)\n"
          "  --ryw-every N         read-your-write probe after every Nth command (default 100,\n"
          "                        0: never)\n"
          "  --rng-seed N          seed of the random choices (default 1)\n"
          "  --flash-stock N       flash-sale: units of the product on sale (default 100)\n"
          "  --flash-orders M      flash-sale: acknowledged single-unit orders to place\n"
          "                        (default 2000, at most %d); --duration-s bounds the placing\n"
          "  --reads K             modes mixed and reads: all (the mix, default), or one of\n"
          "                        order | customer | search | product | products: every read\n"
          "                        is that query\n"
          "  --seed-orders N       reads mode: orders placed in setup, all readable by\n"
          "                        --reads order (default %d, at most %d)\n"
          "  --rate R              open loop: R requests per second on a fixed schedule, latency\n"
          "                        from each request's due time (default 0: closed loop)\n"
          "  --json FILE           also write the results to FILE as JSON\n"
          "  --help                this text\n"
          "exit status: 0 ok, 1 usage, 2 server unreachable or setup failed, 3 hard time\n"
          "limit, 4 more than 1%% of the measured requests failed or none completed,\n"
          "5 flash-sale: the orders or the stock did not settle as they must (MISMATCH)\n",
          FLASH_ORDERS_MAX, READS_SEED_ORDERS, POOL_MAX);
}

static bool parse_int_opt(const char *s, int min, int max, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min || v > max) return false;
  *out = (int)v;
  return true;
}

static bool parse_seconds_opt(const char *s, double min, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v >= min) || v > 86400) return false;
  *out = v;
  return true;
}

/* Parses argv into *o. Returns 0, 1 after --help, -1 on a usage error (message printed). */
static int parse_args(int argc, char **argv, bench_opts *o) {
  enum {
    O_HOST = 256,
    O_PORT,
    O_CONN,
    O_DUR,
    O_WARM,
    O_RPW,
    O_PROD,
    O_MODE,
    O_SEED,
    O_JSON,
    O_RYW,
    O_RNG,
    O_FSTOCK,
    O_FORDERS,
    O_READS,
    O_SEED_ORDERS,
    O_RATE,
    O_HELP
  };
  static const struct option longopts[] = {
      {"host", required_argument, NULL, O_HOST},
      {"port", required_argument, NULL, O_PORT},
      {"connections", required_argument, NULL, O_CONN},
      {"duration-s", required_argument, NULL, O_DUR},
      {"warmup-s", required_argument, NULL, O_WARM},
      {"reads-per-write", required_argument, NULL, O_RPW},
      {"products", required_argument, NULL, O_PROD},
      {"mode", required_argument, NULL, O_MODE},
      {"seed-products", no_argument, NULL, O_SEED},
      {"json", required_argument, NULL, O_JSON},
      {"ryw-every", required_argument, NULL, O_RYW},
      {"rng-seed", required_argument, NULL, O_RNG},
      {"flash-stock", required_argument, NULL, O_FSTOCK},
      {"flash-orders", required_argument, NULL, O_FORDERS},
      {"reads", required_argument, NULL, O_READS},
      {"seed-orders", required_argument, NULL, O_SEED_ORDERS},
      {"rate", required_argument, NULL, O_RATE},
      {"help", no_argument, NULL, O_HELP},
      {NULL, 0, NULL, 0},
  };
  *o = (bench_opts){.host = "127.0.0.1",
                    .port = 8080,
                    .connections = 64,
                    .duration_s = 10,
                    .warmup_s = 2,
                    .reads_per_write = 10,
                    .products = 100,
                    .mode = MODE_MIXED,
                    .ryw_every = 100,
                    .rng_seed = 1,
                    .flash_stock = 100,
                    .flash_orders = 2000,
                    .reads = READS_ALL,
                    .seed_orders = READS_SEED_ORDERS};
  int ch, seed;
  bool ok = true;
  while (ok && (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
      case O_HOST:
        o->host = optarg;
        break;
      case O_PORT:
        ok = parse_int_opt(optarg, 1, 65535, &o->port);
        break;
      case O_CONN:
        ok = parse_int_opt(optarg, 1, MAX_CONNECTIONS, &o->connections);
        break;
      case O_DUR:
        ok = parse_seconds_opt(optarg, 0.1, &o->duration_s);
        break;
      case O_WARM:
        ok = parse_seconds_opt(optarg, 0, &o->warmup_s);
        break;
      case O_RPW:
        ok = parse_int_opt(optarg, 0, 1000000, &o->reads_per_write);
        break;
      case O_PROD:
        ok = parse_int_opt(optarg, 1, 1000000, &o->products);
        break;
      case O_MODE:
        ok = false;
        for (int m = 0; m < MODE_COUNT; m++)
          if (strcmp(optarg, mode_names[m]) == 0) {
            o->mode = (bench_mode)m;
            ok = true;
          }
        break;
      case O_SEED:
        o->seed_products = true;
        break;
      case O_JSON:
        o->json_path = optarg;
        break;
      case O_RYW:
        ok = parse_int_opt(optarg, 0, 1000000000, &o->ryw_every);
        break;
      case O_RNG:
        ok = parse_int_opt(optarg, 0, 2147483647, &seed);
        o->rng_seed = (uint64_t)seed;
        break;
      case O_FSTOCK:
        ok = parse_int_opt(optarg, 0, 1000000000, &o->flash_stock);
        break;
      case O_FORDERS:
        ok = parse_int_opt(optarg, 1, FLASH_ORDERS_MAX, &o->flash_orders);
        break;
      case O_READS:
        ok = false;
        for (int r = 0; r < READS_COUNT; r++)
          if (strcmp(optarg, reads_names[r]) == 0) {
            o->reads = (reads_kind)r;
            ok = true;
          }
        break;
      case O_SEED_ORDERS:
        ok = parse_int_opt(optarg, 0, POOL_MAX, &o->seed_orders);
        break;
      case O_RATE: {
        char *end;
        errno = 0;
        o->rate_per_s = strtod(optarg, &end);
        ok = errno == 0 && end != optarg && *end == '\0' && o->rate_per_s >= 0 &&
             o->rate_per_s <= 10000000;
        break;
      }
      case O_HELP:
        usage(stdout);
        return 1;
      default:
        usage(stderr);
        return -1;
    }
    if (!ok)
      fprintf(stderr, "twinlane-bench: bad value for --%s: %s\n", longopts[ch - O_HOST].name,
              optarg);
  }
  if (!ok) return -1;
  if (optind < argc) {
    fprintf(stderr, "twinlane-bench: unexpected argument: %s\n", argv[optind]);
    return -1;
  }
  if (o->rate_per_s > 0 && o->mode == MODE_FLASH) {
    fprintf(stderr, "twinlane-bench: --rate does not apply to --mode flash-sale\n");
    return -1;
  }
  if (o->reads == READS_ORDER && o->mode == MODE_READS && o->seed_orders == 0) {
    fprintf(stderr, "twinlane-bench: --reads order in --mode reads needs --seed-orders > 0\n");
    return -1;
  }
  return 0;
}

/* Resolves the server address and fills b->addr and the Host header. Returns 0 or -1. */
static int resolve(bench *b) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  char port[16];
  snprintf(port, sizeof port, "%d", b->o.port);
  int rc = getaddrinfo(b->o.host, port, &hints, &res);
  if (rc != 0 || res == NULL) {
    fprintf(stderr, "twinlane-bench: cannot resolve %s: %s\n", b->o.host,
            rc ? gai_strerror(rc) : "no address");
    return -1;
  }
  memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
  b->addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  if (strchr(b->o.host, ':') != NULL)
    rc = snprintf(b->host_header, sizeof b->host_header, "[%s]:%d", b->o.host, b->o.port);
  else
    rc = snprintf(b->host_header, sizeof b->host_header, "%s:%d", b->o.host, b->o.port);
  if (rc < 0 || (size_t)rc >= sizeof b->host_header) {
    fprintf(stderr, "twinlane-bench: host name too long\n");
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  bench *b = calloc(1, sizeof *b);
  if (b == NULL) {
    fprintf(stderr, "twinlane-bench: out of memory\n");
    return EXIT_USAGE;
  }
  /* Line by line, so that the report and the progress on stderr interleave in order. */
  if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
    fprintf(stderr, "twinlane-bench: cannot make stdout line-buffered\n");
  int exit_code = 0;
  int prc = parse_args(argc, argv, &b->o);
  if (prc != 0) {
    free(b);
    return prc > 0 ? 0 : EXIT_USAGE;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGALRM, &sa, NULL) != 0) {
    perror("twinlane-bench: sigaction");
    free(b);
    return EXIT_USAGE;
  }
  if (resolve(b) != 0) {
    free(b);
    return EXIT_UNREACHABLE;
  }
  uint64_t seed_state = b->o.rng_seed * 0x9E3779B97F4A7C15ull + 12345;
  for (int i = 0; i < N_CUSTOMERS; i++) {
    uint64_t hi = splitmix64(&seed_state), lo = splitmix64(&seed_state);
    snprintf(b->customers[i], sizeof b->customers[i], "%08x-%04x-4%03x-%04x-%012llx",
             (unsigned)(hi >> 32), (unsigned)(hi >> 16) & 0xffffu, (unsigned)hi & 0xfffu,
             (unsigned)(0x8000u | ((lo >> 48) & 0x3fffu)),
             (unsigned long long)(lo & 0xffffffffffffull));
  }

  b->n_conns = b->o.connections;
  b->exit_code = 0;
  b->epfd = -1;
  b->window_s = b->o.duration_s;
  if (b->o.rate_per_s > 0) b->loop.interval_ns = 1e9 / b->o.rate_per_s;
  if (b->o.mode == MODE_FLASH) {
    flash_state *f = &b->flash;
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    /* A new product for every run, so that the sale starts from exactly --flash-stock. */
    snprintf(f->product, sizeof f->product, "flash-%llx-%x",
             (unsigned long long)rt.tv_sec * 1000000000ull + (unsigned long long)rt.tv_nsec,
             (unsigned)getpid());
    f->fcap = 64;
    while (f->fcap < 4 * (size_t)b->o.flash_orders) f->fcap *= 2; /* attempts <= 2x orders */
    f->orders = calloc(f->fcap, sizeof *f->orders);
    f->product_stock = f->product_available = -1;
    f->product_in_stock = -1;
    if (f->orders == NULL) {
      fprintf(stderr, "twinlane-bench: out of memory\n");
      exit_code = EXIT_USAGE;
      goto done;
    }
  }
  b->epfd = epoll_create1(EPOLL_CLOEXEC);
  b->conns = calloc((size_t)b->n_conns + 1, sizeof *b->conns);
  if (b->epfd < 0 || b->conns == NULL) {
    fprintf(stderr, "twinlane-bench: cannot set up: %s\n", strerror(errno));
    exit_code = EXIT_USAGE;
    goto done;
  }
  for (int i = 0; i <= b->n_conns; i++) {
    bench_conn *c = &b->conns[i];
    c->fd = -1;
    c->control = i == b->n_conns;
    c->rng = b->o.rng_seed * 1000003ull + (uint64_t)i * 7919ull + 1;
    c->rcap = RBUF_INITIAL;
    c->rbuf = malloc(c->rcap);
    http_resp_reset(&c->resp);
    if (c->rbuf == NULL) {
      fprintf(stderr, "twinlane-bench: out of memory\n");
      exit_code = EXIT_USAGE;
      goto done;
    }
  }

  if (run(b) != 0) {
    exit_code = EXIT_UNREACHABLE;
    goto done;
  }
  alarm(0);
  if (b->exit_code != 0) {
    exit_code = b->exit_code;
    goto done;
  }
  derived d = derive(b, b->t_done);
  print_report(b, &d);
  if (b->o.json_path != NULL && write_json(b, &d, b->o.json_path) != 0) exit_code = EXIT_USAGE;
  uint64_t total = d.total_ok + d.total_errors + d.total_refused;
  if (d.total_ok == 0) {
    fprintf(stderr, "twinlane-bench: no request completed in the measured window\n");
    exit_code = EXIT_TOO_MANY_ERRORS;
  } else if ((double)d.total_errors > 0.01 * (double)total) {
    fprintf(stderr, "twinlane-bench: %.2f%% of the requests failed (limit 1%%)\n",
            100.0 * (double)d.total_errors / (double)total);
    exit_code = EXIT_TOO_MANY_ERRORS;
  }
  if (b->o.mode == MODE_FLASH && exit_code == 0 && !flash_judge(b).ok) {
    fprintf(stderr, "twinlane-bench: flash sale: MISMATCH (see the report)\n");
    exit_code = EXIT_MISMATCH;
  }

done:
  if (b->conns != NULL) {
    for (int i = 0; i <= b->n_conns; i++) {
      if (b->conns[i].fd >= 0 && close(b->conns[i].fd) != 0) perror("twinlane-bench: close");
      free(b->conns[i].rbuf);
    }
    free(b->conns);
  }
  if (b->epfd >= 0 && close(b->epfd) != 0) perror("twinlane-bench: close");
  free(b->flash.orders);
  free(b);
  return exit_code;
}
