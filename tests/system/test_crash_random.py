"""kill -9 at random moments under mixed load, 20 times.

Clients place orders, pay and cancel them (every command with an Idempotency-Key) and read the
read lane while the server is killed at a random moment; after every restart:
- every acknowledged command's events are in the log exactly once, the log has no gaps;
- re-sending an acknowledged command with its key answers the same and appends nothing;
and every few cycles, once the saga and projections have caught up:
- the order saga settled every order exactly once, never reserved more than the stock, and each
  product's reservations are exactly those of its live reserved or paid orders;
- reconciliation of every read model against a fresh fold of the log is clean.
"""

import collections
import http.client
import json
import random
import threading
import time
import uuid

from conftest import ADDRESS, D, uid

KILLS = 20
WORKERS = 6
STOCK = 40
DEEP_CHECK_EVERY = 5


class Load:
    """The clients' shared memory of what the server acknowledged."""

    def __init__(self, products):
        self.products = products
        self.lock = threading.Lock()
        self.acked = {}        # key -> (method, path, body, status, answer)
        self.orders = []       # acknowledged order ids
        self.kinds = collections.Counter()

    def record(self, key, method, path, body, status, answer):
        with self.lock:
            self.acked[key] = (method, path, body, status, answer)
            self.kinds[path.rsplit("/", 1)[-1] if path != "/orders" else "place"] += 1
            if path == "/orders":
                self.orders.append(answer["orderId"])

    def some_order(self, rnd):
        with self.lock:
            return rnd.choice(self.orders) if self.orders else None


