#!/usr/bin/env python3
"""bench/wal_owners.py DATA_DIR [DB ...]: which tables and indexes the WAL frames belong to.

Every commit in WAL mode appends each page it dirtied, in full, to <db>-wal; a checkpoint
copies them into the database later. Which B-trees those pages belong to says where the write
amplification comes from. Stop the server with SIGKILL (no final checkpoint) right after a
load, then run this on its data directory: for each database (default: every read.<projection>.<gen>.db,
events.db, saga.db) it counts the frames of the WAL's current generation (since the last restart of the
WAL, so a sample of the last seconds) by owning table or index, using SQLite's dbstat on a
copy of the database and its WAL. Needs python3's sqlite3 with the dbstat table (Debian's has
it). Prints a table per database.
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def wal_pages(path):
    """The page number of every valid frame of the WAL's current generation, in order."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 32:
        return [], 0
    _magic, _ver, page_size, _ckpt, salt1, salt2, _c1, _c2 = struct.unpack(">8I", data[:32])
    pages, off = [], 32
    while off + 24 + page_size <= len(data):
        page, _commit, s1, s2 = struct.unpack(">4I", data[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            break
        pages.append(page)
        off += 24 + page_size
    return pages, page_size


def owners(db_path, wal_path):
    """page number -> name of its table or index, read from a private copy."""
    tmp = tempfile.mkdtemp(prefix="tl-wal-owners.")
    try:
        copy = os.path.join(tmp, "copy.db")
        shutil.copy(db_path, copy)
        if os.path.exists(wal_path):
            shutil.copy(wal_path, copy + "-wal")
        con = sqlite3.connect(copy)
        try:
            return {pageno: name for name, pageno in con.execute("SELECT name, pageno FROM dbstat")}
        finally:
            con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        print("usage: bench/wal_owners.py DATA_DIR [DB ...]", file=sys.stderr)
        return 2
    data_dir = sys.argv[1]
    dbs = sys.argv[2:] or sorted(
        f for f in os.listdir(data_dir) if f.startswith("read.") and f.endswith(".db")
    ) + ["events.db", "saga.db"]
    for db in dbs:
        db_path = os.path.join(data_dir, db)
        wal_path = db_path + "-wal"
        if not os.path.exists(db_path) or not os.path.exists(wal_path):
            print("== %s: no database or no WAL" % db)
            continue
        pages, page_size = wal_pages(wal_path)
        if not pages:
            print("== %s: the WAL holds no frames" % db)
            continue
        who = owners(db_path, wal_path)
        count = collections.Counter(who.get(p, "(free or new)") for p in pages)
        print("== %s: %d frames of %d bytes, %d distinct pages" %
              (db, len(pages), page_size, len(set(pages))))
        for name, n in count.most_common(15):
            print("   %-36s %7d  %5.1f %%" % (name, n, 100.0 * n / len(pages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
