"""``asynclm run``: one prompt, one session, your tools (a module's, an MCP server's, the demo
set), its events printed as they happen. The command line is in :mod:`asynclm.cli`; this module
holds what it does, without typer."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from asynclm.bench.baselines import strategy as get_strategy
from asynclm.engines.base import Engine
from asynclm.runtime import Session, SessionConfig, SessionResult, Strategy
from asynclm.runtime import events as ev
from asynclm.runtime.clock import loop_clock
from asynclm.tools import Tool, Toolbox, from_mcp

__all__ = ["open_tools", "run_prompt"]


@asynccontextmanager
async def open_tools(
    modules: Sequence[str] = (), mcp_commands: Sequence[str] = (), *, demo: bool = False,
    timeout: float | None = None,
) -> AsyncIterator[list[Tool]]:
    """The tools of ``modules`` (see :meth:`Toolbox.from_module`), of MCP servers and, with
    ``demo``, asynclm's demo tools. Each of ``mcp_commands`` is the URL of a running server
    (streamable HTTP) or a command line starting one (spoken to over stdio, stopped on exit).
    ``timeout`` applies to the MCP tools."""
    tools: list[Tool] = []
    if demo:
        from asynclm.demo_tools import TRAVEL_TOOLS

        tools += TRAVEL_TOOLS.values()
    for name in modules:
        tools += Toolbox.from_module(name).values()
    async with AsyncExitStack() as stack:
        if mcp_commands:
            try:
                from mcp import Client, StdioServerParameters
            except ImportError:
                raise RuntimeError(
                    "--mcp needs the 'mcp' extra: pip install 'asynclm[mcp]'") from None
        for command in mcp_commands:
            if command.startswith(("http://", "https://")):  # a running server
                server: Any = command
            else:  # a program to start, spoken to over its stdin/stdout
                argv = shlex.split(command)
                if not argv:
                    raise ValueError("an empty --mcp command")
                server = StdioServerParameters(command=argv[0], args=argv[1:])
            client = await stack.enter_async_context(Client(server))
            tools += await from_mcp(client, timeout=timeout)
        yield tools


async def run_prompt(
    engine: Engine, tools: Sequence[Tool], prompt: str, *, strategy: str | Strategy = "async",
    config: SessionConfig | None = None, write: Callable[[str], None] | None = None,
    dialect: str | None = None,
) -> SessionResult:
    """Run ``prompt`` in one session; ``write`` receives the model's text as it is generated
    and a line per call event (started, completed, results injected). ``dialect``: the
    markup the model speaks (a registry name; None: the model's default, see
    :func:`asynclm.runtime.session.default_dialect`)."""
    session = Session(engine, Toolbox(tools), strategy=get_strategy(strategy), config=config,
                      dialect=dialect)
    printer = _Printer(write, loop_clock(asyncio.get_running_loop())()) if write else None
    result: SessionResult | None = None
    async for event in session.stream(prompt):
        if printer is not None:
            printer(event)
        if isinstance(event, ev.Done):
            result = event.result
    assert result is not None  # stream() ends with done or raises
    return result


class _Printer:
    """Text deltas as they come; call events each on a line of their own, timed from ``t0``
    (the run's start, on the loop clock)."""

    def __init__(self, write: Callable[[str], None], t0: float) -> None:
        self.write = write
        self.t0 = t0
        self.at_line_start = True
        self.after_event = False  # the last thing written was an event line

    def line(self, t: float, text: str) -> None:
        self.write(("" if self.at_line_start else "\n") + f"  [{t - self.t0:6.2f}s] {text}\n")
        self.at_line_start = self.after_event = True

    def __call__(self, event: ev.StreamEvent) -> None:
        if isinstance(event, ev.TextDelta):
            text = event.text
            if self.after_event:  # the newline after a call block: the event line has one
                text = text.lstrip("\n")
            if text:
                self.write(text)
                self.at_line_start = text.endswith("\n")
                self.after_event = False
        elif isinstance(event, ev.CallEmitted):
            args = ", ".join(f"{k}={v!r}" for k, v in event.args.items())
            self.line(event.t, f"→ {event.call_id} {event.fn}({args})")
        elif isinstance(event, ev.CallCompleted):
            r = event.record
            took = f" in {r.duration_s:.2f}s" if r.duration_s is not None else ""
            detail = (r.rendered or "") if r.status == "ok" else (r.error or "")
            self.line(event.t, f"← {r.id} {r.status}{took}: {_short(detail)}")
        elif isinstance(event, ev.CallProgress):
            self.line(event.t, f"· {event.call_id} {_short(event.message)}")
        elif isinstance(event, ev.InterruptInjected) and event.call_ids:
            ids = ", ".join(event.call_ids)
            self.line(event.t, f"⇢ injected {ids} ({event.n_tokens} tokens)")
        elif isinstance(event, ev.TrapEvent) and event.waited_s >= 0.01:
            self.line(event.t, f"… waited {event.waited_s:.2f}s for results ({event.reason})")
        elif isinstance(event, ev.Done) and not self.at_line_start:
            self.write("\n")
            self.at_line_start = True


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
