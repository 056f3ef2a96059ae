"""The decode loop's call bookkeeping: ids, repeated calls, and when results went in.

Sans-I/O, no clock: the loop passes times in.

- **Ids.** A call the model wrote with a valid id it has not used yet keeps it; any other (no
  id, invalid, already used) gets a fresh one, ``c<n>``: a result is never paired with the
  wrong call, and no call is refused for its id (small models reuse ids, or copy them from
  the prompt's examples). Under the strict policy a call written *without* an id is
  fire-and-forget: it is named ``_f<n>`` and its result is never injected.
- **Repeats.** A call is known by its key (:func:`call_key`: the tool and its arguments; a
  call that did not parse, by its body). A call whose key matches one whose result was already
  injected is a repeat; with ``reuse`` it is answered with that result, unrun, unless its tool
  is stateful (it has an ordering key). Repeating a call that failed counts too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from asynclm.runtime.futures import ATOMIC_TYPES
from asynclm.runtime.records import CallRecord
from asynclm.tools import Toolbox


class CallBook:
    """Ids, delivered results and failures of one run's calls.

    ``valid_id``: whether a written id may be kept (the protocol's id grammar).
    ``assign_ids``: a call written without an id still gets an injectable one (``ids="assign"``)
    rather than being fire-and-forget. ``body_of``: the body of a call block's raw text (the key
    of a call that did not parse). ``reuse``: repeated calls are answered with the earlier
    result (``repeated_calls="reuse"``); ``tools`` tells which tools are stateful."""

    __slots__ = (
        "_assign_ids",
        "_auto",
        "_body_of",
        "_reuse",
        "_tools",
        "_valid_id",
        "delivered",
        "failed",
        "injected_at",
        "used",
    )

    def __init__(
        self, *, valid_id: Callable[[str], object], assign_ids: bool,
        body_of: Callable[[str], str], reuse: bool, tools: Toolbox,
    ) -> None:
        self._valid_id = valid_id
        self._assign_ids = assign_ids
        self._body_of = body_of
        self._reuse = reuse
        self._tools = tools
        self._auto = 0
        self.used: set[str] = set()
        """Every id given so far."""
        self.delivered: dict[str, CallRecord] = {}
        """Call key -> the first ``ok`` call (without references) whose result was injected."""
        self.failed: set[str] = set()
        """Keys of calls whose error was injected."""
        self.injected_at: dict[str, float] = {}
        """Call id -> when its outcome went into the context."""

    # -- ids -------------------------------------------------------------------------------
    def name(self, written: str | None) -> tuple[str, bool, bool]:
        """``(id, injectable, assigned)`` for a call the model wrote with id ``written``."""
        if written is not None and self._valid_id(written) and written not in self.used:
            self.used.add(written)
            return written, True, False
        injectable = written is not None or self._assign_ids
        while True:
            self._auto += 1
            new = f"c{self._auto}" if injectable else f"_f{self._auto}"
            if new not in self.used:
                self.used.add(new)
                return new, injectable, True

    # -- repeats ---------------------------------------------------------------------------
    def key(self, fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str) -> str:
        """:func:`call_key`; a call that did not parse is known by its body, not its id (small
        models write the same broken call again and again under fresh ids)."""
        return call_key(fn, args, pos, raw if fn else self._body_of(raw))

    def check(
        self, fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str, *, parsed: bool,
    ) -> tuple[CallRecord | None, bool]:
        """For a call just written: ``(repeat_of, repeated)``. ``repeat_of`` is the earlier
        call whose result answers it (reuse policy, parsed calls of stateless tools only);
        ``repeated``: it repeats a call whose result or error was already injected."""
        if not (self.delivered or self.failed):
            return None, False  # nothing injected yet: the common case, no key computed
        key = self.key(fn, args, pos, raw)
        repeat_of = self._repeat_of(key, fn) if parsed else None
        return repeat_of, repeat_of is not None or key in self.failed

    def _repeat_of(self, key: str, fn: str) -> CallRecord | None:
        if not self._reuse or not self.delivered:
            return None
        prev = self.delivered.get(key)
        if prev is None or self._tools[fn].order_key(prev.args) is not None:
            return None  # never seen, or a stateful tool: calls are not interchangeable
        return prev

    # -- injection -------------------------------------------------------------------------
    def injected(self, records: Iterable[CallRecord], t: float) -> None:
        """The outcomes of ``records`` went into the context at ``t``."""
        for rec in records:
            self.injected_at[rec.id] = t
            if rec.status == "ok" and not rec.depends_on:
                self.delivered.setdefault(self.key(rec.fn, rec.args, rec.pos, rec.raw), rec)
            elif rec.status == "error":
                self.failed.add(self.key(rec.fn, rec.args, rec.pos, rec.raw))

    def stamped(self, records: Iterable[CallRecord]) -> tuple[CallRecord, ...]:
        """``records`` in emission order, each with its ``injected_at``."""
        at = self.injected_at
        return tuple(
            replace(r, injected_at=at[r.id]) if r.id in at else r
            for r in sorted(records, key=lambda r: r.emitted_at)
        )


def call_key(fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str) -> str:
    """Identity of a call for spotting repeats: the tool and its arguments, canonical; for a
    call that did not parse (no ``fn``), its text with whitespace normalized."""
    if not fn:
        return " ".join(raw.split())
    # the common case; isinstance: a string holding $refs (futures.Template) keys as its text
    if not pos and all(type(v) in ATOMIC_TYPES or isinstance(v, str) for v in args.values()):
        return f"{fn}{sorted(args.items())!r}"
    return json.dumps([fn, args, pos], sort_keys=True, default=repr)
