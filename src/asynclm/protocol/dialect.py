"""The dialect seam: everything the model reads or writes, for one markup.

A :class:`Dialect` is the only owner of a wire format. The runtime (``asynclm.runtime``) and the
simulator's policies (``asynclm.testing.sim``) never build markup strings: they ask the session's
dialect to parse what the model samples, and to write calls, interrupts, traps and the protocol
section of the system prompt. :class:`~asynclm.protocol.cml.CmlDialect` (the context markup,
``[CALL] id [HEAD] f(x=1) [END]``) is the first implementation; native tool-call formats
(``hermes``, ``llama3``, ``mistral``, ``pythonic``) are later ones.

Contracts every dialect keeps
-----------------------------
* **Parsing** (:meth:`Dialect.parser`): a fresh sans-I/O :class:`StreamParser` per
  conversation, emitting :mod:`asynclm.protocol.events`; any chunking of the same stream gives
  the same events (Text coalesced); with ``transcript=False`` what only the runtime may write
  (a result frame) is reported as :class:`~asynclm.protocol.events.Forged`.
* **Trust**: :meth:`Dialect.render_interrupt` returns :class:`Segment` pieces; ``trusted`` ones
  (markup) may be tokenized with special tokens on, the others (untrusted payload text: tool
  results, messages) are escaped with :meth:`Dialect.escape_payload` and must be tokenized with
  special tokens off (the engines' ``tokenize(special=False)`` then keeps any text out of the
  model's added tokens). Nothing in a payload can end the frame or open a call.
* **Round trip**: a call written with :meth:`Dialect.render_call` parses back to one
  :class:`~asynclm.protocol.events.Call` with the same id, function and arguments.
* **Ids** follow :mod:`asynclm.protocol.ids`.

Payload wording (what a result, an error, an echo, a message or a partial result says) is the
dialect's too: :meth:`Dialect.echo`, :meth:`Dialect.error`, :meth:`Dialect.message`,
:meth:`Dialect.partial`. The runtime decides *what* to deliver (which record, its echo policy,
size limits, when: its delivery mode); the dialect decides *how it reads*.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from asynclm.protocol.events import Event
from asynclm.protocol.stream_args import ArgumentsReader

__all__ = [
    "Delivery", "Dialect", "ReadsArguments", "Segment", "StreamParser", "tokenize_segments",
]


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of text for the context; ``trusted`` pieces (markup) may contain special tokens."""

    text: str
    trusted: bool


@dataclass(frozen=True, slots=True)
class Delivery:
    """One item of an interrupt: ``head`` names what it answers (a call id, or a message's
    sender), ``payload`` is its text, unescaped and already cut to size by the runtime (see
    :meth:`Dialect.echo`, :meth:`Dialect.error`, :meth:`Dialect.message` for its wording)."""

    head: str
    payload: str


class StreamParser(Protocol):
    """An incremental parser for one stream (one conversation). Sans I/O."""

    def feed(self, text: str) -> list[Event]:
        """The events that ``text`` (the next piece of the stream) makes certain."""
        ...

    def close(self) -> list[Event]:
        """End of stream: flush what is held back."""
        ...

    @property
    def at_safe_point(self) -> bool:
        """Outside every block, nothing held back: the only moments text may be injected."""
        ...

    @property
    def offset(self) -> int:
        """Characters accepted so far (event offsets are into this stream)."""
        ...


