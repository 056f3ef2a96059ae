"""How a simulated model tells which of its calls an injected result answers, in any dialect.

A real model reads its results from the context; the simulator's policies read them from the
interrupts that the dialect's transcript parser finds in appended text
(:class:`~asynclm.protocol.events.Interrupt`: a head ``id`` and a ``payload``). Dialects differ
in what that gives: CML and Mistral carry the call's id in every result; Hermes, Llama 3 and
pythonic carry none (``id`` is None) and the runtime echoes the call in the payload instead.
:class:`CallLedger` keeps what one policy wrote and resolves each interrupt to one of its calls:

1. **Ids**: for every call it writes, the ledger reads the call back with the dialect's own
   parser and predicts the id the runtime gives it, as the runtime does
   (:class:`~asynclm.runtime.calls.CallBook`): the id the call carries when it is valid and
   unused, else the next free ``c<n>`` in writing order (``SessionConfig.ids="assign"``). A
   result whose head is such an id answers that call. The same prediction turns the policy's
   ``$key`` references into the ``$c<n>`` the runtime knows.
2. **Echo**: a result without an id is matched to the oldest unanswered call whose echo it
   begins with, the echo being what the dialect's :meth:`~asynclm.protocol.Dialect.echo`
   writes for that call (its wording, compared as text: no format is parsed here).
3. **Order**: else, the oldest unanswered call (a result with neither id nor echo, e.g.
   ``echo_calls="never"`` in an id-less dialect: a real model could only guess so too).

Partial results and messages are told apart by the dialect's own wording
(:meth:`~asynclm.protocol.Dialect.partial`, :meth:`~asynclm.protocol.Dialect.message`): the
constant text each begins with. The dialect stays the only owner of the wire format: the ledger
writes calls with :meth:`~asynclm.protocol.Dialect.render_call` and builds no markup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from asynclm.protocol import Call, Dialect, Interrupt, MalformedCall, Ref, is_call_id

__all__ = ["CallLedger", "Observation", "ObservationKind"]

ObservationKind = Literal["result", "partial", "message", "other"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One interrupt as the policy understands it. ``kind``: a call's (final) ``result``, a
    ``partial`` result, a ``message`` from outside the model, or ``other`` (a head that names
    none of the ledger's calls and is no message). ``key``: the policy's own key of the call
    (result, partial), the head (message, other), or None where the dialect does not say."""

    kind: ObservationKind
    key: str | None
    payload: str


@dataclass(slots=True)
class _Written:
    key: str
    wire_id: str
    text: str  # the call block as written
    echo: tuple[str, ...] | None = None  # what a payload echoing it begins with (lazy)


def _constant_prefix(a: str, b: str) -> str:
    return os.path.commonprefix([a, b])


