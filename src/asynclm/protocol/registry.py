"""Dialects by name, and which native tool-call format a chat template speaks.

:func:`get_dialect` builds a dialect from its name (:data:`DIALECTS`), in the chat frame of a
chat template when one is given (:func:`~asynclm.protocol.chat_frames.frame_for_template`: a
pythonic dialect on a Qwen model gets Qwen's tool turn), with results framed as a tool turn
(``framing="turn"``, the default) or inline. :func:`detect_dialect` says which native format a
template writes calls in, ``"cml"`` when none.
"""

from __future__ import annotations

from asynclm.errors import UnknownDialect
from asynclm.protocol.chat_frames import (
    CHATML,
    LLAMA3,
    MISTRAL,
    ChatFrame,
    Framing,
    frame_family,
    get_frame,
)
from asynclm.protocol.cml import CML
from asynclm.protocol.dialect import Dialect
from asynclm.protocol.hermes import HermesDialect
from asynclm.protocol.llama3 import Llama3Dialect
from asynclm.protocol.mistral import MistralDialect
from asynclm.protocol.pythonic import PythonicDialect

__all__ = ["DIALECTS", "UnknownDialect", "detect_dialect", "get_dialect"]

DIALECTS: tuple[str, ...] = ("cml", "hermes", "hermes-bare", "llama3", "mistral", "pythonic")
"""Every dialect name :func:`get_dialect` knows. ``hermes-bare`` is ``hermes`` that also reads
a bare ``{"name": ..., "arguments": ...}`` object at a line start as a call (small Qwen models,
the bundled Qwen2.5-Coder ones among them, write that rather than the ``<tool_call>`` tags)."""

_NATIVE = {
    "hermes": (HermesDialect, CHATML),
    "hermes-bare": (HermesDialect, CHATML),
    "llama3": (Llama3Dialect, LLAMA3),
    "mistral": (MistralDialect, MISTRAL),
    "pythonic": (PythonicDialect, LLAMA3),
}


def get_dialect(
    name: str, *, chat_template: str | None = None, framing: str | None = None,
) -> Dialect:
    """The dialect called ``name`` (one of :data:`DIALECTS`, case-insensitive).

    A native dialect takes its chat frame from ``chat_template`` (a template's source) when
    that is a known family, else its own default (hermes: ChatML, llama3 and pythonic: Llama 3,
    mistral: Mistral); ``framing`` is ``"turn"`` (default) or ``"inline"``. ``cml`` ignores
    both (its results are always inline interrupts). Raises
    :class:`~asynclm.errors.UnknownDialect` (a ``ValueError``) for another name or framing."""
    key = name.strip().lower() if isinstance(name, str) else name
    if framing not in (None, "turn", "inline"):
        raise UnknownDialect(f"unknown framing {framing!r}: use 'turn' or 'inline'")
    if key == "cml":
        return CML
    if key not in _NATIVE:
        raise UnknownDialect(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}")
    cls, default = _NATIVE[key]
    family = frame_family(chat_template)
    frame: ChatFrame = default if family is None else get_frame(family)
    how: Framing = "inline" if framing == "inline" else "turn"
    if key == "hermes-bare":
        return HermesDialect(frame, how, bare_calls=True)
    return cls(frame, how)


def detect_dialect(chat_template: str | None) -> str:
    """The native call format ``chat_template`` (a template's source) writes: ``"hermes"``
    (``<tool_call>``), ``"mistral"`` (``[TOOL_CALLS]``), ``"pythonic"`` (a Python list of calls
    taught in the template: ``[func_name1(``), ``"llama3"`` (``<|python_tag|>``, the ``ipython``
    role or ``"parameters"`` JSON calls under Llama 3 headers); ``"cml"`` when none (or no
    template)."""
    if not chat_template:
        return "cml"
    t = chat_template
    if "<tool_call>" in t:
        return "hermes"
    if "[TOOL_CALLS]" in t:
        return "mistral"
    if "[func_name1(" in t or "<|python_start|>" in t:
        return "pythonic"
    if "<|python_tag|>" in t or "ipython" in t:
        return "llama3"
    return "cml"
