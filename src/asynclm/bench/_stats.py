"""Small statistics helpers for benchmark summaries (median and spread, never a lone mean)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def quantile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile, ``q`` in [0, 1]."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(xs: Sequence[float]) -> dict[str, float]:
    """median, p10, p90, mean, min, max of ``xs``."""
    return {
        "median": quantile(xs, 0.5),
        "p10": quantile(xs, 0.1),
        "p90": quantile(xs, 0.9),
        "mean": statistics.fmean(xs) if xs else float("nan"),
        "min": min(xs) if xs else float("nan"),
        "max": max(xs) if xs else float("nan"),
        "n": float(len(xs)),
    }
