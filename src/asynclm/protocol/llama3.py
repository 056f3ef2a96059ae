"""The ``llama3`` dialect: Llama 3.1 / 3.2 / 3.3 JSON tool calls.

The model writes ``{"name": "f", "parameters": {...}}`` at the start of its turn (or of a line),
or after ``<|python_tag|>``; results come back as ``ipython`` turns:
``<|eot_id|><|start_header_id|>ipython<|end_header_id|>\\n\\n<payload><|eot_id|>
<|start_header_id|>assistant<|end_header_id|>\\n\\n`` (:data:`~asynclm.protocol.chat_frames.
LLAMA3`, one ``ipython`` turn per result, as the template renders consecutive tool messages).

* **Parsing**: a call block opens at ``<|python_tag|>`` or at a line start where ``{`` is
  followed by ``"name":`` (held back until that is certain; see
  :class:`~asynclm.protocol.native.NativeParser` for what counts as a line start, and
  ``mark_line_start``); it ends when the object's braces balance. ``"arguments"`` is accepted
  for ``"parameters"``. Several calls: one object after another (each at a line start).
* **Ids**: none in the format; ``render_call`` ignores ``id``; payloads echo the call
  nested, ``{"call": {"name": "f", "parameters": {...}}, "result": ...}``, so that a payload
  the model copies back is not a call. The payload is a JSON object, which is what the
  template writes for a tool message whose content is a mapping.
* **Trap**: ending the turn (``<|eot_id|>``/``<|eom_id|>``) with calls pending; ``render_trap``
  returns ``<|eot_id|>``.
* **Forged**: ``<|start_header_id|>`` (any header: the model opening a turn, ``ipython``
  included) and ``<tool_response`` (the inline frame).
* **System prompt**: the tool section that Llama 3.1's template writes into the system message
  when ``tools_in_user_message`` is false (the instructions, then each tool as indented JSON),
  then the short asynclm rules. The template also adds ``Environment: ipython`` to the system
  header when given tools, which a system message cannot write: an engine that renders the
  template itself (with ``tools``) gets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from asynclm.protocol.chat_frames import LLAMA3, ChatFrame, Framing
from asynclm.protocol.native import (
    CallSyntax,
    LineOpener,
    NativeDialect,
    Shape,
    dump_json,
    openai_tool_lines,
    read_json_or_python,
)

__all__ = ["LLAMA3_SYNTAX", "Llama3Dialect"]

PYTHON_TAG = "<|python_tag|>"

LLAMA3_SYNTAX = CallSyntax(
    opener=PYTHON_TAG, shape=Shape.OBJECT, closer=None, line_opener=LineOpener.JSON_OBJECT,
    python=False, read=read_json_or_python,
)
"""``{"name": ..., "parameters": ...}`` at a line start, or after ``<|python_tag|>``."""

LLAMA3_TOOLS_HEAD = (
    "You have access to the following functions. To call a function, please respond with JSON "
    "for a function call."
    'Respond in the format {"name": function name, "parameters": dictionary of argument name '
    'and its value}.'
    "Do not use variables.\n\n"
)


class Llama3Dialect(NativeDialect):
    """Llama 3 JSON tool calls (see the module docstring) in ``frame`` (default: Llama 3
    headers), results framed as ``ipython`` turns (``framing="turn"``) or inline."""

    _name = "llama3"
    syntax = LLAMA3_SYNTAX
    args_key = "parameters"
    _syntax_markers = (PYTHON_TAG,)

    def __init__(self, frame: ChatFrame = LLAMA3, framing: Framing = "turn") -> None:
        super().__init__(frame, framing)

    def close_call(self) -> str:
        """``}``: the object the model left open (the parser has already ended the block)."""
        return "}"

    def call_body(self, raw: str) -> str:
        """The JSON object, without ``<|python_tag|>`` and surrounding blanks."""
        body = raw.strip()
        if body.startswith(PYTHON_TAG):
            body = body[len(PYTHON_TAG):]
        return body.strip()

    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """``{"name": fn, "parameters": {...}}`` as the template writes a call (no
        ``<|python_tag|>``; ``id`` ignored; positional arguments: ``ValueError``)."""
        if pos:
            raise ValueError("llama3 calls have no positional arguments")
        if not isinstance(fn, str) or not fn:
            raise ValueError("function name must be a non-empty string")
        guard = self.escape_markers.all() + self.escape_markers.forbidden
        return (f'{{"name": {dump_json(fn, guard=guard)}, '
                f'"parameters": {dump_json(dict(args), guard=guard)}}}')

    def format_tools(self, tools: str) -> str:
        """The tool list as the template writes it: each tool as ``tojson(indent=4)``,
        separated by a blank line (``tools``: ``Toolbox.describe()``'s text; anything else
        comes back unchanged)."""
        lines = openai_tool_lines(tools, indent=4)
        return tools if lines is None else "\n\n".join(lines)

    def tool_section(self, tools: str) -> str:
        """The template's tool section (system-message form): the instructions, then the
        tools (:meth:`format_tools`) and a blank line."""
        return LLAMA3_TOOLS_HEAD + self.format_tools(tools) + "\n\n"

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """:meth:`tool_section` and the short asynclm rules (results come as ``ipython``
        turns)."""
        return self.tool_section(tools) + self._rules(futures)
