"""Rendering CML blocks and escaping untrusted text that goes into the model's context.

* :func:`format_call` / :func:`render_call` write a call so that :func:`parse_body` (and the
  :class:`~asynclm.protocol.parser.Parser`) read back exactly the same function and arguments.
  String values never contain a marker or a forbidden prefix in the rendered text: the first
  character of such a sequence is written as an escape (``"\\u005bEND]"``), which decodes to the
  same string.
* :func:`escape_payload` makes a tool result (or any untrusted text) safe to put inside an
  interrupt: afterwards it contains no marker, no forbidden prefix and no special-token opener,
  compared case-insensitively and after NFKC normalization (full-width look-alikes such as
  ``［ＥＮＤ］`` count), and none can form across the `` [HEAD] `` / `` [END]`` around it. The
  opening character of each such sequence is replaced by a visible look-alike that is *not*
  folded back by NFKC (``[`` -> ``⟦``, ``<`` -> ``‹``), so the text stays readable; other first
  characters get a WORD JOINER (U+2060) after them. Control characters other than ``\\n`` and
  ``\\t``, bidi overrides and lone surrogates become U+FFFD; ``\\r\\n`` and ``\\r`` become ``\\n``.
  Escaping is defence in depth: the engine must also tokenize payloads with special-token
  parsing off.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import keyword
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from asynclm.protocol.body import MAX_FN_CHARS, REF_ID_RE, _whole_ref
from asynclm.protocol.events import DEFAULT_MARKERS, Markers, Ref

__all__ = [
    "CALL_ID_RE",
    "DEFAULT_MAX_VALUE_CHARS",
    "SPECIAL_TOKEN_PREFIXES",
    "escape_payload",
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

SPECIAL_TOKEN_PREFIXES: tuple[str, ...] = ("<|",)
"""Openers of chat-template special tokens (``<|im_end|>``, ``<|eot_id|>``, and DeepSeek's
full-width ``<｜...｜>`` after NFKC) escaped in payloads by default."""

DEFAULT_MAX_VALUE_CHARS = 4096
"""Default length limit of :func:`format_value`."""

_WJ = "\u2060"
_LOOKALIKE = {"[": "\u27e6", "<": "\u2039", "{": "\u2983", "(": "\u2985"}


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
# payload escaping

_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_ASCII_RUN_RE = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")


def _norm(s: str) -> str:
    """NFKC, case-folded, NFKC again: the view in which look-alikes are compared."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())


def _view(text: str) -> tuple[str, list[int]]:
    """Per-character normalized view of ``text`` and, per view char, its source index."""
    if text.isascii():
        return text.lower(), list(range(len(text)))
    parts: list[str] = []
    vmap: list[int] = []
    for m in _ASCII_RUN_RE.finditer(text):
        a, b = m.span()
        if b - a > 1 or text[a] < "\x80":
            parts.append(text[a:b].lower())
            vmap.extend(range(a, b))
        else:
            e = _norm(text[a])
            parts.append(e)
            vmap.extend([a] * len(e))
    return "".join(parts), vmap


def _escape_char(c: str) -> str:
    return _LOOKALIKE.get(c, c + _WJ)


_VIEW_FNS = (
    lambda s: s,
    str.lower,
    str.casefold,
    lambda s: unicodedata.normalize("NFKC", s),
    lambda s: unicodedata.normalize("NFKC", s).casefold(),
    _norm,
)


def _crosses(view: str, pats: Iterable[str], lo: int, hi: int) -> bool:
    """Does any occurrence of a pattern in ``view`` overlap ``view[lo:hi]``?"""
    for p in pats:
        i = view.find(p)
        while i >= 0:
            if i + len(p) > lo and i < hi:
                return True
            i = view.find(p, i + 1)
    return False


def _safe_in_context(text: str, markers: Markers, pats: list[str]) -> bool:
    """Final check on whole-string views (normalization is not strictly per character)."""
    left, right = markers.head + " ", " " + markers.end
    for fn in _VIEW_FNS:
        v = fn(left + text + right)
        lo, hi = len(fn(left)), len(v) - len(fn(right))
        if _crosses(v, pats, lo, hi):
            return False
    return True


_Spec = tuple[list[str], re.Pattern[str], str, str, frozenset[str], list[str]]
_last_spec: tuple[Markers, Iterable[str], _Spec | None] | None = None


