"""The ``@tool`` decorator: a Python function → :class:`Tool`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar, overload

from ._ordering import SERIAL, OrderBy, Ordered
from ._tool import Tool

__all__ = ["tool"]


class _ToolDecorator:
    """``@tool`` / ``@tool(name=..., description=..., timeout=..., estimated_time=...,
    order_by=...)``: turn a function into a :class:`Tool`.

    - name: the function's name; description: the docstring's summary and long description.
    - parameters: JSON Schema from type hints (pydantic), descriptions from the docstring or
      ``Annotated[T, Field(description=...)]``; a ``ToolContext`` parameter is injected, not shown.
    - timeout / estimated_time: seconds (enforced by the runtime / shown to the model).
    - order_by: ordering of stateful calls: None, an argument name, ``tool.SERIAL`` (``"*"``),
      ``tool.Ordered("group", by=None)`` or a callable ``(args) -> key``.
    """

    SERIAL: ClassVar = SERIAL
    Ordered: ClassVar = Ordered

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
            )

        return decorate if fn is None else decorate(fn)

    def __repr__(self) -> str:
        return "<asynclm.tools.tool>"


tool = _ToolDecorator()
