"""The multi-step-parallel set in the DAG benchmark: BFCL items turned into tasks with the right
chains, every strategy completing every call once in chain order, futures never slower than
async on a known item, and the same latencies as ``bench bfcl`` where the rules agree."""

from __future__ import annotations

import pytest

from asynclm.bench.bfcl import available
from asynclm.bench.dag import (
    MULTI_STEP_PARALLEL, SHAPES, STRATEGIES, bench_dag, markdown, run_task, task_row,
)
from asynclm.testing.sim import SimCosts

pytestmark = pytest.mark.skipif(not available(), reason="bfcl-eval is not installed")

COSTS = SimCosts(tpot_s=0.005)


def _msp(n: int, chain_by: str = "sample", offset: int = 0) -> list:
    from asynclm.bench.dag_bfcl import make_msp_tasks

    return make_msp_tasks(n, seed=0, chain_by=chain_by, offset=offset)  # type: ignore[arg-type]


def test_item_0_turn_1_chains_each_sample_in_order():
    (item,) = _msp(1)
    first = item[0]
    assert first.name == "multi_step_parallel_0/1" and first.meta["shape"] == MULTI_STEP_PARALLEL
    assert [(c.fn, c.deps) for c in first.calls] == [
        ("t1.cd", ()), ("t1.mkdir", ("c1",)), ("t1.mv", ("c2",)),
        ("t2.get_zipcode_based_on_city", ()), ("t2.get_zipcode_based_on_city", ("c4",)),
        ("t2.estimate_distance", ("c5",)),
        ("t3.get_stock_info", ()), ("t3.add_to_watchlist", ("c7",)),
    ]
    assert first.calls[2].args == {"source": "final_report.pdf", "destination": "temp"}
    assert all(0.03 <= c.duration_s <= 0.5 for t in item for c in t.calls)
    assert first.meta["order"]["t2.estimate_distance"] == "t2."
    assert _msp(1) == [item]  # deterministic for a seed


def test_every_turn_chains_calls_of_one_sample_and_nothing_else():
    for item in _msp(6):
        for task in item:
            last: dict[str, str] = {}
            for c in task.calls:
                prefix = c.fn.split(".", 1)[0]
                assert c.deps == ((last[prefix],) if prefix in last else ()), task.name
                assert c.needs == c.deps  # no references: literal arguments
                last[prefix] = c.id


def test_chain_by_instance_splits_a_sample_by_class():
    """Item 8, turn 2: t2 reads the tire pressure (VehicleControlAPI) and tweets it (TwitterAPI):
    one chain per sample, two independent instances per class."""
    by_sample, by_instance = _msp(1, offset=8)[0][1], _msp(1, "instance", offset=8)[0][1]
    fns = [c.fn for c in by_sample.calls]
    tweet = fns.index("t2.post_tweet")
    assert fns[tweet - 1] == "t2.check_tire_pressure"
    assert by_sample.calls[tweet].deps == (by_sample.calls[tweet - 1].id,)
    assert by_instance.calls[tweet].deps == ()
    with pytest.raises(ValueError):
        _msp(1, "class")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_completes_every_call_once_in_chain_order(strategy):
    (item,) = _msp(1)
    for task in item:
        r = run_task(task, strategy, COSTS)
        assert sorted(c.fn for c in r.calls) == sorted(c.fn for c in task.calls), task.name
        assert all(c.ok for c in r.calls) and len(r.calls) == len(task.calls)
        ran = {(c.fn, tuple(sorted(map(str, c.resolved_args.items())))): c for c in r.calls}
        assert len(ran) == len(r.calls)  # each call of the turn ran once
        key = {c.id: (c.fn, tuple(sorted(map(str, c.args.items())))) for c in task.calls}
        for c in task.calls:  # a chained call starts after its predecessor ended
            for d in c.deps:
                assert ran[key[c.id]].started_at >= ran[key[d]].ended_at - 1e-12, task.name


def test_futures_never_slower_than_async_on_item_0():
    (item,) = _msp(1)
    for task in item:
        a = run_task(task, "async", COSTS).latency_s
        f = run_task(task, "async-futures", COSTS).latency_s
        assert f <= a + 1e-9, task.name
    row = task_row(item, COSTS, ("async", "async-futures"))
    assert row["measured_s"]["async-futures"] < row["measured_s"]["async"]
    assert row["lower_bound_s"] <= row["measured_s"]["async-futures"] * (1 + 1e-9)


def test_same_latencies_as_bench_bfcl_when_chained_by_instance():
    """``chain_by="instance"`` is ``bench bfcl``'s rule: same calls, times and oracle, so the
    same latency (async = the multi-step model; async-futures = its write-ahead)."""
    from asynclm.bench.bfcl.run import default_config, run_bfcl

    (item,) = _msp(1, "instance")
    row = task_row(item, COSTS, ("sync", "sync-parallel", "async", "async-futures"))
    plain = run_bfcl(default_config(category=MULTI_STEP_PARALLEL, limit=1, tpot_ms=5,
                                    strategies=("sync", "sync-parallel", "async")))
    ahead = run_bfcl(default_config(category=MULTI_STEP_PARALLEL, limit=1, tpot_ms=5,
                                    strategies=("async",), write_ahead=True))
    runs = plain["items"][0]["runs"]
    for s in ("sync", "sync-parallel", "async"):
        assert row["measured_s"][s] == pytest.approx(runs[s]["latency_s"], rel=1e-9), s
    assert row["measured_s"]["async-futures"] == pytest.approx(
        ahead["items"][0]["runs"]["async"]["latency_s"], rel=1e-9)


def test_bench_dag_adds_the_set_beside_the_shapes_and_leaves_them_alone():
    plain = bench_dag(tasks=1, seed=2)
    r = bench_dag(tasks=1, seed=2, multi_step_parallel=2)
    assert list(r["summary"]) == ["all", *SHAPES, MULTI_STEP_PARALLEL]
    assert r["summary"]["all"] == plain["summary"]["all"]  # `all` = the synthetic shapes
    assert [x for x in r["tasks"] if x["shape"] in SHAPES] == plain["tasks"]
    msp = [x for x in r["tasks"] if x["shape"] == MULTI_STEP_PARALLEL]
    assert [x["task"] for x in msp] == ["multi_step_parallel_0", "multi_step_parallel_1"]
    for row in msp:
        assert row["turns"] >= 3 and row["calls"] > row["turns"]
        for s in STRATEGIES:
            assert row["ancestor_bound_s"] <= row["measured_s"][s] * (1 + 1e-9), s
        assert row["measured_s"]["sync"] >= row["measured_s"]["async"]
    assert r["params"]["multi_step_parallel"]["chain_by"] == "sample"
    md = markdown(r, "cmd")
    assert "| multi-step-parallel | async-futures |" in md and "2 multi-step-parallel items" in md


def test_cli_bench_dag_multi_step_parallel(tmp_path):
    import json

    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out = tmp_path / "d.json"
    result = typer_testing.CliRunner().invoke(
        app, ["bench", "dag", "--tasks", "1", "--multi-step-parallel", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["params"]["multi_step_parallel"]["items"] == 1
    assert MULTI_STEP_PARALLEL in data["summary"]
