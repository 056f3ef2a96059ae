"""Tools that the *client* runs (OpenAI Realtime style), shared by the native API and
``/v1/responses``.

A client tool is a :class:`Tool` whose function registers a future under its call id, tells
the server (``on_wait``) and awaits it; whoever receives the client's answer resolves the
future. Everything else is an ordinary call: its arguments are validated against the declared
schema before it starts, the model keeps generating meanwhile, the tool's timeout applies
(the call ends ``timeout`` and the model is told), and a cancelled session cancels it.

:class:`ClientCalls` is the native API's side (``POST /sessions/{id}/calls/{call_id}/result``):
it knows every call of its session, and it takes one answer per client call, only while that
call waits; any other post raises :class:`CallConflict` (a 409) and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from asynclm.errors import AsyncLMError, SessionError
from asynclm.runtime import events as ev
from asynclm.tools import Tool, ToolContext

DEFAULT_TIMEOUT_S = 60.0
"""A client tool's timeout when its spec gives no ``timeout_s`` (seconds)."""
MAX_TIMEOUT_S = 600.0
"""The largest ``timeout_s`` a client tool may declare (seconds)."""

_CTX = "_asynclm_ctx"

OnWait = Callable[[str, str, dict[str, Any]], None]
"""``on_wait(call_id, fn, arguments)``: the call now waits for the client's answer (its
future is registered: an answer may come at once)."""


class ClientToolError(AsyncLMError, RuntimeError):
    """The client reported that its tool failed (the call ends ``error`` with its message)."""


@dataclass(frozen=True, slots=True)
class ClientFailure:
    """A future's result meaning: the client answered with an error. (A result, not an
    exception set on the future: a call that has already ended never retrieves it.)"""

    message: str


def client_tool(
    spec: Mapping[str, Any], waiting: MutableMapping[str, asyncio.Future[Any]], *,
    on_wait: OnWait | None = None, timeout: float | None = None,
) -> Tool:
    """The tool for the OpenAI function ``spec`` (name, description and parameter schema, which
    validates the model's arguments) whose calls the client runs: each call registers a
    future in ``waiting`` under its call id, calls ``on_wait`` and returns the future's result
    (a :class:`ClientFailure` raises :class:`ClientToolError`). The future leaves ``waiting``
    when the call ends, however it ends. Raises ``ValueError`` for a malformed spec."""
    spec_tool = Tool.from_openai(spec)  # name, schema and validator from the spec
    name = spec_tool.name

    async def call(ctx: ToolContext, /, **arguments: Any) -> Any:
        fut = waiting.get(ctx.call_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            waiting[ctx.call_id] = fut
        try:
            if on_wait is not None:
                on_wait(ctx.call_id, name, arguments)
            answer = await fut
        finally:
            waiting.pop(ctx.call_id, None)
        if isinstance(answer, ClientFailure):
            raise ClientToolError(answer.message)
        return answer

    return Tool(name=name, description=spec_tool.description, parameters=spec_tool.parameters,
                validator=spec_tool._validator, fn=call, is_async=True, ctx_param=_CTX,
                positional_only=(_CTX,), timeout=timeout)


class UnknownCall(SessionError, LookupError):
    """No call with this id in the session (a 404)."""


class CallConflict(SessionError, RuntimeError):
    """The call cannot take an answer now (a 409): it runs on the server, it was answered
    already, it has ended, or it has not started yet."""


_NO_OUTPUT: Any = object()


class ClientCalls:
    """The client-run calls of one native session. :meth:`observe` sees every runtime event
    (which calls exist, which have ended); :meth:`answer` delivers the client's answer."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.on_wait: OnWait | None = None
        self._tools: dict[str, Tool] = {}
        self._fns: dict[str, str] = {}  # call id -> tool name, every call of the session
        self._ended: dict[str, str] = {}  # call id -> status, client calls only
        self._answered: set[str] = set()

    def add(self, spec: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT_S) -> Tool:
        """Declare a client tool; its :class:`Tool` (raises ``ValueError`` for a malformed
        spec or a name declared twice)."""
        t = client_tool(spec, self.waiting, on_wait=self._on_wait, timeout=timeout)
        if t.name in self._tools:
            raise ValueError(f"client tool {t.name!r} declared twice")
        self._tools[t.name] = t
        return t

    @property
    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def runs_on_client(self, fn: str) -> bool:
        return fn in self._tools

    def timeout_of(self, fn: str) -> float | None:
        t = self._tools.get(fn)
        return t.timeout if t is not None else None

    def observe(self, event: ev.StreamEvent) -> None:
        if isinstance(event, ev.CallEmitted):
            self._fns[event.call_id] = event.fn
        elif isinstance(event, ev.CallCompleted) and event.record.fn in self._tools:
            self._ended[event.record.id] = event.record.status

    def answer(self, call_id: str, *, output: Any = _NO_OUTPUT, error: str | None = None,
               ) -> None:
        """Deliver the client's ``output`` (any JSON value) or ``error`` (a message) to the
        waiting call ``call_id``. Raises :class:`UnknownCall` or :class:`CallConflict` (and
        then changes nothing)."""
        fn = self._fns.get(call_id)
        if fn is None:
            raise UnknownCall(f"no call {call_id!r} in this session")
        if fn not in self._tools:
            raise CallConflict(f"call {call_id!r} ({fn}) runs on the server, not the client")
        if call_id in self._answered:
            raise CallConflict(f"call {call_id!r} was answered already")
        status = self._ended.get(call_id)
        if status is not None:
            raise CallConflict(f"call {call_id!r} has ended ({status})")
        fut = self.waiting.get(call_id)
        if fut is None or fut.done():
            raise CallConflict(f"call {call_id!r} is not waiting for an answer (it has not "
                               "started: wait for its call.started event)")
        self._answered.add(call_id)
        fut.set_result(ClientFailure(error) if error is not None else output)

    def _on_wait(self, call_id: str, fn: str, arguments: dict[str, Any]) -> None:
        if self.on_wait is not None:
            self.on_wait(call_id, fn, arguments)


def json_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Validated arguments as plain JSON values (anything else as its text)."""
    out: dict[str, Any] = json.loads(json.dumps(dict(arguments), default=str))
    return out
