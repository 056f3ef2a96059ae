"""``asynclm bench dag``: dependent calls. Randomized synthetic call DAGs (chains, fan-out/fan-in,
diamonds, random DAGs) run through the real runtime on the simulator (virtual time), comparing
Sync, Sync-Parallel, an LLMCompiler-style plan, Async (LPT) and Async with futures, beside the
analytic model, the lower bound and (on small DAGs) the exact optimum by brute force.

Every strategy runs the same tasks, the same calls and the same token costs. A dependent call
takes the ``id`` field of each input's result: with futures the model writes ``$c1.id``;
without, it waits for the result and copies the value (``"order-4821"``), as a real model must.
Function times: 30 ms + Exp(mean 80 ms), capped at 500 ms (the paper's setup).

With ``multi_step_parallel=N`` (CLI ``--multi-step-parallel``: ``--tasks`` items) the paper's
multi-step-parallel set runs beside the synthetic shapes: BFCL ``multi_turn_base`` samples joined
three at a time, the ground-truth calls of each turn, the calls of one sample chained in order
(:mod:`.dag_bfcl`). Each item is one row: its turns run as separate sessions, one after another,
and every figure (measured, bounds, analytic, optimum) is the sum over its turns. ``all`` in the
summary is the synthetic shapes only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal

from asynclm.bench import latency
from asynclm.bench._stats import quantile
from asynclm.bench.bfcl.data import MULTI_STEP_PARALLEL  # the set's shape name (no BFCL import)
from asynclm.bench.compiler import CompilerSession
from asynclm.bench.dag_bfcl import ChainBy, make_msp_tasks, report_intro, report_notes
from asynclm.bench.synthetic import paper_duration
from asynclm.protocol import Ref, render_call
from asynclm.runtime import Session, SessionResult, run_virtual
from asynclm.testing.sim import (
    CompilerPolicy,
    OraclePolicy,
    SimCall,
    SimCosts,
    SimEngine,
    SimTask,
    SimTokenizer,
    task_toolbox,
)
from asynclm.tools import Ordered, Toolbox

Shape = Literal["chain", "fanout", "diamond", "random"]
SHAPES: tuple[Shape, ...] = ("chain", "fanout", "diamond", "random")
STRATEGIES = ("sync", "sync-parallel", "llmcompiler", "async", "async-futures",
              "async-futures-cp")
"""``async-futures`` writes calls longest-first (LPT, as ``async``); ``async-futures-cp`` by
critical path (longest estimated path through the call's dependents first)."""
BRUTE_FORCE_MAX = 7
"""DAGs with at most this many calls get the exact optimum (every topological order); a
multi-step-parallel item gets it when each of its turns has at most this many."""

_WORDS = ("flight hotel order invoice customer account report city stock news weather rate "
          "booking seat ticket route").split()
_FUNCS = ("search", "lookup", "fetch", "book", "convert", "summarize", "rank", "notify")
_ANSWER = "Here is the summary you asked for."


def _edges(shape: Shape, rng: random.Random) -> list[tuple[int, ...]]:
    """``preds[i]`` for a DAG of the given shape (calls in a topological order)."""
    if shape == "chain":
        n = rng.randint(3, 5)
        return [()] + [(i - 1,) for i in range(1, n)]
    if shape == "fanout":  # one root, k parallel branches, one call joining them
        k = rng.randint(2, 4)
        return [()] + [(0,)] * k + [tuple(range(1, k + 1))]
    if shape == "diamond":  # a -> (b, c) -> d, sometimes followed by e
        preds: list[tuple[int, ...]] = [(), (0,), (0,), (1, 2)]
        return preds + [(3,)] if rng.random() < 0.5 else preds
    n = rng.randint(4, 7)  # random: each call depends on each earlier one with p = 0.35
    return [tuple(j for j in range(i) if rng.random() < 0.35) for i in range(n)]


def make_tasks(n_per_shape: int, seed: int, shapes: Sequence[Shape] = SHAPES) -> list[SimTask]:
    """``n_per_shape`` tasks of each shape, deterministic for a seed."""
    rng = random.Random(seed)
    tasks: list[SimTask] = []
    for shape in shapes:
        for t in range(n_per_shape):
            preds = _edges(shape, rng)
            calls = []
            seen: set[str] = set()  # distinct queries: identical calls would share results
            for i, ps in enumerate(preds):
                query = ""
                while not query or query in seen:
                    query = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
                seen.add(query)
                args: dict[str, Any] = {"query": query}
                if len(ps) == 1:
                    args["key"] = Ref(f"c{ps[0] + 1}", ("id",))
                elif ps:
                    args["keys"] = [Ref(f"c{p + 1}", ("id",)) for p in ps]
                calls.append(SimCall(
                    f"c{i + 1}", rng.choice(_FUNCS), args, paper_duration(rng),
                    deps=tuple(f"c{p + 1}" for p in ps),
                    result={"id": f"{rng.choice(_WORDS)}-{rng.randint(1000, 9999)}",
                            "score": rng.randint(1, 99)},
                ))
            tasks.append(SimTask(tuple(calls), prompt=f"Task {shape} {t}.", answer=_ANSWER,
                                 name=f"{shape}-{t}", meta={"shape": shape}))
    return tasks


def task_tools(task: SimTask) -> Toolbox:
    """The task's simulated tools (:func:`task_toolbox`); a tool named in ``task.meta["order"]``
    declares ``Ordered(key)``, so calls of tools with equal keys run one after another, in
    emission order (how stateful tools keep order without references)."""
    tools = task_toolbox(task)
    order = task.meta.get("order")
    if not order:
        return tools
    return Toolbox([t.replace(order_by=Ordered(order[n])) if n in order else t
                    for n, t in tools.items()])


def run_task(task: SimTask, strategy: str, costs: SimCosts) -> SessionResult:
    """One task under one strategy (virtual time)."""
    if strategy == "llmcompiler":
        engine = SimEngine(CompilerPolicy(task), costs)
        return run_virtual(CompilerSession(engine, task_tools(task)).run(task.prompt))
    futures = strategy.startswith("async-futures")
    order: Literal["critical-path", "lpt"] = (
        "critical-path" if strategy == "async-futures-cp" else "lpt")
    engine = SimEngine(OraclePolicy(task, futures=futures, order=order), costs)
    session = Session(engine, task_tools(task), strategy="async" if futures else strategy,
                      system="(dag)")
    return run_virtual(session.run(task.prompt))


def task_model(task: SimTask, tpot_s: float) -> dict[str, Any]:
    """The paper's model of ``task``: ``G`` with references (futures) and with copied values,
    ``E``, and ``deps`` by index. The first call the oracle writes (the longest root) has no
    separator before it."""
    tok = SimTokenizer()
    idx = {c.id: i for i, c in enumerate(task.calls)}
    roots = [i for i, c in enumerate(task.calls) if not c.needs]
    first = max(roots, key=lambda i: task.calls[i].estimate, default=-1)

    def g(i: int, args: dict[str, Any]) -> float:
        c = task.calls[i]
        return tok.count(("" if i == first else "\n") + render_call(c.fn, args, c.id)) * tpot_s

    return {
        "G_ref": [g(i, dict(c.args)) for i, c in enumerate(task.calls)],
        "G_lit": [g(i, task.literal_args(c)) for i, c in enumerate(task.calls)],
        "E": [c.duration_s for c in task.calls],
        "deps": {i: [idx[d] for d in c.needs] for i, c in enumerate(task.calls) if c.needs},
    }


def ancestor_bound(
    G: Sequence[float], E: Sequence[float], deps: dict[int, list[int]], *,
    prefix: float = 0.0, suffix: float = 0.0,
) -> float:
    """A lower bound tighter than :func:`latency.lower_bound` (``futures=True``) on DAGs, valid
    for every strategy here: a call can only reference calls written before it, so it starts
    no earlier than the decode of all its ancestors and itself, nor before its inputs ended:
    ``end(v) >= max(Σ_{u ∈ anc(v) ∪ {v}} G(u), max_{u ∈ preds(v)} end(u)) + E(v)``; the
    latency is at least ``max(ΣG, max_v end(v))``. (With no dependencies it is the same.)"""
    n = len(E)
    anc: list[set[int]] = [set() for _ in range(n)]
    end = [0.0] * n
    for v in range(n):  # task order is topological (dependencies name earlier calls)
        for u in deps.get(v, []):
            if u >= v:
                raise ValueError("calls must come after their dependencies")
            anc[v] |= anc[u] | {u}
        g = sum(G[u] for u in anc[v]) + G[v]
        end[v] = max(g, max((end[u] for u in deps.get(v, [])), default=0.0)) + E[v]
    return prefix + max(sum(G), max(end, default=0.0)) + suffix


def analytic(m: dict[str, Any], **aff: float) -> dict[str, float]:
    """The latency model's value per strategy it covers, for :func:`task_model` ``m``."""
    kw: dict[str, Any] = aff  # also passed where keywords of other types are taken
    return {
        "sync": latency.sync(m["G_lit"], m["E"], **kw),
        "sync-parallel": latency.sync_parallel(m["G_lit"], m["E"], m["deps"], **kw),
        "async": latency.async_lpt(m["G_lit"], m["E"], m["deps"], **kw),
        "async-futures": latency.async_lpt(m["G_ref"], m["E"], m["deps"], futures=True, **kw),
        "async-futures-cp": latency.async_order(
            m["G_ref"], m["E"], latency.critical_path_order(m["G_ref"], m["E"], m["deps"]),
            m["deps"], futures=True, **kw),
    }


def _turn_row(task: SimTask, costs: SimCosts, strategies: Sequence[str]) -> dict[str, Any]:
    """Bounds, analytic model, optimum (small DAGs) and measured latency of one task."""
    m = task_model(task, costs.tpot_s)
    suffix = (SimTokenizer().count(task.answer) + 1) * costs.tpot_s
    aff: dict[str, Any] = {"prefix": costs.ttft_s, "suffix": suffix}
    g_min = [min(a, b) for a, b in zip(m["G_ref"], m["G_lit"], strict=True)]
    row: dict[str, Any] = {
        # No schedule of these calls, with or without futures, beats this bound.
        "lower_bound_s": latency.lower_bound(g_min, m["E"], m["deps"], futures=True, **aff),
        "lower_bound_no_futures_s": latency.lower_bound(m["G_lit"], m["E"], m["deps"], **aff),
        "ancestor_bound_s": ancestor_bound(g_min, m["E"], m["deps"], **aff),
        "analytic_s": analytic(m, **aff),
        "measured_s": {},
    }
    if len(task.calls) <= BRUTE_FORCE_MAX:
        row["optimum_s"] = {
            "async": latency.optimal_order(m["G_lit"], m["E"], m["deps"], **aff)[0],
            "async-futures": latency.optimal_order(m["G_ref"], m["E"], m["deps"],
                                                   futures=True, **aff)[0],
        }
    for s in strategies:
        r = run_task(task, s, costs)
        if len(r.calls) != len(task.calls) or any(not c.ok for c in r.calls):
            raise RuntimeError(f"{task.name} under {s}: calls did not all succeed")
        row["measured_s"][s] = r.latency_s
    return row


def task_row(turns: Sequence[SimTask], costs: SimCosts, strategies: Sequence[str]
             ) -> dict[str, Any]:
    """The result row of one task, or of one multi-step-parallel item given as its turns (run
    one after another as separate sessions): every figure is the sum over the turns, and the
    optimum is there only when every turn has one. A single task's row is that task's."""
    parts = [_turn_row(t, costs, strategies) for t in turns]
    first = turns[0]
    row: dict[str, Any] = {"task": first.meta.get("item", first.name),
                           "shape": first.meta["shape"],
                           "calls": sum(len(t.calls) for t in turns)}
    if "turn" in first.meta:
        row["turns"] = len(turns)
    for k in ("lower_bound_s", "lower_bound_no_futures_s", "ancestor_bound_s"):
        row[k] = sum(p[k] for p in parts)
    for k in ("analytic_s", "measured_s"):
        row[k] = {s: sum(p[k][s] for p in parts) for s in parts[0][k]}
    if all("optimum_s" in p for p in parts):
        row["optimum_s"] = {s: sum(p["optimum_s"][s] for p in parts)
                            for s in ("async", "async-futures")}
    return row


def bench_dag(
    *, tasks: int = 50, tpot_ms: float = 5.0, ttft_ms: float = 0.0, seed: int = 0,
    shapes: Sequence[Shape] = SHAPES, strategies: Sequence[str] = STRATEGIES,
    multi_step_parallel: int = 0, chain_by: ChainBy = "sample",
) -> dict[str, Any]:
    """Run every strategy on ``tasks`` DAGs of each shape, and on the first
    ``multi_step_parallel`` items of the multi-step-parallel set (needs ``bfcl-eval``; calls
    chained per ``chain_by``, see :mod:`.dag_bfcl`); returns the JSON-ready result."""
    costs = SimCosts(tpot_s=tpot_ms / 1000, ttft_s=ttft_ms / 1000)
    units: list[Sequence[SimTask]] = [(t,) for t in make_tasks(tasks, seed, shapes)]
    params: dict[str, Any] = {}
    if multi_step_parallel:
        units += make_msp_tasks(multi_step_parallel, seed, chain_by)
        params["multi_step_parallel"] = {
            "items": multi_step_parallel, "chain_by": chain_by,
            "turns": "separate sessions, one after another; figures summed over turns",
            "durations": "bench bfcl's CallTimer, profile paper (same law)"}
    rows = [task_row(u, costs, strategies) for u in units]
    return {
        "benchmark": "dag",
        "params": {"tasks_per_shape": tasks, "shapes": list(shapes), "tpot_ms": tpot_ms,
                   "ttft_ms": ttft_ms, "seed": seed, "strategies": list(strategies),
                   "durations": "30 ms + Exp(mean 80 ms), capped at 500 ms",
                   "brute_force_max_calls": BRUTE_FORCE_MAX, **params},
        "summary": summarize(rows, strategies),
        "tasks": rows,
    }


def summarize(rows: list[dict[str, Any]], strategies: Sequence[str]) -> dict[str, Any]:
    """Medians per shape (and ``all``: the synthetic shapes' rows): latency, efficiency (lower
    bound ÷ measured), ratio to the brute-force optimum, and the futures speedup over async."""
    out: dict[str, Any] = {}
    synthetic = [r for r in rows if r["shape"] in SHAPES]
    groups = {"all": synthetic} if synthetic else {}
    for r in rows:
        groups.setdefault(r["shape"], []).append(r)
    for name, rs in groups.items():
        g: dict[str, Any] = {"tasks": len(rs),
                             "calls_median": quantile([r["calls"] for r in rs], .5),
                             "lower_bound_median_s": quantile([r["lower_bound_s"] for r in rs], .5),
                             "strategies": {}}
        for s in strategies:
            xs = [r["measured_s"][s] for r in rs]
            eff = [r["lower_bound_s"] / r["measured_s"][s] for r in rs]
            eff_a = [r["ancestor_bound_s"] / r["measured_s"][s] for r in rs]
            st: dict[str, Any] = {
                "median_s": quantile(xs, .5), "p10_s": quantile(xs, .1), "p90_s": quantile(xs, .9),
                "efficiency_median": quantile(eff, .5), "efficiency_p10": quantile(eff, .1),
                "efficiency_ancestor_bound_median": quantile(eff_a, .5),
            }
            opt_key = "async" if s == "async" else "async-futures"
            small = [r for r in rs if "optimum_s" in r]
            if small and s in ("async", "async-futures", "async-futures-cp", "llmcompiler"):
                st["optimum_ratio_median"] = quantile(
                    [r["optimum_s"][opt_key] / r["measured_s"][s] for r in small], .5)
            if s in rs[0]["analytic_s"]:
                st["analytic_median_s"] = quantile([r["analytic_s"][s] for r in rs], .5)
            g["strategies"][s] = st
        small = [r for r in rs if "optimum_s" in r]
        if small:
            g["small_dags"] = len(small)
            g["optimum_median_s"] = {k: quantile([r["optimum_s"][k] for r in small], .5)
                                     for k in ("async", "async-futures")}
        for key, fut in (("futures_speedup_vs_async", "async-futures"),
                         ("futures_cp_speedup_vs_async", "async-futures-cp")):
            if "async" in strategies and fut in strategies:
                ratios = [r["measured_s"]["async"] / r["measured_s"][fut] for r in rs]
                g[key] = {
                    "of_medians": g["strategies"]["async"]["median_s"]
                    / g["strategies"][fut]["median_s"],
                    "per_task_median": quantile(ratios, .5), "per_task_min": min(ratios),
                    "per_task_slower": sum(x < 1 for x in ratios)}
        out[name] = g
    return out


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals, checked against the measurement (never adjusted)."""
    s = result["summary"]
    eff = s.get("all", {}).get("strategies", {}).get("async-futures", {}).get(
        "efficiency_median")
    chain = s.get("chain", {}).get("futures_speedup_vs_async", {}).get("of_medians")
    return {
        "futures_efficiency_median": eff, "futures_efficiency_goal": 0.9,
        "futures_efficiency_met": eff is not None and eff >= 0.9,
        "chain_speedup_vs_async": chain, "chain_speedup_goal": 1.15,
        "chain_speedup_met": chain is not None and chain >= 1.15,
    }


def markdown(result: dict[str, Any], command: str) -> str:
    """The report: tables per shape, futures speedups, goals and notes."""
    p = result["params"]
    s = result["summary"]
    msp = p.get("multi_step_parallel")
    lines = [
        f"# DAG benchmark ({p['tasks_per_shape']} tasks per shape"
        + (f", {msp['items']} multi-step-parallel items" if msp else "")
        + f", {p['tpot_ms']:g} ms/token, TTFT {p['ttft_ms']:g} ms)",
        "",
        f"Command: `{command}`",
        "",
        "Simulator on virtual time, the real runtime and executor. Shapes: chain (3-5 calls), "
        "fanout (root, 2-4 branches, a joining call), diamond (4-5 calls), random (4-7 calls, "
        "edge p=0.35). Function times: " + p["durations"] + ". Traps cost their two tokens. "
        "`all` = these four shapes.",
        "",
    ]
    if msp:
        lines += [report_intro(msp), ""]
    lines += [
        "Efficiency = lower bound ÷ measured, per task, median. The lower bound is the same for "
        "every strategy: `max(ΣG, longest path)` with futures allowed "
        "(`latency.lower_bound(..., futures=True)`), G = the fewer tokens of the two ways to "
        "write each call. Optimum ratio = brute-force best async order (analytic model; with "
        "futures for the futures strategies and llmcompiler) ÷ measured, on DAGs of at most "
        f"{p['brute_force_max_calls']} calls.",
        "",
        "Efficiency (ancestor bound) uses a tighter bound, also valid for every strategy: a "
        "call is written after every call it references, so it cannot start before all its "
        "ancestors and itself are decoded (`bench.dag.ancestor_bound`).",
        "",
        "| shape | strategy | median (s) | p10 (s) | p90 (s) | efficiency median | "
        "efficiency p10 | efficiency median (ancestor bound) | optimum ratio | "
        "analytic median (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, g in s.items():
        for name, st in g["strategies"].items():
            opt = st.get("optimum_ratio_median")
            an = st.get("analytic_median_s")
            lines.append(
                f"| {shape} | {name} | {st['median_s']:.3f} | {st['p10_s']:.3f} | "
                f"{st['p90_s']:.3f} | {st['efficiency_median']:.3f} | {st['efficiency_p10']:.3f} | "
                f"{st['efficiency_ancestor_bound_median']:.3f} | "
                f"{'' if opt is None else f'{opt:.3f}'} | {'' if an is None else f'{an:.3f}'} |")
    lines += ["", "Futures speedup over async (same tasks; LPT order, and critical-path order):",
              "", "| shape | order | of medians | per-task median | per-task min | tasks slower "
              "than async | exact optimum median, async / with futures (s) |",
              "|---|---|---|---|---|---|---|"]
    for shape, g in s.items():
        for label, key in (("LPT", "futures_speedup_vs_async"),
                           ("critical path", "futures_cp_speedup_vs_async")):
            f = g.get(key)
            if not f:
                continue
            o = g.get("optimum_median_s", {})
            unit = "items" if shape == MULTI_STEP_PARALLEL else "DAGs"
            lines.append(
                f"| {shape} | {label} | {f['of_medians']:.2f}x | {f['per_task_median']:.2f}x | "
                f"{f['per_task_min']:.2f}x | {f['per_task_slower']} of {g['tasks']} | "
                + (f"{o['async']:.3f} / {o['async-futures']:.3f} ({g['small_dags']} {unit})"
                   if o else "") + " |")
    gl = result.get("goals")
    if gl:
        lines += [
            "", "## Goals", "",
            "- Async with futures, median efficiency ≥ 0.9 (`all`): **"
            + ("n/a" if gl["futures_efficiency_median"] is None
               else f"{gl['futures_efficiency_median']:.3f}")
            + f"** ({'met' if gl['futures_efficiency_met'] else 'missed'}).",
            "- Async with futures ≥ 1.15x faster than Async on chains: **"
            + ("n/a" if gl["chain_speedup_vs_async"] is None
               else f"{gl['chain_speedup_vs_async']:.2f}x")
            + f"** ({'met' if gl['chain_speedup_met'] else 'missed'}).",
        ]
    lines += [
        "", "## Notes", "",
        "- Where the optimum ratio is 1.000 but the efficiency is below 1, the schedule is the "
        "best one possible for that emission model; the gap is the looseness of the bound.",
        "- llmcompiler writes plan lines (`3. fn(...)`), shorter than CML call blocks, so its "
        "optimum ratio can exceed 1; it pays a joiner turn (`Thought: ... Action: Finish(...)`) "
        "after the last result, and with a time to first token a new request for the joiner.",
        "- async-futures writes calls longest-first (as async does); async-futures-cp by "
        "critical path. sync-parallel is slower than sync on chains: each round costs a trap.",
    ]
    if msp:
        lines += report_notes(msp, p["brute_force_max_calls"])
    else:
        lines.append("- Not in this run: the multi-step-parallel set (`--multi-step-parallel`).")
    lines.append("")
    return "\n".join(lines)
