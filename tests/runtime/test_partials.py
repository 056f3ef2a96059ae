"""Streamed partial results (issue 24, item 4): a generator tool's yields and
``ctx.partial(value)`` reach the model as interrupts marked partial, under the call's delivery
mode; the call still ends exactly once; the trace and the event stream show them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asynclm import CallPartial
from asynclm.protocol import CML
from asynclm.runtime import Session, SessionConfig, SessionResult, run_virtual
from asynclm.runtime import events as ev
from asynclm.server.wire import encode
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import ToolContext, tool


@tool
async def research(steps: int) -> AsyncIterator[Any]:
    """Research in steps, streaming what each step found."""
    for i in range(steps):
        await asyncio.sleep(0.1)
        yield f"found {i + 1}"
    yield tool.Final(f"report of {steps} steps")


@tool
async def plain_gen(steps: int) -> AsyncIterator[Any]:
    """Yields its steps; no Final: the last yield is the result."""
    for i in range(steps):
        await asyncio.sleep(0.1)
        yield {"step": i + 1}


@tool
def crunch(n: int, ctx: ToolContext) -> str:
    """Sync tool in a worker thread, streaming partials through its context."""
    for i in range(n):
        time.sleep(0.01)
        ctx.partial(f"chunk {i + 1}")
    return "crunched"


@tool
def counting(n: int) -> Iterator[Any]:
    """A sync generator tool."""
    for i in range(n):
        yield i + 1
    yield tool.Final("counted")


PROSE = " ".join(f"w{i}" for i in range(40)) + "\n"


def run(script: list[Any], tools: list[Any], *, strategy: str = "async", virtual: bool = True,
        config: SessionConfig | None = None) -> tuple[SessionResult, list[ev.StreamEvent]]:
    seen: list[ev.StreamEvent] = []
    engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))
    coro = Session(engine, tools, strategy=strategy, system="t", config=config).run(
        "go", on_event=seen.append)
    return (run_virtual(coro) if virtual else asyncio.run(coro)), seen


def once(r: SessionResult, seen: list[ev.StreamEvent]) -> None:
    done = Counter(e.call_id for e in seen if isinstance(e, ev.CallCompleted))
    assert set(done) == {c.id for c in r.calls} and set(done.values()) == {1}


def test_an_async_generator_streams_partials_then_its_final_result() -> None:
    r, seen = run(["[CALL] g [HEAD] research(steps=3) [END]\n", PROSE, "[TRAP][END]\n", "ok"],
                  [research])
    partials = [e for e in seen if isinstance(e, CallPartial)]
    assert [(p.call_id, p.seq, p.value) for p in partials] == [
        ("g", 1, "found 1"), ("g", 2, "found 2"), ("g", 3, "found 3")]
    assert [round(p.t - partials[0].t, 3) for p in partials] == [0.0, 0.1, 0.2]
    completed = next(i for i, e in enumerate(seen) if isinstance(e, ev.CallCompleted))
    assert all(seen.index(p) < completed for p in partials)  # before the outcome
    rec = r.call("g")
    assert rec.status == "ok" and rec.value == "report of 3 steps"
    once(r, seen)
    # delivered as interrupts marked partial, each at the next safe point (async), then final
    injected = [e for e in seen if isinstance(e, ev.InterruptInjected)]
    assert [e.partials for e in injected] == [("g",), ("g",), ("g",), ()]
    assert [e.call_ids for e in injected][-1] == ("g",)
    assert all(i.t - p.t < 0.05 for i, p in zip(injected, partials, strict=False))
    for n in (1, 2, 3):
        assert f'[INTR] g [HEAD] partial: "found {n}" [END]' in r.transcript
    assert r.transcript.index("partial: \"found 3\"") < r.transcript.index(
        '[INTR] g [HEAD] "report of 3 steps"')
    # the trace marks each partial
    marks = [i for i in r.trace.instants if i.name == "call.partial"]
    assert [(m.attrs["call_id"], m.attrs["seq"]) for m in marks] == [("g", 1), ("g", 2), ("g", 3)]


def test_a_generator_without_final_ends_with_its_last_value() -> None:
    r, seen = run(["[CALL] p [HEAD] plain_gen(steps=2) [END]\n", "[TRAP][END]\n", "ok"],
                  [plain_gen])
    assert r.call("p").value == {"step": 2}
    assert len([e for e in seen if isinstance(e, CallPartial)]) == 2
    once(r, seen)


def test_partials_obey_the_delivery_mode() -> None:
    # when_idle (async-lazy's default): nothing reaches the model while it writes; at its trap
    # the partials and the final result go in together, in order
    r, seen = run(["[CALL] g [HEAD] research(steps=3) [END]\n", PROSE, "[TRAP][END]\n", "ok"],
                  [research], strategy="async-lazy")
    trap = next(e for e in seen if isinstance(e, ev.TrapEvent))
    injected = [e for e in seen if isinstance(e, ev.InterruptInjected)]
    assert len(injected) == 1 and injected[0].t == trap.t
    assert injected[0].partials == ("g", "g", "g") and injected[0].call_ids == ("g",)
    text = injected[0].text
    assert text.index("found 1") < text.index("found 2") < text.index("found 3") < text.index(
        "report of 3 steps")
    # silent: the partials never end a trap; the final result does
    quiet = research.replace(delivery="silent")
    r2, seen2 = run(["[CALL] g [HEAD] research(steps=3) [END]\n", "[TRAP][END]\n", "ok"],
                    [quiet, research.replace(name="other")])
    assert [e for e in seen2 if isinstance(e, ev.TrapEvent)][0].waited_s == 0
    assert r2.call("g").injected_at is not None  # appended at the end of the turn
    once(r2, seen2)
    # a partial of a when_idle call ends a trap: the model is waiting
    idle = research.replace(delivery="when_idle")
    r3, seen3 = run(["[CALL] g [HEAD] research(steps=3) [END]\n", "[TRAP][END]\n", "ok"], [idle])
    first = next(e for e in seen3 if isinstance(e, ev.TrapEvent))
    assert first.t == next(e for e in seen3 if isinstance(e, CallPartial)).t
    once(r3, seen3)


def test_a_sync_tool_streams_partials_from_its_thread() -> None:
    r, seen = run(["[CALL] c [HEAD] crunch(n=4) [END]\n", "[TRAP][END]\n", "ok"], [crunch],
                  virtual=False)
    partials = [e for e in seen if isinstance(e, CallPartial)]
    assert [p.value for p in partials] == [f"chunk {i}" for i in range(1, 5)]
    completed = next(i for i, e in enumerate(seen) if isinstance(e, ev.CallCompleted))
    assert all(seen.index(p) < completed for p in partials)
    assert r.call("c").value == "crunched"
    once(r, seen)


def test_a_sync_generator_tool() -> None:
    r, seen = run(["[CALL] n [HEAD] counting(n=3) [END]\n", "[TRAP][END]\n", "ok"], [counting],
                  virtual=False)
    assert [e.value for e in seen if isinstance(e, CallPartial)] == [1, 2, 3]
    assert r.call("n").value == "counted"
    once(r, seen)


def test_a_partial_after_the_call_ended_is_dropped() -> None:
    @tool
    def overrun(ctx: ToolContext) -> str:
        """Keeps running after its timeout, then reports."""
        time.sleep(0.3)
        ctx.partial("too late")
        return "late"

    r, seen = run(["[CALL] o [HEAD] overrun() [END]\n", "[TRAP][END]\n", "ok"], [overrun],
                  virtual=False, config=SessionConfig(tool_timeout_s=0.1))
    assert r.call("o").status == "timeout"
    time.sleep(0.4)
    assert not [e for e in seen if isinstance(e, CallPartial)]


def test_the_wire_and_the_dialect() -> None:
    event = CallPartial("g", "research", 2, "found 2", '"found 2"', 1.5)
    assert encode(event, 1.0) == {"type": "call.partial", "t": 0.5, "call_id": "g",
                                  "fn": "research", "partial_seq": 2, "value": '"found 2"'}
    assert CML.partial("42") == "partial: 42"
