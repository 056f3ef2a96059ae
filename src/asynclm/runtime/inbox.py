"""The inbox of a run: finished calls and outside messages waiting for the next safe point.

The executor pushes each finished call here (only injectable ones are kept), a
:class:`~asynclm.runtime.control.RunControl` pushes messages; the decode loop takes everything
ready at a safe point, as one batch, and renders it (:class:`InterruptManager`). A loop with
nothing else to do waits in :meth:`Inbox.wait_ready`.
"""

from __future__ import annotations

import asyncio

from asynclm.runtime.messages import Message
from asynclm.runtime.records import CallRecord


class Inbox:
    """FIFO of call records and messages to inject, with a wake-up for a waiting loop."""

    __slots__ = ("_queue", "_ready", "_woken")

    def __init__(self) -> None:
        self._queue: list[CallRecord | Message] = []
        self._ready = asyncio.Event()
        self._woken = False

    @property
    def ready(self) -> int:
        """How many items are queued."""
        return len(self._queue)

    def push(self, record: CallRecord) -> None:
        """Queue a finished call; a fire-and-forget one (not ``injectable``) is dropped."""
        if record.injectable:
            self._queue.append(record)
            self._ready.set()

    def push_message(self, message: Message) -> None:
        """Queue a message from outside the model (see :class:`~asynclm.runtime.control.RunControl`)."""
        self._queue.append(message)
        self._ready.set()

    def take(self) -> list[CallRecord | Message]:
        """Remove and return everything queued, in order."""
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
