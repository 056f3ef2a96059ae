"""The event log of a live session: followers get every event once, in order, in batches."""

from __future__ import annotations

import asyncio

from asynclm.runtime import RunControl
from asynclm.server.registry import LiveSession


def _session(max_events: int = 100) -> LiveSession:
    return LiveSession("s1", prompt="p", engine="sim", model=None, strategy="async",
                       tools="none", agent=None, control=RunControl(), max_events=max_events)


def test_followers_get_every_event_in_order_with_keepalives() -> None:
    async def main() -> tuple[list[list[int]], list[int]]:
        ls = _session()
        ls.publish("a")
        batches: list[list[int]] = []
        late: list[int] = []

        async def reader(out: list[list[int]]) -> None:
            async for batch in ls.follow(0, keepalive_s=0.05):
                out.append([e["seq"] for e in batch])

        async def late_reader() -> None:
            async for batch in ls.follow(2):
                late.extend(e["seq"] for e in batch)

        task = asyncio.create_task(reader(batches))
        await asyncio.sleep(0.12)  # idle: keep-alive ticks
        for _ in range(3):
            ls.publish("b")
        late_task = asyncio.create_task(late_reader())
        await asyncio.sleep(0)
        ls.close()
        ls.publish("after-close")  # ignored
        await asyncio.gather(task, late_task)
        return batches, late

    batches, late = asyncio.run(main())
    assert batches[0] == [0] and [] in batches
    assert [s for b in batches for s in b] == [0, 1, 2, 3, 4]
    assert late == [2, 3, 4]


def test_event_limit_keeps_the_closing_event() -> None:
    async def main() -> list[str]:
        ls = _session(max_events=3)
        for _ in range(10):
            ls.publish("x")
        ls.close()
        return [e["type"] for e in ls.events]

    assert asyncio.run(main()) == ["x", "x", "x", "session.end"]
