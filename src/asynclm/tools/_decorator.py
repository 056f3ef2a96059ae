"""The ``@tool`` decorator: a Python function → :class:`Tool`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, overload

from ._ordering import SERIAL, OrderBy, Ordered
from ._schema import clean_schema
from ._signature import inspect_function, json_schema_of
from ._tool import Tool
from ._validation import ArgumentValidator

__all__ = ["tool", "tool_from_function"]


def tool_from_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    estimated_time: float | None = None,
    order_by: OrderBy = None,
    localns: Mapping[str, Any] | None = None,
) -> Tool:
    """Build a :class:`Tool` from ``fn`` (see :data:`tool`); ``localns`` resolves string
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
            }.items()
            if v is not None
        }
        return fn.replace(**options) if options else fn
    if not callable(fn):
        raise TypeError(f"tool() needs a callable, not {type(fn).__name__}")
    info = inspect_function(fn, localns)
    parameters = clean_schema(json_schema_of(info.model))
    parameters["additionalProperties"] = False
    return Tool(
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
    )


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
            return tool_from_function(
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
