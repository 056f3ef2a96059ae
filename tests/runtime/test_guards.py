"""The loop detector: short token cycles over a window, and nothing else."""

from __future__ import annotations

from hypothesis import given, strategies as st

from asynclm.runtime.guards import LoopDetector


def _first_hit(tokens, **kw):
    d = LoopDetector(**kw)
    for i, t in enumerate(tokens):
        if d.feed(t):
            return i
    return None


def test_cycles_of_every_period_up_to_the_maximum_are_caught_at_the_window():
    for period in range(1, 13):
        cycle = list(range(100, 100 + period))
        assert _first_hit([1, 2, 3] + cycle * 100, window=48) == 3 + 47


def test_a_longer_period_or_a_short_run_is_not_a_loop():
    assert _first_hit(list(range(20)) * 10, window=48, max_period=12) is None
    assert _first_hit([7] * 47 + [8], window=48) is None


def test_reset_and_disabled():
    d = LoopDetector(window=8)
    for _ in range(7):
        d.feed(5)
    d.reset()
    assert not any(d.feed(5) for _ in range(7))
    assert d.feed(5)
    off = LoopDetector(window=0)
    assert not any(off.feed(1) for _ in range(200))


@given(st.lists(st.integers(0, 50), min_size=48, max_size=300, unique=False))
def test_it_fires_only_on_a_true_cycle(tokens):
    d = LoopDetector(window=48, max_period=12, min_repeats=4)
    for i, t in enumerate(tokens):
        if d.feed(t):
            tail = tokens[i - 47: i + 1]
            assert any(all(tail[j] == tail[j + p] for j in range(48 - p)) for p in range(1, 13))
