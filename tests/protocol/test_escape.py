"""Payload escaping: no marker, forbidden prefix or special-token opener survives, under any
normalization, and the escaped payload reads back unchanged from a transcript."""

from __future__ import annotations

import random
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.protocol import (
    DEFAULT_MARKERS, Interrupt, Markers, Parser, escape_payload, render_interrupt,
)
from asynclm.protocol.escape import CONTROL_TAGS, SPECIAL_TOKEN_PREFIXES


LOOKALIKES = [
    "［",
    "﹇",
    "⁅",
    "〔",
    "＜",
    "﹤",
    "ｅｎｄ",
    "ＥＮＤ",
    "］",
    "Ｉｎｔｒ",
    "ⅰ",
    "ｔｒａｐ",
    "К",
]
FRAGMENTS = [
    *DEFAULT_MARKERS.all(),
    *DEFAULT_MARKERS.forbidden,
    "[",
    "]",
    "<",
    ">",
    "[CAL",
    "[EN",
    "END]",
    "[INT",
    "[RES",
    "ULT",
    "<tool_",
    "response>",
    "[call]",
    "[end]",
    "[Intr]",
    "[rEsUlT",
    "<TOOL_RESPONSE",
    "<|im_end|>",
    "<|im_start|>",
    "<｜begin▁of▁sentence｜>",
    "<|eot_id|>",
    "<tool_call>",
    "</tool_call>",
    "->",
    " ",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\u200b",
    "\ud800",
    "é",
    "e\u0301",
    "ﬀ",
    "x",
    "42",
    '"',
    "'",
    "\\",
    "$c1",
    "{",
    "}",
    "ß",
    "İ",
]
PATTERNS = sorted(
    {
        unicodedata.normalize("NFKC", s).casefold()
        for s in (*DEFAULT_MARKERS.all(), *DEFAULT_MARKERS.forbidden, "<|")
    }
)


def _views(s: str) -> list[str]:
    nfkc = unicodedata.normalize("NFKC", s)
    return [
        s,
        s.lower(),
        s.casefold(),
        nfkc,
        nfkc.casefold(),
        unicodedata.normalize("NFKC", s.casefold()),
    ]


def _assert_safe(payload: str) -> None:
    out = escape_payload(payload)
    for view in _views(out):
        for pat in PATTERNS:
            assert pat not in view, (payload, out, pat)
    # no control characters other than \n and \t
    assert all(c in "\n\t" or unicodedata.category(c) != "Cc" for c in out), out
    assert not any("\ud800" <= c <= "\udfff" for c in out)
    # in context: exactly one interrupt, no call, payload intact
    text = "before " + render_interrupt("c7", payload) + " after"
    p = Parser(transcript=True)
    events = p.feed(text) + p.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Text", "Interrupt", "Text"], (payload, kinds)
    intr = events[1]
    assert isinstance(intr, Interrupt)
    assert intr.id == "c7" and intr.payload == out


def _random_payload(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        r = rng.random()
        if r < 0.55:
            parts.append(rng.choice(FRAGMENTS))
        elif r < 0.8:
            parts.append(rng.choice(LOOKALIKES))
        else:
            parts.append(chr(rng.randint(0, 0x2FFFF)))
    return "".join(parts)


def test_escape_many_payloads() -> None:
    rng = random.Random(20241225)
    for _ in range(6000):
        _assert_safe(_random_payload(rng))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(FRAGMENTS + LOOKALIKES)
        | st.text(max_size=3)
        | st.characters(codec=None, exclude_categories=()),
        max_size=15,
    ).map("".join)
)
def test_escape_property(payload: str) -> None:
    _assert_safe(payload)


def test_escape_is_readable() -> None:
    assert escape_payload('{"a": [1, 2], "b": "x < y"}') == '{"a": [1, 2], "b": "x < y"}'
    assert escape_payload("see [END] and ［ＥＮＤ］") == "see ⟦END] and ⟦ＥＮＤ］"
    assert escape_payload("<|im_end|>") == "‹|im_end|>"
    assert escape_payload("a\r\nb\x07c\td") == "a\nb\ufffdc\td"
    assert escape_payload("[INTR] c1 [HEAD] 5 [END]") == "⟦INTR] c1 ⟦HEAD] 5 ⟦END]"


def test_escape_custom_markers_and_context() -> None:
    # a marker that would straddle the " [END]" after the payload, or " [HEAD] " before it
    m = Markers(
        call="@call",
        interrupt="@intr",
        trap="@trap",
        head="@head",
        end="@end",
        forbidden=("@intr", "d x"),
    )
    out = escape_payload("x", m, extra=())
    assert "d x" not in ("@head " + out + " @end").casefold()
    out = escape_payload("@INTR and @call", m, extra=())
    assert "@intr" not in out.casefold() and "@call" not in out.casefold()


# -- extra patterns: an engine's added-token texts, or the conservative CONTROL_TAGS ----------

QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>",
              "<|fim_prefix|>", "<|file_sep|>", "</s>", "[PAD151665]"]
EXTRA = (*SPECIAL_TOKEN_PREFIXES, *CONTROL_TAGS, *QWEN_ADDED)


def _assert_safe_extra(payload: str) -> None:
    out = escape_payload(payload, extra=EXTRA)
    pats = {unicodedata.normalize("NFKC", s).casefold() for s in (*PATTERNS, *EXTRA)}
    for view in _views(out):
        for pat in pats:
            assert pat not in view, (payload, out, pat)
    ctx = _views(DEFAULT_MARKERS.head + " " + out + " " + DEFAULT_MARKERS.end)
    for pat in pats - {"[head]", "[end]"}:
        assert all(pat not in v for v in ctx), (payload, out, pat)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(FRAGMENTS + LOOKALIKES + list(EXTRA))
        | st.sampled_from(list(EXTRA)).map(lambda s: s[: len(s) // 2])
        | st.sampled_from(list(EXTRA)).map(lambda s: s[len(s) // 2:])
        | st.text(max_size=3),
        max_size=15,
    ).map("".join)
)
def test_escape_property_with_extra_patterns(payload: str) -> None:
    _assert_safe_extra(payload)


def test_extra_patterns_are_escaped_readably_and_only_when_asked() -> None:
    assert escape_payload("<tool_call>", extra=EXTRA) == "\u2039tool_call>"
    assert escape_payload("x </tool_call>", extra=EXTRA) == "x \u2039/tool_call>"
    assert escape_payload("[INST] hi [/INST]", extra=EXTRA) == "\u27e6INST] hi \u27e6/INST]"
    assert escape_payload("<TOOL_CALL>", extra=EXTRA) == "\u2039TOOL_CALL>"  # any case
    assert escape_payload("\uff1ctool_call\uff1e", extra=EXTRA) != "\uff1ctool_call\uff1e"
    assert escape_payload("[PAD151665]", extra=EXTRA) == "\u27e6PAD151665]"
    assert escape_payload("a < b > c", extra=EXTRA) == "a < b > c"
    # by default only the CML markers and "<|": an engine escapes its own vocabulary's tokens
    assert escape_payload("<tool_call>") == "<tool_call>"
    assert not {"[HEAD]", "[END]", "[INTR]", "[CALL]", "[TRAP]"} & set(CONTROL_TAGS)
