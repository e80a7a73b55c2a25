"""Black-box harness for the twinlane server.

Every test drives the real binary over HTTP on 127.0.0.1.  The binary comes from the environment
variable TWINLANE_BIN (default: <repo>/build/twinlane).  Only the Python standard library is used.

The `Server` class starts `twinlane serve --data DIR --listen 127.0.0.1:PORT`, waits for
`GET /health` to answer 200, and always kills the process at teardown (SIGTERM, then SIGKILL after
5 s).  When a test fails, the tail of every server's stderr is attached to the failure report.
"""

import atexit
import datetime as dt
import decimal
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("TWINLANE_BIN") or os.path.join(REPO, "build", "twinlane")

ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
ISO_MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
D = decimal.Decimal

ADDRESS = {"street": "1 Main Street", "city": "Springfield", "country": "US", "postalCode": "12345"}

_LIVE = set()  # every Server with a running process, killed at exit as a last resort


def _kill_leftovers():
    for s in list(_LIVE):
        try:
            s.proc.kill()
        except Exception:
            pass


atexit.register(_kill_leftovers)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uid(prefix="p"):
    """A fresh identifier made of [A-Za-z0-9_-]."""
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


def word(prefix="w"):
    """A fresh lower-case word made of letters only (friendly to full-text tokenizers)."""
    letters = "".join(chr(ord("a") + int(c, 16) % 26) for c in uuid.uuid4().hex[:10])
    return prefix + letters


