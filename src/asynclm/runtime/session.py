"""A session: asynchronous function calling over one engine. Each :meth:`Session.run` is one
decode loop (:mod:`asynclm.runtime.loop`) with calls running concurrently beside it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from asynclm import models
from asynclm.engines.base import ChatMessage, Engine
from asynclm.prompt import join_parts, system_parts
from asynclm.protocol import DEFAULT_MARKERS, CmlDialect, Dialect, Markers, Segment
from asynclm.protocol.registry import detect_dialect, get_dialect
from asynclm.runtime import events as ev
from asynclm.runtime.builtins import with_builtins
from asynclm.runtime.config import SessionConfig
from asynclm.runtime.control import RunControl
from asynclm.runtime.loop import DecodeLoop
from asynclm.runtime.records import SessionResult, StopReason
from asynclm.runtime.strategies import Strategy, get_strategy
from asynclm.tools import Tool, Toolbox

__all__ = [
    "KnowsChatTemplate", "Session", "SessionConfig", "SessionResult", "StopReason",
    "default_dialect", "resolve_dialect", "run_sync",
]


@runtime_checkable
class KnowsChatTemplate(Protocol):
    """An engine that knows its model's chat template (and file), as
    :class:`~asynclm.engines.llamacpp.LlamaCppEngine` does: a session can then pick the
    model's native dialect by itself (:func:`default_dialect`)."""

    chat_template: str
    model_path: os.PathLike[str]


def default_dialect(engine: Engine | None) -> str:
    """The dialect a session speaks with ``engine`` when none is given: the model registry's
    (:attr:`asynclm.models.ModelSpec.dialect`, a measured choice) for a bundled model's file,
    else the one its chat template suggests
    (:func:`~asynclm.protocol.registry.detect_dialect`), else ``"cml"`` (an engine that does
    not expose its template: HTTP servers, the simulator)."""
    if not isinstance(engine, KnowsChatTemplate):
        return "cml"
    spec = models.spec_for_file(engine.model_path)
    if spec is not None and spec.dialect is not None:
        return spec.dialect
    return detect_dialect(engine.chat_template)


def resolve_dialect(
    engine: Engine | None, dialect: str | Dialect | None = None, *,
    markers: Markers = DEFAULT_MARKERS, framing: str | None = None,
) -> Dialect:
    """The :class:`~asynclm.protocol.Dialect` a session uses: ``dialect`` itself, the
    registry's dialect of that name (``"hermes"``; it reads the engine's chat template where the
    engine exposes one; ``framing``: where it puts results, its default if None), or (None) the
    model's default (:func:`default_dialect`). CML is built with ``markers`` (it has no
    framing). ``engine`` None: a dialect for no engine in particular (no chat template)."""
    if dialect is not None and not isinstance(dialect, str):
        return dialect
    if dialect is None:
        dialect = "cml" if markers != DEFAULT_MARKERS else default_dialect(engine)
    if dialect == "cml":
        return CmlDialect(markers)
    template = engine.chat_template if isinstance(engine, KnowsChatTemplate) else None
    return get_dialect(dialect, chat_template=template, framing=framing)


