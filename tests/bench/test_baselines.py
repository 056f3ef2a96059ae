"""The paper's baselines live in research (asynclm.bench.baselines), not in the core."""

from __future__ import annotations

import dataclasses

import pytest

from asynclm.bench.baselines import BASELINES, strategy
from asynclm.runtime import STRATEGIES, Session, get_strategy, run_virtual
from asynclm.testing.sim import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask, task_toolbox


def test_the_core_knows_only_its_own_strategies():
    assert set(STRATEGIES) == {"sync", "sync-parallel", "async", "async-lazy"}
    assert set(BASELINES) == {"sync-reprefill", "sync-parallel-reprefill", "async-naive"}


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_the_core_says_where_the_baselines_live(name: str) -> None:
    with pytest.raises(ValueError, match=r"asynclm\.bench\.baselines"):
        get_strategy(name)


@pytest.mark.parametrize("name", [*STRATEGIES, *BASELINES])
def test_strategy_finds_core_strategies_and_baselines(name: str) -> None:
    s = strategy(name)
    assert s.name == name
    assert strategy(s) is s
    assert get_strategy(s) is s  # the core takes any Strategy object


def test_strategy_names_everything_it_knows_when_the_name_is_unknown():
    with pytest.raises(ValueError, match="unknown strategy 'warp'.*async-naive"):
        strategy("warp")


@pytest.mark.parametrize(("baseline", "rules_of"), [
    ("sync-reprefill", "sync"), ("sync-parallel-reprefill", "sync-parallel"),
    ("async-naive", "async"),
])
def test_each_baseline_is_a_core_strategy_that_reprefills(baseline: str, rules_of: str) -> None:
    b, core = BASELINES[baseline], STRATEGIES[rules_of]
    assert b.resume == "reprefill" and core.resume == "append"
    assert dataclasses.replace(b, name=core.name, resume="append") == core


def test_a_session_runs_a_baseline_passed_as_an_object():
    task = SimTask((SimCall("k0", "fetch", {"key": "a"}, 0.2),), answer="Done.")
    session = Session(SimEngine(OraclePolicy(task), SimCosts(ttft_s=0.3)), task_toolbox(task),
                      strategy=BASELINES["async-naive"])
    r = run_virtual(session.run(task.prompt))
    assert r.strategy == "async-naive" and r.stop_reason == "eos"
    assert r.trace.meta["strategy"] == "async-naive"
