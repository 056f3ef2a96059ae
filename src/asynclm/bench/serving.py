"""``asynclm bench serving``: many concurrent sessions on one CPU box, one model.

Two parts, per model, all in one run:

- **ceiling**: the time of ONE ``llama_decode`` of k tokens from k different sequences, each
  after its own context of ``--context`` tokens (k = 1, 2, 4, 8, 16; median of ``--reps``
  timed calls after one warm-up), as tokens/s and speed-up over k = 1. The best aggregate
  decode rate k sessions stepping together can reach.
- **workload**: N concurrent :class:`~asynclm.runtime.Session` runs (strategy ``async``,
  greedy, ``max_tokens`` capped), each with its own user prompt from :data:`PROMPTS`, which make
  the model call 1–3 tools with web-like latencies (:data:`TOOLS`: ``asyncio.sleep`` of 0.3–1.5
  s, fixed per call). Per configuration and N: aggregate generated tokens/s (all sessions'
  generated tokens / wall time), per-session latency p50/p90 and time to first token p50 (both
  from the moment all sessions start, queueing included), peak memory, and the batched
  engine's own counters.

Configurations (:data:`CONFIGS`):

- ``batched``: :class:`~asynclm.engines.batched.BatchedLlamaEngine` (policy ``priority``), one
  sequence per session; ``batched-fifo``: the same with policy ``fifo``;
- ``pool-1``: today's behaviour, one :class:`~asynclm.engines.llamacpp.LlamaCppEngine`; sessions
  queue for it (one session at a time);
- ``pool-2``: two ``LlamaCppEngine`` instances, each with ``--threads`` threads (not split: both
  fight for the cores), sessions queue for the first free one;
- ``llama-server``: llama.cpp's C++ server (``scripts/build-llama-server.sh`` builds it into
  ``~/.cache/asynclm/bin/llama-server``) with ``-np N`` slots and a unified KV cache
  (``-kvu -c n_ctx``, as the batched engine), each session through
  :class:`~asynclm.engines.openai_http.HttpEngine` pinned to its own slot (``id_slot``), asking
  for :data:`SERVER_CHUNK_TOKENS` tokens per request; skipped with the reason when the binary
  is missing;
- ``llama-server-raw``: the same server decoding the same prompts with nothing in between
  (one streamed ``/completion`` of ``max_tokens`` per session, no tools, no interrupts): the
  reference for llama.cpp's own continuous batching.

Every configuration is warmed up first (one short unmeasured session per engine instance or
slot), so each measured run starts with the shared system prompt in the cache, as a serving
process would. Memory: the process's RSS (``/proc``) sampled every 50 ms; an in-process
engine's figure is the RSS above what the process held before loading it (after load, and the
peak during its runs); llama-server's is its own process's RSS.

Goals (for ``batched``): with 4 sessions, aggregate tokens/s >= 0.85 x the k = 4 ceiling; each
session's median latency <= 2 x the solo latency (one session alone on one ``LlamaCppEngine``,
``pool-1`` with N = 1); peak memory <= 1.3 x one ``LlamaCppEngine`` (``pool-1``); 8 sessions >= 4
sessions' throughput. When one is missed the report says where the time went: decode calls per
second, mean batch size, the worker's Python time per decode call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from asynclm.bench._stats import quantile
from asynclm.engines.base import Engine
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import Tool, tool

CONFIGS = ("batched", "batched-fifo", "pool-1", "pool-2", "llama-server", "llama-server-raw")
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
CEILING_KS = (1, 2, 4, 8, 16)

PROMPTS = (
    "What is the weather in Paris right now? Use the tools.",
    "Search the web for the population of Tokyo and tell me the local time there.",
    "Compare the weather in Oslo and in Lima, then answer in one sentence.",
    "Find the latest news about solar panels with a web search and summarize it briefly.",
    "What time is it in New York and in Sydney?",
    "Look up the height of the Eiffel Tower and the weather in Paris.",
    "Search for the best-selling book of 2023, then tell me the time in London.",
    "Is it warmer in Madrid or in Rome today? Check both.",
)
"""One per session (session i gets ``PROMPTS[i % 8]``): each asks for 1–3 tool calls."""


def tool_latency(fn: str, arg: str) -> float:
    """The fixed latency of a call: 0.3–1.5 s, from a hash of the function and argument (the
    same call waits the same in every configuration)."""
    return 0.3 + (zlib.crc32(f"{fn}:{arg.lower()}".encode()) % 13) / 10


def make_tools() -> list[Tool]:
    """``web_search``, ``get_weather``, ``get_time``: deterministic answers after
    :func:`tool_latency`."""

    @tool(estimated_time=0.9)
    async def web_search(query: str) -> list[dict[str, str]]:
        """Search the web; the top results with a title and a snippet.

        Args:
            query: What to search for.
        """
        await asyncio.sleep(tool_latency("web_search", query))
        h = zlib.crc32(query.encode()) % 1000
        return [{"title": f"{query} - result {i + 1}", "snippet": f"About {query}: fact #{h + i}."}
                for i in range(2)]

    @tool(estimated_time=0.9)
    async def get_weather(city: str) -> dict[str, Any]:
        """Current weather in a city.

        Args:
            city: City name, e.g. "Paris".
        """
        await asyncio.sleep(tool_latency("get_weather", city))
        return {"city": city, "temp_c": 5 + len(city) % 20, "sky": "cloudy"}

    @tool(estimated_time=0.9)
    async def get_time(city: str) -> str:
        """Local time in a city.

        Args:
            city: City name, e.g. "Paris".
        """
        await asyncio.sleep(tool_latency("get_time", city))
        return f"{8 + len(city) % 12:02d}:{7 * len(city) % 60:02d}"

    return [web_search, get_weather, get_time]


# -- memory ------------------------------------------------------------------------------------

def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process (``/proc/<pid>/status``: VmRSS); 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """The peak RSS of a process, sampled every ``every_s`` in a thread while in use."""

    def __init__(self, pid: int | str = "self", every_s: float = 0.05) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak = rss_bytes(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


# -- ceiling -----------------------------------------------------------------------------------

def measure_ceiling(model_path: Path, *, threads: int, ks: Sequence[int] = CEILING_KS,
                    context: int = 256, reps: int = 5) -> list[dict[str, float]]:
    """Median time of one ``llama_decode`` of k tokens, one for each of k sequences that each
    hold ``context`` tokens of their own (a unified KV cache, as the batched engine uses)."""
    import logging

    import llama_cpp as lib

    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    n_seq = max(ks)
    model = ctx = batch = None
    try:
        lib.llama_backend_init()
        model = lib.llama_model_load_from_file(str(model_path).encode(),
                                               lib.llama_model_default_params())
        if not model:
            raise RuntimeError(f"cannot load {model_path}")
        cp = lib.llama_context_default_params()
        cp.n_ctx = n_seq * (context + reps + 2) + 256
        cp.n_batch = cp.n_ubatch = max(context, n_seq)
        cp.n_seq_max = n_seq
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.kv_unified = True
        ctx = lib.llama_init_from_model(model, cp)
        mem = lib.llama_get_memory(ctx)
        batch = lib.llama_batch_init(max(context, n_seq), 0, 1)
        n_vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))

        def decode(items: list[tuple[int, int, int, bool]]) -> float:
            for i, (seq, pos, tok, logits) in enumerate(items):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits
            batch.n_tokens = len(items)
            t = time.perf_counter()
            if lib.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            return time.perf_counter() - t

        filled = 0
        rows: list[dict[str, float]] = []
        for k in sorted(ks):
            while filled < k:  # the k-th sequence's own context
                s = filled
                decode([(s, p, 1000 + (p * 7919 + s * 104729) % (n_vocab - 2000), False)
                        for p in range(context)])
                filled += 1
            times = []
            for r in range(reps + 1):
                dt = decode([(s, context, 1000 + (r * 31 + s) % 5000, True) for s in range(k)])
                for s in range(k):
                    lib.llama_memory_seq_rm(mem, s, context, -1)
                if r:
                    times.append(dt)
            med = statistics.median(times)
            rows.append({"k": k, "decode_ms": 1000 * med, "tokens_per_s": k / med})
        base = rows[0]["tokens_per_s"] / rows[0]["k"] if rows else 1.0
        for row in rows:
            row["speedup"] = row["tokens_per_s"] / base
        return rows
    finally:
        if batch is not None:
            lib.llama_batch_free(batch)
        if ctx is not None:
            lib.llama_free(ctx)
        if model is not None:
            lib.llama_model_free(model)
        log.setLevel(level)


# -- backends ----------------------------------------------------------------------------------

class Backend:
    """Engines for the sessions of one configuration."""

    name = ""
    pid: int | str = "self"

    async def start(self, max_sessions: int) -> None: ...

    @contextlib.asynccontextmanager
    async def lease(self, index: int) -> AsyncIterator[Engine]:
        raise NotImplementedError
        yield  # pragma: no cover

    def instances(self, max_sessions: int) -> int:
        """How many engine instances (or server slots) to warm up."""
        return 1

    def stats(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None: ...


class BatchedBackend(Backend):
    def __init__(self, path: Path, threads: int, policy: Literal["priority", "fifo"],
                 n_ctx: int) -> None:
        self.path, self.threads, self.policy, self.n_ctx = path, threads, policy, n_ctx
        self.name = "batched" if policy == "priority" else f"batched-{policy}"
        self.engine: Any = None
        self._base: dict[str, Any] = {}

    async def start(self, max_sessions: int) -> None:
        from asynclm.engines.batched import BatchedLlamaEngine

        self.engine = await asyncio.to_thread(
            BatchedLlamaEngine, self.path, n_threads=self.threads, n_seq_max=max_sessions,
            n_ctx=self.n_ctx, policy=self.policy)

    @contextlib.asynccontextmanager
    async def lease(self, index: int) -> AsyncIterator[Engine]:
        seq = await self.engine.acquire()
        try:
            yield seq
        finally:
            await seq.aclose()

    def mark(self) -> None:
        self._base = self.engine.stats()

    def stats(self) -> dict[str, Any]:
        """The engine's counters over the last run (since :meth:`mark`)."""
        now = self.engine.stats()
        out = {k: (v - self._base.get(k, 0) if isinstance(v, (int, float)) else v)
               for k, v in now.items()
               if k in ("decode_calls", "tokens_decoded", "steps", "step_rows", "evictions",
                        "recomputed_tokens", "cached_tokens", "decode_s", "busy_s",
                        "gather_wait_s")}
        calls = out["decode_calls"]
        out["tokens_per_decode"] = out["tokens_decoded"] / calls if calls else 0.0
        out["steps_per_decode"] = out["step_rows"] / calls if calls else 0.0
        out["python_ms_per_decode"] = (
            1000 * max(0.0, out["busy_s"] - out["decode_s"]) / calls if calls else 0.0)
        return out

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()


