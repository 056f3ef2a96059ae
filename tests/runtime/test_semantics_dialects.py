"""The delivery semantics in every dialect (:data:`~asynclm.protocol.DIALECTS`): the essentials of
test_delivery, test_partials, test_builtins, test_control and test_session_invariants, each run
with one dialect-neutral script (:class:`~asynclm.testing.sim.CallScript`) on the simulator, in
virtual time. The script names its calls by key; the runtime's ids are the dialect's (``a`` in
CML and Mistral, ``c1``, ``c2``, ... in writing order in Hermes, Llama 3 and pythonic):
``policy.wire_id(key)``. What the simulated model received is checked too: each result reached
the call it answers, partial results and messages never pass for a call's result."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from asynclm.agents import AgentDirectory, send_message_tool
from asynclm.agents_demo import run_agents
from asynclm.protocol import DIALECTS, Dialect, Ref, get_dialect
from asynclm.runtime import (
    RunControl,
    Session,
    SessionClosedError,
    SessionConfig,
    SessionResult,
    run_virtual,
)
from asynclm.runtime import events as ev
from asynclm.testing.sim import (
    CallScript,
    ScriptCall,
    ScriptStep,
    SimCosts,
    SimEngine,
    TrapOnce,
    WaitFor,
)
from asynclm.tools import Tool, ToolContext, tool

pytestmark = pytest.mark.parametrize("dialect", DIALECTS)

PROSE = " ".join(f"w{i}" for i in range(40)) + "\n"  # 0.8 s of decoding at 10 ms a token


@tool
async def slow(seconds: float, tag: str = "") -> str:
    """Sleep, then return the tag."""
    await asyncio.sleep(seconds)
    return tag or "done"


@tool
async def research(steps: int) -> AsyncIterator[Any]:
    """Research in steps, streaming what each step found."""
    for i in range(steps):
        await asyncio.sleep(0.1)
        yield f"found {i + 1}"
    yield tool.Final(f"report of {steps} steps")


@tool
async def explode(kind: str) -> str:
    """Fail when asked to."""
    await asyncio.sleep(0.05)
    if kind == "value":
        raise ValueError("bad value")
    return "fine"


@tool(timeout=0.2)
async def overrun(seconds: float) -> str:
    """Sleep past its timeout."""
    await asyncio.sleep(seconds)
    return "finished"


@tool(cancellable=True)
async def long_job(seconds: float = 100.0) -> str:
    """Work for a long time; may be cancelled."""
    await asyncio.sleep(seconds)
    return "finished"


@tool(cancellable=True)
async def crawl(ctx: ToolContext) -> str:
    """Report progress, then work."""
    ctx.progress("page 1/5")
    await asyncio.sleep(0.2)
    ctx.progress("page 2/5")
    await asyncio.sleep(100)
    return "crawled"


class Run:
    """One session on the simulator in ``dialect``: its result, its stream events, its
    simulated model."""

    def __init__(
        self, dialect: str, steps: list[ScriptStep], tools: list[Tool], *,
        strategy: str = "async", config: SessionConfig | None = None,
        control: RunControl | None = None, also: Callable[[ev.StreamEvent], None] | None = None,
        main: Callable[[Session, Any], Any] | None = None,
    ) -> None:
        self.dialect: Dialect = get_dialect(dialect)
        self.policy = CallScript(steps, dialect=self.dialect)
        self.seen: list[ev.StreamEvent] = []

        def on_event(e: ev.StreamEvent) -> None:
            self.seen.append(e)
            if also is not None:
                also(e)

        engine = SimEngine(self.policy, SimCosts(tpot_s=0.01), dialect=self.dialect)
        session = Session(engine, tools, strategy=strategy, system="test", config=config,
                          dialect=self.dialect)
        coro = session.run("go", on_event=on_event, control=control)
        self.result: SessionResult = run_virtual(coro if main is None else main(session, coro))

    def id(self, key: str) -> str:
        """The runtime's id of the script's call ``key``."""
        return self.policy.wire_id(key)

    def call(self, key: str) -> Any:
        return self.result.call(self.id(key))

    def events(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]

    def once_each(self) -> None:
        """Every call id ends exactly once, each outcome is injected at most once, and every
        delivered outcome reached the call it answers in the model's eyes."""
        r = self.result
        ids = [c.id for c in r.calls]
        assert len(ids) == len(set(ids))
        done = Counter(e.call_id for e in self.events(ev.CallCompleted))
        assert set(done) == set(ids) and set(done.values()) <= {1}, done
        injected = Counter(i for e in self.events(ev.InterruptInjected) for i in e.call_ids)
        assert set(injected.values()) <= {1}, injected
        by_wire = {self.id(k): k for k in self.policy.ledger.keys}
        assert {by_wire[i] for i in injected if i in by_wire} <= set(self.policy.results)
        for key, payload in self.policy.results.items():
            rec = r.call(self.id(key))
            assert rec.injected_at is not None
            if rec.status == "ok" and isinstance(rec.value, str) and rec.repeat_of is None:
                assert rec.value in payload, (key, payload)


