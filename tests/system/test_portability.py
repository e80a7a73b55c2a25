"""Event versioning, export and import.

A committed fixture holds a log written before orders had a currency (OrderPlaced schema v1).
Imported into a fresh data directory, it projects as v2 (currency "USD") everywhere events are
read, while export shows the events exactly as stored. Import checks the whole file first and
changes nothing when any line is wrong.
"""

import json
import os
import subprocess

from conftest import BIN, D, REPO, Server, assert_meta

FIXTURE = os.path.join(REPO, "tests", "fixtures", "v1-log.jsonl")
O1, O2 = "01JPAC6Z0G9N3Y7W5T2K8R4M1A", "01JPAC9X4B2D6F8H0J3K5M7N9P"


def run(*args, **kw):
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=60, **kw)


def fixture_lines():
    with open(FIXTURE) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def test_v1_fixture_imports_and_projects_as_v2(tmp_path):
    data = str(tmp_path / "data")
    r = run("import", "--data", data, FIXTURE)
    assert r.returncode == 0 and b"imported 4 events" in r.stderr, r
    srv = Server(data)
    srv.start()
    try:
        # The write model (a fold of the upcast events) and the read models agree.
        st, _, s = srv.get("/orders/%s/state" % O1)
        assert st == 200 and s["status"] == "PAID" and s["currency"] == "USD", s
        assert s["total"] == D("49"), s
        s2 = srv.wait_settled(O2)  # the saga handles the imported order placed before it existed
        assert s2["status"] == "RESERVED" and s2["currency"] == "USD", s2
        head = srv.idle_head()
        for oid in (O1, O2):
            st, _, v = srv.query("/orders/" + oid, head)
            assert st == 200 and v["currency"] == "USD", v
        st, _, v = srv.query("/orders/" + O1, head)
        assert v["status"] == "PAID" and v["createdAt"] == "2025-03-14T09:05:00.000Z", v
        st, _, d = srv.query("/sales/daily", head, {"from": "2025-03-14", "to": "2025-03-14"})
        assert d["days"] == [{"date": "2025-03-14", "orderCount": 2, "revenue": D("73.5")}], d
        assert_meta(d)
        st, _, p = srv.query("/products/kettle-1", head)
        assert p["salesCount"] == 3 and p["stock"] == 10, p
        # Reads of the log show the latest shape; the stored one is untouched (export below).
        st, _, ev = srv.get("/log", {"fromPosition": 2, "limit": 1})
        assert ev[0]["schemaVersion"] == 2 and ev[0]["data"]["currency"] == "USD", ev
        # New orders are written as v2.
        st, _, o = srv.post("/orders", {"customerId": "8a2f6c1e-4b7d-4e9a-a3c5-1f0e2d4b6a88",
                                        "items": [{"productId": "kettle-1", "quantity": 1,
                                                   "price": 24.5}],
                                        "shippingAddress": {"street": "1", "city": "c",
                                                            "country": "US", "postalCode": "1"},
                                        "currency": "EUR"})
        assert st == 201, o
        st, _, reconcile = srv.post("/admin/reconcile")
        assert reconcile["clean"] is True, reconcile
    finally:
        assert srv.stop() == 0
    out = tmp_path / "export.jsonl"
    r = run("export", "--data", data, "--out", str(out))
    assert r.returncode == 0, r
    lines = out.read_text().splitlines()
    assert lines[:4] == fixture_lines(), "export must show the stored events byte for byte"
    placed = [json.loads(line) for line in lines if '"OrderPlaced"' in line]
    assert [p["schemaVersion"] for p in placed] == [1, 1, 2], placed
    # A second import of the export into another directory gives the same log.
    data2 = str(tmp_path / "data2")
    assert run("import", "--data", data2, str(out)).returncode == 0
    r2 = run("export", "--data", data2)
    assert r2.returncode == 0 and r2.stdout.decode().splitlines() == lines


def broken(tmp_path, name, mutate):
    lines = [json.loads(line) for line in fixture_lines()]
    mutate(lines)
    p = tmp_path / name
    p.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return str(p)


def test_import_refuses_bad_files_and_changes_nothing(tmp_path):
    cases = {
        "gap": (lambda ls: ls[2].update(position=7), "line 3: position must be 3"),
        "version": (lambda ls: ls[3].update(version=5), "version of order-%s must be 2" % O1),
        "schema": (lambda ls: ls[1].update(schemaVersion=0), "schemaVersion"),
        "data": (lambda ls: ls[1].update(data=[1]), "data and metadata must be objects"),
        "time": (lambda ls: ls[0].update(recordedAt="yesterday"), "recordedAt"),
        "json": (lambda ls: ls.__setitem__(2, '{"position": 3,'), "line 3: not a JSON object"),
        "type": (lambda ls: ls[0].update(type=""), "type must be"),
    }
    for name, (mutate, message) in cases.items():
        data = str(tmp_path / ("d-" + name))
        r = run("import", "--data", data, broken(tmp_path, name + ".jsonl", mutate))
        assert r.returncode == 1 and message.encode() in r.stderr, (name, r.stderr)
        assert b"nothing imported" in r.stderr, r.stderr
        e = run("export", "--data", data)
        assert e.returncode == 0 and e.stdout == b"", (name, e)


def test_import_only_fills_an_empty_log_and_needs_the_directory(tmp_path, make_server):
    data = str(tmp_path / "full")
    assert run("import", "--data", data, FIXTURE).returncode == 0
    r = run("import", "--data", data, FIXTURE)
    assert r.returncode == 1 and b"not empty" in r.stderr, r
    srv = make_server()
    r = run("import", "--data", srv.data_dir, FIXTURE)
    assert r.returncode == 1 and b"in use" in r.stderr, r
    r = run("export", "--data", srv.data_dir)
    assert r.returncode == 1 and b"in use" in r.stderr, r
    r = run("export", "--data", str(tmp_path / "nowhere"))
    assert r.returncode == 1 and b"no event log" in r.stderr, r
    assert not os.path.exists(str(tmp_path / "nowhere"))
    r = run("import", "--data", str(tmp_path / "x"))
    assert r.returncode == 2, r
