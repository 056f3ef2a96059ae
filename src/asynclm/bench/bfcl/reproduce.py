"""The paper's latency table on BFCL, reproduced on the simulator (``asynclm bench reproduce``).

Setup (the paper's, ``reference/paper.md``): the cheat sheet (the model makes exactly the
ground-truth calls: the simulator's oracle), seeded tool times in 30–500 ms (mean ≈ 110 ms),
5 and 20 ms per output token, and a time to first token (TTFT) of 310 ms (cloud, GPT-4o) or
59 ms (local, Llama-3B) paid by every *new request*. Latency is measured as the paper did, from
the first to the last generated token: the request that opens each turn (which every strategy
makes) is left out; every later request (a re-request after a result) is in.

The paper's strategies and the runtime strategy that implements each:

============== ============================ ================================================
paper           runtime strategy              what it does
============== ============================ ================================================
Sync            ``sync-reprefill``            each result ends the request; a new request
                                              carries the context back (TTFT each call)
Sync-Parallel   ``sync-parallel-reprefill``   calls collected, run together at the end of
                                              the request, one new request per round
Async-Naive     ``async-naive``               calls run at once; each result restarts the
                                              request with the result appended
Async           ``async``                     results injected into the live context
============== ============================ ================================================

Two baselines that reuse their context (no re-request; the paper asks for a Sync that reuses
its prefix cache) are reported beside them: ``sync`` and ``sync-parallel``. Strategies that never
re-request do not depend on the TTFT once the opening request is left out, so they run once per
token speed and serve both TTFT settings.

Multi-turn categories run in the paper's multi-step model (a call on a tool instance is written
once the previous call on that instance returned); ``async`` is also run with asynclm's
write-ahead (the call is written at once, the executor keeps the instance's order), reported
as ``async-write-ahead``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from asynclm.bench._stats import quantile, summary
from asynclm.bench.bfcl.run import BenchConfig, run_bfcl

__all__ = [
    "CATEGORIES", "PAPER", "PAPER_STRATEGIES", "Setting", "markdown", "reproduce",
]

CATEGORIES = ("parallel", "parallel_multiple", "multi_turn_base", "multi-step-parallel")
PAPER_STRATEGIES = {"Sync": "sync-reprefill", "Sync-Parallel": "sync-parallel-reprefill",
                    "Async-Naive": "async-naive", "Async": "async"}
CACHED_STRATEGIES = {"Sync (cached)": "sync", "Sync-Parallel (cached)": "sync-parallel"}
WRITE_AHEAD = "async-write-ahead"
BASELINE = "sync-reprefill"
RE_REQUEST = ("sync-reprefill", "sync-parallel-reprefill", "async-naive")
MULTI_TURN = ("multi_turn_base", "multi-step-parallel")

PAPER: Mapping[tuple[str, str], Mapping[str, float]] = {
    # speedup vs Sync, reference/paper.md ("Speedups vs Sync"); the paper's parallel set pools
    # BFCL's parallel scenarios, so its figure stands beside both parallel categories.
    ("parallel", "GPT-4o"): {"Sync-Parallel": 1.7, "Async-Naive": 2.1, "Async": 2.1},
    ("parallel", "Llama-3B"): {"Sync-Parallel": 1.3, "Async-Naive": 1.6, "Async": 1.6},
    ("multi-step-parallel", "GPT-4o"): {"Sync-Parallel": 3.2, "Async-Naive": 1.7, "Async": 5.4},
    ("multi-step-parallel", "Llama-3B"): {"Sync-Parallel": 1.6, "Async-Naive": 1.8,
                                          "Async": 2.4},
}
PAPER_SET = {"parallel": "parallel", "parallel_multiple": "parallel",
             "multi-step-parallel": "multi-step-parallel"}
EFFICIENCY_GOAL = 0.85


@dataclass(frozen=True, slots=True)
class Setting:
    """One column of the paper's setup: token speed, TTFT, and the paper's model it stands for."""

    name: str
    tpot_ms: float
    ttft_ms: float
    paper_model: str


SETTINGS = (
    Setting("cloud-5ms", 5.0, 310.0, "GPT-4o"),
    Setting("cloud-20ms", 20.0, 310.0, "GPT-4o"),
    Setting("local-5ms", 5.0, 59.0, "Llama-3B"),
    Setting("local-20ms", 20.0, 59.0, "Llama-3B"),
)


def _paper_latency(run: Mapping[str, Any]) -> float:
    """First to last generated token: the latency without each turn's opening request."""
    return float(run["latency_s"] - run["prefill_s"])


