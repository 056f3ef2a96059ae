"""Delivery scheduling (issue 24, item 1): when a call's result goes into the model's context,
per tool (``@tool(delivery=...)``), per call (``SessionConfig.delivery_for``,
``RunControl.set_delivery``), defaulting from the strategy. On the simulator, virtual time."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from asynclm.runtime import RunControl, Session, SessionConfig, SessionResult, run_virtual
from asynclm.runtime import events as ev
from asynclm.runtime.strategies import STRATEGIES
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import Tool, tool


@tool
async def slow(seconds: float, tag: str = "") -> str:
    """Sleep, then return the tag."""
    await asyncio.sleep(seconds)
    return tag or "done"


PROSE = " ".join(f"w{i}" for i in range(40)) + "\n"  # ~0.8 s of decoding at 10 ms a token


def call(cid: str, seconds: float, fn: str = "slow") -> str:
    return f"[CALL] {cid} [HEAD] {fn}(seconds={seconds}) [END]\n"


def run(script: list[Any], tools: list[Tool], *, strategy: str = "async",
        config: SessionConfig | None = None, control: RunControl | None = None,
        also: Any = None) -> tuple[SessionResult, list[ev.StreamEvent]]:
    seen: list[ev.StreamEvent] = []

    def on_event(e: ev.StreamEvent) -> None:
        seen.append(e)
        if also is not None:
            also(e)

    engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))
    session = Session(engine, tools, strategy=strategy, system="test", config=config)
    return run_virtual(session.run("go", on_event=on_event, control=control)), seen


def once_each(r: SessionResult, seen: list[ev.StreamEvent]) -> None:
    """Exactly one outcome per call id, and each injected at most once."""
    done = Counter(e.call_id for e in seen if isinstance(e, ev.CallCompleted))
    assert all(n == 1 for n in done.values()) and set(done) == {c.id for c in r.calls}
    injected = Counter(i for e in seen if isinstance(e, ev.InterruptInjected) for i in e.call_ids)
    assert all(n == 1 for n in injected.values())


# mode x strategy: "early" = at the safe point after the result landed (or, sync, right after
# the blocking wait), "trap" = when the model waits at its trap.
EXPECTED = {
    "sync": {"interrupt": "early", "when_idle": "early", "silent": "trap"},
    "sync-parallel": {"interrupt": "trap", "when_idle": "trap", "silent": "trap"},
    "async": {"interrupt": "early", "when_idle": "trap", "silent": "trap"},
    "async-lazy": {"interrupt": "early", "when_idle": "trap", "silent": "trap"},
}


@pytest.mark.parametrize("strategy", list(EXPECTED))
@pytest.mark.parametrize("mode", ["interrupt", "when_idle", "silent"])
def test_each_mode_under_each_strategy(strategy: str, mode: str) -> None:
    slow_mode = slow.replace(delivery=mode)
    r, seen = run([call("c1", 0.3), PROSE, "[TRAP][END]\n", "The end."], [slow_mode],
                  strategy=strategy)
    rec = r.call("c1")
    assert rec.status == "ok" and rec.injected_at is not None  # never lost
    trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
    if EXPECTED[strategy][mode] == "early":
        assert rec.injected_at < trap.t - 0.2  # while the model wrote its prose
        assert rec.injected_at - rec.ended_at < 0.05
    else:
        assert rec.injected_at == pytest.approx(trap.t)
    assert r.stop_reason == "eos" and r.text.endswith("The end.")
    once_each(r, seen)


def test_defaults_come_from_the_strategy() -> None:
    assert STRATEGIES["async"].default_delivery == "interrupt"
    assert STRATEGIES["sync"].default_delivery == "interrupt"
    assert STRATEGIES["async-lazy"].default_delivery == "when_idle"
    assert STRATEGIES["sync-parallel"].default_delivery == "when_idle"
    # no option anywhere: the strategy decides (async early, async-lazy at the trap)
    for strategy, early in (("async", True), ("async-lazy", False)):
        r, seen = run([call("c1", 0.3), PROSE, "[TRAP][END]\n", "ok"], [slow], strategy=strategy)
        trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
        assert (r.call("c1").injected_at < trap.t - 0.2) is early


def test_a_silent_result_does_not_end_a_trap() -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    r, seen = run([call("s", 0.2, "quiet"), call("w", 0.5), "[TRAP][END]\n", "ok"], [slow, quiet])
    trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
    waiting = next(e for e in seen if isinstance(e, ev.Waiting))
    assert waiting.pending == ("w",)  # the trap waits for w only
    assert trap.t == pytest.approx(r.call("w").ended_at)  # not at s's end (0.2 s earlier)
    batch = next(e for e in seen if isinstance(e, ev.InterruptInjected))
    assert batch.call_ids == ("s", "w")  # s rode along with what ended the wait
    once_each(r, seen)


def test_a_trap_with_only_silent_calls_pending_does_not_wait() -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    r, seen = run([call("s", 0.5, "quiet"), "[TRAP][END]\n", PROSE, "[TRAP][END]\n", "ok"],
                  [quiet])
    traps = [e for e in seen if isinstance(e, ev.TrapEvent)]
    assert traps[0].waited_s == 0  # nothing that may wake the model is pending
    assert r.call("s").injected_at == pytest.approx(traps[1].t)  # at the next boundary
    once_each(r, seen)


@pytest.mark.parametrize("on_eos", ["trap", "finish"])
def test_silent_result_pending_at_the_end_of_the_turn(on_eos: str) -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    r, seen = run([call("s", 1.0, "quiet"), "All set."], [quiet],
                  config=SessionConfig(on_eos_pending=on_eos))  # type: ignore[arg-type]
    rec = r.call("s")
    assert r.stop_reason == "eos" and r.text.endswith("All set.")
    assert not [e for e in seen if isinstance(e, ev.TrapEvent)]  # the model never resumed
    if on_eos == "trap":  # the turn waits for it, appends it and ends
        assert rec.status == "ok" and rec.injected_at is not None
        assert rec.injected_at == pytest.approx(rec.ended_at)
        assert r.transcript.rstrip().endswith("[INTR] s [HEAD] \"done\" [END]")
        assert [e.type for e in seen][-2:] == ["interrupt.injected", "done"]
    else:  # the turn ends: recorded (cancelled), not delivered
        assert rec.status == "cancelled" and rec.injected_at is None
    once_each(r, seen)


def test_when_idle_result_pending_at_the_end_is_delivered() -> None:
    idle = slow.replace(name="idle", delivery="when_idle")
    r, seen = run([call("w", 0.5, "idle"), "Working on it."], [idle])
    assert [e.reason for e in seen if isinstance(e, ev.TrapEvent)] == ["eos"]
    assert r.call("w").injected_at == pytest.approx(r.call("w").ended_at)
    once_each(r, seen)


def test_the_tool_option() -> None:
    quiet = slow.replace(delivery="silent")
    assert quiet.delivery == "silent" and slow.delivery is None
    assert quiet.replace(name="q2").delivery == "silent"  # kept by replace
    assert "delivery=silent" in repr(quiet) and "delivery" not in repr(slow)
    assert Tool.from_function(slow, delivery="when_idle").delivery == "when_idle"

    @tool(delivery="when_idle")
    async def later() -> str:
        """Later."""
        return "x"

    assert later.delivery == "when_idle"
    with pytest.raises(ValueError, match="delivery"):
        slow.replace(delivery="loud")


def test_delivery_for_hook_overrides_the_tool() -> None:
    seen_calls: list[str] = []

    def hook(c: ev.CallEmitted) -> str | None:
        seen_calls.append(f"{c.call_id}:{c.fn}:{c.args}")
        return "when_idle" if c.call_id == "b" else None

    quiet = slow.replace(delivery="interrupt")
    r, seen = run([call("a", 0.1), call("b", 0.1), PROSE, "[TRAP][END]\n", "ok"], [quiet],
                  config=SessionConfig(delivery_for=hook))  # type: ignore[arg-type]
    trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
    assert seen_calls == ["a:slow:{'seconds': 0.1}", "b:slow:{'seconds': 0.1}"]
    assert r.call("a").injected_at < trap.t - 0.2  # None: the tool's option
    assert r.call("b").injected_at == pytest.approx(trap.t)  # the hook's when_idle
    once_each(r, seen)


def test_set_delivery_per_call_from_the_application() -> None:
    control = RunControl()
    answers: dict[str, Any] = {}

    def steer(e: ev.StreamEvent) -> None:
        if isinstance(e, ev.CallEmitted) and e.call_id == "a":
            answers["a"] = control.set_delivery("a", "when_idle")
        if isinstance(e, ev.CallCompleted) and e.call_id == "b":  # queued: still in time
            answers["b"] = control.set_delivery("b", "interrupt")
        if isinstance(e, ev.InterruptInjected) and "b" in e.call_ids:
            answers["late"] = control.set_delivery("b", "silent")  # delivered: too late
            answers["unknown"] = control.set_delivery("zz", "silent")

    r, seen = run([call("a", 0.1), call("b", 0.1), PROSE, "[TRAP][END]\n", "ok"], [slow],
                  strategy="async-lazy", control=control, also=steer)
    trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
    assert answers == {"a": True, "b": True, "late": False, "unknown": False}
    assert r.call("b").injected_at < trap.t - 0.2  # async-lazy, yet delivered at once
    assert r.call("a").injected_at == pytest.approx(trap.t)
    with pytest.raises(ValueError):
        control.set_delivery("a", "shout")  # type: ignore[arg-type]
    assert control.set_delivery("a", "silent") is False  # the run has ended
    once_each(r, seen)
