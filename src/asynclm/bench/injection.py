"""``asynclm bench injection``: what an interrupt costs on the in-process engine.

For contexts of about 256, 1024 and 3072 tokens, append 32 tokens to the live context (true
injection: only the new tokens are computed) and, for comparison, process the whole context
again (what a client without a live context must do). Each measurement is repeated; the
median and spread are reported, measured side by side in the same run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from asynclm.bench._stats import summary
from asynclm.engines.llamacpp import LlamaCppEngine

_FILLER = (
    "The quick brown fox jumps over the lazy dog while the weather service reports light rain "
    "in Lisbon, sunshine in Madrid and fog over the harbour of Hamburg. "
)


def _tokens(engine: Any, n: int) -> list[int]:
    out: list[int] = []
    while len(out) < n:
        out += engine.tokenize(_FILLER, special=False)
    return out[:n]


async def _measure(engine: Any, contexts: Sequence[int], inject: int, repeats: int) -> dict[str, Any]:
    rows = {}
    payload = _tokens(engine, inject + 7)[7:]  # a different slice than the context's start
    for n in contexts:
        base = _tokens(engine, n)
        appends, reprefills = [], []
        for _ in range(repeats):
            await engine.prefill(base, reuse_prefix=False)
            t = time.perf_counter()
            await engine.append(payload)
            appends.append(time.perf_counter() - t)
            t = time.perf_counter()
            await engine.prefill(base + payload, reuse_prefix=False)
            reprefills.append(time.perf_counter() - t)
        rows[str(n)] = {"append_s": summary(appends), "reprefill_s": summary(reprefills)}
    return rows


def bench_injection(
    *, model: str = "qwen2.5-coder-1.5b", contexts: Sequence[int] = (256, 1024, 3072),
    inject: int = 32, repeats: int = 5, threads: int | None = None, flash_attn: bool = False,
) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = LlamaCppEngine.from_name(model, n_ctx=max(contexts) + inject + 64,
                                          n_threads=threads, flash_attn=flash_attn)
        try:
            return await _measure(engine, contexts, inject, repeats)
        finally:
            await engine.aclose()

    rows = asyncio.run(go())
    meds = [rows[str(n)]["append_s"]["median"] for n in contexts]
    return {
        "benchmark": "injection",
        "params": {"model": model, "contexts": list(contexts), "inject_tokens": inject,
                   "repeats": repeats, "threads": threads,
                   "flash_attn": flash_attn},
        "rows": rows,
        "append_ratio_largest_to_smallest": meds[-1] / meds[0],
        "reprefill_ratio_largest_to_smallest": (
            rows[str(contexts[-1])]["reprefill_s"]["median"]
            / rows[str(contexts[0])]["reprefill_s"]["median"]),
    }


def markdown(result: dict[str, Any], command: str) -> str:
    p = result["params"]
    lines = [
        f"# Interrupt injection cost ({p['model']}, {p['inject_tokens']} tokens, "
        f"median of {p['repeats']}{', flash attention' if p.get('flash_attn') else ''})",
        "",
        f"Command: `{command}`",
        "",
        "| context (tokens) | append 32 tokens (ms) | re-process context + 32 (ms) | ratio |",
        "|---|---|---|---|",
    ]
    for n, row in result["rows"].items():
        a, r = row["append_s"], row["reprefill_s"]
        lines.append(
            f"| {n} | {a['median'] * 1e3:.0f} (p10 {a['p10'] * 1e3:.0f}, p90 {a['p90'] * 1e3:.0f})"
            f" | {r['median'] * 1e3:.0f} (p10 {r['p10'] * 1e3:.0f}, p90 {r['p90'] * 1e3:.0f})"
            f" | {r['median'] / a['median']:.0f}x |")
    lines += [
        "",
        f"Append cost, largest ÷ smallest context: {result['append_ratio_largest_to_smallest']:.2f}"
        f" (target ≤ 1.5); re-processing: {result['reprefill_ratio_largest_to_smallest']:.1f}.",
        "",
    ]
    return "\n".join(lines)
