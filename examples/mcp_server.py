"""A small MCP server (weather and local time) for examples/mcp_tools.py; it speaks MCP over
stdin/stdout when run as a script. Needs the extra mcp."""

from __future__ import annotations

import asyncio

from mcp.server.mcpserver import MCPServer

app = MCPServer("weather")


@app.tool()
async def get_weather(city: str) -> dict[str, object]:
    """Current weather for a city."""
    await asyncio.sleep(0.8)
    return {"city": city, "temp_c": {"Oslo": 3, "Lima": 19}.get(city, 15)}


@app.tool(name="local-time")
async def local_time(city: str) -> str:
    """The local time in a city (24-hour clock)."""
    await asyncio.sleep(1.2)
    return {"Oslo": "09:30", "Lima": "03:30"}.get(city, "12:00")


if __name__ == "__main__":
    app.run()
