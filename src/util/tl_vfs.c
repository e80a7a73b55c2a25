/*
 * tl_vfs.c: the "tl-walbuf" VFS (see tl_vfs.h).
 *
 * Every file opened through it is a tl_vfile followed by the default VFS's own file object
 * (`real`), to which each method forwards. A WAL file is linked to its connection's database
 * file when it opens: SQLite names a WAL with a pointer into the same allocation as its
 * database's name (sqlite3_filename_database), and that pointer is the one the database file
 * was opened with, so the pair is exact per connection. A WAL that cannot be linked is written
 * through, unbuffered. Both objects of a connection are used by one thread at a time (SQLite's
 * rule for a connection), so a buffer needs no lock; only the list of open database files is
 * shared.
 */
#include "util/tl_vfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_CAP (256 * 1024)
/* The unix VFS writes at most 128 KiB - 1 bytes per call (it masks the length with 0x1ffff:
 * 128 KiB exactly would write nothing and report a full disk): a buffer goes out in pieces. */
#define WRITE_MAX (124 * 1024)
#define FRAME_HEADER 24 /* a WAL frame's header: page number, database size (commit), ... */

typedef struct tl_vfile tl_vfile;
struct tl_vfile {
  sqlite3_file base; /* pMethods: ours */
  sqlite3_file *real;
  /* A database file: its name as SQLite passed it (the key WAL files look up), its WAL. */
  const char *db_name;
  tl_vfile *wal;
  tl_vfile *next_db; /* in the list of open database files */
  /* A WAL file: its database file (NULL: written through), and the buffered bytes
   * [off, off + len). */
  tl_vfile *db;
  char *buf;
  size_t len;
  sqlite3_int64 off;
  int commit_frame; /* the header of a commit frame is buffered: flush after its page */
  long long saved;  /* writes buffered minus writes made (added to g_saved at close) */
};

static sqlite3_vfs *g_root;
static sqlite3_vfs g_vfs;
static sqlite3_io_methods g_methods;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static tl_vfile *g_dbs; /* open database files (under g_lock) */
static _Atomic long long g_saved;

long long tl_vfs_writes_saved(void) {
  return atomic_load(&g_saved);
}

/* ---- the WAL buffer ----------------------------------------------------------------------- */

static int flush(tl_vfile *p) {
  int rc = SQLITE_OK;
  for (size_t done = 0; done < p->len && rc == SQLITE_OK;) {
    size_t n = p->len - done < WRITE_MAX ? p->len - done : WRITE_MAX;
    rc = p->real->pMethods->xWrite(p->real, p->buf + done, (int)n, p->off + (sqlite3_int64)done);
    done += n;
    p->saved--;
  }
  p->len = 0;
  p->commit_frame = 0;
  return rc;
}

/* Whether a write of amt bytes at off can go into p's buffer (after flushing what does not
 * join it). Returns SQLITE_OK and sets *buffered, or the flush's error. */
static int make_room(tl_vfile *p, int amt, sqlite3_int64 off, int *buffered) {
  *buffered = 0;
  if (!p->db || amt <= 0 || amt > BUF_CAP) return flush(p);
  if (p->len && (off != p->off + (sqlite3_int64)p->len || p->len + (size_t)amt > BUF_CAP)) {
    int rc = flush(p);
    if (rc != SQLITE_OK) return rc;
  }
  if (!p->buf && !(p->buf = malloc(BUF_CAP))) return SQLITE_OK; /* written through */
  if (!p->len) p->off = off;
  *buffered = 1;
  return SQLITE_OK;
}

/* ---- the io methods ------------------------------------------------------------------------ */

static void db_list_remove(tl_vfile *p) {
  pthread_mutex_lock(&g_lock);
  for (tl_vfile **q = &g_dbs; *q; q = &(*q)->next_db)
    if (*q == p) {
      *q = p->next_db;
      break;
    }
  if (p->wal) p->wal->db = NULL; /* its WAL outlives it: written through from now on */
  pthread_mutex_unlock(&g_lock);
}

static int v_close(sqlite3_file *f) {
  tl_vfile *p = (tl_vfile *)f;
  int rc = flush(p);
  if (p->db_name) db_list_remove(p);
  pthread_mutex_lock(&g_lock);
  if (p->db) p->db->wal = NULL;
  pthread_mutex_unlock(&g_lock);
  free(p->buf);
  if (p->saved) atomic_fetch_add(&g_saved, p->saved);
  int rc2 = p->real->pMethods->xClose(p->real);
  return rc != SQLITE_OK ? rc : rc2;
}

