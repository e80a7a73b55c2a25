"""Reconciliation: every read model against a fresh fold of the log, changing nothing.

A row corrupted directly in SQLite is reported by key; an event parked in a DLQ shows as drift
until it is retried; a clean store reports clean (also from the CLI, by exit status).
"""

import sqlite3
import subprocess

from conftest import BIN, uid
from test_dlq import wait_dlq


def reconcile(srv):
    st, _, b = srv.post("/admin/reconcile")
    assert st == 200, (st, b)
    return b


def by_table(report):
    return {(p["name"], t["table"]): t for p in report["projections"] for t in p["tables"]}


def populate(srv, n=5):
    p = srv.create_product(uid("prod"), name="Reconciled Kettle", price=3, stock=3)
    orders = [srv.place_order([(p["productId"], 1, 3)]) for _ in range(n)]
    srv.command(orders[0]["orderId"], "cancel")
    return p, orders


def test_clean_store_reconciles_clean(make_server):
    srv = make_server()
    populate(srv)
    srv.idle_head()
    r = reconcile(srv)
    assert r["clean"] is True and r["mismatches"] == 0, r
    assert {p["name"] for p in r["projections"]} == {"orders", "products", "daily_sales"}
    t = by_table(r)
    assert t[("orders", "rm_orders")]["rows"] == 5 == t[("orders", "rm_orders")]["freshRows"], t
    assert t[("products", "rm_products")]["rows"] == 1
    cli = subprocess.run([BIN, "reconcile", "--server", "127.0.0.1:%d" % srv.port],
                         capture_output=True, timeout=60)
    assert cli.returncode == 0 and b'"clean":true' in cli.stdout, cli
    # No scratch files are left behind.
    import os
    assert not [f for f in os.listdir(srv.data_dir) if "reconcile" in f]


def test_corrupted_rows_are_reported_and_left_alone(make_server):
    srv = make_server()
    p, orders = populate(srv)
    srv.idle_head()
    victim = orders[2]["orderId"]
    for proj, sql, arg in (
            ("orders", "UPDATE rm_orders SET status = 'SHIPPED' WHERE order_id = ?", victim),
            ("products", "UPDATE rm_products SET sales_count = sales_count + 7"
                         " WHERE product_id = ?", p["productId"]),
            ("daily_sales", "DELETE FROM rm_sales_orders WHERE order_id = ?",
             orders[3]["orderId"])):
        db = sqlite3.connect(srv.read_db(proj), timeout=10)
        assert db.execute(sql, (arg,)).rowcount == 1
        db.commit()
        db.close()
    r = reconcile(srv)
    assert r["clean"] is False and r["mismatches"] == 3, r
    t = by_table(r)
    assert t[("orders", "rm_orders")]["keys"] == [victim], t
    assert t[("products", "rm_products")]["keys"] == [p["productId"]], t
    sales = t[("daily_sales", "rm_sales_orders")]
    assert sales["keys"] == [orders[3]["orderId"]] and sales["rows"] + 1 == sales["freshRows"]
    assert t[("orders", "rm_orders_fts")]["mismatches"] == 0
    # Reconciliation changed nothing: the corruption is still there.
    st, _, v = srv.get("/orders/" + victim)
    assert st == 200 and v["status"] == "SHIPPED", v
    assert reconcile(srv)["mismatches"] == 3
    cli = subprocess.run([BIN, "reconcile", "--server", "127.0.0.1:%d" % srv.port],
                         capture_output=True, timeout=60)
    assert cli.returncode == 3 and b'"clean":false' in cli.stdout, cli


def test_parked_event_is_drift_until_retried(make_server):
    srv = make_server(["--enable-failpoints", "--retry-base-ms", "5", "--retry-cap-ms", "10",
                       "--retry-attempts", "2"])
    p = srv.create_product(uid("prod"), price=3, stock=3)
    srv.idle_head()
    st, _, b = srv.req("PUT", "/admin/failpoints/projection.daily_sales.apply",
                       {"action": "error*2"})
    assert st == 200, b
    o = srv.place_order([(p["productId"], 1, 3)])
    srv.idle_head()
    # idle_head waits for the process managers only: the projection parks the event after its
    # retries, a few milliseconds later.
    items = wait_dlq(srv, 1)
    r = reconcile(srv)
    t = by_table(r)
    assert not r["clean"] and t[("daily_sales", "rm_sales_orders")]["keys"] == [o["orderId"]], r
    st, _, res = srv.post("/admin/dlq/%d/retry" % items[0]["id"])
    assert st == 200 and res["applied"] == 1, res
    assert reconcile(srv)["clean"] is True
