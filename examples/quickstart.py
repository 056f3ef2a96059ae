"""Ask a local model something it needs two tools for; its calls run while it writes.

    python examples/quickstart.py                    # the bundled 1.5B model (pulled once)
    ASYNCLM_MODEL=qwen2.5-coder-0.5b python examples/quickstart.py

Needs the extras llama (the engine) and nothing else; about a minute on 2 CPU cores.
"""

from __future__ import annotations

import asyncio
import os

from asynclm import LlamaCppEngine, Session, tool


@tool(timeout=5.0, estimated_time=0.8)
async def get_weather(city: str) -> dict:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
    """
    await asyncio.sleep(0.8)  # a web API would take about this long
    return {"city": city, "temp_c": {"Oslo": 3, "Lima": 19}.get(city, 15)}


@tool(timeout=5.0, estimated_time=1.2)
async def get_local_time(city: str) -> str:
    """The local time in a city (24-hour clock)."""
    await asyncio.sleep(1.2)
    return {"Oslo": "09:30", "Lima": "03:30"}.get(city, "12:00")


async def main() -> None:
    engine = LlamaCppEngine.from_name(os.environ.get("ASYNCLM_MODEL", "qwen2.5-coder-1.5b"))
    try:
        session = Session(engine, [get_weather, get_local_time], strategy="async")
        result = await session.run("What are the weather and the local time in Oslo and in Lima?")
    finally:
        await engine.aclose()
    print(result.text.strip())
    for call in result.calls:
        print(f"  {call.id} {call.fn}({call.args}) -> {call.status}: {call.value!r}")
    print(result.trace.breakdown())


if __name__ == "__main__":
    asyncio.run(main())
