"""Retries and the dead-letter queue of the projections.

A projection failing on an event retries it with backoff; after --retry-attempts failures the
event is parked in that projection's DLQ and the projection goes on. Other projections never
stall. Parked events can be listed, retried (one or all) and dropped; a retried event does not
overwrite newer state. Faults are injected through fail points.
"""

import datetime as dt
import time

from conftest import assert_problem, error_fields, uid

FAST = ["--enable-failpoints", "--retry-base-ms", "5", "--retry-cap-ms", "20",
        "--retry-attempts", "3"]


def arm(srv, point, action):
    st, _, b = srv.req("PUT", "/admin/failpoints/" + point, {"action": action})
    assert st == 200, (st, b)


def disarm(srv, point):
    st, _, b = srv.req("DELETE", "/admin/failpoints/" + point)
    assert st == 204, (st, b)


def dlq(srv, **params):
    st, _, b = srv.get("/admin/dlq", params or None)
    assert st == 200, (st, b)
    return b


def wait_dlq(srv, n, projection=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        params = {"projection": projection} if projection else {}
        items = dlq(srv, **params)
        if len(items) >= n:
            return items
        assert time.monotonic() < deadline, "DLQ has %d entries, want %d" % (len(items), n)
        time.sleep(0.01)


def projection(srv, name):
    st, _, b = srv.get("/admin/projections")
    assert st == 200, b
    return {p["name"]: p for p in b}[name]


def today_of(order):
    return order["order"]["createdAt"][:10]


def sales(srv, day, min_position, wait_ms=5000):
    st, _, b = srv.query("/sales/daily", min_position, {"from": day, "to": day}, wait_ms=wait_ms)
    return st, b


def test_poison_event_is_parked_and_retried(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=7)
    srv.projected_head()
    arm(srv, "projection.daily_sales.apply", "error*3")  # the next event fails 3 times
    o1 = srv.place_order([(p["productId"], 1, 7)])
    [entry] = wait_dlq(srv, 1)
    assert entry["projection"] == "daily_sales" and entry["position"] == o1["position"], entry
    assert entry["type"] == "OrderPlaced" and entry["stream"] == "order-" + o1["orderId"], entry
    assert entry["attempts"] == 3 and "fail point" in entry["error"], entry
    assert entry["firstFailedAt"] <= entry["lastFailedAt"], entry
    # The projection went on: a later order is counted, the parked one is not.
    o2 = srv.place_order([(p["productId"], 2, 7)])
    day = today_of(o2)
    st, b = sales(srv, day, o2["position"])
    assert st == 200 and b["days"][0]["orderCount"] == 1, b
    # Visible in /admin/projections, /metrics and /ready.
    pr = projection(srv, "daily_sales")
    assert pr["dlqDepth"] == 1 and pr["status"] == "running" and pr["retries"] >= 3, pr
    m = srv.metrics()
    depth = {lbl: v for lbl, v in m["tl_projection_dlq_depth"]}
    assert depth['{projection="daily_sales"}'] == 1 and depth['{projection="orders"}'] == 0, depth
    st, _, ready = srv.get("/ready")
    assert st == 200 and ready["dlq"] == {"daily_sales": 1}, ready
    # Retry: applied once, removed from the queue; the count is now right.
    st, _, r = srv.post("/admin/dlq/%d/retry" % entry["id"])
    assert st == 200 and r == {"found": 1, "applied": 1, "failed": 0}, r
    assert dlq(srv) == []
    st, b = sales(srv, day, o2["position"])
    assert b["days"][0]["orderCount"] == 2 and b["days"][0]["revenue"] == 21, b
    assert projection(srv, "daily_sales")["dlqDepth"] == 0
    st, _, r = srv.post("/admin/dlq/%d/retry" % entry["id"])  # gone
    assert_problem(st, _, r, 404, "DLQ_ENTRY_NOT_FOUND")


def test_a_failing_projection_does_not_stall_the_others(make_server):
    srv = make_server(["--enable-failpoints", "--retry-base-ms", "50", "--retry-cap-ms", "200",
                       "--retry-attempts", "1000"])
    p = srv.create_product(stock=10, price=3)
    srv.projected_head()
    arm(srv, "projection.daily_sales.apply", "error")
    o = srv.place_order([(p["productId"], 1, 3)])
    t0 = time.monotonic()
    st, _, v = srv.query("/orders/" + o["orderId"], o["position"], wait_ms=3000)
    assert st == 200 and v["orderId"] == o["orderId"], v
    assert v["meta"]["position"] >= o["position"], v
    st, _, pv = srv.query("/products/" + p["productId"], o["position"], wait_ms=3000)
    assert st == 200 and pv["salesCount"] == 1, pv
    assert time.monotonic() - t0 < 3.0
    day = today_of(o)
    st, b = sales(srv, day, o["position"], wait_ms=200)
    assert_problem(st, {"content-type": "application/problem+json"}, b, 503, "STALE_READ_MODEL")
    pr = projection(srv, "daily_sales")
    assert pr["status"] == "retrying" and pr["failedAttempts"] >= 1, pr
    assert pr["position"] < o["position"] and pr["dlqDepth"] == 0, pr
    assert projection(srv, "orders")["status"] == "running"
    disarm(srv, "projection.daily_sales.apply")  # the fault clears: it catches up by itself
    st, b = sales(srv, day, o["position"])
    assert st == 200 and b["days"][0]["orderCount"] == 1, b
    assert projection(srv, "daily_sales")["status"] == "running"
    assert dlq(srv) == []


def test_late_retry_does_not_overwrite_newer_state(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=4)
    o = srv.place_reserved_order([(p["productId"], 1, 4)])
    srv.projected_head()
    arm(srv, "projection.orders.apply", "error*3")
    st, _, paid = srv.command(o["orderId"], "confirm-payment")
    assert st == 200, paid
    [entry] = wait_dlq(srv, 1, "orders")
    assert entry["type"] == "PaymentConfirmed" and entry["position"] == paid["position"], entry
    st, _, shipped = srv.command(o["orderId"], "ship")
    assert st == 200, shipped
    st, _, v = srv.query("/orders/" + o["orderId"], shipped["position"])
    assert st == 200 and v["status"] == "SHIPPED" and v["version"] == 4, v
    st, _, r = srv.post("/admin/dlq/retry-all")
    assert st == 200 and r == {"found": 1, "applied": 1, "failed": 0}, r
    st, _, v = srv.query("/orders/" + o["orderId"], shipped["position"])
    assert v["status"] == "SHIPPED" and v["version"] == 4, v  # not back to PAID
    assert dlq(srv) == []


def test_retry_all_drop_and_failed_retries(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=2)
    srv.projected_head()
    arm(srv, "projection.products.apply", "error*6")  # two events parked
    srv.place_order([(p["productId"], 1, 2)])
    items = wait_dlq(srv, 2, "products")
    assert [i["projection"] for i in items] == ["products", "products"], items
    assert items[0]["id"] < items[1]["id"] and items[0]["position"] < items[1]["position"]
    assert dlq(srv, projection="orders") == []
    assert len(dlq(srv, limit=1)) == 1
    # A retry that fails again keeps the entry, counting the attempt.
    arm(srv, "projection.products.apply", "error")
    st, _, r = srv.post("/admin/dlq/%d/retry" % items[0]["id"])
    assert st == 200 and r == {"found": 1, "applied": 0, "failed": 1}, r
    again = {i["id"]: i for i in dlq(srv)}[items[0]["id"]]
    assert again["attempts"] == 4 and again["lastFailedAt"] >= items[0]["lastFailedAt"], again
    disarm(srv, "projection.products.apply")
    st, _, b = srv.req("DELETE", "/admin/dlq/%d" % items[1]["id"])
    assert st == 204, b
    st, h, b = srv.req("DELETE", "/admin/dlq/%d" % items[1]["id"])
    assert_problem(st, h, b, 404, "DLQ_ENTRY_NOT_FOUND")
    st, _, r = srv.post("/admin/dlq/retry-all")
    assert st == 200 and r == {"found": 1, "applied": 1, "failed": 0}, r
    assert dlq(srv) == [] and projection(srv, "products")["dlqDepth"] == 0
    st, _, r = srv.post("/admin/dlq/retry-all")
    assert st == 200 and r == {"found": 0, "applied": 0, "failed": 0}, r


def test_dlq_survives_restart(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=2)
    srv.projected_head()
    arm(srv, "projection.daily_sales.apply", "error*3")
    o = srv.place_order([(p["productId"], 1, 2)])
    [entry] = wait_dlq(srv, 1)
    srv.restart(hard=True)
    assert dlq(srv) == [entry]
    assert projection(srv, "daily_sales")["dlqDepth"] == 1
    st, _, r = srv.post("/admin/dlq/%d/retry" % entry["id"])
    assert st == 200 and r["applied"] == 1, r
    st, b = sales(srv, today_of(o), srv.idle_head())
    assert b["days"][0]["orderCount"] == 1, b


def test_dlq_admin_validation(shared):
    for path in ("/admin/dlq/abc/retry", "/admin/dlq/0/retry", "/admin/dlq/999999/retry"):
        st, h, b = shared.post(path)
        assert_problem(st, h, b, 404, "DLQ_ENTRY_NOT_FOUND")
    st, h, b = shared.req("DELETE", "/admin/dlq/999999")
    assert_problem(st, h, b, 404, "DLQ_ENTRY_NOT_FOUND")
    st, h, b = shared.get("/admin/dlq", {"projection": "nope"})
    assert "projection" in error_fields(assert_problem(st, h, b, 400, "VALIDATION_FAILED"))
    st, h, b = shared.get("/admin/dlq", {"limit": 0})
    assert "limit" in error_fields(assert_problem(st, h, b, 400, "VALIDATION_FAILED"))
    st, h, b = shared.get("/admin/dlq")
    assert st == 200 and b == [], b


def test_bad_retry_options_refuse_to_start(tmp_path):
    import subprocess
    from conftest import BIN
    for args in (["--retry-attempts", "0"], ["--retry-base-ms", "100", "--retry-cap-ms", "10"]):
        r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "d"), "--listen",
                            "127.0.0.1:0"] + args, capture_output=True, timeout=10)
        assert r.returncode == 2 and b"--retry" in r.stderr, (args, r)


