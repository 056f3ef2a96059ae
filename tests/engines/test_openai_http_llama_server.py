"""The HTTP engine against llama.cpp's C++ ``llama-server`` (the version vendored by the
installed llama-cpp-python, built by ``scripts/build-llama-server.sh`` into
``~/.cache/asynclm/bin``; these tests run the script when the binary is missing, which takes
minutes). Started here on loopback with the bundled 0.5B, ``-np 4 -c 8192 -t 2`` (slow). One
fast test replays the shape of its stream without it.

What it offers, asserted below: ``/props`` (so :meth:`HttpEngine.connect` picks the
``llama-server`` mode: token ids in and out), and a cached-token figure in its stream
(``timings.cache_n``), so a resume after an injected result is seen to be served from its
prefix cache (when the session keeps its slot: ``id_slot``, which the asynclm server sets)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from asynclm.engines.base import ChatMessage
from asynclm.engines.openai_http import GGUFTokenizer, HttpEngine, Mode
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import tool

ROOT = Path(__file__).resolve().parents[2]
SMALL_MODEL = "qwen2.5-coder-0.5b"


def small_model() -> Path:
    """The bundled 0.5B's GGUF path (skips when it cannot be had)."""
    pytest.importorskip("llama_cpp")
    from asynclm.models import ModelError, model_path

    try:
        return model_path(SMALL_MODEL)
    except ModelError as e:
        pytest.skip(f"cannot pull {SMALL_MODEL}: {e}")


