"""The BFCL runner on the simulator (virtual time): the oracle makes the ground-truth calls."""

from __future__ import annotations

import json
import sys

import pytest

from asynclm.bench.bfcl.report import markdown
from asynclm.bench.bfcl.run import BenchConfig, default_config, run_bfcl

STRATEGIES = "sync,sync-reprefill,sync-parallel,async,async-naive,bfcl-prompt"


@pytest.fixture(scope="module")
def parallel3() -> dict:
    return run_bfcl(default_config(category="parallel", limit=3, strategies=STRATEGIES,
                                   ttft_ms=40.0, seed=1))


def test_every_strategy_is_accurate_and_async_is_faster(parallel3: dict) -> None:
    summ = parallel3["strategies"]
    assert list(summ) == STRATEGIES.split(",")
    for s, row in summ.items():
        assert row["n"] == 3 and row["accuracy"] == 1.0, s
        assert row["well_formed_rate"] == 1.0, s
    assert summ["async"]["median_s"] < summ["sync-parallel"]["median_s"] < summ["sync"]["median_s"]
    assert summ["sync"]["median_s"] < summ["sync-reprefill"]["median_s"]  # TTFT per request
    assert summ["async"]["speedup_vs_sync"] > 1.1
    assert summ["async"]["efficiency_median"] > summ["sync"]["efficiency_median"]
    # re-sending strategies ingest results inside a re-prefill: no ingest-counted figures
    for s in ("sync-reprefill", "async-naive"):
        assert summ[s]["efficiency_ingest_median"] is None
        assert "bound_vs_sync_per_item_median" not in summ[s]
    a = summ["async"]
    assert a["bound_vs_sync_per_item_median"] >= a["speedup_vs_sync_per_item_median"] - 1e-9
    for item in parallel3["items"]:
        runs = item["runs"]
        assert runs["async"]["latency_s"] < runs["sync"]["latency_s"], item["id"]
        assert runs["async"]["n_calls"] == item["n_expected_calls"]


def test_records_are_complete_and_bounded(parallel3: dict) -> None:
    json.dumps(parallel3, allow_nan=False)  # JSON-ready
    for item in parallel3["items"]:
        for s, r in item["runs"].items():
            assert r["valid"] and r["check_error"] is None
            assert r["lb_s"] <= r["latency_s"] + 1e-9, (item["id"], s)
            b = r["breakdown"]
            assert b["total_s"] == pytest.approx(r["latency_s"])
            if s == "bfcl-prompt":
                continue
            assert r["first_token_s"] == pytest.approx(0.045)  # 40 ms TTFT + one 5 ms token
            assert 0 < r["efficiency"] <= 1 + 1e-9
            # counting result ingest as work raises the bound, never past the measured time
            assert r["lb_s"] <= r["lb_ingest_s"] <= r["latency_s"] + 1e-9
            assert r["lb_ingest_s"] - r["lb_s"] <= r["ingest_s"] + 1e-9
            # every call ran for its seeded time, the same under every strategy
            assert all(c["status"] == "ok" and c["exec_s"] > 0 for c in r["calls"])
        times = {s: sorted(round(c["exec_s"], 9) for c in r["calls"])
                 for s, r in item["runs"].items() if s != "bfcl-prompt"}
        assert len({tuple(v) for v in times.values()}) == 1, times


def test_async_overlaps_and_sync_does_not(parallel3: dict) -> None:
    for item in parallel3["items"]:
        assert item["runs"]["sync"]["breakdown"]["overlap_s"] == 0
        assert item["runs"]["async"]["breakdown"]["overlap_s"] > 0


def test_markdown_report(parallel3: dict) -> None:
    md = markdown(parallel3, "asynclm bench bfcl --limit 3")
    assert md.startswith("# BFCL parallel — 3 items")
    assert "`asynclm bench bfcl --limit 3`" in md
    for s in STRATEGIES.split(","):
        assert f"| {s} |" in md
    assert "3/3 (100%)" in md


@pytest.mark.parametrize("category", ["simple_python", "multiple", "parallel_multiple",
                                      "irrelevance"])
def test_other_categories_on_the_oracle(category: str) -> None:
    r = run_bfcl(default_config(category=category, limit=2, strategies="sync,async,bfcl-prompt"))
    for s, row in r["strategies"].items():
        assert row["accuracy"] == 1.0, (category, s)


def test_several_categories_in_one_run() -> None:
    r = run_bfcl(default_config(category="parallel, parallel_multiple", limit=2,
                                strategies="sync,async"))
    assert [it["id"] for it in r["items"]] == [
        "parallel_0", "parallel_1", "parallel_multiple_0", "parallel_multiple_1"]
    assert r["strategies"]["async"]["n"] == 4


def test_web_profile_and_seed_are_deterministic() -> None:
    cfg = default_config(category="parallel", limit=2, strategies="sync,async", profile="web")
    a, b = run_bfcl(cfg), run_bfcl(cfg)
    lat = lambda r: [run["latency_s"] for it in r["items"] for run in it["runs"].values()]  # noqa: E731
    assert lat(a) == lat(b)
    assert all(c["exec_s"] >= 0.3 for it in a["items"] for c in it["runs"]["sync"]["calls"])
    c = run_bfcl(default_config(category="parallel", limit=2, strategies="sync,async",
                                profile="web", seed=5))
    assert lat(c) != lat(a)


