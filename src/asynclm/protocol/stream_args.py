"""Reading a call's arguments while the model writes them (sans-I/O).

A tool that takes its arguments as a stream (Conveyor-style partial execution: a code tool that
runs each statement as it is written) needs each argument the moment it is complete, before the
call block closes. :class:`BodyReader` reads a call *body* incrementally, Python call syntax
(``f(a=1, code="...")``) or JSON (``{"name": "f", "arguments": {...}}``), and reports:

* :class:`ArgValue` once per argument, when it is complete (the ``,`` or closing bracket after
  it is written): ``name`` is the keyword, or the 0-based index of a positional argument; the
  value is what :func:`~asynclm.protocol.body.parse_body` gives for it (nothing is evaluated).
* :class:`ArgLine` for a string argument being written: each of its complete lines (decoded,
  without the newline) as soon as the newline is written. The :class:`ArgValue` of the whole
  string still follows when it closes.

:attr:`BodyReader.fn` is the function name once it is known. Pieces are held back until then
(a JSON body may put ``"arguments"`` before ``"name"``). Once the body cannot be read (it would
not parse), :attr:`BodyReader.failed` is set and nothing more is reported: the call's final
parse decides its outcome. Values reported are as written; the final, validated arguments are
the call's own (the runtime hands them over when the block closes).

:class:`CmlArgumentsReader` wraps it for CML call blocks (``[CALL] id [HEAD] body [END]``):
fed the block's text from ``[CALL]`` on, it finds where the body starts and stops at ``[END]``.
A dialect exposes its reader as ``Dialect.arguments_reader()``.

Any chunking of the same text gives the same pieces, in the same order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from asynclm.errors import BodyError
from asynclm.protocol.body import MAX_BODY_CHARS, parse_body
from asynclm.protocol.events import DEFAULT_MARKERS, Markers

__all__ = [
    "ArgLine",
    "ArgPiece",
    "ArgValue",
    "ArgumentsReader",
    "BodyReader",
    "CmlArgumentsReader",
]


@dataclass(frozen=True, slots=True)
class ArgValue:
    """An argument whose value is complete: ``name`` (a keyword, or a positional index)."""

    name: str | int
    value: Any


@dataclass(frozen=True, slots=True)
class ArgLine:
    """One complete line (decoded, without its newline) of the string argument ``name`` while
    it is being written."""

    name: str | int
    line: str


ArgPiece = ArgValue | ArgLine


class ArgumentsReader(Protocol):
    """What ``Dialect.arguments_reader()`` returns: fed the text of one call block as the model
    writes it (from the start of the block), it reports each argument once it is complete."""

    @property
    def fn(self) -> str | None:
        """The function name, once it is known."""
        ...

    @property
    def failed(self) -> bool:
        """The body can no longer be read incrementally (nothing more will be reported)."""
        ...

    def feed(self, text: str) -> list[ArgPiece]:
        """The pieces that ``text`` (the next part of the block) completes."""
        ...


_PY_NAME_EQ = re.compile(r"\s*([^\W\d]\w*)\s*=\s*\Z")
_JSON_KEY = re.compile(r'\s*"((?:[^"\\]|\\.)*)"\s*:\s*\Z', re.DOTALL)
_PY_PREFIX = re.compile(r"[A-Za-z]{0,2}\Z")
_NAME_CHAR = re.compile(r"\w")


class BodyReader:
    """Incremental reader of one call body (see the module doc)."""

    def __init__(self) -> None:
        self._buf = ""
        self._i = 0  # next character to scan
        self._mode: str | None = None  # "py" or "json", from the first non-space character
        self._depth = 0
        self._quote: str | None = None  # the open string's quote, if in one
        self._str_at = 0  # where the open string's prefix starts (its quote for JSON)
        self._content_at = 0  # where its content starts
        self._cut = 0  # content already reported as lines (index into _buf)
        self._line_name: str | int | None = None  # the argument the open string is, if any
        self._lines_sent = 0
        self._comment = False
        self._seg = 0  # start of the current argument
        self._npos = 0  # positional arguments seen
        self._args_depth = 1  # depth of the argument list (JSON: 2, inside "arguments")
        self._in_args = False  # JSON: inside the "arguments" object
        self._key_seg = 0  # JSON: start of the current top-level member
        self._fn: str | None = None
        self._held: list[ArgPiece] = []  # pieces before the function name is known
        self._failed = False
        self._done = False

    @property
    def fn(self) -> str | None:
        return self._fn

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def done(self) -> bool:
        """The body's closing bracket has been read."""
        return self._done

    def feed(self, text: str) -> list[ArgPiece]:
        if self._failed or self._done or not text:
            return []
        self._buf += text
        if len(self._buf) > MAX_BODY_CHARS:
            self._fail()
            return []
        out: list[ArgPiece] = []
        try:
            self._scan(out)
        except BodyError:
            self._fail()
            return []
        if self._fn is None:
            self._held += out
            return []
        if self._held:
            out, self._held = self._held + out, []
        return out

    def _fail(self) -> None:
        self._failed = True
        self._held = []

    # -- scanning ------------------------------------------------------------------------
    def _scan(self, out: list[ArgPiece]) -> None:
        buf, n = self._buf, len(self._buf)
        if self._mode is None:
            stripped = buf.lstrip()
            if not stripped:
                return
            self._mode = "json" if stripped[0] == "{" else "py"
            if self._mode == "json":
                self._args_depth = 2
        i = self._i
        while i < n:
            c = buf[i]
            if self._quote is not None:
                q = self._quote
                j = self._in_string(i)
                if self._quote is None:  # it closed: its last complete lines, before its value
                    self._quote = q
                    self._lines(out, j - len(q))
                    self._quote = None
                    i = j
                    continue
                if j < 0:  # the string stays open: its lines so far, then wait for more
                    self._lines(out, n)
                    self._i = n
                    return
                self._lines(out, j)  # wait for more text (an escape or a quote cut by the chunk)
                self._i = j
                return
            if self._comment:
                if c == "\n":
                    self._comment = False
                i += 1
                continue
            if c == "#" and self._mode == "py":
                self._comment = True
                i += 1
                continue
            if c == '"' or (c == "'" and self._mode == "py"):
                q = c
                if self._mode == "py":
                    if n - i < 3 and buf[i:] == c * (n - i):
                        self._i = i  # maybe a triple quote: wait
                        return
                    if buf.startswith(c * 3, i):
                        q = c * 3
                self._open_string(i, q)
                i += len(q)
                continue
            if c in "([{":
                if self._mode == "py" and self._depth == 0:
                    if c != "(":
                        raise BodyError("not a call")
                    fn = buf[:i].strip()
                    if not fn:
                        raise BodyError("no function name")
                    self._fn = fn
                    self._seg = i + 1
                self._depth += 1
                if self._mode == "json" and self._depth == 1:
                    self._key_seg = i + 1
                if self._mode == "json" and self._depth == 2 and self._arguments_key(i):
                    self._in_args = True
                    self._seg = i + 1
                i += 1
                continue
            if c in ")]}":
                if self._depth == self._args_depth and self._args_open():
                    self._argument(self._seg, i, out)
                    if self._mode == "json":
                        self._in_args = False
                        self._key_seg = i + 1  # the member ends at the next comma
                if self._mode == "json" and self._depth == 1:
                    self._member(self._key_seg, i)
                self._depth -= 1
                if self._depth < 0:
                    raise BodyError("unbalanced")
                if self._depth == 0:
                    self._done = True
                    self._i = i + 1
                    return
                i += 1
                continue
            if c == ",":
                if self._depth == self._args_depth and self._args_open():
                    self._argument(self._seg, i, out)
                    self._seg = i + 1
                elif self._mode == "json" and self._depth == 1:
                    self._member(self._key_seg, i)
                    self._key_seg = i + 1
            i += 1
        self._i = i

    def _args_open(self) -> bool:
        return self._mode == "py" or self._in_args

    def _arguments_key(self, i: int) -> bool:
        m = _JSON_KEY.match(self._buf, self._key_seg, i)
        return m is not None and m.group(1) in ("arguments", "args", "parameters")

    def _member(self, a: int, b: int) -> None:
        """A complete top-level JSON member: the function name if it is ``"name"``."""
        seg = self._buf[a:b].strip()
        if not seg or self._fn is not None:
            return
        try:
            obj = json.loads("{" + seg + "}")
        except ValueError:
            raise BodyError("invalid JSON") from None
        name = obj.get("name") if isinstance(obj, dict) else None
        if isinstance(name, str) and name.strip():
            self._fn = name

    def _argument(self, a: int, b: int, out: list[ArgPiece]) -> None:
        seg = self._buf[a:b]
        if not seg.strip():
            return
        if self._mode == "py":
            parsed = parse_body("f(" + seg + ")")
            if parsed.pos:
                out.append(ArgValue(self._npos, parsed.pos[0]))
                self._npos += 1
            for k, v in parsed.args.items():
                out.append(ArgValue(k, v))
        else:
            parsed = parse_body('{"name": "f", "arguments": {' + seg + "}}")
            for k, v in parsed.args.items():
                out.append(ArgValue(k, v))

    # -- strings -------------------------------------------------------------------------
    def _open_string(self, i: int, quote: str) -> None:
        buf = self._buf
        start = i
        if self._mode == "py":
            m = _PY_PREFIX.search(buf, 0, i)
            if m is not None and m.group(0) and (
                m.start() == 0 or not _NAME_CHAR.match(buf[m.start() - 1])
            ):
                start = m.start()
        self._quote = quote
        self._str_at = start
        self._content_at = i + len(quote)
        self._cut = self._content_at
        self._line_name = None
        self._lines_sent = 0
        if self._depth == self._args_depth and self._args_open():
            before = buf[self._seg:start]
            if self._mode == "py":
                m2 = _PY_NAME_EQ.match(before)
                if m2 is not None:
                    self._line_name = m2.group(1)
                elif not before.strip():
                    self._line_name = self._npos
            else:
                m3 = _JSON_KEY.match(before)
                if m3 is not None:
                    self._line_name = json.loads('"' + m3.group(1) + '"')

    def _in_string(self, i: int) -> int:
        """Scan the open string from ``i``: the index after its closing quote, -1 if the text
        ends inside it, or ``i`` itself if what follows must wait for more text."""
        buf, q, n = self._buf, self._quote, len(self._buf)
        assert q is not None
        while i < n:
            c = buf[i]
            if c == "\\":
                if i + 1 >= n:
                    return i
                i += 2
                continue
            if c == q[0]:
                if len(q) == 1:
                    self._quote = None
                    return i + 1
                if buf.startswith(q, i):
                    self._quote = None
                    return i + 3
                if n - i < 3 and buf[i:] == c * (n - i):
                    return i
            i += 1
        return -1

    def _lines(self, out: list[ArgPiece], end: int) -> None:
        """Report the complete lines of the open string argument written before ``end``."""
        if self._line_name is None or self._quote is None:
            return
        buf, q = self._buf, self._quote
        cut = _last_line_end(buf, self._cut, end, raw_newlines=len(q) == 3)
        if cut <= self._cut:
            return
        self._cut = cut
        prefix = buf[self._str_at:self._content_at - len(q)]
        content = buf[self._content_at:cut]
        if self._mode == "py":
            text = parse_body(f"f({prefix}{q}{content}{q})").pos[0]
        else:
            try:
                text = json.loads('"' + content + '"')
            except ValueError:
                raise BodyError("invalid JSON string") from None
        if not isinstance(text, str):
            return
        lines = text.split("\n")[:-1]
        for line in lines[self._lines_sent:]:
            out.append(ArgLine(self._line_name, line))
        self._lines_sent = len(lines)


