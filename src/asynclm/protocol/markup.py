"""Rendering CML blocks and tool results as text for the model's context.

* :func:`format_call` / :func:`render_call` write a call so that :func:`parse_body` (and the
  :class:`~asynclm.protocol.parser.Parser`) read back exactly the same function and arguments.
  String values never contain a marker or a forbidden prefix in the rendered text: the first
  character of such a sequence is written as an escape (``"\\u005bEND]"``), which decodes to the
  same string.
* :func:`format_value` writes a tool result as one line of JSON for an interrupt; the
  payload is then escaped (:mod:`asynclm.protocol.escape`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import keyword
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asynclm.protocol.body import MAX_FN_CHARS, REF_ID_RE, _whole_ref
from asynclm.protocol.escape import escape_payload
from asynclm.protocol.events import DEFAULT_MARKERS, Markers, Ref

__all__ = [
    "CALL_ID_RE",
    "DEFAULT_MAX_VALUE_CHARS",
    "format_call",
    "format_ref",
    "format_value",
    "render_call",
    "render_interrupt",
    "render_trap",
]

CALL_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
"""Ids accepted in a call header (``[CALL] id [HEAD] ...``). Only ids that also match
:data:`~asynclm.protocol.body.REF_ID_RE` (no ``.`` or ``:``) can be referenced as ``$id``."""

DEFAULT_MAX_VALUE_CHARS = 4096
"""Default length limit of :func:`format_value`."""


# --------------------------------------------------------------------------------------------
# call rendering


@functools.lru_cache(maxsize=64)
def _marker_regex(markers: Markers, extra: tuple[str, ...] = ()) -> re.Pattern[str]:
    """Overlapping, case-insensitive occurrences of every marker/forbidden string."""
    pats = sorted({*markers.all(), *markers.forbidden, *extra} - {""}, key=len, reverse=True)
    return re.compile("(?=(?:" + "|".join(map(re.escape, pats)) + "))", re.IGNORECASE)


def _escape_table(json_mode: bool) -> dict[int, str]:
    table: dict[int, str] = {ord("\\"): "\\\\", ord('"'): '\\"', 10: "\\n", 13: "\\r", 9: "\\t"}
    for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]:
        if c not in table:
            table[c] = f"\\u{c:04x}" if json_mode else f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    if not json_mode:
        for c in range(0xD800, 0xE000):
            table[c] = f"\\u{c:04x}"
    return table


_PY_TABLE = _escape_table(False)
_JSON_TABLE = _escape_table(True)


def _char_escape(c: str, json_mode: bool) -> str:
    o = ord(c)
    if o < 0x10000:
        return f"\\u{o:04x}"
    if not json_mode:
        return f"\\U{o:08x}"
    o -= 0x10000
    return f"\\u{0xD800 + (o >> 10):04x}\\u{0xDC00 + (o & 0x3FF):04x}"


def _str_literal(s: str, rx: re.Pattern[str], *, json_mode: bool) -> str:
    """A double-quoted literal (Python or JSON) for ``s``; marker starts written as escapes."""
    if json_mode and re.search("[\ud800-\udfff]", s):
        raise ValueError("lone surrogates cannot be written in a JSON body")
    table = _JSON_TABLE if json_mode else _PY_TABLE
    out = ['"']
    last = 0
    for m in rx.finditer(s):
        k = m.start()
        if k < last:
            continue
        out.append(s[last:k].translate(table))
        out.append(_char_escape(s[k], json_mode))
        last = k + 1
    out.append(s[last:].translate(table))
    out.append('"')
    return "".join(out)


def format_ref(ref: Ref) -> str:
    """``$id.path`` text for a reference, readable back by :func:`parse_body`.

    Segments that are not plain ``[A-Za-z0-9_-]+`` words (or are digit strings, which would read
    back as ints) use bracket form ``$id["a b"]``; negative indexes ``$id[-1]``.
    Raises ``ValueError`` for an invalid id or a segment that cannot be written.
    """
    if not isinstance(ref.id, str) or not REF_ID_RE.fullmatch(ref.id):
        raise ValueError(f"invalid reference id {ref.id!r}")
    parts = ["$", ref.id]
    for seg in ref.path:
        if isinstance(seg, bool) or not isinstance(seg, (int, str)):
            raise ValueError(f"invalid reference path segment {seg!r}")
        if isinstance(seg, int):
            parts.append(f".{seg}" if seg >= 0 else f"[{seg}]")
        elif REF_ID_RE.fullmatch(seg) and not seg.isdigit():
            parts.append("." + seg)
        elif not re.search(r"[\\\n\r]", seg) and '"' not in seg:
            parts.append(f'["{seg}"]')
        elif not re.search(r"[\\\n\r]", seg) and "'" not in seg:
            parts.append(f"['{seg}']")
        else:
            raise ValueError(f"reference path segment {seg!r} cannot be written")
    return "".join(parts)


def _float_text(v: float, *, json_mode: bool) -> str:
    if math.isnan(v):
        raise ValueError("NaN cannot be written as a literal")
    if math.isinf(v):
        if json_mode:
            return "Infinity" if v > 0 else "-Infinity"
        return "1e999" if v > 0 else "-1e999"
    return float.__repr__(v)


def _py_value(v: Any, rx: re.Pattern[str]) -> str:
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return _float_text(v, json_mode=False)
    if isinstance(v, str):
        return _str_literal(v, rx, json_mode=False)
    if isinstance(v, Ref):
        text = format_ref(v)
        if rx.search(text):
            raise ValueError(f"reference {text!r} contains a marker")
        return text
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_py_value(x, rx) for x in v) + "]"
    if isinstance(v, Mapping):
        items = []
        for k, x in v.items():
            if not (k is None or isinstance(k, (str, int, float))):
                raise ValueError(f"dict key {k!r} cannot be written as a literal")
            items.append(f"{_py_value(k, rx)}: {_py_value(x, rx)}")
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"a {type(v).__name__} value cannot be written in a call")


def _json_value(v: Any, rx: re.Pattern[str]) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return int.__repr__(v)
    if isinstance(v, float):
        return _float_text(v, json_mode=True)
    if isinstance(v, str):
        if _whole_ref(v) is not None:
            raise ValueError(f"the string {v!r} would read back as a reference in a JSON body")
        return _str_literal(v, rx, json_mode=True)
    if isinstance(v, Ref):
        return _str_literal(format_ref(v), rx, json_mode=True)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_json_value(x, rx) for x in v) + "]"
    if isinstance(v, Mapping):
        items = []
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError(f"dict key {k!r} is not a string (needed in a JSON body)")
            items.append(f"{_str_literal(k, rx, json_mode=True)}: {_json_value(x, rx)}")
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"a {type(v).__name__} value cannot be written in a call")


def _stable_identifier(s: str) -> bool:
    return s.isidentifier() and unicodedata.normalize("NFKC", s) == s


def _python_form_ok(fn: str, args: Mapping[str, Any]) -> bool:
    parts = fn.split(".")
    if len(fn) > MAX_FN_CHARS or not all(
        _stable_identifier(p) and not keyword.iskeyword(p) for p in parts
    ):
        return False
    return all(isinstance(k, str) and _stable_identifier(k) for k in args)


def format_call(
    fn: str,
    args: Mapping[str, Any],
    pos: Sequence[Any] = (),
    *,
    markers: Markers = DEFAULT_MARKERS,
) -> str:
    """Write a call body: ``fn(1, a="x", b=[1, None], c=$c1.items.0)``.

    Python call syntax with double-quoted strings and ``True``/``False``/``None``; tuples are
    written as lists; :class:`Ref` values as ``$id.path``; infinities as ``1e999``. If ``fn`` is
    not a dotted identifier or a key is not an identifier, the JSON form
    ``{"name": ..., "arguments": {...}}`` is used instead (then ``pos`` must be empty).
    Contract: ``parse_body(format_call(fn, args, pos))`` gives back ``fn``, ``args`` and ``pos``
    (tuples as lists). Raises ``ValueError`` for values that cannot be written exactly (NaN,
    arbitrary objects, non-literal dict keys, ...).
    """
    if not isinstance(fn, str) or not fn:
        raise ValueError("function name must be a non-empty string")
    rx = _marker_regex(markers)
    if _python_form_ok(fn, args):
        parts = [_py_value(v, rx) for v in pos]
        parts += [f"{k}={_py_value(v, rx)}" for k, v in args.items()]
        return f"{fn}({', '.join(parts)})"
    if pos:
        raise ValueError("positional arguments need an identifier function name and keys")
    return (
        f'{{"name": {_str_literal(fn, rx, json_mode=True)}, '
        f'"arguments": {_json_value(dict(args), rx)}}}'
    )


def _check_id(id: str | None) -> None:
    if id is not None and not (isinstance(id, str) and CALL_ID_RE.fullmatch(id)):
        raise ValueError(f"invalid block id {id!r}: use letters, digits and _ . : - (max 64)")


def render_call(
    fn: str,
    args: Mapping[str, Any],
    id: str | None = None,
    *,
    pos: Sequence[Any] = (),
    markers: Markers = DEFAULT_MARKERS,
) -> str:
    """``[CALL] id [HEAD] fn(...) [END]``, or ``[CALL] fn(...) [END]`` without an id.

    Parsing the result with :class:`~asynclm.protocol.parser.Parser` yields exactly one
    :class:`~asynclm.protocol.events.Call` with the same id, function and arguments.
    """
    _check_id(id)
    body = format_call(fn, args, pos, markers=markers)
    if id is None:
        return f"{markers.call} {body} {markers.end}"
    return f"{markers.call} {id} {markers.head} {body} {markers.end}"


def render_interrupt(id: str | None, payload: str, *, markers: Markers = DEFAULT_MARKERS) -> str:
    """``[INTR] id [HEAD] <escaped payload> [END]``.

    The payload is passed through :func:`escape_payload`; a parser in transcript mode reads back
    ``Interrupt(id, escape_payload(payload))``. Raises ``ValueError`` for an invalid id.
    """
    _check_id(id)
    body = escape_payload(payload, markers)
    head = (
        f"{markers.interrupt} {id} {markers.head}" if id else f"{markers.interrupt} {markers.head}"
    )
    return f"{head} {body} {markers.end}"


def render_trap(markers: Markers = DEFAULT_MARKERS) -> str:
    """``[TRAP][END]``."""
    return f"{markers.trap}{markers.end}"


# --------------------------------------------------------------------------------------------
# values


def _json_default(o: Any) -> Any:
    if isinstance(o, Ref):
        return format_ref(o) if REF_ID_RE.fullmatch(o.id) else str(o)
    dump = getattr(o, "model_dump", None)
    if callable(dump) and not isinstance(o, type):
        try:
            return dump(mode="json")
        except Exception:
            pass
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, (set, frozenset)):
        try:
            return sorted(o)
        except TypeError:
            return list(o)
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8", errors="replace")
    return _safe_repr(o)


def _safe_repr(o: Any) -> str:
    try:
        return repr(o)
    except Exception:
        return f"<{type(o).__name__} object>"


_JSON_NATIVE = (dict, list, tuple, str, int, float, bool, type(None))


_PRIMITIVES: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,  # what json.dumps writes for these, without its overhead
    str: functools.partial(json.dumps, ensure_ascii=False),
    bool: lambda b: "true" if b else "false",
    type(None): lambda _: "null",
}


def format_value(value: Any, *, max_chars: int = DEFAULT_MAX_VALUE_CHARS) -> str:
    """A tool result as text for an interrupt: compact one-line JSON (non-ASCII kept as is).

    Pydantic models, dataclasses, sets and bytes are converted; other objects inside a JSON
    value become their ``repr`` as a string, and a non-JSON value at the top level (or one JSON
    cannot encode, e.g. with tuple keys or cycles) is written as its ``repr``. Text longer than
    ``max_chars`` is cut, and ``…(truncated N chars)`` says how much was dropped. The result is
    not escaped: :func:`render_interrupt` does that.
    """
    kind = type(value)
    if kind in _PRIMITIVES:  # the common case, kept cheap (runs once per result)
        text = _PRIMITIVES[kind](value)
        return text if len(text) <= max_chars or max_chars < 0 else (
            f"{text[:max_chars]}…(truncated {len(text) - max_chars} chars)")
    if (
        isinstance(value, _JSON_NATIVE)
        or hasattr(value, "model_dump")
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or isinstance(value, (set, frozenset, bytes, bytearray, Ref))
    ):
        try:
            text = json.dumps(value, ensure_ascii=False, default=_json_default)
        except (TypeError, ValueError, RecursionError):
            text = _safe_repr(value)
    else:
        text = _safe_repr(value)
    if max_chars >= 0 and len(text) > max_chars:
        text = f"{text[:max_chars]}…(truncated {len(text) - max_chars} chars)"
    return text
