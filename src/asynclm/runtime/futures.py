"""``$id`` / ``$id.path`` references in call arguments: find them, and substitute results.

Two kinds of reference reach the executor:

* a plain :class:`~asynclm.protocol.Ref` (``book(flight=$f1.best)``, or a JSON string that is
  exactly ``"$f1.best"``): the argument becomes the referenced value itself;
* references *inside* a string argument (``create_event(title="Meeting $m1.event_id")``):
  :func:`bind_string_refs` turns such a string into a :class:`Template` when the call is
  submitted, and :func:`substitute` writes each referenced value's text into it (a string as
  is, any other value as compact JSON: ``420``, ``true``, ``null``, ``[1,2]``,
  ``{"id":"F1"}``).

Rules for strings (see :func:`split_string_refs`): a reference token is ``$`` followed by the
*longest* id-grammar match (``[A-Za-z0-9_-]+``, so ``$10`` is never ``$1`` then ``0``) and its
path (``.seg``, ``[0]``, ``["key"]``, as in :func:`asynclm.protocol.body.parse_ref`; a ``.`` not
followed by a segment, as at the end of a sentence, ends the reference). It is a reference only
if that whole id is the id of a call written earlier in the session; every other ``$``
(``$5.00``, ``$HOME``, ``$`` alone, an unknown or later id, the call's own id) stays as written.
``$$`` directly before such a reference writes it literally (``"$$m1"`` -> ``"$m1"``, no
dependency); a ``$$`` anywhere else is left alone, so text without ``$`` + known id passes
through unchanged. Dict keys are never interpolated.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping
from typing import Any

from asynclm.errors import ReferenceError_
from asynclm.protocol import Ref
from asynclm.protocol.body import BodyError, parse_ref
from asynclm.protocol.ids import REF_ID_RE

__all__ = [
    "ATOMIC_TYPES",
    "ReferenceError_",
    "Template",
    "bind_string_refs",
    "find_refs",
    "resolve_path",
    "split_string_refs",
    "substitute",
    "value_text",
]


ATOMIC_TYPES = frozenset({str, int, float, bool, type(None)})
"""Types of plain values: they hold no reference, and compare and print canonically."""


class Template(str):
    """A string argument holding references to earlier results, made by
    :func:`bind_string_refs`.

    It *is* the string as the model wrote it (so records, transcripts and JSON show the written
    text); ``parts`` holds its literal pieces (``$$`` escapes already undone) and
    :class:`~asynclm.protocol.Ref` values in order. :func:`substitute` renders it.
    """

    parts: tuple[str | Ref, ...]

    def __new__(cls, text: str, parts: Iterable[str | Ref]) -> Template:
        self = super().__new__(cls, text)
        self.parts = tuple(parts)
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickle / deepcopy keep the parts
        return (Template, (str(self), self.parts))

    @property
    def refs(self) -> list[Ref]:
        """The references in this string, in order of appearance."""
        return [p for p in self.parts if isinstance(p, Ref)]

    def render(self, results: Mapping[str, Any]) -> str:
        """The string with each reference replaced by the text of its resolved value
        (:func:`value_text`). Raises :class:`ReferenceError_` if a path does not resolve."""
        return "".join(
            p if isinstance(p, str) else value_text(resolve_path(results[p.id], p))
            for p in self.parts
        )


def value_text(value: Any) -> str:
    """Text of a value interpolated into a string: a string as is, anything else as compact
    JSON (``42``, ``true``, ``null``, ``[1,2]``, ``{"a":1}``; non-ASCII kept); a value JSON
    cannot write (an object) as ``str(value)``."""
    if isinstance(value, str):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _known_ref(text: str, i: int, known: Container[str]) -> tuple[Ref, int] | None:
    """The reference at ``text[i] == "$"`` and the index after it, if its whole id (the longest
    id-grammar match) is in ``known``; else ``None``."""
    m = REF_ID_RE.match(text, i + 1)
    if m is None or m.group(0) not in known:
        return None
    try:
        return parse_ref(text, i)
    except BodyError:  # more path segments than a reference may have: leave it as text
        return None


def split_string_refs(text: str, known: Container[str]) -> list[str | Ref] | None:
    """``text`` split into literal pieces and references to ids in ``known`` (rules in the
    module docstring), or ``None`` when the string holds neither such a reference nor an escaped
    one (then it stays exactly as written). Literal pieces have ``$$`` escapes undone."""
    i = text.find("$")
    if i < 0:
        return None
    parts: list[str | Ref] = []
    buf: list[str] = [text[:i]]
    changed = False
    n = len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            buf.append(text[i:])
            break
        buf.append(text[i:j])
        if text.startswith("$", j + 1):
            hit = _known_ref(text, j + 1, known)
            if hit is not None:  # "$$m1": the reference written literally, as "$m1"
                buf.append(text[j + 1:hit[1]])
                changed = True
                i = hit[1]
                continue
        else:
            hit = _known_ref(text, j, known)
            if hit is not None:
                ref, end = hit
                parts.append("".join(buf))
                parts.append(ref)
                buf = []
                changed = True
                i = end
                continue
        buf.append("$")
        i = j + 1
    if not changed:
        return None
    parts.append("".join(buf))
    return [p for p in parts if p != ""]


def _bind_str(s: str, known: Container[str]) -> str:
    if isinstance(s, Template) or "$" not in s:
        return s
    parts = split_string_refs(s, known)
    if parts is None:
        return s
    if not any(isinstance(p, Ref) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))  # only escapes: plain text now
    return Template(s, parts)


def bind_string_refs(value: Any, known: Container[str]) -> Any:
    """``value`` with every string (at any depth of dicts, lists and tuples; dict keys
    excepted) that references an id in ``known`` turned into a :class:`Template`, and every
    string whose only references are ``$$``-escaped unescaped. ``known`` is the ids of the calls
    written before this one. Returns ``value`` itself (not a copy) when nothing changes."""
    t = type(value)
    if t is str or isinstance(value, str):
        return _bind_str(value, known)
    if t in ATOMIC_TYPES or isinstance(value, Ref):
        return value
    if isinstance(value, Mapping):
        new = {k: bind_string_refs(v, known) for k, v in value.items()}
        if t is dict and all(new[k] is v for k, v in value.items()):
            return value
        return new
    if isinstance(value, (list, tuple)):
        items = [bind_string_refs(v, known) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return tuple(items) if isinstance(value, tuple) else items
    return value


def find_refs(value: Any) -> list[Ref]:
    """All references in ``value`` (nested in lists/tuples/dicts, and inside
    :class:`Template` strings), in order of appearance."""
    out: list[Ref] = []
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t in ATOMIC_TYPES:  # the common cases first: exact types, no ABC checks
            continue
        if t is dict:
            stack.extend(reversed(list(v.values())))
        elif t is list or t is tuple:
            stack.extend(reversed(v))
        elif t is Template:
            out.extend(v.refs)
        elif isinstance(v, Ref):
            out.append(v)
        elif isinstance(v, Mapping):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
    return out


def resolve_path(value: Any, ref: Ref) -> Any:
    """Follow ``ref.path`` into dicts (key, or its string form), lists and tuples (an index)
    and public data attributes of ``value``. Raises :class:`ReferenceError_` if a step fails;
    a name looked up in a list says that it is a list and how to index it."""
    for k, seg in enumerate(ref.path):
        if isinstance(value, Mapping):
            if seg in value:
                value = value[seg]
            elif str(seg) in value:
                value = value[str(seg)]
            else:
                raise ReferenceError_(f"{ref}: no key {seg!r}")
        elif isinstance(value, (list, tuple)):
            try:
                index = int(seg)
            except ValueError:
                at = Ref(ref.id, ref.path[:k])
                raise ReferenceError_(
                    f"{ref}: {at} is a list of {len(value)} items, so {seg!r} cannot be looked"
                    f" up in it; index it first, as in {at}.0 (or {at}[0]) for the first item"
                ) from None
            try:
                value = value[index]
            except IndexError:
                raise ReferenceError_(
                    f"{ref}: no index {seg!r} (the list has {len(value)} items)"
                ) from None
        elif isinstance(seg, str) and not seg.startswith("_") and hasattr(value, seg):
            attr = getattr(value, seg)
            if callable(attr):  # data attributes only: never hand a bound method to a tool
                raise ReferenceError_(f"{ref}: {seg!r} of {type(value).__name__} is a method")
            value = attr
        else:
            raise ReferenceError_(f"{ref}: cannot look up {seg!r} in {type(value).__name__}")
    return value


def substitute(value: Any, results: Mapping[str, Any]) -> Any:
    """``value`` with every reference replaced by its resolved result, and every
    :class:`Template` rendered to plain text. Results are inserted as values, never re-parsed,
    so a ``$x`` inside a result stays text; a plain string is never interpolated."""
    if isinstance(value, Ref):
        return resolve_path(results[value.id], value)
    if isinstance(value, Template):
        return value.render(results)
    if isinstance(value, Mapping):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, results) for v in value)
    return value
