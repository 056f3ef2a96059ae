"""Accuracy the BFCL way: BFCL's own ``ast_checker`` (never a re-implementation).

``check(item, calls)`` takes the calls a model made as ``[{fn: {arg: value}}, …]`` (or
``(fn, args)`` pairs) and returns ``(valid, error)``. The category picks the checker's mode, as in
BFCL: names containing ``parallel`` match calls order-free, ``multiple`` picks one function among
several, anything else is a single call. The relevance categories have no ground truth:
``irrelevance``/``live_irrelevance`` are correct when no call was made, ``live_relevance`` when
at least one was (BFCL's rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from asynclm.bench.bfcl._pkg import bfcl_import
from asynclm.bench.bfcl.data import BfclItem

__all__ = ["check", "normalize_calls"]

MODEL_NAME = "asynclm"  # any name: the stubbed model config answers underscore_to_dot=False


@cache
def _checker() -> tuple[Any, Any]:
    ast_checker = bfcl_import("eval_checker.ast_eval.ast_checker").ast_checker
    language = bfcl_import("constants.enums").Language
    return ast_checker, language


def normalize_calls(calls: Iterable[Any]) -> list[dict[str, dict[str, Any]]]:
    """``[{fn: args}]`` from ``{fn: args}`` dicts or ``(fn, args)`` pairs; tuples inside values
    become lists (as a Python-list answer parsed by BFCL would hold them)."""
    out: list[dict[str, dict[str, Any]]] = []
    for c in calls:
        if isinstance(c, Mapping):
            out.extend({str(fn): _plain(dict(args))} for fn, args in c.items())
        else:
            fn, args = c
            out.append({str(fn): _plain(dict(args))})
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # e.g. an unresolved $id reference: never a valid BFCL value


def check(item: BfclItem, calls: Iterable[Any]) -> tuple[bool, str | None]:
    """Whether ``calls`` answer ``item`` correctly by BFCL's AST checker; ``(valid, error)``."""
    if item.multi_turn:
        raise NotImplementedError("multi-turn items are checked by executing the calls (not yet)")
    output = normalize_calls(calls)
    if item.category in ("irrelevance", "live_irrelevance"):
        return (not output, None if not output else f"made {len(output)} call(s); expected none")
    if item.category == "live_relevance":
        return (bool(output), None if output else "made no call; expected at least one")
    if item.category.startswith("simple_") and item.category != "simple_python":
        raise NotImplementedError(f"{item.category}: only Python categories are supported")
    ast_checker, language = _checker()
    try:
        res = ast_checker(
            [dict(f) for f in item.functions], output, list(item.ground_truth), language.PYTHON,
            item.category, MODEL_NAME,
        )
    except Exception as exc:  # odd model output the checker cannot digest: not valid
        return False, f"checker raised {type(exc).__name__}: {exc}"
    if res.get("valid"):
        return True, None
    err = res.get("error")
    text = "; ".join(map(str, err)) if isinstance(err, list) else str(err or "invalid")
    etype = res.get("error_type")
    return False, f"{etype}: {text}" if etype else text