class PoolBackend(Backend):
    def __init__(self, path: Path, threads: int, size: int, n_ctx: int) -> None:
        self.path, self.threads, self.size, self.n_ctx = path, threads, size, n_ctx
        self.name = f"pool-{size}"
        self.engines: list[Any] = []
        self._free: asyncio.Queue[Any] | None = None

    async def start(self, max_sessions: int) -> None:
        from asynclm.engines.llamacpp import LlamaCppEngine

        for _ in range(self.size):
            self.engines.append(await asyncio.to_thread(
                LlamaCppEngine, self.path, n_threads=self.threads, n_ctx=self.n_ctx))

    def instances(self, max_sessions: int) -> int:
        return self.size

    @contextlib.asynccontextmanager
    async def lease(self, index: int) -> AsyncIterator[Engine]:
        if self._free is None:  # created on the running loop
            self._free = asyncio.Queue()
            for e in self.engines:
                self._free.put_nowait(e)
        engine = await self._free.get()
        try:
            yield engine
        finally:
            self._free.put_nowait(engine)

    async def close(self) -> None:
        for e in self.engines:
            await e.aclose()
        self._free = None


def llama_server_binary() -> Path | None:
    """``$ASYNCLM_HOME/bin/llama-server`` (default ``~/.cache/asynclm``) if it is built."""
    home = Path(os.environ.get("ASYNCLM_HOME", Path.home() / ".cache" / "asynclm"))
    binary = home / "bin" / "llama-server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    found = shutil.which("llama-server")
    return Path(found) if found else None


