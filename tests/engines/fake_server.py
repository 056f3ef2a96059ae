"""A fake inference server (Starlette on uvicorn, loopback, a thread of the test process) that
speaks the wire formats of llama.cpp's ``llama-server``, vLLM, SGLang, an OpenAI text
``/v1/completions`` and a chat-only API, over a byte-level toy model.

The toy model writes a fixed ``script`` (bytes); what it has written so far is the context after
the prompt with injected interrupts (``[INTR] ... [END]``) cut out, so the next byte is
well-defined whatever the runtime appended. After the script: EOS. The server keeps a one-slot
prefix cache (the last request's prompt and output) and reports cached tokens the way the real
server of each flavor does. Failure knobs: ``fail`` (statuses for the next requests), ``hang_s``
(no response for that long), ``cut_after`` (drop the connection after k tokens), and a per-token
delay. Every request is recorded, with how many tokens it produced before the client left.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from asynclm.engines.base import ChatMessage

EOS = 256
START = 257
CONTROLS = {EOS: "<|eos|>", START: "<|start|>"}
_CTRL_RE = re.compile("(" + "|".join(re.escape(v) for v in CONTROLS.values()) + ")")
# an interrupt block, with the newline the runtime puts before it when the text before it does
# not end a line
_INTR_RE = re.compile(rb"(?:(?<=[^\n])\n)?\[INTR\].*?\[END\]\n?", re.S)


class ByteTokenizer:
    """Ids 0-255 are bytes; 256 ``<|eos|>`` and 257 ``<|start|>`` are control tokens."""

    eos_id = EOS

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        if not special:
            return list(text.encode("utf-8"))
        out: list[int] = []
        inv = {v: k for k, v in CONTROLS.items()}
        for part in _CTRL_RE.split(text):
            out += [inv[part]] if part in inv else list(part.encode("utf-8"))
        return out

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return b"".join(CONTROLS[t].encode() if t in CONTROLS else bytes([t]) for t in tokens)

    def is_eos(self, token: int) -> bool:
        return token == EOS

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(f"<|start|>{m.role}\n{m.content}\n" for m in messages) + \
            "<|start|>assistant\n"

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        from asynclm.engines.tokenizers import tokenize_chat

        return tokenize_chat(self, messages)

    def control_texts(self) -> dict[int, str]:
        return dict(CONTROLS)


@dataclass
class Record:
    path: str
    body: dict[str, Any]
    prompt: list[int]
    cached: int = 0
    produced: int = 0
    finished: bool = False
    disconnected: bool = False
    status: int = 200


@dataclass
class FakeServer:
    flavor: str  # llama-server | vllm | sglang | text | chat
    script: bytes = b"Hello world."
    token_delay_s: float = 0.0
    first_delay_s: float = 0.0
    fail: list[int] = field(default_factory=list)
    hang_s: float = 0.0
    cut_after: int | None = None
    cumulative: bool = True  # SGLang: output_ids cumulative (its default) or deltas
    records: list[Record] = field(default_factory=list)
    cache: list[int] = field(default_factory=list)
    port: int = 0
    _server: Any = None
    _thread: threading.Thread | None = None

    # -- the toy model --------------------------------------------------------------------
    def prompt_len(self, prompt: list[int]) -> int:
        """Where the assistant's turn begins (after the last ``<|start|>assistant\\n``)."""
        marker = [START] + list(b"assistant\n")
        for i in range(len(prompt) - len(marker), -1, -1):
            if prompt[i:i + len(marker)] == marker:
                return i + len(marker)
        return 0

    def next_token(self, ctx: list[int], start: int, ban: set[int]) -> int:
        written = _INTR_RE.sub(b"", bytes(t for t in ctx[start:] if t < 256))
        k = len(written)
        if k < len(self.script) and written == self.script[:k]:
            tok = self.script[k]
        else:
            tok = EOS
        if tok in ban:
            tok = ord("?") if ord("?") not in ban else ord("!")
        return tok

    # -- HTTP -----------------------------------------------------------------------------
    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response, StreamingResponse
        from starlette.routing import Route

        tok = ByteTokenizer()

        async def models(_: Request) -> Response:
            owner = {"vllm": "vllm", "text": "me"}.get(self.flavor, "fake")
            return JSONResponse({"object": "list", "data": [{"id": "toy", "owned_by": owner}]})

        async def props(_: Request) -> Response:
            if self.flavor != "llama-server":
                return JSONResponse({"detail": "Not Found"}, 404)
            return JSONResponse({"default_generation_settings": {"n_ctx": 4096}})

        async def model_info(_: Request) -> Response:
            if self.flavor != "sglang":
                return JSONResponse({"detail": "Not Found"}, 404)
            return JSONResponse({"model_path": "toy"})

        async def version(_: Request) -> Response:
            if self.flavor != "vllm":
                return JSONResponse({"detail": "Not Found"}, 404)
            return JSONResponse({"version": "0.11.0"})

        async def generate(request: Request) -> Response:
            body = await request.json()
            path = request.url.path
            f = self.flavor
            ok = (
                (path == "/completion" and f == "llama-server")
                or (path == "/generate" and f == "sglang")
                or (path == "/v1/completions" and f in ("vllm", "text"))
                or (path == "/v1/chat/completions" and f in ("vllm", "text", "chat"))
            )
            if not ok:
                return JSONResponse({"detail": "Not Found"}, 404)
            if path == "/completion":
                prompt = list(body["prompt"])
                n = body["n_predict"]
                ban = {int(t) for t, _ in body.get("logit_bias") or []}
                use_cache = body.get("cache_prompt", True)
            elif path == "/generate":
                prompt = list(body["input_ids"])
                n = body["sampling_params"]["max_new_tokens"]
                ban = {int(t) for t in body["sampling_params"].get("logit_bias") or {}}
                use_cache = True
            elif path == "/v1/completions":
                p = body["prompt"]
                if f == "vllm" and isinstance(p, list):
                    prompt = [int(t) for t in p]
                elif isinstance(p, str):
                    prompt = tok.tokenize(p, special=True)
                else:
                    return JSONResponse({"error": {"message": "prompt must be a string"}}, 422)
                n = body["max_tokens"]
                ban = {int(t) for t in body.get("logit_bias") or {}}
                use_cache = "cache_salt" not in body
            else:
                msgs = body["messages"]
                prompt = tok.tokenize(tok.render_chat(
                    [ChatMessage(m["role"], m["content"]) for m in msgs]), special=True)
                n = body["max_tokens"]
                ban = set()
                use_cache = True
            rec = Record(path, body, prompt)
            self.records.append(rec)
            if self.fail:
                rec.status = self.fail.pop(0)
                return JSONResponse({"error": {"message": f"injected {rec.status}"}}, rec.status)
            if self.hang_s:
                await asyncio.sleep(self.hang_s)
            cached = 0
            if use_cache:
                while cached < min(len(prompt), len(self.cache)) and \
                        prompt[cached] == self.cache[cached]:
                    cached += 1
            rec.cached = cached
            start = self.prompt_len(prompt)
            if path == "/v1/chat/completions":
                start = len(prompt)  # a new assistant turn: chat APIs cannot continue one
            cut = self.cut_after
            self.cut_after = None
            return StreamingResponse(self._stream(rec, prompt, start, n, ban, cached, cut),
                                     media_type="text/event-stream")

        routes = [
            Route("/v1/models", models), Route("/props", props),
            Route("/get_model_info", model_info), Route("/version", version),
            Route("/completion", generate, methods=["POST"]),
            Route("/generate", generate, methods=["POST"]),
            Route("/v1/chat/completions", generate, methods=["POST"]),
        ]
        if self.flavor != "chat":  # a chat-only API has no /v1/completions at all
            routes.append(Route("/v1/completions", generate, methods=["POST"]))
        return Starlette(routes=routes)

    async def _stream(self, rec: Record, prompt: list[int], start: int, n: int, ban: set[int],
                      cached: int, cut: int | None) -> Any:
        ctx = list(prompt)
        # The cache grows with each token, as a real server's KV does: a client that aborts this
        # stream and resumes at once must not race the generator's cleanup (``finally``).
        self.cache = ctx
        out: list[int] = []
        tok = ByteTokenizer()
        f = self.flavor
        try:
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for i in range(n):
                if cut is not None and i == cut:
                    raise ConnectionResetError("fake server cuts the stream")
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                t = self.next_token(ctx, start, ban)
                ban = set()
                ctx.append(t)
                out.append(t)
                rec.produced += 1
                eos = t == EOS
                last = eos or i == n - 1
                reason = "stop" if eos else "length"
                text = "" if eos else tok.detokenize([t]).decode("utf-8", "replace")
                if f == "llama-server":
                    d: dict[str, Any] = {"content": text, "tokens": [] if eos else [t],
                                         "stop": last}
                    d["timings"] = {"prompt_n": len(prompt) - cached, "cache_n": cached}
                    if last:
                        d["stop_type"] = "eos" if eos else "limit"
                        d["tokens_evaluated"] = len(prompt)
                elif f == "sglang":
                    ids = out if self.cumulative else [t]
                    d = {"text": tok.detokenize(out).decode(), "output_ids": list(ids),
                         "meta_info": {"prompt_tokens": len(prompt), "cached_tokens": cached,
                                       "finish_reason": {"type": reason} if last else None}}
                elif f == "vllm" and rec.path == "/v1/completions":
                    d = {"choices": [{"text": text, "token_ids": [t],
                                      "finish_reason": reason if last else None}],
                         "usage": {"prompt_tokens": len(prompt),
                                   "prompt_tokens_details": {"cached_tokens": cached}}}
                elif rec.path == "/v1/chat/completions":
                    d = {"choices": [{"delta": {"content": text},
                                      "finish_reason": reason if last else None}]}
                else:
                    d = {"choices": [{"text": text, "finish_reason": reason if last else None}]}
                yield f"data: {json.dumps(d)}\n\n"
                if eos:
                    break
            yield "data: [DONE]\n\n"
            rec.finished = True
        except asyncio.CancelledError:
            rec.disconnected = True
            raise

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeServer:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for hanging handlers
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