def call(key: str, seconds: float, fn: str = "slow", **kw: Any) -> ScriptCall:
    return ScriptCall(key, fn, {"seconds": seconds, **kw})


# -- delivery modes --------------------------------------------------------------------------

EXPECTED = {
    "sync": {"interrupt": "early", "when_idle": "early", "silent": "trap"},
    "sync-parallel": {"interrupt": "trap", "when_idle": "trap", "silent": "trap"},
    "async": {"interrupt": "early", "when_idle": "trap", "silent": "trap"},
    "async-lazy": {"interrupt": "early", "when_idle": "trap", "silent": "trap"},
}


@pytest.mark.parametrize("strategy", list(EXPECTED))
@pytest.mark.parametrize("mode", ["interrupt", "when_idle", "silent"])
def test_each_mode_under_each_strategy(dialect: str, strategy: str, mode: str) -> None:
    run = Run(dialect, [call("a", 0.3), PROSE, TrapOnce(), "The end."],
              [slow.replace(delivery=mode)], strategy=strategy)
    rec = run.call("a")
    assert rec.status == "ok" and rec.injected_at is not None  # never lost
    trap = run.events(ev.TrapEvent)[0]
    if EXPECTED[strategy][mode] == "early":
        assert rec.injected_at < trap.t - 0.2  # while the model wrote its prose
        assert rec.injected_at - rec.ended_at < 0.05
    else:
        assert rec.injected_at == pytest.approx(trap.t)
    assert run.result.stop_reason == "eos" and run.result.text.endswith("The end.")
    assert run.policy.results.keys() == {"a"}
    run.once_each()


def test_a_silent_result_does_not_end_a_trap(dialect: str) -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    run = Run(dialect, [call("s", 0.2, "quiet"), call("w", 0.5), TrapOnce(), "ok"],
              [slow, quiet])
    trap = run.events(ev.TrapEvent)[0]
    assert run.events(ev.Waiting)[0].pending == (run.id("w"),)  # the trap waits for w only
    assert trap.t == pytest.approx(run.call("w").ended_at)  # not at s's end
    batch = run.events(ev.InterruptInjected)[0]
    assert batch.call_ids == (run.id("s"), run.id("w"))  # s rode along
    assert run.policy.results.keys() == {"s", "w"}
    run.once_each()


def test_a_trap_with_only_silent_calls_pending_does_not_wait(dialect: str) -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    run = Run(dialect, [call("s", 0.5, "quiet"), TrapOnce(), PROSE, TrapOnce(), "ok"], [quiet])
    traps = run.events(ev.TrapEvent)
    assert traps[0].waited_s == 0  # nothing that may wake the model is pending
    assert run.call("s").injected_at == pytest.approx(traps[1].t)  # at the next boundary
    run.once_each()


@pytest.mark.parametrize("on_eos", ["trap", "finish"])
def test_silent_result_pending_at_the_end_of_the_turn(dialect: str, on_eos: str) -> None:
    quiet = slow.replace(name="quiet", delivery="silent")
    run = Run(dialect, [call("s", 1.0, "quiet"), "All set."], [quiet],
              config=SessionConfig(on_eos_pending=on_eos))  # type: ignore[arg-type]
    rec = run.call("s")
    assert run.result.stop_reason == "eos" and run.result.text.endswith("All set.")
    assert not run.events(ev.TrapEvent)  # the model never resumed
    if on_eos == "trap":  # the turn waits for it, appends it and ends
        assert rec.status == "ok" and rec.injected_at == pytest.approx(rec.ended_at)
        assert [e.type for e in run.seen][-2:] == ["interrupt.injected", "done"]
        assert "done" in run.policy.results["s"]
    else:  # the turn ends: recorded (cancelled), not delivered
        assert rec.status == "cancelled" and rec.injected_at is None
        assert not run.policy.results
    run.once_each()


