"""Read lane: order view, customer history, search, daily sales, product ranking, consistency."""

import datetime as dt
import os
import re
import sqlite3
import time
import uuid

import pytest

from conftest import D, assert_meta, assert_problem, parse_time, uid, word

SUMMARY_KEYS = {"orderId", "customerId", "status", "total", "currency", "itemCount", "createdAt",
                "updatedAt", "version"}


# ---------------------------------------------------------------- customer history
def test_customer_orders_paginate_newest_first(shared):
    p = shared.create_product(uid("prod"), price=2.5)
    cust = str(uuid.uuid4())
    other = shared.place_order([(p["productId"], 1, 2.5)])  # another customer's order
    placed = []
    for i in range(5):
        placed.append(shared.place_order([(p["productId"], i + 1, 2.5)], customer_id=cust))
    for o in placed:
        assert shared.wait_settled(o["orderId"])["status"] == "RESERVED"
    head = shared.idle_head()
    pages, cursor = [], None
    for _ in range(10):
        params = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        st, _, b = shared.query("/customers/%s/orders" % cust, head, params)
        assert st == 200, b
        assert_meta(b)
        pages.append(b["items"])
        cursor = b["nextCursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
    assert [len(pg) for pg in pages] == [2, 2, 1]
    ids = [s["orderId"] for pg in pages for s in pg]
    assert ids == sorted((o["orderId"] for o in placed), reverse=True)
    assert other["orderId"] not in ids
    by_id = {o["orderId"]: o for o in placed}
    for s in (s for pg in pages for s in pg):
        assert SUMMARY_KEYS <= set(s), s
        o = by_id[s["orderId"]]
        assert s["customerId"] == cust
        assert s["status"] == "RESERVED"
        assert s["total"] == o["order"]["total"]
        assert s["itemCount"] >= 1
        assert s["version"] == 2
        parse_time(s["createdAt"])


def test_customer_orders_reflect_status_changes(shared):
    p = shared.create_product(uid("prod"), price=1)
    cust = str(uuid.uuid4())
    o = shared.place_reserved_order([(p["productId"], 1, 1)], customer_id=cust)
    st, _, b = shared.command(o["orderId"], "confirm-payment")
    assert st == 200, b
    st, _, page = shared.query("/customers/%s/orders" % cust, b["position"])
    assert st == 200 and [(s["orderId"], s["status"], s["version"]) for s in page["items"]] == [
        (o["orderId"], "PAID", 3)], page


def test_unknown_customer_has_no_orders(shared):
    st, _, b = shared.get("/customers/%s/orders" % uuid.uuid4())
    assert st == 200, b
    assert b["items"] == [] and b["nextCursor"] is None
    assert_meta(b)


@pytest.mark.parametrize("path", ["/customers/not-a-uuid/orders",
                                  "/customers/%s/orders?limit=0" % uuid.UUID(int=1),
                                  "/customers/%s/orders?limit=101" % uuid.UUID(int=1),
                                  "/customers/%s/orders?limit=x" % uuid.UUID(int=1)])
def test_customer_orders_bad_requests_are_400(shared, path):
    st, h, b = shared.get(path)
    assert_problem(st, h, b, 400)


# ---------------------------------------------------------------- search
def test_search_by_name_prefix(shared):
    w1, w2 = word("srch"), word("kind")
    p = shared.create_product(uid("prod"), name="%s %s Grinder" % (w1.capitalize(), w2), price=30)
    q = shared.create_product(uid("prod"), name="Unrelated %s" % word("thing"), price=1)
    o1 = shared.place_order([(p["productId"], 1, 30)])
    o2 = shared.place_order([(q["productId"], 1, 1), (p["productId"], 2, 30)])
    o3 = shared.place_order([(q["productId"], 1, 1)])
    head = o3["position"]

    def search(text, **extra):
        params = {"q": text}
        params.update(extra)
        st, _, b = shared.query("/orders/search", head, params)
        assert st == 200, b
        assert_meta(b)
        return b

    expected = sorted([o1["orderId"], o2["orderId"]], reverse=True)
    for text in (w1, w1[:6], w1[:6].upper(), "%s %s" % (w1[:7], w2[:5])):
        b = search(text)
        assert [s["orderId"] for s in b["items"]] == expected, (text, b)
        for s in b["items"]:
            assert SUMMARY_KEYS <= set(s), s
    assert search(word("nomatch"))["items"] == []
    assert search("%s %s" % (w1, word("nomatch")))["items"] == []  # every word must match
    assert len(search(w1, limit=1)["items"]) == 1



def _fts_segments(data_dir):
    names = [n for n in os.listdir(data_dir) if re.fullmatch(r"read\.orders\.\d+\.db", n)]
    assert len(names) == 1, names
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, names[0]), uri=True)
    try:
        return db.execute("SELECT count(DISTINCT segid) FROM rm_orders_fts_idx").fetchone()[0]
    finally:
        db.close()


