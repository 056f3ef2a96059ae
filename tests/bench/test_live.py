"""``asynclm bench live`` and the live scenarios (asynclm.demo_live) on the simulator: time to
first answer, total latency, answers that used every result, when-idle delivery; the llama
path's plumbing with a simulated engine standing in for llama.cpp (real time, tiny latencies)."""

from __future__ import annotations

import json

import pytest

from asynclm import demo_live
from asynclm.bench.live import (
    LLAMA_VARIANTS,
    SIM_VARIANTS,
    bench_live_llama,
    bench_live_sim,
    markdown,
)
from asynclm.demo_live import DINNER, SCENARIOS, TRIP, run_scenario
from asynclm.runtime import events as ev
from asynclm.runtime import run_virtual
from asynclm.testing.sim import SimCosts, SimEngine


@pytest.fixture(scope="module")
def sim_result():
    return bench_live_sim(repeats=2)


def test_async_answers_first_and_sooner_with_every_result_used(sim_result):
    assert set(sim_result["summary"]) == {*SCENARIOS, "all"}
    for name, scenario in SCENARIOS.items():
        by = sim_result["summary"][name]
        assert list(by) == list(SIM_VARIANTS)
        serial = sum(scenario.latencies.values())
        # sync: the first words come after every tool ran, one after another
        assert by["sync"]["first_answer_s"]["median"] > serial
        for v in ("async", "async-when-idle", "async-lazy"):
            cell = by[v]
            # async: it talks before the quickest tool (1 s) has even returned
            assert cell["first_answer_s"]["median"] < 3.0
            assert cell["first_fact_s"]["median"] < by["sync"]["first_fact_s"]["median"] / 2
            # total: about the slowest tool (8 s) plus decoding, not the sum of the tools
            assert cell["latency_s"]["median"] < serial
            assert cell["vs_sync"]["latency_s"] > 1.5
            assert cell["vs_sync"]["first_answer_s"] > 5
        for cell in by.values():
            assert cell["runs"] == cell["used_all"] == cell["finished"] == 2
            assert cell["latency_s"]["n"] == 2  # median over the repeats
    assert all(r["used_all"] and r["calls"] == 3 and r["partials"] == 1 for r in
               sim_result["runs"])


def test_report_states_latencies_definition_and_command(sim_result):
    md = markdown(sim_result, "asynclm bench live --engine sim --repeats 2")
    assert "Command: `asynclm bench live --engine sim --repeats 2`" in md
    assert "`research` 8 s" in md and "`book_table` 5 s" in md and "`get_weather` 1 s" in md
    assert "first `text.delta`" in md
    assert "| async-when-idle |" in md and "x |" in md
    assert sim_result["tool_latencies_s"] == {
        "research": 8.0, "book_table": 5.0, "get_weather": 1.0, "book_flight": 6.0}


def _runs(variant: str) -> list[ev.StreamEvent]:
    events: list[ev.StreamEvent] = []
    run_virtual(run_scenario(DINNER.sim_engine(), DINNER, variant, on_event=events.append))
    return events


def _before_results(events: list[ev.StreamEvent]) -> list[str]:
    """For each injected batch of results, what the model was doing just before: the type of
    the last text, trap or waiting event."""
    last, out = None, []
    for e in events:
        if isinstance(e, (ev.TextDelta, ev.TrapEvent, ev.Waiting)):
            last = e.type
        elif isinstance(e, ev.InterruptInjected) and e.call_ids:
            out.append(last or "")
    return out


def test_when_idle_results_wait_for_the_model_to_pause():
    # async: the weather lands in the middle of the model's first sentence
    assert "text.delta" in _before_results(_runs("async"))
    # async with every call delivered when_idle: only at a trap (or a wait)
    idle = _before_results(_runs("async-when-idle"))
    assert len(idle) == 3 and set(idle) <= {"trap", "waiting"}


def test_first_answer_is_prose_after_the_results_under_sync():
    events = _runs("sync")
    done = next(e for e in events if isinstance(e, ev.Done))
    t0 = done.t - done.result.latency_s
    last_result = max(e.t for e in events if isinstance(e, ev.CallCompleted))
    _, m = run_virtual(run_scenario(DINNER.sim_engine(), DINNER, "sync"))
    first_text = min(e.t for e in events if isinstance(e, ev.TextDelta) and e.text.strip())
    assert m.first_answer_s == pytest.approx(first_text - t0)
    assert m.first_answer_s > last_result - t0  # the call blocks are not the answer


def test_used_every_result_ignores_case_and_spaces():
    assert DINNER.missing_facts("code bk-4821, 19°C tonight") == ["Taberna Sal"]
    assert DINNER.used_every_result("Taberna  Sal; BK-4821; 19 °C")
    assert TRIP.latency_line() == "tools: research 8 s, book_flight 6 s, get_weather 1 s"


class _Mux:
    """One simulated model for every scenario (the engine is shared, as llama.cpp's is)."""

    def __init__(self) -> None:
        self.policy = DINNER.policy()

    def reset(self, prompt: str) -> None:
        scenario = next(s for s in SCENARIOS.values() if s.prompt in prompt)
        self.policy = scenario.policy()
        self.policy.reset(prompt)

    def observe(self, call_id: str | None, payload: str) -> None:
        self.policy.observe(call_id, payload)

    def next_text(self) -> str | None:
        return self.policy.next_text()


def test_llama_path_runs_every_scenario_on_one_engine(monkeypatch):
    import asynclm.engines.llamacpp as llamacpp
    import asynclm.models as models

    opened: list[tuple[str, object]] = []

    def fake_engine(path: str, n_threads: int | None = None) -> SimEngine:
        opened.append((path, n_threads))
        return SimEngine(_Mux(), SimCosts(tpot_s=0.0002), virtual_time=False)

    monkeypatch.setattr(llamacpp, "LlamaCppEngine", fake_engine)
    monkeypatch.setattr(models, "pull", lambda name: f"/models/{name}.gguf")
    for name in ("RESEARCH_S", "BOOK_TABLE_S", "BOOK_FLIGHT_S", "WEATHER_S"):
        monkeypatch.setattr(demo_live, name, 0.02)
    lines: list[str] = []
    result = bench_live_llama(model="qwen2.5-coder-1.5b", threads=2, progress=lines.append)
    assert opened == [("/models/qwen2.5-coder-1.5b.gguf", 2)]
    assert result["engine"] == "llama" and result["params"]["max_tokens"] == 256
    assert [(r["scenario"], r["variant"]) for r in result["runs"]] == [
        (s, v) for s in SCENARIOS for v in LLAMA_VARIANTS]
    assert all(r["used_all"] and r["stop_reason"] == "eos" for r in result["runs"])
    assert len(lines) == len(result["runs"])
    md = markdown(result, "cmd")
    assert "through llama.cpp" in md and "2 threads" in md
    json.dumps(result)  # the JSON written to benchmarks/results


def test_cli_writes_json_and_markdown(tmp_path):
    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out, md = tmp_path / "live.json", tmp_path / "live.md"
    result = typer_testing.CliRunner().invoke(app, [
        "bench", "live", "--engine", "sim", "--scenarios", "trip", "--variants", "sync,async",
        "--json", str(out), "--report", str(md)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("asynclm ")  # sys.argv: the test runner's here
    assert list(data["summary"]["trip"]) == ["sync", "async"]
    assert "`book_flight` 6 s" in md.read_text()

    bad = typer_testing.CliRunner().invoke(app, ["bench", "live", "--variants", "nope"])
    assert bad.exit_code == 1 and "unknown variant" in bad.output
