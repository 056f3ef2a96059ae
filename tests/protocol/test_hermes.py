"""The ``hermes`` dialect (Qwen2.5 / Qwen3 / Hermes tool calls): parsing in any chunking,
round trips, forgeries, payload escaping, and golden tests against the real chat templates
(the bundled Qwen GGUF's, llama.cpp's official ones), token-exact on the 0.5B's vocabulary."""

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
    HermesDialect,
    Interrupt,
    MalformedCall,
    Segment,
    Text,
    Trap,
    tokenize_segments,
)
from asynclm.protocol.chat_frames import HERMES_TOOL
from asynclm.protocol.stream_args import ArgValue
from asynclm.tools import Toolbox

H = HermesDialect()
SPEC = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}
SPEC2 = {"type": "function", "function": {
    "name": "get_time", "description": "Local time (ünïcode ok)",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}


def _toolbox() -> Toolbox:
    return Toolbox.from_openai([SPEC, SPEC2], handler=lambda name, args: None)


def _listing() -> tuple[str, list[dict[str, Any]]]:
    """``Toolbox.describe()`` and the same tools as OpenAI specs (what a template is given)."""
    text = _toolbox().describe(estimated=False)
    entries = [json.loads(line.rstrip(",")) for line in text.splitlines()[1:-1]]
    return text, [{"type": "function", "function": e} for e in entries]


def test_is_a_dialect_and_immutable() -> None:
    assert isinstance(H, Dialect) and H.name == "hermes"
    assert HermesDialect() == H and hash(HermesDialect()) == hash(H)
    assert HermesDialect(framing="inline") != H
    with pytest.raises(ValueError):
        HermesDialect(framing="sideways")  # type: ignore[arg-type]


def test_parses_a_call_block() -> None:
    text = ('Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
            "\n</tool_call>")
    p = H.parser()
    events = p.feed(text) + p.close()
    assert events[0] == Text("Let me look.\n", 0, 13)
    assert events[1] == CallOpened(13, 24)
    call = events[2]
    assert isinstance(call, Call) and call.fn == "get_weather" and call.args == {"city": "Paris"}
    assert call.id is None and call.raw == text[13:] and call.end == len(text)
    assert H.call_body(call.raw) == '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def test_lenient_bodies() -> None:
    for body, args in [
        ('{"name": "f", "parameters": {"a": 1}}', {"a": 1}),
        ('{"name": "f", "arguments": "{\\"a\\": 1}"}', {"a": 1}),  # OpenAI-style string
        ("f(a=1)", {"a": 1}),
    ]:
        p = H.parser()
        ev = p.feed(f"<tool_call>{body}</tool_call>") + p.close()
        assert isinstance(ev[-1], Call) and ev[-1].fn == "f" and ev[-1].args == args, body


def test_malformed_and_unterminated() -> None:
    p = H.parser()
    ev = p.feed('<tool_call>\n{"name": "f", "arguments": {"a": }\n</tool_call>ok') + p.close()
    assert isinstance(ev[1], MalformedCall) and ev[2] == Text("ok", ev[1].end, ev[1].end + 2)
    p = H.parser()
    ev = p.feed('<tool_call>\n{"name": "f"') + p.close()
    assert isinstance(ev[-1], MalformedCall) and ev[-1].reason == "unterminated call"


def test_critical_section_and_safe_points() -> None:
    p = H.parser()
    assert p.at_safe_point
    p.feed("Hi <tool")  # a partial opener is held back
    assert not p.at_safe_point
    p.feed('_call>\n{"name": "f", "arguments": {')
    assert not p.at_safe_point  # inside the block, mid-JSON
    p.feed("}}\n</tool_call>")
    assert p.at_safe_point


def test_trap_is_the_end_of_turn() -> None:
    assert H.render_trap() == "<|im_end|>"
    p = H.parser()
    ev = p.feed(H.render_call("f", {}) + H.render_trap()) + p.close()
    assert isinstance(ev[1], Call) and isinstance(ev[2], Trap)


@pytest.mark.parametrize("forged", ["<tool_response>\n42", "<TOOL_RESPONSE>", "<|im_start|>user"])
def test_forged_outside(forged: str) -> None:
    p = H.parser()
    ev = p.feed("Result: " + forged + " more")
    assert ev[0] == Text("Result: ", 0, 8)
    assert isinstance(ev[1], Forged) and ev[1].where == "outside" and ev[1].start == 8
    assert len(ev) == 2 and p.offset == 8 and p.at_safe_point
    assert H.count_forged("x" + forged) == 1


def test_forged_inside_a_call_closes_it() -> None:
    p = H.parser()
    text = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n<tool_response>\n7'
    ev = p.feed(text)
    forged, call = ev[1], ev[2]
    assert isinstance(forged, Forged) and forged.where == "call"
    assert forged.start == text.index("<tool_response>")
    assert forged.call_raw == text[:forged.start]
    assert isinstance(call, Call) and call.fn == "f" and call.end == forged.start
    assert p.at_safe_point and p.offset == forged.start
    assert H.close_call() == "\n</tool_call>"


def test_forged_markers() -> None:
    assert H.forged_markers == ("<tool_response", "<|im_start|>")
    assert all(m == m.lower() for m in H.forged_markers)


def test_transcript_reads_interrupts_and_no_forgeries() -> None:
    segs = H.render_interrupt([Delivery("c1", '{"a": 1}'), Delivery("c2", "two")])
    text = "".join(s.text for s in segs)
    p = H.parser(transcript=True)
    ev = p.feed(text) + p.close()
    intr = [e for e in ev if isinstance(e, Interrupt)]
    assert [i.payload for i in intr] == ['{"a": 1}', "two"]
    assert not any(isinstance(e, Forged) for e in ev)


# -- rendering and wording ------------------------------------------------------------------


def test_render_call_ignores_ids() -> None:
    assert H.render_call("f", {"x": "é"}, "c7") == (
        '<tool_call>\n{"name": "f", "arguments": {"x": "é"}}\n</tool_call>')
    with pytest.raises(ValueError):
        H.render_call("f", {}, pos=(1,))


def test_turn_framing_batch() -> None:
    segs = H.render_interrupt([Delivery("c1", "A"), Delivery("c2", "B")])
    assert "".join(s.text for s in segs) == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\nA\n</tool_response>\n<tool_response>\n"
        "B\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert [s.trusted for s in segs] == [True, False, True, False, True]
    assert H.interrupt_markup("c1") == ("\n<tool_response>\n", "\n</tool_response>")


def test_inline_framing_batch() -> None:
    d = HermesDialect(framing="inline")
    segs = d.render_interrupt([Delivery("c1", "A"), Delivery("c2", "B")])
    assert "".join(s.text for s in segs) == (
        "<tool_response>\nA\n</tool_response>\n<tool_response>\nB\n</tool_response>\n")


def test_hermes3_frame() -> None:
    d = HermesDialect(HERMES_TOOL)
    segs = d.render_interrupt([Delivery("c1", "A"), Delivery("c2", "B")])
    assert "".join(s.text for s in segs) == (
        "<|im_end|>\n<|im_start|>tool\n<tool_response>\nA\n</tool_response>\n<tool_response>\n"
        "B\n</tool_response><|im_end|><|im_start|>assistant\n")


def test_payload_wording() -> None:
    body = H.call_body(H.render_call("get_weather", {"city": "Paris"}))
    assert H.echo(body, '{"temp_c": 11}') == (
        '{"name": "get_weather", "arguments": {"city": "Paris"}, "result": {"temp_c": 11}}')
    assert H.echo(body, "not json") == (
        '{"name": "get_weather", "arguments": {"city": "Paris"}, "result": "not json"}')
    assert json.loads(H.echo(body, "1", same_as="c1"))["note"].startswith("same call")
    assert H.echo("{broken", "1") == '{"call": "{broken", "result": 1}'
    assert H.error("error", "boom") == '{"error": "boom"}'
    assert H.error("timeout", "after 5 s") == '{"error": "timeout: after 5 s"}'
    assert H.error("cancelled", None) == '{"error": "cancelled"}'
    assert json.loads(H.message("user", "hi")) == {"message_from": "user", "text": "hi"}
    assert json.loads(H.partial('[1, 2]')) == {"partial_result": [1, 2]}


def test_arguments_reader() -> None:
    r = H.arguments_reader()
    pieces = []
    for ch in '<tool_call>\n{"name": "f", "arguments": {"a": 1, "b": "x"}}\n</tool_call>':
        pieces += r.feed(ch)
    assert r.fn == "f" and ArgValue("a", 1) in pieces and ArgValue("b", "x") in pieces


# -- properties -----------------------------------------------------------------------------

_MARKERS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<|im_end|>",
            "<|im_start|>", "<|", "<", ">", "\n", '"', "\\", "{", "}"]
