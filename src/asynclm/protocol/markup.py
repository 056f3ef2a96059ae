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
import itertools
import json
import json.encoder
import keyword
import math
import re
import reprlib
import sys
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asynclm.protocol.body import MAX_FN_CHARS, _whole_ref
from asynclm.protocol.escape import escape_payload
from asynclm.protocol.events import DEFAULT_MARKERS, Markers, Ref
from asynclm.protocol.ids import CALL_ID_RE, REF_ID_RE, is_call_id

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
    if not is_call_id(ref.id):
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
    if id is not None and not is_call_id(id):
        raise ValueError(f"invalid block id {id!r}: use letters, digits, _ and - (max 64)")


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
        return format_ref(o) if is_call_id(o.id) else str(o)
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
    """``repr(o)``, or ``<T object>`` where it raises an ``Exception`` (other
    ``BaseException`` subclasses propagate: the caller decides, see :func:`format_value`)."""
    try:
        return repr(o)
    except Exception:
        return f"<{type(o).__name__} object>"


_JSON_NATIVE = (dict, list, tuple, str, int, float, bool, type(None))

_EXACT_CHARS = 1 << 16
"""Values whose JSON text has at most about this many characters are encoded whole (the exact
text and count of dropped characters); longer ones only as far as the limit needs."""

_EXACT_INT_BITS = 13_000
"""Ints up to this many bits (about 3,900 digits, under Python's 4,300-digit limit on int to
str conversion) are written out; longer ones are written rounded (:func:`_big_int_text`)."""


def _big_int_text(v: int) -> str:
    """``1.234567890e+5000 (an int of about 5001 digits, rounded)``, from the top 64 bits of
    ``v`` (cost linear in its size, never a conversion of all its digits)."""
    a = abs(int(v))
    shift = a.bit_length() - 64
    lg = math.log10(a >> shift) + shift * math.log10(2)
    exp = math.floor(lg)
    mant = f"{10 ** (lg - exp):.9f}"
    if mant.startswith("10"):
        mant, exp = f"{1:.9f}", exp + 1
    sign = "-" if v < 0 else ""
    return f"{sign}{mant}e+{exp} (an int of about {exp + 1} digits, rounded)"


def _int_text(v: int) -> str:
    return int.__repr__(v) if v.bit_length() <= _EXACT_INT_BITS else _big_int_text(v)


