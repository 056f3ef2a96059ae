"""``asynclm bench bfcl --dialect ... --framing ...`` on the simulator (virtual time): every
item in every dialect variant x strategy, BFCL's own prompt beside them, paired tables, failure
modes, forged counts and tokens per interrupt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from asynclm.bench.bfcl import available

if not available():
    pytest.skip('bfcl-eval is not installed: pip install --no-deps "bfcl-eval==2026.3.23" mpmath',
                allow_module_level=True)

from asynclm.bench.bfcl.config import split_key  # noqa: E402
from asynclm.bench.bfcl.data import load  # noqa: E402
from asynclm.bench.bfcl.records import failure_mode  # noqa: E402
from asynclm.bench.bfcl.report import markdown  # noqa: E402
from asynclm.bench.bfcl.run import default_config, run_bfcl  # noqa: E402
from asynclm.bench.bfcl.summary import comparisons, paired  # noqa: E402


@pytest.fixture(scope="module")
def three_dialects() -> dict[str, Any]:
    return run_bfcl(default_config(category="parallel,simple_python", limit=2,
                                   dialects="hermes,pythonic,cml"))


def test_each_item_runs_in_each_dialect_and_strategy(three_dialects: dict[str, Any]) -> None:
    keys = ["hermes/sync", "hermes/async", "pythonic/sync", "pythonic/async", "cml/sync",
            "cml/async", "bfcl-prompt"]
    assert three_dialects["params"]["runs"] == keys
    assert list(three_dialects["strategies"]) == keys
    json.dumps(three_dialects, allow_nan=False)
    for item in three_dialects["items"]:
        assert list(item["runs"]) == keys and item["category"] in ("parallel", "simple_python")
        for key, rec in item["runs"].items():
            label, strategy = split_key(key)
            assert rec["valid"], (item["id"], key, rec.get("check_error"))
            assert rec["failure"] is None
            if label:  # a runtime run, in its dialect
                assert rec["dialect"] == label
                assert rec["n_interrupts"] >= 1 and rec["injected_tokens"] > 0
    for key, row in three_dialects["strategies"].items():
        assert row["accuracy"] == 1.0 and row["n"] == 4, key
        assert row["forged"] == 0 and row["failures"] == {}
    summ = three_dialects["strategies"]
    for v in ("hermes", "pythonic", "cml"):  # each async compared with its own sync
        assert summ[f"{v}/async"]["speedup_vs_sync"] > 1.0
        assert summ[f"{v}/sync"]["speedup_vs_sync"] == pytest.approx(1.0)
        assert summ[f"{v}/async"]["variant"] == v and summ[f"{v}/async"]["strategy"] == "async"
    # a native turn costs more tokens per interrupt than CML's one-line interrupt
    assert summ["hermes/async"]["tokens_per_interrupt"] > summ["cml/async"]["tokens_per_interrupt"]


def test_paired_tables_and_report(three_dialects: dict[str, Any]) -> None:
    pairs = comparisons(list(three_dialects["strategies"]))
    assert ("hermes/async", "hermes/sync") in pairs and ("hermes/async", "cml/async") in pairs
    assert ("cml/sync", "bfcl-prompt") in pairs
    table = paired(three_dialects["items"], "hermes/async", "cml/async")
    assert table == {"parallel": {"both": 2, "only_a": 0, "only_b": 0, "neither": 0},
                     "simple_python": {"both": 2, "only_a": 0, "only_b": 0, "neither": 0},
                     "all": {"both": 4, "only_a": 0, "only_b": 0, "neither": 0}}
    md = markdown(three_dialects, "asynclm bench bfcl --dialect hermes,pythonic,cml")
    assert "## Dialects" in md and "| hermes/async | 4/4 (100%) |" in md
    assert "| parallel | hermes/async | cml/async | 2 | 0 | 0 | 0 |" in md
    assert "| all | hermes/async | hermes/sync | 4 | 0 | 0 | 0 |" in md


def test_framings_make_one_variant_each() -> None:
    result = run_bfcl(default_config(category="parallel", limit=1, dialects="hermes,cml",
                                     framings="turn,inline", strategies="async"))
    keys = list(result["strategies"])
    assert keys == ["hermes-turn/async", "hermes-inline/async", "cml/async"]
    runs = result["items"][0]["runs"]
    assert "<|im_start|>user\n<tool_response>" in runs["hermes-turn/async"]["transcript"]
    assert "<|im_start|>" not in runs["hermes-inline/async"]["transcript"]
    summ = result["strategies"]
    assert (summ["hermes-turn/async"]["tokens_per_interrupt"]
            > summ["hermes-inline/async"]["tokens_per_interrupt"])
    assert all(r["accuracy"] == 1.0 for r in summ.values())


def test_cml_alone_keeps_the_plain_keys() -> None:
    cfg = default_config(category="parallel", strategies="sync,async")
    assert cfg.run_keys == ("sync", "async") and not cfg.keyed
    assert default_config(dialects="cml", framings="turn,inline").run_keys == (
        "sync", "sync-reprefill", "sync-parallel", "async")
    assert default_config(dialects="hermes").run_keys == (
        "hermes/sync", "hermes/async", "bfcl-prompt")


@pytest.mark.parametrize(("kw", "match"), [
    ({"dialects": "klingon"}, "unknown dialect"),
    ({"dialects": "hermes,hermes"}, "twice"),
    ({"framings": "sideways"}, "unknown framing"),
    ({"dialects": "hermes", "category": "multi_turn_base"}, "single-turn"),
])
def test_bad_options_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        default_config(**kw).validate()


def test_failure_modes_from_records() -> None:
    item = load("parallel", limit=1)[0]
    fn = item.functions[0]["name"]
    n = len(item.ground_truth)
    assert n >= 2
    ok = {"status": "ok", "error_type": None, "error": None}

    def call(emitted: float, injected: float | None, name: str = fn, **kw: Any) -> dict:
        return {"fn": name, "args": {}, **ok, "emitted_s": emitted, "injected_s": injected, **kw}

    def mode(calls: list[dict], **kw: Any) -> str | None:
        return failure_mode(item, {"valid": False, "stop_reason": "eos", "calls": calls, **kw})

    assert failure_mode(item, {"valid": True}) is None
    assert mode([], stop_reason="max_tokens") == "token_cap"
    assert mode([call(0, 1, status="error", error_type="MalformedCall", error="x")]) == "malformed"
    assert mode([]) == "no_call"
    assert mode([call(0, 1, name="not_a_function")]) == "wrong_function"
    assert mode([call(0, 1)]) == "stopped_after_result"  # one call, its result, then nothing
    assert mode([call(0, None)]) == "too_few_calls"  # no result came before it stopped
    assert mode([call(i, i + 9) for i in range(n + 1)]) == "too_many_calls"
    assert mode([call(i, i + 9) for i in range(n)]) == "wrong_args"
    assert failure_mode(item, {"valid": False, "error": "boom"}) == "error"


def test_the_command_line_option() -> None:
    from typer.testing import CliRunner

    from asynclm.cli import app

    res = CliRunner().invoke(app, ["bench", "bfcl", "--limit", "1", "--dialect", "hermes,cml",
                                   "--strategies", "async"])
    assert res.exit_code == 0, res.output
    assert "| hermes/async | 1/1 (100%) |" in res.output
    bad = CliRunner().invoke(app, ["bench", "bfcl", "--limit", "1", "--dialect", "klingon"])
    assert bad.exit_code == 1 and "unknown dialect" in bad.output
