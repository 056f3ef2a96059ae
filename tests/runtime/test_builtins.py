"""Built-in tools (issue 24 items 2 and 3): the model cancels a running call it started
(``cancel(call_id)``, opt-in per tool) and lists its pending calls (``pending()``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from asynclm.prompt import system_prompt
from asynclm.runtime import RunControl, Session, SessionConfig, SessionResult, run_virtual
from asynclm.runtime.builtins import RESERVED, PendingCall, pending_note
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import Tool, Toolbox, ToolContext, tool

from .conftest import scripted, sleepy


def _cancellable_slow(seen: list[str]) -> Tool:
    @tool(cancellable=True)
    async def slow(seconds: float = 100.0) -> str:
        """Work for a long time."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            seen.append("CancelledError")
            raise
        return "finished"

    return slow


def _statuses(r: SessionResult) -> dict[str, str]:
    ids = [c.id for c in r.calls]
    assert len(ids) == len(set(ids))  # exactly once
    return {c.id: c.status for c in r.calls}


# -- the option and how the built-ins are offered ------------------------------------------
def test_cancellable_is_a_tool_option_default_false() -> None:
    @tool
    def plain() -> int:
        """P."""
        return 1

    @tool(cancellable=True, timeout=3)
    def can() -> int:
        """C."""
        return 1

    assert plain.cancellable is False and can.cancellable is True
    assert can.replace(name="c2").cancellable is True  # kept by replace
    assert can.replace(cancellable=False).cancellable is False
    assert tool(plain, cancellable=True).cancellable is True
    spec = {"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}
    assert Tool.from_openai(spec, cancellable=True).cancellable is True
    with pytest.raises(TypeError):
        plain.replace(cancellable="yes")


def test_sessions_that_did_not_opt_in_are_unchanged() -> None:
    box = Toolbox([sleepy])
    session = Session(SimEngine(ScriptedPolicy([])), box)
    assert session.tools is box and list(session.tools) == ["sleepy"]
    assert session.system == system_prompt(box)
    assert not set(RESERVED) & set(session.tools)


def test_cancellable_tool_brings_cancel_and_pending_into_toolbox_and_prompt() -> None:
    slow = _cancellable_slow([])
    session = Session(SimEngine(ScriptedPolicy([])), [sleepy, slow])
    assert list(session.tools) == ["sleepy", "slow", "cancel", "pending"]
    assert '"name":"cancel"' in session.system and '"name":"pending"' in session.system
    assert "Only calls of these tools can be cancelled: slow." in session.tools["cancel"].description
    assert session.tools["cancel"].param_names == ("call_id",)
    # a toolbox taken from such a session gets fresh built-ins, not duplicates
    again = Session(SimEngine(ScriptedPolicy([])), session.tools)
    assert list(again.tools) == ["sleepy", "slow", "cancel", "pending"]
    # pending: "tool" offers it without cancel, "off" never, "note" as no tool
    assert list(Session(SimEngine(ScriptedPolicy([])), [sleepy],
                        config=SessionConfig(pending="tool")).tools) == ["sleepy", "pending"]
    for mode in ("off", "note"):
        assert list(Session(SimEngine(ScriptedPolicy([])), [slow],
                            config=SessionConfig(pending=mode)).tools) == ["slow", "cancel"]  # type: ignore[arg-type]


def test_a_tool_named_like_an_offered_builtin_is_refused() -> None:
    slow = _cancellable_slow([])

    @tool
    def cancel(call_id: str) -> str:
        """Mine."""
        return call_id

    @tool
    def pending() -> str:
        """Mine."""
        return ""

    with pytest.raises(ValueError, match="'cancel' is reserved"):
        Session(SimEngine(ScriptedPolicy([])), [slow, cancel])
    with pytest.raises(ValueError, match="pending='off'"):
        Session(SimEngine(ScriptedPolicy([])), [slow, pending])
    # not offered, not reserved: an application's `pending` tool is kept where nothing is offered
    assert list(Session(SimEngine(ScriptedPolicy([])), [pending]).tools) == ["pending"]
    assert list(Session(SimEngine(ScriptedPolicy([])), [slow, pending],
                        config=SessionConfig(pending="off")).tools) == ["slow", "pending", "cancel"]


# -- cancel ---------------------------------------------------------------------------------
def test_model_cancels_a_running_async_call() -> None:
    seen: list[str] = []
    r = scripted([
        "[CALL] c1 [HEAD] slow() [END]\n",
        '[CALL] c2 [HEAD] cancel(call_id="c1") [END]\n',
        "[TRAP][END]", "[TRAP][END]", "done",
    ], [_cancellable_slow(seen)])
    assert _statuses(r) == {"c1": "cancelled", "c2": "ok"}
    assert seen == ["CancelledError"]  # the tool itself was cancelled
    c1, c2 = r.call("c1"), r.call("c2")
    assert c1.error == "cancelled by the model (c2)" and c1.error_type == "Cancelled"
    assert c2.value == "c1 (slow) cancelled"
    assert c1.ended_at < 1.0 and r.latency_s < 5  # not after the tool's 100 s
    assert c1.injected_at is not None and c2.injected_at is not None  # both interrupts
    assert "[INTR] c1 [HEAD] slow() -> cancelled: cancelled by the model (c2) [END]" in r.transcript
    assert '[INTR] c2 [HEAD] "c1 (slow) cancelled" [END]' in r.transcript
    assert not r.abandoned


@pytest.mark.parametrize("written", ["$c1", '"$c1"'])
def test_cancel_written_with_a_reference_names_the_call(written: str) -> None:
    """``cancel(call_id=$c1)``: the model names the call the way it names results; the
    cancel must not wait for c1's result (that would cancel nothing, 100 s later)."""
    seen: list[str] = []
    r = scripted([
        "[CALL] c1 [HEAD] slow() [END]\n",
        f"[CALL] c2 [HEAD] cancel(call_id={written}) [END]\n",
        "[TRAP][END]", "[TRAP][END]", "done",
    ], [_cancellable_slow(seen)])
    assert _statuses(r) == {"c1": "cancelled", "c2": "ok"} and seen == ["CancelledError"]
    assert r.call("c2").depends_on == () and r.latency_s < 5


def test_model_cancels_a_sync_call_its_thread_is_abandoned_and_told() -> None:
    told = threading.Event()

    @tool(cancellable=True)
    def blocking(ctx: ToolContext) -> str:
        """Block until cancelled."""
        if ctx.cancel_event.wait(5):
            told.set()
        return "late"

    engine = SimEngine(ScriptedPolicy([
        "[CALL] c1 [HEAD] blocking() [END]\n",
        '[CALL] c2 [HEAD] cancel(call_id="c1") [END]\n', "[TRAP][END]", "[TRAP][END]", "done"]),
        SimCosts(tpot_s=0.001))
    r = asyncio.run(Session(engine, [blocking], system="t").run("go"))  # real threads, real time
    assert _statuses(r) == {"c1": "cancelled", "c2": "ok"}
    assert told.wait(2)  # the thread learnt of it through its context
    assert r.abandoned == ("c1",) and r.call("c1").value is None  # "late" discarded
    assert "abandoned" in r.call("c2").value


def test_cancel_error_cases_are_error_results() -> None:
    @tool
    async def stubborn(seconds: float) -> str:
        """Not cancellable."""
        await asyncio.sleep(seconds)
        return "stubborn done"

    r = scripted([
        "[CALL] a [HEAD] sleepy(seconds=0.01) [END]\n",
        "[CALL] n [HEAD] stubborn(seconds=20) [END]\n",
        "[CALL] s [HEAD] slow(seconds=30) [END]\n",  # a ends meanwhile
        '[CALL] k1 [HEAD] cancel(call_id="zz") [END]\n',
        '[CALL] k2 [HEAD] cancel(call_id="a") [END]\n',
        '[CALL] k3 [HEAD] cancel(call_id="n") [END]\n',
        '[CALL] k4 [HEAD] cancel(call_id="k4") [END]\n',
        '[CALL] k5 [HEAD] cancel(call_id="k1") [END]\n',
        '[CALL] k6 [HEAD] cancel() [END]\n',
        "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "[TRAP][END]",
        "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "done",
    ], [sleepy, stubborn, _cancellable_slow([])])
    st = _statuses(r)
    assert st == {"a": "ok", "n": "ok", "s": "ok", "k1": "error", "k2": "error", "k3": "error",
                  "k4": "error", "k5": "error", "k6": "error"}
    assert r.call("n").value == "stubborn done"  # refused: not cancelled
    for k in ("k1", "k2", "k3", "k4", "k5"):
        assert r.call(k).error_type == "CannotCancel"
    assert r.call("k1").error.startswith("no call has id 'zz' (calls pending: n, s")
    assert r.call("k2").error == "a (sleepy) already ended (ok): nothing to cancel"
    assert r.call("k3").error == "n (stubborn) cannot be cancelled: stubborn is not a cancellable tool"
    assert r.call("k4").error == "k4 is this cancel call itself: a call cannot cancel itself"
    assert r.call("k5").error == "k1 is a cancel() call: built-in calls cannot be cancelled"
    assert r.call("k6").error_type == "ToolArgumentError"  # validated like any call
    assert all(r.call(k).injected_at is not None for k in st)


def test_cancel_of_a_call_waiting_for_its_inputs_and_from_the_application() -> None:
    """A call waiting for a reference is cancelled before it starts; the application's
    RunControl.cancel_call goes through the same path on a cancellable call."""
    seen: list[str] = []

    async def main() -> SessionResult:
        ctl = RunControl()
        engine = SimEngine(ScriptedPolicy([
            "[CALL] a [HEAD] sleepy(seconds=5) [END]\n",
            "[CALL] b [HEAD] slow(seconds=$a) [END]\n",
            "[CALL] c [HEAD] slow() [END]\n",
            '[CALL] k [HEAD] cancel(call_id="b") [END]\n',
            "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "[TRAP][END]", "done"]),
            SimCosts(tpot_s=0.01))
        session = Session(engine, [sleepy, _cancellable_slow(seen)], system="t")
        task = asyncio.create_task(session.run("go", control=ctl))
        await asyncio.sleep(1.0)
        assert ctl.cancel_call("c")
        return await task

    r = run_virtual(main())
    assert _statuses(r) == {"a": "ok", "b": "cancelled", "c": "cancelled", "k": "ok"}
    assert r.call("b").started_at is None and r.call("k").value == "b (slow) cancelled"
    assert r.call("c").error == "cancelled by request" and seen == ["CancelledError"]


# -- pending --------------------------------------------------------------------------------
def test_pending_lists_running_calls_with_elapsed_time_and_last_progress() -> None:
    @tool(cancellable=True)
    async def crawl(ctx: ToolContext) -> str:
        """Report progress, then work."""
        ctx.progress("page 1/5")
        await asyncio.sleep(0.2)
        ctx.progress("page 2/5")
        await asyncio.sleep(100)
        return "crawled"

    r = scripted([
        "[CALL] c1 [HEAD] crawl() [END]\n",
        "[CALL] c2 [HEAD] sleepy(seconds=0.5) [END]\n",
        "[CALL] c3 [HEAD] sleepy(seconds=30) [END]\n",
        "[TRAP][END]",  # c2 ends at 0.5 s
        "[CALL] p [HEAD] pending() [END]\n",  # its result comes at once: no time of its own
        '[CALL] k [HEAD] cancel(call_id="c1") [END]\n',
        "[CALL] p2 [HEAD] pending() [END]\n", "[TRAP][END]", "done",
    ], [sleepy, crawl])
    listed = r.call("p").value
    assert [c["id"] for c in listed] == ["c1", "c3"]  # not c2 (ended), not p itself
    assert listed[0]["tool"] == "crawl" and listed[0]["progress"] == "page 2/5"
    assert "progress" not in listed[1] and "state" not in listed[0]
    assert 0.5 <= listed[0]["elapsed_s"] < 2 and 0.5 <= listed[1]["elapsed_s"] < 2
    assert '"progress": "page 2/5"' in r.transcript
    assert "repeats" not in r.counters or r.counters["repeats"] == 0  # p2 ran again
    assert [c["id"] for c in r.call("p2").value] == ["c3"]
    assert _statuses(r) == {"c1": "cancelled", "c2": "ok", "c3": "ok", "p": "ok", "k": "ok",
                            "p2": "ok"}
    assert r.call("p").ended_at == r.call("p").emitted_at  # on the loop, no time of its own


def test_pending_with_nothing_pending_and_the_note() -> None:
    r = scripted(["[CALL] p [HEAD] pending() [END]\n", "[TRAP][END]", "done"], [sleepy],
                 config=SessionConfig(pending="tool"))
    assert r.call("p").value == "no call is pending"
    assert pending_note(()) is None
    note = pending_note((PendingCall("c1", "crawl", "running", 2.54, "page 2/5"),
                         PendingCall("c2", "sleepy", "deferred", 0.0)))
    assert note == ("still pending: c1 crawl (2.5 s, last progress: page 2/5); "
                    "c2 sleepy (0.0 s, deferred)")


def test_progress_is_remembered_without_an_observer() -> None:
    """The executor keeps each call's last progress message itself (pending() reads it), also
    for a sync tool reporting from its thread."""
    from asynclm.runtime.executor import Executor

    @tool
    def worker(ctx: ToolContext) -> str:
        """Report, then wait."""
        ctx.progress("half")
        ctx.cancel_event.wait(5)
        return "x"

    async def main() -> Any:
        async with asyncio.TaskGroup() as group:
            ex = Executor(Toolbox([worker]), group, on_start=lambda *a: None,
                          on_end=lambda r: None)
            ex.submit("w", "worker", {})
            for _ in range(200):
                await asyncio.sleep(0.01)
                if ex.pending_calls()[0].progress is not None:
                    break
            snap = ex.pending_calls()
            ex.cancel("w")
        return snap

    snap = asyncio.run(main())
    assert snap[0].id == "w" and snap[0].state == "running" and snap[0].progress == "half"


def test_pending_note_at_a_trap() -> None:
    """``SessionConfig(pending="note")``: no ``pending`` tool; the interrupt that ends a trap
    carries a note listing the calls still running."""
    r = scripted([
        "[CALL] a [HEAD] sleepy(seconds=1) [END]\n",
        "[CALL] b [HEAD] sleepy(seconds=30) [END]\n",
        "[TRAP][END]", "done",
    ], [sleepy], config=SessionConfig(pending="note", on_eos_pending="finish"))
    assert "[INTR] runtime [HEAD] message from runtime: still pending: b sleepy (" in r.transcript
