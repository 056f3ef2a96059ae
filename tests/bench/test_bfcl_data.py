"""Loading BFCL items and ground truth from the installed package; BFCL's own checker."""

from __future__ import annotations

import pytest

from asynclm.bench.bfcl.checker import check
from asynclm.bench.bfcl.data import (
    RUNNABLE_CATEGORIES, categories, first_acceptable, ground_truth_calls, load,
)


@pytest.mark.parametrize(("category", "n", "mean_calls", "max_calls"), [
    ("parallel", 200, 2.7, 8),
    ("parallel_multiple", 200, 3.0, 5),
])
def test_parallel_categories_load_with_ground_truth(
    category: str, n: int, mean_calls: float, max_calls: int
) -> None:
    items = load(category)
    assert len(items) == n
    counts = [len(it.ground_truth) for it in items]
    assert abs(sum(counts) / n - mean_calls) < 0.06
    assert max(counts) == max_calls
    assert len({it.id for it in items}) == n
    for it in items:
        assert it.category == category and not it.multi_turn
        assert it.question and it.functions
        assert all(isinstance(c, dict) and len(c) == 1 for c in it.ground_truth)


def test_limit_offset_and_other_categories() -> None:
    items = load("parallel", limit=3, offset=5)
    assert [it.id for it in items] == ["parallel_5", "parallel_6", "parallel_7"]
    assert len(load("simple_python")) == 400
    assert len(load("multiple")) == 200
    irr = load("irrelevance", limit=2)
    assert irr and all(it.ground_truth == () for it in irr)
    shipped = categories()
    assert set(RUNNABLE_CATEGORIES) <= set(shipped)
    with pytest.raises(ValueError, match="unknown BFCL category"):
        load("no_such_category")


def test_multi_turn_items_load_with_their_class_tools() -> None:
    (item,) = load("multi_turn_base", limit=1)
    assert item.multi_turn and len(item.turns) == len(item.ground_truth) > 1
    names = {f["name"] for f in item.functions}
    assert {"cd", "mkdir", "mv"} <= names
    assert "initial_config" in item.extra
    assert all(isinstance(call, str) for turn in item.ground_truth for call in turn)


def test_first_acceptable_values() -> None:
    params = {"a": [5, 6], "b": ["", "x"], "c": [""], "d": [None, ""], "e": [{"k": ["v", ""]}]}
    assert first_acceptable(params) == {"a": 5, "b": "x", "e": {"k": "v"}}


@pytest.mark.parametrize("category", ["parallel", "simple_python", "multiple"])
def test_checker_accepts_ground_truth(category: str) -> None:
    for item in load(category, limit=25):
        valid, error = check(item, ground_truth_calls(item))
        assert valid, (item.id, error)


def test_checker_parallel_is_order_free_and_rejects_a_wrong_value() -> None:
    (item,) = load("parallel", limit=1)  # spotify.play: Taylor Swift 20, Maroon 5 15
    calls = ground_truth_calls(item)
    assert check(item, list(reversed(calls))) == (True, None)
    assert check(item, [{fn: args} for fn, args in calls])[0]
    wrong = [(fn, {**args, "duration": args["duration"] + 1}) for fn, args in calls]
    valid, error = check(item, wrong)
    assert not valid and "duration" in error
    valid, error = check(item, calls[:1])
    assert not valid and error


def test_checker_relevance_categories() -> None:
    (irr,) = load("irrelevance", limit=1)
    assert check(irr, []) == (True, None)
    assert not check(irr, [("f", {})])[0]
    (rel,) = load("live_relevance", limit=1)
    assert check(rel, [("f", {})])[0]
    assert not check(rel, [])[0]


def test_checker_survives_odd_values() -> None:
    (item,) = load("parallel", limit=1)
    valid, error = check(item, [("spotify.play", {"artist": object(), "duration": [1, {2: 3}]})])
    assert not valid and error
