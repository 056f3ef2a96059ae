"""A tool module a test server allows by name (``--tools-module tests.server.toolmod``)."""

from __future__ import annotations

import asyncio

from asynclm.tools import tool


@tool
async def echo(text: str, delay: float = 0.05) -> str:
    """Return the text after a short wait."""
    await asyncio.sleep(delay)
    return text.upper()
