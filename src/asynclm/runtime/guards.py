"""Guards against a model that loops: a degenerate token cycle in what it writes.

Small models fall into cycles (``557117557117…``, ``CGCGCG…``) and only the token cap stops
them, at the cost of every token up to it. :class:`LoopDetector` spots a short cycle repeated
over a window of sampled tokens. Sans-I/O: feed token ids, get a verdict.
"""

from __future__ import annotations

from collections import deque


class LoopDetector:
    """True from :meth:`feed` once the last ``window`` tokens are one cycle of at most
    ``max_period`` tokens repeated (at least ``min_repeats`` times). ``window=0`` disables it.

    A check costs O(max_period) comparisons per token until a period matches the newest
    token, so the common case (no repetition) stays cheap."""

    __slots__ = ("window", "_periods", "_tail")

    def __init__(self, window: int = 48, max_period: int = 12, min_repeats: int = 4) -> None:
        self.window = window
        self._periods = range(1, min(max_period, window // min_repeats) + 1)
        self._tail: deque[int] = deque(maxlen=max(window, 1))

    def reset(self) -> None:
        """Forget the tail (after a rollback or an injection: the cycle is broken)."""
        self._tail.clear()

    def feed(self, token: int) -> bool:
        if self.window <= 0:
            return False
        tail = self._tail
        tail.append(token)
        n = len(tail)
        if n < self.window:
            return False
        for period in self._periods:
            if tail[n - 1 - period] != token:
                continue
            if all(tail[i] == tail[i + period] for i in range(n - period)):
                return True
        return False
