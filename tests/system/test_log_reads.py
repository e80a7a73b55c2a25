"""Strongly consistent reads of the log: history, temporal state, streams, the global log."""

import datetime as dt
import time
import uuid

import pytest

from conftest import ADDRESS, D, assert_problem, fmt_time, parse_time, uid

EVENT_KEYS = {"position", "stream", "version", "type", "schemaVersion", "data", "metadata", "recordedAt"}


def check_event(e):
    assert EVENT_KEYS <= set(e), e
    assert isinstance(e["position"], int) and e["position"] >= 1
    assert isinstance(e["version"], int) and e["version"] >= 1
    assert isinstance(e["type"], str) and e["type"]
    assert isinstance(e["schemaVersion"], int) and e["schemaVersion"] >= 1
    assert isinstance(e["data"], dict)
    assert {"eventId", "correlationId", "causationId"} <= set(e["metadata"]), e["metadata"]
    parse_time(e["recordedAt"])


LIFECYCLE = ["OrderPlaced", "OrderReserved", "PaymentConfirmed", "OrderShipped"]


@pytest.fixture
def lifecycle(shared):
    """An order placed, reserved by the saga, then paid, then shipped, with >= 30 ms between the
    reservation, the payment and the shipment."""
    p = shared.create_product(uid("prod"), price=7.25)
    cust = str(uuid.uuid4())
    o = shared.place_reserved_order([(p["productId"], 2, 7.25)], customer_id=cust)
    time.sleep(0.03)
    st, _, pay = shared.command(o["orderId"], "confirm-payment")
    assert st == 200, pay
    time.sleep(0.03)
    st, _, ship = shared.command(o["orderId"], "ship")
    assert st == 200, ship
    reserved = [e for e in shared.get("/streams/order-" + o["orderId"])[2] if e["type"] == "OrderReserved"]
    assert len(reserved) == 1, reserved
    return {"product": p, "order": o, "customerId": cust,
            "positions": [o["position"], reserved[0]["position"], pay["position"], ship["position"]]}


def test_history(shared, lifecycle):
    oid = lifecycle["order"]["orderId"]
    st, h, hist = shared.get("/orders/%s/history" % oid)
    assert st == 200, hist
    assert isinstance(hist, list) and len(hist) == 4
    for e in hist:
        check_event(e)
        assert e["stream"] == "order-" + oid
    assert [e["version"] for e in hist] == [1, 2, 3, 4]
    assert [e["position"] for e in hist] == lifecycle["positions"]
    assert [e["type"] for e in hist] == LIFECYCLE
    # Client commands have no causation; the saga's OrderReserved has one (OrderPlaced).
    assert [e["metadata"]["causationId"] is None for e in hist] == [True, False, True, True]
    times = [parse_time(e["recordedAt"]) for e in hist]
    assert times == sorted(times)


def test_state_as_of_version(shared, lifecycle):
    oid = lifecycle["order"]["orderId"]
    expected = {1: "PENDING", 2: "RESERVED", 3: "PAID", 4: "SHIPPED"}
    for v, status in expected.items():
        st, _, s = shared.get("/orders/%s/state?asOfVersion=%d" % (oid, v))
        assert st == 200, s
        assert s["status"] == status and s["version"] == v, s
        assert s["orderId"] == oid
        assert s["customerId"] == lifecycle["customerId"]
        assert s["items"] == [{"productId": lifecycle["product"]["productId"], "quantity": 2, "price": D("7.25")}]
        assert s["total"] == D("14.5")
        assert s["currency"] == "USD"
        assert s["shippingAddress"] == ADDRESS
        assert s.get("rejectionReason") is None, s
        parse_time(s["createdAt"])
        parse_time(s["updatedAt"])
    st, _, latest = shared.get("/orders/%s/state" % oid)
    assert st == 200 and latest["status"] == "SHIPPED" and latest["version"] == 4, latest


@pytest.mark.parametrize("bad", ["0", "-1", "abc"])
def test_state_bad_version_is_400(shared, lifecycle, bad):
    st, h, b = shared.get("/orders/%s/state?asOfVersion=%s" % (lifecycle["order"]["orderId"], bad))
    assert_problem(st, h, b, 400)


def test_state_as_of_time(shared, lifecycle):
    oid = lifecycle["order"]["orderId"]
    hist = shared.get("/orders/%s/history" % oid)[2]
    t = [parse_time(e["recordedAt"]) for e in hist]
    assert t == sorted(t), t
    # The saga reserves within milliseconds of the placement; the test spaced the others.
    assert t[2] - t[1] >= dt.timedelta(milliseconds=20) and t[3] - t[2] >= dt.timedelta(milliseconds=20), t

    def state_at(when):
        return shared.get("/orders/%s/state" % oid, {"asOf": fmt_time(when)})

    st, h, b = state_at(t[0] - dt.timedelta(seconds=1))
    assert_problem(st, h, b, 404, "ORDER_NOT_FOUND")
    st, _, s = shared.get("/orders/%s/state" % oid, {"asOf": hist[0]["recordedAt"]})  # the instant itself
    if t[1] > t[0]:
        assert st == 200 and s["status"] == "PENDING" and s["version"] == 1, s
    else:  # reserved within the same millisecond: both events are as of that instant
        assert st == 200 and s["status"] == "RESERVED" and s["version"] == 2, s
    st, _, s = shared.get("/orders/%s/state" % oid, {"asOf": hist[1]["recordedAt"]})
    assert st == 200 and s["status"] == "RESERVED" and s["version"] == 2, s
    st, _, s = state_at(t[1] + (t[2] - t[1]) / 2)
    assert st == 200 and s["status"] == "RESERVED" and s["version"] == 2, s
    st, _, s = state_at(t[2] + (t[3] - t[2]) / 2)
    assert st == 200 and s["status"] == "PAID" and s["version"] == 3, s
    st, _, s = state_at(t[3] + dt.timedelta(seconds=5))
    assert st == 200 and s["status"] == "SHIPPED" and s["version"] == 4, s


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-45T00:00:00.000Z", "12345"])
def test_state_bad_time_is_400(shared, lifecycle, bad):
    st, h, b = shared.get("/orders/%s/state" % lifecycle["order"]["orderId"], {"asOf": bad})
    assert_problem(st, h, b, 400)


