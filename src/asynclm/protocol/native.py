"""What the native tool-call dialects share: their incremental parser, payload wording,
escaping, tool listing and the interrupt renderer (sans I/O).

The dialects (:mod:`~asynclm.protocol.hermes`, :mod:`~asynclm.protocol.llama3`,
:mod:`~asynclm.protocol.mistral`, :mod:`~asynclm.protocol.pythonic`) differ in the *call syntax*
(a :class:`CallSyntax`); where results go is the *chat frame*'s business
(:mod:`~asynclm.protocol.chat_frames`). :class:`NativeParser` reads both.

Parser contract (:class:`NativeParser`)
---------------------------------------
* **Chunking**: any split of the same stream gives the same events once adjacent
  :class:`~asynclm.protocol.events.Text` events are coalesced (within one ``feed`` result they
  already are). Offsets are character offsets into the whole stream, ``end`` exclusive.
* **Call blocks** open at a literal opener (``<tool_call>``, ``<|python_tag|>``,
  ``[TOOL_CALLS]``) or, for syntaxes that have one, at a *line opener*: ``{"name":`` (Llama 3) or
  ``[ident(`` (pythonic) at the beginning of a line (only blanks before it on the line; the
  stream's start and the end of a call block count as a line start). The text is held back
  until that is certain. :class:`CallOpened` comes at once; each call is reported as soon as it
  is complete: a tagged block (``<tool_call>...</tool_call>``) at its closing tag, a JSON object
  when its braces balance, each element of a list (``[TOOL_CALLS][{...}, {...}]``,
  ``[f(a=1), g(b=2)]``) when its own brackets close, while the model may still be writing the
  next one. Every further element of a list gets its own :class:`CallOpened` at its first
  character; a :class:`Call`'s ``raw`` runs from its :class:`CallOpened` to its end (for the
  first element of a list it includes the opener: :meth:`NativeDialect.call_body` strips it).
  Strings are lexed (JSON ``"``; Python ``'`` and ``"``, backslash escapes) so brackets in them
  do not count; markers are recognised everywhere, also inside strings (with a real model they
  are single special tokens).
* **Critical sections**: :attr:`NativeParser.at_safe_point` is false from an opener to the end
  of its block (a list's closing ``]``), and while a partial marker is held back.
* **Traps**: the frame's end-of-turn text (``<|im_end|>``, ``<|eot_id|>``, ``</s>``) outside a
  block is a :class:`Trap`. A real engine samples it as its end-of-generation token, which the
  runtime handles before the parser sees text (ending the turn with calls pending is the
  trap); a scripted model (the simulator) writes it as text.
* **Enforcement** (``transcript=False``): outside a block, a forged marker (a result frame or a
  turn opener, ASCII case-insensitive: :attr:`NativeDialect.forged_markers`) is
  ``Forged(where="outside")``; inside a block, a forged marker, an opener or an end-of-turn text
  is ``Forged(where="call", call_raw=...)`` followed by the :class:`Call` or
  :class:`MalformedCall` of the call being written, if any (a list between two elements has
  none). After any Forged event the parser drops everything from its ``start`` on and is
  outside every block at that offset (the runtime rolls the model back there and, for
  ``where="call"``, writes :meth:`NativeDialect.close_call`).
* **Transcripts** (``transcript=True``): no Forged events; a result frame (the frame's
  ``result_tags``: ``<tool_response>...</tool_response>``, Llama 3's ``ipython`` turn,
  ``[TOOL_RESULTS]...[/TOOL_RESULTS]``) is an :class:`Interrupt` (``id``: the call id where the
  frame carries one, Mistral's ``call_id``; else ``None``); an opener or end-of-turn inside a
  call block ends it as a MalformedCall and is then parsed.
* **End of stream** (:meth:`NativeParser.close`): held text is flushed; an open call is a
  MalformedCall ``"unterminated call"``; an open result frame is Text.
* **Limits**: a call block's text is kept up to :data:`~asynclm.protocol.parser.MAX_CALL_CHARS`
  characters; a longer call is a MalformedCall ``"call too long"`` when it ends.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from asynclm.errors import BodyError
from asynclm.protocol.body import ParsedBody, parse_body
from asynclm.protocol.chat_frames import ChatFrame, Framing
from asynclm.protocol.dialect import Delivery, Segment
from asynclm.protocol.escape import CONTROL_TAGS, SPECIAL_TOKEN_PREFIXES, escape_payload
from asynclm.protocol.events import (
    Call,
    CallOpened,
    Event,
    Forged,
    Interrupt,
    MalformedCall,
    Markers,
    Ref,
    Text,
    Trap,
)
from asynclm.protocol.parser import MAX_CALL_CHARS, _coalesce
from asynclm.protocol.stream_args import ArgPiece, BodyReader, cut_at_closer

__all__ = [
    "FUTURES_NOTE", "CallSyntax", "LineOpener", "NativeDialect", "NativeParser", "ParsedCall",
    "Shape", "TaggedArgumentsReader", "dump_json", "json_value_text", "openai_tool_lines",
    "read_json_or_python", "tool_entries",
]


class LineOpener(enum.Enum):
    """A call block that opens at the beginning of a line, without a literal opener."""

    JSON_OBJECT = "json-object"  # {"name": ... (Llama 3)
    PYTHON_LIST = "python-list"  # [ident( ... (pythonic)


class Shape(enum.Enum):
    """What follows a literal opener."""

    TAGGED = "tagged"  # a body up to the closing tag (hermes)
    OBJECT = "object"  # one JSON object (Llama 3 after <|python_tag|>)
    LIST = "list"  # a list of calls (Mistral after [TOOL_CALLS])


ParsedCall = tuple[str | None, str | None, ParsedBody]
"""``(id, written_id, body)`` of one call's text."""


