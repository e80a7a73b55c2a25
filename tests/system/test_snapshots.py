"""Snapshots: the writer loads an aggregate from its latest snapshot and the events after it.

With `--snapshot-every 10` a product's state is snapshotted every 10 events of its stream; with
`--order-cache 1` the writer reloads orders all the time, and every restart reloads products.
Whatever the writer decides after such a load must be what a full fold of the stream would
decide: stock never oversold, releases give back exactly what an order held, versions continue
without gaps, If-Match sees the real version.  The product stream's fold (test_inventory's
`fold_product`) is the oracle: it checks every recorded decision against the full fold at that
point.  A snapshot of another schema version, an unreadable one, or one the log does not match is
ignored (full fold) and replaced; a failing snapshot write never affects a command.

The snapshots table of events.db is read and altered with python's sqlite3 while the server is
stopped: (stream PRIMARY KEY, version, schema_version, state).
"""

import json
import os
import random
import signal
import sqlite3
import subprocess
import threading
import uuid

import pytest

from conftest import ADDRESS, BIN, uid
from test_inventory import fold_product, place_concurrently, settle_all, stream_events

SNAP_ARGS = ["--snapshot-every", "10", "--order-cache", "1"]


# ---------------------------------------------------------------------- helpers
def order_body(pid, qty, price=4.00):
    return {"customerId": str(uuid.uuid4()),
            "items": [{"productId": pid, "quantity": qty, "price": price}],
            "shippingAddress": dict(ADDRESS)}


def metric(srv, name, labels=""):
    return srv.metric(name, labels)


def snapshot_rows(srv):
    """{stream: (version, schema_version, state text)} read from a stopped server's events.db."""
    assert not srv.alive(), "read the snapshots table only while the server is stopped"
    db = sqlite3.connect(os.path.join(srv.data_dir, "events.db"))
    try:
        rows = db.execute("SELECT stream, version, schema_version, state FROM snapshots").fetchall()
    finally:
        db.close()
    return {s: (v, sv, st) for s, v, sv, st in rows}


def alter_snapshots(srv, statements):
    """Runs SQL statements on a stopped server's events.db."""
    assert not srv.alive()
    db = sqlite3.connect(os.path.join(srv.data_dir, "events.db"))
    try:
        for sql, args in statements:
            db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def check_product(srv, pid, orders):
    """Folds the product stream (every decision checked against the full fold) and checks each
    order's units: held while RESERVED or PAID, committed once SHIPPED, held by nobody once
    CANCELLED or REJECTED.  Returns the fold."""
    srv.idle_head()
    events = stream_events(srv, "product-" + pid)
    f = fold_product(events)
    for oid, status in orders.items():
        if status in ("RESERVED", "PAID"):
            assert oid in f["held"], (oid, status)
        elif status == "SHIPPED":
            assert oid in f["committed"] and oid not in f["held"], (oid, status)
        else:
            assert status in ("CANCELLED", "REJECTED"), (oid, status)
            assert oid not in f["held"], (oid, status)
    f["version"] = len(events)
    return f


def restock_checked(srv, pid, orders, quantity=3):
    """Restocks `pid` and checks the writer's answer (its cached state) against the full fold."""
    f = check_product(srv, pid, orders)
    st, _, b = srv.post("/products/%s/restock" % pid, {"quantity": quantity})
    assert st == 200, (st, b)
    assert b["version"] == f["version"] + 1, (b, f["version"])
    assert b["stock"] == f["stock"] + quantity, (b, f["stock"])
    return b


def drive(srv, pid, orders, rng, n, max_qty=3):
    """Places n orders for pid from 20 client threads, lets the saga settle them, then moves the
    reserved ones on: cancel, pay and ship, pay only, or leave them.  Updates `orders`
    (orderId -> expected status)."""
    bodies = [order_body(pid, rng.randint(1, max_qty)) for _ in range(n)]
    results = place_concurrently(srv.port, bodies, threads=20)
    placed = [b["orderId"] for st, b in results if st == 201]
    assert len(placed) == n, [r for r in results if r[0] != 201][:3]
    states = settle_all(srv, placed)
    for oid in placed:
        status = states[oid]["status"]
        assert status in ("RESERVED", "REJECTED"), states[oid]
        if status == "RESERVED":
            version = states[oid]["version"]
            assert version == 2, states[oid]
            what = rng.choice(["cancel", "ship", "ship", "pay", "keep"])
            if what == "cancel":
                st, _, b = srv.command(oid, "cancel", headers={"If-Match": '"%d"' % version})
                assert st == 200 and b["version"] == 3, (st, b)
                status = "CANCELLED"
            elif what in ("ship", "pay"):
                st, _, b = srv.command(oid, "confirm-payment", headers={"If-Match": '"2"'})
                assert st == 200 and b["version"] == 3 and b["status"] == "PAID", (st, b)
                status = "PAID"
                if what == "ship":
                    st, _, b = srv.command(oid, "ship")
                    assert st == 200 and b["version"] == 4 and b["status"] == "SHIPPED", (st, b)
                    status = "SHIPPED"
        orders[oid] = status


