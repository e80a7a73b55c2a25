"""Products: creation, validation, restock and the product view (read lane)."""

import urllib.parse

import pytest

from conftest import D, assert_meta, assert_problem, error_fields, parse_time, uid


def test_create_product_returns_201_with_version_position_and_headers(shared):
    pid = uid("prod")
    st, h, b = shared.post("/products", {"productId": pid, "name": "Blue Mug", "category": "kitchen",
                                         "price": 12.5, "stock": 10})
    assert st == 201, b
    assert b["productId"] == pid
    assert b["version"] == 1
    assert isinstance(b["position"], int) and b["position"] >= 1
    assert h.get("etag") == '"1"'
    assert h.get("x-position") == str(b["position"])
    assert h.get("content-type", "").startswith("application/json")


def test_product_view_after_create(shared):
    pid = uid("prod")
    created = shared.create_product(pid, name="Green Teapot", category="kitchen", price=19.99, stock=7)
    st, _, v = shared.query("/products/" + pid, created["position"])
    assert st == 200, v
    assert v["productId"] == pid
    assert v["name"] == "Green Teapot"
    assert v["category"] == "kitchen"
    assert v["price"] == D("19.99")
    assert v["currency"] == "USD"  # the default
    assert v["stock"] == 7
    assert v["available"] == 7
    assert v["inStock"] is True
    assert v["salesCount"] == 0
    assert v["revenue"] == 0
    assert v["lastSoldAt"] is None
    meta = assert_meta(v)
    assert meta["position"] >= created["position"]


def test_product_with_zero_stock_is_not_in_stock_and_keeps_currency(shared):
    pid = uid("prod")
    created = shared.create_product(pid, stock=0, currency="EUR", price=1)
    st, _, v = shared.query("/products/" + pid, created["position"])
    assert st == 200, v
    assert v["stock"] == 0 and v["available"] == 0
    assert v["inStock"] is False
    assert v["currency"] == "EUR"
    assert v["price"] == 1


def test_duplicate_product_is_409_and_appends_nothing(shared):
    pid = uid("prod")
    shared.create_product(pid)
    head = shared.idle_head()
    st, h, b = shared.post("/products", {"productId": pid, "name": "Other", "category": "x",
                                         "price": 1, "stock": 1})
    assert_problem(st, h, b, 409, "PRODUCT_EXISTS")
    assert shared.log_head() == head


def test_product_id_boundaries_are_accepted(server):
    for pid in ("a", "A" * 32 + "_-" + "9" * 30):  # 1 and 64 chars of [A-Za-z0-9_-]
        st, _, b = server.post("/products", {"productId": pid, "name": "n", "category": "c",
                                             "price": 0.01, "stock": 0})
        assert st == 201, b
        assert b["productId"] == pid
        st, _, v = server.query("/products/" + pid, b["position"])
        assert st == 200 and v["productId"] == pid, v


def _valid_product(**over):
    body = {"productId": uid("prod"), "name": "Valid Name", "category": "cat", "price": 9.99, "stock": 5}
    body.update(over)
    return body


def _without(key):
    b = _valid_product()
    del b[key]
    return b


INVALID_PRODUCTS = [
    ("productId", _valid_product(productId="bad id!")),
    ("productId", _valid_product(productId="bad/id")),
    ("productId", _valid_product(productId="")),
    ("productId", _valid_product(productId="x" * 65)),
    ("productId", _valid_product(productId=123)),
    ("productId", _without("productId")),
    ("name", _without("name")),
    ("name", _valid_product(name="")),
    ("name", _valid_product(name="n" * 201)),
    ("category", _without("category")),
    ("category", _valid_product(category="")),
    ("category", _valid_product(category="c" * 101)),
    ("price", _valid_product(price=9.999)),
    ("price", _valid_product(price=0)),
    ("price", _valid_product(price=-1)),
    ("price", _valid_product(price="9.99")),
    ("price", _valid_product(price=10000000000.01)),
    ("price", _without("price")),
    ("stock", _valid_product(stock=-1)),
    ("stock", _valid_product(stock=1.5)),
    ("stock", _valid_product(stock="5")),
    ("stock", _without("stock")),
    ("currency", _valid_product(currency="usd")),
    ("currency", _valid_product(currency="US")),
    ("currency", _valid_product(currency="USDX")),
    ("currency", _valid_product(currency=840)),
]


@pytest.mark.parametrize("field,body", INVALID_PRODUCTS,
                         ids=["%s-%d" % (f, i) for i, (f, _) in enumerate(INVALID_PRODUCTS)])
def test_invalid_product_is_400_with_field_error_and_appends_nothing(shared, field, body):
    head = shared.idle_head()
    st, h, b = shared.post("/products", body)
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert field in error_fields(b), b
    assert shared.log_head() == head
    if isinstance(body.get("productId"), str) and body["productId"]:
        st, _, _ = shared.get("/products/" + urllib.parse.quote(body["productId"], safe=""), {"waitMs": 0})
        assert st in (400, 404)


