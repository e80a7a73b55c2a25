"""Fail points: fault injection through TWINLANE_FAILPOINTS and /admin/failpoints, and what the
server does under the faults they inject on the write lane, the projector and the saga.

A failed append or commit must fail the affected commands with 503, acknowledge nothing, leave
nothing visible, and the server must recover as soon as the fault clears. A failed fsync cannot
be rolled back: the server stops without answering, and a restart recovers what the log holds.
Until its fsync a committed batch is invisible to everyone but the writer.
"""

import http.client
import os
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest

from conftest import ADDRESS, BIN, assert_problem, error_fields, uid

FP_ARGS = ["--enable-failpoints"]


def arm(srv, point, action):
    st, _, b = srv.req("PUT", "/admin/failpoints/" + point, {"action": action})
    assert st == 200, (st, b)
    assert b["point"] == point and b["action"] == action, b
    return b


def disarm(srv, point):
    st, _, b = srv.req("DELETE", "/admin/failpoints/" + point)
    assert st == 204, (st, b)


def armed(srv):
    st, _, b = srv.get("/admin/failpoints")
    assert st == 200, b
    return {f["point"]: f for f in b}


def product_body(pid=None, stock=10):
    return {"productId": pid or uid("prod"), "name": "Fault Lamp", "category": "faults",
            "price": 5, "stock": stock}


def order_body(pid):
    return {"customerId": str(uuid.uuid4()), "items": [{"productId": pid, "quantity": 1, "price": 5}],
            "shippingAddress": dict(ADDRESS)}


def assert_log_unchanged(srv, head):
    st, _, after = srv.get("/log", {"fromPosition": head + 1, "limit": 10})
    assert st == 200 and after == [], after
    assert srv.log_head() == head


# ---------------------------------------------------------------------- the admin API
def test_failpoint_routes_do_not_exist_without_the_flag(shared):
    for method, body in (("GET", None), ("PUT", {"action": "error"}), ("DELETE", None)):
        st, h, b = shared.req(method, "/admin/failpoints/log.fsync", body)
        assert st in (404, 405), (method, st, b)
        if method != "GET":
            assert_problem(st, h, b, 404, "NOT_FOUND")
    st, h, b = shared.get("/admin/failpoints")
    assert_problem(st, h, b, 404, "NOT_FOUND")
    # and nothing was armed: commands still work
    shared.create_product(stock=1)


def test_admin_api_validates_and_lists(make_server):
    srv = make_server(FP_ARGS)
    assert armed(srv) == {}
    st, h, b = srv.req("PUT", "/admin/failpoints/disk.melt", {"action": "error"})
    assert "point" in error_fields(assert_problem(st, h, b, 400, "VALIDATION_FAILED"))
    for action in ("explode", "error*0", "error*", "delay:-1", "delay:999999", "", 5):
        st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", {"action": action})
        assert "action" in error_fields(assert_problem(st, h, b, 400, "VALIDATION_FAILED")), action
    st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", {})
    assert "action" in error_fields(assert_problem(st, h, b, 400, "VALIDATION_FAILED"))
    st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", raw=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert_problem(st, h, b, 400, "MALFORMED_JSON")
    st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", raw=b'{"action":"error"}',
                       headers={"Content-Type": "text/plain"})
    assert_problem(st, h, b, 415)
    assert armed(srv) == {}, "a refused request armed something"
    # Valid ones are listed with their counters; re-arming replaces; DELETE disarms.
    arm(srv, "log.append", "delay:1")
    arm(srv, "projection.orders.apply", "error*2")
    arm(srv, "log.append", "delay:2")
    a = armed(srv)
    assert set(a) == {"log.append", "projection.orders.apply"}, a
    assert a["log.append"]["action"] == "delay:2" and a["log.append"]["hits"] == 0, a
    disarm(srv, "log.append")
    disarm(srv, "log.append")  # idempotent
    assert set(armed(srv)) == {"projection.orders.apply"}
    st, h, b = srv.req("DELETE", "/admin/failpoints/nope")
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    arm(srv, "projection.orders.apply", "off")
    assert armed(srv) == {}


