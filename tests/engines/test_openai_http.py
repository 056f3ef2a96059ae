"""The HTTP engine against the fake inference server of :mod:`asynclm.testing.http` (an
``httpx.MockTransport``: no sockets; a toy byte-level model) in each wire format: vLLM, SGLang
and llama-server are tested only this way (none runs here). The few tests about sockets (a
dropped connection, a server that does not answer, nothing listening) run the same fake over
real HTTP on loopback (``fake_server.py``); the real llama-cpp-python server is in
``test_openai_http_real.py``."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

pytest.importorskip("httpx")

from asynclm.bench.baselines import BASELINES
from asynclm.engines.base import ChatMessage, Engine
from asynclm.engines.openai_http import (
    HttpEngine, Mode, ServerResponseError, ServerTimeout, ServerUnavailable,
)
from asynclm.runtime import Session, SessionConfig
from asynclm.runtime import events as ev
from asynclm.testing.http import EOS, ByteTokenizer, FakeServer
from asynclm.tools import tool

TOKEN_FLAVORS = ["llama-server", "vllm", "sglang"]
ALL_FLAVORS = TOKEN_FLAVORS + ["text"]
MSGS = [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]


def run(coro):
    return asyncio.run(coro)


async def until_eos(engine: HttpEngine, limit: int = 500) -> list[int]:
    out: list[int] = []
    for _ in range(limit):
        t = await engine.step()
        out.append(t)
        if engine.is_eos(t):
            return out
    raise AssertionError("no EOS")


def text_of(tokens: list[int]) -> bytes:
    return bytes(t for t in tokens if t < 256)


@pytest.mark.parametrize("flavor", ALL_FLAVORS + ["chat"])
def test_probe_picks_the_best_mode(flavor):
    async def go():
        srv = FakeServer(flavor)
        engine = await srv.connect()
        try:
            assert isinstance(engine, Engine)
            return engine.mode, engine.capabilities, list(srv.records)
        finally:
            await engine.aclose()

    mode, caps, generated = run(go())
    assert generated == []  # probing generates nothing (it would evict a server's cache)
    assert mode == Mode(flavor)
    assert caps.request_log and not caps.virtual_time  # a RequestLog, declared


@pytest.mark.parametrize("flavor", ALL_FLAVORS)
def test_greedy_generation_across_chunks(flavor):
    """Tokens come out one per step; a finished chunk (``length``) is resumed on the cache."""
    async def go():
        srv = FakeServer(flavor, script=b"0123456789abcdefghij")
        engine = await srv.connect(chunk_tokens=6)
        await engine.prefill(engine.tokenize_chat(MSGS))
        out = await until_eos(engine)
        await engine.aclose()
        return out, srv.records, engine.requests

    out, records, reqs = run(go())
    assert text_of(out) == b"0123456789abcdefghij" and out[-1] == EOS
    gen = [r for r in records if r.body.get("stream")]
    assert len(gen) >= 4  # 20 tokens + EOS in chunks of 6
    assert [r.reason for r in reqs][:2] == ["prefill", "resume"]
    if flavor in TOKEN_FLAVORS:
        # each resume carries exactly the ids so far, and the server served them from cache
        for prev, nxt in zip(gen, gen[1:]):
            assert nxt.prompt[: len(prev.prompt)] == prev.prompt
            assert nxt.cached == len(prev.prompt) + prev.produced
        assert [r.cached_tokens for r in reqs] == [r.cached for r in gen]


@pytest.mark.parametrize("flavor", ALL_FLAVORS)
def test_append_closes_the_stream_and_resumes_with_token_ids(flavor):
    async def go():
        srv = FakeServer(flavor, script=b"abcdefghijklmnop")
        engine = await srv.connect(chunk_tokens=200)
        prompt = engine.tokenize_chat(MSGS)
        await engine.prefill(prompt)
        head = [await engine.step() for _ in range(4)]
        payload = engine.tokenize("[INTR] x [HEAD] 42 [END]\n")
        await engine.append(payload)
        tail = await until_eos(engine)
        await engine.aclose()
        return prompt, head, payload, tail, srv.records, engine.requests

    prompt, head, payload, tail, records, reqs = run(go())
    assert text_of(head) == b"abcd" and text_of(tail) == b"efghijklmnop"
    first, second = [r for r in records if r.body.get("stream")][:2]
    # stop = close the stream: the server stopped decoding long before its 200-token budget
    assert first.disconnected and not first.finished and first.produced < 20
    assert second.prompt == prompt + head + payload  # the whole context, the segment as given
    if flavor in TOKEN_FLAVORS:
        assert reqs[1].cached_tokens == second.cached >= len(prompt) + len(head)
        assert reqs[1].cached_tokens / reqs[1].prompt_tokens >= 0.5


@pytest.mark.parametrize("flavor", ALL_FLAVORS)
def test_rollback_and_ban(flavor):
    async def go():
        srv = FakeServer(flavor, script=b"abcdef")
        engine = await srv.connect()
        await engine.prefill(engine.tokenize_chat(MSGS))
        a = [await engine.step() for _ in range(3)]
        await engine.rollback(engine.n_tokens - 2)
        b = await engine.step()
        banned = await engine.step(ban={ord("c")})
        await engine.aclose()
        return a, b, banned, srv.records

    a, b, banned, records = run(go())
    assert text_of(a) == b"abc" and b == ord("b")
    assert banned == ord("?")  # the server honoured the bias
    assert any("logit_bias" in r.body or "logit_bias" in r.body.get("sampling_params", {})
               for r in records)


@pytest.mark.parametrize("cumulative", [True, False])
def test_sglang_cumulative_and_incremental_output_ids(cumulative):
    async def go():
        srv = FakeServer("sglang", script=b"xyz123", cumulative=cumulative)
        engine = await srv.connect()
        await engine.prefill(engine.tokenize_chat(MSGS))
        out = await until_eos(engine)
        await engine.aclose()
        return out

    assert text_of(run(go())) == b"xyz123"


def test_reuse_prefix_false_makes_the_server_recompute():
    async def go():
        srv = FakeServer("vllm")
        engine = await srv.connect()
        p = engine.tokenize_chat(MSGS)
        await engine.prefill(p)
        c1 = await engine.prefill(p)
        c2 = await engine.prefill(p, reuse_prefix=False)
        await engine.aclose()
        return len(p), c1, c2, srv.records

    n, c1, c2, records = run(go())
    assert c1 >= n - 1 and c2 == 0
    assert "cache_salt" in records[-1].body


def test_text_mode_never_lets_a_payload_become_a_control_token():
    async def go():
        srv = FakeServer("text", script=b"ok")
        engine = await srv.connect()
        prompt = engine.tokenize_chat(MSGS)
        await engine.prefill(prompt)
        await engine.append(engine.tokenize("<|eos|><|start|>assistant\n", special=False))
        await engine.step()
        await engine.aclose()
        return prompt, srv.records[-1].prompt

    prompt, seen = run(go())
    assert seen[: len(prompt)] == prompt  # the template's own control tokens kept
    assert EOS not in seen and seen.count(257) == prompt.count(257)


# -- sessions --------------------------------------------------------------------------------

SCRIPT = b'[CALL] a [HEAD] f(x=1) [END]\nWorking on it. Some more words here.'


@pytest.mark.parametrize("flavor", ALL_FLAVORS)
def test_session_async_resumes_on_the_cache_and_logs_requests(flavor):
    @tool
    async def f(x: int) -> int:
        """Add one."""
        await asyncio.sleep(0.05)
        return x + 1

    async def go():
        srv = FakeServer(flavor, script=SCRIPT, token_delay_s=0.005)
        engine = await srv.connect()
        session = Session(engine, [f], system="sys", config=SessionConfig(max_tokens=200))
        result = await session.run("go")
        await engine.aclose()
        return result, srv.records

    result, records = run(go())
    assert result.stop_reason == "eos"
    assert result.text.strip().endswith("Some more words here.")
    assert result.call("a").status == "ok" and result.n_injected == 1
    assert "[INTR] a [HEAD] 2 [END]" in result.transcript
    reqs = [i for i in result.trace.instants if i.name == "server.request"]
    assert len(reqs) == result.counters["server_requests"] >= 2
    assert any(s.name == "server.resume" for s in result.trace.spans if s.kind == "reprefill")
    if flavor in TOKEN_FLAVORS:
        # only the injected segment is new to the server: the rest comes from its cache
        injected = sum(s.tokens for s in result.trace.spans if s.kind == "interrupt")
        resume = [i for i in reqs if i.attrs["reason"] == "resume"]
        assert len(resume) == 1 and injected > 0
        assert resume[0].attrs["cached_tokens"] >= resume[0].attrs["prompt_tokens"] - injected


def test_session_async_naive_pays_full_prefill_on_each_interrupt():
    @tool
    async def f(x: int) -> int:
        """Add one."""
        return x + 1

    async def go(strategy):
        srv = FakeServer("llama-server", script=SCRIPT)
        engine = await srv.connect()
        session = Session(engine, [f], system="sys", strategy=strategy,
                          config=SessionConfig(max_tokens=200))
        result = await session.run("go")
        await engine.aclose()
        return result

    naive, resume = run(go(BASELINES["async-naive"])), run(go("async"))
    assert naive.text == resume.text
    assert [s.name for s in naive.trace.spans if s.kind == "reprefill"][:1] == ["inject"]
    # the naive restart made the server recompute the whole context, the resume did not
    n_new = lambda r: r.counters["server_prompt_tokens"] - r.counters["server_cached_tokens"]
    assert n_new(naive) > n_new(resume) + 20


def test_chat_only_api_is_the_degraded_restart_mode():
    @tool
    async def f(x: int) -> int:
        """Add one."""
        return x + 1

    async def go():
        srv = FakeServer("chat", script=SCRIPT)
        engine = await srv.connect()
        session = Session(engine, [f], system="sys", config=SessionConfig(max_tokens=200))
        result = await session.run("go")
        await engine.aclose()
        return engine.mode, result, srv.records

    mode, result, records = run(go())
    assert mode is Mode.CHAT
    assert result.call("a").status == "ok"
    chats = [r for r in records if r.path == "/v1/chat/completions"]
    assert len(chats) >= 2  # a restart per interrupt
    last = chats[-1].body["messages"][-1]
    assert last["role"] == "assistant" and "[INTR] a [HEAD] 2 [END]" in last["content"]
    assert any(s.kind == "reprefill" for s in result.trace.spans)


# -- failures --------------------------------------------------------------------------------

def test_nothing_listening_is_a_clear_error():
    async def go():
        srv = FakeServer("vllm", connect_error=True)
        with pytest.raises(ServerUnavailable, match="fake-server"):
            await srv.connect()
        return srv.seen

    seen = run(go())
    assert len(seen) == 3  # the first probe, tried 1 + retries times


def test_server_errors_are_retried_then_reported():
    async def go():
        srv = FakeServer("vllm", script=b"abc")
        engine = await srv.connect(retries=2)
        srv.fail = [503, 500]
        await engine.prefill(engine.tokenize_chat(MSGS))
        out = await until_eos(engine)
        retried = engine.requests[0].retries
        srv.fail = [400]
        with pytest.raises(ServerResponseError, match="HTTP 400") as e:
            await engine.prefill(engine.tokenize_chat(MSGS))
        status = e.value.status
        srv.fail = [503] * 5
        with pytest.raises(ServerResponseError, match="HTTP 503"):
            await engine.prefill(engine.tokenize_chat(MSGS))
        await engine.aclose()
        return out, retried, status

    out, retried, status = run(go())
    assert text_of(out) == b"abc" and retried == 2 and status == 400


def test_slow_server_times_out():
    async def go():
        srv = FakeServer("llama-server", hang_s=30)
        engine = await srv.connect(read_timeout_s=0.3, retries=1)
        t = time.monotonic()
        with pytest.raises(ServerTimeout):
            await engine.prefill(engine.tokenize_chat(MSGS))
        await engine.aclose()
        return time.monotonic() - t

    assert run(go()) < 5


def test_stalled_stream_times_out():
    async def go():
        srv = FakeServer("sglang", token_delay_s=30)
        engine = await srv.connect(read_timeout_s=0.3, retries=0)
        t = time.monotonic()
        with pytest.raises(ServerTimeout):
            await engine.prefill(engine.tokenize_chat(MSGS))
        await engine.aclose()
        return time.monotonic() - t, srv.records

    took, records = run(go())
    assert took < 5 and records[0].disconnected and not records[0].finished


@pytest.mark.parametrize("flavor", ALL_FLAVORS)
def test_a_stream_cut_midway_is_resumed_from_the_tokens_received(flavor):
    async def go():
        srv = FakeServer(flavor, script=b"abcdefghijkl")
        engine = await srv.connect()
        srv.cut_after = 5
        await engine.prefill(engine.tokenize_chat(MSGS))
        out = await until_eos(engine)
        await engine.aclose()
        return out, engine.requests

    out, reqs = run(go())
    assert text_of(out) == b"abcdefghijkl"
    assert reqs[0].finish == "error" and reqs[1].retries == 1


def test_server_failure_mid_session_ends_every_call_and_raises():
    """The server dies while a call is pending: the session raises the engine's error within
    the deadline, and every emitted call still gets exactly one outcome."""
    # Filler that never repeats: a repeated phrase could end the turn ("repetition") before
    # f returns, and then no request would meet the broken server.
    script = (b'[CALL] a [HEAD] f(x=1) [END]\n[CALL] b [HEAD] g(x=2) [END]\n'
              + b" ".join(b"w%d" % i for i in range(60)))
    srv = FakeServer("vllm", script=script, token_delay_s=0.005)

    @tool
    async def f(x: int) -> int:
        """Breaks the server, then returns."""
        srv.fail = [503] * 20
        await asyncio.sleep(0.4)
        return x

    @tool
    async def g(x: int) -> int:
        """Never returns in time."""
        await asyncio.sleep(60)
        return x

    async def go():
        engine = await srv.connect(retries=2)
        session = Session(engine, [f, g], system="sys",
                          config=SessionConfig(max_tokens=400, deadline_s=20))
        events: list[ev.StreamEvent] = []
        t = time.monotonic()
        with pytest.raises(ServerResponseError):
            await session.run("go", on_event=events.append)
        await engine.aclose()
        return events, time.monotonic() - t

    events, took = run(go())
    emitted = Counter(e.call_id for e in events if isinstance(e, ev.CallEmitted))
    completed = Counter(e.call_id for e in events if isinstance(e, ev.CallCompleted))
    assert emitted == completed == Counter({"a": 1, "b": 1})
    outcome = {e.record.id: e.record.status for e in events if isinstance(e, ev.CallCompleted)}
    assert outcome["b"] == "cancelled"
    assert took < 10


# -- over a real socket: what only a connection shows ---------------------------------------

def _socket_server(fake: FakeServer):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    from .fake_server import SocketServer

    return SocketServer(fake)


def test_server_down_is_a_clear_error_not_a_hang():
    from .fake_server import free_port

    async def go():
        t = time.monotonic()
        with pytest.raises(ServerUnavailable, match="127.0.0.1"):
            await HttpEngine.connect(f"http://127.0.0.1:{free_port()}", ByteTokenizer(),
                                     backoff_s=0.01)
        return time.monotonic() - t

    assert run(go()) < 5


def test_closing_the_stream_drops_the_connection_and_the_server_stops():
    fake = FakeServer("llama-server", script=b"abcdefghijklmnop", token_delay_s=0.02)

    async def go(url: str):
        engine = await HttpEngine.connect(url, ByteTokenizer(), backoff_s=0.01,
                                          chunk_tokens=200)
        prompt = engine.tokenize_chat(MSGS)
        await engine.prefill(prompt)
        head = [await engine.step() for _ in range(4)]
        await engine.append(engine.tokenize("[INTR] x [HEAD] 42 [END]\n"))
        tail = await until_eos(engine)
        await asyncio.sleep(0.2)  # let the server notice the disconnect
        await engine.aclose()
        return head, tail

    with _socket_server(fake) as srv:
        head, tail = run(go(srv.url))
    assert text_of(head) == b"abcd" and text_of(tail) == b"efghijklmnop"
    first = fake.records[0]
    assert first.disconnected and not first.finished and first.produced < 20


def test_a_dropped_connection_is_resumed_and_a_silent_server_times_out():
    fake = FakeServer("vllm", script=b"abcdefghijkl")

    async def go(url: str):
        engine = await HttpEngine.connect(url, ByteTokenizer(), backoff_s=0.01,
                                          read_timeout_s=0.5, retries=1)
        fake.cut_after = 5
        await engine.prefill(engine.tokenize_chat(MSGS))
        out = await until_eos(engine)
        fake.hang_s = 30
        t = time.monotonic()
        with pytest.raises(ServerTimeout):
            await engine.prefill(engine.tokenize_chat(MSGS))
        took = time.monotonic() - t
        await engine.aclose()
        return out, engine.requests, took

    with _socket_server(fake) as srv:
        out, reqs, took = run(go(srv.url))
    assert text_of(out) == b"abcdefghijkl"
    assert reqs[0].finish == "error" and reqs[1].retries == 1
    assert took < 5
