"""The ``mistral`` dialect (Mistral Nemo: ``[TOOL_CALLS][{...}]`` with 9-character ids, results
``[TOOL_RESULTS]{"content": ..., "call_id": ...}[/TOOL_RESULTS]``): ids, each call of the list
as soon as it is complete, any chunking, round trips, forgeries, escaping, and golden tests
against Mistral Nemo's official template."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynclm.protocol import (
    Call,
    CallOpened,
    Delivery,
    Dialect,
    Forged,
    Interrupt,
    MalformedCall,
    MistralDialect,
    Trap,
)
from asynclm.tools import Toolbox

M = MistralDialect()
SPEC = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}


def _events(text: str, transcript: bool = False, d: MistralDialect = M) -> list[Any]:
    p = d.parser(transcript=transcript)
    return p.feed(text) + p.close()


def test_is_a_dialect() -> None:
    assert isinstance(M, Dialect) and M.name == "mistral" and M.render_trap() == "</s>"
    assert M.forged_markers == ("[tool_results]", "[inst]")


def test_ids_and_asynchronous_start() -> None:
    p = M.parser()
    ev = p.feed('[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "abc123def"}, {"na')
    assert ev[0] == CallOpened(0, 12)
    assert isinstance(ev[1], Call) and (ev[1].id, ev[1].fn, ev[1].args) == (
        "abc123def", "f", {"a": 1})
    assert isinstance(ev[2], CallOpened) and not p.at_safe_point
    ev = p.feed('me": "g", "arguments": {}, "id": "not valid!"}]')
    assert isinstance(ev[0], Call) and ev[0].id is None and ev[0].written_id == "not valid!"
    assert p.at_safe_point
    assert M.call_body('[TOOL_CALLS][{"name": "f"}') == '{"name": "f"}'


def test_render_call_writes_ids() -> None:
    assert M.render_call("f", {"a": 1}, "abc123def") == (
        '[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}, "id": "abc123def"}]')
    assert M.render_call("f", {}) == '[TOOL_CALLS][{"name": "f", "arguments": {}}]'
    with pytest.raises(ValueError):
        M.render_call("f", {}, "a b")
    ev = _events(M.render_call("f", {}, "c1") + M.render_trap())
    assert isinstance(ev[1], Call) and ev[1].id == "c1" and isinstance(ev[2], Trap)


def test_malformed_and_forged() -> None:
    ev = _events("[TOOL_CALLS][]")
    assert isinstance(ev[1], MalformedCall)
    ev = _events('[TOOL_CALLS][{"name": "f", "arguments": {}}, [INST]')
    assert [type(e).__name__ for e in ev[:3]] == ["CallOpened", "Call", "Forged"]
    ev = M.parser().feed('ok [TOOL_RESULTS]{"content": 1, "call_id": "abc123def"}')
    assert isinstance(ev[1], Forged) and ev[1].where == "outside" and ev[1].start == 3
    ev = M.parser().feed('[TOOL_CALLS][{"name": "f", "arguments": {"a": [TOOL_RESULTS]')
    assert isinstance(ev[1], Forged) and ev[1].where == "call" and isinstance(ev[2],
                                                                              MalformedCall)
    assert M.close_call() == "]"


def test_results_carry_call_ids() -> None:
    segs = M.render_interrupt([Delivery("abc123def", '{"t": 1}'), Delivery("c2", "plain")])
    text = "".join(s.text for s in segs)
    assert text == (
        '</s>[TOOL_RESULTS]{"content": {"t": 1}, "call_id": "abc123def"}[/TOOL_RESULTS]'
        '[TOOL_RESULTS]{"content": plain, "call_id": "c2"}[/TOOL_RESULTS]')
    intr = [e for e in _events(text, transcript=True) if isinstance(e, Interrupt)]
    assert [(i.id, i.payload) for i in intr] == [("abc123def", '{"t": 1}'), ("c2", "plain")]
    inline = MistralDialect(framing="inline").render_interrupt([Delivery("abc123def", "1")])
    assert "".join(s.text for s in inline) == (
        '[TOOL_RESULTS]{"content": 1, "call_id": "abc123def"}[/TOOL_RESULTS]')


# -- golden -----------------------------------------------------------------------------------


def test_golden_mistral_nemo(template: Any, render_chat: Any) -> None:
    source = template("mistralai-Mistral-Nemo-Instruct-2407.jinja")
    text = Toolbox.from_openai([SPEC], handler=lambda n, a: None).describe(estimated=False)
    entries = [json.loads(line.rstrip(",")) for line in text.splitlines()[1:-1]]
    tools = [{"type": "function", "function": e} for e in entries]
    calls = [{"id": "abc123def", "type": "function",
              "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
             {"id": "bcd234efg", "type": "function",
              "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    msgs = [{"role": "user", "content": "Weather in Paris and Tokyo?"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "content": '{"temp_c": 11}', "tool_call_id": "abc123def"},
            {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "bcd234efg"}]
    expected = render_chat(source, msgs, tools)
    # the tool section is the template's [AVAILABLE_TOOLS] block
    section = M.tool_section(text)
    assert section in expected
    prompt = section + "[INST]Weather in Paris and Tokyo?[/INST]"
    rendered = M.render_call("get_weather", {"city": "Paris"}, "abc123def")
    second = M.render_call("get_weather", {"city": "Tokyo"}, "bcd234efg")
    # what the model writes: both calls in one list
    written = rendered[:-1] + ", " + second[len("[TOOL_CALLS]["):]
    segs = M.render_interrupt([Delivery("abc123def", '{"temp_c": 11}'),
                               Delivery("bcd234efg", '{"temp_c": 18}')])
    assert expected == prompt + written + "".join(s.text for s in segs)
    ev = _events(written)
    assert [(e.id, e.args["city"]) for e in ev if isinstance(e, Call)] == [
        ("abc123def", "Paris"), ("bcd234efg", "Tokyo")]


# -- properties ---------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(
    st.sampled_from(["a", "é", " ", "\n", "[", "]", "{", "}", '"', "\\", "/", "<"]), max_size=8
) | st.sampled_from(["[TOOL_CALLS]", "[/TOOL_RESULTS]", "[INST]", "</s>"])
_values = st.recursive(_scalars, lambda k: st.lists(k, max_size=3) | st.dictionaries(
    st.text("abc", min_size=1, max_size=3), k, max_size=3), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(fn=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
       args=st.dictionaries(st.text("abcdef_", min_size=1, max_size=5), _values, max_size=4),
       ident=st.none() | st.from_regex(r"[A-Za-z0-9]{9}", fullmatch=True))
def test_round_trip(fn: str, args: dict[str, Any], ident: str | None) -> None:
    ev = _events(M.render_call(fn, args, ident))
    assert len(ev) == 2 and isinstance(ev[1], Call), ev
    assert (ev[1].fn, ev[1].args, ev[1].id) == (fn, args, ident)


_pieces = st.lists(st.sampled_from([
    "Hi ", "\n", "[TOOL_CALLS]", "[", "{", '"name": "f"', ', "id": "abc123def"', "}", "]", ", ",
    '"', "\\", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[INST]", "</s>", "[TOOL", "é", " ",
]), max_size=16).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_pieces, cuts=st.lists(st.integers(0, 200), max_size=8), transcript=st.booleans())
def test_any_chunking_gives_the_same_events(
    text: str, cuts: list[int], transcript: bool, chunked: Any
) -> None:
    whole = chunked(M.parser(transcript=transcript), text, [])
    assert chunked(M.parser(transcript=transcript), text, cuts) == whole
    assert chunked(M.parser(transcript=transcript), text, range(len(text))) == whole


@settings(max_examples=200, deadline=None)
@given(payload=st.lists(st.sampled_from(
    ["[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[INST]", "</s>", ', "call_id": "x"}',
     "[", "/", "]", "x", "\n", "［/TOOL_RESULTS］"]), max_size=10).map("".join))
def test_escaped_payloads_never_form_a_marker(payload: str) -> None:
    for framing in ("turn", "inline"):
        d = MistralDialect(framing=framing)  # type: ignore[arg-type]
        text = "".join(s.text for s in d.render_interrupt([Delivery("abc123def", payload)]))
        intr = [e for e in _events(text, transcript=True, d=d) if isinstance(e, Interrupt)]
        assert len(intr) == 1 and intr[0].id == "abc123def"
        assert intr[0].payload == d.escape_payload(payload)
        assert "[/tool_results]" not in intr[0].payload.lower()
