"""``/v1/models`` and ``/v1/chat/completions`` with the unmodified ``openai`` SDK, against a
real server the tests start (simulator; the bundled 0.5B model in a slow test)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asynclm.models import list_models
from asynclm.server.config import ServerConfig
from asynclm.tools import Toolbox, tool

from .conftest import running_server, sse_events

openai = pytest.importorskip("openai")

TOKEN = "s3cret-token"
THIS = "tests.server.test_openai_chat"  # this module is also a tool module the server allows


@tool
async def shout(text: str) -> str:
    """Return the text in capitals."""
    await asyncio.sleep(0.05)
    return text.upper() + "!"


@tool
async def wait_long(text: str) -> str:
    """Take a long time (the dropped-stream test cancels it)."""
    await asyncio.sleep(60)
    return text


TOOLS = Toolbox([shout, wait_long])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    cfg = ServerConfig(tool_modules=(THIS,), max_live_sessions=4, token=TOKEN)
    with running_server(cfg) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server}/v1", api_key=TOKEN, max_retries=0,
                       timeout=30) as c:
        yield c


def _http(server: str) -> httpx.Client:
    return httpx.Client(base_url=server, timeout=30,
                        headers={"Authorization": f"Bearer {TOKEN}"})


def _wait_idle(server: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Wait until no registry session is live; return the session list."""
    with _http(server) as h:
        deadline = time.monotonic() + timeout
        while True:
            sessions = h.get("/sessions").json()["sessions"]
            if not any(s["status"] in ("queued", "running") for s in sessions):
                return sessions
            assert time.monotonic() < deadline, sessions
            time.sleep(0.05)


def _error(exc: Any) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_models_list(client: Any) -> None:
    models = client.models.list()
    ids = [m.id for m in models]
    assert ids[-1] == "sim"
    assert all(m.object == "model" and m.owned_by and isinstance(m.created, int)
               for m in models)
    assert client.models.retrieve("sim").id == "sim"


def test_chat_plain(client: Any) -> None:
    r = client.chat.completions.create(
        model="sim", temperature=0.2,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "hello there"}])
    assert r.object == "chat.completion" and r.model == "sim"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert "hello there" in choice.message.content
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_server_tool(client: Any) -> None:
    """The simulated model calls the server-run tool and its answer quotes the result."""
    r = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "make noise"}],
        tools=[{"type": "function", "function": {"name": "shout"}}])
    assert "MAKE NOISE!" in r.choices[0].message.content
    assert r.choices[0].message.tool_calls is None  # the server ran it: nothing for the client
    ext = r.model_extra["asynclm"]
    assert [(c["fn"], c["status"]) for c in ext["calls"]] == [("shout", "ok")]


def test_chat_stream_with_tool_and_usage(client: Any) -> None:
    stream = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "make noise"}],
        tools=[{"type": "function", "function": {"name": "shout", "parameters": {}}}],
        stream=True, stream_options={"include_usage": True})
    text, finish, usage, activity = [], [], [], []
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            if chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
        if chunk.usage is not None:
            usage.append(chunk.usage)
        if (chunk.model_extra or {}).get("asynclm"):
            activity.append(chunk.model_extra["asynclm"]["type"])
    assert "MAKE NOISE!" in "".join(text)
    assert finish == ["stop"] and len(usage) == 1 and usage[0].completion_tokens > 0
    assert activity.index("call.started") < activity.index("call.completed") < len(activity)
    assert activity[-1] == "done"


