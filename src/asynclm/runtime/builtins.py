"""Built-in tools: what the model can do about its own calls, in every dialect.

- ``cancel(call_id)`` cancels a running call the model started, if its tool is
  ``cancellable`` (``@tool(cancellable=True)``). It is offered when at least one of the
  session's tools is. The cancellation is the one the application (``RunControl.cancel_call``)
  and the server (``POST /sessions/{id}/calls/{call_id}/cancel``) use, :meth:`Executor.cancel
  <asynclm.runtime.executor.Executor.cancel>`: an async tool is cancelled (and abandoned past
  ``cancel_grace_s``), a sync tool's thread is abandoned (told through
  ``ToolContext.cancelled()``), a :func:`~asynclm.tools.run_process` program's process group is
  killed, an MCP request is cancelled on the server (``notifications/cancelled``). The cancelled
  call's interrupt says ``cancelled``; the ``cancel`` call's own result says what happened
  (``"c1 (search) cancelled"``). Cancelling an unknown call, one that already ended, one whose
  tool is not cancellable, a built-in call or the ``cancel`` call itself is an error *result*
  of the ``cancel`` call (error type ``CannotCancel``); both calls end exactly once.
- ``pending()`` lists the calls without an outcome yet: id, tool, state (``running``,
  ``waiting`` for its inputs or its turn, ``deferred`` until a trap), seconds since it started
  (or was written) and its last progress message. When it is offered, and the alternative (a
  note at each trap), is :attr:`SessionConfig.pending <asynclm.runtime.config.SessionConfig>`.

They are :class:`~asynclm.tools.Tool` objects like any other: the session adds them to its
toolbox (:func:`with_builtins`; a tool of the application with a reserved name is refused), the
system prompt lists them, the dialect writes their calls and results, the executor dispatches
their calls (references, ordering, exactly-once outcome). Only the running differs: a built-in's
call runs on the event loop, in its call's task, with access to the executor
(:func:`builtin_of` gives the implementation), and takes no time of its own (``cancel`` waits
for the cancelled call to end, which the executor bounds by ``cancel_grace_s``).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from asynclm.errors import CannotCancel
from asynclm.runtime.config import SessionConfig
from asynclm.runtime.records import CallRecord
from asynclm.tools import Tool, Toolbox

__all__ = [
    "RESERVED", "CannotCancel", "PendingCall", "builtin_of", "is_builtin", "pending_note",
    "with_builtins",
]

CANCEL, PENDING = "cancel", "pending"
RESERVED = (CANCEL, PENDING)
"""Names of the built-in tools: a session that offers one refuses a tool of its own by that
name (``ValueError``)."""


@dataclass(frozen=True, slots=True)
class PendingCall:
    """A call without an outcome yet, as :func:`pending` shows it. ``elapsed_s``: since it
    started (``running``), else since the model wrote it; ``progress``: its tool's last
    ``ToolContext.progress`` message, if any."""

    id: str
    tool: str
    state: Literal["running", "waiting", "deferred"]
    elapsed_s: float
    progress: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "tool": self.tool}
        if self.state != "running":
            out["state"] = self.state
        out["elapsed_s"] = round(self.elapsed_s, 1)
        if self.progress is not None:
            out["progress"] = self.progress
        return out


class Host(Protocol):
    """What a built-in needs from the executor that runs it."""

    def cancel(self, call_id: str, reason: str = ...) -> bool: ...

    def lookup(self, call_id: str) -> tuple[str, Tool | None, CallRecord | None] | None: ...

    async def wait(self, call_id: str) -> CallRecord: ...

    def abandoned(self) -> tuple[str, ...]: ...

    def pending_calls(self, *, exclude_builtins: bool = True) -> tuple[PendingCall, ...]: ...


Builtin = Callable[[Host, str, dict[str, Any]], Awaitable[Any]]
"""``run(host, own_call_id, validated_args)``: a built-in's implementation."""


# -- the tools as the model sees them (their functions only give the schema) -----------------
def cancel(call_id: str) -> str:
    """Cancel a call you started that is still running (its result will then be `cancelled`).

    Args:
        call_id: the id of the call to cancel.
    """
    raise RuntimeError("cancel() is a built-in: it runs only inside a session")


def pending() -> list[dict[str, Any]]:
    """List your calls that have no result yet: id, tool, seconds elapsed, last progress."""
    raise RuntimeError("pending() is a built-in: it runs only inside a session")


