/*
 * admin.c: `twinlane dlq ...`, `twinlane reconcile` and `twinlane projections ...`: operations
 * on a running server through its admin API.
 *
 * The server owns the data directory (it holds DIR/LOCK), so administrative commands talk to
 * it over HTTP instead of opening the databases: a tiny blocking HTTP/1.1 client, one request
 * per connection (Connection: close), the answer's body printed as it is.
 */
#include "cli/tl_cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ANSWER_MAX (16u << 20) /* 16 MiB: far above any admin answer */
#define IO_TIMEOUT_S 30

typedef struct answer {
  int status;
  char *body; /* NUL-terminated, malloc'd */
} answer;

static int parse_server(const char *s, struct sockaddr_in *sa) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) return -1;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (!end || *end || port < 1 || port > 65535) return -1;
  memset(sa, 0, sizeof *sa);
  sa->sin_family = AF_INET;
  sa->sin_port = htons((uint16_t)port);
  if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
  return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Sends `method path` (no body) and reads the whole answer. Returns 0, or -1 with a message on
 * stderr. */
static int request(const char *server, const char *method, const char *path, answer *out) {
  struct sockaddr_in sa;
  if (parse_server(server, &sa) != 0) {
    fprintf(stderr, "twinlane: --server wants IPv4:PORT, got '%s'\n", server);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "twinlane: socket: %s\n", strerror(errno));
    return -1;
  }
  struct timeval tv = {IO_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "twinlane: cannot reach %s: %s\n", server, strerror(errno));
    close(fd);
    return -1;
  }
  char head[1024];
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n"
                   "Accept: application/json\r\n\r\n",
                   method, path, server);
  if (n < 0 || (size_t)n >= sizeof head || write_all(fd, head, (size_t)n) != 0) {
    fprintf(stderr, "twinlane: cannot send the request to %s\n", server);
    close(fd);
    return -1;
  }
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) break;
    if (len + 1 == cap) {
      char *nb = cap < ANSWER_MAX ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      fprintf(stderr, "twinlane: reading the answer from %s: %s\n", server, strerror(errno));
      free(buf);
      close(fd);
      return -1;
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  if (!buf) {
    fprintf(stderr, "twinlane: the answer is too large\n");
    return -1;
  }
  buf[len] = '\0';
  int status = 0;
  char *body = strstr(buf, "\r\n\r\n");
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !body) {
    fprintf(stderr, "twinlane: %s did not answer HTTP\n", server);
    free(buf);
    return -1;
  }
  /* The server answers Connection: close requests with a plain body (no chunking). */
  body += 4;
  memmove(buf, body, strlen(body) + 1);
  out->status = status;
  out->body = buf;
  return 0;
}

static void dlq_usage(FILE *f) {
  fprintf(f,
          "usage: twinlane dlq [--server HOST:PORT] list [--projection NAME]\n"
          "       twinlane dlq [--server HOST:PORT] retry ID | retry-all | drop ID\n"
          "  --server HOST:PORT  the running server (default $TWINLANE_SERVER or "
          "127.0.0.1:8080)\n");
}

/* ID must be a positive decimal number (it goes into a path). */
static int valid_id(const char *s) {
  if (!*s || strlen(s) > 19) return 0;
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9') return 0;
  return 1;
}

static int valid_name(const char *s) {
  if (!*s || strlen(s) > 64) return 0;
  for (const char *p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
  return 1;
}

int tl_cli_dlq(int argc, char **argv) {
  const char *server = getenv("TWINLANE_SERVER");
  if (!server || !*server) server = "127.0.0.1:8080";
  const char *projection = NULL;
  static const struct option OPTS[] = {{"server", required_argument, NULL, 's'},
                                       {"projection", required_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "+h", OPTS, NULL)) != -1) {
    switch (c) {
      case 's': server = optarg; break;
      case 'p': projection = optarg; break;
      case 'h': dlq_usage(stdout); return 0;
      default: dlq_usage(stderr); return 2;
    }
  }
  /* Options may also follow the sub-command (twinlane dlq list --projection orders). */
  const char *words[2] = {NULL, NULL};
  int nw = 0;
  for (int i = optind; i < argc; i++) {
    if (strcmp(argv[i], "--projection") == 0 && i + 1 < argc)
      projection = argv[++i];
    else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
      server = argv[++i];
    else if (nw < 2)
      words[nw++] = argv[i];
    else
      return dlq_usage(stderr), 2;
  }
  char path[256];
  const char *method = "POST";
  if (nw == 1 && strcmp(words[0], "list") == 0) {
    method = "GET";
    if (projection && !valid_name(projection)) return dlq_usage(stderr), 2;
    snprintf(path, sizeof path, "/admin/dlq%s%s", projection ? "?limit=1000&projection=" : "",
             projection ? projection : "");
  } else if (nw == 1 && strcmp(words[0], "retry-all") == 0) {
    snprintf(path, sizeof path, "/admin/dlq/retry-all");
  } else if (nw == 2 && strcmp(words[0], "retry") == 0 && valid_id(words[1])) {
    snprintf(path, sizeof path, "/admin/dlq/%s/retry", words[1]);
  } else if (nw == 2 && strcmp(words[0], "drop") == 0 && valid_id(words[1])) {
    method = "DELETE";
    snprintf(path, sizeof path, "/admin/dlq/%s", words[1]);
  } else {
    dlq_usage(stderr);
    return 2;
  }
  answer a = {0};
  if (request(server, method, path, &a) != 0) return 2;
  int ok = a.status >= 200 && a.status < 300;
  FILE *f = ok ? stdout : stderr;
  if (a.body[0])
    fprintf(f, "%s\n", a.body);
  else if (ok)
    fprintf(f, "ok (%d)\n", a.status);
  free(a.body);
  return ok ? 0 : 1;
}