def test_when_idle_result_pending_at_the_end_is_delivered(dialect: str) -> None:
    idle = slow.replace(name="idle", delivery="when_idle")
    run = Run(dialect, [call("w", 0.5, "idle"), "Working on it."], [idle])
    assert [e.reason for e in run.events(ev.TrapEvent)] == ["eos"]
    assert run.call("w").injected_at == pytest.approx(run.call("w").ended_at)
    assert run.policy.results.keys() == {"w"}
    run.once_each()


def test_delivery_for_hook_and_set_delivery(dialect: str) -> None:
    control = RunControl()
    answers: dict[str, bool] = {}

    def hook(c: ev.CallEmitted) -> str | None:
        return "when_idle" if c.args.get("tag") == "b" else None

    def steer(e: ev.StreamEvent) -> None:
        if isinstance(e, ev.CallEmitted) and e.args.get("tag") == "c":
            answers["c"] = control.set_delivery(e.call_id, "when_idle")

    run = Run(dialect, [call("a", 0.1, tag="a"), call("b", 0.1, tag="b"),
                        call("c", 0.1, tag="c"), PROSE, TrapOnce(), "ok"],
              [slow.replace(delivery="interrupt")], control=control, also=steer,
              config=SessionConfig(delivery_for=hook))  # type: ignore[arg-type]
    trap = run.events(ev.TrapEvent)[0]
    assert answers == {"c": True}
    assert run.call("a").injected_at < trap.t - 0.2  # the hook said None: the tool's option
    assert run.call("b").injected_at == pytest.approx(trap.t)  # the hook's when_idle
    assert run.call("c").injected_at == pytest.approx(trap.t)  # the application's when_idle
    assert run.policy.results.keys() == {"a", "b", "c"}
    run.once_each()


# -- partial results -------------------------------------------------------------------------


def test_partials_stream_then_the_final_result(dialect: str) -> None:
    run = Run(dialect, [ScriptCall("g", "research", {"steps": 3}), PROSE, TrapOnce(), "ok"],
              [research])
    g = run.id("g")
    partials = run.events(ev.CallPartial)
    assert [(p.call_id, p.seq, p.value) for p in partials] == [
        (g, 1, "found 1"), (g, 2, "found 2"), (g, 3, "found 3")]
    injected = run.events(ev.InterruptInjected)
    assert [e.partials for e in injected] == [(g,), (g,), (g,), ()]
    assert injected[-1].call_ids == (g,)
    assert run.call("g").value == "report of 3 steps"
    # the model read three partial results, then the final one, and took only that as the answer
    seen = run.policy.partials
    assert len(seen) == 3 and all(k in ("g", None) for k, _ in seen)
    assert [f"found {n}" in p for n, (_, p) in zip((1, 2, 3), seen, strict=True)] == [True] * 3
    assert "report of 3 steps" in run.policy.results["g"]
    kinds = [o.kind for o in run.policy.observed]
    assert kinds == ["partial", "partial", "partial", "result"]
    run.once_each()


def test_partials_obey_the_delivery_mode(dialect: str) -> None:
    # when_idle (async-lazy's default): partials and the final result go in together at the trap
    run = Run(dialect, [ScriptCall("g", "research", {"steps": 3}), PROSE, TrapOnce(), "ok"],
              [research], strategy="async-lazy")
    g = run.id("g")
    trap = run.events(ev.TrapEvent)[0]
    (batch,) = run.events(ev.InterruptInjected)
    assert batch.t == trap.t and batch.partials == (g, g, g) and batch.call_ids == (g,)
    assert len(run.policy.partials) == 3 and "report of 3" in run.policy.results["g"]
    run.once_each()
    # silent: the partials never end a trap; the final result is appended at the end
    quiet = research.replace(delivery="silent")
    run2 = Run(dialect, [ScriptCall("g", "research", {"steps": 3}), TrapOnce(), "ok"],
               [quiet, research.replace(name="other")])
    assert run2.events(ev.TrapEvent)[0].waited_s == 0
    assert run2.call("g").injected_at is not None
    run2.once_each()


# -- the built-in cancel and pending tools ----------------------------------------------------


