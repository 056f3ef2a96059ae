"""The lower bound of a BFCL run from its own measurements (:mod:`asynclm.bench.bfcl.bound`);
the bound over whole benchmark runs is checked in ``test_bfcl_run.py``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from asynclm.bench.bfcl.bound import lower_bound
from asynclm.runtime import CallRecord
from asynclm.trace import Trace


def test_a_call_written_after_the_last_injection_is_counted_once() -> None:
    """Its tokens are part of the answer's decode A, not also a G_i: the bound stays below the
    measured time (and the result it never delivered holds nothing up)."""
    trace = Trace()
    trace.add_span("prefill", "prefill", 0.0, 1.0)
    trace.add_span("decode", "decode", 1.0, 3.0, tokens=20)
    trace.add_span("interrupt", "inject", 3.0, 4.0)
    trace.add_span("decode", "decode", 4.0, 6.0, tokens=20)
    a = CallRecord(id="a", fn="f", args={}, raw="a", status="ok", emitted_at=3.0,
                   started_at=3.0, ended_at=3.5, injected_at=4.0)
    b = CallRecord(id="b", fn="f", args={}, raw="b", status="ok", emitted_at=6.0,
                   started_at=6.0, ended_at=6.2)
    result = SimpleNamespace(trace=trace, n_generated=40, calls=[a, b], counters={})
    lb = lower_bound(result, lambda raw: 20)  # type: ignore[arg-type]
    assert lb["answer_s"] == 2.0 and lb["sum_G_s"] == 2.0  # b's 20 tokens only in A
    assert lb["lb_s"] == pytest.approx(1.0 + 2.5 + 2.0)  # P + (G_a + E_a) + A
    assert lb["lb_ingest_s"] == pytest.approx(1.0 + 3.0 + 2.0)  # P + (D − A + I) + A: 6 s
    assert lb["ingest_s"] == 1.0


def test_call_estimates_never_sum_past_the_measured_decode() -> None:
    """G_i = τ · tokens(call) is an estimate; where it overshoots the decode the calls are part
    of, the bound would exceed the measured latency. The estimates are scaled down to fit."""
    trace = Trace()
    trace.add_span("prefill", "prefill", 0.0, 1.0)
    trace.add_span("decode", "decode", 1.0, 3.0, tokens=20)
    trace.add_span("interrupt", "inject", 3.0, 4.0)
    trace.add_span("decode", "decode", 4.0, 5.0, tokens=20)
    calls = [CallRecord(id=k, fn="f", args={}, raw=k, status="ok", emitted_at=3.0,
                        started_at=3.0, ended_at=3.0, injected_at=4.0) for k in "ab"]
    result = SimpleNamespace(trace=trace, n_generated=40, calls=calls, counters={})
    lb = lower_bound(result, lambda raw: 15)  # type: ignore[arg-type]  # 30 tokens > 20 decoded
    assert lb["sum_G_s"] == pytest.approx(2.0)  # scaled from 30 · τ = 3 s to D − A
    assert lb["lb_ingest_s"] == pytest.approx(5.0)  # P + (D − A + I) + A: the measured time
    assert lb["lb_s"] <= lb["lb_ingest_s"]


def test_calls_on_one_instance_chain_without_waiting_when_the_model_wrote_ahead() -> None:
    """``futures=None``: where the model wrote a call on an instance before the previous call's
    result was in, that result was not needed, and the chain is bounded as with futures (the
    bound without them, G_a + E_a + G_b + E_b, would exceed this run's measured time)."""
    def run(b_emitted: float) -> SimpleNamespace:
        trace = Trace()
        trace.add_span("decode", "decode", 0.0, 2.0, tokens=20)
        trace.add_span("interrupt", "inject", 3.5, 3.6)
        trace.add_span("decode", "decode", 3.6, 4.0, tokens=4)
        a = CallRecord(id="a", fn="f", args={}, raw="a", status="ok", emitted_at=1.0,
                       started_at=1.0, ended_at=2.5, injected_at=3.5)
        b = CallRecord(id="b", fn="f", args={}, raw="b", status="ok", emitted_at=b_emitted,
                       started_at=2.5, ended_at=3.5, injected_at=3.6)
        return SimpleNamespace(trace=trace, n_generated=24, calls=[a, b], counters={})

    key = {"order_key": lambda c: "instance"}
    ahead = run(2.0)  # b written while a ran
    lb = lower_bound(ahead, lambda raw: 10, futures=None, **key)  # type: ignore[arg-type]
    assert lb == lower_bound(ahead, lambda raw: 10, futures=True, **key)  # type: ignore[arg-type]
    assert lb["lb_s"] <= 4.0
    assert lower_bound(ahead, lambda raw: 10, **key)["lb_s"] > 4.0  # type: ignore[arg-type]
    waited = run(3.55)  # b written after a's result was in
    assert (lower_bound(waited, lambda raw: 10, futures=None, **key)  # type: ignore[arg-type]
            == lower_bound(waited, lambda raw: 10, **key))  # type: ignore[arg-type]
