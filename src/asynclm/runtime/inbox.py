"""The inbox of a run: finished calls, partial results and outside messages waiting for a safe
point, each under its delivery mode (:data:`~asynclm.tools.DeliveryMode`).

The executor pushes each finished call here (only injectable ones are kept) and each partial
result; a :class:`~asynclm.runtime.control.RunControl` pushes messages. The decode loop asks
whether something is *due* (:meth:`Inbox.due`: an ``interrupt`` item at any safe point, a
``when_idle`` one too when the model waits) and takes a batch (:meth:`Inbox.take`): what is due
plus every ``silent`` item, which never makes a batch on its own. A loop with nothing else to do
waits in :meth:`Inbox.wait_ready` and checks again.
"""

from __future__ import annotations

import asyncio

from asynclm.runtime.messages import Message
from asynclm.runtime.records import CallRecord, PartialResult
from asynclm.tools import DeliveryMode, check_delivery

Item = CallRecord | PartialResult | Message
"""What the inbox holds: a call's outcome, a partial result of a running call, a message."""


class Inbox:
    """FIFO of call records, partial results and messages to inject, with each call's delivery
    mode (``default`` for calls not routed, and for messages) and a wake-up for a waiting loop."""

    __slots__ = ("_changed", "_delivered", "_modes", "_queue", "default")

    def __init__(self, default: DeliveryMode = "interrupt") -> None:
        self.default: DeliveryMode = check_delivery(default)
        self._queue: list[Item] = []
        self._modes: dict[str, DeliveryMode] = {}
        self._delivered: set[str] = set()  # calls whose outcome has been taken
        self._changed = asyncio.Event()

    @property
    def ready(self) -> int:
        """How many items are queued (whatever their mode)."""
        return len(self._queue)

    # -- delivery modes ----------------------------------------------------------------------
    def mode_of(self, call_id: str) -> DeliveryMode:
        """The delivery mode of the call ``call_id`` (the default if it was never routed)."""
        return self._modes.get(call_id, self.default)

    def _mode(self, item: Item) -> DeliveryMode:
        return self.default if isinstance(item, Message) else self.mode_of(item.id)

    def route(self, call_id: str, mode: DeliveryMode) -> None:
        """Set the mode of ``call_id`` (the session does so when the call is emitted)."""
        self._modes[call_id] = check_delivery(mode)
        self._changed.set()

    def set_delivery(self, call_id: str, mode: DeliveryMode) -> bool:
        """Change the mode of ``call_id``, queued items included; False once its outcome has
        been taken for injection (too late: nothing changes)."""
        mode = check_delivery(mode)
        if call_id in self._delivered:
            return False
        self.route(call_id, mode)
        return True

    def knows(self, call_id: str) -> bool:
        """Whether ``call_id`` was routed (every call is, as it is emitted)."""
        return call_id in self._modes

    def delivered(self, call_id: str) -> bool:
        """Whether the outcome of ``call_id`` has been taken for injection."""
        return call_id in self._delivered

    # -- queue -------------------------------------------------------------------------------
    def push(self, record: CallRecord) -> None:
        """Queue a finished call; a fire-and-forget one (not ``injectable``) is dropped."""
        if record.injectable:
            self._queue.append(record)
            self._changed.set()

    def push_partial(self, partial: PartialResult) -> None:
        """Queue a partial result; one of a fire-and-forget call is dropped."""
        if partial.injectable:
            self._queue.append(partial)
            self._changed.set()

    def push_message(self, message: Message) -> None:
        """Queue a message from outside the model (see :class:`~asynclm.runtime.control.RunControl`)."""
        self._queue.append(message)
        self._changed.set()

    def due(self, *, idle: bool = True) -> bool:
        """Whether a batch is due: an ``interrupt`` item is queued, or (``idle``: the model
        waits) a ``when_idle`` one. ``silent`` items are never due by themselves."""
        for item in self._queue:
            mode = self._mode(item)
            if mode == "interrupt" or (idle and mode == "when_idle"):
                return True
        return False

    def take(self, *, idle: bool = True) -> list[Item]:
        """Remove and return, in order, what goes in the next batch: everything when ``idle``
        (the default), else the ``interrupt`` and ``silent`` items (``when_idle`` ones stay)."""
        if idle:
            batch, self._queue = self._queue, []
        else:
            batch = [i for i in self._queue if self._mode(i) != "when_idle"]
            self._queue = [i for i in self._queue if self._mode(i) == "when_idle"]
        self._delivered.update(i.id for i in batch if isinstance(i, CallRecord))
        if not self._queue:
            self._changed.clear()
        return batch

    def take_messages(self) -> list[Message]:
        """Remove and return the queued messages (results stay queued)."""
        msgs = [m for m in self._queue if isinstance(m, Message)]
        self._queue = [r for r in self._queue if not isinstance(r, Message)]
        if not self._queue:
            self._changed.clear()
        return msgs

    async def wait_ready(self) -> None:
        """Until something was queued or a mode changed since the last wait (at once if that
        happened before this call), or :meth:`wake` is called. The caller then checks again
        what it waits for: a ``silent`` item ends the wait but is never due."""
        await self._changed.wait()
        self._changed.clear()

    def wake(self) -> None:
        """End a :meth:`wait_ready` in progress even though nothing is queued."""
        self._changed.set()