@pytest.mark.parametrize("how", ["id", "ref"])
def test_the_model_cancels_a_running_call(dialect: str, how: str) -> None:
    def cancel(p: CallScript) -> ScriptCall:
        target: Any = p.wire_id("a") if how == "id" else Ref("a")
        return ScriptCall("k", "cancel", {"call_id": target})

    run = Run(dialect, [ScriptCall("a", "long_job"), cancel, WaitFor("a", "k"), "done"],
              [long_job])
    a, k = run.call("a"), run.call("k")
    assert (a.status, k.status) == ("cancelled", "ok")
    assert a.error == f"cancelled by the model ({run.id('k')})"
    assert k.value == f"{run.id('a')} (long_job) cancelled" and k.depends_on == ()
    assert run.result.latency_s < 5 and run.result.text.endswith("done")
    assert "cancelled" in run.policy.results["a"] and "cancelled" in run.policy.results["k"]
    run.once_each()


def test_pending_lists_the_running_calls(dialect: str) -> None:
    steps: list[ScriptStep] = [
        ScriptCall("a", "crawl"), call("b", 0.5, "sleepy"), call("c", 30, "sleepy"),
        WaitFor("b"),
        ScriptCall("p", "pending"),
        lambda p: ScriptCall("k", "cancel", {"call_id": p.wire_id("a")}),
        ScriptCall("p2", "pending"), WaitFor("p", "k", "p2"), "done",
    ]
    sleepy = slow.replace(name="sleepy")
    run = Run(dialect, steps, [sleepy, crawl], config=SessionConfig(on_eos_pending="finish"))
    listed = run.call("p").value
    assert [c["id"] for c in listed] == [run.id("a"), run.id("c")]
    assert listed[0]["progress"] == "page 2/5"
    assert [c["id"] for c in run.call("p2").value] == [run.id("c")]
    assert run.call("a").status == "cancelled"
    assert run.id("c") in run.policy.results["p"] and "page 2/5" in run.policy.results["p"]
    run.once_each()


def test_the_pending_note_at_a_trap(dialect: str) -> None:
    sleepy = slow.replace(name="sleepy")
    run = Run(dialect, [call("a", 1, "sleepy"), call("b", 30, "sleepy"), TrapOnce(), "done"],
              [sleepy], config=SessionConfig(pending="note", on_eos_pending="finish"))
    note = f"still pending: {run.id('b')} sleepy ("
    assert [m for _, m in run.policy.messages if note in m]  # a message, not a result
    assert run.policy.results.keys() == {"a"}
    run.once_each()


# -- messages from outside -------------------------------------------------------------------


def test_a_message_sent_inside_a_call_block_waits_for_its_end(dialect: str) -> None:
    ctl = RunControl()
    d = get_dialect(dialect)
    hostile = "stop " + d.render_call("slow", {"seconds": 1}) + d.render_trap()

    steps: list[ScriptStep] = [
        "Working. ",
        ScriptCall("a", "slow", {"seconds": 0.1}, between=lambda: ctl.interrupt(hostile)),
        " and more prose here.", WaitFor("a"), " The end.",
    ]
    run = Run(dialect, steps, [slow], control=ctl)
    emitted = next(i for i, e in enumerate(run.seen) if isinstance(e, ev.CallEmitted))
    msg = next(i for i, e in enumerate(run.seen)
               if isinstance(e, ev.InterruptInjected) and e.messages)
    assert msg > emitted  # after the block's end
    assert [c.id for c in run.result.calls] == [run.id("a")]  # the markup never became a call
    (message,) = run.policy.messages
    assert "stop" in message[1] and message[0] in ("user", None)
    assert run.result.stop_reason == "eos" and run.result.text.endswith("The end.")
    run.once_each()


def test_a_message_before_the_start_is_delivered_and_after_the_end_refused(dialect: str) -> None:
    ctl = RunControl()
    ctl.interrupt("early bird", sender="alice")
    run = Run(dialect, ["Hello there.", " Bye."], [slow], control=ctl)
    ((head, payload),) = run.policy.messages
    assert "early bird" in payload and "alice" in payload and head in ("alice", None)
    with pytest.raises(SessionClosedError):
        ctl.interrupt("too late")


