"""``benchmarks/bfcl_dialect_table.py``: runs of one category from several files (``--offset``
parts, a dialect run later) join by item id, the later file's run of an item counting."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from asynclm.bench.bfcl.run import default_config, run_bfcl

_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "bfcl_dialect_table.py"


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("bfcl_dialect_table", _SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(dialects: str, offset: int, limit: int) -> dict[str, Any]:
    return run_bfcl(default_config(category="parallel", engine="sim", offset=offset,
                                   limit=limit, dialects=dialects, strategies="sync,async"))


@pytest.fixture(scope="module")
def parts() -> list[dict[str, Any]]:
    return [_run("cml,pythonic", 0, 3), _run("cml,pythonic", 2, 2), _run("hermes-bare", 0, 4)]


def test_join_unions_items_and_runs(parts: list[dict[str, Any]]) -> None:
    mod = _script()
    (joined,), notes = mod.join(parts)
    assert [it["id"] for it in joined["items"]] == [f"parallel_{i}" for i in range(4)]
    assert joined["params"]["runs"] == ["cml/sync", "cml/async", "pythonic/sync",
                                        "pythonic/async", "hermes-bare/sync",
                                        "hermes-bare/async"]
    assert all(set(it["runs"]) == set(joined["params"]["runs"]) for it in joined["items"])
    assert {k: v["n"] for k, v in joined["strategies"].items()} == dict.fromkeys(
        joined["params"]["runs"], 4)
    # item 2 ran twice in cml and pythonic (sync and async): 4 re-runs, the simulator repeats
    assert notes == ["parallel: 4 runs of an item ran in two files; the later counts; 4 gave "
                     "the same transcript, 4 the same verdict."]
    later = next(it for it in parts[1]["items"] if it["id"] == "parallel_2")
    assert joined["items"][2]["runs"]["cml/sync"] is later["runs"]["cml/sync"]
    assert len(joined["commands"]) == 3


def test_table_reads_joined_runs(parts: list[dict[str, Any]]) -> None:
    mod = _script()
    results, notes = mod.join(parts)
    md = mod.table(results, notes)
    assert "| parallel | 4 |" in md and "How the files were joined" in md
    assert md.count("- `") >= 3  # every file's command
    single, none = mod.join(parts[:1])
    assert none == [] and single == parts[:1]


def test_ran_accuracy_leaves_out_repeats_no_tool_ran(parts: list[dict[str, Any]]) -> None:
    mod = _script()
    results = copy.deepcopy(mod.join(parts[:1])[0])
    ran = mod.ran_accuracy(results)
    items = results[0]["items"]
    assert set(ran) == {"cml/sync", "cml/async", "pythonic/sync", "pythonic/async"}
    strict = sum(bool(it["runs"]["cml/sync"]["valid"]) for it in items)
    assert ran["cml/sync"] == [strict, len(items)] and strict > 0
    # a right run with a verbatim repeat the runtime answered without running the tool
    it = next(it for it in items if it["runs"]["cml/sync"]["valid"])
    run = it["runs"]["cml/sync"]
    run["calls"] = [*run["calls"], {**run["calls"][0], "exec_s": None}]
    run["valid"] = False  # BFCL counts the repeat as a second call
    assert mod.ran_accuracy(results)["cml/sync"] == [strict, len(items)]
    assert "| cml/sync | " + f"{strict}/{len(items)}" in mod.table(
        results, (), mod.ran_accuracy(results))
