"""Parsing call bodies: ``fn(a=1, b="x", c=$c1.items.0)`` or a JSON object.

Contract of :func:`parse_body`:

* **Nothing is ever evaluated.** The body is checked by a small tokenizer (the *pre-scan*) that
  rejects every construct outside the accepted language before :mod:`ast` sees it, then parsed
  with ``ast.parse(..., mode="eval")`` (which only builds a syntax tree: it fires one ``compile``
  audit event for the source and executes nothing) and the tree is walked with an explicit
  whitelist. ``eval``/``exec``/``ast.literal_eval``/``compile`` to code are never used.
* Accepted Python-call language: a function name (dotted names allowed, ``math.factorial``),
  one pair of call parentheses, positional arguments then keyword arguments. Values are
  ``str``/``int``/``float``/``bool``/``None`` constants, unary ``+``/``-`` on a number, lists,
  tuples (returned as lists), dicts with constant keys, the JSON literals ``true``/``false``/
  ``null``, and references ``$id``, ``$id.path.to.0``, ``$id["key"][0]`` (see :class:`Ref`).
  A keyword argument may be named like a Python keyword (``f(from="a")``): tool schemas have
  such parameter names.
* Accepted JSON body: ``{"name": "fn", "arguments": {...}}`` (``"args"`` or ``"parameters"``
  instead of ``"arguments"``; arguments may be a JSON-encoded string, as OpenAI sends them; the
  OpenAI wrapper ``{"type": "function", "function": {...}}`` too). A string value (at any depth)
  that is exactly a reference such as ``"$c1"`` or ``"$c1.items.0"`` becomes a :class:`Ref`;
  any other string is kept verbatim.
* Other strings come back exactly as written (a Python-syntax ``"$c1"`` stays a string).
  References *inside* strings (``title="Meeting $m1.event_id"``) are found later, by the executor
  (:func:`asynclm.runtime.futures.bind_string_refs`), because only it knows which ids exist when
  the call is submitted: ``$`` + an earlier call's id is interpolated as text, every other ``$``
  (``$5.00``, ``$HOME``) stays text, and ``$$m1`` writes ``$m1`` literally.
* Everything else raises :class:`BodyError` with a human-readable reason, meant to be shown to
  the model in an error interrupt. Bodies over :data:`MAX_BODY_CHARS` characters or nesting
  brackets deeper than :data:`MAX_DEPTH` are rejected before any parsing.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, NoReturn

from asynclm.errors import BodyError
from asynclm.protocol.events import Ref
from asynclm.protocol.ids import ID_CHARS, REF_ID_RE

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_DEPTH",
    "MAX_FN_CHARS",
    "MAX_REF_PATH",
    "BodyError",
    "ParsedBody",
    "parse_body",
    "parse_ref",
    "REF_ID_RE",
]

MAX_BODY_CHARS = 64 * 1024
"""Longest body accepted, in characters (checked before any parsing)."""
MAX_DEPTH = 64
"""Deepest bracket nesting accepted (checked before :mod:`ast` runs; deep input can exhaust the
C stack of the parser)."""
MAX_FN_CHARS = 256
"""Longest function name accepted."""
MAX_REF_PATH = 64
"""Most path segments in one reference."""

_SEG_RE = re.compile(rf"\.([{ID_CHARS}]+)")
_INDEX_RE = re.compile(r"""\[[ \t]*(?:(-?[0-9]+)|"([^"\\\n]*)"|'([^'\\\n]*)')[ \t]*\]""")
_DIGITS_RE = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A parsed call body: function name, keyword arguments, positional arguments.

    Values are JSON-like (``dict``/``list``/``str``/``int``/``float``/``bool``/``None``) and may
    contain :class:`Ref` at any depth. Tuples in the source come back as lists.
    """

    fn: str
    args: dict[str, Any] = field(default_factory=dict)
    pos: tuple[Any, ...] = ()


def _fail(msg: str) -> NoReturn:
    raise BodyError(msg)


# --------------------------------------------------------------------------------------------
# references


def parse_ref(text: str, i: int = 0) -> tuple[Ref, int]:
    """Parse a reference starting at ``text[i] == "$"``; return it and the index after it.

    Grammar: ``$`` id (the longest :data:`~asynclm.protocol.ids.REF_ID_RE` match), then any
    number of ``.segment``
    (``[A-Za-z0-9_-]+``; all digits -> ``int``) or ``[int]`` / ``["key"]`` / ``['key']``
    (keys without backslashes or newlines). Raises :class:`BodyError` if no id follows ``$``.
    """
    if i >= len(text) or text[i] != "$":
        _fail("a reference starts with '$'")
    m = REF_ID_RE.match(text, i + 1)
    if m is None:
        _fail("'$' must be followed by a call id, as in $c1 or $c1.path.0")
    ref_id = m.group(0)
    j = m.end()
    path: list[str | int] = []
    while True:
        sm = _SEG_RE.match(text, j)
        if sm is not None:
            seg = sm.group(1)
            path.append(int(seg) if seg.isdigit() else seg)
            j = sm.end()
        else:
            im = _INDEX_RE.match(text, j)
            if im is None:
                break
            if im.group(1) is not None:
                path.append(int(im.group(1)))
            else:
                path.append(im.group(2) if im.group(2) is not None else im.group(3))
            j = im.end()
        if len(path) > MAX_REF_PATH:
            _fail(f"reference ${ref_id} has more than {MAX_REF_PATH} path segments")
    return Ref(ref_id, tuple(path)), j


def _whole_ref(s: str) -> Ref | None:
    """``s`` as a reference if the whole string is one, else ``None``."""
    if not s.startswith("$"):
        return None
    try:
        ref, end = parse_ref(s, 0)
    except BodyError:
        return None
    return ref if end == len(s) else None


# --------------------------------------------------------------------------------------------
# pre-scan: a tokenizer that rejects everything outside the language before ast runs

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<str>(?P<prefix>[A-Za-z]{0,2})(?P<quote>'''|\"\"\"|'|"))
  | (?P<num>0[xXoObB][0-9a-fA-F_]*
      | (?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9_]+)?[jJ]?)
  | (?P<name>[^\W\d]\w*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_END = {
    "'": re.compile(r"(?:[^'\\\r\n]|\\.)*'", re.DOTALL),
    '"': re.compile(r'(?:[^"\\\r\n]|\\.)*"', re.DOTALL),
    "'''": re.compile(r"(?:[^\\]|\\.)*?'''", re.DOTALL),
    '"""': re.compile(r'(?:[^\\]|\\.)*?"""', re.DOTALL),
}
_KWARG_AHEAD = re.compile(r"[ \t\r\n\f]*=(?!=)")
# Fast path for long literal lists: a run of "simple value ," items (decimal numbers with an
# optional sign, strings without escapes/newlines/$, the constant names). Valid wherever a value
# may start; leaves the scanner after a comma.
_SIMPLE_RUN = re.compile(
    r"""(?:[ \t\r\n\f]*(?:[+-]?[ \t\r\n\f]*[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?
    |"[^"\\\r\n$]*"|'[^'\\\r\n$]*'|True|False|None|true|false|null)[ \t\r\n\f]*,)+""",
    re.VERBOSE,
)
_STRING_PREFIXES = {"", "r", "u"}
_OPENERS = "([{"
_CLOSERS = ")]}"
# previous significant token kinds after which + / - are unary and ( [ are not postfix
_VALUE_START = {"start", "open", "comma", "colon", "eq"}
_ALLOWED_KEYWORDS = {"True", "False", "None"}


@dataclass(slots=True)
class _Scan:
    source: str
    refs: dict[str, Ref]
    kwnames: dict[str, str]


def _placeholder_prefix(text: str) -> str:
    """A name prefix that cannot occur in ``text``, even after NFKC (Python normalizes names)."""
    norm = unicodedata.normalize("NFKC", text)
    prefix = "__asynclm_ref"
    while prefix in norm:
        prefix += "_"
    return prefix


def _prescan(text: str) -> _Scan:
    """Validate ``text`` token by token and rewrite ``$refs`` / keyword-named kwargs to names.

    Rejects: operators (only unary +/- directly before a number), attribute access (dots are
    allowed only inside the leading function name and in numbers), more than one call, subscripts,
    Python keywords other than True/False/None, bytes and f-strings, unterminated strings, and
    nesting deeper than :data:`MAX_DEPTH`. What passes can only parse to a tree of bounded depth.
    """
    prefix = _placeholder_prefix(text)
    out: list[str] = []
    refs: dict[str, Ref] = {}
    kwnames: dict[str, str] = {}
    copied = 0  # text[copied:] not yet copied to out
    depth = 0
    prev = "start"
    in_fn_name = True  # before the call's "("
    fn_start = -1
    called = False
    n = len(text)
    i = 0
    while i < n:
        if prev in _VALUE_START:
            run = _SIMPLE_RUN.match(text, i)
            if run is not None:
                i = run.end()
                prev = "comma"
                in_fn_name = False
                continue
        m = _TOKEN_RE.match(text, i)
        assert m is not None  # "other" matches any character
        kind = m.lastgroup
        j = m.end()
        if kind == "ws" or kind == "comment":
            i = j
            continue
        if kind == "str":
            pfx = m.group("prefix")
            low = pfx.lower()
            quote = m.group("quote")
            if low not in _STRING_PREFIXES:
                if "f" in low:
                    _fail("f-strings are not allowed; write a plain string literal")
                if "b" in low:
                    _fail("bytes literals are not allowed; write a plain string literal")
                # e.g. `xy"..."`: a name directly followed by a string; ast will reject it
            em = _STRING_END[quote].match(text, j)
            if em is None:
                _fail(f"unterminated string literal starting at column {i + len(pfx) + 1}")
            if prev == "value":
                _fail(f"unexpected string at column {i + 1} (missing comma?)")
            i = em.end()
            prev = "value"
            in_fn_name = False
            continue
        if kind == "num":
            if prev == "value":
                _fail(f"unexpected number at column {i + 1} (missing comma?)")
            prev = "value"
            in_fn_name = False
            i = j
            continue
        if kind == "name":
            name = m.group("name")
            if keyword.iskeyword(name):
                if prev in ("open", "comma") and _KWARG_AHEAD.match(text, j):
                    placeholder = f"{prefix}kw{len(kwnames)}"
                    kwnames[placeholder] = name
                    out.append(text[copied:i])
                    out.append(placeholder)
                    copied = j
                    prev = "kwname"
                    i = j
                    continue
                if name not in _ALLOWED_KEYWORDS:
                    _fail(f"the Python keyword {name!r} is not allowed in a call body")
            if prev == "value":
                _fail(f"unexpected name {name!r} at column {i + 1} (missing comma?)")
            if in_fn_name and fn_start < 0:
                fn_start = i
            prev = "value"
            i = j
            continue
        ch = text[i]
        if ch == "$":
            if prev == "value":
                _fail(f"unexpected reference at column {i + 1} (missing comma?)")
            ref, j = parse_ref(text, i)
            placeholder = f"{prefix}{len(refs)}"
            refs[placeholder] = ref
            out.append(text[copied:i])
            out.append(f" {placeholder} ")
            copied = j
            prev = "value"
            in_fn_name = False
            i = j
            continue
        if ch in _OPENERS:
            if prev == "value":
                if ch == "(":
                    if in_fn_name and not called and fn_start >= 0:
                        called = True
                        in_fn_name = False
                        if i - fn_start > MAX_FN_CHARS:
                            _fail(f"function name longer than {MAX_FN_CHARS} characters")
                    else:
                        _fail(
                            "nested calls are not allowed: arguments must be literals or $refs"
                            " to earlier calls' results"
                        )
                elif ch == "[":
                    _fail("subscripts are not allowed (write $id[0] or $id.key for references)")
            depth += 1
            if depth > MAX_DEPTH:
                _fail(f"nesting deeper than {MAX_DEPTH} levels")
            in_fn_name = False
            prev = "open"
            i += 1
            continue
        if ch in _CLOSERS:
            depth -= 1
            if depth < 0:
                _fail(f"unbalanced {ch!r} at column {i + 1}")
            prev = "value"
            i += 1
            continue
        if ch == ",":
            prev = "comma"
            i += 1
            continue
        if ch == ":":
            if text.startswith("=", i + 1):
                _fail("assignment expressions (:=) are not allowed")
            prev = "colon"
            i += 1
            continue
        if ch == "=":
            if text.startswith("=", i + 1):
                _fail("comparisons (==) are not allowed")
            if prev not in ("value", "kwname"):
                _fail(f"unexpected '=' at column {i + 1}")
            prev = "eq"
            i += 1
            continue
        if ch == ".":
            nm = _TOKEN_RE.match(text, i + 1)
            if in_fn_name and prev == "value" and nm is not None and nm.lastgroup == "name":
                prev = "dot"
                i += 1
                continue
            _fail("attribute access is not allowed: arguments must be literals or $refs")
        if ch in "+-":
            if prev not in _VALUE_START:
                _fail(f"operators ({ch}) are not allowed: arguments must be literals")
            nm = _TOKEN_RE.match(text, i + 1)
            while nm is not None and nm.lastgroup == "ws":
                nm = _TOKEN_RE.match(text, nm.end())
            if nm is None or nm.lastgroup != "num":
                _fail(f"unary {ch} is only allowed directly before a number")
            prev = "unary"
            i += 1
            continue
        if ch == "*":
            _fail("starred arguments and operators (*, **) are not allowed")
        if ch == "\\":
            _fail("backslashes are only allowed inside string literals")
        _fail(f"the character {ch!r} is not allowed here (column {i + 1})")
    out.append(text[copied:])
    return _Scan("".join(out), refs, kwnames)


def _check_json_depth(text: str) -> None:
    """Reject JSON nested deeper than :data:`MAX_DEPTH` (strings skipped)."""
    depth = 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]', text, re.DOTALL):
        tok = m.group(0)
        if tok == "[" or tok == "{":
            depth += 1
            if depth > MAX_DEPTH:
                _fail(f"nesting deeper than {MAX_DEPTH} levels")
        elif tok == "]" or tok == "}":
            depth -= 1