def test_stream_read_with_from_version_and_limit(shared, lifecycle):
    oid = lifecycle["order"]["orderId"]
    st, _, evs = shared.get("/streams/order-%s?fromVersion=2&limit=1" % oid)
    assert st == 200, evs
    assert len(evs) == 1
    check_event(evs[0])
    assert evs[0]["version"] == 2 and evs[0]["position"] == lifecycle["positions"][1]
    assert evs[0]["stream"] == "order-" + oid and evs[0]["type"] == "OrderReserved"
    st, _, evs = shared.get("/streams/order-%s?fromVersion=2" % oid)
    assert [e["version"] for e in evs] == [2, 3, 4]
    assert [e["position"] for e in evs] == lifecycle["positions"][1:]
    st, _, evs = shared.get("/streams/order-%s?fromVersion=3&limit=1" % oid)
    assert [e["version"] for e in evs] == [3] and evs[0]["type"] == "PaymentConfirmed"
    st, _, evs = shared.get("/streams/order-%s" % oid)
    assert [e["version"] for e in evs] == [1, 2, 3, 4]
    assert [e["type"] for e in evs] == LIFECYCLE
    st, _, evs = shared.get("/streams/order-%s?fromVersion=5" % oid)
    assert st == 200 and evs == []
    # The product stream moves with the stock: created, reserved, committed by the shipment.
    # The saga commits the stock after the shipment is acknowledged: wait until it has.
    pid = lifecycle["product"]["productId"]
    shared.idle_head()
    st, _, pevs = shared.get("/streams/product-" + pid)
    assert [(e["version"], e["type"]) for e in pevs] == [
        (1, "ProductCreated"), (2, "StockReserved"), (3, "StockCommitted")], pevs
    assert all(e["data"]["orderId"] == oid and e["data"]["quantity"] == 2 for e in pevs[1:]), pevs


def test_unknown_stream_is_empty(shared):
    st, _, evs = shared.get("/streams/order-%s" % uuid.uuid4().hex)
    assert st == 200 and evs == []


@pytest.mark.parametrize("query", ["fromVersion=-1", "fromVersion=x", "limit=0", "limit=1001", "limit=-3"])
def test_stream_bad_parameters_are_400(shared, lifecycle, query):
    st, h, b = shared.get("/streams/order-%s?%s" % (lifecycle["order"]["orderId"], query))
    assert_problem(st, h, b, 400)


def test_global_log_pages_are_contiguous(server):
    p = server.create_product(uid("prod"), price=1)
    for _ in range(4):
        o = server.place_reserved_order([(p["productId"], 1, 1)])
        assert server.command(o["orderId"], "confirm-payment")[0] == 200
    head = server.idle_head()
    # 1 ProductCreated + 4 x (OrderPlaced, StockReserved, OrderReserved, PaymentConfirmed)
    assert head == 17
    seen = []
    pos = 1
    for _ in range(20):
        st, _, page = server.get("/log", {"fromPosition": pos, "limit": 2})
        assert st == 200, page
        assert len(page) <= 2
        if not page:
            break
        for e in page:
            check_event(e)
        seen.extend(e["position"] for e in page)
        pos = page[-1]["position"] + 1
    assert seen == list(range(1, head + 1))
    st, _, all_ = server.get("/log")  # defaults: from 1, limit 100
    assert [e["position"] for e in all_] == list(range(1, head + 1))
    st, _, none = server.get("/log", {"fromPosition": head + 1})
    assert st == 200 and none == []
    # Each order stream has contiguous versions and its events sit at their positions.
    by_stream = {}
    for e in all_:
        by_stream.setdefault(e["stream"], []).append(e["version"])
    for stream, versions in by_stream.items():
        assert versions == list(range(1, len(versions) + 1)), (stream, versions)


@pytest.mark.parametrize("query", ["fromPosition=-1", "fromPosition=abc", "limit=0", "limit=1001"])
def test_log_bad_parameters_are_400(shared, query):
    st, h, b = shared.get("/log?" + query)
    assert_problem(st, h, b, 400)


def test_log_limit_1000_is_accepted(shared):
    st, _, b = shared.get("/log?limit=1000")
    assert st == 200 and isinstance(b, list)
