"""Live sessions of the server: each has an append-only event log that any number of
followers read (no event is lost or reordered: a follower resumes by index), a
:class:`RunControl`, and one task in the registry's task group (no task outlives the server,
and no session task outlives its session).

A session on a real model takes a :class:`Slot` of its model when it is created (the
registry's ``slots`` function, :meth:`asynclm.server.engines.EngineHub.reserve`): it stays
``queued``, with its ``queue_position`` in its info, until the slot is held, and gives it back
when it ends, however it ends (cancelled in the queue included). A full queue refuses the
creation (:class:`QueueFull`)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

from asynclm.agents import AgentDirectory
from asynclm.engines.base import Engine
from asynclm.errors import SessionError
from asynclm.runtime import RunControl, Session
from asynclm.runtime import events as ev
from asynclm.runtime.clock import now
from asynclm.runtime.events import StreamEvent
from asynclm.runtime.messages import Message
from asynclm.server.client_tools import ClientCalls, json_arguments
from asynclm.server.wire import encode

Status = Literal["queued", "running", "done", "cancelled", "failed"]
_LIVE = ("queued", "running")


class Slot(Protocol):
    """A session's place on its model (:class:`asynclm.server.engines.Slot`)."""

    @property
    def position(self) -> int | None:
        """Its place in the queue (1: next), ``None`` once held."""
        ...

    async def wait(self) -> None:
        """Return once the slot is held."""
        ...

    def release(self) -> None:
        """Give it back (idempotent)."""
        ...


