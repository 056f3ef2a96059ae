"""``benchmarks/rebound_bfcl.py``: stored records re-derive their own bound, and only then."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from asynclm.bench.bfcl.run import default_config, run_bfcl
from asynclm.testing.sim import SimTokenizer

_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "rebound_bfcl.py"


def _script():
    spec = importlib.util.spec_from_file_location("rebound_bfcl", _SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def runs() -> list[dict]:
    r = run_bfcl(default_config(category="parallel", engine="sim", limit=2,
                                strategies="sync,async"))
    return [run for it in r["items"] for run in it["runs"].values()]


def test_a_current_record_reproduces_its_bound_and_keeps_it(runs) -> None:
    rebound, tok = _script().rebound, SimTokenizer()
    for run in runs:
        new = copy.deepcopy(run)
        assert rebound(new, lambda s: tok.count(s)) == "kept"
        for k in ("lb_s", "lb_ingest_s", "sum_G_s", "efficiency", "efficiency_ingest"):
            assert new[k] == pytest.approx(run[k], rel=1e-12)


def test_a_record_whose_inputs_do_not_reproduce_it_is_left_alone(runs) -> None:
    rebound = _script().rebound
    new = copy.deepcopy(runs[0])
    assert rebound(new, lambda s: 1000).startswith("inputs do not reproduce")
    assert new == runs[0]
