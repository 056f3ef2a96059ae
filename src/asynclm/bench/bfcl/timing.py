"""Seeded, deterministic execution times for BFCL calls.

A call's duration is a pure function of ``(seed, item id, function name, arguments, k)``, where
``k`` counts earlier calls *identical* to it (same function, same arguments) in the same run. So
every strategy sees the same time for the same call, whatever order the model writes its calls
in, and an oracle that knows the ground truth knows the true durations (its LPT order is exact).
Arguments are compared in a canonical form (sorted keys, tuples as lists, integral floats as
ints) so ``f(x=2)`` and ``f(x=2.0)`` take the same time.

Profiles:
- ``paper``: 30 ms + an exponential of mean 80 ms, capped at 500 ms — range 30–500 ms, mean
  ≈ 110 ms, the paper's setup (the same law as ``bench synthetic``);
- ``web``: log-uniform on 300 ms – 3 s (median ≈ 0.95 s, mean ≈ 1.17 s), like web APIs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILES", "CallTimer", "Profile", "call_duration", "canonical_args", "get_profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    lo_s: float
    hi_s: float
    description: str

    def draw(self, rng: random.Random) -> float:
        if self.name == "paper":
            return min(self.hi_s, self.lo_s + rng.expovariate(1 / 0.08))
        if self.name == "web":
            return math.exp(rng.uniform(math.log(self.lo_s), math.log(self.hi_s)))
        raise ValueError(f"profile {self.name!r} has no law")  # pragma: no cover

    @property
    def mean_s(self) -> float:
        """The law's exact mean."""
        if self.name == "paper":
            return self.lo_s + 0.08 * (1 - math.exp(-(self.hi_s - self.lo_s) / 0.08))
        return (self.hi_s - self.lo_s) / math.log(self.hi_s / self.lo_s)


PROFILES: dict[str, Profile] = {
    "paper": Profile("paper", 0.03, 0.5, "30 ms + Exp(mean 80 ms), capped at 500 ms"),
    "web": Profile("web", 0.3, 3.0, "log-uniform on 0.3–3 s"),
}


def get_profile(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def _canon(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def canonical_args(args: Mapping[str, Any]) -> str:
    """A canonical JSON text of ``args`` (the key of a call's duration)."""
    return json.dumps(_canon(args), sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def call_duration(
    seed: int, item_id: str, fn: str, args: Mapping[str, Any], k: int = 0,
    profile: str | Profile = "paper",
) -> float:
    """The execution time (seconds) of the ``k``-th identical call ``fn(**args)`` of an item."""
    p = get_profile(profile)
    key = f"{seed}\x1f{item_id}\x1f{fn}\x1f{canonical_args(args)}\x1f{k}\x1f{p.name}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return p.draw(random.Random(int.from_bytes(digest, "big")))


class CallTimer:
    """Durations for the calls of one run (one item under one strategy): counts identical calls
    so a repeated call gets the next draw."""

    def __init__(self, seed: int, item_id: str, profile: str | Profile = "paper") -> None:
        self.seed = seed
        self.item_id = item_id
        self.profile = get_profile(profile)
        self._seen: Counter[tuple[str, str]] = Counter()

    def next(self, fn: str, args: Mapping[str, Any]) -> float:
        key = (fn, canonical_args(args))
        k = self._seen[key]
        self._seen[key] += 1
        return call_duration(self.seed, self.item_id, fn, args, k, self.profile)
