"""``asynclm bench partial-args``: tools that start before their call is fully written.

Conveyor-style partial execution (the paper's seed list): a code tool declared with
``streaming_args`` runs each statement as soon as the model has written its line, instead of
starting when the call block closes. The scenario: the model writes one ``run_code`` call whose
``code`` argument holds ``statements`` lines (each line many tokens), each statement takes
``stmt_s`` seconds to execute; the model then waits for the result and answers. Compared:

- ``normal``: the same tool without ``streaming_args`` (starts when the block closes, runs the
  statements one after another);
- ``streamed``: the tool reads ``code`` line by line (:meth:`ArgStream.lines`) and runs each
  statement as it arrives.

Reported per scenario: end-to-end latency, the call's completion measured from the moment the
model finished writing the block (the wait the model sees), and when the tool started relative
to the block's end (negative: before it). On the simulator (virtual time, ``--engine sim``)
everything is deterministic; ``--engine llama --model qwen2.5-coder-1.5b`` runs the same tool on
the bundled model with a prompt that makes it write a code call of several statements (the
statements are not executed: each one sleeps ``stmt_s``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from asynclm.engines.base import Engine
from asynclm.runtime import Session, SessionConfig, SessionResult, run_virtual
from asynclm.runtime.early import ArgStream
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import Tool, ToolContext, tool

VARIANTS = ("normal", "streamed")


def code_tool(stmt_s: float) -> Tool:
    """``run_code(code)``: each non-empty line is a statement that takes ``stmt_s`` seconds
    (a sleep: nothing is executed); returns the statements it ran. With ``streaming_args``
    it runs each line as soon as it is written."""

    async def run_streamed(stream: ArgStream, ctx: ToolContext) -> dict[str, Any]:
        ran = []
        async for line in stream.lines("code"):
            if line.strip():
                await asyncio.sleep(stmt_s)
                ran.append(line.strip())
        return {"statements_run": len(ran), "ok": True}

    @tool(streaming_args=run_streamed, estimated_time=stmt_s)
    async def run_code(code: str) -> dict[str, Any]:
        """Run Python code, one statement per line, and report how many statements ran.

        Args:
            code: Python source, one statement per line.
        """
        ran = []
        for line in code.split("\n"):
            if line.strip():
                await asyncio.sleep(stmt_s)
                ran.append(line.strip())
        return {"statements_run": len(ran), "ok": True}

    return run_code


def _variant(t: Tool, variant: str) -> Tool:
    return t if variant == "streamed" else t.replace(streaming_args=None)


def _statement(i: int) -> str:
    return f"total_{i} = compute_step({i}, scale=2) + offset_{i} * {i + 1}"


def _measure(r: SessionResult) -> dict[str, Any]:
    calls = [c for c in r.calls if c.fn == "run_code"]
    rec = calls[0] if calls else None
    out: dict[str, Any] = {
        "latency_s": r.latency_s, "stop_reason": r.stop_reason, "calls": len(r.calls),
        "status": rec.status if rec else None,
    }
    if rec is not None:
        out["statements_run"] = (rec.value or {}).get("statements_run") if isinstance(
            rec.value, dict) else None
        out["start_vs_emit_s"] = (
            None if rec.started_at is None else rec.started_at - rec.emitted_at)
        out["wait_after_emit_s"] = rec.ended_at - rec.emitted_at
    return out


def run_sim(*, statements: int, stmt_s: float, tpot_ms: float, ttft_ms: float = 0.0,
            variant: str) -> dict[str, Any]:
    """One scenario on the simulator (virtual time)."""
    code = "\\n".join(_statement(i) for i in range(statements))
    script = [f'[CALL] r1 [HEAD] run_code(code="{code}") [END]\n', "[TRAP][END]",
              "All statements ran."]
    engine = SimEngine(ScriptedPolicy(script),
                       SimCosts(tpot_s=tpot_ms / 1000, ttft_s=ttft_ms / 1000))
    session = Session(engine, [_variant(code_tool(stmt_s), variant)], strategy="async",
                      system="Run code with run_code.")
    return _measure(run_virtual(session.run("Run the computation.")))


def bench_sim(*, statements: Sequence[int] = (4, 8), stmt_s: Sequence[float] = (0.1, 0.3, 1.0),
              tpot_ms: float = 20.0, ttft_ms: float = 0.0) -> dict[str, Any]:
    rows = []
    for n in statements:
        for s in stmt_s:
            res = {v: run_sim(statements=n, stmt_s=s, tpot_ms=tpot_ms, ttft_ms=ttft_ms,
                              variant=v) for v in VARIANTS}
            normal, streamed = res["normal"]["latency_s"], res["streamed"]["latency_s"]
            rows.append({"statements": n, "stmt_s": s, **{v: res[v] for v in VARIANTS},
                         "latency_reduction": 1 - streamed / normal if normal else None})
    return {"benchmark": "partial-args", "engine": "sim",
            "params": {"statements": list(statements), "stmt_s": list(stmt_s),
                       "tpot_ms": tpot_ms, "ttft_ms": ttft_ms},
            "scenarios": rows}


REAL_PROMPT = (
    "Use run_code to run a Python program of {n} statements, one statement per line, that "
    "computes the squares of the numbers 1 to {n} into variables s1 ... s{n} (one assignment "
    "per line). Write the whole program as the code argument in a single call, then wait for "
    "the result and report how many statements ran.")


async def _real_runs(engine: Engine, *, statements: int, stmt_s: float, repeats: int,
                     max_tokens: int, progress: Callable[[str], None] | None,
                     ) -> list[dict[str, Any]]:
    out = []
    prompt = REAL_PROMPT.format(n=statements)
    for k in range(repeats):
        for variant in VARIANTS:
            session = Session(engine, [_variant(code_tool(stmt_s), variant)], strategy="async",
                              config=SessionConfig(max_tokens=max_tokens, deadline_s=300.0))
            await session.warm_up(prompt)
            row = {"variant": variant, "repeat": k, **_measure(await session.run(prompt))}
            out.append(row)
            if progress is not None:
                progress(f"{variant:8} #{k} {row['latency_s']:6.2f} s  "
                         f"statements={row.get('statements_run')} {row['stop_reason']}")
    return out


def bench_real(*, model: str, statements: int = 6, stmt_s: float = 1.0, repeats: int = 3,
               threads: int | None = None, max_tokens: int = 400,
               progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The same comparison on a bundled model through llama.cpp (real time)."""
    from asynclm.engines.llamacpp import LlamaCppEngine
    from asynclm.models import pull

    async def go() -> list[dict[str, Any]]:
        engine = LlamaCppEngine(pull(model), n_threads=threads)
        try:
            return await _real_runs(engine, statements=statements, stmt_s=stmt_s,
                                    repeats=repeats, max_tokens=max_tokens, progress=progress)
        finally:
            await engine.aclose()

    t = time.perf_counter()
    runs = asyncio.run(go())
    summary = {}
    for v in VARIANTS:
        lat = [r["latency_s"] for r in runs if r["variant"] == v]
        summary[v] = {"median_latency_s": statistics.median(lat) if lat else None,
                      "min_latency_s": min(lat, default=None),
                      "max_latency_s": max(lat, default=None), "runs": len(lat)}
    n, s = summary["normal"]["median_latency_s"], summary["streamed"]["median_latency_s"]
    return {"benchmark": "partial-args", "engine": "llama", "model": model,
            "params": {"statements": statements, "stmt_s": stmt_s, "repeats": repeats,
                       "threads": threads, "max_tokens": max_tokens},
            "summary": summary,
            "latency_reduction": (1 - s / n) if n and s is not None else None,
            "runs": runs, "wall_s": time.perf_counter() - t}


