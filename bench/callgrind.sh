#!/usr/bin/env bash
# bench/callgrind.sh BUILD_DIR OUT_JSON: instructions per command and per query, counted by
# callgrind on the whole server (every thread), so the figures do not depend on the machine's
# speed or load (see bench/SCRIPTS.md).
#
# Starts `twinlane serve --http-threads 1` under valgrind --tool=callgrind with collection on,
# seeds products and orders and waits until the saga and the read models processed them, then
# measures four fixed workloads of one sequential client, each between two callgrind dumps
# (callgrind_control --dump also zeroes the counters):
#   commands        N x POST /orders, each followed by a read of the order that waits
#                   (minPosition) until the read model shows it RESERVED: the end-to-end cost of
#                   a command (HTTP, validation, writer, fsync, projections, the saga's
#                   reserve_order, and that one read);
#   order_view      M x GET /orders/{id}
#   customer_history M x GET /customers/{id}/orders?limit=20
#   search          M x GET /orders/search?q=widget&limit=20
# and reports each dump's total Ir divided by N or M.
# Env: BENCH_CG_COMMANDS (N, default 300), BENCH_CG_QUERIES (M, default 500),
#      BENCH_CG_SEED_ORDERS (default 200).
# Exit 0, 77 (valgrind or python3 missing, or a sanitizer build: valgrind cannot run ASan or
# TSan binaries), else failure. Cleans up on any exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: bash bench/callgrind.sh BUILD_DIR OUT_JSON" >&2
  exit 2
fi
BUILD_DIR=$1
OUT_JSON=$2
N=${BENCH_CG_COMMANDS:-300}
M=${BENCH_CG_QUERIES:-500}
SEED_ORDERS=${BENCH_CG_SEED_ORDERS:-200}

for tool in valgrind callgrind_control python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "callgrind.sh: skipped: $tool is not installed" >&2
    exit 77
  fi
done
if [[ ! -x $BUILD_DIR/twinlane ]]; then
  echo "callgrind.sh: $BUILD_DIR/twinlane is missing (build the project first)" >&2
  exit 1
fi
if grep -qE '^TL_(SANITIZE|TSAN):BOOL=ON' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
  echo "callgrind.sh: skipped: $BUILD_DIR is a sanitizer build (valgrind cannot run it)" >&2
  exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinlane-callgrind.XXXXXX")
SERVER_PID=
DRIVER_PID= # the Python driver, run in the background so signals act at once
cleanup() {
  local rc=$?
  if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill -TERM "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  bench_stop "$SERVER_PID" 100
  bench_log_tail "$rc" "$WORK/server.log"
  if [[ -n ${BENCH_CG_THREADS_DIR:-} ]]; then
    mkdir -p "$BENCH_CG_THREADS_DIR" && cp "$WORK"/cg.out* "$BENCH_CG_THREADS_DIR"/ 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
bench_traps cleanup

PORT=$(bench_free_port)
mkdir "$WORK/data"
# --http-threads 1: one event loop, so that one client's requests always take the same path.
# BENCH_CG_THREADS_DIR=DIR: one profile per thread (--separate-threads=yes), copied to DIR at the
# end (cg.out.<dump>-<thread>; dump 2 is the commands, see callgrind_annotate) for a split by
# thread; the figures printed are the sums over all threads either way.
SEPARATE=()
[[ -z ${BENCH_CG_THREADS_DIR:-} ]] || SEPARATE=(--separate-threads=yes)
valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" --dump-instr=no "${SEPARATE[@]}" \
  --vgdb=yes --error-limit=no \
  "$BUILD_DIR/twinlane" serve --data "$WORK/data" --listen "127.0.0.1:$PORT" \
  --http-threads 1 --log-level warn >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

python3 - "$PORT" "$SERVER_PID" "$WORK" "$N" "$M" "$SEED_ORDERS" "$OUT_JSON" <<'PY' &
import glob, http.client, json, os, random, subprocess, sys, time

port, pid, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
n_cmd, n_q, n_seed, out_json = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
rng = random.Random(1)  # the same workload every run
conn = None

def request(method, path, body=None):
    global conn
    for attempt in range(2):
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        except (ConnectionError, http.client.HTTPException):
            conn.close()
            conn = None
            if attempt:
                raise

def ok(method, path, body=None, want=(200, 201)):
    status, data = request(method, path, body)
    if status not in want:
        raise SystemExit(f"callgrind.sh: {method} {path} answered {status}: {data[:300]!r}")
    return json.loads(data)

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise SystemExit("callgrind.sh: the server died")

# Wait for /health (valgrind is slow to start).
end = time.monotonic() + 120
while True:
    alive()
    try:
        if request("GET", "/health")[0] == 200:
            break
    except OSError:
        conn = None
    if time.monotonic() > end:
        raise SystemExit("callgrind.sh: no /health within 120 s")
    time.sleep(0.2)

PRODUCTS = 20
WORDS = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor"]
prices = {}
for i in range(PRODUCTS):
    pid_ = f"cg-p{i}"
    cents = (5 + i) * 100 + 99
    prices[pid_] = cents
    ok("POST", "/products", {"productId": pid_, "name": f"Widget {i} {WORDS[i % len(WORDS)]}",
                             "category": "tools", "price": cents / 100, "stock": 10_000_000})
customers = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]

