#!/usr/bin/env bash
# bench/run.sh: benchmarks a twinlane build on this machine.
#
#   bash bench/run.sh [BUILD_DIR]          (default BUILD_DIR: build)
#
# Starts BUILD_DIR/twinlane on a fresh data directory and a free loopback port, waits for
# GET /health, then runs BUILD_DIR/twinlane-bench three times:
#   1. --mode health: GET /health only, the HTTP ceiling of this machine and server;
#   2. --mode mixed --seed-products: the CQRS workload (orders, payments, the five queries);
#   3. --mode orders: durable POST /orders only (group commit under write pressure);
#   4. --mode flash-sale: one product with little stock, many concurrent single-unit orders;
#      checks that exactly the stock got RESERVED and reports how long orders take to settle;
# prints the tables and the ratio of each figure to the ceiling. Then it stops the server and
# runs BUILD_DIR/twinlane-bench-snapshots (no HTTP, its own log):
#   5. snapshots: the cold load of a BENCH_SNAPSHOT_EVENTS-event product stream by the writer,
#      folded in full (snapshots off) and from its snapshot (+ the longest tail).
# The server is stopped and its data removed on exit, whatever happens.
#
# Environment (seconds may have decimals):
#   BENCH_DURATION_S       measured seconds of the mixed run (default 20)
#   BENCH_HEALTH_S         measured seconds of the ceiling run (default 5, or BENCH_DURATION_S
#                          when that is shorter)
#   BENCH_WARMUP_S         warm-up seconds before each measured window (default 2)
#   BENCH_CONNECTIONS      keep-alive connections (default 64)
#   BENCH_READS_PER_WRITE  reads per write in the mixed run (default 10)
#   BENCH_PRODUCTS         catalogue size (default 100)
#   BENCH_FLASH_STOCK      flash sale: units on sale (default 100)
#   BENCH_FLASH_ORDERS     flash sale: single-unit orders placed (default 2000)
#   BENCH_SNAPSHOT_EVENTS  snapshots: events in the product stream (default 50000)
#   BENCH_SNAPSHOT_EVERY   snapshots: events between snapshots (default 500, the server's)
#   BENCH_RESULTS_DIR      when set, the runs' JSON files and server.log are copied there
# A CI smoke: BENCH_DURATION_S=3 BENCH_WARMUP_S=1 bash bench/run.sh build
#
# Exit status: 0 when every run succeeded; 2 when the server could not be started; else the
# status of the first failing twinlane-bench run (see bench/README.md).
# shellcheck disable=SC2317  # stop_server and cleanup run from the EXIT trap
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR="$PWD/$BUILD_DIR"
SERVER_BIN="$BUILD_DIR/twinlane"
BENCH_BIN="$BUILD_DIR/twinlane-bench"
SNAPSHOT_BIN="$BUILD_DIR/twinlane-bench-snapshots"