def check_orders(srv, orders):
    """Every order's state (a full fold of its stream by the log reader) has the expected status,
    and the writer (which reloads it: --order-cache 1) refuses what that status refuses."""
    for oid, status in orders.items():
        st, _, s = srv.get("/orders/%s/state" % oid)
        assert st == 200 and s["status"] == status, (oid, status, s)
    probe = {"SHIPPED": ("cancel", 409, "ALREADY_SHIPPED"), "PAID": ("confirm-payment", 409, "ALREADY_PAID"),
             "CANCELLED": ("ship", 409, "ORDER_CLOSED"), "REJECTED": ("confirm-payment", 409, "ORDER_CLOSED"),
             "RESERVED": ("ship", 409, "NOT_PAID")}
    for oid, status in list(orders.items())[:12]:
        action, code, problem = probe[status]
        st, _, b = srv.command(oid, action)
        assert (st, b.get("code")) == (code, problem), (oid, status, st, b)


def compare_snapshot(row, events):
    """A stored product snapshot is schema 1, at a version the log has, and holds exactly the
    full fold of the stream up to that version (stock, reserved units per order)."""
    version, schema, text = row
    assert schema == 1, row
    assert 1 <= version <= len(events), (version, len(events))
    state = json.loads(text)
    f = fold_product(events[:version])
    assert state["version"] == version, state
    assert state["stock"] == f["stock"], (state, f)
    assert state["reserved"] == sum(f["held"].values()), (state, f)
    assert state["reservations"] == f["held"], (state, f)
    return state


# ---------------------------------------------------------------------- 1. snapshot + tail
def test_decisions_after_snapshot_loads_match_the_full_fold(make_server):
    rng = random.Random(4711)
    srv = make_server(SNAP_ARGS)
    pid = srv.create_product(uid("snap"), price=4.00, stock=40)["productId"]
    orders = {}
    # Many reservations, releases (cancel) and commits (ship): ~100 events on the product.
    for _ in range(2):
        drive(srv, pid, orders, rng, 40)
        restock_checked(srv, pid, orders, quantity=15)
    assert metric(srv, "tl_snapshots_written_total") >= 5
    check_orders(srv, orders)

    # A clean restart: the product comes back from its snapshot and a short tail.
    srv.restart()
    b = restock_checked(srv, pid, orders)
    assert metric(srv, "tl_aggregate_loads_total", '{from="snapshot"}') >= 1
    assert metric(srv, "tl_aggregate_load_events_total") < 10 + 12  # tails, never the stream
    assert b["version"] > 100
    check_orders(srv, orders)
    drive(srv, pid, orders, rng, 30)
    restock_checked(srv, pid, orders, quantity=10)

    # kill -9 in the middle of a burst of orders, twice: whatever was acknowledged is there
    # exactly once, and the state reloaded from snapshot + tail keeps deciding right.
    for cycle in range(2):
        victim = srv.proc.pid
        acked = {}
        lock = threading.Lock()

        def on_ack(i, body):
            with lock:
                acked[body["orderId"]] = i
                if len(acked) == 25:
                    os.kill(victim, signal.SIGKILL)

        bodies = [order_body(pid, rng.randint(1, 2)) for _ in range(80)]
        place_concurrently(srv.port, bodies, threads=20, on_ack=on_ack, stop_on_error=True)
        srv.kill9()
        srv.start()
        states = settle_all(srv, list(acked))
        for oid, s in states.items():
            assert s["status"] in ("RESERVED", "REJECTED"), s
            orders[oid] = s["status"]
        restock_checked(srv, pid, orders, quantity=5)
        drive(srv, pid, orders, rng, 20)
        check_orders(srv, orders)

    # The stock is now nearly gone: more demand than supply must reserve exactly what is left.
    f = check_product(srv, pid, orders)
    available = f["available"]
    bodies = [order_body(pid, 1) for _ in range(available + 15)]
    results = place_concurrently(srv.port, bodies, threads=20)
    placed = [b["orderId"] for st, b in results if st == 201]
    states = settle_all(srv, placed)
    got = sum(1 for s in states.values() if s["status"] == "RESERVED")
    assert got == available, (got, available)
    for oid, s in states.items():
        orders[oid] = s["status"]
    f = check_product(srv, pid, orders)
    assert f["available"] == 0, f
    st, _, view = srv.query("/products/" + pid, srv.idle_head())
    assert st == 200 and view["available"] == 0 and view["stock"] == f["stock"], view

    # What is stored is exactly the fold at its version.
    events = stream_events(srv, "product-" + pid)
    srv.stop()
    rows = snapshot_rows(srv)
    state = compare_snapshot(rows["product-" + pid], events)
    assert state["version"] > len(events) - 10 - 2, (state["version"], len(events))


