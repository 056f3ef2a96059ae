"""The executor: runs calls concurrently inside the session's task group.

Invariants (each has a test):
- every submitted call reaches exactly one terminal outcome (ok, error, timeout, cancelled);
- a call that fails, raises (``BaseException`` subclasses included) or times out never cancels
  its siblings;
- unknown tools, invalid arguments and failed dependencies end the call with an error before
  any side effect;
- a timeout is a real cancellation of the tool's coroutine (a sync tool's thread cannot be
  killed: it is told through ``ToolContext.cancelled()`` and its late result is discarded);
- calls with the same ordering key start in emission order, each after the previous one ended;
- a call whose arguments reference ``$id`` starts the moment those results are in (futures);
- liveness: a cancelled or timed-out call ends within ``cancel_grace_s`` whatever its tool does.
  The tool runs in a task of its own under the call's task; one that ignores its cancellation
  past the grace period (or a sync tool, whose thread cannot be stopped) is *abandoned*: the call
  ends (``timeout`` or ``cancelled``; a value it returns late is discarded), its task is detached
  and its id listed by :meth:`Executor.abandoned`, and a warning is logged on ``asynclm.runtime``;
- no call waited for stays deferred: :meth:`Executor.wait_all` starts deferred calls it waits on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

from asynclm.errors import ErrorType, describe, error_type_of
from asynclm.protocol import Ref, is_call_id
from asynclm.protocol.stream_args import ArgPiece, ArgValue
from asynclm.runtime import otel
from asynclm.runtime.builtins import PendingCall, builtin_of, is_builtin
from asynclm.runtime.clock import loop_clock
from asynclm.runtime.config import DEFAULT_CANCEL_GRACE_S
from asynclm.runtime.early import EarlyCall, invoke_streaming
from asynclm.runtime.futures import ReferenceError_, bind_string_refs, find_refs, substitute
from asynclm.runtime.interrupts import describe_unrenderable, render_result
from asynclm.runtime.records import CallRecord, PartialResult, Status
from asynclm.tools import Tool, Toolbox, ToolContext, ToolError

log = logging.getLogger("asynclm.runtime")

_DETACHED: set[asyncio.Task[Any]] = set()
"""Abandoned tool tasks, referenced until they end (the loop holds tasks only weakly)."""


class _Call:
    """Mutable state of one call while it is live; frozen into a CallRecord at its end."""

    __slots__ = (
        "id", "fn", "args", "pos", "raw", "injectable", "emitted_at", "started_at", "task",
        "_done", "record", "refs", "order_key", "ctx", "deferred", "call_args", "cancel_reason",
        "tool", "id_assigned", "span", "launched", "progress", "early",
    )

    def __init__(
        self, id: str, fn: str, args: dict[str, Any], pos: tuple[Any, ...], raw: str,
        injectable: bool, emitted_at: float,
    ) -> None:
        self.id, self.fn, self.args, self.pos, self.raw = id, fn, args, pos, raw
        self.injectable, self.emitted_at = injectable, emitted_at
        self.started_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self._done: asyncio.Future[CallRecord] | None = None  # made when someone waits
        self.record: CallRecord | None = None
        self.refs: list[Ref] = find_refs([args, pos])
        self.order_key: Hashable | None = None
        self.ctx: ToolContext | None = None
        self.deferred = False
        self.call_args: dict[str, Any] = args  # validated (and resolved) arguments
        self.cancel_reason = "cancelled"
        self.tool: Tool | None = None
        self.id_assigned = False
        self.span: Any = None  # an OpenTelemetry span while the tool runs (see otel.py)
        self.launched: asyncio.Future[None] | None = None  # made by Executor.launched
        self.early = False  # its tool runs as streaming_args (async), started early
        self.progress: str | None = None  # the tool's last progress message

    @property
    def done(self) -> asyncio.Future[CallRecord]:
        """Resolves with the record when the call ends (created on first use: most calls are
        never waited for one by one)."""
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            if self.record is not None:
                self._done.set_result(self.record)
        return self._done


class Executor:
    """Runs calls for one session. ``on_start`` and ``on_end`` are called on the loop, once each
    per call (``on_start`` only for calls that really start). ``cancel_grace_s``: how long a
    cancelled or timed-out tool may take to end before it is abandoned (see the module doc)."""

    render_result: Callable[[Any], str] = staticmethod(render_result)
    """Renders an ``ok`` result as its interrupt text, once, when the call ends (replaceable per
    instance); what it raises makes the outcome an ``UnrenderableResult`` error."""

    def __init__(
        self,
        tools: Toolbox,
        group: asyncio.TaskGroup,
        *,
        on_start: Callable[[str, str], None],
        on_end: Callable[[CallRecord], None],
        on_progress: Callable[[str, str, str], None] | None = None,
        on_partial: Callable[[PartialResult], None] | None = None,
        default_timeout: float | None = None,
        tracer: Any = None,
        cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S,
    ) -> None:
        self._tools = tools
        self._group = group
        self._on_start = on_start
        self._on_end = on_end
        self._on_progress = on_progress
        self._on_partial = on_partial
        self._partial_seq: dict[str, int] = {}  # partial results delivered, per call
        self._default_timeout = default_timeout
        self._tracer = tracer  # OpenTelemetry: a span per started call (see otel.py)
        self._grace = cancel_grace_s
        self._abandoned: list[str] = []
        self._calls: dict[str, _Call] = {}
        self._early: dict[str, EarlyCall] = {}  # bound, not yet adopted by their call
        self._order_tail: dict[Hashable, asyncio.Future[CallRecord]] = {}
        self._loop = asyncio.get_running_loop()
        self._now = loop_clock(self._loop)

    # -- queries -------------------------------------------------------------------------
    def __contains__(self, call_id: str) -> bool:
        return call_id in self._calls

    def records(self) -> list[CallRecord]:
        """Records of ended calls, in emission order."""
        return [c.record for c in self._calls.values() if c.record is not None]

    def pending(self, *, injectable_only: bool = False) -> int:
        """Calls without an outcome yet (including deferred ones)."""
        return len(self.pending_ids(injectable_only=injectable_only))

    def pending_ids(self, *, injectable_only: bool = False) -> tuple[str, ...]:
        """Ids of the calls without an outcome yet, in emission order."""
        return tuple(
            c.id for c in self._calls.values()
            if c.record is None and (c.injectable or not injectable_only)
        )

    def deferred(self) -> int:
        return sum(1 for c in self._calls.values() if c.deferred)

    def lookup(self, call_id: str) -> tuple[str, Tool | None, CallRecord | None] | None:
        """A call's tool name, tool (None if unknown) and record (None while it is live), or
        None if no call has that id."""
        call = self._calls.get(call_id)
        return None if call is None else (call.fn, call.tool, call.record)

    def pending_calls(self, *, exclude_builtins: bool = True) -> tuple[PendingCall, ...]:
        """The calls without an outcome yet, in emission order, with their state, the seconds
        since they started (else since they were written) and their last progress message;
        calls of built-in tools left out unless ``exclude_builtins`` is False."""
        now = self._now()
        out = []
        for c in self._calls.values():
            if c.record is not None or (
                    exclude_builtins and c.tool is not None and is_builtin(c.tool)):
                continue
            state: Literal["running", "waiting", "deferred"] = (
                "deferred" if c.deferred else "waiting" if c.started_at is None else "running")
            since = c.started_at if c.started_at is not None else c.emitted_at
            out.append(PendingCall(c.id, c.fn, state, max(now - since, 0.0), c.progress))
        return tuple(out)

    def abandoned(self) -> tuple[str, ...]:
        """Ids of calls whose tool was abandoned (see the module doc), in order."""
        return tuple(self._abandoned)

    async def launched(self, call_id: str) -> None:
        """Until the call has done what it can do at once: its tool has started, or it waits
        for its inputs or its turn, or it has ended (returns at once for a deferred call). The
        session awaits this before decoding on, so that a call starts now, not after the next
        decoding step."""
        call = self._calls[call_id]
        if call.record is not None or call.deferred or call.task is None:
            return
        fut = call.launched = self._loop.create_future()
        await fut

    async def wait(self, call_id: str) -> CallRecord:
        return await asyncio.shield(self._calls[call_id].done)

    async def wait_all(self, *, fire_and_forget_only: bool = False) -> None:
        """Wait until every call (or every call whose outcome is not injected) has ended.
        Deferred calls among them, and the deferred calls whose results they reference, are
        started first (in emission order): nothing else would start them now."""
        calls = [
            c for c in self._calls.values()
            if c.record is None and not (fire_and_forget_only and c.injectable)
        ]
        needed = {c.id for c in calls}
        for c in reversed(self._calls.values()):  # references point only to earlier calls
            if c.id in needed:
                needed.update(r.id for r in c.refs if r.id in self._calls)
        for c in list(self._calls.values()):
            if c.deferred and c.id in needed:
                c.deferred = False
                self._start(c)
        futs = [c.done for c in calls if c.record is None]
        if futs:
            await asyncio.wait(futs)

    # -- submission ----------------------------------------------------------------------
    def submit(
        self,
        call_id: str,
        fn: str,
        args: dict[str, Any],
        *,
        pos: tuple[Any, ...] = (),
        raw: str = "",
        injectable: bool = True,
        id_assigned: bool = False,
        start: bool = True,
        error: str | None = None,
        repeat_of: CallRecord | None = None,
    ) -> None:
        """Register a call. With ``error`` the call ends at once with that error (malformed
        call, duplicate id); with ``repeat_of`` it ends at once with that earlier call's
        result, unrun. With ``start=False`` it waits for :meth:`start_deferred`."""
        if call_id in self._calls:
            raise ValueError(f"duplicate call id {call_id!r}")  # the session renames first
        tool = self._tools.get(fn)
        if tool is not None and is_builtin(tool):
            # cancel(call_id=$c1) names a call: it must not wait for that call's result
            args, pos = _ids_not_refs(args), tuple(_ids_not_refs(list(pos)))
        else:  # "$id" inside strings: only ids written before this call (futures.py)
            args, pos = bind_string_refs(args, self._calls), bind_string_refs(pos, self._calls)
        call = _Call(call_id, fn, args, pos, raw, injectable, self._now())
        call.id_assigned = id_assigned
        self._calls[call_id] = call
        if error is not None:
            self._finish(call, "error", error=error, error_type=ErrorType.MALFORMED_CALL)
            return
        if repeat_of is not None:
            self._finish(call, "ok", value=repeat_of.value, repeat_of=repeat_of.id)
            return
        # Problems knowable now end the call at once, before any side effect.
        # A reference can only name a call written before this one, so references never form
        # a cycle: a forward reference (or one in a would-be cycle) is unknown right here.
        for ref in call.refs:
            dep = self._calls.get(ref.id)
            if dep is call:
                self._finish(
                    call, "error", error_type=ErrorType.REFERENCE_ERROR,
                    error=f"not started: {ref} refers to this call's own result",
                )
                return
            if dep is None:
                self._finish(
                    call, "error", error_type=ErrorType.REFERENCE_ERROR,
                    error=f"not started: unknown reference {ref}: no earlier call has id "
                    f"{ref.id!r} (a call can only use results of calls written before it)",
                )
                return
        try:
            call.tool = tool = self._tools.get_checked(fn)
        except ToolError as exc:
            self._finish(call, "error", error=str(exc), error_type=error_type_of(exc))
            return
        if not call.refs:
            try:
                call.call_args = tool.validate(args, pos)
            except ToolError as exc:
                self._finish(call, "error", error=str(exc), error_type=error_type_of(exc))
                return
        # Ordering is fixed at emission time, so stateful calls keep the model's order.
        try:
            key = tool.order_key(call.call_args)
        except Exception:  # a key function failing on odd arguments: order conservatively
            key = ("__tool__", fn)
        if key is not None:
            call.order_key = key
        if start:
            self._start(call)
        else:
            call.deferred = True

    def start_deferred(self) -> int:
        """Start every deferred call (sync-parallel at a trap); returns how many."""
        calls = [c for c in self._calls.values() if c.deferred]
        for c in calls:
            c.deferred = False
            self._start(c)
        return len(calls)

    def _start(self, call: _Call) -> None:
        prev = None
        if call.order_key is not None:
            prev = self._order_tail.get(call.order_key)
            self._order_tail[call.order_key] = call.done
        call.task = self._group.create_task(self._run(call, prev), name=f"asynclm-call-{call.id}")

    # -- calls started while they are written (streaming_args) -----------------------------
    def start_early(self, fn: str) -> EarlyCall | None:
        """Start a call of ``fn`` whose block the model is still writing, if ``fn`` is a tool
        declared with ``streaming_args`` (and no ordering): its ``streaming_args`` function
        runs now, reading the arguments from an :class:`ArgStream`. None otherwise (the call
        starts, as any other, when it is complete)."""
        try:
            tool = self._tools[fn]
        except KeyError:
            return None
        if tool.streaming_args is None or tool.order_by is not None:
            return None
        early = EarlyCall(tool, ToolContext(call_id="", tool_name=fn), self._now())
        early.task = self._loop.create_task(
            invoke_streaming(tool, early.stream, early.ctx), name=f"asynclm-early-{fn}")
        return early

    def feed_early(self, early: EarlyCall, pieces: Sequence[ArgPiece]) -> None:
        """Hand the tool of ``early`` the arguments just completed (and lines of a string
        argument being written). A reference to another call's result (``$``) halts the feed:
        that argument and the rest come once the call is complete and resolved."""
        stream = early.stream
        for piece in pieces:
            if early.halted:
                return
            name = piece.name
            if isinstance(name, int):
                if name >= len(early.params):
                    early.halted = True  # too many positional arguments: validation says so
                    return
                name = early.params[name]
            value = piece.value if isinstance(piece, ArgValue) else piece.line
            if find_refs([value]) or "$" in repr(value):
                early.halted = True
                return
            if isinstance(piece, ArgValue):
                stream._feed(name, value)
            else:
                stream._feed_line(name, value)

    def bind_early(self, early: EarlyCall, call_id: str) -> None:
        """``early`` is the call just submitted as ``call_id``: the call adopts the running
        tool when it starts (its validated arguments complete the stream). If the call has
        already ended (malformed, unknown tool, invalid arguments, a repeat answered by an
        earlier result) or ends without starting (a failed dependency, a cancellation), the
        tool is cancelled: the call's outcome is the one recorded."""
        call = self._calls[call_id]
        early.ctx.call_id = call_id
        if call.record is not None or call.deferred or call.task is None:
            self._drop_early(early, call, _ended_reason(call.record))
            return
        self._early[call_id] = early
        call.done.add_done_callback(lambda _: self._unbound(call))

    def abandon_early(self, early: EarlyCall, call_id: str, reason: str, raw: str = "") -> None:
        """The model abandoned the call of ``early`` before completing it (rolled back, or the
        run ended inside its block): it is recorded as ``call_id``, ``cancelled`` with
        ``reason``, and its tool is cancelled."""
        call = _Call(call_id, early.fn, early.stream.written, (), raw, True, early.started_at)
        call.tool, call.ctx, call.started_at = early.tool, early.ctx, early.started_at
        early.ctx.call_id = call_id
        self._calls[call_id] = call
        self._drop_early(early, call, reason)
        self._finish(call, "cancelled", error=reason, error_type=ErrorType.CANCELLED)

    def _adopt(self, call: _Call, early: EarlyCall) -> asyncio.Task[tuple[bool, Any]]:
        """The call's tool is the one started early: its stream gets the validated arguments
        (the rest of them, and the end)."""
        assert early.task is not None
        if early.halted:  # fed from here on: the arguments after a reference, now resolved
            for name, value in call.call_args.items():
                early.stream._feed(name, value)
        early.stream._finish(call.call_args)
        call.early = True
        _launched(call)
        return early.task

    def _unbound(self, call: _Call) -> None:
        early = self._early.pop(call.id, None)
        if early is not None:  # the call ended before its tool was adopted
            self._drop_early(early, call, _ended_reason(call.record))

    def _drop_early(self, early: EarlyCall, call: _Call, reason: str) -> None:
        """Cancel the tool of ``early``; one that ignores it for ``cancel_grace_s`` (or never
        ends) is listed as abandoned, as a call's tool would be."""
        early.stream._fail(reason)
        early.ctx.cancel()
        task = early.task
        if task is None or task.done():
            return
        task.cancel()
        _DETACHED.add(task)
        task.add_done_callback(_DETACHED.discard)

        def check() -> None:
            if not task.done():
                self._abandon(call, task, thread=False)

        self._loop.call_later(self._grace, check)

    # -- cancellation ----------------------------------------------------------------------
    def cancel(self, call_id: str, reason: str = "cancelled") -> bool:
        """Cancel a call that has not ended; it ends ``cancelled``. False if it had ended.
        The one path of every cancellation on request: the application's
        ``RunControl.cancel_call``, the server's ``POST .../calls/{call_id}/cancel`` and the
        model's built-in ``cancel(call_id)`` (:mod:`asynclm.runtime.builtins`)."""
        call = self._calls.get(call_id)
        if call is None or call.record is not None:
            return False
        call.cancel_reason = reason
        if call.ctx is not None:
            call.ctx.cancel()
        if call.task is None or call.task.done():
            self._finish(call, "cancelled", error=reason, error_type=ErrorType.CANCELLED)
        else:
            call.task.cancel(reason)
        return True

    def cancel_all(self, reason: str) -> None:
        for call_id in list(self._calls):
            self.cancel(call_id, reason)

    # -- running ---------------------------------------------------------------------------
    async def _run(self, call: _Call, prev: asyncio.Future[CallRecord] | None) -> None:
        """The call's task (in the session's task group): resolve, wait for its turn, run the
        tool in a task of its own and supervise it (timeout, cancellation, abandonment)."""
        inner: asyncio.Task[tuple[bool, Any]] | None = None
        try:
            if call.refs:
                _launched(call)  # it waits for its inputs
                if not await self._resolve(call):
                    return
            if prev is not None:
                _launched(call)  # it waits for its turn
                await asyncio.wait([prev])
            tool = call.tool
            assert tool is not None
            builtin = builtin_of(tool)
            if builtin is not None:  # on the loop, in this task: cancel(), pending()
                call.started_at = self._now()
                self._on_start(call.id, call.fn)
                _launched(call)
                try:
                    value = await builtin(self, call.id, call.call_args)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the built-in's error result
                    self._finish(call, "error", error=str(exc), error_type=type(exc).__name__)
                else:
                    self._finish(call, "ok", value=value)
                return
            early = self._early.pop(call.id, None)  # its tool started while it was written
            call.ctx = ctx = (
                ToolContext(call_id=call.id, tool_name=call.fn) if early is None else early.ctx)
            ctx.on_progress = functools.partial(self._report_progress, call)  # remembered
            ctx.on_partial = functools.partial(self._report_partial, call)
            call.started_at = self._now() if early is None else early.started_at
            call.span = otel.start_tool_span(self._tracer, call.fn, call.id)
            self._on_start(call.id, call.fn)
            timeout = tool.timeout if tool.timeout is not None else self._default_timeout
            if early is None:
                inner = self._loop.create_task(
                    _invoke(tool, call.call_args, ctx, call.span), name=f"asynclm-tool-{call.id}")
                _launched(call)  # its task runs at the loop's next step, before any decoding
            else:
                inner = self._adopt(call, early)
            done, _ = await asyncio.wait((inner,), timeout=_left(timeout, call, self._now()))
            if not done:
                try:
                    await self._stop(call, inner)
                finally:  # whatever the tool does now (even return a value): a timeout
                    self._finish(
                        call, "timeout", error=f"timed out after {timeout:g} s",
                        error_type=ErrorType.TIMEOUT,
                    )
                return
            if inner.cancelled():  # the tool raised CancelledError on its own
                self._finish(
                    call, "error", error="tool raised CancelledError",
                    error_type=ErrorType.TOOL_CANCELLED)
                return
            ok, value = inner.result()
            if ok:
                self._finish(call, "ok", value=value)
            else:
                self._finish(call, "error", error=describe(value), error_type=error_type_of(value))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                try:
                    if inner is not None and call.record is None:
                        await self._stop(call, inner)
                finally:
                    if call.record is None:
                        self._finish(
                            call, "cancelled", error=call.cancel_reason,
                            error_type=ErrorType.CANCELLED)
                raise
            if call.record is not None:  # raised after the outcome (by a hook): a bug, loud
                raise
            # Not a cancellation of this task: an error like any other.
            self._finish(call, "error", error="CancelledError", error_type=ErrorType.TOOL_CANCELLED)
        except BaseException as exc:  # noqa: BLE001 - every outcome is recorded, never lost
            if call.record is not None:  # raised after the outcome (by a hook): a bug, loud
                raise
            self._finish(call, "error", error=describe(exc), error_type=error_type_of(exc))

    async def _stop(self, call: _Call, inner: asyncio.Task[Any]) -> None:
        """Cancel the running tool ``inner`` of ``call`` and give it ``cancel_grace_s`` to end;
        abandon it if it does not, or if it is a sync tool (its worker thread cannot be
        stopped; it is told through ``ToolContext.cancelled()``). If this task is cancelled
        meanwhile, the tool is abandoned and CancelledError propagates."""
        if call.ctx is not None:
            call.ctx.cancel()
        if inner.done():
            return
        inner.cancel()
        thread = call.tool is not None and not call.tool.is_async and not call.early
        try:
            await asyncio.wait((inner,), timeout=self._grace)
        except asyncio.CancelledError:
            self._abandon(call, inner, thread)
            raise
        if thread or not inner.done():
            self._abandon(call, inner, thread)

    def _abandon(self, call: _Call, inner: asyncio.Task[Any], thread: bool) -> None:
        """Stop waiting for the tool of ``call``: detach its task and report it."""
        if call.id in self._abandoned:
            return
        self._abandoned.append(call.id)
        if not inner.done():
            _DETACHED.add(inner)
            inner.add_done_callback(_DETACHED.discard)
        why = ("its sync tool's worker thread cannot be stopped" if thread
               else f"its tool ignored cancellation for {self._grace:g} s")
        log.warning("call %s (%s) abandoned: %s; its late result will be discarded",
                    call.id, call.fn, why)

    def _report_progress(self, call: _Call, message: str) -> None:
        """``ToolContext.on_progress`` of ``call`` (bound with ``partial``): callable from any
        thread (sync tools run in a worker thread); reports reach ``on_progress`` on the loop,
        and only while the call runs."""
        if _on_loop(self._loop):
            self._deliver_progress(call, str(message))
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver_progress, call, str(message))
        except RuntimeError:  # the loop is closed: the session, and so the call, is over
            pass

    def _deliver_progress(self, call: _Call, message: str) -> None:
        if call.record is not None:  # a late report
            return
        call.progress = message  # the last one, for pending()
        if self._on_progress is not None:
            self._on_progress(call.id, call.fn, message)

    def _report_partial(self, call: _Call, value: Any) -> None:
        """``ToolContext.on_partial`` of ``call``: like :meth:`_report_progress`, callable from
        any thread; a partial result reaches ``on_partial`` on the loop, in the order reported
        and before the call's outcome, and only while the call runs (a late one is dropped)."""
        if _on_loop(self._loop):
            self._deliver_partial(call, value)
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver_partial, call, value)
        except RuntimeError:  # the loop is closed: the session, and so the call, is over
            pass

    def _deliver_partial(self, call: _Call, value: Any) -> None:
        if call.record is not None or self._on_partial is None:  # late, or nobody listens
            return
        try:  # rendered once, now, like a result; a value that cannot be says so
            rendered = self.render_result(value)
        except BaseException as exc:  # noqa: BLE001 - synchronous: never a cancellation
            rendered = describe_unrenderable(exc)
        seq = self._partial_seq[call.id] = self._partial_seq.get(call.id, 0) + 1
        self._on_partial(PartialResult(
            call_id=call.id, fn=call.fn, seq=seq, value=value, rendered=rendered, t=self._now(),
            injectable=call.injectable))

    async def _resolve(self, call: _Call) -> bool:
        deps = {r.id: self._calls[r.id] for r in call.refs}
        await asyncio.wait([d.done for d in deps.values()])
        results: dict[str, Any] = {}
        for dep_id, dep in deps.items():
            rec = dep.record
            assert rec is not None
            if rec.status != "ok":
                self._finish(
                    call, "error", error_type=ErrorType.DEPENDENCY_FAILED,
                    error=f"not started: dependency {dep_id} ended {rec.status}"
                    + (f" ({rec.error})" if rec.error else ""),
                )
                return False
            results[dep_id] = rec.value
        try:
            args = substitute(call.args, results)
            pos = tuple(substitute(list(call.pos), results))
            assert call.tool is not None
            call.call_args = call.tool.validate(args, pos)
        except (ReferenceError_, ToolError) as exc:
            self._finish(call, "error", error=f"not started: {exc}", error_type=error_type_of(exc))
            return False
        return True

    def _finish(
        self, call: _Call, status: Status, *, value: Any = None, error: str | None = None,
        error_type: str | None = None, repeat_of: str | None = None,
    ) -> None:
        if call.record is not None:  # exactly once: a second outcome is a bug, never silent
            raise RuntimeError(f"call {call.id} ended twice ({call.record.status}, {status})")
        call.deferred = False
        rendered = None
        if status == "ok":  # rendered now, so that a value that cannot be is this call's error
            prev = self._calls.get(repeat_of) if repeat_of is not None else None
            if prev is not None and prev.record is not None and prev.record.rendered is not None:
                rendered = prev.record.rendered
            else:
                try:
                    rendered = self.render_result(value)
                except BaseException as exc:  # noqa: BLE001 - never ends the run
                    # Rendering is synchronous: a CancelledError here is the value's own doing,
                    # not a cancellation of this task (one requested is still delivered at the
                    # task's next await: nothing is uncancelled here).
                    status, value, error_type = "error", None, ErrorType.UNRENDERABLE_RESULT
                    error = describe_unrenderable(exc)
        call.record = CallRecord(
            id=call.id, fn=call.fn, args=call.args, pos=call.pos, raw=call.raw, status=status,
            value=value, error=error, error_type=error_type, injectable=call.injectable,
            id_assigned=call.id_assigned,
            emitted_at=call.emitted_at, started_at=call.started_at, ended_at=self._now(),
            depends_on=tuple(dict.fromkeys(r.id for r in call.refs)) if call.refs else (),
            resolved_args=dict(call.call_args) if call.started_at is not None else None,
            repeat_of=repeat_of, rendered=rendered,
        )
        if call.span is not None:
            otel.end_tool_span(call.span, status, error_type, error)
        if call._done is not None:
            call._done.set_result(call.record)
        _launched(call)
        self._on_end(call.record)


