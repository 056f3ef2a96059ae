"""The typed event stream of a session (``Session.stream``), named like openai-python's.

Each event is frozen and carries ``t``, the loop-clock time it happened at, and a ``type``
string: ``text.delta``, ``call.delta``, ``call.emitted``, ``call.started``, ``call.completed``,
``call.progress``, ``call.partial``, ``interrupt.injected``, ``waiting``, ``trap``, ``rollback``, ``done``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from asynclm.runtime.records import CallRecord, Status

if TYPE_CHECKING:
    from asynclm.runtime.records import SessionResult


@dataclass(frozen=True, slots=True)
class TextDelta:
    type: ClassVar[str] = "text.delta"
    text: str
    t: float


@dataclass(frozen=True, slots=True)
class CallDelta:
    """Text of the call block the model is writing (``[CALL]`` and on), as it is sampled: a
    call streams as it is written. ``call.emitted`` ends the block; its ``raw`` is the call as
    the runtime read it, shorter than the deltas when the model's ending was a forged result
    (rolled back)."""

    type: ClassVar[str] = "call.delta"
    delta: str
    t: float


@dataclass(frozen=True, slots=True)
class CallEmitted:
    """The model finished writing a call block (it may not start yet: futures, strategy).
    ``raw`` is the block's text (``[CALL] ... [END]``)."""

    type: ClassVar[str] = "call.emitted"
    call_id: str
    fn: str
    args: dict[str, Any]
    t: float
    raw: str = ""


@dataclass(frozen=True, slots=True)
class CallStarted:
    type: ClassVar[str] = "call.started"
    call_id: str
    fn: str
    t: float


@dataclass(frozen=True, slots=True)
class CallCompleted:
    """A call reached its terminal outcome (exactly once per id)."""

    type: ClassVar[str] = "call.completed"
    record: CallRecord
    t: float

    @property
    def call_id(self) -> str:
        return self.record.id

    @property
    def status(self) -> Status:
        return self.record.status


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A running call reported progress (:meth:`ToolContext.progress`); not shown to the model."""

    type: ClassVar[str] = "call.progress"
    call_id: str
    fn: str
    message: str
    t: float


@dataclass(frozen=True, slots=True)
class CallPartial:
    """A running call delivered a partial result (``ToolContext.partial`` or a value yielded
    by a generator tool): it goes to the model as an interrupt marked partial, under the call's
    delivery mode (``interrupt.injected`` lists it in ``partials`` when it does). Not an
    outcome: ``call.completed`` still ends the call, once. ``seq`` counts the call's partials
    from 1; ``text`` is the value as the model reads it."""

    type: ClassVar[str] = "call.partial"
    call_id: str
    fn: str
    seq: int
    value: Any
    text: str
    t: float


@dataclass(frozen=True, slots=True)
class InterruptInjected:
    """One batch went into the context: results of ``call_ids``, messages from ``messages``
    (senders, in order; see :class:`~asynclm.runtime.control.RunControl`) and partial results
    of the calls ``partials`` (one entry per partial)."""

    type: ClassVar[str] = "interrupt.injected"
    call_ids: tuple[str, ...]
    text: str
    n_tokens: int
    t: float
    messages: tuple[str, ...] = ()
    partials: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Waiting:
    """The model stopped to wait: it wrote a trap, ended with calls pending, or (a blocking
    strategy, ``reason="call"``) finished writing a call. The run waits for results from now
    on; ``pending``: the calls whose results it may be waiting for. At a trap,
    :class:`TrapEvent` follows when the wait ends."""

    type: ClassVar[str] = "waiting"
    reason: Literal["trap", "eos", "forged", "call"]
    pending: tuple[str, ...]
    t: float


@dataclass(frozen=True, slots=True)
class TrapEvent:
    """The model paused for results: it wrote a trap, ended with calls pending, or began to
    forge a result (rolled back)."""

    type: ClassVar[str] = "trap"
    reason: Literal["trap", "eos", "forged"]
    waited_s: float
    t: float


@dataclass(frozen=True, slots=True)
class RollbackEvent:
    """The runtime removed tokens the model may not write (a forged result or marker)."""

    type: ClassVar[str] = "rollback"
    marker: str
    n_tokens: int
    t: float


@dataclass(frozen=True, slots=True)
class Done:
    type: ClassVar[str] = "done"
    result: SessionResult
    t: float


StreamEvent = (
    TextDelta | CallDelta | CallEmitted | CallStarted | CallCompleted | CallProgress
    | CallPartial | InterruptInjected | Waiting | TrapEvent | RollbackEvent | Done
)
