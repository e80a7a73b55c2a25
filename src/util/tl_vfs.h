/*
 * tl_vfs.h: an SQLite VFS that writes a transaction's WAL frames in one system call.
 *
 * SQLite appends each WAL frame with two pwrite calls (its 24-byte header, then the page), so
 * a commit of n pages costs 2n system calls. On this project's machines a system call is
 * expensive (paravirtualised: ~40 % of the projector's and the writer's CPU under load was
 * the kernel, most of it those pwrites). The "tl-walbuf" VFS wraps the default one and, for
 * WAL files only, gathers contiguous appends in a buffer (256 KiB) that it writes out:
 *
 *   - right after the page of a commit frame (a frame header whose "database size" field is
 *     non-zero): the commit's frames reach the file before SQLite publishes them in the
 *     wal-index, so other connections never read a frame that is still in the buffer, and a
 *     failed write is a failed COMMIT, reported to SQLite as it would be without the buffer;
 *   - before anything else touches the file through that handle (a read, sync, truncate, size,
 *     close) or a write that does not continue the buffer, and when the buffer is full;
 *   - as a safety net, at the connection's wal-index barrier (xShmBarrier on its database
 *     file), which SQLite calls before it publishes a new wal-index header.
 *
 * A crash loses only frames of a transaction that had not committed (no commit frame in the
 * file: recovery ignores them, as it ignores a torn write). Database files, journals and
 * temporary files go straight through.
 */
#ifndef TL_VFS_H
#define TL_VFS_H

/* Registers "tl-walbuf" as SQLite's default VFS, once (later calls return at once). Returns an
 * SQLite result code. tl_db_open calls it. */
int tl_vfs_install(void);

/* System calls saved by the WAL files closed so far: pwrite calls their buffers replaced,
 * minus those they made (for tests; counted per file, not on the write path). */
long long tl_vfs_writes_saved(void);

#endif
