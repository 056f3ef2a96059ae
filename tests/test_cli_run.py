"""What ``asynclm run`` does: tools gathered from a module, an MCP server and the demo set, and
a session whose text and call events are printed live (simulated model, real time)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from asynclm.cli_run import open_tools, run_prompt
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine

SERVER = Path(__file__).parent / "tools" / "mcp_server.py"


def test_run_prints_text_and_call_events_live() -> None:
    pytest.importorskip("mcp")
    script = [
        "Checking.\n",
        '[CALL] t [HEAD] get_time(city="Oslo") [END]\n',
        '[CALL] e [HEAD] echo(text="hi", delay=0.3) [END]\n',
        "[CALL] x [HEAD] nope() [END]\n",
        "[TRAP][END]\n", "[TRAP][END]\n", "[TRAP][END]\n",
        "It is noon.",
    ]
    out: list[str] = []

    async def main() -> Any:
        async with open_tools(["tests.server.toolmod"], [f"{sys.executable} {SERVER}"],
                              demo=True) as tools:
            engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.002))
            return [t.name for t in tools], await run_prompt(engine, tools, "go",
                                                             write=out.append)

    names, result = asyncio.run(main())
    assert names == ["get_weather", "search_flights", "search_hotels", "convert_currency",
                     "echo", "add", "get_time", "profile", "steps", "fail", "hang", "crash"]
    assert {c.id: c.status for c in result.calls} == {"t": "ok", "e": "ok", "x": "error"}
    lines = "".join(out).splitlines()
    assert lines[0] == "Checking."
    events = [line.split("] ", 1)[1] for line in lines if line.startswith("  [")]
    assert events[0] == "→ t get_time(city='Oslo')"
    assert "← t ok" in events[1] and '"12:00 in Oslo"' in events[1]
    assert "← x error" in events[events.index("→ x nope()") + 1]  # unknown tool: at once
    # the echo call (0.3 s) is still running when the model traps: the wait is reported (when
    # it ends) and the result goes in right after the call ends
    done_e = events.index(next(e for e in events if e.startswith("← e ok")))
    assert events[done_e + 1].startswith("… waited") and events[done_e + 1].endswith("(trap)")
    assert events[done_e + 2].startswith("⇢ injected e ")
    assert lines[-1] == "It is noon."
    assert "" not in lines  # no blank lines: the newline after a call block is the event's


def test_open_tools_refuses_an_empty_mcp_command() -> None:
    async def main() -> None:
        async with open_tools([], ["  "]):
            pass

    with pytest.raises(ValueError, match="empty --mcp command"):
        asyncio.run(main())
