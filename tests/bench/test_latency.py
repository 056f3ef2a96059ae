"""The paper's latency model: hand-computed cases, the dependency counterexample, properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.bench.latency import (
    async_lpt,
    async_order,
    async_schedule,
    lower_bound,
    lpt_order,
    optimal_order,
    sync,
    sync_parallel,
)

# -- hand-computed -----------------------------------------------------------------------------


def test_sync_and_sync_parallel():
    G, E = [1.0, 2.0], [3.0, 4.0]
    assert sync(G, E) == 10.0
    assert sync_parallel(G, E) == 7.0
    assert sync(G, E, prefix=0.5, suffix=0.25) == 10.75
    assert sync_parallel(G, E, prefix=0.5, suffix=0.25) == 7.75


def test_empty():
    for f in (sync, sync_parallel, async_lpt, lower_bound):
        assert f([], [], prefix=1.0, suffix=2.0) == 3.0
    assert optimal_order([], []) == (0.0, ())


def test_async_lpt_hand_computed():
    # LPT order: 0 (E=5), 2 (E=3), 1 (E=1)
    # call 0 decodes 0-1, runs to 6; call 2 decodes 1-2, runs to 5; call 1 decodes 2-4, runs to 5
    G, E = [1.0, 2.0, 1.0], [5.0, 1.0, 3.0]
    assert lpt_order(G, E) == (0, 2, 1)
    assert async_lpt(G, E) == 6.0
    assert async_lpt(G, E, prefix=0.1, suffix=0.2) == pytest.approx(6.3)
    s = async_schedule(G, E)
    assert s.decode_end == (1.0, 4.0, 2.0)
    assert s.exec_end == (6.0, 5.0, 5.0)
    assert s.makespan == 6.0 and s.trap_s == 0.0


def test_async_keeps_decoding_at_least_sum_g():
    assert async_lpt([3.0, 3.0], [0.0, 0.0]) == 6.0
    assert async_order([3.0, 3.0], [0.0, 1.0], [1, 0]) == 6.0


def test_async_order_arbitrary_and_ties():
    G, E = [1.0, 2.0, 1.0], [5.0, 1.0, 3.0]
    # order 1, 2, 0: call 1 decodes 0-2 -> 3; call 2 decodes 2-3 -> 6; call 0 decodes 3-4 -> 9
    assert async_order(G, E, [1, 2, 0]) == 9.0
    # ties keep index order, exactly
    assert lpt_order([1.0, 5.0, 1.0], [2.0, 2.0, 2.0]) == (0, 1, 2)
    assert async_lpt([1.0, 5.0, 1.0], [2.0, 2.0, 2.0]) == 9.0


def test_lower_bound():
    G, E = [1.0, 1.0], [2.0, 3.0]
    assert lower_bound(G, E) == 4.0  # max(ΣG=2, max G+E=4)
    assert lower_bound(G, E, {1: [0]}) == 7.0  # chain 1+2 then 1+3
    assert lower_bound([5.0, 5.0], [1.0, 1.0]) == 10.0  # ΣG dominates
    assert lower_bound(G, E, {1: [0]}, prefix=1.0, suffix=1.0) == 9.0


def test_sync_parallel_with_deps_runs_rounds():
    # rounds: {0, 1} then {2}: ΣG + max(E0, E1) + E2
    G, E = [1.0, 1.0, 1.0], [2.0, 4.0, 3.0]
    assert sync_parallel(G, E, {2: [0]}) == 3.0 + 4.0 + 3.0


def test_dependent_call_waits_for_its_inputs():
    # c (1) depends on a (0): c's decode starts when a's result is in (the model traps)
    G, E = [1.0, 1.0], [2.0, 3.0]
    s = async_schedule(G, E, [0, 1], {1: [0]})
    assert s.decode_start == (0.0, 3.0)
    assert s.exec_end == (3.0, 7.0)
    assert s.trap_s == 2.0
    # futures: c is written right away and starts when a finishes
    f = async_schedule(G, E, [0, 1], {1: [0]}, futures=True)
    assert f.decode_start == (0.0, 1.0)
    assert f.exec_start == (1.0, 3.0)
    assert f.makespan == 6.0
    assert lower_bound(G, E, {1: [0]}, futures=True) == 6.0


def test_paper_counterexample_lpt_is_not_optimal_under_dependencies():
    # c depends on a; E(a) < E(b) < E(c). LPT writes b first (a, b ready, E(b) > E(a)),
    # then a, then c once a's result is in: b, a, c. The optimum is a, c, b.
    a, b, c = 0, 1, 2
    G = [1.0, 1.0, 1.0]
    E = [0.5, 0.7, 3.0]
    deps = {c: [a]}
    assert lpt_order(G, E, deps) == (b, a, c)
    lpt = async_lpt(G, E, deps)
    best, order = optimal_order(G, E, deps)
    assert order == (a, c, b)
    # a: 0-1, result at 1.5; c: 1.5-2.5, runs to 5.5; b: 2.5-3.5, runs to 4.2
    assert best == pytest.approx(5.5)
    # b: 0-1 -> 1.7; a: 1-2 -> 2.5; c: 2.5-3.5 -> 6.5
    assert lpt == pytest.approx(6.5)
    assert best < lpt
    assert async_order(G, E, [a, c, b], deps) == pytest.approx(best)
    assert lower_bound(G, E, deps) <= best


def test_optimal_order_prefix_suffix_and_limit():
    best, order = optimal_order([1.0, 1.0], [1.0, 3.0], prefix=1.0, suffix=2.0)
    assert order == (1, 0) and best == pytest.approx(1.0 + 4.0 + 2.0)
    with pytest.raises(ValueError, match="too many"):
        optimal_order([1.0] * 9, [1.0] * 9)
    assert optimal_order([1.0] * 9, [1.0] * 9, max_n=9)[0] == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("G", "E", "deps", "match"),
    [
        ([1.0], [1.0, 2.0], None, "length"),
        ([-1.0], [1.0], None, "finite"),
        ([float("nan")], [1.0], None, "finite"),
        ([1.0, 1.0], [1.0, 1.0], {0: [1], 1: [0]}, "cycle"),
        ([1.0], [1.0], {0: [0]}, "itself"),
        ([1.0], [1.0], {0: [3]}, "index"),
        ([1.0], [1.0], {5: []}, "index"),
    ],
)
def test_invalid_inputs(G, E, deps, match):
    with pytest.raises(ValueError, match=match):
        lower_bound(G, E, deps)


def test_invalid_orders():
    with pytest.raises(ValueError, match="permutation"):
        async_order([1.0, 1.0], [1.0, 1.0], [0, 0])
    with pytest.raises(ValueError, match="dependency"):
        async_order([1.0, 1.0], [1.0, 1.0], [1, 0], {1: [0]})


# -- properties --------------------------------------------------------------------------------

times = st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False)
TOL = 1e-9


def _le(a: float, b: float) -> bool:
    return a <= b + TOL * max(1.0, abs(b))


@st.composite
def calls(draw, max_n=8, unique_e=False):
    n = draw(st.integers(min_value=1, max_value=max_n))
    G = draw(st.lists(times, min_size=n, max_size=n))
    E = draw(st.lists(times, min_size=n, max_size=n, unique=unique_e))
    return G, E


@st.composite
def dags(draw, max_n=6):
    G, E = draw(calls(max_n=max_n))
    n = len(G)
    perm = draw(st.permutations(range(n)))  # relabel so dependencies are not index-ordered
    deps = {}
    for i in range(n):
        earlier = draw(st.lists(st.integers(0, max(0, i - 1)), max_size=i, unique=True))
        if i and earlier:
            deps[perm[i]] = [perm[j] for j in earlier]
    return G, E, deps


@given(calls())
def test_ordering_of_models_independent(ge):
    G, E = ge
    lb, a, sp, s = lower_bound(G, E), async_lpt(G, E), sync_parallel(G, E), sync(G, E)
    assert _le(lb, a) and _le(a, sp) and _le(sp, s)
    assert _le(sum(G), a)


@given(calls(unique_e=True))
def test_async_lpt_matches_paper_formula(ge):
    G, E = ge
    formula = max(e_f + sum(g for g, e_g in zip(G, E, strict=True) if e_g >= e_f) for e_f in E)
    assert async_lpt(G, E) == pytest.approx(formula, rel=1e-12, abs=1e-12)


@given(calls())
def test_async_lpt_matches_formula_with_ties(ge):
    G, E = ge
    formula = max(e_f + sum(g for g, e_g in zip(G, E, strict=True) if e_g >= e_f) for e_f in E)
    assert async_lpt(G, E) == pytest.approx(formula, rel=1e-12, abs=1e-12)


@settings(deadline=None, max_examples=60)
@given(calls(max_n=6))
def test_lpt_is_optimal_for_independent_calls(ge):
    G, E = ge
    best, _ = optimal_order(G, E)
    assert async_lpt(G, E) == pytest.approx(best, rel=1e-12, abs=1e-12)


@settings(deadline=None, max_examples=60)
@given(dags())
def test_ordering_of_models_with_dependencies(ged):
    G, E, deps = ged
    best, order = optimal_order(G, E, deps)
    assert _le(lower_bound(G, E, deps), best)
    assert async_order(G, E, order, deps) == pytest.approx(best)
    assert _le(best, async_lpt(G, E, deps))
    assert _le(best, sync_parallel(G, E, deps))
    assert _le(sync_parallel(G, E, deps), sync(G, E))
    # futures never hurt, and their own bound holds
    fbest, _ = optimal_order(G, E, deps, futures=True)
    assert _le(fbest, best)
    assert _le(lower_bound(G, E, deps, futures=True), fbest)
    assert _le(lower_bound(G, E, deps, futures=True), lower_bound(G, E, deps))


@settings(deadline=None, max_examples=30)
@given(dags(max_n=5))
def test_optimal_order_is_the_minimum_over_all_valid_orders(ged):
    G, E, deps = ged
    best, _ = optimal_order(G, E, deps)
    valid = []
    for order in itertools.permutations(range(len(G))):
        pos = {v: k for k, v in enumerate(order)}
        if all(pos[u] < pos[v] for v, us in deps.items() for u in us):
            valid.append(async_order(G, E, order, deps))
    assert best == pytest.approx(min(valid))


def test_critical_path_order_is_lpt_for_independent_calls_and_beats_it_with_futures():
    from asynclm.bench.latency import critical_path_order

    G, E = [0.1, 0.1, 0.1], [0.3, 0.05, 0.2]
    assert critical_path_order(G, E) == lpt_order(G, E)
    # r (0.05) feeds d (0.5); i (0.3) is independent. LPT writes i first and delays the chain.
    G, E, deps = [0.1, 0.1, 0.1], [0.05, 0.5, 0.3], {1: [0]}
    assert critical_path_order(G, E, deps) == (0, 1, 2)
    assert lpt_order(G, E, deps, futures=True) == (2, 0, 1)
    cp = async_order(G, E, critical_path_order(G, E, deps), deps, futures=True)
    lpt = async_lpt(G, E, deps, futures=True)
    assert cp == pytest.approx(0.7) and lpt == pytest.approx(0.8)
    assert cp == pytest.approx(optimal_order(G, E, deps, futures=True)[0])
