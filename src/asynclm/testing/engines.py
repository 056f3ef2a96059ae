"""Engines for tests and benchmarks of the runtime itself (the simulator is :mod:`.sim`)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

from asynclm.engines.base import Capabilities, ChatMessage
from asynclm.testing.sim import EOS, SimTokenizer

__all__ = ["InstantEngine"]


class InstantEngine:
    """Replays pre-tokenized text at no cost (appends are free and unread), so that only the
    runtime's own work is timed. Each step yields to the loop once, like a real engine."""

    capabilities = Capabilities(virtual_time=False)

    def __init__(self, text: str) -> None:
        self._tok = SimTokenizer()
        self._script = self._tok.tokenize(text, special=True)
        self._pos = 0
        self.n_tokens = 0

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "go"

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return self._tok.tokenize("go")

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self._tok.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self._tok.detokenize(tokens)

    def is_eos(self, token: int) -> bool:
        return token == EOS

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        self.n_tokens = len(tokens)
        return 0

    async def step(self, *, ban: Collection[int] = ()) -> int:
        await asyncio.sleep(0)
        tok = self._script[self._pos] if self._pos < len(self._script) else EOS
        self._pos += 1
        self.n_tokens += 1
        return tok

    async def append(self, tokens: Sequence[int]) -> None:
        self.n_tokens += len(tokens)

    async def rollback(self, n_tokens: int) -> None:
        self._pos -= self.n_tokens - n_tokens
        self.n_tokens = n_tokens

    async def aclose(self) -> None:
        pass
