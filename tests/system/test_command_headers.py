"""Command headers: If-Match, Idempotency-Key and X-Correlation-Id."""

import time
import uuid

import pytest

from conftest import ADDRESS, assert_problem, uid


def _order_body(pid, cust=None):
    return {"customerId": cust or str(uuid.uuid4()),
            "items": [{"productId": pid, "quantity": 1, "price": 5.00}],
            "shippingAddress": dict(ADDRESS)}


@pytest.fixture
def pid(shared):
    return shared.create_product(uid("prod"), price=5.00)["productId"]


# ---------------------------------------------------------------- If-Match
def test_if_match_matching_version_applies(shared, pid):
    # OrderPlaced is version 1, the saga's OrderReserved version 2.
    oid = shared.place_reserved_order([(pid, 1, 5.00)])["orderId"]
    st, h, b = shared.command(oid, "confirm-payment", headers={"If-Match": '"2"'})
    assert st == 200, b
    assert b["version"] == 3 and h.get("etag") == '"3"', (b, h)
    st, h, b = shared.command(oid, "ship", headers={"If-Match": '"3"'})
    assert st == 200 and b["version"] == 4, b


@pytest.mark.parametrize("action", ["confirm-payment", "cancel"])
def test_if_match_mismatch_is_412_with_current_version(shared, pid, action):
    oid = shared.place_reserved_order([(pid, 1, 5.00)])["orderId"]
    head = shared.idle_head()
    for tag in ('"1"', '"3"', '"0"', '"17"'):  # "1": the version before the saga's reservation
        st, h, b = shared.command(oid, action, headers={"If-Match": tag})
        assert_problem(st, h, b, 412, "VERSION_MISMATCH")
        assert b["currentVersion"] == 2, b
    assert shared.log_head() == head
    st, _, v = shared.get("/orders/%s/state" % oid)
    assert st == 200 and v["status"] == "RESERVED" and v["version"] == 2, v


def test_if_match_after_change_is_stale(shared, pid):
    oid = shared.place_reserved_order([(pid, 1, 5.00)])["orderId"]
    assert shared.command(oid, "confirm-payment", headers={"If-Match": '"2"'})[0] == 200
    head = shared.idle_head()
    st, h, b = shared.command(oid, "cancel", headers={"If-Match": '"2"'})
    assert_problem(st, h, b, 412, "VERSION_MISMATCH")
    assert b["currentVersion"] == 3
    assert shared.log_head() == head


def test_if_match_on_restock(shared):
    p = uid("prod")
    shared.create_product(p, stock=1)
    head = shared.idle_head()
    st, h, b = shared.post("/products/%s/restock" % p, {"quantity": 2}, headers={"If-Match": '"3"'})
    assert_problem(st, h, b, 412, "VERSION_MISMATCH")
    assert b["currentVersion"] == 1
    assert shared.log_head() == head
    st, h, b = shared.post("/products/%s/restock" % p, {"quantity": 2}, headers={"If-Match": '"1"'})
    assert st == 200 and b["version"] == 2 and b["stock"] == 3, b


@pytest.mark.parametrize("tag", ["abc", '"x"', '"-1"'])
def test_malformed_if_match_is_400(shared, pid, tag):
    oid = shared.place_reserved_order([(pid, 1, 5.00)])["orderId"]
    head = shared.idle_head()
    st, h, b = shared.command(oid, "confirm-payment", headers={"If-Match": tag})
    assert_problem(st, h, b, 400)
    assert shared.log_head() == head


def test_if_match_is_ignored_on_creation(shared, pid):
    st, _, b = shared.post("/products", {"productId": uid("prod"), "name": "n", "category": "c",
                                         "price": 1, "stock": 1}, headers={"If-Match": '"7"'})
    assert st == 201 and b["version"] == 1, b
    st, _, b = shared.post("/orders", _order_body(pid), headers={"If-Match": '"7"'})
    assert st == 201 and b["version"] == 1, b


# ---------------------------------------------------------------- Idempotency-Key
def test_idempotent_replay_of_order_placement(shared, pid):
    key = "key-" + uuid.uuid4().hex
    body = _order_body(pid)
    st1, h1, b1 = shared.post("/orders", body, headers={"Idempotency-Key": key})
    assert st1 == 201, b1
    assert h1.get("idempotent-replayed", "false").lower() != "true"
    head = shared.idle_head()
    for _ in range(2):
        st2, h2, b2 = shared.post("/orders", body, headers={"Idempotency-Key": key})
        assert st2 == 201
        assert b2 == b1
        assert h2.get("idempotent-replayed") == "true"
        assert h2.get("x-position") == str(b1["position"])
    assert shared.log_head() == head
    stream = [e["type"] for e in shared.log_events() if e["stream"] == "order-" + b1["orderId"]]
    assert stream.count("OrderPlaced") == 1, stream
    assert stream == ["OrderPlaced", "OrderReserved"], stream  # the saga reserved it once


