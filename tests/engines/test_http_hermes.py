"""A session in the ``hermes`` dialect over :class:`HttpEngine`, against a real local
OpenAI-compatible server: ``python -m llama_cpp.server`` (llama-cpp-python 0.3.36) with the
0.5B model (slow).

One tool; its result is injected as a tool turn (turn framing) and the model resumes from it in
a new request, whose prompt the server serves from its prefix cache. That server reports no
cached-token figure in its responses (``test_openai_http_real`` asserts so), so the trace's
``server.request`` marks carry ``cached_tokens=None`` and the cache hit is read from the
server's log, as the other real-server tests do.

The 0.5B writes no hermes call by itself (it writes the bare JSON object), so the call and the
end of the turn are forced: the engine's first steps return their tokens, appended to the
context as if sampled (no request is sent for them); everything after the interrupt is sampled
by the server."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

import pytest

from asynclm.engines.openai_http import GGUFTokenizer, HttpEngine
from asynclm.protocol import HermesDialect
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import tool

pytestmark = pytest.mark.slow

IM_END = 151645
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'


@tool
async def get_weather(city: str) -> dict:
    """Current weather in a city."""
    await asyncio.sleep(0.2)
    return {"city": city, "temp_c": 3, "sky": "snow"}


class ForcedHttp(HttpEngine):
    """Its first steps return ``forced`` (appended to the context, no request), then the
    server samples."""

    forced: list[int] = []

    async def step(self, *, ban: Collection[int] = ()) -> int:
        if self.forced:
            tok = self.forced.pop(0)
            await self.append([tok])
            return tok
        return await super().step(ban=ban)


@pytest.fixture(scope="module")
def server(llama_model_path: Any) -> Any:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from asynclm.bench.server import LlamaCppServer

    with LlamaCppServer(llama_model_path, n_threads=2, n_ctx=4096) as srv:
        yield srv


def test_a_hermes_session_over_http_resumes_from_the_servers_cache(
        server: Any, llama_model_path: Any) -> None:
    tokenizer = GGUFTokenizer(llama_model_path)

    async def go() -> Any:
        engine = await ForcedHttp.connect(server.url, tokenizer)
        try:
            s = Session(engine, [get_weather], dialect="hermes",
                        config=SessionConfig(max_tokens=30))
            assert isinstance(s.dialect, HermesDialect) and s.dialect.framing == "turn"
            prompt = "What is the weather in Oslo?"
            await s.warm_up(prompt)
            engine.take_requests()  # the warm-up's request is not part of the run
            await asyncio.sleep(0.3)
            offset = server.log_offset()
            engine.forced = [*engine.tokenize(CALL, special=True), IM_END]
            n_forced = len(engine.forced)
            r = await s.run(prompt)
            await asyncio.sleep(0.5)
            return r, server.prefix_hits(offset), n_forced
        finally:
            await engine.aclose()

    try:
        r, hits, n_forced = asyncio.run(go())
    finally:
        tokenizer.close()
    assert r.dialect == "hermes"
    assert [(c.fn, c.args, c.status) for c in r.calls] == [
        ("get_weather", {"city": "Oslo"}, "ok")]
    assert r.counters["eos_waits"] == 1 and r.n_injected == 1
    assert r.transcript.startswith(
        CALL + "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
        '{"name": "get_weather", "arguments": {"city": "Oslo"}, "result": {"city": "Oslo",')
    assert "</tool_response><|im_end|>\n<|im_start|>assistant\n" in r.transcript
    reqs = [i.attrs for i in r.trace.instants if i.name == "server.request"]
    reasons = [q["reason"] for q in reqs]
    assert reasons[0] == "prefill" and reasons[-1] == "resume", reasons
    resume = reqs[-1]
    # this server reports no cached tokens; a server that does must report some
    assert resume["cached_tokens"] is None or resume["cached_tokens"] > 0
    print("server-logged (cached, computed) per request:", hits, "requests:", reqs)
    assert hits, server.tail()
    # the resume: the whole prompt came from the cache; the server computed only what it had
    # never seen, the (forced) call and the interrupt
    (p_cached, p_computed), (cached, computed) = hits[0], hits[-1]
    prompt_tokens = p_cached + p_computed
    assert cached >= prompt_tokens - 1, hits
    assert abs((cached + computed) - resume["prompt_tokens"]) <= 2
    injected = sum(s.tokens for s in r.trace.model_spans if s.name == "inject")
    assert computed <= n_forced + injected + 2, (hits, n_forced, injected)
