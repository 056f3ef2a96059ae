"""``asynclm bench faults``: randomized fault injection must find nothing lost, duplicated, hung,
crashed or leaked; and the harness itself must count (not suffer) a run that hangs or crashes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from asynclm.bench import faults
from asynclm.bench.faults import Plan, bench_faults, run_batch
from asynclm.runtime import events as ev
from asynclm.runtime.records import CallRecord

SESSIONS_PER_SEED = 10


def _summary(result: dict[str, Any]) -> str:
    lines = [json.dumps(result["totals"])]
    for f in result["failures"]:
        lines.append(f"{f['failure']} {f['exception'] or ''}: {f['sessions']} sessions, "
                     f"{f['by_strategy']} {f['by_ids']} {f['by_deadline']} {f['by_clock']}")
    return "\n".join(lines)


# 40 seeds × 10 sessions: about 400 sessions (a fifth in real time), ~10-20 s on 2 cores.
# Shrinking seeds means nothing here: a failure is reported with its seed as it is.
@settings(max_examples=40, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_random_fault_sessions_lose_hang_crash_and_leak_nothing(seed: int) -> None:
    result = bench_faults(SESSIONS_PER_SEED, seed, shrink_failures=False)
    t = result["totals"]
    assert t["sessions"] == SESSIONS_PER_SEED
    assert result["all_zero"], f"seed {seed}: {_summary(result)}"


# -- the harness: hangs and crashes are counted, never inherited -------------------------------
def _plan(clock: Any = "virtual", deadline: str = "short") -> Plan:
    return Plan(index=0, clock=clock, strategy="async", ids="assign", deadline=deadline,
                tool_timeout=False, on_eos_pending="trap", tpot_s=0.001,
                items=('[CALL] k0 [HEAD] act(mode="ok", s=0.1) [END]\n',), modes=())


class _FakeSession:
    """Stands in for Session: its run misbehaves as ``behaviour`` says."""

    behaviour = "ok"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def run(self, prompt: str, *, on_event: Any = None, control: Any = None) -> Any:
        rec = CallRecord(id="k0", fn="act", args={}, raw="", status="ok")
        on_event(ev.CallEmitted("k0", "act", {}, 0.0, ""))
        if self.behaviour == "raise":
            raise ValueError("boom")
        if self.behaviour == "stuck":  # ignores every cancellation, for good
            while True:
                try:
                    await asyncio.sleep(1.0)
                except asyncio.CancelledError:
                    pass
        if self.behaviour == "twice":
            on_event(ev.CallCompleted(rec, 0.0))
            on_event(ev.CallCompleted(rec, 0.0))
        raise ValueError("no result")  # "lost": emitted, never completed


@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_harness_counts_a_stuck_run_and_goes_on(monkeypatch, clock):
    monkeypatch.setattr(faults, "Session", _FakeSession)
    monkeypatch.setattr(_FakeSession, "behaviour", "stuck")
    (out,), leaks = run_batch([_plan(clock)], clock, settle_s=0.2)
    assert out.hung and out.stuck and out.failures == ["hung"]
    assert leaks.tasks >= 1


def test_harness_counts_crashes_lost_and_duplicated_outcomes(monkeypatch):
    monkeypatch.setattr(faults, "Session", _FakeSession)
    monkeypatch.setattr(_FakeSession, "behaviour", "raise")
    (out,), _ = run_batch([_plan()], "virtual", settle_s=0.2)
    assert out.crashed == "ValueError: boom" and out.lost == 1 and not out.hung
    monkeypatch.setattr(_FakeSession, "behaviour", "twice")
    (out,), _ = run_batch([_plan()], "virtual", settle_s=0.2)
    assert out.duplicated == 1 and out.lost == 0


def test_plans_cover_every_strategy_id_policy_deadline_and_clock():
    import random

    rng = random.Random(0)
    plans = [faults.make_plan(i, rng) for i in range(400)]
    assert {p.strategy for p in plans} == set(faults.STRATEGIES)
    assert {p.ids for p in plans} == {"assign", "strict"}
    assert {p.deadline for p in plans} == {"none", "short", "long"}
    assert {p.clock for p in plans} == {"virtual", "real"}
    kinds = {k for p in plans for k in p.modes}
    for k in ("async:stubborn", "async:sysexit", "async:huge_int", "async:cyclic",
              "sync:kbint", "proc:long", "script:malformed", "script:reference",
              "script:duplicate-id", "script:no-id", "outside:cancel-run", "outside:cancel-call"):
        assert k in kinds


# -- the command line --------------------------------------------------------------------------
def test_bench_faults_cli_writes_json_and_report(tmp_path):
    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out, md = tmp_path / "f.json", tmp_path / "f.md"
    result = typer_testing.CliRunner().invoke(
        app, ["bench", "faults", "--sessions", "12", "--seed", "5", "--no-shrink",
              "--json", str(out), "--report", str(md)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["totals"]["sessions"] == 12
    for key in ("lost", "duplicated", "hung", "crashed", "leaked_tasks", "leaked_threads",
                "leaked_processes", "leaked_fds"):
        assert key in data["totals"]
    assert data["command"].startswith("asynclm ")
    assert "Command: `asynclm " in md.read_text()
