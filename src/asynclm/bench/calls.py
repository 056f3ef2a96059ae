"""``asynclm bench calls``: how well a real model makes calls under the CML system prompt.

Every demo task (:data:`asynclm.demo_tools.DEMO_TASKS`, real tools with real latencies) runs under
each strategy on one engine. Each call the model wrote is classified:

- ``ok``: parsed, named a known tool, and its arguments validated against the tool's schema
  (whatever the tool then returned);
- ``malformed``: the block did not parse;
- ``unknown_tool``: a tool the model was not given;
- ``invalid_args``: arguments that fail the tool's schema.

Well-formed share = ok ÷ all calls. The report also counts the runtime's enforcement (forged
results rolled back, end-of-generation traps), runs that did not end by themselves, and identical
calls repeated in one run.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asynclm.bench.baselines import strategy as get_strategy
from asynclm.demo_tools import DEMO_TASKS, TRAVEL_TOOLS
from asynclm.engines.base import Engine
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.models import pull
from asynclm.runtime import Session, SessionConfig, SessionResult
from asynclm.runtime.records import CallRecord

_KIND = {
    "MalformedCall": "malformed",
    "UnknownToolError": "unknown_tool",
    "ToolArgumentError": "invalid_args",
}
KINDS = ("ok", "malformed", "unknown_tool", "invalid_args")


def classify(rec: CallRecord) -> str:
    """One of :data:`KINDS` for a call the model wrote."""
    if rec.status == "error":
        return _KIND.get(rec.error_type or "", "ok")
    return "ok"


def run_record(task: str, strategy: str, r: SessionResult) -> dict[str, Any]:
    kinds = Counter(classify(c) for c in r.calls)
    keys = Counter((c.fn, repr(sorted(c.args.items())), c.pos) for c in r.calls)
    return {
        "task": task,
        "strategy": strategy,
        "latency_s": r.latency_s,
        "stop_reason": r.stop_reason,
        "tokens": r.n_generated,
        "calls": len(r.calls),
        "kinds": {k: kinds.get(k, 0) for k in KINDS},
        "repeated_calls": sum(n - 1 for n in keys.values()),
        "counters": dict(r.counters),
        "call_list": [
            {"id": c.id, "fn": c.fn, "args": {k: repr(v) for k, v in c.args.items()},
             "kind": classify(c), "status": c.status, "error": c.error}
            for c in r.calls
        ],
        "answer": r.text.strip(),
        "transcript": r.transcript,
    }


async def run_calls(
    engine: Engine,
    tasks: Mapping[str, str],
    strategies: Sequence[str],
    *,
    max_tokens: int = 400,
    deadline_s: float = 300.0,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Every task under every strategy; the prompt is processed before each run (unmeasured)."""
    out = []
    for name, prompt in tasks.items():
        for strategy in strategies:
            session = Session(
                engine, TRAVEL_TOOLS, strategy=get_strategy(strategy),
                config=SessionConfig(max_tokens=max_tokens, deadline_s=deadline_s),
            )
            await session.warm_up(prompt)
            rec = run_record(name, strategy, await session.run(prompt))
            out.append(rec)
            if progress is not None:
                k = rec["kinds"]
                progress(f"{name:10} {strategy:6} {rec['latency_s']:6.1f} s  {rec['calls']} calls "
                         f"({k['ok']} ok)  {rec['stop_reason']}")
    return out


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, dict[str, Any]] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        rs = [r for r in runs if r["strategy"] == strategy]
        kinds: Counter[str] = Counter()
        for r in rs:
            kinds.update(r["kinds"])
        total = sum(kinds.values())
        by[strategy] = {
            "runs": len(rs),
            "calls": total,
            "kinds": {k: kinds.get(k, 0) for k in KINDS},
            "well_formed_share": kinds["ok"] / total if total else None,
            "finished": sum(r["stop_reason"] == "eos" for r in rs),
            "repeated_calls": sum(r["repeated_calls"] for r in rs),
            "rollbacks": sum(r["counters"].get("rollbacks", 0) for r in rs),
        }
    return by


def bench_calls(
    *, model: str = "qwen2.5-coder-1.5b", strategies: Sequence[str] = ("async", "sync"),
    threads: int | None = None, max_tokens: int = 400,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    async def go() -> list[dict[str, Any]]:
        engine = LlamaCppEngine(pull(model), n_threads=threads)
        try:
            return await run_calls(engine, DEMO_TASKS, strategies, max_tokens=max_tokens,
                                   progress=progress)
        finally:
            await engine.aclose()

    t = time.perf_counter()
    runs = asyncio.run(go())
    return {
        "benchmark": "calls",
        "model": model,
        "threads": threads,
        "strategies": list(strategies),
        "summary": summarize(runs),
        "runs": runs,
        "wall_s": time.perf_counter() - t,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    lines = [
        f"# Calls made by {result['model']} under the CML prompt (demo tasks, real tools)",
        "",
        f"Command: `{command}`",
        "",
        "A call is well-formed when it parsed, named a given tool and its arguments validated "
        "against the tool's schema.",
        "",
        "| strategy | runs | finished | calls | well-formed | malformed | unknown tool "
        "| invalid args | repeated calls | rollbacks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s, v in result["summary"].items():
        k, share = v["kinds"], v["well_formed_share"]
        lines.append(
            f"| {s} | {v['runs']} | {v['finished']} | {v['calls']} | "
            f"{k['ok']} ({'—' if share is None else f'{share:.0%}'}) | {k['malformed']} | "
            f"{k['unknown_tool']} | {k['invalid_args']} | {v['repeated_calls']} | "
            f"{v['rollbacks']} |")
    lines += ["", "| task | strategy | latency (s) | stop | calls (ok) | answer |",
              "|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ans = r["answer"].replace("\n", " ").replace("|", "/")
        lines.append(f"| {r['task']} | {r['strategy']} | {r['latency_s']:.1f} | "
                     f"{r['stop_reason']} | {r['calls']} ({r['kinds']['ok']}) | "
                     f"{ans[:160]}{'…' if len(ans) > 160 else ''} |")
    lines += ["", f"Wall time {result['wall_s']:.0f} s.", ""]
    return "\n".join(lines)
