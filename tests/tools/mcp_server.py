"""An MCP server for tests/tools/test_mcp.py (run as a script, a real subprocess): over stdio,
or over streamable HTTP at ``http://127.0.0.1:PORT/mcp`` with ``--http PORT``.

``argv[1]`` (optional): a directory where ``hang`` writes ``cancelled`` when the server sees the
client cancel it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

app = MCPServer("asynclm-test")
_ARGS = sys.argv[1:]
_PORT = int(_ARGS.pop(_ARGS.index("--http") + 1)) if "--http" in _ARGS else None
_DIR = Path(_ARGS[0]) if _ARGS and _ARGS[0] != "--http" else None


@app.tool()
def add(a: int, b: int = 2) -> int:
    """Add two integers."""
    return a + b


@app.tool(name="get-time")
def get_time(city: str) -> str:
    """Local time in a city."""
    return f"12:00 in {city}"


@app.tool()
def profile(user: str) -> dict[str, object]:
    """A user's profile."""
    return {"user": user, "langs": ["en", "fr"]}


@app.tool()
async def steps(n: int, ctx: Context) -> str:
    """Report progress n times, then finish."""
    for i in range(n):
        await ctx.report_progress(i + 1, n, f"step {i + 1}")
    return "done"


@app.tool()
def fail(reason: str) -> str:
    """Always fails with the reason."""
    raise ToolError(f"cannot do it: {reason}")


@app.tool()
async def hang() -> str:
    """Never returns (until cancelled)."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        if _DIR is not None:
            (_DIR / "cancelled").write_text("yes")
        raise
    return "impossible"


@app.tool()
def crash() -> str:
    """The server process dies mid-call."""
    os._exit(3)


if __name__ == "__main__":
    if _PORT is None:
        app.run()
    else:
        app.run(transport="streamable-http", host="127.0.0.1", port=_PORT)
