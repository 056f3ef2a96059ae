"""Ordering keys: which calls must keep emission order.

The runtime runs calls concurrently except that calls whose ``order_key`` is equal (and not
``None``) start in the order the model emitted them, each after the previous one finished.
A tool's ``order_by`` option decides its key:

=============================  ============================================================
``order_by``                    calls kept in order
=============================  ============================================================
``None`` (default)              none: every call is independent
``"account"`` (argument name)   calls *of this tool* with equal ``account`` values
``SERIAL`` (or ``"*"``)         all calls of this tool
``Ordered("fs")``               all calls of every tool declaring ``Ordered("fs")``
``Ordered("bank", by="acct")``  calls of every tool declaring it, with equal ``acct`` values
callable ``(args) -> key``      calls (of any tool) whose callable returned equal keys;
                                ``None`` means independent
=============================  ============================================================

``Ordered`` is how several tools over one stateful object (e.g. one BFCL class instance) share a
key. Unhashable argument values (lists, dicts, models) are frozen into hashable equivalents.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pydantic import BaseModel

__all__ = ["SERIAL", "OrderBy", "Ordered", "compute_order_key", "normalize_order_by"]


class _Serial:
    """Type of the :data:`SERIAL` sentinel."""

    _instance: _Serial | None = None

    def __new__(cls) -> _Serial:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SERIAL"

    def __reduce__(self) -> str:
        return "SERIAL"


SERIAL: Final = _Serial()
"""``order_by=SERIAL``: all calls of the tool run one at a time, in emission order."""


@dataclass(frozen=True)
class Ordered:
    """A named ordering group that several tools can share.

    ``Ordered("filesystem")`` serializes every call of every tool that declares it;
    ``Ordered("bank", by="account")`` only calls with equal ``account`` values.
    """

    group: Hashable
    by: str | None = None


OrderBy: TypeAlias = str | _Serial | Ordered | Callable[[Mapping[str, Any]], Hashable | None] | None
"""What ``order_by`` accepts (see the module docstring)."""


def normalize_order_by(order_by: Any, params: tuple[str, ...], tool_name: str) -> Any:
    """Check an ``order_by`` option against the tool's parameters; ``"*"`` becomes SERIAL."""
    if order_by is None or order_by is SERIAL:
        return order_by
    if isinstance(order_by, str):
        if order_by == "*":
            return SERIAL
        if order_by not in params:
            raise ValueError(f"{tool_name}: order_by={order_by!r} is not a parameter {params}")
        return order_by
    if isinstance(order_by, Ordered):
        hash(order_by.group)
        if order_by.by is not None and order_by.by not in params:
            raise ValueError(
                f"{tool_name}: Ordered(by={order_by.by!r}) is not a parameter {params}"
            )
        return order_by
    if callable(order_by):
        return order_by
    raise TypeError(
        f"{tool_name}: order_by must be None, an argument name, SERIAL, Ordered or a "
        f"callable, not {type(order_by).__name__}"
    )


def compute_order_key(order_by: Any, args: Mapping[str, Any], tool_name: str) -> Hashable | None:
    """The ordering key of one call (see the module docstring)."""
    if order_by is None:
        return None
    if order_by is SERIAL:
        return ("tool", tool_name)
    if isinstance(order_by, str):
        return ("arg", tool_name, order_by, freeze(args.get(order_by)))
    if isinstance(order_by, Ordered):
        if order_by.by is None:
            return ("group", order_by.group)
        return ("group", order_by.group, freeze(args.get(order_by.by)))
    key = order_by(args)
    return None if key is None else freeze(key)


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for ``value`` that compares equal for equal JSON-like values."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return ("__map__", frozenset((freeze(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return ("__repr__", repr(value))
    return value