int tl_cli_reconcile(int argc, char **argv) {
  const char *server = getenv("TWINLANE_SERVER");
  if (!server || !*server) server = "127.0.0.1:8080";
  static const struct option OPTS[] = {{"server", required_argument, NULL, 's'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", OPTS, NULL)) != -1) {
    switch (c) {
      case 's': server = optarg; break;
      case 'h':
        printf(
            "usage: twinlane reconcile [--server HOST:PORT]\n"
            "  compares every read model with a fresh fold of the log; exit status 0 when\n"
            "  they agree, 3 when there are mismatches (the report says which rows)\n");
        return 0;
      default: return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "usage: twinlane reconcile [--server HOST:PORT]\n");
    return 2;
  }
  answer a = {0};
  if (request(server, "POST", "/admin/reconcile", &a) != 0) return 2;
  int ok = a.status >= 200 && a.status < 300;
  fprintf(ok ? stdout : stderr, "%s\n", a.body);
  int rc = ok ? 0 : 1;
  if (ok) {
    json_t *j = json_loads(a.body, 0, NULL);
    if (!json_is_true(json_object_get(j, "clean"))) rc = 3;
    json_decref(j);
  }
  free(a.body);
  return rc;
}

/* The status of projection `name` in GET /admin/projections ("" if absent); 0 or -1. */
static int projection_status(const char *server, const char *name, char *out, size_t cap) {
  answer a = {0};
  if (request(server, "GET", "/admin/projections", &a) != 0) return -1;
  json_t *arr = a.status == 200 ? json_loads(a.body, 0, NULL) : NULL;
  free(a.body);
  if (!json_is_array(arr)) {
    json_decref(arr);
    return -1;
  }
  out[0] = '\0';
  size_t i;
  json_t *p;
  json_array_foreach(arr, i, p) {
    if (json_is_string(json_object_get(p, "name")) &&
        strcmp(json_string_value(json_object_get(p, "name")), name) == 0)
      snprintf(out, cap, "%s", json_string_value(json_object_get(p, "status")));
  }
  json_decref(arr);
  return 0;
}

int tl_cli_projections(int argc, char **argv) {
  const char *server = getenv("TWINLANE_SERVER");
  if (!server || !*server) server = "127.0.0.1:8080";
  int wait = 0;
  static const char USAGE[] =
      "usage: twinlane projections [--server HOST:PORT] list\n"
      "       twinlane projections [--server HOST:PORT] rebuild NAME [--wait]\n"
      "  rebuild: a new copy from position 0 beside the live one, swapped in when caught up;\n"
      "  --wait returns when the projection is no longer rebuilding (the server's log says\n"
      "  whether the swap happened)\n";
  const char *words[2] = {NULL, NULL};
  int nw = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
      server = argv[++i];
    else if (strcmp(argv[i], "--wait") == 0)
      wait = 1;
    else if (strcmp(argv[i], "--help") == 0)
      return printf("%s", USAGE), 0;
    else if (nw < 2 && argv[i][0] != '-')
      words[nw++] = argv[i];
    else
      return fprintf(stderr, "%s", USAGE), 2;
  }
  answer a = {0};
  if (nw == 1 && strcmp(words[0], "list") == 0) {
    if (request(server, "GET", "/admin/projections", &a) != 0) return 2;
  } else if (nw == 2 && strcmp(words[0], "rebuild") == 0 && valid_name(words[1])) {
    char path[128];
    snprintf(path, sizeof path, "/admin/projections/%s/rebuild", words[1]);
    if (request(server, "POST", path, &a) != 0) return 2;
  } else {
    fprintf(stderr, "%s", USAGE);
    return 2;
  }
  int ok = a.status >= 200 && a.status < 300;
  fprintf(ok ? stdout : stderr, "%s\n", a.body);
  free(a.body);
  if (!ok) return 1;
  if (!wait || strcmp(words[0], "rebuild") != 0) return 0;
  /* Poll until the projection is no longer rebuilding (at most an hour). */
  for (int k = 0; k < 36000; k++) {
    char status[32];
    if (projection_status(server, words[1], status, sizeof status) != 0) return 2;
    if (strcmp(status, "rebuilding") != 0) {
      printf("%s: %s\n", words[1], status);
      return 0;
    }
    usleep(100 * 1000);
  }
  fprintf(stderr, "twinlane: %s still rebuilding after an hour\n", words[1]);
  return 1;
}
