"""The same tasks over a real inference server: llama-cpp-python's ``python -m llama_cpp.server``
on loopback, driven through :class:`~asynclm.engines.openai_http.HttpEngine`.

:class:`LlamaCppServer` starts and stops that server (tests use it too) and reads what it
reports: llama-cpp-python 0.3.36 puts no cache figure in its responses, but when verbose it logs
``Llama.generate: N prefix-match hit, remaining M prompt tokens to eval`` for every request that
reused its cache, so the prompt tokens a run made the server compute are the tokens it sent minus
the prefix hits it logged.

:func:`run_server_bench` runs each task under each strategy (Sync, Sync-Parallel, Async-Naive,
Async with resume) and reports median latency and server-side prefill tokens.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path
from typing import Any

from asynclm import models
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.demo_tools import TRAVEL_TOOLS
from asynclm.runtime import Session, SessionConfig

__all__ = ["LlamaCppServer", "ServerRun", "run_server_bench", "server_report", "SERVER_TASKS"]

_HIT = re.compile(rb"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")


class LlamaCppServer:
    """``python -m llama_cpp.server`` for one GGUF model on 127.0.0.1, verbose, logging to a
    file. Use as a context manager; :meth:`start` waits until it answers (or raises with the
    log's tail)."""

    def __init__(
        self, model_path: str | os.PathLike[str], *, n_threads: int = 1, n_ctx: int = 4096,
        port: int | None = None, log_path: str | os.PathLike[str] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.model_path = Path(model_path)
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.port = port or _free_port()
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model_path),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads),
            "--n_ctx", str(self.n_ctx), "--verbose", "true",
        ]

    def start(self) -> LlamaCppServer:
        import httpx

        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._log: BufferedWriter | None = log
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"llama_cpp.server exited ({self.proc.returncode}):\n"
                                   f"{self.tail()}")
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer in {self.startup_timeout_s:g} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._own_log:
            self.log_path.unlink(missing_ok=True)

    # -- what it reports ------------------------------------------------------------------
    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read()

    def prefix_hits(self, since: int = 0) -> list[tuple[int, int]]:
        """(cached, computed) prompt tokens of each request since ``since`` that reused the
        cache, as the server logged them."""
        return [(int(a), int(b)) for a, b in _HIT.findall(self.log_since(since))]

    def tail(self, n: int = 40) -> str:
        data = self.log_path.read_bytes() if self.log_path.exists() else b""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- the benchmark -------------------------------------------------------------------------

SERVER_TASKS: tuple[tuple[str, str], ...] = (
    ("trip", "Plan a 3-night trip from Berlin (BER) to Lisbon (LIS) leaving 2026-12-04: the "
     "weather in Lisbon, the cheapest flight, a hotel in Lisbon under 150 EUR a night, and the "
     "flight price in USD."),
    ("weather2", "What is the weather in Paris and in Rome for the next 2 days?"),
    ("hotel", "Find a hotel in Madrid under 120 EUR a night for 2 nights, and convert 120 EUR "
     "to GBP."),
)
STRATEGIES = ("sync", "sync-parallel", "async-naive", "async")


@dataclass(frozen=True)
class ServerRun:
    task: str
    strategy: str
    latency_s: float
    stop_reason: str
    n_calls: int
    n_generated: int
    requests: int
    prompt_tokens_sent: int
    prefill_tokens: int
    """Prompt tokens the server computed: sent minus the prefix hits it logged."""
    text: str


