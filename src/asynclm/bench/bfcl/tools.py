"""BFCL function documents → JSON Schema → :class:`Tool`.

BFCL writes parameter types with its own names (``dict``, ``float``, ``tuple``, ``any``, and
Java/JavaScript names such as ``HashMap``). They are mapped recursively (through ``properties``,
``items`` and ``additionalProperties``); ``any`` and unknown names become an unconstrained
schema; BFCL's non-standard ``optional`` flag is dropped (``required`` decides); an ``enum`` of
scalars on an ``array`` moves into its ``items``. Names keep their
dots (``math.factorial``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from asynclm.tools import Handler, Tool, Toolbox

__all__ = ["BFCL_TYPES", "bfcl_to_json_schema", "tool_from_bfcl", "toolbox_from_bfcl"]

BFCL_TYPES: Mapping[str, str | None] = {
    "dict": "object",
    "object": "object",
    "HashMap": "object",
    "Hashtable": "object",
    "integer": "integer",
    "int": "integer",
    "byte": "integer",
    "short": "integer",
    "long": "integer",
    "Bigint": "integer",
    "float": "number",
    "number": "number",
    "double": "number",
    "string": "string",
    "String": "string",
    "str": "string",
    "char": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "ArrayList": "array",
    "Array": "array",
    "Queue": "array",
    "Stack": "array",
    "Set": "array",
    "any": None,
    "Any": None,
}
"""BFCL type name → JSON Schema type (``None``: no constraint)."""


def bfcl_to_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON Schema copy of a BFCL parameter schema."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "optional":
            continue
        if key == "type":
            mapped = _map_type(value)
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {
                k: bfcl_to_json_schema(v) if isinstance(v, Mapping) else v for k, v in value.items()
            }
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = bfcl_to_json_schema(value)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            out[key] = [bfcl_to_json_schema(v) if isinstance(v, Mapping) else v for v in value]
        else:
            out[key] = value
    _enum_into_items(out)
    return out


def _enum_into_items(schema: dict[str, Any]) -> None:
    """BFCL puts an item enum on the array itself; move it to ``items`` where it belongs."""
    enum = schema.get("enum")
    if schema.get("type") != "array" or not isinstance(enum, list):
        return
    if any(isinstance(v, list) for v in enum):
        return  # a genuine enum of whole arrays
    items = schema.setdefault("items", {})
    if isinstance(items, dict) and "enum" not in items:
        items["enum"] = schema.pop("enum")


def _map_type(value: Any) -> Any:
    if isinstance(value, list):
        mapped = [_map_type(v) for v in value]
        return None if None in mapped else mapped
    return BFCL_TYPES.get(value) if isinstance(value, str) else None


def tool_from_bfcl(doc: Mapping[str, Any], handler: Handler | None = None, **options: Any) -> Tool:
    """A schema-only :class:`Tool` from one BFCL function document."""
    params = doc.get("parameters")
    spec = {
        "name": doc.get("name"),
        "description": doc.get("description", ""),
        "parameters": bfcl_to_json_schema(params) if isinstance(params, Mapping) else {},
    }
    return Tool.from_openai(spec, handler=handler, **options)


def toolbox_from_bfcl(
    docs: Iterable[Mapping[str, Any]], handler: Handler | None = None, **options: Any,
) -> Toolbox:
    """Schema-only tools from BFCL function documents. ``options`` (timeout, estimated_time,
    order_by) apply to every tool, e.g. ``order_by=Ordered("GorillaFileSystem")`` for the tools
    of one stateful class instance."""
    return Toolbox(tool_from_bfcl(doc, handler=handler, **options) for doc in docs)