@runtime_checkable
class Dialect(Protocol):
    """One markup: how calls, results, traps and the protocol rules are written and read."""

    @property
    def name(self) -> str:
        """Short name (``"cml"``), shown in traces and reports."""
        ...

    # -- what the model writes -------------------------------------------------------------
    def parser(self, *, transcript: bool = False) -> StreamParser:
        """A new incremental parser. ``transcript=True`` reads whole contexts (interrupts are
        events, nothing is forged); ``False`` reads what the model samples (enforcement)."""
        ...

    @property
    def forged_markers(self) -> tuple[str, ...]:
        """Lower-case strings the model must never write itself (result/interrupt frames):
        the parser rolls them back; :meth:`count_forged` counts them in a transcript."""
        ...

    def count_forged(self, sampled: str) -> int:
        """How many :attr:`forged_markers` the sampled text holds (ASCII case-insensitive)."""
        ...

    def close_call(self) -> str:
        """Trusted text that closes a call block the model left unfinished (the runtime appends
        it after rolling back a forgery inside a call)."""
        ...

    def call_body(self, raw: str) -> str:
        """The call as the model wrote it, without its frame or id, from the ``raw`` text of a
        :class:`~asynclm.protocol.events.Call`: what an echo repeats, and the identity of a
        call that did not parse."""
        ...

    # -- what the runtime (or a scripted model) writes ---------------------------------------
    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """A call block that :meth:`parser` reads back as exactly this call."""
        ...

    def render_trap(self) -> str:
        """What the model writes to wait for the next interrupt."""
        ...

    def render_interrupt(self, items: Sequence[Delivery]) -> list[Segment]:
        """One batch of deliveries (injected together at one safe point) as segments of trusted
        markup and escaped, untrusted payload text."""
        ...

    def interrupt_markup(self, head: str) -> tuple[str, str]:
        """The trusted text before and after the payload of the item headed ``head`` (so a
        caller may tokenize it ahead of time: it repeats)."""
        ...

    def escape_payload(self, text: str) -> str:
        """Untrusted ``text`` made safe to place in an interrupt payload: it can form no
        marker or forbidden prefix of this dialect."""
        ...

    # -- payload wording -----------------------------------------------------------------------
    def echo(self, body: str, result: str, *, same_as: str | None = None) -> str:
        """A payload that repeats the call (``body``, from :meth:`call_body`) before its
        ``result``; ``same_as``: the call was not run again, its result is that call's."""
        ...

    def error(self, status: str, text: str | None) -> str:
        """The payload of a call that did not end ``ok`` (``status``: ``error``, ``timeout``,
        ``cancelled``, ...), with its error text (``None``: none)."""
        ...

    def message(self, sender: str, text: str) -> str:
        """The payload of a message from outside the model (a user, another agent)."""
        ...

    def partial(self, result: str) -> str:
        """The payload of a partial result of a call still running (its head is the call's
        id, like its result's): it must read as not final. A result delivered *silently*
        needs no wording of its own: it is written like any other result."""
        ...

    # -- the system prompt ----------------------------------------------------------------------
    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """The protocol section of the system prompt with the tool list ``tools`` in its place;
        with ``futures``, the rules for ``$id`` references too."""
        ...

    @property
    def special_tokens(self) -> tuple[str, ...]:
        """Markup strings a model profile may map to single special tokens (the simulator's
        tokenizer makes each one token)."""
        ...


@runtime_checkable
class ReadsArguments(Protocol):
    """An optional part of a :class:`Dialect`: reading a call's arguments while the model
    writes them (tools declared with ``streaming_args`` start before the block closes). A
    dialect without it still works: such tools then start when the call is complete."""

    def arguments_reader(self) -> ArgumentsReader | None:
        """A fresh incremental reader of one call block's arguments (see
        :mod:`asynclm.protocol.stream_args`), fed the block's text from its start as the model
        writes it; it reports each argument once complete. ``None``: not for this dialect."""
        ...


def tokenize_segments(
    tokenize: Callable[..., list[int]], segments: Iterable[Segment],
    cache: dict[str, list[int]] | None = None,
) -> list[int]:
    """The tokens of ``segments``, each tokenized on its own: markup with special tokens on
    (memoized in ``cache``: it repeats), payloads with special tokens off."""
    tokens: list[int] = []
    for seg in segments:
        if not seg.trusted:
            tokens += tokenize(seg.text, special=False)
        elif cache is None:
            tokens += tokenize(seg.text, special=True)
        else:
            toks = cache.get(seg.text)
            if toks is None:
                toks = cache[seg.text] = tokenize(seg.text, special=True)
            tokens += toks
    return tokens
