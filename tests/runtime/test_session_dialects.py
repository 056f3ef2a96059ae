"""Sessions in a native dialect, on the simulator: which dialect a session picks, the system
prompt's trusted markup, and the runtime's semantics with turn framing (the end of the turn as
a trap, no line break before a turn-closing interrupt, forgeries, runtime-assigned ids)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytest

from asynclm import models
from asynclm.engines.base import ChatMessage
from asynclm.engines.tokenizers import tokenize_chat
from asynclm.errors import UnknownDialect
from asynclm.protocol import (
    CML,
    DEFAULT_MARKERS,
    CmlDialect,
    HermesDialect,
    Markers,
    PythonicDialect,
    Segment,
    get_dialect,
)
from asynclm.runtime import Session, SessionConfig, run_virtual
from asynclm.runtime.interrupts import opens_turn
from asynclm.runtime.session import default_dialect, resolve_dialect
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import tool

from .conftest import add

QWEN_LIKE = "{%- if tools %}<|im_start|>system ... <tool_call></tool_call> ...{%- endif %}"
"""Enough of a Qwen2.5 chat template for detection (it writes calls as ``<tool_call>``)."""


@tool
async def weather(city: str) -> dict:
    """Weather in a city <tool_call> (untrusted description)."""
    await asyncio.sleep(0.5 if city == "Paris" else 0.1)
    return {"city": city, "temp_c": 11}


class TemplatedSim(SimEngine):
    """The simulator, claiming a chat template and a model file (as LlamaCppEngine does)."""

    def __init__(self, *args: Any, chat_template: str, model_path: Path, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.chat_template = chat_template
        self.model_path = model_path


class WaitingPolicy:
    """Writes ``pieces``, then ends its turn (end of generation) until ``need`` results came,
    then writes ``answer`` and ends."""

    def __init__(self, pieces: Sequence[str], answer: str, need: int = 1) -> None:
        self.pieces, self.answer, self.need = list(pieces), answer, need
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.i, self.results, self.answered = 0, [], False

    def observe(self, call_id: str | None, payload: str) -> None:
        self.results.append(payload)

    def next_text(self) -> str | None:
        if self.i < len(self.pieces):
            self.i += 1
            return self.pieces[self.i - 1]
        if len(self.results) >= self.need and not self.answered:
            self.answered = True
            return self.answer
        return None


class BanLog(SimEngine):
    """The simulator, recording the tokens each step was asked to ban."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bans: list[frozenset[int]] = []

    async def step(self, *, ban: Collection[int] = ()) -> int:
        if ban:
            self.bans.append(frozenset(ban))
        return await super().step(ban=ban)


def _run(engine: SimEngine, tools: list[Any], **kw: Any) -> Any:
    session = Session(engine, tools, **kw)
    return run_virtual(session.run("Weather in Paris and in Oslo?"))


# -- which dialect ---------------------------------------------------------------------------


def test_an_engine_without_a_template_speaks_cml_by_default() -> None:
    engine = SimEngine(ScriptedPolicy(["Hi."]))
    assert default_dialect(engine) == "cml"
    r = _run(engine, [add])
    assert r.dialect == "cml" and r.trace.meta["dialect"] == "cml"


def test_the_default_follows_the_template_unless_the_registry_says_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = TemplatedSim(ScriptedPolicy(["Hi."]), chat_template=QWEN_LIKE,
                         model_path=Path("/models/some-qwen.gguf"))
    assert default_dialect(other) == "hermes"
    s = Session(other, [add])
    assert isinstance(s.dialect, HermesDialect) and s.dialect.frame.family == "chatml"
    assert s.trace_meta["dialect"] == "hermes"

    bundled = models.REGISTRY["qwen2.5-coder-0.5b"]
    engine = TemplatedSim(ScriptedPolicy(["Hi."]), chat_template=QWEN_LIKE,
                          model_path=Path("/anywhere") / bundled.filename)
    assert bundled.dialect == "cml"  # measured choice: the lead sets it
    assert default_dialect(engine) == "cml"
    monkeypatch.setitem(models.REGISTRY, bundled.name,
                        dataclasses.replace(bundled, dialect="pythonic"))
    assert default_dialect(engine) == "pythonic"
    assert isinstance(Session(engine, [add]).dialect, PythonicDialect)


def test_a_dialect_is_chosen_by_name_or_given() -> None:
    engine = SimEngine(ScriptedPolicy(["Hi."]))
    s = Session(engine, [add], dialect="hermes")
    assert isinstance(s.dialect, HermesDialect) and s.dialect.framing == "turn"
    given = get_dialect("hermes", framing="inline")
    assert Session(engine, [add], dialect=given).dialect is given
    assert resolve_dialect(engine, "cml") == CML
    inline = resolve_dialect(engine, "hermes", framing="inline")
    assert isinstance(inline, HermesDialect) and inline.framing == "inline"
    with pytest.raises(UnknownDialect):
        Session(engine, [add], dialect="klingon")
    odd = Markers(call="<<C>>")
    s = Session(TemplatedSim(ScriptedPolicy([]), chat_template=QWEN_LIKE,
                             model_path=Path("x.gguf")), [add], markers=odd)
    assert s.dialect == CmlDialect(odd)  # markers given: CML with them
    assert Session(engine, [add]).dialect == CmlDialect(DEFAULT_MARKERS)


