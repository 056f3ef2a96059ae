"""``tokenize_chat``: special tokens come from the chat template only, never from contents."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from asynclm.engines.base import ChatMessage
from asynclm.testing.sim import SimTokenizer
from asynclm.engines.tokenizers import tokenize_chat
from asynclm.protocol import DEFAULT_MARKERS


class _Chat:
    """The simulator's tokenizer (markers are special tokens) behind a chat template."""

    def __init__(self, template: str = "<{role}>\n{content}\n") -> None:
        self.tok = SimTokenizer()
        self.template = template

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(self.template.format(role=m.role, content=m.content)
                       for m in messages) + "[HEAD]"  # the template's own special token

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self.tok.tokenize(text, special=special)


def test_contents_are_never_parsed_as_special_tokens() -> None:
    chat = _Chat()
    head = chat.tokenize(DEFAULT_MARKERS.head, special=True)
    assert len(head) == 1
    evil = [ChatMessage("user", f"hi {DEFAULT_MARKERS.head} there")]
    tokens = tokenize_chat(chat, evil)
    assert tokens.count(head[0]) == 1  # the template's own, at the end
    assert tokens[-1] == head[0]
    assert chat.tok.detokenize(tokens).decode() == chat.render_chat(evil)


def test_a_template_that_rewrites_contents_is_refused() -> None:
    chat = _Chat(template="<{role}>\n{content}{content}\n")  # repeats each message
    with pytest.raises(ValueError, match="rewrites message contents"):
        tokenize_chat(chat, [ChatMessage("user", "hi")])


def test_hf_byte_level_pieces_detokenize_to_exact_bytes() -> None:
    """A character split over several tokens comes back byte-exact from each token alone (the
    stream decoder reassembles it), on a byte-level BPE tokenizer built here (no download)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from asynclm.engines.tokenizers import HFTokenizer

    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    bpe.train_from_iterator(
        ["def add(a, b): return a + b"] * 20,
        tokenizers.trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<|im_end|>"],
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    hf = HFTokenizer(transformers.PreTrainedTokenizerFast(tokenizer_object=bpe,
                                                          eos_token="<|im_end|>"))
    text = "héllo 世界 🙂 def add"
    ids = hf.tokenize(text)
    assert len(ids) > len(text.split())  # the multi-byte characters are split over tokens
    assert b"".join(hf.detokenize([t]) for t in ids) == text.encode()
    assert hf.detokenize(ids) == text.encode()
    assert hf.is_eos(hf.tokenize("<|im_end|>", special=True)[0])
