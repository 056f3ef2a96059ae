"""Per-call context handed to tools that ask for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["ToolContext"]


def _no_progress(message: str) -> None:
    """Default progress hook: drop the message."""


def _no_partial(value: Any) -> None:
    """Default partial-result hook: drop the value."""


@dataclass(eq=False)
class ToolContext:
    """What a running call may know about itself.

    A tool receives it by declaring a parameter annotated ``ToolContext`` (any name); that
    parameter is left out of the tool's JSON Schema and injected at call time.

    - ``call_id`` / ``tool_name``: identity of the call.
    - ``cancelled()``: true once the runtime has timed out or cancelled the call. Sync tools run
      in a worker thread that cannot be interrupted, so long-running ones should poll this (or
      wait on ``cancel_event``) and return early.
    - ``progress(message)``: report progress; the runtime sets ``on_progress``. It may be called
      from a worker thread, so a runtime hook must be thread-safe (e.g. ``call_soon_threadsafe``).
    - ``partial(value)``: deliver a partial result to the model (an interrupt marked partial,
      under the call's delivery mode); the call's return value is still its one result. Like
      ``progress``, callable from a worker thread; ignored once the call has ended. A generator
      tool's yields go here.
    """

    call_id: str = ""
    tool_name: str = ""
    on_progress: Callable[[str], None] = _no_progress
    on_partial: Callable[[Any], None] = _no_partial
    _event: threading.Event | None = field(default=None, repr=False)
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def cancel_event(self) -> threading.Event:
        """Set when the call is timed out or cancelled (created on first use: most calls never
        need it)."""
        if self._event is None:
            with self._lock:
                if self._event is None:
                    self._event = threading.Event()
        return self._event

    def cancelled(self) -> bool:
        """Whether the call has been timed out or cancelled."""
        return self._event is not None and self._event.is_set()

    def cancel(self) -> None:
        """Mark the call cancelled (runtime side; idempotent, thread-safe)."""
        self.cancel_event.set()

    def progress(self, message: str) -> None:
        """Report a progress message through ``on_progress``."""
        self.on_progress(message)

    def partial(self, value: Any) -> None:
        """Deliver a partial result through ``on_partial``."""
        self.on_partial(value)