def test_refusal_quoting_a_quote_and_control_character_is_valid_json(make_server):
    # Found by fuzzing (tests/fuzz/fuzz_money.c): tl_json_dumps took a quote followed by U+0001
    # inside a string for an exact-money placeholder and wrote invalid JSON. The refusal quotes
    # the action, so this answer was one.
    srv = make_server(FP_ARGS)
    st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", {"action": '"\u00019.99"x'})
    b = assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert "action" in error_fields(b)
    assert any('"\u00019.99"x' in e["message"] for e in b["errors"]), b


# ---------------------------------------------------------------------- write-lane faults
def test_failed_commit_acknowledges_nothing_and_recovers(make_server):
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=10)
    head = srv.idle_head()
    arm(srv, "log.commit", "error")
    key = "fsync-" + uuid.uuid4().hex
    body = order_body(p["productId"])
    for _ in range(3):
        st, h, b = srv.post("/orders", body, headers={"Idempotency-Key": key})
        assert_problem(st, h, b, 503, "STORAGE_UNAVAILABLE")
        assert "x-position" not in h and "etag" not in h, h
    st, h, b = srv.post("/products", product_body())
    assert_problem(st, h, b, 503, "STORAGE_UNAVAILABLE")
    st, h, b = srv.command(p["productId"], "ship")  # an unknown order: refused before the log
    assert st == 404, b
    assert_log_unchanged(srv, head)
    assert armed(srv)["log.commit"]["fired"] >= 4
    # Nothing of the failed commands is visible anywhere, also not to the read lane.
    st, _, v = srv.query("/products/" + p["productId"], head)
    assert st == 200 and v["salesCount"] == 0 and v["available"] == 10, v
    # The fault clears: the same request (same key) is now accepted: a 503 is never replayed.
    disarm(srv, "log.commit")
    st, h, b = srv.post("/orders", body, headers={"Idempotency-Key": key})
    assert st == 201, b
    assert b["position"] == head + 1, b
    st, h, again = srv.post("/orders", body, headers={"Idempotency-Key": key})
    assert st == 201 and again["orderId"] == b["orderId"], again
    assert h.get("idempotent-replayed") == "true", h
    s = srv.wait_settled(b["orderId"])
    assert s["status"] == "RESERVED", s


def test_failed_fsync_stops_the_server_and_a_restart_recovers(make_server):
    """After a failed fsync the kernel may have dropped the committed pages: the server must not
    answer the commands that fsync covered (their outcome is unknown) nor accept more. It exits
    with status 3; a restart serves what the log holds, with read models and process managers
    consistent with it."""
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=10)
    head = srv.idle_head()
    arm(srv, "log.fsync", "error")
    with pytest.raises((OSError, http.client.HTTPException)):
        srv.post("/orders", order_body(p["productId"]), timeout=10)
    assert srv.proc.wait(timeout=10) == 3
    assert "fsync of the log failed" in srv.stderr_tail()
    srv._reap()
    srv.start()  # fail points armed at run time are gone with the process
    st, _, v = srv.get("/products/" + p["productId"])
    assert st == 200 and v["stock"] == 10, v  # acknowledged before the fault: kept
    placed = [e for e in srv.log_events(head + 1) if e["type"] == "OrderPlaced"]
    assert len(placed) <= 1, placed  # the unanswered order may or may not have landed
    reserved = 0
    if placed:  # it did: the saga and the read models take it up after the restart
        s = srv.wait_settled(placed[0]["data"]["orderId"])
        assert s["status"] == "RESERVED", s
        reserved = 1
    st, _, b = srv.post("/orders", order_body(p["productId"]))
    assert st == 201, b
    s = srv.wait_settled(b["orderId"])
    assert s["status"] == "RESERVED", s
    st, _, v = srv.query("/products/" + p["productId"], srv.idle_head())
    assert st == 200 and v["available"] == 10 - reserved - 1, v


def _committed_head(srv):
    """The last position in events.db as the file holds it, read past the server's API."""
    con = sqlite3.connect(os.path.join(srv.data_dir, "events.db"), timeout=5)
    try:
        return con.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0]
    finally:
        con.close()


