"""An engine over an HTTP inference server: vLLM, SGLang, llama.cpp's ``llama-server``,
llama-cpp-python's server, or any OpenAI-compatible ``/v1/completions`` (or chat-only) API.

The runtime drives engines one token per :meth:`step`; a server streams a whole generation. The
mapping: the engine keeps one streamed generation open and hands out its tokens one by one. When
the runtime changes the context (``append`` an interrupt, ``rollback``, a ``prefill``, or a step
with banned tokens), the stream is **closed** (the connection is dropped, which makes the server
stop decoding) and the next step **resumes** with a new request carrying the whole context as
token ids, so the server's prefix cache serves everything but the new segment. Interrupt tokens
come from the runtime, which tokenizes only the appended segment; generated tokens are kept as
the server returned them, never re-tokenized.

Modes (:class:`Mode`), picked by :meth:`HttpEngine.connect`'s probe unless given:

==============  ==========================  =======================  ==========================
mode            endpoint                    token ids in / out       cached-token report
==============  ==========================  =======================  ==========================
``llama-server``  ``POST /completion``      ``prompt`` ids / ``tokens``  ``timings.cache_n``
``vllm``        ``POST /v1/completions``    ``prompt`` ids /         ``usage.prompt_tokens_``
                                            ``return_token_ids``     ``details.cached_tokens``
``sglang``      ``POST /generate``          ``input_ids`` /          ``meta_info.cached_tokens``
                                            ``output_ids``
``text``        ``POST /v1/completions``    text / text              ``usage`` if any
``chat``        ``POST /v1/chat/completions``  messages / text       ``usage`` if any
==============  ==========================  =======================  ==========================

``text`` sends the context as text (the server re-tokenizes it; generated text is tokenized
here), which is what llama-cpp-python's ``python -m llama_cpp.server`` 0.3.36 offers: its
``/v1/completions`` accepts only strings, has no ``/completion`` endpoint and reports no cached
tokens (its prefix cache still works; it logs ``prefix-match hit`` lines when verbose). The
server re-tokenizes with special tokens parsed, so in the text sent any spelling of an added
token (``<|im_end|>``, ``<tool_call>``) that is not one of the context's own added tokens is
broken with U+2060 (see ``HttpEngine._text``). ``chat``
is the degraded mode for hosted chat-only APIs: each resume is a new chat request whose last
assistant message holds everything generated so far (the paper's Async-Naive restart); the cost
shows in the request log.

Every request is logged as a :class:`RequestStats` (``engine.requests``); the session copies the
new ones into its trace (see :meth:`HttpEngine.take_requests`).

Failures: connection errors, HTTP 429/5xx and streams cut mid-way are retried (``retries``
times, with backoff; a generation request has no side effect, and a resume restarts from the
tokens already handed out); after that, or on a 4xx, a :class:`ServerError` subclass is raised.
Every read has a deadline (``read_timeout_s``): a server that stops answering raises
:class:`ServerTimeout`, never hangs. Using the engine after :meth:`~HttpEngine.aclose` raises
:class:`~asynclm.errors.EngineClosedError`, as every engine does.

Requires the ``http`` extra (httpx): ``pip install 'asynclm[http]'``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from bisect import bisect_right
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asynclm._clock import now
from asynclm.engines.base import Capabilities, ChatMessage
from asynclm.engines.tokenizers import (
    GGUFTokenizer,
    HFTokenizer,
    Tokenizer,
    tokenize_chat,
    tokenize_untrusted,
)
from asynclm.errors import (
    EngineClosedError,
    ServerError,
    ServerResponseError,
    ServerTimeout,
    ServerUnavailable,
)
from asynclm.protocol.escape import CONTROL_TAGS, SPECIAL_TOKEN_PREFIXES

__all__ = [
    "GGUFTokenizer",
    "HFTokenizer",
    "HttpEngine",
    "Mode",
    "RequestStats",
    "ServerError",
    "ServerResponseError",
    "ServerTimeout",
    "ServerUnavailable",
    "Tokenizer",
    "connect",
]

# In asynclm.errors: EngineError
#  ├── EngineClosedError          used after aclose (as every engine)
#  └── ServerError (RuntimeError)
#       ├── ServerUnavailable      cannot connect (after retries)
#       ├── ServerTimeout          no data within read_timeout_s (after retries)
#       └── ServerResponseError    an HTTP error status, or a response this engine cannot read


class Mode(StrEnum):
    LLAMA_SERVER = "llama-server"
    VLLM = "vllm"
    SGLANG = "sglang"
    TEXT = "text"
    CHAT = "chat"


_TOKEN_MODES = frozenset({Mode.LLAMA_SERVER, Mode.VLLM, Mode.SGLANG})


@dataclass(slots=True)
class RequestStats:
    """One generation request the engine sent. Times are on the runtime's clock
    (:func:`asynclm._clock.now`).

    ``cached_tokens`` is what the server *reported* (None if it reports nothing);
    ``reason`` is ``prefill`` (a new context), ``resume`` (after an append, rollback or a
    finished chunk), ``ban`` (one step with banned tokens), ``reprefill`` (prefill with
    ``reuse_prefix=False``) or ``evict`` (a 1-token request that drops a server's cache)."""

    mode: str
    reason: str
    prompt_tokens: int
    sent_at: float
    first_at: float | None = None
    ended_at: float | None = None
    cached_tokens: int | None = None
    received: int = 0
    """Tokens received from the server."""
    finish: str | None = None
    """``stop`` (end of generation), ``length``, ``closed`` (we closed it) or ``error``."""
    retries: int = 0
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def processed_tokens(self) -> int | None:
        """Prompt tokens the server had to compute (None when it reports no cache figure)."""
        return None if self.cached_tokens is None else self.prompt_tokens - self.cached_tokens


@dataclass(slots=True)
class _Chunk:
    tokens: list[int]
    text: str
    finish: str | None
    cached: int | None


class _Stream:
    """One open streamed response."""

    def __init__(self, resp: Any, lines: AsyncIterator[str], stats: RequestStats) -> None:
        self.resp = resp
        self.lines = lines
        self.stats = stats
        self.done = False
        self.out: list[int] = []  # output ids so far (SGLang may stream them cumulatively)


class HttpEngine:
    """A model behind an HTTP server, driven token by token (see the module docstring).

    >>> engine = await HttpEngine.connect("http://127.0.0.1:8000", GGUFTokenizer(path))
    >>> session = Session(engine, tools)
    """

    def __init__(
        self,
        base_url: str,
        tokenizer: Tokenizer,
        *,
        mode: Mode | str = Mode.TEXT,
        model: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        chunk_tokens: int = 256,
        retries: int = 2,
        backoff_s: float = 0.25,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        llama_cpp_python: bool = False,
        transport: Any = None,
    ) -> None:
        """``mode`` as probed by :meth:`connect` (prefer that). ``chunk_tokens``: tokens asked
        per request (a new request resumes after that many). ``extra_body`` is merged into every
        request body. ``llama_cpp_python``: the server is llama-cpp-python's (sends its
        sampling extensions, e.g. ``repeat_penalty=1``, and emulates ``reuse_prefix=False``
        by evicting its cache). ``transport``: an ``httpx`` transport (tests)."""
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "the HTTP engine needs httpx: pip install 'asynclm[http]'") from e
        self._httpx = httpx
        self.base_url = base_url.rstrip("/")
        self.tokenizer = tokenizer
        self.mode = Mode(mode)
        self.model = model
        self.temperature = float(temperature)
        self.chunk_tokens = int(chunk_tokens)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.read_timeout_s = float(read_timeout_s)
        self.extra_body = dict(extra_body or {})
        self.llama_cpp_python = llama_cpp_python
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
        )
        self.capabilities = _capabilities(self.mode)
        self.requests: list[RequestStats] = []
        self._taken = 0
        self._ctx: list[int] = []
        self._stream: _Stream | None = None
        self._pending: deque[int] = deque()
        self._reuse = True
        self._resume_reason = "prefill"
        self._messages: dict[tuple[int, ...], list[ChatMessage]] = {}
        self._closed = False
        self._added: dict[int, str] | None = None
        self._break_rx: re.Pattern[str] | None = None

    # -- probing ----------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls, base_url: str, tokenizer: Tokenizer, *, mode: Mode | str | None = None,
        **kwargs: Any,
    ) -> HttpEngine:
        """Probe the server and build an engine in the best mode it supports (token ids in
        and out where possible). Raises :class:`ServerUnavailable` if nothing answers."""
        engine = cls(base_url, tokenizer, **kwargs)
        try:
            found, info = await engine.probe()
        except BaseException:
            await engine.aclose()
            raise
        engine.mode = Mode(mode) if mode is not None else found
        engine.capabilities = _capabilities(engine.mode)
        if engine.model is None:
            engine.model = info.get("model")
        if "llama_cpp_python" not in kwargs:
            engine.llama_cpp_python = bool(info.get("llama_cpp_python"))
        return engine

    async def probe(self) -> tuple[Mode, dict[str, Any]]:
        """(best mode, facts found: ``model``, ``llama_cpp_python``, and for ``llama-server``
        its parallel ``slots``). Order: llama.cpp ``/props``, SGLang ``/get_model_info``, vLLM
        ``/version``, then ``/v1/models`` (text completions, or chat if ``/v1/completions``
        does not exist)."""
        info: dict[str, Any] = {}
        models = await self._get_json("/v1/models")
        if isinstance(models, dict) and models.get("data"):
            first = models["data"][0]
            info["model"] = first.get("id")
            info["llama_cpp_python"] = first.get("owned_by") == "me"
        props = await self._get_json("/props")
        if isinstance(props, dict) and "default_generation_settings" in props:
            if isinstance(props.get("total_slots"), int):
                info["slots"] = props["total_slots"]  # its parallel slots (-np)
            return Mode.LLAMA_SERVER, info
        sgl = await self._get_json("/get_model_info")
        if isinstance(sgl, dict) and "model_path" in sgl:
            info.setdefault("model", sgl["model_path"])
            return Mode.SGLANG, info
        ver = await self._get_json("/version")
        if isinstance(ver, dict) and "version" in ver and models is not None:
            return Mode.VLLM, info
        if models is None and props is None and sgl is None and ver is None:
            raise ServerUnavailable(f"no inference server answers at {self.base_url}")
        try:  # GET: an existing POST route answers 405, a missing one 404; nothing generates
            r = await self._client.get("/v1/completions")
        except self._httpx.HTTPError as e:
            raise ServerUnavailable(f"{self.base_url}: {e!r}") from e
        return (Mode.CHAT if r.status_code == 404 else Mode.TEXT), info

    async def _get_json(self, path: str) -> Any:
        httpx = self._httpx
        for attempt in range(self.retries + 1):
            try:
                r = await self._client.get(path)
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                if attempt == self.retries:
                    raise ServerUnavailable(
                        f"cannot connect to {self.base_url}: {e!r}") from e
                await asyncio.sleep(self.backoff_s * 2**attempt)
                continue
            except httpx.TimeoutException as e:
                raise ServerTimeout(f"{self.base_url}{path}: no answer ({e!r})") from e
            if r.status_code != 200:
                return None
            try:
                return r.json()
            except ValueError:
                return None
        return None

    # -- tokenizer passthrough -------------------------------------------------------------

    @property
    def n_tokens(self) -> int:
        return len(self._ctx)

    @property
    def tokens(self) -> list[int]:
        return list(self._ctx)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self.tokenizer.render_chat(messages)

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Special tokens from the template only; message contents go through :meth:`tokenize`
        (no added token can come out of them)."""
        tokens = tokenize_chat(self, messages)
        if self.mode is Mode.CHAT:  # chat requests need the messages, not their tokens
            self._messages[tuple(tokens)] = list(messages)
            while len(self._messages) > 16:
                del self._messages[next(iter(self._messages))]
        return tokens

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """With ``special=False`` (untrusted text) no id of :meth:`added_tokens` comes out (see
        :func:`~asynclm.engines.tokenizers.tokenize_untrusted`)."""
        if special:
            return self.tokenizer.tokenize(text, special=True)
        return tokenize_untrusted(self.tokenizer, text, self._added_map())

    def added_tokens(self) -> dict[int, str]:
        """The tokenizer's added tokens by id, with their text (its ``added_tokens()``), or
        only its control tokens (``control_texts()``) for a tokenizer that cannot list them."""
        return dict(self._added_map())

    def _added_map(self) -> dict[int, str]:
        if self._added is None:
            listed = getattr(self.tokenizer, "added_tokens", None)
            self._added = dict(listed() if callable(listed) else self.tokenizer.control_texts())
        return self._added

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self.tokenizer.detokenize(tokens)

    def is_eos(self, token: int) -> bool:
        return self.tokenizer.is_eos(token)

    # -- the engine interface ---------------------------------------------------------------

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        """Replace the context and have the server process it now (the request is sent and
        its first token awaited). Returns the cached tokens the server reported for this
        request so far (0 when it reports none)."""
        self._check_open()
        await self._close_stream()
        self._ctx = [int(t) for t in tokens]
        self._reuse = reuse_prefix
        reason = "prefill" if reuse_prefix else "reprefill"
        if not reuse_prefix and self.mode is Mode.TEXT and self.llama_cpp_python:
            await self._evict()
        await self._open(reason)
        self._reuse = True
        await self._fill()
        stats = self._stream.stats if self._stream else self.requests[-1]
        return stats.cached_tokens or 0

    async def step(self, *, ban: Collection[int] = ()) -> int:
        """The next token of the open stream (a new request resumes it if there is none);
        with ``ban``, a one-token request carrying a logit bias against those ids."""
        self._check_open()
        if ban:
            await self._close_stream()
            await self._open("ban", max_tokens=1, ban=ban)
            await self._fill()
            tok = self._pending.popleft() if self._pending else self.tokenizer.eos_id
            await self._close_stream()
            if tok in ban and self.mode in _TOKEN_MODES:
                raise ServerResponseError(f"the server returned banned token {tok}")
            self._ctx.append(tok)
            return tok
        if not self._pending:
            if self._stream is None or self._stream.done:
                await self._close_stream()
                await self._open(self._resume_reason)
            await self._fill()
        tok = self._pending.popleft() if self._pending else self.tokenizer.eos_id
        self._ctx.append(tok)
        return tok

    async def append(self, tokens: Sequence[int]) -> None:
        """Extend the context; the open stream is closed and the next step resumes."""
        self._check_open()
        await self._close_stream()
        self._ctx.extend(int(t) for t in tokens)

    async def rollback(self, n_tokens: int) -> None:
        self._check_open()
        if not 0 <= n_tokens <= len(self._ctx):
            raise ValueError(f"cannot roll back to {n_tokens}: the context holds {len(self._ctx)}")
        if n_tokens == len(self._ctx):
            return
        await self._close_stream()
        del self._ctx[n_tokens:]

    def take_requests(self) -> list[RequestStats]:
        """:class:`~asynclm.engines.base.RequestLog` (``capabilities.request_log``): the
        requests sent since the previous call, oldest first; the session puts them into its
        trace and counters."""
        new = self.requests[self._taken:]
        self._taken = len(self.requests)
        return new

    async def aclose(self) -> None:
        """Close the open stream and the connection pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._close_stream()
        await self._client.aclose()

    async def __aenter__(self) -> HttpEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- streaming ----------------------------------------------------------------------------

    async def _fill(self) -> None:
        """Read until a token is pending or the stream has ended: a stop hands out EOS; a
        stream that ended for length with nothing pending is resumed. That happens after every
        full chunk when the finish comes in a message of its own, after the last token (as
        ``llama-server`` sends it), and for a 0-token "length" answer (at most 4 of those in a
        row)."""
        empty = 0
        while True:
            while not self._pending and self._stream is not None and not self._stream.done:
                await self._read(self._stream)  # a failed stream is replaced by its resume
            s = self._stream
            if self._pending or s is None or s.stats.finish != "length":
                return
            if not s.stats.received:
                empty += 1
                if empty >= 4:
                    raise ServerResponseError(
                        "the server keeps ending generations without a token")
            await self._close_stream()
            await self._open("resume")

    async def _read(self, s: _Stream) -> None:
        try:
            line = await asyncio.wait_for(anext(s.lines), self.read_timeout_s)
        except StopAsyncIteration:
            if s.stats.finish is None:  # cut short: no finish reason, no [DONE]
                await self._stream_failed(s, ServerUnavailable(
                    f"{self.base_url}: the {self.mode} stream ended without a finish reason"))
                return
            s.done = True
            s.stats.ended_at = now()
            return
        except (TimeoutError, self._httpx.TimeoutException) as e:
            await self._stream_failed(s, ServerTimeout(
                f"{self.base_url}: no data for {self.read_timeout_s:g} s in a {self.mode} stream"))
            del e
            return
        except self._httpx.HTTPError as e:  # cut mid-way: resume from what was handed out
            await self._stream_failed(s, ServerUnavailable(f"{self.base_url}: stream broke: {e!r}"))
            return
        chunk = self._parse(s, line)
        if chunk is None:
            return
        st = s.stats
        if chunk.cached is not None:
            st.cached_tokens = chunk.cached
        toks = chunk.tokens
        if not toks and chunk.text and self.mode not in _TOKEN_MODES:
            toks = self.tokenizer.tokenize(chunk.text, special=False)
        if toks and st.first_at is None:
            st.first_at = now()
        st.received += len(toks)
        for t in toks:
            self._pending.append(t)
            if self.tokenizer.is_eos(t):
                s.done = True  # nothing after EOS belongs to this context
                break
        if chunk.finish is not None:
            st.finish = chunk.finish
            if chunk.finish == "stop" and not (toks and self.tokenizer.is_eos(toks[-1])):
                self._pending.append(self.tokenizer.eos_id)  # EOS not in the ids: add it
            s.done = True
        if s.done:
            st.ended_at = now()
            if st.first_at is None:
                st.first_at = st.ended_at

    async def _stream_failed(self, s: _Stream, err: ServerError) -> None:
        s.stats.finish = "error"
        s.stats.attrs["error"] = str(err)
        await self._close_stream()
        if s.stats.retries >= self.retries:
            raise err
        await asyncio.sleep(self.backoff_s * 2**s.stats.retries)
        await self._open("resume", retries=s.stats.retries + 1)

    async def _open(self, reason: str, *, max_tokens: int | None = None,
                    ban: Collection[int] = (), retries: int = 0) -> None:
        httpx = self._httpx
        path, body = self._body(max_tokens or self.chunk_tokens, ban)
        stats = RequestStats(self.mode.value, reason, len(self._ctx), now(), retries=retries)
        self.requests.append(stats)
        self._pending.clear()
        for attempt in range(self.retries + 1):
            stats.retries = retries + attempt
            try:
                req = self._client.build_request("POST", path, json=body)
                resp = await asyncio.wait_for(
                    self._client.send(req, stream=True), self.read_timeout_s)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                    httpx.ReadError) as e:
                err: ServerError = ServerUnavailable(f"{self.base_url}{path}: {e!r}")
            except (TimeoutError, httpx.TimeoutException):
                err = ServerTimeout(
                    f"{self.base_url}{path}: no response within {self.read_timeout_s:g} s")
            else:
                if resp.status_code == 200:
                    self._stream = _Stream(resp, resp.aiter_lines(), stats)
                    self._resume_reason = "resume"
                    return
                detail = (await resp.aread())[:500].decode("utf-8", "replace")
                await resp.aclose()
                err = ServerResponseError(
                    f"{self.base_url}{path} answered HTTP {resp.status_code}: {detail}",
                    resp.status_code)
                if resp.status_code != 429 and resp.status_code < 500:
                    stats.finish = "error"
                    raise err
            if attempt == self.retries:
                stats.finish = "error"
                stats.attrs["error"] = str(err)
                raise err
            await asyncio.sleep(self.backoff_s * 2**attempt)

    async def _close_stream(self) -> None:
        s, self._stream = self._stream, None
        self._pending.clear()
        self._resume_reason = "resume"
        if s is None:
            return
        if not s.done:
            s.done = True
            s.stats.finish = s.stats.finish or "closed"
            s.stats.ended_at = now()
        # dropping the connection is what tells the server to stop decoding
        await asyncio.shield(s.resp.aclose())

    async def _evict(self) -> None:
        """llama-cpp-python has no per-request cache switch: a 1-token request on a different
        prompt drops its cached prefix, so the next request is processed in full."""
        ctx, self._ctx = self._ctx, self.tokenizer.tokenize("\n", special=False)
        try:
            await self._open("evict", max_tokens=1)
            await self._fill()
        finally:
            await self._close_stream()
            self._ctx = ctx

    # -- wire formats -----------------------------------------------------------------------

    def _text(self, tokens: Sequence[int] | None = None) -> str:
        """The context (or ``tokens``) as text for text/chat modes. Added tokens in it (the
        template's control tokens, a ``<tool_call>`` the model generated) keep their spelling;
        any other occurrence of an added token's text -- inside ordinary tokens (an injected
        payload) or across a boundary -- is broken with U+2060 so the server's re-tokenization
        cannot make it one. A tokenizer without ``added_tokens()`` gives only its control
        tokens: then every :data:`~asynclm.protocol.escape.CONTROL_TAGS` tag and every ``<|`` /
        ``<\uff5c`` is broken too (a conservative list: an added token of another shape could
        still form, and a one-character added token cannot be broken in text)."""
        added = self._added_map()
        pieces: list[tuple[str, bool]] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                pieces.append((self.tokenizer.detokenize(run).decode("utf-8", "replace"), False))
                run.clear()

        for t in self._ctx if tokens is None else tokens:
            if t in added and added[t]:
                flush()
                pieces.append((added[t], True))
            else:
                run.append(t)
        flush()
        return _join_broken(pieces, self._breaker())

    def _breaker(self) -> re.Pattern[str] | None:
        """A finder of every spelling :meth:`_text` must break (overlapping matches)."""
        if self._break_rx is None:
            texts = {t for t in self._added_map().values() if len(t) > 1}
            if not callable(getattr(self.tokenizer, "added_tokens", None)):
                texts |= {*CONTROL_TAGS, *SPECIAL_TOKEN_PREFIXES, "<\uff5c"}
            if not texts:
                return None
            alts = "|".join(map(re.escape, sorted(texts, key=len, reverse=True)))
            firsts = "".join(sorted({re.escape(t[0]) for t in texts}))
            self._break_rx = re.compile(f"(?=[{firsts}])(?=({alts}))")
        return self._break_rx

    def _body(self, max_tokens: int, ban: Collection[int]) -> tuple[str, dict[str, Any]]:
        ids = list(self._ctx)
        temp = self.temperature
        bias = {str(int(t)): -100.0 for t in ban}
        m = self.mode
        if m is Mode.LLAMA_SERVER:
            body: dict[str, Any] = {
                "prompt": ids, "n_predict": max_tokens, "stream": True,
                "cache_prompt": self._reuse, "temperature": temp, "return_tokens": True,
                "timings_per_token": True, "repeat_penalty": 1.0,
            }
            if temp == 0:
                body["top_k"] = 1
            if ban:
                body["logit_bias"] = [[int(t), False] for t in ban]
            path = "/completion"
        elif m is Mode.VLLM:
            body = {
                "model": self.model, "prompt": ids, "max_tokens": max_tokens, "stream": True,
                "temperature": temp, "return_token_ids": True, "skip_special_tokens": False,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            }
            if not self._reuse:  # a fresh salt: no cached block can match
                body["cache_salt"] = uuid.uuid4().hex
            if ban:
                body["logit_bias"] = bias
            path = "/v1/completions"
        elif m is Mode.SGLANG:
            params: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": temp,
                                      "skip_special_tokens": False}
            if ban:
                params["logit_bias"] = bias
            body = {"input_ids": ids, "sampling_params": params, "stream": True}
            path = "/generate"
        elif m is Mode.TEXT:
            body = {
                "model": self.model, "prompt": self._text(), "max_tokens": max_tokens,
                "stream": True, "temperature": temp,
                "stream_options": {"include_usage": True},
            }
            if self.llama_cpp_python:
                body.pop("stream_options")
                body.update(repeat_penalty=1.0, top_k=1 if temp == 0 else 40, min_p=0.0)
            if ban:
                body["logit_bias"] = bias
            path = "/v1/completions"
        else:
            body = {"model": self.model, "messages": self._chat_messages(),
                    "max_tokens": max_tokens, "stream": True, "temperature": temp}
            if ban:
                body["logit_bias"] = bias
            path = "/v1/chat/completions"
        body.update(self.extra_body)
        return path, body

    def _chat_messages(self) -> list[dict[str, str]]:
        for prompt, msgs in self._messages.items():
            if tuple(self._ctx[: len(prompt)]) == prompt:
                out = [{"role": m.role, "content": m.content} for m in msgs]
                rest = self._ctx[len(prompt):]
                if rest:  # everything generated and injected so far, as the assistant's turn
                    out.append({"role": "assistant", "content": self._text(rest)})
                return out
        raise ServerResponseError(
            "chat mode needs the conversation: build the prompt with engine.tokenize_chat()")

    def _parse(self, s: _Stream, line: str) -> _Chunk | None:
        line = line.strip()
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            return _Chunk([], "", s.stats.finish or "stop", None)
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise ServerResponseError(f"{self.base_url}: unreadable stream line {data[:200]!r}") from e
        if not isinstance(obj, dict):
            return None
        if "error" in obj:
            raise ServerResponseError(f"{self.base_url}: server error in stream: {obj['error']}")
        m = self.mode
        if m is Mode.LLAMA_SERVER:
            toks = [int(t) for t in obj.get("tokens") or []]
            timings = obj.get("timings") or {}
            cached: int | None = None
            if "cache_n" in timings:
                cached = int(timings["cache_n"])
            elif "prompt_n" in timings and "tokens_evaluated" in obj:
                cached = int(obj["tokens_evaluated"]) - int(timings["prompt_n"])
            finish = None
            if obj.get("stop"):
                finish = "length" if obj.get("stop_type") == "limit" else "stop"
            return _Chunk(toks, obj.get("content", ""), finish, cached)
        if m is Mode.SGLANG:
            meta = obj.get("meta_info") or {}
            out = [int(t) for t in obj.get("output_ids") or []]
            # output_ids are cumulative by default, deltas with --incremental-streaming-output
            if s.out and out[: len(s.out)] == s.out:
                toks = out[len(s.out):]
                s.out = out
            else:
                toks = out
                s.out = s.out + out
            fr = meta.get("finish_reason")
            finish = None
            if fr:
                kind = fr.get("type") if isinstance(fr, dict) else str(fr)
                finish = "length" if kind == "length" else "stop"
            cached = meta.get("cached_tokens")
            return _Chunk(toks, "", finish, None if cached is None else int(cached))
        # OpenAI shapes (vLLM, text, chat)
        usage = obj.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        choices = obj.get("choices") or []
        if not choices:
            return _Chunk([], "", None, None if cached is None else int(cached))
        c = choices[0]
        text = c.get("text")
        if text is None:
            text = (c.get("delta") or {}).get("content") or ""
        toks = [int(t) for t in c.get("token_ids") or []] if m is Mode.VLLM else []
        fr = c.get("finish_reason")
        finish = None if fr is None else ("length" if fr == "length" else "stop")
        return _Chunk(toks, text, finish, None if cached is None else int(cached))

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the engine is closed")


