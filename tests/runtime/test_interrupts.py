"""The queue of the interrupt manager (runtime/interrupts.py): ready, take, wait and wake
(its rendering is tested in tests/protocol)."""

from __future__ import annotations

import asyncio

from asynclm.runtime.control import Message
from asynclm.runtime.interrupts import InterruptManager
from asynclm.runtime.records import CallRecord


def rec(id: str, injectable: bool = True) -> CallRecord:
    return CallRecord(id=id, fn="f", args={}, raw="", status="ok", injectable=injectable)


def test_fifo_of_results_and_messages() -> None:
    async def go() -> None:
        box = InterruptManager()
        assert box.ready == 0
        box.push(rec("a"))
        box.push(rec("ff", injectable=False))  # fire-and-forget: never injected
        box.push_message(Message("bob", "hi"))
        box.push(rec("b"))
        assert box.ready == 3
        assert [getattr(x, "id", None) or x.sender for x in box.take()] == ["a", "bob", "b"]
        assert box.ready == 0 and box.take() == []

    asyncio.run(go())


def test_take_messages_leaves_results() -> None:
    async def go() -> None:
        box = InterruptManager()
        box.push(rec("a"))
        box.push_message(Message("bob", "hi"))
        assert box.take_messages() == [Message("bob", "hi")]
        assert [r.id for r in box.take()] == ["a"]

    asyncio.run(go())


def test_wait_ready_returns_on_push_and_on_wake() -> None:
    async def go() -> None:
        box = InterruptManager()
        waiter = asyncio.create_task(box.wait_ready())
        await asyncio.sleep(0)
        assert not waiter.done()
        box.push(rec("a"))
        await asyncio.wait_for(waiter, 1)
        box.take()
        # woken with nothing queued: returns, and the next wait blocks again
        waiter = asyncio.create_task(box.wait_ready())
        await asyncio.sleep(0)
        box.wake()
        await asyncio.wait_for(waiter, 1)
        again = asyncio.create_task(box.wait_ready())
        await asyncio.sleep(0.01)
        assert not again.done()
        box.push_message(Message("x", "y"))
        await asyncio.wait_for(again, 1)

    asyncio.run(go())


def test_wait_ready_with_something_queued_returns_at_once() -> None:
    async def go() -> None:
        box = InterruptManager()
        box.push(rec("a"))
        await asyncio.wait_for(box.wait_ready(), 1)
        assert box.ready == 1

    asyncio.run(go())
