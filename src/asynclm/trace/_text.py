"""An ASCII/Unicode timeline of a trace, for terminals.

::

    LLM            │▒▒███████░░░░░◆██████│
    c1 get_weather │  ▓▓▓▓▓▓▓··          │
    c2 search      │     ▓▓▓▓▓▓▓▓▓       │ timeout
                    0s       0.6s    1.2s

Model row: ``▒`` prefill, ``█`` decode, ``◆`` interrupt, ``░`` waiting (trap or nothing);
each cell shows what took most of its time, and every span gets at least one cell. Call rows:
``▓`` running, ``·`` finished but its result not yet injected; a non-ok outcome is shown at the
end of the row.
"""

from __future__ import annotations

import math

from asynclm.trace._spans import Span, SpanKind, TraceView

__all__ = ["text_timeline"]

_MODEL_CHAR = {
    SpanKind.PREFILL: "▒",
    SpanKind.REPREFILL: "▒",
    SpanKind.DECODE: "█",
    SpanKind.INTERRUPT: "◆",
}
_WAIT = "░"
_RUN = "▓"
_PENDING = "·"
_LEGEND = (
    "█ decode",
    "▒ prefill",
    "◆ interrupt",
    "░ waiting",
    "▓ tool running",
    "· result pending",
)


class _Grid:
    def __init__(self, origin: float, total: float, n: int) -> None:
        self.origin, self.total, self.n = origin, total, n

    def cell(self, t: float) -> int:
        if self.total <= 0:
            return 0
        return min(self.n - 1, max(0, int((t - self.origin) / self.total * self.n)))

    def cells(self, start: float, end: float) -> range:
        """Cells that ``[start, end)`` touches (at least the one holding ``start``)."""
        first = self.cell(start)
        if self.total <= 0 or end <= start:
            return range(first, first + 1)
        last = math.ceil((end - self.origin) / self.total * self.n) - 1
        return range(first, max(first, min(self.n - 1, last)) + 1)

    def bounds(self, i: int) -> tuple[float, float]:
        w = self.total / self.n
        return self.origin + i * w, self.origin + (i + 1) * w


def _model_row(trace: TraceView, grid: _Grid) -> str:
    cover: list[dict[str, float]] = [{} for _ in range(grid.n)]
    spans = [s for s in trace.model_spans if s.kind in _MODEL_CHAR]
    for s in spans:
        ch = _MODEL_CHAR[s.kind]
        for i in grid.cells(s.start, s.end):
            a, b = grid.bounds(i)
            ov = min(b, s.end) - max(a, s.start)
            cover[i][ch] = cover[i].get(ch, 0.0) + max(ov, 0.0)
    width = grid.total / grid.n if grid.total > 0 else 0.0
    row = []
    for c in cover:
        idle = width - sum(c.values())
        best = max(c.items(), key=lambda kv: kv[1], default=(_WAIT, 0.0))
        row.append(best[0] if best[1] > idle or (best[1] > 0 and width == 0) else _WAIT)
    # every span visible: rarer kinds last so they win a contested cell
    for kind in (SpanKind.DECODE, SpanKind.PREFILL, SpanKind.REPREFILL, SpanKind.INTERRUPT):
        ch = _MODEL_CHAR[kind]
        for s in spans:
            if s.kind is kind:
                cells = grid.cells(s.start, s.end)
                if not any(row[i] == ch for i in cells):
                    row[grid.cell((s.start + s.end) / 2)] = ch
    return "".join(row)


def _injected_at(trace: TraceView) -> dict[str, float]:
    out: dict[str, float] = {}
    for inst in trace.instants:
        if inst.name != "interrupt.injected":
            continue
        ids = inst.attrs.get("call_ids") or [inst.attrs.get("call_id")]
        for cid in ids:
            if cid is not None:
                out.setdefault(str(cid), inst.ts)
    return out


def _tool_row(span: Span, grid: _Grid, injected: float | None) -> str:
    row = [" "] * grid.n
    if injected is not None and injected > span.end:
        for i in grid.cells(span.end, injected):
            row[i] = _PENDING
    for i in grid.cells(span.start, span.end):
        row[i] = _RUN
    return "".join(row)


def _label(span: Span) -> str:
    cid = span.call_id
    return f"{cid} {span.name}" if cid else span.name


def _fmt(t: float) -> str:
    return f"{t:.3g}s"


def text_timeline(trace: TraceView, width: int = 80) -> str:
    """Render ``trace`` as text lines of at most ``width`` characters (at least a 10-cell bar)."""
    tools = sorted(trace.tool_spans, key=lambda s: (s.start, s.end))
    labels = ["LLM", *(_label(s) for s in tools)]
    tags = ["", *(("" if (o := str(s.attrs.get("outcome", "ok"))) == "ok" else o) for s in tools)]
    tag_w = max(len(t) for t in tags)
    tag_w = tag_w + 1 if tag_w else 0
    lw = min(max(len(x) for x in labels), max(8, width // 4))
    n = max(10, width - lw - 3 - tag_w)
    origin = trace.start or 0.0
    total = trace.duration
    grid = _Grid(origin, total, n)
    injected = _injected_at(trace)

    def line(label: str, cells: str, tag: str) -> str:
        if len(label) > lw:
            label = label[: lw - 1] + "…"
        return f"{label:<{lw}} │{cells}│" + (f" {tag}" if tag else "")

    lines = [line(labels[0], _model_row(trace, grid), "")]
    for label, span, tag in zip(labels[1:], tools, tags[1:], strict=True):
        cid = span.call_id
        lines.append(line(label, _tool_row(span, grid, injected.get(cid) if cid else None), tag))
    left, mid, right = _fmt(0.0), _fmt(total / 2), _fmt(total)
    axis = [" "] * (n + 2)
    for pos, text in ((0, left), ((n + 2 - len(mid)) // 2, mid), (n + 2 - len(right), right)):
        axis[pos : pos + len(text)] = text
    lines.append(" " * (lw + 1) + "".join(axis)[: n + 2])
    legend = ""
    for item in _LEGEND:  # wrapped to the width
        if legend and len(legend) + 2 + len(item) > width:
            lines.append(legend)
            legend = ""
        legend = f"{legend}  {item}" if legend else item
    lines.append(legend)
    return "\n".join(lines)
