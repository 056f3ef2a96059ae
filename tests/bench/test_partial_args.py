"""``asynclm bench partial-args`` on the simulator (virtual time)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from asynclm.bench.commands import bench_app
from asynclm.bench.partial_args import bench_sim, markdown, run_sim


def test_streamed_start_beats_normal_start() -> None:
    normal = run_sim(statements=6, stmt_s=0.5, tpot_ms=20, variant="normal")
    streamed = run_sim(statements=6, stmt_s=0.5, tpot_ms=20, variant="streamed")
    for r in (normal, streamed):
        assert r["status"] == "ok" and r["statements_run"] == 6 and r["stop_reason"] == "eos"
    assert streamed["start_vs_emit_s"] < 0 <= normal["start_vs_emit_s"]
    assert streamed["latency_s"] < normal["latency_s"] * 0.8
    # normal waits for every statement after the block; streamed only for the last one
    assert normal["wait_after_emit_s"] >= 6 * 0.5 - 1e-6
    assert streamed["wait_after_emit_s"] < 2 * 0.5 + 1e-6


def test_report_and_command(tmp_path) -> None:
    result = bench_sim(statements=[3], stmt_s=[0.2])
    (row,) = result["scenarios"]
    assert row["latency_reduction"] > 0
    assert "| 3 | 0.2 |" in markdown(result, "cmd")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(bench_app, [
        "partial-args", "--statements", "3", "--stmt-s", "0.2", "--json", str(out),
        "--report", str(tmp_path / "r.md")])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("asynclm ") and data["scenarios"][0]["statements"] == 3
    bad = CliRunner().invoke(bench_app, ["partial-args", "--engine", "nope"])
    assert bad.exit_code != 0