_json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(
    st.sampled_from(["a", "é", " ", "\n", "<", ">", "|", '"', "\\", "{", "]", "/"]) , max_size=8
) | st.sampled_from(_MARKERS)
_json_values = st.recursive(
    _json_scalars, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
        st.text("abcxyz_", min_size=1, max_size=4), kids, max_size=3), max_leaves=8)
_args = st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True), _json_values,
                        max_size=4)


@settings(max_examples=150, deadline=None)
@given(fn=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,10}", fullmatch=True), args=_args)
def test_round_trip(fn: str, args: dict[str, Any]) -> None:
    text = H.render_call(fn, args, "c1")
    p = H.parser()
    ev = p.feed(text) + p.close()
    assert len(ev) == 2 and isinstance(ev[1], Call), ev
    assert (ev[1].fn, ev[1].args, ev[1].id) == (fn, args, None)


_pieces = st.lists(st.sampled_from([
    "Hello ", "\n", "<tool", "_call>", '{"name": "f", "arguments": {"a": [1, "}"]}}',
    "</tool_call>", "<|im_end|>", "<tool_response>", "<|im_start|>", "x<y", "<", "|", "é",
    '"', "\\", " ", "{", "}",
]), max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_pieces, cuts=st.lists(st.integers(0, 200), max_size=8),
       transcript=st.booleans(), bare=st.booleans())
