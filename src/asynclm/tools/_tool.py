"""The :class:`Tool` object: a schema, a validator and (optionally) an implementation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import functools
import inspect
import math
import threading
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Generator,
    Hashable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._context import ToolContext
from ._errors import ToolNotImplemented
from ._openai import schema_parts
from ._ordering import SERIAL, OrderBy, Ordered, compute_order_key, normalize_order_by
from ._schema import clean_schema
from ._signature import inspect_function, is_async_callable, json_schema_of
from ._validation import ArgumentValidator

__all__ = ["DELIVERY_MODES", "DeliveryMode", "Final", "Handler", "Tool", "check_delivery"]

Handler = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]
"""``handler(name, args)``: runs schema-only tools (sync handlers run in a worker thread)."""

_OPTIONS = (
    "streaming_args",
    "name", "description", "timeout", "estimated_time", "order_by", "handler", "cancellable",
    "delivery",
)

DeliveryMode = Literal["interrupt", "when_idle", "silent"]
"""When a call's results (its partials and its outcome) go into the model's context:

- ``interrupt``: at the next safe point, while the model writes (the ``async`` strategy's rule);
- ``when_idle``: only when the model waits: a trap, the end of its text with calls pending
  (``SessionConfig.on_eos_pending="trap"``), a forged result, or a blocking strategy's wait for
  a call (the ``async-lazy`` rule);
- ``silent``: recorded, and appended at the next *boundary* without making the model react: it
  never triggers an injection, never ends a trap and never keeps a turn alive. It goes in with
  the next batch injected for another reason (a result, a message, the end of a trap) or, with
  ``on_eos_pending="trap"``, at the end of the turn: the turn waits for silent calls still
  running, appends their results and ends without the model writing more (with ``finish`` they
  are recorded only, like any result still queued).

A call's mode is, first to last: ``RunControl.set_delivery`` (any time before its outcome is
delivered), ``SessionConfig.delivery_for``, the tool's ``delivery`` option, the strategy's
default (:attr:`~asynclm.runtime.strategies.Strategy.default_delivery`). Sync strategies block
on their calls anyway: there every safe point counts as idle."""

DELIVERY_MODES: tuple[DeliveryMode, ...] = ("interrupt", "when_idle", "silent")


def check_delivery(mode: object) -> DeliveryMode:
    """``mode`` if it is a :data:`DeliveryMode`; raises ``ValueError`` otherwise."""
    for known in DELIVERY_MODES:
        if mode == known:
            return known
    raise ValueError(f"unknown delivery mode {mode!r}; choose one of {', '.join(DELIVERY_MODES)}")


@dataclass(frozen=True, slots=True)
class Final:
    """``yield tool.Final(value)`` in a generator tool: ``value`` is the call's result (its
    outcome); the generator is closed. Every other value a generator tool yields is a partial
    result (as ``ToolContext.partial``); one that ends without yielding a ``Final`` has its
    last yielded value (None if none) as its result, delivered again as the final one. A plain
    tool may return a ``Final`` too: it is unwrapped."""

    value: Any


class Tool:
    """A callable tool: what the model sees (``name``, ``description``, ``parameters``) plus
    how to check and run a call (``validate``, ``invoke``, ``order_key``).

    Create one with :func:`tool` (or :meth:`from_function`), :meth:`from_openai` (BFCL
    documents: :mod:`asynclm.bench.bfcl.tools`); change options with :meth:`replace`.
    Instances are immutable; ``parameters`` must not be mutated.
    ``timeout`` (seconds) is enforced by the runtime; ``estimated_time`` (seconds) is shown to
    the model. Calling the tool object calls ``fn`` directly, without validation.
    ``cancellable`` (default False): the model may cancel a running call of this tool with the
    built-in ``cancel(call_id)`` tool (see :mod:`asynclm.runtime.builtins`); the application
    and the server can cancel any call whatever it says.
    ``delivery`` (default None: the session strategy's): when the session delivers the results
    of this tool's calls, ``"interrupt"``, ``"when_idle"`` or ``"silent"`` (see
    ``asynclm.tools.DeliveryMode``; the application may override it per call).
    A generator function (async or sync) is a streaming tool: each value it yields is a partial
    result, ``yield tool.Final(value)`` gives its result (see :class:`Final`).
    ``streaming_args`` (default None): an async function ``(stream, ctx) -> result`` that runs
    the call from its arguments *as the model writes them* (an
    :class:`asynclm.runtime.executor.ArgStream`), started before the call block closes; the
    function itself runs calls that start otherwise (see :mod:`asynclm.protocol.stream_args`).
    """

    SERIAL: ClassVar = SERIAL
    Ordered: ClassVar = Ordered
    Final: ClassVar = Final

    __slots__ = (
        "_ctx_param",
        "_positional_only",
        "_validator",
        "cancellable",
        "delivery",
        "description",
        "estimated_time",
        "fn",
        "handler",
        "is_async",
        "name",
        "order_by",
        "parameters",
        "streaming_args",
        "timeout",
    )

    name: str
    description: str
    parameters: dict[str, Any]
    timeout: float | None
    estimated_time: float | None
    is_async: bool
    fn: Callable[..., Any] | None
    order_by: OrderBy
    handler: Handler | None
    streaming_args: Callable[..., Awaitable[Any]] | None
    cancellable: bool
    delivery: DeliveryMode | None
    _validator: ArgumentValidator
    _ctx_param: str | None
    _positional_only: tuple[str, ...]

    def __init__(
        self,
        *,
        name: str,
        description: str,
        parameters: dict[str, Any],
        validator: ArgumentValidator,
        fn: Callable[..., Any] | None = None,
        is_async: bool = False,
        ctx_param: str | None = None,
        positional_only: Sequence[str] = (),
        handler: Handler | None = None,
        timeout: float | None = None,
        estimated_time: float | None = None,
        order_by: OrderBy = None,
        cancellable: bool = False,
        delivery: DeliveryMode | None = None,
        streaming_args: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        """Low-level constructor used by the factories; prefer :func:`tool` / ``from_*``."""
        if delivery is not None:
            check_delivery(delivery)
        if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"tool name must be a non-empty string without spaces, not {name!r}")
        if handler is not None and not callable(handler):
            raise TypeError("handler must be callable")
        if not isinstance(cancellable, bool):
            raise TypeError(f"cancellable must be True or False, not {cancellable!r}")
        if streaming_args is not None and not is_async_callable(streaming_args):
            raise TypeError("streaming_args must be an async function (stream, ctx) -> result")
        if fn is None and handler is not None:
            is_async = is_async_callable(handler)
        if fn is not None and inspect.isasyncgenfunction(fn):
            is_async = True  # an async generator runs on the loop; its yields are partials
        values = {
            "name": name,
            "description": description or "",
            "parameters": parameters,
            "timeout": _seconds("timeout", timeout, allow_zero=False),
            "estimated_time": _seconds("estimated_time", estimated_time, allow_zero=True),
            "is_async": is_async,
            "fn": fn,
            "handler": handler,
            "streaming_args": streaming_args,
            "cancellable": cancellable,
            "delivery": delivery,
            "order_by": normalize_order_by(order_by, validator.params, name),
            "_validator": validator,
            "_ctx_param": ctx_param,
            "_positional_only": tuple(positional_only),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"Tool is immutable; use tool.replace({key}=...)")

    def __delattr__(self, key: str) -> None:
        raise AttributeError("Tool is immutable")

    def __repr__(self) -> str:
        kind = "async" if self.is_async else "sync"
        impl = (
            "" if self.fn is not None else (", handler" if self.handler else ", no implementation")
        )
        options = f", delivery={self.delivery}" if self.delivery is not None else ""
        return f"<Tool {self.name!r} ({kind}{impl}{options})>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (no validation, no thread)."""
        if self.fn is None:
            raise ToolNotImplemented(self.name)
        return self.fn(*args, **kwargs)

    # ---- factories ------------------------------------------------------------------------

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        estimated_time: float | None = None,
        order_by: OrderBy = None,
        localns: Mapping[str, Any] | None = None,
        streaming_args: Callable[..., Awaitable[Any]] | None = None,
        cancellable: bool | None = None,
        delivery: DeliveryMode | None = None,
    ) -> Tool:
        """Same as ``tool(fn, ...)``: a tool from ``fn``'s signature and docstring (a tool is
        returned as is, or with the options given replaced); ``localns`` resolves string
        annotations that name local types."""
        if isinstance(fn, Tool):
            options = {
                k: v
                for k, v in {
                    "name": name,
                    "description": description,
                    "timeout": timeout,
                    "estimated_time": estimated_time,
                    "order_by": order_by,
                    "streaming_args": streaming_args,
                    "cancellable": cancellable,
                    "delivery": delivery,
                }.items()
                if v is not None
            }
            return fn.replace(**options) if options else fn
        if not callable(fn):
            raise TypeError(f"tool() needs a callable, not {type(fn).__name__}")
        info = inspect_function(fn, localns)
        parameters = clean_schema(json_schema_of(info.model))
        parameters["additionalProperties"] = False
        return cls(
            name=name or info.name,
            description=info.description if description is None else description,
            parameters=parameters,
            validator=ArgumentValidator(info.model, info.params, fill_defaults=True),
            fn=fn,
            is_async=info.is_async,
            ctx_param=info.ctx_param,
            positional_only=info.positional_only,
            timeout=timeout,
            estimated_time=estimated_time,
            order_by=order_by,
            streaming_args=streaming_args,
            cancellable=bool(cancellable),
            delivery=delivery,
        )

    @classmethod
    def from_openai(
        cls,
        spec: Mapping[str, Any],
        fn: Callable[..., Any] | None = None,
        *,
        handler: Handler | None = None,
        **options: Any,
    ) -> Tool:
        """A tool from an OpenAI ``{"type": "function", "function": {...}}`` spec (or the inner
        ``function`` dict). Arguments are validated against the spec's JSON Schema; ``fn``
        (optional) implements it, else ``handler(name, args)``, else invoke raises
        :class:`ToolNotImplemented`. ``options``: timeout, estimated_time, order_by,
        cancellable, delivery.
        Raises ``ValueError`` for a malformed spec."""
        name, description, parameters, validator = schema_parts(spec)
        ctx_param = None
        positional_only: tuple[str, ...] = ()
        is_async = False
        if fn is not None:
            info = inspect_function(fn)
            ctx_param, positional_only = info.ctx_param, info.positional_only
            is_async = info.is_async
        return cls(
            name=name,
            description=description,
            parameters=parameters,
            validator=validator,
            fn=fn,
            is_async=is_async,
            ctx_param=ctx_param,
            positional_only=positional_only,
            handler=handler,
            **options,
        )

    def replace(self, **changes: Any) -> Tool:
        """A copy with some of ``name``, ``description``, ``timeout``, ``estimated_time``,
        ``order_by``, ``handler``, ``cancellable``, ``delivery`` changed."""
        unknown = set(changes) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"cannot replace {sorted(unknown)}; allowed: {list(_OPTIONS)}")
        current = {key: getattr(self, key) for key in _OPTIONS}
        current.update(changes)
        return Tool(
            parameters=self.parameters,
            validator=self._validator,
            fn=self.fn,
            is_async=self.is_async if self.fn is not None else False,
            ctx_param=self._ctx_param,
            positional_only=self._positional_only,
            **current,
        )

    # ---- what the model sees --------------------------------------------------------------

    def to_openai(self) -> dict[str, Any]:
        """``{"type": "function", "function": {name, description, parameters, strict}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": copy.deepcopy(self.parameters),
                "strict": False,
            },
        }

    # ---- calling --------------------------------------------------------------------------

    @property
    def param_names(self) -> tuple[str, ...]:
        """Parameter names in positional order (the injected context excluded)."""
        return self._validator.params

    def validate(self, args: Mapping[str, Any], pos: Sequence[Any] = ()) -> dict[str, Any]:
        """Bind ``pos`` to parameters in order, validate, return keyword arguments for
        :meth:`invoke`. Raises :class:`ToolArgumentError` (missing, unexpected, wrong type)."""
        return self._validator.validate(self.name, args, pos)

    def order_key(self, args: Mapping[str, Any]) -> Hashable | None:
        """Calls with equal non-None keys must run in emission order (see ``order_by``)."""
        return compute_order_key(self.order_by, args, self.name)

    async def invoke(self, args: Mapping[str, Any], *, ctx: ToolContext | None = None) -> Any:
        """Run the tool with validated ``args``: async functions are awaited, sync ones run in a
        worker thread. Exceptions propagate unchanged; on cancellation ``ctx`` is marked
        cancelled so a sync tool can stop cooperatively."""
        if ctx is None:
            ctx = ToolContext(tool_name=self.name)
        try:
            if self.fn is None:
                if self.handler is None:
                    raise ToolNotImplemented(self.name)
                return await _run(self.handler, self.is_async, (self.name, dict(args)), {}, ctx)
            kwargs = dict(args)
            if self._ctx_param is not None:
                kwargs[self._ctx_param] = ctx
            positional = []
            for name in self._positional_only:
                if name not in kwargs:
                    break
                positional.append(kwargs.pop(name))
            return await _run(self.fn, self.is_async, tuple(positional), kwargs, ctx)
        except asyncio.CancelledError:
            ctx.cancel()
            raise


async def _run(
    fn: Callable[..., Any], is_async: bool, args: tuple[Any, ...], kwargs: dict[str, Any],
    ctx: ToolContext,
) -> Any:
    """Call ``fn``: awaited if async, else in a worker thread. A generator function's yields
    are partial results (``ctx.partial``) and its result is its :class:`Final` (or its last
    yield); a :class:`Final` returned is unwrapped."""
    if is_async:
        if inspect.isasyncgenfunction(fn):
            return await _drain_async(fn(*args, **kwargs), ctx)
        return _unwrap(await fn(*args, **kwargs))
    target = functools.partial(_drain_sync, fn, ctx) if inspect.isgeneratorfunction(fn) else fn
    call = functools.partial(contextvars.copy_context().run, target, *args, **kwargs)
    result = await asyncio.get_running_loop().run_in_executor(_DAEMON_THREADS, call)
    if inspect.isawaitable(result):  # a sync function that returned a coroutine
        result = await result
    return _unwrap(result)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, Final) else value


async def _drain_async(gen: AsyncGenerator[Any, None], ctx: ToolContext) -> Any:
    """Run an async generator tool: each value yielded is a partial, a :class:`Final` ends it."""
    last = None
    try:
        async for item in gen:
            if isinstance(item, Final):
                return item.value
            ctx.partial(item)
            last = item
    finally:
        await gen.aclose()
    return last


def _drain_sync(
    fn: Callable[..., Generator[Any, None, Any]], ctx: ToolContext, *args: Any, **kwargs: Any,
) -> Any:
    """Run a sync generator tool (in its worker thread) like :func:`_drain_async`; it is also
    stopped at its next yield once the call is cancelled (its result is then discarded)."""
    gen = fn(*args, **kwargs)
    last = None
    try:
        for item in gen:
            if isinstance(item, Final):
                return item.value
            ctx.partial(item)
            last = item
            if ctx.cancelled():
                break
    finally:
        gen.close()
    return last


class _DaemonThreads(concurrent.futures.Executor):
    """Runs each job in a daemon thread of its own. A sync tool's thread cannot be stopped; one
    that blocks past its call's cancellation is abandoned by the runtime, and must then keep
    neither the event loop's shutdown (``asyncio.run`` joins the default executor's threads)
    nor the interpreter's exit waiting for it."""

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any,
    ) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def work() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                fut.set_exception(exc)

        threading.Thread(target=work, name="asynclm-sync-tool", daemon=True).start()
        return fut


_DAEMON_THREADS = _DaemonThreads()


def _seconds(what: str, value: float | None, *, allow_zero: bool) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{what} must be a number of seconds or None, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return float(value)