def test_a_committed_batch_is_invisible_until_its_fsync(make_server):
    """The writer commits a batch without waiting for its fsync (the syncer runs it while the
    writer decides the next batch). Until that fsync returns the command is not answered and
    nothing reads its events: not the log API, not the read models, not the process managers."""
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=10)
    head = srv.idle_head()
    arm(srv, "log.fsync", "delay:1500")
    body = product_body()
    result = {}
    t = threading.Thread(target=lambda: result.update(r=srv.post("/products", body)))
    t.start()
    try:
        deadline = time.monotonic() + 1.0
        while _committed_head(srv) == head and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _committed_head(srv) == head + 1, "the writer did not commit before the fsync"
        assert "r" not in result, "answered before its fsync"
        assert_log_unchanged(srv, head)
        st, _, v = srv.get("/products/" + body["productId"])
        assert st == 404, v
        assert srv.metric("tl_log_position") == head
        assert srv.metric("tl_log_committed_position") == head + 1  # an fsync in flight shows
    finally:
        t.join(15)
    st, _, b = result["r"]
    assert st == 201 and b["position"] == head + 1, b
    assert [e["data"]["productId"] for e in srv.log_events(head + 1)] == [body["productId"]]
    st, _, v = srv.query("/products/" + body["productId"], head + 1)
    assert st == 200 and v["stock"] == body["stock"], v
    disarm(srv, "log.fsync")


def test_a_power_loss_before_the_fsync_leaves_no_read_model_ahead_of_the_log(make_server):
    """A power loss takes back what was committed but not yet fsynced. Simulated here: the WAL
    of events.db is cut back to what the last fsync made durable (its size when the server was
    idle) after a kill -9, while read.db and saga.db keep everything they wrote (the worst case).
    Had the projector or the saga read the committed-but-unsynced order, their checkpoints would
    now be ahead of the log, and the server would refuse to start."""
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=10)
    kept = srv.place_reserved_order([(p["productId"], 1, 5)])["orderId"]
    head = srv.idle_head()
    time.sleep(0.3)  # nothing is committed while idle: the WAL is all durable now
    wal = os.path.join(srv.data_dir, "events.db-wal")
    durable_size = os.path.getsize(wal)
    arm(srv, "log.fsync", "delay:5000")
    t = threading.Thread(target=lambda: _quietly(srv.post, "/orders", order_body(p["productId"])))
    t.start()
    deadline = time.monotonic() + 2.0
    while _committed_head(srv) == head and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _committed_head(srv) > head, "the order was not committed"
    time.sleep(0.5)  # time for a projector or saga that reads too far to take it
    assert os.path.getsize(wal) > durable_size
    srv.kill9()
    t.join(10)
    with open(wal, "r+b") as f:  # the power loss: unsynced frames never reached the disk
        f.truncate(durable_size)
    shm = os.path.join(srv.data_dir, "events.db-shm")
    if os.path.exists(shm):
        os.remove(shm)
    srv.start()
    assert srv.log_head() == head, "the unsynced order survived the simulated power loss"
    s = srv.wait_settled(kept)
    assert s["status"] == "RESERVED", s
    st, _, v = srv.query("/products/" + p["productId"], head)
    assert st == 200 and v["available"] == 9 and v["salesCount"] == 1, v
    st, _, b = srv.post("/orders", order_body(p["productId"]))
    assert st == 201 and b["position"] == head + 1, b
    s = srv.wait_settled(b["orderId"])
    assert s["status"] == "RESERVED", s


def _quietly(fn, *args):
    try:
        fn(*args, timeout=10)
    except (OSError, http.client.HTTPException):
        pass  # the server was killed under the request


def test_the_writer_commits_the_next_batch_while_an_fsync_runs(make_server):
    """Pipelined group commit: the writer does not wait for a batch's fsync before deciding and
    committing the next one; the next fsync covers every batch committed before it starts, and
    the answers keep their order."""
    srv = make_server(FP_ARGS)
    srv.create_product(stock=10)
    head = srv.idle_head()
    arm(srv, "log.fsync", "delay:1500")
    fsyncs = srv.metric("tl_fsyncs_total")
    batches = srv.metric("tl_group_commit_batch_size_count")
    results = []

    def create():
        results.append(srv.post("/products", product_body()))

    first = threading.Thread(target=create)
    first.start()
    second = None
    try:
        deadline = time.monotonic() + 1.0
        while _committed_head(srv) == head and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _committed_head(srv) == head + 1, "the first command was not committed"
        time.sleep(0.05)  # its fsync is running (sleeping) now
        second = threading.Thread(target=create)
        second.start()
        deadline = time.monotonic() + 1.0
        while _committed_head(srv) < head + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _committed_head(srv) == head + 2, "the second batch waited for the first fsync"
        assert results == [], "answered before its fsync"
    finally:
        first.join(15)
        if second:
            second.join(15)
    disarm(srv, "log.fsync")
    assert [(st, b["position"]) for st, _, b in results] == [(201, head + 1), (201, head + 2)]
    assert srv.metric("tl_group_commit_batch_size_count") - batches == 2
    # Two, unless a slow machine let the second commit land before the first fsync began.
    assert 1 <= srv.metric("tl_fsyncs_total") - fsyncs <= 2


