"""``asynclm demo``: one multi-tool task run ``sync`` then ``async`` on the same engine, with the
answers, a side-by-side timeline, the measured speedup, and Chrome traces + Gantt PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asynclm.engines.base import Engine
from asynclm.runtime import Session, SessionConfig, SessionResult, run_virtual
from asynclm.testing.sim import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask, task_toolbox
from asynclm.trace import gantt_compare, text_timeline

TRIP = SimTask(
    calls=(
        SimCall("w1", "get_weather", {"city": "Lisbon", "days": 3}, 0.9,
                result={"forecast": ["sun", "sun", "clouds"], "high_c": 24}),
        SimCall("f1", "search_flights", {"origin": "BER", "dest": "LIS", "date": "2026-12-04"}, 2.4,
                result={"best": "TP 541", "price_eur": 189}),
        SimCall("h1", "search_hotels", {"city": "Lisbon", "nights": 3, "max_eur": 150}, 1.6,
                result={"best": "Casa do Rio", "price_eur": 132}),
        SimCall("x1", "convert_currency", {"amount": 189, "src": "EUR", "dst": "USD"}, 0.4,
                result=203.9),
    ),
    prompt="Plan a 3-night trip from Berlin to Lisbon on 4 December: weather, a flight, a hotel "
    "under 150 EUR, and the flight price in USD.",
    answer="Lisbon will be sunny (24 °C). Fly TP 541 (189 EUR, about 204 USD) and stay at "
    "Casa do Rio (132 EUR/night).",
    name="trip",
)


@dataclass(frozen=True)
class DemoRun:
    sync: SessionResult
    async_: SessionResult
    engine: str

    @property
    def speedup(self) -> float:
        return self.sync.latency_s / self.async_.latency_s


def run_sim_demo(tpot_s: float = 0.027) -> DemoRun:
    """The trip task on the simulator at about the 1.5B model's CPU speed (virtual time)."""
    out = {}
    for strategy in ("sync", "async"):
        engine = SimEngine(OraclePolicy(TRIP), SimCosts(tpot_s=tpot_s, prefill_tps=175.0))
        session = Session(engine, task_toolbox(TRIP), strategy=strategy,
                          trace_meta={"engine": "sim", "task": TRIP.name})
        out[strategy] = run_virtual(session.run(TRIP.prompt))
    return DemoRun(out["sync"], out["async"], "simulator")


async def run_model_demo(engine: Engine, *, label: str, max_tokens: int = 400) -> DemoRun:
    """The trip task with real tools on a real engine: sync first, then async. The prompt is
    processed before each run (prefix cache), so both start alike and the timelines compare
    decoding, tools and injections."""
    from asynclm.demo_tools import TRAVEL_TOOLS, TRIP_PROMPT

    out = {}
    for strategy in ("sync", "async"):
        session = Session(engine, TRAVEL_TOOLS, strategy=strategy,
                          config=SessionConfig(max_tokens=max_tokens, deadline_s=600),
                          trace_meta={"engine": label, "task": "trip"})
        await session.warm_up(TRIP_PROMPT)
        out[strategy] = await session.run(TRIP_PROMPT)
    return DemoRun(out["sync"], out["async"], label)


def write_outputs(run: DemoRun, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, r in (("sync", run.sync), ("async", run.async_)):
        p = out_dir / f"trace-{name}.json"
        r.trace.save(p)
        png = out_dir / f"gantt-{name}.png"
        r.trace.gantt(png, title=f"{name}: {r.latency_s:.2f} s")
        paths += [p, png]
    both = out_dir / "gantt-sync-vs-async.png"
    gantt_compare([("sync", run.sync.trace), ("async", run.async_.trace)], both)
    paths.append(both)
    return paths


def report(run: DemoRun, width: int = 72) -> str:
    lines = []
    for name, r in (("sync", run.sync), ("async", run.async_)):
        b = r.trace.breakdown()
        lines += [
            f"── {name}: {r.latency_s:.2f} s, {r.stop_reason}  ({len(r.calls)} calls, "
            f"{r.n_generated} tokens; "
            f"decode {b.decode_s:.2f} s, tools {b.tool_s:.2f} s, overlap {b.overlap_s:.2f} s, "
            f"waiting {b.idle_s:.2f} s)",
            text_timeline(r.trace, width=width),
            f"answer: {r.text.strip()}",
            "",
        ]
    unfinished = [n for n, r in (("sync", run.sync), ("async", run.async_))
                  if r.stop_reason != "eos"]
    if unfinished:  # a run cut off by its token cap or deadline: a ratio would mislead
        lines.append(f"no speedup reported: {', '.join(unfinished)} did not finish "
                     f"({', '.join(r.stop_reason for r in (run.sync, run.async_))})")
    else:
        lines.append(f"speedup async vs sync ({run.engine}): {run.speedup:.2f}x")
    return "\n".join(lines)
