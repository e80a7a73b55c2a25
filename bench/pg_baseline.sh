#!/usr/bin/env bash
# bench/pg_baseline.sh BUILD_DIR OUT_JSON: the baseline users would otherwise pick, an event table
# in PostgreSQL, measured with pgbench the way bench/run.sh's durable orders run measures twinlane
# (see bench/SCRIPTS.md).
#
# Starts a private PostgreSQL (Debian's, found by pg_config --bindir or
# /usr/lib/postgresql/*/bin) on 127.0.0.1 with a free port, in a temporary directory, as an
# unprivileged user when run as root (initdb refuses root); fsync=on, synchronous_commit=on,
# everything else default. Creates
#   events(id bigserial primary key, stream text, version int, type text, schema_version int,
#          data jsonb, metadata jsonb, recorded_at timestamptz, UNIQUE(stream, version))
# and runs pgbench for BENCH_PG_SECONDS (10) with BENCH_CONNECTIONS (64) clients, -j 2, each
# transaction one INSERT of an OrderPlaced event like twinlane's (same data and metadata members,
# a new stream per insert at version 1), prepared statements. p50/p99 come from pgbench's
# per-transaction log. BUILD_DIR is not used (the same calling convention as the other scripts).
# Exit 0, 77 (PostgreSQL or pgbench missing), else failure. Cleans up on any exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $# -ne 2 ]]; then
  echo "usage: bash bench/pg_baseline.sh BUILD_DIR OUT_JSON" >&2
  exit 2
fi
OUT_JSON=$(cd "$(dirname "$2")" && pwd)/$(basename "$2") # the script changes directory
CLIENTS=${BENCH_CONNECTIONS:-64}
SECONDS_RUN=${BENCH_PG_SECONDS:-10}

if ! command -v python3 >/dev/null 2>&1; then
  echo "pg_baseline.sh: skipped: python3 is not installed" >&2
  exit 77
fi
PG_BIN=
if command -v pg_config >/dev/null 2>&1 && [[ -x "$(pg_config --bindir)/initdb" ]]; then
  PG_BIN=$(pg_config --bindir)
else
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x $d/initdb ]] && PG_BIN=$d
  done
fi
if [[ -z $PG_BIN ]]; then
  echo "pg_baseline.sh: skipped: no PostgreSQL server (initdb) found" >&2
  exit 77
fi
PGBENCH=$PG_BIN/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench || true)
for tool in "$PG_BIN/postgres" "$PG_BIN/pg_ctl" "$PG_BIN/psql" "$PGBENCH"; do
  if [[ -z $tool || ! -x $tool ]]; then
    echo "pg_baseline.sh: skipped: ${tool:-pgbench} is missing" >&2
    exit 77
  fi
done

# Always under /tmp: PostgreSQL runs as an unprivileged user, who must reach the directory (a
# caller's TMPDIR, such as run.sh's private one, may be closed to it).
WORK=$(mktemp -d /tmp/twinlane-pg.XXXXXX)
chmod 755 "$WORK"
# initdb and postgres refuse to run as root: run them as nobody, in a directory it owns.
AS=()
if [[ $(id -u) -eq 0 ]]; then
  if ! command -v runuser >/dev/null 2>&1 || ! id nobody >/dev/null 2>&1; then
    echo "pg_baseline.sh: skipped: running as root without runuser or user nobody" >&2
    rm -rf "$WORK"
    exit 77
  fi
  AS=(runuser -u nobody --)
