"""The JSON record of one BFCL run: a runtime session's (:func:`session_record`) or a plain
``bfcl-prompt`` generation's (:func:`bfcl_record`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from asynclm.bench.bfcl.bfcl_prompt import DecodeError, decode_python_list
from asynclm.bench.bfcl.bound import lower_bound
from asynclm.bench.bfcl.checker import check
from asynclm.bench.bfcl.data import BfclItem, ground_truth_calls
from asynclm.runtime import CallRecord, SessionResult
from asynclm.tools import Toolbox
from asynclm.trace import SpanKind, Trace

__all__ = ["FAILURE_MODES", "MALFORMED_ERRORS", "bfcl_record", "bound_args", "failure_mode",
           "jsonable", "malformed", "session_record"]

MALFORMED_ERRORS = frozenset({"MalformedCall", "ToolArgumentError", "UnknownToolError"})
"""Error types of calls that did not parse or validate (the rest are well-formed)."""

FAILURE_MODES = (
    "token_cap", "malformed", "no_call", "wrong_function", "stopped_after_result",
    "too_few_calls", "too_many_calls", "wrong_args", "error",
)
"""Why a run was not right, first that applies (:func:`failure_mode`): it hit the token cap;
wrote a call that did not parse or validate; wrote no call; called a function the item does not
expect; made too few calls and wrote none after its first result arrived (it stopped calling
after a result); made too few calls otherwise; too many; the right functions with wrong
arguments; the run failed (an exception). Writing a result itself (a forged result) is counted
apart, in ``counters["forged"]``: the runtime rolls it back, so it need not make a run wrong."""


def jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def bound_args(rec: CallRecord, tools: Toolbox) -> dict[str, Any]:
    """The call's keyword arguments, positional ones bound to their parameter names."""
    args = dict(rec.args)
    if rec.pos and rec.fn in tools:
        for name, v in zip(tools[rec.fn].param_names, rec.pos, strict=False):
            args.setdefault(name, v)
    return args


def malformed(rec: CallRecord) -> bool:
    return rec.status == "error" and rec.error_type in MALFORMED_ERRORS


def failure_mode(item: BfclItem, rec: Mapping[str, Any]) -> str | None:
    """Why the run ``rec`` (a single-turn record, :func:`session_record` or
    :func:`bfcl_record`) was not right: one of :data:`FAILURE_MODES`, None if it was."""
    if rec.get("valid"):
        return None
    if rec.get("error"):
        return "error"
    if rec.get("stop_reason") == "max_tokens":
        return "token_cap"
    calls = rec.get("calls", [])
    if rec.get("decode_error") or any(
            c.get("error_type") in MALFORMED_ERRORS for c in calls):
        return "malformed"
    made = [c for c in calls if c.get("status", "ok") != "error" and not c.get("error")]
    if not calls:
        return "no_call"
    expected = ground_truth_calls(item)
    if any(c["fn"] not in {fn for fn, _ in expected} for c in calls):
        return "wrong_function"
    if len(made) < len(expected):
        results = [c["injected_s"] for c in calls if c.get("injected_s") is not None]
        if results and all(c["emitted_s"] <= min(results) for c in calls):
            return "stopped_after_result"
        return "too_few_calls"
    if len(made) > len(expected):
        return "too_many_calls"
    return "wrong_args"


def _interrupts(trace: Trace) -> tuple[int, int]:
    """(interrupts injected, their tokens) of a run, from its trace."""
    spans = [s for s in trace.model_spans if s.name == "inject"]
    return len(spans), sum(s.tokens for s in spans)


def session_record(
    item: BfclItem, result: SessionResult, tools: Toolbox, tokens_of: Callable[[str], int]
) -> dict[str, Any]:
    """The JSON record of one runtime run (its dialect, and its failure mode if it was not
    right: :func:`failure_mode`)."""
    made = [c for c in result.calls if c.status != "error"]
    valid, error = check(item, [(c.fn, bound_args(c, tools)) for c in made])
    b = result.trace.breakdown()
    lb = lower_bound(result, tokens_of)
    t0 = result.trace.start or 0.0
    n_intr, intr_tokens = _interrupts(result.trace)
    rec = {
        "dialect": result.dialect,
        "latency_s": result.latency_s,
        "first_token_s": result.first_token_s,
        "breakdown": b.as_dict(),
        "n_calls": len(result.calls),
        "n_well_formed": sum(1 for c in result.calls if not malformed(c)),
        "n_error": sum(1 for c in result.calls if c.status == "error"),
        "calls": [
            {"id": c.id, "fn": c.fn, "args": jsonable(bound_args(c, tools)),
             "status": c.status, "error_type": c.error_type,
             "error": (c.error or "")[:200] or None,
             "emitted_s": c.emitted_at - t0,
             "exec_s": c.duration_s,
             "injected_s": None if c.injected_at is None else c.injected_at - t0}
            for c in result.calls
        ],
        "valid": valid,
        "check_error": error[:500] if error else None,
        **lb,
        "efficiency": lb["lb_s"] / result.latency_s if result.latency_s > 0 else None,
        "efficiency_ingest": (lb["lb_ingest_s"] / result.latency_s if result.latency_s > 0
                              else None),
        "n_generated": result.n_generated,
        "n_injected": result.n_injected,
        "n_interrupts": n_intr,
        "injected_tokens": intr_tokens,
        "stop_reason": result.stop_reason,
        "counters": result.counters,
        "transcript": result.transcript,
    }
    rec["failure"] = failure_mode(item, rec)
    return rec


def bfcl_record(
    item: BfclItem, tools: Toolbox, text: str, trace: Trace, latency_s: float,
    first_token_s: float | None, n_generated: int, stop: str,
) -> dict[str, Any]:
    """The JSON record of one ``bfcl-prompt`` run."""
    decode_error = None
    try:
        calls = decode_python_list(text)
    except DecodeError as exc:
        calls, decode_error = [], str(exc)
    error: str | None
    if decode_error:
        valid, error = False, f"decode: {decode_error}"
        if item.category in ("irrelevance", "live_irrelevance"):
            valid, error = True, None  # BFCL: an undecodable answer made no call
    else:
        valid, error = check(item, calls)
    well = 0
    rows = []
    for c in calls:
        for fn, args in c.items():
            problem = None
            try:
                tools.get_checked(fn).validate(args)
                well += 1
            except Exception as exc:  # noqa: BLE001 - recorded
                problem = f"{type(exc).__name__}: {exc}"[:200]
            rows.append({"fn": fn, "args": jsonable(args), "error": problem})
    n_calls = len(rows) + (1 if decode_error and text.strip() else 0)
    b = trace.breakdown()
    P = sum(s.duration for s in trace.model_spans if s.kind is SpanKind.PREFILL)
    rec = {
        "latency_s": latency_s,
        "first_token_s": first_token_s,
        "breakdown": b.as_dict(),
        "n_calls": n_calls,
        "n_well_formed": well,
        "n_error": n_calls - well,
        "calls": rows,
        "valid": valid,
        "check_error": error[:500] if error else None,
        "decode_error": decode_error,
        "lb_s": latency_s, "prefill_s": P, "decode_s": b.decode_s, "answer_s": b.decode_s,
        "sum_G_s": 0.0, "max_G_plus_E_s": 0.0,
        "efficiency": None,
        "n_generated": n_generated,
        "n_injected": 0,
        "stop_reason": stop,
        "counters": {},
        "transcript": text,
    }
    rec["failure"] = failure_mode(item, rec)
    return rec
