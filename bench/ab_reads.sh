#!/usr/bin/env bash
# bench/ab_reads.sh BUILD_DIR BIN_A BIN_B [READS] [ROUNDS]: read throughput of two server
# binaries on the same realistic read model, back to back.
#
# Callgrind on a 200-order read model (bench/callgrind.sh) counts instructions, but a list query
# on tens of thousands of orders is bound by the pages SQLite has to visit, which a small model
# keeps in cache: a change can cut instructions and still make pages slower (docs/performance.md
# has one). This script measures that case:
#   1. BIN_A writes a log: 8 s of durable POST /orders (closed loop, 64 connections), ~40k orders;
#   2. ROUNDS times, for BIN_A then BIN_B: a fresh data directory with a copy of that events.db,
#      the binary started on it, its read models built from the log (the catch-up time is
#      printed), then 8 s of `twinlane-bench --mode reads --reads READS` (customer, search or
#      order; default customer).
# Prints one line per run. Exit 0, or non-zero when a server or the load generator fails.
# Cleans up its servers and directories on any exit (also Ctrl-C, SIGTERM).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -lt 3 ]]; then
  echo "usage: bash bench/ab_reads.sh BUILD_DIR BIN_A BIN_B [customer|search|order] [ROUNDS]" >&2
  exit 2
fi
BUILD_DIR=$1
BINS=("$2" "$3")
READS=${4:-customer}
ROUNDS=${5:-2}
LOADGEN="$BUILD_DIR/twinlane-bench"
WORK=$(mktemp -d /tmp/tl-ab-reads.XXXXXX)
PID=""

cleanup() {
  local rc=$?
  bench_log_tail "$rc" "$WORK/server.log"
  bench_stop "$PID"
  rm -rf "$WORK"
}
bench_traps cleanup

# start BIN DATA_DIR: starts a server, sets PID and PORT, waits for /health.
start() {
  PORT=$(bench_free_port)
  "$1" serve --data "$2" --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 200); do
    curl -sf "127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "ab_reads.sh: $1 did not start" >&2
  exit 1
}

stop() {
  bench_stop "$PID"
  PID=""
}

mkdir -p "$WORK/log"
start "${BINS[0]}" "$WORK/log"
"$LOADGEN" --port "$PORT" --seed-products --mode orders --duration-s 8 --warmup-s 1 \
  | grep -E '^commands' | sed 's/^/log: /'
stop
HEAD=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT max(position) FROM events").fetchone()[0])' "$WORK/log/events.db")
echo "log: $HEAD events"

for round in $(seq "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    rm -rf "$WORK/run"
    mkdir -p "$WORK/run"
    cp "$WORK/log"/events.db* "$WORK/run/"
    t0=$(date +%s%N)
    start "$bin" "$WORK/run"
    # The order view waits (minPosition) until the orders projection has applied the whole log;
    # an unknown order id then answers 404.
    for _ in $(seq 600); do
      code=$(curl -s -o /dev/null -w '%{http_code}' \
        "127.0.0.1:$PORT/orders/00000000000000000000000000?minPosition=$HEAD&waitMs=1000")
      [[ "$code" == 404 ]] && break
    done
    t1=$(date +%s%N)
    line=$("$LOADGEN" --port "$PORT" --mode reads --reads "$READS" --seed-orders 0 \
      --duration-s 8 --warmup-s 1 | grep -E '^queries' || true)
    stop
    printf 'round %d  %-40s catch-up %6.2f s  %s\n' "$round" "$bin" \
      "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" "$line"
  done
done
