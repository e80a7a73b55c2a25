#!/usr/bin/env bash
# bench/scale.sh BUILD_DIR OUT_JSON: twinlane with a large log (see bench/SCRIPTS.md).
#
# Builds a data directory whose log holds BENCH_SCALE_EVENTS events (default 1,000,000: 100
# products, then one OrderPlaced per event) with twinlane-bench-genlog, then on one server:
#   catch-up   projections start from no read models: events / seconds from exec until every
#              projection's checkpoint is at the head;
#   rebuilds   POST /admin/projections/{name}/rebuild for orders, products, daily_sales, one
#              after the other: events / seconds until the swap (status back to "running");
#   memory     the server's peak RSS (VmHWM) over all of that;
#   cold start SIGTERM, then a new server on the same directory: ms from exec to the first 200
#              of GET /ready (the read models are at the head, nothing to replay).
# Writes a flat JSON object to OUT_JSON; prints a summary. Exit 0, 77 (a tool is missing), else
# failure. Everything it starts is stopped and its temporary directory removed on any exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: bash bench/scale.sh BUILD_DIR OUT_JSON" >&2
  exit 2
fi
BUILD_DIR=$1
OUT_JSON=$2
EVENTS=${BENCH_SCALE_EVENTS:-1000000}

for tool in python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scale.sh: skipped: $tool is not installed" >&2
    exit 77
  fi
done
for bin in twinlane twinlane-bench-genlog; do
  if [[ ! -x $BUILD_DIR/$bin ]]; then
    echo "scale.sh: $BUILD_DIR/$bin is missing (build the project first)" >&2
    exit 1
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinlane-scale.XXXXXX")
PIDFILE=$WORK/pids
: >"$PIDFILE"
CHILD= # the generator or the Python driver, run in the background so signals act at once
cleanup() {
  local rc=$? pid
  if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  # Only the servers this script started (their pids are recorded by the driver).
  while read -r pid; do
    [[ -n $pid ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$PIDFILE"
  bench_log_tail "$rc" "$WORK/server.log"
  rm -rf "$WORK"
  exit "$rc"
}
bench_traps cleanup

echo "== scale: $EVENTS events in the log =="
"$BUILD_DIR/twinlane-bench-genlog" --dir "$WORK/data" --events "$EVENTS" --json "$WORK/gen.json" &
CHILD=$!
wait "$CHILD"
echo "log size: $(du -sh "$WORK/data/events.db" | cut -f1)"

python3 - "$BUILD_DIR/twinlane" "$WORK" "$OUT_JSON" <<'PY' &
import json, os, signal, socket, subprocess, sys, time, urllib.request, urllib.error

binary, work, out_json = sys.argv[1:4]
data = os.path.join(work, "data")
gen = json.load(open(os.path.join(work, "gen.json")))
events = gen["events"]

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

port = free_port()
base = f"http://127.0.0.1:{port}"
log = open(os.path.join(work, "server.log"), "ab")

def start():
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "serve", "--data", data, "--listen", f"127.0.0.1:{port}",
                          "--log-level", "info"], stdout=log, stderr=log)
    with open(os.path.join(work, "pids"), "a") as f:
        f.write(f"{p.pid}\n")
    return p, t0

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise SystemExit("scale.sh: the server did not stop within 30 s of SIGTERM")
    if rc != 0:
        raise SystemExit(f"scale.sh: the server exited with status {rc} on SIGTERM")

def request(method, path, timeout=10):
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def get_json(path):
    status, body = request("GET", path)
    if status != 200:
        raise SystemExit(f"scale.sh: GET {path} answered {status}: {body[:200]!r}")
    return json.loads(body)

# VmHWM is the process's peak resident set; RssAnon (heap, SQLite page caches) and RssFile
# (mapped files) are sampled while polling, to tell what the peak is made of.
peak_kb = 0
max_kb = {"RssAnon": 0, "RssFile": 0}
def sample_rss(p):
    global peak_kb
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key == "VmHWM":
                    peak_kb = max(peak_kb, int(line.split()[1]))
                elif key in max_kb:
                    max_kb[key] = max(max_kb[key], int(line.split()[1]))
    except OSError:
        pass

def alive(p):
    if p.poll() is not None:
        raise SystemExit(f"scale.sh: the server died (status {p.returncode})")

def projections():
    return {x["name"]: x for x in get_json("/admin/projections")}

