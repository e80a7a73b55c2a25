"""Zero-downtime rebuild of a projection.

A new copy is built from position 0 beside the live one while queries keep answering from the
live copy; once caught up it is swapped in atomically. Reconciliation finds a row corrupted in
SQLite; a rebuild fixes it. Parked events are re-applied by the rebuild.
"""

import os
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid

from conftest import BIN, assert_problem, uid

FP = ["--enable-failpoints", "--retry-base-ms", "5", "--retry-cap-ms", "10", "--retry-attempts", "2"]


def status(srv, name):
    st, _, b = srv.get("/admin/projections")
    assert st == 200, b
    return {p["name"]: p for p in b}[name]


def wait_rebuilt(srv, name, timeout=60.0):
    deadline = time.monotonic() + timeout
    while status(srv, name)["status"] == "rebuilding":
        assert time.monotonic() < deadline, "still rebuilding after %.0f s" % timeout
        time.sleep(0.02)


def rebuild(srv, name, expect=202):
    st, h, b = srv.post("/admin/projections/%s/rebuild" % name)
    assert st == expect, (st, b)
    return st, h, b


def test_reconcile_finds_corruption_and_rebuild_fixes_it(make_server):
    srv = make_server()
    p = srv.create_product(uid("prod"), price=2, stock=50)
    cust = str(uuid.uuid4())
    orders = [srv.place_order([(p["productId"], 1, 2)], customer_id=cust) for _ in range(20)]
    head = srv.idle_head()
    victim = orders[5]["orderId"]
    db = sqlite3.connect(srv.read_db("orders"), timeout=10)
    db.execute("UPDATE rm_orders SET status = 'CANCELLED', total_minor = 1 WHERE order_id = ?",
               (victim,))
    db.execute("DELETE FROM rm_orders WHERE order_id = ?", (orders[6]["orderId"],))
    db.commit()
    db.close()
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is False, r
    bad = {t["table"]: t for pr in r["projections"] if pr["name"] == "orders" for t in pr["tables"]}
    assert sorted(bad["rm_orders"]["keys"]) == sorted([victim, orders[6]["orderId"]]), bad
    st, _, found = srv.query("/orders/search", head, {"q": "plain widg", "limit": 100})
    assert st == 200 and len(found["items"]) == 19, found  # orders[6]'s row is gone
    rebuild(srv, "orders")
    wait_rebuilt(srv, "orders")
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r
    # The swap dropped the full-text index and filled a new one: it agrees with its rows.
    st, _, found = srv.query("/orders/search", head, {"q": "plain widg", "limit": 100})
    assert st == 200 and {o["orderId"] for o in found["items"]} == {
        o["orderId"] for o in orders}, found
    db = sqlite3.connect(srv.read_db("orders"), timeout=10)
    db.execute("INSERT INTO rm_orders_fts(rm_orders_fts) VALUES('integrity-check')")
    db.commit()
    db.close()
    st, _, v = srv.query("/orders/" + victim, head)
    assert st == 200 and v["status"] == "RESERVED" and v["total"] == 2, v
    st, _, page = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    assert len(page["items"]) == 20, page
    assert status(srv, "orders")["position"] >= head


def test_queries_answer_throughout_a_rebuild(make_server):
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), price=1, stock=1000)
    cust = str(uuid.uuid4())
    placed = [srv.place_order([(p["productId"], 1, 1)], customer_id=cust) for _ in range(60)]
    srv.idle_head()
    st, _, b = srv.req("PUT", "/admin/failpoints/projection.orders.rebuild", {"action": "delay:15"})
    assert st == 200, b
    rebuild(srv, "orders")
    assert status(srv, "orders")["status"] == "rebuilding"
    rebuild(srv, "products", expect=409)  # one rebuild at a time
    failures, checked, during = [], [0], [0]
    stop = threading.Event()
    expected = {o["orderId"] for o in placed}

    def reader():
        while not stop.is_set():
            rebuilding = status(srv, "orders")["status"] == "rebuilding"
            st, _, page = srv.get("/customers/%s/orders" % cust, {"limit": 100})
            got = {s["orderId"] for s in page.get("items", [])} if st == 200 else None
            if st != 200 or not expected <= got:
                failures.append((st, page))
            o = placed[checked[0] % len(placed)]
            st, _, v = srv.get("/orders/" + o["orderId"])
            if st != 200 or v["orderId"] != o["orderId"] or v["status"] != "RESERVED":
                failures.append((st, v))
            checked[0] += 1
            during[0] += rebuilding

    t = threading.Thread(target=reader)
    t.start()
    try:
        # Commands and read-your-writes keep working while the new copy is built.
        new = []
        for _ in range(5):
            o = srv.place_order([(p["productId"], 1, 1)], customer_id=cust)
            st, _, v = srv.query("/orders/" + o["orderId"], o["position"])
            assert st == 200 and v["orderId"] == o["orderId"], v
            new.append(o)
            time.sleep(0.05)
        wait_rebuilt(srv, "orders")
    finally:
        stop.set()
        t.join(30)
    assert not failures, failures[:3]
    assert during[0] >= 5, "too few queries ran during the rebuild (%d)" % during[0]
    head = srv.idle_head()
    st, _, page = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    assert {s["orderId"] for s in page["items"]} == expected | {o["orderId"] for o in new}
    st, _, r = srv.post("/admin/reconcile")
    assert r["clean"] is True, r


