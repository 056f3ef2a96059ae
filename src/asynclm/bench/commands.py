"""``asynclm bench ...``: the benchmarks' command line (typer + rich; each benchmark is
imported on use). Every command writes JSON and/or Markdown results that name the command that
made them."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON + Markdown results).")
console = Console(soft_wrap=True)


def _command() -> str:
    return "asynclm " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _write(result: dict[str, Any], json_path: Path | None, md_path: Path | None, md: str) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    if md_path:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(md)
    console.print(md)


@bench_app.command("synthetic")
def bench_synthetic(
    tasks: int = 200, calls: int = 4, tpot_ms: float = 5.0, ttft_ms: float = 0.0,
    seed: int = 0,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Paper's timing setup on randomized independent calls (simulator, virtual time)."""
    from asynclm.bench.synthetic import bench_synthetic as run
    from asynclm.bench.synthetic import markdown

    result = run(tasks=tasks, calls=calls, tpot_ms=tpot_ms, ttft_ms=ttft_ms, seed=seed)
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("dag")
def bench_dag(
    engine: Annotated[str, typer.Option(help="sim (virtual time) or llamacpp.")] = "sim",
    tasks: Annotated[int, typer.Option(help="Sim: tasks per shape.")] = 50,
    tpot_ms: float = 5.0, ttft_ms: float = 0.0, seed: int = 0,
    multi_step_parallel: Annotated[bool, typer.Option(
        "--multi-step-parallel",
        help="Sim: also the first --tasks items of the multi-step-parallel set (BFCL "
             "multi_turn_base joined three at a time; needs bfcl-eval).")] = False,
    model: Annotated[str, typer.Option(help="llamacpp: bundled model.")] = (
        "qwen2.5-coder-1.5b"),
    limit: Annotated[int | None, typer.Option(help="llamacpp: first N tasks.")] = None,
    repeats: Annotated[int, typer.Option(help="llamacpp: runs per task and variant.")] = 1,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
    deadline_s: Annotated[float, typer.Option(help="llamacpp: per-run deadline.")] = 300.0,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Dependent calls: Sync, Sync-Parallel, LLMCompiler-style, Async, Async with futures."""
    if engine == "sim":
        from asynclm.bench.dag import bench_dag as run
        from asynclm.bench.dag import goals, markdown

        result = run(tasks=tasks, tpot_ms=tpot_ms, ttft_ms=ttft_ms, seed=seed,
                     multi_step_parallel=tasks if multi_step_parallel else 0)
        result["goals"] = goals(result)
    elif engine == "llamacpp":
        from asynclm.bench.dag_real import bench_dag_real as run_real
        from asynclm.bench.dag_real import markdown

        err = Console(stderr=True)
        result = run_real(model=model, limit=limit, repeats=repeats, threads=threads,
                          deadline_s=deadline_s,
                          progress=lambda m: err.print(m, highlight=False))
    else:
        raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("partial-args")
def bench_partial_args(
    engine: Annotated[str, typer.Option(help="sim (virtual time) or llama (llama.cpp).")] = "sim",
    statements: Annotated[str, typer.Option(
        help="Sim: comma list of statement counts; llama: the first one.")] = "4,8",
    stmt_s: Annotated[str, typer.Option(
        help="Seconds each statement takes (comma list on the sim; llama: the first).")] = (
        "0.1,0.3,1"),
    tpot_ms: Annotated[float, typer.Option(help="Sim: time per output token.")] = 20.0,
    ttft_ms: Annotated[float, typer.Option(help="Sim: time to first token.")] = 0.0,
    model: Annotated[str, typer.Option(help="llama: bundled model.")] = "qwen2.5-coder-1.5b",
    repeats: Annotated[int, typer.Option(help="llama: runs per variant.")] = 3,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Partial execution: a code tool that runs each statement as the model writes it
    (``streaming_args``) against the same tool started when its call is complete."""
    from asynclm.bench.partial_args import bench_real, bench_sim, markdown

    counts = [int(x) for x in statements.split(",") if x.strip()]
    times = [float(x) for x in stmt_s.split(",") if x.strip()]
    if engine == "sim":
        result = bench_sim(statements=counts, stmt_s=times, tpot_ms=tpot_ms, ttft_ms=ttft_ms)
    elif engine in ("llama", "llamacpp"):
        err = Console(stderr=True)
        result = bench_real(model=model, statements=counts[0], stmt_s=times[0],
                            repeats=repeats, threads=threads,
                            progress=lambda m: err.print(m, highlight=False))
    else:
        raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("live")
def bench_live(
    engine: Annotated[str, typer.Option(help="sim (virtual time) or llama (llama.cpp).")] = "sim",
    model: Annotated[str, typer.Option(help="llama: bundled model.")] = "qwen2.5-coder-1.5b",
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
    scenarios: Annotated[str | None, typer.Option(
        help="Comma list (asynclm.demo_live.SCENARIOS); default all.")] = None,
    variants: Annotated[str | None, typer.Option(
        help="Comma list of sync, async, async-when-idle, async-lazy; default all on the sim, "
             "the first three on llama.")] = None,
    repeats: Annotated[int, typer.Option(help="Runs per scenario and variant.")] = 1,
    max_tokens: Annotated[int | None, typer.Option(
        help="Per run; default 400 on the sim, 256 on llama.")] = None,
    tpot_ms: Annotated[float, typer.Option(help="Sim: time per output token.")] = 27.0,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Live scenarios with multi-second tools (research 8 s, bookings 5-6 s, weather 1 s):
    time to first answer, total latency and whether the answer used every result, for sync,
    async and async with when-idle delivery."""
    from asynclm.bench.live import bench_live_llama, bench_live_sim, markdown

    names = [s.strip() for s in scenarios.split(",") if s.strip()] if scenarios else None
    vs = [v.strip() for v in variants.split(",") if v.strip()] if variants else None
    err = Console(stderr=True)
    try:
        if engine == "sim":
            result = bench_live_sim(scenarios=names, variants=vs, repeats=repeats,
                                    tpot_ms=tpot_ms, max_tokens=max_tokens or 400)
        elif engine in ("llama", "llamacpp"):
            result = bench_live_llama(model=model, threads=threads, scenarios=names,
                                      variants=vs, repeats=repeats,
                                      max_tokens=max_tokens or 256,
                                      progress=lambda m: err.print(m, highlight=False))
        else:
            raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("overhead")
def bench_overhead(
    sessions: int = 50, calls: int = 20,
    rounds: Annotated[int, typer.Option(
        help="Rounds the sessions are split into, alternating with the asyncio floor.")] = 5,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Runtime overhead per call, parser throughput and linearity (real time)."""
    from asynclm.bench.overhead import bench_overhead as run
    from asynclm.bench.overhead import markdown

    result = run(sessions=sessions, calls=calls, rounds=rounds)
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("faults")
def bench_faults(
    sessions: Annotated[int, typer.Option(help="Randomized sessions.")] = 10_000,
    seed: int = 0,
    real_share: Annotated[float, typer.Option(
        help="Share of the sessions run in real time (the rest in virtual time).")] = 0.2,
    shrink: Annotated[bool, typer.Option(
        help="Shrink each distinct failure to a minimal reproduction.")] = True,
    check: Annotated[bool, typer.Option(
        "--check", help="Exit with status 1 unless every count is zero.")] = False,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Fault injection at volume: misbehaving tools, cancellations, malformed scripts across
    every strategy × id policy × deadline; counts lost, duplicated, hung, crashed, leaks
    (target: all zero)."""
    from asynclm.bench.faults import bench_faults as run
    from asynclm.bench.faults import markdown

    err = Console(stderr=True)
    result = run(sessions=sessions, seed=seed, real_share=real_share, shrink_failures=shrink,
                 progress=lambda m: err.print(m, highlight=False))
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))
    if check and not result["all_zero"]:
        raise typer.Exit(1)


@bench_app.command("bfcl")
def bench_bfcl(
    category: str = "parallel",
    engine: Annotated[str, typer.Option(
        help="sim (virtual time), llamacpp, or openai (a server at --base-url).")] = "sim",
    model: Annotated[str, typer.Option(help="Bundled model (llamacpp).")] = (
        "qwen2.5-coder-1.5b"),
    strategies: Annotated[str | None, typer.Option(
        help="Comma list; default sync,sync-reprefill,sync-parallel,async. "
             "bfcl-prompt = BFCL's own one-shot prompt.")] = None,
    limit: int | None = None, offset: int = 0, seed: int = 0,
    tpot_ms: Annotated[float, typer.Option(help="Sim: time per output token.")] = 5.0,
    ttft_ms: Annotated[float, typer.Option(help="Sim: time to first token.")] = 0.0,
    profile: Annotated[str, typer.Option(help="Tool times: paper or web.")] = "paper",
    cheat_sheet: Annotated[bool, typer.Option(
        help="Put the ground-truth calls in the prompt.")] = False,
    prompt: Annotated[str, typer.Option(
        help="cml, or bfcl (= --strategies bfcl-prompt).")] = "cml",
    max_tokens: int = 384,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads.")] = None,
    n_ctx: Annotated[int, typer.Option(help="llama.cpp context window, in tokens.")] = 8192,
    write_ahead: Annotated[bool, typer.Option(
        help="Multi-turn, sim: the oracle writes a call on a tool instance without waiting"
             " for the previous call's result.")] = False,
    base_url: Annotated[str | None, typer.Option(
        help="openai: the server; --model names its tokenizer.")] = None,
    adapter: Annotated[Path | None, typer.Option(
        help="llamacpp: a GGUF LoRA adapter for --model (asynclm finetune export).")] = None,
    enforce: Annotated[bool, typer.Option(
        help="The runtime's protocol enforcement; --no-enforce lets the model write"
             " results itself (counted), to measure it unaided.")] = True,
    dialect: Annotated[str, typer.Option(
        "--dialect", help="Comma list of the dialects every item runs in (cml, hermes,"
        " pythonic, llama3, mistral), each with every strategy; anything but cml alone keys"
        " the runs <dialect>/<strategy>, adds paired tables and failure modes to the report,"
        " and without --strategies runs sync,async,bfcl-prompt. Single-turn categories.")] = (
        "cml"),
    framing: Annotated[str, typer.Option(
        "--framing", help="Native dialects: where a result goes, comma list of turn (a tool"
        " turn of its own) and inline (inside the assistant's turn); several make one variant"
        " each (hermes-turn, hermes-inline).")] = "turn",
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
    from_json: Annotated[list[Path] | None, typer.Option(
        help="Instead of running: saved results of one configuration over different items"
             " (e.g. --offset runs), merged into one result and report. Repeatable.")] = None,
) -> None:
    """BFCL items through every strategy (and, with --dialect, every dialect): latency,
    breakdown, BFCL accuracy, lower bound. Multi-turn categories (and multi-step-parallel) run
    on BFCL's real tool classes."""
    from asynclm.bench.bfcl import BfclNotInstalled
    from asynclm.bench.bfcl.report import markdown
    from asynclm.bench.bfcl.run import BFCL_PROMPT, default_config, run_bfcl
    from asynclm.bench.bfcl.summary import merge_results

    if from_json:
        try:
            merged = merge_results([json.loads(p.read_text()) for p in from_json])
        except (OSError, ValueError, KeyError) as exc:
            Console(stderr=True).print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        merged["command"] = _command()
        _write(merged, json_path, report, markdown(merged, merged["command"]))
        return

    if prompt not in ("cml", "bfcl"):
        raise typer.BadParameter("choose cml or bfcl", param_hint="--prompt")
    if prompt == "bfcl":
        if strategies not in (None, BFCL_PROMPT):
            raise typer.BadParameter(f"--prompt bfcl runs only {BFCL_PROMPT}",
                                     param_hint="--strategies")
        strategies = BFCL_PROMPT
    err = Console(stderr=True)
    try:
        cfg = default_config(
            category=category, engine=engine, model=model, limit=limit, offset=offset,
            seed=seed, tpot_ms=tpot_ms, ttft_ms=ttft_ms, profile=profile,
            cheat_sheet=cheat_sheet, max_tokens=max_tokens, threads=threads,
            write_ahead=write_ahead, enforce=enforce, n_ctx=n_ctx, dialects=dialect,
            framings=framing,
            **({"base_url": base_url} if base_url else {}),
            **({"adapter": str(adapter)} if adapter else {}),
            **({"strategies": strategies} if strategies else {}))
        def checkpoint(partial: dict[str, Any]) -> None:
            if json_path is not None:  # the report waits for the whole run
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(partial, indent=1) + "\n")

        result = run_bfcl(cfg, progress=lambda m: err.print(m, highlight=False),
                          checkpoint=checkpoint)
    except (BfclNotInstalled, ValueError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("calls")
def bench_calls(
    model: str = "qwen2.5-coder-1.5b",
    strategies: Annotated[str, typer.Option(help="Comma list.")] = "async,sync",
    max_tokens: int = 400,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads")] = None,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """How well a real model makes calls on the demo tasks (well-formed, valid, repeated)."""
    from asynclm.bench.calls import bench_calls as run
    from asynclm.bench.calls import markdown

    err = Console(stderr=True)
    result = run(model=model, strategies=[s.strip() for s in strategies.split(",")],
                 threads=threads, max_tokens=max_tokens,
                 progress=lambda m: err.print(m, highlight=False))
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("reproduce")
def bench_reproduce(
    categories: Annotated[str, typer.Option(help="Comma list of categories.")] = (
        "parallel,parallel_multiple,multi_turn_base,multi-step-parallel"),
    limit: Annotated[int | None, typer.Option(help="Items per category (default all).")] = None,
    seed: int = 0,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
    plots: Annotated[Path | None, typer.Option(
        help="Folder for the PNG plots (default: the report's folder).")] = None,
    from_json: Annotated[Path | None, typer.Option(
        help="Re-render report and plots from a saved result instead of running.")] = None,
) -> None:
    """The paper's BFCL latency table on the simulator, with the paper's figures beside."""
    from asynclm.bench.bfcl.reproduce import markdown, reproduce

    if from_json is not None:
        result = json.loads(from_json.read_text())
    else:
        err = Console(stderr=True)
        result = reproduce(categories=[c.strip() for c in categories.split(",") if c.strip()],
                           limit=limit, seed=seed,
                           progress=lambda m: err.print(m, highlight=False))
        result["command"] = _command()
        if json_path:  # saved before plotting: a plot failure never loses the run
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=1) + "\n")
    folder = plots or (report.parent if report else None)
    names: list[str] = []
    if folder is not None:
        from asynclm.bench.bfcl.plots import write_plots

        names = [p.name for p in write_plots(result, folder)]
    _write(result, json_path, report, markdown(result, result.get("command"), names))

@bench_app.command("server")
def bench_server(
    model: str = "qwen2.5-coder-0.5b", tasks: int = 3,
    threads: Annotated[int, typer.Option(help="Server threads.")] = 1,
    max_tokens: int = 200,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Sync, Sync-Parallel, Async-Naive and Async-with-resume over a real
    ``python -m llama_cpp.server``: median latency and server-side prefill tokens."""
    from asynclm.bench.server import run_server_bench, server_report

    result = run_server_bench(model, tasks=tasks, n_threads=threads, max_tokens=max_tokens)
    result["command"] = _command()
    _write(result, json_path, report, server_report(result))


@bench_app.command("injection")
def bench_injection(
    model: str = "qwen2.5-coder-1.5b", inject: int = 32, repeats: int = 5,
    threads: Annotated[int | None, typer.Option(help="llama.cpp threads")] = None,
    flash_attn: Annotated[bool, typer.Option(help="llama.cpp flash attention")] = False,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Cost of appending an interrupt vs re-processing the context (in-process engine)."""
    from asynclm.bench.injection import bench_injection as run
    from asynclm.bench.injection import markdown

    result = run(model=model, inject=inject, repeats=repeats, threads=threads,
                 flash_attn=flash_attn)
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))


@bench_app.command("serving")
def bench_serving(
    models: Annotated[str, typer.Option(help="Comma list of bundled models.")] = (
        "qwen2.5-coder-0.5b,qwen2.5-coder-1.5b"),
    sessions: Annotated[str, typer.Option(help="Comma list of concurrent sessions.")] = (
        "1,2,4,8"),
    configs: Annotated[str, typer.Option(
        help="Comma list of batched, batched-fifo, pool-1, pool-2, llama-server, "
        "llama-server-raw.")] = (
        "batched,batched-fifo,pool-1,pool-2,llama-server,llama-server-raw"),
    threads: Annotated[int, typer.Option(help="llama.cpp threads (per instance).")] = 2,
    max_tokens: Annotated[int, typer.Option(help="Per session.")] = 96,
    ceiling: Annotated[bool, typer.Option(help="Measure the decode ceiling.")] = True,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
    report: Annotated[Path | None, typer.Option("--report")] = None,
) -> None:
    """Many concurrent sessions on one model: the batched engine vs one or two LlamaCppEngine
    and llama-server; the decode ceiling (one llama_decode of k sequences) and goals."""
    from asynclm.bench.serving import bench_serving as run
    from asynclm.bench.serving import markdown

    def items(s: str) -> list[str]:
        return [x.strip() for x in s.split(",") if x.strip()]

    err = Console(stderr=True)
    try:
        result = run(models=items(models), sessions=[int(n) for n in items(sessions)],
                     configs=items(configs), threads=threads, max_tokens=max_tokens,
                     ceiling=ceiling, progress=lambda m: err.print(m, highlight=False))
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    result["command"] = _command()
    _write(result, json_path, report, markdown(result, result["command"]))