def test_order_snapshots_keep_versions_and_if_match(make_server):
    """--snapshot-every 2: order streams (2 to 4 events) are snapshotted too."""
    srv = make_server(["--snapshot-every", "2", "--order-cache", "1"])
    pid = srv.create_product(uid("osnap"), price=4.00, stock=50)["productId"]
    oids = [srv.place_reserved_order([(pid, 1, 4.00)])["orderId"] for _ in range(6)]
    for oid in oids[:4]:
        st, _, b = srv.command(oid, "confirm-payment", headers={"If-Match": '"2"'})
        assert st == 200 and b["version"] == 3, b
    for oid in oids[:2]:
        st, _, b = srv.command(oid, "ship")
        assert st == 200 and b["version"] == 4, b
    srv.idle_head()
    srv.stop()
    rows = snapshot_rows(srv)
    for oid, version in zip(oids, [4, 4, 2, 2, 2, 2]):
        v, schema, text = rows["order-" + oid]
        state = json.loads(text)
        assert (v, schema, state["version"]) == (version, 1, version), (oid, rows["order-" + oid])
        assert state["orderId"] == oid and state["items"][0]["productId"] == pid, state
    srv.start()
    # Loaded from snapshots (+ tails): the versions continue and If-Match sees them.
    st, _, b = srv.command(oids[2], "ship", headers={"If-Match": '"2"'})
    assert st == 412 and b["code"] == "VERSION_MISMATCH" and b["currentVersion"] == 3, b
    st, _, b = srv.command(oids[2], "ship", headers={"If-Match": '"3"'})
    assert st == 200 and b["version"] == 4 and b["status"] == "SHIPPED", b
    st, _, b = srv.command(oids[0], "cancel")
    assert st == 409 and b["code"] == "ALREADY_SHIPPED", b
    st, _, b = srv.command(oids[4], "confirm-payment", headers={"If-Match": '"2"'})
    assert st == 200 and b["version"] == 3, b
    st, _, b = srv.command(oids[5], "cancel", headers={"If-Match": '"2"'})
    assert st == 200 and b["version"] == 3 and b["status"] == "CANCELLED", b
    st, _, b = srv.command(oids[5], "confirm-payment")
    assert st == 409 and b["code"] == "ORDER_CLOSED", b
    assert metric(srv, "tl_aggregate_loads_total", '{from="snapshot"}') >= 5
    assert metric(srv, "tl_snapshots_ignored_total") == 0
    hist = srv.get("/orders/%s/history" % oids[2])[2]
    assert [e["version"] for e in hist] == [1, 2, 3, 4], hist
    srv.idle_head()
    f = check_product(srv, pid, {oids[0]: "SHIPPED", oids[1]: "SHIPPED", oids[2]: "SHIPPED",
                                 oids[3]: "PAID", oids[4]: "PAID", oids[5]: "CANCELLED"})
    assert f["stock"] == 47 and f["available"] == 45, f