def test_rebuild_reapplies_parked_events(make_server):
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), price=1, stock=10)
    srv.idle_head()
    st, _, b = srv.req("PUT", "/admin/failpoints/projection.orders.apply", {"action": "error*2"})
    assert st == 200
    o = srv.place_order([(p["productId"], 1, 1)])
    head = srv.idle_head()
    # The query waits until the orders projection has passed head, i.e. has parked the event
    # (idle_head only waits for the saga, which may finish before the projector's retry).
    st, _, v = srv.query("/orders/" + o["orderId"], head)
    assert st == 404, v  # the parked OrderPlaced never made the row
    st, _, items = srv.get("/admin/dlq", {"projection": "orders"})
    assert len(items) == 1 and items[0]["position"] == o["position"], items
    cli = subprocess.run([BIN, "projections", "--server", "127.0.0.1:%d" % srv.port, "rebuild",
                          "orders", "--wait"], capture_output=True, timeout=120)
    assert cli.returncode == 0 and b"orders: running" in cli.stdout, cli
    st, _, items = srv.get("/admin/dlq", {"projection": "orders"})
    assert items == [] and status(srv, "orders")["dlqDepth"] == 0, items
    st, _, v = srv.query("/orders/" + o["orderId"], head)
    assert st == 200 and v["status"] == "RESERVED", v


def test_rebuild_errors_and_interrupted_rebuilds(make_server):
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), price=1, stock=100)
    for _ in range(30):
        srv.place_order([(p["productId"], 1, 1)])
    st, h, b = srv.post("/admin/projections/nope/rebuild")
    assert_problem(st, h, b, 404, "PROJECTION_NOT_FOUND")
    srv.req("PUT", "/admin/failpoints/projection.products.rebuild", {"action": "delay:50"})
    rebuild(srv, "products")
    time.sleep(0.2)
    assert status(srv, "products")["status"] == "rebuilding"
    assert status(srv, "products")["rebuildPosition"] >= 1
    # kill -9 mid-rebuild: the live copy is intact, the scratch files are cleaned up at start.
    import os
    assert [f for f in os.listdir(srv.data_dir) if "rebuild" in f]
    srv.restart(hard=True)
    assert not [f for f in os.listdir(srv.data_dir) if "rebuild" in f]
    assert status(srv, "products")["status"] == "running"
    st, _, r = srv.post("/admin/reconcile")
    assert r["clean"] is True, r
    # SIGTERM mid-rebuild: the server stops promptly and cleanly.
    srv.req("PUT", "/admin/failpoints/projection.products.rebuild", {"action": "delay:50"})
    rebuild(srv, "products")
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 5
    srv.start()
    assert not [f for f in os.listdir(srv.data_dir) if "rebuild" in f]


