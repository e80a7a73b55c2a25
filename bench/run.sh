#!/usr/bin/env bash
# bench/run.sh: benchmarks a twinlane build on this machine, every figure in one run.
#
#   bash bench/run.sh [BUILD_DIR]          (default BUILD_DIR: build)
#
# Starts BUILD_DIR/twinlane on a fresh data directory and a free loopback port, waits for
# GET /health, then runs BUILD_DIR/twinlane-bench against that one server process:
#   1. ceiling: --mode health, GET /health only: the HTTP ceiling of this machine and server;
#   2. orders: --mode orders --seed-products, durable POST /orders only (group commit);
#   3. mixed: the CQRS workload (orders, payments, the five queries);
#   4. order view: --mode reads --reads order, GET /orders/{id} of BENCH_KNOWN_ORDERS orders;
#   5. customer history: --reads customer, GET /customers/{id}/orders?limit=20 only;
#   6. search: --reads search, GET /orders/search?q=...&limit=20 only;
#   7. flash sale: one product with little stock, many concurrent single-unit orders; checks
#      that exactly the stock got RESERVED and reports how long orders take to settle;
#   8. fixed rate: --mode orders --rate BENCH_LAG_RATE, an open loop: the projection lag at a
#      fixed command rate, next to the rate achieved;
# then reads the server's peak RSS (VmHWM), stops it and runs, with nothing else on the cores:
#   9. snapshots: BUILD_DIR/twinlane-bench-snapshots, the cold load of a long product stream;
#  10. bench/callgrind.sh, bench/scale.sh and bench/pg_baseline.sh when they are in the tree,
#      each as `bash bench/NAME.sh BUILD_DIR OUT_JSON` (exit 0: OUT_JSON written; 77: skipped,
#      the reason on stderr; anything else: failed).
# Finally bench/results.py prints one summary table and writes every figure to
# BENCH_RESULTS_JSON. The server is stopped and its data removed on exit, whatever happens.
#
# Environment (seconds may have decimals):
#   BENCH_DURATION_S       measured seconds of phases 2-6 and 8 (default 8)
#   BENCH_HEALTH_S         measured seconds of the ceiling (default 5, or BENCH_DURATION_S
#                          when that is shorter)
#   BENCH_WARMUP_S         warm-up seconds before each measured window (default 2)
#   BENCH_CONNECTIONS      keep-alive connections (default 64); also passed to the scripts
#   BENCH_READS_PER_WRITE  reads per write in the mixed run (default 10)
#   BENCH_PRODUCTS         catalogue size (default 100)
#   BENCH_KNOWN_ORDERS     order view: orders placed in its setup and read (default 4000)
#   BENCH_FLASH_STOCK      flash sale: units on sale (default 100)
#   BENCH_FLASH_ORDERS     flash sale: single-unit orders placed (default 2000)
#   BENCH_LAG_RATE         fixed rate: POST /orders per second wanted (default 20000)
#   BENCH_LAG_CONNECTIONS  fixed rate: connections (default 512: one request in flight each, so
#                          the rate they can offer is at most connections / latency)
#   BENCH_SNAPSHOT_EVENTS  snapshots: events in the product stream (default 50000)
#   BENCH_SNAPSHOT_EVERY   snapshots: events between snapshots (default 500, the server's)
#   BENCH_PG               1: run bench/pg_baseline.sh (default), 0: skip it
#   BENCH_SCALE_EVENTS     events of bench/scale.sh (its own default when unset)
#   BENCH_RESULTS_JSON     where the results go (default bench/results/latest.json)
#   BENCH_RESULTS_DIR      when set, every phase's JSON file and server.log are copied there
# A CI smoke: BENCH_DURATION_S=3 BENCH_WARMUP_S=1 BENCH_PG=0 bash bench/run.sh build
#
# Exit status: 0 when every step succeeded (a skipped script is not a failure); 2 when the
# server could not be started or died; else the status of the first failing step.
# shellcheck disable=SC2317  # stop_server and cleanup run from the EXIT trap
set -euo pipefail
SERVER_TROUBLE=0 # 1: the server or a phase against it failed: its log is worth a look

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
BUILD_ARG=${1:-build}
BUILD_DIR=$BUILD_ARG
[[ $BUILD_DIR = /* ]] || BUILD_DIR="$PWD/$BUILD_DIR"
SERVER_BIN="$BUILD_DIR/twinlane"
BENCH_BIN="$BUILD_DIR/twinlane-bench"
SNAPSHOT_BIN="$BUILD_DIR/twinlane-bench-snapshots"

DURATION_S=${BENCH_DURATION_S:-8}
WARMUP_S=${BENCH_WARMUP_S:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
READS_PER_WRITE=${BENCH_READS_PER_WRITE:-10}
PRODUCTS=${BENCH_PRODUCTS:-100}
KNOWN_ORDERS=${BENCH_KNOWN_ORDERS:-4000}
FLASH_STOCK=${BENCH_FLASH_STOCK:-100}
FLASH_ORDERS=${BENCH_FLASH_ORDERS:-2000}
LAG_RATE=${BENCH_LAG_RATE:-20000}
LAG_CONNECTIONS=${BENCH_LAG_CONNECTIONS:-512}
SNAPSHOT_EVENTS=${BENCH_SNAPSHOT_EVENTS:-50000}
SNAPSHOT_EVERY=${BENCH_SNAPSHOT_EVERY:-500}
PG=${BENCH_PG:-1}
RESULTS_JSON=${BENCH_RESULTS_JSON:-$ROOT/bench/results/latest.json}
if [[ -z ${BENCH_HEALTH_S:-} ]]; then
  HEALTH_S=$(awk -v d="$DURATION_S" 'BEGIN { print (d + 0 < 5) ? d : 5 }')
else
  HEALTH_S=$BENCH_HEALTH_S
fi

# Status 2; the server log is shown when there is one (the server did not start, or died).
die() { echo "bench/run.sh: $*" >&2; SERVER_TROUBLE=1; exit 2; }

for pair in "BENCH_DURATION_S=$DURATION_S" "BENCH_HEALTH_S=$HEALTH_S" "BENCH_WARMUP_S=$WARMUP_S" \
            "BENCH_LAG_RATE=$LAG_RATE"; do
  [[ ${pair#*=} =~ ^[0-9]+([.][0-9]+)?$ ]] || die "${pair%%=*} must be a number"
done
for pair in "BENCH_CONNECTIONS=$CONNECTIONS" "BENCH_READS_PER_WRITE=$READS_PER_WRITE" \
            "BENCH_PRODUCTS=$PRODUCTS" "BENCH_KNOWN_ORDERS=$KNOWN_ORDERS" \
            "BENCH_FLASH_STOCK=$FLASH_STOCK" "BENCH_FLASH_ORDERS=$FLASH_ORDERS" \
            "BENCH_LAG_CONNECTIONS=$LAG_CONNECTIONS" "BENCH_SNAPSHOT_EVENTS=$SNAPSHOT_EVENTS" \
            "BENCH_SNAPSHOT_EVERY=$SNAPSHOT_EVERY"; do
  [[ ${pair#*=} =~ ^[0-9]+$ ]] || die "${pair%%=*} must be a whole number"
done
[[ $PG == 0 || $PG == 1 ]] || die "BENCH_PG must be 0 or 1"
((KNOWN_ORDERS >= 1 && KNOWN_ORDERS <= 4096)) || die "BENCH_KNOWN_ORDERS must be 1..4096"
awk -v r="$LAG_RATE" 'BEGIN { exit !(r > 0) }' || die "BENCH_LAG_RATE must be above 0"
for bin in "$SERVER_BIN" "$BENCH_BIN" "$SNAPSHOT_BIN"; do
  [[ -x $bin ]] || die "$bin not found: build first (cmake -S . -B build && cmake --build build)"
done
command -v python3 >/dev/null 2>&1 || die "python3 is needed for the summary (scripts/deps.sh)"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/twinlane-bench.XXXXXX")
DATA="$TMP/data"
LOG="$TMP/server.log"
STEPS="$TMP/steps.tsv"
SERVER_PID=""
: >"$STEPS"

stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  bench_stop "$SERVER_PID"
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
  if ((rc != 0 && SERVER_TROUBLE)) && [[ -s $LOG ]]; then
    echo "--- last lines of the server log ($LOG) ---" >&2
    tail -n 20 "$LOG" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
bench_traps cleanup

# Succeeds when GET /health on the server answers 200 within 2 s.
health_ok() (
  exec 3<>"/dev/tcp/127.0.0.1/$PORT" || exit 1
  printf 'GET /health HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$PORT" >&3
  IFS= read -r -t 2 line <&3 || exit 1
  [[ $line == "HTTP/1."?" 200"* ]]
) 2>/dev/null

STATUS=0
# step_done NAME OUTCOME RC SECONDS [REASON]: one line of steps.tsv for bench/results.py;
# remembers the first failure in STATUS.
step_done() {
  local reason=${5:-}
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${reason//$'\t'/ }" >>"$STEPS"
  if [[ $2 == failed ]] && ((STATUS == 0)); then
    STATUS=$3
    ((STATUS != 0)) || STATUS=1
  fi
}

# elapsed T0: seconds since T0 (from now_s), with a decimal.
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# "-dirty" when the tracked sources differ from the commit; the results this script writes into
# bench/results/ do not count (a second run would otherwise always say dirty).
REVISION=$(git -C "$ROOT" describe --always 2>/dev/null || echo 'unknown (no commit)')
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- . ':(exclude)bench/results' \
  2>/dev/null) ]]; then
  REVISION+="-dirty"
fi
COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)
CPUS=$(nproc)
MODEL=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -n 1)
KERNEL=$(uname -srm)
MEM_MIB=$(awk '/^MemTotal/ { printf "%d", $2 / 1024 }' /proc/meminfo 2>/dev/null)
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# The command, with the BENCH_* settings it ran under, so that the run can be repeated.
COMMAND="$( (env | grep -E '^BENCH_[A-Z0-9_]+=' || true) | LC_ALL=C sort | tr '\n' ' ')"
COMMAND+="bash bench/run.sh $BUILD_ARG"

echo "== twinlane benchmark =="
echo "machine : $CPUS CPUs, ${MODEL:-unknown CPU}, $KERNEL"
echo "memory  : $(awk -v m="$MEM_MIB" 'BEGIN { printf "%.1f GiB", m / 1024 }')"
echo "source  : $REVISION"
echo "build   : $BUILD_DIR"
echo "date    : $DATE"

PORT=$(bench_free_port) || die "no free port found"
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

# run_bench NAME LABEL ARGS...: one twinlane-bench run against the server, its JSON in
# $TMP/NAME.json; --connections BENCH_CONNECTIONS unless ARGS say otherwise. The bench stops at
# once (status 2) when the server died.
run_bench() {
  local name=$1 label=$2 rc=0 t0
  shift 2
  t0=$(now_s)
  echo
  echo "== $label =="
  "$BENCH_BIN" --host 127.0.0.1 --port "$PORT" --connections "$CONNECTIONS" \
    --warmup-s "$WARMUP_S" --json "$TMP/$name.json" "$@" || rc=$?
  if ((rc != 0)); then
    echo "bench/run.sh: twinlane-bench exited with status $rc" >&2
    SERVER_TROUBLE=1
    step_done "$name" failed "$rc" "$(elapsed "$t0")" "twinlane-bench exited with status $rc"
  else
    step_done "$name" ok 0 "$(elapsed "$t0")"
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID" 2>/dev/null && rc=0 || rc=$?
    SERVER_PID=""
    SERVER_TROUBLE=1
    echo "bench/run.sh: the server died during this run (exit status $rc)" >&2
    exit 2
  fi
}

run_bench ceiling "1. ceiling: GET /health only, ${HEALTH_S} s" \
  --mode health --duration-s "$HEALTH_S"
run_bench orders "2. durable writes: POST /orders only, ${DURATION_S} s" \
  --mode orders --seed-products --products "$PRODUCTS" --duration-s "$DURATION_S"
run_bench mixed "3. mixed: ${READS_PER_WRITE} reads per write, ${DURATION_S} s" \
  --mode mixed --products "$PRODUCTS" --reads-per-write "$READS_PER_WRITE" \
  --duration-s "$DURATION_S"
# The reads setup places the orders the order view reads (every one of them readable); the
# customer and search phases read what the phases before them wrote.
run_bench order_view "4. order view: GET /orders/{id} of ${KNOWN_ORDERS} orders, ${DURATION_S} s" \
  --mode reads --reads order --seed-orders "$KNOWN_ORDERS" --products "$PRODUCTS" \
  --duration-s "$DURATION_S"
run_bench customer_history "5. customer history: GET /customers/{id}/orders, ${DURATION_S} s" \
  --mode reads --reads customer --seed-orders 0 --products "$PRODUCTS" --duration-s "$DURATION_S"
run_bench search "6. search: GET /orders/search?q=...&limit=20, ${DURATION_S} s" \
  --mode reads --reads search --seed-orders 0 --products "$PRODUCTS" --duration-s "$DURATION_S"

# The placing is bounded by the longer of the phase duration and 30 s: the orders are a fixed
# number, the bound only stops a server that stalls.
FLASH_LIMIT_S=$(awk -v d="$DURATION_S" 'BEGIN { print (d + 0 < 30) ? 30 : d }')
run_bench flash_sale "7. flash sale: ${FLASH_ORDERS} single-unit orders for ${FLASH_STOCK} units" \
  --mode flash-sale --flash-stock "$FLASH_STOCK" --flash-orders "$FLASH_ORDERS" \
  --duration-s "$FLASH_LIMIT_S"
run_bench projection_lag "8. fixed rate: POST /orders at ${LAG_RATE}/s, ${DURATION_S} s" \
  --mode orders --rate "$LAG_RATE" --connections "$LAG_CONNECTIONS" --products "$PRODUCTS" \
  --duration-s "$DURATION_S"

# The server's peak resident set over every HTTP phase, before it stops.
RSS_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || true)
if [[ $RSS_KIB =~ ^[0-9]+$ ]]; then
  printf '{"peak_rss_kib": %s}\n' "$RSS_KIB" >"$TMP/server.json"
  echo
  echo "server peak RSS (VmHWM): $((RSS_KIB / 1024)) MiB"
fi

# 9. Snapshots: engine only, after the server is gone so that nothing competes for the cores.
stop_server
echo
echo "== 9. snapshots: cold load of a ${SNAPSHOT_EVENTS}-event product stream =="
rc=0
t0=$(now_s)
TMPDIR="$TMP" "$SNAPSHOT_BIN" --events "$SNAPSHOT_EVENTS" --snapshot-every "$SNAPSHOT_EVERY" \
  --json "$TMP/snapshots.json" || rc=$?
if ((rc != 0)); then
  echo "bench/run.sh: twinlane-bench-snapshots exited with status $rc" >&2
  step_done snapshots failed "$rc" "$(elapsed "$t0")" \
    "twinlane-bench-snapshots exited with status $rc"
else
  step_done snapshots ok 0 "$(elapsed "$t0")"
fi

# run_script NAME: bash bench/NAME.sh BUILD_DIR $TMP/NAME.json, its stderr shown and kept.
# Exit 0 with the JSON written: ok; 77: skipped (the reason is its last line on stderr);
# anything else, or 0 without the JSON: failed. A script not in this tree is skipped.
run_script() {
  local name=$1 script="$ROOT/bench/$1.sh" out="$TMP/$1.json" err="$TMP/$1.stderr" rc=0 t0
  echo
  echo "== 10. $name: bench/$name.sh =="
  if [[ ! -f $script ]]; then
    echo "skipped: bench/$name.sh is not in this tree"
    step_done "$name" skipped "" 0 "bench/$name.sh is not in this tree"
    return 0
  fi
  t0=$(now_s)
  (cd "$ROOT" && BENCH_CONNECTIONS="$CONNECTIONS" TMPDIR="$TMP" \
     bash "$script" "$BUILD_DIR" "$out" 2>&1 1>&3 | tee "$err" >&2) 3>&1 || rc=$?
  local why
  why=$(grep -v '^[[:space:]]*$' "$err" 2>/dev/null | tail -n 1 || true)
  if ((rc == 77)); then
    echo "skipped: ${why:-no reason given}"
    step_done "$name" skipped 77 "$(elapsed "$t0")" "${why:-no reason given}"
  elif ((rc != 0)); then
    echo "bench/run.sh: bench/$name.sh exited with status $rc" >&2
    step_done "$name" failed "$rc" "$(elapsed "$t0")" "exit status $rc${why:+: $why}"
  elif [[ ! -s $out ]]; then
    echo "bench/run.sh: bench/$name.sh exited 0 but wrote no $out" >&2
    step_done "$name" failed 1 "$(elapsed "$t0")" "exit status 0 but no JSON written"
  else
    step_done "$name" ok 0 "$(elapsed "$t0")"
  fi
}

run_script callgrind
run_script scale
if ((PG == 1)); then
  run_script pg_baseline
else
  echo
  echo "== 10. pg_baseline: skipped (BENCH_PG=0) =="
  step_done pg_baseline skipped "" 0 "BENCH_PG=0"
fi

meta=(--meta "date=$DATE" --meta "command=$COMMAND" --meta "revision=$REVISION"
      --meta "commit=$COMMIT" --meta "cpus=$CPUS" --meta "cpu_model=${MODEL:-unknown}"
      --meta "kernel=$KERNEL" --meta "memory_mib=$MEM_MIB"
      --meta "setting_build_dir=$BUILD_DIR" --meta "setting_duration_s=$DURATION_S"
      --meta "setting_health_s=$HEALTH_S" --meta "setting_warmup_s=$WARMUP_S"
      --meta "setting_connections=$CONNECTIONS" --meta "setting_reads_per_write=$READS_PER_WRITE"
      --meta "setting_products=$PRODUCTS" --meta "setting_known_orders=$KNOWN_ORDERS"
      --meta "setting_flash_stock=$FLASH_STOCK" --meta "setting_flash_orders=$FLASH_ORDERS"
      --meta "setting_lag_rate_per_s=$LAG_RATE" --meta "setting_lag_connections=$LAG_CONNECTIONS"
      --meta "setting_snapshot_events=$SNAPSHOT_EVENTS"
      --meta "setting_snapshot_every=$SNAPSHOT_EVERY" --meta "setting_pg=$PG"
      --meta "setting_scale_events=${BENCH_SCALE_EVENTS:-}")
rc=0
python3 "$ROOT/bench/results.py" --dir "$TMP" --out "$RESULTS_JSON" "${meta[@]}" || rc=$?
if ((rc != 0)) && ((STATUS == 0)); then
  STATUS=$rc
fi
exit "$STATUS"