async def _one(server: LlamaCppServer, tokenizer: Any, task: str, prompt: str, strategy: str,
               max_tokens: int) -> ServerRun:
    from asynclm.engines.openai_http import HttpEngine  # extra openai (httpx)

    engine = await HttpEngine.connect(server.url, tokenizer, read_timeout_s=300)
    try:
        session = Session(engine, TRAVEL_TOOLS, strategy=get_strategy(strategy),
                          config=SessionConfig(max_tokens=max_tokens, deadline_s=600),
                          trace_meta={"engine": "llama_cpp.server", "task": task})
        await session.warm_up(prompt)  # every strategy starts with its prompt in the cache
        engine.take_requests()
        await asyncio.sleep(0.3)
        offset = server.log_offset()
        result = await session.run(prompt)
        await engine.aclose()
        await asyncio.sleep(0.5)  # let the server finish logging
        hits = sum(h for h, _ in server.prefix_hits(offset))
    finally:
        await engine.aclose()
    sent = result.counters.get("server_prompt_tokens", 0)
    return ServerRun(task, strategy, result.latency_s, result.stop_reason, len(result.calls),
                     result.n_generated, result.counters.get("server_requests", 0), sent,
                     max(0, sent - hits), result.text.strip())


def run_server_bench(
    model: str = "qwen2.5-coder-0.5b", *, tasks: int = 3, n_threads: int = 1,
    max_tokens: int = 200, strategies: tuple[str, ...] = STRATEGIES,
) -> dict[str, Any]:
    """Start the server, run every task under every strategy, stop it. JSON-ready dict."""
    from asynclm.engines.openai_http import GGUFTokenizer  # extra openai (httpx)

    path = models.model_path(model)
    tokenizer = GGUFTokenizer(path)
    runs: list[ServerRun] = []
    with LlamaCppServer(path, n_threads=n_threads) as server:
        for name, prompt in SERVER_TASKS[:tasks]:
            for strategy in strategies:
                runs.append(asyncio.run(_one(server, tokenizer, name, prompt, strategy,
                                             max_tokens)))
    summary = {}
    for s in strategies:
        mine = [r for r in runs if r.strategy == s]
        summary[s] = {
            "median_latency_s": statistics.median(r.latency_s for r in mine),
            "median_prefill_tokens": statistics.median(r.prefill_tokens for r in mine),
            "total_prefill_tokens": sum(r.prefill_tokens for r in mine),
            "total_prompt_tokens_sent": sum(r.prompt_tokens_sent for r in mine),
            "requests": sum(r.requests for r in mine),
            "finished": sum(r.stop_reason == "eos" for r in mine),
            "runs": len(mine),
        }
    return {
        "benchmark": "server",
        "server": "llama_cpp.server (llama-cpp-python 0.3.36), text /v1/completions mode",
        "model": model, "n_threads": n_threads, "max_tokens": max_tokens,
        "summary": summary,
        "runs": [r.__dict__ for r in runs],
    }


def server_report(result: dict[str, Any]) -> str:
    lines = [
        f"# Strategies over a real server ({result['server']})",
        "",
        f"Model {result['model']}, {result['n_threads']} server thread, greedy, at most "
        f"{result['max_tokens']} tokens; demo travel tools (0.4-2.4 s each). Every run starts "
        "with its prompt in the server's cache. *Prefill tokens*: prompt tokens the server "
        "computed (sent minus the prefix-cache hits the server logged).",
        "",
        "| strategy | median latency (s) | median prefill tokens | total prefill | "
        "prompt tokens sent | requests | finished |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s, v in result["summary"].items():
        lines.append(
            f"| {s} | {v['median_latency_s']:.2f} | {v['median_prefill_tokens']:.0f} | "
            f"{v['total_prefill_tokens']} | {v['total_prompt_tokens_sent']} | {v['requests']} | "
            f"{v['finished']}/{v['runs']} |")
    lines += ["", "| task | strategy | latency (s) | calls | tokens | prefill tokens | stop |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['task']} | {r['strategy']} | {r['latency_s']:.2f} | {r['n_calls']} "
                     f"| {r['n_generated']} | {r['prefill_tokens']} | {r['stop_reason']} |")
    if "command" in result:
        lines += ["", f"Reproduce: `{result['command']}`"]
    return "\n".join(lines) + "\n"