def test_new_projection_version_is_rebuilt_beside_the_old_copy(make_server, monkeypatch):
    srv = make_server()
    p = srv.create_product(uid("prod"), price=2, stock=100)
    orders = [srv.place_order([(p["productId"], 1, 2)]) for _ in range(20)]
    srv.idle_head()
    assert srv.stop() == 0
    # Pretend the stored orders projection was written by an older version of its definition,
    # and mark one of its rows so that the old copy can be told from the new one.
    old_file = srv.read_db("orders")
    db = sqlite3.connect(old_file)
    (current,) = db.execute("SELECT version FROM rm_checkpoints WHERE name = 'orders'").fetchone()
    db.execute("UPDATE rm_checkpoints SET version = ? WHERE name = 'orders'", (current - 1,))
    db.execute("UPDATE rm_orders SET status = 'OLD-COPY' WHERE order_id = ?", (orders[0]["orderId"],))
    db.commit()
    db.close()
    monkeypatch.setenv("TWINLANE_FAILPOINTS", "projection.orders.rebuild=delay:20")
    srv.start()
    assert status(srv, "orders")["status"] == "rebuilding"
    # The old copy keeps answering while the new version is built.
    st, _, v = srv.get("/orders/" + orders[0]["orderId"])
    assert st == 200 and v["status"] == "OLD-COPY", v
    st, _, v = srv.get("/orders/" + orders[1]["orderId"])
    assert st == 200 and v["status"] == "RESERVED", v
    # Other projections are not held back.
    o = srv.place_order([(p["productId"], 1, 2)])
    st, _, pv = srv.query("/products/" + p["productId"], o["position"], wait_ms=3000)
    assert st == 200 and pv["salesCount"] == 21, pv
    # A read-your-write on the orders projection is answered once the new version is in.
    st, _, v = srv.query("/orders/" + o["orderId"], o["position"], wait_ms=10000)
    assert st == 200 and v["orderId"] == o["orderId"], v
    wait_rebuilt(srv, "orders")
    st, _, v = srv.get("/orders/" + orders[0]["orderId"])
    assert v["status"] == "RESERVED", v
    new_file = srv.read_db("orders")
    assert new_file != old_file
    db = sqlite3.connect(new_file, timeout=10)
    (now,) = db.execute("SELECT version FROM rm_checkpoints WHERE name = 'orders'").fetchone()
    db.close()
    assert now == current
    st, _, r = srv.post("/admin/reconcile")
    assert r["clean"] is True, r


def live_schema(srv):
    """Each projection file's tables and indexes as SQLite stores them (FTS5's shadow tables
    included)."""
    out = {}
    for proj in ("orders", "products", "daily_sales"):
        db = sqlite3.connect(srv.read_db(proj), timeout=10)
        try:
            out[proj] = sorted(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                          " WHERE name LIKE 'rm\\_%' ESCAPE '\\'").fetchall())
        finally:
            db.close()
        assert out[proj], proj
    return out


def test_rebuilds_fold_a_lean_copy_and_swap_in_the_live_schema(make_server):
    """A rebuild folds into a scratch database without the indexes only queries use and with
    the names as a plain table instead of the full-text index (fold_schema_sql). The tables it
    swaps in must be the live ones again, answering every query as before the rebuild: prefix
    searches (FTS5's prefix indexes), customer pages (the covering customer index), popularity
    pages overall and per category, a product's sales after a cancellation (the live-lines
    index the fold keeps), daily sales."""
    srv = make_server()
    cat_a, cat_b = uid("cat"), uid("cat")
    lamp = srv.create_product(uid("prod"), name="Copper Lamp", category=cat_a, price=4,
                              stock=1000)
    desk = srv.create_product(uid("prod"), name="Walnut Desk", category=cat_a, price=7,
                              stock=1000)
    rug = srv.create_product(uid("prod"), name="Wool Rug", category=cat_b, price=5, stock=1000)
    custs = [str(uuid.uuid4()) for _ in range(3)]
    placed = []
    for i in range(24):
        items = [(lamp["productId"], 1 + i % 3, 4)]
        if i % 2:
            items.append((desk["productId"], 1, 7))
        if i % 5 == 0:
            items.append((rug["productId"], 2, 5))
        placed.append(srv.place_reserved_order(items, customer_id=custs[i % 3]))
    for o in placed[::4]:  # the last line of each product is not always live
        st, _, b = srv.command(o["orderId"], "cancel")
        assert st in (200, 202), b
    head = srv.idle_head()
    queries = [("/orders/search", {"q": q, "limit": 100}) for q in ("co", "wal", "lamp", "wool r")]
    queries += [("/customers/%s/orders" % c, {"limit": 100}) for c in custs]
    queries += [("/products", {"limit": 100}), ("/products", {"category": cat_a, "limit": 100})]
    queries += [("/products/" + p["productId"], None) for p in (lamp, desk, rug)]
    queries += [("/sales/daily", None)]

    def answers():
        out = []
        for path, params in queries:
            st, _, b = srv.query(path, head, params)
            assert st == 200, (path, b)
            out.append(b)
        return out

    before, schema = answers(), live_schema(srv)
    assert any(b.get("items") for b in before[:4]), before  # the searches find orders
    for name in ("orders", "products", "daily_sales"):
        rebuild(srv, name)
        wait_rebuilt(srv, name)
    assert live_schema(srv) == schema
    assert answers() == before
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r
    # Each rebuilt copy was installed as the projection's next file; the replaced files are
    # deleted once no query connection has them open (none is in use between requests).
    want = sorted(f % p for p in ("orders", "products", "daily_sales")
                  for f in ("read.%s.2.db", "read.%s.2.db-shm", "read.%s.2.db-wal"))
    wait_for(lambda: read_files(srv) == want, "the replaced files deleted",
             lambda: read_files(srv))


