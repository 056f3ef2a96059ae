"""OpenAI tools format: export, import, and validation against an imported JSON Schema."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from asynclm.tools import Tool, ToolArgumentError, ToolContext, tool


class Filter(BaseModel):
    field: str
    op: Literal["eq", "lt", "gt"] = "eq"
    value: int | str


class Node(BaseModel):
    value: int
    children: list[Node] = []


@tool
def query(
    table: str,
    filters: list[Filter],
    limit: int | None = None,
    options: dict[str, bool] = {},  # noqa: B006
    tree: Node | None = None,
) -> int:
    """Query a table.

    Args:
        table: Table name.
        filters: Conditions, all must hold.
    """
    return len(filters)


def test_export_shape() -> None:
    spec = query.to_openai()
    assert spec["type"] == "function"
    assert set(spec["function"]) == {"name", "description", "parameters", "strict"}
    assert spec["function"]["strict"] is False
    spec["function"]["parameters"]["properties"].clear()
    assert query.parameters["properties"]  # export is a copy


@pytest.mark.parametrize("inner", [False, True])
def test_round_trip_keeps_schema_and_validation(inner: bool) -> None:
    spec = query.to_openai()
    imported = Tool.from_openai(spec["function"] if inner else spec)
    assert imported.to_openai() == spec
    assert imported.fn is None and imported.param_names == query.param_names
    good = {
        "table": "t",
        "filters": [{"field": "a", "value": "3"}],
        "limit": "5",
        "tree": {"value": 1, "children": [{"value": "2"}]},
    }
    # below a recursive $ref cycle, values are accepted as given (documented limitation)
    assert imported.validate(good) == {
        "table": "t",
        "filters": [{"field": "a", "value": "3"}],
        "limit": 5,
        "tree": {"value": 1, "children": [{"value": "2"}]},
    }
    bads: list[dict[str, Any]] = [
        {"filters": []},
        {"table": "t", "filters": [{"field": "a", "op": "ne", "value": 1}]},
        {"table": "t", "filters": [], "limit": 1.5},
        {"table": "t", "filters": [], "x": 1},
        {"table": "t", "filters": [], "options": {"a": "maybe"}},
    ]
    for bad in bads:
        with pytest.raises(ToolArgumentError):
            query.validate(bad)
        with pytest.raises(ToolArgumentError):
            imported.validate(bad)


def test_import_with_implementation_and_context() -> None:
    seen: dict[str, Any] = {}

    def impl(city: str, ctx: ToolContext, days: int = 1) -> str:
        seen.update(ctx=ctx)
        return f"{city}:{days}"

    spec = {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": "Forecast.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7},
                },
                "required": ["city"],
            },
        },
    }
    original = copy.deepcopy(spec)
    t = Tool.from_openai(spec, impl, timeout=3.0, estimated_time=1.0)
    assert spec == original
    assert t.parameters["additionalProperties"] is False  # extras are rejected, so say so
    assert (t.timeout, t.estimated_time, t.description) == (3.0, 1.0, "Forecast.")
    args = t.validate({"city": "Oslo", "days": "3"})
    assert args == {"city": "Oslo", "days": 3}  # only what was given, coerced
    assert asyncio.run(t.invoke(args)) == "Oslo:3"
    assert isinstance(seen["ctx"], ToolContext)
    with pytest.raises(ToolArgumentError, match="less than or equal to 7"):
        t.validate({"city": "Oslo", "days": 9})


def _validator(
    props: dict[str, Any], required: list[str] | None = None, extra: dict[str, Any] | None = None
) -> Tool:
    schema = {"type": "object", "properties": props, "required": required or list(props)}
    schema.update(extra or {})
    return Tool.from_openai({"name": "t", "parameters": schema})


def test_schema_subset_validation() -> None:
    t = _validator(
        {
            "s": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "e": {"type": "string", "enum": ["x", "y"]},
            "c": {"const": 5},
            "a": {"type": "array", "items": {"type": "integer"}, "maxItems": 2},
            "o": {
                "type": "object",
                "properties": {"k": {"type": "string"}},
                "required": ["k"],
                "additionalProperties": False,
            },
            "m": {"type": "object", "additionalProperties": {"type": "number"}},
            "u": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["auto"]}]},
            "nul": {"type": ["string", "null"]},
            "oapi": {"type": "string", "nullable": True},
            "free": {},
        }
    )
    good = {
        "s": "ab",
        "i": "4",
        "n": 2,
        "b": "true",
        "e": "x",
        "c": 5,
        "a": [1, "2"],
        "o": {"k": "v"},
        "m": {"z": 1.5},
        "u": "auto",
        "nul": None,
        "oapi": None,
        "free": [1],
    }
    out = t.validate(good)
    assert out["i"] == 4 and out["n"] == 2 and isinstance(out["n"], int)
    assert out["b"] is True and out["a"] == [1, 2] and out["free"] == [1]
    bad = {
        "s": "A",
        "i": True,
        "n": False,
        "b": "maybe",
        "e": "z",
        "c": 6,
        "a": [1, 2, 3],
        "o": {"k": "v", "extra": 1},
        "m": {"z": "x"},
        "u": "manual",
        "nul": 3,
        "oapi": 1,
    }
    for key, value in bad.items():
        with pytest.raises(ToolArgumentError) as info:
            t.validate({**good, key: value})
        assert len(info.value.problems) == 1
        assert info.value.problems[0].startswith(f"argument '{key}"), info.value.problems


def test_optional_properties_defaults_and_nested_extras() -> None:
    t = _validator(
        {
            "q": {"type": "string"},
            "page": {"type": "integer", "default": 1},
            "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}},
        },
        required=["q"],
    )
    assert t.validate({"q": "x"}) == {"q": "x"}  # JSON Schema defaults are not invented
    assert t.validate({"q": "x", "opts": {"deep": 1, "other": 2}}) == {
        "q": "x",
        "opts": {"deep": True, "other": 2},
    }  # nested objects allow extras by default


def test_documented_default_is_always_accepted() -> None:
    t = _validator(
        {
            "year": {"type": "integer", "default": "dontcare"},
            "name": {"type": "string", "default": None},
        },
        required=[],
    )
    assert t.validate({"year": "dontcare", "name": None}) == {"year": "dontcare", "name": None}
    with pytest.raises(ToolArgumentError):
        t.validate({"year": "whenever"})


def test_refs_and_odd_property_names() -> None:
    t = _validator(
        {
            "from": {"$ref": "#/$defs/Place"},
            "model_config": {"type": "string"},
            "a-b.c": {"type": "integer"},
        },
        extra={"$defs": {"Place": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
    )
    assert t.validate({"from": {"x": "1"}, "model_config": "m", "a-b.c": 2}) == {
        "from": {"x": 1},
        "model_config": "m",
        "a-b.c": 2,
    }


def test_additional_properties_true_at_top_level_is_honoured() -> None:
    t = _validator({"q": {"type": "string"}}, extra={"additionalProperties": True})
    assert t.validate({"q": "x", "more": 1}) == {"q": "x", "more": 1}


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"function": {"description": "no name"}}, "name"),
        (
            {"name": "t", "parameters": {"type": "object", "properties": {"x": {"type": "dict"}}}},
            "unsupported JSON Schema type 'dict'",
        ),
        ({"name": "t", "parameters": {"type": "array"}}, "object schema"),
        (
            {
                "name": "t",
                "parameters": {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}},
            },
            "cannot resolve",
        ),
    ],
)
def test_malformed_specs(spec: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Tool.from_openai(spec)


def test_spec_without_parameters() -> None:
    t = Tool.from_openai({"type": "function", "function": {"name": "ping"}})
    assert t.parameters == {"type": "object", "properties": {}, "additionalProperties": False}
    assert t.validate({}) == {}
    with pytest.raises(ToolArgumentError, match=r"unexpected argument 'x'.*valid arguments: none"):
        t.validate({"x": 1})
