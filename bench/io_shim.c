/*
 * bench/io_shim.c: an LD_PRELOAD library for bench/io_by_file.sh (a developer's tool, never
 * linked into twinlane). Counts the bytes of pwrite(2), and the fsync(2)/fdatasync(2) calls,
 * per file descriptor; SIGUSR2 appends one snapshot ("---", then "fd name bytes calls syncs" per
 * descriptor, the name read from /proc/self/fd at that moment) to $IO_SHIM_OUT. SQLite writes
 * its WAL frames, checkpoints and database pages with pwrite, so two snapshots give the bytes
 * each database file received in between, without strace's slowdown.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 4096

static _Atomic long bytes[MAX_FD], calls[MAX_FD], syncs[MAX_FD];

static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_fsync)(int), (*real_fdatasync)(int);

static void count_write(int fd, ssize_t n) {
  if (fd < 0 || fd >= MAX_FD || n <= 0) return;
  atomic_fetch_add_explicit(&bytes[fd], n, memory_order_relaxed);
  atomic_fetch_add_explicit(&calls[fd], 1, memory_order_relaxed);
}

static void count_sync(int fd) {
  if (fd >= 0 && fd < MAX_FD) atomic_fetch_add_explicit(&syncs[fd], 1, memory_order_relaxed);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  ssize_t r = real_pwrite(fd, buf, n, off);
  count_write(fd, r);
  return r;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  return pwrite64(fd, buf, n, off);
}

int fsync(int fd) {
  count_sync(fd);
  return real_fsync(fd);
}

int fdatasync(int fd) {
  count_sync(fd);
  return real_fdatasync(fd);
}

/* Runs in a signal handler: only the snapshot's own open/write/close (best effort). */
static void snapshot(int sig) {
  (void)sig;
  const char *out = getenv("IO_SHIM_OUT");
  FILE *f = out ? fopen(out, "a") : NULL;
  if (!f) return;
  fputs("---\n", f);
  for (int fd = 0; fd < MAX_FD; fd++) {
    long b = atomic_load(&bytes[fd]), c = atomic_load(&calls[fd]), s = atomic_load(&syncs[fd]);
    if (!b && !s) continue;
    char link[64], name[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n <= 0) continue; /* closed since: its counts are left out of this snapshot */
    name[n] = '\0';
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    char clean[512];
    size_t k = 0;
    for (; base[k] && k < sizeof clean - 1; k++) clean[k] = base[k] == ' ' ? '_' : base[k];
    clean[k] = '\0';
    fprintf(f, "%d %s %ld %ld %ld\n", fd, clean, b, c, s);
  }
  fclose(f);
}

__attribute__((constructor)) static void init(void) {
  real_pwrite = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
  real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  if (!real_pwrite || !real_fsync || !real_fdatasync) abort();
  signal(SIGUSR2, snapshot);
}
