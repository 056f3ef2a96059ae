"""Defences of the HTTP server: bounded header values, the Host allow-list (DNS rebinding),
the Origin check on state-changing requests, and a token that never travels in a URL."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from asynclm.server.config import ServerConfig

from .conftest import Served, running_server

SCRIPT = {"tpot_ms": 1.0, "script": ["Hello there."]}


@pytest.fixture(scope="module")
def plain() -> Iterator[Served]:
    """A token-less loopback server (the rebinding target)."""
    with running_server(ServerConfig()) as url:
        yield url


@pytest.fixture
def client(plain: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=plain, timeout=30) as c:
        yield c


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _session(c: httpx.Client, **headers: str) -> str:
    r = c.post("/sessions", json={"prompt": "go", "sim": SCRIPT}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


# -- defect 3: Last-Event-ID ---------------------------------------------------------------

@pytest.mark.parametrize("value", [b"9" * 5000, b"1" * 19, b"\xb2", b"\xb9\xb2", b"-1", b"+1"])
def test_bad_last_event_id_is_a_4xx_not_a_500(client: httpx.Client, value: bytes) -> None:
    # b"\xb2" is "²" in latin-1 (how headers are decoded): str.isdigit() says yes, int() no
    sid = _session(client)
    r = client.get(f"/sessions/{sid}/events", headers={"Last-Event-ID": value})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert "error" in r.json()
    r = client.get(f"/sessions/{sid}/events", params={"from": "9" * 5000})
    assert r.status_code == 422 and "error" in r.json()
    assert client.get("/health").status_code == 200


# -- defect 8: Host --------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "localhost.evil:{port}",
                                  "127.0.0.1:1", "localhost:1", "", "a b", "[::1", "x:99999"])
def test_foreign_host_is_refused(client: httpx.Client, plain: Served, host: str) -> None:
    for path in ("/health", "/", "/sessions"):
        r = client.get(path, headers={"Host": host.format(port=_port(plain))})
        assert r.status_code in (400, 421), (host, path, r.status_code)
        assert "host" in r.json()["error"].lower()


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}", "[0:0:0:0:0:0:0:1]:{port}"])
def test_loopback_names_on_the_bound_port_pass(
    client: httpx.Client, plain: Served, host: str,
) -> None:
    r = client.get("/health", headers={"Host": host.format(port=_port(plain))})
    assert r.status_code == 200, r.text


def test_allowed_hosts_option() -> None:
    cfg = ServerConfig(allowed_hosts=("asynclm.lan", "proxy.example:443"))
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health", headers={"Host": "asynclm.lan"}).status_code == 200
        assert c.get("/health", headers={"Host": "asynclm.lan:1234"}).status_code == 200
        assert c.get("/health", headers={"Host": "proxy.example:443"}).status_code == 200
        assert c.get("/health", headers={"Host": "proxy.example"}).status_code in (400, 421)
        assert c.get("/health", headers={"Host": "evil.example"}).status_code in (400, 421)
        assert c.get("/health").status_code == 200  # the defaults still hold
    with running_server(ServerConfig(allowed_hosts=("*",))) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health", headers={"Host": "anything.example"}).status_code == 200
        # with every Host allowed, an Origin must still be the request's own
        r = c.post("/sessions", json={"prompt": "go", "sim": SCRIPT},
                   headers={"Host": "a.example", "Origin": "http://b.example"})
        assert r.status_code == 403
        r = c.post("/sessions", json={"prompt": "go", "sim": SCRIPT},
                   headers={"Host": "a.example", "Origin": "http://a.example"})
        assert r.status_code == 201, r.text


def test_allowed_hosts_are_checked() -> None:
    for bad in ("", "a b", "http://x", "x:port", "[::1"):
        with pytest.raises(ValueError):
            ServerConfig(allowed_hosts=(bad,)).check()
    ServerConfig(allowed_hosts=("*", "x.example", "x.example:8443", "[::1]:9", "10.0.0.2")).check()


# -- defect 8: Origin ------------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["http://evil.example", "http://evil.example:{port}",
                                    "null", "http://127.0.0.1:1", "file://", "garbage"])
def test_cross_origin_state_change_is_forbidden(
    client: httpx.Client, plain: Served, origin: str,
) -> None:
    origin = origin.format(port=_port(plain))
    sid = _session(client)
    for method, path, body in [
        ("POST", "/sessions", {"prompt": "go", "sim": SCRIPT}),
        ("POST", f"/sessions/{sid}/messages", {"text": "hi"}),
        ("POST", f"/sessions/{sid}/cancel", None),
        ("POST", "/demos/agents", {"engine": "sim"}),
        ("DELETE", f"/sessions/{sid}", None),
    ]:
        r = client.request(method, path, json=body, headers={"Origin": origin})
        assert r.status_code == 403, (origin, method, path, r.status_code)
        assert "origin" in r.json()["error"].lower()
    # reads are not refused for an Origin (the browser keeps the answer from that page)
    assert client.get("/sessions", headers={"Origin": origin}).status_code == 200


def test_same_origin_and_originless_requests_pass(client: httpx.Client, plain: Served) -> None:
    port = _port(plain)
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", None):
        headers = {"Origin": origin} if origin else {}
        assert _session(client, **headers)


# -- defect 8: the token never in a URL ------------------------------------------------------

def test_event_stream_uses_a_cookie_not_a_url_token() -> None:
    with running_server(ServerConfig(token="s3cret")) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        auth = {"Authorization": "Bearer s3cret"}
        sid = _session(c, **auth)
        # a token in the URL is no longer accepted
        assert c.get(f"/sessions/{sid}/events?token=s3cret").status_code == 401
        # the page trades its bearer header for an HttpOnly SameSite=Strict cookie
        assert c.post("/auth/cookie").status_code == 401
        r = c.post("/auth/cookie", headers=auth)
        assert r.status_code == 204, r.text
        set_cookie = r.headers["set-cookie"]
        assert "httponly" in set_cookie.lower() and "samesite=strict" in set_cookie.lower()
        assert "s3cret" not in set_cookie  # the cookie is not the token itself
        with c.stream("GET", f"/sessions/{sid}/events") as resp:
            assert resp.status_code == 200
            text = "".join(resp.iter_text())
        assert "session.end" in text
        # the cookie opens event streams only: it is no bearer token for anything else
        assert c.get("/sessions").status_code == 401
        assert c.post(f"/sessions/{sid}/cancel").status_code == 401
        name, value = set_cookie.split(";")[0].split("=", 1)
        c.cookies.clear()
        forged = f"{value.rsplit('.', 1)[0]}.AAAA"
        c.cookies.set(name, forged)
        assert c.get(f"/sessions/{sid}/events").status_code == 401


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_access_log_never_prints_a_token() -> None:
    records = _Records()
    log = logging.getLogger("uvicorn.access")
    with running_server(ServerConfig(token="s3cret"), log_level="info") as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        log.addHandler(records)
        try:
            for path in ("/sessions/x/events?token=s3cret", "/sessions?a=1&token=s3cret&b=2",
                         "/sessions?access_token=s3cret", "/health?TOKEN=s3cret"):
                c.get(path)
        finally:
            log.removeHandler(records)
    assert len(records.lines) >= 4, records.lines
    assert not [line for line in records.lines if "s3cret" in line], records.lines
    assert any("token=" in line for line in records.lines)


def test_serve_command_takes_allowed_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    typer_testing = pytest.importorskip("typer.testing")
    import asynclm.server as server_pkg
    from asynclm.cli import app

    started: list[ServerConfig] = []
    monkeypatch.setattr(server_pkg, "serve", started.append)
    runner = typer_testing.CliRunner()
    result = runner.invoke(app, ["serve", "--allowed-host", "asynclm.lan",
                                 "--allowed-host", "proxy.example:443"])
    assert result.exit_code == 0, result.output
    assert started[0].allowed_hosts == ("asynclm.lan", "proxy.example:443")
    result = runner.invoke(app, ["serve", "--allowed-host", "http://x"])
    assert result.exit_code == 2 and "allowed host" in result.output
    assert len(started) == 1
