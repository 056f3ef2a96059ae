"""One decode loop: the paper's runtime, private to :class:`~asynclm.runtime.session.Session`.

The loop reads as step → feed → dispatch → inject: sample a token, feed its text to the
sans-I/O parser, dispatch each parser event (calls go to the executor the moment their block
closes), and at the next safe point inject the finished results waiting in the inbox. Its
bookkeeping lives in small parts (:mod:`~asynclm.runtime.context`, :mod:`~asynclm.runtime.calls`,
:mod:`~asynclm.runtime.inbox`); the trace, OpenTelemetry and the event stream subscribe to its
events (:mod:`~asynclm.runtime.observe`). Strategies change only the blocking rule (see
:mod:`asynclm.runtime.strategies`).

Enforcement, because small models try to write what only the runtime may write:
- outside a call, the start of a result/interrupt marker is rolled back and treated as a trap;
  with nothing pending, the token that began it is banned for one step;
- inside a call, a forged result ends the call: rolled back, and the runtime writes ``[END]``;
- end of generation with calls pending is a trap (configurable), so no result is lost.

Native dialects (``hermes``...) with turn framing: an interrupt closes the model's turn, holds
the results in a tool turn and opens a new assistant turn (see
:mod:`asynclm.protocol.chat_frames`). The end-of-turn token the model sampled to wait (or the
end of turn a scripted model wrote as text) is rolled back first, and no line break goes before
the interrupt, so the context reads as the model's chat template would write it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast, runtime_checkable

from asynclm.engines.base import ChatMessage, Engine, KvEvents, RequestLog
from asynclm.protocol import (
    Call,
    CallOpened,
    Dialect,
    Event,
    Forged,
    Interrupt,
    MalformedCall,
    Text,
    Trap,
    is_call_id,
)
from asynclm.protocol.dialect import ReadsArguments
from asynclm.protocol.stream_args import ArgumentsReader
from asynclm.runtime import events as ev
from asynclm.runtime import otel
from asynclm.runtime.builtins import pending_note
from asynclm.runtime.calls import CallBook
from asynclm.runtime.clock import loop_clock
from asynclm.runtime.config import SessionConfig
from asynclm.runtime.context import Context
from asynclm.runtime.control import RunControl
from asynclm.runtime.early import EarlyCall
from asynclm.runtime.executor import Executor
from asynclm.runtime.guards import LoopDetector
from asynclm.runtime.inbox import Inbox
from asynclm.runtime.interrupts import InterruptManager, Segment, tokenize_segments
from asynclm.runtime.messages import Message
from asynclm.runtime.observe import (
    EventBus,
    Mark,
    OtelRunSpan,
    Phase,
    RunEnded,
    StreamForwarder,
    Subscriber,
    TraceRecorder,
)
from asynclm.runtime.records import CallRecord, PartialResult, SessionResult, StopReason
from asynclm.runtime.requests import RequestAccount
from asynclm.runtime.strategies import Strategy
from asynclm.tools import Toolbox
from asynclm.trace import Trace


@dataclass(frozen=True, slots=True)
class Signal:
    """What handling one parser event tells the loop: go on, ``stop`` the run (``DecodeLoop.stop``
    says why), or go on and ``ban`` these tokens at the next step (a forgery rolled back)."""

    stop: bool = False
    ban: frozenset[int] = frozenset()


GO = Signal()
STOP = Signal(stop=True)


@runtime_checkable
class MarksLineStart(Protocol):
    """A parser with line openers (a native dialect's: llama3's ``{"name":``, pythonic's
    ``[f(``): it must be told when the model's next text begins a line, after text it is not
    fed (an injection) or an end of turn rolled back
    (:meth:`~asynclm.protocol.native.NativeParser.mark_line_start`)."""

    def mark_line_start(self) -> None: ...


class DecodeLoop:
    """One run of a session: step → feed → dispatch → inject, until the model stops.

    :meth:`_step` samples a token, the parser is fed its text, :meth:`_dispatch` acts on each
    parser event (prose, a call for the executor, a trap, a forgery to roll back) and, at safe
    points, :meth:`_inject` appends the results waiting in the inbox. The parts:
    :class:`~asynclm.runtime.context.Context` (tokens, rollback),
    :class:`~asynclm.runtime.calls.CallBook` (ids, repeats), :class:`~asynclm.runtime.inbox.Inbox`
    (finished results), :class:`~asynclm.runtime.executor.Executor` (running calls), and the
    :class:`~asynclm.runtime.observe.EventBus` the trace, OpenTelemetry and the ``on_event``
    callback subscribe to. It knows nothing of :class:`~asynclm.runtime.session.Session`: the
    session hands it what it needs."""

    def __init__(
        self, *, engine: Engine, tools: Toolbox, strategy: Strategy, config: SessionConfig,
        dialect: Dialect, messages: list[ChatMessage],
        on_event: Callable[[ev.StreamEvent], None] | None = None,
        control: RunControl | None = None, trace_meta: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.tools = tools
        self.strategy = strategy
        self.cfg = config
        self.dialect = dialect
        self.messages = messages
        self.control = control
        self.now = loop_clock(asyncio.get_running_loop())  # every timestamp of the run
        self.parser = dialect.parser(transcript=not config.enforce)
        self._mark_line_start: Callable[[], None] | None = (  # checked once, not per injection
            self.parser.mark_line_start if isinstance(self.parser, MarksLineStart) else None)
        self.interrupts = InterruptManager(dialect=dialect, echo=config.echo_calls)  # rendering
        self.inbox = Inbox(strategy.default_delivery)  # each call's delivery mode, too
        self.context = Context(engine.detokenize)
        self.calls = CallBook(
            valid_id=is_call_id, assign_ids=config.ids == "assign",
            body_of=self.interrupts.body_of, reuse=config.repeated_calls == "reuse", tools=tools)
        self.trace = Trace(meta={"strategy": strategy.name, **(trace_meta or {})})
        self._on_event = on_event
        self.bus = EventBus(self._subscribers(None), streaming=on_event is not None)
        self.records: dict[str, CallRecord] = {}
        self.markup_tokens: dict[str, list[int]] = {}
        self.text_parts: list[str] = []
        self.n_generated = 0
        self.n_injected = 0
        self.injected_tokens = 0
        self.counters = {
            "rollbacks": 0, "empty_traps": 0, "traps": 0, "malformed": 0, "repeats": 0,
            "forged": 0, "eos_waits": 0}
        self.loop_guard = LoopDetector(config.loop_window)
        self.first_token_at: float | None = None
        self.call_from: int | None = None  # stream offset of the open call's unsent text
        # Tools that take their arguments as a stream (``streaming_args``) start while the model
        # writes their call, where the dialect can read arguments (``arguments_reader``) and the
        # strategy starts calls when written.
        self.new_args_reader: Callable[[], ArgumentsReader | None] | None = (
            dialect.arguments_reader
            if isinstance(dialect, ReadsArguments) and strategy.start_on_emit
            and any(tools[n].streaming_args for n in tools) else None)
        self.args_reader: ArgumentsReader | None = None  # the open call's arguments
        self.early: EarlyCall | None = None  # the open call's tool, started while written
        self.stop: StopReason = "eos"
        self.executor: Executor
        # A declared capability (engines.base.RequestLog), never probed.
        self.requests = (
            RequestAccount(cast(RequestLog, engine)) if engine.capabilities.request_log else None)
        self.kv = cast(KvEvents, engine) if engine.capabilities.kv_events else None
        if self.kv is not None:
            self.counters.update(kv_evictions=0, kv_recomputed_tokens=0)

    def _subscribers(self, span: Any) -> list[Subscriber]:
        subscribers: list[Subscriber] = [self._route_delivery, TraceRecorder(self.trace)]
        if self._on_event is not None:
            subscribers.append(StreamForwarder(self._on_event))
        if span is not None:
            subscribers.append(OtelRunSpan(span))
        return subscribers

    # -- the executor's callbacks ------------------------------------------------------------
    def _on_start(self, call_id: str, fn: str) -> None:
        if self.bus.streaming:
            self.bus.emit(ev.CallStarted(call_id, fn, self.now()))

    def _on_progress(self, call_id: str, fn: str, message: str) -> None:
        self.bus.emit(ev.CallProgress(call_id, fn, message, self.now()))

    def _on_end(self, rec: CallRecord) -> None:
        self.records[rec.id] = rec
        self.inbox.push(rec)
        self.bus.emit(ev.CallCompleted(rec, self.now()))

    def _on_partial(self, part: PartialResult) -> None:
        self.inbox.push_partial(part)
        self.bus.emit(ev.CallPartial(part.call_id, part.fn, part.seq, part.value, part.rendered,
                                     part.t))

    def _route_delivery(self, event: Any) -> None:
        """Bus subscriber: a call's delivery mode is fixed as it is emitted (before it can end),
        from ``SessionConfig.delivery_for``, else its tool's ``delivery`` option, else the
        strategy's default (:data:`~asynclm.tools.DeliveryMode`);
        ``RunControl.set_delivery`` may change it later."""
        if type(event) is not ev.CallEmitted:
            return
        mode = self.cfg.delivery_for(event) if self.cfg.delivery_for is not None else None
        if mode is None:
            tool = self.tools.get(event.fn)
            mode = tool.delivery if tool is not None else None
        self.inbox.route(event.call_id, mode if mode is not None else self.inbox.default)

    # -- the run ---------------------------------------------------------------------------
    async def execute(self) -> SessionResult:
        """The run, inside an OpenTelemetry span when the application configured a tracer
        provider (see :mod:`asynclm.runtime.otel`); :class:`RunEnded` ends it."""
        tracer = otel.tracer()
        span = otel.start_run_span(tracer, self.strategy.name)
        if span is not None:
            self.bus = EventBus(self._subscribers(span), streaming=self.bus.streaming)
        error: BaseException | None = None
        try:
            with otel.use_span(span):  # current while the calls' tasks are created
                return await self._execute(tracer)
        except BaseException as exc:  # recorded on the span, then raised unchanged
            error = exc
            raise
        finally:
            self.bus.emit(RunEnded(
                stop_reason=None if error is not None else self.stop,
                input_tokens=self.context.prompt_len, output_tokens=self.n_generated,
                injected_tokens=self.injected_tokens, calls=len(self.records), error=error))

    async def _execute(self, tracer: Any) -> SessionResult:
        t0 = self.now()
        try:
            async with asyncio.TaskGroup() as group:
                self.executor = Executor(
                    self.tools, group, on_start=self._on_start, on_end=self._on_end,
                    on_progress=self._on_progress, on_partial=self._on_partial,
                    default_timeout=self.cfg.tool_timeout_s,
                    tracer=tracer, cancel_grace_s=self.cfg.cancel_grace_s,
                )
                if self.control is not None:
                    self.control._attach(self.inbox, self.executor)
                try:
                    async with asyncio.timeout(self.cfg.deadline_s) as scope:
                        await self._decode()
                        # Fire-and-forget calls still run to an outcome the session records
                        # (deferred ones start now); anything else still pending now is
                        # cancelled below (a deferred one without starting).
                        await self.executor.wait_all(fire_and_forget_only=True)
                except TimeoutError:
                    if not scope.expired():
                        raise
                    self.stop = "deadline"
                finally:
                    if self.control is not None:
                        self.control._detach()
                    self._abandon_open_call("call abandoned: never completed")
                    self.executor.cancel_all("session ended")  # no task outlives the session
        except BaseExceptionGroup as group_exc:  # only engine/loop failures get here
            raise (group_exc.exceptions[0] if len(group_exc.exceptions) == 1 else group_exc) from None
        t1 = self.now()
        abandoned = self.executor.abandoned()
        if abandoned:
            self.counters["abandoned"] = len(abandoned)
            self.bus.emit(Mark("calls.abandoned", t1, {"call_ids": list(abandoned)}))
        if not self.cfg.enforce:
            self.counters["forged"] = self.dialect.count_forged(self.context.sampled_text())
        if self.requests is not None:
            for mark in self.requests.finish(self.counters):
                self.bus.emit(mark)
        self.trace.set_bounds(t0, t1)
        transcript = self.engine.detokenize(self.context.generated).decode("utf-8", "replace")
        result = SessionResult(
            text="".join(self.text_parts),
            transcript=transcript,
            calls=self.calls.stamped(self.records.values()),
            trace=self.trace,
            strategy=self.strategy.name,
            stop_reason=self.stop,
            latency_s=t1 - t0,
            n_generated=self.n_generated,
            n_injected=self.n_injected,
            first_token_s=None if self.first_token_at is None else self.first_token_at - t0,
            counters=dict(self.counters),
            abandoned=abandoned,
            dialect=self.dialect.name,
        )
        self.bus.emit(ev.Done(result, t1))
        return result

    async def _decode(self) -> None:
        """step → feed → dispatch → inject, until the run stops (``self.stop`` says why)."""
        await self._prefill(self.engine.tokenize_chat(self.messages))
        context, parser, bus = self.context, self.parser, self.bus
        track = bus.streaming or self.new_args_reader is not None  # the open call's text
        ban: frozenset[int] = frozenset()
        while True:
            if self.n_generated >= self.cfg.max_tokens:
                self.stop = "max_tokens"
                return
            if parser.at_safe_point and self.inbox.due(idle=self._always_idle):
                await self._inject(idle=self._always_idle)
            tok = await self._step(ban)
            ban = frozenset()
            if self.engine.is_eos(tok):
                context.sample_eos(tok)
                if await self._on_eos():
                    continue
                return
            at = parser.offset  # stream offset of the token's text
            text = context.sample(tok, at)
            if self.loop_guard.feed(tok):
                self.stop = "repetition"
                return
            if not text:
                continue
            for event in parser.feed(text):
                if track:
                    self._stream_call_text(event, text, at)
                signal = await self._dispatch(event)
                if signal.stop:
                    return
                if signal.ban:
                    ban = signal.ban
            if self.call_from is not None and track:
                self._call_delta(text, at, len(text))

    async def _step(self, ban: frozenset[int]) -> int:
        """Sample one token (``ban``: tokens it may not be)."""
        t = self.now()
        tok = await self.engine.step(ban=ban)
        t1 = self.now()
        self._kv_events()
        self.n_generated += 1
        if self.requests is not None:  # a step that sent a request: its first-token wait
            wait = self.requests.step(t, t1)
            if wait is not None:
                self.bus.emit(wait)
                t = wait.end
        self.bus.emit(Phase("decode", "decode", t, t1, {"tokens": 1}))
        if self.first_token_at is None:
            self.first_token_at = t1
        return tok

    # -- stream events of call blocks ---------------------------------------------------------
    def _stream_call_text(self, event: Event, text: str, at: int) -> None:
        """``call.delta`` bookkeeping for one parser event of the token ``text`` (stream offset
        ``at``): a block opens, or closes (its last delta goes out before ``call.emitted``)."""
        if isinstance(event, CallOpened):
            self.call_from = event.start
            if self.new_args_reader is not None:
                self.args_reader = self.new_args_reader()
        elif isinstance(event, (Call, MalformedCall)) and self.call_from is not None:
            self._call_delta(text, at, event.end - at)
            self.call_from = None

    def _call_delta(self, text: str, at: int, end: int) -> None:
        """Send ``text[..end]`` from the unsent part of the open call block on."""
        assert self.call_from is not None
        delta = text[max(self.call_from - at, 0):max(end, 0)]
        self.call_from = at + end
        if delta and self.bus.streaming:
            self.bus.emit(ev.CallDelta(delta, self.now()))
        if delta and self.args_reader is not None:
            self._read_args(delta)

    def _read_args(self, delta: str) -> None:
        """Feed the open call's arguments reader; once it names a tool declared with
        ``streaming_args``, that tool starts, and gets each argument as it is completed."""
        reader = self.args_reader
        assert reader is not None
        pieces = reader.feed(delta)
        if self.early is None:
            if reader.fn is None:
                return
            self.early = self.executor.start_early(reader.fn)
            if self.early is None:  # not such a tool: read no further
                self.args_reader = None
                return
        if pieces:
            self.executor.feed_early(self.early, pieces)

    def _abandon_open_call(self, reason: str) -> None:
        """A call whose tool started while it was written, and that the model never completed:
        it is named, recorded ``cancelled`` and its tool cancelled."""
        early, self.early, self.args_reader = self.early, None, None
        if early is not None:
            call_id, _, _ = self.calls.name(None)
            self.executor.abandon_early(early, call_id, reason)

    # -- dispatch ----------------------------------------------------------------------------
    async def _dispatch(self, event: Event) -> Signal:
        if isinstance(event, Text):
            self.text_parts.append(event.text)
            if self.bus.streaming:
                self.bus.emit(ev.TextDelta(event.text, self.now()))
        elif isinstance(event, Call):
            return await self._on_call(
                _written(event), event.fn, event.args, event.pos, event.raw, None)
        elif isinstance(event, MalformedCall):
            self.counters["malformed"] += 1
            return await self._on_call(
                _written(event), "", {}, (), event.raw, f"malformed call: {event.reason}")
        elif isinstance(event, Trap):
            self.counters["traps"] += 1
            if self.interrupts.trap_ends_turn:
                # A native dialect's trap is the end of the turn written as text (a scripted
                # model; a real one samples its end-of-generation token, see _on_eos): rolled
                # back like that token (with turn framing the interrupt's turn close writes it
                # again).
                await self._rollback_to_char(event.start)
            return await self._trap("trap")
        elif isinstance(event, Forged):
            return await self._forged(event)
        elif isinstance(event, (CallOpened, Interrupt)):
            pass  # the parser tracks critical sections; Interrupt comes only with enforce=False
        return GO

    async def _on_call(
        self, written_id: str | None, fn: str, args: dict[str, Any], pos: tuple[Any, ...],
        raw: str, error: str | None,
    ) -> Signal:
        early, self.early, self.args_reader = self.early, None, None  # its tool, started early
        call_id, injectable, assigned = self.calls.name(written_id)
        # A malformed call comes with fn "": it is known by its body (CallBook.key).
        repeat_of, repeated = self.calls.check(fn, args, pos, raw, parsed=error is None)
        self.bus.emit(ev.CallEmitted(call_id, fn, dict(args), self.now(), raw))
        self.executor.submit(
            call_id, fn, args, pos=pos, raw=raw, injectable=injectable, id_assigned=assigned,
            start=self.strategy.start_on_emit, error=error, repeat_of=repeat_of,
        )
        if early is not None:
            self.executor.bind_early(early, call_id)
        if repeated:
            self.counters["repeats"] += 1
            if self.counters["repeats"] > self.cfg.max_repeats:
                self.stop = "repeat_limit"
                return STOP
        await self.executor.launched(call_id)  # it starts now, not after the next step
        if injectable:  # tokenize its interrupt's markup now, while it runs, not on delivery
            opening = Segment(self.interrupts.markup(call_id)[0], trusted=True)
            tokenize_segments(self.engine.tokenize, [opening], self.markup_tokens)
        if self.strategy.block_on_call and call_id not in self.records:
            t = self.now()
            if self.bus.streaming:
                self.bus.emit(ev.Waiting("call", (call_id,), t))
            await self.executor.wait(call_id)
            self.bus.emit(Phase("trap", "wait", t, self.now(), {"call_id": call_id}))
        return GO

    async def _trap(self, reason: Literal["trap", "eos", "forged"]) -> Signal:
        """Wait for results (the blocking rule of the strategy), then inject them."""
        t = self.now()
        if self.executor.deferred():
            self.executor.start_deferred()
        if self.strategy.trap_waits_for == "all":
            self._waiting(reason)
            await self.executor.wait_all()
        elif not self.inbox.due() and self._must_wait():
            # Until something that may wake the model is due: a silent result never is (it
            # goes in with what ends the wait), and silent calls are not waited for.
            self._waiting(reason)
            while not self.inbox.due() and self._must_wait():
                await self.inbox.wait_ready()
        t1 = self.now()
        if t1 > t:
            self.bus.emit(Phase("trap", reason, t, t1, {}))
        if self.bus.streaming:
            self.bus.emit(ev.TrapEvent(reason, t1 - t, t1))
        woke = self.inbox.due() or (self.strategy.trap_waits_for == "all" and self.inbox.ready)
        if woke and self.cfg.pending == "note":  # what is still running, with what woke it
            note = pending_note(self.executor.pending_calls())
            if note is not None:
                self.inbox.push_message(Message("runtime", note))
        if self.inbox.ready:  # silent results ride along: the model resumes anyway
            await self._inject()
        if woke:
            self.counters["empty_traps"] = 0
            return GO
        self.counters["empty_traps"] += 1
        if self.counters["empty_traps"] > self.cfg.max_empty_traps:
            self.stop = "trap_limit"
            return STOP
        return GO

    def _waiting(self, reason: Literal["trap", "eos", "forged"]) -> None:
        if self.bus.streaming:
            pending = (self._pending(silent=False) if self.strategy.trap_waits_for == "next"
                       else self.executor.pending_ids(injectable_only=True))
            self.bus.emit(ev.Waiting(reason, pending, self.now()))

    @property
    def _always_idle(self) -> bool:
        """A blocking strategy's model waits for each call: every safe point counts as idle."""
        return self.strategy.block_on_call

    def _pending(self, *, silent: bool) -> tuple[str, ...]:
        """Injectable calls without an outcome whose delivery mode is (``silent``) or is not
        ``silent``."""
        return tuple(i for i in self.executor.pending_ids(injectable_only=True)
                     if (self.inbox.mode_of(i) == "silent") == silent)

    def _must_wait(self) -> bool:
        """A trap waits: a call whose result may wake the model is pending, or (agents) a
        message may come."""
        return bool(self._pending(silent=False)) or (
            self.control is not None and self.control.wait_on_trap)

    def _has_pending(self) -> bool:
        """Something may wake the model: a result or message due, or a call whose result may
        be (silent ones never are)."""
        return self.inbox.due() or bool(self._pending(silent=False))

    async def _on_eos(self) -> bool:
        """End of generation. True if treated as a trap (the EOS token is rolled back).

        With ``on_eos_pending="trap"``: results or calls that may wake the model make it a
        trap; silent ones alone do not: the turn waits for the silent calls still running,
        appends every silent result (the EOS token is rolled back) and ends."""
        if self.cfg.on_eos_pending != "trap":
            return False
        if self._has_pending():
            await self._truncate(len(self.context) - 1)
            self._line_starts()
            self.counters["eos_waits"] += 1
            return not (await self._trap("eos")).stop
        silent = self._pending(silent=True)
        if not silent and not self.inbox.ready:
            return False
        await self._truncate(len(self.context) - 1)
        self._line_starts()
        if silent:
            self.counters["eos_waits"] += 1
            t = self.now()
            if self.bus.streaming:
                self.bus.emit(ev.Waiting("eos", silent, t))
            for call_id in silent:
                await self.executor.wait(call_id)
            self.bus.emit(Phase("trap", "eos", t, self.now(), {"silent": list(silent)}))
            if self._has_pending():  # a message, or a mode changed meanwhile: a trap after all
                return not (await self._trap("eos")).stop
        if self.inbox.ready:
            await self._inject()
        return False

    async def _forged(self, event: Forged) -> Signal:
        self.counters["forged"] += 1
        self.counters["rollbacks"] += 1
        if self.counters["rollbacks"] > self.cfg.max_rollbacks:
            self.stop = "rollback_limit"
            return STOP
        removed = await self._rollback_to_char(event.start)
        self.bus.emit(ev.RollbackEvent(event.marker, removed[1], self.now()))
        if event.where == "call":
            # The call ends where the forgery began; the runtime writes the block's end.
            await self._append_trusted(self.dialect.close_call())
            return GO
        if self._has_pending() or self.executor.deferred():
            return await self._trap("forged")
        return Signal(ban=frozenset({removed[0]})) if removed[0] >= 0 else GO

    def _kv_events(self) -> None:
        """The engine's evictions and recomputations of the context's KV cache (a declared
        capability, ``engines.base.KvEvents``): trace marks and counters."""
        if self.kv is None:
            return
        for e in self.kv.take_kv_events():
            self.bus.emit(Mark(f"kv.{e.kind}", e.t, {"tokens": e.tokens}))
            if e.kind == "evicted":
                self.counters["kv_evictions"] += 1
            else:
                self.counters["kv_recomputed_tokens"] += e.tokens

    def _line_starts(self) -> None:
        """The model's next text begins a line (after an injection, or its end of turn rolled
        back): a parser with line openers is told (:class:`MarksLineStart`)."""
        if self._mark_line_start is not None:
            self._mark_line_start()

    # -- context edits -------------------------------------------------------------------------
    async def _prefill(self, tokens: list[int]) -> None:
        t = self.now()
        cached = await self.engine.prefill(tokens)
        self._kv_events()
        if self.requests is not None:
            self.requests.take()
        self.context.set_prompt(tokens)
        self.bus.emit(Phase("prefill", "prefill", t, self.now(),
                            {"tokens": len(tokens), "cached": cached}))

    async def _truncate(self, n: int) -> None:
        await self.engine.rollback(n)
        self.loop_guard.reset()
        self.context.truncate(n)

    async def _rollback_to_char(self, start: int) -> tuple[int, int]:
        """Roll the context back so that the sampled text ends at parser offset ``start``.
        Returns (id of the first removed token or -1, number of tokens removed)."""
        cut = self.context.cut_at(start)
        await self._truncate(cut.keep_tokens)
        if cut.keep:  # a token straddled the forgery: put back the part before it
            tokens = self.engine.tokenize(cut.keep, special=False)
            await self.engine.append(tokens)
            self.context.keep(cut, tokens)
        return cut.first_removed, cut.removed

    async def _append_trusted(self, text: str) -> None:
        tokens = self.engine.tokenize(text, special=True)
        await self.engine.append(tokens)
        self.context.inject(tokens, ends_line=text.endswith("\n"))

    async def _inject(self, *, idle: bool = True) -> None:
        """Inject what is due and every silent result (``idle``: the model waits, so
        ``when_idle`` results too); results that complete while an injection is being appended
        follow at once (still a safe point), not after the model's next token."""
        batch = self.inbox.take(idle=idle)
        while batch:
            await self._inject_batch(batch)
            more = self.inbox.ready if idle else self.inbox.due(idle=False)
            batch = self.inbox.take(idle=idle) if more else []

    async def _inject_batch(self, batch: list[CallRecord | PartialResult | Message]) -> None:
        segments = self.interrupts.render(batch)
        if not self.context.line_start and not self.interrupts.opens_turn:
            # e.g. a call block the model ended with end-of-generation; an interrupt that closes
            # the model's turn first (turn framing) goes right where the model stopped
            segments.insert(0, Segment("\n", trusted=True))
        tokens = tokenize_segments(self.engine.tokenize, segments, self.markup_tokens)
        calls = [r for r in batch if isinstance(r, CallRecord)]
        partials = tuple(p.call_id for p in batch if isinstance(p, PartialResult))
        senders = tuple(m.sender for m in batch if isinstance(m, Message))
        t = self.now()
        if self.strategy.resume == "append":
            await self.engine.append(tokens)
            kind = "interrupt"
        else:  # an API client: a new request carrying the whole context, processed again
            await self.engine.prefill(self.context.tokens + tokens, reuse_prefix=False)
            if self.requests is not None:
                self.requests.take()
            kind = "reprefill"
        self._kv_events()
        self.context.inject(tokens, ends_line=True)
        self._line_starts()
        t1 = self.now()
        ids = tuple(r.id for r in calls)
        extra: dict[str, Any] = {"messages": list(senders)} if senders else {}
        if partials:
            extra["partials"] = list(partials)
        self.bus.emit(Phase(kind, "inject", t, t1,
                            {"call_ids": list(ids), "tokens": len(tokens), **extra}))
        self.loop_guard.reset()
        self.calls.injected(calls, t1)
        self.n_injected += len(calls)
        self.injected_tokens += len(tokens)
        self.bus.emit(ev.InterruptInjected(
            ids, "".join(s.text for s in segments), len(tokens), t1, messages=senders,
            partials=partials))


def _written(event: Call | MalformedCall) -> str | None:
    """The id the model wrote for a call: a valid one, or the invalid word it put in the id
    slot (``written_id``: the runtime then names the call, as for any invalid id)."""
    return event.id if event.id is not None else event.written_id
