"""Marker tables for the CML parser: which markers are recognised in each parser state, how
they are found in a chunk (also as a partial marker at its end), and the lexer's character
classes inside a call body. Built once per marker set and mode, immutable, shared."""

from __future__ import annotations

import enum
import functools
import re
from typing import Final

from asynclm.protocol.events import Markers


class Kind(enum.Enum):
    """What a recognised marker means in the state it was found in."""

    CALL = 0
    TRAP = 1
    INTR = 2
    END = 3
    HEAD = 4
    FORGED = 5  # model mode: only the runtime may write this
    STRAY = 6  # transcript mode: a block marker inside a call


class Need(enum.Enum):
    NEED = 0


NEED: Final = Need.NEED  # "more input may complete a marker here"
Hit = tuple[Kind, str]  # a recognised marker: its kind and its canonical text


# lexer modes inside a call body
CODE, STR, COMMENT = 0, 1, 2
OPENERS, CLOSERS = "([{", ")]}"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _fold(s: str) -> str:
    return s.translate(_ASCII_LOWER)


def char_class(chars: set[str]) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")


class MarkerTable:
    """Markers recognised in one state, in priority order. ``ci`` entries compare ASCII letters
    case-insensitively (other characters exactly), in the regex and in the prefix check alike."""

    __slots__ = ("entries", "firsts", "scan", "full", "partial", "maxlen", "_shadowed")

    def __init__(self, entries: list[tuple[str, Kind, bool]]) -> None:
        seen: set[tuple[str, bool]] = set()
        self.entries: list[tuple[str, str, Kind, bool]] = []
        for s, kind, ci in entries:
            key = (_fold(s) if ci else s, ci)
            if s and key not in seen:
                seen.add(key)
                self.entries.append((s, key[0], kind, ci))
        self.firsts: set[str] = set()
        for s, _, _, ci in self.entries:
            self.firsts.add(s[0])
            if ci and s[0].isascii():
                self.firsts.update({s[0].lower(), s[0].upper()})
        self.scan = char_class(self.firsts) if self.firsts else re.compile(r"(?!)")
        alts = [
            f"(?P<g{k}>{'(?i:' + re.escape(s) + ')' if ci else re.escape(s)})"
            for k, (s, _, _, ci) in enumerate(self.entries)
        ]
        self.full = re.compile("|".join(alts) or r"(?!)", re.ASCII)
        self.maxlen = max((len(s) for s, *_ in self.entries), default=0)
        # a proper prefix of an entry that reaches the end of the text: a partial marker
        prefixes = sorted(
            {
                f"(?i:{re.escape(s[:j])})" if ci else re.escape(s[:j])
                for s, _, _, ci in self.entries
                for j in range(1, len(s))
            }
        )
        self.partial = re.compile(
            f"(?:{'|'.join(prefixes)})\\Z" if prefixes else r"(?!)", re.ASCII
        )
        # entry k is shadowed when an entry of higher priority extends it: seeing entry k whole
        # does not settle the match until that one is ruled out too
        self._shadowed = [
            any(
                len(s2) > len(s)
                and (_fold(s2).startswith(_fold(s)) if ci or ci2 else s2.startswith(s))
                for s2, _, _, ci2 in self.entries[:k]
            )
            for k, (s, _, _, ci) in enumerate(self.entries)
        ]

    def find(
        self, data: str, i: int, final: bool, end: int | None = None
    ) -> tuple[int, Hit | Need | None]:
        """The next marker starting at or after ``i`` (and before ``end``): ``(p, (kind,
        marker))``; ``(p, NEED)`` when the text from ``p`` on may still become a marker;
        ``(len(data), None)`` when there is none.

        Candidates (first characters) are found by the regex engine, each checked by
        :meth:`match`.
        """
        n = len(data)
        match = self.match
        # every marker, partial or not, starts with a candidate
        for c in self.scan.finditer(data, i, n if end is None else end):
            r = match(data, c.start(), final)
            if r is not None:
                return c.start(), r
        return n, None

    def match(self, data: str, p: int, final: bool) -> Hit | Need | None:
        """The first entry at ``data[p:]``: ``(kind, marker)``; ``NEED`` if an earlier entry
        could still match given more input (a proper prefix of it reaches the end of ``data``);
        or ``None``."""
        whole = final or len(data) - p >= self.maxlen  # no entry can grow past the end
        m = self.full.match(data, p)
        if m is not None:
            k = m.lastindex - 1  # type: ignore[operator]
            if whole or not self._shadowed[k]:
                s, _, kind, _ = self.entries[k]
                return kind, s
            return self._match_partial(data[p:])  # a hit or NEED, never None
        if whole or self.partial.match(data, p) is None:
            return None
        return NEED

    def _match_partial(self, data: str) -> Hit | Need | None:
        avail = len(data)
        for s, low, kind, ci in self.entries:
            n = len(s)
            seg = data[:n]
            if ci:
                seg = _fold(seg)
            if avail >= n:
                if seg == low:
                    return kind, s
            elif low.startswith(seg):
                return NEED
        return None


LexClasses = dict[tuple[int, str], re.Pattern[str]]
"""Per lexer mode (and quote, or code sub-state), the characters the call-body lexer reacts to."""


@functools.lru_cache(maxsize=64)
def tables(
    markers: Markers, transcript: bool
) -> tuple[MarkerTable, MarkerTable, MarkerTable, MarkerTable, LexClasses, re.Pattern[str]]:
    """The marker tables (outside, call, interrupt, trap), the lexer's character classes and
    the characters that can complete an event inside a call (a marker's first character, the
    ``-`` of ``->``, a newline after a body that parses) of one parser configuration
    (immutable, shared)."""
    m = markers
    if transcript:
        out = [
            (m.interrupt, Kind.INTR, False), (m.call, Kind.CALL, False), (m.trap, Kind.TRAP, False)
        ]
        call = [(m.end, Kind.END, False), (m.head, Kind.HEAD, False)] + [
            (s, Kind.STRAY, False) for s in (m.interrupt, m.call, m.trap)
        ]
    else:
        forged = [(f, Kind.FORGED, True) for f in m.forbidden]
        out = forged + [
            (m.interrupt, Kind.FORGED, False),
            (m.call, Kind.CALL, False),
            (m.trap, Kind.TRAP, False),
        ]
        call = (
            [(m.end, Kind.END, False), (m.head, Kind.HEAD, False)]
            + forged
            + [(s, Kind.FORGED, False) for s in (m.interrupt, m.call, m.trap)]
        )
    intr = [(m.end, Kind.END, False), (m.head, Kind.HEAD, False)]
    trap = [(m.end, Kind.END, False)]
    t_out, t_call = MarkerTable(out), MarkerTable(call)
    fc = t_call.firsts
    code = fc | {"'", '"', "#", "-"}
    rx_lex: LexClasses = {
        # in code, newlines matter only after a top-level group closed, brackets only
        # while the body may still parse
        (CODE, "dead"): char_class(code),
        (CODE, "open"): char_class(code | set(OPENERS) | set(CLOSERS)),
        (CODE, "closed"): char_class(code | set(OPENERS) | set(CLOSERS) | {"\n"}),
        (COMMENT, ""): char_class(fc | {"\n", "-"}),
    }
    for q in ("'", '"'):
        rx_lex[(STR, q)] = char_class(fc | {"\\", "\n", q})
        rx_lex[(STR, q * 3)] = char_class(fc | {"\\", q})
    call_stop = char_class(fc | {"-", "\n"})
    return t_out, t_call, MarkerTable(intr), MarkerTable(trap), rx_lex, call_stop
