"""The real-model dependent-call task set: every task is solvable with its tools (checked on
the simulator with a scripted model), and the scoring tells references from copied values."""

from __future__ import annotations

from typing import Any

import pytest

from asynclm.bench.dag_real import TASKS, TOOLS, score, summarize_real
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.protocol import format_call
from asynclm.runtime import Session, run_virtual


def _run(script: list[str]) -> list[Any]:
    engine = SimEngine(ScriptedPolicy([*script, *["[TRAP][END]"] * 6, "done"]), SimCosts())
    r = run_virtual(Session(engine, TOOLS, system="t").run("go"))
    return list(r.calls)


def _literal_script(task) -> list[str]:
    return [f"[CALL] k{i} [HEAD] {format_call(e.fn, dict(e.args))} [END]\n"
            for i, e in enumerate(task.calls)]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_every_task_is_solvable_and_copied_values_are_not_references(task):
    calls = _run(_literal_script(task))
    s = score(task, calls)
    assert all(c.ok for c in calls), [(c.fn, c.error) for c in calls]
    assert s["calls_correct"]
    assert s["refs_correct"] is (not any(e.needs for e in task.calls))
    assert s["refs_used"] == 0


def test_references_are_recognised():
    task = next(t for t in TASKS if t.name == "order-status")
    calls = _run([
        '[CALL] u [HEAD] find_user(name="Alice") [END]\n',
        '[CALL] o [HEAD] get_latest_order(user_id=$u.user_id) [END]\n',
        '[CALL] s [HEAD] track_order(order_id=$o.order_id) [END]\n',
    ])
    s = score(task, calls)
    assert s["calls_correct"] and s["refs_correct"] and s["refs_ok"] == s["refs_used"] == 2


def test_a_reference_to_the_wrong_call_or_a_guess_is_not_correct():
    task = next(t for t in TASKS if t.name == "book-cheapest")
    wrong_path = _run(['[CALL] f [HEAD] search_flights(origin="Paris", destination="Rome") [END]\n',
                       '[CALL] b [HEAD] book_flight(flight_id=$f.count) [END]\n'])
    guess = _run(['[CALL] f [HEAD] search_flights(origin="Paris", destination="Rome") [END]\n',
                  '[CALL] b [HEAD] book_flight(flight_id="AZ-0001") [END]\n'])
    for calls in (wrong_path, guess):
        s = score(task, calls)
        assert not s["calls_correct"] and not s["refs_correct"]
    assert score(task, wrong_path)["refs_used"] == 1


def test_summary_pairs_variants():
    rows = [
        {"task": "t", "variant": "async", "repeat": 0, "latency_s": 3.0, "calls_correct": True,
         "refs_correct": False, "dependent_args": 1, "refs_used": 0, "refs_ok": 0},
        {"task": "t", "variant": "async-futures", "repeat": 0, "latency_s": 2.0,
         "calls_correct": True, "refs_correct": True, "dependent_args": 1, "refs_used": 1,
         "refs_ok": 1},
    ]
    s = summarize_real(rows)
    assert s["paired"]["speedup_per_task_median"] == pytest.approx(1.5)
    assert s["async-futures"]["refs_correct"] == 1 and s["async"]["refs_correct"] == 0


def test_run_one_end_to_end_on_the_simulator():
    from asynclm.bench.dag_real import run_one

    task = next(t for t in TASKS if t.name == "book-cheapest")
    engine = SimEngine(ScriptedPolicy([
        '[CALL] f [HEAD] search_flights(origin="Paris", destination="Rome") [END]\n',
        '[CALL] b [HEAD] book_flight(flight_id=$f.cheapest.id) [END]\n',
        "[TRAP][END]", "[TRAP][END]", "Booked AZ-7731."]), SimCosts(tpot_s=0.01))
    rec = run_virtual(run_one(engine, task, "async-futures"))
    assert rec["refs_correct"] and rec["stop_reason"] == "eos"
    assert rec["answer"] == "Booked AZ-7731."
    assert rec["breakdown"]["tool_s"] == pytest.approx(1.3, abs=0.01)  # 0.8 s then 0.5 s
    assert rec["calls"][1]["depends_on"] == ["f"]