def markdown(result: dict[str, Any], command: str) -> str:
    lines = ["# Partial execution: tools that start before their call is written",
             "", f"Command: `{command}`", ""]
    if result["engine"] == "sim":
        p = result["params"]
        lines += [
            f"Simulator, virtual time, {p['tpot_ms']:g} ms/token, TTFT {p['ttft_ms']:g} ms. "
            "One `run_code` call whose `code` holds N statements (one line each, ~20 tokens a "
            "line); each statement takes the given time to execute. `normal` starts the tool "
            "when the call block closes; `streamed` (`streaming_args`) runs each statement as "
            "soon as its line is written. Wait after block = call end − block end.",
            "",
            "| statements | exec/stmt (s) | normal latency (s) | streamed latency (s) | "
            "reduction | normal wait after block (s) | streamed wait after block (s) | "
            "streamed start vs block end (s) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in result["scenarios"]:
            nm, st = row["normal"], row["streamed"]
            lines.append(
                f"| {row['statements']} | {row['stmt_s']:g} | {nm['latency_s']:.2f} | "
                f"{st['latency_s']:.2f} | {row['latency_reduction']:.1%} | "
                f"{nm['wait_after_emit_s']:.2f} | {st['wait_after_emit_s']:.2f} | "
                f"{st['start_vs_emit_s']:+.2f} |")
    else:
        p = result["params"]
        lines += [f"Model {result['model']} (llama.cpp), {p['statements']} statements asked, "
                  f"{p['stmt_s']:g} s per statement, {p['repeats']} repeats.", "",
                  "| variant | median latency (s) | min–max (s) | runs |", "|---|---|---|---|"]
        for v, row in result["summary"].items():
            med, lo, hi = (row.get(k) for k in ("median_latency_s", "min_latency_s",
                                                "max_latency_s"))
            spread = "-" if lo is None or hi is None else f"{lo:.2f}–{hi:.2f}"
            lines.append(f"| {v} | {'-' if med is None else f'{med:.2f}'} | {spread} | "
                         f"{row['runs']} |")
        red = result.get("latency_reduction")
        lines += ["", f"Latency reduction (medians): {'-' if red is None else f'{red:.1%}'}."]
    lines.append("")
    return "\n".join(lines)
