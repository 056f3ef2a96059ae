"""Gantt chart PNGs of session traces (matplotlib, imported only when a chart is drawn).

One chart: the model track on top (prefill, re-prefill, decode, interrupt, trap), then one row
per tool call labelled ``call_id name``, colored by outcome; ``v`` marks when a call was emitted,
a diamond when its result was injected. :func:`gantt_compare` stacks several traces on one
shared time axis (each from its own start), e.g. sync above async.

Uses the Agg canvas on a bare :class:`matplotlib.figure.Figure`: no pyplot, no global backend
switch, safe in threads and servers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from asynclm.trace._spans import Span, SpanKind, TraceView

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["KIND_COLORS", "OUTCOME_COLORS", "gantt", "gantt_compare"]

KIND_COLORS = {
    SpanKind.PREFILL: "#4c72b0",
    SpanKind.REPREFILL: "#8172b2",
    SpanKind.DECODE: "#55a868",
    SpanKind.INTERRUPT: "#dd8452",
    SpanKind.TRAP: "#d0d0d0",
}
OUTCOME_COLORS = {
    "ok": "#64b5cd",
    "error": "#c44e52",
    "timeout": "#8c613c",
    "cancelled": "#999999",
}
_OTHER_OUTCOME = "#b279a2"
# instant name -> (marker, color, vertical offset on the call's row)
_MARKERS = {
    "call.emitted": ("v", "black", -0.45),
    "interrupt.injected": ("D", "#dd8452", 0.0),
}
_MARKER_LABELS = {"call.emitted": "call emitted", "interrupt.injected": "result injected"}
_MAX_LABEL = 32


def _label(span: Span) -> str:
    cid = span.call_id
    text = f"{cid} {span.name}" if cid else span.name
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "~"


def _outcome(span: Span) -> str:
    return str(span.attrs.get("outcome", "ok"))


def _tool_rows(trace: TraceView) -> list[Span]:
    return sorted(trace.tool_spans, key=lambda s: (s.start, s.end))


def _draw(ax: Axes, trace: TraceView) -> tuple[set[SpanKind], set[str], set[str]]:
    """Draw ``trace`` on ``ax`` with times relative to its start; return what was used."""
    origin = trace.start or 0.0
    kinds: set[SpanKind] = set()
    outcomes: set[str] = set()
    markers: set[str] = set()
    by_kind: dict[SpanKind, list[tuple[float, float]]] = {}
    for s in trace.model_spans:
        by_kind.setdefault(s.kind, []).append((s.start - origin, s.duration))
    for kind, bars in by_kind.items():
        kinds.add(kind)
        ax.broken_barh(
            bars,
            (-0.4, 0.8),
            facecolors=KIND_COLORS[kind],
            edgecolor="none",
            hatch="//" if kind is SpanKind.TRAP else None,
        )
    rows = _tool_rows(trace)
    row_of: dict[str, int] = {}
    for y, s in enumerate(rows, start=1):
        outcome = _outcome(s)
        outcomes.add(outcome)
        ax.broken_barh(
            [(s.start - origin, s.duration)],
            (y - 0.3, 0.6),
            facecolors=OUTCOME_COLORS.get(outcome, _OTHER_OUTCOME),
            edgecolor="none",
        )
        if s.call_id is not None:
            row_of.setdefault(s.call_id, y)
    for inst in trace.instants:
        ids = inst.attrs.get("call_ids") or [inst.attrs.get("call_id")]
        for cid in ids:
            row = row_of.get(str(cid)) if cid is not None else None
            if row is None:
                continue
            if inst.name in _MARKERS:
                marker, color, dy = _MARKERS[inst.name]
                ax.plot([inst.ts - origin], [row + dy], marker=marker, color=color, markersize=4)
                markers.add(inst.name)
    ax.set_yticks(range(len(rows) + 1), ["LLM", *(_label(s) for s in rows)])
    ax.set_ylim(len(rows) + 0.6, -0.6)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return kinds, outcomes, markers


def _legend(fig: Any, kinds: set[SpanKind], outcomes: set[str], markers: set[str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(facecolor=c, label=k.value) for k, c in KIND_COLORS.items() if k in kinds
    ]
    handles += [
        Patch(facecolor=OUTCOME_COLORS.get(o, _OTHER_OUTCOME), label=f"tool {o}")
        for o in sorted(outcomes)
    ]
    handles += [
        Line2D([], [], linestyle="none", marker=m, color=c, label=_MARKER_LABELS[name])
        for name, (m, c, _) in _MARKERS.items()
        if name in markers
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5))


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _default_title(trace: TraceView) -> str:
    parts = [str(trace.meta[k]) for k in ("strategy", "model") if trace.meta.get(k)]
    parts.append(f"{trace.duration:.3f} s")
    return " - ".join(parts)


def gantt(trace: TraceView, path: str | os.PathLike[str], *, title: str | None = None) -> None:
    """Write a Gantt chart of ``trace`` to ``path`` (PNG)."""
    rows = len(trace.tool_spans) + 1
    fig = _figure(10.0, min(1.6 + 0.32 * rows, 40.0))
    ax = fig.add_subplot()
    kinds, outcomes, markers = _draw(ax, trace)
    ax.set_xlim(0.0, max(trace.duration, 1e-3) * 1.02)
    ax.set_xlabel("time (s)")
    ax.set_title(title if title is not None else _default_title(trace))
    _legend(fig, kinds, outcomes, markers)
    fig.savefig(path, format="png")


def gantt_compare(
    traces: Sequence[tuple[str, TraceView]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """Stack several traces on one shared time axis (each measured from its own start)."""
    if not traces:
        raise ValueError("gantt_compare needs at least one (label, trace) pair")
    rows = [len(t.tool_spans) + 1 for _, t in traces]
    fig = _figure(10.0, min(1.2 + sum(0.32 * r + 0.5 for r in rows), 60.0))
    axes = fig.subplots(
        len(traces), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": rows}
    )[:, 0]
    kinds: set[SpanKind] = set()
    outcomes: set[str] = set()
    markers: set[str] = set()
    for ax, (label, trace) in zip(axes, traces, strict=True):
        k, o, m = _draw(ax, trace)
        kinds |= k
        outcomes |= o
        markers |= m
        ax.set_title(f"{label}: {trace.duration:.3f} s", loc="left", fontsize="medium")
    longest = max(t.duration for _, t in traces)
    axes[-1].set_xlim(0.0, max(longest, 1e-3) * 1.02)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    _legend(fig, kinds, outcomes, markers)
    fig.savefig(path, format="png")
