"""OpenAI ``tools=[...]`` format: read a function spec (what :meth:`Tool.from_openai` builds a
tool from)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ._from_schema import model_from_schema
from ._validation import ArgumentValidator

__all__ = ["function_spec", "schema_parts"]


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