SERVER_CHUNK_TOKENS = 32
"""Tokens an HttpEngine asks llama-server for per request (its default is 256): a session that
stops reading (a result to inject) abandons its stream, and the server goes on decoding that
slot's stream until it notices, in the same batch as everyone else's tokens; short requests
bound that waste, and a resume is served from the slot's cache."""


class ServerBackend(Backend):
    name = "llama-server"

    def __init__(self, path: Path, binary: Path, threads: int, n_ctx: int) -> None:
        self.path, self.binary, self.threads, self.n_ctx = path, binary, threads, n_ctx
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.url = ""
        self.tokenizer: Any = None

    async def start(self, max_sessions: int) -> None:
        from asynclm.engines.tokenizers import GGUFTokenizer

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{port}"
        self.slots = max_sessions
        cmd = [str(self.binary), "-m", str(self.path), "--host", "127.0.0.1", "--port",
               str(port), "-np", str(max_sessions), "-c", str(self.n_ctx), "-kvu",
               "-t", str(self.threads), "-tb", str(self.threads)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.tokenizer = GGUFTokenizer(self.path)
        import httpx

        deadline = time.monotonic() + 180
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited ({self.proc.returncode}): "
                                       f"{self._tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health", timeout=1.0)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"llama-server did not start: {self._tail()}")

    def instances(self, max_sessions: int) -> int:
        return max_sessions

    @contextlib.asynccontextmanager
    async def lease(self, index: int) -> AsyncIterator[Engine]:
        from asynclm.engines.openai_http import HttpEngine

        engine = await HttpEngine.connect(self.url, self.tokenizer, read_timeout_s=300.0,
                                          chunk_tokens=SERVER_CHUNK_TOKENS,
                                          extra_body={"id_slot": index % self.slots})
        try:
            yield engine
        finally:
            await engine.aclose()

    def _tail(self, n: int = 20) -> str:
        return "\n".join(self.log.read_bytes().decode("utf-8", "replace").splitlines()[-n:])

    async def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self.log.unlink(missing_ok=True)


