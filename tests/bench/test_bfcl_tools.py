"""BFCL function documents: type mapping, import, and (when bfcl-eval is installed) real data."""

from __future__ import annotations

import ast
import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from asynclm.bench.bfcl.data import first_acceptable
from asynclm.bench.bfcl.tools import bfcl_to_json_schema, tool_from_bfcl, toolbox_from_bfcl
from asynclm.tools import Ordered, Tool, ToolArgumentError, Toolbox

DOC: dict[str, Any] = {
    "name": "math.hypot",
    "description": "Euclidean norm.",
    "parameters": {
        "type": "dict",
        "properties": {
            "x": {"type": "float", "description": "First."},
            "y": {"type": "integer", "description": "Second.", "optional": True},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "opts": {
                "type": "dict",
                "properties": {
                    "precise": {"type": "boolean"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
            "anything": {"type": "any", "description": "Whatever.", "default": None},
            "units": {"type": "array", "items": {"type": "string"}, "enum": ["m", "km"]},
        },
        "required": ["x", "point"],
    },
}


def test_type_mapping_is_recursive() -> None:
    schema = bfcl_to_json_schema(DOC["parameters"])
    assert schema["type"] == "object"
    props = schema["properties"]
    assert props["x"] == {"type": "number", "description": "First."}
    assert props["y"] == {"type": "integer", "description": "Second."}  # `optional` dropped
    assert props["point"] == {"type": "array", "items": {"type": "number"}}
    assert props["opts"]["type"] == "object"
    assert props["opts"]["properties"]["precise"] == {"type": "boolean"}
    assert props["anything"] == {"description": "Whatever.", "default": None}
    assert props["units"] == {"type": "array", "items": {"type": "string", "enum": ["m", "km"]}}
    assert DOC["parameters"]["type"] == "dict"  # input untouched


def test_import_keeps_dotted_name_and_validates() -> None:
    t = tool_from_bfcl(DOC)
    assert t.name == "math.hypot" and t.description == "Euclidean norm."
    assert t.validate({"x": 3, "point": [1, "2.5"], "anything": {"k": 1}, "units": ["km"]}) == {
        "x": 3,
        "point": [1, 2.5],
        "anything": {"k": 1},
        "units": ["km"],
    }
    with pytest.raises(ToolArgumentError) as info:
        t.validate({"x": "three", "units": ["mi"], "opts": {"precise": "perhaps"}})
    text = str(info.value)
    for part in (
        "missing required argument 'point'",
        "argument 'x'",
        "argument 'units[0]'",
        "argument 'opts.precise'",
    ):
        assert part in text


def test_toolbox_from_bfcl_with_handler_and_shared_order() -> None:
    docs = [
        DOC,
        {"name": "ls", "description": "List.", "parameters": {"type": "dict", "properties": {}}},
    ]

    async def handler(name: str, args: dict[str, Any]) -> str:
        await asyncio.sleep(0)
        return f"{name}{sorted(args)}"

    box = toolbox_from_bfcl(docs, handler=handler, order_by=Ordered("fs"), estimated_time=0.5)
    assert list(box) == ["math.hypot", "ls"]
    assert asyncio.run(box["ls"].invoke(box["ls"].validate({}))) == "ls[]"
    assert box["ls"].order_key({}) == box["math.hypot"].order_key({"x": 1})
    assert box["ls"].estimated_time == 0.5


# ---- real BFCL data (skipped unless the bfcl-eval package is installed) ----------------------

# Ground-truth entries that contradict their own function document (checked by hand).
_KNOWN_DATA_ERRORS = {
    "parallel_multiple_12",  # passes `permeability`: not a calculate_voltage_difference parameter
    "parallel_multiple_21",  # passes the string "data['sales']" for an array
    "parallel_multiple_26",  # passes `type`, not a parameter of bank.calculate_balance
    "parallel_multiple_94",  # passes fruit names for an array of integers
    "multi_turn_base_173",  # passes 'ticket_001' for an integer ticket_id
}


def _data_dir() -> Path:
    bfcl_eval = pytest.importorskip("bfcl_eval")
    return Path(bfcl_eval.__file__).parent / "data"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("category", ["parallel", "parallel_multiple"])
def test_real_bfcl_docs_import_and_ground_truth_validates(category: str) -> None:
    data = _data_dir()
    items = _jsonl(data / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a for a in _jsonl(data / "possible_answer" / f"BFCL_v4_{category}.json")}
    assert len(items) == 200
    failures: dict[str, str] = {}
    checked = 0
    for item in items:
        box = toolbox_from_bfcl(item["function"])
        assert len(box) == len(item["function"])
        for call in answers[item["id"]]["ground_truth"]:
            for name, params in call.items():
                args = first_acceptable(params)
                checked += 1
                try:
                    box.get_checked(name).validate(args)
                except ToolArgumentError as exc:
                    failures[item["id"]] = str(exc)
    assert checked > 500
    assert set(failures) <= _KNOWN_DATA_ERRORS, failures


def test_real_bfcl_multi_turn_ground_truth_validates_with_positional_args() -> None:
    data = _data_dir()
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted((data / "multi_turn_func_doc").glob("*.json")):
        for doc in _jsonl(path):
            docs.setdefault(doc["name"], doc)
    box = toolbox_from_bfcl(docs.values())
    failures: dict[str, str] = {}
    for answer in _jsonl(data / "possible_answer" / "BFCL_v4_multi_turn_base.json"):
        for turn in answer["ground_truth"]:
            for text in turn:
                call = ast.parse(text, mode="eval").body
                assert isinstance(call, ast.Call)
                pos = [ast.literal_eval(a) for a in call.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
                try:
                    box.get_checked(ast.unparse(call.func)).validate(kwargs, pos)
                except ToolArgumentError as exc:
                    failures[answer["id"]] = str(exc)
    assert set(failures) <= _KNOWN_DATA_ERRORS, failures
