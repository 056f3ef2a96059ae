"""Virtual time for the simulator.

:func:`run_virtual` runs a coroutine on an asyncio event loop whose clock jumps straight to the
next scheduled timer whenever nothing is ready to run. ``asyncio.sleep``, ``asyncio.timeout`` and
``loop.call_later`` all work unchanged, so the runtime is clock-agnostic: it reads
``loop.time()`` and never knows whether time is real.

Timestamps are read with :func:`loop_clock` (``loop.time`` on asyncio's own loops, virtual
ones included; ``time.monotonic`` on others such as uvloop, whose ``loop.time`` counts whole
milliseconds).

Contract: under virtual time, only timers advance the clock. Work done in threads (sync tools,
blocking engines) takes no virtual time, and a timer due while such work runs fires first. Use it
with the simulated engine and simulated tools; use real time for everything else.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector, but instead of sleeping until the next timer it advances
    the loop's virtual clock by the timeout."""

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self._inner = inner
        self.now = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # nothing scheduled: only another thread can wake us
            return self._inner.select(None)
        self.now += timeout
        return []

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, starting at 0.0."""

    def __init__(self) -> None:
        self._vselector = _VirtualSelector(selectors.DefaultSelector())
        super().__init__(self._vselector)

    def time(self) -> float:
        return self._vselector.now

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Wait for the worker threads without a timeout: they run in real time, so a timeout
        on the virtual clock (``asyncio.Runner`` passes 300 s from Python 3.12 on) would expire
        at once, warn, and leave the threads running."""
        await super().shutdown_default_executor()


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The clock to timestamp with on ``loop``, in seconds: ``loop.time`` on loops built on
    asyncio's ``BaseEventLoop`` (its real clock is ``time.monotonic``; virtual time is kept), else
    ``time.monotonic``: uvloop's ``loop.time`` counts whole milliseconds, fixed for a whole loop
    iteration, too coarse for decode steps and the runtime's own costs. Every timestamp of a run
    comes from this one clock."""
    return loop.time if isinstance(loop, asyncio.BaseEventLoop) else time.monotonic


def now() -> float:
    """The running loop's clock (virtual or real, see :func:`loop_clock`), in seconds."""
    return loop_clock(asyncio.get_running_loop())()