class RawServerBackend(ServerBackend):
    """llama.cpp's own continuous batching on the same prompts, without asynclm: per session one
    streamed ``/completion`` of the session's prompt (its system prompt and user message through
    the model's chat template, as token ids), greedy, ``n_predict`` = ``max_tokens``, pinned to
    its own slot; no tool runs and nothing is injected. A reference for the decode rate of
    llama.cpp's C++ server when nothing interrupts it, not a session."""

    name = "llama-server-raw"

    def __init__(self, path: Path, binary: Path, threads: int, n_ctx: int) -> None:
        super().__init__(path, binary, threads, n_ctx)
        self.prompts: dict[str, list[int]] = {}

    async def prompt_tokens(self, prompt: str) -> list[int]:
        """The tokens a session would send for ``prompt`` (computed once per prompt)."""
        from asynclm.engines.openai_http import HttpEngine

        if prompt not in self.prompts:
            probe = await HttpEngine.connect(self.url, self.tokenizer)
            try:
                messages = Session(probe, make_tools(), strategy="async").messages(prompt)
            finally:
                await probe.aclose()
            self.prompts[prompt] = self.tokenizer.tokenize_chat(messages)
        return self.prompts[prompt]


async def _one_raw(backend: RawServerBackend, i: int, prompt: str, t0: float,
                   max_tokens: int) -> SessionRow:
    import json

    import httpx

    tokens = await backend.prompt_tokens(prompt)  # known after the warm-up: not timed
    body = {"prompt": tokens, "n_predict": max_tokens, "stream": True, "temperature": 0.0,
            "cache_prompt": True, "id_slot": i % backend.slots}
    first: float | None = None
    n = 0
    stop = "max_tokens"
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        async with client.stream("POST", f"{backend.url}/completion", json=body) as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                chunk = json.loads(line[5:])
                if chunk.get("tokens") or chunk.get("content"):
                    n += max(len(chunk.get("tokens") or ()), 1)
                    if first is None:
                        first = time.perf_counter() - t0
                if chunk.get("stop"):
                    if chunk.get("stop_type") == "eos":
                        stop = "eos"
                    break
    return SessionRow(i, prompt, time.perf_counter() - t0, first, n, 0, stop, {})


# -- workload ----------------------------------------------------------------------------------

@dataclass
class SessionRow:
    index: int
    prompt: str
    latency_s: float
    first_token_s: float | None
    n_generated: int
    calls: int
    stop_reason: str
    counters: dict[str, int]