# --------------------------------------------------------------------------------------------
# AST whitelist

_NODE_REASONS: dict[type[ast.AST], str] = {
    ast.Call: "nested calls are not allowed: arguments must be literals or $refs",
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "subscripts are not allowed (write $id[0] or $id.key for references)",
    ast.Lambda: "lambdas are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.BinOp: "operators are not allowed: arguments must be literals",
    ast.BoolOp: "operators are not allowed: arguments must be literals",
    ast.Compare: "comparisons are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred arguments (*) are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.Set: "set literals are not allowed; use a list",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}


class _Walker:
    def __init__(self, refs: dict[str, Ref], kwnames: dict[str, str]) -> None:
        self.refs = refs
        self.kwnames = kwnames

    def reject(self, node: ast.AST) -> NoReturn:
        reason = _NODE_REASONS.get(type(node))
        if reason is None:
            reason = f"{type(node).__name__} is not allowed in a call body"
        _fail(reason)

    def number(self, node: ast.AST) -> int | float | None:
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return v
        return None

    def value(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > MAX_DEPTH + 2:  # unreachable after the pre-scan; a second guard
            _fail(f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            v = node.value
            if v is None or isinstance(v, (bool, int, float, str)):
                return v
            if isinstance(v, bytes):
                _fail("bytes literals are not allowed")
            if isinstance(v, complex):
                _fail("complex numbers are not allowed")
            _fail(f"the constant {v!r} is not allowed")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            num = self.number(node.operand)
            if num is None:
                _fail("unary + and - are only allowed directly before a number")
            return -num if isinstance(node.op, ast.USub) else +num
        if isinstance(node, (ast.List, ast.Tuple)):
            return [self.value(e, depth + 1) for e in node.elts]
        if isinstance(node, ast.Dict):
            out: dict[Any, Any] = {}
            for k_node, v_node in zip(node.keys, node.values, strict=True):
                if k_node is None:
                    _fail("dict unpacking (**) is not allowed")
                key = self.key(k_node)
                if key in out:
                    _fail(f"duplicate dict key {key!r}")
                out[key] = self.value(v_node, depth + 1)
            return out
        if isinstance(node, ast.Name):
            if node.id in self.refs:
                return self.refs[node.id]
            if node.id == "true":
                return True
            if node.id == "false":
                return False
            if node.id == "null":
                return None
            _fail(
                f"unknown name {node.id!r}: values must be literals (quote strings: "
                f'"{node.id}") or $refs to earlier calls'
            )
        self.reject(node)

    def key(self, node: ast.AST) -> Any:
        if isinstance(node, (ast.Constant, ast.UnaryOp, ast.Name)):
            k = self.value(node)
            if not isinstance(k, Ref):
                return k
        _fail("dict keys must be constants (strings or numbers)")

    def fn_name(self, node: ast.AST) -> str:
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id in self.refs or node.id in self.kwnames:
            _fail("the function must be a name, as in get_weather(...) or math.factorial(...)")
        parts.append(node.id)
        return ".".join(reversed(parts))

    def call(self, tree: ast.Expression) -> ParsedBody:
        node = tree.body
        if not isinstance(node, ast.Call):
            _fail('the body must be a call, as in get_weather(city="Paris")')
        fn = self.fn_name(node.func)
        pos: list[Any] = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                self.reject(a)
            pos.append(self.value(a, 1))
        args: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                _fail("keyword unpacking (**) is not allowed")
            name = self.kwnames.get(kw.arg, kw.arg)
            if name in args:
                _fail(f"keyword argument {name!r} given twice")
            args[name] = self.value(kw.value, 1)
        return ParsedBody(fn, args, tuple(pos))


# --------------------------------------------------------------------------------------------
# JSON bodies

_JSON_ARG_KEYS = ("arguments", "args", "parameters")
_JSON_IGNORED_KEYS = {"type", "id"}


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            _fail(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _json_load(text: str) -> Any:
    _check_json_depth(text)
    try:
        return json.loads(text, object_pairs_hook=_json_pairs)
    except BodyError:
        raise
    except (ValueError, RecursionError) as e:
        _fail(f"invalid JSON: {e}")


def _json_refs(value: Any) -> Any:
    if isinstance(value, str):
        ref = _whole_ref(value)
        return value if ref is None else ref
    if isinstance(value, list):
        return [_json_refs(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_refs(v) for k, v in value.items()}
    return value


def _parse_json_body(text: str) -> ParsedBody:
    obj = _json_load(text)
    if not isinstance(obj, dict):
        _fail('a JSON body must be an object like {"name": ..., "arguments": {...}}')
    if "name" not in obj and isinstance(obj.get("function"), dict):
        extra = set(obj) - {"function"} - _JSON_IGNORED_KEYS
        if extra:
            _fail(f"unexpected keys in JSON body: {sorted(extra)}")
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        _fail('a JSON body needs a "name" string')
    present = [k for k in _JSON_ARG_KEYS if k in obj]
    if len(present) > 1:
        _fail(f"a JSON body must have only one of {list(_JSON_ARG_KEYS)}, got {present}")
    extra = set(obj) - {"name"} - set(_JSON_ARG_KEYS) - _JSON_IGNORED_KEYS
    if extra:
        _fail(f'unexpected keys in JSON body: {sorted(extra)} (put arguments in "arguments")')
    args: Any = obj[present[0]] if present else {}
    if args is None:
        args = {}
    if isinstance(args, str):
        args = _json_load(args) if args.strip() else {}
    if not isinstance(args, dict):
        _fail('"arguments" must be a JSON object (or a string holding one)')
    return ParsedBody(name, _json_refs(args), ())


# --------------------------------------------------------------------------------------------
# fast path: the common body, ``fn(key=literal, ...)`` with plain literals only

_FAST_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# decimal ints and floats written plainly; strings without escapes, CR/LF, NUL or surrogates
_FAST_VALUE = (
    r'"[^"\\\r\n\x00\ud800-\udfff]*"|\'[^\'\\\r\n\x00\ud800-\udfff]*\''
    r"|-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,17})?(?![0-9A-Za-z_.])|True|False|None|true|false|null"
)
_FAST_ARG = rf"({_FAST_NAME})[ \t\n]*=[ \t\n]*({_FAST_VALUE})[ \t\n]*"
_FAST_CALL = re.compile(
    rf"({_FAST_NAME}(?:\.{_FAST_NAME})*)\([ \t\n]*((?:{_FAST_ARG},[ \t\n]*)*(?:{_FAST_ARG})?)\)"
)
_FAST_ARG_RE = re.compile(_FAST_ARG)
_KEYWORDS = frozenset(keyword.kwlist)
_FAST_CONST = {"True": True, "False": False, "None": None, "true": True, "false": False,
               "null": None}


def _fast_value(v: str) -> Any:
    c = v[0]
    if c == '"' or c == "'":
        return v[1:-1]
    if v in _FAST_CONST:
        return _FAST_CONST[v]
    return float(v) if "." in v else int(v)


def _parse_fast(text: str) -> ParsedBody | None:
    """``fn(key=literal, ...)`` with decimal numbers, plain strings and the constants, parsed
    without :mod:`ast`; None for anything else (the full path decides). Gives exactly what the
    full path gives (property-tested)."""
    m = _FAST_CALL.fullmatch(text)
    if m is None:
        return None
    fn, arg_text = m.group(1, 2)
    if len(fn) > MAX_FN_CHARS or not _KEYWORDS.isdisjoint(fn.split(".")):
        return None
    pairs = _FAST_ARG_RE.findall(arg_text)
    args: dict[str, Any] = {}
    for name, v in pairs:
        args[name] = _fast_value(v)
    if len(args) != len(pairs):
        return None  # a repeated keyword: the full path says so
    return ParsedBody(fn, args, ())


# --------------------------------------------------------------------------------------------


def parse_body(text: str) -> ParsedBody:
    """Parse a call body (Python call syntax or JSON) into a :class:`ParsedBody`.

    Leading and trailing whitespace is ignored. Raises :class:`BodyError` (a ``ValueError``)
    with a reason suitable for showing to the model; never evaluates anything.
    """
    if len(text) > MAX_BODY_CHARS:
        _fail(f"call body longer than {MAX_BODY_CHARS} characters")
    text = text.strip()
    if not text:
        _fail("empty call body")
    if text[0] == "{":
        return _parse_json_body(text)
    return _parse_fast(text) or _parse_python_body(text)


def _parse_python_body(text: str) -> ParsedBody:
    """The full path for Python-call bodies: pre-scan, :func:`ast.parse`, whitelist walk."""
    scan = _prescan(text)
    try:
        tree = ast.parse(scan.source, mode="eval")
    except SyntaxError as e:
        where = f" (line {e.lineno}, column {e.offset})" if e.lineno else ""
        _fail(f"invalid syntax: {e.msg}{where}")
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, too complex
        _fail(f"invalid call body: {type(e).__name__}: {e}")
    return _Walker(scan.refs, scan.kwnames).call(tree)
