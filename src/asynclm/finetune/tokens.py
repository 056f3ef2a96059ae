"""Turning a training example into token ids and labels (ChatML, the Qwen2.5 chat format).

Each message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n``. Labels are ``-100`` (no loss)
everywhere except on what the model writes: inside assistant messages, the ``train`` spans (its
calls, traps and prose) and the closing ``<|im_end|>``. System and user messages, the
``<|im_start|>assistant\\n`` header, interrupts and user interrupts carry no loss.

Every piece is tokenized on its own, as at inference: the runtime appends interrupts as separately
tokenized pieces, and the model samples its own text after them. Works with any tokenizer that has
``encode(text, add_special_tokens=False)`` (a Hugging Face tokenizer); torch is not needed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["IGNORE", "Encoded", "encode_example", "pieces"]

IGNORE = -100


class _Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


Encoded = tuple[list[int], list[int]]


def pieces(example: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """The example as ChatML text pieces, each marked trainable or not."""
    out: list[tuple[str, bool]] = []
    for m in example["messages"]:
        role, content = m["role"], m["content"]
        out.append((f"<|im_start|>{role}\n", False))
        if role != "assistant":
            out.append((content, False))
        else:
            at = 0
            for a, b in m.get("train", []):
                if a > at:
                    out.append((content[at:a], False))
                out.append((content[a:b], True))
                at = b
            if at < len(content):
                out.append((content[at:], False))
        out.append(("<|im_end|>", role == "assistant"))
        out.append(("\n", False))
    return [(t, k) for t, k in out if t]


def encode_example(example: Mapping[str, Any], tokenizer: _Tokenizer) -> Encoded:
    """``(input_ids, labels)`` for one example (see the module docstring)."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trainable in pieces(example):
        toks = tokenizer.encode(text, add_special_tokens=False)
        ids += toks
        labels += toks if trainable else [IGNORE] * len(toks)
    return ids, labels


def trainable_fraction(encoded: Sequence[Encoded]) -> float:
    """Share of tokens that carry loss."""
    total = sum(len(i) for i, _ in encoded)
    return sum(sum(1 for x in lab if x != IGNORE) for _, lab in encoded) / total if total else 0.0