def _rows(result: Mapping[str, Any], strategy: str, as_name: str | None = None
          ) -> dict[str, Any]:
    """Per-item figures of one strategy in the paper's frame."""
    runs = [it["runs"][strategy] for it in result["items"]]
    lat = [_paper_latency(r) for r in runs]
    lb = [float(r["lb_s"] - r["prefill_s"]) for r in runs]
    b = [r["breakdown"] for r in runs]
    n = len(runs)
    mean = lambda xs: sum(xs) / n if n else float("nan")  # noqa: E731
    return {
        "strategy": as_name or strategy,
        "ids": [it["id"] for it in result["items"]],
        "latency_s": lat,
        "lb_s": lb,
        "efficiency": [x / y if y > 0 else None for x, y in zip(lb, lat, strict=True)],
        "valid": [bool(r["valid"]) and bool(r.get("live_state_ok", True)) for r in runs],
        "breakdown_mean_s": {
            "decode_s": mean([x["decode_s"] for x in b]),
            "prefill_s": mean([x["prefill_s"] - r["prefill_s"] for x, r in zip(b, runs,
                                                                               strict=True)]),
            "interrupt_s": mean([x["interrupt_s"] for x in b]),
            "idle_s": mean([x["idle_s"] for x in b]),
            "tool_s": mean([x["tool_s"] for x in b]),
            "overlap_s": mean([x["overlap_s"] for x in b]),
        },
        "calls_per_item": mean([r["n_calls"] for r in runs]),
        "decode_per_call_s": (sum(r["sum_G_s"] for r in runs) / max(1, sum(r["n_calls"] for r in runs))),
    }


