"""A deterministic tokenizer for the simulator: words, single punctuation marks and whitespace
runs are tokens; with ``special=True`` each of the dialect's special strings
(:attr:`~asynclm.protocol.Dialect.special_tokens`, CML's markers) is one token (as a model
profile with marker tokens would have). Ids are interned on first sight; 0 is
end-of-sequence."""

from __future__ import annotations

import re
from collections.abc import Sequence

from asynclm.protocol import CML, CmlDialect, Dialect, Markers

EOS = 0
_WORD = r"\w+|\s+|[^\w\s]"


class SimTokenizer:
    def __init__(self, dialect: Dialect | Markers = CML) -> None:
        if isinstance(dialect, Markers):  # CML with these markers
            dialect = CmlDialect(dialect)
        self._specials = dialect.special_tokens
        self._plain = re.compile(_WORD)
        self._special = re.compile("|".join(map(re.escape, self._specials)) + "|" + _WORD)
        self._ids: dict[str, int] = {"": EOS}  # plain pieces
        self._special_ids: dict[str, int] = {}  # marker strings, each one token
        self._pieces: list[str] = [""]
        for s in self._specials:
            self._intern(s, special=True)

    def _intern(self, piece: str, *, special: bool = False) -> int:
        ids = self._special_ids if special else self._ids
        tid = ids.get(piece)
        if tid is None:
            tid = ids[piece] = len(self._pieces)
            self._pieces.append(piece)
        return tid

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        ids, intern = self._ids, self._intern
        if special:
            sp = self._special_ids
            return [sp.get(p) or ids.get(p) or intern(p) for p in self._special.findall(text)]
        return [ids.get(p) or intern(p) for p in self._plain.findall(text)]

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return "".join(map(self._pieces.__getitem__, tokens)).encode()

    def count(self, text: str, *, special: bool = True) -> int:
        return len(self.tokenize(text, special=special))
