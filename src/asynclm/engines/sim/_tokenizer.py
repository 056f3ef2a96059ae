"""A deterministic tokenizer for the simulator: words, single punctuation marks and whitespace
runs are tokens; with ``special=True`` each marker string is one token (as a model profile with
marker tokens would have). Ids are interned on first sight; 0 is end-of-sequence."""

from __future__ import annotations

import re
from collections.abc import Sequence

from asynclm.protocol import DEFAULT_MARKERS, Markers

EOS = 0
_WORD = r"\w+|\s+|[^\w\s]"


class SimTokenizer:
    def __init__(self, markers: Markers = DEFAULT_MARKERS) -> None:
        self._specials = markers.all()
        self._plain = re.compile(_WORD)
        self._special = re.compile("|".join(map(re.escape, self._specials)) + "|" + _WORD)
        self._ids: dict[str, int] = {"": EOS}
        self._pieces: list[str] = [""]
        for s in self._specials:
            self._intern(s, special=True)

    def _intern(self, piece: str, *, special: bool = False) -> int:
        key = ("\x00" if special else "") + piece
        tid = self._ids.get(key)
        if tid is None:
            tid = self._ids[key] = len(self._pieces)
            self._pieces.append(piece)
        return tid

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        pattern = self._special if special else self._plain
        out = []
        for m in pattern.finditer(text):
            piece = m.group()
            out.append(self._intern(piece, special=special and piece in self._specials))
        return out

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return "".join(self._pieces[t] for t in tokens).encode()

    def count(self, text: str, *, special: bool = True) -> int:
        return len(self.tokenize(text, special=special))
