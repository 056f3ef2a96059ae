"""``asynclm demo`` (asynclm.demo): the live scenario with multi-second tools, sync vs async vs
async with when-idle delivery, on the simulator."""

from __future__ import annotations

from asynclm.demo import DEMO_VARIANTS, report, run_sim_demo, write_outputs


def test_sim_demo_reports_latencies_first_answer_and_ratios(tmp_path):
    run = run_sim_demo()
    assert list(run.results) == list(DEMO_VARIANTS) == ["sync", "async", "async-when-idle"]
    assert all(m.used_all for m in run.metrics.values())
    # slow tools: async answers long before sync, and finishes sooner
    assert run.speedup > 1.5
    ratio = run.first_answer_ratio()
    assert ratio is not None and ratio > 5
    text = report(run)
    assert "tools: research 8 s, book_flight 6 s, get_weather 1 s" in text
    assert "first answer" in text and "used every result: yes" in text
    assert f"speedup async vs sync (simulator): {run.speedup:.2f}x total latency" in text
    names = {p.name for p in write_outputs(run, tmp_path)}
    assert {"trace-sync.json", "trace-async.json", "trace-async-when-idle.json",
            "gantt-sync-vs-async.png"} <= names
