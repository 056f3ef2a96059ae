"""``asynclm bench overhead``: the runtime's own costs, in real time.

- Per-call overhead: an instant engine (no time per token) and zero-cost tools; for each call,
  dispatch (block closed → tool started) plus delivery (tool ended → interrupt injected).
- Parser throughput on model-like text fed in token-sized chunks.
- Parser linearity on a 1 MB adversarial stream (2x input → time ratio).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from asynclm.bench._stats import summary
from asynclm.engines.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.protocol import Parser
from asynclm.runtime import Session
from asynclm.tools import tool


@tool
async def noop(i: int) -> int:
    """Return at once."""
    return i


async def _per_call(sessions: int, calls: int) -> list[float]:
    out: list[float] = []
    for _ in range(sessions):
        script = [f"[CALL] n{i} [HEAD] noop(i={i}) [END]\n" for i in range(calls)]
        script.append("done")
        engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0), virtual_time=False)
        r = await Session(engine, [noop], system="x").run("go")
        for c in r.calls:
            assert c.status == "ok" and c.started_at is not None and c.injected_at is not None
            out.append((c.started_at - c.emitted_at) + (c.injected_at - c.ended_at))
    return out


def model_text(n_bytes: int, seed: int = 0) -> str:
    """Model-like output: prose, calls, traps."""
    rng = random.Random(seed)
    words = "the weather in paris is mild and the flight leaves at noon".split()
    parts, size = [], 0
    while size < n_bytes:
        r = rng.random()
        if r < 0.15:
            s = f'[CALL] c{rng.randint(1, 99)} [HEAD] get_weather(city="Paris", days={rng.randint(1, 9)}) [END]\n'
        elif r < 0.2:
            s = "[TRAP][END]\n"
        else:
            s = " ".join(rng.choice(words) for _ in range(12)) + ".\n"
        parts.append(s)
        size += len(s)
    return "".join(parts)


def adversarial(n_bytes: int) -> str:
    unit = "[[CAL[CALL] x [HEAD] f(a=\n" + "[" * 20 + "[TRA[HEA" + "x\n" * 10 + "[END]"
    return (unit * (n_bytes // len(unit) + 1))[:n_bytes]


def parse_seconds(text: str, chunk: int = 4, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        p = Parser()
        t = time.perf_counter()
        for i in range(0, len(text), chunk):
            p.feed(text[i : i + chunk])
        p.close()
        best = min(best, time.perf_counter() - t)
    return best


def bench_overhead(*, sessions: int = 50, calls: int = 20) -> dict[str, Any]:
    per_call = asyncio.run(_per_call(sessions, calls))
    text = model_text(2_000_000)
    t_text = parse_seconds(text)
    half, full = adversarial(500_000), adversarial(1_000_000)
    t_half, t_full = parse_seconds(half), parse_seconds(full)
    st = summary(per_call)
    return {
        "benchmark": "overhead",
        "per_call_overhead_us": {k: (v * 1e6 if k != "n" else v) for k, v in st.items()},
        "parser_mb_per_s": len(text.encode()) / 1e6 / t_text,
        "adversarial": {"bytes_0_5mb_s": t_half, "bytes_1mb_s": t_full, "ratio_2x": t_full / t_half},
    }


def markdown(result: dict[str, Any], command: str) -> str:
    pc = result["per_call_overhead_us"]
    adv = result["adversarial"]
    return "\n".join([
        "# Runtime overhead (real time, instant engine, zero-cost tools)",
        "",
        f"Command: `{command}`",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| dispatch + completion + injection per call, median | {pc['median']:.1f} µs "
        f"(p10 {pc['p10']:.1f}, p90 {pc['p90']:.1f}, n={int(pc['n'])}) | < 100 µs |",
        f"| parser throughput, model-like text in 4-char chunks | "
        f"{result['parser_mb_per_s']:.1f} MB/s | ≥ 5 MB/s |",
        f"| adversarial stream 1 MB vs 0.5 MB, time ratio | {adv['ratio_2x']:.2f} "
        f"({adv['bytes_0_5mb_s']:.3f} s → {adv['bytes_1mb_s']:.3f} s) | ≤ 2.5 |",
        "",
    ])
