"""Load: concurrent simulated sessions over HTTP, no event lost (latency is measured by
benchmarks/server_load.py, not asserted here). 200 sessions take ~30 s on 2 cores: slow."""

from __future__ import annotations

import asyncio

import pytest

from asynclm.bench.server_load import run_load

from .conftest import Served


@pytest.mark.parametrize("sessions", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_concurrent_sessions_lose_no_event(base_url: Served, sessions: int) -> None:
    result = asyncio.run(run_load(base_url, sessions=sessions, tpot_ms=20.0, words=30))
    assert result["problems"] == []
    assert result["lost_or_bad_sessions"] == 0
    assert result["events"] >= sessions * 40
    assert not [n for n in base_url.tasks() if n.startswith("asynclm-")]  # all ended