def _spec_for(markers: Markers, extra: Iterable[str]) -> _Spec | None:
    """:func:`_escape_spec` for these arguments; the last answer is kept by identity, since
    hashing a :class:`Markers` for the cache costs more than the fast path it serves."""
    global _last_spec
    last = _last_spec
    if last is not None and last[0] is markers and last[1] is extra:
        return last[2]
    spec = _escape_spec(markers, tuple(extra))
    _last_spec = (markers, extra, spec)
    return spec


@functools.lru_cache(maxsize=64)
def _escape_spec(markers: Markers, extra: tuple[str, ...]) -> _Spec | None:
    """Normalized patterns (longest first), their overlapping finder, normalized context,
    the patterns' first characters, and the patterns that could begin in the left context
    and end inside a payload."""
    pats = sorted(
        {_norm(p) for p in (*markers.all(), *markers.forbidden, *extra)} - {""},
        key=len,
        reverse=True,
    )
    if not pats:
        return None
    rx = re.compile("(?=(" + "|".join(map(re.escape, pats)) + "))")
    left, right = _norm(markers.head + " "), _norm(" " + markers.end)
    from_left = [p for p in pats if any(left.endswith(p[:k]) for k in range(1, len(p)))]
    return pats, rx, left, right, frozenset(p[0] for p in pats), from_left


def escape_payload(
    text: str,
    markers: Markers = DEFAULT_MARKERS,
    *,
    extra: Iterable[str] = SPECIAL_TOKEN_PREFIXES,
) -> str:
    """Make untrusted ``text`` safe to place between `` [HEAD] `` and `` [END]``.

    Guarantee: the result contains no marker of ``markers``, no ``markers.forbidden`` prefix and
    no string of ``extra`` -- case-insensitively, and also after NFKC normalization -- and
    ``markers.head + " " + result + " " + markers.end`` contains none that overlaps the result.
    See the module docstring for how characters are replaced. Linear in ``len(text)``.
    """
    if not (text.isascii() and text.isprintable()):  # printable ASCII has nothing to replace
        text = _CONTROL_RE.sub("\ufffd", text.replace("\r\n", "\n").replace("\r", "\n"))
    spec = _spec_for(markers, extra)
    if spec is None:
        return text
    pats, rx, left, right, firsts, from_left = spec
    if text.isascii():
        low = text.lower()
        longest = len(pats[0])
        # Fast path: no pattern can start in the text, and none that begins in the left
        # context reaches into it.
        if not any(f in low for f in firsts) and not (from_left and _crosses(
            left + low[:longest] + (right if len(low) <= longest else ""),
            from_left,
            len(left),
            len(left) + min(len(low), longest),
        )):
            return text
    for _ in range(4):
        view, vmap = _view(text)
        full = left + view + right
        lo, hi = len(left), len(left) + len(view)
        starts: dict[int, set[int]] = {}
        prefix_wj = False
        for m in rx.finditer(full):
            k, end = m.start(), m.start() + len(m.group(1))
            if end <= lo or k >= hi:
                continue  # entirely in the surrounding text
            if k < lo:
                prefix_wj = True  # begins in " [HEAD] " and continues into the payload
                continue
            starts.setdefault(vmap[k - lo], set()).add(k - lo)
        if not starts and not prefix_wj:
            break
        text = _apply(text, vmap, starts, prefix_wj)
    else:
        text = _brute_force(text, firsts)
    if not _safe_in_context(text, markers, pats):
        text = _brute_force(text, firsts)
    return text


def _apply(text: str, vmap: list[int], starts: dict[int, set[int]], prefix_wj: bool) -> str:
    """Escape the source characters at which a pattern starts (``starts``: source index ->
    view indexes of the starts within that character's normalized expansion)."""
    out: list[str] = [_WJ] if prefix_wj else []
    last = 0
    for si in sorted(starts):
        out.append(text[last:si])
        c = text[si]
        e = _norm(c) if not c.isascii() else c.lower()
        if len(e) == 1:
            out.append(_escape_char(e) if e in _LOOKALIKE else c + _WJ)
        else:
            v0 = min(starts[si])
            while v0 > 0 and vmap[v0 - 1] == si:
                v0 -= 1
            out.append(
                "".join(_escape_char(ch) if v0 + j in starts[si] else ch for j, ch in enumerate(e))
            )
        last = si + 1
    out.append(text[last:])
    return "".join(out)


def _brute_force(text: str, firsts: frozenset[str]) -> str:
    """Last resort: escape every character whose normalization contains a pattern's first char."""
    out = [_WJ]
    for c in text:
        e = _norm(c)
        if any(f in e for f in firsts):
            out.append("".join(_escape_char(ch) if ch in firsts else ch for ch in e))
        else:
            out.append(c)
    return "".join(out)


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
