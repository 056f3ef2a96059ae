"""Build a pydantic model that validates arguments against a JSON Schema.

Used for tools that exist only as a schema (OpenAI ``tools=[...]`` specs, BFCL docs). Supported:
``type`` (string, integer, number, boolean, array, object, null, or a list of them), ``enum``,
``const``, ``anyOf``/``oneOf``, single-member ``allOf``, ``items``, ``prefixItems``,
``properties``/``required``, ``additionalProperties``, ``nullable``, local ``$ref``, ``default``
and the common numeric/length/pattern constraints. Other keywords (``format``, ...) are ignored.
Validation is lax like pydantic (``"3"`` passes as an integer) but booleans are not numbers and
integers stay integers where a ``number`` is expected. A property's documented ``default`` is
always accepted, even where the schema contradicts it (BFCL writes ``"type": "string",
"default": null`` and ``"type": "integer", "default": "dontcare"``). Below a recursive ``$ref``
cycle any value is accepted. Every property is an alias of a synthetic field, so any property
name works.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)

__all__ = ["model_from_schema"]

_CONSTRAINTS = {
    "minimum": "ge",
    "maximum": "le",
    "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_length",
    "maxItems": "max_length",
}


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("booleans are not numbers")
    return value


_Integer = Annotated[int, BeforeValidator(_not_bool)]
_Number = Annotated[Union[int, float], BeforeValidator(_not_bool)]  # noqa: UP007
_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": _Integer,
    "number": _Number,
    "boolean": bool,
    "null": None,
}


def model_from_schema(schema: dict[str, Any]) -> type[BaseModel]:
    """A model validating arguments against ``schema`` (an ``object`` schema).

    Properties not declared are rejected unless ``additionalProperties`` says otherwise.
    Raises ``ValueError`` for a ``type`` that is not JSON Schema. Models are cached by schema
    (benchmarks import the same function documents many times).
    """
    try:
        key = json.dumps(schema)
    except (TypeError, ValueError):
        return _build(schema)
    return _cached(key)


@functools.lru_cache(maxsize=2048)
def _cached(key: str) -> type[BaseModel]:
    return _build(json.loads(key))


def _build(schema: dict[str, Any]) -> type[BaseModel]:
    builder = _Builder(schema.get("$defs") or schema.get("definitions") or {})
    return builder.object_model(schema, "parameters", forbid_default=True)


class _Builder:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.resolving: set[str] = set()
        self.count = 0

    def object_model(
        self, schema: dict[str, Any], where: str, *, forbid_default: bool
    ) -> type[BaseModel]:
        props: dict[str, Any] = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        extra_schema = schema.get("additionalProperties")
        forbid = extra_schema is False or (extra_schema is None and forbid_default)
        extra: Literal["forbid", "allow"] = "forbid" if forbid else "allow"
        fields: dict[str, Any] = {}
        for i, (prop, sub) in enumerate(props.items()):
            annotation = self.type_of(sub, f"{where}.properties.{prop}")
            if isinstance(sub, dict) and "default" in sub:
                annotation = _admit_default(annotation, sub["default"])
            info: dict[str, Any] = {"alias": prop}
            if isinstance(sub, dict) and isinstance(sub.get("description"), str):
                info["description"] = sub["description"]
            default = ... if prop in required else None
            fields[f"f{i}"] = (Annotated[annotation, Field(**info)], default)
        self.count += 1
        config = ConfigDict(extra=extra, populate_by_name=False, protected_namespaces=())
        model: type[BaseModel] = create_model(f"Arguments{self.count}", __config__=config, **fields)
        return model

    def type_of(self, schema: Any, where: str) -> Any:
        if schema is True or schema == {}:
            return Any
        if not isinstance(schema, dict):
            raise ValueError(f"{where}: schema must be an object, not {schema!r}")
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.resolve(ref, where)
        if "const" in schema:
            return _literal([schema["const"]])
        if isinstance(schema.get("enum"), list):
            tp = _literal(schema["enum"])
        elif isinstance(members := schema.get("anyOf") or schema.get("oneOf"), list):
            tp = _union([self.type_of(m, where) for m in members])
        elif isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            tp = self.type_of(schema["allOf"][0], where)
        else:
            kinds = schema.get("type")
            if kinds is None:
                return Any
            kinds = kinds if isinstance(kinds, list) else [kinds]
            tp = _union([self.kind(k, schema, where) for k in kinds])
        if schema.get("nullable") is True:
            tp = _union([tp, None])
        return tp

    def kind(self, kind: Any, schema: dict[str, Any], where: str) -> Any:
        constraints = {_CONSTRAINTS[k]: v for k, v in schema.items() if k in _CONSTRAINTS}
        if kind in _SCALARS:
            tp = _SCALARS[kind]
        elif kind == "array":
            prefix = schema.get("prefixItems")
            if isinstance(prefix, list):
                members = tuple(self.type_of(s, f"{where}.prefixItems") for s in prefix)
                tp = tuple.__class_getitem__(members)
            else:
                tp = list[self.type_of(schema.get("items", True), f"{where}.items")]  # type: ignore[misc]
        elif kind == "object":
            extra = schema.get("additionalProperties")
            if schema.get("properties"):
                tp = self.object_model(schema, where, forbid_default=False)
            elif isinstance(extra, dict):
                tp = dict[str, self.type_of(extra, f"{where}.additionalProperties")]  # type: ignore[misc]
            else:
                tp = dict[str, Any]
        else:
            raise ValueError(f"{where}: unsupported JSON Schema type {kind!r}")
        if constraints and kind in ("string", "integer", "number", "array"):
            return Annotated[tp, Field(**constraints)]
        return tp

    def resolve(self, ref: str, where: str) -> Any:
        match = re.fullmatch(r"#/(?:\$defs|definitions)/(.+)", ref)
        if match is None or match.group(1) not in self.defs:
            raise ValueError(f"{where}: cannot resolve $ref {ref!r}")
        name = match.group(1)
        if name in self.resolving:
            return Any  # recursive reference: accept any value below this depth
        self.resolving.add(name)
        try:
            return self.type_of(self.defs[name], f"{where}->{name}")
        finally:
            self.resolving.discard(name)


def _admit_default(annotation: Any, default: Any) -> Any:
    """``annotation``, widened to accept a scalar ``default`` that it would reject."""
    if not (isinstance(default, str | int | bool) or default is None):
        return annotation
    try:
        TypeAdapter(annotation).validate_python(default)
    except (ValidationError, TypeError, ValueError):
        return _union([annotation, Literal[default]])
    return annotation


def _literal(values: list[Any]) -> Any:
    hashable = all(isinstance(v, str | int | bool) or v is None for v in values)
    if hashable and values:
        return Literal[tuple(values)]
    allowed = list(values)

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"Input should be one of {allowed!r}")
        return value

    return Annotated[Any, BeforeValidator(check)]


def _union(types: list[Any]) -> Any:
    unique: list[Any] = []
    for tp in types:
        if tp not in unique:
            unique.append(tp)
    if Any in unique:
        return Any
    return unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007