def _last_line_end(buf: str, a: int, b: int, *, raw_newlines: bool) -> int:
    """The index just after the last newline of ``buf[a:b]`` (a raw one, or a ``\\n`` escape
    not itself escaped), or ``a`` if there is none."""
    best = a
    i = a
    while i < b:
        c = buf[i]
        if c == "\\":
            if i + 1 < b and buf[i + 1] == "n":
                best = i + 2
            i += 2
            continue
        if c == "\n" and raw_newlines:
            best = i + 1
        i += 1
    return best if best <= b else a


def cut_at_closer(text: str, closer: str) -> tuple[str, str, bool]:
    """``text`` (a block's body, as it arrives) up to ``closer``: (what may be read now, what is
    held back because it may begin ``closer``, whether ``closer`` was found)."""
    end = text.find(closer)
    if end >= 0:
        return text[:end], "", True
    for k in range(min(len(closer) - 1, len(text)), 0, -1):
        if closer.startswith(text[-k:]):
            return text[:-k], text[-k:], False
    return text, "", False


class CmlArgumentsReader:
    """Reads a CML call block's arguments as it is written (see the module doc): fed the text
    from ``[CALL]`` on, it passes the body (after ``[HEAD]``, or after ``[CALL]`` when the
    block has no id) to a :class:`BodyReader` and ignores everything from ``[END]`` on."""

    def __init__(self, markers: Markers = DEFAULT_MARKERS) -> None:
        self._m = markers
        self._pre = ""  # the block before its body
        self._body: BodyReader | None = None
        self._held = ""  # a possible partial end marker
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
        m = self._m
        if self._body is None:
            self._pre += text
            head = self._pre.find(m.head)
            if head >= 0:
                text = self._pre[head + len(m.head):]
            else:
                start = self._pre.find(m.call)
                after = start + len(m.call) if start >= 0 else 0
                if not any(c in self._pre[after:] for c in "({"):
                    if len(self._pre) > 4096:
                        self._ended = True
                    return []
                text = self._pre[after:]
            self._pre = ""
            self._body = BodyReader()
        text, self._held, self._ended = cut_at_closer(self._held + text, m.end)
        return self._body.feed(text)
