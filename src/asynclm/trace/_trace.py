"""Session timelines: the span recorder and the breakdown of where the time went.

Times are floats in seconds on whatever clock the caller uses (the event loop's, or the
simulator's virtual clock). The trace never reads a clock: every timestamp is passed in.

Two tracks:
- the **model** track: ``prefill``, ``reprefill``, ``decode``, ``interrupt``, ``trap`` spans,
  one after another (they should not overlap);
- **tools**: one ``tool`` span per call, overlapping each other and the model track freely.

Decode is recorded per token; consecutive decode spans that touch (start within 1e-9 s of the
previous decode's end, same name, same attributes other than ``tokens``, and no other model-track
span in between) are coalesced into one span whose ``tokens`` is the sum. The open run is kept
in plain attributes, so recording a token is a few comparisons and two stores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from asynclm.trace._chrome import to_chrome
from asynclm.trace._gantt import gantt
from asynclm.trace._spans import WORK_KINDS, Breakdown, Instant, Span, SpanKind
from asynclm.trace._text import text_timeline

__all__ = ["Breakdown", "Instant", "Span", "SpanKind", "Trace"]

_EPS = 1e-9
FORMAT_VERSION = 1
_KIND_OF = {k.value: k for k in SpanKind}


class Trace:
    """Records one session's spans and instants. See the module docstring."""

    __slots__ = (
        "_bounds",
        "_instants",
        "_model",
        "_run_attrs",
        "_run_end",
        "_run_name",
        "_run_start",
        "_run_tokens",
        "_tools",
        "meta",
    )
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self._model: list[Span] = []
        self._tools: list[Span] = []
        self._instants: list[Instant] = []
        self._bounds: tuple[float | None, float | None] = (None, None)
        # the open decode run (not yet in self._model)
        self._run_name: str | None = None
        self._run_start = 0.0
        self._run_end = 0.0
        self._run_tokens = 0
        self._run_attrs: dict[str, Any] = {}

    # -- recording ---------------------------------------------------------------------------

    def add_span(self, kind: str, name: str, start: float, end: float, **attrs: Any) -> None:
        """Record a span. ``kind`` is a :class:`SpanKind` value; ``end >= start``."""
        if not start <= end:  # also rejects NaN
            raise ValueError(f"span {name!r} ends before it starts ({start!r} > {end!r})")
        if kind == "decode":
            tokens = attrs.pop("tokens", 0)
            if (
                self._run_name == name
                and -_EPS <= start - self._run_end <= _EPS
                and attrs == self._run_attrs
            ):
                self._run_end = end
                self._run_tokens += tokens
                return
            self._flush()
            self._run_name = name
            self._run_start = start
            self._run_end = end
            self._run_tokens = tokens
            self._run_attrs = attrs
            return
        k = _KIND_OF.get(kind)
        if k is None:
            raise ValueError(f"unknown span kind {kind!r}; expected one of {sorted(_KIND_OF)}")
        if k is SpanKind.TOOL:
            self._tools.append(Span(k, name, start, end, attrs))
        else:
            self._flush()
            self._model.append(Span(k, name, start, end, attrs))

    def add_instant(self, name: str, ts: float, **attrs: Any) -> None:
        """Record a point event."""
        if ts != ts:
            raise ValueError("instant timestamp is NaN")
        self._instants.append(Instant(name, ts, attrs))

    def set_bounds(self, start: float | None = None, end: float | None = None) -> None:
        """Fix the session's start and/or end (``None``: first/last recorded timestamp)."""
        if start is not None and end is not None and not start <= end:
            raise ValueError(f"bounds end before they start ({start!r} > {end!r})")
        self._bounds = (start, end)

    def _run_span(self) -> Span | None:
        if self._run_name is None:
            return None
        return Span(
            SpanKind.DECODE,
            self._run_name,
            self._run_start,
            self._run_end,
            {**self._run_attrs, "tokens": self._run_tokens},
        )

    def _flush(self) -> None:
        span = self._run_span()
        if span is not None:
            self._model.append(span)
            self._run_name = None

    # -- reading -----------------------------------------------------------------------------

    @property
    def model_spans(self) -> list[Span]:
        """Model-track spans in recording order (a fresh list)."""
        run = self._run_span()
        return [*self._model, run] if run is not None else list(self._model)

    @property
    def tool_spans(self) -> list[Span]:
        """Tool spans in recording order (a fresh list)."""
        return list(self._tools)

    @property
    def spans(self) -> list[Span]:
        """Every span, sorted by start time (model track first on ties)."""
        return sorted(
            [*self.model_spans, *self._tools], key=lambda s: (s.start, s.kind is SpanKind.TOOL)
        )

    @property
    def instants(self) -> list[Instant]:
        return list(self._instants)

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The bounds set with :meth:`set_bounds` (``None`` where not set)."""
        return self._bounds

    def _extent(self) -> tuple[float, float] | None:
        ts: list[float] = [i.ts for i in self._instants]
        for s in self.model_spans:
            ts += (s.start, s.end)
        for s in self._tools:
            ts += (s.start, s.end)
        return (min(ts), max(ts)) if ts else None

    @property
    def start(self) -> float | None:
        """The explicit start, else the first recorded timestamp; ``None`` if empty."""
        if self._bounds[0] is not None:
            return self._bounds[0]
        ext = self._extent()
        return None if ext is None else ext[0]

    @property
    def end(self) -> float | None:
        """The explicit end, else the last recorded timestamp; ``None`` if empty."""
        if self._bounds[1] is not None:
            return self._bounds[1]
        ext = self._extent()
        return None if ext is None else ext[1]

    @property
    def duration(self) -> float:
        start, end = self.start, self.end
        return 0.0 if start is None or end is None else max(0.0, end - start)

    def __len__(self) -> int:
        return len(self._model) + (self._run_name is not None) + len(self._tools)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            self.meta == other.meta
            and self._bounds == other._bounds
            and self.model_spans == other.model_spans
            and self._tools == other._tools
            and self._instants == other._instants
        )

    def __repr__(self) -> str:
        return (
            f"Trace(meta={self.meta!r}, spans={len(self)}, instants={len(self._instants)},"
            f" duration={self.duration:.6g}s)"
        )

    # -- analysis ----------------------------------------------------------------------------

    def breakdown(self) -> Breakdown:
        """Where the time went, clipped to ``[start, end]``."""
        lo, hi = self.start, self.end
        if lo is None or hi is None:
            return Breakdown(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, len(self._tools))
        model = self.model_spans

        def clip(spans: Iterable[Span]) -> list[tuple[float, float]]:
            out = []
            for s in spans:
                a, b = max(s.start, lo), min(s.end, hi)
                if b > a:
                    out.append((a, b))
            return out

        def total(ivs: list[tuple[float, float]]) -> float:
            return sum(b - a for a, b in ivs)

        by_kind: dict[SpanKind, list[Span]] = {k: [] for k in SpanKind}
        for s in model:
            by_kind[s.kind].append(s)
        decode = clip(by_kind[SpanKind.DECODE])
        tools = _union(clip(self._tools))
        work = _union(clip(s for s in model if s.kind in WORK_KINDS))
        total_s = hi - lo
        return Breakdown(
            total_s=total_s,
            decode_s=total(decode),
            prefill_s=total(clip(by_kind[SpanKind.PREFILL] + by_kind[SpanKind.REPREFILL])),
            interrupt_s=total(clip(by_kind[SpanKind.INTERRUPT])),
            tool_s=total(tools),
            tool_busy_s=total(clip(self._tools)),
            overlap_s=_intersection(_union(decode), tools),
            idle_s=max(0.0, total_s - total(work)),
            n_tokens=sum(s.tokens for s in by_kind[SpanKind.DECODE]),
            n_calls=len(self._tools),
        )

    # -- persistence -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A lossless, JSON-ready copy of the recorded data (absolute times)."""
        return {
            "version": FORMAT_VERSION,
            "meta": self.meta,
            "bounds": list(self._bounds),
            "spans": [
                [s.kind.value, s.name, s.start, s.end, s.attrs]
                for s in (*self.model_spans, *self._tools)
            ],
            "instants": [[i.name, i.ts, i.attrs] for i in self._instants],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        """Inverse of :meth:`to_dict`. Spans are restored as recorded (no re-coalescing)."""
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported asynclm trace format version {version!r}")
        t = cls(data.get("meta") or {})
        for kind, name, start, end, attrs in data["spans"]:
            k = _KIND_OF.get(kind)
            if k is None:
                raise ValueError(f"unknown span kind {kind!r} in saved trace")
            span = Span(k, name, float(start), float(end), dict(attrs))
            (t._tools if k is SpanKind.TOOL else t._model).append(span)
        for name, ts, attrs in data["instants"]:
            t._instants.append(Instant(name, float(ts), dict(attrs)))
        lo, hi = data.get("bounds") or (None, None)
        t._bounds = (lo, hi)
        return t

    def to_chrome(self) -> dict[str, Any]:
        """Chrome trace JSON (opens in Perfetto and chrome://tracing); see :mod:`._chrome`."""
        return to_chrome(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write Chrome trace JSON, with a lossless copy of the trace under the key ``asynclm``.

        Attribute values must be JSON values for :meth:`load` to give back an equal trace
        (tuples come back as lists; other objects are written as their ``str``)."""
        doc = self.to_chrome()
        doc["asynclm"] = self.to_dict()
        text = json.dumps(doc, default=_json_default, allow_nan=False, separators=(",", ":"))
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or "asynclm" not in doc:
            raise ValueError(f"{os.fspath(path)!r} is not an asynclm trace (no 'asynclm' key)")
        return cls.from_dict(doc["asynclm"])

    # -- rendering ---------------------------------------------------------------------------

    def gantt(self, path: str | os.PathLike[str], *, title: str | None = None) -> None:
        """Write a Gantt chart PNG (needs matplotlib: ``pip install asynclm[plot]``)."""
        gantt(self, path, title=title)

    def text_timeline(self, width: int = 80) -> str:
        """An ASCII/Unicode timeline ``width`` cells wide; see :mod:`._text`."""
        return text_timeline(self, width)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def _union(ivs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge intervals into a sorted list of disjoint ones."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(ivs):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _intersection(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> float:
    """Measure of the intersection of two sorted disjoint interval lists."""
    i = j = 0
    t = 0.0
    while i < len(xs) and j < len(ys):
        a = max(xs[i][0], ys[j][0])
        b = min(xs[i][1], ys[j][1])
        if b > a:
            t += b - a
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return t