def send(port, method, path, body=None, key=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        h = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    return resp.status, h, (json.loads(raw, parse_float=D) if raw else None)


def worker(port, load, stop, seed):
    rnd = random.Random(seed)
    while not stop.is_set():
        r = rnd.random()
        key = "crash-" + uuid.uuid4().hex
        if r < 0.55:
            method, path = "POST", "/orders"
            body = {"customerId": str(uuid.uuid4()),
                    "items": [{"productId": rnd.choice(load.products), "quantity": rnd.randint(1, 2),
                               "price": 3}],
                    "shippingAddress": dict(ADDRESS)}
        elif r < 0.85:
            oid = load.some_order(rnd)
            if oid is None:
                continue
            action = "confirm-payment" if r < 0.75 else "cancel"
            method, path = "POST", "/orders/%s/%s" % (oid, action)
            body = {"paymentId": "pay-" + key[-8:]} if action == "confirm-payment" else {"reason": "x"}
        else:
            oid = load.some_order(rnd)
            method, path, body, key = "GET", "/orders/%s" % oid if oid else "/products", None, None
        try:
            st, _, answer = send(port, method, path, body, key)
        except (OSError, http.client.HTTPException, ValueError):
            if stop.is_set():
                return
            time.sleep(0.005)
            continue
        if key and st in (200, 201):
            load.record(key, method, path, body, st, answer)


def fold(events):
    """Folds the log; asserts the saga's invariants; returns (status, reserved units by product,
    held (product, order) reservations)."""
    status, settled = {}, collections.Counter()
    reserved, held = collections.Counter(), {}
    for e in events:
        t, d = e["type"], e["data"]
        if t == "OrderPlaced":
            assert d["orderId"] not in status, e
            status[d["orderId"]] = "PENDING"
        elif t in ("OrderReserved", "OrderRejected"):
            settled[d["orderId"]] += 1
            if status[d["orderId"]] == "PENDING":
                status[d["orderId"]] = "RESERVED" if t == "OrderReserved" else "REJECTED"
            else:  # cancelled before the saga settled it: only a rejection may follow
                assert status[d["orderId"]] == "CANCELLED" and t == "OrderRejected", (e, status[d["orderId"]])
        elif t == "PaymentConfirmed":
            assert status[d["orderId"]] == "RESERVED", e
            status[d["orderId"]] = "PAID"
        elif t == "OrderCancelled":
            assert status[d["orderId"]] in ("PENDING", "RESERVED", "PAID"), e
            status[d["orderId"]] = "CANCELLED"
        elif t == "StockReserved":
            k = (d["productId"], d["orderId"])
            assert k not in held, "reserved twice: %r" % e
            held[k] = d["quantity"]
            reserved[d["productId"]] += d["quantity"]
            assert reserved[d["productId"]] <= STOCK, "oversold at %r" % e
        elif t == "StockReleased":
            k = (d["productId"], d["orderId"])
            assert held.pop(k, None) == d["quantity"], "released what was not held: %r" % e
            reserved[d["productId"]] -= d["quantity"]
    assert all(n == 1 for n in settled.values()), "settled twice: %r" % {
        k: n for k, n in settled.items() if n != 1}
    return status, reserved, held


def deep_check(srv, load, cycle):
    srv.idle_head(timeout=60)
    events = srv.log_events()
    status, reserved, held = fold(events)
    pending = [o for o, s in status.items() if s == "PENDING"]
    assert not pending, "cycle %d: %d orders never settled" % (cycle, len(pending))
    for (pid, oid), qty in held.items():
        assert status[oid] in ("RESERVED", "PAID"), (cycle, pid, oid, status[oid])
    live = collections.Counter()
    for (pid, oid), qty in held.items():
        live[pid] += qty
    assert live == reserved
    # The read models agree with a fresh fold of the log.
    st, _, report = srv.post("/admin/reconcile")
    assert st == 200 and report["clean"] is True, (cycle, report)
    for pid in load.products:
        st, _, v = srv.get("/products/" + pid)
        assert st == 200 and v["available"] == STOCK - reserved[pid], (cycle, pid, v, reserved[pid])


def test_random_kill9_under_mixed_load(make_server):
    srv = make_server(["--retry-base-ms", "5", "--retry-cap-ms", "50"])
    load = Load([srv.create_product(uid("prod"), price=3, stock=STOCK)["productId"]
                 for _ in range(3)])
    rnd = random.Random(20261123)
    t_start = time.monotonic()
    for cycle in range(KILLS):
        stop = threading.Event()
        port = srv.port
        threads = [threading.Thread(target=worker, args=(port, load, stop, rnd.random()))
                   for _ in range(WORKERS)]
        for t in threads:
            t.start()
        time.sleep(rnd.uniform(0.05, 0.4))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()
        srv.start()

        # Every acknowledged command is in the log exactly once.
        events = srv.log_events()
        assert [e["position"] for e in events] == list(range(1, len(events) + 1)), "gaps"
        placed = collections.Counter(e["data"]["orderId"] for e in events if e["type"] == "OrderPlaced")
        paid = collections.Counter(e["data"]["orderId"] for e in events if e["type"] == "PaymentConfirmed")
        cancelled = collections.Counter(e["data"]["orderId"] for e in events if e["type"] == "OrderCancelled")
        by_pos = {e["position"]: e for e in events}
        with load.lock:
            acked = dict(load.acked)
        for key, (method, path, body, st, answer) in acked.items():
            if path == "/orders":
                assert placed[answer["orderId"]] == 1, (cycle, key, answer)
                assert by_pos[answer["position"]]["type"] == "OrderPlaced"
            elif path.endswith("/confirm-payment"):
                assert paid[answer["orderId"]] == 1, (cycle, key, answer)
            elif path.endswith("/cancel"):
                assert cancelled[answer["orderId"]] == 1, (cycle, key, answer)
        # Idempotency keys are honoured across the crash: same answer, nothing appended.
        head = events[-1]["position"]
        for key in rnd.sample(sorted(acked), min(15, len(acked))):
            method, path, body, st, answer = acked[key]
            st2, h, again = send(srv.port, method, path, body, key)
            assert st2 == st and again == answer, (cycle, key, st, answer, st2, again)
            assert h.get("idempotent-replayed") == "true", h
        assert srv.log_events(head + 1) == [] or all(
            e["metadata"].get("causationId") for e in srv.log_events(head + 1)), \
            "a replay appended an event"  # only the saga may still append
        if cycle % DEEP_CHECK_EVERY == DEEP_CHECK_EVERY - 1:
            deep_check(srv, load, cycle)
    print("%d kills in %.1f s; acknowledged: %r" % (KILLS, time.monotonic() - t_start,
                                                    dict(load.kinds)))
    assert load.kinds["place"] > 50 and load.kinds["confirm-payment"] > 5 and load.kinds["cancel"] > 2, load.kinds
