"""Liveness: no run can hang (issue 20, defects 1 and 6).

Every deferred call is started or ends; a tool that ignores cancellation is abandoned after
``SessionConfig.cancel_grace_s`` and reported; sessions have a default deadline. Runs are
bounded with ``asyncio.wait_for`` on the virtual clock, so a regression fails instead of
hanging."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import Session, SessionConfig, run_virtual
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.bench.compiler import CompilerConfig, CompilerSession
from asynclm.runtime.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_DEADLINE_S
from asynclm.runtime.control import RunControl
from asynclm.tools import ToolContext, tool

from .conftest import add, sleepy

LIMIT_S = 10_000.0  # virtual seconds: a run still going by then counts as hung


def bounded(script: list[Any], tools: list[Any], *, strategy: str = "async",
            config: SessionConfig | None = None, after: Any = None) -> Any:
    """Run a scripted session on virtual time; TimeoutError if it has not returned by
    ``LIMIT_S``. ``after()`` runs on the loop once the run returned (e.g. to release a
    stubborn tool so that the loop can close)."""
    async def main() -> Any:
        engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))
        session = Session(engine, tools, strategy=get_strategy(strategy), system="test",
                          config=config)
        try:
            return await asyncio.wait_for(session.run("go"), LIMIT_S)
        finally:
            if after is not None:
                after()

    return run_virtual(main())


def stubborn_tool(*, until: float = 50.0, timeout: float | None = None, value: bool = False):
    """A tool that swallows every cancellation until the loop clock reads ``until`` (then
    returns), or with ``value`` returns a value as soon as it is first cancelled."""
    @tool(name="stubborn", timeout=timeout)
    async def stubborn() -> str:
        """Ignore cancellation."""
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            try:
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                if value:
                    return "sneaked"
        return "late"

    return stubborn


# -- defect 1: deferred calls ---------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["async", "sync", "sync-parallel", "sync-parallel-reprefill",
                                      "async-lazy"])
def test_a_fire_and_forget_call_after_the_last_trap_runs(strategy: str) -> None:
    """strict ids: a call without an id written after the last trap is deferred by
    sync-parallel; it must still run (it used to hang the run)."""
    r = bounded(["[CALL] add(a=1, b=2) [END]\n", "Done."], [add, sleepy], strategy=strategy,
                config=SessionConfig(ids="strict"))
    assert r.stop_reason == "eos"
    (call,) = r.calls
    assert call.status == "ok" and call.value == 3 and not call.injectable
    assert "Done." in r.text


def test_deferred_calls_reach_an_outcome_when_the_turn_is_cut_off() -> None:
    """sync-parallel, cut off by max_tokens before any trap: the fire-and-forget call runs,
    the injectable one ends (cancelled, never started); every id ends once."""
    r = bounded(["[CALL] add(a=1, b=2) [END]\n", "[CALL] k [HEAD] add(a=2, b=2) [END]\n",
                 "word " * 50], [add, sleepy], strategy="sync-parallel",
                config=SessionConfig(ids="strict", max_tokens=60))
    assert r.stop_reason == "max_tokens"
    by = {c.id: c for c in r.calls}
    assert len(by) == len(r.calls) == 2
    ff = next(c for c in r.calls if not c.injectable)
    assert ff.status == "ok" and ff.value == 3
    assert by["k"].status == "cancelled" and by["k"].started_at is None


@pytest.mark.parametrize("strategy", ["sync-parallel", "sync-parallel-reprefill"])
@pytest.mark.parametrize("on_eos", ["trap", "finish"])
def test_a_deferred_call_a_fire_and_forget_call_depends_on_is_started(
    strategy: str, on_eos: str,
) -> None:
    """Found by ``asynclm bench faults``: the fire-and-forget call references a deferred
    call that expects a result; starting only the former left it waiting forever."""
    r = bounded(["[CALL] k3 [HEAD] add(a=1, b=2) [END]\n", "[CALL] add(a=$k3, b=1) [END]\n"],
                [add, sleepy], strategy=strategy,
                config=SessionConfig(ids="strict", on_eos_pending=on_eos, deadline_s=None))
    assert r.stop_reason == "eos"
    ff = next(c for c in r.calls if not c.injectable)
    assert ff.status == "ok" and ff.value == 4 and ff.depends_on == ("k3",)
    assert r.call("k3").status == "ok" and len(r.calls) == 2


# -- defect 6: liveness -----------------------------------------------------------------------

def test_a_tool_ignoring_cancellation_is_abandoned_at_the_deadline(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="asynclm.runtime")
    cfg = SessionConfig(deadline_s=3.0, cancel_grace_s=2.0)
    r = bounded(["[CALL] s [HEAD] stubborn() [END]", "[TRAP][END]", "end"],
                [stubborn_tool()], config=cfg)
    assert r.stop_reason == "deadline"
    assert r.latency_s == pytest.approx(3.0 + 2.0)  # deadline plus the grace period
    (call,) = r.calls
    assert call.status == "cancelled"
    assert r.abandoned == ("s",) and r.counters["abandoned"] == 1
    assert any("abandoned" in m and "s" in m for m in caplog.messages)


def test_a_tool_ignoring_its_timeout_is_abandoned_and_the_run_goes_on() -> None:
    cfg = SessionConfig(cancel_grace_s=2.0)
    r = bounded(["[CALL] s [HEAD] stubborn() [END]", "[TRAP][END]", "end"],
                [stubborn_tool(timeout=1.0)], config=cfg)
    (call,) = r.calls
    assert call.status == "timeout" and call.error_type == "Timeout"
    assert call.ended_at - call.started_at == pytest.approx(1.0 + 2.0)
    assert r.stop_reason == "eos" and r.latency_s < 10
    assert r.abandoned == ("s",)
    assert "[INTR] s [HEAD]" in r.transcript  # its outcome was delivered


def test_a_tool_swallowing_its_timeout_and_returning_is_still_a_timeout() -> None:
    r = bounded(["[CALL] s [HEAD] stubborn() [END]", "[TRAP][END]", "end"],
                [stubborn_tool(timeout=1.0, value=True)])
    (call,) = r.calls
    assert call.status == "timeout" and call.value is None
    assert call.ended_at - call.started_at == pytest.approx(1.0)
    assert r.abandoned == ()  # it ended within the grace period


def test_a_tool_ignoring_a_cancel_from_the_application_is_abandoned() -> None:
    async def main():
        ctl = RunControl()
        engine = SimEngine(ScriptedPolicy(
            ["[CALL] s [HEAD] stubborn() [END]", "[TRAP][END]", "end"]), SimCosts())
        session = Session(engine, [stubborn_tool()], system="t",
                          config=SessionConfig(cancel_grace_s=1.5))
        task = asyncio.create_task(session.run("go", control=ctl))
        await asyncio.sleep(1.0)
        assert ctl.cancel_call("s")
        return await asyncio.wait_for(task, LIMIT_S)

    r = run_virtual(main())
    (call,) = r.calls
    assert call.status == "cancelled"
    assert call.ended_at == pytest.approx(1.0 + 1.5, abs=0.1)
    assert r.abandoned == ("s",) and r.latency_s < 10


def test_cancelling_the_run_is_bounded_by_the_grace_period() -> None:
    async def main():
        engine = SimEngine(ScriptedPolicy(["[CALL] s [HEAD] stubborn() [END]"]), SimCosts())
        session = Session(engine, [stubborn_tool()], system="t",
                          config=SessionConfig(cancel_grace_s=1.0))
        task = asyncio.create_task(session.run("go"))
        await asyncio.sleep(1.0)
        task.cancel()
        t = asyncio.get_running_loop().time()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, LIMIT_S)
        return asyncio.get_running_loop().time() - t

    assert run_virtual(main()) == pytest.approx(1.0)


def test_a_blocked_sync_tool_is_abandoned_at_the_deadline() -> None:
    """A sync tool's thread cannot be stopped: the run returns at its deadline, and the call
    is reported abandoned (its late result is discarded)."""
    gate = threading.Event()

    @tool
    def blocked() -> str:
        """Block in a worker thread."""
        gate.wait(20)
        return "late"

    async def main():
        engine = SimEngine(ScriptedPolicy(["[CALL] b [HEAD] blocked() [END]", "[TRAP][END]"]),
                           SimCosts(tpot_s=0.001), virtual_time=False)
        session = Session(engine, [blocked], system="t", config=SessionConfig(deadline_s=0.5))
        try:
            return await asyncio.wait_for(session.run("go"), 10)
        finally:
            gate.set()  # let the worker thread end, so that the loop can close

    t = time.monotonic()
    r = asyncio.run(main())
    assert time.monotonic() - t < 5
    assert r.stop_reason == "deadline" and r.call("b").status == "cancelled"
    assert r.abandoned == ("b",)


def test_sessions_have_a_default_deadline() -> None:
    assert SessionConfig().deadline_s == DEFAULT_DEADLINE_S == 600.0
    assert SessionConfig().cancel_grace_s == DEFAULT_CANCEL_GRACE_S
    assert SessionConfig(deadline_s=None).deadline_s is None  # explicitly: no deadline
    assert CompilerConfig().deadline_s == DEFAULT_DEADLINE_S

    @tool
    async def hang() -> str:
        """Never returns (but honours cancellation)."""
        await asyncio.Event().wait()
        return "never"

    r = bounded(["[CALL] h [HEAD] hang() [END]", "[TRAP][END]", "end"], [hang])
    assert r.stop_reason == "deadline" and r.latency_s == pytest.approx(DEFAULT_DEADLINE_S)
    assert r.call("h").status == "cancelled" and r.abandoned == ()


def test_the_compiler_abandons_a_tool_ignoring_cancellation() -> None:
    async def main():
        engine = SimEngine(ScriptedPolicy(["1. stubborn()\n", "2. join()\n", "Action: Finish(x)"]),
                           SimCosts(tpot_s=0.005))
        session = CompilerSession(engine, [stubborn_tool()],
                                  config=CompilerConfig(deadline_s=3.0, cancel_grace_s=1.0))
        return await asyncio.wait_for(session.run("go"), LIMIT_S)

    r = run_virtual(main())
    assert r.stop_reason == "deadline" and r.latency_s == pytest.approx(4.0)
    assert r.calls[0].status == "cancelled" and r.abandoned == ("1",)


def test_config_rejects_a_bad_deadline_or_grace() -> None:
    with pytest.raises(ValueError):
        SessionConfig(deadline_s=0)
    with pytest.raises(ValueError):
        SessionConfig(cancel_grace_s=-1)


def test_virtual_time_waits_for_a_sync_tool_not_for_the_deadline() -> None:
    """Virtual time jumps to the next timer when nothing is ready: with the default deadline
    an idle run waiting on a sync tool's thread must not jump to it."""
    @tool
    def slow_sync() -> str:
        """Work in a worker thread for a while (real time)."""
        time.sleep(0.05)
        return "done"

    r = bounded(["[CALL] s [HEAD] slow_sync() [END]", "[TRAP][END]", "end"], [slow_sync])
    assert r.stop_reason == "eos" and r.call("s").value == "done" and r.latency_s < 1


