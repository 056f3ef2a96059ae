"""The executor (runtime/executor.py) on its own: outcomes, dependencies, deferral, cancel."""

from __future__ import annotations

import asyncio

from asynclm.runtime.executor import Executor
from asynclm.runtime.records import CallRecord
from asynclm.tools import Toolbox, tool


@tool
async def nap(seconds: float) -> float:
    """Sleep."""
    await asyncio.sleep(seconds)
    return seconds


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def run(body) -> tuple[list[str], dict[str, CallRecord]]:
    started: list[str] = []
    ended: dict[str, CallRecord] = {}

    async def go() -> None:
        async with asyncio.TaskGroup() as group:
            ex = Executor(Toolbox([nap, add]), group,
                          on_start=lambda i, fn: started.append(i),
                          on_end=lambda r: ended.__setitem__(r.id, r))
            await body(ex)
            ex.cancel_all("end")

    asyncio.run(go())
    return started, ended


def test_calls_end_once_with_their_outcome() -> None:
    async def body(ex: Executor) -> None:
        ex.submit("a", "add", {"a": 1, "b": 2})
        ex.submit("u", "nope", {})
        ex.submit("v", "add", {"a": "x"})
        ex.submit("m", "", {}, error="malformed call: x")
        await ex.wait_all()

    started, ended = run(body)
    assert started == ["a"]
    assert ended["a"].status == "ok" and ended["a"].value == 3 and ended["a"].rendered == "3"
    assert {ended[i].status for i in "uvm"} == {"error"}
    assert ended["m"].error_type == "MalformedCall"


def test_a_reference_waits_for_its_dependency() -> None:
    async def body(ex: Executor) -> None:
        ex.submit("k1", "add", {"a": 1, "b": 2})
        ex.submit("k2", "add", {"a": "$k1", "b": 1})
        rec = await ex.wait("k2")
        assert rec.status == "ok" and rec.value == 4

    _, ended = run(body)
    assert ended["k2"].depends_on == ("k1",) and ended["k2"].resolved_args == {"a": 3, "b": 1}


def test_deferred_calls_start_only_when_asked() -> None:
    async def body(ex: Executor) -> None:
        ex.submit("a", "add", {"a": 1, "b": 1}, start=False)
        await asyncio.sleep(0.01)
        assert ex.deferred() == 1 and ex.pending() == 1
        assert ex.start_deferred() == 1
        await ex.wait_all()
        assert ex.pending() == 0

    started, ended = run(body)
    assert started == ["a"] and ended["a"].ok


def test_cancel_ends_a_running_call_cancelled() -> None:
    async def body(ex: Executor) -> None:
        ex.submit("a", "nap", {"seconds": 10})
        await asyncio.sleep(0.01)
        assert ex.cancel("a", "stop it")
        rec = await ex.wait("a")
        assert rec.status == "cancelled" and rec.error == "stop it"
        assert not ex.cancel("a")

    run(body)


def test_a_repeat_ends_at_once_with_the_earlier_result() -> None:
    async def body(ex: Executor) -> None:
        ex.submit("a", "add", {"a": 1, "b": 2})
        first = await ex.wait("a")
        ex.submit("b", "add", {"a": 1, "b": 2}, repeat_of=first)

    started, ended = run(body)
    assert started == ["a"]
    assert ended["b"].repeat_of == "a" and ended["b"].value == 3
