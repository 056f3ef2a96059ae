"""The decode loop's mirror of the engine's context, with rollback to a character offset.

Sans-I/O: :class:`Context` never calls the engine; the loop does (``engine.rollback``,
``engine.append``) and tells the context what it did. It knows

- the tokens of the context (the prompt, then what was sampled or injected);
- which tokens were *sampled* and where the text of each begins in the parser's stream, so that
  text the model may not write can be rolled back to an exact character offset
  (:meth:`Context.cut_at`);
- whether the context ends at the start of a line (an injection must begin on one).
"""

from __future__ import annotations

import codecs
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Cut:
    """How to roll the context back so that the sampled text ends at a character offset: keep
    the first ``keep_tokens`` tokens, then append ``keep`` (the part of a token that straddled
    the offset, tokenized again; empty when a token began right there) at offset ``keep_at``.
    ``first_removed`` is the id of the first sampled token removed (-1 if none) and
    ``removed`` the number of tokens removed."""

    keep_tokens: int
    keep: str
    keep_at: int
    first_removed: int
    removed: int


class Context:
    """The context's tokens and the bookkeeping of its sampled tokens.

    ``detokenize`` is the engine's (token ids to UTF-8 bytes); sampled tokens are decoded
    incrementally, so a character split over several tokens comes out whole."""

    __slots__ = (
        "_decoder",
        "_detokenize",
        "_ids",
        "_index",
        "_starts",
        "_texts",
        "line_start",
        "prompt_len",
        "tokens",
    )

    def __init__(self, detokenize: Callable[[Sequence[int]], bytes]) -> None:
        self.tokens: list[int] = []
        """Mirror of the engine's context."""
        self.prompt_len = 0
        self.line_start = True
        """The context ends with a newline (or the prompt)."""
        self._detokenize = detokenize
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # One entry per sampled token (parallel lists: the hot path appends to each).
        self._starts: list[int] = []  # parser offset where its text begins
        self._index: list[int] = []  # its index in the context
        self._texts: list[str] = []
        self._ids: list[int] = []

    # -- growing ---------------------------------------------------------------------------
    def set_prompt(self, tokens: Sequence[int]) -> None:
        """The context is ``tokens`` (after a prefill), all of them prompt."""
        self.tokens = list(tokens)
        self.prompt_len = len(self.tokens)

    def sample(self, token: int, offset: int) -> str:
        """Record a sampled token whose text begins at parser offset ``offset``; returns that
        text (empty while a character is incomplete)."""
        text = self._decoder.decode(self._detokenize([token]))
        self._starts.append(offset)
        self._index.append(len(self.tokens))
        self._texts.append(text)
        self._ids.append(token)
        self.tokens.append(token)
        if text:
            self.line_start = text.endswith("\n")
        return text

    def sample_eos(self, token: int) -> None:
        """Record an end-of-generation token (it has no text)."""
        self.tokens.append(token)

    def inject(self, tokens: Sequence[int], *, ends_line: bool) -> None:
        """Record tokens the runtime appended (markup, results); ``ends_line``: their text
        ends with a newline."""
        self.tokens.extend(tokens)
        self.line_start = ends_line

    def keep(self, cut: Cut, tokens: Sequence[int]) -> None:
        """After :meth:`truncate` to ``cut.keep_tokens``: record ``tokens``, the re-tokenized
        ``cut.keep``, as sampled text again."""
        self._starts.append(cut.keep_at)
        self._index.append(len(self.tokens))
        self._texts.append(cut.keep)
        self._ids.append(tokens[0] if tokens else -1)
        self.tokens.extend(tokens)

    # -- rolling back ----------------------------------------------------------------------
    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens (the engine was rolled back to ``n``)."""
        del self.tokens[n:]
        k = bisect_left(self._index, n)
        del self._starts[k:], self._index[k:], self._texts[k:], self._ids[k:]
        self._decoder.reset()
        self.line_start = n <= self.prompt_len or self._detokenize(self.tokens[-1:]).endswith(b"\n")

    def cut_at(self, offset: int) -> Cut:
        """How to roll back so that the sampled text ends at parser offset ``offset``."""
        j = bisect_left(self._starts, offset)
        if j < len(self._starts) and self._starts[j] == offset:
            cut, keep = j, ""
        else:
            cut = j - 1
            keep = self._texts[cut][: offset - self._starts[cut]]
        n = len(self._ids)
        keep_tokens = self._index[cut] if cut < n else len(self.tokens)
        return Cut(
            keep_tokens=keep_tokens, keep=keep,
            keep_at=self._starts[cut] if cut < n else offset,
            first_removed=self._ids[cut] if cut < n else -1,
            removed=len(self.tokens) - keep_tokens,
        )

    # -- reading ---------------------------------------------------------------------------
    @property
    def generated(self) -> list[int]:
        """Every token after the prompt (sampled and injected)."""
        return self.tokens[self.prompt_len:]

    def sampled_text(self) -> str:
        """The text of the sampled tokens still in the context."""
        return "".join(self._texts)

    def __len__(self) -> int:
        return len(self.tokens)
