"""The incremental CML parser: a sans-I/O state machine (in the style of h11).

Feed it text as it is sampled; it returns events as soon as they are certain::

    p = Parser()
    for piece in stream:
        for event in p.feed(piece):
            ...
    events = p.close()

Contracts
---------
* **Chunking.** Any split of the same stream yields the same events, except that :class:`Text`
  is emitted as soon as it cannot be the start of a marker, so where Text events are cut
  depends on the chunks: coalesce adjacent Text events before comparing. Within one
  ``feed``/``close`` result adjacent Text events are already merged.
* **Offsets** are character offsets into the stream fed to this parser (``end`` exclusive).
  :attr:`Parser.offset` is the number of characters accepted so far, including a held-back
  partial marker.
* **Markers** are recognised wherever they occur, also inside string literals of a call body
  (they are control sequences; with special tokens they are single tokens). ``->`` and newlines
  inside a call are string-aware (``f(x="a -> b")`` is fine).
* **Blocks.** ``[CALL]`` emits :class:`CallOpened` at once; an optional ``id [HEAD]`` follows;
  ``[END]`` emits :class:`Call` (``id`` stripped, empty -> ``None``) or :class:`MalformedCall`.
  The id follows :mod:`asynclm.protocol.ids`; one word that is not a valid id (``a:b``) leaves
  ``id`` ``None`` and is kept in ``written_id`` (the runtime names the call); an id slot with
  spaces or longer than 64 characters makes the call a MalformedCall "invalid call id".
  ``raw`` is the block text from ``[CALL]`` through ``[END]``. A call whose content (between
  ``[CALL]`` and ``[END]``) reaches :data:`MAX_CALL_CHARS` characters is a MalformedCall "call too
  long" at its ``[END]``; content past the limit is neither kept nor lexed (bounded memory and
  work), only markers are still recognised. ``[TRAP]`` + optional whitespace (spaces, tabs,
  newlines) + ``[END]`` emits :class:`Trap`; if anything else follows ``[TRAP]``, Trap is
  emitted with ``end`` right after ``[TRAP]`` and parsing continues with that text. Stray
  ``[END]``/``[HEAD]`` outside a block are text.
* **Enforcement** (``transcript=False``: the parser reads what the model samples). Outside a
  block, a forbidden prefix (``markers.forbidden``, ASCII letters case-insensitive) or the
  interrupt marker
  yields ``Forged(where="outside")``. Inside a call, ``->`` (outside string literals), any marker
  other than the first ``[HEAD]`` and ``[END]``, a forbidden prefix, or a newline after a body that
  already parses yields ``Forged(where="call", call_raw=...)`` immediately followed by the
  :class:`Call`/:class:`MalformedCall` for the body written so far (``end`` = the forgery's
  ``start``; the runtime closes the block itself).
  **After any Forged event the parser drops everything from ``start`` on** -- what it had
  buffered and the rest of that ``feed`` call -- and is back outside any block at offset
  ``start``: the next ``feed`` continues there (the runtime rolls the model back to ``start``).
* **Transcript mode** (``transcript=True``, for whole contexts including injected text): no
  Forged events; ``[INTR] id [HEAD] payload [END]`` emits :class:`Interrupt` (payload = the text
  between ``[HEAD]`` and ``[END]`` minus one separating space each side; inside an interrupt only
  ``[END]`` and the first ``[HEAD]`` are markers, so nothing in a payload can become a call). A
  ``[CALL]``/``[TRAP]``/``[INTR]`` inside a call ends it as a MalformedCall and is then parsed.
* **End of stream** (:meth:`Parser.close`): held-back text is flushed; an unterminated call is a
  MalformedCall "unterminated call"; a pending ``[TRAP]`` is a Trap; an unterminated interrupt
  (transcript mode) is Text.
* **Cost.** Each ``feed`` does O(len(chunk) + longest marker) work, amortized, plus at most
  three body parses per call (at the first newline after a closed top-level bracket group, once
  before and once after ``[HEAD]``; at ``[END]``); a call body is under :data:`MAX_CALL_CHARS`
  characters. Call text is lexed (strings, brackets) only when a ``-`` or a newline makes that
  matter: text without either is buffered, up to 1024 characters, and needs no lexing at all if
  ``[HEAD]`` or ``[END]`` comes first. None of this changes an event or the feed that returns it.
* **Safe points.** :attr:`Parser.at_safe_point` is true outside every block with no partial
  marker held back: the only moments the runtime may inject text.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from asynclm.protocol._tables import (
    CLOSERS,
    CODE,
    COMMENT,
    NEED,
    OPENERS,
    STR,
    Hit,
    Kind,
    Need,
    char_class,
    tables,
)
from asynclm.protocol.body import BodyError, ParsedBody, parse_body
from asynclm.protocol.events import (
    DEFAULT_MARKERS,
    Call,
    CallOpened,
    Event,
    Forged,
    Interrupt,
    MalformedCall,
    Markers,
    Text,
    Trap,
)
from asynclm.protocol.ids import MAX_ID_CHARS, is_call_id

__all__ = ["MAX_CALL_CHARS", "Parser"]

MAX_CALL_CHARS: Final = 64 * 1024
"""Most characters between ``[CALL]`` and ``[END]``; longer calls are MalformedCall."""


class _S(enum.Enum):
    OUTSIDE = 0
    CALL = 1
    TRAP = 2
    INTR = 3
    CLOSED = 4


class _R(enum.Enum):
    CONTINUE = 0  # state changed: dispatch again
    HOLD = 1  # need more input: keep data[i:] buffered
    DONE = 2  # consumed everything
    FORGED = 3  # a Forged event was emitted: drop the rest


# Enum members as module constants: on Python 3.11 reading ``_S.OUTSIDE`` costs about 0.1 µs,
# more than the rest of a per-token fast path's checks.
OUTSIDE, CALL, TRAP, INTR, CLOSED = _S
CONTINUE, HOLD, DONE, FORGED = _R
K_CALL, K_TRAP, K_END, K_HEAD, K_FORGED, K_STRAY = (
    Kind.CALL, Kind.TRAP, Kind.END, Kind.HEAD, Kind.FORGED, Kind.STRAY
)


_NONWS = re.compile(r"\S")
_SPACE = re.compile(r"\s")
_WS_RUN = re.compile(r"[ \t\r\n]*")  # whitespace between tokens (ASCII, never a marker)
_TRAP_STOP = re.compile(r"[^ \t\r\n]")
_LEX_TRIGGER = re.compile(r"[-\n]")  # what makes a call body's lexer state matter

# ``Text(text, start, end)`` built through its slot descriptors, inline on the per-token fast
# path (and in the benchmark's ceiling, which mirrors it): the same object at about half the
# cost of the frozen dataclass's ``__init__``
_new = object.__new__
_set_text, _set_start, _set_end = (Text.__dict__[f].__set__ for f in ("text", "start", "end"))


class Parser:
    """Incremental CML parser. See the module docstring for the full contract.

    ``markers`` lets a model profile use other marker strings (e.g. single special tokens);
    ``transcript=True`` parses whole contexts (interrupts allowed, no enforcement).
    """

    _defer_max = 1024  # most call text held back unlexed (see Cost); 0: lex every chunk now

    def __init__(self, *, markers: Markers = DEFAULT_MARKERS, transcript: bool = False) -> None:
        self.markers: Final = markers
        self.transcript: Final = transcript
        (self._t_out, self._t_call, self._t_intr, self._t_trap, self._rx_lex, call_stop) = (
            tables(markers, transcript)
        )
        self._call_stop = call_stop.search
        self._lex_trigger = _LEX_TRIGGER.search
        # the characters that can start a marker outside any block, for the fast path: two
        # plain ``in`` tests (the default markers have two), then a regex for any others
        firsts = sorted(self._t_out.firsts)
        self._c0, self._c1 = firsts[0], firsts[min(1, len(firsts) - 1)]
        self._rx_more = char_class(set(firsts[2:])).search if len(firsts) > 2 else None

        self._state = OUTSIDE
        self._buf = ""  # held-back input, starting at stream offset self._pos
        self._deferred = False  # _buf holds only deferred call text (no partial marker)
        self._pos = 0
        self._base = 0  # stream offset of data[0] during a run
        self._reset_block()

    # -- public -----------------------------------------------------------------------------

    @property
    def in_call(self) -> bool:
        """True between ``[CALL]`` and the end of that call block."""
        return self._state is CALL

    @property
    def in_block(self) -> bool:
        """True inside any block: a call, a ``[TRAP]`` awaiting its ``[END]``, or (transcript
        mode) an interrupt."""
        return self._state is not OUTSIDE and self._state is not CLOSED

    @property
    def at_safe_point(self) -> bool:
        """True when the runtime may inject: not inside a block and no partial marker held."""
        return (self._state is OUTSIDE or self._state is CLOSED) and not self._buf

    @property
    def offset(self) -> int:
        """Characters of the stream accepted so far (after a Forged event: its ``start``)."""
        return self._pos + len(self._buf)

    def feed(self, text: str) -> list[Event]:
        """Consume ``text``; return the events it completes (see the module contract)."""
        state = self._state
        if state is OUTSIDE:
            if (
                not self._buf
                and text
                and self._c0 not in text
                and self._c1 not in text
                and (self._rx_more is None or self._rx_more(text) is None)
            ):
                # fast path: plain text that cannot start a marker
                start = self._pos
                self._pos = end = start + len(text)
                t = _new(Text)
                _set_text(t, text)
                _set_start(t, start)
                _set_end(t, end)
                return [t]
        elif state is CLOSED:
            raise RuntimeError("feed() after close()")
        elif (
            state is CALL
            and (self._deferred or not self._buf)
            and len(self._buf) < self._defer_max
            and self._call_stop(text) is None
        ):
            # fast path: call text without a character that can end or forge the call
            # cannot complete an event; hold it, looked at with the next chunk that can
            self._buf += text
            self._deferred = True
            return []
        if not text:
            return []
        self._deferred = False
        events: list[Event] = []
        self._run(self._buf + text, events, final=False)
        return _coalesce(events) if len(events) > 1 else events

    def close(self) -> list[Event]:
        """End of stream: flush held text and close any open block. Idempotent."""
        if self._state is CLOSED:
            return []
        events: list[Event] = []
        data, self._buf = self._buf, ""
        self._run(data, events, final=True)
        end = self._pos + len(self._buf)
        if self._state is CALL:
            events.append(self._finish_call(end, self._raw(), unterminated=True))
        elif self._state is TRAP:
            events.append(Trap(self._block_start, self._trap_end))
            ws = "".join(self._pieces)
            if ws:
                events.append(Text(ws, self._trap_end, self._trap_end + len(ws)))
        elif self._state is INTR:
            raw = self._raw()
            events.append(Text(raw, self._block_start, self._block_start + len(raw)))
        self._state = CLOSED
        self._reset_block()
        return _coalesce(events)

    # -- machinery ----------------------------------------------------------------------------

    def _reset_block(self) -> None:
        self._block_start = 0
        self._pieces: list[str] = []
        self._stored = 0  # chars kept in _pieces (+ id and head), at most MAX_CALL_CHARS
        self._content_len = 0  # chars of block content seen
        self._head_seen = False
        self._id_text = ""
        self._too_long = False
        self._trap_end = 0
        self._scanned = 0
        self._lex_reset()

    def _lex_reset(self) -> None:
        self._mode = CODE
        self._quote = ""
        self._depth = 0
        self._closed_group = False  # a top-level bracket group has closed
        self._dead = False  # the body can no longer become parseable
        self._dirty = False  # non-whitespace content since the last parse attempt
        self._lazy = True  # no "-" or newline has needed the lexer yet (see _unlexed)

    def _reset_after_forge(self, start: int) -> None:
        self._state = OUTSIDE
        self._reset_block()
        self._buf = ""
        self._pos = start

    def _run(self, data: str, events: list[Event], *, final: bool) -> None:
        self._base = self._pos
        i = 0
        while True:
            state = self._state
            if state is OUTSIDE:
                i, r = self._outside(data, i, events, final)
            elif state is CALL:
                i, r = self._call(data, i, events, final)
            elif state is TRAP:
                i, r = self._trap(data, i, events, final)
            else:
                i, r = self._intr(data, i, events, final)
            if r is CONTINUE:
                continue
            if r is FORGED:
                return
            self._pos = self._base + i
            self._buf = data[i:]
            return

    def _text(self, data: str, a: int, b: int, events: list[Event]) -> None:
        if b > a:
            events.append(Text(data[a:b], self._base + a, self._base + b))

    # outside any block
    def _outside(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        p, r = self._t_out.find(data, i, final)
        self._text(data, i, p, ev)
        if r is None:
            return p, DONE
        if r is NEED:
            return p, HOLD
        kind, s = r
        start, e = self._base + p, p + len(s)
        if kind is K_FORGED:
            ev.append(Forged("outside", s, start))
            self._reset_after_forge(start)
            return p, FORGED
        self._reset_block()
        self._block_start = start
        if kind is K_CALL:
            ev.append(CallOpened(start, self._base + e))
            self._state = CALL
        elif kind is K_TRAP:
            self._state = TRAP
            self._trap_end = self._base + e
        else:
            self._state = INTR
        return e, CONTINUE

    # after [TRAP], waiting for optional whitespace and [END]
    def _trap(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        m = _TRAP_STOP.search(data, i)
        if m is None:
            self._pieces.append(data[i:])
            return len(data), DONE
        p = m.start()
        if p > i:
            self._pieces.append(data[i:p])
        r = self._t_trap.match(data, p, final)
        if r is NEED:
            return p, HOLD
        if r is not None:
            _, s = r
            ev.append(Trap(self._block_start, self._base + p + len(s)))
        else:
            ev.append(Trap(self._block_start, self._trap_end))
            ws = "".join(self._pieces)
            if ws:
                ev.append(Text(ws, self._trap_end, self._trap_end + len(ws)))
            s = ""
        self._state = OUTSIDE
        self._reset_block()
        return p + len(s), CONTINUE

    # inside an interrupt (transcript mode only)
    def _intr(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        cf = i
        while True:
            p, r = self._t_intr.find(data, i, final)
            if r is None:
                self._commit(data, cf, p, limit=False)
                return p, DONE
            if r is NEED:
                self._commit(data, cf, p, limit=False)
                return p, HOLD
            kind, s = r
            if kind is K_HEAD and self._head_seen:
                i = p + len(s)
                continue
            self._commit(data, cf, p, limit=False)
            if kind is K_HEAD:
                self._head_seen = True
                self._id_text = "".join(self._pieces)
                self._pieces = []
                i = cf = p + len(s)
                continue
            payload = "".join(self._pieces)
            if payload.startswith(" "):
                payload = payload[1:]
            if payload.endswith(" "):
                payload = payload[:-1]
            ident = self._id_text.strip() if self._head_seen else ""
            ev.append(Interrupt(ident or None, payload, self._block_start, self._base + p + len(s)))
            self._state = OUTSIDE
            self._reset_block()
            return p + len(s), CONTINUE

    def _commit(self, data: str, a: int, b: int, *, limit: bool = True) -> None:
        """Add ``data[a:b]`` to the block content (calls keep at most MAX_CALL_CHARS)."""
        if b <= a:
            return
        self._content_len += b - a
        if not limit:
            self._pieces.append(data[a:b])
            return
        room = MAX_CALL_CHARS - self._stored
        if room > 0:
            piece = data[a : a + min(room, b - a)]
            self._pieces.append(piece)
            self._stored += len(piece)

    def _raw(self) -> str:
        """The block text so far, from its opening marker."""
        opener = self.markers.call if self._state is CALL else self.markers.interrupt
        head = self._id_text + self.markers.head if self._head_seen else ""
        tail = "…" if self._too_long else ""
        return opener + head + "".join(self._pieces) + tail

    def _body_so_far(self, data: str, cf: int, p: int) -> str:
        return "".join(self._pieces) + data[cf:p]

    def _finish_call(
        self,
        end: int,
        raw: str,
        *,
        parsed: ParsedBody | None = None,
        unterminated: bool = False,
    ) -> Call | MalformedCall:
        start = self._block_start
        ident: str | None = None
        written: str | None = None
        if self._head_seen:
            t = self._id_text.strip()
            if is_call_id(t):
                ident = t
            elif t and (len(t) > MAX_ID_CHARS or _SPACE.search(t)):
                return MalformedCall(
                    None,
                    raw,
                    f"invalid call id {t[:80]!r}: ids are 1-64 letters, digits, _ and -",
                    start,
                    end,
                )
            elif t:
                written = t  # one word, not an id (a:b, math.factorial): the runtime names it
        if unterminated:
            return MalformedCall(ident, raw, "unterminated call", start, end, written)
        if self._too_long:
            return MalformedCall(
                ident, raw, f"call too long (over {MAX_CALL_CHARS} characters)", start, end,
                written,
            )
        if parsed is None:
            try:
                parsed = parse_body("".join(self._pieces))
            except BodyError as e:
                return MalformedCall(ident, raw, str(e), start, end, written)
        return Call(ident, parsed.fn, parsed.args, raw, start, end, parsed.pos, written)

    def _forge_call(
        self,
        data: str,
        cf: int,
        p: int,
        marker: str,
        ev: list[Event],
        parsed: ParsedBody | None = None,
    ) -> tuple[int, _R]:
        self._commit(data, cf, p)
        start = self._base + p
        raw = self._raw()
        ev.append(Forged("call", marker, start, raw))
        ev.append(self._finish_call(start, raw, parsed=parsed))
        self._reset_after_forge(start)
        return p, FORGED

    def _nonws(self) -> None:
        if self._closed_group and self._depth == 0:
            self._dead = True
        self._dirty = True

    # inside a call
    def _call(self, data: str, i: int, ev: list[Event], final: bool) -> tuple[int, _R]:
        n = len(data)
        cf = i  # data[cf:] not yet committed to the content
        model = not self.transcript
        firsts = self._t_call.firsts
        lexing = model  # transcript mode enforces nothing: no need to lex the body
        while True:
            r: Hit | Need | None = None
            if self._too_long or not lexing:
                p, r = self._t_call.find(data, i, final)
                if r is None:
                    self._commit(data, cf, p)
                    return p, DONE
                c = ""
            elif i == cf and (skip := self._unlexed(data, i, final)) is not None:
                p, r = skip
                if r is None or r is NEED:
                    # nothing in data[i:] needs the lexer yet: hold it back, lexed when a
                    # chunk brings a "-" or a newline; scanning resumes at p
                    self._deferred = r is None
                    self._scanned = p - i
                    return i, HOLD
                c = ""  # a marker with nothing before it that needs the lexer
            else:
                lim = cf + MAX_CALL_CHARS - self._content_len  # first index over the limit
                if self._mode == CODE:
                    key = "dead" if self._dead else "closed" if self._closed_group else "open"
                    m = self._rx_lex[(CODE, key)].search(data, i)
                else:
                    m = self._rx_lex[(self._mode, self._quote)].search(data, i)
                stop = n if m is None else m.start()
                if stop >= lim and n > lim:
                    # the lexer never looks at characters past the limit
                    self._lex_segment(data, i, max(i, lim))
                    self._too_long = True
                    i = max(i, lim)
                    continue
                self._lex_segment(data, i, stop)
                if m is None:
                    self._commit(data, cf, n)
                    return n, DONE
                p = stop
                c = data[p]
                if c in firsts:
                    r = self._t_call.match(data, p, final)
            if r is NEED:
                self._commit(data, cf, p)
                return p, HOLD
            if r is not None:
                kind, s = r
                if kind is K_END:
                    self._commit(data, cf, p)
                    e = p + len(s)
                    raw = self._raw() + s
                    ev.append(self._finish_call(self._base + e, raw))
                    self._state = OUTSIDE
                    self._reset_block()
                    return e, CONTINUE
                if kind is K_HEAD and not self._head_seen:
                    self._commit(data, cf, p)
                    self._head_seen = True
                    self._id_text = "".join(self._pieces)
                    self._pieces = []
                    self._content_len += len(s)
                    self._stored += len(s)
                    self._lex_reset()
                    i = cf = p + len(s)
                    continue
                if model:
                    return self._forge_call(data, cf, p, s, ev)
                if kind is K_STRAY:
                    self._commit(data, cf, p)
                    ev.append(
                        MalformedCall(
                            None,
                            self._raw(),
                            f"unterminated call: {s} before {self.markers.end}",
                            self._block_start,
                            self._base + p,
                        )
                    )
                    self._state = OUTSIDE
                    self._reset_block()
                    return p, CONTINUE
                # a second [HEAD] in transcript mode: content
                i = p + len(s)
                continue
            # -- body lexer --
            mode = self._mode
            if mode == CODE or mode == COMMENT:
                if c == "\n":
                    self._mode = CODE
                    if model and self._closed_group and self._dirty and not self._dead:
                        self._dirty = False
                        try:
                            parsed = parse_body(self._body_so_far(data, cf, p))
                        except BodyError:
                            pass
                        else:
                            return self._forge_call(data, cf, p, "\n", ev, parsed)
                    # whitespace after a newline changes nothing: skip it in one step
                    i = _WS_RUN.match(data, p + 1).end()  # type: ignore[union-attr]
                    continue
                if c == "-":
                    if p + 1 < n:
                        if model and data[p + 1] == ">":
                            return self._forge_call(data, cf, p, "->", ev)
                    elif model and not final:
                        self._commit(data, cf, p)
                        return p, HOLD
                    if mode == CODE:
                        self._nonws()
                    i = p + 1
                    continue
                if mode == COMMENT:
                    i = p + 1
                    continue
                if c == "#":
                    self._mode = COMMENT
                    i = p + 1
                    continue
                if c == "'" or c == '"':
                    if data.startswith(c * 3, p):
                        self._nonws()
                        self._mode, self._quote = STR, c * 3
                        i = p + 3
                        continue
                    if not final and n - p < 3 and data[p:] == c * (n - p):
                        self._commit(data, cf, p)
                        return p, HOLD
                    self._nonws()
                    self._mode, self._quote = STR, c
                    i = p + 1
                    continue
                self._nonws()
                if c in OPENERS:
                    self._depth += 1
                elif c in CLOSERS:
                    self._depth -= 1
                    if self._depth == 0:
                        self._closed_group = True
                    elif self._depth < 0:
                        self._dead = True
                i = p + 1
                continue
            # string mode
            self._dirty = True
            q = self._quote
            if c == "\\":
                if p + 1 < n:
                    i = p + 1 if data[p + 1] in firsts else p + 2
                elif final:
                    i = p + 1
                else:
                    self._commit(data, cf, p)
                    return p, HOLD
                continue
            if c == "\n" and len(q) == 1:
                # a newline ends a single-quoted string: Python rejects it, so will parse_body
                self._mode, self._quote = CODE, ""
                self._dead = True
                i = p + 1
                continue
            if c == q[0]:
                if data.startswith(q, p):
                    self._mode, self._quote = CODE, ""
                    i = p + len(q)
                    continue
                if not final and n - p < len(q) and q.startswith(data[p:]):
                    self._commit(data, cf, p)
                    return p, HOLD
            i = p + 1

    def _unlexed(self, data: str, i: int, final: bool) -> tuple[int, Hit | Need | None] | None:
        """The next marker ``(p, hit)`` (``NEED``, or ``None`` with ``p = len(data)``) when the
        lexer need not see ``data[i:p]``, else ``None``.

        The lexer (string and bracket state) matters only to ``->`` and to a newline: text
        without either, up to ``[END]`` (which ends the block) or the first ``[HEAD]`` (which
        resets the lexer), needs no lexing at all; up to a partial marker or the end of the
        chunk, it is held back (at most ``_defer_max`` characters) for the lexer to see with
        what follows. ``data[i:i + _scanned]`` is held-back text already known to hold neither a
        marker nor ``-`` nor a newline, so that no character is scanned twice. Once a ``-`` or a
        newline has needed the lexer, the rest of that body (or id) is lexed as it comes.
        """
        k, self._scanned = i + self._scanned, 0
        if final or not self._defer_max or not self._lazy:
            return None
        trigger = self._lex_trigger(data, k)
        if trigger is None:
            p, r = self._t_call.find(data, k, final)
            if (r is None or r is NEED) and len(data) - i > self._defer_max:
                return None
        else:  # only a whole marker before the trigger spares the lexer
            p, r = self._t_call.find(data, k, final, trigger.start())
            if r is None or r is NEED:
                # a body with "-" or newlines: lex the rest of it as it comes (until a [HEAD]
                # resets the lexer), rather than hold text back only to lex it anyway
                self._lazy = False
                return None
        if p - i >= MAX_CALL_CHARS - self._content_len:
            return None
        return p, r

    def _lex_segment(self, data: str, a: int, b: int) -> None:
        """Account for ``data[a:b]``, which holds no character the lexer reacts to."""
        if b <= a:
            return
        if self._mode == CODE:
            if _NONWS.search(data, a, b):
                self._nonws()
        elif self._mode == STR:
            self._dirty = True


def _coalesce(events: list[Event]) -> list[Event]:
    """Merge adjacent Text events (contiguous offsets)."""
    prev = False
    for e in events:  # the common case: no two Text events in a row, nothing to merge
        is_text = type(e) is Text
        if is_text and prev:
            break
        prev = is_text
    else:
        return events
    out: list[Event] = []
    run: list[Text] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append(Text("".join(t.text for t in run), run[0].start, run[-1].end))
        run.clear()

    for e in events:
        if isinstance(e, Text):
            if run and run[-1].end != e.start:
                flush()
            run.append(e)
        else:
            flush()
            out.append(e)
    flush()
    return out
