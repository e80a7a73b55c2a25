#!/usr/bin/env python3
"""bench/results.py: the summary of one bench/run.sh run.

    python3 bench/results.py --dir TMP --out FILE [--meta KEY=VALUE ...]

Reads what bench/run.sh left in TMP: one twinlane-bench JSON file per HTTP phase, named after
the phase (ceiling.json, orders.json, mixed.json, order_view.json, customer_history.json,
search.json, flash_sale.json, projection_lag.json), snapshots.json, the JSON of the external
scripts (callgrind.json, scale.json, pg_baseline.json), server.json (peak RSS) and steps.tsv
(one line per step: name, outcome, exit status, seconds, reason). Prints the final table on
stdout and writes every figure to FILE as one JSON document (through FILE.tmp and a rename, so
a reader never sees half of it).

A missing or unreadable file is not an error here: its figures are null and its step says why.
run.sh decides the exit status of the bench; this script exits 0, or 1 when FILE cannot be
written or the command line is wrong.
"""
import argparse
import json
import math
import os
import sys

SCHEMA = "twinlane-bench-results/1"

# (key in the results, file, what it measures, the loadgen class its line reports).
# "requests" is every request of the phase but the read-your-write probes.
HTTP_PHASES = [
    ("ceiling", "ceiling.json", "GET /health only", "health"),
    ("orders", "orders.json", "durable POST /orders only", "commands"),
    ("mixed", "mixed.json", "the read/write mix", "requests"),
    ("order_view", "order_view.json", "GET /orders/{id} only", "queries"),
    ("customer_history", "customer_history.json",
     "GET /customers/{id}/orders?limit=20 only", "queries"),
    ("search", "search.json", "GET /orders/search?q=...&limit=20 only", "queries"),
    ("flash_sale", "flash_sale.json", "flash sale: single-unit POST /orders of one product",
     "commands"),
    ("projection_lag", "projection_lag.json", "POST /orders, open loop at a fixed rate",
     "commands"),
]

EXTERNAL = [
    ("callgrind", "callgrind.json", [
        "instructions_per_command", "instructions_per_query_order_view",
        "instructions_per_query_customer_history", "instructions_per_query_search",
        "callgrind_commands", "callgrind_queries"]),
    ("scale", "scale.json", [
        "scale_events", "catchup_events_per_s", "rebuild_orders_events_per_s",
        "rebuild_products_events_per_s", "rebuild_daily_sales_events_per_s",
        "rebuild_orders_projector_ms", "rebuild_products_projector_ms",
        "rebuild_daily_sales_projector_ms", "cold_start_ms", "scale_peak_rss_mb"]),
    ("pg_baseline", "pg_baseline.json", [
        "pg_clients", "pg_inserts_per_s", "pg_p50_ms", "pg_p99_ms", "pg_version"]),
]


def load_json(path):
    """The object in path, or None when the file is absent or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def number(v):
    """v when it is a finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v if math.isfinite(v) else None


