"""Orders: placement, validation, the lifecycle state machine and exact money."""

import datetime as dt
import time
import uuid

import pytest

from conftest import (ADDRESS, D, ULID_RE, assert_meta, assert_problem, error_fields, parse_time,
                      uid)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_time(ulid):
    ms = 0
    for c in ulid[:10]:
        ms = ms * 32 + CROCKFORD.index(c)
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


@pytest.fixture
def product(shared):
    return shared.create_product(uid("prod"), name="Sturdy Lamp", price=25.00, stock=1000)


def order_body(pid, **over):
    body = {"customerId": str(uuid.uuid4()),
            "items": [{"productId": pid, "quantity": 2, "price": 25.00}],
            "shippingAddress": dict(ADDRESS)}
    body.update(over)
    return body


def test_place_order_returns_201_with_ulid_and_order_view(shared, product):
    pid = product["productId"]
    cust = str(uuid.uuid4())
    before = dt.datetime.now(dt.timezone.utc)
    st, h, b = shared.post("/orders", order_body(pid, customerId=cust))
    after = dt.datetime.now(dt.timezone.utc)
    assert st == 201, b
    oid = b["orderId"]
    assert isinstance(oid, str) and ULID_RE.match(oid), oid
    assert before - dt.timedelta(seconds=5) <= ulid_time(oid) <= after + dt.timedelta(seconds=5)
    assert b["status"] == "PENDING"
    assert b["version"] == 1
    assert isinstance(b["position"], int) and b["position"] > product["position"]
    assert h.get("etag") == '"1"'
    assert h.get("x-position") == str(b["position"])
    o = b["order"]
    assert o["orderId"] == oid
    assert o["customerId"] == cust
    assert o["status"] == "PENDING"
    assert o["total"] == D("50")
    assert o["currency"] == "USD"
    assert o["shippingAddress"] == ADDRESS
    assert o["version"] == 1
    assert [(i["productId"], i["quantity"], i["price"]) for i in o["items"]] == [(pid, 2, D("25"))]
    parse_time(o["createdAt"])
    parse_time(o["updatedAt"])


def test_order_view_in_command_answer_has_product_names(shared, product):
    b = shared.place_order([(product["productId"], 1, 25.00)])
    assert b["order"]["items"][0]["name"] == "Sturdy Lamp", b


def test_order_ids_are_time_sortable(shared, product):
    ids = []
    for _ in range(3):
        ids.append(shared.place_order([(product["productId"], 1, 25.00)])["orderId"])
        time.sleep(0.003)
    assert ids == sorted(ids), ids
    assert len(set(ids)) == 3


def test_order_view_in_read_lane(shared):
    p1 = shared.create_product(uid("prod"), name="Oak Table", price=199.99)
    p2 = shared.create_product(uid("prod"), name="Pine Chair", price=49.5)
    cust = str(uuid.uuid4())
    b = shared.place_order([(p1["productId"], 1, 199.99), (p2["productId"], 4, 49.50)], customer_id=cust)
    st, _, v = shared.query("/orders/" + b["orderId"], b["position"])
    assert st == 200, v
    assert v["orderId"] == b["orderId"]
    assert v["customerId"] == cust
    # The saga may already have reserved the stock when the read lane answers.
    assert (v["status"], v["version"]) in (("PENDING", 1), ("RESERVED", 2)), v
    assert v["items"] == [
        {"productId": p1["productId"], "name": "Oak Table", "quantity": 1, "price": D("199.99")},
        {"productId": p2["productId"], "name": "Pine Chair", "quantity": 4, "price": D("49.5")},
    ]
    assert v["total"] == D("397.99")
    assert v["currency"] == "USD"
    assert v["shippingAddress"] == ADDRESS
    assert parse_time(v["createdAt"]) <= parse_time(v["updatedAt"])
    assert_meta(v)["position"] >= b["position"]


def test_order_currency_is_kept(shared, product):
    b = shared.place_order([(product["productId"], 1, 3.00)], currency="EUR")
    assert b["order"]["currency"] == "EUR"
    st, _, v = shared.query("/orders/" + b["orderId"], b["position"])
    assert st == 200 and v["currency"] == "EUR", v