class CallLedger:
    """The calls one simulated conversation wrote, and which interrupt answers which (see the
    module docstring). Sans I/O; :meth:`reset` for a new conversation.

    Keys are the policy's own names for its calls (a :class:`~asynclm.testing.sim.SimCall`'s
    ``id``); wire ids are the runtime's names for them."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        d = dialect
        self._partial = self._both(_constant_prefix(d.partial("0"), d.partial('"x"')))
        self._message = self._both(_constant_prefix(d.message("a", "0"), d.message("b", "1")))
        self.carries_ids = self._written_id(d.render_call("probe", {"a": 1}, "x1")) == "x1"
        """Whether the dialect's calls carry the id they are written with (CML, Mistral): read
        back once from a probe call, by the dialect's own parser."""
        self.reset()

    def _both(self, text: str) -> tuple[str, ...]:
        """``text`` as written and as escaped in a payload (the parser reports it escaped)."""
        if not text:
            return ()
        return tuple(dict.fromkeys((text, self.dialect.escape_payload(text))))

    def reset(self) -> None:
        """A new conversation: nothing written, nothing answered."""
        self._calls: list[_Written] = []
        self._by_key: dict[str, _Written] = {}
        self._by_wire: dict[str, _Written] = {}
        self._used: set[str] = set()
        self._auto = 0
        self.answered: set[str] = set()
        """Keys of the calls whose final result (or error) arrived."""

    # -- writing ---------------------------------------------------------------------------
    def wire_id(self, key: str) -> str:
        """The runtime's id of the call written as ``key`` (``KeyError``: none written)."""
        return self._by_key[key].wire_id

    @property
    def keys(self) -> list[str]:
        """The keys of the calls written, in writing order."""
        return [w.key for w in self._calls]

    def wire_args(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` with each :class:`~asynclm.protocol.Ref` to a written call renamed to that
        call's wire id (nested values too); other references are left as they are."""
        return {k: self._rename(v) for k, v in args.items()}

    def _rename(self, value: Any) -> Any:
        if isinstance(value, Ref):
            w = self._by_key.get(value.id)
            return value if w is None else Ref(w.wire_id, value.path)
        if isinstance(value, Mapping):
            return {k: self._rename(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._rename(v) for v in value]
        return value

    def write(self, key: str, fn: str, args: Mapping[str, Any]) -> str:
        """The text of the call ``fn(**args)`` (references renamed: :meth:`wire_args`), in the
        dialect, carrying ``key`` as its id where the dialect writes ids; it is recorded with
        the wire id the runtime will give it. ``ValueError`` for a key written before."""
        if key in self._by_key:
            raise ValueError(f"call key {key!r} written twice")
        valid = is_call_id(key)
        text = self.dialect.render_call(fn, self.wire_args(args), key if valid else None)
        self._add(key, self._name(key if valid and self.carries_ids else None), text)
        return text

    def record(self, key: str, text: str) -> str:
        """Record ``text`` (one call block the policy wrote itself) as the call ``key``;
        returns its predicted wire id (from the id the dialect's parser reads in it)."""
        if key in self._by_key:
            raise ValueError(f"call key {key!r} written twice")
        wire = self._name(self._written_id(text))
        self._add(key, wire, text)
        return wire

    def _add(self, key: str, wire: str, text: str) -> None:
        w = _Written(key, wire, text)
        self._calls.append(w)
        self._by_key[key] = w
        self._by_wire[wire] = w

    def _block(self, text: str) -> Call | MalformedCall | None:
        parser = self.dialect.parser(transcript=True)
        events = parser.feed(text) + parser.close()
        return next((e for e in events if isinstance(e, (Call, MalformedCall))), None)

    def _written_id(self, text: str) -> str | None:
        block = self._block(text)
        return None if block is None else block.id

    def _echo(self, w: _Written) -> tuple[str, ...]:
        """What a payload that echoes ``w`` begins with: the dialect's echo of the call's body
        up to its result (computed once, when first needed)."""
        if w.echo is None:
            block = self._block(w.text)
            if block is None:
                w.echo = ()
            else:
                d = self.dialect
                body = d.call_body(block.raw)
                w.echo = self._both(_constant_prefix(
                    d.echo(body, "0"), d.echo(body, '"x"', same_as=w.wire_id)))
        return w.echo

    def _name(self, written: str | None) -> str:
        """The runtime's naming rule (``CallBook.name`` with ``ids="assign"``)."""
        if written is not None and is_call_id(written) and written not in self._used:
            self._used.add(written)
            return written
        while True:
            self._auto += 1
            new = f"c{self._auto}"
            if new not in self._used:
                self._used.add(new)
                return new

    # -- reading ---------------------------------------------------------------------------
    def is_partial(self, payload: str) -> bool:
        """Whether ``payload`` reads as a partial result in this dialect."""
        return any(payload.startswith(p) for p in self._partial)

    def is_message(self, payload: str) -> bool:
        """Whether ``payload`` reads as a message from outside the model in this dialect."""
        return any(payload.startswith(p) for p in self._message)

    def resolve(self, event: Interrupt) -> Observation:
        """Which of the written calls ``event`` answers, and how (see the module docstring).
        A final result marks its call answered."""
        payload = event.payload
        if event.id is not None:
            w = self._by_wire.get(event.id)
            if w is None:
                kind: ObservationKind = "message" if self.is_message(payload) else "other"
                return Observation(kind, event.id, payload)
            if self.is_partial(payload):
                return Observation("partial", w.key, payload)
            self.answered.add(w.key)
            return Observation("result", w.key, payload)
        if self.is_partial(payload):
            return Observation("partial", None, payload)
        if self.is_message(payload):
            return Observation("message", None, payload)
        waiting = [w for w in self._calls if w.key not in self.answered]
        match = next((w for w in waiting if any(payload.startswith(e) for e in self._echo(w))),
                     None)
        if match is None and waiting:
            match = waiting[0]
        if match is None:
            return Observation("other", None, payload)
        self.answered.add(match.key)
        return Observation("result", match.key, payload)
