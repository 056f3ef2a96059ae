"""The interrupt manager: queues finished calls and renders them as interrupt blocks.

Results are injected only at safe points (never inside a call block being written); every result
ready at that moment goes in one batch. Payloads are untrusted: they are escaped so they can
never form a marker, and the engine tokenizes them with special-token parsing off. Markup is the
only text tokenized with special tokens on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from asynclm.protocol import DEFAULT_MARKERS, Markers, escape_payload, format_value
from asynclm.runtime.control import Message
from asynclm.runtime.records import CallRecord

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


def describe_unrenderable(exc: BaseException) -> str:
    """The error text of an ``UnrenderableResult`` outcome (never raises, bounded)."""
    try:
        msg = str(exc)
    except BaseException:  # noqa: BLE001 - an exception whose __str__ fails still has a type
        msg = ""
    name = type(exc).__name__
    detail = f"{name}: {msg}" if msg else name
    return _cut(f"the tool's result could not be rendered as text ({detail})", 300)


def _cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and ``…(truncated N chars)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(truncated {len(text) - limit} chars)"


@dataclass(frozen=True, slots=True)
class Segment:
    """A piece of interrupt text; ``trusted`` pieces (markup) may contain special tokens."""

    text: str
    trusted: bool


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


class InterruptManager:
    """FIFO of records to inject. ``echo``: the payload repeats the call
    (``c1 [HEAD] f(x=1) -> 42``), which lets models that omit ids match results to calls:
    ``always``, ``never``, or ``auto`` (only calls the runtime named, and errors).

    Payload size: a result, an error text or a message text is cut to ``max_value_chars``, the
    echo of a call (or a message's sender) to ``max_echo_chars``; no payload (before escaping)
    is longer than :attr:`max_payload_chars`, whatever the model or the tools wrote. A record's
    ``rendered`` text (set by the executor) is used as is; a record without one is rendered
    here (a failure to render becomes an error text, never an exception)."""

    def __init__(
        self, *, markers: Markers = DEFAULT_MARKERS, echo: Literal["auto", "always", "never"] = "auto",
        max_value_chars: int = DEFAULT_RESULT_CHARS, max_echo_chars: int = DEFAULT_ECHO_CHARS,
    ) -> None:
        self._markers = markers
        self._echo = echo
        self._max_value_chars = max_value_chars
        self._max_echo_chars = max_echo_chars
        self._queue: list[CallRecord | Message] = []
        self._ready = asyncio.Event()
        self._woken = False

    @property
    def ready(self) -> int:
        return len(self._queue)

    def push(self, record: CallRecord) -> None:
        if record.injectable:
            self._queue.append(record)
            self._ready.set()

    def push_message(self, message: Message) -> None:
        """Queue a message from outside the model (see :class:`~asynclm.runtime.control.RunControl`)."""
        self._queue.append(message)
        self._ready.set()

    def take(self) -> list[CallRecord | Message]:
        batch, self._queue = self._queue, []
        self._ready.clear()
        return batch

    def take_messages(self) -> list[Message]:
        """Remove and return the queued messages (results stay queued)."""
        msgs = [m for m in self._queue if isinstance(m, Message)]
        self._queue = [r for r in self._queue if not isinstance(r, Message)]
        if not self._queue:
            self._ready.clear()
        return msgs

    async def wait_ready(self) -> None:
        """Until something is queued, or :meth:`wake` is called."""
        await self._ready.wait()
        if self._woken and not self._queue:
            self._ready.clear()
        self._woken = False

    def wake(self) -> None:
        """End a :meth:`wait_ready` in progress even though nothing is queued."""
        self._woken = True
        self._ready.set()

    @property
    def max_payload_chars(self) -> int:
        """No payload (unescaped) is longer: ``max_value_chars + max_echo_chars`` and a fixed
        allowance for the words around them (-1, no bound, if either limit is negative)."""
        if self._max_value_chars < 0 or self._max_echo_chars < 0:
            return -1
        return self._max_value_chars + self._max_echo_chars + _PAYLOAD_SLACK

    def payload(self, rec: CallRecord) -> str:
        """The (unescaped) payload text for one record, at most :attr:`max_payload_chars`."""
        if rec.status == "ok":
            result = rec.rendered if rec.rendered is not None else self._render(rec.value)
        elif rec.status == "error":
            result = f"error: {self._cut_value(f'{rec.error}')}"
        else:
            result = f"{rec.status}: {self._cut_value(rec.error)}" if rec.error else rec.status
        if rec.repeat_of is not None:  # not run again: say so, or the model may loop on it
            text = f"{self.body(rec)} -> same call as {rec.repeat_of}, same result: {result}"
        elif self._echo == "never" or (
            self._echo == "auto" and not rec.id_assigned and rec.status == "ok"
        ):
            text = result
        else:
            text = f"{self.body(rec)} -> {result}"
        return self._cut_payload(text)

    def _render(self, value: Any) -> str:
        try:
            return render_result(value, max_chars=self._max_value_chars)
        except BaseException as exc:  # noqa: BLE001 - rendering is synchronous: no cancellation
            return f"error: {describe_unrenderable(exc)}"

    def _cut_value(self, text: str) -> str:
        return _cut(text, self._max_value_chars) if self._max_value_chars >= 0 else text

    def _cut_echo(self, text: str) -> str:
        return _cut(text, self._max_echo_chars) if self._max_echo_chars >= 0 else text

    def _cut_payload(self, text: str) -> str:
        limit = self.max_payload_chars
        if limit < 0 or len(text) <= limit:
            return text
        return _cut(text, max(limit - 40, 0))  # room for the note; a safety net, seldom used

    def body(self, rec: CallRecord) -> str:
        """The call as the model wrote it (between ``[HEAD]`` and ``[END]``), cut to
        ``max_echo_chars`` for its echo in a payload."""
        return self._cut_echo(self.body_of(rec.raw))

    def body_of(self, raw: str) -> str:
        """The part of a call block's text between ``[HEAD]`` and ``[END]`` (its id left out),
        whole (it identifies repeated calls): :meth:`body` is the bounded echo."""
        m = self._markers
        if raw.startswith(m.call):
            raw = raw[len(m.call):]
        if raw.rstrip().endswith(m.end):
            raw = raw.rstrip()[: -len(m.end)]
        head = raw.find(m.head)
        return (raw[head + len(m.head):] if head >= 0 else raw).strip()

    def render(self, batch: Sequence[CallRecord | Message]) -> list[Segment]:
        m = self._markers
        out: list[Segment] = []
        for rec in batch:
            if isinstance(rec, Message):
                head, sender, text = rec.sender, self._cut_echo(rec.sender), self._cut_value(rec.text)
                payload = self._cut_payload(f"message from {sender}: {text}")
            else:
                head, payload = rec.id, self.payload(rec)
            # The space after [HEAD] goes with the payload: tokenized together, they give the
            # tokens the model would see if the text were in its prompt (" {", not " " + "{").
            opening, closing = self.markup(head)
            out.append(Segment(opening, trusted=True))
            out.append(Segment(" " + escape_payload(payload, markers=m), trusted=False))
            out.append(Segment(closing, trusted=True))
        return out

    def markup(self, head: str) -> tuple[str, str]:
        """The trusted text around the payload of the interrupt headed ``head`` (a call id)."""
        m = self._markers
        return f"{m.interrupt} {head} {m.head}", f" {m.end}\n"
