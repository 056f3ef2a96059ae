"""Calls whose tool starts while the model is still writing them (``@tool(streaming_args=...)``):
the argument stream the tool reads, and the early call the executor holds until the call is
complete (see :meth:`~asynclm.runtime.executor.Executor.start_early`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asynclm.tools import Tool, ToolContext

__all__ = ["ArgStream", "EarlyCall", "invoke_streaming"]


class ArgStream:
    """The arguments of one call as the model writes them: what a tool declared with
    ``streaming_args`` reads (``@tool(streaming_args=run)``, ``async def run(stream, ctx)``).

    - ``async for name, value in stream``: each argument once it is complete, in the order
      written; arguments the model did not write (defaults) come when the call is complete.
    - ``await stream.value(name)``: one argument, once complete (``KeyError`` if the call ends
      without it).
    - ``async for line in stream.lines(name)``: a string argument line by line, each line as
      soon as its newline is written, then the last line when the string closes.
    - ``await stream.final()``: the call's validated arguments, once the call is complete.

    Values are as written (parsed, never evaluated); the validated ones (defaults filled,
    values coerced) are those of :meth:`final`. A value that references another call's result
    (``$id``) stops the early delivery: it and what follows come once the references are
    resolved. If the model abandons the call or writes it malformed or with invalid
    arguments, the tool is cancelled (its task gets ``CancelledError``; its ``ToolContext`` is
    marked cancelled) and the call ends with that outcome, exactly once.
    """

    def __init__(self, fn: str) -> None:
        self.fn = fn
        self._values: dict[str, Any] = {}
        self._lines: dict[str, list[str]] = {}
        self._final: dict[str, Any] | None = None
        self._failed: str | None = None
        self._changed = asyncio.Event()

    @property
    def done(self) -> bool:
        """The call is complete (or abandoned): no more arguments will come."""
        return self._final is not None or self._failed is not None

    @property
    def written(self) -> dict[str, Any]:
        """The arguments complete so far, as written."""
        return dict(self._values)

    def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[tuple[str, Any]]:
        sent = 0
        while True:
            items = list(self._values.items())
            for item in items[sent:]:
                yield item
            sent = len(items)
            if self.done and sent == len(self._values):
                return
            await self._wait()

    async def value(self, name: str) -> Any:
        while name not in self._values:
            if self.done:
                raise KeyError(name)
            await self._wait()
        return self._values[name]

    async def lines(self, name: str) -> AsyncIterator[str]:
        sent = 0
        while True:
            got = self._lines.get(name, [])
            while sent < len(got):  # lines may come while the reader handles one
                sent += 1
                yield got[sent - 1]
            if name in self._values or self.done:
                value = self._values.get(name)
                if isinstance(value, str):
                    parts = value.split("\n")
                    if not parts[-1]:
                        parts.pop()
                    for line in parts[sent:]:
                        yield line
                return
            await self._wait()

    async def final(self) -> dict[str, Any]:
        while self._final is None:
            if self._failed is not None:
                raise RuntimeError(self._failed)
            await self._wait()
        return dict(self._final)

    async def _wait(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the runtime's side ----------------------------------------------------------------
    def _feed(self, name: str, value: Any) -> None:
        if not self.done and name not in self._values:
            self._values[name] = value
            self._wake()

    def _feed_line(self, name: str, line: str) -> None:
        if not self.done and name not in self._values:
            self._lines.setdefault(name, []).append(line)
            self._wake()

    def _finish(self, final: dict[str, Any]) -> None:
        if self.done:
            return
        for name, value in final.items():
            self._values.setdefault(name, value)
        self._final = dict(final)
        self._wake()

    def _fail(self, reason: str) -> None:
        if not self.done:
            self._failed = reason
            self._wake()


class EarlyCall:
    """A call whose tool (``streaming_args``) started while the model was still writing it:
    made by :meth:`Executor.start_early`, fed by :meth:`Executor.feed_early`, then bound to
    the call once it is complete (:meth:`Executor.bind_early`) or abandoned
    (:meth:`Executor.abandon_early`)."""

    __slots__ = ("ctx", "fn", "halted", "params", "started_at", "stream", "task", "tool")

    def __init__(self, tool: Tool, ctx: ToolContext, started_at: float) -> None:
        self.tool, self.fn, self.ctx, self.started_at = tool, tool.name, ctx, started_at
        self.params = tool.param_names
        self.stream = ArgStream(tool.name)
        self.halted = False  # a reference was written: the rest comes when it is resolved
        self.task: asyncio.Task[tuple[bool, Any]] | None = None


async def invoke_streaming(
    tool: Tool, stream: ArgStream, ctx: ToolContext,
) -> tuple[bool, Any]:
    """The own task of a tool started while its call is written: as the executor's own invoke, with its
    ``streaming_args`` function reading ``stream``."""
    assert tool.streaming_args is not None
    try:
        return True, await tool.streaming_args(stream, ctx)
    except asyncio.CancelledError:
        ctx.cancel()
        raise
    except BaseException as exc:  # noqa: BLE001 - becomes the call's error outcome
        return False, exc