def test_idempotent_replay_of_product_creation_and_payment(shared, pid):
    key = uuid.uuid4().hex
    body = {"productId": uid("prod"), "name": "n", "category": "c", "price": 1, "stock": 1}
    st1, _, b1 = shared.post("/products", body, headers={"Idempotency-Key": key})
    st2, h2, b2 = shared.post("/products", body, headers={"Idempotency-Key": key})
    assert (st1, st2) == (201, 201), (b1, b2)  # not PRODUCT_EXISTS
    assert b1 == b2 and h2.get("idempotent-replayed") == "true"

    oid = shared.place_reserved_order([(pid, 1, 5.00)])["orderId"]
    key = uuid.uuid4().hex
    pay = {"paymentId": "pay-x"}
    st1, _, b1 = shared.command(oid, "confirm-payment", pay, headers={"Idempotency-Key": key})
    head = shared.idle_head()
    st2, h2, b2 = shared.command(oid, "confirm-payment", pay, headers={"Idempotency-Key": key})
    assert (st1, st2) == (200, 200), (b1, b2)  # not ALREADY_PAID
    assert b1 == b2 and h2.get("idempotent-replayed") == "true"
    assert shared.log_head() == head
    # Without the key the same command is a new command and is refused.
    st3, h3, b3 = shared.command(oid, "confirm-payment", pay)
    assert_problem(st3, h3, b3, 409, "ALREADY_PAID")


def test_same_key_with_other_body_is_422(shared, pid):
    key = uuid.uuid4().hex
    body = _order_body(pid)
    assert shared.post("/orders", body, headers={"Idempotency-Key": key})[0] == 201
    head = shared.idle_head()
    other = dict(body, customerId=str(uuid.uuid4()))
    st, h, b = shared.post("/orders", other, headers={"Idempotency-Key": key})
    assert_problem(st, h, b, 422, "IDEMPOTENCY_KEY_REUSED")
    assert shared.log_head() == head


def test_same_key_on_other_path_is_422(shared, pid):
    key = uuid.uuid4().hex
    p = uid("prod")
    shared.create_product(p)
    body = {"quantity": 1}
    assert shared.post("/products/%s/restock" % p, body, headers={"Idempotency-Key": key})[0] == 200
    q = uid("prod")
    shared.create_product(q)
    head = shared.idle_head()
    st, h, b = shared.post("/products/%s/restock" % q, body, headers={"Idempotency-Key": key})
    assert_problem(st, h, b, 422, "IDEMPOTENCY_KEY_REUSED")
    assert shared.log_head() == head


def test_failed_request_is_not_remembered(shared, pid):
    key = uuid.uuid4().hex
    bad = _order_body(pid)
    bad["items"][0]["quantity"] = 0
    st, _, _ = shared.post("/orders", bad, headers={"Idempotency-Key": key})
    assert st == 400
    good = _order_body(pid)
    st, h, b = shared.post("/orders", good, headers={"Idempotency-Key": key})
    assert st == 201, b
    assert h.get("idempotent-replayed", "false").lower() != "true"


@pytest.mark.parametrize("key", ["", "k" * 129, "bad\x01key"])
def test_malformed_idempotency_key_is_400(shared, pid, key):
    head = shared.idle_head()
    try:
        st, h, b = shared.post("/orders", _order_body(pid), headers={"Idempotency-Key": key})
    except ValueError:
        # http.client refuses to send control characters; put the header on the wire by hand.
        import socket
        import json
        body = json.dumps(_order_body(pid)).encode()
        s = socket.create_connection(("127.0.0.1", shared.port), timeout=10)
        s.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Idempotency-Key: " + key.encode() + b"\r\nConnection: close\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
        s.close()
        st = int(data.split(b" ")[1])
        assert st == 400, data[:300]
    else:
        assert_problem(st, h, b, 400)
    assert shared.log_head() == head


def test_longest_idempotency_key_is_accepted(shared, pid):
    key = "K" * 128
    body = _order_body(pid)
    st1, _, b1 = shared.post("/orders", body, headers={"Idempotency-Key": key})
    st2, h2, b2 = shared.post("/orders", body, headers={"Idempotency-Key": key})
    assert (st1, st2) == (201, 201) and b1 == b2
    assert h2.get("idempotent-replayed") == "true"


