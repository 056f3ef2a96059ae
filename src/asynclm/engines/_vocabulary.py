"""The vocabulary side of the in-process llama.cpp engines (one model, or one batched model):
tokenization, detokenization, end-of-generation tokens and chat rendering, in the caller's
thread on a vocabulary-only handle (:class:`~asynclm.engines._llama.Vocab`: no weights), so they
never wait behind the model's worker. Shared by :class:`~asynclm.engines.llamacpp.LlamaCppEngine`
and :class:`~asynclm.engines.batched.BatchedLlamaEngine`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asynclm.engines._llama import Vocab
from asynclm.engines.base import ChatMessage
from asynclm.engines.tokenizers import tokenize_chat, tokenize_untrusted
from asynclm.errors import EngineClosedError

__all__ = ["VocabularySide"]


class VocabularySide:
    """Mixin: the vocabulary methods of the :class:`~asynclm.engines.base.Engine` interface over
    ``self._vocab``. The engine calls :meth:`_init_vocabulary` once its vocabulary is loaded;
    every method raises :class:`~asynclm.errors.EngineClosedError` once the vocabulary is
    closed."""

    _lib: Any
    _vocab: Vocab
    _formatter: Any
    _control_ids: frozenset[int] | None
    n_vocab: int
    chat_template: str

    def _init_vocabulary(self, lib: Any, vocab: Vocab) -> None:
        self._lib, self._vocab = lib, vocab
        self.n_vocab = vocab.n_vocab
        self.chat_template, self._formatter = vocab.chat_formatter()
        self._control_ids = None

    def _check_vocab(self) -> None:
        if self._vocab._model is None:
            raise EngineClosedError("the engine is closed")

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text``, without BOS. Keep ``special=False`` for untrusted text: then
        no id of :meth:`added_tokens` comes out -- not a control token (``<|im_end|>``), and not
        a user-defined one either (Qwen's ``<tool_call>``, which llama.cpp matches even with
        special-token parsing off): such a spelling is tokenized as ordinary text that still
        reads the same (see :func:`~asynclm.engines.tokenizers.tokenize_untrusted`)."""
        self._check_vocab()
        if special:
            return self._vocab.tokenize(text.encode("utf-8"), special=True)
        return tokenize_untrusted(_RawTokenizer(self), text, self._vocab.added_tokens())

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """UTF-8 bytes of ``tokens``; control tokens are rendered as their text
        (``<|im_end|>``), so ``detokenize(tokenize(s, special=True)) == s``."""
        self._check_vocab()
        buf = (self._lib.ctypes.c_char * 256)()  # per call: callers may be in several threads
        piece = self._vocab.piece
        return b"".join([piece(int(t), buf) for t in tokens])

    def is_eos(self, token: int) -> bool:
        """End of generation: EOS and end-of-turn tokens (``<|im_end|>``, ``<|endoftext|>``)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab.ptr, token))

    def added_tokens(self) -> dict[int, str]:
        """The vocabulary's added tokens by id, with their text: every token whose llama.cpp
        attributes say CONTROL (``<|im_end|>``), USER_DEFINED (``<tool_call>``) or UNUSED
        (padding), whatever its position in the vocabulary (Qwen2.5: 151643 onwards, and
        ``</s>`` at 128247). Untrusted text never tokenizes to one of them (:meth:`tokenize`
        with ``special=False``). UNKNOWN (``<unk>``) is not among them: plain text yields it
        only for characters the vocabulary cannot spell."""
        self._check_vocab()
        return dict(self._vocab.added_tokens())

    @property
    def control_ids(self) -> frozenset[int]:
        """Ids of the vocabulary's control tokens (``<|im_start|>``, ``<|im_end|>``, …)."""
        if self._control_ids is None:
            is_control = self._lib.llama_vocab_is_control
            ptr = self._vocab.ptr
            self._control_ids = frozenset(t for t in range(self.n_vocab) if is_control(ptr, t))
        return self._control_ids

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for ``messages`` in the GGUF's own chat template, ending where the
        assistant's reply begins. Tokenize it with ``special=True`` only if the message contents
        are trusted; :meth:`tokenize_chat` is the safe way."""
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        return self._formatter(messages=msgs).prompt

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Token ids of :meth:`render_chat`'s prompt, with special tokens parsed in the
        template's own text only (and in the parts a message marks trusted): message contents
        are tokenized with ``special=False``."""
        return tokenize_chat(self, messages)


class _RawTokenizer:
    """The vocabulary's plain tokenization, for :func:`tokenize_untrusted`."""

    __slots__ = ("_side",)

    def __init__(self, side: VocabularySide) -> None:
        self._side = side

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._side._vocab.tokenize(text.encode("utf-8"), special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._side.detokenize(tokens)
