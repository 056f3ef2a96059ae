"""Schema generation from type hints, docstrings and Annotated metadata."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from asynclm.tools import Tool, ToolContext, tool


@tool
def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        unit: Temperature unit.
    """
    return {"city": city, "unit": unit}


def test_golden_schema_and_metadata() -> None:
    assert isinstance(get_weather, Tool)
    assert get_weather.name == "get_weather"
    assert get_weather.description == "Current weather for a city."
    assert get_weather.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": 'City name, e.g. "Paris".'},
            "unit": {
                "type": "string",
                "description": "Temperature unit.",
                "enum": ["c", "f"],
                "default": "c",
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }
    assert get_weather.timeout is None and get_weather.estimated_time is None
    assert get_weather.is_async is False
    assert get_weather.fn is not None and get_weather.fn("Oslo") == {"city": "Oslo", "unit": "c"}
    assert get_weather("Oslo", unit="f") == {"city": "Oslo", "unit": "f"}  # still callable


def test_options_and_annotated_description_wins_over_docstring() -> None:
    @tool(
        name="search",
        description="Web search.",
        timeout=2.0,
        estimated_time=0.3,
        order_by="account",
    )
    async def search_web(
        query: Annotated[str, Field(description="What to look for.")],
        account: str,
        ctx: ToolContext,
    ) -> list[str]:
        """Ignored summary.

        Args:
            query: docstring text that must lose.
            account: Billing account.
        """
        return [query]

    assert (search_web.name, search_web.description) == ("search", "Web search.")
    assert (search_web.timeout, search_web.estimated_time, search_web.is_async) == (2.0, 0.3, True)
    props = search_web.parameters["properties"]
    assert props["query"] == {"type": "string", "description": "What to look for."}
    assert props["account"] == {"type": "string", "description": "Billing account."}
    assert "ctx" not in props and "ctx" not in search_web.parameters["required"]
    assert search_web.param_names == ("query", "account")


