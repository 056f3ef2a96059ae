"""Gantt PNGs, the render helper, text timelines, and the lazy matplotlib import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from asynclm.trace import Trace, gantt, gantt_compare, render, text_timeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


# -- gantt -------------------------------------------------------------------------------------


def test_gantt_writes_a_png(tmp_path, make_trace):
    out = tmp_path / "g.png"
    make_trace().gantt(out, title="hand-made")
    assert _is_png(out)


def test_gantt_function_and_empty_trace(tmp_path):
    out = tmp_path / "empty.png"
    gantt(Trace(), out)
    assert _is_png(out)


def test_gantt_with_many_calls_and_odd_outcomes(tmp_path):
    t = Trace(meta={"strategy": "async"})
    t.add_span("prefill", "prefill", 0.0, 0.1)
    for k in range(30):
        t.add_span("decode", "decode", 0.1 + k * 0.01, 0.11 + k * 0.01, tokens=1)
        t.add_instant("call.emitted", 0.1 + k * 0.01, call_id=f"c{k}")
        t.add_span(
            "tool",
            "a_rather_long_function_name_here",
            0.1 + k * 0.01,
            0.5 + k * 0.02,
            call_id=f"c{k}",
            outcome=("ok", "error", "timeout", "cancelled", "weird")[k % 5],
        )
    out = tmp_path / "many.png"
    t.gantt(out)
    assert _is_png(out)


def test_gantt_compare_stacks_traces(tmp_path, make_trace):
    sync = Trace(meta={"strategy": "sync"})
    sync.add_span("decode", "decode", 5.0, 6.0, tokens=10)
    sync.add_span("tool", "f", 6.0, 9.0, call_id="c1")
    sync.add_span("trap", "trap", 6.0, 9.0)
    sync.add_span("decode", "decode", 9.0, 11.0, tokens=10)
    out = tmp_path / "cmp.png"
    gantt_compare([("sync", sync), ("async", make_trace())], out, title="sync vs async")
    assert _is_png(out)
    with pytest.raises(ValueError):
        gantt_compare([], tmp_path / "none.png")


def test_render_loads_writes_png_and_returns_breakdown(tmp_path, make_trace):
    t = make_trace()
    src = tmp_path / "run.trace.json"
    t.save(src)
    png = tmp_path / "run.png"
    b = render(src, png)
    assert b == t.breakdown()
    assert _is_png(png)
    assert render(str(src)) == b  # no PNG requested
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.png", "run.trace.json"]


# -- text timeline -----------------------------------------------------------------------------


def test_text_timeline(make_trace):
    t = make_trace()
    text = text_timeline(t, width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].startswith("LLM")
    call_rows = [line for line in lines if line.startswith(("c1 ", "c2 ", "c3 "))]
    assert len(call_rows) == 3
    model = lines[0]
    for ch in "█▒◆░":
        assert ch in model
    assert all("▓" in row for row in call_rows)
    assert call_rows[1].endswith("error") and call_rows[2].endswith("timeout")
    assert "·" in call_rows[0]  # c1 finished at 5 s, injected at 6.5 s
    assert "10s" in text  # axis end
    assert t.text_timeline(60) == text_timeline(t, 60)


def test_text_timeline_places_spans_in_time():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 5.0, tokens=5)
    t.add_span("trap", "trap", 5.0, 10.0)
    t.add_span("tool", "f", 5.0, 10.0, call_id="c1")
    lines = text_timeline(t, width=40).splitlines()
    bar = lines[0].split("│")[1]
    half = len(bar) // 2
    assert set(bar[:half]) == {"█"} and set(bar[half:]) == {"░"}
    tool = lines[1].split("│")[1]
    assert set(tool[:half]) == {" "} and set(tool[half:]) == {"▓"}


def test_text_timeline_short_spans_stay_visible():
    t = Trace()
    t.add_span("decode", "decode", 0.0, 100.0, tokens=100)
    t.add_span("interrupt", "inject", 100.0, 100.001)
    t.add_span("decode", "decode", 100.001, 200.0, tokens=100)
    t.add_span("tool", "f", 10.0, 10.0001, call_id="c1")
    lines = text_timeline(t, width=50).splitlines()
    assert lines[0].count("◆") == 1
    assert lines[1].count("▓") == 1


def test_text_timeline_empty_and_narrow():
    assert text_timeline(Trace()).startswith("LLM")
    t = Trace()
    t.add_span("decode", "decode", 1.0, 1.0, tokens=1)
    t.add_span("tool", "f", 1.0, 1.0, call_id="c1")
    text = text_timeline(t, width=5)  # too narrow: still at least 10 cells
    assert "█" in text and "▓" in text


# -- lazy import -------------------------------------------------------------------------------


def test_import_does_not_load_matplotlib():
    code = textwrap.dedent(
        """
        import sys
        import asynclm.trace as tr
        t = tr.Trace()
        t.add_span("decode", "decode", 0.0, 1.0, tokens=1)
        t.add_span("tool", "f", 0.0, 1.0, call_id="c1")
        t.to_chrome(); t.breakdown(); tr.text_timeline(t)
        assert not [m for m in sys.modules if m.split(".")[0] == "matplotlib"], "matplotlib loaded"
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_public_api():
    import asynclm.trace as tr

    assert sorted(tr.__all__) == sorted(
        [
            "Breakdown",
            "Instant",
            "Span",
            "SpanKind",
            "Trace",
            "gantt",
            "gantt_compare",
            "render",
            "text_timeline",
        ]
    )
    for name in tr.__all__:
        assert getattr(tr, name).__module__.startswith("asynclm.trace")
