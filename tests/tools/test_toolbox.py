"""Toolbox: an immutable name → Tool mapping."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from asynclm.tools import Tool, Toolbox, ToolError, UnknownToolError, tool


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@tool(estimated_time=1.5)
async def get_time(city: str) -> str:
    """Local time in a city."""
    return "14:05"


def test_plain_functions_are_wrapped_and_mapping_is_immutable() -> None:
    box = Toolbox([get_weather, get_time])
    assert list(box) == ["get_weather", "get_time"] and len(box) == 2
    assert isinstance(box["get_weather"], Tool) and box["get_time"] is get_time
    assert "get_time" in box and "nope" not in box
    with pytest.raises(TypeError):
        box["x"] = get_time  # type: ignore[index]
    assert asyncio.run(box["get_weather"].invoke({"city": "Rome"})) == "sunny in Rome"
    bigger = box.with_tools(tool(lambda: None, name="noop"))
    assert len(bigger) == 3 and len(box) == 2


def test_duplicates_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate tool name 'get_time'"):
        Toolbox([get_time, get_time.replace(description="again")])
    with pytest.raises(TypeError):
        Toolbox({"get_time": get_time})  # type: ignore[dict-item]


def test_unknown_tool_message_suggests_close_names() -> None:
    box = Toolbox([get_weather, get_time])
    with pytest.raises(UnknownToolError) as info:
        box.get_checked("get_wether")
    err = info.value
    assert isinstance(err, LookupError) and isinstance(err, ToolError)
    assert str(err).startswith("unknown tool 'get_wether'; did you mean 'get_weather'")
    assert err.suggestions[0] == "get_weather" and err.name == "get_wether"
    with pytest.raises(UnknownToolError, match="available tools: get_weather, get_time"):
        box.get_checked("launch_rocket")
    with pytest.raises(UnknownToolError, match="no tools are available"):
        Toolbox().get_checked("x")


def test_to_openai_and_from_openai_round_trip() -> None:
    box = Toolbox([get_weather, get_time])
    specs = box.to_openai()
    assert [s["function"]["name"] for s in specs] == ["get_weather", "get_time"]
    again = Toolbox.from_openai(specs, implementations={"get_weather": get_weather})
    assert again.to_openai() == specs
    assert (
        asyncio.run(again["get_weather"].invoke(again["get_weather"].validate({"city": "X"})))
        == "sunny in X"
    )
    assert again["get_time"].fn is None
    with pytest.raises(ValueError, match="without a spec: \\['typo'\\]"):
        Toolbox.from_openai(specs, implementations={"typo": get_weather})

    def handler(name: str, args: dict[str, Any]) -> str:
        return name

    handled = Toolbox.from_openai(specs, handler=handler)
    assert asyncio.run(handled["get_time"].invoke({"city": "X"})) == "get_time"


def test_describe_is_compact_json_with_estimated_times() -> None:
    box = Toolbox([get_weather, get_time])
    text = box.describe()
    listing = json.loads(text)
    assert [entry["name"] for entry in listing] == ["get_weather", "get_time"]
    assert listing[1]["estimated_time_s"] == 1.5 and "estimated_time_s" not in listing[0]
    assert listing[0]["parameters"] == box["get_weather"].parameters
    assert len(text.splitlines()) == 4  # brackets + one line per tool
    assert "estimated_time_s" not in box.describe(estimated=False)
    assert Toolbox().describe() == "[]"


def test_from_module_takes_tools_or_every_tool_defined() -> None:
    import types

    assert list(Toolbox.from_module("tests.server.toolmod")) == ["echo"]
    mod = types.ModuleType("m")

    @tool
    def a() -> int:
        """A."""
        return 1

    def b() -> int:
        """B."""
        return 2

    mod.a, mod.helper = a, len  # a tool and something else: only the tool is taken
    assert list(Toolbox.from_module(mod)) == ["a"]
    mod.TOOLS = [a, b]  # TOOLS wins, and plain functions in it become tools
    assert list(Toolbox.from_module(mod)) == ["a", "b"]
    with pytest.raises(ModuleNotFoundError):
        Toolbox.from_module("no_such_module_here")