@pytest.mark.parametrize(("kw", "match"), [
    ({"category": "multi_turn_base", "strategies": ("bfcl-prompt",)}, "single-turn"),
    ({"category": "simple_java"}, "not runnable"),
    ({"strategies": ("sync", "warp")}, "unknown strategy"),
    ({"profile": "slow"}, "unknown profile"),
    ({"engine": "gpu"}, "unknown engine"),
])
def test_config_is_checked(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        run_bfcl(BenchConfig(**kw))


def test_cli_writes_json_and_markdown(tmp_path, monkeypatch) -> None:
    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out, md = tmp_path / "r.json", tmp_path / "r.md"
    args = ["bench", "bfcl", "--category", "parallel", "--limit", "2", "--strategies",
            "sync,async", "--json", str(out), "--report", str(md)]
    monkeypatch.setattr(sys, "argv", ["asynclm", *args])  # the recorded command
    res = typer_testing.CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["command"].startswith("asynclm ") and "--limit" in data["command"]
    assert set(data["strategies"]) == {"sync", "async"} and len(data["items"]) == 2
    assert md.read_text().startswith("# BFCL parallel")
    bad = typer_testing.CliRunner().invoke(app, ["bench", "bfcl", "--category", "nope"])
    assert bad.exit_code == 1
    bad = typer_testing.CliRunner().invoke(
        app, ["bench", "bfcl", "--prompt", "bfcl", "--strategies", "async"])
    assert bad.exit_code != 0


def test_bfcl_prompt_runs_in_its_own_pass_before_the_cml_strategies() -> None:
    from asynclm.bench.bfcl.run import _prompt_groups, default_config

    def groups(strategies: str) -> list[list[str]]:
        runs = default_config(strategies=strategies).runs
        return [[r.key for r in g] for g in _prompt_groups(runs)]

    assert groups("sync,bfcl-prompt,async") == [["bfcl-prompt"], ["sync", "async"]]
    assert groups("sync,async") == [["sync", "async"]]
    assert groups("bfcl-prompt") == [["bfcl-prompt"]]


def test_enforcement_off_is_passed_to_the_sessions_and_summarized() -> None:
    from asynclm.bench.bfcl.report import markdown
    from asynclm.bench.bfcl.run import default_config, run_bfcl

    result = run_bfcl(default_config(category="parallel", limit=2, strategies="sync,async",
                                     enforce=False))
    assert result["params"]["enforce"] is False
    for s in ("sync", "async"):
        row = result["strategies"][s]
        assert row["runs_forged"] == 0 and row["runs_eos_waits"] >= 0
    assert "runtime enforcement **off**" in markdown(result)


def test_an_adapter_needs_the_llamacpp_engine() -> None:
    import pytest

    from asynclm.bench.bfcl.run import default_config

    with pytest.raises(ValueError, match="adapter"):
        default_config(category="parallel", adapter="x.gguf").validate()


def test_results_over_different_items_merge_into_one(tmp_path) -> None:
    import json

    import pytest
    from typer.testing import CliRunner

    from asynclm.bench.bfcl.run import default_config, run_bfcl
    from asynclm.bench.bfcl.summary import merge_results
    from asynclm.cli import app

    whole = run_bfcl(default_config(category="parallel", limit=3, strategies="sync,async"))
    parts = [run_bfcl(default_config(category="parallel", offset=o, limit=n,
                                     strategies="sync,async")) for o, n in ((0, 2), (2, 1))]
    merged = merge_results(parts)
    assert [it["id"] for it in merged["items"]] == [it["id"] for it in whole["items"]]
    assert merged["strategies"]["async"]["median_s"] == whole["strategies"]["async"]["median_s"]
    with pytest.raises(ValueError, match="two results"):
        merge_results([parts[0], parts[0]])
    other = run_bfcl(default_config(category="parallel", limit=1, strategies="sync"))
    with pytest.raises(ValueError, match="not mergeable"):
        merge_results([parts[0], other])
    paths = []
    for k, p in enumerate(parts):
        paths += ["--from-json", str(tmp_path / f"{k}.json")]
        (tmp_path / f"{k}.json").write_text(json.dumps(p))
    out = CliRunner().invoke(app, ["bench", "bfcl", *paths, "--report", str(tmp_path / "m.md")])
    assert out.exit_code == 0, out.output
    assert "Merged from the runs" in (tmp_path / "m.md").read_text()
    # summarizing a merged result again keeps the commands of the runs it came from
    assert merge_results([merged])["merged_from"] == merged["merged_from"]
    # a merge is partial (a stopped run's checkpoint in it) iff one of its parts is
    assert "partial" not in merged
    assert "partial" not in merge_results([{**parts[0], "partial": False}, parts[1]])
    assert merge_results([parts[0], {**parts[1], "partial": True}])["partial"] is True


def test_a_real_engine_run_checkpoints_after_every_item(monkeypatch) -> None:
    from asynclm.bench.bfcl import run as bfcl_run

    async def fake_all(cfg, items, records, say, engine, on_item):
        for it in items:
            records[it.id]["sync"] = {"latency_s": 1.0, "valid": True, "n_calls": 1,
                                      "n_well_formed": 1,
                                      "breakdown": dict.fromkeys(
                                          ("decode_s", "prefill_s", "interrupt_s", "idle_s",
                                           "tool_s", "tool_busy_s", "overlap_s"), 0.0)}
            on_item()
        return {"model": cfg.model}

    monkeypatch.setattr(bfcl_run, "_llama_all", fake_all)
    seen: list[dict] = []
    cfg = bfcl_run.default_config(category="parallel", engine="llamacpp", limit=3,
                                  strategies="sync")
    final = bfcl_run.run_bfcl(cfg, checkpoint=seen.append)
    assert [c["n_items"] for c in seen] == [1, 2, 3] and all(c["partial"] for c in seen)
    assert "partial" not in final and final["n_items"] == 3