def test_search_index_is_merged_once_the_log_is_quiet(server):
    """Every projector commit adds a segment to the full-text index; once no event arrived for a
    while the projector merges them (tl_projection_tidy_steps_total counts the steps), and
    searches answer the same, newest first."""
    w1, w2 = word("tidy"), word("calm")
    p = server.create_product(uid("prod"), name="%s Kettle" % w1.capitalize(), price=20, stock=10**6)
    q = server.create_product(uid("prod"), name="%s Mug" % w2.capitalize(), price=5, stock=10**6)
    with_p, with_q = [], []
    for i in range(200):  # ~600 events: a tidy cycle is due (TIDY_MIN_EVENTS)
        if i % 3:
            with_p.append(server.place_order([(p["productId"], 1, 20)])["orderId"])
        else:
            with_q.append(server.place_order([(q["productId"], 1, 5)])["orderId"])
    deadline = time.monotonic() + 30
    while True:
        steps = server.metric("tl_projection_tidy_steps_total", '{projection="orders"}')
        if steps > 0 and _fts_segments(server.data_dir) == 1:
            break
        assert time.monotonic() < deadline, "search index not merged: %r steps, %d segments" % (
            steps, _fts_segments(server.data_dir))
        time.sleep(0.1)
    head = server.log_head()
    for text, ids in ((w1, with_p), (w2[:5], with_q)):
        st, _, b = server.query("/orders/search", head, {"q": text, "limit": 100})
        assert st == 200, b
        assert [s["orderId"] for s in b["items"]] == ids[::-1][:100], text  # newest first


@pytest.mark.parametrize("query", ["", "?q=", "?q=%20%20", "?q=abc&limit=0", "?q=abc&limit=101"])
def test_search_bad_requests_are_400(shared, query):
    st, h, b = shared.get("/orders/search" + query)
    assert_problem(st, h, b, 400)


# ---------------------------------------------------------------- daily sales
def _today_of(order):
    return parse_time(order["order"]["createdAt"]).date()


def test_daily_sales_follow_the_counting_rule(server):
    p = server.create_product(uid("prod"), price=19.99)
    orders = [server.place_order([(p["productId"], 1, 19.99)]) for _ in range(30)]
    today = _today_of(orders[-1])
    assert _today_of(orders[0]) == today, "test ran across midnight UTC"
    pos = orders[-1]["position"]
    st, _, b = server.query("/sales/daily", pos, {"from": today.isoformat(), "to": today.isoformat()})
    assert st == 200, b
    assert_meta(b)
    assert b["days"] == [{"date": today.isoformat(), "orderCount": 30, "revenue": D("599.70")}], b
    assert str(b["days"][0]["revenue"]) in ("599.7", "599.70"), b

    # Paying and shipping do not change the count; cancelling or a rejection removes the order.
    for o in orders[:2]:
        assert server.wait_settled(o["orderId"])["status"] == "RESERVED"
    assert server.command(orders[0]["orderId"], "confirm-payment")[0] == 200
    assert server.command(orders[0]["orderId"], "ship")[0] == 200
    assert server.command(orders[1]["orderId"], "confirm-payment")[0] == 200
    assert server.command(orders[1]["orderId"], "cancel")[0] == 200
    assert server.command(orders[2]["orderId"], "cancel")[0] == 200
    big = server.place_order([(p["productId"], 1000, 19.99)])  # more than the stock of 100
    assert server.wait_settled(big["orderId"])["status"] == "REJECTED"
    pos = server.idle_head()
    st, _, b = server.query("/sales/daily", pos, {"from": today.isoformat(), "to": today.isoformat()})
    assert b["days"] == [{"date": today.isoformat(), "orderCount": 28, "revenue": D("559.72")}], b

    st, _, b = server.query("/sales/daily", pos)  # from/to default to today
    assert st == 200 and [d["date"] for d in b["days"]] == [today.isoformat()], b
    assert b["days"][0]["orderCount"] == 28


