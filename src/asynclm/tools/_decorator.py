"""The ``@tool`` decorator: a Python function → :class:`Tool`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, overload

from ._ordering import SERIAL, OrderBy, Ordered
from ._tool import DeliveryMode, Final, Tool

__all__ = ["tool"]


class _ToolDecorator:
    """``@tool`` / ``@tool(name=..., description=..., timeout=..., estimated_time=...,
    order_by=..., cancellable=...)``: turn a function into a :class:`Tool`.

    - name: the function's name; description: the docstring's summary and long description.
    - parameters: JSON Schema from type hints (pydantic), descriptions from the docstring or
      ``Annotated[T, Field(description=...)]``; a ``ToolContext`` parameter is injected, not shown.
    - timeout / estimated_time: seconds (enforced by the runtime / shown to the model).
    - order_by: ordering of stateful calls: None, an argument name, ``tool.SERIAL`` (``"*"``),
      ``tool.Ordered("group", by=None)`` or a callable ``(args) -> key``.
    - streaming_args: an async function ``(stream, ctx) -> result`` that starts the call while
      the model is still writing it, reading its arguments as they are written
      (:class:`asynclm.runtime.executor.ArgStream`); default None (calls start when complete).
    - cancellable: True lets the model cancel a running call of the tool (the built-in
      ``cancel(call_id)`` tool, offered by the session when one of its tools is cancellable);
      default False.
    - delivery: when the results of its calls go into the model's context: ``"interrupt"`` (at
      the next safe point), ``"when_idle"`` (when the model waits) or ``"silent"`` (with the
      next batch, never waking the model); default None: the session strategy's.
    - a generator function streams: each value it yields is a partial result;
      ``yield tool.Final(value)`` gives the call's result.
    """

    SERIAL: ClassVar = SERIAL
    Ordered: ClassVar = Ordered
    Final: ClassVar = Final

    @overload
    def __call__(
        self,
        fn: Callable[..., Any],
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        estimated_time: float | None = None,
        order_by: OrderBy = None,
        streaming_args: Callable[..., Awaitable[Any]] | None = None,
        cancellable: bool | None = None,
        delivery: DeliveryMode | None = None,
    ) -> Tool: ...

    @overload
    def __call__(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        estimated_time: float | None = None,
        order_by: OrderBy = None,
        streaming_args: Callable[..., Awaitable[Any]] | None = None,
        cancellable: bool | None = None,
        delivery: DeliveryMode | None = None,
    ) -> Callable[[Callable[..., Any]], Tool]: ...

    def __call__(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        estimated_time: float | None = None,
        order_by: OrderBy = None,
        streaming_args: Callable[..., Awaitable[Any]] | None = None,
        cancellable: bool | None = None,
        delivery: DeliveryMode | None = None,
    ) -> Tool | Callable[[Callable[..., Any]], Tool]:
        localns = sys._getframe(1).f_locals  # resolves `from __future__` hints of local types

        def decorate(func: Callable[..., Any]) -> Tool:
            return Tool.from_function(
                func,
                name=name,
                description=description,
                timeout=timeout,
                estimated_time=estimated_time,
                order_by=order_by,
                localns=localns,
                streaming_args=streaming_args,
                cancellable=cancellable,
                delivery=delivery,
            )

        return decorate if fn is None else decorate(fn)

    def __repr__(self) -> str:
        return "<asynclm.tools.tool>"


tool = _ToolDecorator()
