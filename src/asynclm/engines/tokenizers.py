"""Client-side tokenizers for engines that do not own the model (an HTTP server), and the safe
ways to tokenize a chat prompt and untrusted text.

:func:`tokenize_chat` parses special tokens in the chat template's own text only, never in
message contents: a user or tool message spelling ``<|im_end|>`` stays plain text.

:func:`tokenize_untrusted` goes further: special-token parsing off is not enough, because
tokenizers still match *user-defined* added tokens in plain text (llama.cpp does; so does a
Hugging Face tokenizer for added tokens that are not ``special``), and Qwen's ``<tool_call>`` /
``</tool_call>`` are such tokens. It guarantees that no id of the vocabulary's added-token list
comes out, whatever the token's type.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from asynclm import models
from asynclm.engines._llama import Vocab, import_llama
from asynclm.engines.base import ChatMessage

__all__ = ["GGUFTokenizer", "HFTokenizer", "Tokenizer", "tokenize_chat", "tokenize_untrusted"]

_SENTINEL = re.compile("\ue000(\\d+)\ue001")


class _ChatTokenizer(Protocol):
    def render_chat(self, messages: Sequence[ChatMessage]) -> str: ...
    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...


def tokenize_chat(tok: _ChatTokenizer, messages: Sequence[ChatMessage]) -> list[int]:
    """Token ids of ``tok.render_chat(messages)``, with special tokens parsed in the template's
    own text only: message contents are tokenized with ``special=False``, except the trusted
    ``parts`` of a message (:class:`~asynclm.engines.base.ChatMessage`: the markup of a system
    prompt the runtime wrote), each tokenized on its own with special tokens on. Raises
    ValueError for a template that rewrites message contents (they could not be told apart)."""
    rendered = tok.render_chat([ChatMessage(m.role, f"\ue000{i}\ue001")
                                for i, m in enumerate(messages)])
    pieces = _SENTINEL.split(rendered)  # [template, idx, template, idx, ..., template]
    found = [int(i) for i in pieces[1::2]]
    if len(found) != len(set(found)) or not set(found) <= set(range(len(messages))):
        raise ValueError("the chat template rewrites message contents; cannot split it")
    out: list[int] = []
    for j, piece in enumerate(pieces):
        if j % 2 == 0:
            if piece:
                out += tok.tokenize(piece, special=True)
        else:
            m = messages[int(piece)]
            if not m.parts:
                out += tok.tokenize(m.content, special=False)
                continue
            for part in m.parts:
                if part.text:
                    out += tok.tokenize(part.text, special=part.trusted)
    return out


_WJ = "\u2060"  # WORD JOINER: invisible, breaks a spelling without changing how it reads
_ROUNDS = 4


class _UntrustedTokenizer(Protocol):
    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...
    def detokenize(self, tokens: Sequence[int]) -> bytes: ...


def tokenize_untrusted(
    tok: _UntrustedTokenizer, text: str, added: Mapping[int, str]
) -> list[int]:
    """Token ids of untrusted ``text``, special-token parsing off, in which no id of ``added``
    (the vocabulary's added tokens, id -> text) appears. Guaranteed whatever ``tok`` does.

    Text without such a spelling costs one tokenization and a set lookup per token. Otherwise:

    1. each spelling that came out as an added token is cut after its first character and the
       pieces are tokenized apart (``<`` + ``tool_call>``): the tokens spell exactly the same
       text, so the model reads ``<tool_call>`` -- as text. Used when the detokenized result is
       byte-identical to the plain tokenization's (true for byte-level BPE, e.g. Qwen, Llama 3);
    2. else (a tokenizer that adds text per call, e.g. SentencePiece's space prefix) a WORD
       JOINER (U+2060, invisible) goes after the first character of each spelling, in one call;
    3. whatever still comes out as an added token (a one-character added token) is replaced by
       the tokens of U+FFFD.
    """
    tokens = tok.tokenize(text, special=False)
    if not added or not any(t in added for t in tokens):
        return tokens
    want = tok.detokenize(tokens)
    cuts: set[int] = set()
    toks = tokens
    for _ in range(_ROUNDS):  # 1. same text, other tokens
        new = _cut_points(text, _spellings(toks, added)) - cuts
        if not new:
            break
        cuts |= new
        toks = []
        last = 0
        for c in sorted(cuts):
            toks += tok.tokenize(text[last:c], special=False)
            last = c
        toks += tok.tokenize(text[last:], special=False)
        if not any(t in added for t in toks):
            if tok.detokenize(toks) == want:
                return toks
            break
    broken, toks = text, tokens
    for _ in range(_ROUNDS):  # 2. break the spellings
        cut = _cut_points(broken, _spellings(toks, added))
        if not cut:
            break
        broken = "".join(_WJ + c if i in cut else c for i, c in enumerate(broken))
        toks = tok.tokenize(broken, special=False)
        if not any(t in added for t in toks):
            return toks
    repl = [t for t in tok.tokenize("\ufffd", special=False) if t not in added]
    out: list[int] = []  # 3. last resort
    for t in toks:
        if t in added:
            out += repl
        else:
            out.append(t)
    return out


def _spellings(tokens: Sequence[int], added: Mapping[int, str]) -> set[str]:
    return {added[t] for t in tokens if t in added and len(added[t]) > 1}


def _cut_points(text: str, spellings: set[str]) -> set[int]:
    """Offsets just after the first character of each occurrence of a spelling in ``text``."""
    cuts: set[int] = set()
    for s in spellings:
        i = text.find(s)
        while i >= 0:
            cuts.add(i + 1)
            i = text.find(s, i + 1)
    return cuts


class Tokenizer(Protocol):
    """The model's tokenizer, on the client side (the engine's sync methods cannot ask the
    server). It must be the tokenizer of the model the server runs.

    Optional: ``added_tokens() -> dict[int, str]``, every added token of the vocabulary (control,
    user-defined, padding) by id, with its text. :class:`GGUFTokenizer` and :class:`HFTokenizer`
    have it; without it the HTTP engine knows only :meth:`control_texts` and falls back to a
    conservative list of common control tags (see
    :data:`asynclm.protocol.escape.CONTROL_TAGS`)."""

    eos_id: int

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...
    def detokenize(self, tokens: Sequence[int]) -> bytes: ...
    def is_eos(self, token: int) -> bool: ...
    def render_chat(self, messages: Sequence[ChatMessage]) -> str: ...
    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]: ...
    def control_texts(self) -> dict[int, str]:
        """Control tokens (``<|im_end|>``…) by id, with their text."""
        ...


class GGUFTokenizer:
    """The tokenizer and chat template of a GGUF file, loaded vocabulary-only (no weights):
    exactly what a llama.cpp server running the same file uses. Needs llama-cpp-python."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        lib = import_llama()
        self._lib = lib
        log = logging.getLogger("llama-cpp-python")  # it logs warnings as errors: keep quiet
        level = log.level
        log.setLevel(logging.CRITICAL + 1)
        try:
            self._vocab = Vocab(lib, os.fspath(model_path))
        finally:
            log.setLevel(level)
        v = self._vocab.ptr
        eot = lib.llama_vocab_eot(v)
        self.eos_id: int = eot if eot >= 0 else lib.llama_vocab_eos(v)
        self.chat_template, self._formatter = self._vocab.chat_formatter()
        self._controls: dict[int, str] | None = None

    def added_tokens(self) -> dict[int, str]:
        """Every added token (control, user-defined such as Qwen's ``<tool_call>``, unused
        padding) by id, with its text; see
        :meth:`asynclm.engines.llamacpp.LlamaCppEngine.added_tokens`."""
        return dict(self._vocab.added_tokens())

    @classmethod
    def from_name(cls, name: str | None = None) -> GGUFTokenizer:
        return cls(models.model_path(name or models.DEFAULT_MODEL))

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._vocab.tokenize(text.encode("utf-8"), special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        buf = (self._lib.ctypes.c_char * 256)()
        return b"".join([self._vocab.piece(int(t), buf) for t in tokens])

    def is_eos(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab.ptr, token))

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self._formatter(
            messages=[{"role": m.role, "content": m.content} for m in messages]
        ).prompt

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return tokenize_chat(self, messages)

    def control_texts(self) -> dict[int, str]:
        if self._controls is None:
            lib, v = self._lib, self._vocab.ptr
            self._controls = {
                t: self._vocab.text(t)
                for t in range(self._vocab.n_vocab) if lib.llama_vocab_is_control(v, t)
            }
        return self._controls

    def close(self) -> None:
        self._vocab.close()


def _byte_level_alphabet() -> dict[str, int]:
    """The character each byte is written as in byte-level BPE pieces (GPT-2's alphabet, used by
    GPT-2, Qwen and Llama 3 tokenizers): printable Latin-1 bytes stand for themselves, the others
    for U+0100 onwards, in byte order. Returned as character -> byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    shifted = (b for b in range(256) if b not in keep)
    char_of = {b: chr(b) for b in keep} | {b: chr(256 + n) for n, b in enumerate(shifted)}
    return {c: b for b, c in char_of.items()}


_BYTE_OF_CHAR = _byte_level_alphabet()


class HFTokenizer:
    """A Hugging Face ``transformers`` tokenizer: the one vLLM and SGLang load with the
    checkpoint they serve (``HFTokenizer.from_pretrained("Qwen/Qwen2.5-Coder-7B-Instruct")``).
    Byte-level BPE pieces are mapped back to exact bytes; other tokenizers fall back to
    ``decode`` per token."""

    _EOS_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>")

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        added = {int(i): t for i, t in tokenizer.added_tokens_decoder.items()}
        self._added = {i: t.content for i, t in added.items()}
        self._controls = {i: t.content for i, t in added.items() if t.special}
        vocab = tokenizer.get_vocab()
        eos = {tokenizer.eos_token_id} | {vocab[n] for n in self._EOS_NAMES if n in vocab}
        self._eos = frozenset(int(t) for t in eos if t is not None)
        self.eos_id: int = int(tokenizer.eos_token_id)

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs: Any) -> HFTokenizer:
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(name_or_path, **kwargs))

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False,
                                     split_special_tokens=not special))

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        out: list[bytes] = []
        byte_of = _BYTE_OF_CHAR
        for t in tokens:
            t = int(t)
            if t in self._added:
                out.append(self._added[t].encode("utf-8"))
                continue
            piece = self._tok.convert_ids_to_tokens(t)
            if piece is not None and all(c in byte_of for c in piece):
                out.append(bytes(byte_of[c] for c in piece))
            else:
                out.append(self._tok.decode([t], skip_special_tokens=False).encode("utf-8"))
        return b"".join(out)

    def is_eos(self, token: int) -> bool:
        return int(token) in self._eos

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return str(self._tok.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False, add_generation_prompt=True))

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return tokenize_chat(self, messages)

    def control_texts(self) -> dict[int, str]:
        return dict(self._controls)

    def added_tokens(self) -> dict[int, str]:
        """Every added token (``added_tokens_decoder``, special or not) by id, with its text."""
        return dict(self._added)
