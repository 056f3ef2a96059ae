"""The fake inference server itself (``asynclm.testing.http``): routes per flavor, the toy
model, the prefix cache, and a streamed body that a client-side close really closes."""

from __future__ import annotations

import asyncio
import json

import pytest

httpx = pytest.importorskip("httpx")

from asynclm.testing.http import EOS, START, ByteTokenizer, FakeServer  # noqa: E402


def run(coro):
    return asyncio.run(coro)


def client(srv: FakeServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=srv.url, transport=srv.transport())


@pytest.mark.parametrize("flavor", ["llama-server", "vllm", "sglang", "text", "chat"])
def test_routes_answer_like_the_real_server(flavor):
    async def go():
        async with client(FakeServer(flavor)) as c:
            return {p: (await c.get(p)).status_code
                    for p in ("/v1/models", "/props", "/get_model_info", "/version",
                              "/v1/completions", "/nowhere")}

    codes = run(go())
    assert codes["/v1/models"] == 200 and codes["/nowhere"] == 404
    assert codes["/props"] == (200 if flavor == "llama-server" else 404)
    assert codes["/get_model_info"] == (200 if flavor == "sglang" else 404)
    assert codes["/version"] == (200 if flavor == "vllm" else 404)
    # GET on a POST route: 405 where it exists, 404 on a chat-only API
    assert codes["/v1/completions"] == (404 if flavor == "chat" else 405)


def test_unknown_flavor_is_refused():
    with pytest.raises(ValueError, match="flavor"):
        FakeServer("tgi")


def test_toy_model_follows_the_script_around_interrupts_and_bans():
    srv = FakeServer("vllm", script=b"abc")
    tok = ByteTokenizer()
    prompt = [START] + list(b"assistant\n")
    assert srv.prompt_len([1, 2] + prompt) == 2 + len(prompt)
    ctx = prompt + list(b"a\n[INTR] x [HEAD] 1 [END]\n")
    assert srv.next_token(ctx, len(prompt), set()) == ord("b")
    assert srv.next_token(ctx, len(prompt), {ord("b")}) == ord("?")
    assert srv.next_token(prompt + list(b"abc"), len(prompt), set()) == EOS
    assert srv.next_token(prompt + list(b"zz"), len(prompt), set()) == EOS  # off script
    scripted = FakeServer("vllm", model=lambda ctx, start, ban: ord("q"))
    assert scripted.next_token(prompt, len(prompt), set()) == ord("q")
    assert tok.detokenize(tok.tokenize("<|eos|>x", special=True)) == b"<|eos|>x"


def test_a_client_side_close_closes_the_body_generator_and_the_cache_kept_what_was_made():
    srv = FakeServer("llama-server", script=b"abcdefgh")
    prompt = [START] + list(b"assistant\n")

    async def go():
        async with client(srv) as c:
            req = c.build_request("POST", "/completion",
                                  json={"prompt": prompt, "n_predict": 100, "stream": True})
            resp = await c.send(req, stream=True)
            lines = resp.aiter_lines()
            got: list[str] = []
            while len(got) < 3:
                line = await anext(lines)
                if line:  # SSE: events are separated by blank lines
                    got.append(json.loads(line.removeprefix("data: "))["content"])
            await resp.aclose()
            # at once, not when the event loop finalizes the abandoned generator
            assert srv.records[0].disconnected, "closing the response left the generator open"
            del lines, resp
            return got

    texts = run(go())
    rec = srv.records[0]
    assert "".join(texts)[:3] == "abc"
    assert rec.disconnected and not rec.finished and rec.produced == 3
    assert srv.cache == prompt + list(b"abc")  # the KV of what was generated, as it grew


def test_a_full_stream_finishes_and_the_next_request_is_served_from_the_cache():
    srv = FakeServer("sglang", script=b"hi")
    prompt = [START] + list(b"assistant\n")

    async def go():
        async with client(srv) as c:
            body = {"input_ids": prompt, "sampling_params": {"max_new_tokens": 10},
                    "stream": True}
            first = [line async for line in (await c.send(
                c.build_request("POST", "/generate", json=body), stream=True)).aiter_lines()
                if line]
            body["input_ids"] = prompt + list(b"hi")
            await c.post("/generate", json=body)
            return first

    first = run(go())
    assert first[-1] == "data: [DONE]"
    a, b = srv.records
    assert a.finished and not a.disconnected and a.produced == 3  # h, i, EOS
    assert b.cached == len(prompt) + 2


def test_failure_knobs():
    srv = FakeServer("vllm", fail=[503])

    async def go():
        async with client(srv) as c:
            body = {"prompt": [1, 2], "max_tokens": 4, "stream": True}
            failed = await c.post("/v1/completions", json=body)
            srv.connect_error = True
            with pytest.raises(httpx.ConnectError):
                await c.get("/v1/models")
            srv.connect_error = False
            srv.hang_s = 30
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(c.post("/v1/completions", json=body), 0.05)
            return failed.status_code

    assert run(go()) == 503
    assert [r.status for r in srv.records] == [503, 200]
    assert srv.seen[-1] == ("POST", "/v1/completions")