@dataclass(frozen=True)
class CallSyntax:
    """How calls are written: a literal ``opener`` (with its ``shape`` and, for ``TAGGED``, the
    ``closer``), an optional ``line_opener``, whether strings are Python's (``'`` too) and how
    one call's text reads (``read``: raises :class:`~asynclm.errors.BodyError`)."""

    opener: str | None
    shape: Shape
    closer: str | None
    line_opener: LineOpener | None
    python: bool
    read: Callable[[str], ParsedCall]


def read_json_or_python(text: str) -> ParsedCall:
    """A call body through :func:`~asynclm.protocol.body.parse_body` (JSON
    ``{"name": ..., "arguments"|"parameters": ...}`` or ``f(a=1)``), without an id."""
    return None, None, parse_body(text)


# --------------------------------------------------------------------------------------------
# marker tables


class _K(enum.Enum):
    OPEN = 0
    TRAP = 1
    FORGED = 2
    RESULT = 3
    END = 4
    STRAY = 5


_NEED: Final = "need"
_Hit = tuple[_K, str, int]  # kind, marker text as written in the table, an index (result tag)


def _fold(s: str) -> str:
    return s.lower() if s.isascii() else "".join(c.lower() if c.isascii() else c for c in s)


class _Table:
    """Literal markers of one parser state (``ci``: ASCII case-insensitive), longest first."""

    def __init__(self, entries: Sequence[tuple[str, _K, bool, int]]) -> None:
        seen: set[tuple[str, bool]] = set()
        uniq: list[tuple[str, _K, bool, int]] = []
        for s, kind, ci, idx in entries:
            key = (_fold(s) if ci else s, ci)
            if s and key not in seen:
                seen.add(key)
                uniq.append((s, kind, ci, idx))
        uniq.sort(key=lambda e: -len(e[0]))
        self.entries = uniq
        self.keys = [(_fold(s) if ci else s, ci) for s, _, ci, _ in uniq]
        firsts: set[str] = set()
        for s, _, ci, _ in uniq:
            firsts.add(s[0])
            if ci:
                firsts.update({s[0].lower(), s[0].upper()})
        self.firsts = frozenset(firsts)
        self.maxlen = max((len(s) for s, *_ in uniq), default=0)

    def match(self, data: str, p: int, final: bool) -> _Hit | str | None:
        """The longest entry at ``data[p:]``; ``"need"`` when more input may still decide it
        (a longer entry could match, or only a proper prefix of one is there)."""
        seg = data[p:p + self.maxlen]
        folded = _fold(seg)
        avail = len(seg)
        for (s, kind, ci, idx), (key, _) in zip(self.entries, self.keys, strict=True):
            n = len(key)
            have = folded if ci else seg
            if avail >= n:
                if have[:n] == key:
                    return kind, s, idx
            elif not final and key.startswith(have):
                return _NEED
        return None


def _char_class(chars: set[str] | frozenset[str]) -> re.Pattern[str]:
    if not chars:
        return re.compile(r"(?!)")
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")


@dataclass(frozen=True)
class _Tables:
    out: _Table
    block: _Table
    intr: tuple[_Table, ...]  # per result tag: its closer
    intr_scan: tuple[re.Pattern[str], ...]
    out_scan: re.Pattern[str]
    line_chars: frozenset[str]
    code_scan: re.Pattern[str]
    str_scan: dict[str, re.Pattern[str]]
    between_scan: re.Pattern[str]
    tag_scan: re.Pattern[str]


@functools.lru_cache(maxsize=64)
def _tables(syntax: CallSyntax, frame: ChatFrame, forged: tuple[str, ...],
            transcript: bool) -> _Tables:
    opener = syntax.opener
    out: list[tuple[str, _K, bool, int]] = []
    block: list[tuple[str, _K, bool, int]] = []
    if syntax.shape is Shape.TAGGED and syntax.closer:
        block.append((syntax.closer, _K.END, False, 0))
    if opener:
        out.append((opener, _K.OPEN, False, 0))
    for t in frame.end_of_turn:
        out.append((t, _K.TRAP, False, 0))
    if transcript:
        for k, tag in enumerate(frame.result_tags):
            out.append((tag[0], _K.RESULT, False, k))
        block += [(s, _K.STRAY, False, 0) for s in (opener, *frame.end_of_turn) if s]
        block += [(tag[0], _K.STRAY, False, 0) for tag in frame.result_tags]
    else:
        out += [(f, _K.FORGED, True, 0) for f in forged]
        block += [(f, _K.FORGED, True, 0) for f in forged]
        block += [(s, _K.FORGED, False, 0) for s in (opener, *frame.end_of_turn) if s]
    t_out, t_block = _Table(out), _Table(block)
    intr = tuple(_Table([(tag[1], _K.END, False, 0)]) for tag in frame.result_tags)
    line_chars = frozenset(
        {LineOpener.JSON_OBJECT: "{", LineOpener.PYTHON_LIST: "["}[syntax.line_opener]
    ) if syntax.line_opener else frozenset()
    quotes = {'"', "'"} if syntax.python else {'"'}
    fb = t_block.firsts
    return _Tables(
        out=t_out, block=t_block, intr=intr,
        intr_scan=tuple(_char_class(x.firsts) for x in intr),
        out_scan=_char_class(t_out.firsts | line_chars),
        line_chars=line_chars,
        code_scan=_char_class(fb | quotes | set("[]{}(),")),
        str_scan={q: _char_class(fb | {q, "\\"}) for q in quotes},
        between_scan=re.compile(r"[^ \t\r\n]"),
        tag_scan=_char_class(fb),
    )


