"""Steering a running session from outside: inject a message as an interrupt, cancel a call.

A :class:`RunControl` is handed to :meth:`Session.run` (or ``stream``). While the run is live,
:meth:`RunControl.interrupt` queues a message on the run's interrupt manager: it is injected at
the next safe point (never inside a ``[CALL] … [END]`` block), in the same batch as any results
ready then, rendered ``[INTR] <sender> [HEAD] message from <sender>: <text> [END]`` with the text
escaped like any untrusted payload. Messages sent before the run starts wait for it.
:meth:`RunControl.set_delivery` changes when one call's results are delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from asynclm.errors import SessionClosedError
from asynclm.protocol.ids import is_call_id
from asynclm.runtime.messages import Message
from asynclm.tools import DeliveryMode, check_delivery

if TYPE_CHECKING:
    from asynclm.runtime.executor import Executor
    from asynclm.runtime.inbox import Inbox


class RunControl:
    """Steers one run. ``wait_on_trap``: a trap with no call pending waits for a message
    (agents waiting for each other) instead of counting as an empty trap; the session's
    ``deadline_s`` still bounds the wait. ``max_text_chars`` bounds one message.
    ``on_undelivered`` is told about messages still queued when the run ended."""

    def __init__(
        self, *, wait_on_trap: bool = False, max_text_chars: int = 8000,
        on_undelivered: Callable[[list[Message]], None] | None = None,
    ) -> None:
        self.wait_on_trap = wait_on_trap
        self.max_text_chars = max_text_chars
        self._on_undelivered = on_undelivered
        self._early: list[Message] = []
        self._inbox: Inbox | None = None
        self._executor: Executor | None = None
        self._state: str = "new"  # new → running → ended

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def ended(self) -> bool:
        return self._state == "ended"

    def interrupt(self, text: str, *, sender: str = "user") -> Message:
        """Queue ``text`` from ``sender`` (an id: letters, digits, ``_`` and ``-``) for injection
        at the next safe point. Raises :class:`SessionClosedError` once the run has ended and
        ``ValueError`` for an invalid sender or an empty or oversized text."""
        if not is_call_id(sender):
            raise ValueError(f"invalid sender {sender!r}: use letters, digits, _ and - (max 64)")
        if not text.strip():
            raise ValueError("empty message")
        if len(text) > self.max_text_chars:
            raise ValueError(f"message longer than {self.max_text_chars} characters")
        if self._state == "ended":
            raise SessionClosedError("the session has ended")
        msg = Message(sender, text)
        if self._inbox is None:
            self._early.append(msg)
        else:
            self._inbox.push_message(msg)
        return msg

    def stop_waiting(self) -> None:
        """Turn ``wait_on_trap`` off: a trap now waiting for a message returns (used when
        nobody is left to send one)."""
        self.wait_on_trap = False
        if self._inbox is not None:
            self._inbox.wake()

    def set_delivery(self, call_id: str, mode: DeliveryMode) -> bool:
        """Deliver the results of the call ``call_id`` (its partial results and its outcome,
        queued ones included) ``"interrupt"``, ``"when_idle"`` or ``"silent"`` (see
        :data:`~asynclm.tools.DeliveryMode`), whatever its tool or
        ``SessionConfig.delivery_for`` said. Call it from the ``call.emitted`` event on, until
        the outcome is delivered. False if the run is not live, the call is unknown or its
        outcome has already been delivered; ``ValueError`` for an unknown mode."""
        mode = check_delivery(mode)
        if self._inbox is None or not self._inbox.knows(call_id):
            return False
        return self._inbox.set_delivery(call_id, mode)

    def cancel_call(self, call_id: str, reason: str = "cancelled by request") -> bool:
        """Cancel a live call (it ends ``cancelled`` and that outcome is injected). False if
        the run is not live or the call is unknown or already ended."""
        if self._executor is None or call_id not in self._executor:
            return False
        return self._executor.cancel(call_id, reason)

    # -- used by the session -------------------------------------------------------------
    def _attach(self, inbox: Inbox, executor: Executor) -> None:
        if self._state != "new":
            raise RuntimeError("a RunControl steers one run only")
        self._state = "running"
        self._inbox, self._executor = inbox, executor
        for msg in self._early:
            inbox.push_message(msg)
        self._early = []

    def _detach(self) -> None:
        self._state = "ended"
        left = self._inbox.take_messages() if self._inbox is not None else self._early
        self._early = []
        self._inbox = self._executor = None
        if left and self._on_undelivered is not None:
            self._on_undelivered(left)