@pytest.mark.parametrize("hard", [False, True], ids=["sigterm", "kill9"])
def test_idempotency_keys_survive_restart(server, hard):
    p = server.create_product(uid("prod"))["productId"]
    key = uuid.uuid4().hex
    body = _order_body(p)
    st1, _, b1 = server.post("/orders", body, headers={"Idempotency-Key": key})
    assert st1 == 201
    server.restart(hard=hard)
    head = server.idle_head()
    st2, h2, b2 = server.post("/orders", body, headers={"Idempotency-Key": key})
    assert st2 == 201 and b2 == b1, (b1, b2)
    assert h2.get("idempotent-replayed") == "true"
    assert server.log_head() == head
    st3, h3, b3 = server.post("/orders", dict(body, customerId=str(uuid.uuid4())),
                              headers={"Idempotency-Key": key})
    assert_problem(st3, h3, b3, 422, "IDEMPOTENCY_KEY_REUSED")


# ---------------------------------------------------------------- X-Correlation-Id
def test_correlation_id_is_echoed_and_recorded(shared, pid):
    cid = "corr-" + uuid.uuid4().hex
    st, h, b = shared.post("/orders", _order_body(pid), headers={"X-Correlation-Id": cid})
    assert st == 201
    assert h.get("x-correlation-id") == cid
    oid = b["orderId"]
    assert shared.wait_settled(oid)["status"] == "RESERVED"
    cid2 = "corr2-" + uuid.uuid4().hex
    st, h, _ = shared.command(oid, "confirm-payment", headers={"X-Correlation-Id": cid2})
    assert st == 200 and h.get("x-correlation-id") == cid2
    st, _, hist = shared.get("/orders/%s/history" % oid)
    assert st == 200
    assert [e["type"] for e in hist] == ["OrderPlaced", "OrderReserved", "PaymentConfirmed"], hist
    # The saga's events keep the correlation id of the command that started the workflow.
    assert [e["metadata"]["correlationId"] for e in hist] == [cid, cid, cid2]
    for e in hist:
        assert isinstance(e["metadata"]["eventId"], str) and e["metadata"]["eventId"]
    assert hist[0]["metadata"]["causationId"] is None
    assert hist[2]["metadata"]["causationId"] is None
    assert len({e["metadata"]["eventId"] for e in hist}) == 3
    # The saga's reserve_order, caused by OrderPlaced, appended StockReserved and OrderReserved.
    st, _, pevs = shared.get("/streams/product-" + pid)
    reserved = [e for e in pevs if e["type"] == "StockReserved" and e["data"]["orderId"] == oid]
    assert len(reserved) == 1, pevs
    assert reserved[0]["metadata"]["causationId"] == hist[0]["metadata"]["eventId"]
    assert reserved[0]["metadata"]["correlationId"] == cid
    assert hist[1]["metadata"]["causationId"] == hist[0]["metadata"]["eventId"]
    assert hist[1]["position"] == reserved[0]["position"] + 1


def test_correlation_id_is_generated_when_absent(shared, pid):
    st, h, b = shared.post("/orders", _order_body(pid))
    assert st == 201
    cid = h.get("x-correlation-id")
    assert cid and 1 <= len(cid) <= 128
    st, _, hist = shared.get("/orders/%s/history" % b["orderId"])
    assert hist[0]["metadata"]["correlationId"] == cid
    st, h2, _ = shared.post("/orders", _order_body(pid))
    assert h2.get("x-correlation-id") and h2["x-correlation-id"] != cid


@pytest.mark.parametrize("path", ["/health", "/nope", "/orders/01J00000000000000000000000"])
def test_every_response_echoes_a_correlation_id(shared, path):
    st, h, _ = shared.get(path, headers={"X-Correlation-Id": "echo-me-1"})
    assert h.get("x-correlation-id") == "echo-me-1", (st, h)
    st, h, _ = shared.get(path)
    assert h.get("x-correlation-id"), h


def test_invalid_correlation_id_is_replaced(shared, pid):
    bad = "c" * 129
    st, h, b = shared.post("/orders", _order_body(pid), headers={"X-Correlation-Id": bad})
    assert st == 201, b
    cid = h.get("x-correlation-id")
    assert cid and cid != bad and len(cid) <= 128
    hist = shared.get("/orders/%s/history" % b["orderId"])[2]
    assert hist[0]["metadata"]["correlationId"] == cid


def test_correlation_id_on_refused_command(shared, pid):
    st, h, _ = shared.command("01J00000000000000000000000", "cancel", headers={"X-Correlation-Id": "refused-1"})
    assert st == 404 and h.get("x-correlation-id") == "refused-1"


def test_correlation_id_is_written_in_the_server_log(server):
    p = server.create_product(uid("prod"))
    cid = "logline-" + uuid.uuid4().hex
    st, _, b = server.post("/orders", _order_body(p["productId"]), headers={"X-Correlation-Id": cid})
    assert st == 201
    deadline = time.monotonic() + 3
    found = False
    while time.monotonic() < deadline and not found:
        with open(server.stderr_path, "rb") as f:
            found = cid.encode() in f.read()
        time.sleep(0.05)
    assert found, "no server log line carries the correlation id %s" % cid
