"""One event stream per run, and its subscribers: the trace, OpenTelemetry, the user's callback.

The decode loop does not write traces or spans itself: it emits *loop events* on an
:class:`EventBus` and the subscribers turn them into what they keep.

Loop events are the public stream events (:mod:`asynclm.runtime.events`: text and call deltas,
calls emitted/started/progressing/completed, partial results, interrupts injected, traps,
rollbacks, done) plus three internal ones the public stream does not carry: :class:`Phase` (a
timed phase of the loop: prefill, decode, inject, reprefill, trap waits), :class:`Mark` (a point
event of the trace) and :class:`RunEnded` (the run's totals, also after a failure).

Subscribers: :class:`TraceRecorder` (the run's :class:`~asynclm.trace.Trace`),
:class:`OtelRunSpan` (the ``invoke_agent`` span of :mod:`asynclm.runtime.otel`) and
:class:`StreamForwarder` (the ``on_event`` callback of ``Session.run``, public events only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asynclm.runtime import events as ev
from asynclm.runtime import otel
from asynclm.trace import Trace


@dataclass(frozen=True, slots=True)
class Phase:
    """A timed phase of the loop; ``kind`` is a :class:`~asynclm.trace.SpanKind` value."""

    kind: str
    name: str
    start: float
    end: float
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mark:
    """A point event of the run (``server.request``, ``calls.abandoned``, ...)."""

    name: str
    t: float
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunEnded:
    """The run is over (returned or raised): its totals. ``stop_reason`` is None on failure."""

    stop_reason: str | None
    input_tokens: int
    output_tokens: int
    injected_tokens: int
    calls: int
    error: BaseException | None = None


LoopEvent = ev.StreamEvent | Phase | Mark | RunEnded
Subscriber = Callable[[Any], None]
"""Called with each :data:`LoopEvent`, on the loop, in order; ignores the kinds it does not use."""


class EventBus:
    """Delivers each event to every subscriber, in subscription order.

    ``streaming`` is true when a subscriber wants the public stream's fine-grained events
    (text and call deltas, call starts): the loop builds those only then."""

    __slots__ = ("_subscribers", "streaming")

    def __init__(self, subscribers: Iterable[Subscriber], *, streaming: bool = False) -> None:
        self._subscribers = tuple(subscribers)
        self.streaming = streaming

    def emit(self, event: LoopEvent) -> None:
        for subscriber in self._subscribers:
            subscriber(event)


class TraceRecorder:
    """Writes a run's events into its :class:`~asynclm.trace.Trace`."""

    __slots__ = ("trace",)

    def __init__(self, trace: Trace) -> None:
        self.trace = trace

    def __call__(self, event: Any) -> None:
        kind = type(event)
        trace = self.trace
        if kind is Phase:
            trace.add_span(event.kind, event.name, event.start, event.end, **event.attrs)
        elif kind is Mark:
            trace.add_instant(event.name, event.t, **event.attrs)
        elif kind is ev.CallEmitted:
            trace.add_instant("call.emitted", event.t, call_id=event.call_id, fn=event.fn)
        elif kind is ev.CallCompleted:
            rec = event.record
            if rec.started_at is not None:
                trace.add_span("tool", rec.fn, rec.started_at, rec.ended_at, call_id=rec.id,
                               outcome=rec.status)
        elif kind is ev.CallProgress:
            trace.add_instant("call.progress", event.t, call_id=event.call_id,
                              message=event.message)
        elif kind is ev.CallPartial:
            trace.add_instant("call.partial", event.t, call_id=event.call_id, seq=event.seq)
        elif kind is ev.InterruptInjected:
            extra: dict[str, Any] = {"messages": list(event.messages)} if event.messages else {}
            if event.partials:
                extra["partials"] = list(event.partials)
            trace.add_instant("interrupt.injected", event.t, call_ids=list(event.call_ids),
                              **extra)
        elif kind is ev.RollbackEvent:
            trace.add_instant("forged.rollback", event.t, marker=event.marker)


_PUBLIC = frozenset({
    ev.TextDelta, ev.CallDelta, ev.CallEmitted, ev.CallStarted, ev.CallCompleted,
    ev.CallProgress, ev.CallPartial, ev.InterruptInjected, ev.Waiting, ev.TrapEvent,
    ev.RollbackEvent, ev.Done,
})


class StreamForwarder:
    """Passes the public stream events (:data:`asynclm.runtime.events.StreamEvent`) on to
    ``on_event``."""

    __slots__ = ("_on_event",)

    def __init__(self, on_event: Callable[[ev.StreamEvent], None]) -> None:
        self._on_event = on_event

    def __call__(self, event: Any) -> None:
        if type(event) in _PUBLIC:
            self._on_event(event)


class OtelRunSpan:
    """The run's OpenTelemetry span (``invoke_agent asynclm``): started by the loop around the
    run (it must be current while the calls' tasks are created, so their ``execute_tool``
    spans are its children), ended with the run's totals when :class:`RunEnded` arrives."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def __call__(self, event: Any) -> None:
        if type(event) is RunEnded:
            otel.end_run_span(
                self.span, stop_reason=event.stop_reason, input_tokens=event.input_tokens,
                output_tokens=event.output_tokens, injected_tokens=event.injected_tokens,
                calls=event.calls, error=event.error)