def tidy_steps(srv):
    return srv.metric("tl_projection_tidy_steps_total", '{projection="orders"}')


def test_rebuilt_orders_are_tidied_at_the_next_quiet_moment(make_server):
    """A tidy cycle (merging the search index) is due after 500 events, or after a rebuild swapped
    the tables in: a small log never gets one until its orders projection is rebuilt."""
    srv = make_server()
    p = srv.create_product(uid("prod"), name="Quiet %s Lamp" % uid("w"), price=3, stock=1000)
    ids = [srv.place_order([(p["productId"], 1, 3)])["orderId"] for _ in range(30)]
    head = srv.idle_head()
    time.sleep(0.5)  # the log has been quiet for longer than the projector waits before tidying
    assert tidy_steps(srv) == 0
    rebuild(srv, "orders")
    wait_rebuilt(srv, "orders")
    deadline = time.monotonic() + 10
    while tidy_steps(srv) == 0:
        assert time.monotonic() < deadline, "no tidy step after the rebuild"
        time.sleep(0.05)
    st, _, b = srv.query("/orders/search", head, {"q": "lamp", "limit": 100})
    assert st == 200, b
    assert [s["orderId"] for s in b["items"]] == ids[::-1], b


def settled_tidy_steps(srv, quiet=0.8, timeout=20.0):
    """tl_projection_tidy_steps_total once it has stopped moving for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last, since = tidy_steps(srv), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "tidy steps still moving after %.0f s" % timeout
        time.sleep(0.05)
        now = tidy_steps(srv)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_no_tidy_while_a_rebuild_runs(make_server):
    """The projector leaves its housekeeping while a rebuild runs in the background (the rebuild
    has the cores first) and does it once the rebuild is over."""
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), name="Busy %s Desk" % uid("w"), price=4, stock=10**6)
    for _ in range(350):  # > 1,000 events: the rebuild folds in its own thread, not in the swap
        srv.place_order([(p["productId"], 1, 4)])
    srv.idle_head()
    before = settled_tidy_steps(srv)
    assert before > 0  # the first cycle (due after 500 events) ran at the first quiet moment
    st, _, b = srv.req("PUT", "/admin/failpoints/projection.products.rebuild", {"action": "delay:50"})
    assert st == 200, b
    rebuild(srv, "products")
    last = None
    for _ in range(200):  # ~600 more events: the next cycle is due
        last = srv.place_order([(p["productId"], 1, 4)])
    head = srv.idle_head()
    st, _, _ = srv.query("/orders/" + last["orderId"], head)  # the live orders model is there
    assert st == 200
    time.sleep(0.6)  # quiet for longer than the projector waits before tidying
    assert status(srv, "products")["status"] == "rebuilding"
    assert tidy_steps(srv) == before
    st, _, b = srv.req("PUT", "/admin/failpoints/projection.products.rebuild", {"action": "off"})
    assert st == 200, b
    wait_rebuilt(srv, "products")
    deadline = time.monotonic() + 10
    while tidy_steps(srv) == before:
        assert time.monotonic() < deadline, "no tidy step after the rebuild"
        time.sleep(0.05)


def wait_for(cond, what, show, timeout=10.0):
    """Waits (bounded) for cond(): a replaced file is deleted on a thread of its own."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, (what, show())
        time.sleep(0.02)


def read_files(srv):
    return sorted(f for f in os.listdir(srv.data_dir) if f.startswith("read."))


