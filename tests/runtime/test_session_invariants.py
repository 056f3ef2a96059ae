"""The runtime's invariants (DESIGN.md §3, reference/reliability.md), each shown on the simulator."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine, SimTokenizer
from asynclm.protocol import Call, Interrupt, Parser
from asynclm.runtime import Session, SessionConfig, run_virtual
from asynclm.tools import ToolContext, tool

from .conftest import scripted, sleepy


class Boom(BaseException):
    """A BaseException subclass a badly written tool might raise."""


@tool
async def explode(kind: str) -> str:
    """Fail in various ways."""
    await asyncio.sleep(0.05)
    if kind == "value":
        raise ValueError("bad value")
    if kind == "base":
        raise Boom("base exception")
    if kind == "exit":
        raise SystemExit(3)
    if kind == "cancel":
        raise asyncio.CancelledError()
    return "fine"


@tool(timeout=0.2)
async def slow(seconds: float) -> str:
    """Sleep past the timeout."""
    await asyncio.sleep(seconds)
    return "finished"


def test_failures_never_cancel_siblings_and_each_call_ends_once():
    r = scripted([
        '[CALL] s [HEAD] sleepy(seconds=0.5, tag="sibling") [END]',
        '[CALL] v [HEAD] explode(kind="value") [END]',
        '[CALL] b [HEAD] explode(kind="base") [END]',
        '[CALL] x [HEAD] explode(kind="exit") [END]',
        '[CALL] c [HEAD] explode(kind="cancel") [END]',
        '[CALL] t [HEAD] slow(seconds=5) [END]',
        '[CALL] f [HEAD] explode(kind="ok") [END]',
        "[TRAP][END]", "done",
    ], tools=[sleepy, explode, slow])
    by = {c.id: c for c in r.calls}
    assert len(by) == len(r.calls) == 7
    assert by["s"].status == "ok" and by["s"].value == "sibling"
    assert by["v"].status == "error" and "bad value" in by["v"].error
    assert by["b"].status == "error" and by["b"].error_type == "Boom"
    assert by["x"].status == "error" and by["x"].error_type == "SystemExit"
    assert by["c"].status == "error"
    assert by["t"].status == "timeout" and by["t"].ended_at - by["t"].started_at == pytest.approx(0.2)
    assert by["f"].status == "ok"
    p = Parser(transcript=True)
    ids = [e.id for e in p.feed(r.transcript) + p.close() if isinstance(e, Interrupt)]
    assert sorted(ids) == sorted(by)  # every id'd outcome injected exactly once


def test_timeout_is_a_real_cancellation():
    side_effects = []

    @tool(timeout=0.1)
    async def effect() -> str:
        """Sleep then record a side effect."""
        await asyncio.sleep(0.5)
        side_effects.append("too late")
        return "x"

    r = scripted(['[CALL] e [HEAD] effect() [END]', "[TRAP][END]", "ok",
                  lambda res: None], tools=[effect, sleepy])
    assert r.calls[0].status == "timeout"

    async def later():
        await asyncio.sleep(1.0)

    run_virtual(later())
    assert side_effects == []


def test_sync_tool_timeout_is_reported_and_tool_is_told():
    seen = threading.Event()

    @tool(timeout=0.2)
    def blocking(ctx_wait: float, ctx: ToolContext) -> str:
        """Block in a thread until told to stop."""
        ctx.cancel_event.wait(5)
        seen.set()
        return "stopped"

    blocking_tool = blocking
    engine = SimEngine(ScriptedPolicy(['[CALL] b [HEAD] blocking(ctx_wait=1) [END]', "ok"]),
                       SimCosts(tpot_s=0.001), virtual_time=False)
    session = Session(engine, [blocking_tool], system="t")
    t = time.monotonic()
    r = asyncio.run(session.run("go"))
    assert r.calls[0].status == "timeout"
    assert time.monotonic() - t < 3
    assert seen.wait(2)  # the thread was told through ToolContext and stopped


def test_hung_tool_without_timeout_ends_at_session_deadline():
    @tool
    async def hang() -> str:
        """Never returns."""
        await asyncio.Event().wait()
        return "never"

    cfg = SessionConfig(deadline_s=3.0)
    r = scripted(['[CALL] h [HEAD] hang() [END]', '[CALL] d [HEAD] sleepy(seconds=0.1) [END]',
                  "[TRAP][END]", "[TRAP][END]", "end"], tools=[hang, sleepy], config=cfg)
    assert r.stop_reason == "deadline"
    by = {c.id: c for c in r.calls}
    assert by["h"].status == "cancelled" and by["d"].status == "ok"
    assert r.latency_s == pytest.approx(3.0)


def test_dependents_of_a_failed_call_fail_fast():
    @tool
    async def fail() -> str:
        """Fails after a while."""
        await asyncio.sleep(1.0)
        raise RuntimeError("nope")

    r = scripted(['[CALL] a [HEAD] fail() [END]', '[CALL] b [HEAD] sleepy(seconds=$a) [END]',
                  "[TRAP][END]", "[TRAP][END]", "end"], tools=[fail, sleepy])
    a, b = r.calls
    assert b.status == "error" and b.ended_at == pytest.approx(a.ended_at)


def test_no_task_outlives_its_session():
    async def main():
        before = len(asyncio.all_tasks())
        engine = SimEngine(ScriptedPolicy([
            '[CALL] a [HEAD] sleepy(seconds=100) [END]', '[CALL] b [HEAD] sleepy(seconds=200) [END]',
        ]), SimCosts())
        session = Session(engine, [sleepy], system="t", config=SessionConfig(deadline_s=1))
        r = await session.run("go")
        await asyncio.sleep(0)
        return before, len(asyncio.all_tasks()), r

    before, after, r = run_virtual(main())
    assert after == before
    assert {c.status for c in r.calls} == {"cancelled"}


def test_cancelling_the_run_cancels_calls_with_outcomes():
    outcomes = []

    async def main():
        engine = SimEngine(ScriptedPolicy(['[CALL] a [HEAD] sleepy(seconds=100) [END]']), SimCosts())
        session = Session(engine, [sleepy], system="t")
        task = asyncio.create_task(session.run(
            "go", on_event=lambda e: outcomes.append(e.record.status) if e.type == "call.completed" else None))
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    assert outcomes == ["cancelled"]


def test_same_order_key_keeps_emission_order():
    log = []

    @tool(order_by="account")
    async def transfer(account: str, seconds: float) -> str:
        """Stateful: calls on one account must not overlap or reorder."""
        log.append(("start", account, seconds))
        await asyncio.sleep(seconds)
        log.append(("end", account, seconds))
        return "ok"

    scripted([
        '[CALL] a [HEAD] transfer(account="x", seconds=0.5) [END]',
        '[CALL] b [HEAD] transfer(account="y", seconds=0.1) [END]',
        '[CALL] c [HEAD] transfer(account="x", seconds=0.1) [END]',
        "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "end",
    ], tools=[transfer])
    xs = [e for e in log if e[1] == "x"]
    assert xs == [("start", "x", 0.5), ("end", "x", 0.5), ("start", "x", 0.1), ("end", "x", 0.1)]
    assert log.index(("start", "y", 0.1)) < log.index(("end", "x", 0.5))  # others overlap


def test_completion_at_every_token_offset_of_a_call_is_deferred_to_its_end():
    """A result that becomes ready while the model writes a call block is injected only after
    the block's [END]: for every token offset of the second call."""
    second = '[CALL] b [HEAD] sleepy(seconds=0.001, tag="two") [END]'
    n = len(SimTokenizer().tokenize(second, special=True))
    first = '[CALL] a [HEAD] sleepy(seconds={d}, tag="one") [END]'
    first_tokens = len(SimTokenizer().tokenize(first.format(d=1.0), special=True))
    for k in range(n + 1):
        # tpot 1 s: call a starts when its block ends (after first_tokens steps); make it finish
        # half-way through token k of the second block.
        d = k + 0.5
        r = scripted([first.format(d=d), second, "[TRAP][END]", "[TRAP][END]", "end"], tpot_s=1.0)
        p = Parser(transcript=True)
        evs = p.feed(r.transcript) + p.close()
        calls = [e for e in evs if isinstance(e, Call)]
        assert [c.id for c in calls] == ["a", "b"], (k, r.transcript)
        intr_a = next(e for e in evs if isinstance(e, Interrupt) and e.id == "a")
        if k < n:
            assert intr_a.start >= calls[1].end, (k, r.transcript)
        assert {c.status for c in r.calls} == {"ok"}
    assert first_tokens > 0
