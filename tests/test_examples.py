"""The scripts in examples/ run as documented (the simulated one always; the ones that need a
model on the bundled 0.5B, as slow tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def _run(name: str, **env: str) -> str:
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                         timeout=600, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_simulated_shows_async_faster_than_sync() -> None:
    out = _run("simulated.py")
    found = re.search(r"async is ([0-9.]+)x faster", out)
    assert found is not None, out
    speedup = float(found.group(1))
    assert speedup > 1.5 and "search_flights" in out and "▓" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quickstart.py", "streaming.py", "mcp_tools.py"])
def test_model_examples_run(name: str) -> None:
    pytest.importorskip("llama_cpp")
    if name.startswith("mcp"):
        pytest.importorskip("mcp")
    out = _run(name, ASYNCLM_MODEL="qwen2.5-coder-0.5b")
    assert re.search(r"\n[0-9.]+ s, \w+\n" if name == "streaming.py"
                     else r"total [0-9.]+s = decode", out), out
    if name.startswith("mcp"):
        assert out.startswith("tools: get_weather, local_time\n")
