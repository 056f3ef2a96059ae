"""The fixed train/eval split of BFCL items used for fine-tuning.

Pool (640 items): ``parallel`` (200), ``parallel_multiple`` (200), ``live_parallel`` (16),
``live_parallel_multiple`` (24), ``multi_turn_base`` (200) — the paper's parallel and multi-turn
sets (its 800 add a 200-item "multi-step parallel" set built by joining samples; our
user-interrupt examples join train items the same way).

Rule (seed 0 by default): the first 20 items of ``parallel`` and of ``parallel_multiple`` (the
items of the measured prompt-only baseline) are always held out; of each category's remaining
items, ``round(fraction * category size)`` are drawn for training by
``random.Random(f"{seed}:{category}").sample`` over the ids in file order. With the default
fraction 0.25 that is 50 + 50 + 4 + 6 + 50 = 160 train items (the paper's 1 in 4); every other
item is for evaluation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from asynclm.bench.bfcl.data import BfclItem, load

__all__ = ["ALWAYS_HELD_OUT", "POOL", "Split", "make_split"]

POOL: tuple[str, ...] = (
    "parallel", "parallel_multiple", "live_parallel", "live_parallel_multiple", "multi_turn_base",
)
ALWAYS_HELD_OUT: dict[str, int] = {"parallel": 20, "parallel_multiple": 20}
"""Leading items per category never used for training (the prompt-only baseline's items)."""


@dataclass(frozen=True, slots=True)
class Split:
    seed: int
    fraction: float
    train: dict[str, tuple[str, ...]]
    eval: dict[str, tuple[str, ...]]

    def items(self, part: str, categories: tuple[str, ...] = POOL) -> list[BfclItem]:
        """The items of ``part`` ("train" or "eval"), category by category, in file order."""
        ids = self.train if part == "train" else self.eval
        out: list[BfclItem] = []
        for cat in categories:
            wanted = set(ids.get(cat, ()))
            out += [it for it in load(cat) if it.id in wanted]
        return out


def make_split(seed: int = 0, fraction: float = 0.25) -> Split:
    """The split described in the module docstring (deterministic for a seed)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    train: dict[str, tuple[str, ...]] = {}
    held: dict[str, tuple[str, ...]] = {}
    for cat in POOL:
        ids = [it.id for it in load(cat)]
        skip = ALWAYS_HELD_OUT.get(cat, 0)
        k = min(len(ids) - skip, round(fraction * len(ids)))
        chosen = set(random.Random(f"{seed}:{cat}").sample(ids[skip:], k))
        train[cat] = tuple(i for i in ids if i in chosen)
        held[cat] = tuple(i for i in ids if i not in chosen)
    return Split(seed, fraction, train, held)
