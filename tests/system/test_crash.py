"""kill -9 during concurrent writes: no acknowledged command is lost, none is applied twice, and the
order-fulfilment saga settles every order exactly once after the restart."""

import collections
import http.client
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import ADDRESS, uid

WRITERS = 8
WRITE_SECONDS = 3.0
CYCLES = 3


def _writer(server, port, products, stop, acked, lock):
    """Places orders until `stop` is set or the server goes away; records every 201."""
    rnd = random.Random()
    deadline = time.monotonic() + WRITE_SECONDS + 5
    while not stop.is_set() and time.monotonic() < deadline:
        pid = rnd.choice(products)
        body = {"customerId": str(uuid.uuid4()),
                "items": [{"productId": pid, "quantity": rnd.randint(1, 3), "price": 4.99}],
                "shippingAddress": dict(ADDRESS)}
        try:
            # `port` is fixed for the cycle: a writer must never talk to the next incarnation.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("POST", "/orders", body=json.dumps(body),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            if stop.is_set():
                return
            time.sleep(0.01)
            continue
        if resp.status == 201:
            b = json.loads(data)
            with lock:
                acked[b["orderId"]] = b["position"]
        elif resp.status >= 500 and stop.is_set():
            return


def test_acknowledged_orders_survive_kill9(server):
    products = [server.create_product(uid("prod"), price=4.99)["productId"] for _ in range(3)]
    acked = {}
    lock = threading.Lock()
    for cycle in range(CYCLES):
        stop = threading.Event()
        port = server.port
        before = len(acked)
        old = list(acked)
        with ThreadPoolExecutor(WRITERS) as ex:
            futs = [ex.submit(_writer, server, port, products, stop, acked, lock) for _ in range(WRITERS)]
            time.sleep(random.uniform(0.6, 0.9) * WRITE_SECONDS)
            server.kill9()
            stop.set()
            for f in futs:
                f.result(timeout=30)
        assert len(acked) > before, "cycle %d acknowledged no order before the kill" % cycle
        print("cycle %d: %d orders acknowledged" % (cycle, len(acked) - before))
        server.start()

        # After the restart the saga resumes from its checkpoint and settles whatever was left.
        head = server.idle_head(timeout=30)
        events = server.log_events()
        positions = [e["position"] for e in events]
        assert positions == list(range(1, len(events) + 1)), "log positions have gaps after kill -9"
        placed = collections.Counter(e["stream"] for e in events if e["type"] == "OrderPlaced")
        dupes = {s: n for s, n in placed.items() if n != 1}
        assert not dupes, "orders placed more than once: %r" % dupes
        by_pos = {e["position"]: e for e in events}
        missing = [oid for oid in acked if placed.get("order-" + oid) != 1]
        assert not missing, "cycle %d: %d acknowledged orders lost, e.g. %r" % (cycle, len(missing), missing[:5])
        for oid, pos in acked.items():
            e = by_pos.get(pos)
            assert e is not None and e["stream"] == "order-" + oid and e["type"] == "OrderPlaced", (oid, pos, e)
        assert positions[-1] == head
        status = _check_settlement(events, products, stock=100)

        def visible(oid):
            st, _, v = server.query("/orders/" + oid, head, wait_ms=10000)
            return oid, st, v

        with ThreadPoolExecutor(4) as ex:
            check = [oid for oid in acked if oid not in set(old)] + random.sample(old, min(300, len(old)))
            results = list(ex.map(visible, check, timeout=120))
        bad = [(oid, st) for oid, st, v in results if st != 200 or v.get("orderId") != oid]
        assert not bad, "acknowledged orders missing from the read lane: %r" % bad[:5]
        # Read models applied every event exactly once (checkpoint and change in one transaction).
        # Rejected orders do not count (counting rule: live orders only).
        units = collections.Counter()
        reserved_units = collections.Counter()
        dates = collections.Counter()
        for e in events:
            if e["type"] == "OrderPlaced" and status[e["data"]["orderId"]] != "REJECTED":
                dates[e["recordedAt"][:10]] += 1
                for it in e["data"]["items"]:
                    units[it["productId"]] += it["quantity"]
                    reserved_units[it["productId"]] += it["quantity"]
        for pid in products:
            st, _, v = server.query("/products/" + pid, head)
            assert st == 200 and v["salesCount"] == units[pid], (cycle, pid, v, units[pid])
            assert v["stock"] == 100 and v["available"] == 100 - reserved_units[pid], (cycle, pid, v)
        st, _, d = server.query("/sales/daily", head, {"from": min(dates), "to": max(dates)})
        assert st == 200, d
        counts = {x["date"]: x["orderCount"] for x in d["days"]}
        assert all(counts.get(k) == n for k, n in dates.items()), (cycle, counts, dates)
        # The write model is consistent too: a new command after the crash works, and lands right
        # after the head (the saga is idle and does not react to payments).
        reserved = [oid for oid in acked if status[oid] == "RESERVED"]
        rejected = [oid for oid in acked if status[oid] == "REJECTED"]
        assert reserved or rejected
        if reserved:
            st, _, b = server.command(random.choice(reserved), "confirm-payment")
            assert st == 200 and b["position"] == head + 1 and b["version"] == 3, b
        if rejected:
            st, _, b = server.command(random.choice(rejected), "confirm-payment")
            assert st == 409 and b["code"] == "ORDER_CLOSED", b


