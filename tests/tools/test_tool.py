"""Invocation: threads for sync tools, awaiting async ones, context injection, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from asynclm.tools import Tool, ToolContext, ToolNotImplemented, tool

pytestmark = pytest.mark.anyio


async def test_sync_tool_runs_in_a_worker_thread_without_blocking_the_loop() -> None:
    @tool
    def slow(seconds: float) -> int:
        """Sleep, then report the thread."""
        time.sleep(seconds)
        return threading.get_ident()

    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    ident = await slow.invoke(slow.validate({"seconds": 0.3}))
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    assert ident != threading.get_ident()
    assert elapsed >= 0.29
    assert ticks >= 10  # ~30 expected; a blocked loop would give 1


async def test_async_tool_is_awaited_on_the_loop() -> None:
    @tool
    async def fetch(x: int) -> tuple[int, int]:
        """Async."""
        await asyncio.sleep(0)
        return x * 2, threading.get_ident()

    assert fetch.is_async
    value, ident = await fetch.invoke(fetch.validate({"x": "21"}))
    assert value == 42 and ident == threading.get_ident()


async def test_context_injected_and_default_created() -> None:
    seen: list[ToolContext] = []

    @tool
    def f(x: int, context: ToolContext) -> int:
        """F."""
        seen.append(context)
        context.progress(f"working on {x}")
        return x

    messages: list[str] = []
    ctx = ToolContext(call_id="c1", tool_name="f", on_progress=messages.append)
    assert await f.invoke({"x": 1}, ctx=ctx) == 1
    assert seen[-1] is ctx and messages == ["working on 1"]
    assert await f.invoke({"x": 2}) == 2
    assert seen[-1] is not ctx and seen[-1].tool_name == "f" and not seen[-1].cancelled()


async def test_exceptions_propagate_unchanged() -> None:
    class Boom(RuntimeError):
        pass

    @tool
    def sync_fail() -> None:
        """Fail."""
        raise Boom("sync")

    @tool
    async def async_fail() -> None:
        """Fail."""
        raise Boom("async")

    with pytest.raises(Boom, match="sync"):
        await sync_fail.invoke({})
    with pytest.raises(Boom, match="async"):
        await async_fail.invoke({})


async def test_cancellation_marks_context_so_sync_tools_can_stop() -> None:
    stopped = threading.Event()

    @tool
    def worker(ctx: ToolContext) -> str:
        """Poll for cancellation."""
        while not ctx.cancel_event.wait(0.01):
            pass
        stopped.set()
        return "stopped"

    ctx = ToolContext(call_id="c9", tool_name="worker")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(worker.invoke({}, ctx=ctx), 0.05)
    assert ctx.cancelled()
    assert await asyncio.to_thread(stopped.wait, 2.0)


async def test_positional_only_parameters() -> None:
    def power(base: int, /, exp: int = 2) -> int:
        return int(base**exp)

    t = tool(power)
    assert await t.invoke(t.validate({}, [3])) == 9
    assert await t.invoke(t.validate({"base": 2, "exp": 3})) == 8

    def tagged(ctx: ToolContext, label: str, /) -> str:
        return f"{ctx.call_id}:{label}"

    t = tool(tagged)
    assert t.param_names == ("label",)
    assert await t.invoke(t.validate({}, ["x"]), ctx=ToolContext(call_id="c3")) == "c3:x"


async def test_schema_only_tools_need_a_handler() -> None:
    spec = {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    bare = Tool.from_openai(spec)
    with pytest.raises(ToolNotImplemented, match="lookup"):
        await bare.invoke({"q": "x"})
    with pytest.raises(ToolNotImplemented):
        bare(q="x")

    async def async_handler(name: str, args: dict[str, Any]) -> str:
        await asyncio.sleep(0.01)
        return f"{name}:{args['q']}"

    def sync_handler(name: str, args: dict[str, Any]) -> tuple[str, bool]:
        return name, threading.get_ident() != main

    main = threading.get_ident()
    assert await Tool.from_openai(spec, handler=async_handler).invoke({"q": "x"}) == "lookup:x"
    assert await Tool.from_openai(spec, handler=sync_handler).invoke({"q": "x"}) == ("lookup", True)


async def test_callable_objects_and_partials() -> None:
    import functools

    class Adder:
        """Add a constant."""

        async def __call__(self, x: int) -> int:
            return x + 1

    async def scale(x: int, factor: int) -> int:
        return x * factor

    adder = tool(Adder(), name="adder")
    assert adder.is_async and await adder.invoke({"x": 1}) == 2
    double = tool(functools.partial(scale, factor=2), name="double")
    assert double.is_async and await double.invoke(double.validate({"x": 4})) == 8
