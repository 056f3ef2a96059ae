"""Fuzzing the HTTP server: no request, however malformed, gets a 5xx or takes the server down.

The bulk goes through the ASGI application in process (Starlette's ``TestClient``, which runs
the lifespan); raw malformed requests and clients that drop an event stream go to a real
uvicorn server over real sockets. Example counts are bounded: the module runs in well under a
minute."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from asynclm.server import create_app  # noqa: E402
from asynclm.server.config import ServerConfig  # noqa: E402

from .conftest import Served, running_server  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
BASE = "http://127.0.0.1:8000"
# sessions that start run a fast simulated model; a small live limit bounds the work
CONFIG = ServerConfig(max_live_sessions=4, max_kept_sessions=16, max_session_s=5.0)

HUGE_INTS = ["9" * 19, "9" * 400, "9" * 4300, "9" * 5000, "-" + "9" * 5000, "1" + "0" * 309]
HUGE_NUMBERS = [*HUGE_INTS, "1e308", "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "-0",
                "0.0000001", "1.5e-400"]
TRAVERSAL = ["..", "../", "../../etc/passwd", "..%2f", "%2e%2e%2f", "%2e%2e", "%2E%2E%2F..%2F",
             "..%5c", "%00", "a%00b", "%ff", "%c0%ae%c0%ae", "x" * 5000, "%25", "~", ".", "%2f",
             "\u00e9", "%e2%80%ae", "a;b", "a?b=c"]


def _ok(resp: Any) -> None:
    assert resp.status_code < 500, (resp.request.method, str(resp.request.url)[:200],
                                    resp.status_code, resp.text[:300])
    if resp.status_code >= 400 and "json" in resp.headers.get("content-type", ""):
        assert "error" in resp.json()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(CONFIG), base_url=BASE, raise_server_exceptions=False) as c:
        yield c
        assert c.get("/health").status_code == 200


@pytest.fixture(scope="module")
def sid(client: TestClient) -> str:
    r = client.post("/sessions", json={"prompt": "go", "tools": "none",
                                       "sim": {"tpot_ms": 1.0, "script": ["Hi."]}})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _post_json(client: TestClient, path: str, text: str | bytes) -> Any:
    return client.post(path, content=text, headers={"content-type": "application/json"})


# -- bodies ----------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
                      st.sampled_from([10**30, -(10**30), 2**63, float("inf"), float("nan")]))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
FIELDS = ["prompt", "tools", "strategy", "engine", "model", "max_tokens", "agent", "system", "sim"]


@FUZZ
@given(body=st.fixed_dictionaries({}, optional={k: json_value for k in FIELDS}),
       sim=st.fixed_dictionaries({}, optional={"tpot_ms": json_value, "script": json_value}))
def test_create_session_with_wrong_types(client: TestClient, body: dict, sim: dict) -> None:
    if "sim" not in body and sim:
        body["sim"] = sim
    _ok(_post_json(client, "/sessions", json.dumps(body, allow_nan=True)))


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
       path=st.sampled_from(["/sessions", "/sessions/{sid}/messages", "/demos/agents",
                             "/sessions/{sid}/cancel", "/sessions/{sid}/calls/c1/cancel"]))
def test_malformed_json_bodies(client: TestClient, sid: str, raw: bytes, path: str) -> None:
    _ok(_post_json(client, path.format(sid=sid), raw))


@pytest.mark.parametrize("number", HUGE_NUMBERS)
def test_huge_numbers_in_every_numeric_field(client: TestClient, sid: str, number: str) -> None:
    bodies = [
        ("/sessions", f'{{"prompt": "x", "max_tokens": {number}}}'),
        ("/sessions", f'{{"prompt": "x", "sim": {{"tpot_ms": {number}}}}}'),
        ("/demos/agents", f'{{"engine": "sim", "max_tokens": {number}}}'),
        ("/demos/agents", f'{{"engine": "sim", "tpot_ms": {number}}}'),
        (f"/sessions/{sid}/messages", f'{{"text": {number}}}'),
    ]
    for path, text in bodies:
        _ok(_post_json(client, path, text))
    _ok(client.get(f"/sessions/{sid}/events", params={"from": number}))
    _ok(client.get(f"/sessions/{sid}/events", headers={"Last-Event-ID": number}))
    _ok(client.post("/sessions", content=b"{}",
                    headers={"content-type": "application/json", "content-length": number}))
    assert client.get("/health").status_code == 200


def test_huge_bodies(client: TestClient, sid: str) -> None:
    big = "x" * 200_000
    for path, body in [("/sessions", {"prompt": big}), ("/sessions", {"prompt": "x", "sim": {
            "script": ["y" * 1000] * 200}}), (f"/sessions/{sid}/messages", {"text": big}),
            ("/demos/agents", {"engine": "sim", "model": big})]:
        r = client.post(path, json=body)
        _ok(r)
        assert r.status_code in (409, 413, 422), (path, r.status_code)
    # deep nesting: refused by size or by the JSON parser, never a RecursionError
    _ok(_post_json(client, "/sessions", "[" * 30_000 + "]" * 30_000))
    _ok(_post_json(client, "/sessions", '{"prompt": ' + "[" * 5000 + "]" * 5000 + "}"))


# -- headers -------------------------------------------------------------------------------

header_value = st.one_of(st.sampled_from([*HUGE_NUMBERS, "", " ", "-1", "0x10", "1,2", "abc"]),
                         st.text(st.characters(min_codepoint=32, max_codepoint=255),
                                 max_size=60))


@FUZZ
@given(name=st.sampled_from(["content-length", "last-event-id", "authorization", "origin",
                             "host", "cookie", "content-type", "transfer-encoding", "x-other"]),
       value=header_value,
       route=st.sampled_from([("GET", "/health"), ("GET", "/sessions"), ("GET", "/"),
                              ("GET", "/sessions/{sid}/events"), ("POST", "/sessions"),
                              ("POST", "/sessions/{sid}/messages")]))
def test_fuzzed_headers(client: TestClient, sid: str, name: str, value: str,
                        route: tuple[str, str]) -> None:
    method, path = route
    body = b'{"prompt": "x", "tools": "none"}' if method == "POST" else None
    headers: dict[str, Any] = {name: value.encode("latin-1")}
    if method == "GET" and path.endswith("/events"):
        headers.setdefault("last-event-id", "999999")  # the finished session's stream ends
    _ok(client.request(method, path.format(sid=sid), content=body, headers=headers))


# -- paths -------------------------------------------------------------------------------------

ROUTES = [("GET", "/sessions/{p}"), ("DELETE", "/sessions/{p}"), ("GET", "/sessions/{p}/events"),
          ("POST", "/sessions/{p}/messages"), ("POST", "/sessions/{p}/cancel"),
          ("POST", "/sessions/{sid}/calls/{p}/cancel"), ("GET", "/static/{p}"),
          ("GET", "/static/{p}/app.js"), ("GET", "/{p}")]


@pytest.mark.parametrize("method,template", ROUTES)
def test_traversal_in_every_path_parameter(
    client: TestClient, sid: str, method: str, template: str,
) -> None:
    for p in TRAVERSAL:
        body = {"text": "hi"} if template.endswith("messages") else None
        r = client.request(method, template.format(p=p, sid=sid), json=body)
        _ok(r)
        if r.status_code == 200:  # only the page's own files, never a file outside static/
            assert "import " not in r.text and "root:" not in r.text, (template, p)


@FUZZ
@given(ident=st.text(max_size=80))
def test_unknown_ids(client: TestClient, sid: str, ident: str) -> None:
    from urllib.parse import quote

    q = quote(ident, safe="")
    if not q or q == sid:
        return
    for method, template in ROUTES[:6]:
        r = client.request(method, template.format(p=q, sid=sid),
                           json={"text": "hi"} if template.endswith("messages") else None)
        _ok(r)
        if template == "/sessions/{p}":
            assert r.status_code in (404, 405), r.status_code


# -- real sockets ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with running_server(CONFIG) as url:
        yield url


def _addr(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _raw(url: str, data: bytes, *, read_s: float = 3.0) -> bytes:
    """Send ``data`` as is; return what came back before the server closed or ``read_s``."""
    with socket.create_connection(_addr(url), timeout=read_s) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close before reading everything: that is an answer too
        out = b""
        deadline = time.monotonic() + read_s
        try:
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def _health(url: str) -> None:
    import httpx

    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/"):
        return None
    return int(answer.split(b" ", 2)[1])


def test_raw_malformed_requests(served: Served) -> None:
    host = f"127.0.0.1:{_addr(served)[1]}".encode()
    h = b"Host: " + host + b"\r\n"
    body = b'{"prompt": "x"}'
    cases = [
        b"garbage\r\n\r\n",
        b"\x00\x01\x02\xff\r\n\r\n",
        b"GET / HTTP/9.9\r\n" + h + b"\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",  # no Host at all
        b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + h + h + b"\r\n",  # two Host headers
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /health HTTP/1.1\r\n" + h + b"X-Big: " + b"b" * 70_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + h + b"Bad Header: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + h + b"X: a\x00b\r\n\r\n",
        b"GET /sessions/..%2f..%2fetc%2fpasswd HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /static/..%2f..%2fapp.py HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /static/../../app.py HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /static/%00 HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /sessions/\x00 HTTP/1.1\r\n" + h + b"\r\n",
        b"GET /sessions/x/events HTTP/1.1\r\n" + h + b"Last-Event-ID: " + b"9" * 5000 + b"\r\n\r\n",
        b"GET /sessions/x/events?from=" + b"9" * 5000 + b" HTTP/1.1\r\n" + h + b"\r\n",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n" + body,
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Length: 99999999999999999999\r\n\r\n"
        + body,
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Length: -1\r\n\r\n" + body,
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Length: 1000\r\n\r\n" + body,  # short
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\n{}",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n\r\n"
        b"ffffffffffffffffffff\r\nxx\r\n0\r\n\r\n",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Content-Type: application/json\r\n"
        b"Content-Length: 8\r\n\r\n\xff\xfe\x00\x00[[[[",
        b"DELETE /sessions/%2e%2e%2f HTTP/1.1\r\n" + h + b"Content-Length: 0\r\n\r\n",
        b"POST /sessions HTTP/1.1\r\n" + h + b"Origin: http://evil.example\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
        b"GET /health HTTP/1.1\r\n" + h,  # never finished
        b"",  # connect and say nothing
    ]
    for data in cases:
        answer = _raw(served, data)
        status = _status(answer)
        assert status is None or status < 500, (data[:120], answer[:300])
    _health(served)


def _open_stream(url: str, sid: str) -> socket.socket:
    s = socket.create_connection(_addr(url), timeout=5)
    s.sendall(f"GET /sessions/{sid}/events HTTP/1.1\r\nHost: 127.0.0.1:{_addr(url)[1]}\r\n"
              "Accept: text/event-stream\r\n\r\n".encode())
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return s


def test_dropped_event_stream_clients(served: Served) -> None:
    import httpx

    with httpx.Client(base_url=served, timeout=30) as c:
        r = c.post("/sessions", json={"prompt": "go", "tools": "none",
                                      "sim": {"tpot_ms": 5.0, "script": ["word " * 300]}})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        time.sleep(0.3)
        baseline = len(served.tasks())
        for i in range(30):
            s = _open_stream(served, sid)
            if i % 2:  # an abrupt reset rather than a clean close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        # half-open: sent the request, never read, then gone
        for _ in range(10):
            s = socket.create_connection(_addr(served), timeout=5)
            s.sendall(f"GET /sessions/{sid}/events HTTP/1.1\r\nHost: "
                      f"127.0.0.1:{_addr(served)[1]}\r\n\r\n".encode())
            s.close()
        _health(served)
        # every dropped stream's request task ended (none left writing to a closed socket)
        deadline = time.monotonic() + 10
        while len(served.tasks()) > baseline + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(served.tasks()) <= baseline + 1, served.tasks()
        # the session itself went on and ends normally
        with c.stream("GET", f"/sessions/{sid}/events") as resp:
            text = "".join(resp.iter_text())
        assert "session.end" in text and '"status": "done"' in text
    _health(served)
