"""Exceptions raised by :mod:`asynclm.tools`.

Hierarchy::

    ToolError(Exception)
    ├── ToolArgumentError(ToolError, ValueError)    arguments failed validation; nothing ran
    ├── UnknownToolError(ToolError, LookupError)    no tool with that name in a Toolbox
    └── ToolNotImplemented(ToolError)               a schema-only tool was invoked without a handler

    MCPToolError(RuntimeError)                      an MCP server's tool answered with an error

Messages are short and meant to be shown to the model as an error result.
Exceptions raised *by a tool's own code* are never wrapped: they propagate unchanged. An MCP
tool's failure is the tool's own, so :class:`MCPToolError` is not a :class:`ToolError`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "MCPToolError", "ToolArgumentError", "ToolError", "ToolNotImplemented", "UnknownToolError",
]


class ToolError(Exception):
    """Base class of every error raised by the tools layer itself."""


class ToolArgumentError(ToolError, ValueError):
    """Arguments of a call did not validate; the tool was not started.

    ``str(err)`` is a one-line, model-readable summary; ``problems`` holds one entry per issue.
    """

    def __init__(self, tool_name: str, problems: Sequence[str]) -> None:
        self.tool_name = tool_name
        self.problems: tuple[str, ...] = tuple(problems) or ("invalid arguments",)
        super().__init__(f"invalid arguments for {tool_name}: " + "; ".join(self.problems))


class UnknownToolError(ToolError, LookupError):
    """A call named a tool that does not exist; ``suggestions`` holds the closest names."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        import difflib

        self.name = name
        self.available: tuple[str, ...] = tuple(available)
        self.suggestions: tuple[str, ...] = tuple(
            difflib.get_close_matches(name, self.available, n=3, cutoff=0.6)
        )
        if self.suggestions:
            hint = "did you mean " + " or ".join(repr(s) for s in self.suggestions) + "?"
        elif self.available:
            shown = ", ".join(self.available[:20])
            more = f", ... ({len(self.available) - 20} more)" if len(self.available) > 20 else ""
            hint = f"available tools: {shown}{more}"
        else:
            hint = "no tools are available"
        super().__init__(f"unknown tool {name!r}; {hint}")

    def __str__(self) -> str:  # LookupError/KeyError-style repr quoting is not wanted here
        return str(self.args[0])


class ToolNotImplemented(ToolError):
    """A tool imported from a schema has no implementation and no handler."""

    def __init__(self, tool_name: str) -> None:
        self.tool_name = tool_name
        super().__init__(f"tool {tool_name} has no implementation")


class MCPToolError(RuntimeError):
    """An MCP server answered a call with an error result (``isError``); the message is the
    text it sent."""
