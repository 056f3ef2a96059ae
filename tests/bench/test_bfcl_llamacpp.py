"""Smoke test of the BFCL runner on the real 0.5B model (slow: `make test` runs it)."""

from __future__ import annotations

import json

import pytest

from asynclm.bench.bfcl.report import markdown
from asynclm.bench.bfcl.run import default_config, run_bfcl

SMALL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def small_model() -> str:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python is not installed (pip install 'asynclm[llama]'): {e}")
    from asynclm.models import ModelError, model_path

    try:
        model_path(SMALL_MODEL)
    except ModelError as e:
        pytest.skip(f"cannot pull {SMALL_MODEL}: {e}")
    return SMALL_MODEL


@pytest.mark.slow
def test_llamacpp_smoke_one_parallel_item(small_model: str) -> None:
    # one thread: llama.cpp's thread barriers collapse when the cores are shared
    cfg = default_config(category="parallel", engine="llamacpp", model=small_model, limit=1,
                         strategies="sync,async", max_tokens=128, threads=1, cheat_sheet=True)
    r = run_bfcl(cfg)
    json.dumps(r, allow_nan=False)
    (item,) = r["items"]
    for s in ("sync", "async"):
        run = item["runs"][s]
        assert "error" not in run, run.get("error")
        assert run["latency_s"] > 0 and run["n_generated"] > 0
        assert run["first_token_s"] is not None and run["first_token_s"] < run["latency_s"]
        assert run["lb_s"] <= run["lb_ingest_s"] <= run["latency_s"] + 1e-6
        assert (run["ingest_s"] > 0) == (run["n_injected"] > 0)  # appending results costs time
        assert run["breakdown"]["decode_s"] > 0
        assert isinstance(run["valid"], bool) and run["transcript"]
    assert r["environment"]["threads"] == 1
    assert "| async |" in markdown(r)


@pytest.mark.slow
def test_llamacpp_smoke_one_multi_turn_item(small_model: str) -> None:
    """A one-turn multi_turn_base item on BFCL's real classes: the model's calls run on the live
    instances and BFCL's multi-turn checker scores them."""
    cfg = default_config(category="multi_turn_base", engine="llamacpp", model=small_model,
                         offset=50, limit=1, strategies="async", max_tokens=96, threads=1,
                         cheat_sheet=True)
    r = run_bfcl(cfg)
    json.dumps(r, allow_nan=False)
    run = r["items"][0]["runs"]["async"]
    assert "error" not in run, run.get("error")
    assert run["n_turns"] == 1 and run["n_generated"] > 0
    assert isinstance(run["valid"], bool) and isinstance(run["live_state_ok"], bool)
    assert run["turns"][0]["transcript"]
    assert run["lb_s"] <= run["latency_s"] + 1e-6