def llama_server_binary() -> Path:
    """``~/.cache/asynclm/bin/llama-server`` (or under ``$ASYNCLM_HOME``), built by
    ``scripts/build-llama-server.sh`` if missing; skips when it cannot be built."""
    home = Path(os.environ.get("ASYNCLM_HOME", Path.home() / ".cache" / "asynclm"))
    binary = home / "bin" / "llama-server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    if not shutil.which("cmake"):
        pytest.skip("llama-server is not built and cmake is missing")
    script = ROOT / "scripts" / "build-llama-server.sh"
    proc = subprocess.run(["bash", str(script), str(ROOT / ".venv" / "bin" / "python")],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        pytest.skip(f"could not build llama-server: {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


class LlamaServer:
    """``llama-server`` for one GGUF model on 127.0.0.1 (a free port), logging to a file;
    :meth:`start` waits until ``/health`` answers 200 (the model is loaded)."""

    def __init__(self, model: Path, *, parallel: int = 4, n_ctx: int = 8192, threads: int = 2,
                 startup_timeout_s: float = 120.0) -> None:
        self.model, self.parallel, self.n_ctx, self.threads = model, parallel, n_ctx, threads
        self.startup_timeout_s = startup_timeout_s
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlamaServer:
        cmd = [str(llama_server_binary()), "-m", str(self.model), "--host", "127.0.0.1",
               "--port", str(self.port), "-np", str(self.parallel), "-c", str(self.n_ctx),
               "-t", str(self.threads), "-tb", str(self.threads)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}):\n"
                                   f"{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server did not load in {self.startup_timeout_s:g} s:\n"
                           f"{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 30) -> str:
        lines = self.log.read_bytes().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    def __enter__(self) -> LlamaServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            self.log.unlink(missing_ok=True)
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    with LlamaServer(small_model(), parallel=4, n_ctx=8192, threads=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[GGUFTokenizer]:
    tok = GGUFTokenizer(small_model())
    yield tok
    tok.close()


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


@pytest.mark.slow
def test_connect_finds_the_llama_server_mode(server: LlamaServer,
                                             tokenizer: GGUFTokenizer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        props = c.get("/props").json()
        assert "default_generation_settings" in props
        ids = tokenizer.tokenize("def add(a, b):")
        body = c.post("/completion", json={"prompt": ids, "n_predict": 2, "temperature": 0,
                                           "return_tokens": True}).json()
        assert len(body["tokens"]) == 2 and all(isinstance(t, int) for t in body["tokens"])

    async def go() -> tuple[Mode, Any, bool, dict[str, Any]]:
        engine = await HttpEngine.connect(server.url, tokenizer)
        _, info = await engine.probe()
        await engine.aclose()
        return engine.mode, engine.capabilities, engine.llama_cpp_python, info

    mode, caps, lcp, info = asyncio.run(go())
    assert mode is Mode.LLAMA_SERVER and caps.request_log and not lcp
    assert info["slots"] == server.parallel  # what the asynclm server pins sessions to


@pytest.mark.slow
def test_resumed_chunks_continue_exactly_like_one_stream(server: LlamaServer,
                                                         tokenizer: GGUFTokenizer) -> None:
    """Greedy, the same prompt (its prefix cached the same way): 32 tokens read from one
    stream equal 32 tokens read in chunks of 8, each chunk a new request resumed on the
    server's prefix cache. (Found here: ``llama-server`` sends the finish of a chunk in a
    message of its own, after the last token, which the engine took for the end of the
    generation.) Not compared with the in-process engine: this build's kernels, and how much
    of the prompt the server had cached, move near-ties of the 0.5B (tested: the 6th token
    differs), so only the server is compared with itself."""
    prompt = [ChatMessage("user", "Write a Python function that reverses a string.")]

    async def generate(chunk: int) -> tuple[list[int], list[Any]]:
        engine = await HttpEngine.connect(server.url, tokenizer, chunk_tokens=chunk)
        try:
            await engine.prefill(engine.tokenize_chat(prompt))
            out: list[int] = []
            for _ in range(32):
                out.append(await engine.step())
                if engine.is_eos(out[-1]):
                    break
            return out, list(engine.requests)
        finally:
            await engine.aclose()

    async def go() -> tuple[Any, Any, Any]:
        warm = await generate(1)  # the prompt is now in a slot's cache
        return warm, await generate(256), await generate(8)

    (_, _), (whole, one), (chunked, many) = asyncio.run(go())
    n = len(tokenizer.tokenize_chat(prompt))
    assert len(whole) == 32 and not any(tokenizer.is_eos(t) for t in whole)
    assert chunked == whole, (tokenizer.detokenize(chunked), tokenizer.detokenize(whole))
    assert [r.reason for r in one] == ["prefill"]
    assert [r.reason for r in many] == ["prefill", "resume", "resume", "resume"]
    assert one[0].cached_tokens == many[0].cached_tokens == n - 1  # its last token re-read
    for r in many[1:]:  # each resume: all but the last token it had generated was cached
        assert r.cached_tokens == r.prompt_tokens - 1, r


@pytest.mark.slow
def test_a_tool_result_resumes_on_the_prefix_cache(server: LlamaServer,
                                                   tokenizer: GGUFTokenizer) -> None:
    """A greedy session calls get_weather; its result is injected, and the request that
    resumes after it is served from the server's prefix cache (``timings.cache_n``). The
    session is pinned to a slot (``id_slot``): unpinned, the resume, sent right after the
    engine dropped the stream, found its slot still busy with the dropped request, went to
    another slot and had nothing cached (``cache_n`` 0 of 157 tokens, seen here)."""

    async def go() -> tuple[Any, list[Any]]:
        engine = await HttpEngine.connect(server.url, tokenizer, extra_body={"id_slot": 0})
        try:
            s = Session(engine, [get_weather], strategy="sync", system=SYS,
                        config=SessionConfig(max_tokens=60))
            result = await s.run("Weather in Lisbon?")
            return result, list(engine.requests)
        finally:
            await engine.aclose()

    result, requests = asyncio.run(go())
    assert [(c.fn, c.status) for c in result.calls] == [("get_weather", "ok")]
    assert result.calls[0].args["city"].startswith("Lisbo")  # the 0.5B writes Lisboa too
    assert requests[0].reason == "prefill" and requests[0].cached_tokens is not None
    resumes = [r for r in requests if r.reason == "resume"]
    assert resumes, requests
    after = resumes[0]
    assert after.cached_tokens is not None and after.cached_tokens > 0, after
    # everything but the injected result (and the token before it) came from the cache
    assert after.processed_tokens is not None and after.processed_tokens < 40, after
    assert result.stop_reason in ("eos", "max_tokens")


def test_a_finish_in_its_own_message_resumes_instead_of_ending() -> None:
    """``llama-server``'s stream shape, replayed without it: every token in a message, then
    ``{"stop": true, "stop_type": "limit", "tokens": []}`` alone. The engine must resume there
    (it used to hand out EOS), and hand out EOS only for ``stop_type: "eos"``."""
    from asynclm.testing.http import EOS, ByteTokenizer

    script = b"abcdefghijklmnopqrstuvwxyz"
    prompts: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if request.url.path == "/props":
                return httpx.Response(200, json={"default_generation_settings": {}})
            return httpx.Response(404)
        body = json.loads(request.content)
        prompt = body["prompt"]
        prompts.append(prompt)
        at = len(prompt) - len(prompts[0])
        lines = []
        for i in range(body["n_predict"]):
            if at + i >= len(script):
                stop = {"stop": True, "stop_type": "eos", "tokens": [], "content": "",
                        "timings": {"cache_n": len(prompt) - 1}}
                break
            lines.append({"content": chr(script[at + i]), "tokens": [script[at + i]],
                          "stop": False, "timings": {"cache_n": len(prompt) - 1}})
        else:
            stop = {"stop": True, "stop_type": "limit", "tokens": [], "content": "",
                    "timings": {"cache_n": len(prompt) - 1}}
        lines.append(stop)
        text = "".join(f"data: {json.dumps(x)}\n\n" for x in lines)
        return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})

    async def go() -> list[int]:
        engine = await HttpEngine.connect("http://llama-server", ByteTokenizer(),
                                          chunk_tokens=5, transport=httpx.MockTransport(handler))
        try:
            await engine.prefill([1, 2, 3])
            out = []
            while not out or out[-1] != EOS:
                out.append(await engine.step())
            assert engine.mode is Mode.LLAMA_SERVER
            assert [r.finish for r in engine.requests] == ["length"] * 5 + ["stop"]
            return out
        finally:
            await engine.aclose()

    out = asyncio.run(go())
    assert bytes(out[:-1]) == script and out[-1] == EOS
    assert len(prompts) == 6 and [len(p) for p in prompts] == [3, 8, 13, 18, 23, 28]
