"""Client-run tools (OpenAI Realtime style) over real HTTP and SSE: the server emits the call,
the model keeps writing, the client posts the answer (``POST
/sessions/{id}/calls/{call_id}/result``), which reaches the model as an interrupt; the tool's
timeout applies; a second or late answer is a 409 that changes nothing."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from asynclm.server.config import ServerConfig

from .conftest import Served, check_complete, follow, running_server, sse_events

CALL = "[CALL] {id} [HEAD] {body} [END]\n"
TRAP = "[TRAP][END]"
WORDS = "the model keeps writing while the client runs its tool " * 6
LOOKUP = {"type": "function", "function": {
    "name": "lookup", "description": "Look something up on the client's side.",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                   "required": ["q"]}}}


def _tool(timeout_s: float | None = None, spec: dict[str, Any] = LOOKUP) -> dict[str, Any]:
    return {**spec, **({"timeout_s": timeout_s} if timeout_s is not None else {})}


def _create(c: httpx.Client, script: list[str], *, client_tools: list[dict[str, Any]],
            tpot_ms: float = 5.0, **kw: Any) -> str:
    body = {"prompt": "go", "tools": kw.pop("tools", "none"), "client_tools": client_tools,
            "sim": {"tpot_ms": tpot_ms, "script": script}, **kw}
    r = c.post("/sessions", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _result(c: httpx.Client, sid: str, call_id: str, body: dict[str, Any]) -> httpx.Response:
    return c.post(f"/sessions/{sid}/calls/{call_id}/result", json=body)


def _first(events: list[dict[str, Any]], type: str, **match: Any) -> dict[str, Any]:
    return next(e for e in events if e["type"] == type
                and all(e.get(k) == v for k, v in match.items()))


@pytest.fixture
def client(base_url: Served) -> httpx.Client:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def test_answer_posted_while_the_model_writes_arrives_as_an_interrupt(
        client: httpx.Client) -> None:
    sid = _create(client, ["Let me look that up. ", CALL.format(id="c1", body='lookup(q="tides")'),
                           WORDS, TRAP, "Done."], client_tools=[_tool(timeout_s=20)])
    posts: list[httpx.Response] = []
    pending: list[str] = []
    written = 0

    def on_event(e: dict[str, Any]) -> None:
        nonlocal written
        if e["type"] == "call.started" and e["runs_on"] == "client":
            pending.append(e["call_id"])
        elif e["type"] == "text.delta" and pending and not posts:
            written += 1  # the client answers while the model writes
            if written == 5:
                posts.append(_result(client, sid, pending[0], {"output": {"high": "06:12"}}))
                # a second answer: 409, nothing changed
                posts.append(_result(client, sid, pending[0], {"output": "other"}))

    events = follow(client, sid, on_event)
    check_complete(events)
    assert [p.status_code for p in posts] == [202, 409], [p.text for p in posts]
    assert "answered already" in posts[1].json()["error"]
    emitted = _first(events, "call.emitted", call_id="c1")
    started = _first(events, "call.started", call_id="c1")
    assert emitted["runs_on"] == "client" and started["runs_on"] == "client"
    assert started["arguments"] == {"q": "tides"} and started["timeout_s"] == 20
    assert sum(e["type"] == "call.started" for e in events) == 1
    completed = _first(events, "call.completed", call_id="c1")
    assert completed["status"] == "ok" and "06:12" in completed["value"]
    assert "other" not in completed["value"]
    injected = next(e for e in events
                    if e["type"] == "interrupt.injected" and "c1" in e["call_ids"])
    assert "06:12" in injected["text"]
    # event order: the model kept writing after the call was handed over, and the answer
    # arrived while it wrote (before it trapped to wait)
    between = events[started["seq"] + 1: completed["seq"]]
    assert sum(e["type"] == "text.delta" for e in between) >= 5
    assert started["seq"] < completed["seq"] < injected["seq"]
    traps = [e for e in events if e["type"] == "trap"]
    assert all(t["seq"] > injected["seq"] for t in traps)
    assert any(e["type"] == "text.delta" for e in events[injected["seq"]:])
    done = _first(events, "done")
    assert done["stop_reason"] == "eos" and done["calls"][0]["status"] == "ok"
    # after the end: still a 409
    assert _result(client, sid, "c1", {"output": 1}).status_code == 409


def test_error_answer_ends_the_call_with_the_clients_message(client: httpx.Client) -> None:
    sid = _create(client, [CALL.format(id="c1", body='lookup(q="x")'), TRAP, "Done."],
                  client_tools=[_tool()])

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "call.started":
            assert _result(client, sid, "c1", {"error": "no network"}).status_code == 202

    events = follow(client, sid, on_event)
    completed = _first(events, "call.completed", call_id="c1")
    assert completed["status"] == "error" and "no network" in completed["error"]
    assert "no network" in _first(events, "interrupt.injected")["text"]


def test_timeout_when_the_client_never_answers_then_late_post_409(
        client: httpx.Client) -> None:
    t = time.monotonic()
    sid = _create(client, ["Asking the client. ", CALL.format(id="c1", body='lookup(q="x")'),
                           TRAP, "Done."], client_tools=[_tool(timeout_s=0.4)])
    events = follow(client, sid)
    assert time.monotonic() - t < 10
    check_complete(events)
    completed = _first(events, "call.completed", call_id="c1")
    assert completed["status"] == "timeout" and completed["runs_on"] == "client"
    injected = next(e for e in events
                    if e["type"] == "interrupt.injected" and "c1" in e["call_ids"])
    assert "timed out" in injected["text"]  # the model is told
    assert _first(events, "done")["stop_reason"] == "eos"
    late = _result(client, sid, "c1", {"output": "too late"})
    assert late.status_code == 409 and "ended (timeout)" in late.json()["error"]
    again = follow(client, sid)
    assert again == events  # nothing changed


def test_a_disconnected_clients_call_times_out_and_the_session_ends(
        client: httpx.Client) -> None:
    sid = _create(client, [CALL.format(id="c1", body='lookup(q="x")'), TRAP, "Done."],
                  client_tools=[_tool(timeout_s=0.5)])
    with client.stream("GET", f"/sessions/{sid}/events") as resp:
        for e in sse_events(resp.iter_lines()):
            if e["type"] == "call.started":
                break  # the client goes away with its call pending
    deadline = time.monotonic() + 15
    while client.get(f"/sessions/{sid}").json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the session never ended"
        time.sleep(0.05)
    assert client.get(f"/sessions/{sid}").json()["status"] == "done"
    events = follow(client, sid)
    check_complete(events)
    assert _first(events, "call.completed", call_id="c1")["status"] == "timeout"
    assert _result(client, sid, "c1", {"output": 1}).status_code == 409


def test_cancelled_session_late_post_409(client: httpx.Client) -> None:
    sid = _create(client, [CALL.format(id="c1", body='lookup(q="x")'), TRAP, "Done."],
                  client_tools=[_tool(timeout_s=30)])

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "call.started":
            assert client.post(f"/sessions/{sid}/cancel").status_code == 202

    events = follow(client, sid, on_event)
    assert events[-1]["status"] == "cancelled"
    assert _first(events, "call.completed", call_id="c1")["status"] == "cancelled"
    r = _result(client, sid, "c1", {"output": 1})
    assert r.status_code == 409 and "cancelled" in r.json()["error"]


def test_not_found_and_not_a_client_call(client: httpx.Client) -> None:
    sid = _create(client, [CALL.format(id="w1", body='get_weather(city="Paris")'),
                           CALL.format(id="c1", body='lookup(q="x")'), TRAP, "Done."],
                  client_tools=[_tool(timeout_s=0.3)], tools="demo")
    events = follow(client, sid)
    assert _first(events, "call.emitted", call_id="w1")["runs_on"] == "server"
    assert _first(events, "call.completed", call_id="w1")["runs_on"] == "server"
    assert _result(client, "nope", "c1", {"output": 1}).status_code == 404
    assert _result(client, sid, "nope", {"output": 1}).status_code == 404
    r = _result(client, sid, "w1", {"output": 1})  # a server-run call: 409
    assert r.status_code == 409 and "runs on the server" in r.json()["error"]
    for body in ({}, {"output": 1, "error": "x"}, {"error": None}, {"result": 1},
                 {"error": ""}):
        assert _result(client, sid, "c1", body).status_code == 422, body
    bad = client.post(f"/sessions/{sid}/calls/c1/result", content=b"not json",
                      headers={"content-type": "application/json"})
    assert bad.status_code == 422


def test_arguments_are_validated_before_the_call_reaches_the_client(
        client: httpx.Client) -> None:
    sid = _create(client, [CALL.format(id="c1", body="lookup(q=5)"), TRAP, "Done."],
                  client_tools=[_tool()])
    events = follow(client, sid)
    completed = _first(events, "call.completed", call_id="c1")
    assert completed["status"] == "error"
    assert not any(e["type"] == "call.started" for e in events)
    r = _result(client, sid, "c1", {"output": 1})
    assert r.status_code == 409 and "ended (error)" in r.json()["error"]


def test_declaring_client_tools(client: httpx.Client) -> None:
    def create(specs: list[dict[str, Any]], **kw: Any) -> httpx.Response:
        return client.post("/sessions", json={"prompt": "go", "client_tools": specs, **kw})

    assert create([_tool(timeout_s=601)]).status_code == 422
    assert create([_tool(timeout_s=0)]).status_code == 422
    assert create([{"type": "function", "function": {"description": "no name"}}]
                  ).status_code == 400
    assert create([_tool(), _tool()]).status_code == 400
    clash = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    r = create([clash], tools="demo")
    assert r.status_code == 400 and "server tool" in r.json()["error"]
    # the flat (Responses) form works too
    flat = {"type": "function", "name": "ask_user", "parameters": {"type": "object"}}
    r = create([flat], sim={"script": [CALL.format(id="a1", body="ask_user()"), TRAP, "Hi."]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]

    def on_event(e: dict[str, Any]) -> None:
        if e["type"] == "call.started":
            assert e["runs_on"] == "client" and e["arguments"] == {}
            assert e["timeout_s"] == 60  # the default
            assert _result(client, sid, "a1", {"output": None}).status_code == 202

    events = follow(client, sid, on_event)
    assert events[-1]["status"] == "done"
    assert _first(events, "call.completed", call_id="a1")["status"] == "ok"


def test_the_guard_applies() -> None:
    with running_server(ServerConfig(token="s3cret")) as url, \
            httpx.Client(base_url=url, timeout=30) as c:
        auth = {"Authorization": "Bearer s3cret"}
        r = c.post("/sessions", headers=auth, json={
            "prompt": "go", "client_tools": [_tool(timeout_s=5)],
            "sim": {"tpot_ms": 2, "script": [CALL.format(id="c1", body='lookup(q="x")'),
                                             TRAP, "Done."]}})
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        codes: list[int] = []

        def on_event(e: dict[str, Any]) -> None:
            if e["type"] == "call.started":
                url_ = f"/sessions/{sid}/calls/c1/result"
                codes.append(c.post(url_, json={"output": 1}).status_code)
                codes.append(c.post(url_, json={"output": 1}, headers={
                    **auth, "Origin": "http://evil.example"}).status_code)
                codes.append(c.post(url_, json={"output": 1}, headers={
                    **auth, "Host": "evil.example"}).status_code)
                codes.append(c.post(url_, json={"output": 1}, headers=auth).status_code)

        events = follow(c, sid, on_event, headers=auth)
        assert codes == [401, 403, 400, 202]
        assert _first(events, "call.completed", call_id="c1")["status"] == "ok"
