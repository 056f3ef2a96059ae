"""Seeded tool times: deterministic, order-independent, within the profile, right mean."""

from __future__ import annotations

import statistics

import pytest

from asynclm.bench.bfcl.timing import PROFILES, CallTimer, call_duration, canonical_args


def test_duration_is_a_pure_function_of_its_key() -> None:
    a = call_duration(0, "parallel_0", "f", {"x": 1, "y": [1, 2]})
    assert a == call_duration(0, "parallel_0", "f", {"y": (1, 2), "x": 1.0})  # canonical args
    assert a != call_duration(1, "parallel_0", "f", {"x": 1, "y": [1, 2]})
    assert a != call_duration(0, "parallel_1", "f", {"x": 1, "y": [1, 2]})
    assert a != call_duration(0, "parallel_0", "g", {"x": 1, "y": [1, 2]})
    assert a != call_duration(0, "parallel_0", "f", {"x": 1, "y": [1, 2]}, k=1)
    assert canonical_args({"b": 2.0, "a": (1,)}) == '{"a":[1],"b":2}'


def test_call_timer_is_independent_of_emission_order() -> None:
    calls = [("f", {"x": 1}), ("f", {"x": 2}), ("g", {}), ("f", {"x": 1})]
    t1 = CallTimer(7, "item")
    fwd = [t1.next(fn, a) for fn, a in calls]
    t2 = CallTimer(7, "item")
    rev = [t2.next(fn, a) for fn, a in reversed(calls)]
    assert sorted(fwd) == sorted(rev)
    assert fwd[1] == rev[2] and fwd[2] == rev[1]  # the same call gets the same time
    assert fwd[0] != fwd[3]  # a repeated identical call gets the next draw


@pytest.mark.parametrize("name", ["paper", "web"])
def test_profile_bounds_and_mean(name: str) -> None:
    p = PROFILES[name]
    xs = [call_duration(3, f"i{i}", "fn", {"i": i}, profile=name) for i in range(20000)]
    assert p.lo_s <= min(xs) and max(xs) <= p.hi_s
    assert statistics.fmean(xs) == pytest.approx(p.mean_s, rel=0.03)
    if name == "paper":
        assert (p.lo_s, p.hi_s) == (0.03, 0.5)
        assert p.mean_s == pytest.approx(0.11, abs=0.002)
    else:
        assert (p.lo_s, p.hi_s) == (0.3, 3.0)


def test_unknown_profile() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        call_duration(0, "i", "f", {}, profile="nope")