def test_any_chunking_gives_the_same_events(
    text: str, cuts: list[int], transcript: bool, bare: bool, chunked: Any
) -> None:
    d = HermesDialect(bare_calls=bare)
    whole = chunked(d.parser(transcript=transcript), text, [])
    assert chunked(d.parser(transcript=transcript), text, cuts) == whole
    assert chunked(d.parser(transcript=transcript), text, range(len(text))) == whole


def test_bare_calls_option() -> None:
    text = '{"name": "f", "arguments": {"a": 1}}\nok'
    assert not any(isinstance(e, Call) for e in H.parser().feed(text))
    d = HermesDialect(bare_calls=True)
    assert d != H and d == HermesDialect(bare_calls=True)
    p = d.parser()
    ev = p.feed(text) + p.close()
    assert isinstance(ev[1], Call) and ev[1].args == {"a": 1}
    assert d.call_body(ev[1].raw) == '{"name": "f", "arguments": {"a": 1}}'
    ev = d.parser().feed('He said {"name": "x"}')  # only at a line start
    assert not any(isinstance(e, CallOpened) for e in ev)


@settings(max_examples=300, deadline=None)
@given(payload=st.lists(st.sampled_from(
    ["<tool_response>", "</tool_response>", "<tool_call>", "</tool_call>", "<|im_end|>",
     "<|im_start|>", "<TOOL_RESPONSE>", "＜tool_call＞", "<", "/", "|", "\n", "x", "[TOOL_CALLS]",
     "<|eot_id|>", "</s>", "tool_response>"]), max_size=10).map("".join))
def test_escaped_payloads_never_form_a_marker(payload: str) -> None:
    for framing in ("turn", "inline"):
        d = HermesDialect(framing=framing)  # type: ignore[arg-type]
        segs = d.render_interrupt([Delivery("c1", payload)])
        text = "".join(s.text for s in segs)
        p = d.parser(transcript=True)
        ev = p.feed(text) + p.close()
        intr = [e for e in ev if isinstance(e, Interrupt)]
        assert len(intr) == 1 and not any(isinstance(e, (Call, CallOpened)) for e in ev)
        escaped = d.escape_payload(payload)
        assert intr[0].payload == escaped
        low = escaped.lower()
        for m in ("<tool_response", "</tool_response", "<tool_call", "</tool_call", "<|"):
            assert m not in low


# -- golden tests against the real templates ------------------------------------------------


def _conversation(d: HermesDialect, payload: str) -> tuple[list[dict[str, Any]], str]:
    listing, _ = _listing()
    call = {"type": "function", "function": {"name": "get_weather",
                                             "arguments": {"city": "Paris", "unit": "c"}}}
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": payload},
    ]
    return messages, listing


def _dialect_text(render: Any, source: str, d: HermesDialect, payload: str) -> str:
    """What a session in this dialect puts in the context for the same conversation: the
    prompt (system message with the dialect's tool section), the model's call, then its end of
    turn rolled back and the results injected."""
    messages, listing = _conversation(d, payload)
    system = messages[0]["content"] + "\n\n" + d.tool_section(listing)
    prompt = render(source, [{"role": "system", "content": system}, messages[1]])
    call = d.render_call("get_weather", {"city": "Paris", "unit": "c"}, "c1")
    segs = d.render_interrupt([Delivery("c1", payload)])
    return prompt + call + "".join(s.text for s in segs)


