"""Chrome trace JSON export (the Trace Event Format; opens in Perfetto and chrome://tracing).

Layout, all in process 1 ("asynclm"):
- thread 1 "LLM": complete (``X``) events for prefill, re-prefill, decode, interrupt and trap,
  and instant (``i``) events for the session's instants (``call.emitted``,
  ``interrupt.injected``, …);
- threads 2, 3, … "tools lane k": one ``X`` event per tool call, calls packed into as few lanes
  as run concurrently (a readable Gantt view in any viewer);
- one async span (``b``/``e``, category ``tool``, ``id`` = the call id) per call, which
  Perfetto draws as its own track;
- a counter (``C``) "tools in flight".

``ts``/``dur`` are microseconds from the trace's start; the absolute start in seconds is in
``metadata.origin_s``.
"""

from __future__ import annotations

import math
from typing import Any

from asynclm.trace._spans import Span, TraceView

PID = 1
LLM_TID = 1
_LANE_TID0 = 2


def _us(t: float, origin: float) -> float:
    return round((t - origin) * 1e6, 3)


def assign_lanes(spans: list[Span]) -> list[int]:
    """Pack intervals into lanes (greedy by start time): ``lanes[i]`` for ``spans[i]``; two
    spans share a lane only if they do not overlap."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, spans[i].end))
    lane_end: list[float] = []
    lanes = [0] * len(spans)
    for i in order:
        s = spans[i]
        for k, end in enumerate(lane_end):
            if end <= s.start:
                lane_end[k] = s.end
                lanes[i] = k
                break
        else:
            lanes[i] = len(lane_end)
            lane_end.append(s.end)
    return lanes


def _tool_label(span: Span) -> str:
    cid = span.call_id
    return f"{cid} {span.name}" if cid else span.name


def to_chrome(trace: TraceView) -> dict[str, Any]:
    origin = trace.start or 0.0
    events: list[dict[str, Any]] = []
    # Slices on one thread must nest; model-track spans should not overlap, but if one starts
    # inside another and ends after it, its drawn start is moved to the other's end (the exact
    # times stay in the saved copy).
    prev_end = -math.inf
    for s in sorted(trace.model_spans, key=lambda s: (s.start, -s.end)):
        start = s.start
        if start < prev_end < s.end:
            start = prev_end
        prev_end = max(prev_end, s.end)
        events.append(
            {
                "name": s.name,
                "cat": s.kind.value,
                "ph": "X",
                "ts": _us(start, origin),
                "dur": round((s.end - start) * 1e6, 3),
                "pid": PID,
                "tid": LLM_TID,
                "args": dict(s.attrs),
            }
        )
    for inst in trace.instants:
        events.append(
            {
                "name": inst.name,
                "cat": "event",
                "ph": "i",
                "s": "t",
                "ts": _us(inst.ts, origin),
                "pid": PID,
                "tid": LLM_TID,
                "args": dict(inst.attrs),
            }
        )
    tools = trace.tool_spans
    lanes = assign_lanes(tools)
    seen: dict[str, int] = {}
    for n, (s, lane) in enumerate(zip(tools, lanes, strict=True)):
        label = _tool_label(s)
        args = {"tool": s.name, **s.attrs}
        events.append(
            {
                "name": label,
                "cat": "tool",
                "ph": "X",
                "ts": _us(s.start, origin),
                "dur": round(s.duration * 1e6, 3),
                "pid": PID,
                "tid": _LANE_TID0 + lane,
                "args": args,
            }
        )
        cid = s.call_id or f"call{n + 1}"
        k = seen[cid] = seen.get(cid, 0) + 1
        async_id = cid if k == 1 else f"{cid}#{k}"
        common = {"name": label, "cat": "tool", "id": async_id, "pid": PID, "tid": LLM_TID}
        events.append({**common, "ph": "b", "ts": _us(s.start, origin), "args": args})
        events.append({**common, "ph": "e", "ts": _us(s.end, origin)})
    # tools-in-flight counter
    edges = sorted([(s.start, 1) for s in tools] + [(s.end, -1) for s in tools])
    level = 0
    for t, d in edges:
        level += d
        events.append(
            {
                "name": "tools in flight",
                "ph": "C",
                "ts": _us(t, origin),
                "pid": PID,
                "tid": LLM_TID,
                "args": {"tools": level},
            }
        )
    events.sort(key=lambda e: e["ts"])  # stable: b before e at equal times

    process_name = "asynclm"
    if trace.meta.get("strategy"):
        process_name += f" ({trace.meta['strategy']})"
    meta_events: list[dict[str, Any]] = [
        _meta("process_name", LLM_TID, {"name": process_name}),
        _meta("thread_name", LLM_TID, {"name": "LLM"}),
        _meta("thread_sort_index", LLM_TID, {"sort_index": 0}),
    ]
    for lane in range(max(lanes, default=-1) + 1):
        tid = _LANE_TID0 + lane
        meta_events.append(_meta("thread_name", tid, {"name": f"tools lane {lane + 1}"}))
        meta_events.append(_meta("thread_sort_index", tid, {"sort_index": tid}))

    metadata = {
        **trace.meta,
        "origin_s": origin,
        "breakdown": trace.breakdown().as_dict(),
    }
    return {"traceEvents": meta_events + events, "displayTimeUnit": "ms", "metadata": metadata}


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "ts": 0, "args": args}


__all__ = ["assign_lanes", "to_chrome"]