def test_stream_raw_events_end_with_done(server: str) -> None:
    with _http(server) as h, h.stream("POST", "/v1/chat/completions", json={
            "model": "sim", "stream": True, "messages": [{"role": "user", "content": "hi"}],
    }) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_max_tokens_gives_length(client: Any) -> None:
    r = client.chat.completions.create(
        model="sim", max_completion_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens <= 3


def test_unknown_model_is_404(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    err = _error(info.value)
    assert err["code"] == "model_not_found" and err["param"] == "model"


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"stop": ["x"]}, "stop"),
    ({"bogus_field": 1}, "bogus_field"),
    ({"tools": [{"type": "function", "function": {"name": "not_a_server_tool"}}]}, "tools.0"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages.0.content.0"),
])
def test_bad_fields_are_400(client: Any, extra: dict[str, Any], param: str) -> None:
    body: dict[str, Any] = {"model": "sim", "messages": [{"role": "user", "content": "x"}]}
    body.update(extra)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=body.pop("model"), messages=body.pop("messages"),
                                       extra_body=body)
    err = _error(info.value)
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_token_required(server: str) -> None:
    with (openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0) as bad,
          pytest.raises(openai.AuthenticationError) as info):
        bad.models.list()
    assert _error(info.value)["code"] == "invalid_api_key"
    r = httpx.post(f"{server}/v1/chat/completions", json={"model": "sim", "messages": []})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_guard_refusals_in_openai_shape(server: str) -> None:
    with _http(server) as h:
        big = h.post("/v1/chat/completions", json={
            "model": "sim", "messages": [{"role": "user", "content": "x" * 70_000}]})
        assert big.status_code == 413 and big.json()["error"]["message"]
        host = h.get("/v1/models", headers={"Host": "evil.example"})
        assert host.status_code == 400 and "Host" in host.json()["error"]["message"]
        assert h.get("/v1/nowhere").json()["error"]["type"] == "not_found_error"
        assert h.get("/docs").status_code == 200
        assert "/v1/chat/completions" in h.get("/openapi.json").json()["paths"]


def test_dropped_stream_cancels_the_run(server: str, client: Any) -> None:
    """Read a chunk, hang up: the run ends cancelled (its call too, exactly once), and the
    server serves the next request."""
    with _http(server) as h:
        with h.stream("POST", "/v1/chat/completions", json={
                "model": "sim", "stream": True, "messages": [{"role": "user", "content": "z"}],
                "tools": [{"type": "function", "function": {"name": "wait_long"}}]}) as resp:
            assert resp.status_code == 200
            for event in sse_events(resp.iter_lines()):
                if (event.get("asynclm") or {}).get("type") == "call.started":
                    break
        sessions = _wait_idle(server)
        mine = [s for s in sessions if s["tools"] == "wait_long"]
        assert mine and mine[-1]["status"] == "cancelled"
        events = h.get(f"/sessions/{mine[-1]['id']}/events").text
    ends = [json.loads(line[6:]) for line in events.splitlines()
            if line.startswith("data: ") and '"call.completed"' in line]
    assert [(e["call_id"], e["status"]) for e in ends] == [("c1", "cancelled")]
    r = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "a"}])
    assert r.choices[0].message.content


def test_live_session_limit_is_429(server: str, client: Any) -> None:
    _wait_idle(server)
    with _http(server) as h:
        ids = []
        for _ in range(4):  # fill the server's 4 live sessions with slow native sessions
            r = h.post("/sessions", json={"prompt": "p", "tools": "none",
                                          "sim": {"tpot_ms": 2000}})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        try:
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(
                    model="sim", messages=[{"role": "user", "content": "x"}])
            assert _error(info.value)["code"] == "rate_limit_exceeded"
        finally:
            for sid in ids:
                h.post(f"/sessions/{sid}/cancel")
    _wait_idle(server)


def _cached(name: str) -> bool:
    return any(m.name == name and m.assembled for m in list_models())


@pytest.mark.slow
@pytest.mark.skipif(not _cached("qwen2.5-coder-0.5b"), reason="model not in the cache")
def test_bundled_model_chat() -> None:
    with (running_server(ServerConfig()) as url,
          openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=300) as client):
        assert "qwen2.5-coder-0.5b" in [m.id for m in client.models.list()]
        r = client.chat.completions.create(
            model="qwen2.5-coder-0.5b", max_tokens=40,
            messages=[{"role": "user", "content": "Name one colour of the rainbow."}])
        assert r.choices[0].message.content.strip()
        assert r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 40
        stream = client.chat.completions.create(
            model="qwen2.5-coder-0.5b", max_tokens=16, stream=True,
            messages=[{"role": "user", "content": "Say hello."}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