_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_.]")
_WS = " \t\r\n"
_MAX_LOOKAHEAD = 256


def _line_open(kind: LineOpener, data: str, p: int, final: bool) -> bool | str:
    """Whether ``data[p:]`` begins a call block of ``kind``: True, False or ``"need"``."""
    n = len(data)
    j = p + 1

    def more() -> bool | str:
        return False if final or j - p > _MAX_LOOKAHEAD else _NEED

    while j < n and data[j] in _WS:
        j += 1
    if j >= n:
        return more()
    if kind is LineOpener.JSON_OBJECT:
        want = '"name"'
        k = 0
        while k < len(want):
            if j >= n:
                return more()
            if data[j] != want[k]:
                return False
            j += 1
            k += 1
        while j < n and data[j] in _WS:
            j += 1
        if j >= n:
            return more()
        return data[j] == ":"
    if not _IDENT_START.match(data[j]):
        return False
    while j < n and _IDENT_CHAR.match(data[j]):
        j += 1
        if j - p > _MAX_LOOKAHEAD:
            return False
    while j < n and data[j] in _WS:
        j += 1
    if j >= n:
        return more()
    return data[j] == "("


# --------------------------------------------------------------------------------------------
# the parser


class _S(enum.Enum):
    OUT = 0
    TAG = 1  # a tagged body, up to the closer
    PRE = 2  # after a literal opener, before the structure's first bracket
    STRUCT = 3  # a JSON object or a list of calls
    INTR = 4  # transcript: a result frame
    CLOSED = 5


class _R(enum.Enum):
    CONTINUE = 0
    HOLD = 1
    DONE = 2
    FORGED = 3


ItemReader = Callable[[str], tuple[str | None, str]]
"""A result frame's content -> ``(call id or None, payload)``."""


