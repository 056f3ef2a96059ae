"""``asynclm demo``: one live scenario (:mod:`asynclm.demo_live`: multi-second tools, research
8 s, a booking 5 s, the weather 1 s) run ``sync``, ``async`` and ``async`` with ``when_idle``
delivery on the same engine, with the answers, the tools' latencies, the time to first answer
and the total latency with their ratios, side-by-side timelines, and Chrome traces + Gantt
PNGs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asynclm.demo_live import TRIP, LiveMetrics, LiveScenario, run_scenario, sim_costs
from asynclm.engines.base import Engine
from asynclm.runtime import SessionResult, run_virtual
from asynclm.trace import gantt_compare, text_timeline

DEMO_SCENARIO = TRIP
"""The demo's scenario: book a flight (6 s), research what to see (8 s), the weather (1 s). (On
the bundled 1.5B the ``dinner`` scenario often ends in a loop of repeated calls: see
``benchmarks/results/live.md``.)"""
DEMO_VARIANTS = ("sync", "async", "async-when-idle")


@dataclass(frozen=True)
class DemoRun:
    """The demo's runs, by variant (:data:`DEMO_VARIANTS`), each with its metrics."""

    results: dict[str, SessionResult]
    metrics: dict[str, LiveMetrics]
    engine: str
    scenario: LiveScenario = field(default=DEMO_SCENARIO)

    @property
    def sync(self) -> SessionResult:
        return self.results["sync"]

    @property
    def async_(self) -> SessionResult:
        return self.results["async"]

    @property
    def speedup(self) -> float:
        """Total latency, sync ÷ async."""
        return self.sync.latency_s / self.async_.latency_s

    def first_answer_ratio(self, variant: str = "async") -> float | None:
        """Time to first answer, sync ÷ ``variant`` (None where one never answered)."""
        a, b = self.metrics["sync"].first_answer_s, self.metrics[variant].first_answer_s
        return a / b if a is not None and b else None


def run_sim_demo(tpot_s: float = 0.027, scenario: LiveScenario = DEMO_SCENARIO) -> DemoRun:
    """The scenario on the simulator at about the 1.5B model's CPU speed (virtual time)."""
    results, metrics = {}, {}
    for variant in DEMO_VARIANTS:
        r, m = run_virtual(run_scenario(
            scenario.sim_engine(sim_costs(tpot_s)), scenario, variant,
            trace_meta={"engine": "sim"}))
        results[variant], metrics[variant] = r, m
    return DemoRun(results, metrics, "simulator", scenario)


async def run_model_demo(engine: Engine, *, label: str, max_tokens: int = 400,
                         scenario: LiveScenario = DEMO_SCENARIO,
                         dialect: str | None = None) -> DemoRun:
    """The scenario with its real tools on a real engine, one variant after another. The prompt
    is processed before each run (prefix cache), so all start alike and the timelines compare
    decoding, tools and injections. ``dialect``: the sessions' (None: the model's default)."""
    results, metrics = {}, {}
    for variant in DEMO_VARIANTS:
        r, m = await run_scenario(engine, scenario, variant, max_tokens=max_tokens,
                                  deadline_s=600.0, trace_meta={"engine": label},
                                  dialect=dialect)
        results[variant], metrics[variant] = r, m
    return DemoRun(results, metrics, label, scenario)


def write_outputs(run: DemoRun, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, r in run.results.items():
        p = out_dir / f"trace-{name}.json"
        r.trace.save(p)
        png = out_dir / f"gantt-{name}.png"
        r.trace.gantt(png, title=f"{name}: {r.latency_s:.2f} s")
        paths += [p, png]
    both = out_dir / "gantt-sync-vs-async.png"
    gantt_compare([(name, r.trace) for name, r in run.results.items()], both)
    paths.append(both)
    return paths


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.1f} s"


def report(run: DemoRun, width: int = 72) -> str:
    sc = run.scenario
    lines = [f"task: {sc.prompt}", f"{sc.latency_line()} (each tool's latency, as written)", ""]
    for name, r in run.results.items():
        m = run.metrics[name]
        b = r.trace.breakdown()
        lines += [
            f"── {name}: first answer {_s(m.first_answer_s)}, total {r.latency_s:.2f} s, "
            f"{r.stop_reason}  ({len(r.calls)} calls, {r.n_generated} tokens; "
            f"decode {b.decode_s:.2f} s, tools {b.tool_s:.2f} s, overlap {b.overlap_s:.2f} s, "
            f"waiting {b.idle_s:.2f} s)",
            text_timeline(r.trace, width=width),
            f"answer: {r.text.strip()}",
            "used every result: " + ("yes" if m.used_all else
                                     f"no (missing {', '.join(m.missing)})"),
            "",
        ]
    unfinished = [n for n, r in run.results.items() if r.stop_reason != "eos"]
    if unfinished:  # a run cut off by its token cap or deadline: a ratio would mislead
        lines.append(f"no speedup reported: {', '.join(unfinished)} did not finish "
                     f"({', '.join(r.stop_reason for r in run.results.values())})")
        return "\n".join(lines)
    lines.append(f"{'':16} {'first answer':>14} {'total':>16}")
    for name, r in run.results.items():
        fa = run.metrics[name].first_answer_s
        ratio = run.first_answer_ratio(name)
        lines.append(f"{name:16} {_s(fa):>8} {'' if ratio is None else f'{ratio:4.1f}x':>5} "
                     f"{r.latency_s:8.1f} s {run.sync.latency_s / r.latency_s:4.2f}x")
    ratio = run.first_answer_ratio()
    lines.append(
        f"speedup async vs sync ({run.engine}): {run.speedup:.2f}x total latency"
        + ("" if ratio is None else f", {ratio:.1f}x to the first answer")
        + f"; {sc.latency_line()}")
    return "\n".join(lines)