static int v_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off) {
  tl_vfile *p = (tl_vfile *)f;
  if (p->len && flush(p) != SQLITE_OK) return SQLITE_IOERR_READ;
  return p->real->pMethods->xRead(p->real, out, amt, off);
}

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int v_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off) {
  tl_vfile *p = (tl_vfile *)f;
  int buffered = 0;
  int rc = make_room(p, amt, off, &buffered);
  if (rc != SQLITE_OK) return rc;
  if (!buffered) return p->real->pMethods->xWrite(p->real, data, amt, off);
  memcpy(p->buf + p->len, data, (size_t)amt);
  p->len += (size_t)amt;
  p->saved++;
  if (amt == FRAME_HEADER) {
    /* A frame's header: a non-zero database size marks the commit frame. */
    p->commit_frame = be32((const unsigned char *)data + 4) != 0;
    return SQLITE_OK;
  }
  /* The commit frame's page: the transaction's frames go to the file now, so that a failed
   * write fails the COMMIT and nothing is published that is not in the file. */
  return p->commit_frame ? flush(p) : SQLITE_OK;
}

static int v_truncate(sqlite3_file *f, sqlite3_int64 size) {
  tl_vfile *p = (tl_vfile *)f;
  int rc = flush(p);
  return rc != SQLITE_OK ? rc : p->real->pMethods->xTruncate(p->real, size);
}

static int v_sync(sqlite3_file *f, int flags) {
  tl_vfile *p = (tl_vfile *)f;
  int rc = flush(p);
  return rc != SQLITE_OK ? rc : p->real->pMethods->xSync(p->real, flags);
}

static int v_file_size(sqlite3_file *f, sqlite3_int64 *size) {
  tl_vfile *p = (tl_vfile *)f;
  int rc = flush(p);
  return rc != SQLITE_OK ? rc : p->real->pMethods->xFileSize(p->real, size);
}

static int v_lock(sqlite3_file *f, int level) {
  tl_vfile *p = (tl_vfile *)f;
  return p->real->pMethods->xLock(p->real, level);
}

static int v_unlock(sqlite3_file *f, int level) {
  tl_vfile *p = (tl_vfile *)f;
  return p->real->pMethods->xUnlock(p->real, level);
}

static int v_check_reserved(sqlite3_file *f, int *out) {
  tl_vfile *p = (tl_vfile *)f;
  return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int v_file_control(sqlite3_file *f, int op, void *arg) {
  tl_vfile *p = (tl_vfile *)f;
  if (p->len && flush(p) != SQLITE_OK) return SQLITE_IOERR;
  return p->real->pMethods->xFileControl(p->real, op, arg);
}

static int v_sector_size(sqlite3_file *f) {
  tl_vfile *p = (tl_vfile *)f;
  return p->real->pMethods->xSectorSize(p->real);
}

static int v_device_characteristics(sqlite3_file *f) {
  tl_vfile *p = (tl_vfile *)f;
  return p->real->pMethods->xDeviceCharacteristics(p->real);
}

/* The default VFS gives every file the version-3 methods; a file whose methods lack one is
 * answered as SQLite answers for a VFS without it. */
static int has(const sqlite3_file *real, int version) {
  return real->pMethods->iVersion >= version;
}

static int v_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out) {
  tl_vfile *p = (tl_vfile *)f;
  if (!has(p->real, 2) || !p->real->pMethods->xShmMap) return SQLITE_IOERR_SHMMAP;
  return p->real->pMethods->xShmMap(p->real, page, size, extend, out);
}

static int v_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
  tl_vfile *p = (tl_vfile *)f;
  if (!has(p->real, 2) || !p->real->pMethods->xShmLock) return SQLITE_IOERR_SHMLOCK;
  return p->real->pMethods->xShmLock(p->real, offset, n, flags);
}

static void v_shm_barrier(sqlite3_file *f) {
  tl_vfile *p = (tl_vfile *)f;
  /* SQLite is about to publish a wal-index header: every frame this connection wrote must be
   * in the file. Commits flushed already; a failure here cannot be reported, and publishing
   * frames that are not in the file would let readers see stale pages: stop instead. */
  if (p->wal && p->wal->len && flush(p->wal) != SQLITE_OK) {
    fprintf(stderr, "twinlane: cannot write buffered WAL frames before publishing them\n");
    abort();
  }
  if (has(p->real, 2) && p->real->pMethods->xShmBarrier) p->real->pMethods->xShmBarrier(p->real);
}

static int v_shm_unmap(sqlite3_file *f, int delete_flag) {
  tl_vfile *p = (tl_vfile *)f;
  if (!has(p->real, 2) || !p->real->pMethods->xShmUnmap) return SQLITE_OK;
  return p->real->pMethods->xShmUnmap(p->real, delete_flag);
}

static int v_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out) {
  tl_vfile *p = (tl_vfile *)f;
  *out = NULL;
  if (p->len && flush(p) != SQLITE_OK) return SQLITE_IOERR;
  if (!has(p->real, 3) || !p->real->pMethods->xFetch) return SQLITE_OK; /* no mapping: reads */
  return p->real->pMethods->xFetch(p->real, off, amt, out);
}