def _join_broken(pieces: list[tuple[str, bool]], rx: re.Pattern[str] | None) -> str:
    """Join ``(text, spelled)`` pieces, inserting U+2060 so that ``rx`` matches nothing but a
    spelled piece exactly. A match inside one spelled piece is part of that token and stays;
    any other is broken at its first position not inside a spelled piece."""
    text = "".join(p for p, _ in pieces)
    if rx is None:
        return text
    spans: list[tuple[int, int]] = []
    at = 0
    for p, spelled in pieces:
        if spelled:
            spans.append((at, at + len(p)))
        at += len(p)
    for _ in range(16):
        exact = set(spans)
        inner = bytearray(len(text) + 1)  # 1 at offsets strictly inside a spelled piece
        for a, b in spans:
            inner[a + 1:b] = b"\x01" * (b - a - 1)
        cuts: set[int] = set()
        for m in rx.finditer(text):
            a = m.start()
            b = a + len(m.group(1))
            if (a, b) in exact:
                continue
            cut = next((i for i in range(a + 1, b) if not inner[i]), None)
            if cut is not None:
                cuts.add(cut)
        if not cuts:
            return text
        order = sorted(cuts)
        pieces_at = zip([0, *order], order, strict=False)  # the tail is added after
        text = "".join(text[i:j] + "\u2060" for i, j in pieces_at) + text[order[-1]:]
        spans = [(a + bisect_right(order, a), b + bisect_right(order, a)) for a, b in spans]
    return text  # only a pattern containing U+2060 itself could get here


def _capabilities(mode: Mode) -> Capabilities:
    """Every mode logs its requests (:meth:`HttpEngine.take_requests`)."""
    return Capabilities(request_log=True)


async def connect(base_url: str, model: str | os.PathLike[str], **kwargs: Any) -> HttpEngine:
    """:meth:`HttpEngine.connect` with the tokenizer of ``model``: a GGUF file path, or a
    bundled model name (see ``asynclm models list``). The CLI's ``--engine openai`` uses this."""
    path = os.fspath(model)
    tok = GGUFTokenizer(path) if os.path.isfile(path) else GGUFTokenizer.from_name(path)
    return await HttpEngine.connect(base_url, tok, **kwargs)