async def _cancel(host: Host, own_id: str, args: dict[str, Any]) -> str:
    target = str(args["call_id"])
    if target == own_id:
        raise CannotCancel(f"{own_id} is this cancel call itself: a call cannot cancel itself")
    found = host.lookup(target)
    if found is None:
        running = ", ".join(c.id for c in host.pending_calls()) or "none"
        raise CannotCancel(f"no call has id {target!r} (calls pending: {running})")
    fn, tool, rec = found
    if tool is not None and is_builtin(tool):
        raise CannotCancel(f"{target} is a {fn}() call: built-in calls cannot be cancelled")
    if rec is not None:
        raise CannotCancel(f"{target} ({fn}) already ended ({rec.status}): nothing to cancel")
    if tool is None or not tool.cancellable:
        raise CannotCancel(f"{target} ({fn}) cannot be cancelled: {fn} is not a cancellable tool")
    if not host.cancel(target, f"cancelled by the model ({own_id})"):  # ended meanwhile
        rec = await host.wait(target)
        raise CannotCancel(f"{target} ({fn}) already ended ({rec.status}): nothing to cancel")
    rec = await host.wait(target)  # the executor ends it within cancel_grace_s
    if rec.status != "cancelled":
        return f"{target} ({fn}) ended {rec.status} before it could be cancelled"
    if target in host.abandoned():
        return (f"{target} ({fn}) cancelled; its tool did not stop in time and was abandoned "
                f"(anything it returns later is discarded)")
    return f"{target} ({fn}) cancelled"


async def _pending(host: Host, own_id: str, args: dict[str, Any]) -> Any:
    calls = host.pending_calls()
    if not calls:
        return "no call is pending"
    return [c.as_dict() for c in calls]


_IMPLEMENTATIONS: dict[Callable[..., Any], Builtin] = {cancel: _cancel, pending: _pending}

_FRESH = itertools.count()


def _never_the_same(args: Any) -> tuple[str, int]:
    """The ordering key of a built-in call: a new one each time, so that calls never wait for
    each other and are never taken for a repeat of an earlier identical call (answered with its
    result without running: ``SessionConfig.repeated_calls``): their answer changes with time."""
    return ("asynclm-builtin", next(_FRESH))


_CANCEL_TOOL = Tool.from_function(cancel, order_by=_never_the_same)
_PENDING_TOOL = Tool.from_function(pending, order_by=_never_the_same)


def builtin_of(tool: Tool) -> Builtin | None:
    """The implementation of a built-in tool (None for any other tool)."""
    return _IMPLEMENTATIONS.get(tool.fn) if tool.fn is not None else None


def is_builtin(tool: Tool) -> bool:
    return builtin_of(tool) is not None


def with_builtins(tools: Toolbox, config: SessionConfig) -> Toolbox:
    """``tools`` with the built-ins the session offers (see the module doc and
    ``SessionConfig.pending``), after the application's tools; built-ins already in ``tools``
    (a toolbox taken from another session) are replaced. Raises ``ValueError`` if one of the
    application's tools has the name of a built-in that is offered."""
    own = [t for t in tools.values() if not is_builtin(t)]
    cancellable = [t.name for t in own if t.cancellable]
    offered: list[Tool] = []
    if cancellable:
        offered.append(_CANCEL_TOOL.replace(description=(
            f"{_CANCEL_TOOL.description} Only calls of these tools can be cancelled: "
            f"{', '.join(cancellable)}.")))
    if config.pending == "tool" or (config.pending == "auto" and cancellable):
        offered.append(_PENDING_TOOL)
    clash = sorted({t.name for t in own} & {t.name for t in offered})
    if clash:
        raise ValueError(
            f"tool name {', '.join(map(repr, clash))} is reserved for a built-in tool of the "
            f"session (asynclm.runtime.builtins): rename the tool"
            + (" or set SessionConfig(pending='off')" if clash == [PENDING] else ""))
    if not offered and len(own) == len(tools):
        return tools
    return Toolbox([*own, *offered])


def pending_note(calls: tuple[PendingCall, ...]) -> str | None:
    """The note listing ``calls`` (``SessionConfig.pending="note"``), or None if there are
    none: ``still running: c1 search (2.5 s, last progress: page 2/5); …``."""
    if not calls:
        return None
    parts = []
    for c in calls:
        detail = f"{c.elapsed_s:.1f} s" + ("" if c.state == "running" else f", {c.state}")
        if c.progress is not None:
            detail += f", last progress: {c.progress}"
        parts.append(f"{c.id} {c.tool} ({detail})")
    return "still pending: " + "; ".join(parts)