def test_no_pydantic_titles_anywhere_but_property_named_title_survives() -> None:
    class Book(BaseModel):
        title: str
        year: int

    @tool
    def add(book: Book, title: str = "x") -> None:
        """Add a book."""

    text = json.dumps(add.parameters)
    assert '"title": {' in text  # the property names survive
    schema = add.parameters
    assert "title" not in schema
    assert schema["properties"]["book"] == {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    assert "$defs" not in schema  # simple models are inlined


def test_description_joins_summary_and_long_description_without_sections() -> None:
    @tool
    def f(x: int) -> int:
        """Summary line.

        More detail about what it does.

        Args:
            x: A number.

        Returns:
            Something.
        """
        return x

    assert f.description == "Summary line.\n\nMore detail about what it does."


@pytest.mark.parametrize(
    "doc",
    [
        """Do it.

    Parameters
    ----------
    x : int
        The x value.
    """,
        """Do it.

    :param x: The x value.
    """,
    ],
)
def test_numpy_and_rest_docstrings(doc: str) -> None:
    def f(x: int) -> int:
        return x

    f.__doc__ = doc
    t = tool(f)
    assert t.description == "Do it."
    assert t.parameters["properties"]["x"]["description"] == "The x value."


def test_optional_defaults_lists_dicts() -> None:
    @tool
    def f(
        a: str | None = None,
        b: list[int] = [1],  # noqa: B006
        c: dict[str, float] = {},  # noqa: B006
        d: int | str = 3,
        e: tuple[int, str] = (1, "a"),
        f: Any = None,
    ) -> None:
        """F."""

    props = f.parameters["properties"]
    assert props["a"] == {"type": ["string", "null"], "default": None}
    assert props["b"] == {"type": "array", "default": [1], "items": {"type": "integer"}}
    assert props["c"] == {
        "type": "object",
        "default": {},
        "additionalProperties": {"type": "number"},
    }
    assert props["d"] == {"type": ["integer", "string"], "default": 3}
    assert props["e"]["type"] == "array" and len(props["e"]["prefixItems"]) == 2
    assert props["f"] == {"default": None}
    assert "required" not in f.parameters or f.parameters["required"] == []


def test_literal_enum_and_single_literal_becomes_enum() -> None:
    @tool
    def f(mode: Literal["fast", "slow"], one: Literal["x"], num: Literal[1, 2]) -> None:
        """F."""

    props = f.parameters["properties"]
    assert props["mode"] == {"type": "string", "enum": ["fast", "slow"]}
    assert props["one"] == {"type": "string", "enum": ["x"]}
    assert props["num"] == {"type": "integer", "enum": [1, 2]}


def test_nested_and_recursive_models() -> None:
    class Address(BaseModel):
        """A postal address."""

        street: str = Field(description="Street and number.")
        zip: int | None = None

    class Node(BaseModel):
        value: int
        children: list[Node] = []

    Node.model_rebuild()

    @tool
    def f(addr: Address, tree: Node) -> None:
        """F.

        Args:
            addr: Where to go.
        """

    props = f.parameters["properties"]
    assert props["addr"]["type"] == "object"
    assert props["addr"]["description"] == "Where to go."  # the parameter's own text wins
    assert props["addr"]["properties"]["street"] == {
        "type": "string",
        "description": "Street and number.",
    }
    assert props["tree"] == {"$ref": "#/$defs/Node"}
    assert set(f.parameters["$defs"]) == {"Node"}
    assert f.parameters["$defs"]["Node"]["properties"]["children"]["items"] == {
        "$ref": "#/$defs/Node"
    }


def test_awkward_parameter_names_and_unserializable_default() -> None:
    sentinel = object()

    @tool
    def f(json: str, model_name: str, schema: int = 1, copy: object = sentinel) -> None:
        """F."""

    assert list(f.parameters["properties"]) == ["json", "model_name", "schema", "copy"]
    assert "default" not in f.parameters["properties"]["copy"]
    assert f.validate({"json": "a", "model_name": "b"})["copy"] is sentinel


def test_context_variants_are_excluded() -> None:
    @tool
    def f(x: int, c: ToolContext | None = None) -> None:
        """F."""

    @tool
    def g(c: Annotated[ToolContext, "meta"], x: int) -> None:
        """G."""

    assert list(f.parameters["properties"]) == ["x"]
    assert list(g.parameters["properties"]) == ["x"]


def test_undocumented_function_and_unannotated_parameter() -> None:
    def bare(x, y=2):  # type: ignore[no-untyped-def]
        return x

    t = tool(bare)
    assert t.description == ""
    assert t.parameters["properties"] == {"x": {}, "y": {"default": 2}}
    assert t.parameters["required"] == ["x"]


@pytest.mark.parametrize(
    "bad",
    [
        lambda *args: None,
        lambda **kwargs: None,
    ],
)
def test_variadic_parameters_rejected(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):
        tool(bad)


def test_bad_options_rejected() -> None:
    def f(x: int) -> None:
        """F."""

    with pytest.raises(ValueError, match="timeout"):
        tool(f, timeout=0)
    with pytest.raises(TypeError, match="estimated_time"):
        tool(f, estimated_time="1s")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="name"):
        tool(f, name="has space")
    with pytest.raises(ValueError, match="not a parameter"):
        tool(f, order_by="y")


def test_tool_is_immutable_and_replace_makes_copies() -> None:
    with pytest.raises(AttributeError):
        get_weather.timeout = 3
    slow = get_weather.replace(timeout=3.0, estimated_time=1.5)
    assert (slow.timeout, slow.estimated_time, slow.name) == (3.0, 1.5, "get_weather")
    assert get_weather.timeout is None
    assert tool(get_weather) is get_weather
    assert tool(get_weather, name="w").name == "w"
    with pytest.raises(TypeError, match="cannot replace"):
        get_weather.replace(parameters={})


def test_unresolvable_string_annotation_is_a_clear_error() -> None:
    def f(x: Missing) -> None:  # type: ignore[name-defined]  # noqa: F821
        """F."""

    with pytest.raises(TypeError, match="cannot resolve a type hint"):
        tool(f)
