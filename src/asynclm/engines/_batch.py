"""The pure parts of the batched llama.cpp engine (:mod:`asynclm.engines.batched`): which pending
work goes into the next ``llama_decode`` batch (:func:`pack`), a model of the unified KV cache's
cells with shared prefixes counted once (:class:`KvCells`), and which idle sequences to evict
when a batch does not fit (:func:`eviction_order`). No llama.cpp, no threads, no clock: each is
testable on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Demand", "Idle", "KvCells", "Policy", "eviction_order", "pack"]

Policy = Literal["priority", "fifo"]
POLICIES: tuple[Policy, ...] = ("priority", "fifo")


@dataclass(frozen=True, slots=True)
class Demand:
    """The work one sequence waits for: the operation at the head of its queue needs ``tokens``
    more tokens evaluated (at least 1) before it completes."""

    seq: int
    tokens: int
    step: bool
    """The operation samples a token once they are evaluated (a decode step): the last one asks
    for logits. A step with a single token left is a *decode* demand; anything longer
    (a prefill, an append, a step that must first recompute an evicted context) is *bulk*."""
    arrival: int
    """Submission order of the operation (lower came first)."""
    boosted: bool = False
    """An interrupt was just appended to the sequence, or it resumed after waiting (on its
    tools): it goes first under the ``priority`` policy."""
    service: int = 0
    """Tokens evaluated for this sequence so far (the least served goes first under
    ``priority``, as in program-level schedulers such as Autellix)."""

    @property
    def decode(self) -> bool:
        return self.step and self.tokens == 1


def _key(policy: Policy) -> Callable[[Demand], tuple[int, ...]]:
    if policy == "fifo":
        return lambda d: (d.arrival,)
    return lambda d: (0 if d.boosted else 1, d.service, d.arrival)


def pack(
    demands: Iterable[Demand], *, n_batch: int, prefill_chunk: int, policy: Policy = "priority"
) -> list[tuple[int, int]]:
    """The next batch: ``(seq, n_tokens)`` pairs, in order of precedence, ``n_tokens`` >= 1,
    at most ``n_batch`` tokens in all, at most one pair per sequence.

    1. Decode demands (a step with one token left) come first, one token each, ordered by the
       policy: a decode step never waits behind a prefill.
    2. Bulk demands (prefills, appends, recomputation) share what is left, ordered by the
       policy; each takes as many tokens as it needs and the room allows, but while the batch
       carries decode steps, bulk tokens are capped at ``prefill_chunk`` in all, so that one long
       prompt does not stall everyone's next token. Without decode steps the whole batch is
       theirs.

    ``fifo`` orders by arrival; ``priority`` puts boosted demands first (just-injected
    interrupts, sequences back from waiting on their tools), then the least served sequence,
    then arrival.
    """
    if n_batch < 1 or prefill_chunk < 1:
        raise ValueError("n_batch and prefill_chunk must be >= 1")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (expected one of {POLICIES})")
    key = _key(policy)
    ds = list(demands)
    if len({d.seq for d in ds}) != len(ds):
        raise ValueError("at most one demand per sequence")
    decode = sorted((d for d in ds if d.decode), key=key)
    bulk = sorted((d for d in ds if not d.decode), key=key)
    out: list[tuple[int, int]] = []
    room = n_batch
    for d in decode:
        if room == 0:
            break
        out.append((d.seq, 1))
        room -= 1
    cap = min(room, prefill_chunk) if out else room
    for d in bulk:
        if cap == 0:
            break
        n = min(d.tokens, cap)
        if n > 0:
            out.append((d.seq, n))
            cap -= n
    return out


class KvCells:
    """The cells of a unified KV cache, as llama.cpp keeps them: each evaluated token of a
    sequence occupies one cell; a prefix copied to another sequence (``llama_memory_seq_cp``)
    is the same cells, tagged with both sequences, until both have removed it. ``used`` is the
    number of occupied cells, which is what the cache's size (and the engine's KV budget)
    limits. Cell ids here are this model's own, not llama.cpp's cell indices."""

    __slots__ = ("_cells", "_next", "_refs")

    def __init__(self) -> None:
        self._cells: dict[int, list[int]] = {}
        self._refs: dict[int, int] = {}
        self._next = 0

    @property
    def used(self) -> int:
        return len(self._refs)

    def n(self, seq: int) -> int:
        """Positions of ``seq`` that have cells (its evaluated prefix)."""
        return len(self._cells.get(seq, ()))

    def extend(self, seq: int, n: int) -> None:
        """``n`` new cells after the end of ``seq`` (``n`` tokens evaluated)."""
        cells = self._cells.setdefault(seq, [])
        for _ in range(n):
            self._refs[self._next] = 1
            cells.append(self._next)
            self._next += 1

    def truncate(self, seq: int, n: int) -> int:
        """Keep the first ``n`` positions of ``seq`` (``llama_memory_seq_rm(seq, n, -1)``);
        returns how many cells were freed (those no other sequence shares)."""
        cells = self._cells.get(seq)
        if not cells or n >= len(cells):
            return 0
        freed = 0
        for c in cells[n:]:
            r = self._refs[c] - 1
            if r:
                self._refs[c] = r
            else:
                del self._refs[c]
                freed += 1
        del cells[n:]
        return freed

    def copy(self, src: int, dst: int, n: int) -> None:
        """``dst`` (empty) shares the first ``n`` cells of ``src``
        (``llama_memory_seq_cp(src, dst, 0, n)``)."""
        if self.n(dst):
            raise ValueError(f"sequence {dst} is not empty")
        shared = self._cells.get(src, [])[:n]
        if len(shared) < n:
            raise ValueError(f"sequence {src} has only {len(shared)} cells, not {n}")
        for c in shared:
            self._refs[c] += 1
        self._cells[dst] = list(shared)

    def exclusive(self, seq: int) -> int:
        """Cells that removing all of ``seq`` would free (those it shares with no one)."""
        refs = self._refs
        return sum(1 for c in self._cells.get(seq, ()) if refs[c] == 1)


@dataclass(frozen=True, slots=True)
class Idle:
    """A sequence whose cells could be evicted: it has no pending operation."""

    seq: int
    since: float
    """When its last operation ended (or when it was closed, for a retained cache)."""
    cells: int
    retained: bool = False
    """The cache of a closed sequence, kept only to share its prefix: evicted before any live
    sequence."""


def eviction_order(candidates: Sequence[Idle]) -> list[int]:
    """Which sequences to evict first: retained caches of closed sequences (oldest first), then
    live idle sequences, the one that has waited longest first; sequences without cells are
    left out."""
    ranked = sorted((c for c in candidates if c.cells > 0),
                    key=lambda c: (not c.retained, c.since, c.seq))
    return [c.seq for c in ranked]
