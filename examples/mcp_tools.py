"""A local model calling the tools of an MCP server, concurrently, while it writes.

    python examples/mcp_tools.py
    ASYNCLM_MODEL=qwen2.5-coder-0.5b python examples/mcp_tools.py

Starts examples/mcp_server.py as a subprocess (MCP over stdio) and stops it at the end.
Needs the extras llama and mcp.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp import Client, StdioServerParameters

from asynclm import LlamaCppEngine, Session
from asynclm.tools import from_mcp

SERVER = StdioServerParameters(command=sys.executable,
                               args=[str(Path(__file__).with_name("mcp_server.py"))])


async def main() -> None:
    async with Client(SERVER) as client:
        tools = await from_mcp(client, timeout=10.0)  # "local-time" becomes local_time(...)
        print("tools:", ", ".join(t.name for t in tools))
        engine = LlamaCppEngine.from_name(os.environ.get("ASYNCLM_MODEL", "qwen2.5-coder-1.5b"))
        try:
            result = await Session(engine, tools).run(
                "What are the weather and the local time in Oslo and in Lima?")
        finally:
            await engine.aclose()
    print(result.text.strip())
    for call in result.calls:
        print(f"  {call.id} {call.fn}({call.args}) -> {call.status}: {call.value!r}")
    print(result.trace.breakdown())


if __name__ == "__main__":
    asyncio.run(main())
