"""Session timelines: timestamped spans, a breakdown of where the time went, Chrome trace JSON
(Perfetto), Gantt PNGs and text timelines.

The recorder never reads a clock; callers pass timestamps (event-loop or virtual seconds)::

    t = Trace(meta={"strategy": "async"})
    t.add_span("prefill", "prefill", 0.00, 0.05, tokens=183)
    t.add_span("decode", "decode", 0.05, 0.06, tokens=1)       # per token; touching runs coalesce
    t.add_span("tool", "get_weather", 0.06, 0.40, call_id="c1", outcome="ok")
    t.add_instant("call.emitted", 0.06, call_id="c1")
    print(t.breakdown())
    t.save("run.trace.json")                                   # open in https://ui.perfetto.dev

matplotlib is imported only when a chart is drawn (:func:`gantt`, :func:`gantt_compare`,
:func:`render` with a PNG path). Modules: ``_spans`` (the values and :class:`TraceView`, what
renderers read) <- ``_chrome``, ``_gantt``, ``_text`` (renderers) <- ``_trace`` (the recorder).
"""

from __future__ import annotations

import os

from asynclm.trace._gantt import gantt as _gantt
from asynclm.trace._gantt import gantt_compare as _gantt_compare
from asynclm.trace._spans import Breakdown, Instant, Span, SpanKind
from asynclm.trace._text import text_timeline
from asynclm.trace._trace import Trace

__all__ = [
    "Breakdown",
    "Instant",
    "Span",
    "SpanKind",
    "Trace",
    "gantt",
    "gantt_compare",
    "render",
    "text_timeline",
]


def gantt(trace: Trace, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write a Gantt chart PNG of ``trace`` (needs matplotlib: ``pip install asynclm[plot]``)."""
    _gantt(trace, path, title=title)


def gantt_compare(
    traces: list[tuple[str, Trace]] | tuple[tuple[str, Trace], ...],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Stack ``(label, trace)`` pairs on one shared time axis in one PNG (e.g. sync vs async)."""
    _gantt_compare(traces, path, title=title)


def render(
    trace_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Breakdown:
    """Load a saved trace, write its Gantt PNG to ``png_path`` (skipped when ``None``) and return
    its breakdown. Backs ``asynclm trace FILE [--png OUT]``."""
    trace = Trace.load(trace_path)
    if png_path is not None:
        gantt(trace, png_path, title=title)
    return trace.breakdown()