def test_a_trap_waits_for_a_message_when_asked(dialect: str) -> None:
    ctl = RunControl(wait_on_trap=True)

    async def main(session: Session, coro: Any) -> SessionResult:
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(5.0)  # virtual time: the model sits in its trap
        assert not task.done()
        ctl.interrupt("the answer is 42", sender="peer")
        return await task

    steps: list[ScriptStep] = ["Waiting.", WaitFor(messages=1),
                               lambda p: f"Got: {p.messages[-1][1]}"]
    run = Run(dialect, steps, [slow], control=ctl, main=main)
    assert "the answer is 42" in run.result.text and run.result.latency_s >= 5.0


def test_the_application_cancels_a_call(dialect: str) -> None:
    ctl = RunControl()
    runs: list[Run] = []

    async def main(session: Session, coro: Any) -> SessionResult:
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(1.0)
        assert ctl.cancel_call(runs[0].id("s"))
        return await task

    class Cancelled(Run):
        def __init__(self) -> None:
            runs.append(self)
            super().__init__(dialect, [call("s", 100), WaitFor("s"), " done."], [slow],
                             control=ctl, main=main)

    run = Cancelled()
    assert run.call("s").status == "cancelled" and run.result.latency_s < 10
    assert "cancel" in run.policy.results["s"]
    run.once_each()


def test_two_agents_message_each_other(dialect: str) -> None:
    d = get_dialect(dialect)
    directory = AgentDirectory()
    scripts = {
        "alice": CallScript([
            ScriptCall("m", "send_message", {"to": "bob", "text": "ping from alice"}),
            WaitFor("m", messages=1), lambda p: f"Alice got: {p.messages[-1][1]}"], dialect=d),
        "bob": CallScript([
            WaitFor(messages=1),
            ScriptCall("r", "send_message", {"to": "alice", "text": "pong from bob"}),
            WaitFor("r"), "Bob replied."], dialect=d),
    }
    sessions = {
        name: Session(SimEngine(p, SimCosts(tpot_s=0.01), dialect=d),
                      [send_message_tool(directory, name)], system="test", dialect=d,
                      config=SessionConfig(max_tokens=512, deadline_s=60))
        for name, p in scripts.items()
    }
    results = run_virtual(run_agents(sessions, directory, prompts={"alice": "go", "bob": "go"}))
    assert {n: r.stop_reason for n, r in results.items()} == {"alice": "eos", "bob": "eos"}
    assert "pong from bob" in results["alice"].text
    assert "ping from alice" in scripts["bob"].messages[0][1]
    assert all(c.status == "ok" for r in results.values() for c in r.calls)


# -- errors and timeouts ---------------------------------------------------------------------


def test_errors_and_timeouts_are_outcomes_delivered_to_their_calls(dialect: str) -> None:
    steps: list[ScriptStep] = [
        call("s", 0.5, tag="sibling"),
        ScriptCall("v", "explode", {"kind": "value"}),
        call("t", 5, "overrun"),
        ScriptCall("f", "explode", {"kind": "ok"}),
        ScriptCall("u", "no_such_tool", {"x": 1}),
        WaitFor("s", "v", "t", "f", "u"), "done",
    ]
    run = Run(dialect, steps, [slow, explode, overrun])
    st = {k: run.call(k).status for k in "svtfu"}
    assert st == {"s": "ok", "v": "error", "t": "timeout", "f": "ok", "u": "error"}
    t = run.call("t")
    assert t.ended_at - t.started_at == pytest.approx(0.2)
    got = run.policy.results
    assert "sibling" in got["s"] and "fine" in got["f"]
    assert "bad value" in got["v"] and "timeout" in got["t"] and "no_such_tool" in got["u"]
    assert run.result.stop_reason == "eos" and run.result.text.endswith("done")
    run.once_each()


# -- the stream's line start after an injection ------------------------------------------------


def test_a_call_right_after_an_injection_is_read(
        dialect: str, request: pytest.FixtureRequest) -> None:
    """The model writes a call at once in the turn that an injection opened (nothing between:
    the injected text ends a line). Line-opened call syntaxes (Llama 3's ``{"name":``,
    pythonic's ``[f(``) need the runtime to tell the parser (``NativeParser.mark_line_start``)."""
    ctl = RunControl()

    def poke(p: CallScript) -> str:
        ctl.interrupt("hello", sender="alice")
        return " "  # one token: the message goes in right after it

    run = Run(dialect, ["Working", poke, call("a", 0.1), WaitFor("a"), "end"], [slow],
              control=ctl)
    assert run.result.stop_reason == "eos" and run.call("a").status == "ok"
    run.once_each()