static int v_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page) {
  tl_vfile *p = (tl_vfile *)f;
  if (!has(p->real, 3) || !p->real->pMethods->xUnfetch) return SQLITE_OK;
  return p->real->pMethods->xUnfetch(p->real, off, page);
}

/* ---- the VFS ------------------------------------------------------------------------------- */

static int v_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out) {
  (void)vfs;
  tl_vfile *p = (tl_vfile *)f;
  memset(p, 0, sizeof *p);
  p->real = (sqlite3_file *)(p + 1);
  int rc = g_root->xOpen(g_root, name, p->real, flags, out);
  if (rc != SQLITE_OK) {
    if (p->real->pMethods) p->real->pMethods->xClose(p->real);
    p->base.pMethods = NULL;
    return rc;
  }
  p->base.pMethods = &g_methods;
  if ((flags & SQLITE_OPEN_MAIN_DB) && name) {
    p->db_name = name;
    pthread_mutex_lock(&g_lock);
    p->next_db = g_dbs;
    g_dbs = p;
    pthread_mutex_unlock(&g_lock);
  } else if ((flags & SQLITE_OPEN_WAL) && name) {
    const char *db_name = sqlite3_filename_database(name);
    pthread_mutex_lock(&g_lock);
    for (tl_vfile *d = g_dbs; d; d = d->next_db)
      if (d->db_name == db_name && !d->wal) {
        d->wal = p;
        p->db = d;
        break;
      }
    pthread_mutex_unlock(&g_lock);
  }
  return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  return g_root->xDelete(g_root, name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
  (void)vfs;
  return g_root->xAccess(g_root, name, flags, out);
}

static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
  (void)vfs;
  return g_root->xFullPathname(g_root, name, n, out);
}

static void *v_dlopen(sqlite3_vfs *vfs, const char *name) {
  (void)vfs;
  return g_root->xDlOpen(g_root, name);
}

static void v_dlerror(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  g_root->xDlError(g_root, n, out);
}

static void (*v_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void) {
  (void)vfs;
  return g_root->xDlSym(g_root, h, sym);
}

static void v_dlclose(sqlite3_vfs *vfs, void *h) {
  (void)vfs;
  g_root->xDlClose(g_root, h);
}

static int v_randomness(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return g_root->xRandomness(g_root, n, out);
}

static int v_sleep(sqlite3_vfs *vfs, int us) {
  (void)vfs;
  return g_root->xSleep(g_root, us);
}

static int v_current_time(sqlite3_vfs *vfs, double *out) {
  (void)vfs;
  return g_root->xCurrentTime(g_root, out);
}

static int v_last_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return g_root->xGetLastError ? g_root->xGetLastError(g_root, n, out) : 0;
}

static int v_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
  (void)vfs;
  return g_root->xCurrentTimeInt64(g_root, out);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_install_rc = SQLITE_ERROR;

static void install(void) {
  g_root = sqlite3_vfs_find(NULL);
  if (!g_root || g_root->iVersion < 2) return;
  sqlite3_io_methods m = {
      .iVersion = 3,
      .xClose = v_close,
      .xRead = v_read,
      .xWrite = v_write,
      .xTruncate = v_truncate,
      .xSync = v_sync,
      .xFileSize = v_file_size,
      .xLock = v_lock,
      .xUnlock = v_unlock,
      .xCheckReservedLock = v_check_reserved,
      .xFileControl = v_file_control,
      .xSectorSize = v_sector_size,
      .xDeviceCharacteristics = v_device_characteristics,
      .xShmMap = v_shm_map,
      .xShmLock = v_shm_lock,
      .xShmBarrier = v_shm_barrier,
      .xShmUnmap = v_shm_unmap,
      .xFetch = v_fetch,
      .xUnfetch = v_unfetch,
  };
  g_methods = m;
  sqlite3_vfs v = {
      .iVersion = 2,
      .szOsFile = (int)sizeof(tl_vfile) + g_root->szOsFile,
      .mxPathname = g_root->mxPathname,
      .zName = "tl-walbuf",
      .xOpen = v_open,
      .xDelete = v_delete,
      .xAccess = v_access,
      .xFullPathname = v_full_pathname,
      .xDlOpen = v_dlopen,
      .xDlError = v_dlerror,
      .xDlSym = v_dlsym,
      .xDlClose = v_dlclose,
      .xRandomness = v_randomness,
      .xSleep = v_sleep,
      .xCurrentTime = v_current_time,
      .xGetLastError = v_last_error,
      .xCurrentTimeInt64 = v_current_time64,
  };
  g_vfs = v;
  g_install_rc = sqlite3_vfs_register(&g_vfs, 1);
}

int tl_vfs_install(void) {
  pthread_once(&g_once, install);
  return g_install_rc;
}
