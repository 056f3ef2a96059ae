"""``asynclm bench synthetic``: the paper's timing setup on randomized independent-call tasks,
run through the real runtime on the simulator (virtual time), beside the analytic model.

Function times are drawn as 30 ms + an exponential of mean 80 ms, capped at 500 ms (range
30–500 ms, mean ≈ 110 ms, as in the paper). Every strategy runs the same tasks, the same calls
and the same token costs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from asynclm.bench import latency
from asynclm.bench._stats import quantile, summary
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.protocol import render_call
from asynclm.runtime import Session, SessionResult, run_virtual
from asynclm.testing.sim import (
    OraclePolicy,
    SimCall,
    SimCosts,
    SimEngine,
    SimTask,
    SimTokenizer,
    task_toolbox,
)

DEFAULT_STRATEGIES = ("sync", "sync-parallel", "async-naive", "async")
_WORDS = (
    "weather price flight hotel stock news paris tokyo berlin report summary latest city "
    "order status invoice customer account balance rate currency euro dollar"
).split()
_FUNCS = ("get_weather", "search_flights", "get_stock_price", "lookup_order", "convert_currency",
          "search_news", "get_hotel_rates", "fetch_report")


def paper_duration(rng: random.Random) -> float:
    """An execution time in 30–500 ms with mean about 110 ms."""
    return min(0.5, 0.03 + rng.expovariate(1 / 0.08))


def make_tasks(n_tasks: int, n_calls: int, seed: int) -> list[SimTask]:
    rng = random.Random(seed)
    tasks = []
    for t in range(n_tasks):
        calls = tuple(
            SimCall(
                f"c{i + 1}",
                rng.choice(_FUNCS),
                {"query": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6))),
                 "limit": rng.randint(1, 20)},
                paper_duration(rng),
            )
            for i in range(n_calls)
        )
        tasks.append(SimTask(calls, prompt=f"Task {t}.", answer="Here is the summary you asked for.",
                             name=f"synthetic-{t}"))
    return tasks


def run_task(task: SimTask, strategy: str, costs: SimCosts) -> SessionResult:
    engine = SimEngine(OraclePolicy(task), costs)
    session = Session(engine, task_toolbox(task), strategy=get_strategy(strategy),
                      system="(synthetic)")
    return run_virtual(session.run(task.prompt))


def bench_synthetic(
    *, tasks: int = 200, calls: int = 4, tpot_ms: float = 5.0, ttft_ms: float = 0.0,
    seed: int = 0, strategies: Sequence[str] = DEFAULT_STRATEGIES,
) -> dict[str, Any]:
    """Run every strategy on the same tasks; returns the JSON-ready result."""
    costs = SimCosts(tpot_s=tpot_ms / 1000, ttft_s=ttft_ms / 1000)
    task_list = make_tasks(tasks, calls, seed)
    tok = SimTokenizer()
    measured: dict[str, list[float]] = {s: [] for s in strategies}
    bounds: list[float] = []
    analytic: dict[str, list[float]] = {"sync": [], "sync-parallel": [], "async": []}
    for task in task_list:
        first = max(range(len(task.calls)), key=lambda i: task.calls[i].estimate)  # LPT's first
        G = [tok.count(("" if i == first else "\n") + render_call(c.fn, dict(c.args), c.id))
             * costs.tpot_s for i, c in enumerate(task.calls)]
        E = [c.duration_s for c in task.calls]
        suffix = (tok.count(task.answer) + 1) * costs.tpot_s
        bounds.append(latency.lower_bound(G, E, prefix=costs.ttft_s, suffix=suffix))
        analytic["sync"].append(latency.sync(G, E, prefix=costs.ttft_s, suffix=suffix))
        analytic["sync-parallel"].append(
            latency.sync_parallel(G, E, prefix=costs.ttft_s, suffix=suffix))
        analytic["async"].append(latency.async_lpt(G, E, prefix=costs.ttft_s, suffix=suffix))
        for s in strategies:
            r = run_task(task, s, costs)
            if any(c.status != "ok" for c in r.calls) or len(r.calls) != len(task.calls):
                raise RuntimeError(f"{task.name} under {s}: calls did not all succeed")
            measured[s].append(r.latency_s)
    base = quantile(measured["sync"], 0.5) if "sync" in measured else None
    out: dict[str, Any] = {
        "benchmark": "synthetic",
        "params": {"tasks": tasks, "calls": calls, "tpot_ms": tpot_ms, "ttft_ms": ttft_ms,
                   "seed": seed, "durations": "30 ms + Exp(mean 80 ms), capped at 500 ms"},
        "execution_time_s": summary([c.duration_s for t in task_list for c in t.calls]),
        "strategies": {},
        "lower_bound_median_s": quantile(bounds, 0.5),
        "analytic_median_s": {k: quantile(v, 0.5) for k, v in analytic.items()},
    }
    for s, xs in measured.items():
        st = summary(xs)
        row = {"median_s": st["median"], "p90_s": st["p90"], "p10_s": st["p10"],
               "mean_s": st["mean"]}
        if base:
            row["speedup_vs_sync"] = base / st["median"]
            row["speedup_vs_sync_per_task_median"] = quantile(
                [a / b for a, b in zip(measured["sync"], xs, strict=True)], 0.5)
        out["strategies"][s] = row
    if "async" in measured:
        eff = [lb / m for lb, m in zip(bounds, measured["async"], strict=True)]
        out["efficiency_median"] = quantile(eff, 0.5)
        out["efficiency_p10"] = quantile(eff, 0.1)
        out["async_vs_analytic_max_rel_err"] = max(
            abs(m - a) / a for m, a in zip(measured["async"], analytic["async"], strict=True))
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    p = result["params"]
    lines = [
        f"# Synthetic benchmark ({p['tasks']} tasks × {p['calls']} calls, "
        f"{p['tpot_ms']:g} ms/token, TTFT {p['ttft_ms']:g} ms)",
        "",
        f"Command: `{command}`",
        "",
        f"Execution times: median {result['execution_time_s']['median'] * 1000:.0f} ms, "
        f"mean {result['execution_time_s']['mean'] * 1000:.0f} ms ({p['durations']}).",
        "",
        "| strategy | median (s) | p10 (s) | p90 (s) | speedup vs sync (medians) |",
        "|---|---|---|---|---|",
    ]
    for s, row in result["strategies"].items():
        lines.append(
            f"| {s} | {row['median_s']:.3f} | {row['p10_s']:.3f} | {row['p90_s']:.3f} | "
            f"{row.get('speedup_vs_sync', float('nan')):.2f}x |")
    lines += [
        "",
        f"Lower bound median: {result['lower_bound_median_s']:.3f} s. "
        f"Async efficiency (lower bound ÷ measured): median {result.get('efficiency_median', 0):.3f}, "
        f"p10 {result.get('efficiency_p10', 0):.3f}.",
        "Analytic medians: " + ", ".join(
            f"{k} {v:.3f} s" for k, v in result["analytic_median_s"].items()) + ".",
        f"Largest relative gap between measured async and the analytic LPT model: "
        f"{result.get('async_vs_analytic_max_rel_err', float('nan')):.2%}.",
        "",
    ]
    return "\n".join(lines)
