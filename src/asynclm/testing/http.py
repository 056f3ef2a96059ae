"""A fake inference server for :class:`~asynclm.engines.openai_http.HttpEngine` tests, as an
``httpx.MockTransport``: no socket, no thread, no server process.

It speaks the wire formats of llama.cpp's ``llama-server``, vLLM, SGLang, an OpenAI text
``/v1/completions`` (``text``, e.g. llama-cpp-python) and a chat-only API (``chat``), over a
byte-level toy model (:class:`ByteTokenizer`: ids 0-255 are bytes, 256 EOS, 257 ``<|start|>``).

The toy model writes a fixed ``script`` (bytes); what it has written so far is the context after
the prompt with injected interrupts (``[INTR] ... [END]``) cut out, so the next byte is
well-defined whatever the runtime appended. After the script: EOS. Pass ``model`` to script the
next token yourself. The server keeps a one-slot prefix cache (the last request's prompt and
output, growing with each token as it is generated, as a real KV cache does) and reports cached
tokens the way the real server of each flavor does.

Failure knobs: ``fail`` (statuses for the next generation requests), ``hang_s`` (no response for
that long), ``cut_after`` (the next stream breaks after k tokens, as a dropped connection does),
``connect_error`` (nothing listens), a per-token and a first-token delay. Every generation
request is a :class:`Record` in ``records``, with the tokens it produced before the client left
(``disconnected``: the client closed the stream, which closes the body's generator).

>>> server = FakeServer("vllm", script=b"Hello.")
>>> engine = await server.connect(chunk_tokens=8)   # HttpEngine.connect over the fake
>>> server.records[-1].cached                        # after some steps
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from asynclm.engines.base import ChatMessage
from asynclm.engines.tokenizers import tokenize_chat

if TYPE_CHECKING:
    from asynclm.engines.openai_http import HttpEngine

__all__ = ["EOS", "FLAVORS", "START", "ByteTokenizer", "FakeServer", "Record"]

EOS = 256
START = 257
CONTROLS = {EOS: "<|eos|>", START: "<|start|>"}
FLAVORS = ("llama-server", "vllm", "sglang", "text", "chat")
_CTRL_RE = re.compile("(" + "|".join(re.escape(v) for v in CONTROLS.values()) + ")")
# an interrupt block, with the newline the runtime puts before it when the text before it does
# not end a line
_INTR_RE = re.compile(rb"(?:(?<=[^\n])\n)?\[INTR\].*?\[END\]\n?", re.DOTALL)
_ASSISTANT = [START] + list(b"assistant\n")
# routes: path -> method; the generation routes exist in every flavor (a wrong flavor is a 404
# from the handler, as from a real server), except /v1/completions on a chat-only API
_GET = ("/v1/models", "/props", "/get_model_info", "/version")
_POST = ("/completion", "/generate", "/v1/completions", "/v1/chat/completions")


class ByteTokenizer:
    """Ids 0-255 are bytes; 256 ``<|eos|>`` and 257 ``<|start|>`` are control tokens. A chat
    turn is ``<|start|>{role}\\n{content}\\n``."""

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
        return tokenize_chat(self, messages)

    def control_texts(self) -> dict[int, str]:
        return dict(CONTROLS)


@dataclass
class Record:
    """One generation request as the server saw it."""

    path: str
    body: dict[str, Any]
    prompt: list[int]
    cached: int = 0  # prompt tokens served from the prefix cache
    produced: int = 0  # tokens generated (streamed or about to be)
    finished: bool = False  # the stream ran to its end ([DONE])
    disconnected: bool = False  # the client left before the end
    status: int = 200


@dataclass
class FakeServer:
    """The fake server (see the module docstring). Knobs may be changed between requests."""

    flavor: str  # one of FLAVORS
    script: bytes = b"Hello world."
    # the toy model: (context, where the assistant's turn starts, banned ids) -> next id;
    # None: the script (see next_token)
    model: Callable[[list[int], int, set[int]], int] | None = None
    token_delay_s: float = 0.0
    first_delay_s: float = 0.0
    fail: list[int] = field(default_factory=list)
    hang_s: float = 0.0
    cut_after: int | None = None
    connect_error: bool = False
    cumulative: bool = True  # SGLang: output_ids cumulative (its default) or deltas
    base_url: str = "http://fake-server"
    records: list[Record] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)  # every request: (method, path)
    cache: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.flavor not in FLAVORS:
            raise ValueError(f"flavor {self.flavor!r}: one of {FLAVORS}")

    # -- the toy model ------------------------------------------------------------------------
    def prompt_len(self, prompt: Sequence[int]) -> int:
        """Where the assistant's turn begins (after the last ``<|start|>assistant\\n``)."""
        for i in range(len(prompt) - len(_ASSISTANT), -1, -1):
            if list(prompt[i:i + len(_ASSISTANT)]) == _ASSISTANT:
                return i + len(_ASSISTANT)
        return 0

    def next_token(self, ctx: list[int], start: int, ban: set[int]) -> int:
        """The script's next byte after what was written since ``start`` (interrupts cut out),
        EOS once it is written or if the text left it; a banned id becomes ``?`` (or ``!``)."""
        if self.model is not None:
            return self.model(ctx, start, ban)
        written = _INTR_RE.sub(b"", bytes(t for t in ctx[start:] if t < 256))
        k = len(written)
        tok = self.script[k] if k < len(self.script) and written == self.script[:k] else EOS
        if tok in ban:
            tok = ord("?") if ord("?") not in ban else ord("!")
        return tok

    # -- wiring -------------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        """A transport for ``httpx.AsyncClient(transport=...)`` / ``HttpEngine(transport=...)``."""
        return httpx.MockTransport(self.handle)

    @property
    def url(self) -> str:
        return self.base_url

    async def connect(self, tokenizer: Any = None, **kwargs: Any) -> HttpEngine:
        """``HttpEngine.connect`` to this server (a :class:`ByteTokenizer` unless given; a
        short retry backoff unless given)."""
        from asynclm.engines.openai_http import HttpEngine

        kwargs.setdefault("backoff_s", 0.01)
        return await HttpEngine.connect(
            self.base_url, tokenizer or ByteTokenizer(), transport=self.transport(), **kwargs)

    # -- HTTP ---------------------------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        """The server: one request in, one response out (a streamed body for generations)."""
        path, method = request.url.path, request.method
        self.seen.append((method, path))
        if self.connect_error:
            raise httpx.ConnectError("connection refused (fake server)", request=request)
        routes = _GET + (_POST if self.flavor != "chat" else
                         tuple(p for p in _POST if p != "/v1/completions"))
        if path not in routes:
            return _json({"detail": "Not Found"}, 404)
        if (method == "GET") != (path in _GET):
            return _json({"detail": "Method Not Allowed"}, 405)
        f = self.flavor
        if path == "/v1/models":
            owner = {"vllm": "vllm", "text": "me"}.get(f, "fake")
            return _json({"object": "list", "data": [{"id": "toy", "owned_by": owner}]})
        if path == "/props":
            return _json({"default_generation_settings": {"n_ctx": 4096}}) \
                if f == "llama-server" else _json({"detail": "Not Found"}, 404)
        if path == "/get_model_info":
            return _json({"model_path": "toy"}) if f == "sglang" \
                else _json({"detail": "Not Found"}, 404)
        if path == "/version":
            return _json({"version": "0.11.0"}) if f == "vllm" \
                else _json({"detail": "Not Found"}, 404)
        return await self._generate(path, json.loads(request.content or b"{}"))

    async def _generate(self, path: str, body: dict[str, Any]) -> httpx.Response:
        f = self.flavor
        ok = (
            (path == "/completion" and f == "llama-server")
            or (path == "/generate" and f == "sglang")
            or (path == "/v1/completions" and f in ("vllm", "text"))
            or (path == "/v1/chat/completions" and f in ("vllm", "text", "chat"))
        )
        if not ok:
            return _json({"detail": "Not Found"}, 404)
        tok = ByteTokenizer()
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
                return _json({"error": {"message": "prompt must be a string"}}, 422)
            n = body["max_tokens"]
            ban = {int(t) for t in body.get("logit_bias") or {}}
            use_cache = "cache_salt" not in body
        else:
            prompt = tok.tokenize(tok.render_chat(
                [ChatMessage(m["role"], m["content"]) for m in body["messages"]]), special=True)
            n = body["max_tokens"]
            ban = set()
            use_cache = True
        rec = Record(path, body, prompt)
        self.records.append(rec)
        if self.fail:
            rec.status = self.fail.pop(0)
            return _json({"error": {"message": f"injected {rec.status}"}}, rec.status)
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        cached = 0
        if use_cache:
            while cached < min(len(prompt), len(self.cache)) and \
                    prompt[cached] == self.cache[cached]:
                cached += 1
        rec.cached = cached
        # a chat API starts a new assistant turn: it cannot continue one
        start = len(prompt) if path == "/v1/chat/completions" else self.prompt_len(prompt)
        cut, self.cut_after = self.cut_after, None
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"},
            stream=_ClosingStream(self._stream(rec, prompt, start, n, ban, cached, cut)))

    async def _stream(self, rec: Record, prompt: list[int], start: int, n: int, ban: set[int],
                      cached: int, cut: int | None) -> AsyncIterator[bytes]:
        ctx = list(prompt)
        # The cache grows with each token, as a real server's KV does: a client that aborts this
        # stream and resumes at once must not race the generator's cleanup.
        self.cache = ctx
        out: list[int] = []
        tok = ByteTokenizer()
        f = self.flavor
        try:
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for i in range(n):
                if cut is not None and i == cut:
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body "
                        "(fake server cuts the stream)")
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
                yield f"data: {json.dumps(d)}\n\n".encode()
                if eos:
                    break
            yield b"data: [DONE]\n\n"
            rec.finished = True
        except (GeneratorExit, asyncio.CancelledError):
            rec.disconnected = True
            raise


def _json(obj: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=obj)


class _ClosingStream(httpx.AsyncByteStream):
    """A streamed body whose ``aclose`` closes its generator: a client that closes the response
    is a client that dropped the connection (httpx's own iterator stream does not close it)."""

    def __init__(self, gen: Any) -> None:
        self._gen = gen

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen

    async def aclose(self) -> None:
        await self._gen.aclose()
