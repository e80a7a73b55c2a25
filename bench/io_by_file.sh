#!/usr/bin/env bash
# bench/io_by_file.sh BUILD_DIR [--read-db-in-memory]: the bytes each database file receives
# per event under closed-loop durable orders, and the server's CPU per thread.
#
# Compiles bench/io_shim.c (an LD_PRELOAD counter of pwrite bytes and fsyncs per file) into a
# temporary directory, starts `twinlane serve` on a fresh data directory with it, runs 12 s of
# `twinlane-bench --mode orders` (64 connections), and over a 4 s window in the middle prints:
#   - per file (events.db, its WAL, read.orders.1.db, saga.db, ...): bytes per event, write calls per
#     event and fsyncs, and the total next to /proc/<pid>/io write_bytes (what reached the
#     block layer);
#   - CPU per server thread (% of one core, from /proc/<pid>/task/*/stat);
#   - the load generator's summary (orders/s, latency, mean group-commit batch).
# --read-db-in-memory puts the read models' files (read.<projection>.1.db and their WALs) on
# /dev/shm through symlinks: the projector
# does all its work but its bytes never reach the disk. Comparing the two runs tells whether
# the write path is bound by the disk or by the CPU (docs/performance.md, "The write path's
# limit"). A developer's tool, not part of `make bench`; needs cc and python3.
# Exit 0, or non-zero when the server or the load generator fails. Cleans up on any exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -lt 1 || $# -gt 2 || ( $# -eq 2 && $2 != --read-db-in-memory ) ]]; then
  echo "usage: bash bench/io_by_file.sh BUILD_DIR [--read-db-in-memory]" >&2
  exit 2
fi
BUILD_DIR=$1
IN_MEMORY=${2:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/tl-io-by-file.XXXXXX)
SHM=""
PID=""
LOAD=""
cleanup() {
  local rc=$?
  if [[ -n $LOAD ]]; then kill "$LOAD" 2>/dev/null || true; wait "$LOAD" 2>/dev/null || true; fi
  bench_stop "$PID"
  bench_log_tail "$rc" "$WORK/server.log"
  rm -rf "$WORK"
  [[ -z $SHM ]] || rm -rf "$SHM"
  exit "$rc"
}
bench_traps cleanup

cc -O2 -shared -fPIC -o "$WORK/io_shim.so" "$HERE/io_shim.c" -ldl
mkdir "$WORK/data"
if [[ -n $IN_MEMORY ]]; then
  SHM=$(mktemp -d /dev/shm/tl-io-by-file.XXXXXX)
  for proj in orders products daily_sales; do
    ln -s "$SHM/read.$proj.1.db" "$WORK/data/read.$proj.1.db"
  done
fi
PORT=$(bench_free_port)
IO_SHIM_OUT=$WORK/io.txt LD_PRELOAD=$WORK/io_shim.so \
  "$BUILD_DIR/twinlane" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" --log-level warn \
  >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
"$BUILD_DIR/twinlane-bench" --port "$PORT" --seed-products --duration-s 12 --warmup-s 1 \
  --mode orders --connections 64 >"$WORK/bench.out" 2>&1 &
LOAD=$!

snap() { # snap N: log head, /proc io, thread CPU ticks and the shim's counters at this moment
  curl -s "127.0.0.1:$PORT/metrics" | awk '$1 == "tl_log_position" {print $2}' >"$WORK/head$1"
  cp "/proc/$PID/io" "$WORK/io$1"
  for t in /proc/"$PID"/task/*; do
    echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done >"$WORK/cpu$1"
  kill -USR2 "$PID"
}
sleep 5
snap 0
sleep 4
snap 1
wait "$LOAD"
LOAD=""

python3 - "$WORK" "$(getconf CLK_TCK)" <<'PY'
import collections, sys
work, hz = sys.argv[1], int(sys.argv[2])
window = 4.0
snaps = open(f"{work}/io.txt").read().split("---\n")[1:3]
def parse(text):
    out = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 5:
            out[(p[0], p[1])] = [int(x) for x in p[2:]]
    return out
a, b = parse(snaps[0]), parse(snaps[1])
events = int(open(f"{work}/head1").read()) - int(open(f"{work}/head0").read())
per = collections.defaultdict(lambda: [0, 0, 0])
for key, v in b.items():
    base = a.get(key, [0, 0, 0])
    for i in range(3):
        per[key[1]][i] += v[i] - base[i]
print(f"events appended in the {window:.0f} s window: {events} ({events / window:.0f}/s)")
print(f"{'file':20s} {'bytes/event':>12s} {'writes/event':>13s} {'fsyncs':>7s}")
total = 0
for name, (nb, nc, ns) in sorted(per.items(), key=lambda kv: -kv[1][0]):
    if nb <= 0 and ns <= 0:
        continue
    total += nb
    print(f"{name:20s} {nb / events:12.0f} {nc / events:13.2f} {ns:7d}")
io = [dict(l.split(": ") for l in open(f"{work}/io{i}").read().splitlines()) for i in (0, 1)]
wb = int(io[1]["write_bytes"]) - int(io[0]["write_bytes"])
print(f"{'all pwrite':20s} {total / events:12.0f}")
print(f"{'block layer':20s} {wb / events:12.0f}   (/proc/<pid>/io write_bytes)")
cpu = [collections.Counter(), collections.Counter()]
for i in (0, 1):
    for line in open(f"{work}/cpu{i}"):
        name, ticks = line.rsplit(" ", 1)
        cpu[i][name] += int(ticks)
print("CPU by thread (% of one core):",
      ", ".join(f"{n} {100 * (cpu[1][n] - cpu[0][n]) / hz / window:.0f}"
                for n in sorted(cpu[1], key=lambda n: cpu[0][n] - cpu[1][n])
                if cpu[1][n] > cpu[0][n]))
PY
grep -E '^commands|group commit' "$WORK/bench.out"