def test_daily_sales_range_is_zero_filled(server):
    p = server.create_product(uid("prod"), price=0.1)
    o = server.place_order([(p["productId"], 3, 0.1), (p["productId"], 1, 0.2)])
    today = _today_of(o)
    frm = today - dt.timedelta(days=3)
    st, _, b = server.query("/sales/daily", o["position"], {"from": frm.isoformat(), "to": today.isoformat()})
    assert st == 200, b
    assert [d["date"] for d in b["days"]] == [(frm + dt.timedelta(days=i)).isoformat() for i in range(4)]
    for d in b["days"][:3]:
        assert d["orderCount"] == 0 and d["revenue"] == 0, d
    assert b["days"][3]["orderCount"] == 1 and b["days"][3]["revenue"] == D("0.5"), b


def test_daily_sales_range_limits(shared):
    today = dt.datetime.now(dt.timezone.utc).date()
    frm = today - dt.timedelta(days=365)  # 366 days, inclusive
    st, _, b = shared.get("/sales/daily", {"from": frm.isoformat(), "to": today.isoformat()})
    assert st == 200 and len(b["days"]) == 366, (st, b if st != 200 else len(b["days"]))
    for bad in ({"from": (frm - dt.timedelta(days=1)).isoformat(), "to": today.isoformat()},
                {"from": today.isoformat(), "to": (today - dt.timedelta(days=1)).isoformat()},
                {"from": "2026-02-30", "to": today.isoformat()},
                {"from": "yesterday"}):
        st, h, b = shared.get("/sales/daily", bad)
        assert_problem(st, h, b, 400)


