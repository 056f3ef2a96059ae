"""The interrupt manager: queues finished calls and renders them as interrupt blocks.

Results are injected only at safe points (never inside a call block being written); every result
ready at that moment goes in one batch. This module decides *what* is delivered (which records,
whether a payload echoes its call, size limits); the session's
:class:`~asynclm.protocol.Dialect` writes it (payload wording, markup, escaping): no markup
string is built here. Payloads are untrusted: the dialect escapes them so they can never form a
marker, and the engine tokenizes them with special-token parsing off. Markup is the only text
tokenized with special tokens on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from asynclm.errors import describe
from asynclm.protocol import (
    DEFAULT_MARKERS,
    CmlDialect,
    Delivery,
    Dialect,
    Markers,
    Segment,
    format_value,
    tokenize_segments,
)
from asynclm.protocol.markup import truncate
from asynclm.runtime.messages import Message
from asynclm.runtime.records import CallRecord, PartialResult

__all__ = [
    "DEFAULT_ECHO_CHARS", "DEFAULT_RESULT_CHARS", "Framed", "InterruptManager", "Segment",
    "describe_unrenderable", "opens_turn", "render_result", "tokenize_segments",
]
# Segment and tokenize_segments live in asynclm.protocol.dialect; re-exported for callers.


DEFAULT_RESULT_CHARS = 2000
"""Length limit of a rendered result (and of an error text) in an interrupt payload."""

DEFAULT_ECHO_CHARS = 1000
"""Length limit of the echo of a call (and of a message's sender) in an interrupt payload."""

_PAYLOAD_SLACK = 256
"""Room for the fixed words of a payload, an id and the ``…(truncated N chars)`` notes."""


def render_result(value: Any, *, max_chars: int = DEFAULT_RESULT_CHARS) -> str:
    """A tool result as the text of its interrupt (:func:`~asynclm.protocol.format_value`).

    Bounded cost and length. Raises what the value's own methods raise that is not an
    ``Exception`` (``SystemExit`` from its ``__repr__``, ...): the executor, which renders each
    result once when its call ends, turns that into an ``UnrenderableResult`` error outcome."""
    return format_value(value, max_chars=max_chars)


@runtime_checkable
class Framed(Protocol):
    """A dialect that says where its results go (the native dialects,
    :class:`~asynclm.protocol.native.NativeDialect`): ``"turn"``, a tool turn of their own (an
    interrupt closes the assistant's turn first), or ``"inline"``, inside the assistant's
    turn."""

    @property
    def framing(self) -> str: ...


def opens_turn(dialect: Dialect) -> bool:
    """Whether ``dialect``'s interrupts begin by closing the assistant's turn (turn framing):
    such an interrupt goes right where the model stopped (after a call block, or where its
    end-of-turn token was rolled back), with no line break before it. CML and inline framing:
    an interrupt starts on a line of its own."""
    return isinstance(dialect, Framed) and dialect.framing == "turn"


def describe_unrenderable(exc: BaseException) -> str:
    """The error text of an ``UnrenderableResult`` outcome (never raises, bounded)."""
    return truncate(f"the tool's result could not be rendered as text ({describe(exc)})", 300)


class InterruptManager:
    """Renders a batch of finished records and messages (taken from the
    :class:`~asynclm.runtime.inbox.Inbox`) as interrupts, through ``dialect`` (default: CML with
    ``markers``).
    ``echo``: the payload repeats the call (in CML ``f(x=1) -> 42``), which lets models that
    omit ids match results to calls: ``always``, ``never``, or ``auto`` (only calls the runtime
    named, and errors).

    Payload size: a result, an error text or a message text is cut to ``max_value_chars``, the
    echo of a call (or a message's sender) to ``max_echo_chars``; no payload (before escaping)
    is longer than :attr:`max_payload_chars`, whatever the model or the tools wrote. A record's
    ``rendered`` text (set by the executor) is used as is; a record without one is rendered
    here (a failure to render becomes an error text, never an exception)."""

    def __init__(
        self, *, markers: Markers = DEFAULT_MARKERS, echo: Literal["auto", "always", "never"] = "auto",
        max_value_chars: int = DEFAULT_RESULT_CHARS, max_echo_chars: int = DEFAULT_ECHO_CHARS,
        dialect: Dialect | None = None,
    ) -> None:
        self.dialect: Dialect = dialect if dialect is not None else CmlDialect(markers)
        """Writes every interrupt (and knows how a call reads: :meth:`body_of`)."""
        self.opens_turn = opens_turn(self.dialect)
        """An interrupt closes the model's turn first (:func:`opens_turn`): the loop puts no
        line break before it."""
        self.trap_ends_turn = isinstance(self.dialect, Framed)
        """The dialect's trap is the end of the model's turn (a native dialect: the model
        waits by ending its turn): the loop rolls it back before results go in, as it rolls
        back an end-of-generation token."""
        self._echo = echo
        self._max_value_chars = max_value_chars
        self._max_echo_chars = max_echo_chars

    @property
    def max_payload_chars(self) -> int:
        """No payload (unescaped) is longer: ``max_value_chars + max_echo_chars`` and a fixed
        allowance for the words around them (-1, no bound, if either limit is negative)."""
        if self._max_value_chars < 0 or self._max_echo_chars < 0:
            return -1
        return self._max_value_chars + self._max_echo_chars + _PAYLOAD_SLACK

    def payload(self, rec: CallRecord) -> str:
        """The (unescaped) payload text for one record, at most :attr:`max_payload_chars`."""
        d = self.dialect
        if rec.status == "ok":
            result = rec.rendered if rec.rendered is not None else self._render(rec.value)
        elif rec.status == "error":
            result = d.error("error", self._cut_value(f"{rec.error}"))
        else:
            result = d.error(rec.status, self._cut_value(rec.error) if rec.error else None)
        if rec.repeat_of is not None:  # not run again: say so, or the model may loop on it
            text = d.echo(self.body(rec), result, same_as=rec.repeat_of)
        elif self._echo == "never" or (
            self._echo == "auto" and not rec.id_assigned and rec.status == "ok"
        ):
            text = result
        else:
            text = d.echo(self.body(rec), result)
        return self._cut_payload(text)

    def _render(self, value: Any) -> str:
        try:
            return render_result(value, max_chars=self._max_value_chars)
        except BaseException as exc:  # noqa: BLE001 - rendering is synchronous: no cancellation
            return self.dialect.error("error", describe_unrenderable(exc))

    def _cut_value(self, text: str) -> str:
        return truncate(text, self._max_value_chars)

    def _cut_echo(self, text: str) -> str:
        return truncate(text, self._max_echo_chars)

    def _cut_payload(self, text: str) -> str:
        limit = self.max_payload_chars
        if limit < 0 or len(text) <= limit:
            return text
        return truncate(text, max(limit - 40, 0))  # room for the note; a safety net, seldom used

    def body(self, rec: CallRecord) -> str:
        """The call as the model wrote it (without its frame and id), cut to
        ``max_echo_chars`` for its echo in a payload."""
        return self._cut_echo(self.body_of(rec.raw))

    def body_of(self, raw: str) -> str:
        """The call as the model wrote it, whole (it identifies repeated calls):
        the dialect's :meth:`~asynclm.protocol.Dialect.call_body`; :meth:`body` is the bounded
        echo."""
        return self.dialect.call_body(raw)

    def deliveries(self, batch: Sequence[CallRecord | PartialResult | Message]) -> list[Delivery]:
        """What ``batch`` delivers: each record's, partial result's or message's head and
        payload (unescaped; a partial result reads as one, in the dialect's wording)."""
        out: list[Delivery] = []
        for rec in batch:
            if isinstance(rec, PartialResult):
                out.append(Delivery(rec.call_id, self.dialect.partial(rec.rendered)))
            elif isinstance(rec, Message):
                sender, text = self._cut_echo(rec.sender), self._cut_value(rec.text)
                payload = self._cut_payload(self.dialect.message(sender, text))
                out.append(Delivery(rec.sender, payload))
            else:
                out.append(Delivery(rec.id, self.payload(rec)))
        return out

    def render(self, batch: Sequence[CallRecord | PartialResult | Message]) -> list[Segment]:
        """``batch`` as one interrupt: trusted markup and escaped payload segments."""
        return self.dialect.render_interrupt(self.deliveries(batch))

    def markup(self, head: str) -> tuple[str, str]:
        """The trusted text around the payload of the interrupt headed ``head`` (a call id)."""
        return self.dialect.interrupt_markup(head)
