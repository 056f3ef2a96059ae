"""from_mcp: the tools of a real MCP server (a subprocess over stdio, started by each test)
called as asynclm tools and from a session."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import MCPToolError, Tool, ToolArgumentError, ToolContext, Toolbox, from_mcp

mcp = pytest.importorskip("mcp", reason="the mcp extra is not installed")

SERVER = Path(__file__).with_name("mcp_server.py")


@asynccontextmanager
async def _client(tmp: Path) -> AsyncIterator[Any]:
    params = mcp.StdioServerParameters(command=sys.executable, args=[str(SERVER), str(tmp)])
    async with mcp.Client(params) as client:
        yield client


def _run(tmp: Path, body: Callable[[Any], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with _client(tmp) as client:
            return await body(client)

    return asyncio.run(main())


def test_listed_tools_become_tools(tmp_path: Path) -> None:
    async def body(client: Any) -> list[Tool]:
        return await from_mcp(client, timeout=5.0)

    tools = {t.name: t for t in _run(tmp_path, body)}
    assert set(tools) == {"add", "get_time", "profile", "steps", "fail", "hang", "crash"}
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.parameters["required"] == ["a"]
    assert add.timeout == 5.0 and add.is_async
    # arguments are checked here, before anything is sent
    with pytest.raises(ToolArgumentError, match="a"):
        add.validate({"b": 1})
    with pytest.raises(ToolArgumentError):
        add.validate({"a": "x"})
    # OpenAI export of an MCP tool is the server's schema under our name
    assert Toolbox(list(tools.values())).to_openai()[1]["function"]["name"] == "get_time"


def test_prefix_and_include(tmp_path: Path) -> None:
    async def body(client: Any) -> list[str]:
        return [t.name for t in await from_mcp(client, prefix="srv_", include=["add", "get-time"])]

    assert sorted(_run(tmp_path, body)) == ["srv_add", "srv_get_time"]

    async def unknown(client: Any) -> str:
        with pytest.raises(ValueError) as info:
            await from_mcp(client, prefix="a-", include=["add", "nope"])
        return str(info.value)

    assert "no tool 'nope'; it lists 'add', 'get-time'" in _run(tmp_path, unknown)


def test_calls_results_errors_and_progress(tmp_path: Path) -> None:
    async def body(client: Any) -> dict[str, Any]:
        tools = {t.name: t for t in await from_mcp(client)}
        progress: list[str] = []
        ctx = ToolContext(call_id="c1", tool_name="steps", on_progress=progress.append)
        out: dict[str, Any] = {
            "add": await tools["add"].invoke(tools["add"].validate({"a": 1})),
            "time": await tools["get_time"].invoke({"city": "Paris"}),
            "profile": await tools["profile"].invoke({"user": "ada"}),
            "steps": await tools["steps"].invoke({"n": 3}, ctx=ctx),
        }
        out["progress"] = progress
        with pytest.raises(MCPToolError, match="cannot do it: no reason"):
            await tools["fail"].invoke({"reason": "no reason"})
        return out

    out = _run(tmp_path, body)
    assert out["add"] == 3  # the {"result": 3} wrapper is removed
    assert out["time"] == "12:00 in Paris"
    assert out["profile"] == {"user": "ada", "langs": ["en", "fr"]}  # structured, kept whole
    assert out["steps"] == "done"
    assert out["progress"] == ["1/3 step 1", "2/3 step 2", "3/3 step 3"]


def test_a_timed_out_call_is_cancelled_on_the_server(tmp_path: Path) -> None:
    async def body(client: Any) -> Any:
        tools = {t.name: t for t in await from_mcp(client)}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(tools["hang"].invoke({}), 0.5)
        for _ in range(100):  # the server learns of it asynchronously
            if (tmp_path / "cancelled").exists():
                break
            await asyncio.sleep(0.05)
        return await tools["add"].invoke({"a": 40})  # the connection is still usable

    assert _run(tmp_path, body) == 42
    assert (tmp_path / "cancelled").read_text() == "yes"


def test_session_injects_mcp_results_and_errors(tmp_path: Path) -> None:
    """A session (simulated model, real time) calls MCP tools concurrently: results, a
    server-side error and a timeout each come back as the interrupt of their call, and the
    server's progress notifications reach the event stream."""
    script = [
        '[CALL] t [HEAD] get_time(city="Oslo") [END]\n',
        '[CALL] p [HEAD] profile(user="ada") [END]\n',
        '[CALL] f [HEAD] fail(reason="x") [END]\n',
        "[CALL] h [HEAD] hang() [END]\n",
        '[CALL] u [HEAD] add(a=$p.langs.0) [END]\n',
        "[CALL] s [HEAD] steps(n=2) [END]\n",
        *["[TRAP][END]\n"] * 6,
        "All done.",
    ]

    async def body(client: Any) -> Any:
        tools = await from_mcp(client, timeout=1.0)
        engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.001))
        return await Session(engine, tools, system="test",
                             config=SessionConfig(max_tokens=2000)).run("go", on_event=seen.append)

    seen: list[Any] = []
    r = _run(tmp_path, body)
    calls = {c.id: c for c in r.calls}
    assert calls["t"].status == "ok" and calls["t"].value == "12:00 in Oslo"
    assert calls["p"].value == {"user": "ada", "langs": ["en", "fr"]}
    assert calls["f"].status == "error" and "cannot do it: x" in (calls["f"].error or "")
    assert calls["h"].status == "timeout"
    # $p.langs.0 is "en": not an integer, so the dependent call fails validation, unsent
    assert calls["u"].status == "error" and calls["u"].started_at is None
    assert {c.id for c in r.calls} == set(calls) and all(c.injected_at for c in r.calls)
    assert "12:00 in Oslo" in r.transcript and "cannot do it: x" in r.transcript
    assert calls["s"].value == "done"
    assert [(e.call_id, e.message) for e in seen if e.type == "call.progress"] == [
        ("s", "1/2 step 1"), ("s", "2/2 step 2")]