# ---------------------------------------------------------------- products ranking and counters
def test_products_by_category_ranked_and_paginated(shared):
    cat = word("cat")
    ids = {k: "%s-%s" % (k, uuid.uuid4().hex[:6]) for k in "abcde"}
    for k in "abcde":
        shared.create_product(ids[k], name="Item " + k, category=cat, price=1)
    shared.create_product(uid("prod"), category=word("othercat"), price=1)
    oc = shared.place_order([(ids["c"], 5, 1)])
    shared.place_order([(ids["b"], 2, 1)])
    oa = shared.place_order([(ids["a"], 1, 1), (ids["a"], 1, 1)])
    head = oa["position"]

    def listing(pos):
        pages, cursor = [], None
        for _ in range(10):
            params = {"category": cat, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            st, _, b = shared.query("/products", pos, params)
            assert st == 200, b
            assert_meta(b)
            pages.append(b["items"])
            cursor = b["nextCursor"]
            if cursor is None:
                break
        return pages

    pages = listing(head)
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [v for p in pages for v in p]
    assert [v["productId"] for v in flat] == [ids["c"], ids["a"], ids["b"], ids["d"], ids["e"]]
    assert [v["salesCount"] for v in flat] == [5, 2, 2, 0, 0]
    for v in flat:
        assert v["category"] == cat
        assert "meta" not in v
        assert {"productId", "name", "category", "price", "currency", "stock", "available", "inStock",
                "salesCount", "revenue", "lastSoldAt"} <= set(v), v

    # Cancelling the order for c drops it to the bottom of the sold ones.
    c_order = oc["orderId"]
    pos = shared.command(c_order, "cancel")[2]["position"]
    flat = [v for p in listing(pos) for v in p]
    assert [v["productId"] for v in flat] == [ids["a"], ids["b"], ids["c"], ids["d"], ids["e"]]
    assert [v["salesCount"] for v in flat] == [2, 2, 0, 0, 0]


def test_product_counters_follow_the_counting_rule(shared):
    pid = uid("prod")
    shared.create_product(pid, price=19.99, stock=50)
    o1 = shared.place_reserved_order([(pid, 2, 19.99)])
    time.sleep(0.01)
    o2 = shared.place_reserved_order([(pid, 3, 19.99)])
    st, _, v = shared.query("/products/" + pid, shared.idle_head())
    assert st == 200, v
    assert v["salesCount"] == 5 and v["revenue"] == D("99.95"), v
    assert parse_time(v["lastSoldAt"]) == parse_time(o2["order"]["createdAt"])
    assert v["stock"] == 50 and v["available"] == 45 and v["inStock"] is True, v

    assert shared.command(o2["orderId"], "cancel")[0] == 200
    st, _, v = shared.query("/products/" + pid, shared.idle_head())
    assert v["salesCount"] == 2 and v["revenue"] == D("39.98"), v
    assert parse_time(v["lastSoldAt"]) == parse_time(o1["order"]["createdAt"])
    assert v["stock"] == 50 and v["available"] == 48, v  # the cancelled order's units are released

    assert shared.command(o1["orderId"], "confirm-payment")[0] == 200
    assert shared.command(o1["orderId"], "ship")[0] == 200
    st, _, v = shared.query("/products/" + pid, shared.idle_head())
    assert v["salesCount"] == 2 and v["revenue"] == D("39.98"), v  # paid/shipped orders still count
    assert v["stock"] == 48 and v["available"] == 48, v  # shipped units left the stock

    many = [shared.place_order([(pid, 1, 19.99)]) for _ in range(10)]
    rejected = shared.place_order([(pid, 100, 19.99)])  # more than available: REJECTED, not counted
    assert shared.wait_settled(rejected["orderId"])["status"] == "REJECTED"
    st, _, v = shared.query("/products/" + pid, shared.idle_head())
    assert v["salesCount"] == 12 and v["revenue"] == D("239.88"), v
    assert v["stock"] == 48 and v["available"] == 38, v
    assert parse_time(v["lastSoldAt"]) == parse_time(many[-1]["order"]["createdAt"])


def test_an_order_listing_a_product_on_two_lines_counts_both(shared):
    """items may name a product twice: the order view keeps both lines, the product's counters
    (and its lines, which a cancellation reads back) sum them, and a cancellation takes both
    back."""
    pid = uid("prod")
    shared.create_product(pid, price=2.5, stock=50)
    o = shared.place_reserved_order([(pid, 2, 2.5), (pid, 3, 2.5)])
    head = shared.idle_head()
    st, _, v = shared.query("/orders/" + o["orderId"], head)
    assert st == 200 and [i["quantity"] for i in v["items"]] == [2, 3], v
    assert v["total"] == D("12.5"), v
    st, _, v = shared.query("/products/" + pid, head)
    assert v["salesCount"] == 5 and v["revenue"] == D("12.5"), v
    assert v["available"] == 45, v
    assert shared.command(o["orderId"], "cancel")[0] == 200
    st, _, v = shared.query("/products/" + pid, shared.idle_head())
    assert v["salesCount"] == 0 and v["revenue"] == 0 and v["lastSoldAt"] is None, v
    assert v["available"] == 50, v


def test_bad_category_listing_parameters_are_400(shared):
    for q in ("limit=0", "limit=101", "limit=abc"):
        st, h, b = shared.get("/products?" + q)
        assert_problem(st, h, b, 400)


# ---------------------------------------------------------------- consistency parameters
def _all_queries(shared):
    p = shared.create_product(uid("prod"), name="Meta Probe %s" % word("m"), price=1)
    cust = str(uuid.uuid4())
    o = shared.place_order([(p["productId"], 1, 1)], customer_id=cust)
    name_word = p["_request"]["name"].split()[-1]
    return o["position"], [
        "/orders/" + o["orderId"],
        "/customers/%s/orders" % cust,
        "/orders/search?q=" + name_word,
        "/sales/daily",
        "/products?category=general",
        "/products/" + p["productId"],
    ]


def test_every_query_has_meta_and_honours_min_position(shared):
    pos, paths = _all_queries(shared)
    for path in paths:
        sep = "&" if "?" in path else "?"
        st, h, b = shared.get("%s%sminPosition=%d&waitMs=5000" % (path, sep, pos))
        assert st == 200, (path, b)
        meta = assert_meta(b)
        assert meta["position"] >= pos, (path, meta)
        st, h, b = shared.get(path, headers={"X-Min-Position": str(pos)})
        assert st == 200, (path, b)
        assert assert_meta(b)["position"] >= pos, path


def test_caught_up_meta_matches_the_log(server):
    p = server.create_product(uid("prod"), price=1)
    o = server.place_order([(p["productId"], 1, 1)])
    head = server.idle_head()  # the saga has reserved it: the head is stable
    assert head > o["position"]
    st, _, b = server.query("/products/" + p["productId"], head)
    assert st == 200
    meta = b["meta"]
    assert meta["position"] == head == server.log_head()
    last = server.log_events(head)[0]
    assert meta["dataAsOf"] == last["recordedAt"]
    assert meta["lagMs"] == 0


def test_empty_read_model_meta(server):
    st, _, b = server.get("/customers/%s/orders" % uuid.uuid4())
    assert st == 200
    assert b["meta"]["position"] == 0 and b["meta"]["dataAsOf"] is None and b["meta"]["lagMs"] == 0


@pytest.mark.parametrize("via_header", [False, True])
def test_wait_for_future_position_times_out_with_503(shared, via_header):
    head = shared.idle_head()
    future = head + 1000000
    t0 = time.monotonic()
    if via_header:
        st, h, b = shared.get("/sales/daily?waitMs=200", headers={"X-Min-Position": str(future)})
    else:
        st, h, b = shared.get("/products?minPosition=%d&waitMs=200" % future)
    elapsed = time.monotonic() - t0
    assert_problem(st, h, b, 503, "STALE_READ_MODEL")
    assert h.get("retry-after") == "1", h
    assert b["minPosition"] == future
    assert isinstance(b["position"], int) and head <= b["position"] < future
    assert 0.15 <= elapsed < 3.0, elapsed


def test_wait_ms_zero_answers_at_once(shared):
    head = shared.idle_head()
    t0 = time.monotonic()
    st, h, b = shared.get("/products?minPosition=%d&waitMs=0" % (head + 1000000))
    assert_problem(st, h, b, 503, "STALE_READ_MODEL")
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("query", ["minPosition=-1", "minPosition=abc", "minPosition=1.5", "waitMs=10001",
                                   "waitMs=-1", "waitMs=soon"])
def test_bad_consistency_parameters_are_400(shared, query):
    st, h, b = shared.get("/products?" + query)
    assert_problem(st, h, b, 400)
    st, h, b = shared.get("/customers/%s/orders?%s" % (uuid.uuid4(), query))
    assert_problem(st, h, b, 400)


def test_bad_min_position_header_is_400(shared):
    st, h, b = shared.get("/sales/daily", headers={"X-Min-Position": "later"})
    assert_problem(st, h, b, 400)


def test_wait_ms_10000_is_accepted(shared):
    st, _, b = shared.get("/sales/daily?minPosition=0&waitMs=10000")
    assert st == 200 and assert_meta(b)


def test_large_revenue_sums_are_exact(server):
    """Sums of orders at the total limit (9,999,999,999.99 each) are written out exactly."""
    p = server.create_product(uid("prod"), price=9999999999.99)
    placed = [server.place_order([(p["productId"], 1, 9999999999.99)]) for _ in range(10)]
    today = _today_of(placed[-1])
    pos = placed[-1]["position"]
    st, _, d = server.query("/sales/daily", pos, {"from": today.isoformat(), "to": today.isoformat()})
    assert st == 200
    assert d["days"][0]["orderCount"] == 10
    assert d["days"][0]["revenue"] == D("99999999999.90"), d
    st, _, v = server.query("/products/" + p["productId"], pos)
    assert v["salesCount"] == 10 and v["revenue"] == D("99999999999.90"), v
    pos = server.command(placed[0]["orderId"], "cancel")[2]["position"]
    st, _, d = server.query("/sales/daily", pos, {"from": today.isoformat(), "to": today.isoformat()})
    assert d["days"][0]["revenue"] == D("89999999999.91"), d


def test_search_tolerates_query_syntax_characters(shared):
    w = word("fts")
    p = shared.create_product(uid("prod"), name="%s Kettle" % w.capitalize(), price=3)
    o = shared.place_order([(p["productId"], 1, 3)])
    for text in ('"%s' % w, "%s*" % w[:6], "%s)" % w, "(%s" % w[:5], "%s:" % w, "'%s'" % w):
        st, _, b = shared.query("/orders/search", o["position"], {"q": text})
        assert st == 200, (text, b)
        assert [s["orderId"] for s in b["items"]] == [o["orderId"]], (text, b)
    for text in ('"', "*", "AND", "NEAR(", "a OR", "^", "-", "name:x", "%s NOT" % w):
        st, h, b = shared.get("/orders/search", {"q": text})
        assert st in (200, 400), (text, st, b)
        if st == 200:
            assert isinstance(b["items"], list) and o["orderId"] not in [s["orderId"] for s in b["items"]] \
                or text.startswith(w), (text, b)


@pytest.mark.parametrize("path", ["/customers/%s/orders?cursor=garbage" % uuid.UUID(int=7),
                                  "/products?cursor=garbage", "/products?cursor=%00%01"])
def test_garbage_cursor_is_400(shared, path):
    st, h, b = shared.get(path)
    assert_problem(st, h, b, 400)


def test_waiting_queries_wake_up_on_the_write(server):
    p = server.create_product(uid("prod"), price=1)
    target = server.log_head() + 1
    n = 12

    def wait_query(i):
        t0 = time.monotonic()
        st, _, b = server.get("/products/%s?minPosition=%d&waitMs=8000" % (p["productId"], target))
        return st, b, time.monotonic() - t0

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(n) as ex:
        futs = [ex.submit(wait_query, i) for i in range(n)]
        time.sleep(0.5)
        o = server.place_order([(p["productId"], 2, 1)])
        assert o["position"] == target
        results = [f.result(timeout=30) for f in futs]
    for st, b, elapsed in results:
        assert st == 200, b
        assert b["meta"]["position"] >= target
        assert b["salesCount"] == 2
        assert elapsed < 5, elapsed


def test_customer_pages_are_stable_when_new_orders_arrive(shared):
    """The cursor marks a place in the list, not an offset: orders placed between two page reads
    neither repeat nor hide the older ones."""
    p = shared.create_product(uid("prod"), price=1)
    cust = str(uuid.uuid4())
    old = [shared.place_order([(p["productId"], 1, 1)], customer_id=cust) for _ in range(5)]
    st, _, page1 = shared.query("/customers/%s/orders" % cust, old[-1]["position"], {"limit": 2})
    assert st == 200 and len(page1["items"]) == 2 and page1["nextCursor"]
    new = [shared.place_order([(p["productId"], 1, 1)], customer_id=cust) for _ in range(3)]
    ids = [s["orderId"] for s in page1["items"]]
    cursor = page1["nextCursor"]
    for _ in range(10):
        st, _, pg = shared.query("/customers/%s/orders" % cust, new[-1]["position"], {"limit": 2, "cursor": cursor})
        assert st == 200, pg
        ids += [s["orderId"] for s in pg["items"]]
        cursor = pg["nextCursor"]
        if cursor is None:
            break
    assert ids == sorted((o["orderId"] for o in old), reverse=True)
    st, _, first = shared.query("/customers/%s/orders" % cust, new[-1]["position"], {"limit": 3})
    assert [s["orderId"] for s in first["items"]] == sorted((o["orderId"] for o in new), reverse=True)


def test_order_view_cache_answers_repeats_and_never_serves_a_replaced_view(make_server):
    """GET /orders/{id} is answered from rendered views kept in memory: a repeat is a cache hit
    (tl_view_cache_total), byte for byte the same, and every change the projector applies
    replaces the view before its position is published, so a read at that position (or after)
    never gets the old one."""
    srv = make_server()
    pid = srv.create_product(uid("prod"), stock=10)["productId"]
    o = srv.place_reserved_order([(pid, 1, 3)])
    oid = o["orderId"]
    pos = srv.idle_head()
    hits = srv.metric("tl_view_cache_total", '{query="order",result="hit"}')
    st, _, first = srv.query("/orders/" + oid, pos)
    st2, _, again = srv.query("/orders/" + oid, pos)
    assert st == st2 == 200 and first["status"] == "RESERVED", first
    first.pop("meta"), again.pop("meta")
    assert again == first
    assert srv.metric("tl_view_cache_total", '{query="order",result="hit"}') > hits
    for action, status in (("confirm-payment", "PAID"), ("ship", "SHIPPED")):
        st, h, b = srv.command(oid, action)
        assert st == 200, b
        for _ in range(3):  # the first read may fill the cache, the next ones hit it
            st, _, v = srv.query("/orders/" + oid, b["position"])
            assert st == 200 and v["status"] == status and v["version"] >= b["version"], v


def _cache_hits(srv, query):
    return srv.metric("tl_view_cache_total", '{query="%s",result="hit"}' % query)


def _same_answer(srv, path, pos, params=None):
    """Reads path twice at pos: the second read must be a cache hit giving the same answer."""
    query = {"/orders/search": "search"}.get(path, "customer_orders")
    st, _, first = srv.query(path, pos, params)
    hits = _cache_hits(srv, query)
    st2, _, again = srv.query(path, pos, params)
    assert st == st2 == 200, (first, again)
    assert _cache_hits(srv, query) == hits + 1
    first.pop("meta"), again.pop("meta")
    assert again == first
    return first


def test_customer_page_cache_is_dropped_by_the_customers_orders_only(make_server):
    """Customer pages are cached per customer: a new order of the customer, and a status change
    of one of their orders (an event that does not name the customer: the projector looks the
    order's customer up), replace their pages before the position is published; another
    customer's page stays cached."""
    srv = make_server()
    pid = srv.create_product(uid("prod"), stock=100)["productId"]
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    o1 = srv.place_reserved_order([(pid, 1, 3)], customer_id=a)
    srv.place_reserved_order([(pid, 1, 3)], customer_id=b)
    pos = srv.idle_head()
    page_a = "/customers/%s/orders" % a
    page_b = "/customers/%s/orders" % b
    first = _same_answer(srv, page_a, pos)
    assert [s["orderId"] for s in first["items"]] == [o1["orderId"]]
    _same_answer(srv, page_a, pos, {"limit": 1})  # another page size: its own entry
    _same_answer(srv, page_b, pos)
    st, _, paid = srv.command(o1["orderId"], "confirm-payment")
    assert st == 200, paid
    for params in (None, {"limit": 1}):
        st, _, v = srv.query(page_a, paid["position"], params)
        assert st == 200 and [(s["status"], s["version"]) for s in v["items"]] == [("PAID", 3)], v
    o2 = srv.place_reserved_order([(pid, 2, 3)], customer_id=a)
    st, _, v = srv.query(page_a, srv.idle_head())
    assert [s["orderId"] for s in v["items"]] == [o2["orderId"], o1["orderId"]], v
    hits = _cache_hits(srv, "customer_orders")
    st, _, v = srv.query(page_b, srv.idle_head())  # untouched since it was cached
    assert st == 200 and len(v["items"]) == 1 and _cache_hits(srv, "customer_orders") == hits + 1


def _cache_misses(srv, query):
    return srv.metric("tl_view_cache_total", '{query="%s",result="miss"}' % query)


def test_search_cache_is_dropped_by_the_orders_it_can_show(make_server):
    """Searches are cached in groups named by the first two characters of their longest word. A
    committed order (new, or changed) drops the groups of its names' tokens: a search it could
    show is answered afresh at the order's position, a search it cannot show stays cached.
    Names with a non-ASCII character drop every search; a search whose words all start with
    one is not cached."""
    srv = make_server()
    wa, wb = word("qz"), word("vk")
    pa = srv.create_product(uid("prod"), name=wa.capitalize(), stock=100)["productId"]
    pb = srv.create_product(uid("prod"), name="Big " + wb, stock=100)["productId"]
    o1 = srv.place_reserved_order([(pa, 1, 3)])
    ob = srv.place_reserved_order([(pb, 1, 3)])
    pos = srv.idle_head()
    first = _same_answer(srv, "/orders/search", pos, {"q": wa})
    assert [s["orderId"] for s in first["items"]] == [o1["orderId"]]
    # An order of the other product cannot show in this search: it stays cached.
    o_other = srv.place_reserved_order([(pb, 1, 3)])
    hits = _cache_hits(srv, "search")
    st, _, v = srv.query("/orders/search", o_other["position"], {"q": wa})
    assert st == 200 and _cache_hits(srv, "search") == hits + 1
    v.pop("meta"), first.pop("meta", None)
    assert v == first
    # A status change of an order on the page, and a new matching order, show at their position.
    st, _, paid = srv.command(o1["orderId"], "confirm-payment")
    assert st == 200, paid
    st, _, v = srv.query("/orders/search", paid["position"], {"q": wa})
    assert [s["status"] for s in v["items"]] == ["PAID"], v
    o2 = srv.place_reserved_order([(pa, 1, 3)])
    st, _, v = srv.query("/orders/search", o2["position"], {"q": wa})
    assert [s["orderId"] for s in v["items"]] == [o2["orderId"], o1["orderId"]], v
    st, _, v = srv.query("/orders/search", o2["position"], {"q": wa, "limit": 1})
    assert [s["orderId"] for s in v["items"]] == [o2["orderId"]], v
    # A search of several words is grouped by its longest: an order whose names share only
    # the shorter word's start cannot show in it and leaves it cached.
    first = _same_answer(srv, "/orders/search", srv.idle_head(), {"q": "big " + wb})
    assert {s["orderId"] for s in first["items"]} == {ob["orderId"], o_other["orderId"]}, first
    pc = srv.create_product(uid("prod"), name="Bigger " + word("mm"), stock=100)["productId"]
    oc = srv.place_reserved_order([(pc, 1, 3)])
    hits = _cache_hits(srv, "search")
    st, _, v = srv.query("/orders/search", oc["position"], {"q": "big " + wb})
    assert st == 200 and _cache_hits(srv, "search") == hits + 1
    v.pop("meta")
    assert v == first
    st, _, v = srv.query("/orders/search", oc["position"], {"q": "big"})
    assert oc["orderId"] in {s["orderId"] for s in v["items"]}, v
    # Names with a non-ASCII character drop every search (here one they cannot show).
    pu = srv.create_product(uid("prod"), name="\u00c9clair " + word("zz"), stock=100)["productId"]
    pos = srv.idle_head()
    _same_answer(srv, "/orders/search", pos, {"q": wb})
    ou = srv.place_reserved_order([(pu, 1, 3)])
    misses = _cache_misses(srv, "search")
    st, _, v = srv.query("/orders/search", ou["position"], {"q": wb})
    assert st == 200 and len(v["items"]) == 2 and _cache_misses(srv, "search") == misses + 1
    # A search whose only word starts with a non-ASCII character: answered, never cached.
    hits = _cache_hits(srv, "search")
    for _ in range(2):
        st, _, v = srv.query("/orders/search", ou["position"], {"q": "\u00e9clair"})
        assert st == 200 and [s["orderId"] for s in v["items"]] == [ou["orderId"]], v
    assert _cache_hits(srv, "search") == hits


def test_view_cache_can_be_turned_off(make_server):
    srv = make_server(["--view-cache", "0"])
    pid = srv.create_product(uid("prod"), name="Offcache lamp", stock=10)["productId"]
    cust = str(uuid.uuid4())
    o = srv.place_reserved_order([(pid, 1, 3)], customer_id=cust)
    pos = srv.idle_head()
    for _ in range(3):
        st, _, v = srv.query("/orders/" + o["orderId"], pos)
        assert st == 200 and v["status"] == "RESERVED", v
        st, _, v = srv.query("/customers/%s/orders" % cust, pos)
        assert st == 200 and len(v["items"]) == 1, v
        st, _, v = srv.query("/orders/search", pos, {"q": "offcache"})
        assert st == 200 and len(v["items"]) == 1, v
    for query in ("customer_orders", "search"):
        assert _cache_hits(srv, query) == 0
        assert srv.metric("tl_view_cache_total", '{query="%s",result="miss"}' % query) >= 3
    assert srv.metric("tl_view_cache_total", '{query="order",result="hit"}') == 0
    assert srv.metric("tl_view_cache_total", '{query="order",result="miss"}') >= 3


@pytest.mark.parametrize("value", ["-1", "x", "1048577", ""])
def test_view_cache_option_is_checked(value):
    import subprocess
    from conftest import BIN
    r = subprocess.run([BIN, "serve", "--view-cache", value], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"--view-cache" in r.stderr, r
