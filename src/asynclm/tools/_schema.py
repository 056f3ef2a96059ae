"""Turn a pydantic JSON Schema into the plain, OpenAI-style schema shown to models.

Cleaning: drop pydantic ``title`` keywords, inline ``$ref`` to ``$defs`` (keeping ``$defs`` only
for recursive models), turn ``anyOf`` of bare types into a ``type`` list
(``Optional[str]`` → ``{"type": ["string", "null"]}``), ``const`` into a one-value ``enum``, and
put the common keywords first.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["clean_schema"]

_SUBSCHEMA_KEYS = ("items", "additionalProperties", "not", "contains", "propertyNames")
_SUBSCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions")
_KEY_ORDER = (
    "type",
    "description",
    "enum",
    "default",
    "items",
    "prefixItems",
    "properties",
    "required",
    "additionalProperties",
    "anyOf",
    "oneOf",
    "allOf",
)


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A cleaned deep copy of ``schema`` (see the module docstring)."""
    defs: dict[str, Any] = schema.get("$defs", {})
    recursive = {name for name in defs if _reaches(defs, name, name, set())}
    out: dict[str, Any] = _clean(schema, defs, recursive, ())
    kept = {name: _clean(defs[name], defs, recursive, (name,)) for name in sorted(recursive)}
    out.pop("$defs", None)
    if kept:
        out["$defs"] = kept
    return out


def _ref_name(ref: str) -> str | None:
    prefix = "#/$defs/"
    return ref[len(prefix) :] if ref.startswith(prefix) else None


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        name = _ref_name(node["$ref"]) if isinstance(node.get("$ref"), str) else None
        if name is not None:
            found.add(name)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _reaches(defs: dict[str, Any], start: str, target: str, seen: set[str]) -> bool:
    for name in _refs(defs.get(start, {})):
        if name == target:
            return True
        if name not in seen:
            seen.add(name)
            if _reaches(defs, name, target, seen):
                return True
    return False


def _clean(node: Any, defs: dict[str, Any], recursive: set[str], stack: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    ref = node.get("$ref")
    name = _ref_name(ref) if isinstance(ref, str) else None
    if name is not None and name in defs and name not in recursive and name not in stack:
        inlined = _clean(defs[name], defs, recursive, (*stack, name))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        inlined.update(_clean(siblings, defs, recursive, stack))
        return _order(inlined)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or key == "$defs":
            continue
        if key in _SUBSCHEMA_KEYS and isinstance(value, dict):
            out[key] = _clean(value, defs, recursive, stack)
        elif key in _SUBSCHEMA_LIST_KEYS and isinstance(value, list):
            out[key] = [_clean(v, defs, recursive, stack) for v in value]
        elif key in _SUBSCHEMA_MAP_KEYS and isinstance(value, dict):
            out[key] = {k: _clean(v, defs, recursive, stack) for k, v in value.items()}
        else:
            out[key] = copy.deepcopy(value)
    if "const" in out and "enum" not in out:
        out["enum"] = [out.pop("const")]
    _merge_type_union(out)
    return _order(out)


def _merge_type_union(node: dict[str, Any]) -> None:
    """``{"anyOf": [{"type": a}, {"type": b}]}`` → ``{"type": [a, b]}`` when members are bare."""
    members = node.get("anyOf")
    if "type" in node or not isinstance(members, list) or len(members) < 2:
        return
    types: list[Any] = []
    for member in members:
        if not (isinstance(member, dict) and set(member) == {"type"}):
            return
        member_types = member["type"] if isinstance(member["type"], list) else [member["type"]]
        types.extend(t for t in member_types if t not in types)
    del node["anyOf"]
    node["type"] = types


def _order(node: dict[str, Any]) -> dict[str, Any]:
    head = {k: node[k] for k in _KEY_ORDER if k in node}
    head.update((k, v) for k, v in node.items() if k not in head)
    return head
