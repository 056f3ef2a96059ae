"""The ``mistral`` dialect: Mistral Nemo style tool calls (``[TOOL_CALLS]`` JSON lists).

The model writes ``[TOOL_CALLS][{"name": "f", "arguments": {...}, "id": "abc123def"}, ...]``
then ``</s>``; results come back as ``</s>[TOOL_RESULTS]{"content": <payload>, "call_id":
"abc123def"}[/TOOL_RESULTS]`` (one block per result, no new turn: :data:`~asynclm.protocol.
chat_frames.MISTRAL`), exactly as Mistral Nemo's template renders tool messages.

* **Parsing**: a block opens at ``[TOOL_CALLS]``, then a JSON list; each element is reported
  as soon as its braces close (the model may still be writing the next one). A critical section
  runs from ``[TOOL_CALLS]`` to the list's ``]``.
* **Ids**: the format carries them. A call's ``"id"`` is its :attr:`Call.id` when it is a valid
  id (recent templates use 9 alphanumeric characters), else its ``written_id`` (the runtime then
  names it); the result's ``call_id`` is the delivery's head (the runtime's id for the call).
  ``render_call`` writes ``id`` when given. Payloads need no echo for calls the model named.
* **Trap**: ending the turn (``</s>``) with calls pending; ``render_trap`` returns ``</s>``.
* **Forged**: ``[tool_results]`` and ``[inst]`` (ASCII case-insensitive).
* **System prompt**: the ``[AVAILABLE_TOOLS][...][/AVAILABLE_TOOLS]`` block as Nemo's template
  writes it, then the short asynclm rules. (The template puts that block before the last user
  message; as a system prompt it sits inside the ``[INST]`` with the system message, a
  documented difference.) Newer Mistral formats (``[TOOL_CALLS]name[ARGS]{...}``, Mistral
  Small 3.2) are not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from asynclm.errors import BodyError
from asynclm.protocol.body import parse_body
from asynclm.protocol.chat_frames import MISTRAL, ChatFrame, Framing
from asynclm.protocol.ids import is_call_id
from asynclm.protocol.native import (
    CallSyntax,
    NativeDialect,
    ParsedCall,
    Shape,
    dump_json,
    tool_entries,
)

__all__ = ["MISTRAL_SYNTAX", "MistralDialect", "read_mistral_call"]

OPEN = "[TOOL_CALLS]"


def read_mistral_call(text: str) -> ParsedCall:
    """One element of a ``[TOOL_CALLS]`` list: its id (valid, else as ``written_id``) and its
    body (:func:`~asynclm.protocol.body.parse_body`)."""
    body = parse_body(text)
    ident: str | None = None
    written: str | None = None
    try:
        obj = json.loads(text)
    except ValueError as e:  # parse_body accepted it, so this should not happen
        raise BodyError(f"invalid JSON: {e}") from None
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(raw_id, str) and raw_id:
        if is_call_id(raw_id):
            ident = raw_id
        else:
            written = raw_id
    return ident, written, body


MISTRAL_SYNTAX = CallSyntax(
    opener=OPEN, shape=Shape.LIST, closer=None, line_opener=None, python=False,
    read=read_mistral_call,
)
"""``[TOOL_CALLS]`` and a JSON list of calls."""

_ITEM = re.compile(r'\A\{"content": ?(?P<p>.*), "call_id": "(?P<id>[^"]*)"\}\Z', re.DOTALL)


class MistralDialect(NativeDialect):
    """Mistral Nemo tool calls (see the module docstring) in ``frame`` (default: Mistral),
    results framed after ``</s>`` (``framing="turn"``) or inline (without the ``</s>``)."""

    _name = "mistral"
    syntax = MISTRAL_SYNTAX
    _syntax_markers = (OPEN, "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]")

    def __init__(self, frame: ChatFrame = MISTRAL, framing: Framing = "turn") -> None:
        super().__init__(frame, framing)

    def _read_item(self, content: str) -> tuple[str | None, str]:
        """``{"content": P, "call_id": "X"}`` -> ``(X, P)`` (``X`` None unless a valid id)."""
        m = _ITEM.match(content)
        if m is None:
            return None, content
        ident = m.group("id")
        return (ident if is_call_id(ident) else None), m.group("p")

    def close_call(self) -> str:
        """``]``: ends the list the model left open."""
        return "]"

    def call_body(self, raw: str) -> str:
        """One call's JSON object, without ``[TOOL_CALLS]``, the list's brackets and commas."""
        body = raw.strip()
        if body.startswith(OPEN):
            body = body[len(OPEN):]
        return body.strip().lstrip("[").strip().rstrip(",]").strip()

    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """``[TOOL_CALLS][{"name": fn, "arguments": {...}, "id": id}]`` (without ``"id"``
        when ``id`` is None; ``ValueError`` for an invalid id or positional arguments)."""
        if pos:
            raise ValueError("mistral calls have no positional arguments")
        if not isinstance(fn, str) or not fn:
            raise ValueError("function name must be a non-empty string")
        if id is not None and not is_call_id(id):
            raise ValueError(f"invalid call id {id!r}")
        guard = self.escape_markers.all() + self.escape_markers.forbidden
        body = (f'{{"name": {dump_json(fn, guard=guard)}, '
                f'"arguments": {dump_json(dict(args), guard=guard)}')
        body += f', "id": "{id}"}}' if id is not None else "}"
        return f"{OPEN}[{body}]"

    def format_tools(self, tools: str) -> str:
        """The tool list as Nemo's template writes it, ``[{"type": "function", "function":
        {...}}, ...]`` (string values between quotes as they are, other values as JSON;
        ``tools``: ``Toolbox.describe()``'s text; anything else comes back unchanged)."""
        entries = tool_entries(tools)
        if entries is None:
            return tools
        parts = []
        for e in entries:
            fn = e["function"] if isinstance(e.get("function"), dict) else e
            fields = [
                f'"{k}": "{v}"' if isinstance(v, str)
                else f'"{k}": {json.dumps(v, ensure_ascii=False)}'
                for k, v in fn.items() if k != "return"
            ]
            parts.append('{"type": "function", "function": {' + ", ".join(fields) + "}}")
        return "[" + ", ".join(parts) + "]"

    def tool_section(self, tools: str) -> str:
        """``[AVAILABLE_TOOLS]`` :meth:`format_tools` ``[/AVAILABLE_TOOLS]``."""
        return f"[AVAILABLE_TOOLS]{self.format_tools(tools)}[/AVAILABLE_TOOLS]"

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """:meth:`tool_section`, a blank line and the short asynclm rules."""
        return self.tool_section(tools) + "\n\n" + self._rules(futures)

    def _rules(self, futures: bool) -> str:
        text = (
            "Calls run in the background. You may write several calls before any result; give "
            "each call a unique id of 9 letters and digits. Results arrive later with their "
            "call_id, in any order. To wait for results, end your turn. Never write a result "
            "yourself. When you have every result you need, answer the user."
        )
        if futures:
            text += ("\nTo pass a result you do not have yet to another call, write the string "
                     '"$<id>" (or "$<id>.key") as the argument: the system runs that call once '
                     "the result is in. Never guess a value.")
        return text
