"""The clock every timestamp of a run is read from: the running event loop's.

Below the engines and the runtime (both timestamp with it); :mod:`asynclm.runtime.clock`
re-exports it beside the virtual-time loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["loop_clock", "now"]


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
