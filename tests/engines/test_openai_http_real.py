"""The HTTP engine against a real server: ``python -m llama_cpp.server`` (llama-cpp-python
0.3.36) on loopback with the 0.5B model and 1 thread, started by these tests (slow).

What that server really offers (asserted below, so a new version that changes it fails here):
text-only ``/v1/completions`` (no token ids in, none out, no ``/completion``), no cached-token
figure in responses, a working prefix cache that it reports in its verbose log. So the engine
runs in ``text`` mode here; the token-id modes are tested against fakes only."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from asynclm.engines.base import ChatMessage
from asynclm.engines.openai_http import GGUFTokenizer, HttpEngine, Mode
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import tool

pytestmark = pytest.mark.slow

SYS = """\
You can call functions: write [CALL] id [HEAD] function(arg="value") [END]. Results arrive as \
[INTR] id [HEAD] result [END]. Then answer in one sentence.

Example:
User: Weather in Oslo?
Assistant: [CALL] w1 [HEAD] get_weather(city="Oslo") [END]
[INTR] w1 [HEAD] {"temp_c": 3} [END]
It is 3 °C in Oslo.

Functions: get_weather(city)."""


@tool
async def get_weather(city: str) -> dict:
    """Weather in a city."""
    await asyncio.sleep(0.2)
    return {"temp_c": 11 + len(city) % 7}


@pytest.fixture(scope="module")
def server(llama_model_path):
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    from asynclm.bench.server import LlamaCppServer

    with LlamaCppServer(llama_model_path, n_threads=1, n_ctx=4096) as srv:
        yield srv


@pytest.fixture(scope="module")
def tokenizer(llama_model_path):
    tok = GGUFTokenizer(llama_model_path)
    yield tok
    tok.close()


def run(coro):
    return asyncio.run(coro)


def test_what_llama_cpp_server_0_3_36_offers(server, tokenizer):
    ids = tokenizer.tokenize("def add(a, b):")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/v1/completions", json={"prompt": ids, "max_tokens": 1}).status_code != 200
        assert c.post("/completion", json={"prompt": ids, "n_predict": 1}).status_code == 404
        body = c.post("/v1/completions", json={"prompt": "def add(a, b):", "max_tokens": 2,
                                               "temperature": 0}).json()
    assert "prompt_tokens_details" not in (body.get("usage") or {})
    assert "tokens_cached" not in body and "timings" not in body

    async def go():
        engine = await HttpEngine.connect(server.url, tokenizer)
        await engine.aclose()
        return engine.mode, engine.llama_cpp_python, engine.capabilities

    mode, lcp, caps = run(go())
    assert mode is Mode.TEXT and lcp and caps.request_log


def test_greedy_output_equals_the_in_process_engine(server, tokenizer, llama_model_path):
    """Same model, same prompt, greedy: the server's output equals the in-process engine's, for
    plain generation and for a session with a call and its injected result (sync strategy, so
    the result lands at the same point whatever the timing)."""
    from asynclm.engines.llamacpp import LlamaCppEngine

    prompt = [ChatMessage("user", "Write a Python function that reverses a string.")]

    async def plain(engine):
        await engine.prefill(engine.tokenize_chat(prompt))
        out = []
        for _ in range(40):
            out.append(await engine.step())
            if engine.is_eos(out[-1]):
                break
        return engine.detokenize(out)

    async def session(engine):
        s = Session(engine, [get_weather], strategy="sync", system=SYS,
                    config=SessionConfig(max_tokens=60))
        r = await s.run("Weather in Lisbon?")
        return r.text, [(c.fn, c.args, c.status) for c in r.calls], r.stop_reason

    async def over_http():
        engine = await HttpEngine.connect(server.url, tokenizer)
        try:
            return await plain(engine), await session(engine)
        finally:
            await engine.aclose()

    async def in_process():
        engine = LlamaCppEngine(llama_model_path, n_threads=1, n_ctx=4096)
        try:
            return await plain(engine), await session(engine)
        finally:
            await engine.aclose()

    http_plain, http_session = run(over_http())
    local_plain, local_session = run(in_process())
    assert len(http_plain) > 40
    assert http_plain == local_plain
    assert http_session[1], http_session  # the model did call the tool
    assert http_session == local_session


def test_resume_is_served_from_the_servers_cache(server, tokenizer):
    """An async session on the long default prompt: every resume after an interrupt had at
    least 90% of its prompt served from the server's prefix cache, as the server logged it."""
    async def go():
        engine = await HttpEngine.connect(server.url, tokenizer)
        s = Session(engine, [get_weather], config=SessionConfig(max_tokens=80))
        prompt = "What is the weather in Paris and in Rome?"
        await s.warm_up(prompt)
        engine.take_requests()  # the warm-up's request is not part of the run
        await asyncio.sleep(0.3)
        offset = server.log_offset()
        r = await s.run(prompt)
        await engine.aclose()
        await asyncio.sleep(0.5)
        return r, server.prefix_hits(offset)

    r, hits = run(go())
    reqs = [i.attrs for i in r.trace.instants if i.name == "server.request"]
    resumes = [q for q in reqs if q["reason"] == "resume"]
    assert r.n_injected >= 1 and resumes, r.transcript
    assert len(hits) == len(reqs)  # every request of the run reused the cache
    print("server-logged (cached, computed) per request:", hits)
    for (cached, computed), q in zip(hits, reqs):
        assert cached / (cached + computed) >= 0.9, (cached, computed, q)
        assert abs((cached + computed) - q["prompt_tokens"]) <= 2  # same context, same count
    assert r.counters["server_prompt_tokens"] == sum(q["prompt_tokens"] for q in reqs)