def test_hundred_items_and_quantity_10000_are_accepted(shared, product):
    pid = product["productId"]
    b = shared.place_order([(pid, 1, 0.01)] * 99 + [(pid, 10000, 0.01)])
    assert len(b["order"]["items"]) == 100
    assert b["order"]["total"] == D("100.99")


# ---------------------------------------------------------------- validation
def _invalid_cases(pid):
    def addr_without(k):
        a = dict(ADDRESS)
        del a[k]
        return a

    base_item = {"productId": pid, "quantity": 1, "price": 1.00}
    cases = [
        ("items", order_body(pid, items=[])),
        ("items", {k: v for k, v in order_body(pid).items() if k != "items"}),
        ("items", order_body(pid, items=[dict(base_item) for _ in range(101)])),
        ("items[0].quantity", order_body(pid, items=[dict(base_item, quantity=0)])),
        ("items[0].quantity", order_body(pid, items=[dict(base_item, quantity=10001)])),
        ("items[0].quantity", order_body(pid, items=[dict(base_item, quantity=-2)])),
        ("items[0].quantity", order_body(pid, items=[dict(base_item, quantity=1.5)])),
        ("items[1].quantity", order_body(pid, items=[dict(base_item), dict(base_item, quantity=0)])),
        ("items[0].price", order_body(pid, items=[dict(base_item, price=0.001)])),
        ("items[0].price", order_body(pid, items=[dict(base_item, price=0)])),
        ("items[0].price", order_body(pid, items=[dict(base_item, price=-5)])),
        ("items[0].productId", order_body(pid, items=[dict(base_item, productId=uid("unknown"))])),
        ("items[1].productId", order_body(pid, items=[dict(base_item), dict(base_item, productId=uid("unknown"))])),
        ("items[0].productId", order_body(pid, items=[{"quantity": 1, "price": 1.0}])),
        ("customerId", order_body(pid, customerId="not-a-uuid")),
        ("customerId", order_body(pid, customerId="")),
        ("customerId", {k: v for k, v in order_body(pid).items() if k != "customerId"}),
        ("shippingAddress", {k: v for k, v in order_body(pid).items() if k != "shippingAddress"}),
        ("shippingAddress.city", order_body(pid, shippingAddress=addr_without("city"))),
        ("shippingAddress.street", order_body(pid, shippingAddress=addr_without("street"))),
        ("shippingAddress.postalCode", order_body(pid, shippingAddress=addr_without("postalCode"))),
        ("shippingAddress.country", order_body(pid, shippingAddress=addr_without("country"))),
        ("shippingAddress.country", order_body(pid, shippingAddress=dict(ADDRESS, country="U"))),
        ("shippingAddress.street", order_body(pid, shippingAddress=dict(ADDRESS, street=""))),
        ("shippingAddress.city", order_body(pid, shippingAddress=dict(ADDRESS, city="c" * 201))),
        ("currency", order_body(pid, currency="eur")),
    ]
    return cases


CASE_COUNT = len(_invalid_cases("x"))


@pytest.mark.parametrize("idx", range(CASE_COUNT),
                         ids=["%d-%s" % (i, f) for i, (f, _) in enumerate(_invalid_cases("x"))])
def test_invalid_order_is_400_with_field_error_and_appends_nothing(shared, product, idx):
    field, body = _invalid_cases(product["productId"])[idx]
    head = shared.idle_head()
    st, h, b = shared.post("/orders", body)
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert field in error_fields(b), b
    assert shared.log_head() == head


def test_several_invalid_order_fields_are_all_reported(shared, product):
    a = dict(ADDRESS)
    del a["city"]
    body = order_body(product["productId"], customerId="nope", shippingAddress=a)
    body["items"][0]["quantity"] = 0
    st, h, b = shared.post("/orders", body)
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert {"customerId", "shippingAddress.city", "items[0].quantity"} <= error_fields(b), b


# ---------------------------------------------------------------- lifecycle
def _order(shared, product):
    """An order the saga has reserved (version 2), ready to be paid."""
    return shared.place_reserved_order([(product["productId"], 1, 25.00)])