def _check_settlement(events, products, stock):
    """Folds the log: every placed order settled exactly once (RESERVED or REJECTED), no product
    ever had more units reserved than in stock, at most one reservation per order and product.
    Returns {orderId: status}."""
    status = {}
    settled = collections.Counter()
    reserved = collections.Counter()
    held = set()
    for e in events:
        t, d = e["type"], e["data"]
        if t == "OrderPlaced":
            assert d["orderId"] not in status, e
            status[d["orderId"]] = "PENDING"
        elif t in ("OrderReserved", "OrderRejected"):
            assert status.get(d["orderId"]) == "PENDING", (e, status.get(d["orderId"]))
            status[d["orderId"]] = "RESERVED" if t == "OrderReserved" else "REJECTED"
            settled[d["orderId"]] += 1
            if t == "OrderRejected":
                assert d["reason"] == "OUT_OF_STOCK", e
        elif t == "PaymentConfirmed":
            assert status.get(d["orderId"]) == "RESERVED", e
            status[d["orderId"]] = "PAID"
        elif t == "StockReserved":
            key = (d["productId"], d["orderId"])
            assert key not in held, "reserved twice for one order: %r" % (e,)
            held.add(key)
            reserved[d["productId"]] += d["quantity"]
            assert reserved[d["productId"]] <= stock, "over-reservation at %r" % (e,)
        elif t == "StockReservationRejected":
            # Refused only when it really did not fit.
            assert stock - reserved[d["productId"]] < d["quantity"], "needless rejection: %r" % (e,)
            if "available" in d:
                assert d["available"] == stock - reserved[d["productId"]], e
        elif t == "StockReleased":
            key = (d["productId"], d["orderId"])
            assert key in held, "released what was not held: %r" % (e,)
            held.discard(key)
            reserved[d["productId"]] -= d["quantity"]
            assert reserved[d["productId"]] >= 0, e
        elif t in ("StockCommitted", "ProductRestocked"):
            raise AssertionError("unexpected in this test: %r" % (e,))
    unsettled = [oid for oid, s in status.items() if s == "PENDING"]
    assert not unsettled, "%d orders never settled, e.g. %r" % (len(unsettled), unsettled[:5])
    assert all(n == 1 for n in settled.values()), {k: n for k, n in settled.items() if n != 1}
    # Each rejected order holds nothing; each reserved one holds exactly its lines.
    for pid, oid in held:
        assert status[oid] in ("RESERVED", "PAID"), (pid, oid, status[oid])
    return status


def test_sigterm_during_writes_loses_nothing_and_exits_0(server):
    products = [server.create_product(uid("prod"), price=4.99)["productId"]]
    acked = {}
    lock = threading.Lock()
    stop = threading.Event()
    port = server.port
    with ThreadPoolExecutor(WRITERS) as ex:
        futs = [ex.submit(_writer, server, port, products, stop, acked, lock) for _ in range(WRITERS)]
        time.sleep(1.0)
        code = server.stop()
        stop.set()
        for f in futs:
            f.result(timeout=30)
    assert code == 0, "exit code %r after SIGTERM" % code
    assert acked, "no order was acknowledged"
    server.start()
    events = server.log_events()
    assert [e["position"] for e in events] == list(range(1, len(events) + 1))
    placed = collections.Counter(e["stream"] for e in events if e["type"] == "OrderPlaced")
    missing = [oid for oid in acked if placed.get("order-" + oid) != 1]
    assert not missing, "%d acknowledged orders lost after SIGTERM, e.g. %r" % (len(missing), missing[:5])
    server.idle_head(timeout=30)
    _check_settlement(server.log_events(), products, stock=100)
