"""The runtime's clock: loop.time on asyncio's loops (virtual time kept), time.monotonic on
loops whose loop.time is coarse (uvloop counts whole milliseconds)."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings

import pytest

from asynclm.bench.overhead import noop
from asynclm.testing import InstantEngine
from asynclm.runtime import Session, VirtualTimeLoop, run_virtual
from asynclm.runtime.clock import THREAD_HOLD_S, loop_clock, now


def test_asyncio_loops_keep_their_own_clock() -> None:
    loop = asyncio.new_event_loop()
    try:
        assert loop_clock(loop) == loop.time
    finally:
        loop.close()
    vloop = VirtualTimeLoop()
    try:
        assert loop_clock(vloop) == vloop.time
    finally:
        vloop.close()


def test_virtual_time_is_read_under_run_virtual() -> None:
    async def main() -> tuple[float, float]:
        t0 = now()
        await asyncio.sleep(5.0)
        return t0, now()

    assert run_virtual(main()) == (0.0, 5.0)


async def _dispatch_times() -> list[float]:
    script = "".join(f"[CALL] n{i} [HEAD] noop(i={i}) [END][TRAP][END]\n" for i in range(20))
    r = await Session(InstantEngine(script + "done"), [noop], system="x").run("go")
    assert len(r.calls) == 20
    return [c.started_at - c.emitted_at for c in r.calls]  # type: ignore[operator]


def test_uvloop_gets_a_fine_clock() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert loop_clock(loop) is time.monotonic
    finally:
        loop.close()
    # Starting a call takes tens of microseconds: a whole-millisecond clock reads 0 or 1 ms.
    assert any(0 < d < 0.001 for d in uvloop.run(_dispatch_times()))


def test_virtual_loop_waits_for_its_worker_threads_in_real_time() -> None:
    """asyncio.Runner (Python 3.12+) gives the executor 300 s to shut down; on the virtual clock
    that timer would fire at once (a warning, and threads left running)."""
    baseline = threading.active_count()
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(loop.run_in_executor(None, time.sleep, 0.01))
        slow = loop.run_in_executor(None, time.sleep, 0.2)  # still running at shutdown
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loop.run_until_complete(loop.shutdown_default_executor(300))
        assert slow.done() and threading.active_count() == baseline
    finally:
        loop.close()


def test_virtual_clock_stands_still_while_a_thread_job_runs() -> None:
    """Thread work takes no virtual time: a timer due meanwhile waits for it (up to
    THREAD_HOLD_S real seconds per job, then the clock moves on)."""
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        timer = asyncio.ensure_future(asyncio.sleep(100))  # a timer that would be jumped to
        await loop.run_in_executor(None, time.sleep, 0.05)
        during = loop.time()
        t = time.monotonic()
        await loop.run_in_executor(None, time.sleep, THREAD_HOLD_S + 1)  # outlives the hold
        assert time.monotonic() - t >= THREAD_HOLD_S
        after = loop.time()
        timer.cancel()
        return during, after

    during, after = run_virtual(main())
    assert during == 0.0 and after == 100.0