async def _one(backend: Backend, i: int, prompt: str, t0: float,
               max_tokens: int) -> SessionRow:
    if isinstance(backend, RawServerBackend):
        return await _one_raw(backend, i, prompt, t0, max_tokens)
    async with backend.lease(i) as engine:
        started = time.perf_counter()
        session = Session(engine, make_tools(), strategy="async",
                          config=SessionConfig(max_tokens=max_tokens, deadline_s=600.0))
        r = await session.run(prompt)
    end = started + r.latency_s
    first = None if r.first_token_s is None else started - t0 + r.first_token_s
    return SessionRow(i, prompt, end - t0, first, r.n_generated, len(r.calls), r.stop_reason,
                      dict(r.counters))


async def run_sessions(backend: Backend, n: int, *, max_tokens: int) -> dict[str, Any]:
    """N sessions at once; their figures, from the moment they all start."""
    if isinstance(backend, BatchedBackend):
        backend.mark()
    t0 = time.perf_counter()
    rows = await asyncio.gather(*(_one(backend, i, PROMPTS[i % len(PROMPTS)], t0, max_tokens)
                                  for i in range(n)))
    wall = time.perf_counter() - t0
    gen = sum(r.n_generated for r in rows)
    lat = [r.latency_s for r in rows]
    ttft = [r.first_token_s for r in rows if r.first_token_s is not None]
    out: dict[str, Any] = {
        "sessions": n, "wall_s": wall, "generated": gen,
        "tokens_per_s": gen / wall if wall > 0 else 0.0,
        "latency_p50_s": quantile(lat, 0.5), "latency_p90_s": quantile(lat, 0.9),
        "ttft_p50_s": quantile(ttft, 0.5) if ttft else None,
        "calls": sum(r.calls for r in rows),
        "stops": {s: sum(r.stop_reason == s for r in rows) for s in {r.stop_reason for r in rows}},
        "kv_evictions": sum(r.counters.get("kv_evictions", 0) for r in rows),
        "kv_recomputed_tokens": sum(r.counters.get("kv_recomputed_tokens", 0) for r in rows),
        "runs": [vars(r) for r in rows],
    }
    engine = backend.stats()
    if engine is not None:
        engine["decode_calls_per_s"] = engine["decode_calls"] / wall if wall > 0 else 0.0
        engine["decode_share"] = engine["decode_s"] / wall if wall > 0 else 0.0
        out["engine"] = engine
    return out