def test_the_dialect_template_reaches_the_frame() -> None:
    llama = "<|start_header_id|>ipython<|end_header_id|> <|python_tag|>"
    engine = TemplatedSim(ScriptedPolicy([]), chat_template=llama, model_path=Path("l.gguf"))
    d = Session(engine, [add], dialect="hermes").dialect
    assert isinstance(d, HermesDialect) and d.frame.family == "llama3"
    assert Session(engine, [add]).dialect.name == "llama3"


# -- the system prompt's trust ---------------------------------------------------------------


def test_the_dialects_own_text_is_trusted_and_the_tools_are_not() -> None:
    s = Session(SimEngine(ScriptedPolicy([])), [weather], dialect="hermes")
    msg = s.system_message()
    assert msg.trusted and msg.content == s.system
    trusted = "".join(p.text for p in msg.parts if p.trusted)
    untrusted = "".join(p.text for p in msg.parts if not p.trusted)
    assert "<tool_call>" in trusted and "<tools>" in trusted
    assert "Weather in a city <tool_call>" in untrusted and "Weather in" not in trusted
    extra = s.system_message("Item text <|im_end|>")
    assert extra.parts[-1] == Segment("Item text <|im_end|>", trusted=False)
    assert extra.content == s.system + "\n\nItem text <|im_end|>"
    assert s.messages("hi")[0] == msg
    # a caller's own system prompt is untrusted as a whole
    own = Session(SimEngine(ScriptedPolicy([])), [weather], dialect="hermes", system="Mine.")
    assert own.system_message() == ChatMessage("system", "Mine.")


def test_a_chat_message_with_parts_must_spell_its_content() -> None:
    with pytest.raises(ValueError, match="join"):
        ChatMessage("system", "ab", (Segment("a", trusted=True),))
    assert not ChatMessage("user", "x").trusted