# ---------------------------------------------------------------------- 2. unusable snapshots
def test_unusable_snapshots_are_ignored_and_replaced(make_server):
    rng = random.Random(99)
    srv = make_server(SNAP_ARGS)
    pids = [srv.create_product(uid("bad%d" % i), price=4.00, stock=30)["productId"]
            for i in range(4)]
    orders = {pid: {} for pid in pids}
    for pid in pids:
        drive(srv, pid, orders[pid], rng, 14, max_qty=2)
        restock_checked(srv, pid, orders[pid])
    events = {pid: stream_events(srv, "product-" + pid) for pid in pids}
    srv.stop()
    rows = snapshot_rows(srv)
    for pid in pids:
        compare_snapshot(rows["product-" + pid], events[pid])
    other, garbage, ahead, fine = ["product-" + p for p in pids]
    # A snapshot of a future schema version; a torn one; one claiming a version the log does
    # not have (consistent with itself, so only the log can tell); the last one stays usable.
    ahead_state = json.loads(rows[ahead][2])
    ahead_state["version"] = 1000
    alter_snapshots(srv, [
        ("UPDATE snapshots SET schema_version = schema_version + 1 WHERE stream = ?", (other,)),
        ("UPDATE snapshots SET state = substr(state, 1, 40) WHERE stream = ?", (garbage,)),
        ("UPDATE snapshots SET version = 1000, state = ? WHERE stream = ?",
         (json.dumps(ahead_state), ahead)),
    ])
    srv.start()
    for pid in pids:
        restock_checked(srv, pid, orders[pid])
        drive(srv, pid, orders[pid], rng, 6, max_qty=2)
    assert metric(srv, "tl_snapshots_ignored_total") == 3
    assert metric(srv, "tl_aggregate_loads_total", '{from="log"}') >= 3
    assert metric(srv, "tl_aggregate_loads_total", '{from="snapshot"}') >= 1
    # Cancel every order still holding units: each release gives back exactly what it held.
    for pid in pids:
        for oid, status in list(orders[pid].items()):
            if status in ("RESERVED", "PAID"):
                st, _, b = srv.command(oid, "cancel")
                assert st == 200, b
                orders[pid][oid] = "CANCELLED"
        f = check_product(srv, pid, orders[pid])
        assert not f["held"] and f["available"] == f["stock"], f
    events = {pid: stream_events(srv, "product-" + pid) for pid in pids}
    srv.stop()
    # The unusable snapshots were replaced (right after the long fold) by current ones.
    rows = snapshot_rows(srv)
    for pid in pids:
        compare_snapshot(rows["product-" + pid], events[pid])
    srv.start()
    for pid in pids:
        restock_checked(srv, pid, orders[pid])
    assert metric(srv, "tl_snapshots_ignored_total") == 0
    assert metric(srv, "tl_aggregate_loads_total", '{from="snapshot"}') == 4


def test_failing_snapshot_writes_never_fail_a_command(make_server, monkeypatch):
    monkeypatch.setenv("TWINLANE_FAILPOINTS", "log.snapshot=error")
    srv = make_server(SNAP_ARGS)
    pid = srv.create_product(uid("fsnap"), price=4.00, stock=25)["productId"]
    orders = {}
    drive(srv, pid, orders, random.Random(5), 30, max_qty=2)
    restock_checked(srv, pid, orders)
    assert metric(srv, "tl_snapshot_write_errors_total") >= 2
    assert metric(srv, "tl_snapshots_written_total") == 0
    srv.stop()
    assert snapshot_rows(srv) == {}
    monkeypatch.delenv("TWINLANE_FAILPOINTS")
    srv.start()
    restock_checked(srv, pid, orders)
    assert metric(srv, "tl_aggregate_loads_total", '{from="log"}') >= 1
    assert metric(srv, "tl_snapshots_written_total") >= 1  # the long fold snapshotted at once


def test_snapshots_off(make_server):
    srv = make_server(["--snapshot-every", "0", "--order-cache", "1"])
    pid = srv.create_product(uid("nosnap"), price=4.00, stock=20)["productId"]
    orders = {}
    drive(srv, pid, orders, random.Random(8), 20, max_qty=2)
    srv.stop()
    assert snapshot_rows(srv) == {}
    srv.start()
    restock_checked(srv, pid, orders)
    assert metric(srv, "tl_aggregate_loads_total", '{from="snapshot"}') == 0


@pytest.mark.parametrize("value", ["-1", "ten", "", "10x", "2000000000"])
def test_bad_snapshot_every_refuses_to_start(tmp_path, value):
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--snapshot-every", value], capture_output=True, timeout=10)
    assert r.returncode == 2, r
    assert b"--snapshot-every" in r.stderr, r.stderr