def test_failed_append_n_times_then_recovers(make_server):
    srv = make_server(FP_ARGS)
    srv.create_product(stock=1)
    head = srv.idle_head()
    arm(srv, "log.append", "error*2")
    bodies = [product_body() for _ in range(3)]
    answers = [srv.post("/products", b) for b in bodies]
    assert [a[0] for a in answers] == [503, 503, 201], [(a[0], a[2]) for a in answers]
    assert answers[2][2]["position"] == head + 1
    a = armed(srv)["log.append"]
    assert a["fired"] == 2 and a["hits"] == 3, a
    events = srv.log_events(head + 1)
    assert [e["data"]["productId"] for e in events] == [bodies[2]["productId"]], events
    # The refused products do not exist: creating them now succeeds.
    for b in bodies[:2]:
        st, _, out = srv.post("/products", b)
        assert st == 201, out


def test_concurrent_commands_during_fsync_failure_all_fail_or_all_land(make_server):
    """Commands that share a group commit share its fate: under a failing fsync every one of
    them is 503 and the log does not move; nothing acknowledged is ever missing."""
    import threading
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=1000)
    head = srv.idle_head()
    arm(srv, "log.fsync", "delay:100")  # slow disk: commands pile up into shared batches
    arm(srv, "log.append", "error*1")   # ... and the first batch fails
    results = []
    lock = threading.Lock()

    def one():
        r = srv.post("/orders", order_body(p["productId"]))
        with lock:
            results.append(r)

    ts = [threading.Thread(target=one) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    disarm(srv, "log.fsync")
    assert len(results) == 20
    ok = [b for st, _, b in results if st == 201]
    failed = [b for st, _, b in results if st != 201]
    assert all(b["code"] == "STORAGE_UNAVAILABLE" for b in failed), failed
    assert failed, "the armed append failure failed no command"
    placed = {e["data"]["orderId"] for e in srv.log_events(head + 1) if e["type"] == "OrderPlaced"}
    assert placed == {b["orderId"] for b in ok}, "the log and the acknowledgements disagree"


def test_slow_fsync_delays_but_keeps_commands(make_server):
    srv = make_server(FP_ARGS)
    arm(srv, "log.fsync", "delay:300")
    t0 = time.monotonic()
    b = srv.create_product(stock=1)
    assert time.monotonic() - t0 >= 0.3
    disarm(srv, "log.fsync")
    st, _, v = srv.query("/products/" + b["productId"], b["position"])
    assert st == 200 and v["stock"] == 1, v


# ---------------------------------------------------------------------- read-lane and saga faults
def test_failing_projection_is_retried_until_it_applies(make_server):
    srv = make_server(FP_ARGS + ["--retry-base-ms", "5", "--retry-cap-ms", "20"])
    p = srv.create_product(stock=5)
    arm(srv, "projection.orders.apply", "error*3")
    o = srv.place_order([(p["productId"], 1, 9.99)])
    st, _, v = srv.query("/orders/" + o["orderId"], o["position"], wait_ms=10000)
    assert st == 200 and v["orderId"] == o["orderId"], v
    a = armed(srv)["projection.orders.apply"]
    assert a["fired"] == 3 and a["hits"] >= 4, a


def test_failing_saga_step_is_retried_and_settles_once(make_server):
    srv = make_server(FP_ARGS + ["--retry-base-ms", "5", "--retry-cap-ms", "20"])
    p = srv.create_product(stock=5)
    arm(srv, "saga.order_fulfilment.step", "error*3")
    o = srv.place_order([(p["productId"], 2, 9.99)])
    s = srv.wait_settled(o["orderId"], timeout=20)
    assert s["status"] == "RESERVED", s
    head = srv.idle_head()
    types = [e["type"] for e in srv.log_events(o["position"])]
    assert types.count("StockReserved") == 1 and types.count("OrderReserved") == 1, types
    m = srv.metrics()
    retries = sum(v for _, v in m["tl_process_manager_retries_total"])
    assert retries >= 3, m["tl_process_manager_retries_total"]
    st, _, v = srv.query("/products/" + p["productId"], head)
    assert v["available"] == 3, v


# ---------------------------------------------------------------------- start-up configuration
def test_failpoints_from_the_environment(make_server, monkeypatch):
    monkeypatch.setenv("TWINLANE_FAILPOINTS", " log.append=error*1 ; log.fsync=delay:0")
    srv = make_server()  # the variable works without --enable-failpoints ...
    st, h, b = srv.post("/products", product_body())
    assert_problem(st, h, b, 503, "STORAGE_UNAVAILABLE")
    srv.create_product(stock=1)
    st, h, b = srv.req("PUT", "/admin/failpoints/log.fsync", {"action": "error"})
    assert_problem(st, h, b, 404, "NOT_FOUND")  # ... but the admin API needs the flag
    assert "fail points armed" in srv.stderr_tail()


@pytest.mark.parametrize("spec", ["log.append=explode", "disk.melt=error", "log.fsync"])
def test_bad_failpoint_specification_refuses_to_start(tmp_path, spec):
    env = dict(os.environ, TWINLANE_FAILPOINTS=spec)
    r = subprocess.run([BIN, "serve", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0"],
                       env=env, capture_output=True, timeout=10)
    assert r.returncode == 2, r
    assert b"TWINLANE_FAILPOINTS" in r.stderr, r.stderr
    assert not (tmp_path / "d" / "events.db").exists()


def test_sigterm_during_a_stalled_fsync_answers_the_command_and_exits_cleanly(make_server):
    """The HTTP layer waits 15 s for suspended commands at shutdown; an fsync stalled longer
    than that must still end with the command answered by the syncer and a clean exit (the
    daemon is left running for it, new requests refused), not with a freed connection resumed.
    Takes ~17 s."""
    import signal
    srv = make_server(FP_ARGS)
    srv.create_product(stock=1)
    arm(srv, "log.fsync", "delay:16500")
    result = {}
    t = threading.Thread(target=lambda: result.update(r=srv.post("/products", product_body(),
                                                                  timeout=40)))
    t.start()
    time.sleep(0.3)
    srv.proc.send_signal(signal.SIGTERM)
    t.join(40)
    st, _, b = result["r"]
    assert st == 201, b  # durable once the slow fsync returned, and answered
    code = srv.proc.wait(timeout=30)
    srv._reap()
    assert code == 0
    assert "leaving the HTTP daemon" in srv.stderr_tail()
    assert not srv.sanitizer_report()


def test_a_failed_projector_commit_that_wrote_the_files_applies_nothing_twice(make_server):
    """SQLite commits the projections' files one by one: a COMMIT may fail after writing some of
    them. read.commit fails the batch after every file committed (the extreme case): the
    projector must read the checkpoints back from the files and go on from there, not apply the
    batch again (counters would count it twice), and drop the answers it cached."""
    srv = make_server(FP_ARGS)
    p = srv.create_product(stock=50, price=5)
    st, _, v = srv.query("/products/" + p["productId"], srv.idle_head())
    assert st == 200 and v["salesCount"] == 0, v
    arm(srv, "read.commit", "error*1")
    o = srv.place_order([(p["productId"], 2, 5)])
    head = srv.idle_head()
    assert armed(srv)["read.commit"]["fired"] == 1
    st, _, v = srv.query("/products/" + p["productId"], head)
    assert st == 200 and v["salesCount"] == 2, v
    day = o["order"]["createdAt"][:10]
    st, _, d = srv.query("/sales/daily", head, {"from": day, "to": day})
    assert st == 200 and [x["orderCount"] for x in d["days"]] == [1], d
    st, _, v = srv.query("/orders/" + o["orderId"], head)
    assert st == 200 and v["status"] == "RESERVED", v
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r
    st, _, dlq = srv.get("/admin/dlq")
    assert st == 200 and dlq == [], dlq
    assert "committed in some read-model files only" in srv.stderr_tail(200)
