"""The system prompt: the session dialect's protocol section (how to call, wait and read
results; see :meth:`~asynclm.protocol.Dialect.system_prompt`) with the tool list.

The prompt is made of trusted and untrusted text (:func:`system_parts`): the dialect's own rules
and examples are markup the runtime vouches for (a native dialect's ``<tool_call>`` must reach
the model as its special token, as the model's chat template would write it), while the tools'
descriptions and any caller's ``extra`` text are untrusted (tokenized with special tokens off:
a description spelling ``<|im_end|>`` stays text). The session carries the split into the chat
prompt (``ChatMessage.parts``, :mod:`asynclm.engines.base`)."""

from __future__ import annotations

from collections.abc import Sequence

from asynclm.protocol import DEFAULT_MARKERS, CmlDialect, Dialect, Markers, Segment
from asynclm.protocol.cml import CML_FUTURES_RULES
from asynclm.tools import Toolbox

__all__ = ["FUTURES_RULES", "join_parts", "system_parts", "system_prompt"]

FUTURES_RULES = CML_FUTURES_RULES
"""CML's futures rules (kept here for existing imports; see :mod:`asynclm.protocol.cml`)."""

_TOOLS_SLOT = "\ue002asynclm-tools\ue003"
"""Stands for the tool list while the dialect writes its prompt (private-use characters: no
dialect writes them), so that the list can be found again and kept untrusted."""


def system_parts(
    tools: Toolbox, *, markers: Markers = DEFAULT_MARKERS, extra: str = "",
    futures: bool = False, dialect: Dialect | None = None,
) -> tuple[Segment, ...]:
    """:func:`system_prompt` as segments: the dialect's text trusted, its rendering of the tool
    list and ``extra`` untrusted. The tool list is found by writing the prompt a second time
    with a placeholder for it: what the two prompts share before and after the placeholder is
    the dialect's own text, the rest is the tools as the dialect wrote them (verbatim for CML,
    one OpenAI-shaped line per tool for hermes). A dialect whose own text depends on the tools
    gets its whole prompt untrusted (safe, only less faithful).

    A boundary between two segments is placed after the line breaks that follow it, where
    byte-level BPE tokenizers split anyway (``]\\n\\n`` is one pre-token), so that tokenizing
    the segments one by one gives the tokens of the whole text."""
    if dialect is None:
        dialect = CmlDialect(markers)
    listing = tools.describe(estimated=True)
    text = dialect.system_prompt(listing, futures=futures)
    frame = dialect.system_prompt(_TOOLS_SLOT, futures=futures)
    before, slot, after = frame.partition(_TOOLS_SLOT)
    if (slot and _TOOLS_SLOT not in after and len(before) + len(after) <= len(text)
            and text.startswith(before) and text.endswith(after)):
        parts = [Segment(before, trusted=True),
                 Segment(text[len(before):len(text) - len(after)], trusted=False),
                 Segment(after, trusted=True)]
    else:
        parts = [Segment(text, trusted=False)]
    if extra:
        parts.append(Segment(f"\n\n{extra}", trusted=False))
    return join_parts(parts)


def system_prompt(
    tools: Toolbox, *, markers: Markers = DEFAULT_MARKERS, extra: str = "",
    futures: bool = False, dialect: Dialect | None = None,
) -> str:
    """The dialect's rules and worked examples, and the tools as JSON with estimated times;
    with ``futures``, the futures rules and an example after the tools; ``extra`` last.
    ``dialect`` defaults to CML with ``markers``."""
    parts = system_parts(tools, markers=markers, extra=extra, futures=futures, dialect=dialect)
    return "".join(p.text for p in parts)


def join_parts(parts: Sequence[Segment]) -> tuple[Segment, ...]:
    """``parts`` without empty pieces, neighbours of equal trust merged, and each boundary
    between trusted and untrusted text moved past the line breaks that begin the next piece
    (see :func:`system_parts`)."""
    out: list[Segment] = []
    for seg in parts:
        text = seg.text
        if out and out[-1].trusted != seg.trusted:
            breaks = len(text) - len(text.lstrip("\r\n"))
            if breaks:
                out[-1] = Segment(out[-1].text + text[:breaks], out[-1].trusted)
                text = text[breaks:]
        if not text:
            continue
        if out and out[-1].trusted == seg.trusted:
            out[-1] = Segment(out[-1].text + text, seg.trusted)
        else:
            out.append(Segment(text, seg.trusted))
    return tuple(out)