def test_a_replaced_file_lives_until_no_connection_reads_it(make_server):
    """A rebuild installs its copy as the projection's next file generation. A reconciliation
    that started before reads the old file in its snapshot to the end (and finds it clean);
    the old file is deleted once that connection is given back, not before."""
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), price=1, stock=1000)
    placed = [srv.place_order([(p["productId"], 1, 1)]) for _ in range(20)]
    head = srv.idle_head()
    old = srv.read_db("orders")
    st, _, b = srv.req("PUT", "/admin/failpoints/read.reconcile", {"action": "delay:30"})
    assert st == 200, b
    result = {}
    t = threading.Thread(target=lambda: result.update(r=srv.post("/admin/reconcile", timeout=60)))
    t.start()
    try:
        time.sleep(0.3)  # the reconciliation has its snapshot and folds, 30 ms per event
        assert t.is_alive()
        rebuild(srv, "orders")
        wait_rebuilt(srv, "orders")
        new = srv.read_db("orders")
        assert new != old and os.path.exists(old)  # still read by the reconciliation
        o = srv.place_order([(p["productId"], 1, 1)])
        st, _, v = srv.query("/orders/" + o["orderId"], o["position"])
        assert st == 200 and v["orderId"] == o["orderId"], v
        st, _, v = srv.get("/orders/" + placed[0]["orderId"])
        assert st == 200 and v["status"] == "RESERVED", v
    finally:
        t.join(60)
    st, _, r = result["r"]
    assert st == 200 and r["clean"] is True, r
    assert {pr["name"]: pr["position"] for pr in r["projections"]}["orders"] >= head
    wait_for(lambda: not os.path.exists(old) and not os.path.exists(old + "-wal"),
             "the replaced file deleted once the reconciliation was done", lambda: read_files(srv))
    srv.req("DELETE", "/admin/failpoints/read.reconcile")
    st, _, r = srv.post("/admin/reconcile")
    assert r["clean"] is True, r


def test_start_up_keeps_the_newest_file_of_each_projection(make_server):
    """A crash between installing a rebuilt file and deleting the one it replaced leaves both:
    the next start keeps the newest generation and deletes the other (and its side files)."""
    srv = make_server()
    p = srv.create_product(uid("prod"), price=1, stock=1000)
    cust = str(uuid.uuid4())
    placed = [srv.place_order([(p["productId"], 1, 1)], customer_id=cust) for _ in range(10)]
    head = srv.idle_head()
    rebuild(srv, "orders")
    wait_rebuilt(srv, "orders")
    assert srv.read_db("orders").endswith("read.orders.2.db")
    srv.kill9()
    # The replaced generation, as a crash would leave it (with a stale WAL beside it).
    shutil.copy(srv.read_db("orders"), os.path.join(srv.data_dir, "read.orders.1.db"))
    with open(os.path.join(srv.data_dir, "read.orders.1.db-wal"), "wb") as f:
        f.write(b"\0" * 4096)
    srv.start()
    assert [f for f in read_files(srv) if f.startswith("read.orders.")] == [
        "read.orders.2.db", "read.orders.2.db-shm", "read.orders.2.db-wal"], read_files(srv)
    st, _, page = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    assert {s["orderId"] for s in page["items"]} == {o["orderId"] for o in placed}, page
    st, _, r = srv.post("/admin/reconcile")
    assert r["clean"] is True, r


def test_a_single_read_db_of_an_older_version_is_replaced(make_server):
    """Servers before one file per projection kept every read model in read.db. Such a file is
    removed at start-up and the projections are folded again from the log; the answers are
    the log's, not the old file's."""
    srv = make_server()
    p = srv.create_product(uid("prod"), price=1, stock=1000)
    cust = str(uuid.uuid4())
    placed = [srv.place_order([(p["productId"], 1, 1)], customer_id=cust) for _ in range(10)]
    head = srv.idle_head()
    st, _, before = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    assert st == 200 and len(before["items"]) == 10, before
    assert srv.stop() == 0
    for f in read_files(srv):
        os.unlink(os.path.join(srv.data_dir, f))
    db = sqlite3.connect(os.path.join(srv.data_dir, "read.db"))
    db.execute("CREATE TABLE rm_checkpoints(name TEXT PRIMARY KEY, version INTEGER NOT NULL,"
               " position INTEGER NOT NULL, recorded_at INTEGER) WITHOUT ROWID")
    db.execute("INSERT INTO rm_checkpoints VALUES('orders', 5, ?, NULL)", (head,))
    db.execute("CREATE TABLE rm_orders(order_id TEXT, customer_id TEXT, status TEXT)")
    db.execute("INSERT INTO rm_orders VALUES(?, ?, 'OLD-FILE')", (placed[0]["orderId"], cust))
    db.commit()
    db.close()
    srv.start()
    assert not os.path.exists(os.path.join(srv.data_dir, "read.db"))
    st, _, v = srv.query("/orders/" + placed[0]["orderId"], head)
    assert st == 200 and v["status"] == "RESERVED", v
    st, _, after = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    assert [s["orderId"] for s in after["items"]] == [s["orderId"] for s in before["items"]]
    assert srv.read_db("orders").endswith("read.orders.1.db")


