"""OpenAI ``tools=[...]`` format: import a function spec as a :class:`Tool`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ._from_schema import model_from_schema
from ._signature import inspect_function
from ._tool import Handler, Tool
from ._validation import ArgumentValidator

__all__ = ["function_spec", "tool_from_openai"]


def function_spec(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """The inner ``function`` dict of ``spec`` (accepts the wrapper or the inner dict)."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"a tool spec must be a mapping, not {type(spec).__name__}")
    inner = spec.get("function") if spec.get("type", "function") == "function" else None
    if isinstance(inner, Mapping):
        return inner
    if "name" in spec:
        return spec
    raise ValueError(f"not an OpenAI function spec: {sorted(spec)}")


def tool_from_openai(
    spec: Mapping[str, Any],
    fn: Callable[..., Any] | None = None,
    *,
    handler: Handler | None = None,
    **options: Any,
) -> Tool:
    """See :meth:`Tool.from_openai`. Raises ``ValueError`` for a malformed spec."""
    name, description, parameters, validator = schema_parts(spec)
    ctx_param = None
    positional_only: tuple[str, ...] = ()
    is_async = False
    if fn is not None:
        info = inspect_function(fn)
        ctx_param, positional_only, is_async = info.ctx_param, info.positional_only, info.is_async
    return Tool(
        name=name,
        description=description,
        parameters=parameters,
        validator=validator,
        fn=fn,
        is_async=is_async,
        ctx_param=ctx_param,
        positional_only=positional_only,
        handler=handler,
        **options,
    )


def schema_parts(spec: Mapping[str, Any]) -> tuple[str, str, dict[str, Any], ArgumentValidator]:
    """Name, description, parameters (an object schema, copied, closed by default) and their
    validator, from an OpenAI function spec. Raises ``ValueError`` for a malformed spec."""
    inner = function_spec(spec)
    name = inner.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("an OpenAI function spec needs a non-empty 'name'")
    raw = inner.get("parameters")
    parameters: dict[str, Any] = copy.deepcopy(dict(raw)) if isinstance(raw, Mapping) else {}
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    if parameters["type"] != "object":
        raise ValueError(f"{name}: parameters must be an object schema, not {parameters['type']!r}")
    parameters.setdefault("additionalProperties", False)
    try:
        model = model_from_schema(parameters)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    description = inner.get("description")
    validator = ArgumentValidator(model, tuple(parameters["properties"]), fill_defaults=False)
    return name, description if isinstance(description, str) else "", parameters, validator
