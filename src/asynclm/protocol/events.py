"""Events the CML parser emits, and the values found in call bodies.

All events are frozen. Offsets (``start``/``end``) are character offsets into the whole stream
fed to one parser, ``end`` exclusive, so the runtime can map an event back to the tokens that
produced it (for rollback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to an earlier call's result: ``$id`` or ``$id.path`` (``$a.items.0``)."""

    id: str
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        return "$" + ".".join([self.id, *map(str, self.path)])


@dataclass(frozen=True, slots=True)
class Text:
    """Plain text the model wrote outside any block."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CallOpened:
    """``[CALL]`` was written: a critical section begins (no injection until it closes)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Call:
    """A complete, well-formed call block. ``args`` may hold :class:`Ref` values (nested too).

    ``pos`` holds positional arguments in order (the runtime binds them to the tool's parameter
    order); it comes last, with a default, so keyword construction stays compatible.
    ``id`` is a valid id (:func:`~asynclm.protocol.ids.is_call_id`) or ``None``; when the model
    wrote one word that is not a valid id (``a:b``), ``id`` is ``None`` and ``written_id`` holds
    that word: the runtime names such a call, as one written without an id.
    """

    id: str | None
    fn: str
    args: dict[str, Any]
    raw: str
    start: int
    end: int
    pos: tuple[Any, ...] = ()
    written_id: str | None = None


@dataclass(frozen=True, slots=True)
class MalformedCall:
    """A complete call block whose body could not be parsed; ``reason`` says why. ``id`` and
    ``written_id`` as in :class:`Call`."""

    id: str | None
    raw: str
    reason: str
    start: int
    end: int
    written_id: str | None = None


@dataclass(frozen=True, slots=True)
class Trap:
    """``[TRAP][END]``: the model waits for the next interrupt."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Interrupt:
    """A complete interrupt block. Only the runtime writes these; seen when parsing transcripts
    or injected text (a parser fed sampled text reports :class:`Forged` instead, see below)."""

    id: str | None
    payload: str
    start: int
    end: int


ForgedWhere = Literal["outside", "call"]


@dataclass(frozen=True, slots=True)
class Forged:
    """The model began writing something only the runtime may write: a result/interrupt marker
    (``[INTR``, ``[RESULT``, ``<tool_response``) outside a block, or inside a call block a
    forged result (``->``, any marker) or a newline after a body that already parses.

    ``start`` is where the forgery begins; the runtime rolls the context back to it. For
    ``where == "call"`` the call text before ``start`` is in ``call_raw`` and the runtime closes
    the call itself (the parser has already left the block and emitted the resulting
    :class:`Call` or :class:`MalformedCall` right after this event).
    """

    where: ForgedWhere
    marker: str
    start: int
    call_raw: str = ""


Event = Text | CallOpened | Call | MalformedCall | Trap | Interrupt | Forged


@dataclass(frozen=True, slots=True)
class Markers:
    """The marker strings. A model profile may map them to single special tokens."""

    call: str = "[CALL]"
    interrupt: str = "[INTR]"
    trap: str = "[TRAP]"
    head: str = "[HEAD]"
    end: str = "[END]"
    # Prefixes the model must never write outside a call (it tries to forge results).
    forbidden: tuple[str, ...] = field(default=("[INTR", "[RESULT", "<tool_response"))

    def all(self) -> tuple[str, ...]:
        return (self.call, self.interrupt, self.trap, self.head, self.end)


DEFAULT_MARKERS = Markers()