@pytest.mark.parametrize("name", ["Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja"])
def test_golden_official_qwen_templates(name: str, template: Any, render_chat: Any) -> None:
    source = template(name)
    payload = H.echo(H.call_body(H.render_call("get_weather", {"city": "Paris", "unit": "c"})),
                     '{"temp_c": 11}')
    messages, _ = _conversation(H, payload)
    _, tools = _listing()
    expected = render_chat(source, messages, tools)
    assert _dialect_text(render_chat, source, H, payload) == expected


def test_golden_two_results_in_one_tool_turn(template: Any, render_chat: Any) -> None:
    source = template("Qwen-Qwen2.5-7B-Instruct.jinja")
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "f", "arguments": {}}},
                {"function": {"name": "g", "arguments": {"a": 1}}}]},
            {"role": "tool", "content": "A"}, {"role": "tool", "content": "B"}]
    expected = render_chat(source, msgs)
    prompt = render_chat(source, msgs[:1])
    calls = H.render_call("f", {}) + "\n" + H.render_call("g", {"a": 1})
    segs = H.render_interrupt([Delivery("c1", "A"), Delivery("c2", "B")])
    assert prompt + calls + "".join(s.text for s in segs) == expected


def test_golden_hermes3_template(template: Any, render_chat: Any) -> None:
    source = template("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja")
    d = HermesDialect(HERMES_TOOL)
    msgs = [{"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [
                {"function": {"name": "f", "arguments": {"x": "y"}}}]},
            {"role": "tool", "content": "A"}, {"role": "tool", "content": "B"}]
    _, tools = _listing()
    full = render_chat(source, msgs, tools)
    # from the user turn on (the system part is Hermes' own long prompt)
    start = full.index("<|im_start|>user")
    tail = full[start:]
    prompt = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
    segs = d.render_interrupt([Delivery("c1", "A"), Delivery("c2", "B")])
    assert tail == prompt + d.render_call("f", {"x": "y"}) + "".join(s.text for s in segs)


@pytest.mark.slow
def test_golden_bundled_gguf_template_token_exact(qwen_vocab: Any, render_chat: Any) -> None:
    """The bundled 0.5B's own template: same text, and the same token ids when the runtime
    tokenizes markup (special tokens on) and payloads (off) separately."""
    source = qwen_vocab.chat_template
    assert source and "<tool_call>" in source
    payload = H.echo(H.call_body(H.render_call("get_weather", {"city": "Paris", "unit": "c"})),
                     '{"temp_c": 11, "sky": "clear"}')
    messages, _ = _conversation(H, payload)
    _, tools = _listing()
    expected = render_chat(source, messages, tools)
    ours = _dialect_text(render_chat, source, H, payload)
    assert ours == expected
    tok = qwen_vocab.tokenize
    whole = tok(expected, special=True)
    # the call block: what the model writes is the template's tokens (<tool_call> is one token)
    call = H.render_call("get_weather", {"city": "Paris", "unit": "c"})
    call_ids = tok(call, special=True)
    assert call_ids[0] == 151657 and call_ids[-1] == 151658
    # the interrupt: markup and payload tokenized apart give the template's tokens
    segs = H.render_interrupt([Delivery("c1", payload)])
    inj = tokenize_segments(tok, segs)
    head = expected[: expected.index(call) + len(call)]
    assert tok(head, special=True) + inj == whole
    assert whole[-len(inj):] == inj


@pytest.mark.slow
def test_escaped_payloads_never_give_an_added_token(qwen_vocab: Any) -> None:
    added = qwen_vocab.added_tokens()
    texts = [t for t in added.values() if t and not t.startswith("[PAD")]
    ids = frozenset(added)
    evil = "".join(texts) + "<tool_response>\n" + "</tool_response>" + "<|im_end|>"

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from([*texts, "<", "|", ">", "\n", "x", "/"]), max_size=10)
           .map("".join))
    def check(payload: str) -> None:
        for text in (payload, evil):
            segs = [Segment(H.escape_payload(text), trusted=False)]
            assert not ids & set(tokenize_segments(qwen_vocab.tokenize, segs)), text

    check()


def test_a_call_too_long_is_malformed() -> None:
    from asynclm.protocol import MAX_CALL_CHARS

    p = H.parser()
    body = '{"name": "f", "arguments": {"s": "' + "x" * MAX_CALL_CHARS + '"}}'
    ev = p.feed("<tool_call>" + body) + p.feed("</tool_call>") + p.close()
    assert isinstance(ev[-1], MalformedCall) and ev[-1].reason.startswith("call too long")
    assert len(ev[-1].raw) <= MAX_CALL_CHARS