def test_largest_price_is_accepted(shared):
    pid = uid("prod")
    c = shared.create_product(pid, price=10000000000.00)
    st, _, v = shared.query("/products/" + pid, c["position"])
    assert st == 200 and v["price"] == D("10000000000"), v


def test_several_invalid_fields_are_all_reported(shared):
    st, h, b = shared.post("/products", {"productId": "bad id", "name": "", "category": "c",
                                         "price": 0.001, "stock": -3})
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert {"productId", "name", "price", "stock"} <= error_fields(b), b


def test_restock_adds_stock(shared):
    pid = uid("prod")
    shared.create_product(pid, stock=10)
    st, h, b = shared.post("/products/%s/restock" % pid, {"quantity": 5})
    assert st == 200, b
    assert b["productId"] == pid
    assert b["stock"] == 15
    assert b["version"] == 2
    assert h.get("etag") == '"2"'
    assert h.get("x-position") == str(b["position"])
    st, _, v = shared.query("/products/" + pid, b["position"])
    assert st == 200, v
    assert v["stock"] == 15 and v["available"] == 15 and v["inStock"] is True
    assert_meta(v)["position"] >= b["position"]


def test_restock_zero_stock_product_makes_it_in_stock(shared):
    pid = uid("prod")
    shared.create_product(pid, stock=0)
    st, _, b = shared.post("/products/%s/restock" % pid, {"quantity": 1})
    assert st == 200 and b["stock"] == 1, b
    st, _, v = shared.query("/products/" + pid, b["position"])
    assert v["inStock"] is True and v["stock"] == 1


def test_restock_unknown_product_is_404(shared):
    head = shared.idle_head()
    st, h, b = shared.post("/products/%s/restock" % uid("nope"), {"quantity": 5})
    assert_problem(st, h, b, 404, "PRODUCT_NOT_FOUND")
    assert shared.log_head() == head


def test_restock_of_an_id_longer_than_64_is_404_not_its_prefix(shared):
    # Found by fuzzing (tests/fuzz/fuzz_commands.c): the path id was cut to 64 characters, so
    # this restocked the product named by the first 64.
    pid = (uid("long") + "x" * 64)[:64]
    shared.create_product(pid, stock=1)
    head = shared.idle_head()
    st, h, b = shared.post("/products/%sEXTRA/restock" % pid, {"quantity": 5})
    assert_problem(st, h, b, 404, "PRODUCT_NOT_FOUND")
    assert shared.log_head() == head
    st, _, evs = shared.get("/streams/product-" + pid)
    assert st == 200 and [e["type"] for e in evs] == ["ProductCreated"], evs


@pytest.mark.parametrize("qty", [0, -1, 1.5, "3", None])
def test_restock_invalid_quantity_is_400(shared, qty):
    pid = uid("prod")
    shared.create_product(pid)
    head = shared.idle_head()
    body = {} if qty is None else {"quantity": qty}
    st, h, b = shared.post("/products/%s/restock" % pid, body)
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert "quantity" in error_fields(b)
    assert shared.log_head() == head


def test_unknown_product_view_is_404(shared):
    st, h, b = shared.get("/products/" + uid("nope"), {"waitMs": 0})
    assert_problem(st, h, b, 404, "PRODUCT_NOT_FOUND")


def test_product_events_are_in_the_product_stream(shared):
    pid = uid("prod")
    c = shared.create_product(pid, stock=3)
    r = shared.post("/products/%s/restock" % pid, {"quantity": 4})[2]
    st, _, evs = shared.get("/streams/product-" + pid)
    assert st == 200, evs
    assert [e["version"] for e in evs] == [1, 2]
    assert [e["position"] for e in evs] == [c["position"], r["position"]]
    assert all(e["stream"] == "product-" + pid for e in evs)
    parse_time(evs[0]["recordedAt"])


def test_unknown_fields_are_ignored(shared):
    pid = uid("prod")
    st, _, b = shared.post("/products", {"productId": pid, "name": "n", "category": "c", "price": 1,
                                         "stock": 1, "color": "red", "extra": {"nested": [1, 2]}})
    assert st == 201, b
    st, _, v = shared.query("/products/" + pid, b["position"])
    assert st == 200 and "color" not in v


def test_unicode_names_round_trip_and_count_characters(shared):
    pid = uid("prod")
    name = "Café Crème ☕ Ünïcødé"
    c = shared.create_product(pid, name=name, category="Küche")
    st, _, v = shared.query("/products/" + pid, c["position"])
    assert st == 200 and v["name"] == name and v["category"] == "Küche", v
    # Lengths are in characters: 200 two-byte characters are a valid name, 201 are not.
    st, _, b = shared.post("/products", {"productId": uid("prod"), "name": "é" * 200, "category": "c",
                                         "price": 1, "stock": 1})
    assert st == 201, b
    st, h, b = shared.post("/products", {"productId": uid("prod"), "name": "é" * 201, "category": "c",
                                         "price": 1, "stock": 1})
    assert_problem(st, h, b, 400, "VALIDATION_FAILED")
    assert "name" in error_fields(b)
