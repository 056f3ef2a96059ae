"""``asynclm bench serving``: the harness on a simulated engine (fast), the goals and the report,
the command line, and a tiny real run on the bundled 0.5B (slow)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asynclm.bench import serving
from asynclm.bench.serving import (
    PROMPTS,
    Backend,
    RssSampler,
    goals,
    make_backend,
    markdown,
    rss_bytes,
    run_config,
    tool_latency,
)


def test_tool_latencies_are_web_like_and_fixed_per_call():
    xs = [tool_latency(fn, arg) for fn in ("web_search", "get_weather", "get_time")
          for arg in ("Paris", "Tokyo", "solar panels", "Lima", "Oslo")]
    assert all(0.3 <= x <= 1.5 for x in xs) and len(set(xs)) > 3
    assert tool_latency("get_weather", "Paris") == tool_latency("get_weather", "paris")
    assert len(PROMPTS) == 8 and len(set(PROMPTS)) == 8


def test_tools_answer_deterministically():
    tools = {t.name: t for t in serving.make_tools()}
    assert set(tools) == {"web_search", "get_weather", "get_time"}


def test_rss_is_read_from_proc():
    assert rss_bytes() > 10 * 2**20
    with RssSampler(every_s=0.01) as s:
        blob = bytearray(64 * 2**20)
        blob[::4096] = b"x" * len(blob[::4096])
        asyncio.run(asyncio.sleep(0.05))
    assert s.peak >= rss_bytes() - 1
    del blob


class SimBackend(Backend):
    """Sessions on a scripted simulator (real time, a few ms per token)."""

    name = "sim"

    @contextlib.asynccontextmanager
    async def lease(self, index: int) -> AsyncIterator[Any]:
        from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine

        engine = SimEngine(ScriptedPolicy(["Hello there, all done."]), SimCosts(tpot_s=0.001))
        try:
            yield engine
        finally:
            await engine.aclose()


def test_a_tiny_run_through_the_harness():
    result = asyncio.run(run_config(SimBackend(), [1, 2], max_tokens=4))
    assert result["config"] == "sim" and [r["sessions"] for r in result["runs"]] == [1, 2]
    for r in result["runs"]:
        assert r["generated"] == 4 * r["sessions"] and r["tokens_per_s"] > 0
        assert 0 < r["latency_p50_s"] <= r["latency_p90_s"] <= r["wall_s"] + 1e-6
        assert r["ttft_p50_s"] is not None and r["stops"] == {"max_tokens": r["sessions"]}
        assert [x["prompt"] for x in r["runs"]] == list(PROMPTS[: r["sessions"]])
    assert result["rss_peak_mb"] >= 0 and result["memory_of"] == "engine"


def _entry() -> dict[str, Any]:
    def run(n: int, tps: float, p50: float) -> dict[str, Any]:
        return {"sessions": n, "tokens_per_s": tps, "latency_p50_s": p50, "latency_p90_s": p50,
                "ttft_p50_s": 0.1, "generated": 100, "calls": 3, "wall_s": 10.0,
                "engine": {"decode_calls_per_s": 10.0, "tokens_per_decode": 3.0,
                           "steps_per_decode": 2.5, "decode_share": 0.9,
                           "python_ms_per_decode": 1.0, "gather_wait_s": 0.1,
                           "evictions": 0, "recomputed_tokens": 0}}

    return {
        "ceiling": [{"k": 1, "decode_ms": 50.0, "tokens_per_s": 20.0, "speedup": 1.0},
                    {"k": 4, "decode_ms": 100.0, "tokens_per_s": 40.0, "speedup": 2.0}],
        "configs": {
            "batched": {"rss_after_load_mb": 600, "rss_peak_mb": 700, "memory_of": "engine",
                        "runs": [run(1, 18, 5.0), run(4, 30, 12.0), run(8, 35, 20.0)]},
            "pool-1": {"rss_after_load_mb": 580, "rss_peak_mb": 600, "memory_of": "engine",
                       "runs": [run(1, 19, 5.5)]},
        },
        "skipped": {"llama-server": "not built"},
    }


def test_goals_pass_and_fail_with_their_figures():
    entry = _entry()
    g = {x["goal"]: x for x in goals(entry)}
    assert g["4 sessions: aggregate tok/s >= 0.85 x k=4 ceiling"]["pass"] is False  # 30 < 34
    assert g["4 sessions: median latency <= 2 x solo"]["pass"] is False  # 12 > 11
    assert "pool-1" in g["4 sessions: median latency <= 2 x solo"]["detail"]
    assert g["peak memory <= 1.3 x one instance"]["pass"] is True
    assert g["8 sessions >= 4 sessions' throughput"]["pass"] is True
    del entry["configs"]["batched"]["runs"][2]
    assert goals(entry)[3]["pass"] is None  # no N=8: not measured


def test_report_has_the_tables_goals_and_where_the_time_goes():
    entry = _entry()
    entry["goals"] = goals(entry)
    result = {"params": {"threads": 2, "cpus": 2, "max_tokens": 96, "n_ctx": 8192,
                         "ceiling_context": 256},
              "models": {"m": entry}, "wall_s": 12.0}
    md = markdown(result, "asynclm bench serving --models m")
    assert "`asynclm bench serving --models m`" in md
    assert "| 4 | 100.0 | 40.0 | 2.00x |" in md
    assert "| llama-server | skipped: not built |" in md
    assert "**fail**" in md and "decode calls/s" in md


def test_llama_server_is_skipped_with_the_reason_when_not_built(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYNCLM_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    why = make_backend("llama-server", tmp_path / "m.gguf", threads=2, n_ctx=1024)
    assert isinstance(why, str) and "build-llama-server.sh" in why
    with pytest.raises(ValueError, match="unknown config"):
        make_backend("pool-3", tmp_path / "m.gguf", threads=2, n_ctx=1024)


def test_the_command_is_registered():
    typer_testing = pytest.importorskip("typer.testing")
    from asynclm.cli import app

    out = typer_testing.CliRunner().invoke(app, ["bench", "serving", "--help"])
    assert out.exit_code == 0 and "--sessions" in out.output and "--max-tokens" in out.output
    bad = typer_testing.CliRunner().invoke(app, ["bench", "serving", "--configs", "nope"])
    assert bad.exit_code == 1


@pytest.mark.slow
def test_a_tiny_real_run(tmp_path):
    """The bundled 0.5B: ceiling (k = 1, 2), batched and pool-1 with 1 and 2 sessions."""
    pytest.importorskip("llama_cpp")
    from asynclm.models import ModelError, model_path

    try:
        model_path("qwen2.5-coder-0.5b")
    except ModelError as e:
        pytest.skip(f"no model: {e}")
    result = serving.bench_serving(models=["qwen2.5-coder-0.5b"], sessions=[1, 2],
                                   configs=["batched", "pool-1"], max_tokens=6, ceiling_ks=(1, 2),
                                   ceiling_context=16, ceiling_reps=1)
    e = result["models"]["qwen2.5-coder-0.5b"]
    assert [c["k"] for c in e["ceiling"]] == [1, 2] and e["ceiling"][0]["speedup"] == 1.0
    assert set(e["configs"]) == {"batched", "pool-1"}
    two = e["configs"]["batched"]["runs"][1]
    assert two["generated"] == 12 and two["engine"]["steps_per_decode"] > 1.0
    json.dumps(result)  # JSON-ready
    assert "Goals (batched)" in markdown(result, "x")


@pytest.mark.slow
def test_llama_server_raw_decodes_the_sessions_prompts_without_sessions(tmp_path):
    """The raw reference against the real llama-server (skipped when it is not built): each
    "session" is one plain completion of ``max_tokens``, no calls."""
    pytest.importorskip("llama_cpp")
    from asynclm.models import ModelError, model_path

    if serving.llama_server_binary() is None:
        pytest.skip("llama-server is not built (scripts/build-llama-server.sh)")
    try:
        path = model_path("qwen2.5-coder-0.5b")
    except ModelError as e:
        pytest.skip(f"no model: {e}")
    backend = make_backend("llama-server-raw", path, threads=2, n_ctx=2048)
    assert isinstance(backend, serving.RawServerBackend)
    out = asyncio.run(serving.run_config(backend, [2], max_tokens=8))
    run = out["runs"][0]
    assert run["sessions"] == 2 and run["calls"] == 0
    assert all(r["n_generated"] <= 8 and r["first_token_s"] is not None for r in run["runs"])
    assert run["generated"] > 0
