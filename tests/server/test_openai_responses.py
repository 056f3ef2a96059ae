"""``POST /v1/responses`` with the unmodified ``openai`` SDK against a real server (started by
each module), on the simulator (``sim``) and, in a slow test, on the bundled 0.5B model:
streaming (every event parsed into the SDK's typed classes), server-run tools as ``mcp_call``
items, an MCP server through the operator's allow-list, client-side function tools continued
with ``previous_response_id``, errors in OpenAI's shape, a dropped stream."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asynclm.server.config import ServerConfig
from tests.server.conftest import running_server

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
pytest.importorskip("mcp")

from openai.types.responses import (  # noqa: E402
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseMcpCallArgumentsDeltaEvent,
    ResponseMcpCallArgumentsDoneEvent,
    ResponseMcpCallCompletedEvent,
    ResponseMcpCallInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from openai.types.responses.response_output_item import McpCall  # noqa: E402

MCP_SERVER = Path(__file__).parents[1] / "tools" / "mcp_server.py"
LOOKUP = {"type": "function", "name": "lookup", "description": "Look a fact up.",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                         "required": ["q"]}}

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The repository's test MCP server over streamable HTTP (a real subprocess)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), str(tmp_path_factory.mktemp("mcp")), "--http",
         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no MCP server"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)

@pytest.fixture(scope="module")
def server(mcp_url: str) -> Iterator[str]:
    cfg = ServerConfig(tool_modules=("tests.server.toolmod",), mcp_servers=(("calc", mcp_url),),
                       max_live_sessions=8)
    with running_server(cfg) as url:
        yield url

@pytest.fixture
def client(server: str) -> Iterator[Any]:
    with openai.OpenAI(base_url=f"{server}/v1", api_key="-", max_retries=0, timeout=60) as c:
        yield c

def _types(events: list[Any]) -> list[str]:
    return [e.type for e in events]

def test_stream_plain_answer_typed_events_in_order(client: Any) -> None:
    events = list(client.responses.create(model="sim", input="Say hello", stream=True))
    kinds = _types(events)
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[1], ResponseInProgressEvent)
    assert isinstance(events[2], ResponseOutputItemAddedEvent)
    assert isinstance(events[3], ResponseContentPartAddedEvent)
    assert isinstance(events[-4], ResponseTextDoneEvent)
    assert isinstance(events[-3], ResponseContentPartDoneEvent)
    assert isinstance(events[-2], ResponseOutputItemDoneEvent)
    assert isinstance(events[-1], ResponseCompletedEvent)
    deltas = [e for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert len(deltas) > 3 and kinds.count("response.output_text.delta") == len(deltas)
    text = "".join(d.delta for d in deltas)
    assert "Say hello" in text and events[-4].text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.status == "completed" and done.output_text == text
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert done.usage.total_tokens == done.usage.input_tokens + done.usage.output_tokens

def test_non_streaming_with_instructions(client: Any) -> None:
    resp = client.responses.create(model="sim", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "What is asynclm?"}]}],
        instructions="Answer briefly.", max_output_tokens=200)
    assert resp.status == "completed" and resp.object == "response"
    assert "What is asynclm?" in resp.output_text
    assert isinstance(resp.output[0], ResponseOutputMessage)
    assert resp.usage.output_tokens > 0
    # stored: GET returns it
    again = client.responses.retrieve(resp.id)
    assert again.id == resp.id and again.output_text == resp.output_text

def test_max_output_tokens_makes_it_incomplete(client: Any) -> None:
    resp = client.responses.create(model="sim", input="hello", max_output_tokens=5)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.usage.output_tokens == 5

def test_server_tool_runs_while_the_model_writes_as_mcp_call(client: Any) -> None:
    events = list(client.responses.create(
        model="sim", input="shout this", stream=True,
        tools=[{"type": "function", "name": "echo"}]))
    kinds = _types(events)
    for kind in ("response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
                 "response.mcp_call.in_progress", "response.mcp_call.completed"):
        assert kind in kinds
    assert kinds.index("response.mcp_call.in_progress") < kinds.index(
        "response.mcp_call.completed")
    # the model kept writing while the call ran: text deltas between start and completion
    between = kinds[kinds.index("response.mcp_call.in_progress"):
                    kinds.index("response.mcp_call.completed")]
    assert "response.output_text.delta" in between
    args = next(e for e in events if isinstance(e, ResponseMcpCallArgumentsDoneEvent))
    assert args.arguments == '{"text": "shout this"}'
    assert any(isinstance(e, ResponseMcpCallArgumentsDeltaEvent) for e in events)
    assert any(isinstance(e, ResponseMcpCallInProgressEvent) for e in events)
    assert any(isinstance(e, ResponseMcpCallCompletedEvent) for e in events)
    final = events[-1].response
    call = next(o for o in final.output if isinstance(o, McpCall))
    assert (call.name, call.server_label, call.status) == ("echo", "asynclm", "completed")
    assert call.output == "SHOUT THIS" and call.error is None
    assert "SHOUT THIS" in final.output_text

def test_mcp_tool_through_the_allow_list(client: Any, mcp_url: str) -> None:
    resp = client.responses.create(
        model="sim", input="add them",
        tools=[{"type": "mcp", "server_label": "calc", "server_url": mcp_url,
                "allowed_tools": ["add"], "require_approval": "never"}])
    call = next(o for o in resp.output if isinstance(o, McpCall))
    assert (call.name, call.server_label, call.arguments) == ("add", "calc", '{"a": 1}')
    assert call.output == "3" and call.status == "completed"
    assert "add: 3" in resp.output_text
    # the label alone picks the allow-listed URL
    resp = client.responses.create(
        model="sim", input="add", tools=[{"type": "mcp", "server_label": "calc",
                                          "allowed_tools": ["add"]}])
    assert any(isinstance(o, McpCall) and o.output == "3" for o in resp.output)

def test_mcp_failure_is_a_failed_mcp_call(client: Any, mcp_url: str) -> None:
    events = list(client.responses.create(
        model="sim", input="oops", stream=True,
        tools=[{"type": "mcp", "server_label": "calc", "server_url": mcp_url,
                "allowed_tools": ["fail"]}]))
    assert "response.mcp_call.failed" in _types(events)
    call = next(o for o in events[-1].response.output if isinstance(o, McpCall))
    assert call.status == "failed" and call.error is not None
    assert events[-1].type == "response.completed"

@pytest.mark.parametrize("url", ["http://127.0.0.1:1/mcp", "http://example.com/mcp",
                                 "file:///etc/passwd"])
def test_mcp_url_outside_the_allow_list_is_refused(client: Any, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="sim", input="x",
                                tools=[{"type": "mcp", "server_label": "calc",
                                        "server_url": url}])
    assert info.value.code == "mcp_server_not_allowed"
    assert info.value.param == "tools.0.server_url"
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="sim", input="x",
                                tools=[{"type": "mcp", "server_label": "elsewhere"}])

def test_client_function_tool_round_trip(client: Any) -> None:
    first = client.responses.create(model="sim", input="look it up", tools=[LOOKUP])
    assert first.status == "completed"
    calls = [o for o in first.output if isinstance(o, ResponseFunctionToolCall)]
    assert len(calls) == 1
    fc = calls[0]
    assert (fc.name, fc.status, fc.arguments) == ("lookup", "completed", '{"q": "look it up"}')
    assert fc.call_id
    second = client.responses.create(
        model="sim", previous_response_id=first.id, tools=[LOOKUP],
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "forty-two"}])
    assert second.status == "completed" and second.previous_response_id == first.id
    assert "lookup: \"forty-two\"" in second.output_text
    assert not any(isinstance(o, ResponseFunctionToolCall) for o in second.output)
    # the parked response can be continued once only
    with pytest.raises(openai.BadRequestError):
        client.responses.create(
            model="sim", previous_response_id=first.id, tools=[LOOKUP],
            input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "x"}])
    # a finished response continues with a new user turn (a new run on the stored context)
    third = client.responses.create(model="sim", previous_response_id=second.id,
                                    input="and now?")
    assert third.status == "completed" and "and now?" in third.output_text

def test_client_function_tool_round_trip_streaming(client: Any) -> None:
    events = list(client.responses.create(model="sim", input="find", tools=[LOOKUP],
                                          stream=True))
    assert any(isinstance(e, ResponseFunctionCallArgumentsDeltaEvent) for e in events)
    done = next(e for e in events if isinstance(e, ResponseFunctionCallArgumentsDoneEvent))
    assert done.arguments == '{"q": "find"}'
    first = events[-1].response
    fc = next(o for o in first.output if isinstance(o, ResponseFunctionToolCall))
    events = list(client.responses.create(
        model="sim", previous_response_id=first.id, stream=True, tools=[LOOKUP],
        input=[{"type": "function_call_output", "call_id": fc.call_id, "output": "ok"}]))
    assert events[-1].type == "response.completed"
    assert "lookup: \"ok\"" in events[-1].response.output_text

def test_stateless_history_with_function_call_items(client: Any) -> None:
    """A client that re-sends the whole history (no previous_response_id) is answered too."""
    resp = client.responses.create(model="sim", input=[
        {"role": "user", "content": "look it up"},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": "x"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "found"},
        {"role": "user", "content": "thanks"}])
    assert resp.status == "completed" and "thanks" in resp.output_text

def test_errors_in_openai_shape(client: Any, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="no-such-model", input="x")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="sim", input="x", previous_response_id="resp_nope")
    assert nf.value.code == "previous_response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_nope")
    bad: list[dict[str, Any]] = [
        {"extra_body": {"n": 2}},
        {"extra_body": {"background": True}},
        {"max_output_tokens": 10**6},
        {"max_output_tokens": 0},
        {"input": [{"type": "image_generation_call", "id": "x"}]},
        {"input": [{"role": "robot", "content": "x"}]},
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
        {"input": []},
        {"tools": [{"type": "web_search"}]},
        {"tools": [{"type": "function", "name": "f", "parameters": {"type": "string"}}]},
        {"tools": [{"type": "function", "name": "bad name"}]},
        {"tools": ["echo"]},
        {"tools": [{"type": "mcp", "server_label": "calc", "server_url": "x",
                    "headers": {"a": "b"}}]},
    ]
    for extra in bad:
        kwargs: dict[str, Any] = {"model": "sim", "input": "x", **extra}
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(**kwargs)
        body = info.value.body
        assert set(body) == {"message", "type", "param", "code"}, (extra, body)
    # a function_call_output for a call no run waits for
    done = client.responses.create(model="sim", input="hi")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="sim", previous_response_id=done.id, input=[
            {"type": "function_call_output", "call_id": "zz", "output": "x"}])
    # not JSON at all: 400, never a 5xx
    r = httpx.post(f"{server}/v1/responses", content=b"{", headers={
        "content-type": "application/json"})
    assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}
    # over the body limit: 413 in OpenAI's shape
    r = httpx.post(f"{server}/v1/responses", json={"model": "sim", "input": "x" * 70_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

def test_token_is_required_when_set() -> None:
    with running_server(ServerConfig(token="s3cret")) as url:
        with openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                bad.responses.create(model="sim", input="x")
        with openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0) as good:
            assert good.responses.create(model="sim", input="x").status == "completed"

def test_live_limit_is_429(server: str) -> None:
    with running_server(ServerConfig(max_live_sessions=1)) as url, openai.OpenAI(
            base_url=f"{url}/v1", api_key="-", max_retries=0) as c:
        first = c.responses.create(model="sim", input="x", tools=[LOOKUP])  # parked: live
        assert any(isinstance(o, ResponseFunctionToolCall) for o in first.output)
        with pytest.raises(openai.RateLimitError):
            c.responses.create(model="sim", input="y")

def test_dropped_stream_cancels_the_run(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as http:
        body = {"model": "sim", "input": "a long answer please", "stream": True,
                "tools": [{"type": "function", "name": "echo"}], "max_output_tokens": 4000}
        with http.stream("POST", "/v1/responses", json=body) as resp:
            assert resp.status_code == 200
            for line in resp.iter_lines():
                if "response.output_text.delta" in line:
                    break
        deadline = time.monotonic() + 10
        while True:
            live = [s for s in http.get("/sessions").json()["sessions"]
                    if s["status"] in ("queued", "running")]
            if not live:
                break
            assert time.monotonic() < deadline, live
            time.sleep(0.05)
        statuses = {s["status"] for s in http.get("/sessions").json()["sessions"]}
        assert "cancelled" in statuses
    # the server still answers
    with openai.OpenAI(base_url=f"{server}/v1", api_key="-", max_retries=0) as c:
        assert c.responses.create(model="sim", input="again").status == "completed"

@pytest.mark.slow
def test_bundled_model_answers_streaming() -> None:
    from asynclm.models import list_models

    if not any(m.name == "qwen2.5-coder-0.5b" and m.assembled for m in list_models()):
        pytest.skip("qwen2.5-coder-0.5b is not in the cache")
    with running_server(ServerConfig()) as url, openai.OpenAI(
            base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=300) as c:
        events = list(c.responses.create(model="qwen2.5-coder-0.5b", stream=True,
                                         input="What is the capital of France? One word.",
                                         max_output_tokens=24))
        assert events[0].type == "response.created"
        assert events[-1].type in ("response.completed", "response.incomplete")
        final = events[-1].response
        text = "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))
        assert text.strip() and final.output_text == text
        assert "paris" in text.lower()
        assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 24
