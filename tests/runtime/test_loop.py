"""The decode loop (runtime/loop.py) and its event stream (runtime/observe.py)."""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass

from asynclm.engines.base import Capabilities, ChatMessage, RequestLog
from asynclm.protocol.cml import CML
from asynclm.runtime import SessionConfig, run_virtual
from asynclm.runtime import events as ev
from asynclm.runtime import loop as loop_module
from asynclm.runtime.loop import GO, STOP, DecodeLoop, Signal
from asynclm.runtime.observe import EventBus, Mark, Phase, StreamForwarder, TraceRecorder
from asynclm.runtime.strategies import get_strategy
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import Toolbox
from asynclm.trace import Trace

from .conftest import add, sleepy

SCRIPT = ["Hi. [CALL] k1 [HEAD] add(a=1, b=2) [END] ", "[TRAP][END]", "Done."]


def make_loop(engine, **kw) -> DecodeLoop:
    return DecodeLoop(
        engine=engine, tools=Toolbox([sleepy, add]), strategy=get_strategy("async"),
        config=SessionConfig(), dialect=CML,
        messages=[ChatMessage("system", "test"), ChatMessage("user", "go")], **kw)


def sim(script=SCRIPT) -> SimEngine:
    return SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))


def run_loop(engine, **kw):
    async def go():
        return await make_loop(engine, **kw).execute()
    return run_virtual(go())


def test_the_loop_does_not_import_the_session() -> None:
    tree = ast.parse(inspect.getsource(loop_module))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "Session" not in names and "asynclm.runtime.session" not in mods


def test_signals() -> None:
    assert not GO.stop and not GO.ban and STOP.stop
    assert Signal(ban=frozenset({3})).ban == {3}


def test_a_run_emits_one_stream_the_trace_and_callback_share() -> None:
    events = []
    r = run_loop(sim(), on_event=events.append, trace_meta={"task": "t"})
    assert r.stop_reason == "eos" and [c.id for c in r.calls] == ["k1"]
    kinds = [e.type for e in events]
    assert kinds[-1] == "done" and "call.emitted" in kinds and "interrupt.injected" in kinds
    assert not any(isinstance(e, (Phase, Mark)) for e in events)  # internal events stay inside
    assert r.trace.meta["task"] == "t"
    names = {i.name for i in r.trace.instants}
    assert {"call.emitted", "interrupt.injected"} <= names
    assert [s.name for s in r.trace.tool_spans] == ["add"]
    # the same run without a callback records the same trace
    again = run_loop(sim())
    assert again.trace.spans == r.trace.spans and again.trace.instants == r.trace.instants


def test_trace_recorder_and_forwarder_are_plain_subscribers() -> None:
    trace, seen = Trace(), []
    bus = EventBus([TraceRecorder(trace), StreamForwarder(seen.append)], streaming=True)
    bus.emit(Phase("prefill", "prefill", 0.0, 1.0, {"tokens": 3}))
    bus.emit(Mark("server.request", 0.5, {"reason": "prefill"}))
    bus.emit(ev.TextDelta("x", 1.0))
    assert [s.name for s in trace.model_spans] == ["prefill"]
    assert [i.name for i in trace.instants] == ["server.request"]
    assert [e.type for e in seen] == ["text.delta"]


@dataclass
class Req:
    reason: str = "prefill"
    mode: str = "text"
    prompt_tokens: int = 5
    cached_tokens: int | None = 2
    sent_at: float = 0.0
    first_at: float | None = None
    received: int = 0
    finish: str | None = None
    retries: int = 0


class LoggingSim(SimEngine):
    """A simulator that declares the request-log capability."""

    def __init__(self) -> None:
        super().__init__(ScriptedPolicy(["Hello."]), SimCosts(tpot_s=0.01))
        self.capabilities = Capabilities(virtual_time=True, request_log=True)
        self._reqs = [Req()]

    def take_requests(self):
        out, self._reqs = self._reqs, []
        return out


def test_the_request_log_is_a_declared_capability() -> None:
    engine = LoggingSim()
    assert isinstance(engine, RequestLog)
    r = run_loop(engine)
    assert r.counters["server_requests"] == 1 and r.counters["server_cached_tokens"] == 2
    assert [i.name for i in r.trace.instants] == ["server.request"]


def test_an_engine_with_take_requests_but_no_flag_is_not_probed() -> None:
    engine = LoggingSim()
    engine.capabilities = Capabilities(virtual_time=True)
    r = run_loop(engine)
    assert "server_requests" not in r.counters