async def run_config(backend: Backend, sessions: Sequence[int], *, max_tokens: int,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load, warm up, then each N in ``sessions``; the figures and memory of the config."""
    base = rss_bytes()
    top = max(sessions)
    await backend.start(top)
    try:
        own = backend.pid != "self"
        loaded = rss_bytes(backend.pid) - (0 if own else base)
        warm = min(backend.instances(top), top)
        await asyncio.gather(*(_one(backend, i, PROMPTS[i % len(PROMPTS)], time.perf_counter(),
                                    4) for i in range(warm)))
        runs = []
        with RssSampler(backend.pid) as sampler:
            for n in sessions:
                row = await run_sessions(backend, n, max_tokens=max_tokens)
                runs.append(row)
                if progress is not None:
                    progress(f"  {backend.name:12} N={n}: {row['tokens_per_s']:6.1f} tok/s, "
                             f"latency p50 {row['latency_p50_s']:.1f} s, "
                             f"{row['generated']} tokens in {row['wall_s']:.1f} s")
        peak = sampler.peak - (0 if own else base)
        return {"config": backend.name, "rss_after_load_mb": loaded / 2**20,
                "rss_peak_mb": peak / 2**20, "memory_of": "process" if own else "engine",
                "runs": runs}
    finally:
        await backend.close()


def make_backend(config: str, path: Path, *, threads: int, n_ctx: int) -> Backend | str:
    """The backend of ``config``, or the reason it is skipped."""
    if config == "batched":
        return BatchedBackend(path, threads, "priority", n_ctx)
    if config == "batched-fifo":
        return BatchedBackend(path, threads, "fifo", n_ctx)
    if config in ("pool-1", "pool-2"):
        return PoolBackend(path, threads, int(config[-1]), n_ctx)
    if config == "llama-server":
        binary = llama_server_binary()
        if binary is None:
            return ("llama-server is not built (run scripts/build-llama-server.sh: it prints "
                    "the binary's path, ~/.cache/asynclm/bin/llama-server)")
        return ServerBackend(path, binary, threads, n_ctx)
    if config == "llama-server-raw":
        binary = llama_server_binary()
        if binary is None:
            return "llama-server is not built (run scripts/build-llama-server.sh)"
        return RawServerBackend(path, binary, threads, n_ctx)
    raise ValueError(f"unknown config {config!r}; choose from {', '.join(CONFIGS)}")


def bench_serving(*, models: Sequence[str] = MODELS, sessions: Sequence[int] = (1, 2, 4, 8),
                  configs: Sequence[str] = CONFIGS, threads: int = 2, max_tokens: int = 96,
                  n_ctx: int = 8192, ceiling: bool = True, ceiling_ks: Sequence[int] = CEILING_KS,
                  ceiling_context: int = 256, ceiling_reps: int = 5,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The ceiling and the workload for each model (see the module docstring)."""
    from asynclm.models import model_path

    for c in configs:
        if c not in CONFIGS:
            raise ValueError(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    say = progress or (lambda _m: None)
    t_all = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "serving",
        "params": {"models": list(models), "sessions": list(sessions), "configs": list(configs),
                   "threads": threads, "max_tokens": max_tokens, "n_ctx": n_ctx,
                   "ceiling_context": ceiling_context, "ceiling_reps": ceiling_reps,
                   "cpus": os.cpu_count()},
        "prompts": list(PROMPTS),
        "models": {},
    }
    for name in models:
        path = model_path(name)
        entry: dict[str, Any] = {"configs": {}, "skipped": {}}
        if ceiling:
            say(f"{name}: ceiling")
            entry["ceiling"] = measure_ceiling(path, threads=threads, ks=ceiling_ks,
                                               context=ceiling_context, reps=ceiling_reps)
        for config in configs:
            backend = make_backend(config, path, threads=threads, n_ctx=n_ctx)
            if isinstance(backend, str):
                entry["skipped"][config] = backend
                say(f"{name}: {config} skipped: {backend}")
                continue
            say(f"{name}: {config}")
            try:
                entry["configs"][config] = asyncio.run(
                    run_config(backend, sessions, max_tokens=max_tokens, progress=progress))
            except Exception as e:  # noqa: BLE001 - one config failing must not lose the rest
                entry["skipped"][config] = f"failed: {type(e).__name__}: {e}"
                say(f"{name}: {config} failed: {e}")
        entry["goals"] = goals(entry)
        out["models"][name] = entry
    out["wall_s"] = time.perf_counter() - t_all
    return out


# -- goals and report --------------------------------------------------------------------------

def _run(entry: dict[str, Any], config: str, n: int) -> dict[str, Any] | None:
    c = entry["configs"].get(config)
    if c is None:
        return None
    return next((r for r in c["runs"] if r["sessions"] == n), None)


def goals(entry: dict[str, Any], config: str = "batched") -> list[dict[str, Any]]:
    """Pass/fail of each goal for ``config`` (None: not measurable in this run), with the
    figures it compares."""
    out: list[dict[str, Any]] = []
    r4, r8, r1 = _run(entry, config, 4), _run(entry, config, 8), _run(entry, config, 1)
    ceil4 = next((c for c in entry.get("ceiling", []) if c["k"] == 4), None)

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"goal": name, "pass": ok, "detail": detail})

    if r4 and ceil4:
        want = 0.85 * ceil4["tokens_per_s"]
        add("4 sessions: aggregate tok/s >= 0.85 x k=4 ceiling", r4["tokens_per_s"] >= want,
            f"{r4['tokens_per_s']:.1f} vs {want:.1f} tok/s")
    else:
        add("4 sessions: aggregate tok/s >= 0.85 x k=4 ceiling", None, "not measured")
    solo = _run(entry, "pool-1", 1) or r1
    if r4 and solo:
        want = 2 * solo["latency_p50_s"]
        add("4 sessions: median latency <= 2 x solo", r4["latency_p50_s"] <= want,
            f"{r4['latency_p50_s']:.1f} s vs 2 x {solo['latency_p50_s']:.1f} s "
            f"(solo: {'pool-1' if _run(entry, 'pool-1', 1) else config}, N=1)")
    else:
        add("4 sessions: median latency <= 2 x solo", None, "not measured")
    mine, one = entry["configs"].get(config), entry["configs"].get("pool-1")
    if mine and one:
        add("peak memory <= 1.3 x one instance", mine["rss_peak_mb"] <= 1.3 * one["rss_peak_mb"],
            f"{mine['rss_peak_mb']:.0f} MB vs 1.3 x {one['rss_peak_mb']:.0f} MB (pool-1)")
    else:
        add("peak memory <= 1.3 x one instance", None, "not measured")
    if r4 and r8:
        add("8 sessions >= 4 sessions' throughput", r8["tokens_per_s"] >= r4["tokens_per_s"],
            f"{r8['tokens_per_s']:.1f} vs {r4['tokens_per_s']:.1f} tok/s")
    else:
        add("8 sessions >= 4 sessions' throughput", None, "not measured")
    return out


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "—" if x is None else format(x, fmt)


