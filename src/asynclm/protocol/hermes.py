"""The ``hermes`` dialect: Qwen2.5 / Qwen3 / Hermes tool calls.

The model writes ``<tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>`` (one call
per block, as many blocks as it likes, before any result); results come back in the frame's
tool turn, for Qwen's ChatML ``<|im_end|>\\n<|im_start|>user\\n<tool_response>\\n...\\n
</tool_response><|im_end|>\\n<|im_start|>assistant\\n`` (:mod:`~asynclm.protocol.chat_frames`).

* **Parsing**: :class:`~asynclm.protocol.native.NativeParser` with a tagged body, read by
  :func:`~asynclm.protocol.body.parse_body` (the JSON object; ``"parameters"`` for
  ``"arguments"``, arguments as a JSON string, and ``f(a=1)`` are accepted too); a block is a
  critical section from ``<tool_call>`` to ``</tool_call>``.
* **Ids**: the format has none; :meth:`HermesDialect.render_call` ignores ``id``, the runtime
  names calls (``ids="assign"``) and each payload echoes its call
  (:class:`~asynclm.protocol.native.NativeDialect` documents the wording).
* **Trap**: ending the turn (``<|im_end|>``, the end-of-generation token) with calls pending;
  :meth:`render_trap` returns ``<|im_end|>`` for scripted models.
* **Forged**: ``<tool_response`` and, whatever the framing, ``<|im_start|>`` (a new turn).
* **System prompt**: the tool section exactly as Qwen's template writes it when given tools
  (``# Tools ... <tools>`` one OpenAI-shaped tool per line ``</tools> ... <tool_call>``), then
  a short asynclm addition (calls run in the background, results come as tool turns, end the
  turn to wait).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from asynclm.protocol.chat_frames import CHATML, ChatFrame, Framing
from asynclm.protocol.native import (
    CallSyntax,
    LineOpener,
    NativeDialect,
    Shape,
    TaggedArgumentsReader,
    dump_json,
    openai_tool_lines,
    read_json_or_python,
)

__all__ = ["HERMES_BARE_SYNTAX", "HERMES_SYNTAX", "HermesDialect"]

OPEN, CLOSE = "<tool_call>", "</tool_call>"

HERMES_SYNTAX = CallSyntax(
    opener=OPEN, shape=Shape.TAGGED, closer=CLOSE, line_opener=None, python=False,
    read=read_json_or_python,
)
"""``<tool_call>`` body ``</tool_call>``."""

HERMES_BARE_SYNTAX = replace(HERMES_SYNTAX, line_opener=LineOpener.JSON_OBJECT)
"""Also a bare ``{"name": ...}`` object at a line start (``bare_calls=True``)."""

QWEN_TOOLS_HEAD = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
QWEN_TOOLS_TAIL = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)


class HermesDialect(NativeDialect):
    """Hermes/Qwen tool calls (see the module docstring) in ``frame`` (default: Qwen's
    ChatML), results framed as a tool turn (``framing="turn"``) or inline. Immutable and
    hashable.

    ``bare_calls``: also read a bare JSON call object (``{"name": "f", "arguments": {...}}``
    without the tags) at a line start, as small Qwen models often write it (off by default: a
    JSON answer whose first key is ``"name"`` would then be read as a call)."""

    _name = "hermes"
    syntax = HERMES_SYNTAX
    _syntax_markers = (OPEN, CLOSE)

    def __init__(self, frame: ChatFrame = CHATML, framing: Framing = "turn", *,
                 bare_calls: bool = False) -> None:
        super().__init__(frame, framing)
        self.bare_calls: Final = bare_calls
        if bare_calls:
            self.syntax = HERMES_BARE_SYNTAX
            self._name = "hermes-bare"

    # -- what the model writes -------------------------------------------------------------
    def close_call(self) -> str:
        """``\\n</tool_call>``."""
        return "\n" + CLOSE

    def call_body(self, raw: str) -> str:
        """The JSON between ``<tool_call>`` and ``</tool_call>`` (a bare call: the object),
        stripped."""
        body = raw.strip()
        if body.startswith(OPEN):
            body = body[len(OPEN):]
        if body.endswith(CLOSE):
            body = body[: -len(CLOSE)]
        return body.strip()

    def arguments_reader(self) -> TaggedArgumentsReader:
        """Reads a block's arguments while they are written
        (:class:`~asynclm.protocol.native.TaggedArgumentsReader` over the JSON body)."""
        return TaggedArgumentsReader(OPEN, CLOSE)

    # -- what the runtime (or a scripted model) writes ---------------------------------------
    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """``<tool_call>\\n{"name": fn, "arguments": {...}}\\n</tool_call>``, as Qwen's template
        writes a call (``id`` is ignored: the format has none; positional arguments cannot be
        written: ``ValueError``). A marker inside a string is written with a ``\\u`` escape."""
        if pos:
            raise ValueError("hermes calls have no positional arguments")
        if not isinstance(fn, str) or not fn:
            raise ValueError("function name must be a non-empty string")
        guard = self.escape_markers.all() + self.escape_markers.forbidden
        body = (f'{{"name": {dump_json(fn, guard=guard)}, '
                f'"arguments": {dump_json(dict(args), guard=guard)}}}')
        return f"{OPEN}\n{body}\n{CLOSE}"

    # -- the system prompt ----------------------------------------------------------------------
    def format_tools(self, tools: str) -> str:
        """The tool list as the template writes it: one OpenAI-shaped tool per line
        (``tools``: the text of ``Toolbox.describe()``; anything else comes back unchanged).
        ``system_prompt(format_tools(t)) == system_prompt(t)``: a caller may format the list
        first and find it verbatim in the prompt."""
        lines = openai_tool_lines(tools)
        return tools if lines is None else "\n".join(lines)

    def tool_section(self, tools: str) -> str:
        """The tool section as Qwen's template writes it when given these tools
        (:meth:`format_tools`)."""
        return QWEN_TOOLS_HEAD + "\n" + self.format_tools(tools) + QWEN_TOOLS_TAIL

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """:meth:`tool_section`, a blank line and the short asynclm rules. A system message
        placed before it (``"<your text>\\n\\n"``) gives Qwen's template's own text for that
        system message and these tools."""
        return self.tool_section(tools) + "\n\n" + self._rules(futures)