def wait_up(p, deadline_s=60):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        alive(p)
        try:
            if request("GET", "/health", timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("scale.sh: the server did not answer /health")

# 1. Catch-up from no read models.
server, t_exec = start()
wait_up(server)
limit_s = max(600.0, events / 1000.0)
while True:
    alive(server)
    sample_rss(server)
    ps = projections()
    if all(x["position"] >= events for x in ps.values()):
        break
    if time.monotonic() - t_exec > limit_s:
        raise SystemExit(f"scale.sh: projections did not catch up in {limit_s:.0f} s: {ps}")
    time.sleep(0.05)
catchup_s = time.monotonic() - t_exec
sample_rss(server)
catchup_peak_kb = peak_kb
print(f"catch-up : {events} events in {catchup_s:.2f} s: {events / catchup_s:.0f} events/s "
      f"(from exec, all projections)")

# 2. Rebuilds, one projection at a time.
def swapped_lines(name):
    """The server's log lines of name's rebuilds, parsed: ms (the whole rebuild), fold_ms and
    finish_ms (the rebuild thread's fold and finish) and swap_ms (the projector's share)."""
    out = []
    with open(os.path.join(work, "server.log"), "rb") as f:
        for line in f:
            if b"projection rebuilt and swapped in" in line and f'"{name}"'.encode() in line:
                out.append(json.loads(line))
    return out

rebuild, swap_ms = {}, {}
for name in ["orders", "products", "daily_sales"]:
    before = len(swapped_lines(name))
    t0 = time.monotonic()
    status, body = request("POST", f"/admin/projections/{name}/rebuild")
    if status != 202:
        raise SystemExit(f"scale.sh: rebuild {name} answered {status}: {body[:200]!r}")
    while True:
        alive(server)
        sample_rss(server)
        x = projections()[name]
        if x["status"] != "rebuilding":
            break
        if time.monotonic() - t0 > limit_s:
            raise SystemExit(f"scale.sh: rebuild of {name} did not finish in {limit_s:.0f} s")
        time.sleep(0.05)
    dt = time.monotonic() - t0
    done = swapped_lines(name)
    if len(done) != before + 1 or x["position"] < events:
        raise SystemExit(f"scale.sh: rebuild of {name} failed (see the server log): {x}")
    rebuild[name] = events / dt
    swap_ms[name] = int(done[-1].get("swap_ms", -1))
    sample_rss(server)
    print(f"rebuild  : {name:<12} {dt:7.2f} s: {events / dt:.0f} events/s "
          f"(fold {int(done[-1].get('fold_ms', -1)) / 1e3:.2f} s, finish "
          f"{int(done[-1].get('finish_ms', -1)) / 1e3:.2f} s, projector {swap_ms[name]} ms; "
          f"VmHWM {peak_kb / 1024:.0f} MB)")
sample_rss(server)
stop(server)
print(f"peak RSS : {peak_kb / 1024:.1f} MB (VmHWM; {catchup_peak_kb / 1024:.1f} MB by the end of "
      f"the catch-up; largest samples: RssAnon {max_kb['RssAnon'] / 1024:.1f} MB, "
      f"RssFile {max_kb['RssFile'] / 1024:.1f} MB)")
serve_peak_kb = peak_kb

# 3. Cold start: exec to the first 200 of /ready.
server, t_exec = start()
while True:
    alive(server)
    try:
        if request("GET", "/ready", timeout=1)[0] == 200:
            break
    except OSError:
        pass
    if time.monotonic() - t_exec > 120:
        raise SystemExit("scale.sh: /ready did not answer 200 within 120 s of a restart")
    time.sleep(0.002)
cold_ms = (time.monotonic() - t_exec) * 1e3
ps = projections()
if any(x["position"] < events for x in ps.values()):
    raise SystemExit(f"scale.sh: after a restart the read models are behind: {ps}")
peak_kb = 0
sample_rss(server)
stop(server)
print(f"cold start: {cold_ms:.0f} ms from exec to 200 on /ready (VmHWM then {peak_kb / 1024:.1f} MB)")

result = {
    "scale_events": events,
    "scale_generate_ms": round(gen["generate_ms"], 1),
    "catchup_events_per_s": round(events / catchup_s, 1),
    "rebuild_orders_events_per_s": round(rebuild["orders"], 1),
    "rebuild_products_events_per_s": round(rebuild["products"], 1),
    "rebuild_daily_sales_events_per_s": round(rebuild["daily_sales"], 1),
    "rebuild_orders_projector_ms": swap_ms["orders"],
    "rebuild_products_projector_ms": swap_ms["products"],
    "rebuild_daily_sales_projector_ms": swap_ms["daily_sales"],
    "cold_start_ms": round(cold_ms, 1),
    "scale_peak_rss_mb": round(serve_peak_kb / 1024, 1),
    "scale_peak_rss_catchup_mb": round(catchup_peak_kb / 1024, 1),
    "scale_rss_anon_max_mb": round(max_kb["RssAnon"] / 1024, 1),
    "scale_cold_start_rss_mb": round(peak_kb / 1024, 1),
}
with open(out_json, "w") as f:
    json.dump(result, f, indent=2)
    f.write("\n")
PY
CHILD=$!
wait "$CHILD"
CHILD=
echo "wrote $OUT_JSON"