def test_reuse_prefix_false_makes_the_server_recompute(server, tokenizer):
    async def go():
        engine = await HttpEngine.connect(server.url, tokenizer, chunk_tokens=4)
        p = engine.tokenize_chat([ChatMessage("user", "Name three colours.")])
        await engine.prefill(p)
        offset = server.log_offset()
        await engine.prefill(p, reuse_prefix=False)
        await engine.aclose()
        await asyncio.sleep(0.5)
        return len(p), server.prefix_hits(offset)

    n, hits = run(go())
    assert all(cached <= 1 for cached, _ in hits), hits  # nothing of the prompt came from cache


def test_closing_the_stream_stops_the_server(server, tokenizer):
    """Stop = close the stream: the server stops decoding at once. It has one thread and one
    lock, so had it gone on with its 300-token budget, the next request would wait for it."""
    async def go():
        engine = await HttpEngine.connect(server.url, tokenizer, chunk_tokens=300)
        await engine.prefill(engine.tokenize_chat(
            [ChatMessage("user", "Count from 1 to 200, one number per line.")]))
        t = time.monotonic()
        for _ in range(5):
            await engine.step()
        per_token = (time.monotonic() - t) / 5
        offset = server.log_offset()
        await engine.append(tokenizer.tokenize("\n"))  # closes the stream
        t = time.monotonic()
        await engine.step()  # a new request: served only once the server is free
        wait = time.monotonic() - t
        await engine.aclose()
        await asyncio.sleep(0.3)
        return per_token, wait, server.log_since(offset)

    per_token, wait, log = run(go())
    assert b"Disconnected from client" in log or b"disconnected" in log
    # what was left of the budget would have taken > 250 * per_token
    assert wait < 0.5 * 250 * per_token + 2, (wait, per_token)


def test_server_killed_mid_session_is_a_clear_error_and_no_outcome_is_lost(
        llama_model_path, tokenizer):
    """The tool kills the server (SIGKILL) while the model waits for its result: the resume
    fails fast with ServerUnavailable, and the call still has its one outcome."""
    from collections import Counter

    from asynclm.bench.server import LlamaCppServer
    from asynclm.engines.openai_http import ServerUnavailable
    from asynclm.runtime import events as ev

    with LlamaCppServer(llama_model_path, n_threads=1, n_ctx=2048) as srv:

        @tool
        async def get_weather(city: str) -> dict:
            """Weather in a city."""
            srv.proc.kill()
            srv.proc.wait()
            return {"temp_c": 12}

        async def go():
            engine = await HttpEngine.connect(srv.url, tokenizer, retries=1, backoff_s=0.05)
            s = Session(engine, [get_weather], strategy="sync", system=SYS,
                        config=SessionConfig(max_tokens=60, deadline_s=120))
            events: list = []
            t = time.monotonic()
            with pytest.raises(ServerUnavailable):
                await s.run("Weather in Lisbon?", on_event=events.append)
            await engine.aclose()
            return events, time.monotonic() - t

        events, took = run(go())
    emitted = Counter(e.call_id for e in events if isinstance(e, ev.CallEmitted))
    completed = Counter(e.call_id for e in events if isinstance(e, ev.CallCompleted))
    assert emitted and emitted == completed
    assert took < 60


def test_hf_tokenizer_agrees_with_the_gguf_tokenizer(tokenizer, llama_model_path):
    """The transformers tokenizer (what vLLM/SGLang users have) built from the same GGUF file
    gives the same ids, bytes, chat prompt and EOS as the GGUF vocabulary."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    pytest.importorskip("torch", reason="transformers reads GGUF files only with torch installed")
    from asynclm.engines.openai_http import HFTokenizer

    hf = HFTokenizer.from_pretrained(str(llama_model_path.parent),
                                     gguf_file=llama_model_path.name)
    for text in ("def add(a, b):\n    return a + b", "héllo 世界 🙂", "x <|im_end|> y"):
        for special in (False, True):
            assert hf.tokenize(text, special=special) == tokenizer.tokenize(text, special=special)
        ids = tokenizer.tokenize(text)
        assert hf.detokenize(ids) == tokenizer.detokenize(ids) == text.encode()
        assert b"".join(hf.detokenize([t]) for t in ids) == text.encode()  # byte-exact pieces
    msgs = [ChatMessage("system", "sys <|im_start|>"), ChatMessage("user", "hi")]
    assert hf.tokenize_chat(msgs) == tokenizer.tokenize_chat(msgs)
    im_end = tokenizer.tokenize("<|im_end|>", special=True)[0]
    assert hf.is_eos(im_end) and tokenizer.is_eos(im_end) and not hf.is_eos(ids[0])
    assert im_end in hf.control_texts()