DURATION_S=${BENCH_DURATION_S:-20}
WARMUP_S=${BENCH_WARMUP_S:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
READS_PER_WRITE=${BENCH_READS_PER_WRITE:-10}
PRODUCTS=${BENCH_PRODUCTS:-100}
FLASH_STOCK=${BENCH_FLASH_STOCK:-100}
FLASH_ORDERS=${BENCH_FLASH_ORDERS:-2000}
SNAPSHOT_EVENTS=${BENCH_SNAPSHOT_EVENTS:-50000}
SNAPSHOT_EVERY=${BENCH_SNAPSHOT_EVERY:-500}
if [[ -z ${BENCH_HEALTH_S:-} ]]; then
  HEALTH_S=$(awk -v d="$DURATION_S" 'BEGIN { print (d + 0 < 5) ? d : 5 }')
else
  HEALTH_S=$BENCH_HEALTH_S
fi

die() { echo "bench/run.sh: $*" >&2; exit 2; }

for pair in "BENCH_DURATION_S=$DURATION_S" "BENCH_HEALTH_S=$HEALTH_S" "BENCH_WARMUP_S=$WARMUP_S"; do
  [[ ${pair#*=} =~ ^[0-9]+([.][0-9]+)?$ ]] || die "${pair%%=*} must be a number of seconds"
done
for pair in "BENCH_CONNECTIONS=$CONNECTIONS" "BENCH_READS_PER_WRITE=$READS_PER_WRITE" \
            "BENCH_PRODUCTS=$PRODUCTS" "BENCH_FLASH_STOCK=$FLASH_STOCK" \
            "BENCH_FLASH_ORDERS=$FLASH_ORDERS" "BENCH_SNAPSHOT_EVENTS=$SNAPSHOT_EVENTS" \
            "BENCH_SNAPSHOT_EVERY=$SNAPSHOT_EVERY"; do
  [[ ${pair#*=} =~ ^[0-9]+$ ]] || die "${pair%%=*} must be a whole number"
done
for bin in "$SERVER_BIN" "$BENCH_BIN" "$SNAPSHOT_BIN"; do
  [[ -x $bin ]] || die "$bin not found: build first (cmake -S . -B build && cmake --build build)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinlane-bench.XXXXXX")
DATA="$TMP/data"
LOG="$TMP/server.log"
SERVER_PID=""

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT
  stop_server
  if [[ -n ${BENCH_RESULTS_DIR:-} ]]; then
    mkdir -p "$BENCH_RESULTS_DIR"
    cp -f "$TMP"/*.json "$LOG" "$BENCH_RESULTS_DIR"/ 2>/dev/null || true
  fi
  if ((rc != 0)) && [[ -s $LOG ]]; then
    echo "--- last lines of the server log ($LOG) ---" >&2
    tail -n 20 "$LOG" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free TCP port on the loopback: ask the kernel through python3 when there is one, else try
# random ports until one refuses connections.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' && return 0
  fi
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# Succeeds when GET /health on the server answers 200 within 2 s.
health_ok() (
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
  printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$PORT" >&3
  IFS= read -r -t 2 line <&3 || exit 1
  [[ $line == "HTTP/1."?" 200"* ]]
) 2>/dev/null

# json_num FILE KEY: the number on the top-level line "KEY": N of a twinlane-bench JSON file;
# empty when absent or null.
json_num() {
  sed -n "s/^  \"$2\": \([-+0-9.eE]*\),\{0,1\}\$/\1/p" "$1" | head -n 1
}

# ratio A B: A/B as a percentage, or n/a.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b + 0 > 0) printf "%.1f%%", 100 * a / b; else printf "n/a" }'
}

# rate A: A with one decimal, or n/a.
rate() {
  awk -v a="$1" 'BEGIN { if (a != "") printf "%.1f", a; else printf "n/a" }'
}

echo "== twinlane benchmark =="
MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "machine : $(nproc) CPUs, ${MODEL:-unknown CPU}, $(uname -srm)"
echo "memory  : $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)"
echo "source  : $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'unknown (no commit)')"
echo "build   : $BUILD_DIR"
echo "date    : $(date -u +%Y-%m-%dT%H:%M:%SZ)"

PORT=$(free_port) || die "no free port found"
mkdir -p "$DATA"
"$SERVER_BIN" serve --data "$DATA" --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER_PID=$!
echo "server  : $SERVER_BIN serve --data $DATA --listen 127.0.0.1:$PORT (pid $SERVER_PID)"

for i in $(seq 150); do
  health_ok && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited during start-up"
  ((i < 150)) || die "the server did not answer GET /health within 15 s"
  sleep 0.1
done

STATUS=0
# run_bench LABEL JSON_FILE ARGS...: one twinlane-bench run against the server; remembers the
# first failure in STATUS.
run_bench() {
  local label=$1 json=$2 rc=0
  shift 2
  echo
  echo "== $label =="
  "$BENCH_BIN" --host 127.0.0.1 --port "$PORT" --connections "$CONNECTIONS" \
    --warmup-s "$WARMUP_S" --json "$json" "$@" || rc=$?
  if ((rc != 0)); then
    echo "bench/run.sh: twinlane-bench exited with status $rc" >&2
    ((STATUS != 0)) || STATUS=$rc
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" 2>/dev/null && rc=0 || rc=$?
    SERVER_PID=""
    echo "bench/run.sh: the server died during this run (exit status $rc)" >&2
    exit 2
  fi
}

run_bench "1. ceiling: GET /health only, ${HEALTH_S} s" "$TMP/health.json" \
  --mode health --duration-s "$HEALTH_S"
run_bench "2. mixed: ${READS_PER_WRITE} reads per write, ${DURATION_S} s" "$TMP/mixed.json" \
  --mode mixed --seed-products --products "$PRODUCTS" --reads-per-write "$READS_PER_WRITE" \
  --duration-s "$DURATION_S"

run_bench "3. durable writes: POST /orders only, ${HEALTH_S} s" "$TMP/orders.json" \
  --mode orders --products "$PRODUCTS" --duration-s "$HEALTH_S"

# The placing is bounded by the longer of the mixed duration and 30 s: the orders are a fixed
# number, the bound only stops a server that stalls.
FLASH_LIMIT_S=$(awk -v d="$DURATION_S" 'BEGIN { print (d + 0 < 30) ? 30 : d }')
run_bench "4. flash sale: ${FLASH_ORDERS} single-unit orders for ${FLASH_STOCK} units" \
  "$TMP/flash.json" --mode flash-sale --flash-stock "$FLASH_STOCK" \
  --flash-orders "$FLASH_ORDERS" --duration-s "$FLASH_LIMIT_S"

if [[ -s $TMP/health.json && -s $TMP/mixed.json ]]; then
  CEILING=$(json_num "$TMP/health.json" health_per_s)
  ALL=$(json_num "$TMP/mixed.json" requests_per_s)
  CMDS=$(json_num "$TMP/mixed.json" commands_per_s)
  QRYS=$(json_num "$TMP/mixed.json" queries_per_s)
  echo
  echo "== mixed run against the ceiling (GET /health: $(rate "$CEILING") req/s) =="
  ORDERS=$(json_num "$TMP/orders.json" commands_per_s)
  for row in "all requests:$ALL" "commands:$CMDS" "queries:$QRYS" "orders only:$ORDERS"; do
    value=${row#*:}
    printf '%-14s %12s req/s  %8s of the ceiling\n' "${row%%:*}" "$(rate "$value")" \
      "$(ratio "$value" "$CEILING")"
  done
fi
if [[ -s $TMP/flash.json ]]; then
  echo
  printf 'flash sale     settle p50 %s ms  p99 %s ms  check %s\n' \
    "$(rate "$(json_num "$TMP/flash.json" flash_settle_p50_ms)")" \
    "$(rate "$(json_num "$TMP/flash.json" flash_settle_p99_ms)")" \
    "$(sed -n 's/^  "flash_check": "\([A-Z]*\)",\{0,1\}$/\1/p' "$TMP/flash.json" | head -n 1)"
fi

# 5. Snapshots: engine only, after the server is gone so that nothing competes for the cores.
stop_server
echo
echo "== 5. snapshots: cold load of a ${SNAPSHOT_EVENTS}-event product stream =="
rc=0
TMPDIR="$TMP" "$SNAPSHOT_BIN" --events "$SNAPSHOT_EVENTS" --snapshot-every "$SNAPSHOT_EVERY" \
  --json "$TMP/snapshots.json" || rc=$?
if ((rc != 0)); then
  echo "bench/run.sh: twinlane-bench-snapshots exited with status $rc" >&2
  ((STATUS != 0)) || STATUS=$rc
elif [[ -s $TMP/snapshots.json ]]; then
  echo
  printf 'snapshots      cold load of %s events: full fold %s ms, from snapshot %s ms (longest tail %s ms)\n' \
    "$SNAPSHOT_EVENTS" "$(rate "$(json_num "$TMP/snapshots.json" full_fold_ms)")" \
    "$(rate "$(json_num "$TMP/snapshots.json" snapshot_ms)")" \
    "$(rate "$(json_num "$TMP/snapshots.json" snapshot_longest_tail_ms)")"
fi
exit "$STATUS"
