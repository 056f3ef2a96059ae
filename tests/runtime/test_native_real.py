"""The hermes dialect on the bundled 0.5B model, in process (slow): the context a session
builds with turn framing is, token for token, what the model's own chat template writes for the
same conversation (system prompt with its special ``<tool_call>`` tokens, the call, the rolled
back end of turn, the tool turn, the new assistant turn), and the model answers from it.

The 0.5B does not write hermes calls by itself (it writes the bare JSON object, without
``<tool_call>`` tags), so the call is forced: the engine's first steps return the tokens of one
call and the end-of-turn token, appended to the live context as if sampled; everything after
the interrupt is sampled."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from typing import Any

import pytest

from asynclm import models
from asynclm.engines.base import ChatMessage
from asynclm.protocol import get_dialect
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import tool

pytestmark = pytest.mark.slow

TOOL_CALL, TOOL_CALL_END, IM_END = 151657, 151658, 151645


@tool
async def get_weather(city: str) -> dict:
    """Current weather in a city."""
    await asyncio.sleep(0.2)
    return {"city": city, "temp_c": 14, "sky": "cloudy"}


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    pytest.importorskip("llama_cpp")
    from asynclm.engines.llamacpp import LlamaCppEngine

    class Forced(LlamaCppEngine):
        """Its first steps return ``forced`` (appended as if sampled), then it samples."""

        forced: list[int] = []

        async def step(self, *, ban: Collection[int] = ()) -> int:
            if self.forced:
                tok = self.forced.pop(0)
                await self.append([tok])
                return tok
            return await super().step(ban=ban)

    try:
        path = models.model_path("qwen2.5-coder-0.5b")
    except models.ModelError as e:
        pytest.skip(f"no model: {e}")
    eng = Forced(path, n_threads=2, n_ctx=4096)
    yield eng
    eng.close()


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_turn_framing_reads_as_the_models_chat_template(engine: Any) -> None:
    d = get_dialect("hermes", chat_template=engine.chat_template)
    assert d.frame.family == "chatml" and d.framing == "turn"
    session = Session(engine, [get_weather], dialect="hermes",
                      config=SessionConfig(max_tokens=40))
    assert session.dialect == d
    engine.forced = [*engine.tokenize(CALL, special=True), IM_END]
    assert engine.forced.count(TOOL_CALL) == 1
    question = "What is the weather in Paris?"
    r = asyncio.run(session.run(question))

    assert r.dialect == "hermes" and r.trace.meta["dialect"] == "hermes"
    assert [(c.fn, c.args, c.status) for c in r.calls] == [
        ("get_weather", {"city": "Paris"}, "ok")]
    assert r.counters["eos_waits"] == 1 and r.counters["forged"] == 0
    # the system prompt's <tool_call> markup is the special token, twice (as Qwen's template
    # writes the tool section), in the prompt the session prefilled
    prompt = session.engine.tokenize_chat(session.messages(question))
    assert prompt.count(TOOL_CALL) == 2 and prompt.count(TOOL_CALL_END) == 2

    # the context up to the new assistant turn == the template's rendering of the conversation
    tool_msg = r.transcript.split("<tool_response>\n", 1)[1].split("\n</tool_response>")[0]
    convo = [*session.messages(question), ChatMessage("assistant", CALL),
             ChatMessage("tool", tool_msg)]
    rendered = engine.render_chat(convo)
    assert rendered.endswith("<|im_start|>assistant\n")
    ctx = engine.detokenize(engine.tokens).decode()
    answer = r.text
    assert ctx == rendered + answer + ("<|im_end|>" if r.stop_reason == "eos" else ""), ctx
    # token for token too (markup and payload tokenized apart, as the template's text would be)
    n = len(prompt)
    want = prompt + engine.tokenize(rendered[len(engine.render_chat(session.messages(question))):],
                                    special=True)
    assert engine.tokens[:len(want)] == want
    assert engine.tokens[n] == TOOL_CALL
    # and the model answered from the result
    assert r.text.strip(), r.transcript
    print("answer:", r.text.strip())
