"""One decode loop: the paper's runtime, private to :class:`~asynclm.runtime.session.Session`.

The loop is a token monitor (the sans-I/O parser fed every sampled token), the executor (calls
run the moment their block closes), and the interrupt manager (finished calls are appended to the
live context at the next safe point). Strategies change only the blocking rule (see
:mod:`asynclm.runtime.strategies`).

Enforcement, because small models try to write what only the runtime may write:
- outside a call, the start of a result/interrupt marker is rolled back and treated as a trap;
  with nothing pending, the token that began it is banned for one step;
- inside a call, a forged result ends the call: rolled back, and the runtime writes ``[END]``;
- end of generation with calls pending is a trap (configurable), so no result is lost.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from asynclm.engines.base import ChatMessage
from asynclm.protocol import (
    Call, CallOpened, Event, Forged, Interrupt, MalformedCall, Markers, Parser, Text, Trap,
)
from asynclm.runtime import events as ev
from asynclm.runtime import otel
from asynclm.runtime.clock import loop_clock
from asynclm.runtime.control import Message, RunControl
from asynclm.runtime.executor import Executor
from asynclm.runtime.futures import ATOMIC_TYPES
from asynclm.runtime.guards import LoopDetector
from asynclm.runtime.interrupts import InterruptManager, Segment, tokenize_segments
from asynclm.runtime.records import CallRecord, SessionResult, StopReason
from asynclm.trace import Trace

if TYPE_CHECKING:
    from asynclm.runtime.session import Session

_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class DecodeLoop:
    """The state of one decode loop (one run of a :class:`Session`)."""

    def __init__(
        self, session: Session, messages: list[ChatMessage],
        on_event: Callable[[ev.StreamEvent], None] | None,
        control: RunControl | None = None,
    ) -> None:
        self.s = session
        self.control = control
        self.cfg = session.config
        self.strategy = session.strategy
        self.engine = session.engine
        self.messages = messages
        self.on_event = on_event
        self.now = loop_clock(asyncio.get_running_loop())  # every timestamp of the run
        self.parser = Parser(markers=session.markers, transcript=not self.cfg.enforce)
        self.interrupts = InterruptManager(markers=session.markers, echo=self.cfg.echo_calls)
        self.trace = Trace(meta={"strategy": self.strategy.name, **session.trace_meta})
        self.records: dict[str, CallRecord] = {}
        self.injected_at: dict[str, float] = {}
        self.markup_tokens: dict[str, list[int]] = {}
        self.line_start = True  # the context ends with a newline (or the prompt)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Sampled-token bookkeeping, for rolling back to a character offset of the parser.
        self.tok_start: list[int] = []  # parser offset where each sampled token's text begins
        self.tok_ctx: list[int] = []  # its index in the context
        self.tok_text: list[str] = []
        self.tok_id: list[int] = []
        self.ctx: list[int] = []  # mirror of the engine's context
        self.prompt_len = 0
        self.text_parts: list[str] = []
        self.n_generated = 0
        self.n_injected = 0
        self.injected_tokens = 0
        self.auto_id = 0
        self.used_ids: set[str] = set()
        self.counters = {
            "rollbacks": 0, "empty_traps": 0, "traps": 0, "malformed": 0, "repeats": 0,
            "forged": 0, "eos_waits": 0}
        self.delivered: dict[str, CallRecord] = {}  # call key -> first ok call injected
        self.failed: set[str] = set()  # keys of calls whose error was injected
        self.loop_guard = LoopDetector(self.cfg.loop_window)
        self.first_token_at: float | None = None
        self.call_from: int | None = None  # stream offset of the open call's unsent text
        self.stop: StopReason = "eos"
        self.executor: Executor
        # Engines that talk to a server log their requests (see HttpEngine.take_requests).
        self._take_requests: Callable[[], list[Any]] | None = getattr(
            self.engine, "take_requests", None)
        self.requests: list[Any] = []

    # -- plumbing --------------------------------------------------------------------------
    def emit(self, event: ev.StreamEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _on_start(self, call_id: str, fn: str) -> None:
        if self.on_event is not None:
            self.emit(ev.CallStarted(call_id, fn, self.now()))

    def _on_progress(self, call_id: str, fn: str, message: str) -> None:
        t = self.now()
        self.trace.add_instant("call.progress", t, call_id=call_id, message=message)
        if self.on_event is not None:
            self.emit(ev.CallProgress(call_id, fn, message, t))

    def _on_end(self, rec: CallRecord) -> None:
        self.records[rec.id] = rec
        if rec.started_at is not None:
            self.trace.add_span(
                "tool", rec.fn, rec.started_at, rec.ended_at, call_id=rec.id, outcome=rec.status
            )
        self.interrupts.push(rec)
        if self.on_event is not None:
            self.emit(ev.CallCompleted(rec, self.now()))

    # -- the run ---------------------------------------------------------------------------
    async def execute(self) -> SessionResult:
        """The run, inside an OpenTelemetry span when the application configured a tracer
        provider (see :mod:`asynclm.runtime.otel`)."""
        tracer = otel.tracer()
        span = otel.start_run_span(tracer, self.strategy.name)
        if span is None:
            return await self._execute(tracer)
        error: BaseException | None = None
        try:
            with otel.use_span(span):  # current while the calls' tasks are created
                return await self._execute(tracer)
        except BaseException as exc:  # recorded on the span, then raised unchanged
            error = exc
            raise
        finally:
            otel.end_run_span(
                span, stop_reason=None if error is not None else self.stop,
                input_tokens=self.prompt_len, output_tokens=self.n_generated,
                injected_tokens=self.injected_tokens, calls=len(self.records), error=error)

    async def _execute(self, tracer: Any) -> SessionResult:
        t0 = self.now()
        try:
            async with asyncio.TaskGroup() as group:
                self.executor = Executor(
                    self.s.tools, group, on_start=self._on_start, on_end=self._on_end,
                    on_progress=self._on_progress, default_timeout=self.cfg.tool_timeout_s,
                    tracer=tracer, cancel_grace_s=self.cfg.cancel_grace_s,
                )
                if self.control is not None:
                    self.control._attach(self.interrupts, self.executor)
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
                    self.executor.cancel_all("session ended")  # no task outlives the session
        except BaseExceptionGroup as group_exc:  # only engine/loop failures get here
            raise group_exc.exceptions[0] if len(group_exc.exceptions) == 1 else group_exc
        t1 = self.now()
        abandoned = self.executor.abandoned()
        if abandoned:
            self.counters["abandoned"] = len(abandoned)
            self.trace.add_instant("calls.abandoned", t1, call_ids=list(abandoned))
        if not self.cfg.enforce:
            self.counters["forged"] = _count_forged("".join(self.tok_text), self.s.markers)
        self._record_requests()
        self.trace.set_bounds(t0, t1)
        transcript = self.engine.detokenize(self.ctx[self.prompt_len:]).decode("utf-8", "replace")
        calls = tuple(
            replace(r, injected_at=self.injected_at[r.id]) if r.id in self.injected_at else r
            for r in sorted(self.records.values(), key=lambda r: r.emitted_at)
        )
        result = SessionResult(
            text="".join(self.text_parts),
            transcript=transcript,
            calls=calls,
            trace=self.trace,
            strategy=self.strategy.name,
            stop_reason=self.stop,
            latency_s=t1 - t0,
            n_generated=self.n_generated,
            n_injected=self.n_injected,
            first_token_s=None if self.first_token_at is None else self.first_token_at - t0,
            counters=dict(self.counters),
            abandoned=abandoned,
        )
        self.emit(ev.Done(result, t1))
        return result

    async def _decode(self) -> None:
        engine = self.engine
        await self._prefill(engine.tokenize_chat(self.messages), "prefill")
        self.prompt_len = len(self.ctx)
        ban: frozenset[int] = frozenset()
        while True:
            if self.n_generated >= self.cfg.max_tokens:
                self.stop = "max_tokens"
                return
            if (
                self.strategy.deliver_anytime
                and self.interrupts.ready
                and self.parser.at_safe_point
            ):
                await self._inject()
            t = self.now()
            tok = await engine.step(ban=ban)
            ban = frozenset()
            t1 = self.now()
            self.n_generated += 1
            if self._take_requests is not None:
                t = self._request_span(t, t1)
            self.trace.add_span("decode", "decode", t, t1, tokens=1)
            if self.first_token_at is None:
                self.first_token_at = t1
            if engine.is_eos(tok):
                self.ctx.append(tok)
                if await self._on_eos():
                    continue
                return
            text = self.decoder.decode(engine.detokenize([tok]))
            self.tok_start.append(self.parser.offset)
            self.tok_ctx.append(len(self.ctx))
            self.tok_text.append(text)
            self.tok_id.append(tok)
            self.ctx.append(tok)
            if self.loop_guard.feed(tok):
                self.stop = "repetition"
                return
            if not text:
                continue
            self.line_start = text.endswith("\n")
            at = self.tok_start[-1]  # stream offset of text[0]
            for event in self.parser.feed(text):
                if self.on_event is not None:
                    self._stream_call_text(event, text, at)
                outcome = await self._handle(event)
                if outcome == "stop":
                    return
                if isinstance(outcome, frozenset):
                    ban = outcome
            if self.call_from is not None and self.on_event is not None:
                self._call_delta(text, at, len(text))

    # -- events ------------------------------------------------------------------------------
    def _stream_call_text(self, event: Event, text: str, at: int) -> None:
        """``call.delta`` bookkeeping for one parser event of the token ``text`` (stream offset
        ``at``): a block opens, or closes (its last delta goes out before ``call.emitted``)."""
        if isinstance(event, CallOpened):
            self.call_from = event.start
        elif isinstance(event, (Call, MalformedCall)) and self.call_from is not None:
            self._call_delta(text, at, event.end - at)
            self.call_from = None

    def _call_delta(self, text: str, at: int, end: int) -> None:
        """Send ``text[..end]`` from the unsent part of the open call block on."""
        assert self.call_from is not None
        delta = text[max(self.call_from - at, 0):max(end, 0)]
        self.call_from = at + end
        if delta:
            self.emit(ev.CallDelta(delta, self.now()))

    async def _handle(self, event: Event) -> None | str | frozenset[int]:
        if isinstance(event, Text):
            self.text_parts.append(event.text)
            if self.on_event is not None:
                self.emit(ev.TextDelta(event.text, self.now()))
        elif isinstance(event, Call):
            return await self._on_call(event.id, event.fn, event.args, event.pos, event.raw, None)
        elif isinstance(event, MalformedCall):
            self.counters["malformed"] += 1
            return await self._on_call(
                event.id, "", {}, (), event.raw, f"malformed call: {event.reason}")
        elif isinstance(event, Trap):
            self.counters["traps"] += 1
            return await self._trap("trap")
        elif isinstance(event, Forged):
            return await self._forged(event)
        elif isinstance(event, (CallOpened, Interrupt)):
            pass  # the parser tracks critical sections; Interrupt comes only with enforce=False
        return None

    def _assign_id(self, written: str | None) -> tuple[str, bool, bool]:
        """(id, injectable, assigned) for a call the model wrote with id ``written``. A missing,
        invalid or already used id gets a fresh one (``c<n>``); its interrupt then echoes the
        call, so a result is never paired with the wrong call and no call is refused for its
        id (small models reuse ids, or copy them from the prompt's examples)."""
        if written is not None and _ID_RE.fullmatch(written) and written not in self.used_ids:
            self.used_ids.add(written)
            return written, True, False
        injectable = written is not None or self.cfg.ids == "assign"
        while True:
            self.auto_id += 1
            new = f"c{self.auto_id}" if injectable else f"_f{self.auto_id}"
            if new not in self.used_ids:
                self.used_ids.add(new)
                return new, injectable, True

    async def _on_call(
        self, written_id: str | None, fn: str, args: dict[str, Any], pos: tuple[Any, ...],
        raw: str, error: str | None,
    ) -> None | str:
        call_id, injectable, assigned = self._assign_id(written_id)
        # A malformed call comes with fn "": its key is its body (see _key).
        key = self._key(fn, args, pos, raw) if self.delivered or self.failed else ""
        repeat_of = self._repeat_of(key, fn) if key and error is None else None
        t = self.now()
        self.trace.add_instant("call.emitted", t, call_id=call_id, fn=fn)
        if self.on_event is not None:
            self.emit(ev.CallEmitted(call_id, fn, dict(args), t, raw))
        self.executor.submit(
            call_id, fn, args, pos=pos, raw=raw, injectable=injectable, id_assigned=assigned,
            start=self.strategy.start_on_emit, error=error, repeat_of=repeat_of,
        )
        if repeat_of is not None or key in self.failed:
            self.counters["repeats"] += 1
            if self.counters["repeats"] > self.cfg.max_repeats:
                self.stop = "repeat_limit"
                return "stop"
        await asyncio.sleep(0)  # let the call start now, not after the next decoding step
        if injectable:  # tokenize its interrupt's markup now, while it runs, not on delivery
            opening = Segment(self.interrupts.markup(call_id)[0], trusted=True)
            tokenize_segments(self.engine.tokenize, [opening], self.markup_tokens)
        if self.strategy.block_on_call and call_id not in self.records:
            t = self.now()
            await self.executor.wait(call_id)
            self.trace.add_span("trap", "wait", t, self.now(), call_id=call_id)
        return None

    def _key(self, fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str) -> str:
        """:func:`_call_key`; a call that did not parse is known by its body, not its id (small
        models write the same broken call again and again under fresh ids)."""
        return _call_key(fn, args, pos, raw if fn else self.interrupts.body_of(raw))

    def _repeat_of(self, key: str, fn: str) -> CallRecord | None:
        if self.cfg.repeated_calls != "reuse" or not self.delivered:
            return None
        prev = self.delivered.get(key)
        if prev is None or self.s.tools[fn].order_key(prev.args) is not None:
            return None  # never seen, or a stateful tool: calls are not interchangeable
        return prev

    async def _trap(self, reason: Literal["trap", "eos", "forged"]) -> None | str:
        """Wait for results (the blocking rule of the strategy), then inject them."""
        t = self.now()
        if self.executor.deferred():
            self.executor.start_deferred()
        if self.strategy.trap_waits_for == "all":
            await self.executor.wait_all()
        elif not self.interrupts.ready and (
            self.executor.pending(injectable_only=True)
            or (self.control is not None and self.control.wait_on_trap)
        ):
            await self.interrupts.wait_ready()
        t1 = self.now()
        if t1 > t:
            self.trace.add_span("trap", reason, t, t1)
        if self.on_event is not None:
            self.emit(ev.TrapEvent(reason, t1 - t, t1))
        if self.interrupts.ready:
            self.counters["empty_traps"] = 0
            await self._inject()
            return None
        self.counters["empty_traps"] += 1
        if self.counters["empty_traps"] > self.cfg.max_empty_traps:
            self.stop = "trap_limit"
            return "stop"
        return None

    def _has_pending(self) -> bool:
        return bool(self.interrupts.ready or self.executor.pending(injectable_only=True))

    async def _on_eos(self) -> bool:
        """End of generation. True if treated as a trap (the EOS token is rolled back)."""
        if self.cfg.on_eos_pending != "trap" or not self._has_pending():
            return False
        await self._truncate(len(self.ctx) - 1)
        self.counters["eos_waits"] += 1
        return await self._trap("eos") != "stop"

    async def _forged(self, event: Forged) -> None | str | frozenset[int]:
        self.counters["forged"] += 1
        self.counters["rollbacks"] += 1
        if self.counters["rollbacks"] > self.cfg.max_rollbacks:
            self.stop = "rollback_limit"
            return "stop"
        removed = await self._rollback_to_char(event.start)
        self.trace.add_instant("forged.rollback", self.now(), marker=event.marker)
        self.emit(ev.RollbackEvent(event.marker, removed[1], self.now()))
        if event.where == "call":
            # The call ends where the forgery began; the runtime writes the block's end.
            await self._append_trusted(f" {self.s.markers.end}")
            return None
        if self._has_pending() or self.executor.deferred():
            return await self._trap("forged")
        return frozenset({removed[0]}) if removed[0] >= 0 else None

    # -- context edits -------------------------------------------------------------------------
    def _request_span(self, t: float, t1: float) -> float:
        """A step that sent a server request (a resume): the time to its first token is
        recorded as a ``reprefill`` span; returns where the decode span starts."""
        assert self._take_requests is not None
        reqs = self._take_requests()
        self.requests += reqs
        if not reqs or reqs[-1].first_at is None or not t <= reqs[-1].first_at <= t1:
            return t
        r = reqs[-1]
        self.trace.add_span("reprefill", f"server.{r.reason}", t, r.first_at,
                            tokens=r.prompt_tokens, cached=r.cached_tokens)
        return r.first_at

    def _record_requests(self) -> None:
        """Every server request of the run, as ``server.request`` instants (final figures),
        and totals in the counters: prompt tokens sent, and those the server reported cached."""
        if self._take_requests is None:
            return
        self.requests += self._take_requests()
        cached = [r.cached_tokens for r in self.requests if r.cached_tokens is not None]
        self.counters["server_requests"] = len(self.requests)
        self.counters["server_prompt_tokens"] = sum(r.prompt_tokens for r in self.requests)
        if cached:
            self.counters["server_cached_tokens"] = sum(cached)
        for r in self.requests:
            self.trace.add_instant(
                "server.request", r.sent_at, reason=r.reason, mode=r.mode,
                prompt_tokens=r.prompt_tokens, cached_tokens=r.cached_tokens,
                received=r.received, finish=r.finish, retries=r.retries,
                first_s=None if r.first_at is None else r.first_at - r.sent_at,
            )

    async def _prefill(self, tokens: list[int], kind: str) -> None:
        t = self.now()
        cached = await self.engine.prefill(tokens)
        if self._take_requests is not None:
            self.requests += self._take_requests()
        self.ctx = list(tokens)
        self.trace.add_span(kind, kind, t, self.now(), tokens=len(tokens), cached=cached)

    async def _truncate(self, n: int) -> None:
        await self.engine.rollback(n)
        self.loop_guard.reset()
        del self.ctx[n:]
        k = bisect_left(self.tok_ctx, n)
        del self.tok_start[k:], self.tok_ctx[k:], self.tok_text[k:], self.tok_id[k:]
        self.decoder.reset()
        self.line_start = n <= self.prompt_len or self.engine.detokenize(self.ctx[-1:]).endswith(b"\n")

    async def _rollback_to_char(self, start: int) -> tuple[int, int]:
        """Roll the context back so that the sampled text ends at parser offset ``start``.
        Returns (id of the first removed token or -1, number of tokens removed)."""
        j = bisect_left(self.tok_start, start)
        if j < len(self.tok_start) and self.tok_start[j] == start:
            cut, keep = j, ""
        else:
            cut = j - 1
            keep = self.tok_text[cut][: start - self.tok_start[cut]]
        first_removed = self.tok_id[cut] if cut < len(self.tok_id) else -1
        ctx_cut = self.tok_ctx[cut] if cut < len(self.tok_ctx) else len(self.ctx)
        keep_start = self.tok_start[cut] if cut < len(self.tok_start) else start
        removed = len(self.ctx) - ctx_cut
        await self._truncate(ctx_cut)
        if keep:  # a token straddled the forgery: put back the part before it
            tokens = self.engine.tokenize(keep, special=False)
            await self.engine.append(tokens)
            self.tok_start.append(keep_start)
            self.tok_ctx.append(len(self.ctx))
            self.tok_text.append(keep)
            self.tok_id.append(tokens[0] if tokens else -1)
            self.ctx.extend(tokens)
        return first_removed, removed

    async def _append_trusted(self, text: str) -> None:
        self.line_start = text.endswith("\n")
        tokens = self.engine.tokenize(text, special=True)
        await self.engine.append(tokens)
        self.ctx.extend(tokens)

    async def _inject(self) -> None:
        """Inject every ready result; results that complete while an injection is being
        appended follow at once (still a safe point), not after the model's next token."""
        while self.interrupts.ready:
            await self._inject_batch(self.interrupts.take())

    async def _inject_batch(self, batch: list[CallRecord | Message]) -> None:
        segments = self.interrupts.render(batch)
        if not self.line_start:  # e.g. a call block the model ended with end-of-generation
            segments.insert(0, Segment("\n", trusted=True))
        self.line_start = True
        tokens = tokenize_segments(self.engine.tokenize, segments, self.markup_tokens)
        calls = [r for r in batch if not isinstance(r, Message)]
        senders = tuple(m.sender for m in batch if isinstance(m, Message))
        t = self.now()
        if self.strategy.resume == "append":
            await self.engine.append(tokens)
            self.ctx.extend(tokens)
            kind = "interrupt"
        else:  # an API client: a new request carrying the whole context, processed again
            await self.engine.prefill(self.ctx + tokens, reuse_prefix=False)
            if self._take_requests is not None:
                self.requests += self._take_requests()
            self.ctx.extend(tokens)
            kind = "reprefill"
        t1 = self.now()
        ids = tuple(r.id for r in calls)
        extra = {"messages": list(senders)} if senders else {}
        self.trace.add_span(kind, "inject", t, t1, call_ids=list(ids), tokens=len(tokens), **extra)
        self.trace.add_instant("interrupt.injected", t1, call_ids=list(ids), **extra)
        self.loop_guard.reset()
        for rec in calls:
            self.injected_at[rec.id] = t1
            if rec.status == "ok" and not rec.depends_on:
                self.delivered.setdefault(self._key(rec.fn, rec.args, rec.pos, rec.raw), rec)
            elif rec.status == "error":
                self.failed.add(self._key(rec.fn, rec.args, rec.pos, rec.raw))
        self.n_injected += len(calls)
        self.injected_tokens += len(tokens)
        if self.on_event is not None:
            self.emit(ev.InterruptInjected(
                ids, "".join(s.text for s in segments), len(tokens), t1, messages=senders))



def _count_forged(sampled: str, markers: Markers) -> int:
    """Interrupt or result markers in text the model sampled (ASCII case-insensitive)."""
    low = sampled.lower()
    marks = [f.lower() for f in markers.forbidden]
    if not any(markers.interrupt.lower().startswith(f) for f in marks):
        marks.append(markers.interrupt.lower())
    return sum(low.count(f) for f in marks)


def _call_key(fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str) -> str:
    """Identity of a call for spotting repeats: the tool and its arguments, canonical; for a
    call that did not parse (no ``fn``), its text with whitespace normalized."""
    if not fn:
        return " ".join(raw.split())
    # the common case; isinstance: a string holding $refs (futures.Template) keys as its text
    if not pos and all(type(v) in ATOMIC_TYPES or isinstance(v, str) for v in args.values()):
        return f"{fn}{sorted(args.items())!r}"
    return json.dumps([fn, args, pos], sort_keys=True, default=repr)


