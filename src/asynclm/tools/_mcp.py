"""Tools served by an MCP server: every tool it lists becomes a :class:`Tool` whose calls go to
the server.

```python
from mcp import Client, StdioServerParameters
from asynclm.tools import from_mcp

async with Client(StdioServerParameters(command="python", args=["server.py"])) as client:
    tools = await from_mcp(client)
    result = await Session(engine, tools).run("...")
```

How an MCP tool maps onto a :class:`Tool`:

- **name**: the server's name as a Python identifier (``get-time`` -> ``get_time``) after an
  optional ``prefix``, since the model writes calls as Python calls; calls use the server's
  name. Two tools that would get the same name are refused (``ValueError``).
- **description, parameters**: the tool's description (or title) and input schema. Arguments
  are validated here, before anything is sent.
- **result**: the structured content when the server sends some (unwrapped when it is the
  ``{"result": x}`` wrapper MCP servers put around a non-object return value), else the text
  of the content blocks (joined by newlines; images, audio and other binary blocks are
  described, never inlined), so ``$id.path`` references work on structured results.
- **errors**: a result flagged ``isError`` raises :class:`MCPToolError` with the server's text;
  the runtime injects it as an error interrupt.
- **progress** notifications go to :meth:`ToolContext.progress` (``"2/3 step 2"``).
- **cancellation** (a timeout, the session ending, ``RunControl.cancel_call``, the model's
  built-in ``cancel(call_id)`` for tools made with ``cancellable=True``): the pending request
  is cancelled and the MCP client (SDK 2.x: ``cancel_on_abandon``) tells the server
  (``notifications/cancelled``), whose handler is cancelled; the connection stays usable.

Needs the ``mcp`` extra (``pip install 'asynclm[mcp]'``, the MCP Python SDK 2.x); this module
itself imports nothing from it: it talks to any client with ``list_tools(cursor=...)`` and
``call_tool(name, arguments, progress_callback=...)`` (``mcp.Client``).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from typing import Any, Protocol

from ._context import ToolContext
from ._errors import MCPToolError
from ._openai import schema_parts
from ._tool import Tool

__all__ = ["from_mcp"]

_CTX = "_asynclm_ctx"  # the call's context is passed positionally under this name


class _Client(Protocol):
    async def list_tools(self, *, cursor: str | None = None) -> Any: ...

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None,
        read_timeout_seconds: float | None = None, progress_callback: Any = None,
    ) -> Any: ...


async def from_mcp(
    client: _Client,
    *,
    prefix: str = "",
    include: Iterable[str] | None = None,
    **options: Any,
) -> list[Tool]:
    """The tools ``client`` (an entered ``mcp.Client``) lists, as :class:`Tool` objects.

    ``prefix`` is put before every name (``github_``), to tell servers apart; ``include``
    keeps only the tools with these server names. ``options`` (``timeout``,
    ``estimated_time``, ``order_by``, ``cancellable``) apply to every tool. Raises ``ValueError`` for a tool
    whose schema cannot be read, for two tools that would get the same name, or for a name in
    ``include`` that the server does not list.
    """
    wanted = None if include is None else set(include)
    listed: list[Any] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        listed += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    if wanted is not None and (unknown := wanted - {t.name for t in listed}):
        raise ValueError(f"the MCP server has no tool {', '.join(sorted(map(repr, unknown)))}"
                         f"; it lists {', '.join(repr(t.name) for t in listed) or 'none'}")
    tools: list[Tool] = []
    server_names: dict[str, str] = {}  # our name -> the server's
    for t in listed:
        if wanted is not None and t.name not in wanted:
            continue
        name = _identifier(prefix + t.name)
        if name in server_names:
            raise ValueError(f"MCP tools {server_names[name]!r} and {t.name!r} would both be "
                             f"called {name!r}; pass include= to keep one")
        server_names[name] = t.name
        tools.append(_tool(client, t, name, options))
    return tools


def _tool(client: _Client, t: Any, name: str, options: dict[str, Any]) -> Tool:
    spec = {"name": name, "description": t.description or t.title or "",
            "parameters": t.input_schema}
    _, description, parameters, validator = schema_parts(spec)
    wrapped = _wraps_result(t.output_schema)
    server_name = t.name

    async def call(ctx: ToolContext, /, **arguments: Any) -> Any:
        async def progress(done: float, total: float | None, message: str | None) -> None:
            count = f"{done:g}/{total:g}" if total else f"{done:g}"
            ctx.progress(f"{count} {message}" if message else count)

        result = await client.call_tool(server_name, arguments, progress_callback=progress)
        if result.is_error:
            raise MCPToolError(_text(result.content) or "the tool failed (no message)")
        data = result.structured_content
        if data is not None:
            return data["result"] if wrapped and isinstance(data, dict) and set(data) == {
                "result"} else data
        return _text(result.content)

    return Tool(
        name=name, description=description, parameters=parameters, validator=validator,
        fn=call, is_async=True, ctx_param=_CTX, positional_only=(_CTX,), **options,
    )


def _identifier(name: str) -> str:
    """``name`` as a Python identifier (what a model can write as a call)."""
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = "_" + ident
    return ident


def _wraps_result(schema: dict[str, Any] | None) -> bool:
    """Whether an output schema is the ``{"result": x}`` wrapper of a non-object return."""
    return isinstance(schema, dict) and set(schema.get("properties") or {}) == {"result"}


def _text(content: Iterable[Any]) -> str:
    """Content blocks as text: text kept, embedded text resources inlined, others described."""
    parts: list[str] = []
    for block in content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and isinstance(getattr(block.resource, "text", None), str):
            parts.append(block.resource.text)
        elif kind == "resource_link":
            parts.append(f"<resource {block.uri}>")
        else:
            mime = getattr(block, "mime_type", None) or getattr(
                getattr(block, "resource", None), "mime_type", None)
            data = getattr(block, "data", None) or getattr(
                getattr(block, "resource", None), "blob", None) or ""
            parts.append(f"<{kind or 'content'}{' ' + mime if mime else ''}, "
                         f"{len(data)} base64 chars>")
    return "\n".join(parts)
