"""Shared trace fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from asynclm.trace import Trace


def handmade() -> Trace:
    """Bounds [0, 10]. Model: prefill 0-1, decode 1-4 (per token), trap 4-6, interrupt 6-6.5,
    decode 6.5-8, nothing 8-9, reprefill 9-9.5, decode 9.5-10.
    Tools: c1 2-5 and c2 3-7 overlap, c3 7.5-8.5."""
    t = Trace(meta={"strategy": "async", "model": "test"})
    t.add_span("prefill", "prefill", 0.0, 1.0, tokens=100)
    t.add_instant("call.emitted", 2.0, call_id="c1")
    for k in range(3):
        t.add_span("decode", "decode", 1.0 + k, 2.0 + k, tokens=1)
    t.add_span("tool", "get_weather", 2.0, 5.0, call_id="c1", outcome="ok")
    t.add_instant("call.emitted", 3.0, call_id="c2")
    t.add_span("trap", "trap", 4.0, 6.0)
    t.add_span("interrupt", "inject", 6.0, 6.5, call_ids=["c1", "c2"], tokens=16)
    t.add_instant("interrupt.injected", 6.5, call_ids=["c1", "c2"])
    t.add_span("tool", "search", 3.0, 7.0, call_id="c2", outcome="error")
    t.add_span("decode", "decode", 6.5, 7.25, tokens=1)
    t.add_span("decode", "decode", 7.25, 8.0, tokens=1)
    t.add_span("tool", "lookup", 7.5, 8.5, call_id="c3", outcome="timeout")
    t.add_span("reprefill", "reprefill", 9.0, 9.5, tokens=40)
    t.add_span("decode", "decode", 9.5, 10.0, tokens=1)
    return t


@pytest.fixture
def make_trace() -> Callable[[], Trace]:
    """A factory for the hand-made trace (fresh each call)."""
    return handmade
