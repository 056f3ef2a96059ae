"""Recording spans: decode coalescing, bounds, validation and the breakdown."""

from __future__ import annotations

import time

import pytest

from asynclm.trace import Breakdown, Instant, Span, SpanKind, Trace

# -- coalescing --------------------------------------------------------------------------------


def test_touching_decode_spans_coalesce_and_sum_tokens():
    t = Trace()
    for k in range(100):
        t.add_span("decode", "decode", k * 0.01, (k + 1) * 0.01, tokens=1)
    (span,) = t.model_spans
    assert span.kind is SpanKind.DECODE
    assert span.start == 0.0 and span.end == pytest.approx(1.0)
    assert span.tokens == 100 and span.attrs == {"tokens": 100}
    assert len(t) == 1


def test_coalescing_tolerance_is_1e_9():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
    t.add_span("decode", "decode", 1.0 + 5e-10, 2.0, tokens=1)  # touches
    t.add_span("decode", "decode", 2.0 + 1e-6, 3.0, tokens=1)  # a gap: new span
    t.add_span("decode", "decode", 2.5, 4.0, tokens=1)  # overlaps, does not touch: new span
    assert [(s.start, s.end, s.tokens) for s in t.model_spans] == [
        (0.0, 2.0, 2),
        (2.0 + 1e-6, 3.0, 1),
        (2.5, 4.0, 1),
    ]


def test_tools_and_instants_do_not_break_a_decode_run():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
    t.add_span("tool", "f", 0.5, 0.9, call_id="c1")
    t.add_instant("call.emitted", 0.5, call_id="c1")
    t.add_span("decode", "decode", 1.0, 2.0, tokens=1)
    assert [(s.start, s.end, s.tokens) for s in t.model_spans] == [(0.0, 2.0, 2)]


def test_model_spans_break_a_decode_run():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
    t.add_span("interrupt", "inject", 1.0, 1.0, call_ids=["c1"])  # zero-length, still a break
    t.add_span("decode", "decode", 1.0, 2.0, tokens=1)
    assert [s.kind for s in t.model_spans] == ["decode", "interrupt", "decode"]


def test_different_name_or_attrs_do_not_coalesce():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
    t.add_span("decode", "answer", 1.0, 2.0, tokens=1)
    t.add_span("decode", "answer", 2.0, 3.0, tokens=1, phase="x")
    t.add_span("decode", "answer", 3.0, 4.0, tokens=2, phase="x")
    spans = t.model_spans
    assert [(s.name, s.tokens, s.attrs.get("phase")) for s in spans] == [
        ("decode", 1, None),
        ("answer", 1, None),
        ("answer", 3, "x"),
    ]


def test_reading_mid_run_does_not_stop_coalescing():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
    assert t.model_spans[0].tokens == 1
    assert t.breakdown().n_tokens == 1
    t.add_span("decode", "decode", 1.0, 2.0, tokens=1)
    assert [(s.end, s.tokens) for s in t.model_spans] == [(2.0, 2)]


def test_decode_hot_path_is_cheap():
    t = Trace()
    add = t.add_span
    n = 100_000
    t0 = time.perf_counter()
    for k in range(n):
        add("decode", "decode", k * 1e-3, (k + 1) * 1e-3, tokens=1)
    elapsed = time.perf_counter() - t0
    assert len(t) == 1 and t.model_spans[0].tokens == n
    assert elapsed < 2.0  # about 0.1 s on a laptop; generous for loaded CI machines


# -- recording rules ---------------------------------------------------------------------------


def test_span_and_instant_objects(make_trace):
    t = make_trace()
    tools = t.tool_spans
    assert [s.call_id for s in tools] == ["c1", "c2", "c3"]
    assert tools[0] == Span(
        SpanKind.TOOL, "get_weather", 2.0, 5.0, {"call_id": "c1", "outcome": "ok"}
    )
    assert tools[0].duration == 3.0
    assert t.instants[0] == Instant("call.emitted", 2.0, {"call_id": "c1"})
    starts = [s.start for s in t.spans]
    assert starts == sorted(starts)
    assert len(t.spans) == len(t.model_spans) + len(tools)


def test_kinds_accept_enum_members():
    t = Trace()
    t.add_span(SpanKind.PREFILL, "prefill", 0.0, 1.0)
    t.add_span(SpanKind.DECODE, "decode", 1.0, 2.0, tokens=1)
    t.add_span(SpanKind.DECODE, "decode", 2.0, 3.0, tokens=1)
    assert [s.kind for s in t.model_spans] == [SpanKind.PREFILL, SpanKind.DECODE]
    assert t.model_spans[1].tokens == 2