def place_order():
    """POST /orders, then wait (in the read model) for the order to be RESERVED. With one
    sequential client the saga's events follow the order's directly: k StockReserved (one per
    distinct product), then OrderReserved at position P + k + 1."""
    k = rng.randint(1, 3)
    items = [{"productId": p, "quantity": rng.randint(1, 3), "price": prices[p] / 100}
             for p in rng.sample(sorted(prices), k)]
    body = {"customerId": rng.choice(customers), "items": items,
            "shippingAddress": {"street": "1 Bench Street", "city": "Lyon", "country": "FR",
                                "postalCode": "69001"}}
    placed = ok("POST", "/orders", body)
    oid, pos = placed["orderId"], placed["position"]
    view = ok("GET", f"/orders/{oid}?minPosition={pos + k + 1}&waitMs=10000")
    if view["status"] != "RESERVED":
        raise SystemExit(f"callgrind.sh: order {oid} is {view['status']} after its saga")
    return oid

orders = [place_order() for _ in range(n_seed)]

def dump():
    before = set(glob.glob(os.path.join(work, "cg.out*")))
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30
    last = None
    while True:
        new = set(glob.glob(os.path.join(work, "cg.out*"))) - before
        total, found = 0, 0
        for path in new:  # one file per dump, or one per thread with --separate-threads
            with open(path) as f:
                for line in f:
                    if line.startswith("totals:") or line.startswith("summary:"):
                        total += int(line.split()[1])
                        found += 1
                        break
        if new and found == len(new) and new == last:  # the same files two polls running
            return total
        last = new
        if time.monotonic() > end:
            raise SystemExit("callgrind.sh: no callgrind dump appeared")
        time.sleep(0.1)

def measure(label, count, fn):
    t0 = time.monotonic()
    for i in range(count):
        fn(i)
    ir = dump()
    print(f"{label:<18} {count:5d} x  {ir / count:12.0f} Ir each  ({time.monotonic() - t0:.1f} s)")
    return ir / count

def tidy_steps():
    status, body = request("GET", "/metrics")
    if status != 200:
        raise SystemExit(f"callgrind.sh: GET /metrics answered {status}")
    return sum(float(line.split()[-1]) for line in body.decode().splitlines()
               if line.startswith("tl_projection_tidy_steps_total"))

def settle(quiet_s=2.0, limit_s=180.0):
    """Waits until the projector's housekeeping (tidy steps, run once the log is quiet) has
    stopped, so that it is not counted as the next workload's instructions."""
    deadline = time.monotonic() + limit_s
    last, since = tidy_steps(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            raise SystemExit("callgrind.sh: the projector's tidy steps did not stop")
        time.sleep(0.25)
        now = tidy_steps()
        if now != last:
            last, since = now, time.monotonic()

settle()
dump()  # zeroes the counters: start-up and seeding are not counted
res = {}
new_orders = []
res["instructions_per_command"] = measure("POST /orders", n_cmd,
                                          lambda i: new_orders.append(place_order()))
settle()  # the commands' housekeeping is neither theirs nor the queries'
dump()
all_orders = orders + new_orders
res["instructions_per_query_order_view"] = measure(
    "GET /orders/{id}", n_q, lambda i: ok("GET", f"/orders/{all_orders[i % len(all_orders)]}"))
res["instructions_per_query_customer_history"] = measure(
    "customer history", n_q,
    lambda i: ok("GET", f"/customers/{customers[i % len(customers)]}/orders?limit=20"))
res["instructions_per_query_search"] = measure(
    "search widget", n_q, lambda i: ok("GET", "/orders/search?q=widget&limit=20"))
res = {k: round(v) for k, v in res.items()}
res["callgrind_commands"] = n_cmd
res["callgrind_queries"] = n_q
with open(out_json, "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
PY
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=

# A clean stop: SIGTERM, the server exits 0.
kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=
if [[ $rc -ne 0 ]]; then
  echo "callgrind.sh: the server exited with status $rc" >&2
  exit 1
fi
echo "wrote $OUT_JSON"
