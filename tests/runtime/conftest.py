"""Helpers for runtime tests: scripted sessions on virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.runtime import Session, SessionConfig, SessionResult, run_virtual
from asynclm.tools import tool


@tool
async def sleepy(seconds: float, tag: str = "") -> str:
    """Sleep, then return the tag."""
    await asyncio.sleep(seconds)
    return tag or f"slept {seconds}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def scripted(
    script: list[Any], tools: list[Any] | None = None, *, strategy: str = "async",
    tpot_s: float = 0.01, config: SessionConfig | None = None,
    costs: dict[str, float] | None = None, **kw: Any,
) -> SessionResult:
    engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=tpot_s, **(costs or {})))
    session = Session(engine, tools if tools is not None else [sleepy, add], strategy=strategy,
                      system="test", config=config, **kw)
    return run_virtual(session.run("go"))


@pytest.fixture
def run_script():
    return scripted