def test_virtual_time_is_not_frozen_by_a_blocked_sync_tool() -> None:
    """…but a thread blocked until its timeout must not freeze the clock either."""
    @tool(timeout=2.0)
    def waits(ctx: ToolContext) -> str:
        """Block until told to stop."""
        ctx.cancel_event.wait(30)
        return "told"

    t = time.monotonic()
    r = bounded(["[CALL] w [HEAD] waits() [END]", "[TRAP][END]", "end"], [waits])
    assert time.monotonic() - t < 10
    assert r.call("w").status == "timeout" and r.stop_reason == "eos"


def test_a_blocked_sync_tool_keeps_neither_the_loop_nor_the_process_waiting() -> None:
    """Its thread is a daemon outside the loop's default executor: ``asyncio.run`` returns at
    once (it joins the default executor's threads) while the thread is still blocked."""
    gate = threading.Event()

    @tool
    def blocked() -> str:
        """Block in a worker thread until the test ends."""
        gate.wait(30)
        return "late"

    async def main():
        engine = SimEngine(ScriptedPolicy(["[CALL] b [HEAD] blocked() [END]", "[TRAP][END]"]),
                           SimCosts(tpot_s=0.001), virtual_time=False)
        session = Session(engine, [blocked], system="t", config=SessionConfig(deadline_s=0.3))
        return await session.run("go")

    try:
        t = time.monotonic()
        r = asyncio.run(main())
        assert time.monotonic() - t < 5 and r.abandoned == ("b",)
        alive = [th for th in threading.enumerate() if th.name == "asynclm-sync-tool"]
        assert alive and all(th.daemon for th in alive)
    finally:
        gate.set()