def cli(srv, *args):
    import subprocess
    from conftest import BIN
    return subprocess.run([BIN, "dlq", "--server", "127.0.0.1:%d" % srv.port] + list(args),
                          capture_output=True, timeout=30)


def test_cli_lists_retries_and_drops(make_server):
    import json
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=2)
    srv.projected_head()
    arm(srv, "projection.products.apply", "error*6")
    srv.place_order([(p["productId"], 1, 2)])
    items = wait_dlq(srv, 2, "products")
    r = cli(srv, "list")
    assert r.returncode == 0, r
    assert json.loads(r.stdout) == items
    r = cli(srv, "list", "--projection", "orders")
    assert r.returncode == 0 and json.loads(r.stdout) == [], r
    r = cli(srv, "drop", str(items[0]["id"]))
    assert r.returncode == 0, r
    r = cli(srv, "drop", str(items[0]["id"]))  # gone: the server's 404 on stderr, status 1
    assert r.returncode == 1 and b"DLQ_ENTRY_NOT_FOUND" in r.stderr, r
    r = cli(srv, "retry", str(items[1]["id"]))
    assert r.returncode == 0 and json.loads(r.stdout)["applied"] == 1, r
    r = cli(srv, "retry-all")
    assert r.returncode == 0 and json.loads(r.stdout) == {"found": 0, "applied": 0, "failed": 0}
    for bad in (["retry"], ["retry", "x1"], ["frobnicate"], ["list", "--projection", "Bad!"]):
        r = cli(srv, *bad)
        assert r.returncode == 2 and b"usage" in r.stderr, (bad, r)
    import subprocess
    from conftest import BIN, free_port
    r = subprocess.run([BIN, "dlq", "--server", "127.0.0.1:%d" % free_port(), "list"],
                       capture_output=True, timeout=30)
    assert r.returncode == 2 and b"cannot reach" in r.stderr, r