def test_placed_order_settles_reserved(shared, product):
    o = shared.place_order([(product["productId"], 2, 25.00)])
    assert o["status"] == "PENDING" and o["order"].get("rejectionReason") is None, o
    s = shared.wait_settled(o["orderId"])
    assert s["status"] == "RESERVED" and s["version"] == 2 and s["rejectionReason"] is None, s
    head = shared.idle_head()
    st, _, v = shared.query("/orders/" + o["orderId"], head)
    assert st == 200 and v["status"] == "RESERVED" and v["version"] == 2, v
    assert v["rejectionReason"] is None, v


def test_pay_then_ship(shared, product):
    o = _order(shared, product)
    oid = o["orderId"]
    st, h, b = shared.command(oid, "confirm-payment", {"paymentId": "pay-1"})
    assert st == 200, b
    assert b == {"orderId": oid, "status": "PAID", "version": 3, "position": b["position"]}
    assert b["position"] > o["position"]
    assert h.get("etag") == '"3"' and h.get("x-position") == str(b["position"])
    st, _, v = shared.query("/orders/" + oid, b["position"])
    assert st == 200 and v["status"] == "PAID" and v["version"] == 3, v

    st, h, s = shared.command(oid, "ship", {"trackingNumber": "TRK-1"})
    assert st == 200, s
    assert s["status"] == "SHIPPED" and s["version"] == 4 and s["orderId"] == oid
    assert s["position"] > b["position"]
    assert h.get("etag") == '"4"'
    st, _, v = shared.query("/orders/" + oid, s["position"])
    assert st == 200 and v["status"] == "SHIPPED" and v["version"] == 4, v
    assert parse_time(v["updatedAt"]) >= parse_time(v["createdAt"])


def _refused(shared, oid, action, code, body=None):
    head = shared.idle_head()
    st, h, b = shared.command(oid, action, body)
    assert_problem(st, h, b, 409, code)
    assert shared.log_head() == head


def test_second_payment_is_already_paid(shared, product):
    oid = _order(shared, product)["orderId"]
    assert shared.command(oid, "confirm-payment")[0] == 200
    _refused(shared, oid, "confirm-payment", "ALREADY_PAID")


def test_ship_before_payment_is_not_paid(shared, product):
    oid = _order(shared, product)["orderId"]
    _refused(shared, oid, "ship", "NOT_PAID")


def test_shipped_order_refuses_ship_and_cancel(shared, product):
    oid = _order(shared, product)["orderId"]
    assert shared.command(oid, "confirm-payment")[0] == 200
    assert shared.command(oid, "ship")[0] == 200
    _refused(shared, oid, "ship", "ALREADY_SHIPPED")
    _refused(shared, oid, "cancel", "ALREADY_SHIPPED")
    _refused(shared, oid, "confirm-payment", "ALREADY_PAID")


def test_cancel_unpaid_then_everything_is_closed(shared, product):
    # (Cancelling while still PENDING is covered in test_inventory.py, where it is deterministic.)
    oid = _order(shared, product)["orderId"]
    st, h, b = shared.command(oid, "cancel", {"reason": "changed my mind"})
    assert st == 200, b
    assert b["status"] == "CANCELLED" and b["version"] == 3 and b["orderId"] == oid
    assert h.get("etag") == '"3"'
    _refused(shared, oid, "confirm-payment", "ORDER_CLOSED")
    _refused(shared, oid, "ship", "ORDER_CLOSED")
    _refused(shared, oid, "cancel", "ORDER_CLOSED")
    st, _, v = shared.query("/orders/" + oid, b["position"])
    assert st == 200 and v["status"] == "CANCELLED", v


def test_cancel_paid_order(shared, product):
    oid = _order(shared, product)["orderId"]
    assert shared.command(oid, "confirm-payment")[0] == 200
    st, _, b = shared.command(oid, "cancel", {})  # reason is optional
    assert st == 200 and b["status"] == "CANCELLED" and b["version"] == 4, b
    _refused(shared, oid, "ship", "ORDER_CLOSED")


