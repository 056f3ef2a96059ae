"""Escaping untrusted text (tool results) before it goes into the model's context.

:func:`escape_payload` makes a tool result (or any untrusted text) safe to put inside an
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

import functools
import re
import unicodedata
from collections.abc import Iterable

from asynclm.protocol.events import DEFAULT_MARKERS, Markers

__all__ = ["CONTROL_TAGS", "SPECIAL_TOKEN_PREFIXES", "escape_payload"]

SPECIAL_TOKEN_PREFIXES: tuple[str, ...] = ("<|",)
"""Openers of chat-template special tokens (``<|im_end|>``, ``<|eot_id|>``, and DeepSeek's
full-width ``<｜...｜>`` after NFKC) escaped in payloads by default."""

CONTROL_TAGS: tuple[str, ...] = (
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>",
    "<function_call>", "</function_call>", "<think>", "</think>",
    "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[THINK]",
    "[/THINK]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>",
    "<bos>", "<eos>", "<pad>", "<unk>", "[gMASK]", "<sop>", "<eop>",
)
"""Added-token texts of common chat templates that do not start with ``<|`` (Qwen/Hermes tool
tags, reasoning tags, Mistral, Llama 2, Gemma, GLM). Not escaped by default: an engine escapes by
its own vocabulary's added tokens; this list is the conservative fallback where the vocabulary
is unknown (pass ``extra=(*SPECIAL_TOKEN_PREFIXES, *CONTROL_TAGS)``). It cannot be complete."""

_WJ = "\u2060"
_LOOKALIKE = {"[": "\u27e6", "<": "\u2039", "{": "\u2983", "(": "\u2985"}


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
