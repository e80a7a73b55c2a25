"""Concurrent commands: one winner per conflicting command, distinct positions for the rest."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import ADDRESS, uid


def test_concurrent_payments_have_exactly_one_winner(server):
    p = server.create_product(uid("prod"), price=3)
    oid = server.place_reserved_order([(p["productId"], 1, 3)])["orderId"]
    n = 30
    barrier = threading.Barrier(n, timeout=20)

    def pay(i):
        barrier.wait()
        st, _, b = server.command(oid, "confirm-payment", {"paymentId": "pay-%d" % i})
        return st, b

    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(pay, range(n), timeout=60))
    statuses = sorted(st for st, _ in results)
    assert statuses.count(200) == 1, results
    assert statuses.count(409) == n - 1, results
    assert all(b["code"] == "ALREADY_PAID" for st, b in results if st == 409), results
    hist = server.get("/orders/%s/history" % oid)[2]
    assert [e["version"] for e in hist] == [1, 2, 3]
    assert [e["type"] for e in hist] == ["OrderPlaced", "OrderReserved", "PaymentConfirmed"]
    winner = next(b for st, b in results if st == 200)
    assert winner["position"] == hist[2]["position"] and winner["version"] == 3


def test_concurrent_pay_and_cancel_are_serialised(server):
    p = server.create_product(uid("prod"), price=3)
    for _ in range(5):
        oid = server.place_reserved_order([(p["productId"], 1, 3)])["orderId"]
        barrier = threading.Barrier(2, timeout=20)

        def run(action):
            barrier.wait()
            return server.command(oid, action)

        with ThreadPoolExecutor(2) as ex:
            pay, cancel = ex.map(run, ["confirm-payment", "cancel"], timeout=60)
        hist = server.get("/orders/%s/history" % oid)[2]
        assert [e["version"] for e in hist] == [1, 2, 3, 4][:len(hist)]
        # Either order is legal (RESERVED->PAID->CANCELLED or RESERVED->CANCELLED, pay refused).
        if pay[0] == 200:
            assert cancel[0] == 200 and len(hist) == 4, (pay, cancel)
            assert pay[2]["version"] in (3, 4) and cancel[2]["version"] in (3, 4)
            assert [e["type"] for e in hist][2:] == ["PaymentConfirmed", "OrderCancelled"], hist
        else:
            assert pay[0] == 409 and pay[2]["code"] == "ORDER_CLOSED", pay
            assert cancel[0] == 200 and cancel[2]["version"] == 3 and len(hist) == 3, (cancel, hist)
    # Every one of the five orders ended cancelled, so the saga gave all their units back.
    head = server.idle_head()
    st, _, v = server.query("/products/" + p["productId"], head)
    assert st == 200 and v["stock"] == 100 and v["available"] == 100 and v["salesCount"] == 0, v


def test_concurrent_placements_all_succeed_with_distinct_positions(server):
    p = server.create_product(uid("prod"), price=1.25, stock=10000)  # enough for every order
    threads, per_thread = 8, 15

    def worker(t):
        out = []
        for i in range(per_thread):
            out.append(server.place_order([(p["productId"], 1 + i % 3, 1.25)]))
        return out

    with ThreadPoolExecutor(threads) as ex:
        orders = [o for chunk in ex.map(worker, range(threads), timeout=120) for o in chunk]
    assert len(orders) == threads * per_thread
    positions = [o["position"] for o in orders]
    assert len(set(positions)) == len(positions)
    assert len({o["orderId"] for o in orders}) == len(orders)
    head = server.idle_head(timeout=30)  # the saga has reserved every order
    events = server.log_events()
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["position"] == head
    by_pos = {e["position"]: e for e in events}
    for o in orders:
        e = by_pos[o["position"]]
        assert e["stream"] == "order-" + o["orderId"] and e["type"] == "OrderPlaced", e
    settled = [e for e in events if e["type"] in ("OrderReserved", "OrderRejected")]
    assert sorted(e["stream"] for e in settled) == sorted("order-" + o["orderId"] for o in orders)
    assert {e["type"] for e in settled} == {"OrderReserved"}
    units = sum(1 + i % 3 for i in range(per_thread)) * threads
    st, _, v = server.query("/products/" + p["productId"], head)
    assert st == 200
    assert v["salesCount"] == units
    assert v["stock"] == 10000 and v["available"] == 10000 - units, v


def test_concurrent_duplicate_product_creation_has_one_winner(server):
    pid = uid("prod")
    n = 12
    barrier = threading.Barrier(n, timeout=20)

    def create(i):
        barrier.wait()
        return server.post("/products", {"productId": pid, "name": "N%d" % i, "category": "c",
                                         "price": 1, "stock": i})

    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(create, range(n), timeout=60))
    statuses = [st for st, _, _ in results]
    assert statuses.count(201) == 1, statuses
    assert statuses.count(409) == n - 1, statuses
    evs = server.get("/streams/product-" + pid)[2]
    assert len(evs) == 1


def test_concurrent_requests_with_one_idempotency_key_append_once(server):
    p = server.create_product(uid("prod"), price=1)
    body = {"customerId": str(uuid.uuid4()), "items": [{"productId": p["productId"], "quantity": 1, "price": 1}],
            "shippingAddress": dict(ADDRESS)}
    key = uuid.uuid4().hex
    n = 10
    barrier = threading.Barrier(n, timeout=20)

    def place(_):
        barrier.wait()
        return server.post("/orders", body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(n) as ex:
        results = list(ex.map(place, range(n), timeout=60))
    placed = [e for e in server.log_events() if e["type"] == "OrderPlaced"]
    assert len(placed) == 1, placed
    assert all(st == 201 for st, _, _ in results), [(st, b) for st, _, b in results]
    assert len({b["orderId"] for _, _, b in results}) == 1


def test_many_waiting_queries_do_not_starve_commands(server):
    """Queries waiting for a future position must not hold every worker: the write they wait for has
    to get through, and health checks keep answering meanwhile."""
    import time
    p = server.create_product(uid("prod"), price=1)
    target = server.log_head() + 1
    n = 64

    def wait_query(_):
        return server.get("/products/%s?minPosition=%d&waitMs=9000" % (p["productId"], target), timeout=30)

    with ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(wait_query, i) for i in range(n)]
        time.sleep(0.7)
        t0 = time.monotonic()
        st, _, _ = server.get("/health", timeout=30)
        health_s = time.monotonic() - t0
        assert st == 200
        t0 = time.monotonic()
        o = server.place_order([(p["productId"], 1, 1)])
        write_s = time.monotonic() - t0
        results = [f.result(timeout=60) for f in futs]
    assert o["position"] == target
    assert health_s < 2.0, "health took %.1fs while queries waited" % health_s
    assert write_s < 2.0, "the command took %.1fs while queries waited" % write_s
    assert [st for st, _, _ in results] == [200] * n, [(st, b) for st, _, b in results if st != 200][:3]


def test_log_tail_never_shows_a_gap_while_writes_are_in_flight(server):
    """A reader following /log during concurrent commits sees positions 1, 2, 3... with no gap that
    is filled later: an event becomes visible only once everything before it is."""
    import time
    p = server.create_product(uid("prod"), price=1)
    stop = threading.Event()

    def writer(_):
        n = 0
        deadline = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < deadline:
            server.place_order([(p["productId"], 1, 1)])
            n += 1
        return n

    seen = []
    with ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(writer, i) for i in range(6)]
        t_end = time.monotonic() + 1.5
        pos = 1
        while time.monotonic() < t_end:
            st, _, page = server.get("/log", {"fromPosition": pos, "limit": 1000})
            assert st == 200
            got = [e["position"] for e in page]
            assert got == list(range(pos, pos + len(got))), "gap in the log tail: %r" % got[:20]
            seen.extend(got)
            pos += len(got)
        stop.set()
        written = sum(f.result(timeout=30) for f in futs)
    assert written > 0 and len(seen) > 1
    assert seen == list(range(1, len(seen) + 1))


def test_read_your_writes_under_concurrency(server):
    """Each writer reads its own order back with minPosition, and meta.position never goes back."""
    import time
    p = server.create_product(uid("prod"), price=1)

    def worker(_):
        last_meta = 0
        for _ in range(15):
            o = server.place_order([(p["productId"], 1, 1)])
            st, _, v = server.get("/orders/%s?minPosition=%d&waitMs=5000" % (o["orderId"], o["position"]))
            assert st == 200 and v["orderId"] == o["orderId"], v
            assert v["meta"]["position"] >= o["position"]
            assert v["meta"]["position"] >= last_meta
            last_meta = v["meta"]["position"]
        return True

    with ThreadPoolExecutor(6) as ex:
        assert all(ex.map(worker, range(6), timeout=120))


def test_a_tiny_order_cache_keeps_the_orders_of_the_batch_in_flight(make_server):
    """With --order-cache 1, one group commit that touches two orders must not evict the first:
    its staged events are not in the log yet, so reloading it from the log would decide against
    stale state (here a second payment, which used to fail the whole batch with 503)."""
    srv = make_server(["--order-cache", "1", "--enable-failpoints"])
    pid = srv.create_product(uid("prod"), stock=10)["productId"]
    a = srv.place_reserved_order([(pid, 1, 3)])["orderId"]
    b = srv.place_reserved_order([(pid, 1, 3)])["orderId"]
    srv.idle_head()
    # A slow commit holds the writer: the three payments queue up and are decided as one batch.
    st, _, fp = srv.req("PUT", "/admin/failpoints/log.append", {"action": "delay:300"})
    assert st == 200, fp
    results = {}

    def post(name, path, body):
        results[name] = srv.post(path, body)

    threads = [threading.Thread(target=post, args=("restock", "/products/%s/restock" % pid,
                                                   {"quantity": 1}))]
    threads[0].start()
    time.sleep(0.1)
    for name, oid in (("payA", a), ("payB", b), ("payA2", a)):
        t = threading.Thread(target=post, args=(name, "/orders/%s/confirm-payment" % oid,
                                                {"paymentId": "pay-" + name}))
        t.start()
        threads.append(t)
        time.sleep(0.02)
    for t in threads:
        t.join(timeout=30)
    st, _, fp = srv.req("DELETE", "/admin/failpoints/log.append")
    assert st == 204, fp
    statuses = {k: (v[0], v[2].get("code")) for k, v in results.items()}
    assert statuses["restock"][0] == 200, statuses
    assert statuses["payA"][0] == 200 and statuses["payB"][0] == 200, statuses
    assert statuses["payA2"] == (409, "ALREADY_PAID"), statuses
    for oid in (a, b):
        hist = srv.get("/orders/%s/history" % oid)[2]
        assert [e["type"] for e in hist] == ["OrderPlaced", "OrderReserved", "PaymentConfirmed"]
