/*
 * tmp_db.h: a SQLite database in a fresh temporary directory, for the unit tests that need
 * storage (test_db, test_projections, test_saga). Header-only: each test is one executable.
 */
#ifndef TL_TEST_TMP_DB_H
#define TL_TEST_TMP_DB_H

#include "util/tl_common.h"
#include "util/tl_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct tmp_db {
  char dir[64];
  char path[128];
  tl_db *db;
} tmp_db;

/* Creates /tmp/tl-<what>-XXXXXX and opens <file> in it with synchronous=NORMAL. Returns TL_OK,
 * or prints why and returns the failure (nothing is left behind then). */
static inline int tmp_db_open(tmp_db *t, const char *what, const char *file) {
  snprintf(t->dir, sizeof t->dir, "/tmp/tl-%s-XXXXXX", what);
  if (!mkdtemp(t->dir)) {
    fprintf(stderr, "mkdtemp %s failed\n", t->dir);
    return TL_E_IO;
  }
  snprintf(t->path, sizeof t->path, "%s/%s", t->dir, file);
  tl_err err = {0};
  int rc = tl_db_open(&t->db, t->path, 0, "NORMAL", &err);
  if (rc != TL_OK) {
    fprintf(stderr, "tl_db_open %s: %s\n", t->path, err.msg);
    rmdir(t->dir);
  }
  return rc;
}

/* Closes the database and removes it, its -wal, -shm and -journal files and the directory. */
static inline void tmp_db_remove(tmp_db *t) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  tl_db_close(t->db);
  t->db = NULL;
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    char p[160];
    snprintf(p, sizeof p, "%s%s", t->path, suffix[i]);
    unlink(p);
  }
  rmdir(t->dir);
}

#endif