def test_failing_saga_step_is_parked_and_the_saga_goes_on(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=2)
    srv.idle_head()
    arm(srv, "saga.order_fulfilment.step", "error*3")  # the next step fails 3 times: parked
    stuck = srv.place_order([(p["productId"], 1, 2)])
    deadline = time.monotonic() + 10
    while True:
        st, _, items = srv.get("/admin/process-managers/dlq")
        assert st == 200, items
        if items:
            break
        assert time.monotonic() < deadline, "the step was never parked"
        time.sleep(0.01)
    [entry] = items
    assert entry["processManager"] == "order_fulfilment" and entry["type"] == "OrderPlaced", entry
    assert entry["position"] == stuck["position"] and entry["attempts"] == 3, entry
    assert "fail point" in entry["error"], entry
    # The saga went on: later orders settle; the parked one stays PENDING, nothing reserved.
    later = srv.place_order([(p["productId"], 2, 2)])
    assert srv.wait_settled(later["orderId"])["status"] == "RESERVED"
    st, _, s = srv.get("/orders/%s/state" % stuck["orderId"])
    assert s["status"] == "PENDING", s
    head = srv.idle_head()
    st, _, v = srv.query("/products/" + p["productId"], head)
    assert v["available"] == 8, v
    m = srv.metrics()
    assert [v for _, v in m["tl_process_manager_dlq_depth"]] == [1], m["tl_process_manager_dlq_depth"]
    st, _, ready = srv.get("/ready")
    assert ready["dlq"] == {"order_fulfilment": 1}, ready
    # Durable: still parked after a restart, and not retried by the restart.
    srv.restart(hard=True)
    st, _, again = srv.get("/admin/process-managers/dlq")
    assert again == items, again
    srv.idle_head()
    st, _, s = srv.get("/orders/%s/state" % stuck["orderId"])
    assert s["status"] == "PENDING", s


