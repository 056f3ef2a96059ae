"""Argument validation: binding, lax coercion, model-readable errors, before side effects."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest
from pydantic import BaseModel

from asynclm.tools import ToolArgumentError, ToolError, tool


class Item(BaseModel):
    sku: str
    qty: int = 1


calls: list[dict[str, object]] = []


@tool
def order(
    customer: str,
    items: list[Item],
    express: bool = False,
    priority: Literal["low", "high"] = "low",
) -> int:
    """Place an order."""
    calls.append({"customer": customer, "items": items})
    return len(items)


def test_valid_args_are_coerced_and_defaults_filled() -> None:
    out = order.validate(
        {"customer": "ann", "items": [{"sku": "a", "qty": "3"}], "express": "true"}
    )
    assert out == {
        "customer": "ann",
        "items": [Item(sku="a", qty=3)],
        "express": True,
        "priority": "low",
    }
    assert isinstance(out["items"][0], Item)


def test_positional_arguments_bind_in_parameter_order() -> None:
    out = order.validate({"priority": "high"}, ["bob", []])
    assert out["customer"] == "bob" and out["items"] == [] and out["priority"] == "high"


def test_error_lists_every_problem_in_one_short_message() -> None:
    with pytest.raises(ToolArgumentError) as info:
        order.validate({"items": [{"qty": "many"}], "priority": "urgent", "colour": "red"})
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, ToolError)
    text = str(err)
    assert text.startswith("invalid arguments for order: ")
    assert "missing required argument 'customer'" in text
    assert "argument 'items[0].sku': required field missing" in text
    assert "argument 'items[0].qty'" in text and "(got 'many')" in text
    assert "argument 'priority': Input should be 'low' or 'high' (got 'urgent')" in text
    assert (
        "unexpected argument 'colour' (valid arguments: customer, items, express, priority)" in text
    )
    assert "\n" not in text and "pydantic" not in text and "errors.pydantic.dev" not in text
    assert len(err.problems) == 5 and err.tool_name == "order"


def test_positional_errors() -> None:
    with pytest.raises(ToolArgumentError, match="takes 4 positional arguments but 5 were given"):
        order.validate({}, ["a", [], False, "low", "extra"])
    with pytest.raises(ToolArgumentError, match="multiple values for argument 'customer'"):
        order.validate({"customer": "x"}, ["y", []])


def test_union_member_tags_do_not_leak_into_paths() -> None:
    @tool
    def f(x: int | None = None) -> None:
        """F."""

    with pytest.raises(ToolArgumentError) as info:
        f.validate({"x": "seven"})
    assert str(info.value).count("argument 'x'") == 1


def test_long_inputs_are_truncated_and_problem_count_capped() -> None:
    @tool
    def f(a: int, b: int, c: int, d: int, e: int, g: int, h: int, i: int, j: int, k: int) -> None:
        """F."""

    with pytest.raises(ToolArgumentError) as info:
        f.validate({"a": "x" * 500})
    text = str(info.value)
    assert len(text) < 300 and "(got 'xxxxx" in text and "...)" in text
    assert "missing required arguments 'b', 'c', 'd', 'e', 'g', 'h', 'i', 'j', 'k'" in text

    @tool
    def many(xs: list[int]) -> None:
        """F."""

    with pytest.raises(ToolArgumentError) as info:
        many.validate({"xs": [str(i) + "x" for i in range(20)]})
    assert len(info.value.problems) == 9 and info.value.problems[-1] == "and 12 more problems"


def test_non_mapping_arguments() -> None:
    with pytest.raises(ToolArgumentError, match="must be a mapping"):
        order.validate(["ann"])  # type: ignore[arg-type]


def test_validation_happens_before_side_effects() -> None:
    calls.clear()
    for bad in ({}, {"customer": 1, "items": []}, {"customer": "a", "items": [], "x": 1}):
        with pytest.raises(ToolArgumentError):
            asyncio.run(order.invoke(order.validate(bad)))
    assert calls == []
    assert asyncio.run(order.invoke(order.validate({"customer": "a", "items": []}))) == 0
    assert len(calls) == 1


def test_context_parameter_cannot_be_supplied_by_the_model() -> None:
    from asynclm.tools import ToolContext

    @tool
    def f(x: int, ctx: ToolContext) -> None:
        """F."""

    with pytest.raises(ToolArgumentError, match="unexpected argument 'ctx'"):
        f.validate({"x": 1, "ctx": {}})
    with pytest.raises(ToolArgumentError, match="takes 1 positional"):
        f.validate({}, [1, 2])