def _summarize(row: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    st = summary(row["latency_s"])
    eff = [e for e in row["efficiency"] if e is not None]
    out = {
        "median_s": st["median"], "p10_s": st["p10"], "p90_s": st["p90"], "mean_s": st["mean"],
        "efficiency_median": quantile(eff, 0.5) if eff else None,
        "efficiency_p10": quantile(eff, 0.1) if eff else None,
        "n": len(row["latency_s"]), "n_valid": sum(row["valid"]),
    }
    if base is not None:
        out["speedup_vs_sync"] = quantile(base["latency_s"], 0.5) / st["median"]
        out["speedup_vs_sync_per_item_median"] = quantile(
            [a / b for a, b in zip(base["latency_s"], row["latency_s"], strict=True)], 0.5)
    return out


def _run(category: str, strategies: Sequence[str], tpot_ms: float, ttft_ms: float, *,
         limit: int | None, seed: int, write_ahead: bool = False) -> dict[str, Any]:
    cfg = BenchConfig(category=category, engine="sim", strategies=tuple(strategies),
                      limit=limit, seed=seed, tpot_ms=tpot_ms, ttft_ms=ttft_ms,
                      write_ahead=write_ahead, max_tokens=512)
    return run_bfcl(cfg)


def reproduce(
    *, categories: Sequence[str] = CATEGORIES, settings: Sequence[Setting] = SETTINGS,
    limit: int | None = None, seed: int = 0, progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the table; returns the JSON-ready result (per category and setting: each strategy's
    summary and per-item latencies, lower bounds, efficiencies and mean breakdown)."""
    say = progress or (lambda _m: None)
    wall0 = time.perf_counter()
    cells: list[dict[str, Any]] = []
    for category in categories:
        for tpot in sorted({s.tpot_ms for s in settings}):
            t = time.perf_counter()
            fixed = _run(category, ["sync", "sync-parallel", "async"], tpot, 0.0,
                         limit=limit, seed=seed)
            ahead = (_run(category, ["async"], tpot, 0.0, limit=limit, seed=seed,
                          write_ahead=True) if category in MULTI_TURN else None)
            for st in (s for s in settings if s.tpot_ms == tpot):
                rr = _run(category, RE_REQUEST, tpot, st.ttft_ms, limit=limit, seed=seed)
                rows = {s: _rows(rr, s) for s in RE_REQUEST}
                rows.update({s: _rows(fixed, s) for s in ("sync", "sync-parallel", "async")})
                if ahead is not None:
                    rows[WRITE_AHEAD] = _rows(ahead, "async", WRITE_AHEAD)
                base = rows[BASELINE]
                paper = PAPER.get((PAPER_SET.get(category, ""), st.paper_model), {})
                cells.append({
                    "category": category, "setting": asdict(st), "n_items": fixed["n_items"],
                    "paper_speedup": dict(paper),
                    "strategies": {s: {**_summarize(r, base), **{k: r[k] for k in (
                        "breakdown_mean_s", "calls_per_item", "decode_per_call_s")}}
                        for s, r in rows.items()},
                    "items": {s: {k: r[k] for k in ("latency_s", "lb_s", "efficiency", "valid")}
                              for s, r in rows.items()},
                    "ids": base["ids"],
                })
            say(f"{category} at {tpot:g} ms/token: {time.perf_counter() - t:.0f} s")
    return {
        "benchmark": "bfcl-reproduce",
        "params": {"categories": list(categories), "settings": [asdict(s) for s in settings],
                   "limit": limit, "seed": seed, "profile": "paper", "engine": "sim",
                   "efficiency_goal": EFFICIENCY_GOAL},
        "paper_strategies": PAPER_STRATEGIES,
        "cached_strategies": CACHED_STRATEGIES,
        "cells": cells,
        "goals": goals(cells),
        "wall_s": time.perf_counter() - wall0,
    }


def goals(cells: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals, per category and setting: Async's speedup over Sync at least the
    paper's (where the paper gives one), and Async's median efficiency at least 0.85."""
    out = []
    for c in cells:
        a = c["strategies"]["async"]
        paper = c["paper_speedup"].get("Async")
        sync_median = quantile(c["items"][BASELINE]["latency_s"], 0.5)
        lb_median = quantile(c["items"]["async"]["lb_s"], 0.5)
        sync = c["strategies"][BASELINE]
        calls = sync["calls_per_item"] or 1.0
        out.append({
            "category": c["category"], "setting": c["setting"]["name"],
            "async_speedup": a["speedup_vs_sync"], "paper": paper,
            "bound": sync_median / lb_median if lb_median > 0 else None,
            "G_per_call_s": a["decode_per_call_s"],
            "E_per_call_s": sync["breakdown_mean_s"]["tool_s"] / calls,  # Sync: one at a time
            # per call, Sync costs G + E + TTFT and no schedule less than G: the paper's figure
            # needs G <= (E + TTFT) / (figure - 1)
            "G_needed_s": (None if paper is None or paper <= 1 else
                           (sync["breakdown_mean_s"]["tool_s"] / calls
                            + c["setting"]["ttft_ms"] / 1000) / (paper - 1)),
            "speedup_ok": None if paper is None else a["speedup_vs_sync"] >= paper,
            "efficiency": a["efficiency_median"],
            "efficiency_ok": (a["efficiency_median"] or 0.0) >= EFFICIENCY_GOAL,
        })
    return out


# -- report ----------------------------------------------------------------------------------

_LABEL = {v: k for k, v in {**PAPER_STRATEGIES, **CACHED_STRATEGIES}.items()}
_LABEL[WRITE_AHEAD] = "Async + write-ahead (asynclm)"


def _f(x: float | None, d: int = 2, suffix: str = "") -> str:
    return "—" if x is None or x != x else f"{x:.{d}f}{suffix}"


def markdown(result: Mapping[str, Any], command: str | None = None,
             plots: Sequence[str] = ()) -> str:
    """The reproduction report: one table per category, goals, and the differences explained."""
    p = result["params"]
    lines = ["# AsyncLM's BFCL latency table, reproduced on the simulator", ""]
    cmd = command or result.get("command")
    if cmd:
        lines += [f"Command: `{cmd}`", ""]
    lines += [
        "Setup: cheat sheet (the simulator's oracle makes exactly the ground-truth calls),"
        f" tool times profile `{p['profile']}` (30 ms + Exp(80 ms) capped at 500 ms, mean"
        f" ≈ 110 ms, seed {p['seed']}), every strategy sees the same time for the same call."
        " Latency = first to last generated token (each turn's opening request, made by every"
        " strategy, left out; every re-request in). Speedup = median Sync latency ÷ median"
        " latency. Efficiency = lower bound ÷ measured latency, per item (median shown); the"
        " lower bound is the same decode work and tool times with perfect overlap, no trap"
        " tokens and no re-request, keeping the order of calls on one tool instance.",
        "",
        "Strategy names: " + "; ".join(f"{k} = `{v}`" for k, v in PAPER_STRATEGIES.items())
        + "; Sync (cached) = `sync` and Sync-Parallel (cached) = `sync-parallel` reuse their"
        " context (no re-request). Async + write-ahead: multi-turn only, the model writes a call"
        " on an instance without waiting for the previous call's result; the executor keeps"
        " the instance's order.",
        "",
    ]
    by_cat: dict[str, list[Mapping[str, Any]]] = {}
    for c in result["cells"]:
        by_cat.setdefault(c["category"], []).append(c)
    for cat, cells in by_cat.items():
        first = cells[0]
        lines += [f"## {cat} ({first['n_items']} items)", "",
                  "| setting | strategy | median (s) | p90 (s) | speedup vs Sync | paper |"
                  " efficiency (median / p10) | valid |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in cells:
            st = c["setting"]
            setting = (f"{st['tpot_ms']:g} ms/token, TTFT {st['ttft_ms']:g} ms"
                       f" ({st['paper_model']})")
            for s, r in c["strategies"].items():
                paper = c["paper_speedup"].get(_LABEL.get(s, ""))
                lines.append(
                    f"| {setting} | {_LABEL.get(s, s)} | {_f(r['median_s'], 3)} |"
                    f" {_f(r['p90_s'], 3)} | {_f(r.get('speedup_vs_sync'), 2, 'x')} |"
                    f" {_f(paper, 1, 'x')} |"
                    f" {_f(r['efficiency_median'])} / {_f(r['efficiency_p10'])} |"
                    f" {r['n_valid']}/{r['n']} |")
        bad = sorted({i for c in cells for s in c["items"]
                      for i, ok in zip(c["ids"], c["items"][s]["valid"], strict=True) if not ok})
        if bad:
            lines += ["", f"Not valid by BFCL's checker under some strategy: {', '.join(bad)}"
                      " (every strategy makes the same calls; for the single-turn sets these are"
                      " the items whose ground truth contradicts its own function document, so"
                      " the tool refuses the call)."]
        a = first["strategies"]["async"]
        tpot = first["setting"]["tpot_ms"] / 1000
        tokens = a["decode_per_call_s"] / tpot
        lines += ["", f"Calls per item {a['calls_per_item']:.1f}; {tokens:.1f} tokens per call"
                  f" block (mean): a call takes {tokens * 5:.0f} ms to write at 5 ms/token and"
                  f" {tokens * 20:.0f} ms at 20 ms/token, against a mean execution time of about"
                  " 110 ms.", ""]
    lines += ["## Goals", "",
              "| category | setting | Async speedup | paper | ≥ paper | bound (Sync ÷ LB) |"
              " G per call (ms) | G the paper's figure needs (ms) | E per call (ms) |"
              f" Async efficiency | ≥ {p['efficiency_goal']} |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in goals(result["cells"]):
        ok = {True: "yes", False: "**no**", None: "—"}
        lines.append(f"| {g['category']} | {g['setting']} | {_f(g['async_speedup'], 2, 'x')} |"
                     f" {_f(g['paper'], 1, 'x')} | {ok[g['speedup_ok']]} |"
                     f" {_f(g['bound'], 2, 'x')} | {_f(g['G_per_call_s'] * 1000, 0)} |"
                     f" {_f(None if g['G_needed_s'] is None else g['G_needed_s'] * 1000, 0)} |"
                     f" {_f(g['E_per_call_s'] * 1000, 0)} |"
                     f" {_f(g['efficiency'])} | {ok[g['efficiency_ok']]} |")
    lines += ["", "Bound: median Sync ÷ median lower bound, the most any schedule could gain over"
              " Sync with these calls and tool times (no re-request, perfect overlap). Where the"
              " paper's figure is above it, no strategy could reach the paper's figure here. G:"
              " time to write one call block; E: one call's execution time (means). Per call,"
              " Sync costs G + E + TTFT and no schedule can spend less than G writing it, so the"
              " paper's figure needs G ≤ (E + TTFT) ÷ (figure − 1).", "",
              DIFFERENCES]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{x}]({x})" for x in plots]
    lines += ["", f"Wall time {result['wall_s']:.0f} s.", ""]
    return "\n".join(lines)


DIFFERENCES = """## Differences from the paper, and why

- **Simulated model.** Latencies come from the simulator's virtual clock (a fixed time per token,
  a fixed TTFT per request), not from GPT-4o or Llama-3B on a GPU. The paper's columns are
  matched by TTFT (310 ms GPT-4o, 59 ms Llama-3B); the paper emulated cloud Async at 5 ms/token
  and does not state Llama-3B's time per token, so both token speeds are shown for both. The
  simulator's token counts for these call blocks are close to a real tokenizer's (Qwen2.5's,
  markers as plain text, counts a few tokens more per call).
- **Call length against TTFT and tool time.** A call block here (id, markers, arguments) takes
  as long to write (G) as a call takes to run (E), or longer: see the G and E columns. Overlap
  alone is then worth at most about 1 + E/G (the paper's theorem, and
  what `Sync (cached)` → `Async` shows); the rest of Async's speedup over Sync is the TTFT Sync
  pays per call. Where the paper's figure is above the bound (median Sync ÷ median lower bound),
  no schedule of these calls could reach it: the paper's calls must have been shorter relative
  to TTFT + E, or its Sync paid more per request (a re-request there also re-processes a long,
  growing context; here a request costs its TTFT only, whatever the context length).
- **Latency frame.** The paper measures from the first to the last generated token; so do we
  (each turn's opening request, made by every strategy, is left out). Counting it would add the
  same TTFT to every strategy and shrink every speedup.
- **The sets.** The paper's parallel set pools BFCL's parallel scenarios (400); its figure is
  shown beside both `parallel` and `parallel_multiple`. The paper gives no figure for
  `multi_turn_base` alone. Our multi-step-parallel set joins `multi_turn_base` samples k,
  k+67 and k+134 (the paper does not say which three it joined); each sample keeps its own tool
  instances and is checked on its own by BFCL's checker.
- **Dependencies.** BFCL gives no dependency graph. Here a call depends on the previous call on
  the same tool instance (order matters there: shuffling breaks 103 of 163 multi-call turns) and
  calls on different instances are independent; in the paper's multi-step model a dependent call
  is written after its predecessor's result is in. Many `multi_turn_base` turns use a single
  instance, so their calls form one chain: Sync-Parallel cannot batch them (it is slower than
  Sync there, having trap tokens to write) and Async gains only where chains of different
  instances (or of the three joined samples) overlap.
- **Efficiency.** Async is not free: the model writes calls one after another, a result waits
  for the end of the block being written, the model writes trap blocks while it waits, and in
  the multi-step model a dependent call is written only after its predecessor's result. The
  lower bound counts none of that; its decode work is the same, its overlap perfect.
"""