def markdown(result: dict[str, Any], command: str | None) -> str:
    p = result["params"]
    lines = [
        "# Serving: many concurrent sessions, one model, one CPU box", "",
        f"Command: `{command}`" if command else "", "",
        f"{p['threads']} llama.cpp threads ({p['cpus']} CPUs), greedy, strategy `async`, "
        f"max {p['max_tokens']} tokens per session, n_ctx {p['n_ctx']}; tools sleep 0.3–1.5 s "
        "per call (fixed per call). Times from the moment all N sessions start (queueing "
        "included). `pool-2`: two LlamaCppEngine instances with "
        f"{p['threads']} threads each (both fight for the cores). Memory: RSS above the "
        "process's before loading (in-process), or the server process's RSS.", "",
    ]
    for model, e in result["models"].items():
        lines += [f"## {model}", ""]
        if e.get("ceiling"):
            lines += [f"### Ceiling: one llama_decode of k tokens, k sequences after "
                      f"{p['ceiling_context']} tokens each", "",
                      "| k | decode ms | tokens/s | speed-up vs k=1 |", "|---|---|---|---|"]
            lines += [f"| {c['k']} | {c['decode_ms']:.1f} | {c['tokens_per_s']:.1f} | "
                      f"{c['speedup']:.2f}x |" for c in e["ceiling"]]
            lines.append("")
        lines += ["### Workload", "",
                  "| config | N | tok/s | latency p50 | p90 | TTFT p50 | tokens | calls | "
                  "wall s | RSS load / peak MB | tok/decode | steps/decode | evictions | "
                  "recomputed |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, c in e["configs"].items():
            for r in c["runs"]:
                eng = r.get("engine") or {}
                lines.append(
                    f"| {name} | {r['sessions']} | {r['tokens_per_s']:.1f} | "
                    f"{r['latency_p50_s']:.1f} | {r['latency_p90_s']:.1f} | "
                    f"{_f(r['ttft_p50_s'], '.2f')} | {r['generated']} | {r['calls']} | "
                    f"{r['wall_s']:.1f} | {c['rss_after_load_mb']:.0f} / "
                    f"{c['rss_peak_mb']:.0f} | {_f(eng.get('tokens_per_decode'))} | "
                    f"{_f(eng.get('steps_per_decode'), '.2f')} | {eng.get('evictions', '—')} | "
                    f"{eng.get('recomputed_tokens', '—')} |")
        for name, why in e["skipped"].items():
            lines.append(f"| {name} | skipped: {why} |" + " |" * 12)
        lines += ["", "### Goals (batched)", "", "| goal | result | figures |", "|---|---|---|"]
        for g in e["goals"]:
            res = "—" if g["pass"] is None else ("pass" if g["pass"] else "**fail**")
            lines.append(f"| {g['goal']} | {res} | {g['detail']} |")
        if any(g["pass"] is False for g in e["goals"]) and "batched" in e["configs"]:
            lines += ["", "Where the time goes (batched): ", ""]
            for r in e["configs"]["batched"]["runs"]:
                eng = r.get("engine") or {}
                if eng:
                    lines.append(
                        f"- N={r['sessions']}: {eng['decode_calls_per_s']:.1f} decode calls/s, "
                        f"{eng['tokens_per_decode']:.1f} tokens and "
                        f"{eng['steps_per_decode']:.2f} steps per call, "
                        f"llama_decode {100 * eng['decode_share']:.0f}% of the wall time, "
                        f"worker Python {eng['python_ms_per_decode']:.1f} ms per call, "
                        f"waiting for sessions to step {eng['gather_wait_s']:.1f} s")
        lines.append("")
    lines += [f"Wall time {result['wall_s']:.0f} s.", ""]
    return "\n".join(lines)