def parse_time(s):
    assert isinstance(s, str) and ISO_MS_RE.match(s), "not an ISO 8601 UTC time with ms: %r" % (s,)
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def fmt_time(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def _json_default(o):
    if isinstance(o, D):
        return float(o)
    raise TypeError("not JSON serialisable: %r" % (o,))


def dumps(obj):
    return json.dumps(obj, default=_json_default).encode()


class Server:
    """One twinlane process on a data directory that outlives restarts."""

    def __init__(self, data_dir, binary=BIN, extra_args=()):
        self.binary = binary
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.log_dir = tempfile.mkdtemp(prefix="tl-logs-", dir=os.path.dirname(data_dir))
        self.stderr_path = os.path.join(self.log_dir, "stderr.log")
        self.starts = 0
        self.last_exit = None

    # ------------------------------------------------------------------ process control
    def start(self, port=None, timeout=10.0):
        assert self.proc is None, "already running"
        if not os.path.exists(self.binary):
            pytest.fail("twinlane binary not found at %s (set TWINLANE_BIN)" % self.binary)
        attempts = 1 if port else 3
        for attempt in range(attempts):
            self.port = port or free_port()
            err = open(self.stderr_path, "ab")
            err.write(("\n==== start #%d on port %d ====\n" % (self.starts + 1, self.port)).encode())
            err.flush()
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--data", self.data_dir, "--listen", "127.0.0.1:%d" % self.port]
                + self.extra_args,
                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            err.close()
            self.starts += 1
            _LIVE.add(self)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    st, _, _ = self.req("GET", "/health", timeout=1.0)
                    if st == 200:
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.02)
            code = self.proc.poll()
            self._reap()
            if code is None or attempt == attempts - 1:
                pytest.fail("twinlane did not become healthy (exit code %r); stderr tail:\n%s"
                            % (code, self.stderr_tail()))
        return self

    def _reap(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.last_exit = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.last_exit = None
        _LIVE.discard(self)
        self.proc = None

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        if self.proc is None:
            return self.last_exit
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.last_exit = self.proc.wait(timeout=10)
        _LIVE.discard(self)
        self.proc = None
        return self.last_exit

    def kill9(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.last_exit = self.proc.wait(timeout=10)
        _LIVE.discard(self)
        self.proc = None

    def restart(self, same_port=False, hard=False):
        if hard:
            self.kill9()
        else:
            self.stop()
        return self.start(port=self.port if same_port else None)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def sanitizer_report(self):
        """Lines of AddressSanitizer / UndefinedBehaviorSanitizer / LeakSanitizer reports, if any."""
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        marks = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer")
        return [ln for ln in text.splitlines() if any(m in ln for m in marks)]

    def stop_and_check(self):
        """Teardown: stop the server and fail if it had crashed, did not exit 0 on SIGTERM, or a
        sanitizer reported something."""
        crashed = self.proc is not None and self.proc.poll() is not None
        was_running = self.alive()
        code = self.stop()
        problems = []
        if crashed:
            problems.append("the server died during the test (exit code %r)" % code)
        elif was_running and code != 0:
            problems.append("exit code %r after SIGTERM (expected 0)" % code)
        problems += self.sanitizer_report()[:5]
        if problems:
            pytest.fail("twinlane: %s\nstderr tail:\n%s" % ("; ".join(problems), self.stderr_tail()))

    def stderr_tail(self, n=60):
        try:
            with open(self.stderr_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError as e:
            return "<no stderr: %s>" % e

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def _decode(resp, raw):
        headers = {k.lower(): v for k, v in resp.getheaders()}
        ctype = headers.get("content-type", "")
        text = raw.decode("utf-8", "replace")
        body = text
        if raw and "json" in ctype:
            try:
                body = json.loads(text, parse_float=D)
            except ValueError:
                body = text
        return resp.status, headers, body

    def req(self, method, path, body=None, headers=None, raw=None, timeout=30.0, conn=None):
        """One request on a fresh connection (or on `conn` when given).

        `body` is JSON-encoded with Content-Type application/json unless the caller sets one;
        `raw` sends bytes as they are.  Returns (status, lower-case headers, JSON or text).
        """
        hdrs = dict(headers or {})
        data = raw
        if body is not None and raw is None:
            data = dumps(body)
            if not any(k.lower() == "content-type" for k in hdrs):
                hdrs["Content-Type"] = "application/json"
        own = conn is None
        if own:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            content = resp.read()
            return self._decode(resp, content)
        finally:
            if own:
                conn.close()

    def post(self, path, body=None, headers=None, **kw):
        return self.req("POST", path, body if body is not None else {}, headers, **kw)

    def get(self, path, params=None, headers=None, **kw):
        if params:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(params)
        return self.req("GET", path, None, headers, **kw)

    def read_db(self, projection):
        """The path of a projection's live read-model file: read.<projection>.<generation>.db,
        the newest generation (a rebuild installs the next one)."""
        gens = []
        for name in os.listdir(self.data_dir):
            m = re.fullmatch(r"read\.%s\.(\d+)\.db" % re.escape(projection), name)
            if m:
                gens.append(int(m.group(1)))
        assert gens, "no read-model file of %s in %s" % (projection, os.listdir(self.data_dir))
        return os.path.join(self.data_dir, "read.%s.%d.db" % (projection, max(gens)))

    # ------------------------------------------------------------------ log helpers
    def log_events(self, from_position=1, page=1000, max_pages=1000):
        """The whole global log from `from_position`, read page by page."""
        out = []
        pos = from_position
        for _ in range(max_pages):
            st, _, body = self.get("/log", {"fromPosition": pos, "limit": page})
            assert st == 200, (st, body)
            assert isinstance(body, list), body
            out.extend(body)
            if len(body) < page:
                return out
            pos = body[-1]["position"] + 1
        raise AssertionError("log longer than expected")

    def log_head(self):
        """Position of the last event in the log (0 when empty)."""
        ev = self.log_events()
        return ev[-1]["position"] if ev else 0

    def metrics(self):
        """/metrics parsed into {name: [(labels, value)]}."""
        st, _, text = self.get("/metrics")
        assert st == 200, (st, text)
        return parse_metrics(text)

    def metric(self, name, labels=""):
        """The value of one /metrics series (summed if it repeats); fails if it is absent."""
        samples = [v for lab, v in self.metrics().get(name, []) if lab == labels]
        assert samples, "no %s%s in /metrics" % (name, labels)
        return sum(samples)

    def idle_head(self, timeout=10.0):
        """Waits (bounded) until every process manager has handled the whole log and the log does
        not move any more, then returns the head position.  Use it before asserting that a command
        appends nothing, or that the next command lands at head + 1: a saga reacting to earlier
        events would otherwise append concurrently."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            m = self.metrics()
            pms = [int(v) for _, v in m.get("tl_process_manager_position", [])]
            lags = [v for _, v in m.get("tl_process_manager_lag_events", [])]
            assert pms, "no tl_process_manager_position in /metrics"
            pos = min(pms)
            if all(v == 0 for v in lags) and max(pms) == pos:
                # The saga stores its position only after its commands are durable: if nothing
                # follows that position in the log now, it has nothing left to do.
                st, _, after = self.get("/log", {"fromPosition": pos + 1, "limit": 1})
                assert st == 200, after
                if not after:
                    return pos
            last = (pms, lags)
            if time.monotonic() > deadline:
                pytest.fail("process managers not idle after %.0f s: positions/lags %r" % (timeout, last))
            time.sleep(0.01)

    def projected_head(self, timeout=10.0):
        """idle_head, then waits (bounded) until every projection has applied it: before arming
        a projection's fail point, so that it hits the next event and not an earlier one."""
        head = self.idle_head(timeout)
        deadline = time.monotonic() + timeout
        while True:
            st, _, b = self.get("/admin/projections")
            assert st == 200, b
            if all(p["position"] >= head for p in b):
                return head
            assert time.monotonic() < deadline, ("projections behind %d" % head, b)
            time.sleep(0.01)

    def wait_settled(self, order_id, timeout=10.0):
        """Polls GET /orders/{id}/state (strongly consistent) until the saga has moved the order out
        of PENDING; returns that state.  Bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            st, _, s = self.get("/orders/%s/state" % order_id)
            assert st == 200, (st, s)
            if s["status"] != "PENDING":
                return s
            if time.monotonic() > deadline:
                pytest.fail("order %s still PENDING after %.0f s" % (order_id, timeout))
            time.sleep(0.005)

    # ------------------------------------------------------------------ domain helpers
    def create_product(self, product_id=None, name=None, category="general", price=9.99, stock=100,
                       currency=None, expect=201, **extra):
        body = {"productId": product_id or uid("prod"), "name": name or "Plain Widget",
                "category": category, "price": price, "stock": stock}
        if currency is not None:
            body["currency"] = currency
        body.update(extra)
        st, h, b = self.post("/products", body)
        assert st == expect, (st, b)
        if st == 201:
            b["_request"] = body
        return b

    def place_order(self, items, customer_id=None, address=None, currency=None, headers=None,
                    expect=201):
        """items: list of (productId, quantity, price)."""
        body = {"customerId": customer_id or str(uuid.uuid4()),
                "items": [{"productId": p, "quantity": q, "price": pr} for p, q, pr in items],
                "shippingAddress": dict(address or ADDRESS)}
        if currency is not None:
            body["currency"] = currency
        st, h, b = self.post("/orders", body, headers=headers)
        assert st == expect, (st, b)
        return b

    def place_reserved_order(self, items, **kw):
        """place_order, then waits until the saga reserved the stock; the answer gains `state`
        (the RESERVED state: version 2)."""
        b = self.place_order(items, **kw)
        s = self.wait_settled(b["orderId"])
        assert s["status"] == "RESERVED" and s["version"] == 2, s
        assert s.get("rejectionReason") is None, s
        b["state"] = s
        return b

    def command(self, order_id, action, body=None, headers=None):
        default = {"confirm-payment": {"paymentId": "pay-" + uuid.uuid4().hex[:8]},
                   "ship": {"trackingNumber": "TRK" + uuid.uuid4().hex[:8]},
                   "cancel": {"reason": "customer asked"}}[action]
        return self.post("/orders/%s/%s" % (order_id, action), body if body is not None else default,
                         headers=headers)

    def query(self, path, min_position, params=None, wait_ms=5000):
        """A read-lane query that waits until the read model reflects `min_position`."""
        p = dict(params or {})
        p["minPosition"] = min_position
        p["waitMs"] = wait_ms
        return self.get(path, p)


def parse_metrics(text):
    """Prometheus text -> {name: [(labels, value)]} (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, "not a Prometheus sample line: %r" % line
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def assert_problem(status, headers, body, expect_status, code=None):
    """Asserts an RFC 9457 problem answer with the given status and code."""
    assert status == expect_status, (status, body)
    ctype = headers.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", ctype
    assert isinstance(body, dict), body
    for k in ("type", "title", "status", "detail", "code"):
        assert k in body, "problem body lacks %r: %r" % (k, body)
    assert body["status"] == expect_status, body
    if code is not None:
        assert body["code"] == code, body
    return body


def error_fields(body):
    errs = body.get("errors")
    assert isinstance(errs, list) and errs, "no field errors in %r" % (body,)
    for e in errs:
        assert isinstance(e, dict) and isinstance(e.get("field"), str) and isinstance(e.get("message"), str), e
    return {e["field"] for e in errs}


def assert_meta(body):
    assert isinstance(body, dict), body
    meta = body.get("meta")
    assert isinstance(meta, dict), "no meta in %r" % (body,)
    assert isinstance(meta.get("position"), int) and meta["position"] >= 0, meta
    assert "dataAsOf" in meta and "lagMs" in meta, meta
    if meta["position"] == 0:
        assert meta["dataAsOf"] is None, meta
    else:
        parse_time(meta["dataAsOf"])
    assert isinstance(meta["lagMs"], int) and meta["lagMs"] >= 0, meta
    return meta


# ---------------------------------------------------------------------- pytest plumbing
@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_tl_servers", []):
            rep.sections.append(("twinlane stderr (%s)" % s.stderr_path, s.stderr_tail()))


def _register(request, srv):
    servers = getattr(request.node, "_tl_servers", None)
    if servers is None:
        servers = request.node._tl_servers = []
    servers.append(srv)


@pytest.fixture
def make_server(request, tmp_path):
    """Factory: make_server(extra_args=()) -> started Server on a fresh data dir (stopped at teardown)."""
    made = []

    def make(extra_args=(), start=True):
        data = tmp_path / ("data%d" % len(made))
        data.mkdir()
        srv = Server(str(data), extra_args=extra_args)
        made.append(srv)
        _register(request, srv)
        if start:
            srv.start()
        return srv

    yield make
    failures = []
    for srv in made:
        try:
            srv.stop_and_check()
        except BaseException as e:  # keep stopping the others
            failures.append(e)
    if failures:
        raise failures[0]


@pytest.fixture
def server(make_server):
    """A fresh server on a fresh data directory."""
    return make_server()


@pytest.fixture(scope="module")
def _module_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("shared") / "data"
    data.mkdir()
    srv = Server(str(data))
    srv.start()
    yield srv
    srv.stop_and_check()


@pytest.fixture
def shared(request, _module_server):
    """A server shared by the tests of one module.  Tests using it isolate themselves with fresh
    ids and must not assume an empty log.  Restarted if an earlier test crashed it."""
    _register(request, _module_server)
    if not _module_server.alive():
        _module_server._reap()
        _module_server.start()
    yield _module_server
    if not _module_server.alive():
        code = _module_server.proc.poll() if _module_server.proc else None
        pytest.fail("twinlane died during this test (exit code %r); stderr tail:\n%s"
                    % (code, _module_server.stderr_tail()))
    report = _module_server.sanitizer_report()
    if report:
        pytest.fail("sanitizer report:\n%s" % "\n".join(report[:5]))
