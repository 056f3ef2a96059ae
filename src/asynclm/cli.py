"""The ``asynclm`` command line (extra ``cli``: typer + rich)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

try:
    import typer
    from rich.console import Console
except ImportError:  # pragma: no cover - exercised only without the extra
    typer = None  # type: ignore[assignment]

if typer is not None:
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="Asynchronous LLM function calling.")
    bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (JSON + Markdown results).")
    models_app = typer.Typer(no_args_is_help=True, help="Bundled models.")
    app.add_typer(bench_app, name="bench")
    app.add_typer(models_app, name="models")
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

    @app.command()
    def demo(
        out: Annotated[Path, typer.Option(help="Where traces and PNGs go.")] = Path("asynclm-demo"),
        engine: Annotated[str, typer.Option(help="sim (simulator)")] = "sim",
    ) -> None:
        """Run a multi-tool task sync then async; print answers, timelines and the speedup."""
        from asynclm.demo import report, run_sim_demo, write_outputs

        if engine != "sim":
            raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
        console.print("[bold]asynclm demo[/] — simulator (virtual time, ~37 tokens/s)")
        run = run_sim_demo()
        console.print(report(run), highlight=False)
        for p in write_outputs(run, out):
            console.print(f"wrote {p}")

    @bench_app.command("synthetic")
    def bench_synthetic(
        tasks: int = 200, calls: int = 4, tpot_ms: float = 5.0, ttft_ms: float = 0.0,
        seed: int = 0,
        json_path: Annotated[Path | None, typer.Option("--json")] = None,
        report: Annotated[Path | None, typer.Option("--report")] = None,
    ) -> None:
        """Paper's timing setup on randomized independent calls (simulator, virtual time)."""
        from asynclm.bench.synthetic import bench_synthetic as run, markdown

        result = run(tasks=tasks, calls=calls, tpot_ms=tpot_ms, ttft_ms=ttft_ms, seed=seed)
        result["command"] = _command()
        _write(result, json_path, report, markdown(result, result["command"]))

    @bench_app.command("overhead")
    def bench_overhead(
        sessions: int = 50, calls: int = 20,
        json_path: Annotated[Path | None, typer.Option("--json")] = None,
        report: Annotated[Path | None, typer.Option("--report")] = None,
    ) -> None:
        """Runtime overhead per call, parser throughput and linearity (real time)."""
        from asynclm.bench.overhead import bench_overhead as run, markdown

        result = run(sessions=sessions, calls=calls)
        result["command"] = _command()
        _write(result, json_path, report, markdown(result, result["command"]))

    @app.command()
    def trace(
        file: Path,
        png: Annotated[Path | None, typer.Option(help="Gantt PNG to write.")] = None,
    ) -> None:
        """Render a saved trace: breakdown, text timeline, and optionally a Gantt PNG."""
        from asynclm.trace import Trace, text_timeline

        t = Trace.load(file)
        console.print(str(t.breakdown()), highlight=False)
        console.print(text_timeline(t, width=console.width - 2 if console.width else 78),
                      highlight=False)
        if png:
            t.gantt(png)
            console.print(f"wrote {png}")


def main() -> None:
    if typer is None:
        sys.exit("the asynclm command needs the 'cli' extra: pip install 'asynclm[cli]'")
    app()


if __name__ == "__main__":
    main()
