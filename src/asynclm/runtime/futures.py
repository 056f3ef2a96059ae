"""``$id`` / ``$id.path`` references in call arguments: find them, and substitute results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asynclm.protocol import Ref


class ReferenceError_(LookupError):
    """A reference path does not exist in the referenced result."""


ATOMIC_TYPES = frozenset({str, int, float, bool, type(None)})
"""Types of plain values: they hold no reference, and compare and print canonically."""


def find_refs(value: Any) -> list[Ref]:
    """All references in ``value`` (nested in lists/tuples/dicts), in order of appearance."""
    out: list[Ref] = []
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in ATOMIC_TYPES:  # the common cases first: exact types, no ABC checks
            continue
        if t is dict:
            stack.extend(reversed(list(v.values())))
        elif t is list or t is tuple:
            stack.extend(reversed(v))
        elif isinstance(v, Ref):
            out.append(v)
        elif isinstance(v, Mapping):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
    return out


def resolve_path(value: Any, ref: Ref) -> Any:
    """Follow ``ref.path`` into dicts (key, or its string form), lists and tuples (an index)
    and public data attributes of ``value``. Raises :class:`ReferenceError_` if a step fails."""
    for seg in ref.path:
        if isinstance(value, Mapping):
            if seg in value:
                value = value[seg]
            elif str(seg) in value:
                value = value[str(seg)]
            else:
                raise ReferenceError_(f"{ref}: no key {seg!r}")
        elif isinstance(value, (list, tuple)):
            try:
                value = value[int(seg)]
            except (ValueError, IndexError):
                raise ReferenceError_(f"{ref}: no index {seg!r}") from None
        elif isinstance(seg, str) and not seg.startswith("_") and hasattr(value, seg):
            attr = getattr(value, seg)
            if callable(attr):  # data attributes only: never hand a bound method to a tool
                raise ReferenceError_(f"{ref}: {seg!r} of {type(value).__name__} is a method")
            value = attr
        else:
            raise ReferenceError_(f"{ref}: cannot look up {seg!r} in {type(value).__name__}")
    return value


def substitute(value: Any, results: Mapping[str, Any]) -> Any:
    """``value`` with every reference replaced by its resolved result. Results are inserted as
    values, never re-parsed, so a ``$x`` inside a result stays text."""
    if isinstance(value, Ref):
        return resolve_path(results[value.id], value)
    if isinstance(value, Mapping):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, results) for v in value)
    return value
