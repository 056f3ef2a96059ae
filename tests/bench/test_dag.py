"""The DAG benchmark: task shapes, the simulator against the analytic model with and without
futures, bounds that hold, and the oracle's futures mode."""

from __future__ import annotations

import pytest

from asynclm.bench import latency
from asynclm.bench.dag import (
    SHAPES, STRATEGIES, analytic, bench_dag, goals, make_tasks, markdown, run_task, task_model,
)
from asynclm.testing.sim import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask, task_toolbox
from asynclm.protocol import Ref
from asynclm.runtime import Session, run_virtual

TPOT = 0.005


def test_shapes():
    tasks = make_tasks(5, seed=1)
    assert len(tasks) == 5 * len(SHAPES)
    for t in tasks:
        by = t.by_id()
        if t.meta["shape"] == "chain":
            assert all(c.needs == (f"c{i}",) for i, c in enumerate(t.calls[1:], start=1))
        if t.meta["shape"] == "fanout":
            assert len(t.calls[-1].needs) == len(t.calls) - 2
        for c in t.calls:  # references name earlier calls only, and agree with deps
            assert all(int(d[1:]) < int(c.id[1:]) and d in by for d in c.needs)
            assert c.needs == c.deps
    assert make_tasks(5, seed=1) == tasks and make_tasks(5, seed=2) != tasks


def test_oracle_futures_mode_writes_references_and_copies_values_without():
    task = SimTask((SimCall("a", "find", {"q": "x"}, 0.3, result={"id": "k-1"}),
                    SimCall("b", "book", {"key": Ref("a", ("id",))}, 0.2, deps=("a",))))
    fut = run_task(task, "async-futures", SimCosts(tpot_s=TPOT))
    lit = run_task(task, "async", SimCosts(tpot_s=TPOT))
    fa, fb = fut.calls
    la, lb = lit.calls
    assert "$a.id" in fb.raw and fb.emitted_at < fa.ended_at
    assert fb.started_at == pytest.approx(fa.ended_at)
    assert '"k-1"' in lb.raw and lb.emitted_at > la.ended_at
    assert fb.resolved_args == lb.resolved_args == {"key": "k-1"}
    assert fut.latency_s < lit.latency_s


@pytest.mark.parametrize("seed", range(6))
def test_simulator_matches_the_latency_model_on_dags(seed):
    """Free traps (as the model assumes): measured == analytic within 1% for every strategy the
    model covers, with and without futures."""
    costs = SimCosts(tpot_s=TPOT, free_traps=True)
    for task in make_tasks(2, seed=seed):
        m = task_model(task, TPOT)
        aff = {"suffix": (len(SimEngine(OraclePolicy(task)).tokenize(task.answer)) + 1) * TPOT}
        for s, w in analytic(m, **aff).items():
            got = run_task(task, s, costs).latency_s
            assert got == pytest.approx(w, rel=0.01), (task.name, s, got, w)


def test_bench_dag_bounds_hold_and_futures_help_on_chains():
    r = bench_dag(tasks=4, seed=3)
    assert set(r["summary"]) == {"all", *SHAPES}
    for row in r["tasks"]:
        for s in ("sync", "sync-parallel", "async", "async-futures", "async-futures-cp"):
            assert row["lower_bound_s"] <= row["measured_s"][s] * (1 + 1e-9), (row["task"], s)
            assert row["lower_bound_s"] <= row["ancestor_bound_s"] + 1e-12
            assert row["ancestor_bound_s"] <= row["measured_s"][s] * (1 + 1e-9), (row["task"], s)
        if "optimum_s" in row:
            assert row["optimum_s"]["async-futures"] <= row["measured_s"]["async-futures"] + 1e-9
            assert row["optimum_s"]["async"] <= row["measured_s"]["async"] + 1e-9
            assert row["optimum_s"]["async-futures"] <= row["measured_s"]["async-futures-cp"] + 1e-9
            assert row["optimum_s"]["async-futures"] <= row["optimum_s"]["async"] + 0.05
        assert row["measured_s"]["sync"] >= row["measured_s"]["async"] - 1e-9
        if row["shape"] == "chain":
            assert row["measured_s"]["async"] > row["measured_s"]["async-futures"]
    chain = r["summary"]["chain"]["futures_speedup_vs_async"]
    assert chain["per_task_min"] > 1.0
    g = goals(r)
    assert set(g) >= {"futures_efficiency_met", "chain_speedup_met"}
    md = markdown({**r, "goals": g}, "cmd")
    assert "| chain | async-futures |" in md and "multi-step-parallel" in md
    assert list(r["summary"]["all"]["strategies"]) == list(STRATEGIES)


def test_dependent_call_through_task_toolbox_receives_the_value():
    task = SimTask((SimCall("a", "find", {"q": "x"}, 0.1, result={"id": "k-9"}),
                    SimCall("b", "book", {"key": Ref("a", ("id",))}, 0.1, result="ok")))
    engine = SimEngine(OraclePolicy(task, futures=True), SimCosts(tpot_s=TPOT))
    r = run_virtual(Session(engine, task_toolbox(task), system="t").run("go"))
    assert [c.value for c in r.calls] == [{"id": "k-9"}, "ok"]


def test_no_two_calls_of_a_task_are_identical():
    for t in make_tasks(30, seed=0):
        queries = [c.args["query"] for c in t.calls]
        assert len(set(queries)) == len(queries), t.name


def test_ancestor_bound_holds_against_the_brute_force_optimum():
    from asynclm.bench.dag import ancestor_bound

    for t in make_tasks(6, seed=5):
        m = task_model(t, TPOT)
        g = [min(a, b) for a, b in zip(m["G_ref"], m["G_lit"], strict=True)]
        if len(g) > 7:
            continue
        opt = latency.optimal_order(g, m["E"], m["deps"], futures=True)[0]
        assert latency.lower_bound(g, m["E"], m["deps"], futures=True) <= opt + 1e-12
        assert ancestor_bound(g, m["E"], m["deps"]) <= opt + 1e-12
    # fan-in: the joining call is written after both branches, so all three G come first
    assert ancestor_bound([1, 1, 1], [0, 0, 5], {2: [0, 1]}) == 8
    assert latency.lower_bound([1, 1, 1], [0, 0, 5], {2: [0, 1]}, futures=True) == 7


def test_cli_bench_dag_writes_json_and_report(tmp_path):
    import json

    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out, md = tmp_path / "d.json", tmp_path / "d.md"
    result = typer_testing.CliRunner().invoke(
        app, ["bench", "dag", "--tasks", "2", "--seed", "4", "--json", str(out),
              "--report", str(md)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["goals"]["futures_efficiency_median"] == pytest.approx(
        data["summary"]["all"]["strategies"]["async-futures"]["efficiency_median"])
    assert len(data["tasks"]) == 2 * len(SHAPES) and "## Goals" in md.read_text()
    bad = typer_testing.CliRunner().invoke(app, ["bench", "dag", "--engine", "nope"])
    assert bad.exit_code != 0
