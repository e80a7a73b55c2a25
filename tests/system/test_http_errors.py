"""HTTP-level behaviour: content types, body size, malformed JSON, routing, keep-alive."""

import http.client
import json
import socket
import time

import pytest

from conftest import Server, assert_problem, uid

MIB = 1024 * 1024


def product_body(**over):
    b = {"productId": uid("prod"), "name": "Thing", "category": "c", "price": 1.5, "stock": 1}
    b.update(over)
    return b


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(shared, ctype):
    head = shared.idle_head()
    hdrs = {"Content-Type": ctype} if ctype else {}
    body = json.dumps(product_body()).encode()
    st, h, b = shared.req("POST", "/products", raw=body, headers=hdrs)
    assert_problem(st, h, b, 415)
    assert shared.log_head() == head


def test_json_with_charset_parameter_is_accepted(shared):
    body = product_body()
    st, _, b = shared.req("POST", "/products", raw=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert st == 201, b
    assert b["productId"] == body["productId"]


def _raw_post(port, path, body, ctype="application/json", timeout=20):
    """POST over a raw socket, tolerating a server that answers before reading the whole body."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (path, ctype, len(body))).encode()
        try:
            s.sendall(head)
            view = memoryview(body)
            for i in range(0, len(body), 65536):
                s.sendall(view[i:i + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                c = s.recv(65536)
            except ConnectionResetError:
                break
            if not c:
                break
            chunks.append(c)
        data = b"".join(chunks)
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1."), "no HTTP answer: %r" % (data[:200],)
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, buf = b"", rest
        while buf:
            size_s, _, buf = buf.partition(b"\r\n")
            size = int(size_s.split(b";")[0], 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    try:
        parsed = json.loads(rest.decode())
    except ValueError:
        parsed = rest.decode("utf-8", "replace")
    return status, headers, parsed


def _padded(body, total):
    raw = json.dumps(body).encode()
    assert len(raw) <= total
    return raw + b" " * (total - len(raw))


def test_body_over_one_mib_is_413(shared):
    head = shared.idle_head()
    st, h, b = _raw_post(shared.port, "/products", _padded(product_body(), MIB + 1))
    assert_problem(st, h, b, 413)
    assert shared.log_head() == head
    assert shared.get("/health")[0] == 200  # still serving


def test_big_string_over_one_mib_is_413(shared):
    head = shared.idle_head()
    st, h, b = _raw_post(shared.port, "/products", json.dumps(product_body(name="x" * (MIB + 10))).encode())
    assert_problem(st, h, b, 413)
    assert shared.log_head() == head


def test_body_of_exactly_one_mib_is_accepted(shared):
    body = product_body()
    st, h, b = _raw_post(shared.port, "/products", _padded(body, MIB))
    assert st == 201, b
    assert b["productId"] == body["productId"]


@pytest.mark.parametrize("raw", [b'{"productId": ', b"not json", b"", b"[1, 2]", b'"a string"', b"42",
                                 b'{"a": 1,}', b"\xff\xfe{}"])
def test_malformed_json_is_400(shared, raw):
    head = shared.idle_head()
    st, h, b = shared.req("POST", "/products", raw=raw, headers={"Content-Type": "application/json"})
    p = assert_problem(st, h, b, 400, "MALFORMED_JSON")
    assert isinstance(p["type"], str) and isinstance(p["title"], str) and isinstance(p["detail"], str)
    assert shared.log_head() == head


def test_malformed_json_says_where(shared):
    """The detail points at the first byte that is not JSON: line, column, byte offset."""
    raw = b'{"productId": "p",\n "price": 01}'
    st, h, b = shared.req("POST", "/products", raw=raw, headers={"Content-Type": "application/json"})
    p = assert_problem(st, h, b, 400, "MALFORMED_JSON")
    assert "line 2, column 12 (byte 30)" in p["detail"], p


@pytest.mark.parametrize("raw", [
    b'{"productId": "dup-a", "name": "A", "category": "c", "price": 1, "stock": 1,'
    b' "productId": "dup-b"}',
    b'{"productId": "dup-c", "name": "A", "category": "c", "price": 1, "stock": 1,'
    b' "extra": {"k": 1, "k": 2}}',
    # a long name whose 64th byte falls inside a character: the detail must stay UTF-8
    b'{"productId": "dup-d", "' + b"a" * 63 + "\u00e9".encode() + b'": 1, "' + b"a" * 63
    + "\u00e9".encode() + b'": 2}',
])
def test_a_body_that_repeats_a_name_is_400(shared, raw):
    """Which of two values would count is ambiguous: the body is refused as a whole, wherever
    the repeat is, and nothing is created."""
    head = shared.idle_head()
    st, h, b = shared.req("POST", "/products", raw=raw, headers={"Content-Type": "application/json"})
    p = assert_problem(st, h, b, 400, "MALFORMED_JSON")
    assert "repeats the name" in p["detail"], p
    assert shared.log_head() == head
    for pid in ("dup-a", "dup-b", "dup-c"):
        st, _, _ = shared.get("/products/" + pid)
        assert st == 404


def test_malformed_json_on_order_command_is_400_and_changes_nothing(shared):
    p = shared.create_product(uid("prod"), price=2)
    o = shared.place_reserved_order([(p["productId"], 1, 2)])
    head = shared.idle_head()
    for action in ("cancel", "confirm-payment", "ship"):
        st, h, b = shared.req("POST", "/orders/%s/%s" % (o["orderId"], action), raw=b"{oops",
                              headers={"Content-Type": "application/json"})
        assert_problem(st, h, b, 400, "MALFORMED_JSON")
    assert shared.log_head() == head
    st, _, s = shared.get("/orders/%s/state" % o["orderId"])
    assert st == 200 and s["status"] == "RESERVED" and s["version"] == 2, s


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("GET", "/orders/x/y/z"),
                                         ("POST", "/unknown"), ("GET", "/products/a/b/c")])
def test_unknown_path_is_404(shared, method, path):
    st, h, b = shared.req(method, path, body={} if method == "POST" else None)
    assert_problem(st, h, b, 404, "NOT_FOUND")


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/orders", "POST"),
    ("GET", "/orders", "POST"),
    ("PUT", "/products/abc", "GET"),
    ("GET", "/orders/01J00000000000000000000000/confirm-payment", "POST"),
    ("POST", "/health", "GET"),
    ("DELETE", "/log", "GET"),
])
def test_wrong_method_is_405_with_allow(shared, method, path, allowed):
    head = shared.idle_head()
    st, h, b = shared.req(method, path, body={} if method in ("PUT", "POST") else None)
    assert_problem(st, h, b, 405, "METHOD_NOT_ALLOWED")
    assert "allow" in h, h
    methods = {m.strip() for m in h["allow"].split(",")}
    assert allowed in methods, h["allow"]
    assert shared.log_head() == head


def test_keep_alive_serves_several_requests_on_one_connection(shared):
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
    try:
        st, h, _ = shared.req("GET", "/health", conn=conn)
        assert st == 200
        assert h.get("connection", "").lower() != "close"
        local = conn.sock.getsockname()
        pid = uid("prod")
        st, _, b = shared.req("POST", "/products", body=product_body(productId=pid), conn=conn)
        assert st == 201, b
        st, _, v = shared.req("GET", "/products/%s?minPosition=%d" % (pid, b["position"]), conn=conn)
        assert st == 200 and v["productId"] == pid, v
        st, h, e = shared.req("GET", "/nope", conn=conn)  # an error answer keeps the connection too
        assert st == 404
        st, _, _ = shared.req("GET", "/health", conn=conn)
        assert st == 200
        assert conn.sock is not None and conn.sock.getsockname() == local, "connection was not kept alive"
    finally:
        conn.close()


def test_problem_type_title_and_detail_are_meaningful(shared):
    st, h, b = shared.post("/orders/01J00000000000000000000000/confirm-payment", {"paymentId": "p"})
    p = assert_problem(st, h, b, 404, "ORDER_NOT_FOUND")
    assert p["title"] and p["detail"] and p["type"]


def _chunked_post(port, chunks):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        try:
            conn.request("POST", "/products", body=iter(chunks), encode_chunked=True,
                         headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = conn.getresponse()
        return Server._decode(resp, resp.read())
    finally:
        conn.close()


def test_chunked_request_body_is_accepted(shared):
    body = json.dumps(product_body()).encode()
    st, _, b = _chunked_post(shared.port, [body[:7], body[7:20], body[20:]])
    assert st == 201, b


def test_chunked_body_over_one_mib_is_413(shared):
    head = shared.idle_head()
    body = json.dumps(product_body()).encode()
    chunks = [body[:-1]] + [b" " * 131072] * 9 + [b"}"]
    st, h, b = _chunked_post(shared.port, chunks)
    assert_problem(st, h, b, 413)
    assert shared.log_head() == head


def test_request_headers_up_to_12_kib_are_served_and_bigger_ones_get_431(shared):
    """Each connection has a 16 KiB memory pool (tl_http.c): headers of 12 KiB fit, 20 KiB get
    431 (from libmicrohttpd, not problem+json), and the server goes on serving."""
    head = shared.idle_head()
    for size, want in ((12 * 1024, {201}), (20 * 1024, {431, "reset"})):
        conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=30)
        try:
            body = json.dumps(product_body()).encode()
            try:
                conn.request("POST", "/products", body=body,
                             headers={"Content-Type": "application/json", "X-Padding": "p" * size})
                r = conn.getresponse()
                r.read()
                status = r.status
            except (BrokenPipeError, ConnectionResetError):
                # libmicrohttpd answers 431 and closes while the client may still be sending
                # the rest: the client then sees the close (EPIPE / RST) before the answer.
                status = "reset"
            assert status in want, (size, status)
        finally:
            conn.close()
    assert shared.log_head() == head + 1  # only the accepted product was recorded
    assert shared.get("/health")[0] == 200