@pytest.mark.parametrize(
    ("kind", "start", "end", "match"),
    [
        ("decode", 2.0, 1.0, "ends before"),
        ("tool", 2.0, 1.0, "ends before"),
        ("prefill", float("nan"), 1.0, "ends before"),
        ("sleep", 0.0, 1.0, "unknown span kind"),
    ],
)
def test_invalid_spans(kind, start, end, match):
    with pytest.raises(ValueError, match=match):
        Trace().add_span(kind, "x", start, end)


def test_bounds_default_to_first_and_last_timestamp():
    t = Trace()
    assert t.start is None and t.end is None and t.duration == 0.0
    t.add_instant("call.emitted", 0.5, call_id="c1")
    t.add_span("tool", "f", 1.0, 3.0, call_id="c1")
    t.add_span("decode", "decode", 0.75, 2.0, tokens=1)
    assert (t.start, t.end) == (0.5, 3.0)
    t.set_bounds(0.0, 4.0)
    assert (t.start, t.end, t.duration) == (0.0, 4.0, 4.0)
    t.set_bounds(end=2.5)
    assert (t.start, t.end) == (0.5, 2.5)
    with pytest.raises(ValueError):
        t.set_bounds(2.0, 1.0)


# -- breakdown ---------------------------------------------------------------------------------


def test_breakdown_of_handmade_trace(make_trace):
    b = make_trace().breakdown()
    assert isinstance(b, Breakdown)
    assert b.total_s == pytest.approx(10.0)
    assert b.decode_s == pytest.approx(3.0 + 1.5 + 0.5)
    assert b.prefill_s == pytest.approx(1.0 + 0.5)  # prefill + reprefill
    assert b.interrupt_s == pytest.approx(0.5)
    assert b.tool_s == pytest.approx(5.0 + 1.0)  # union: [2, 7] and [7.5, 8.5]
    assert b.tool_busy_s == pytest.approx(3.0 + 4.0 + 1.0)
    # decode ∩ tools: [2, 4] + [6.5, 7] + [7.5, 8]
    assert b.overlap_s == pytest.approx(2.0 + 0.5 + 0.5)
    assert b.idle_s == pytest.approx(2.0 + 1.0)  # trap 4-6 and nothing 8-9
    assert b.n_tokens == 3 + 2 + 1
    assert b.n_calls == 3
    assert b.decode_s + b.prefill_s + b.interrupt_s + b.idle_s == pytest.approx(b.total_s)


def test_breakdown_clips_to_explicit_bounds(make_trace):
    t = make_trace()
    t.set_bounds(2.0, 8.0)
    b = t.breakdown()
    assert b.total_s == pytest.approx(6.0)
    assert b.decode_s == pytest.approx(2.0 + 1.5)
    assert b.prefill_s == 0.0
    assert b.tool_s == pytest.approx(5.0 + 0.5)
    assert b.idle_s == pytest.approx(2.0)
    assert b.overlap_s == pytest.approx(2.0 + 0.5 + 0.5)


def test_breakdown_gap_before_first_span_is_idle():
    t = Trace()
    t.set_bounds(0.0, 3.0)
    t.add_span("decode", "decode", 1.0, 2.0, tokens=1)
    t.add_span("tool", "f", 0.0, 3.0, call_id="c1")
    b = t.breakdown()
    assert (b.idle_s, b.decode_s, b.overlap_s, b.tool_s) == (2.0, 1.0, 1.0, 3.0)


def test_empty_breakdown():
    b = Trace().breakdown()
    assert b.total_s == 0.0 and b.n_calls == 0 and b.n_tokens == 0


def test_breakdown_dict_and_summary(make_trace):
    b = make_trace().breakdown()
    d = b.as_dict()
    assert set(d) == {
        "total_s",
        "decode_s",
        "prefill_s",
        "interrupt_s",
        "tool_s",
        "tool_busy_s",
        "overlap_s",
        "idle_s",
        "n_tokens",
        "n_calls",
    }
    text = str(b)
    assert "\n" not in text
    assert "10.000s" in text and "3 calls" in text and "6 tok" in text
    with pytest.raises(AttributeError):
        b.total_s = 1.0  # type: ignore[misc]
