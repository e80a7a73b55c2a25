"""Inventory: the order-fulfilment saga reserves stock for every order, with compensation.

A flash sale must never sell a unit twice, under any concurrency and across kill -9; cancelling
gives units back; shipping consumes them; every saga event is traceable to its cause.
(docs/sagas.md, the "Inventory" section of docs/api-notes.md, ../shared/API.md.)
"""

import collections
import http.client
import itertools
import json
import os
import signal
import threading
import time
import uuid

import pytest

from conftest import ADDRESS, D, assert_meta, assert_problem, error_fields, uid, word

THREADS = 50
SETTLE_TIMEOUT = 60.0


# ---------------------------------------------------------------------- helpers
def order_body(pid, qty=1, price=5.00):
    return {"customerId": str(uuid.uuid4()),
            "items": [{"productId": pid, "quantity": qty, "price": price}],
            "shippingAddress": dict(ADDRESS)}


def place_concurrently(port, bodies, threads=THREADS, on_ack=None, stop_on_error=False):
    """POSTs every body of `bodies` to /orders from `threads` client threads, each with its own
    keep-alive HTTP connection to `port` (fixed: never the next incarnation of a server).

    Returns a list parallel to `bodies`: (status, decoded body) for an answer, ("error", text)
    when the request got no answer, None when it was never sent (stop_on_error: a thread stops
    at its first connection error, as after a kill -9).  on_ack(index, answer) runs for each 201.
    """
    results = [None] * len(bodies)
    counter = itertools.count()
    lock = threading.Lock()

    def take():
        with lock:
            return next(counter)

    def worker():
        conn = None
        try:
            while True:
                i = take()
                if i >= len(bodies):
                    return
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request("POST", "/orders", body=json.dumps(bodies[i]),
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    results[i] = ("error", repr(e))
                    if conn is not None:
                        conn.close()
                        conn = None
                    if stop_on_error:
                        return
                    continue
                try:
                    body = json.loads(data, parse_float=D)
                except ValueError:
                    body = data.decode("utf-8", "replace")
                results[i] = (resp.status, body)
                if resp.status == 201 and on_ack is not None:
                    on_ack(i, body)
        finally:
            if conn is not None:
                conn.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
        assert not t.is_alive(), "a client thread is stuck"
    return results


def settle_all(server, order_ids, timeout=SETTLE_TIMEOUT):
    """Polls GET /orders/{id}/state (strongly consistent) on one keep-alive connection until no
    order of `order_ids` is PENDING any more; returns {orderId: state}.  Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(order_ids)
    states = {}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        while pending:
            still = []
            for oid in pending:
                st, _, s = server.req("GET", "/orders/%s/state" % oid, conn=conn)
                assert st == 200, (oid, st, s)
                if s["status"] == "PENDING":
                    still.append(oid)
                else:
                    states[oid] = s
            pending = still
            if pending:
                if time.monotonic() > deadline:
                    pytest.fail("%d orders still PENDING after %.0f s, e.g. %s"
                                % (len(pending), timeout, pending[:3]))
                time.sleep(0.02)
    finally:
        conn.close()
    return states


def stream_events(server, stream, page=1000):
    """Every event of one stream, oldest first (paged by version)."""
    out = []
    ver = 1
    for _ in range(10000):
        st, _, body = server.get("/streams/" + stream, {"fromVersion": ver, "limit": page})
        assert st == 200, (st, body)
        assert isinstance(body, list), body
        out.extend(body)
        if len(body) < page:
            return out
        ver = body[-1]["version"] + 1
    raise AssertionError("stream %s longer than expected" % stream)


def fold_product(events):
    """Replays a product stream and checks the stock invariants after every event: the versions
    are 1..n, reserved units never exceed stock (available never below zero), an order holds at
    most one reservation, a release or commit gives back exactly what the order held, and a
    rejection happened only when the quantity really did not fit.  Returns the final fold."""
    stock = None
    held = {}  # orderId -> units reserved now
    reserved_count = collections.Counter()  # orderId -> StockReserved events
    rejected = set()
    released, committed = set(), set()
    for n, e in enumerate(events, 1):
        assert e["version"] == n, "product stream versions are not 1..n: %r" % (e,)
        t, d = e["type"], e["data"]
        where = "at version %d (%s %r)" % (n, t, d)
        if n == 1:
            assert t == "ProductCreated", where
        if t == "ProductCreated":
            assert n == 1, where
            stock = d["stock"]
        elif t == "ProductRestocked":
            assert d["quantity"] >= 1, where
            stock += d["quantity"]
        elif t == "StockReserved":
            oid = d["orderId"]
            assert oid not in held, "order reserved twice while holding a reservation " + where
            assert d["quantity"] >= 1, where
            reserved_count[oid] += 1
            held[oid] = d["quantity"]
        elif t == "StockReservationRejected":
            avail = stock - sum(held.values())
            assert d["quantity"] > avail, "a reservation that fit was rejected " + where
            assert d.get("available") == avail, "recorded available is wrong " + where
            rejected.add(d["orderId"])
        elif t in ("StockReleased", "StockCommitted"):
            oid = d["orderId"]
            assert oid in held, "%s for an order holding nothing %s" % (t, where)
            assert d["quantity"] == held[oid], "%s of another quantity than held %s" % (t, where)
            q = held.pop(oid)
            if t == "StockCommitted":
                stock -= q
                committed.add(oid)
            else:
                released.add(oid)
        else:
            raise AssertionError("unexpected event on a product stream " + where)
        reserved = sum(held.values())
        assert stock >= 0, "stock below zero " + where
        assert 0 <= reserved <= stock, "reserved %d > stock %d %s" % (reserved, stock, where)
        assert stock - reserved >= 0, "available below zero " + where
    return {"stock": stock, "held": held, "available": stock - sum(held.values()),
            "reserved_count": reserved_count, "rejected": rejected, "released": released,
            "committed": committed}


def product_view(server, pid, min_position):
    st, _, v = server.query("/products/" + pid, min_position)
    assert st == 200, (st, v)
    assert_meta(v)
    return v


def check_stock_answers_caused_by_placement(events, pid):
    """Every StockReserved / StockReservationRejected of product `pid` names OrderPlaced's eventId
    as its causationId and keeps the order's correlationId."""
    placed = {e["data"]["orderId"]: e for e in events if e["type"] == "OrderPlaced"}
    n = 0
    for e in events:
        if e["stream"] != "product-" + pid:
            continue
        if e["type"] not in ("StockReserved", "StockReservationRejected"):
            continue
        p = placed.get(e["data"]["orderId"])
        assert p is not None, "stock answer for an order never placed: %r" % (e,)
        assert e["metadata"]["causationId"] == p["metadata"]["eventId"], (e, p)
        assert e["metadata"]["correlationId"] == p["metadata"]["correlationId"], (e, p)
        assert e["position"] > p["position"], (e, p)
        n += 1
    return n


# ---------------------------------------------------------------------- 1. flash sale
def test_flash_sale_sells_exactly_the_stock(server):
    stock, n_orders = 100, 1000
    pid = server.create_product(uid("flash"), price=5.00, stock=stock)["productId"]
    bodies = [order_body(pid) for _ in range(n_orders)]

    t0 = time.monotonic()
    results = place_concurrently(server.port, bodies)
    not_201 = [(i, r) for i, r in enumerate(results) if r is None or r[0] != 201]
    assert not not_201, "%d orders not acknowledged 201, e.g. %r" % (len(not_201), not_201[:3])
    order_ids = [r[1]["orderId"] for r in results]
    assert len(set(order_ids)) == n_orders, "duplicate order ids in the answers"
    assert all(r[1]["status"] == "PENDING" for r in results)

    states = settle_all(server, order_ids)
    print("1000 orders placed and settled in %.2f s" % (time.monotonic() - t0))
    by_status = collections.Counter(s["status"] for s in states.values())
    assert by_status == {"RESERVED": stock, "REJECTED": n_orders - stock}, by_status
    for oid, s in states.items():
        if s["status"] == "REJECTED":
            assert s["rejectionReason"] == "OUT_OF_STOCK", s
            assert s["version"] == 2, s
        else:
            assert s["rejectionReason"] is None, s
            assert s["version"] == 2, s

    head = server.idle_head(timeout=SETTLE_TIMEOUT)
    v = product_view(server, pid, head)
    assert (v["stock"], v["available"], v["inStock"]) == (stock, 0, False), v

    # The product's stream, folded: never below zero, nobody reserved twice.
    f = fold_product(stream_events(server, "product-" + pid))
    assert f["stock"] == stock and f["available"] == 0, f
    twice = {o: c for o, c in f["reserved_count"].items() if c > 1}
    assert not twice, "orders reserved more than once: %r" % twice
    reserved_orders = {o for o, s in states.items() if s["status"] == "RESERVED"}
    assert set(f["held"]) == reserved_orders
    assert f["rejected"] == set(order_ids) - reserved_orders
    assert not f["released"] and not f["committed"]

    # One settlement per order in the log, each answer caused by its OrderPlaced.
    events = server.log_events()
    settled = collections.Counter(e["data"]["orderId"] for e in events
                                  if e["type"] in ("OrderReserved", "OrderRejected"))
    assert set(settled) == set(order_ids) and set(settled.values()) == {1}, \
        "orders settled other than once: %r" % {o: c for o, c in settled.items() if c != 1}
    assert check_stock_answers_caused_by_placement(events, pid) == n_orders


# ---------------------------------------------------------------------- 2. cancellation
def test_cancelling_reserved_orders_frees_their_units(shared):
    stock = 20
    pid = shared.create_product(uid("cancel"), price=3.00, stock=stock)["productId"]
    results = place_concurrently(shared.port, [order_body(pid, price=3.00) for _ in range(40)],
                                 threads=10)
    assert all(r is not None and r[0] == 201 for r in results), results
    states = settle_all(shared, [r[1]["orderId"] for r in results])
    reserved = sorted(o for o, s in states.items() if s["status"] == "RESERVED")
    assert len(reserved) == stock, collections.Counter(s["status"] for s in states.values())
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"], v["inStock"]) == (stock, 0, False), v

    for oid in reserved[:10]:
        st, _, b = shared.command(oid, "cancel")
        assert st == 200 and b["status"] == "CANCELLED", (st, b)
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"], v["inStock"]) == (stock, 10, True), v
    for oid in reserved[:10]:
        st, _, s = shared.get("/orders/%s/state" % oid)
        assert st == 200 and s["status"] == "CANCELLED", s
    f = fold_product(stream_events(shared, "product-" + pid))
    assert f["released"] == set(reserved[:10]), f["released"]
    assert f["available"] == 10

    # The freed units go to the next 10 orders; the 11th finds none left.
    for _ in range(10):
        shared.place_reserved_order([(pid, 1, 3.00)])
    late = shared.place_order([(pid, 1, 3.00)])
    s = shared.wait_settled(late["orderId"])
    assert s["status"] == "REJECTED" and s["rejectionReason"] == "OUT_OF_STOCK", s
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"], v["inStock"]) == (stock, 0, False), v
    f = fold_product(stream_events(shared, "product-" + pid))
    assert f["available"] == 0 and len(f["held"]) == stock, f


# ---------------------------------------------------------------------- 3. kill -9 mid-sale
def test_flash_sale_survives_kill9(server):
    stock, plan, kill_after = 100, 600, 200
    pid = server.create_product(uid("crash"), price=5.00, stock=stock)["productId"]
    acked = {}  # orderId -> index
    lock = threading.Lock()
    enough = threading.Event()
    victim = server.proc.pid

    def on_ack(i, body):
        with lock:
            acked[body["orderId"]] = i
            if len(acked) >= kill_after and not enough.is_set():
                # SIGKILL right here, from the client thread that saw the 200th ack, so that
                # the rest of the plan is surely still in flight; the main thread reaps.
                os.kill(victim, signal.SIGKILL)
                enough.set()

    port = server.port
    runner_out = {}
    runner = threading.Thread(
        target=lambda: runner_out.setdefault(
            "r", place_concurrently(port, [order_body(pid) for _ in range(plan)],
                                    on_ack=on_ack, stop_on_error=True)),
        daemon=True)
    runner.start()
    assert enough.wait(timeout=30), "only %d orders acknowledged in 30 s" % len(acked)
    server.kill9()
    runner.join(timeout=60)
    assert not runner.is_alive()
    results = runner_out["r"]
    with lock:
        acked_before = dict(acked)
    no_answer = sum(1 for r in results if r is not None and r[0] == "error")
    other = [r for r in results if r is not None and r[0] not in (201, "error")]
    assert not other, "answers other than 201 before the crash: %r" % other[:3]
    print("before the kill: %d acknowledged, %d without answer, %d never sent"
          % (len(acked_before), no_answer, sum(1 for r in results if r is None)))
    assert len(acked_before) < plan, "the kill came after the whole plan was acknowledged"

    server.start()
    for oid in acked_before:
        st, _, s = server.get("/orders/%s/state" % oid)
        assert st == 200, "acknowledged order %s lost by kill -9: %r" % (oid, (st, s))

    rest = plan - len(acked_before)
    results2 = place_concurrently(server.port, [order_body(pid) for _ in range(rest)])
    assert all(r is not None and r[0] == 201 for r in results2), \
        [r for r in results2 if r is None or r[0] != 201][:3]
    acked_after = [r[1]["orderId"] for r in results2]
    all_acked = set(acked_before) | set(acked_after)
    assert len(all_acked) == plan

    # Orders whose request died with the server may exist or not: count what the log holds.
    events = server.log_events()
    placed = [e["data"]["orderId"] for e in events if e["type"] == "OrderPlaced"]
    assert len(placed) == len(set(placed)), "an order was placed twice"
    existing = set(placed)
    assert all_acked <= existing
    assert len(existing) <= plan + no_answer, (len(existing), plan, no_answer)
    print("after the restart: %d orders exist, %d of them placed by a request that got no answer"
          % (len(existing), len(existing - all_acked)))

    states = settle_all(server, sorted(existing))
    by_status = collections.Counter(s["status"] for s in states.values())
    assert by_status == {"RESERVED": min(stock, len(existing)),
                         "REJECTED": len(existing) - min(stock, len(existing))}, by_status
    assert all(s["rejectionReason"] == "OUT_OF_STOCK"
               for s in states.values() if s["status"] == "REJECTED")

    head = server.idle_head(timeout=SETTLE_TIMEOUT)
    v = product_view(server, pid, head)
    assert (v["stock"], v["available"], v["inStock"]) == (stock, 0, False), v
    f = fold_product(stream_events(server, "product-" + pid))
    assert f["available"] == 0 and f["stock"] == stock
    assert set(f["held"]) == {o for o, s in states.items() if s["status"] == "RESERVED"}
    assert not {o: c for o, c in f["reserved_count"].items() if c > 1}
    events = server.log_events()
    settled = collections.Counter(e["data"]["orderId"] for e in events
                                  if e["type"] in ("OrderReserved", "OrderRejected"))
    assert set(settled) == existing and set(settled.values()) == {1}, \
        {o: c for o, c in settled.items() if c != 1}


# ---------------------------------------------------------------------- 4. causation
def test_rejected_order_causation_chain(shared):
    pid = shared.create_product(uid("chain"), price=2.00, stock=1)["productId"]
    shared.place_reserved_order([(pid, 1, 2.00)])
    corr = "chain-" + uuid.uuid4().hex
    b = shared.place_order([(pid, 1, 2.00)], headers={"X-Correlation-Id": corr})
    oid = b["orderId"]
    s = shared.wait_settled(oid)
    assert s["status"] == "REJECTED" and s["rejectionReason"] == "OUT_OF_STOCK", s
    shared.idle_head()

    chain = [e for e in shared.log_events(from_position=b["position"])
             if e["metadata"]["correlationId"] == corr]
    assert [(e["stream"], e["type"]) for e in chain] == [
        ("order-" + oid, "OrderPlaced"),
        ("product-" + pid, "StockReservationRejected"),
        ("order-" + oid, "OrderRejected"),
    ], chain
    placed, refused, rejected = chain
    assert placed["position"] == b["position"]
    assert placed["metadata"]["causationId"] is None, placed
    # One saga command (reserve_order) decided both: both are caused by OrderPlaced and were
    # appended together, back to back.
    assert refused["metadata"]["causationId"] == placed["metadata"]["eventId"], refused
    assert rejected["metadata"]["causationId"] == placed["metadata"]["eventId"], rejected
    assert rejected["position"] == refused["position"] + 1, (refused, rejected)
    assert refused["data"]["orderId"] == oid and refused["data"]["quantity"] == 1, refused
    assert refused["data"]["available"] == 0, refused
    assert rejected["data"]["reason"] == "OUT_OF_STOCK", rejected
    assert len({e["metadata"]["eventId"] for e in chain}) == 3

    st, _, hist = shared.get("/orders/%s/history" % oid)
    assert st == 200, hist
    assert [e["type"] for e in hist] == ["OrderPlaced", "OrderRejected"], hist
    assert hist[1]["metadata"]["causationId"] == placed["metadata"]["eventId"], hist

    st, _, view = shared.query("/orders/" + oid, rejected["position"])
    assert st == 200, view
    assert view["status"] == "REJECTED" and view["rejectionReason"] == "OUT_OF_STOCK", view


def test_partly_reservable_order_reserves_nothing(shared):
    """All or nothing: a product that has the units holds nothing for an order that another
    product cannot serve, so there is nothing to compensate."""
    p1 = shared.create_product(uid("half"), price=4.00, stock=5)["productId"]
    p2 = shared.create_product(uid("none"), price=6.00, stock=0)["productId"]
    corr = "comp-" + uuid.uuid4().hex
    b = shared.place_order([(p1, 3, 4.00), (p2, 1, 6.00)], headers={"X-Correlation-Id": corr})
    oid = b["orderId"]
    s = shared.wait_settled(oid)
    assert s["status"] == "REJECTED" and s["rejectionReason"] == "OUT_OF_STOCK", s
    head = shared.idle_head()

    v1 = product_view(shared, p1, head)
    assert (v1["stock"], v1["available"], v1["inStock"]) == (5, 5, True), v1
    v2 = product_view(shared, p2, head)
    assert (v2["stock"], v2["available"], v2["inStock"]) == (0, 0, False), v2

    s1 = stream_events(shared, "product-" + p1)
    assert [e["type"] for e in s1] == ["ProductCreated"], s1
    s2 = stream_events(shared, "product-" + p2)
    assert [e["type"] for e in s2] == ["ProductCreated", "StockReservationRejected"], s2
    assert s2[1]["data"] == {"productId": p2, "orderId": oid, "quantity": 1, "available": 0}, s2

    hist = stream_events(shared, "order-" + oid)
    assert [e["type"] for e in hist] == ["OrderPlaced", "OrderRejected"], hist
    for e in (s2[1], hist[1]):
        assert e["metadata"]["causationId"] == hist[0]["metadata"]["eventId"], e
    assert hist[1]["position"] == s2[1]["position"] + 1
    for e in s2[1:] + hist:
        assert e["metadata"]["correlationId"] == corr, e


def test_order_of_several_products_is_reserved_in_one_step(shared):
    p1 = shared.create_product(uid("two-a"), price=1.00, stock=10)["productId"]
    p2 = shared.create_product(uid("two-b"), price=2.00, stock=10)["productId"]
    # p1 listed twice: one reservation of the sum.
    b = shared.place_order([(p1, 2, 1.00), (p2, 4, 2.00), (p1, 1, 1.00)])
    oid = b["orderId"]
    s = shared.wait_settled(oid)
    assert s["status"] == "RESERVED", s
    head = shared.idle_head()
    assert product_view(shared, p1, head)["available"] == 7
    assert product_view(shared, p2, head)["available"] == 6

    placed = stream_events(shared, "order-" + oid)[0]
    step = [e for e in shared.log_events(from_position=b["position"] + 1)
            if e["metadata"]["causationId"] == placed["metadata"]["eventId"]]
    assert [(e["stream"], e["type"]) for e in step] == [
        ("product-" + p1, "StockReserved"), ("product-" + p2, "StockReserved"),
        ("order-" + oid, "OrderReserved")], step
    assert [e["position"] for e in step] == list(range(step[0]["position"],
                                                       step[0]["position"] + 3)), step
    assert step[0]["data"] == {"productId": p1, "orderId": oid, "quantity": 3}, step[0]
    assert step[1]["data"] == {"productId": p2, "orderId": oid, "quantity": 4}, step[1]


def test_flash_sale_of_two_products_is_all_or_nothing(server):
    """Orders of two scarce products, concurrently: every order holds both or neither, and
    neither product is ever oversold."""
    pa = server.create_product(uid("pair-a"), price=1.00, stock=30)["productId"]
    pb = server.create_product(uid("pair-b"), price=1.00, stock=50)["productId"]
    bodies = []
    for _ in range(200):
        body = order_body(pa, qty=1, price=1.00)
        body["items"].append({"productId": pb, "quantity": 2, "price": 1.00})
        bodies.append(body)
    results = place_concurrently(server.port, bodies)
    assert all(r is not None and r[0] == 201 for r in results), \
        [r for r in results if r is None or r[0] != 201][:3]
    states = settle_all(server, [r[1]["orderId"] for r in results])
    reserved = {o for o, s in states.items() if s["status"] == "RESERVED"}
    assert len(reserved) == 25, collections.Counter(s["status"] for s in states.values())
    fa = fold_product(stream_events(server, "product-" + pa))
    fb = fold_product(stream_events(server, "product-" + pb))
    assert set(fa["held"]) == reserved and set(fb["held"]) == reserved
    assert (fa["available"], fb["available"]) == (5, 0), (fa["available"], fb["available"])
    assert not fa["released"] and not fb["released"], "a rejected order held stock"
    assert set(fb["rejected"]) == set(states) - reserved


# ---------------------------------------------------------------------- 5. payment and shipping
def test_shipping_consumes_the_reserved_units(shared):
    pid = shared.create_product(uid("ship"), price=7.50, stock=10)["productId"]
    b = shared.place_reserved_order([(pid, 3, 7.50)])
    oid = b["orderId"]
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"], v["inStock"]) == (10, 7, True), v

    st, _, r = shared.command(oid, "ship")
    assert_problem(st, _, r, 409, "NOT_PAID")
    st, _, r = shared.command(oid, "confirm-payment")
    assert st == 200 and r["status"] == "PAID", r
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"]) == (10, 7), v
    st, _, r = shared.command(oid, "ship")
    assert st == 200 and r["status"] == "SHIPPED", r
    v = product_view(shared, pid, shared.idle_head())
    assert (v["stock"], v["available"], v["inStock"]) == (7, 7, True), v

    events = stream_events(shared, "product-" + pid)
    assert [e["type"] for e in events] == ["ProductCreated", "StockReserved", "StockCommitted"]
    shipped = [e for e in stream_events(shared, "order-" + oid) if e["type"] == "OrderShipped"]
    assert len(shipped) == 1
    assert events[2]["data"]["quantity"] == 3 and events[2]["data"]["orderId"] == oid, events[2]
    assert events[2]["metadata"]["causationId"] == shipped[0]["metadata"]["eventId"], events[2]
    f = fold_product(events)
    assert (f["stock"], f["available"], f["committed"]) == (7, 7, {oid}), f

    # Shipped units are gone: a 7-unit order fits, an 8-unit one does not.
    big = shared.place_order([(pid, 8, 7.50)])
    s = shared.wait_settled(big["orderId"])
    assert s["status"] == "REJECTED", s
    shared.place_reserved_order([(pid, 7, 7.50)])
    st, _, r = shared.command(oid, "confirm-payment")
    assert_problem(st, _, r, 409, "ALREADY_PAID")


def test_commands_on_a_rejected_order_are_refused(shared):
    pid = shared.create_product(uid("closed"), price=1.00, stock=0)["productId"]
    b = shared.place_order([(pid, 1, 1.00)])
    oid = b["orderId"]
    s = shared.wait_settled(oid)
    assert s["status"] == "REJECTED", s
    head = shared.idle_head()
    for action in ("confirm-payment", "ship", "cancel"):
        st, h, r = shared.command(oid, action)
        assert_problem(st, h, r, 409, "ORDER_CLOSED")
    # A refused command appends nothing.
    st, _, after = shared.get("/log", {"fromPosition": head + 1, "limit": 10})
    assert st == 200 and after == [], after
    st, _, s2 = shared.get("/orders/%s/state" % oid)
    assert s2["status"] == "REJECTED" and s2["version"] == s["version"], s2


# ---------------------------------------------------------------------- 6. inStock filter
def test_products_in_stock_filter(shared):
    cat = word("cat")
    plenty = shared.create_product(uid("plenty"), category=cat, price=2.00, stock=5)["productId"]
    empty = shared.create_product(uid("empty"), category=cat, price=2.00, stock=0)["productId"]
    sold = shared.create_product(uid("sold"), category=cat, price=2.00, stock=1)["productId"]
    shared.place_reserved_order([(sold, 1, 2.00)])
    head = shared.idle_head()

    def listed(**params):
        p = {"category": cat, "limit": 100}
        p.update(params)
        st, _, body = shared.query("/products", head, p)
        assert st == 200, body
        assert_meta(body)
        return {i["productId"]: i for i in body["items"]}

    everything = listed()
    assert set(everything) == {plenty, empty, sold}, everything
    assert {p: (i["available"], i["inStock"]) for p, i in everything.items()} == {
        plenty: (5, True), empty: (0, False), sold: (0, False)}
    yes = listed(inStock="true")
    assert set(yes) == {plenty}, yes
    assert all(i["available"] > 0 and i["inStock"] is True for i in yes.values())
    no = listed(inStock="false")
    assert set(no) == {empty, sold}, no
    assert all(i["available"] == 0 and i["inStock"] is False for i in no.values())

    for bad in ("bogus", "TRUE", "1", ""):
        st, h, body = shared.get("/products", {"inStock": bad})
        assert_problem(st, h, body, 400)
        assert "inStock" in error_fields(body), body
