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
from typing import Literal

from asynclm.protocol import DEFAULT_MARKERS, Markers, escape_payload, format_value
from asynclm.runtime.control import Message
from asynclm.runtime.records import CallRecord


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
    ``always``, ``never``, or ``auto`` (only calls the runtime named, and errors)."""

    def __init__(
        self, *, markers: Markers = DEFAULT_MARKERS, echo: Literal["auto", "always", "never"] = "auto",
        max_value_chars: int = 2000,
    ) -> None:
        self._markers = markers
        self._echo = echo
        self._max_value_chars = max_value_chars
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

    def payload(self, rec: CallRecord) -> str:
        """The (unescaped) payload text for one record."""
        if rec.status == "ok":
            result = format_value(rec.value, max_chars=self._max_value_chars)
        elif rec.status == "error":
            result = f"error: {rec.error}"
        else:
            result = f"{rec.status}: {rec.error}" if rec.error else rec.status
        if rec.repeat_of is not None:  # not run again: say so, or the model may loop on it
            return f"{self.body(rec)} -> same call as {rec.repeat_of}, same result: {result}"
        if self._echo == "never" or (
            self._echo == "auto" and not rec.id_assigned and rec.status == "ok"
        ):
            return result
        return f"{self.body(rec)} -> {result}"

    def body(self, rec: CallRecord) -> str:
        """The call as the model wrote it (between ``[HEAD]`` and ``[END]``)."""
        return self.body_of(rec.raw)

    def body_of(self, raw: str) -> str:
        """The part of a call block's text between ``[HEAD]`` and ``[END]`` (its id left out)."""
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
                head, payload = rec.sender, f"message from {rec.sender}: {rec.text}"
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