def _float_json(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    return float.__repr__(v)


def _small_json(value: Any, budget: int = _EXACT_CHARS) -> bool:
    """True if ``value`` is made only of exact ``dict``/``list``/``tuple``/``str``/``int``/
    ``float``/``bool``/``None`` and its JSON text is about ``budget`` characters at most, so
    that ``json.dumps`` can encode it whole at a bounded cost. Cost: at most about ``budget``
    steps (a cycle or a deep nest exceeds the budget and stops the walk)."""
    stack = [value]
    pop, push = stack.pop, stack.extend
    n = 0
    while stack:
        v = pop()
        t = type(v)
        if t is str:
            n += len(v) + 2
        elif t is dict:
            n += 2 + 4 * len(v)
            push(v.keys())
            push(v.values())
        elif t is list or t is tuple:
            n += 2 + 2 * len(v)
            push(v)
        elif t is int:
            if v.bit_length() > _EXACT_INT_BITS:
                return False
            n += 1
        elif t is float or t is bool or v is None:
            n += 1
        else:
            return False
        if n > budget:
            return False
    return True


class _Full(Exception):
    """The JSON writer has counted as much as it may."""


class _JsonWriter:
    """``json.dumps(value, ensure_ascii=False, default=_json_default)``, written only as far as
    needed: the first ``keep`` characters are kept, characters are counted up to ``stop``, then
    :class:`_Full` is raised. A string is escaped only as far as ``stop`` needs, huge bytes are
    decoded only as far, and huge ints are written rounded. Errors are those of ``json.dumps``
    (``ValueError`` for a cycle, ``TypeError`` for a key, ``RecursionError``) or of the value's
    own methods."""

    __slots__ = ("parts", "n", "keep", "stop", "markers")

    def __init__(self, keep: int, stop: int) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.keep, self.stop = keep, stop
        self.markers: set[int] = set()

    def put(self, s: str) -> None:
        n = self.n
        if n < self.keep:
            self.parts.append(s if n + len(s) <= self.keep else s[: self.keep - n])
        self.n = n = n + len(s)
        if n > self.stop:
            raise _Full

    def string(self, s: str) -> None:
        room = self.stop - self.n + 1  # every char gives at least one: this many pass `stop`
        self.put(json.encoder.encode_basestring(s[:room] if len(s) > room else s))

    def value(self, o: Any) -> None:  # the order of checks is json's
        if isinstance(o, str):
            self.string(o)
        elif o is None:
            self.put("null")
        elif o is True:
            self.put("true")
        elif o is False:
            self.put("false")
        elif isinstance(o, int):
            self.put(_int_text(o))
        elif isinstance(o, float):
            self.put(_float_json(o))
        elif isinstance(o, (list, tuple)):
            self.sequence(o)
        elif isinstance(o, dict):
            self.mapping(o)
        else:
            self.enter(o)
            self.value(self.default(o))
            self.markers.discard(id(o))

    def enter(self, o: Any) -> None:
        if id(o) in self.markers:
            raise ValueError("Circular reference detected")
        self.markers.add(id(o))

    def sequence(self, o: list[Any] | tuple[Any, ...]) -> None:
        items = list.__iter__(o) if isinstance(o, list) else tuple.__iter__(o)
        if not (list.__len__(o) if isinstance(o, list) else tuple.__len__(o)):
            self.put("[]")
            return
        self.enter(o)
        self.put("[")
        for i, x in enumerate(items):
            if i:
                self.put(", ")
            self.value(x)
        self.put("]")
        self.markers.discard(id(o))

    def mapping(self, o: dict[Any, Any]) -> None:
        if not dict.__len__(o):
            self.put("{}")
            return
        self.enter(o)
        self.put("{")
        for i, (k, x) in enumerate(o.items()):
            if i:
                self.put(", ")
            if isinstance(k, str):
                self.string(k)
            else:
                self.put(json.encoder.encode_basestring(self.key(k)))
            self.put(": ")
            self.value(x)
        self.put("}")
        self.markers.discard(id(o))

    @staticmethod
    def key(k: Any) -> str:
        if isinstance(k, float):
            return _float_json(k)
        if k is True or k is False or k is None:
            return {True: "true", False: "false", None: "null"}[k]
        if isinstance(k, int):
            return _int_text(k)
        raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")

    def default(self, o: Any) -> Any:
        if isinstance(o, (bytes, bytearray)):
            room = self.stop - self.n + 1  # chars enough to pass `stop`
            if len(o) > 4 * room + 4:  # decode a prefix: a char comes from 1 to 4 bytes
                text = bytes(o[: room + 3]).decode("utf-8", errors="replace")
                if len(text) <= room:
                    text = bytes(o[: 4 * room + 4]).decode("utf-8", errors="replace")
                return text
        elif isinstance(o, (set, frozenset)) and len(o) > self.stop:
            return list(itertools.islice(o, self.stop + 1))  # too many to sort
        return _json_default(o)


class _BoundedRepr(reprlib.Repr):
    """``repr`` at a bounded cost: builtin ``repr`` for small values (cycles as ``[...]``,
    dicts and sets in their order), containers cut after ``n`` items, strings and other
    objects' texts cut to about ``n`` characters."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.maxlevel = 64
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = n
        self.maxset = self.maxfrozenset = self.maxdeque = n
        self.maxstring = self.maxlong = self.maxother = max(n, 16)
        self._path: set[int] = set()

    def repr1(self, x: Any, level: int) -> str:
        t = type(x)
        if t is not list and t is not dict:
            return super().repr1(x, level)
        if id(x) in self._path:
            return "[...]" if t is list else "{...}"
        self._path.add(id(x))
        try:
            return super().repr1(x, level)
        finally:
            self._path.discard(id(x))

    def repr_int(self, x: int, level: int) -> str:
        return _int_text(x)

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:  # insertion order, as repr
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in itertools.islice(x.items(), self.maxdict)]
        if len(x) > self.maxdict:
            pieces.append("...")
        return "{" + ", ".join(pieces) + "}"

    def repr_set(self, x: set[Any], level: int) -> str:
        if not x:
            return "set()"
        return "{" + self._items(x, level) + "}"

    def repr_frozenset(self, x: frozenset[Any], level: int) -> str:
        if not x:
            return "frozenset()"
        return "frozenset({" + self._items(x, level) + "})"

    def _items(self, x: set[Any] | frozenset[Any], level: int) -> str:
        if level <= 0:
            return "..."
        pieces = [self.repr1(v, level - 1) for v in itertools.islice(x, self.maxset)]
        if len(x) > self.maxset:
            pieces.append("...")
        return ", ".join(pieces)


def _bounded_repr(value: Any, max_chars: int) -> str:
    n = max(16, max_chars // 8) if max_chars >= 0 else sys.maxsize
    try:
        return _BoundedRepr(n).repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


_PRIMITIVES: dict[type, Callable[[Any], str]] = {
    int: int.__repr__,  # what json.dumps writes for these, without its overhead
    str: functools.partial(json.dumps, ensure_ascii=False),
    bool: lambda b: "true" if b else "false",
    type(None): lambda _: "null",
}


def truncate(text: str, max_chars: int) -> str:
    """``text``, or its first ``max_chars`` characters and ``…(truncated N chars)``; a negative
    ``max_chars`` keeps it whole."""
    if len(text) <= max_chars or max_chars < 0:
        return text
    return f"{text[:max_chars]}…(truncated {len(text) - max_chars} chars)"


def format_value(value: Any, *, max_chars: int = DEFAULT_MAX_VALUE_CHARS) -> str:
    """A tool result as text for an interrupt: compact one-line JSON (non-ASCII kept as is).

    Pydantic models, dataclasses, sets and bytes are converted; other objects inside a JSON
    value become their ``repr`` as a string, and a non-JSON value at the top level (or one JSON
    cannot encode, e.g. with tuple keys or cycles) is written as its ``repr`` (a placeholder
    ``<T object>`` where ``repr`` raises an ``Exception``). Ints too long to write out are
    written rounded (``1.000000000e+5000 (an int of about 5001 digits, rounded)``). Text longer
    than ``max_chars`` (negative: no limit) is cut, and ``…(truncated N chars)`` says how much
    was dropped (``…(truncated at least N chars)`` for a long value, which is not encoded whole).

    Cost: bounded by ``max_chars`` (and a fixed 64 K characters), not by the size of the value,
    except for what the value's own methods cost (``repr``, ``model_dump``, dataclass fields).
    Raises only what the value's own methods raise that is not an ``Exception``
    (``SystemExit`` from a ``__repr__``, ...); callers that must not fail catch
    ``BaseException`` (see ``Executor``). The result is not escaped: :func:`render_interrupt`
    does that.
    """
    kind = type(value)
    if kind in _PRIMITIVES:  # the common case, kept cheap (runs once per result)
        if kind is str and len(value) > _EXACT_CHARS and max_chars >= 0:
            text = json.encoder.encode_basestring(value[: max_chars + 1])  # escapes cut first
            return f"{text[:max_chars]}…(truncated at least {len(value) + 2 - max_chars} chars)"
        if kind is int and value.bit_length() > _EXACT_INT_BITS:
            return truncate(_big_int_text(value), max_chars)
        return truncate(_PRIMITIVES[kind](value), max_chars)
    if (kind is dict or kind is list or kind is tuple or kind is float) and _small_json(value):
        try:  # small and plain: the C encoder, whole
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            text = _safe_repr(value)
        return truncate(text, max_chars)
    if (
        isinstance(value, _JSON_NATIVE)
        or hasattr(value, "model_dump")
        or (dataclasses.is_dataclass(value) and not isinstance(value, type))
        or isinstance(value, (set, frozenset, bytes, bytearray, Ref))
    ):
        keep = max_chars if max_chars >= 0 else sys.maxsize
        writer = _JsonWriter(keep, max(keep + 1, _EXACT_CHARS) if max_chars >= 0 else keep)
        try:
            writer.value(value)
        except _Full:
            return f"{''.join(writer.parts)}…(truncated at least {writer.n - keep} chars)"
        except Exception:  # not JSON (cycle, odd key, too deep, a failing method): its repr
            return truncate(_bounded_repr(value, max_chars), max_chars)
        text = "".join(writer.parts)
        return text if writer.n <= keep else f"{text}…(truncated {writer.n - keep} chars)"
    return truncate(_safe_repr(value), max_chars)
