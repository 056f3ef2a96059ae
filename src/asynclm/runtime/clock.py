"""Virtual time for the simulator.

:func:`run_virtual` runs a coroutine on an asyncio event loop whose clock jumps straight to the
next scheduled timer whenever nothing is ready to run. ``asyncio.sleep``, ``asyncio.timeout`` and
``loop.call_later`` all work unchanged, so the runtime is clock-agnostic: it reads
``loop.time()`` and never knows whether time is real.

Timestamps are read with :func:`loop_clock` (``loop.time`` on asyncio's own loops, virtual
ones included; ``time.monotonic`` on others such as uvloop, whose ``loop.time`` counts whole
milliseconds); it and :func:`now` live in :mod:`asynclm._clock`, below the engines, and are
re-exported here.

Contract: under virtual time, only timers advance the clock. Work done in threads (sync tools,
blocking engines: anything sent through ``loop.run_in_executor``) takes no virtual time: while
such work runs, the loop waits for it in real time before it lets the clock jump to the next
timer, for up to :data:`THREAD_HOLD_S` real seconds per wait (so that a thread blocked until its
timeout cannot freeze the run). Use it with the simulated engine and simulated tools; use real
time for everything else.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asynclm._clock import loop_clock, now

__all__ = ["THREAD_HOLD_S", "VirtualTimeLoop", "loop_clock", "now", "run_virtual"]

T = TypeVar("T")

THREAD_HOLD_S = 1.0
"""How long (real seconds) a virtual-time loop waits for a job running in its threads before it
lets the clock jump to the next timer anyway."""


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector, but instead of sleeping until the next timer it advances
    the loop's virtual clock by the timeout."""

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self._inner = inner
        self.now = 0.0
        self.threads = 0  # run_in_executor jobs not yet done
        self.hold_until = 0.0  # real time until which the clock waits for them

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
        if self.threads:  # thread work takes no virtual time: wait for it (really), bounded
            left = self.hold_until - time.monotonic()
            if left > 0:
                ready = self._inner.select(left)
                if ready:
                    return ready  # woken by a thread (its job done): time stood still
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

    def run_in_executor(  # type: ignore[override]  # typeshed's signature uses TypeVarTuple
        self, executor: Any, func: Callable[..., T], *args: Any,
    ) -> asyncio.Future[T]:
        """As asyncio's, counting the job as thread work the clock waits for (module doc)."""
        fut = super().run_in_executor(executor, func, *args)
        sel = self._vselector
        sel.threads += 1
        sel.hold_until = max(sel.hold_until, time.monotonic() + THREAD_HOLD_S)
        fut.add_done_callback(self._thread_done)
        return fut

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self._vselector.threads -= 1

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Wait for the worker threads without a timeout: they run in real time, so a timeout
        on the virtual clock (``asyncio.Runner`` passes 300 s from Python 3.12 on) would expire
        at once, warn, and leave the threads running."""
        await super().shutdown_default_executor()


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)
