"""What a session records: a frozen :class:`CallRecord` per call id, and the run's
:class:`SessionResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from asynclm.trace import Trace

Status = Literal["ok", "error", "timeout", "cancelled"]
"""The terminal outcomes. Every call id reaches exactly one."""

@dataclass(frozen=True, slots=True)
class CallRecord:
    """One call, from emission to its single terminal outcome.

    ``injectable`` is false for fire-and-forget calls (strict id policy, no id written): their
    outcome is recorded but never injected. Times are on the session's loop clock (seconds);
    ``started_at`` is None for calls that never started (invalid, unknown tool, failed
    dependency, cancelled before start).
    """

    id: str
    fn: str
    args: dict[str, Any]
    raw: str
    status: Status
    value: Any = None
    error: str | None = None
    error_type: str | None = None
    pos: tuple[Any, ...] = ()
    injectable: bool = True
    id_assigned: bool = False
    """The model wrote no (usable) id; the runtime named the call."""
    emitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float = 0.0
    injected_at: float | None = None
    depends_on: tuple[str, ...] = field(default=())
    """Ids this call's arguments reference (``$id``), in order of first appearance."""
    resolved_args: dict[str, Any] | None = None
    """The validated arguments the tool was called with (references substituted); None if
    the call never started."""
    repeat_of: str | None = None
    """The model repeated an earlier call whose result it already had: this call was not run
    again and ends with that call's result (see ``SessionConfig.repeated_calls``)."""
    rendered: str | None = None
    """For an ``ok`` call: its value as the text the model is shown (bounded, see
    :func:`~asynclm.protocol.format_value`), rendered once when the call ended; None otherwise."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def duration_s(self) -> float | None:
        return None if self.started_at is None else self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class PartialResult:
    """A partial result of a running call (``ToolContext.partial`` or a value yielded by a
    generator tool): delivered like a result, under its call's delivery mode, and marked partial
    (:meth:`~asynclm.protocol.Dialect.partial`). Not an outcome: the call still ends exactly once.
    ``seq`` counts the call's partials from 1; ``rendered`` is the value as the model reads it
    (bounded, rendered once when it was reported)."""

    call_id: str
    fn: str
    seq: int
    value: Any
    rendered: str
    t: float
    injectable: bool = True

    @property
    def id(self) -> str:
        """The call's id (the head of its interrupt)."""
        return self.call_id


StopReason = Literal[
    "eos", "max_tokens", "deadline", "rollback_limit", "trap_limit", "repeat_limit",
    "repetition"]
"""Why a run ended."""


@dataclass(frozen=True, slots=True)
class SessionResult:
    """What a finished session returns. ``text`` is the model's prose outside blocks;
    ``transcript`` the whole generated context (calls and interrupts included)."""

    text: str
    transcript: str
    calls: tuple[CallRecord, ...]
    trace: Trace
    strategy: str
    stop_reason: StopReason
    latency_s: float
    n_generated: int
    n_injected: int
    first_token_s: float | None = None
    counters: dict[str, int] = field(default_factory=dict)
    abandoned: tuple[str, ...] = ()
    """Ids of calls whose tool ignored its cancellation (timeout, deadline, cancel, end of the
    run) past ``SessionConfig.cancel_grace_s``, or whose sync tool's thread was left running:
    their outcome is recorded, their task detached (see :class:`SessionConfig`)."""
    dialect: str = "cml"
    """The name of the dialect the model spoke (:attr:`~asynclm.protocol.Dialect.name`)."""

    def call(self, call_id: str) -> CallRecord:
        for c in self.calls:
            if c.id == call_id:
                return c
        raise KeyError(call_id)