def test_the_model_cancelling_a_call_cancels_it_on_the_server(tmp_path: Path) -> None:
    """The model's built-in ``cancel(call_id)`` (issue 24) on a cancellable MCP tool: the
    pending request is cancelled, the MCP client sends ``notifications/cancelled`` and the
    server's handler is cancelled (it records it); the connection stays usable."""
    script = [
        "[CALL] h [HEAD] hang() [END]\n",
        *[f"w{i} " for i in range(150)],  # real time: let the request reach the handler
        '\n[CALL] k [HEAD] cancel(call_id="h") [END]\n',
        "[TRAP][END]\n", "[CALL] a [HEAD] add(a=40) [END]\n", "[TRAP][END]\n", "Done.",
    ]

    async def body(client: Any) -> Any:
        tools = await from_mcp(client, include=["hang", "add"], cancellable=True)
        assert all(t.cancellable for t in tools)
        engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.001))
        r = await Session(engine, tools, system="test",
                          config=SessionConfig(max_tokens=2000)).run("go")
        for _ in range(100):  # the server learns of it asynchronously
            if (tmp_path / "cancelled").exists():
                break
            await asyncio.sleep(0.05)
        return r

    r = _run(tmp_path, body)
    assert {c.id: c.status for c in r.calls} == {"h": "cancelled", "k": "ok", "a": "ok"}
    assert r.call("k").value == "h (hang) cancelled" and r.call("a").value == 42
    assert (tmp_path / "cancelled").read_text() == "yes"


def test_a_server_that_dies_mid_call_is_an_error_not_a_hang(tmp_path: Path) -> None:
    async def body(client: Any) -> list[str]:
        tools = {t.name: t for t in await from_mcp(client)}
        outcomes = []
        for name, args in (("crash", {}), ("add", {"a": 1})):  # then: the server is gone
            try:
                await asyncio.wait_for(tools[name].invoke(args), 20)
                outcomes.append("ok")
            except TimeoutError:
                outcomes.append("hang")
            except Exception as exc:  # noqa: BLE001 - any error the runtime would inject
                outcomes.append(f"error {type(exc).__name__}")
        return outcomes

    try:
        outcomes = _run(tmp_path, body)
    except BaseException as exc:  # noqa: BLE001 - closing the client after its server died
        pytest.fail(f"the client failed to close: {exc!r}")
    assert [o.split()[0] for o in outcomes] == ["error", "error"], outcomes


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tools_of_a_server_over_streamable_http(tmp_path: Path) -> None:
    """The same tools from a running MCP server reached by URL (``asynclm run --mcp URL``)."""
    import socket
    import subprocess
    import time

    from asynclm.cli_run import open_tools

    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), str(tmp_path), "--http", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)

        async def main() -> tuple[list[str], Any, Any]:
            async with open_tools([], [f"http://127.0.0.1:{port}/mcp"]) as tools:
                by_name = {t.name: t for t in tools}
                return (list(by_name), await by_name["add"].invoke({"a": 40}),
                        await by_name["profile"].invoke({"user": "ada"}))

        names, total, profile = asyncio.run(main())
    finally:
        proc.terminate()
        proc.wait(10)
    assert "get_time" in names and total == 42
    assert profile == {"user": "ada", "langs": ["en", "fr"]}
