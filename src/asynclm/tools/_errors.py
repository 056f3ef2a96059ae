"""Exceptions raised by :mod:`asynclm.tools`, defined in :mod:`asynclm.errors` (the whole tree).

Hierarchy::

    ToolError(AsyncLMError)
    ├── ToolArgumentError(ToolError, ValueError)    arguments failed validation; nothing ran
    ├── UnknownToolError(ToolError, LookupError)    no tool with that name in a Toolbox
    └── ToolNotImplemented(ToolError)               a schema-only tool was invoked without a handler

    MCPToolError(AsyncLMError, RuntimeError)        an MCP server's tool answered with an error

Messages are short and meant to be shown to the model as an error result.
Exceptions raised *by a tool's own code* are never wrapped: they propagate unchanged. An MCP
tool's failure is the tool's own, so :class:`MCPToolError` is not a :class:`ToolError`.
"""

from __future__ import annotations

from asynclm.errors import (
    MCPToolError,
    ToolArgumentError,
    ToolError,
    ToolNotImplemented,
    UnknownToolError,
)

__all__ = [
    "MCPToolError", "ToolArgumentError", "ToolError", "ToolNotImplemented", "UnknownToolError",
]