async def _invoke(
    tool: Tool, args: dict[str, Any], ctx: ToolContext, span: Any,
) -> tuple[bool, Any]:
    """The tool's own task: ``(True, value)``, or ``(False, exception)`` for any exception but
    CancelledError (``SystemExit`` and ``KeyboardInterrupt`` included: raised out of a task they
    would stop the event loop)."""
    try:
        with otel.use_span(span):
            return True, await tool.invoke(args, ctx=ctx)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - becomes the call's error outcome
        return False, exc


def _left(timeout: float | None, call: _Call, now: float) -> float | None:
    """What is left of the call's ``timeout`` (counted from its start: an early start too)."""
    if timeout is None or call.started_at is None:
        return timeout
    return max(timeout - (now - call.started_at), 0.0)


def _ended_reason(record: CallRecord | None) -> str:
    if record is None:
        return "the call did not start"
    return f"the call ended {record.status}" + (f": {record.error}" if record.error else "")


def _ids_not_refs(value: Any) -> Any:
    """``value`` with each reference (``$c1``, or the string ``"$c1"``) replaced by the bare id
    it names: what a built-in tool that takes call ids is given."""
    if isinstance(value, Ref):
        return value.id
    if isinstance(value, str) and value.startswith("$") and is_call_id(value[1:]):
        return value[1:]
    if isinstance(value, dict):
        return {k: _ids_not_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ids_not_refs(v) for v in value]
    return value


def _launched(call: _Call) -> None:
    """Wake whoever awaits :meth:`Executor.launched` for ``call``."""
    if call.launched is not None and not call.launched.done():
        call.launched.set_result(None)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop in this thread
        return False


