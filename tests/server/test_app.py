"""The HTTP API over real HTTP, against a uvicorn server the tests start (simulator engine)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from asynclm.server.config import ServerConfig, UnsafeBindError, is_loopback

from .conftest import Served, check_complete, follow, running_server

CALL = '[CALL] {id} [HEAD] {body} [END]\n'
WORDS = "the model keeps writing while its tools run " * 4


def _create(c: httpx.Client, script: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "go", "sim": {"tpot_ms": kw.pop("tpot_ms", 2.0)}, **kw}
    if script is not None:
        body["sim"]["script"] = script
    r = c.post("/sessions", json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def client(base_url: Served) -> httpx.Client:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def test_health_and_page(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="timeline"' in page.text and 'id="message"' in page.text
    # offline: every asset is served by us
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        r = client.get(asset)
        assert r.status_code == 200 and "https://" not in r.text


def test_session_streams_every_event_in_order(client: httpx.Client) -> None:
    info = _create(client, ["Hi. ", CALL.format(id="w1", body='get_weather(city="Paris")'),
                            "[TRAP][END]", "Done."])
    assert info["status"] in ("queued", "running")
    events = follow(client, info["id"])
    check_complete(events)
    types = [e["type"] for e in events]
    for expected in ("session.queued", "session.started", "text.delta", "call.emitted",
                     "call.started", "call.completed", "interrupt.injected", "done"):
        assert expected in types
    assert types.index("call.started") < types.index("call.completed") < types.index(
        "interrupt.injected")
    done = next(e for e in events if e["type"] == "done")
    assert done["stop_reason"] == "eos" and done["calls"][0]["status"] == "ok"
    assert events[-1]["status"] == "done"
    # resume after an index: Last-Event-ID and ?from= give the rest, in order
    tail = follow(client, info["id"], headers={"Last-Event-ID": "3"})
    assert [e["seq"] for e in tail] == list(range(4, len(events)))
    assert client.get(f"/sessions/{info['id']}").json()["status"] == "done"
    assert info["id"] in [s["id"] for s in client.get("/sessions").json()["sessions"]]


def test_sessions_on_uvloop_with_a_fine_clock() -> None:
    """uvicorn serves on uvloop when it is installed: sessions run there too, and event times
    are not cut to uvloop's whole milliseconds."""
    uvloop = pytest.importorskip("uvloop")
    with running_server(ServerConfig(), run=uvloop.run) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        info = _create(c, ["Hi. ", CALL.format(id="w1", body='get_weather(city="Paris")'),
                           "[TRAP][END]", "Done."])
        events = follow(c, info["id"])
    check_complete(events)
    assert events[-1]["status"] == "done"
    ms = [e["t"] * 1000 for e in events]
    assert any(abs(m - round(m)) > 1e-3 for m in ms), ms


def test_message_mid_generation_is_injected(client: httpx.Client) -> None:
    info = _create(client, [WORDS, WORDS, "End."], tpot_ms=10.0)
    sid = info["id"]
    sent: list[int] = []

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "text.delta" and not sent:
            r = client.post(f"/sessions/{sid}/messages", json={"text": "please be brief"})
            assert r.status_code == 202, r.text
            sent.append(e["seq"])

    events = follow(client, sid, on_event)
    check_complete(events)
    queued = next(e for e in events if e["type"] == "message.queued")
    injected = next(e for e in events if e["type"] == "interrupt.injected")
    assert queued["seq"] < injected["seq"]
    assert injected["messages"] == ["user"]
    assert "message from user: please be brief" in injected["text"]
    # the session went on generating after the message (it was not the end of the stream)
    assert any(e["type"] == "text.delta" for e in events[injected["seq"]:])
    done = next(e for e in events if e["type"] == "done")
    assert "please be brief" in done["text"]  # the simulated model quotes what it received
    r = client.post(f"/sessions/{sid}/messages", json={"text": "too late"})
    assert r.status_code == 409 and "error" in r.json()


def test_cancel_a_call(client: httpx.Client) -> None:
    info = _create(client, [CALL.format(id="f1", body='search_flights(origin="BER", '
                                        'destination="LIS", date="2026-12-04")'),
                            "[TRAP][END]", "Finished."])
    sid = info["id"]
    responses: list[int] = []

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "call.started":
            responses.append(client.post(f"/sessions/{sid}/calls/f1/cancel").status_code)

    t = time.monotonic()
    events = follow(client, sid, on_event)
    assert responses == [202]
    done = next(e for e in events if e["type"] == "done")
    assert done["calls"][0]["status"] == "cancelled"
    assert time.monotonic() - t < 2.0  # the 2.4 s tool did not run to its end
    assert client.post(f"/sessions/{sid}/calls/f1/cancel").status_code == 409


def test_cancel_a_session(client: httpx.Client, base_url: Served) -> None:
    info = _create(client, [CALL.format(id="f1", body='search_flights(origin="A", '
                                        'destination="B", date="2026-12-04")'), WORDS * 20],
                   tpot_ms=20.0)
    sid = info["id"]

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "call.started":
            assert client.post(f"/sessions/{sid}/cancel").status_code == 202

    events = follow(client, sid, on_event)
    check_complete(events)
    assert events[-1]["status"] == "cancelled"
    assert client.post(f"/sessions/{sid}/cancel").status_code == 409
    assert client.post(f"/sessions/{sid}/messages", json={"text": "hi"}).status_code == 409
    # no task outlives its session: neither the session's nor its call's
    assert not [n for n in base_url.tasks() if sid in n or n == "asynclm-call-f1"]
    assert client.delete(f"/sessions/{sid}").status_code == 204
    assert client.get(f"/sessions/{sid}").status_code == 404


