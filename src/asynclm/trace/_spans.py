"""The values a trace holds (span kinds, spans, instants, the breakdown) and :class:`TraceView`,
what a renderer reads of a trace.

The renderers (:mod:`._chrome`, :mod:`._gantt`, :mod:`._text`) depend on these alone, and
:class:`~asynclm.trace.Trace`, which records the values, depends on the renderers: no cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["MODEL_KINDS", "WORK_KINDS", "Breakdown", "Instant", "Span", "SpanKind", "TraceView"]


class SpanKind(StrEnum):
    """What a span records. Members are strings: ``SpanKind.DECODE == "decode"``."""

    PREFILL = "prefill"
    """Processing the prompt."""
    REPREFILL = "reprefill"
    """Processing the context again (an engine without true injection, or a restarted request)."""
    DECODE = "decode"
    """Sampling tokens (coalesced runs)."""
    INTERRUPT = "interrupt"
    """Appending interrupt tokens (results) to the context."""
    TRAP = "trap"
    """The model waiting for a result."""
    TOOL = "tool"
    """One function call running (on the tools track)."""


MODEL_KINDS = frozenset(
    {SpanKind.PREFILL, SpanKind.REPREFILL, SpanKind.DECODE, SpanKind.INTERRUPT, SpanKind.TRAP}
)
WORK_KINDS = MODEL_KINDS - {SpanKind.TRAP}


@dataclass(frozen=True, slots=True)
class Span:
    """A timed interval. ``attrs`` holds JSON values (``tokens``, ``call_id``, ``outcome``…)."""

    kind: SpanKind
    name: str
    start: float
    end: float
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def tokens(self) -> int:
        return int(self.attrs.get("tokens", 0))

    @property
    def call_id(self) -> str | None:
        cid = self.attrs.get("call_id")
        return None if cid is None else str(cid)


@dataclass(frozen=True, slots=True)
class Instant:
    """A point event: ``call.emitted``, ``interrupt.injected``, ``forged.rollback``, …"""

    name: str
    ts: float
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Where a session's time went, in seconds, within the trace's bounds.

    ``decode_s + prefill_s + interrupt_s + idle_s == total_s`` when model-track spans do not
    overlap each other."""

    total_s: float
    decode_s: float
    prefill_s: float
    """Prefill and re-prefill."""
    interrupt_s: float
    tool_s: float
    """Wall time during which at least one tool ran (union of tool spans)."""
    tool_busy_s: float
    """Sum of tool run times (counts parallel tools once each)."""
    overlap_s: float
    """Time during which the model decoded while a tool ran: what asynchrony buys."""
    idle_s: float
    """Time the model did no work: trap spans and gaps on the model track."""
    n_tokens: int
    n_calls: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"total {self.total_s:.3f}s = decode {self.decode_s:.3f}s ({self.n_tokens} tok)"
            f" + prefill {self.prefill_s:.3f}s + interrupt {self.interrupt_s:.3f}s"
            f" + idle {self.idle_s:.3f}s | tools {self.tool_s:.3f}s wall,"
            f" {self.tool_busy_s:.3f}s busy, {self.n_calls} calls"
            f" | decode∥tools {self.overlap_s:.3f}s"
        )


class TraceView(Protocol):
    """What the renderers read of a trace (:class:`~asynclm.trace.Trace` is one)."""

    @property
    def meta(self) -> Mapping[str, Any]:
        """Free-form facts about the run (``strategy``, ``model``, ...)."""
        ...

    @property
    def model_spans(self) -> list[Span]:
        """Model-track spans in recording order."""
        ...

    @property
    def tool_spans(self) -> list[Span]:
        """Tool spans in recording order."""
        ...

    @property
    def instants(self) -> list[Instant]: ...

    @property
    def start(self) -> float | None:
        """The trace's start (``None`` if empty)."""
        ...

    @property
    def duration(self) -> float: ...

    def breakdown(self) -> Breakdown: ...
