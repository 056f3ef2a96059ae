"""The ``pythonic`` dialect: Llama 3.2 / Llama 4 style calls, a Python list of calls.

The model writes ``[f(a=1), g(b="x")]`` at the start of a line (or of its turn); each call
is parsed by the safe body parser (:func:`~asynclm.protocol.body.parse_body`: nothing is ever
evaluated) and reported as soon as its parentheses close, while the model may still be
writing the next one (asynchronous start). Results go in the chat frame of the model's template
(default Llama 3's ``ipython`` turns; on a Qwen model, Qwen's ``<tool_response>`` turn).

* **Parsing**: a block opens at ``[`` at a line start when an identifier (dotted names too)
  and ``(`` follow (held back until that is certain: ``[link](url)`` and ``[1, 2]`` stay
  text); it ends at the list's ``]``. Strings are Python's (``'`` and ``"``, escapes).
  Positional arguments are accepted. A critical section runs from ``[`` to ``]``.
* **Ids**: none; ``render_call`` ignores ``id``; payloads echo the call as JSON
  (``{"name": "f", "arguments": {...}, "result": ...}``).
* **Trap**: ending the turn with calls pending; ``render_trap`` is the frame's end of turn.
* **Forged**: the frame's result frames and turn openers.
* **System prompt**: a short instruction in the spirit of Llama 3.2's zero-shot tool prompt
  (the list format, then the functions as JSON, one per line), then the asynclm rules.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from asynclm.protocol.chat_frames import LLAMA3, ChatFrame, Framing
from asynclm.protocol.markup import format_call
from asynclm.protocol.native import (
    CallSyntax,
    LineOpener,
    NativeDialect,
    Shape,
    read_json_or_python,
    tool_entries,
)

__all__ = ["PYTHONIC_SYNTAX", "PythonicDialect"]

PYTHONIC_SYNTAX = CallSyntax(
    opener=None, shape=Shape.LIST, closer=None, line_opener=LineOpener.PYTHON_LIST,
    python=True, read=read_json_or_python,
)
"""``[f(a=1), g(b=2)]`` at a line start."""

PYTHONIC_TOOLS_HEAD = (
    "To call functions, write a Python list of calls on its own line, in the format "
    "[func_name1(param1=value1, param2=value2), func_name2(param=value)]. Use only the "
    "functions below, with their exact parameter names.\n\n"
    "Here is a list of functions in JSON format that you can invoke:\n"
)


class PythonicDialect(NativeDialect):
    """Pythonic tool calls (see the module docstring) in ``frame`` (default: Llama 3
    headers), results framed as a tool turn (``framing="turn"``) or inline."""

    _name = "pythonic"
    syntax = PYTHONIC_SYNTAX

    def __init__(self, frame: ChatFrame = LLAMA3, framing: Framing = "turn") -> None:
        super().__init__(frame, framing)

    def close_call(self) -> str:
        """``]``: ends the list the model left open."""
        return "]"

    def call_body(self, raw: str) -> str:
        """One call, ``f(a=1)``, without the list's brackets and commas."""
        return raw.strip().lstrip("[").strip().rstrip(",]").strip()

    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """``[fn(a=1, b="x")]`` (:func:`~asynclm.protocol.markup.format_call`; ``id``
        ignored). ``ValueError`` when ``fn`` or a key is not an identifier (no Python call
        can write it)."""
        body = format_call(fn, args, pos, markers=self.escape_markers)
        if body.startswith("{"):
            raise ValueError(f"a pythonic call needs identifier names: {fn!r}, {list(args)}")
        return f"[{body}]"

    def format_tools(self, tools: str) -> str:
        """The functions, one JSON object per line (``tools``: ``Toolbox.describe()``'s text;
        anything else comes back unchanged)."""
        entries = tool_entries(tools)
        if entries is None:
            return tools
        return "\n".join(json.dumps(e, ensure_ascii=False) for e in entries)

    def tool_section(self, tools: str) -> str:
        """The instruction and the functions (:meth:`format_tools`)."""
        return PYTHONIC_TOOLS_HEAD + self.format_tools(tools)

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """:meth:`tool_section`, a blank line and the short asynclm rules."""
        return self.tool_section(tools) + "\n\n" + self._rules(futures)