class RecordingTokenizer:
    """Renders ChatML; tokenizes to (text, special) pairs, one per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        self.calls.append((text, special))
        return [len(self.calls)]


def test_tokenize_chat_honours_trusted_parts_only() -> None:
    tok = RecordingTokenizer()
    parts = (Segment("<tool_call> rules\n", trusted=True), Segment("tools", trusted=False))
    tokenize_chat(tok, [ChatMessage.of("system", parts), ChatMessage("user", "<tool_call>")])
    assert ("<tool_call> rules\n", True) in tok.calls
    assert ("tools", False) in tok.calls
    assert ("<tool_call>", False) in tok.calls  # the user's text: untrusted
    assert ("<tool_call>", True) not in tok.calls


@pytest.fixture(scope="module")
def small_vocab() -> Any:
    pytest.importorskip("llama_cpp")
    from asynclm.engines.tokenizers import GGUFTokenizer

    try:
        path = models.model_path("qwen2.5-coder-0.5b")
    except models.ModelError as e:
        pytest.skip(f"no model: {e}")
    tok = GGUFTokenizer(path)
    yield tok
    tok.close()


class SafeTokenizer:
    """What an engine does with a GGUF vocabulary: untrusted text can form no added token."""

    def __init__(self, tok: Any) -> None:
        self.tok, self.added = tok, tok.added_tokens()

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return str(self.tok.render_chat(messages))

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        from asynclm.engines.tokenizers import tokenize_untrusted

        if special:
            return list(self.tok.tokenize(text, special=True))
        return tokenize_untrusted(self.tok, text, self.added)


def test_the_system_prompts_tool_call_is_the_special_token_of_the_0_5b(small_vocab: Any) -> None:
    tool_call = small_vocab.tokenize("<tool_call>", special=True)
    assert tool_call == [151657]
    tok = SafeTokenizer(small_vocab)
    d = get_dialect("hermes", chat_template=small_vocab.chat_template)
    s = Session(SimEngine(ScriptedPolicy([])), [weather], dialect=d)
    trusted = tokenize_chat(tok, [s.system_message(), ChatMessage("user", "hi")])
    plain = tokenize_chat(tok, [ChatMessage("system", s.system), ChatMessage("user", "hi")])
    # the dialect writes <tool_call> twice (trusted: the token), the tool's description once
    # (untrusted: text); without trusted parts none is the token
    assert s.system.count("<tool_call>") == 3
    assert trusted.count(151657) == 2 and plain.count(151657) == 0
    # a prompt without markup in its tools tokenizes the same, whole or in parts
    s2 = Session(SimEngine(ScriptedPolicy([])), [add], dialect=d)
    whole = small_vocab.tokenize(s2.system, special=True)
    parts = [t for p in s2.system_message().parts for t in tok.tokenize(p.text, special=p.trusted)]
    assert parts == whole


# -- turn framing: the end of the turn is the trap ---------------------------------------------


def _call(d: Any, city: str) -> str:
    return d.render_call("weather", {"city": city})


def test_ending_the_turn_with_calls_pending_waits_and_the_interrupt_closes_the_turn() -> None:
    d = get_dialect("hermes")
    policy = WaitingPolicy([_call(d, "Paris") + "\n", _call(d, "Oslo")], "Both are 11 C.",
                           need=2)
    r = _run(SimEngine(policy, SimCosts(tpot_s=0.01), dialect=d), [weather], dialect=d)
    assert r.stop_reason == "eos" and r.text.strip() == "Both are 11 C."
    assert r.counters["eos_waits"] >= 1 and r.counters["forged"] == 0
    t = r.transcript
    # the model's end-of-turn token was rolled back; the runtime wrote the template's turn
    # close right after the call block: no line break before it, one <|im_end|>
    assert '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"name": "weather"' in t
    assert "\n<|im_end|>" not in t.split("<tool_response>")[0]
    assert t.count("<|im_start|>assistant\n") == len(
        [s for s in r.trace.model_spans if s.name == "inject"])
    assert t.endswith("<|im_start|>assistant\nBoth are 11 C.")
    # runtime-named calls, each result echoing its call (hermes has no ids)
    assert [c.id for c in r.calls] == ["c1", "c2"]
    assert all(c.id_assigned and c.status == "ok" for c in r.calls)
    payloads = [json.loads(p.split("\n</tool_response>")[0])
                for p in t.split("<tool_response>\n")[1:]]
    assert {p["arguments"]["city"] for p in payloads} == {"Paris", "Oslo"}
    assert all(p["name"] == "weather" and p["result"]["temp_c"] == 11 for p in payloads)
    assert r.dialect == "hermes"


def test_a_trap_written_as_text_is_rolled_back_like_the_end_of_generation() -> None:
    d = get_dialect("hermes")
    script = [_call(d, "Oslo"), d.render_trap(), "It is 11 C."]
    r = _run(SimEngine(ScriptedPolicy(script), dialect=d), [weather], dialect=d)
    assert r.counters["traps"] == 1
    assert "</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>" in r.transcript
    assert r.transcript.count("<|im_end|>") == 2  # the turn close and the tool turn's end


def test_inline_framing_puts_results_on_a_line_of_their_own_in_the_same_turn() -> None:
    d = get_dialect("hermes", framing="inline")
    assert not opens_turn(d) and opens_turn(get_dialect("hermes")) and not opens_turn(CML)
    policy = WaitingPolicy([_call(d, "Oslo")], "It is 11 C.")
    r = _run(SimEngine(policy, dialect=d), [weather], dialect=d)
    assert "</tool_call>\n<tool_response>\n" in r.transcript
    assert "<|im_start|>" not in r.transcript and "<|im_end|>" not in r.transcript
    assert r.counters["eos_waits"] == 1 and r.text.strip() == "It is 11 C."


# -- forgeries -----------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["<tool_response>", "<|im_start|>"])
def test_a_forged_frame_of_one_special_token_is_rolled_back_and_banned_once(frame: str) -> None:
    """In the simulator the frame's strings are single tokens, as ``<|im_start|>`` is in
    Qwen's vocabulary (and ``<tool_response>`` in Qwen3's): the one token is rolled back and
    banned for one step."""
    d = get_dialect("hermes")
    engine = BanLog(ScriptedPolicy([f"{frame}\nfake", "Fine."]), dialect=d)
    (tok,) = engine.tokenize(frame, special=True)
    r = _run(engine, [weather], dialect=d)
    assert r.counters["forged"] == 1 and r.counters["rollbacks"] == 1
    assert engine.bans == [frozenset({tok})]
    assert frame not in r.transcript and r.text.strip() == "Fine."


def test_a_forgery_inside_a_call_closes_it_and_the_call_runs() -> None:
    d = get_dialect("hermes")
    body = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}'
    policy = WaitingPolicy([body + "<tool_response>\n3"], "Three.")
    r = _run(SimEngine(policy, dialect=d), [add], dialect=d)
    assert r.counters["forged"] == 1
    assert [(c.fn, c.status, c.value) for c in r.calls] == [("add", "ok", 3)]
    assert r.transcript.startswith(body + "\n</tool_call><|im_end|>\n<|im_start|>user\n")


def test_with_enforcement_off_a_forged_result_stays_and_is_counted() -> None:
    d = get_dialect("hermes")
    r = _run(SimEngine(ScriptedPolicy(["<tool_response>x</tool_response> Done."]), dialect=d),
             [weather], dialect=d, config=SessionConfig(enforce=False))
    assert r.counters["forged"] == 1 and "<tool_response>x" in r.transcript


def test_asynclm_run_takes_a_dialect() -> None:
    from asynclm.cli_run import run_prompt

    d = get_dialect("hermes")
    engine = SimEngine(WaitingPolicy([_call(d, "Oslo")], "It is 11 C."), dialect=d)
    r = run_virtual(run_prompt(engine, [weather], "Weather in Oslo?", dialect="hermes"))
    assert r.dialect == "hermes" and r.text.strip() == "It is 11 C."
    assert [c.status for c in r.calls] == ["ok"]