def finite(v):
    """v with every non-finite float (a script may write NaN) replaced by None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    return v


def ratio(a, b):
    a, b = number(a), number(b)
    return a / b if a is not None and b else None


def load_steps(path):
    """steps.tsv: name -> {"status", "exit_status", "seconds", "reason"}."""
    steps = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 4:
                    continue
                name, status, rc, seconds = parts[:4]
                steps[name] = {
                    "status": status,
                    "exit_status": int(rc) if rc.lstrip("-").isdigit() else None,
                    "seconds": number(float(seconds)) if seconds else None,
                    "reason": parts[4] if len(parts) > 4 and parts[4] else None,
                }
    except OSError:
        pass
    return steps


def class_figures(run, cls, ceiling):
    """ops/s, latency and counts of one class of a twinlane-bench run, with its ratio to the
    ceiling."""
    s = run.get(cls) if run else None
    s = s if isinstance(s, dict) else {}
    out = {k: number(s.get(k)) for k in ("ops_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms")}
    out["ok"] = number(s.get("ok"))
    out["errors"] = number(s.get("errors"))
    out["ratio_to_ceiling"] = ratio(out["ops_per_s"], ceiling)
    return out


def http_phase(key, run, what, cls, ceiling, step):
    ph = {"what": what, "status": step.get("status", "not run"),
          "exit_status": step.get("exit_status")}
    ph.update(class_figures(run, cls, ceiling))
    if run:
        ph["window_s"] = number(run.get("duration_s"))
        ph["connections"] = number(run.get("connections"))
        for k in ("projection_lag_p50_ms", "projection_lag_p99_ms", "projection_lag_events",
                  "group_commit_mean_batch", "ryw_lag_p50_ms", "ryw_lag_p99_ms"):
            ph[k] = number(run.get(k))
        ph["error_ratio"] = number(run.get("error_ratio"))
    if key == "mixed" and run:
        ph["reads_per_write"] = number(run.get("reads_per_write"))
        ph["commands"] = class_figures(run, "commands", ceiling)
        ph["queries"] = class_figures(run, "queries", ceiling)
    if key == "flash_sale" and run:
        for k in ("flash_stock", "flash_orders", "flash_acked", "flash_reserved",
                  "flash_rejected", "flash_settle_p50_ms", "flash_settle_p99_ms",
                  "flash_settle_p999_ms", "flash_settle_max_ms", "flash_all_settled_after_s"):
            ph[k[len("flash_"):]] = number(run.get(k))
        ph["check"] = run.get("flash_check")
    if key == "projection_lag" and run:
        ph["target_per_s"] = number(run.get("rate_target_per_s"))
        ph["achieved_per_s"] = number(run.get("rate_achieved_per_s"))
        ph["achieved_ratio_to_target"] = ratio(ph["achieved_per_s"], ph["target_per_s"])
        for k in ("due", "sent", "queued", "backlog_start", "backlog_end",
                  "send_delay_p50_ms", "send_delay_p99_ms"):
            ph[k] = number(run.get("rate_" + k))
    ph["loadgen"] = run
    return ph


def external(name, doc, keys, step):
    out = {"status": step.get("status", "not run"), "exit_status": step.get("exit_status"),
           "seconds": step.get("seconds"), "reason": step.get("reason")}
    for k in keys:
        v = doc.get(k) if doc else None
        out[k] = v if isinstance(v, str) else number(v)
    if doc:  # keys the script added beyond the agreed ones are kept too
        for k, v in doc.items():
            out.setdefault(k, v)
    return out


# ---- the table ----------------------------------------------------------------------------

def fmt(v, unit=""):
    v = number(v)
    if v is None:
        return "n/a"
    if float(v).is_integer() or abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.3g}{unit}" if abs(v) < 1 else f"{v:.2f}{unit}"


def pct(v):
    v = number(v)
    return "n/a" if v is None else f"{100 * v:.1f}%"


def print_table(res):
    ph = res["phases"]
    print()
    print("== twinlane benchmark: summary ==")
    print(f"{'phase':<44} {'ops/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} "
          f"{'vs ceiling':>10}")

    def row(label, f, ops=None):
        ops = f.get("ops_per_s") if ops is None else ops
        note = "" if f.get("status", "ok") == "ok" else f"  [{f.get('status')}]"
        print(f"{label:<44} {fmt(ops):>10} {fmt(f.get('p50_ms')):>9} {fmt(f.get('p99_ms')):>9} "
              f"{fmt(f.get('p999_ms')):>9} {pct(f.get('ratio_to_ceiling')):>10}{note}")

    row("1 ceiling      GET /health", ph["ceiling"])
    row("2 orders       POST /orders (durable)", ph["orders"])
    rpw = ph["mixed"].get("reads_per_write")
    rpw = "?" if number(rpw) is None else f"{rpw:g}"
    row(f"3 mixed        {rpw} reads : 1 write, all", ph["mixed"])
    if "commands" in ph["mixed"]:
        row("    commands", ph["mixed"]["commands"])
        row("    queries", ph["mixed"]["queries"])
    row("4 order view   GET /orders/{id}", ph["order_view"])
    row("5 customer     GET /customers/{id}/orders", ph["customer_history"])
    row("6 search       GET /orders/search", ph["search"])
    fl = ph["flash_sale"]
    row("7 flash sale   placing (POST /orders)", fl)
    print(f"{'    settle time (201 -> reserved/rejected)':<44} {'':>10} "
          f"{fmt(fl.get('settle_p50_ms')):>9} {fmt(fl.get('settle_p99_ms')):>9} "
          f"{fmt(fl.get('settle_p999_ms')):>9} {'':>10}  check {fl.get('check') or 'n/a'}")
    lag = ph["projection_lag"]
    row(f"8 fixed rate   POST /orders at {fmt(lag.get('target_per_s'))}/s", lag)
    print("  (phase 8 latencies run from each request's due time; ops/s is what was achieved)")
    print()
    print(f"{'projection lag at fixed rate':<32} p50 {fmt(lag.get('projection_lag_p50_ms'))} ms   "
          f"p99 {fmt(lag.get('projection_lag_p99_ms'))} ms   at {fmt(lag.get('achieved_per_s'))} "
          f"commands/s achieved of {fmt(lag.get('target_per_s'))}/s wanted "
          f"({pct(lag.get('achieved_ratio_to_target'))}; {fmt(lag.get('connections'))} "
          f"connections; backlog at the end {fmt(lag.get('backlog_end'))})")
    od = ph["orders"]
    print(f"{'projection lag, durable writes':<32} p50 {fmt(od.get('projection_lag_p50_ms'))} ms   "
          f"p99 {fmt(od.get('projection_lag_p99_ms'))} ms   (phase 2, closed loop)")
    print(f"{'group commit mean batch':<32} {fmt(od.get('group_commit_mean_batch'))} "
          f"commands/fsync (phase 2)   {fmt(lag.get('group_commit_mean_batch'))} (phase 8)")
    srv = res["server"]
    print(f"{'server peak RSS':<32} {fmt(srv.get('peak_rss_mib'))} MiB (VmHWM after phase 8)")
    sn = res["snapshots"]
    print(f"{'snapshots':<32} cold load of {fmt(sn.get('events'))} events: full fold "
          f"{fmt(sn.get('full_fold_ms'))} ms, from snapshot {fmt(sn.get('snapshot_ms'))} ms, "
          f"longest tail {fmt(sn.get('snapshot_longest_tail_ms'))} ms"
          + ("" if sn.get("status") == "ok" else f"  [{sn.get('status')}]"))

    def ext_line(label, e, text):
        if e["status"] == "ok":
            print(f"{label:<32} {text}")
        else:
            why = f": {e['reason']}" if e.get("reason") else ""
            print(f"{label:<32} {e['status']}{why}")

    cg = res["callgrind"]
    ext_line("instructions (callgrind)", cg,
             f"{fmt(cg.get('instructions_per_command'))} per command; per query: order view "
             f"{fmt(cg.get('instructions_per_query_order_view'))}, customer history "
             f"{fmt(cg.get('instructions_per_query_customer_history'))}, search "
             f"{fmt(cg.get('instructions_per_query_search'))}")
    sc = res["scale"]
    ext_line("scale", sc,
             f"{fmt(sc.get('scale_events'))} events: catch-up {fmt(sc.get('catchup_events_per_s'))}"
             f" ev/s; rebuild orders {fmt(sc.get('rebuild_orders_events_per_s'))}, products "
             f"{fmt(sc.get('rebuild_products_events_per_s'))}, daily sales "
             f"{fmt(sc.get('rebuild_daily_sales_events_per_s'))} ev/s (projector busy "
             f"{fmt(sc.get('rebuild_orders_projector_ms'))} / "
             f"{fmt(sc.get('rebuild_products_projector_ms'))} / "
             f"{fmt(sc.get('rebuild_daily_sales_projector_ms'))} ms); cold start "
             f"{fmt(sc.get('cold_start_ms'))} ms; peak RSS {fmt(sc.get('scale_peak_rss_mb'))} MB")
    pg = res["pg_baseline"]
    ext_line("baseline: PostgreSQL", pg,
             f"{pg.get('pg_version') or '?'}, {fmt(pg.get('pg_clients'))} clients: "
             f"{fmt(pg.get('pg_inserts_per_s'))} inserts/s (p50 {fmt(pg.get('pg_p50_ms'))} ms, "
             f"p99 {fmt(pg.get('pg_p99_ms'))} ms); twinlane durable POST /orders/s over it: "
             f"{fmt(pg.get('twinlane_over_pg'))}x")
    print()
    failed = res["failed_steps"]
    print(f"status: {res['status']}" + (f" (failed: {', '.join(failed)})" if failed else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="where run.sh left the phases' files")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args()
    meta = {}
    for kv in a.meta:
        k, sep, v = kv.partition("=")
        if not sep:
            ap.error(f"--meta {kv}: KEY=VALUE expected")
        meta[k] = v

    def meta_num(k):
        try:
            v = float(meta[k])
        except (KeyError, ValueError):
            return None
        return int(v) if v.is_integer() else v

    steps = load_steps(os.path.join(a.dir, "steps.tsv"))
    runs = {key: load_json(os.path.join(a.dir, f)) for key, f, _, _ in HTTP_PHASES}
    ceiling = number((runs["ceiling"] or {}).get("health", {}).get("ops_per_s"))
    phases = {key: http_phase(key, runs[key], what, cls, ceiling, steps.get(key, {}))
              for key, _, what, cls in HTTP_PHASES}

    server = load_json(os.path.join(a.dir, "server.json")) or {}
    rss_kib = number(server.get("peak_rss_kib"))
    snapshots = {"status": steps.get("snapshots", {}).get("status", "not run"),
                 "exit_status": steps.get("snapshots", {}).get("exit_status")}
    snapshots.update(load_json(os.path.join(a.dir, "snapshots.json")) or {})

    res = {
        "schema": SCHEMA,
        "date": meta.get("date"),
        "command": meta.get("command"),
        "source": {"revision": meta.get("revision"), "commit": meta.get("commit") or None},
        "machine": {"cpus": meta_num("cpus"), "cpu_model": meta.get("cpu_model"),
                    "kernel": meta.get("kernel"), "memory_mib": meta_num("memory_mib")},
        "settings": {k[len("setting_"):]: meta_num(k) if meta_num(k) is not None else
                     (meta[k] or None) for k in sorted(meta) if k.startswith("setting_")},
        "ceiling_per_s": ceiling,
        "phases": phases,
        "server": {"peak_rss_kib": rss_kib,
                   "peak_rss_mib": rss_kib / 1024 if rss_kib is not None else None},
        "snapshots": snapshots,
    }
    for name, f, keys in EXTERNAL:
        res[name] = external(name, load_json(os.path.join(a.dir, f)), keys, steps.get(name, {}))
    res["pg_baseline"]["twinlane_orders_per_s"] = phases["orders"]["ops_per_s"]
    res["pg_baseline"]["twinlane_over_pg"] = ratio(phases["orders"]["ops_per_s"],
                                                   res["pg_baseline"].get("pg_inserts_per_s"))
    res["failed_steps"] = [n for n, s in steps.items() if s["status"] == "failed"]
    res["status"] = "failed" if res["failed_steps"] else "ok"

    print_table(res)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    tmp = a.out + ".tmp"
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(finite(res), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, a.out)
    except (OSError, ValueError) as e:
        print(f"bench/results.py: cannot write {a.out}: {e}", file=sys.stderr)
        return 1
    print(f"results: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