def test_a_swap_that_cannot_attach_any_file_heals_before_the_next_batch(make_server):
    """A rebuild whose new file cannot be attached goes back to the old one; when that cannot be
    attached either (read.attach fails twice), the projection has no file on the projector's
    connection, and the projector attaches the live file again before its next batch, instead of
    failing every batch until a restart (or, later, until the event's retries ran out: with the
    default 8 retries from 200 ms the query below would time out)."""
    srv = make_server(["--enable-failpoints"])
    p = srv.create_product(uid("prod"), price=1, stock=100)
    srv.place_order([(p["productId"], 1, 1)])
    srv.projected_head()
    live = srv.read_db("products")
    st, _, b = srv.req("PUT", "/admin/failpoints/read.attach", {"action": "error*2"})
    assert st == 200, b
    rebuild(srv, "products")
    wait_rebuilt(srv, "products")
    log = open(srv.stderr_path).read()
    assert "projection rebuild failed" in log and "fail point read.attach" in log, log[-2000:]
    assert srv.read_db("products") == live  # the old file stays the projection's
    o = srv.place_order([(p["productId"], 2, 1)])
    st, _, v = srv.query("/products/" + p["productId"], o["position"])
    assert st == 200 and v["salesCount"] == 3, v
    log = open(srv.stderr_path).read()
    assert "a projection's file was attached again" in log, log[-2000:]
    assert "will retry" not in log, log[-2000:]
    assert status(srv, "products")["status"] == "running"
    assert status(srv, "products")["retries"] == 0
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r


def test_a_rebuild_parks_again_the_events_its_projection_cannot_apply(make_server):
    """An event a projection cannot apply is parked in its dead-letter queue by the live
    projector; a rebuild that meets it again parks it in the new copy too (it used to drop it
    silently: the new file had no dead letters, the event was gone from sight)."""
    srv = make_server(FP)
    p = srv.create_product(uid("prod"), price=1, stock=100)
    srv.place_order([(p["productId"], 1, 1)])
    head = srv.idle_head()
    srv.stop()
    db = sqlite3.connect(os.path.join(srv.data_dir, "events.db"), timeout=10)
    db.execute("INSERT INTO events(position, stream, version, type, schema_version, data, metadata,"
               " recorded_at) VALUES(?, 'note-1', 1, 'NoteAdded', 1, '{not json', '{}', ?)",
               (head + 1, int(time.time() * 1000)))
    db.commit()
    db.close()
    srv.start()
    after = srv.place_order([(p["productId"], 1, 1)])
    # The projections go past the unreadable event by parking it (2 attempts, 5-10 ms apart).
    st, _, v = srv.query("/orders/" + after["orderId"], after["position"])
    assert st == 200, v
    for name in ("orders", "products"):
        st, _, items = srv.get("/admin/dlq", {"projection": name})
        assert [i["position"] for i in items] == [head + 1], (name, items)
    live = srv.read_db("orders")
    st, _, items = srv.get("/admin/dlq", {"projection": "orders"})
    assert items[0]["attempts"] == 2, items  # parked by the projector after 2 attempts
    rebuild(srv, "orders")
    wait_rebuilt(srv, "orders")
    assert srv.read_db("orders") != live  # swapped: the row below is the new copy's
    assert "projection rebuilt and swapped in" in open(srv.stderr_path).read()
    st, _, items = srv.get("/admin/dlq", {"projection": "orders"})
    assert [(i["position"], i["type"]) for i in items] == [(head + 1, "NoteAdded")], items
    assert "unreadable" in items[0]["error"] and items[0]["attempts"] == 1, items
    assert status(srv, "orders")["dlqDepth"] == 1
    st, _, v = srv.get("/orders/" + after["orderId"])
    assert st == 200 and v["orderId"] == after["orderId"], v
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r


