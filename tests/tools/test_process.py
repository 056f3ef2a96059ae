"""run_process: a program run by a tool ends with the call, even when the call is timed out or
cancelled (no orphan process, no side effect after the outcome)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

import pytest

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import ProcessResult, run_process, tool

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and Path("/proc/self/stat").exists()),
    reason="checks processes through /proc",
)


def _alive(pid: int) -> bool:
    """Running (a zombie left to an init that does not reap counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_result_of_a_finished_program() -> None:
    r = asyncio.run(run_process("sh", "-c", "cat; echo err >&2; exit 3", input="héllo"))
    assert r == ProcessResult(3, "héllo", "err\n")


def test_program_that_cannot_start_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_process("/nonexistent/program"))
    with pytest.raises(ValueError):
        asyncio.run(run_process())


def test_timed_out_call_leaves_no_process_and_no_late_side_effect(tmp_path: Path) -> None:
    pids, late = tmp_path / "pids", tmp_path / "late"
    # The shell starts a background child; both record their pids, then the child would write
    # `late` after 2 s: a side effect that must never happen once the call has timed out.
    script = f"echo $$ > {pids}; (sleep 2; touch {late}) & echo $! >> {pids}; wait"

    @tool(timeout=1.0)
    async def shell() -> str:
        """Run the script."""
        return (await run_process("sh", "-c", script)).stdout

    engine = SimEngine(ScriptedPolicy(["[CALL] s1 [HEAD] shell() [END]\n", "[TRAP][END]",
                                       "done"]), SimCosts(tpot_s=0.001))
    session = Session(engine, [shell], system="t", config=SessionConfig(deadline_s=30))
    r = asyncio.run(session.run("go"))  # real time: the program runs in real time too
    assert r.call("s1").status == "timeout"
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 2
    assert not any(_alive(p) for p in started)
    time.sleep(2.5)
    assert not late.exists()


def test_session_ending_with_the_program_running_kills_it(tmp_path: Path) -> None:
    pids = tmp_path / "pids"

    @tool
    async def slow() -> str:
        """Run for a minute."""
        return (await run_process("sh", "-c", f"echo $$ > {pids}; sleep 60")).stdout

    engine = SimEngine(ScriptedPolicy(["[CALL] s1 [HEAD] slow() [END]\n", "[TRAP][END]",
                                       "done"]), SimCosts(tpot_s=0.001))
    # the session's deadline ends the run while the program runs: the call is cancelled
    session = Session(engine, [slow], system="t", config=SessionConfig(deadline_s=1.0))
    r = asyncio.run(session.run("go"))
    assert r.stop_reason == "deadline" and r.call("s1").status == "cancelled"
    assert not _alive(int(pids.read_text()))


def test_many_sessions_leave_no_process_and_no_file_descriptor() -> None:
    """Programs that finish, fail or outlive their call's timeout, in 100 sessions: afterwards no
    child process (not even a zombie) and as many open file descriptors as before."""
    rng = random.Random(7)

    @tool(timeout=0.05)
    async def prog(seconds: float, status: int) -> int:
        """Run a program for a while."""
        return (await run_process("sh", "-c", f"sleep {seconds}; exit {status}")).returncode

    async def main() -> dict[str, int]:
        fds = len(os.listdir("/proc/self/fd"))
        seen: dict[str, int] = {}
        for _ in range(100):
            calls = [f'[CALL] p{i} [HEAD] prog(seconds={rng.choice([0, 0.01, 0.2])}, '
                     f'status={rng.choice([0, 1])}) [END]\n' for i in range(rng.randint(1, 3))]
            engine = SimEngine(ScriptedPolicy([*calls, "[TRAP][END]", "done"]),
                               SimCosts(tpot_s=0.001))
            session = Session(engine, [prog], system="t",
                              strategy=rng.choice(["async", "sync", "sync-parallel"]))
            r = await session.run("go")
            for c in r.calls:
                seen[c.status] = seen.get(c.status, 0) + 1
        assert len(os.listdir("/proc/self/fd")) == fds
        return seen

    seen = asyncio.run(main())
    assert seen.get("ok", 0) > 20 and seen.get("timeout", 0) > 20
    with pytest.raises(ChildProcessError):  # no child left, running or zombie
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("leader", ["waits", "exits"])
def test_model_cancelling_the_call_kills_the_whole_process_tree(tmp_path: Path, leader: str) -> None:
    """The model's built-in ``cancel(call_id)`` (issue 24) on a cancellable tool running a
    process tree (a child with a grandchild of its own; with ``exits`` the group's leader has
    already ended): every process of the group is killed, no late side effect happens, the call
    ends ``cancelled`` and the cancel call says so."""
    pids, late = tmp_path / "pids", tmp_path / "late"
    inner = f"(sleep 2; touch {late}) & echo $! >> {pids}; wait"
    end = "exit 0" if leader == "exits" else "wait"
    script = f"echo $$ > {pids}; sh -c '{inner}' & echo $! >> {pids}; {end}"

    @tool(cancellable=True)
    async def shell() -> str:
        """Run the script."""
        return (await run_process("sh", "-c", script)).stdout

    words = iter(range(10**6))

    def until_started(_: dict[str, str]) -> str:  # prose, a word at a time, until it is up
        up = pids.exists() and len(pids.read_text().split()) == 3
        return "" if up else f"w{next(words)} "  # never a cycle (SessionConfig.loop_window)

    engine = SimEngine(ScriptedPolicy([
        "[CALL] s1 [HEAD] shell() [END]\n", *[until_started] * 3000,
        '\n[CALL] k [HEAD] cancel(call_id="s1") [END]\n', "[TRAP][END]", "done",
    ]), SimCosts(tpot_s=0.001))
    session = Session(engine, [shell], system="t",
                      config=SessionConfig(deadline_s=30, max_tokens=5000))
    r = asyncio.run(session.run("go"))
    assert r.call("s1").status == "cancelled" and r.call("s1").error == "cancelled by the model (k)"
    assert r.call("k").status == "ok" and r.call("k").value == "s1 (shell) cancelled"
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    assert not any(_alive(p) for p in started)
    time.sleep(2.5)
    assert not late.exists()