@pytest.mark.parametrize("body,status", [
    (b"{not json", 422),
    (b"[]", 422),
    (b'{"prompt": ""}', 422),
    (b'{"prompt": "x", "surprise": 1}', 422),
    (b'{"prompt": "x", "max_tokens": "many"}', 422),
    (b'{"prompt": "x", "max_tokens": 999999}', 422),
    (b'{"prompt": "x", "engine": "gpt"}', 422),
    (b'{"prompt": "x", "tools": "os"}', 400),
    (b'{"prompt": "x", "engine": "llamacpp", "model": "no-such-model"}', 400),
    (b'{"prompt": "x", "agent": "bad name!"}', 422),
    (b'{"prompt": "' + b"x" * 70_000 + b'"}', 413),
])
def test_malformed_requests_get_a_4xx_json_error(
    client: httpx.Client, body: bytes, status: int,
) -> None:
    r = client.post("/sessions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert client.get("/health").status_code == 200  # the server is not stuck


def test_other_bad_requests(client: httpx.Client) -> None:
    assert client.get("/sessions/nope").status_code == 404
    assert client.get("/no/such/route").json()["error"]
    assert client.put("/sessions").status_code == 405
    info = _create(client, [WORDS * 10], tpot_ms=20.0)
    sid = info["id"]
    bad = [
        client.post(f"/sessions/{sid}/messages", json={"text": ""}),
        client.post(f"/sessions/{sid}/messages", json={"text": "hi", "sender": "a b"}),
        client.post(f"/sessions/{sid}/messages", json={"text": "x" * 5000}),
        client.get(f"/sessions/{sid}/events", headers={"Last-Event-ID": "abc"}),
        client.post(f"/sessions/{sid}/calls/zz/cancel"),
    ]
    assert [r.status_code for r in bad] == [422, 422, 413, 400, 409]
    assert all("error" in r.json() for r in bad)
    assert client.post(f"/sessions/{sid}/cancel").status_code == 202
    events = follow(client, sid)
    check_complete(events)  # the bad requests left the session working and then cancellable


def test_chunked_body_over_the_limit_is_refused(client: httpx.Client) -> None:
    def chunks():
        yield b'{"prompt": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/sessions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "error" in r.json()


def test_agents_demo_endpoint(client: httpx.Client) -> None:
    out = client.post("/demos/agents", json={"engine": "sim", "tpot_ms": 1.0})
    assert out.status_code == 201, out.text
    ids = {name: s["id"] for name, s in out.json()["sessions"].items()}
    assert client.post("/demos/agents", json={"engine": "sim"}).status_code == 409
    planner = follow(client, ids["planner"])
    researcher = follow(client, ids["researcher"])
    check_complete(planner)
    check_complete(researcher)
    got = [e for e in researcher if e["type"] == "interrupt.injected" and e["messages"]]
    assert got and got[0]["messages"] == ["planner"]
    done = next(e for e in planner if e["type"] == "done")
    weather = next(c for c in next(e for e in researcher if e["type"] == "done")["calls"]
                   if c["fn"] == "get_weather")
    assert weather["value"][:40] in done["text"]


def test_token_limits_and_tool_modules() -> None:
    cfg = ServerConfig(token="s3cret", max_live_sessions=1,
                       tool_modules=("tests.server.toolmod",))
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/health").status_code == 200  # public
        assert c.get("/").status_code == 200
        assert c.get("/sessions").status_code == 401
        assert c.get("/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        body = {"prompt": "go", "tools": "tests.server.toolmod",
                "sim": {"tpot_ms": 1, "script": [CALL.format(id="e1", body='echo(text="hi")'),
                                                 "[TRAP][END]", "ok"]}}
        r = c.post("/sessions", json=body, headers=auth)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        # the event stream: the bearer header, or the cookie the page gets from /auth/cookie
        assert c.get(f"/sessions/{sid}/events?token=s3cret").status_code == 401
        assert c.post("/auth/cookie", headers=auth).status_code == 204
        with c.stream("GET", f"/sessions/{sid}/events") as resp:
            assert resp.status_code == 200
            text = "".join(resp.iter_text())
        assert '"value": "\\"HI\\""' in text
        # the live limit: one long session fills the server; it is left running at shutdown
        body["sim"] = {"tpot_ms": 50, "script": [WORDS * 20]}
        assert c.post("/sessions", json=body, headers=auth).status_code == 201
        r = c.post("/sessions", json=body, headers=auth)
        assert r.status_code == 429 and "error" in r.json()
    # leaving the block stopped the server with a session live: no task kept it alive


def test_bind_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    ServerConfig().check()
    ServerConfig(host="0.0.0.0", token="t").check()
    with pytest.raises(UnsafeBindError):
        ServerConfig(host="0.0.0.0").check()


def test_session_over_the_event_limit_is_stopped() -> None:
    with running_server(ServerConfig(max_events_per_session=40)) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        sid = _create(c, [WORDS * 5], tpot_ms=1.0)["id"]
        events = follow(c, sid)
        check_complete(events)
        assert len(events) <= 41
        assert events[-1]["status"] == "failed"
        assert "too large" in events[-1]["error"]
        assert not [n for n in url.tasks() if sid in n]
