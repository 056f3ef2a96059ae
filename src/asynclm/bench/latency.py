"""The paper's latency model: what a schedule of function calls costs, analytically.

Each call ``i`` has a decode time ``G[i]`` (the time the model spends writing the call) and an
execution time ``E[i]`` (the time the function runs). Dependencies, where given, are a mapping
``deps[i] -> indices i depends on`` (a DAG; missing keys mean no dependencies).

The model (one decoding stream, calls decoded one after another, no decode time between calls
other than their own ``G``):

- **sync**: decode a call, wait for its result, decode the next: ``ΣG + ΣE``.
- **sync-parallel**: decode every call that is ready, run them together, wait for all of them
  (batch and barrier). Independent calls: ``ΣG + max E``. With ``deps``, one round per level of
  the DAG (a call joins the first round after all its dependencies' rounds):
  ``ΣG + Σ_rounds max E``.
- **async** (an emission ``order``): the model decodes the calls in ``order``, back to back; a
  call starts executing the moment its own decode ends (it is *emitted*). A call that depends on
  others cannot be written before their results are in: its decode starts at
  ``max(previous decode end, max exec end of its dependencies)`` — the model traps in between.
  Latency is ``max(last decode end, last exec end)``, so it is always ``≥ ΣG``.
  With ``futures=True`` (asynclm's ``$id`` references) a dependent call may be written before
  its inputs exist: its decode starts right after the previous one, and it starts executing at
  ``max(its decode end, max exec end of its dependencies)``.
- **async-LPT**: the async schedule in longest-processing-time-first order. Independent calls:
  sort by ``E`` descending (stable, so ties keep index order); the latency is
  ``max_f (E(f) + Σ_{g before or at f} G(g))``, which for distinct ``E`` is the paper's
  ``max_f (E(f) + Σ_{g: E(g) ≥ E(f)} G(g))``. With ``deps`` it is list scheduling: whenever the
  model is free it writes the ready call (all dependencies' results in) with the largest ``E``,
  and traps until the next result when none is ready.
- **lower bound** (any schedule, paper's model): ``max(ΣG, longest path of (G + E))``; with
  ``futures=True`` a path's bound is ``max_i (Σ_{j≤i} G(v_j) + Σ_{j≥i} E(v_j))``.

Every function takes ``prefix`` (time before the first call: prefill, time to first token) and
``suffix`` (the answer's decode after the last result), added to the result. All times are
floats in seconds (any unit works, as long as it is the same everywhere). Results are computed
with plain float arithmetic; comparisons between models may differ by rounding in the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Schedule",
    "async_lpt",
    "async_order",
    "async_schedule",
    "critical_path_order",
    "lower_bound",
    "lpt_order",
    "optimal_order",
    "sync",
    "sync_parallel",
]

Deps = Mapping[int, Collection[int]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """An explicit async schedule. Tuples are indexed by call index; times start at 0
    (``prefix`` and ``suffix`` are not included)."""

    order: tuple[int, ...]
    decode_start: tuple[float, ...]
    decode_end: tuple[float, ...]
    """When the call was emitted (its decode ended)."""
    exec_start: tuple[float, ...]
    exec_end: tuple[float, ...]
    makespan: float
    """``max(last decode end, last exec end)``: the latency without prefix and suffix."""

    @property
    def trap_s(self) -> float:
        """Time the model waited before writing a dependent call (sum of gaps between decodes)."""
        t = 0.0
        prev = 0.0
        for i in self.order:
            t += self.decode_start[i] - prev
            prev = self.decode_end[i]
        return t


# ---------------------------------------------------------------------------------------------
# validation


def _check(G: Sequence[float], E: Sequence[float]) -> tuple[list[float], list[float]]:
    g = [float(x) for x in G]
    e = [float(x) for x in E]
    if len(g) != len(e):
        raise ValueError(f"G and E differ in length ({len(g)} != {len(e)})")
    for name, xs in (("G", g), ("E", e)):
        for i, x in enumerate(xs):
            if not (math.isfinite(x) and x >= 0.0):
                raise ValueError(f"{name}[{i}] must be a finite number >= 0, got {x!r}")
    return g, e


def _check_deps(deps: Deps | None, n: int) -> list[tuple[int, ...]]:
    """Return ``preds[i]`` for every call; raise ValueError on bad indices or a cycle."""
    preds: list[tuple[int, ...]] = [() for _ in range(n)]
    if not deps:
        return preds
    for i, ds in deps.items():
        if not (isinstance(i, int) and 0 <= i < n):
            raise ValueError(f"deps key {i!r} is not a call index in 0..{n - 1}")
        ds = tuple(dict.fromkeys(ds))
        for d in ds:
            if not (isinstance(d, int) and 0 <= d < n):
                raise ValueError(f"deps[{i}] names {d!r}, not a call index in 0..{n - 1}")
            if d == i:
                raise ValueError(f"call {i} depends on itself")
        preds[i] = ds
    _topological(preds)  # raises on a cycle
    return preds


def _topological(preds: list[tuple[int, ...]]) -> list[int]:
    n = len(preds)
    state = [0] * n  # 0 new, 1 on stack, 2 done
    out: list[int] = []
    for root in range(n):
        if state[root]:
            continue
        stack: list[tuple[int, Iterator[int]]] = [(root, iter(preds[root]))]
        state[root] = 1
        while stack:
            v, it = stack[-1]
            for u in it:
                if state[u] == 1:
                    raise ValueError(f"dependency cycle through calls {u} and {v}")
                if state[u] == 0:
                    state[u] = 1
                    stack.append((u, iter(preds[u])))
                    break
            else:
                stack.pop()
                state[v] = 2
                out.append(v)
    return out


def _affix(x: float, prefix: float, suffix: float) -> float:
    return prefix + x + suffix


# ---------------------------------------------------------------------------------------------
# closed forms


def sync(
    G: Sequence[float], E: Sequence[float], *, prefix: float = 0.0, suffix: float = 0.0
) -> float:
    """Sequential calls, each waited for: ``ΣG + ΣE``."""
    g, e = _check(G, E)
    return _affix(sum(g) + sum(e), prefix, suffix)


def sync_parallel(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
    *,
    prefix: float = 0.0,
    suffix: float = 0.0,
) -> float:
    """Batch and barrier: ``ΣG + max E`` for independent calls; with ``deps``, one round per
    DAG level, ``ΣG + Σ_rounds max E``."""
    g, e = _check(G, E)
    if not g:
        return _affix(0.0, prefix, suffix)
    preds = _check_deps(deps, len(g))
    level = [0] * len(g)
    for v in _topological(preds):
        level[v] = 1 + max((level[u] for u in preds[v]), default=-1)
    round_max: dict[int, float] = {}
    for i, lv in enumerate(level):
        round_max[lv] = max(round_max.get(lv, 0.0), e[i])
    return _affix(sum(g) + sum(round_max[k] for k in sorted(round_max)), prefix, suffix)


def lower_bound(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
    *,
    futures: bool = False,
    prefix: float = 0.0,
    suffix: float = 0.0,
) -> float:
    """No schedule beats ``max(ΣG, longest path of (G + E))`` (paper's model).

    With ``futures=True`` the path term is ``max_i (Σ_{j≤i} G(v_j) + Σ_{j≥i} E(v_j))`` over
    paths ``v_1 → … → v_k``: every call on the path is decoded before the next one, and each
    executes only after its predecessor finished.
    """
    g, e = _check(G, E)
    preds = _check_deps(deps, len(g))
    best = sum(g)
    chain = [0.0] * len(g)  # paper: longest G+E path ending at v
    gpath = [0.0] * len(g)  # futures: longest G path ending at v
    for v in _topological(preds):
        if futures:
            gpath[v] = g[v] + max((gpath[u] for u in preds[v]), default=0.0)
            chain[v] = e[v] + max(gpath[v], max((chain[u] for u in preds[v]), default=0.0))
        else:
            chain[v] = g[v] + e[v] + max((chain[u] for u in preds[v]), default=0.0)
        best = max(best, chain[v])
    return _affix(best, prefix, suffix)


# ---------------------------------------------------------------------------------------------
# explicit schedules


def async_schedule(
    G: Sequence[float],
    E: Sequence[float],
    order: Sequence[int] | None = None,
    deps: Deps | None = None,
    *,
    futures: bool = False,
) -> Schedule:
    """Simulate the async schedule for an emission ``order`` (default: :func:`lpt_order`).

    ``order`` must be a permutation of the call indices in which every call comes after its
    dependencies (a call cannot reference a result it has not asked for)."""
    g, e = _check(G, E)
    n = len(g)
    preds = _check_deps(deps, n)
    if order is None:
        order = lpt_order(g, e, deps, futures=futures)
    order = tuple(order)
    if sorted(order) != list(range(n)):
        raise ValueError(f"order {order!r} is not a permutation of 0..{n - 1}")
    pos = {v: k for k, v in enumerate(order)}
    for v in range(n):
        for u in preds[v]:
            if pos[u] > pos[v]:
                raise ValueError(f"order emits call {v} before its dependency {u}")
    ds = [0.0] * n
    de = [0.0] * n
    xs = [0.0] * n
    xe = [0.0] * n
    t = 0.0
    for v in order:
        ready = max((xe[u] for u in preds[v]), default=0.0)
        start = t if futures else max(t, ready)
        ds[v] = start
        de[v] = t = start + g[v]
        xs[v] = max(t, ready) if futures else t
        xe[v] = xs[v] + e[v]
    makespan = max(t, max(xe, default=0.0))
    return Schedule(order, tuple(ds), tuple(de), tuple(xs), tuple(xe), makespan)


def async_order(
    G: Sequence[float],
    E: Sequence[float],
    order: Sequence[int],
    deps: Deps | None = None,
    *,
    futures: bool = False,
    prefix: float = 0.0,
    suffix: float = 0.0,
) -> float:
    """Latency of the async schedule emitting calls in ``order`` (see the module docstring)."""
    return _affix(async_schedule(G, E, order, deps, futures=futures).makespan, prefix, suffix)


def lpt_order(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
    *,
    futures: bool = False,
) -> tuple[int, ...]:
    """Longest-processing-time-first emission order.

    Independent calls (or ``futures=True``, where every call whose dependencies have been
    *emitted* is writable): ``E`` descending, ties in index order. Otherwise list scheduling on
    the paper's model: when the model is free, the ready call with the largest ``E``; if none is
    ready, the one whose dependencies finish first (the model traps until then)."""
    g, e = _check(G, E)
    n = len(g)
    preds = _check_deps(deps, n)
    if not any(preds):
        return tuple(sorted(range(n), key=lambda i: -e[i]))
    done: set[int] = set()
    xe = [0.0] * n
    t = 0.0
    out: list[int] = []
    while len(out) < n:
        cands = [v for v in range(n) if v not in done and all(u in done for u in preds[v])]
        if futures:
            ready = cands
        else:
            at = {v: max((xe[u] for u in preds[v]), default=0.0) for v in cands}
            now = [v for v in cands if at[v] <= t]
            ready = now or [v for v in cands if at[v] == min(at.values())]
        v = min(ready, key=lambda i: (-e[i], i))
        start = t if futures else max(t, max((xe[u] for u in preds[v]), default=0.0))
        t = start + g[v]
        xe[v] = max(t, max((xe[u] for u in preds[v]), default=0.0)) + e[v]
        done.add(v)
        out.append(v)
    return tuple(out)


def critical_path_order(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
) -> tuple[int, ...]:
    """Emission order for futures by critical path: among calls whose dependencies have been
    emitted, the one with the longest *bottom level* (its ``E`` plus the longest ``E`` path
    through the calls that depend on it) first; ties in index order. For independent calls it
    is LPT. ``G`` only checks lengths: every call is decoded once, whatever the order."""
    g, e = _check(G, E)
    n = len(g)
    preds = _check_deps(deps, n)
    succs: list[list[int]] = [[] for _ in range(n)]
    for v, ps in enumerate(preds):
        for u in ps:
            succs[u].append(v)
    level = [0.0] * n
    for v in reversed(_topological(preds)):
        level[v] = e[v] + max((level[s] for s in succs[v]), default=0.0)
    done: set[int] = set()
    out: list[int] = []
    while len(out) < n:
        v = min((v for v in range(n) if v not in done and all(u in done for u in preds[v])),
                key=lambda i: (-level[i], i))
        done.add(v)
        out.append(v)
    return tuple(out)


def async_lpt(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
    *,
    futures: bool = False,
    prefix: float = 0.0,
    suffix: float = 0.0,
) -> float:
    """Latency of the async schedule in LPT order (:func:`lpt_order`). For independent calls
    this is ``max(ΣG, max_f (E(f) + Σ_{g emitted up to f} G(g)))``."""
    order = lpt_order(G, E, deps, futures=futures)
    return async_order(G, E, order, deps, futures=futures, prefix=prefix, suffix=suffix)


def optimal_order(
    G: Sequence[float],
    E: Sequence[float],
    deps: Deps | None = None,
    *,
    futures: bool = False,
    prefix: float = 0.0,
    suffix: float = 0.0,
    max_n: int = 8,
) -> tuple[float, tuple[int, ...]]:
    """The best async emission order: exhaustive search (depth-first with branch and bound)
    over every emission order that respects ``deps``, each simulated as in
    :func:`async_schedule` (with the same ``futures`` rule).

    Returns ``(latency, order)``; among equally good orders (within 1e-12 relative) the
    lexicographically first. Exponential in the worst case: refuses more than ``max_n`` calls
    (8! = 40320 orders). LPT is optimal for independent calls; under dependencies it is not (the
    problem is NP-hard in general), which is what this is for."""
    g, e = _check(G, E)
    n = len(g)
    if n > max_n:
        raise ValueError(f"{n} calls is too many for brute force (max_n={max_n})")
    preds = _check_deps(deps, n)
    succs: list[list[int]] = [[] for _ in range(n)]
    for v, ps in enumerate(preds):
        for u in ps:
            succs[u].append(v)
    missing = [len(p) for p in preds]
    used = [False] * n
    xe = [0.0] * n
    path: list[int] = []
    best = math.inf
    best_order: tuple[int, ...] = tuple(range(n))

    def tol(x: float) -> float:
        return 1e-12 * max(1.0, abs(x)) if math.isfinite(x) else 0.0

    # Depth-first over topological orders in lexicographic order, simulating the schedule
    # incrementally (as async_schedule does) and pruning a prefix that cannot beat the best:
    # the rest still has to be decoded and the last of them run, and each remaining call
    # needs its own G + E after the prefix.
    def rec(t: float, cur: float, rem_g: float) -> None:
        nonlocal best, best_order
        if len(path) == n:
            if cur < best - tol(best):
                best, best_order = cur, tuple(path)
            return
        for v in range(n):
            if used[v] or missing[v]:
                continue
            ready = max((xe[u] for u in preds[v]), default=0.0)
            start = t if futures else max(t, ready)
            t2 = start + g[v]
            xe[v] = (max(t2, ready) if futures else t2) + e[v]
            cur2 = max(cur, t2, xe[v])
            rem = rem_g - g[v]
            used[v] = True
            left = [w for w in range(n) if not used[w]]
            bound = cur2
            if left:
                bound = max(
                    bound,
                    t2 + max(rem, 0.0) + min(e[w] for w in left),  # the last one still runs
                    t2 + max(g[w] + e[w] for w in left),
                )
            if bound < best - tol(best):
                path.append(v)
                for w in succs[v]:
                    missing[w] -= 1
                rec(t2, cur2, rem)
                for w in succs[v]:
                    missing[w] += 1
                path.pop()
            used[v] = False

    rec(0.0, 0.0, sum(g))
    return _affix(best, prefix, suffix), best_order