def test_parked_saga_steps_can_be_retried_and_dropped(make_server):
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=2)
    srv.idle_head()
    stuck = []
    for _ in range(2):
        arm(srv, "saga.order_fulfilment.step", "error*3")
        stuck.append(srv.place_order([(p["productId"], 1, 2)]))
        deadline = time.monotonic() + 10
        while len(srv.get("/admin/process-managers/dlq")[2]) < len(stuck):
            assert time.monotonic() < deadline, "the step was never parked"
            time.sleep(0.01)
    items = srv.get("/admin/process-managers/dlq")[2]
    assert [i["position"] for i in items] == [o["position"] for o in stuck], items
    # A retry that fails again keeps the entry and counts the attempt.
    arm(srv, "saga.order_fulfilment.step", "error*1")
    st, _, r = srv.post("/admin/process-managers/dlq/%d/retry" % items[0]["id"])
    assert st == 200 and r == {"found": 1, "applied": 0, "failed": 1}, r
    again = srv.get("/admin/process-managers/dlq")[2]
    assert again[0]["attempts"] == 4, again
    # Once the cause is gone the step runs: the order is reserved, exactly once.
    st, _, r = srv.post("/admin/process-managers/dlq/%d/retry" % items[0]["id"])
    assert st == 200 and r == {"found": 1, "applied": 1, "failed": 0}, r
    assert srv.wait_settled(stuck[0]["orderId"])["status"] == "RESERVED"
    head = srv.idle_head()
    reserved = [e for e in srv.log_events() if e["type"] == "StockReserved"
                and e["data"]["orderId"] == stuck[0]["orderId"]]
    assert len(reserved) == 1, reserved
    st, _, r = srv.post("/admin/process-managers/dlq/%d/retry" % items[0]["id"])
    assert_problem(st, _, r, 404, "DLQ_ENTRY_NOT_FOUND")
    # Dropping removes the other one without running it.
    st, _, b = srv.req("DELETE", "/admin/process-managers/dlq/%d" % items[1]["id"])
    assert st == 204, b
    assert srv.get("/admin/process-managers/dlq")[2] == []
    assert srv.log_head() == head
    st, _, s = srv.get("/orders/%s/state" % stuck[1]["orderId"])
    assert s["status"] == "PENDING", s
    m = srv.metrics()
    assert [v for _, v in m["tl_process_manager_dlq_depth"]] == [0]
    st, h, b = srv.req("DELETE", "/admin/process-managers/dlq/%d" % items[1]["id"])
    assert_problem(st, h, b, 404, "DLQ_ENTRY_NOT_FOUND")


def test_a_retried_dead_letter_replaces_the_cached_order_view(make_server):
    """The order view is served from memory; a dead letter of the orders projection applied by
    a retry changes the order's row without moving any position, so the retry itself must drop
    the cached view."""
    srv = make_server(FAST)
    p = srv.create_product(stock=10, price=7)
    o = srv.place_reserved_order([(p["productId"], 1, 7)])
    # The projector must have applied everything before the fail point is armed (idle_head
    # waits for the saga only): else an earlier event is the one parked.
    st, _, v = srv.query("/orders/" + o["orderId"], srv.idle_head())
    assert st == 200 and v["status"] == "RESERVED", v
    arm(srv, "projection.orders.apply", "error*3")  # the payment's event is parked
    st, _, paid = srv.command(o["orderId"], "confirm-payment")
    assert st == 200, paid
    [entry] = wait_dlq(srv, 1, "orders")
    assert entry["position"] == paid["position"], entry
    for _ in range(2):  # the second read is a hit of the cached, pre-payment view
        st, _, v = srv.query("/orders/" + o["orderId"], paid["position"])
        assert st == 200 and v["status"] == "RESERVED", v
    st, _, r = srv.post("/admin/dlq/%d/retry" % entry["id"])
    assert st == 200 and r["applied"] == 1, r
    st, _, v = srv.query("/orders/" + o["orderId"], paid["position"])
    assert st == 200 and v["status"] == "PAID", v
