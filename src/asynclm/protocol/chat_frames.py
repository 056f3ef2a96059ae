"""Chat frames: where a native dialect puts results, in the framing of a chat template family.

A result in a chat format belongs in a **tool turn**: the assistant turn is closed, a turn in the
template's own framing holds the result(s), and a new assistant turn opens, which is what the
model saw in training. The framing depends on the chat template family (ChatML/Qwen, Hermes'
ChatML with a ``tool`` role, Llama 3 headers, Mistral ``[INST]``), not on the call syntax:
pythonic calls on a Qwen model still get Qwen's tool turn. A :class:`ChatFrame` holds the strings
of one family; :func:`frame_for_template` picks the family from a chat template's source.

Turn framing (``framing="turn"``, the default) of one batch of results::

    turn_close + tool_open + item + item_sep + item ... + tool_close + assistant_open

where each ``item`` is ``item_open + payload_pre + <escaped payload> + payload_post +
item_close``. For Qwen2.5's template (two results)::

    <|im_end|>\\n<|im_start|>user\\n<tool_response>\\nA\\n</tool_response>\\n<tool_response>\\nB
    \\n</tool_response><|im_end|>\\n<|im_start|>assistant\\n

exactly as the template renders consecutive ``tool`` messages after an assistant message with
tool calls. The runtime rolls the model's end-of-turn token back before injecting (an end of
generation with calls pending is a trap), so ``turn_close`` writes it again, in the template's
form (``<|im_end|>\\n``).

Inline framing (``framing="inline"``): each result is written inside the assistant turn,
``inline_open + inline_pre + <escaped payload> + inline_post + inline_close``, and the turn
goes on. For ChatML and Llama 3 that is ``<tool_response>\\n...\\n</tool_response>\\n`` (Llama 3
templates have no in-turn result markup of their own: the Hermes-style tags are used, a
documented choice); for Mistral it is the ``[TOOL_RESULTS]`` item without the ``</s>`` before
it (Mistral's templates already write results into the assistant's flow, with no new turn).

The split between ``payload_pre``/``payload_post`` and the markup matters for tokenization: the
runtime tokenizes markup and payload separately, so characters that a byte-level BPE pre-token
would join to the payload (the newline before ``</tool_response>``, the space after Mistral's
``"content":``) travel with the payload, and the tokens equal those of the whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CHATML", "FRAMES", "Framing", "HERMES_TOOL", "LLAMA3", "MISTRAL", "ChatFrame",
    "frame_family", "frame_for_template", "get_frame",
]

Framing = Literal["turn", "inline"]
"""Where results go: a tool turn of their own (``turn``) or inside the assistant turn."""


@dataclass(frozen=True, slots=True)
class ChatFrame:
    """The strings of one chat template family (see the module docstring for how they are
    assembled). ``{head}`` in ``item_close`` is replaced by the item's head (Mistral's call id).

    ``end_of_turn``: what ends the assistant's turn (an end-of-generation token in a real model;
    the first one is the dialects' :meth:`render_trap`). ``turn_openers``: strings only the
    runtime may write (a new turn), lower-case, rolled back when the model writes them.
    ``result_tags``: ``(open, close, lead, trail)`` of a result as found in a transcript (the
    payload is the text between ``open`` and ``close`` minus ``lead`` and ``trail`` when
    present). ``special``: the frame's strings a simulator may treat as single tokens."""

    family: str
    end_of_turn: tuple[str, ...]
    turn_close: str
    tool_open: str
    item_open: str
    payload_pre: str
    payload_post: str
    item_close: str
    item_sep: str
    tool_close: str
    assistant_open: str
    inline_open: str
    inline_pre: str
    inline_post: str
    inline_close: str
    turn_openers: tuple[str, ...]
    result_tags: tuple[tuple[str, str, str, str], ...]
    special: tuple[str, ...]

    def item_parts(self, head: str, *, framing: Framing) -> tuple[str, str, str, str]:
        """``(open, pre, post, close)`` of one item: the markup before the payload, the plain
        characters that go with the payload before and after it, the markup after it."""
        if framing == "turn":
            return (self.item_open, self.payload_pre, self.payload_post,
                    self.item_close.replace("{head}", head))
        return (self.inline_open, self.inline_pre, self.inline_post,
                self.inline_close.replace("{head}", head))

    def item(self, head: str, *, framing: Framing) -> tuple[str, str]:
        """The text before and after one escaped payload (``pre`` and ``post`` included)."""
        o, pre, post, c = self.item_parts(head, framing=framing)
        return o + pre, post + c


_TOOL_RESPONSE = ("<tool_response>", "</tool_response>", "\n", "\n")

CHATML = ChatFrame(
    family="chatml",
    end_of_turn=("<|im_end|>", "<|endoftext|>"),
    turn_close="<|im_end|>\n",
    tool_open="<|im_start|>user",
    item_open="\n<tool_response>\n",
    payload_pre="",
    payload_post="\n",
    item_close="</tool_response>",
    item_sep="",
    tool_close="<|im_end|>\n",
    assistant_open="<|im_start|>assistant\n",
    inline_open="<tool_response>\n",
    inline_pre="",
    inline_post="\n",
    inline_close="</tool_response>\n",
    turn_openers=("<|im_start|>",),
    result_tags=(_TOOL_RESPONSE,),
    special=("<|im_end|>", "<|im_start|>", "<|endoftext|>", "<tool_response>",
             "</tool_response>"),
)
"""Qwen2.5 / Qwen3 (ChatML): results in a ``user`` turn, one ``<tool_response>`` block each."""

