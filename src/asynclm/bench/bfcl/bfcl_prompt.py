"""BFCL's own synchronous prompt (the ``bfcl-prompt`` strategy): the model answers with a Python
list of calls, ``[func(a=1), other(b="x")]``, which is parsed and scored the BFCL way.

The system prompt is BFCL's default (``ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&
prompt_fmt=plaintext&style=classic``), assembled from the package's own text constants
(``bfcl_eval.constants.default_prompts``) exactly as ``formulate_system_prompt`` does, with the
Python hint BFCL adds to every function description. (``formulate_system_prompt`` itself lives in
a module that imports tenacity, filelock and tree-sitter, which we do not install.)

The answer is decoded as BFCL's ``default_decode_ast_prompting`` does (strip backticks and
blanks, add missing brackets, ``ast.parse``, read each call's keyword arguments), with one
deliberate difference: BFCL ``eval()``s arithmetic in arguments; here an arithmetic expression is
computed only when it is made of numeric (or string) literals with small operands, otherwise the
answer counts as undecodable. Model output is never evaluated.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from asynclm.bench.bfcl._pkg import bfcl_import
from asynclm.errors import ProtocolError
from asynclm.protocol import format_call

__all__ = ["BFCL_PROMPT", "DecodeError", "bfcl_messages", "bfcl_system_prompt",
           "decode_python_list", "format_answer"]

BFCL_PROMPT = "bfcl-prompt"  # the strategy name of this prompt in ``bench bfcl``

PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


class DecodeError(ProtocolError, ValueError):
    """The answer is not a decodable list of calls."""


def bfcl_system_prompt(functions: Sequence[Mapping[str, Any]]) -> str:
    """BFCL's default system prompt for ``functions`` (BFCL documents, Python categories)."""
    p = bfcl_import("constants.default_prompts")
    docs = [dict(f) for f in functions]
    for d in docs:  # BFCL's _func_doc_language_specific_pre_processing, Python branch
        d["description"] = str(d.get("description", "")) + PYTHON_HINT
    style = p.PROMPT_STYLE_TEMPLATES["classic"]
    return p.PROMPT_TEMPLATE_MAPPING["plaintext"].format(
        persona=style["persona"],
        task=style["task"],
        tool_call_format=style["tool_call_no_tag"].format(
            output_format=p.OUTPUT_FORMAT_MAPPING["python"],
            param_types=p.PARAM_TYPE_MAPPING["python"],
        ),
        multiturn_behavior=style["multiturn_behavior"],
        available_tools=style["available_tools"].format(
            format="json", functions=json.dumps(docs, indent=4)
        ),
    )


def bfcl_messages(
    functions: Sequence[Mapping[str, Any]], turn: Sequence[Mapping[str, str]]
) -> list[dict[str, str]]:
    """The first turn's messages with BFCL's system prompt in front (an item's own system
    message is appended to it, as BFCL does)."""
    msgs = [dict(m) for m in turn]
    system = bfcl_system_prompt(functions)
    if msgs and msgs[0].get("role") == "system":
        msgs[0]["content"] = system + "\n\n" + msgs[0]["content"]
    else:
        msgs.insert(0, {"role": "system", "content": system})
    return msgs


def format_answer(calls: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A correct answer in BFCL's format, e.g. ``[f(a=1), g(b="x")]`` (for the simulator)."""
    return "[" + ", ".join(format_call(fn, dict(args)) for fn, args in calls) + "]"


# -- decoding ------------------------------------------------------------------------------------

_BINOPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_MAX_NUM = 10**30
_MAX_STR = 10_000


def decode_python_list(text: str) -> list[dict[str, dict[str, Any]]]:
    """``[{fn: {arg: value}}]`` from a BFCL Python-list answer; raises :class:`DecodeError`."""
    s = text.strip("`\n ")
    if not s.startswith("["):
        s = "[" + s
    if not s.endswith("]"):
        s = s + "]"
    s = s.strip().strip("'")
    try:
        tree = ast.parse(s, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise DecodeError(f"not a Python list of calls: {type(exc).__name__}: {exc}") from None
    try:
        body = tree.body
        if isinstance(body, ast.Call):
            return [_call(body)]
        if not isinstance(body, (ast.List, ast.Tuple, ast.Set)):
            raise DecodeError(f"expected a list of calls, got {type(body).__name__}")
        out = []
        for elem in body.elts:
            if not isinstance(elem, ast.Call):
                raise DecodeError(f"list element is a {type(elem).__name__}, not a call")
            out.append(_call(elem))
        return out
    except DecodeError:
        raise
    except (ValueError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise DecodeError(f"cannot read the calls: {type(exc).__name__}: {exc}") from None


def _call(node: ast.Call) -> dict[str, dict[str, Any]]:
    """BFCL's resolve_ast_call: dotted name, keyword arguments only (positionals are dropped)."""
    parts = []
    f: ast.expr = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return {".".join(reversed(parts)): {kw.arg: _value(kw.value) for kw in node.keywords
                                        if kw.arg is not None}}


def _value(node: ast.expr) -> Any:
    """BFCL's resolve_ast_by_type, without eval."""
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):  # BFCL reads any unary operator as negation
        if not isinstance(node.operand, ast.Constant):
            raise DecodeError("unary operator on a non-literal")
        operand: Any = node.operand.value  # not a number: TypeError, a DecodeError for the caller
        return -operand
    if isinstance(node, ast.List):
        return [_value(v) for v in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k) if k is not None else None: _value(v)
                for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.BinOp):
        return _arith(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return ast.unparse(node) if not node.keywords else _call(node)
    if isinstance(node, ast.Tuple):
        return tuple(_value(v) for v in node.elts)
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.value) + "[" + ast.unparse(node.slice) + "]"
    raise DecodeError(f"unsupported expression {type(node).__name__}")


def _arith(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _arith(node.operand)
        if isinstance(v, str):
            raise DecodeError("sign of a string")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _arith(node.left), _arith(node.right)
        if isinstance(node.op, ast.Pow) and (isinstance(b, str) or abs(b) > 64 or
                                             isinstance(a, str) or abs(a) > 10**6):
            raise DecodeError("power too large to compute safely")
        if isinstance(node.op, ast.Mult) and (isinstance(a, str) or isinstance(b, str)):
            n = b if isinstance(a, str) else a
            if not isinstance(n, int) or n * len(a if isinstance(a, str) else b) > _MAX_STR:
                raise DecodeError("string repetition too large")
        v = _BINOPS[type(node.op)](a, b)
        if isinstance(v, (int, float)) and abs(v) > _MAX_NUM:
            raise DecodeError("number too large")
        return v
    raise DecodeError(f"arithmetic on a non-literal ({ast.unparse(node)[:40]})")
