"""``asynclm bench``: a small synthetic benchmark end to end through the command line."""

from __future__ import annotations

import json

import pytest

typer_testing = pytest.importorskip("typer.testing")

from asynclm.cli import app  # noqa: E402

runner = typer_testing.CliRunner()


def test_bench_synthetic_json(tmp_path):
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["bench", "synthetic", "--tasks", "10", "--calls", "3",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    s = data["strategies"]
    assert s["async"]["median_s"] <= s["sync-parallel"]["median_s"] < s["sync"]["median_s"]
    assert 0 < data["efficiency_median"] <= 1
    for key in ("median_s", "p90_s", "speedup_vs_sync"):
        assert key in s["async"]