HERMES_TOOL = ChatFrame(
    family="chatml-tool",
    end_of_turn=("<|im_end|>", "<|end_of_text|>"),
    turn_close="<|im_end|>\n",
    tool_open="<|im_start|>tool\n",
    item_open="<tool_response>\n",
    payload_pre="",
    payload_post="\n",
    item_close="</tool_response>",
    item_sep="\n",
    tool_close="<|im_end|>",
    assistant_open="<|im_start|>assistant\n",
    inline_open="<tool_response>\n",
    inline_pre="",
    inline_post="\n",
    inline_close="</tool_response>\n",
    turn_openers=("<|im_start|>",),
    result_tags=(_TOOL_RESPONSE,),
    special=("<|im_end|>", "<|im_start|>", "<|end_of_text|>", "<tool_response>",
             "</tool_response>"),
)
"""NousResearch Hermes 2 Pro / Hermes 3 (ChatML with a ``tool`` role; as their templates write
it, no newline after the tool turn's ``<|im_end|>``)."""

LLAMA3 = ChatFrame(
    family="llama3",
    end_of_turn=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    turn_close="<|eot_id|>",
    tool_open="",
    item_open="<|start_header_id|>ipython<|end_header_id|>\n\n",
    payload_pre="",
    payload_post="",
    item_close="<|eot_id|>",
    item_sep="",
    tool_close="",
    assistant_open="<|start_header_id|>assistant<|end_header_id|>\n\n",
    inline_open="<tool_response>\n",
    inline_pre="",
    inline_post="\n",
    inline_close="</tool_response>\n",
    turn_openers=("<|start_header_id|>",),
    result_tags=(("<|start_header_id|>ipython<|end_header_id|>", "<|eot_id|>", "\n\n", ""),
                 _TOOL_RESPONSE),
    special=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|start_header_id|>",
             "<|end_header_id|>", "<tool_response>", "</tool_response>"),
)
"""Llama 3.1 / 3.2 / 3.3: one ``ipython`` turn per result (``<|eot_id|>``-terminated), then the
assistant header. The payload is written as is: the template's text for a tool message whose
content is that JSON value (a mapping; the template would quote a *string* content with
``tojson``), which is what the native dialects' payloads are (JSON objects)."""

MISTRAL = ChatFrame(
    family="mistral",
    end_of_turn=("</s>",),
    turn_close="</s>",
    tool_open="",
    item_open='[TOOL_RESULTS]{"content":',
    payload_pre=" ",
    payload_post=",",
    item_close=' "call_id": "{head}"}[/TOOL_RESULTS]',
    item_sep="",
    tool_close="",
    assistant_open="",
    inline_open='[TOOL_RESULTS]{"content":',
    inline_pre=" ",
    inline_post=",",
    inline_close=' "call_id": "{head}"}[/TOOL_RESULTS]',
    turn_openers=("[inst]",),
    result_tags=(("[TOOL_RESULTS]", "[/TOOL_RESULTS]", "", ""),),
    special=("</s>", "[INST]", "[/INST]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
)
"""Mistral Nemo (tekken, v3 tool calls): ``</s>`` ends the calls, then one
``[TOOL_RESULTS]{"content": <payload>, "call_id": "<id>"}[/TOOL_RESULTS]`` per result (the
payload is inserted as is, as the template's ``content|string`` does); no new turn opens."""

FRAMES: dict[str, ChatFrame] = {
    f.family: f for f in (CHATML, HERMES_TOOL, LLAMA3, MISTRAL)
}
"""Every frame by family name."""


def get_frame(family: str) -> ChatFrame:
    """The frame of ``family`` (a key of :data:`FRAMES`); ``KeyError`` names the known ones."""
    try:
        return FRAMES[family]
    except KeyError:
        raise KeyError(f"unknown chat frame {family!r}; known: {sorted(FRAMES)}") from None


def frame_family(chat_template: str | None) -> str | None:
    """The frame family a chat template's source belongs to, or ``None`` (unknown or no
    template): ChatML with a ``tool`` role (``<|im_start|>tool``: Hermes) before plain ChatML
    (``<|im_start|>``), Llama 3 headers (``<|start_header_id|>``), Mistral (``[INST]``)."""
    if not chat_template:
        return None
    t = chat_template
    if "<|im_start|>" in t:
        return "chatml-tool" if "<|im_start|>tool" in t else "chatml"
    if "<|start_header_id|>" in t:
        return "llama3"
    if "[INST]" in t:
        return "mistral"
    return None


def frame_for_template(chat_template: str | None, default: ChatFrame = CHATML) -> ChatFrame:
    """The :class:`ChatFrame` of a chat template's source (:func:`frame_family`), ``default``
    when it is none of the known families."""
    family = frame_family(chat_template)
    return default if family is None else FRAMES[family]
