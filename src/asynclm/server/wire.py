"""Runtime events as JSON for the event stream: ``{"type", "t", ...}`` with ``t`` in seconds
since the session was created. Values are shortened; nothing here raises on odd results."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from asynclm.protocol import format_value
from asynclm.runtime import events as ev
from asynclm.runtime.records import CallRecord

_MAX_VALUE = 1000


def _value(value: Any) -> str:
    try:
        return format_value(value, max_chars=_MAX_VALUE)
    except BaseException:  # noqa: BLE001 - a value that cannot be shown is still an event
        return f"<{type(value).__name__} object>"


def _result(rec: CallRecord) -> str:
    """The result's text as rendered for the model when the call ended (bounded)."""
    return rec.rendered if rec.rendered is not None else _value(rec.value)


def _rel(t: float | None, t0: float) -> float | None:
    return None if t is None else round(t - t0, 6)


def record_json(rec: CallRecord, t0: float) -> dict[str, Any]:
    return {
        "call_id": rec.id, "fn": rec.fn, "status": rec.status,
        "value": _result(rec) if rec.status == "ok" else None, "error": rec.error,
        "emitted_at": _rel(rec.emitted_at, t0), "started_at": _rel(rec.started_at, t0),
        "ended_at": _rel(rec.ended_at, t0), "injected_at": _rel(rec.injected_at, t0),
    }


def encode(event: ev.StreamEvent, t0: float, *,
           client_fns: Container[str] = frozenset()) -> dict[str, Any]:
    """The JSON object for one runtime event. Call events (``call.emitted``, ``call.started``,
    ``call.completed``) say where the call runs: ``runs_on`` is ``"client"`` for a tool named
    in ``client_fns`` (the session's client-run tools), else ``"server"``."""
    out: dict[str, Any] = {"type": event.type, "t": _rel(event.t, t0)}
    if isinstance(event, ev.TextDelta):
        out["text"] = event.text
    elif isinstance(event, ev.CallDelta):
        out["delta"] = event.delta
    elif isinstance(event, ev.CallEmitted):
        out.update(call_id=event.call_id, fn=event.fn, raw=event.raw,
                   args={k: _value(v) for k, v in event.args.items()})
    elif isinstance(event, ev.CallStarted):
        out.update(call_id=event.call_id, fn=event.fn)
    elif isinstance(event, ev.CallCompleted):
        out.update(record_json(event.record, t0))
    elif isinstance(event, ev.CallProgress):
        out.update(call_id=event.call_id, fn=event.fn, message=event.message[:_MAX_VALUE])
    elif isinstance(event, ev.CallPartial):
        out.update(call_id=event.call_id, fn=event.fn, partial_seq=event.seq,
                   value=event.text[:_MAX_VALUE])
    elif isinstance(event, ev.InterruptInjected):
        out.update(call_ids=list(event.call_ids), messages=list(event.messages),
                   text=event.text, n_tokens=event.n_tokens)
        if event.partials:
            out["partials"] = list(event.partials)
    elif isinstance(event, ev.Waiting):
        out.update(reason=event.reason, pending=list(event.pending))
    elif isinstance(event, ev.TrapEvent):
        out.update(reason=event.reason, waited_s=round(event.waited_s, 6))
    elif isinstance(event, ev.RollbackEvent):
        out.update(marker=event.marker, n_tokens=event.n_tokens)
    elif isinstance(event, ev.Done):
        r = event.result
        b = r.trace.breakdown()
        out.update(
            text=r.text, stop_reason=r.stop_reason, latency_s=round(r.latency_s, 6),
            n_generated=r.n_generated, n_injected=r.n_injected,
            calls=[record_json(c, t0) for c in r.calls],
            breakdown={"decode_s": b.decode_s, "tool_s": b.tool_s, "overlap_s": b.overlap_s,
                       "idle_s": b.idle_s},
        )
    if isinstance(event, ev.CallEmitted | ev.CallStarted | ev.CallCompleted):
        fn = event.record.fn if isinstance(event, ev.CallCompleted) else event.fn
        out["runs_on"] = "client" if fn in client_fns else "server"
    return out
