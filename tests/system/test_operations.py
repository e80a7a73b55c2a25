"""Operations: restart persistence, health, readiness, metrics, command line."""

import re
import subprocess

import pytest

from conftest import BIN, D, uid


def test_data_survives_sigterm_restart(server):
    p = server.create_product(uid("prod"), name="Durable Desk", price=120.5, stock=4)
    o = server.place_reserved_order([(p["productId"], 2, 120.5)])
    st, _, paid = server.command(o["orderId"], "confirm-payment")
    assert st == 200, paid
    server.idle_head()
    before = server.log_events()
    assert server.stop() == 0, "SIGTERM should exit 0; stderr:\n" + server.stderr_tail()
    server.start()
    # The saga resumes from its checkpoint: nothing is re-reserved or re-settled.
    head = server.idle_head()
    after = server.log_events()
    assert after == before
    assert head == after[-1]["position"]
    st, _, v = server.query("/orders/" + o["orderId"], head)
    assert st == 200 and v["status"] == "PAID" and v["version"] == 3 and v["total"] == D("241"), v
    st, _, pv = server.query("/products/" + p["productId"], head)
    assert st == 200 and pv["salesCount"] == 2 and pv["stock"] == 4 and pv["available"] == 2, pv
    # The write model is rebuilt: rules and positions continue from the log.
    st, _, b = server.command(o["orderId"], "confirm-payment")
    assert st == 409 and b["code"] == "ALREADY_PAID"
    st, _, b = server.post("/products", {"productId": p["productId"], "name": "x", "category": "c",
                                         "price": 1, "stock": 1})
    assert st == 409 and b["code"] == "PRODUCT_EXISTS"
    st, _, s = server.command(o["orderId"], "ship")
    assert st == 200 and s["version"] == 4 and s["position"] == head + 1, s
    assert paid["position"] == head
    # Shipping commits the reservation: the units leave the stock.
    head = server.idle_head()
    st, _, pv = server.query("/products/" + p["productId"], head)
    assert st == 200 and pv["stock"] == 2 and pv["available"] == 2 and pv["salesCount"] == 2, pv


def test_restart_on_same_port(server):
    p = server.create_product(uid("prod"))
    port = server.port
    server.restart(same_port=True)
    assert server.port == port
    st, _, v = server.query("/products/" + p["productId"], p["position"])
    assert st == 200 and v["productId"] == p["productId"]


def test_health_and_ready(server):
    st, h, b = server.get("/health")
    assert st == 200 and b == {"status": "ok"}, b
    assert h.get("content-type", "").startswith("application/json")
    p = server.create_product(uid("prod"))
    server.query("/products/" + p["productId"], p["position"])
    st, _, b = server.get("/ready")
    assert st == 200 and b.get("status") == "ready", b


METRICS = {
    "tl_commands_total": "counter",
    "tl_command_duration_seconds": "histogram",
    "tl_queries_total": "counter",
    "tl_query_duration_seconds": "histogram",
    "tl_log_position": "gauge",
    "tl_events_appended_total": "counter",
    "tl_fsyncs_total": "counter",
    "tl_group_commit_batch_size": "histogram",
    "tl_projection_position": "gauge",
    "tl_projection_lag_events": "gauge",
    "tl_projection_lag_seconds": "gauge",
    "tl_projection_dlq_depth": "gauge",
    "tl_projection_visible_lag_seconds": "histogram",
}


def _samples(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, "not a Prometheus sample line: %r" % line
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def test_metrics_exposes_the_documented_names(server):
    p = server.create_product(uid("prod"), price=2)
    o = server.place_reserved_order([(p["productId"], 1, 2)])
    assert server.command(o["orderId"], "confirm-payment")[0] == 200
    server.post("/products", {"productId": p["productId"], "name": "x", "category": "c", "price": 1, "stock": 1})
    head = server.idle_head()
    server.query("/orders/" + o["orderId"], head)
    st, h, text = server.get("/metrics")
    assert st == 200
    assert h.get("content-type", "").startswith("text/plain"), h
    assert isinstance(text, str)
    samples = _samples(text)
    for name, kind in METRICS.items():
        assert re.search(r"^# TYPE %s %s$" % (name, kind), text, re.M), "no TYPE line for %s (%s)" % (name, kind)
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                assert name + suffix in samples, name + suffix
            assert any('le="+Inf"' in lbl for lbl, _ in samples[name + "_bucket"]), name
        else:
            assert name in samples, name
    assert samples["tl_log_position"][0][1] == head
    assert sum(v for _, v in samples["tl_events_appended_total"]) >= head
    assert sum(v for _, v in samples["tl_fsyncs_total"]) >= 1
    labels = " ".join(lbl for lbl, _ in samples["tl_commands_total"])
    assert "command=" in labels and "outcome=" in labels
    assert len({lbl for lbl, _ in samples["tl_commands_total"]}) >= 2  # at least a success and a refusal
    assert "projection=" in " ".join(lbl for lbl, _ in samples["tl_projection_position"])
    qlabels = " ".join(lbl for lbl, _ in samples["tl_queries_total"])
    assert "query=" in qlabels and "outcome=" in qlabels


def test_cli_help_and_version():
    r = subprocess.run([BIN, "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0, r
    assert b"serve" in (r.stdout + r.stderr)
    r = subprocess.run([BIN, "version"], capture_output=True, timeout=10)
    assert r.returncode == 0 and r.stdout.strip(), r


def test_failpoints_are_404_without_the_flag(server):
    st, h, b = server.req("PUT", "/admin/failpoints/log.fsync", body={"action": "error"})
    assert st == 404, (st, b)


def test_sigint_stops_cleanly_and_keeps_data(server):
    import signal
    p = server.create_product(uid("prod"))
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(timeout=10)
    server.proc = None
    assert code == 0, "exit code %r after SIGINT" % code
    server.start()
    st, _, v = server.query("/products/" + p["productId"], p["position"])
    assert st == 200 and v["productId"] == p["productId"]


def test_a_second_server_on_the_same_data_dir_refuses_to_start(server):
    """Two processes on one data directory would each act as the single writer: the second one
    must refuse to start, say why, and leave the first one serving."""
    p = server.create_product(uid("prod"))
    proc = subprocess.run([BIN, "serve", "--data", server.data_dir, "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0
    assert "in use by another twinlane" in proc.stderr, proc.stderr
    st, _, v = server.get("/products/" + p["productId"], params={"minPosition": p["position"]})
    assert st == 200 and v["productId"] == p["productId"]