def all_running_at(srv, head):
    """Waits until every projection is running at head or past it."""
    for name in ("orders", "products", "daily_sales"):
        wait_for(lambda: status(srv, name)["position"] >= head and
                 status(srv, name)["status"] == "running", "%s caught up" % name,
                 lambda: status(srv, name))


def log_since(srv, offset):
    """The server's log from byte offset on (a start's lines)."""
    with open(srv.stderr_path) as f:
        f.seek(offset)
        return f.read()


def test_projections_that_start_empty_on_a_long_log_are_folded(make_server):
    """A projection that starts at position 0 while the log holds at least --fold-from events is
    folded into a new copy by the rebuild thread (3-5x faster than the projector's batches) and
    installed like a rebuild; with --fold-from 0 the projector catches it up. Both answer the
    same and reconcile clean."""
    srv = make_server(["--fold-from", "50"])
    p = srv.create_product(uid("prod"), price=3, stock=1000)
    cust = str(uuid.uuid4())
    placed = [srv.place_order([(p["productId"], 2, 3)], customer_id=cust) for _ in range(25)]
    head = srv.idle_head()
    assert head >= 50
    st, _, before = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
    st, _, prod_before = srv.query("/products/" + p["productId"], head)
    assert prod_before["salesCount"] == 50, prod_before
    for fold_from, folded in (("50", True), ("0", False)):
        srv.stop()
        for f in read_files(srv):
            os.unlink(os.path.join(srv.data_dir, f))
        srv.extra_args = ["--fold-from", fold_from]
        start_log = os.path.getsize(srv.stderr_path)
        srv.start()
        st, _, page = srv.query("/customers/%s/orders" % cust, head, {"limit": 100})
        assert st == 200 and page["items"] == before["items"], page
        st, _, prod = srv.query("/products/" + p["productId"], head)
        assert st == 200 and prod["salesCount"] == prod_before["salesCount"], prod
        st, _, found = srv.query("/orders/search", head, {"q": "plain widg", "limit": 100})
        assert {o["orderId"] for o in found["items"]} == {o["orderId"] for o in placed}, found
        all_running_at(srv, head)
        log = log_since(srv, start_log)
        n = 3 if folded else 0
        assert log.count("projection starts empty; folding the log into a new copy") == n, log
        assert log.count("projection rebuilt and swapped in") == n, log[-3000:]
        st, _, r = srv.post("/admin/reconcile")
        assert st == 200 and r["clean"] is True, r
    # A new order after the fold is projected as usual.
    o = srv.place_order([(p["productId"], 1, 3)], customer_id=cust)
    st, _, v = srv.query("/orders/" + o["orderId"], o["position"])
    assert st == 200 and v["customerId"] == cust, v


def test_a_fold_from_empty_cut_short_by_kill_9_starts_again(make_server, monkeypatch):
    """kill -9 while the projections that started empty are being folded: the scratch file is
    removed at the next start, they are still at position 0, so they are folded again, and the
    result reconciles clean."""
    srv = make_server(["--fold-from", "50", "--enable-failpoints"])
    p = srv.create_product(uid("prod"), price=1, stock=1000)
    placed = [srv.place_order([(p["productId"], 1, 1)]) for _ in range(25)]
    head = srv.idle_head()
    srv.stop()
    for f in read_files(srv):
        os.unlink(os.path.join(srv.data_dir, f))
    monkeypatch.setenv("TWINLANE_FAILPOINTS", "projection.orders.rebuild=delay:20")
    srv.start()
    wait_for(lambda: status(srv, "orders")["status"] == "rebuilding" and
             status(srv, "orders")["rebuildPosition"] >= 1, "the orders fold under way",
             lambda: status(srv, "orders"))
    assert status(srv, "orders")["position"] == 0
    assert [f for f in os.listdir(srv.data_dir) if "rebuild" in f]
    srv.kill9()
    monkeypatch.delenv("TWINLANE_FAILPOINTS")
    start_log = os.path.getsize(srv.stderr_path)
    srv.start()
    all_running_at(srv, head)
    log = log_since(srv, start_log)
    assert log.count("projection starts empty; folding the log into a new copy") == 3, log
    assert not [f for f in os.listdir(srv.data_dir) if "rebuild" in f]
    st, _, v = srv.query("/orders/" + placed[-1]["orderId"], head)
    assert st == 200 and v["status"] == "RESERVED", v
    st, _, r = srv.post("/admin/reconcile")
    assert st == 200 and r["clean"] is True, r