@pytest.mark.parametrize("action", ["confirm-payment", "ship", "cancel"])
def test_command_on_unknown_order_is_404(shared, action):
    head = shared.idle_head()
    st, h, b = shared.command("01J00000000000000000000000", action)
    assert_problem(st, h, b, 404, "ORDER_NOT_FOUND")
    st, h, b = shared.command("no-such-order", action)
    assert_problem(st, h, b, 404, "ORDER_NOT_FOUND")
    assert shared.log_head() == head


@pytest.mark.parametrize("path", ["/orders/%s", "/orders/%s/history", "/orders/%s/state"])
def test_reads_of_unknown_order_are_404(shared, path):
    st, h, b = shared.get(path % "01J00000000000000000000000", {"waitMs": 0} if path == "/orders/%s" else None)
    assert_problem(st, h, b, 404, "ORDER_NOT_FOUND")


@pytest.mark.parametrize("action,body,field", [
    ("confirm-payment", {}, "paymentId"),
    ("confirm-payment", {"paymentId": ""}, "paymentId"),
    ("confirm-payment", {"paymentId": "p" * 129}, "paymentId"),
    ("ship", {}, "trackingNumber"),
    ("ship", {"trackingNumber": ""}, "trackingNumber"),
    ("cancel", {"reason": "r" * 501}, "reason"),
])
def test_invalid_lifecycle_command_is_400(shared, product, action, body, field):
    oid = _order(shared, product)["orderId"]
    if action == "ship":
        assert shared.command(oid, "confirm-payment")[0] == 200
    head = shared.idle_head()
    st, h, b = shared.command(oid, action, body)
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert field in error_fields(b), b
    assert shared.log_head() == head


# ---------------------------------------------------------------- money
def test_total_is_exact(shared):
    a = shared.create_product(uid("prod"), price=0.10)
    b = shared.create_product(uid("prod"), price=0.20)
    o = shared.place_order([(a["productId"], 3, 0.10), (b["productId"], 1, 0.20)])
    assert o["order"]["total"] == D("0.5"), o
    assert str(o["order"]["total"]) in ("0.5", "0.50"), o  # no binary floating-point noise
    st, _, v = shared.query("/orders/" + o["orderId"], o["position"])
    assert v["total"] == D("0.5") and str(v["total"]) in ("0.5", "0.50"), v


def test_large_totals_are_exact(shared):
    p = shared.create_product(uid("prod"), price=1234567.89)
    o = shared.place_order([(p["productId"], 3, 1234567.89), (p["productId"], 1, 0.01)])
    assert o["order"]["total"] == D("3703703.68"), o
    q = shared.place_order([(p["productId"], 7, 0.07), (p["productId"], 3, 0.03)])
    assert q["order"]["total"] == D("0.58"), q


def test_order_total_limit(shared):
    """An order's total is at most 10,000,000,000.00 (api-notes): above it is a 400 on `items`, at it
    the total is written out exactly."""
    p = shared.create_product(uid("prod"), price=9999999999.99)
    head = shared.idle_head()
    for items in ([{"productId": p["productId"], "quantity": 9999, "price": 9999999999.99}],
                  [{"productId": p["productId"], "quantity": 1, "price": 10000000000},
                   {"productId": p["productId"], "quantity": 1, "price": 0.01}]):
        st, h, b = shared.post("/orders", order_body(p["productId"], items=items))
        assert_problem(st, h, b, 400, "VALIDATION_FAILED")
        assert "items" in error_fields(b), b
    assert shared.log_head() == head
    for items, total in (([{"productId": p["productId"], "quantity": 3, "price": 3333333333.33}], "9999999999.99"),
                         ([{"productId": p["productId"], "quantity": 1, "price": 9999999999.99},
                           {"productId": p["productId"], "quantity": 1, "price": 0.01}], "10000000000.00")):
        st, _, b = shared.post("/orders", order_body(p["productId"], items=items))
        assert st == 201, b
        assert b["order"]["total"] == D(total), b["order"]["total"]
        st, _, v = shared.query("/orders/" + b["orderId"], b["position"])
        assert v["total"] == D(total), v["total"]
