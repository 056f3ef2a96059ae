"""The reproduction table on a few items: strategies mapped as the paper's, goals computed from
the runs, the report and the plots written."""

from __future__ import annotations

import json

import pytest

from asynclm.bench.bfcl.reproduce import (
    BASELINE, PAPER_STRATEGIES, WRITE_AHEAD, Setting, goals, markdown, reproduce,
)

SETTINGS = (Setting("cloud-5ms", 5.0, 310.0, "GPT-4o"), Setting("local-5ms", 5.0, 59.0, "Llama-3B"))


@pytest.fixture(scope="module")
def result() -> dict:
    return reproduce(categories=("parallel", "multi_turn_base"), settings=SETTINGS, limit=2)


def test_cells_hold_every_strategy_and_the_papers_figures(result: dict) -> None:
    json.dumps(result, allow_nan=False)
    assert [(c["category"], c["setting"]["name"]) for c in result["cells"]] == [
        ("parallel", "cloud-5ms"), ("parallel", "local-5ms"),
        ("multi_turn_base", "cloud-5ms"), ("multi_turn_base", "local-5ms")]
    for c in result["cells"]:
        names = set(c["strategies"])
        assert set(PAPER_STRATEGIES.values()) | {"sync", "sync-parallel"} <= names
        assert (WRITE_AHEAD in names) == (c["category"] == "multi_turn_base")
        assert c["strategies"][BASELINE]["speedup_vs_sync"] == pytest.approx(1.0)
        for s, r in c["strategies"].items():
            assert r["n_valid"] == r["n"] == 2, (c["category"], s)
            assert all(0 < e <= 1 + 1e-9 for e in c["items"][s]["efficiency"])
    par = result["cells"][0]
    assert par["paper_speedup"] == {"Sync-Parallel": 1.7, "Async-Naive": 2.1, "Async": 2.1}
    assert result["cells"][2]["paper_speedup"] == {}  # the paper gives none for multi_turn_base


def test_ttft_only_matters_for_strategies_that_re_request(result: dict) -> None:
    cloud, local = result["cells"][0], result["cells"][1]
    for s in ("sync", "sync-parallel", "async"):  # first-to-last token: no request to pay
        assert cloud["items"][s]["latency_s"] == local["items"][s]["latency_s"]
    for s in ("sync-reprefill", "sync-parallel-reprefill", "async-naive"):
        assert all(a > b for a, b in zip(cloud["items"][s]["latency_s"],
                                         local["items"][s]["latency_s"], strict=True))
    # a re-request costs its TTFT: Sync pays one per call, so cloud Sync is slower by >= 251 ms
    # per call than local Sync
    n = cloud["strategies"]["async"]["calls_per_item"]
    diff = cloud["strategies"][BASELINE]["mean_s"] - local["strategies"][BASELINE]["mean_s"]
    assert diff == pytest.approx(n * 0.251, rel=1e-6)


def test_async_is_fastest_and_goals_are_computed_not_assumed(result: dict) -> None:
    for c in result["cells"]:
        st = c["strategies"]
        fastest = min(st, key=lambda s: st[s]["median_s"])
        assert fastest in ("async", WRITE_AHEAD), c["category"]
    gs = goals(result["cells"])
    assert [g["speedup_ok"] for g in gs[2:]] == [None, None]
    for g, c in zip(gs, result["cells"], strict=True):
        assert g["async_speedup"] == c["strategies"]["async"]["speedup_vs_sync"]
        assert g["async_speedup"] <= g["bound"] + 1e-9  # no schedule beats the lower bound
        if g["paper"] is not None:
            assert g["speedup_ok"] == (g["async_speedup"] >= g["paper"])


def test_report_and_plots(result: dict, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from asynclm.bench.bfcl.plots import PLOT_FILES, write_plots

    paths = write_plots(result, tmp_path)
    assert [p.name for p in paths] == list(PLOT_FILES)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
    md = markdown(result, "asynclm bench reproduce --limit 3", [p.name for p in paths])
    assert md.startswith("# AsyncLM's BFCL latency table")
    assert "`asynclm bench reproduce --limit 3`" in md
    assert "| Async + write-ahead (asynclm) |" in md and "2.1x" in md
    assert "## Differences from the paper" in md
    assert f"![{PLOT_FILES[0]}]({PLOT_FILES[0]})" in md


def test_cli_reproduce_and_rerender(tmp_path, monkeypatch) -> None:
    typer_testing = pytest.importorskip("typer.testing")
    pytest.importorskip("matplotlib")
    import sys

    from asynclm.cli import app

    out, md = tmp_path / "r.json", tmp_path / "r.md"
    args = ["bench", "reproduce", "--categories", "parallel", "--limit", "1",
            "--json", str(out), "--report", str(md)]
    monkeypatch.setattr(sys, "argv", ["asynclm", *args])
    res = typer_testing.CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("asynclm bench reproduce")
    assert (tmp_path / "bfcl-reproduce-speedup.png").is_file()
    md.unlink()
    res = typer_testing.CliRunner().invoke(
        app, ["bench", "reproduce", "--from-json", str(out), "--report", str(md)])
    assert res.exit_code == 0, res.output
    assert data["command"] in md.read_text()