class NativeParser:
    """The incremental parser of a native dialect (see the module docstring for the contract).
    Sans I/O; one per stream."""

    def __init__(
        self, syntax: CallSyntax, frame: ChatFrame, forged: tuple[str, ...], *,
        transcript: bool = False, read_item: ItemReader | None = None,
    ) -> None:
        self.syntax: Final = syntax
        self.frame: Final = frame
        self.transcript: Final = transcript
        self._t = _tables(syntax, frame, forged, transcript)
        self._read_item = read_item
        self._state = _S.OUT
        self._buf = ""  # held-back input, from stream offset self._pos on
        self._pos = 0
        self._base = 0  # stream offset of data[0] during a run
        self._bol = True  # the stream at self._pos (before the held text) is at a line start
        self._reset_block()

    # -- public -----------------------------------------------------------------------------
    @property
    def at_safe_point(self) -> bool:
        """Outside every block, nothing held back."""
        return (self._state is _S.OUT or self._state is _S.CLOSED) and not self._buf

    @property
    def in_call(self) -> bool:
        """Inside a call block (from its opener to its end)."""
        return self._state in (_S.TAG, _S.PRE, _S.STRUCT)

    @property
    def offset(self) -> int:
        """Characters accepted so far (held-back text included)."""
        return self._pos + len(self._buf)

    def mark_line_start(self) -> None:
        """The next text the model writes begins a line (a new turn, or text after an
        injection, which this parser is not fed): line openers (``{"name":``, ``[f(``) count
        there. A runtime calls it after it injects text or rolls back an end of turn; a Trap
        event sets it too. Only meaningful at a safe point; otherwise it does nothing."""
        if self.at_safe_point:
            self._bol = True

    def feed(self, text: str) -> list[Event]:
        """The events that ``text`` (the next piece of the stream) makes certain."""
        if self._state is _S.CLOSED:
            raise RuntimeError("feed() after close()")
        if not text:
            return []
        if self._state is _S.OUT and not self._buf and self._t.out_scan.search(text) is None:
            start = self._pos
            self._pos = start + len(text)
            self._note_text(text)
            return [Text(text, start, self._pos)]
        events: list[Event] = []
        data, self._buf = self._buf + text, ""
        self._run(data, events, final=False)
        return _coalesce(events) if len(events) > 1 else events

    def close(self) -> list[Event]:
        """End of stream: flush held text, end any open block. Idempotent."""
        if self._state is _S.CLOSED:
            return []
        events: list[Event] = []
        data, self._buf = self._buf, ""
        self._run(data, events, final=True)
        end = self._pos
        state = self._state
        if state in (_S.TAG, _S.PRE) or (state is _S.STRUCT and self._open_at >= 0):
            events.append(self._malformed(end, "unterminated call"))
        elif state is _S.INTR:
            events.append(Text(self._block, self._block_start, end))
        self._state = _S.CLOSED
        self._reset_block()
        return _coalesce(events)

    # -- machinery ----------------------------------------------------------------------------
    def _reset_block(self) -> None:
        self._block = ""  # the block's text from its start, up to self._pos (bounded)
        self._block_start = 0
        self._too_long = False
        self._open_at = -1  # stream offset of the outstanding CallOpened, -1: none
        self._elem_at = -1  # stream offset where the current element starts, -1: none
        self._depth = 0
        self._quote = ""
        self._escape = False
        self._want = ""  # PRE: the bracket that starts the structure
        self._list = False
        self._tag = 0  # INTR: which result tag

    def _note_text(self, text: str) -> None:
        t = text.rstrip(" \t")
        if t:
            self._bol = t[-1] == "\n"

    def _text(self, data: str, a: int, b: int, ev: list[Event]) -> None:
        if b > a:
            t = data[a:b]
            ev.append(Text(t, self._base + a, self._base + b))
            self._note_text(t)

    def _keep(self, data: str, a: int, b: int) -> None:
        """Append ``data[a:b]`` to the block's text (up to the size limit)."""
        if b <= a:
            return
        room = MAX_CALL_CHARS - len(self._block)
        if b - a > room:
            self._too_long = True
            b = a + max(room, 0)
        self._block += data[a:b]

    def _run(self, data: str, ev: list[Event], *, final: bool) -> None:
        self._base = self._pos
        i = 0
        while True:
            state = self._state
            if state is _S.OUT:
                i, r = self._out(data, i, ev, final)
            elif state is _S.TAG:
                i, r = self._tagged(data, i, ev, final)
            elif state is _S.PRE:
                i, r = self._pre(data, i, ev, final)
            elif state is _S.STRUCT:
                i, r = self._struct(data, i, ev, final)
            else:
                i, r = self._intr(data, i, ev, final)
            if r is _R.CONTINUE:
                continue
            if r is _R.FORGED:
                return
            self._pos = self._base + i
            self._buf = data[i:]
            return

    def _is_bol(self, data: str, c: int, i: int) -> bool:
        k = c - 1
        while k >= i and data[k] in " \t":
            k -= 1
        return self._bol if k < i else data[k] == "\n"

    def _forge_outside(self, marker: str, start: int, ev: list[Event]) -> tuple[int, _R]:
        ev.append(Forged("outside", marker, start))
        self._after_forge(start)
        return 0, _R.FORGED

    def _after_forge(self, start: int) -> None:
        self._state = _S.OUT
        self._reset_block()
        self._buf = ""
        self._pos = start

    # outside any block
    def _out(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        t = self._t
        for m in t.out_scan.finditer(data, i):
            c = m.start()
            r: _Hit | str | bool | None = t.out.match(data, c, final)
            line = False
            if r is None and data[c] in t.line_chars and self._is_bol(data, c, i):
                assert self.syntax.line_opener is not None
                lo = _line_open(self.syntax.line_opener, data, c, final)
                if lo is False:
                    continue
                r, line = lo, True
            if r is None:
                continue
            self._text(data, i, c, ev)
            if r == _NEED:
                return c, _R.HOLD
            start = self._base + c
            if line:  # a line opener: the bracket is the structure's first character
                self._open_block(start, ev)
                self._state = _S.STRUCT
                self._list = self.syntax.line_opener is LineOpener.PYTHON_LIST
                return c, _R.CONTINUE
            assert isinstance(r, tuple)
            kind, s, idx = r
            e = c + len(s)
            if kind is _K.FORGED:
                return self._forge_outside(s, start, ev)
            if kind is _K.TRAP:
                ev.append(Trap(start, self._base + e))
                self._bol = True  # a new turn follows the wait
                return e, _R.CONTINUE
            if kind is _K.RESULT:
                self._reset_block()
                self._block_start = start
                self._state = _S.INTR
                self._tag = idx
                self._block = s
                return e, _R.CONTINUE
            # a literal opener
            self._open_block(start, ev)
            self._block = s
            shape = self.syntax.shape
            if shape is Shape.TAGGED:
                self._state = _S.TAG
            else:
                self._state = _S.PRE
                self._want = "[" if shape is Shape.LIST else "{"
                self._list = shape is Shape.LIST
            ev[-1] = CallOpened(start, self._base + e)
            return e, _R.CONTINUE
        self._text(data, i, len(data), ev)
        return len(data), _R.DONE

    def _open_block(self, start: int, ev: list[Event]) -> None:
        self._reset_block()
        self._block_start = start
        self._open_at = start
        ev.append(CallOpened(start, start + 1))

    def _end_block(self) -> None:
        self._state = _S.OUT
        self._reset_block()
        self._bol = True

    def _raw(self, start: int, end: int) -> str:
        a = start - self._block_start
        return self._block[a:end - self._block_start]

    def _call_event(self, end: int, text: str) -> Call | MalformedCall:
        """The call from the outstanding CallOpened to ``end``; ``text``: the call's own text
        (what is parsed)."""
        start = self._open_at
        raw = self._raw(start, end)
        self._open_at = -1
        if self._too_long:
            return MalformedCall(None, raw, f"call too long (over {MAX_CALL_CHARS} characters)",
                                 start, end)
        try:
            ident, written, body = self.syntax.read(text)
        except BodyError as e:
            return MalformedCall(None, raw, str(e), start, end)
        return Call(ident, body.fn, body.args, raw, start, end, body.pos, written)

    def _malformed(self, end: int, reason: str) -> MalformedCall:
        start = self._open_at if self._open_at >= 0 else self._block_start
        self._open_at = -1
        return MalformedCall(None, self._raw(start, end), reason, start, end)

    def _forge_call(self, data: str, p: int, marker: str, ev: list[Event]) -> tuple[int, _R]:
        """A forgery inside a block at ``data[p]``: Forged, then the call being written."""
        start = self._base + p
        ev.append(Forged("call", marker, start, self._block))
        if self._state is _S.TAG:
            ev.append(self._call_event(start, self._raw(self._block_start, start)[
                len(self.syntax.opener or ""):]))
        elif self._open_at >= 0:
            if self._elem_at >= 0:
                ev.append(self._call_event(start, self._raw(self._elem_at, start)))
            else:
                ev.append(self._malformed(start, "unterminated call"))
        self._after_forge(start)
        return p, _R.FORGED

    def _stray(self, data: str, p: int, marker: str, ev: list[Event]) -> tuple[int, _R]:
        """Transcript mode: a block marker inside a call ends it (MalformedCall)."""
        if self._open_at >= 0 or self._state in (_S.TAG, _S.PRE):
            ev.append(self._malformed(
                self._base + p, f"unterminated call: {marker} inside the call"))
        self._end_block()
        self._bol = False
        return p, _R.CONTINUE

    def _block_marker(
        self, data: str, p: int, cf: int, ev: list[Event], final: bool
    ) -> tuple[int, _R] | None:
        """A marker at ``data[p]`` inside a block: the step to take, or None (not a marker)."""
        r = self._t.block.match(data, p, final)
        if r is None:
            return None
        self._keep(data, cf, p)
        if r == _NEED:
            return p, _R.HOLD
        assert isinstance(r, tuple)
        kind, s, _ = r
        if kind is _K.FORGED:
            return self._forge_call(data, p, s, ev)
        if kind is _K.STRAY:
            return self._stray(data, p, s, ev)
        # END: the closer of a tagged block
        e = p + len(s)
        body = self._block[len(self.syntax.opener or ""):]
        self._keep(data, p, e)
        ev.append(self._call_event(self._base + e, body))
        self._end_block()
        return e, _R.CONTINUE

    # a tagged body (hermes)
    def _tagged(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        for m in self._t.tag_scan.finditer(data, i):
            step = self._block_marker(data, m.start(), i, ev, final)
            if step is not None:
                return step
        self._keep(data, i, len(data))
        return len(data), _R.DONE

    # after a literal opener: blanks, then the structure's first bracket
    def _pre(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        m = self._t.between_scan.search(data, i)
        if m is None:
            self._keep(data, i, len(data))
            return len(data), _R.DONE
        p = m.start()
        if data[p] in self._t.block.firsts:
            step = self._block_marker(data, p, i, ev, final)
            if step is not None:
                return step
        self._keep(data, i, p)
        if data[p] == self._want:
            self._state = _S.STRUCT
            return p, _R.CONTINUE
        ev.append(self._malformed(
            self._base + p, f"expected {self._want!r} after {self.syntax.opener}"))
        self._end_block()
        self._bol = False
        return p, _R.CONTINUE

    # a JSON object or a list of calls, lexed
    def _struct(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        t = self._t
        firsts = t.block.firsts
        n = len(data)
        cf = i  # data[cf:] not yet kept
        lst = self._list
        while True:
            if self._quote:
                if self._escape:
                    if i >= n:
                        break
                    self._escape = False
                    if data[i] not in firsts:  # a marker is one even after a backslash
                        i += 1
                    continue
                m = t.str_scan[self._quote].search(data, i)
            elif lst and self._depth == 1 and self._elem_at < 0:
                m = t.between_scan.search(data, i)  # between elements
            else:
                m = t.code_scan.search(data, i)
            if m is None:
                break
            p = m.start()
            c = data[p]
            if c in firsts:
                step = self._block_marker(data, p, cf, ev, final)
                if step is not None:
                    return step
            i = p + 1
            if self._quote:
                if c == "\\":
                    self._escape = True
                elif c == self._quote:
                    self._quote = ""
                continue
            at = self._base + p
            depth = self._depth
            if lst and depth == 1 and self._elem_at < 0:
                if c == ",":
                    continue
                if c == "]":
                    self._keep(data, cf, i)
                    if self._open_at >= 0:  # nothing after the opener or a comma
                        ev.append(self._malformed(at + 1, "no call in the list"))
                    self._end_block()
                    return i, _R.CONTINUE
                self._elem_at = at  # an element begins
                if self._open_at < 0:
                    self._keep(data, cf, p)
                    cf = p
                    self._open_at = at
                    ev.append(CallOpened(at, at + 1))
            if c == '"' or c == "'":
                self._quote = c
            elif c in "[{(":
                if not lst and depth == 0:
                    self._elem_at = at
                self._depth = depth + 1
            elif c in "]})":
                self._depth = depth - 1
                if lst and depth == 2:  # an element's brackets closed: it is complete
                    self._keep(data, cf, i)
                    cf = i
                    ev.append(self._call_event(at + 1, self._raw(self._elem_at, at + 1)))
                    self._elem_at = -1
                elif depth <= 1:  # the end of the list (an element still open) or object
                    self._keep(data, cf, i)
                    if lst and self._elem_at >= 0:
                        ev.append(self._call_event(at, self._raw(self._elem_at, at)))
                    elif not lst:
                        ev.append(self._call_event(at + 1, self._raw(self._elem_at, at + 1)))
                    self._end_block()
                    return i, _R.CONTINUE
            elif c == "," and lst and depth == 1:  # an element without brackets ends
                self._keep(data, cf, p)
                cf = p
                ev.append(self._call_event(at, self._raw(self._elem_at, at)))
                self._elem_at = -1
        self._keep(data, cf, n)
        return n, _R.DONE

    # transcript: a result frame
    def _intr(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        table = self._t.intr[self._tag]
        for m in self._t.intr_scan[self._tag].finditer(data, i):
            p = m.start()
            r = table.match(data, p, final)
            if r is None:
                continue
            self._block += data[i:p]
            if r == _NEED:
                return p, _R.HOLD
            assert isinstance(r, tuple)
            e = p + len(r[1])
            open_tag, _, lead, trail = self.frame.result_tags[self._tag]
            content = self._block[len(open_tag):]
            if lead and content.startswith(lead):
                content = content[len(lead):]
            if trail and content.endswith(trail):
                content = content[:-len(trail)]
            ident, payload = (None, content) if self._read_item is None else (
                self._read_item(content))
            ev.append(Interrupt(ident, payload, self._block_start, self._base + e))
            self._end_block()
            self._bol = False
            return e, _R.CONTINUE
        self._block += data[i:]
        return len(data), _R.DONE


# --------------------------------------------------------------------------------------------
# arguments read while they are written


class TaggedArgumentsReader:
    """Reads one tagged call block's arguments as it is written (``<tool_call>{"name": ...,
    "arguments": {...}}</tool_call>``): fed the block's text from its opener on, it passes the
    body to a :class:`~asynclm.protocol.stream_args.BodyReader` and ignores everything from
    the closer on."""

    def __init__(self, opener: str, closer: str) -> None:
        self._opener = opener
        self._closer = closer
        self._pre = ""
        self._body: BodyReader | None = None
        self._held = ""
        self._ended = False

    @property
    def fn(self) -> str | None:
        return None if self._body is None else self._body.fn

    @property
    def failed(self) -> bool:
        return self._body is not None and self._body.failed

    def feed(self, text: str) -> list[ArgPiece]:
        if self._ended or not text:
            return []
        if self._body is None:
            self._pre += text
            if len(self._pre) < len(self._opener):
                return []
            text = self._pre[len(self._opener):] if self._pre.startswith(self._opener) else (
                self._pre)
            self._pre = ""
            self._body = BodyReader()
        text, self._held, self._ended = cut_at_closer(self._held + text, self._closer)
        return self._body.feed(text)


# --------------------------------------------------------------------------------------------
# JSON, tools, wording


def _json_default(o: Any) -> Any:
    if isinstance(o, Ref):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise ValueError(f"cannot write {type(o).__name__} in a call")


def dump_json(value: Any, *, guard: Sequence[str] = ()) -> str:
    """``value`` as JSON the way chat templates write it (``json.dumps`` defaults: ``", "``
    and ``": "`` separators, non-ASCII kept; HF's ``tojson``); :class:`Ref` values as their
    ``$id.path`` string. A string of ``guard`` (markers, compared ASCII case-insensitively)
    inside the text gets its first character written as a ``\\uXXXX`` escape, so that no marker
    can appear in the JSON text (markers appear only inside strings: escapes are valid there).
    Raises ``ValueError`` for NaN and values JSON cannot write."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=_json_default)
    if guard:
        low = _fold(text)
        if any(_fold(g) in low for g in guard):
            text = _guard(text, guard)
    return text


def _guard(text: str, guard: Sequence[str]) -> str:
    low = _fold(text)
    cut: set[int] = set()
    for g in guard:
        gl = _fold(g)
        k = low.find(gl)
        while k >= 0:
            cut.add(k)
            k = low.find(gl, k + 1)
    return "".join(f"\\u{ord(c):04x}" if k in cut else c for k, c in enumerate(text))


def tool_entries(tools: str) -> list[dict[str, Any]] | None:
    """The tool objects of ``tools`` (the text of ``Toolbox.describe()``: a JSON list, one
    object per line), or None when it is not that (it is then placed verbatim)."""
    try:
        value = json.loads(tools)
    except ValueError:
        value = []
        for line in tools.splitlines():
            line = line.strip().rstrip(",")
            if line in ("", "[", "]"):
                continue
            try:
                value.append(json.loads(line))
            except ValueError:
                return None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        return None
    return value


def _openai(entry: Mapping[str, Any]) -> dict[str, Any]:
    if entry.get("type") == "function" and isinstance(entry.get("function"), dict):
        return dict(entry)
    return {"type": "function", "function": dict(entry)}


def openai_tool_lines(tools: str, *, indent: int | None = None) -> list[str] | None:
    """Each tool of ``tools`` (:func:`tool_entries`) in the OpenAI shape
    ``{"type": "function", "function": {"name", "description", "parameters", ...}}`` as chat
    templates write it (``tojson``; ``indent`` as ``tojson(indent=4)``); None when ``tools``
    is not a tool list."""
    entries = tool_entries(tools)
    if entries is None:
        return None
    return [json.dumps(_openai(e), ensure_ascii=False, indent=indent) for e in entries]


def json_value_text(text: str) -> str:
    """``text`` as a JSON value: itself when it is one JSON value (a rendered result
    usually is), else a JSON string holding it."""
    s = text.strip()
    if s:
        try:
            json.loads(s)
        except ValueError:
            pass
        else:
            return s
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# the shared dialect


_EXTRA: Final = (*SPECIAL_TOKEN_PREFIXES, *CONTROL_TAGS)


@functools.lru_cache(maxsize=64)
def _escape_markers(opener: str, closer: str, frame: ChatFrame,
                    forbidden: tuple[str, ...]) -> Markers:
    tag_open, tag_close = frame.result_tags[-1][0], frame.result_tags[-1][1]
    return Markers(call=opener, interrupt=tag_open, trap=frame.end_of_turn[0],
                   head=tag_open, end=tag_close, forbidden=forbidden)


FUTURES_NOTE = (
    'Your calls are numbered c1, c2, ... in the order you write them. To pass a result you do '
    'not have yet to another call, write the string "$c1" (or "$c1.key", "$c1.0" for a part of '
    "it) as the argument: the system runs that call once the result is in. Never guess a "
    "value."
)
"""The futures rule of the native dialects (appended with ``futures=True``): native formats
carry no ids, so the runtime's ``c<n>`` numbering is named."""


class NativeDialect:
    """The part of :class:`~asynclm.protocol.dialect.Dialect` that every native dialect shares.

    Subclasses set :attr:`syntax`, the dialect's name, its call rendering, :meth:`call_body` and
    the system prompt; the frame (``frame``) and the framing (``framing``: ``"turn"``, the
    default, or ``"inline"``) come from the constructor.

    Payload wording (one compact JSON object, as chat templates show tool results):

    * a result with its call echoed: ``{"name": "f", "arguments": {...}, "result": R}`` (``R``:
      the result as a JSON value, itself when it is JSON, else a JSON string); a call that was
      not run again adds ``"note": "same call as before, not run again"``; a call whose text
      did not parse is echoed as ``{"call": "<its text>", "result": R}``. Where the dialect
      reads a bare ``{"name": ...}`` object at a line start as a call (``hermes-bare``,
      ``llama3``), the call is nested instead, ``{"call": {"name": "f", ...}, "result": R}``:
      a payload the model copies back must not read as a new call (measured on the bundled
      1.5B: copying ``{"name": ...}`` results back made a malformed call after every result,
      until the token cap);
    * an error: ``{"error": "<text>"}`` (status ``error``) or ``{"error": "<status>: <text>"}``;
    * a message: ``{"message_from": "<sender>", "text": "<text>"}``;
    * a partial result: ``{"partial_result": R}`` (not final).

    Correlation: native formats mostly carry no call ids, so the runtime assigns them
    (``ids="assign"``) and echoes the call in each payload (``echo="auto"`` does it for every
    call it named): the model matches results to calls by name and arguments.
    """

    _name: str = "native"
    syntax: CallSyntax
    args_key: str = "arguments"
    """The arguments' key in an echo (the one the dialect's calls use)."""
    _syntax_markers: tuple[str, ...] = ()
    """The syntax's own markers (openers, closers): escaped in payloads, forged inside calls."""

    def __init__(self, frame: ChatFrame, framing: Framing = "turn") -> None:
        if framing not in ("turn", "inline"):
            raise ValueError(f"framing must be 'turn' or 'inline', not {framing!r}")
        self.frame: Final = frame
        self.framing: Final[Framing] = framing

    def __repr__(self) -> str:
        return f"{type(self).__name__}(frame={self.frame.family!r}, framing={self.framing!r})"

    def __eq__(self, other: object) -> bool:
        return (type(other) is type(self) and isinstance(other, NativeDialect)
                and other.frame == self.frame and other.framing == self.framing
                and other.syntax == self.syntax)

    def __hash__(self) -> int:
        return hash((type(self), self.frame, self.framing, self.syntax))

    @property
    def name(self) -> str:
        """The dialect's short name (``hermes``, ``llama3``, ``mistral``, ``pythonic``)."""
        return self._name

    # -- what the model writes -------------------------------------------------------------
    def parser(self, *, transcript: bool = False) -> NativeParser:
        return NativeParser(self.syntax, self.frame, self.forged_markers, transcript=transcript,
                            read_item=self._read_item)

    def _read_item(self, content: str) -> tuple[str | None, str]:
        return None, content

    @property
    def forged_markers(self) -> tuple[str, ...]:
        """The result frames' openers and the frame's turn openers, lower-case (the model
        writing one is rolled back)."""
        marks = [tag[0].lower() for tag in self.frame.result_tags]
        marks += [t.lower() for t in self.frame.turn_openers]
        out: list[str] = []
        for m in marks:
            if m.startswith("<tool_response"):
                m = "<tool_response"
            if m.startswith("<|start_header_id|>"):
                m = "<|start_header_id|>"
            if m not in out:
                out.append(m)
        return tuple(out)

    def count_forged(self, sampled: str) -> int:
        low = _fold(sampled)
        return sum(low.count(f) for f in self.forged_markers)

    def close_call(self) -> str:
        """Trusted text that closes a call block the model left unfinished (per syntax)."""
        raise NotImplementedError

    def call_body(self, raw: str) -> str:
        """The call without its frame (per syntax)."""
        raise NotImplementedError

    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """A call block that :meth:`parser` reads back as this call (per syntax)."""
        raise NotImplementedError

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """The model's own tool section and the short asynclm rules (per syntax)."""
        raise NotImplementedError

    def format_tools(self, tools: str) -> str:
        """The tool list (``Toolbox.describe()``'s text) as the model's template writes it;
        placed verbatim by :meth:`system_prompt` (which formats it itself when given the
        describe text: ``system_prompt(format_tools(t)) == system_prompt(t)``)."""
        raise NotImplementedError

    # -- escaping ------------------------------------------------------------------------------
    @property
    def escape_markers(self) -> Markers:
        """The :class:`~asynclm.protocol.events.Markers` given to
        :func:`~asynclm.protocol.escape.escape_payload` (with every common chat-template tag,
        :data:`~asynclm.protocol.escape.CONTROL_TAGS`, and the ``<|`` prefix as ``extra``)."""
        syn = self._syntax_markers
        opener = syn[0] if syn else self.frame.end_of_turn[0]
        closer = syn[1] if len(syn) > 1 else opener
        forbidden = tuple(dict.fromkeys(
            (*self.forged_markers, *syn, *self.frame.end_of_turn,
             *(t[0] for t in self.frame.result_tags), *(t[1] for t in self.frame.result_tags))))
        return _escape_markers(opener, closer, self.frame, forbidden)

    def escape_payload(self, text: str) -> str:
        """``text`` with no marker of this dialect or its frame, no chat-template tag
        (:data:`~asynclm.protocol.escape.CONTROL_TAGS`) and no ``<|`` left in it
        (:func:`~asynclm.protocol.escape.escape_payload`): it can close no result frame, open
        no call and form no turn."""
        return escape_payload(text, self.escape_markers, extra=_EXTRA)

    # -- what the runtime writes ---------------------------------------------------------------
    def render_trap(self) -> str:
        """The frame's end-of-turn text (``<|im_end|>``, ``<|eot_id|>``, ``</s>``): in a chat
        dialect the model waits by ending its turn with calls pending. A real model samples it
        as its end-of-generation token (the runtime rolls it back, injects the results, and
        decoding goes on); a scripted model writes it as text, which the parser reports as a
        :class:`~asynclm.protocol.events.Trap`."""
        return self.frame.end_of_turn[0]

    def interrupt_markup(self, head: str) -> tuple[str, str]:
        """The trusted text around one escaped payload: the frame's item (turn framing) or
        inline item."""
        return self.frame.item(head, framing=self.framing)

    def render_interrupt(self, items: Sequence[Delivery]) -> list[Segment]:
        """One batch. Turn framing: the assistant turn is closed, one tool turn in the
        template's framing holds every item, a new assistant turn opens
        (:mod:`~asynclm.protocol.chat_frames`). Inline: each item in the assistant turn.
        Markup segments are trusted; each payload (with the plain characters the frame puts
        next to it, see ``payload_pre``/``payload_post``) is escaped and untrusted."""
        f = self.frame
        turn = self.framing == "turn"
        out: list[Segment] = []
        lead = f.turn_close + f.tool_open if turn else ""
        for k, item in enumerate(items):
            opening, pre, post, closing = f.item_parts(item.head, framing=self.framing)
            sep = f.item_sep if turn and k else ""
            out.append(Segment(lead + sep + opening, trusted=True))
            out.append(Segment(pre + self.escape_payload(item.payload) + post, trusted=False))
            lead = closing
        tail = f.tool_close + f.assistant_open if turn else ""
        if items:
            out.append(Segment(lead + tail, trusted=True))
        return [s for s in out if s.text]

    # -- payload wording -----------------------------------------------------------------------
    def _echo_call(self, body: str) -> dict[str, Any]:
        try:
            parsed = parse_body(body)
        except BodyError:
            return {"call": body}
        args: dict[str, Any] = dict(parsed.args)
        if parsed.pos:
            args = {"_positional": list(parsed.pos), **args}
        return {"name": parsed.fn, self.args_key: args}

    def echo(self, body: str, result: str, *, same_as: str | None = None) -> str:
        call = self._echo_call(body)
        if self.syntax.line_opener is LineOpener.JSON_OBJECT and "name" in call:
            call = {"call": call}
        head = dump_json(call)[:-1]
        note = ', "note": "same call as before, not run again"' if same_as is not None else ""
        return f'{head}{note}, "result": {json_value_text(result)}}}'

    def error(self, status: str, text: str | None) -> str:
        if text is None:
            msg = status
        else:
            msg = text if status == "error" else f"{status}: {text}"
        return dump_json({"error": msg})

    def message(self, sender: str, text: str) -> str:
        return dump_json({"message_from": sender, "text": text})

    def partial(self, result: str) -> str:
        return f'{{"partial_result": {json_value_text(result)}}}'

    # -- the system prompt ----------------------------------------------------------------------
    def _rules(self, futures: bool) -> str:
        """The short asynclm addition after the model's own tool section."""
        where = "as tool turns" if self.framing == "turn" else "inside your turn"
        text = (
            "Calls run in the background. You may write several calls before any result; "
            f"results arrive later {where}, in any order, each naming its call. To wait "
            "for results, end your turn. Never write a result yourself. When you have every "
            "result you need, answer the user."
        )
        return text + ("\n" + FUTURES_NOTE if futures else "")

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self._syntax_markers, *self.frame.special)))