class Session:
    """Configuration of asynchronous function calling over one engine; :meth:`run` starts one
    decode loop (one conversation). Runs are independent; ``run`` may be called again.

    ``dialect`` is the markup the model reads and writes: a :class:`Dialect`, a name of the
    dialect registry (``"hermes"``, ``"pythonic"``, ``"cml"``...), or None: the model's
    default (:func:`default_dialect`: the model registry's measured choice, else the one the
    engine's chat template suggests, else CML with ``markers``). Its name is in the trace's
    meta (``dialect``) and in :attr:`SessionResult.dialect`.

    ``system``: None (default) is the dialect's protocol section and the tools
    (:func:`asynclm.prompt.system_parts`): the dialect's own text goes to the model as trusted
    markup (its special tokens are tokens), the tools' descriptions as untrusted text. A
    string is the caller's prompt, untrusted as a whole.

    ``tools`` gets the built-in tools the session offers (:mod:`asynclm.runtime.builtins`):
    ``cancel(call_id)`` when one of the tools is ``cancellable``, ``pending()`` as
    ``config.pending`` says; the default system prompt lists them with the others. A tool of
    the application named like an offered built-in is a ``ValueError``."""

    def __init__(
        self,
        engine: Engine,
        tools: Toolbox | Iterable[Tool | Callable[..., Any]] = (),
        *,
        strategy: str | Strategy = "async",
        system: str | None = None,
        config: SessionConfig | None = None,
        markers: Markers = DEFAULT_MARKERS,
        trace_meta: dict[str, Any] | None = None,
        dialect: str | Dialect | None = None,
    ) -> None:
        self.engine = engine
        self.strategy = get_strategy(strategy)
        self.config = config or SessionConfig()
        self.tools = with_builtins(
            tools if isinstance(tools, Toolbox) else Toolbox(list(tools)), self.config)
        self.dialect: Dialect = resolve_dialect(engine, dialect, markers=markers)
        self.markers = getattr(self.dialect, "markers", markers)  # CML's, for older callers
        self.system_parts: tuple[Segment, ...] = (
            system_parts(self.tools, dialect=self.dialect) if system is None
            else (Segment(system, trusted=False),))
        """The system prompt as trusted markup and untrusted text (see ``system``)."""
        self.system = "".join(p.text for p in self.system_parts)
        self.trace_meta = {"dialect": self.dialect.name, **(trace_meta or {})}

    def system_message(self, extra: str = "") -> ChatMessage:
        """The system message of :meth:`messages`, with ``extra`` (untrusted: an item's own
        system text, say) after a blank line; its trusted parts stay trusted."""
        parts = join_parts([*self.system_parts, Segment(f"\n\n{extra}" if extra else "", False)])
        if not any(p.trusted for p in parts):
            return ChatMessage("system", "".join(p.text for p in parts))
        return ChatMessage.of("system", parts)

    def messages(self, prompt: str | Sequence[ChatMessage]) -> list[ChatMessage]:
        """The chat prompt of a run: for a string, :meth:`system_message` and the user's
        message; a sequence of messages is used as is."""
        if isinstance(prompt, str):
            return [self.system_message(), ChatMessage("user", prompt)]
        return list(prompt)

    async def warm_up(self, prompt: str | Sequence[ChatMessage]) -> int:
        """Process ``prompt`` now, so that a following :meth:`run` of it starts from the cache
        (engines with ``capabilities.prefix_cache``); used to compare strategies on equal terms.
        Returns the number of prompt tokens."""
        tokens = self.engine.tokenize_chat(self.messages(prompt))
        await self.engine.prefill(tokens)
        return len(tokens)

    async def run(
        self,
        prompt: str | Sequence[ChatMessage],
        *,
        on_event: Callable[[ev.StreamEvent], None] | None = None,
        control: RunControl | None = None,
    ) -> SessionResult:
        """Run one conversation turn to its end. Never raises for tool or model misbehaviour
        (those become error interrupts); engine failures and cancellation propagate, after
        every call has reached an outcome. ``control`` steers the run from outside (messages
        injected as interrupts, call cancellation); see :class:`RunControl`.

        Liveness: returns (or, cancelled, raises) within ``config.deadline_s`` plus
        ``config.cancel_grace_s`` whatever the tools do; a tool that ignores its cancellation
        is abandoned and listed in ``SessionResult.abandoned`` (see :class:`SessionConfig`)."""
        loop = DecodeLoop(
            engine=self.engine, tools=self.tools, strategy=self.strategy, config=self.config,
            dialect=self.dialect, messages=self.messages(prompt), on_event=on_event,
            control=control, trace_meta=self.trace_meta)
        return await loop.execute()

    async def stream(
        self, prompt: str | Sequence[ChatMessage], *, control: RunControl | None = None,
    ) -> AsyncIterator[ev.StreamEvent]:
        """Events as they happen, ending with ``done``. Closing the iterator early cancels the
        run (its calls end ``cancelled``)."""
        queue: asyncio.Queue[ev.StreamEvent | BaseException] = asyncio.Queue()

        async def produce() -> None:
            try:
                await self.run(prompt, on_event=queue.put_nowait, control=control)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
                queue.put_nowait(exc)
            else:
                queue.put_nowait(_END)

        # The run is a task of a group scoped to this generator: it never outlives the
        # iteration (closing the iterator early cancels it and waits for it to end).
        error: BaseException | None = None
        async with asyncio.TaskGroup() as group:
            task = group.create_task(produce(), name="asynclm-stream-run")
            try:
                while True:
                    item = await queue.get()
                    if item is _END:
                        break
                    if isinstance(item, BaseException):
                        error = item  # raised below, as itself (not in an exception group)
                        break
                    yield item
            except GeneratorExit:
                pass  # closed early: the group cancels the run and waits for it
            finally:
                task.cancel()
        if error is not None:
            raise error


class _EndMarker(Exception):
    pass


_END = _EndMarker()



def run_sync(
    session: Session,
    prompt: str | Sequence[ChatMessage],
) -> SessionResult:
    """Run a session from synchronous code (virtual time for simulated engines).

    Refuses to run inside a running event loop: use ``await session.run(...)`` there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_sync() cannot be called from a running event loop; use `await session.run(...)`"
        )
    if session.engine.capabilities.virtual_time:
        from asynclm.runtime.clock import run_virtual

        return run_virtual(session.run(prompt))
    return asyncio.run(session.run(prompt))
