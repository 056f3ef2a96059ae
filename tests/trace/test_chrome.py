"""Chrome trace JSON export and save/load."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from asynclm.trace import Trace

PHASES = {"X", "b", "e", "i", "M", "C"}


def test_chrome_structure(make_trace):
    doc = make_trace().to_chrome()
    assert set(doc) == {"traceEvents", "displayTimeUnit", "metadata"}
    assert doc["displayTimeUnit"] == "ms"
    json.dumps(doc, allow_nan=False)  # plain JSON
    events = doc["traceEvents"]
    for ev in events:
        assert ev["ph"] in PHASES
        assert ev["pid"] == 1
        assert isinstance(ev["ts"], (int, float))
        if ev["ph"] == "X":
            assert ev["dur"] >= 0 and "tid" in ev


def test_chrome_times_are_microseconds_from_start():
    t = Trace()
    t.add_span("prefill", "prefill", 100.0, 100.25)
    t.add_span("tool", "f", 100.5, 101.0, call_id="c1")
    doc = t.to_chrome()
    xs = {e["name"]: e for e in doc["traceEvents"] if e["ph"] == "X"}
    assert (xs["prefill"]["ts"], xs["prefill"]["dur"]) == (0.0, 250_000.0)
    assert (xs["c1 f"]["ts"], xs["c1 f"]["dur"]) == (500_000.0, 500_000.0)
    assert doc["metadata"]["origin_s"] == 100.0


def test_llm_track_and_metadata_names(make_trace):
    doc = make_trace().to_chrome()
    events = doc["traceEvents"]
    names = {(e["tid"], e["name"]): e["args"] for e in events if e["ph"] == "M"}
    assert names[(1, "thread_name")] == {"name": "LLM"}
    assert "process_name" in {n for _, n in names}
    model = [e for e in events if e["ph"] == "X" and e["tid"] == 1]
    assert [e["cat"] for e in model] == [
        "prefill",
        "decode",
        "trap",
        "interrupt",
        "decode",
        "reprefill",
        "decode",
    ]
    assert model[1]["args"] == {"tokens": 3}
    instants = [(e["name"], e["args"]) for e in events if e["ph"] == "i"]
    assert ("call.emitted", {"call_id": "c1"}) in instants
    assert ("interrupt.injected", {"call_ids": ["c1", "c2"]}) in instants
    assert doc["metadata"]["strategy"] == "async"
    assert doc["metadata"]["breakdown"]["n_calls"] == 3


def test_every_async_begin_has_an_end(make_trace):
    doc = make_trace().to_chrome()
    events = doc["traceEvents"]
    begins = {(e["cat"], e["id"]): e for e in events if e["ph"] == "b"}
    ends = {(e["cat"], e["id"]): e for e in events if e["ph"] == "e"}
    assert set(begins) == set(ends) == {("tool", "c1"), ("tool", "c2"), ("tool", "c3")}
    for key, b in begins.items():
        assert ends[key]["ts"] >= b["ts"]
        assert ends[key]["name"] == b["name"]
        # in file order the begin comes first
        assert events.index(b) < events.index(ends[key])
    assert begins[("tool", "c2")]["args"]["outcome"] == "error"


def test_duplicate_and_missing_call_ids_get_distinct_async_ids():
    t = Trace()
    t.add_span("tool", "f", 0.0, 1.0, call_id="c1")
    t.add_span("tool", "f", 1.0, 1.0, call_id="c1")  # zero-length, same id
    t.add_span("tool", "g", 0.0, 2.0)
    events = t.to_chrome()["traceEvents"]
    ids = Counter(e["id"] for e in events if e["ph"] == "b")
    assert len(ids) == 3 and set(ids.values()) == {1}
    assert Counter(e["id"] for e in events if e["ph"] == "e") == ids


def test_concurrent_tools_get_separate_lanes(make_trace):
    doc = make_trace().to_chrome()
    lanes = {
        e["name"]: e["tid"] for e in doc["traceEvents"] if e["ph"] == "X" and e["cat"] == "tool"
    }
    assert lanes["c1 get_weather"] != lanes["c2 search"]  # overlap
    assert lanes["c3 lookup"] == lanes["c1 get_weather"]  # c1 is done by then: reuse lane 1
    assert 1 not in lanes.values()
    thread_names = {
        e["tid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"
    }
    assert all(tid in thread_names for tid in lanes.values())


def test_tools_in_flight_counter(make_trace):
    doc = make_trace().to_chrome()
    levels = [e["args"]["tools"] for e in doc["traceEvents"] if e["ph"] == "C"]
    assert max(levels) == 2 and levels[-1] == 0


def test_save_load_round_trip(tmp_path, make_trace):
    t = make_trace()
    t.set_bounds(0.0, 10.0)
    t.meta["extra"] = {"nested": [1, 2.5, None, True]}
    path = tmp_path / "run.trace.json"
    t.save(path)
    doc = json.loads(path.read_text())
    assert "traceEvents" in doc and "asynclm" in doc
    back = Trace.load(path)
    assert back == t
    assert back.model_spans == t.model_spans
    assert back.tool_spans == t.tool_spans
    assert back.instants == t.instants
    assert back.bounds == (0.0, 10.0)
    assert back.breakdown() == t.breakdown()
    assert back.to_chrome() == t.to_chrome()


def test_round_trip_is_exact_for_awkward_floats(tmp_path):
    t = Trace()
    t.add_span("decode", "decode", 1234567.123456789, 1234567.1234567891, tokens=1)
    t.add_span("tool", "f", 0.1 + 0.2, 1 / 3, call_id="c1")
    t.save(tmp_path / "t.json")
    assert Trace.load(tmp_path / "t.json") == t


def test_load_rejects_foreign_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"traceEvents": []}))
    with pytest.raises(ValueError, match="not an asynclm trace"):
        Trace.load(path)


def test_trace_equality(make_trace):
    assert make_trace() == make_trace()
    other = make_trace()
    other.add_instant("forged.rollback", 9.0)
    assert other != make_trace()
    assert Trace() != object()


def test_llm_track_slices_nest_even_if_spans_overlap():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 2.0, tokens=2)
    t.add_span("trap", "trap", 1.0, 3.0)  # overlaps the decode: a runtime quirk
    t.add_span("interrupt", "inject", 3.0, 3.5)
    model = [e for e in t.to_chrome()["traceEvents"] if e["ph"] == "X" and e["tid"] == 1]
    ends = 0.0
    for e in model:
        assert e["ts"] >= ends or e["ts"] + e["dur"] <= ends  # disjoint or nested
        ends = max(ends, e["ts"] + e["dur"])
    assert [(e["cat"], e["ts"], e["dur"]) for e in model] == [
        ("decode", 0.0, 2e6),
        ("trap", 2e6, 1e6),
        ("interrupt", 3e6, 0.5e6),
    ]
