"""``asynclm bench live``: the live scenarios (:mod:`asynclm.demo_live`, multi-second tools)
under ``sync``, ``async`` and ``async`` with ``when_idle`` delivery (and ``async-lazy``).

Per run it records the **time to first useful answer** (the first ``text.delta`` event with
non-whitespace text, from the start of the run: the first words addressed to the user), the
time the first *fact* (a tool result's distinctive token) appears in the text, the total
latency, whether the answer used every result (all facts present), and the tokens generated
and injected. The summary gives medians and spread (p10-p90, min-max) over repeats per scenario
and variant, and ratios against ``sync`` (sync median ÷ variant median: > 1 is faster).

``--engine sim``: the simulated live assistant (:class:`asynclm.demo_live.LivePolicy`) on
virtual time, at about the 1.5B model's CPU speed. ``--engine llama``: a bundled model through
llama.cpp in-process, the same tools on real time (the prompt is processed before each run,
unmeasured, so every variant starts from the prefix cache).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from asynclm.bench._stats import summary
from asynclm.demo_live import (
    LATENCIES,
    SCENARIOS,
    VARIANTS,
    LiveScenario,
    run_scenario,
    sim_costs,
)
from asynclm.engines.base import Engine
from asynclm.runtime import run_virtual

SIM_VARIANTS = ("sync", "async", "async-when-idle", "async-lazy")
LLAMA_VARIANTS = ("sync", "async", "async-when-idle")
METRICS = ("first_answer_s", "first_fact_s", "latency_s")


def _pick(names: Sequence[str] | None, table: dict[str, Any], what: str,
          default: Sequence[str]) -> list[str]:
    chosen = list(names) if names else list(default)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(table)}")
    return chosen


async def _runs(engine_for: Callable[[LiveScenario], Engine], scenarios: Sequence[str],
                variants: Sequence[str], *, repeats: int, max_tokens: int, deadline_s: float,
                progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    out = []
    for k in range(repeats):
        for name in scenarios:
            scenario = SCENARIOS[name]
            for variant in variants:
                result, m = await run_scenario(
                    engine_for(scenario), scenario, variant, max_tokens=max_tokens,
                    deadline_s=deadline_s)
                row = {"repeat": k, **m.as_dict(), "counters": dict(result.counters),
                       "transcript": result.transcript}
                out.append(row)
                if progress is not None:
                    fa = "-" if m.first_answer_s is None else f"{m.first_answer_s:.1f}"
                    progress(f"{name:7} {variant:16} #{k} first answer {fa:>5} s  total "
                             f"{m.latency_s:5.1f} s  used all: {m.used_all}  {m.stop_reason}")
    return out


def _summarize(runs: Sequence[dict[str, Any]], scenarios: Sequence[str],
               variants: Sequence[str]) -> dict[str, Any]:
    """Per scenario (and ``all``: every scenario's runs together) and variant: medians and
    spread of the times, runs that used every result, tokens; ratios against ``sync``."""
    out: dict[str, Any] = {}
    for scope in [*scenarios, "all"]:
        rows = [r for r in runs if scope in ("all", r["scenario"])]
        by: dict[str, Any] = {}
        for v in variants:
            rs = [r for r in rows if r["variant"] == v]
            cell: dict[str, Any] = {"runs": len(rs),
                                    "used_all": sum(r["used_all"] for r in rs),
                                    "finished": sum(r["stop_reason"] == "eos" for r in rs)}
            for metric in METRICS:
                xs = [r[metric] for r in rs if r[metric] is not None]
                cell[metric] = summary(xs) if xs else None
                cell[f"{metric}_missing"] = len(rs) - len(xs)
            for key in ("n_generated", "n_injected"):
                cell[key] = statistics.median(r[key] for r in rs) if rs else None
            by[v] = cell
        base = by.get("sync")
        for cell in by.values():
            cell["vs_sync"] = {m: _ratio(base, cell, m) for m in METRICS}
        out[scope] = by
    return out


def _ratio(base: dict[str, Any] | None, cell: dict[str, Any], metric: str) -> float | None:
    if base is None or base[metric] is None or cell[metric] is None:
        return None
    den = cell[metric]["median"]
    return base[metric]["median"] / den if den > 0 else None


def _result(engine: str, model: str | None, params: dict[str, Any], scenarios: Sequence[str],
            variants: Sequence[str], runs: list[dict[str, Any]], wall_s: float,
            ) -> dict[str, Any]:
    used_tools = dict.fromkeys(t.name for s in scenarios for t in SCENARIOS[s].tools)
    return {
        "benchmark": "live",
        "engine": engine,
        "model": model,
        "params": params,
        "tool_latencies_s": {t: LATENCIES[t] for t in used_tools},
        "scenarios": {s: {"prompt": SCENARIOS[s].prompt, "facts": dict(SCENARIOS[s].facts),
                          "tools": SCENARIOS[s].latency_line()} for s in scenarios},
        "variants": {v: {"strategy": VARIANTS[v].strategy, "delivery": VARIANTS[v].delivery}
                     for v in variants},
        "summary": _summarize(runs, scenarios, variants),
        "runs": runs,
        "wall_s": wall_s,
    }


def bench_live_sim(*, scenarios: Sequence[str] | None = None,
                   variants: Sequence[str] | None = None, repeats: int = 1,
                   tpot_ms: float = 27.0, max_tokens: int = 400,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every scenario × variant on the simulator (virtual time: instant, deterministic)."""
    names = _pick(scenarios, SCENARIOS, "scenario", tuple(SCENARIOS))
    vs = _pick(variants, VARIANTS, "variant", SIM_VARIANTS)
    costs = sim_costs(tpot_ms / 1000)
    t = time.perf_counter()
    runs = run_virtual(_runs(lambda s: s.sim_engine(costs), names, vs, repeats=repeats,
                             max_tokens=max_tokens, deadline_s=300.0, progress=progress))
    return _result("sim", None, {"repeats": repeats, "tpot_ms": tpot_ms,
                                 "max_tokens": max_tokens}, names, vs, runs,
                   time.perf_counter() - t)


def bench_live_llama(*, model: str = "qwen2.5-coder-1.5b", threads: int | None = None,
                     scenarios: Sequence[str] | None = None,
                     variants: Sequence[str] | None = None, repeats: int = 1,
                     max_tokens: int = 256, deadline_s: float = 120.0,
                     progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every scenario × variant on a bundled model through llama.cpp (real time). Defaults:
    2 scenarios × 3 variants × 1 repeat, about 6 runs of 20-40 s on two CPU threads."""
    from asynclm.engines.llamacpp import LlamaCppEngine
    from asynclm.models import pull

    names = _pick(scenarios, SCENARIOS, "scenario", tuple(SCENARIOS))
    vs = _pick(variants, VARIANTS, "variant", LLAMA_VARIANTS)

    async def go() -> list[dict[str, Any]]:
        engine = LlamaCppEngine(pull(model), n_threads=threads)
        try:
            return await _runs(lambda _s: engine, names, vs, repeats=repeats,
                               max_tokens=max_tokens, deadline_s=deadline_s, progress=progress)
        finally:
            await engine.aclose()

    t = time.perf_counter()
    runs = asyncio.run(go())
    return _result("llama", model, {"repeats": repeats, "threads": threads,
                                    "max_tokens": max_tokens, "deadline_s": deadline_s},
                   names, vs, runs, time.perf_counter() - t)


# -- report -------------------------------------------------------------------------------------
def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "—"
    if stats["n"] > 1:
        return f"{stats['median']:.1f} ({stats['min']:.1f}–{stats['max']:.1f})"
    return f"{stats['median']:.1f}"


def _x(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}x"


def markdown(result: dict[str, Any], command: str) -> str:
    p = result["params"]
    tools = ", ".join(f"`{t}` {s:g} s" for t, s in result["tool_latencies_s"].items())
    where = ("Simulator (a scripted live assistant), virtual time, "
             f"{p['tpot_ms']:g} ms/token, prompt already processed"
             if result["engine"] == "sim" else
             f"{result['model']} through llama.cpp in-process, {p.get('threads') or 'default'} "
             f"threads, real time, max {p['max_tokens']} tokens; the prompt is processed "
             "before each run (unmeasured)")
    lines = [
        "# Live scenarios: multi-second tools, sync vs async vs async with when-idle delivery",
        "",
        f"Command: `{command}`",
        "",
        f"**Tool latencies: {tools}.** {where}; {p['repeats']} repeat(s) per scenario and "
        "variant.",
        "",
        "- *first answer*: time to first useful answer, from the start of the run to the first "
        "`text.delta` event with non-whitespace text (prose addressed to the user, outside "
        "call blocks).",
        "- *first fact*: when a tool result's distinctive token (booking code, name, "
        "temperature) first appears in the streamed text.",
        "- *total*: the run's latency. *used all*: runs whose final answer contains every "
        "result's token.",
        "- Times in seconds, median (min–max over repeats); ×: sync median ÷ variant median.",
        "- Variants: " + "; ".join(
            f"`{v}` = strategy `{d['strategy']}`"
            + (f", every call delivered `{d['delivery']}`" if d["delivery"] else "")
            for v, d in result["variants"].items()) + ".",
        "",
    ]
    for scope, by in result["summary"].items():
        title = "All scenarios" if scope == "all" else (
            f"Scenario `{scope}` ({result['scenarios'][scope]['tools']})")
        lines += [f"## {title}", "",
                  "| variant | first answer | × | first fact | × | total | × | used all "
                  "| finished | tokens gen. | tokens inj. |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for v, c in by.items():
            r = c["vs_sync"]
            lines.append(
                f"| {v} | {_cell(c['first_answer_s'])} | {_x(r['first_answer_s'])} | "
                f"{_cell(c['first_fact_s'])} | {_x(r['first_fact_s'])} | "
                f"{_cell(c['latency_s'])} | {_x(r['latency_s'])} | "
                f"{c['used_all']}/{c['runs']} | {c['finished']}/{c['runs']} | "
                f"{c['n_generated']:g} | {c['n_injected']:g} |")
        lines.append("")
    lines += ["## Scenarios", ""]
    for s, d in result["scenarios"].items():
        facts = ", ".join(f"`{f}`" for f in d["facts"].values())
        lines.append(f"- `{s}` ({d['tools']}; facts {facts}): {d['prompt']}")
    lines += ["", "## Answers", "", "| scenario | variant | # | stop | missing | answer |",
              "|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ans = r["answer"].replace("\n", " ").replace("|", "/")
        lines.append(f"| {r['scenario']} | {r['variant']} | {r['repeat']} | {r['stop_reason']} "
                     f"| {', '.join(r['missing']) or '—'} | "
                     f"{ans[:200]}{'…' if len(ans) > 200 else ''} |")
    lines += ["", f"Wall time {result['wall_s']:.0f} s.", ""]
    return "\n".join(lines)