fi
mkdir "$WORK/pg" "$WORK/sock" "$WORK/bench"
[[ ${#AS[@]} -eq 0 ]] || chown nobody "$WORK/pg" "$WORK/sock"
PGDATA=$WORK/pg/data

PGBENCH_PID=
cleanup() {
  local rc=$?
  if [[ -n $PGBENCH_PID ]]; then
    kill -TERM "$PGBENCH_PID" 2>/dev/null || true
    wait "$PGBENCH_PID" 2>/dev/null || true
  fi
  if [[ -f $PGDATA/postmaster.pid ]]; then
    "${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
    if [[ -f $PGDATA/postmaster.pid ]]; then # pg_ctl failed: the postmaster's own pid
      local pid
      pid=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
      [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  if [[ $rc -ne 0 && -s $WORK/pg/server.log ]]; then
    echo "--- tail of the PostgreSQL log ---" >&2
    grep -v "^\s" "$WORK/pg/server.log" | tail -n 10 >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
bench_traps cleanup

PORT=$(bench_free_port)
PG_VERSION=$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+(\.[0-9]+)?).*/\1/')
echo "== PostgreSQL $PG_VERSION baseline: $CLIENTS clients, ${SECONDS_RUN} s =="

"${AS[@]}" "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-locale \
  >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; exit 1; }
MAX_CONN=$((CLIENTS + 10))
((MAX_CONN >= 100)) || MAX_CONN=100
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$WORK/sock -c fsync=on -c synchronous_commit=on -c max_connections=$MAX_CONN" \
  start >/dev/null

PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" <<'SQL'
CREATE TABLE events (
  id bigserial PRIMARY KEY,
  stream text NOT NULL,
  version int NOT NULL,
  type text NOT NULL,
  schema_version int NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (stream, version)
);
SQL

# One event per transaction, shaped like twinlane's OrderPlaced (bench/gen_log.c writes the same
# members): a ULID-sized order id in a new stream, 1-3 items, address, total; metadata with
# eventId, correlationId and a null causationId. A colon in the text is always followed by a
# space: pgbench would take ":name" for one of its variables.
cat >"$WORK/bench/insert.sql" <<'SQL'
\set q1 random(1, 3)
\set q2 random(1, 3)
\set p1 random(0, 99)
\set p2 random(0, 99)
\set street random(1, 999)
\set postal random(10000, 99999)
INSERT INTO events (stream, version, type, schema_version, data, metadata)
SELECT 'order-' || o.id, 1, 'OrderPlaced', 2,
  ('{"orderId": "' || o.id || '", "customerId": "' || gen_random_uuid() ||
   '", "items": [{"productId": "bench-p' || :p1 || '", "quantity": ' || :q1 ||
   ', "price": 49.99}, {"productId": "bench-p' || :p2 || '", "quantity": ' || :q2 ||
   ', "price": 59.99}], "shippingAddress": {"street": "' || :street ||
   ' Bench Street", "city": "Porto", "country": "PT", "postalCode": "' || :postal ||
   '"}, "currency": "USD", "total": ' || (:q1 * 49.99 + :q2 * 59.99) || '}')::jsonb,
  ('{"eventId": "' || gen_random_uuid() || '", "correlationId": "' || gen_random_uuid() ||
   '", "causationId": null}')::jsonb
FROM (SELECT upper(substr(replace(gen_random_uuid()::text, '-', ''), 1, 26)) AS id) AS o;
SQL

cd "$WORK/bench"
"$PGBENCH" -h 127.0.0.1 -p "$PORT" -U postgres -n -M prepared -c "$CLIENTS" -j 2 \
  -T "$SECONDS_RUN" -f insert.sql --log --log-prefix=txn postgres >pgbench.out 2>pgbench.err &
PGBENCH_PID=$! # in the background so that a signal stops the script at once
wait "$PGBENCH_PID" || { cat pgbench.out >&2; head -n 5 pgbench.err >&2; exit 1; }
PGBENCH_PID=
grep -E "^(number of (transactions|failed)|latency average|tps)" pgbench.out || true
ROWS=$("${PSQL[@]}" -At -c "SELECT count(*) FROM events")
echo "settings: $("${PSQL[@]}" -At -F ' ' -c "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name)
  FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method',
  'max_connections', 'shared_buffers', 'commit_delay')")"

python3 - "$OUT_JSON" "$CLIENTS" "$PG_VERSION" "$ROWS" <<'PY'
import glob, json, re, sys
out_json, clients, version, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
text = open("pgbench.out").read()
m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
if not m:
    raise SystemExit("pg_baseline.sh: no tps in the pgbench output")
tps = float(m.group(1))
lat = []
for path in glob.glob("txn.*"):
    with open(path) as f:
        for line in f:
            parts = line.split()
            # client_id transaction_no time script_no time_epoch time_us (time: latency in us)
            if len(parts) >= 6 and parts[2].isdigit():
                lat.append(int(parts[2]))
if not lat:
    raise SystemExit("pg_baseline.sh: the per-transaction log is empty")
lat.sort()
def pct(q):
    return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000.0
res = {"pg_clients": clients, "pg_inserts_per_s": round(tps, 1), "pg_p50_ms": round(pct(0.50), 3),
       "pg_p99_ms": round(pct(0.99), 3), "pg_version": version}
print(f"inserts/s {tps:.0f}  p50 {res['pg_p50_ms']:.2f} ms  p99 {res['pg_p99_ms']:.2f} ms  "
      f"({len(lat)} transactions logged, {rows} rows in the table)")
with open(out_json, "w") as f:
    json.dump(res, f, indent=2)
    f.write("\n")
PY
echo "wrote $OUT_JSON"
