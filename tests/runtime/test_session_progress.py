"""Progress reports of running tools (``ToolContext.progress``) reach the event stream as
``call.progress`` and the trace, from async tools and from sync tools' worker threads; a report
made after its call ended is dropped."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import Session, SessionConfig, run_virtual
from asynclm.runtime import events as ev
from asynclm.tools import ToolContext, tool


@tool
async def download(parts: int, ctx: ToolContext) -> str:
    """Fetch in parts, reporting each."""
    for i in range(parts):
        await asyncio.sleep(0.1)
        ctx.progress(f"{i + 1}/{parts}")
    return "ok"


@tool
def crunch(n: int, ctx: ToolContext) -> int:
    """CPU work in a worker thread, reporting as it goes."""
    for i in range(n):
        time.sleep(0.01)
        ctx.progress(f"crunched {i + 1} in {threading.current_thread().name}")
    return n


@tool
def overrun(ctx: ToolContext) -> str:
    """Keeps running (and reporting) after its call has timed out."""
    time.sleep(0.3)
    ctx.progress("too late")
    return "late"


def _events(script: list[str], tools: list[Any], *, virtual: bool,
            config: SessionConfig | None = None) -> tuple[list[ev.StreamEvent], Any]:
    seen: list[ev.StreamEvent] = []
    engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))
    coro = Session(engine, tools, system="t", config=config).run("go", on_event=seen.append)
    result = run_virtual(coro) if virtual else asyncio.run(coro)
    return seen, result


def test_async_tool_progress_is_streamed_and_traced() -> None:
    seen, r = _events(["[CALL] d [HEAD] download(parts=3) [END]\n", "[TRAP][END]\n", "done"],
                      [download], virtual=True)
    kinds = [e.type for e in seen
             if getattr(e, "call_id", None) == "d" and e.type != "call.emitted"]
    assert kinds == ["call.started", "call.progress", "call.progress", "call.progress",
                     "call.completed"]
    progress = [e for e in seen if isinstance(e, ev.CallProgress)]
    assert [(p.fn, p.message) for p in progress] == [("download", f"{i}/3") for i in (1, 2, 3)]
    assert [round(p.t - progress[0].t, 3) for p in progress] == [0.0, 0.1, 0.2]
    instants = [i for i in r.trace.instants if i.name == "call.progress"]
    assert [i.attrs["message"] for i in instants] == ["1/3", "2/3", "3/3"]


def test_sync_tool_progress_crosses_threads() -> None:
    seen, r = _events(["[CALL] c [HEAD] crunch(n=5) [END]\n", "[TRAP][END]\n", "done"],
                      [crunch], virtual=False)
    progress = [e for e in seen if isinstance(e, ev.CallProgress)]
    assert len(progress) == 5 and all("crunched" in p.message for p in progress)
    assert "MainThread" not in progress[0].message  # reported from the worker thread...
    done = next(i for i, e in enumerate(seen) if isinstance(e, ev.CallCompleted))
    assert all(seen.index(p) < done for p in progress)  # ...and delivered on the loop, in time
    assert r.calls[0].status == "ok"


def test_a_report_after_the_call_ended_is_dropped() -> None:
    seen, r = _events(["[CALL] o [HEAD] overrun() [END]\n", "[TRAP][END]\n", "done"],
                      [overrun], virtual=False, config=SessionConfig(tool_timeout_s=0.1))
    assert r.calls[0].status == "timeout"
    time.sleep(0.4)  # the worker thread reports after the session is over
    assert not [e for e in seen if isinstance(e, ev.CallProgress)]