class LiveSession:
    """One session's state as the server sees it."""

    def __init__(
        self, id: str, *, prompt: str, engine: str, model: str | None, strategy: str,
        tools: str, agent: str | None, control: RunControl, max_events: int,
        client: ClientCalls | None = None, slot: Slot | None = None,
    ) -> None:
        self.id, self.prompt, self.engine, self.model = id, prompt, engine, model
        self.strategy, self.tools, self.agent, self.control = strategy, tools, agent, control
        self.client = client if client is not None else ClientCalls()
        self.client.on_wait = self._client_call_started
        self.created_at = time.time()
        self.t0 = now()
        self.status: Status = "queued"
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.n_messages = 0
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.slot = slot
        self._max_events = max_events
        self._wake = asyncio.Event()
        self._closed = False
        self._over_limit = False

    @property
    def live(self) -> bool:
        return self.status in _LIVE

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "engine": self.engine, "model": self.model,
            "strategy": self.strategy, "tools": self.tools, "agent": self.agent,
            "prompt": self.prompt, "created_at": self.created_at, "n_events": len(self.events),
            "stop_reason": self.stop_reason, "error": self.error,
            "queue_position": self.queue_position,
        }

    @property
    def queue_position(self) -> int | None:
        """1 when this session is the next to get a slot of its model, 2 after it...;
        ``None`` when it is not waiting for one."""
        return self.slot.position if self.slot is not None and self.live else None

    def publish(self, type: str, **data: Any) -> None:
        """Append an event (``seq`` = its index) and wake the followers. Past the event limit
        the session is cancelled as too large, once; its closing events still go in."""
        if self._closed:
            return
        if len(self.events) >= self._max_events and not type.startswith("session."):
            if not self._over_limit:
                self._over_limit = True
                self.error = f"session too large: more than {self._max_events} events"
                if self.task is not None:
                    self.task.cancel()
            return
        event = {"seq": len(self.events), "type": type,
                 "t": round(now() - self.t0, 6), "mono": time.monotonic(), **data}
        event["seq"] = len(self.events)  # the log's index: an event's own data never replaces it
        self.events.append(event)
        self._wake.set()

    def on_runtime_event(self, event: StreamEvent) -> None:
        self.client.observe(event)
        if isinstance(event, ev.CallStarted) and self.client.runs_on_client(event.fn):
            return  # published when the call waits for the client, with its arguments
        data = encode(event, self.t0, client_fns=self.client.names)
        kind = data.pop("type")
        data.pop("t")
        self.publish(kind, **data)

    def _client_call_started(self, call_id: str, fn: str, arguments: dict[str, Any]) -> None:
        """A client-run call's ``call.started``: published once its answer can be posted (the
        runtime's own event comes a moment earlier and is not published), with the validated
        arguments and the timeout."""
        self.publish("call.started", call_id=call_id, fn=fn, runs_on="client",
                     arguments=json_arguments(arguments), timeout_s=self.client.timeout_of(fn))

    def close(self) -> None:
        """The session is over: publish ``session.end`` (always the last event)."""
        if self._closed:
            return
        self.publish("session.end", status=self.status, stop_reason=self.stop_reason,
                     error=self.error)
        self._closed = True
        self._wake.set()

    async def follow(
        self, start: int = 0, *, keepalive_s: float = 15.0,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Events from index ``start`` on, in batches of all that are available, until
        ``session.end``; an empty batch is a keep-alive tick after ``keepalive_s`` without
        events."""
        i = max(0, start)
        while True:
            if i < len(self.events):
                batch = self.events[i:]
                i += len(batch)
                yield batch
                continue
            if self._closed:
                return
            wake = self._wake
            wake.clear()
            if i < len(self.events) or self._closed:
                continue
            try:
                async with asyncio.timeout(keepalive_s):  # no extra task per wait
                    await wake.wait()
            except TimeoutError:
                yield []


class TooManySessions(SessionError, RuntimeError):
    """The server runs as many sessions as it may; try again later (the routes answer 429
    with ``Retry-After: retry_after_s``)."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(TooManySessions):
    """Every slot of the model is taken and its queue is full; try again later."""


class SessionRegistry:
    """Creates, runs, lists and cancels sessions. Use as ``async with`` (the server's
    lifespan): leaving it cancels every live session and waits for their tasks."""

    def __init__(
        self, *, max_live: int, max_kept: int, max_events: int,
        slots: Callable[[str, str | None], Slot | None] | None = None,
    ) -> None:
        """``slots(engine, model)``: the slot a new session on ``model`` must hold to run
        (``None``: it needs none); it raises :class:`QueueFull` to refuse the session."""
        self._max_live, self._max_kept, self._max_events = max_live, max_kept, max_events
        self._slots = slots
        self._sessions: dict[str, LiveSession] = {}
        self._group: asyncio.TaskGroup | None = None
        self._ids = itertools.count(1)
        self.directory = AgentDirectory()

    async def __aenter__(self) -> SessionRegistry:
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for s in self._sessions.values():
            if s.task is not None and not s.task.done():
                s.task.cancel()
        group, self._group = self._group, None
        assert group is not None
        await group.__aexit__(None, None, None)

    def get(self, sid: str) -> LiveSession | None:
        return self._sessions.get(sid)

    def list(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def n_live(self) -> int:
        return sum(1 for s in self._sessions.values() if s.live)

    def forget(self, sid: str) -> bool:
        s = self._sessions.get(sid)
        if s is None or s.live:
            return False
        del self._sessions[sid]
        return True

    def start(
        self, *, prompt: str, engine: str, model: str | None, strategy: str, tools: str,
        agent: str | None, make_session: Callable[[Engine], Session],
        open_engine: Callable[[], AbstractAsyncContextManager[Engine]],
        client: ClientCalls | None = None,
    ) -> LiveSession:
        """Register a session and start its task (``client``: its client-run tools, if any).
        Raises :class:`TooManySessions` at the live limit, :class:`QueueFull` when its model's
        queue is full and ``ValueError`` for an agent name already live."""
        if self._group is None:
            raise RuntimeError("registry is not running")
        if self.n_live() >= self._max_live:
            raise TooManySessions(f"{self._max_live} sessions are live; try again later")
        if agent is not None and agent in self.directory:
            raise ValueError(f"an agent named {agent!r} is already live")
        slot = self._slots(engine, model) if self._slots is not None else None
        try:
            self._evict()
            sid = f"s{next(self._ids)}-{secrets.token_hex(3)}"
            ls: LiveSession
            control = RunControl(
                wait_on_trap=agent is not None,
                on_undelivered=lambda left: _undelivered(ls, left),
            )
            ls = LiveSession(sid, prompt=prompt, engine=engine, model=model, strategy=strategy,
                             tools=tools, agent=agent, control=control,
                             max_events=self._max_events, client=client, slot=slot)
            if agent is not None:
                self.directory.register(agent, control)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        self._sessions[sid] = ls
        ls.publish("session.queued", prompt=prompt, engine=engine, model=model,
                   strategy=strategy, tools=tools, agent=agent,
                   queue_position=ls.queue_position)
        ls.task = self._group.create_task(self._run(ls, make_session, open_engine),
                                          name=f"asynclm-session-{sid}")
        # a task cancelled before its first step never runs _run's cleanup: do it here
        ls.task.add_done_callback(lambda _: self._end(ls))
        return ls

    def cancel(self, sid: str) -> bool:
        s = self._sessions.get(sid)
        if s is None or not s.live or s.task is None:
            return False
        s.task.cancel()
        return True

    def _evict(self) -> None:
        done = [s for s in self._sessions.values() if not s.live]
        for s in done[: max(0, len(self._sessions) - self._max_kept + 1)]:
            del self._sessions[s.id]

    async def _run(
        self, ls: LiveSession, make_session: Callable[[Engine], Session],
        open_engine: Callable[[], AbstractAsyncContextManager[Engine]],
    ) -> None:
        try:
            if ls.slot is not None:
                await ls.slot.wait()  # queued: its place is visible and it can be cancelled
            async with open_engine() as engine:
                session = make_session(engine)
                ls.status = "running"
                ls.publish("session.started")
                result = await session.run(ls.prompt, on_event=ls.on_runtime_event,
                                           control=ls.control)
                ls.status, ls.stop_reason = "done", result.stop_reason
        except asyncio.CancelledError:
            ls.status = "failed" if ls.error else "cancelled"
            # the session is over; its task ends here without taking the registry down
        except Exception as exc:  # noqa: BLE001 - engine failure: the session fails, not the server
            ls.status, ls.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            self._end(ls)

    def _end(self, ls: LiveSession) -> None:
        """The session's task is over: its slot back, its control detached, its agent name
        free, ``session.end`` published. Idempotent (``_run``'s cleanup, then the task's done
        callback, which alone runs for a task cancelled before it started)."""
        if ls.slot is not None:
            ls.slot.release()
        if ls.live:
            ls.status = "failed" if ls.error else "cancelled"
        if not ls.control.ended:  # cancelled before the run began
            ls.control._detach()
        if ls.agent is not None:
            self.directory.unregister(ls.agent, ls.control)
        ls.close()


def _undelivered(ls: LiveSession, left: list[Message]) -> None:
    for m in left:
        ls.publish("message.undelivered", sender=m.sender, text=m.text)

