"""The lower bound of one BFCL run, from that run's own measurements.

``lb_s`` is the bound in the paper's model (``latency.lower_bound``): with ``P`` the initial
prefill, ``D`` the run's total decode time over ``N`` generated tokens (``τ = D / N``), ``A``
the decode time after the last interrupt was injected (the answer, which needs every result),
``G_i = τ · tokens(call block i)`` and ``E_i`` call ``i``'s measured execution time
(``started_at → ended_at``; 0 if it never ran or its result was never injected), over the calls
written before the last injection (later ones are decoded within ``A``). ``G_i`` is an estimate
(mean ``τ``, the call's text tokenized on its own); where the estimates sum to more than the
measured decode they are part of (``D − T − A``), they are scaled down to it, so the bound never
exceeds the measured time::

    LB = P + max(D − T − A, max_i (G_i + E_i)) + A

with ``T`` the decode time of the trap blocks the model wrote (waiting is not work), i.e. the
same decode work and the same tool times with perfect overlap and free injections. It is
computed with ``latency.lower_bound(G + [D − T − A − ΣG], E + [0], prefix=P, suffix=A)``; where
calls must keep their order (one tool instance), each depends on the previous one and the
longest chain counts too.
Efficiency = LB ÷ measured latency.

The paper's bound takes injections as free, as they nearly are on a GPU. On a CPU, appending a
result's tokens to the context costs about as much per token as prefill, and every strategy
that shows the model its results pays it. ``lb_ingest_s`` is therefore also reported: the same
bound with ``I``, the run's measured interrupt time (result tokens appended), counted as
model-track work that cannot overlap decoding::

    LB_ingest = P + max(D − T − A + I, max_i (G_i + E_i)) + A

``efficiency_ingest`` = LB_ingest ÷ measured latency. Summaries leave both out for strategies
that re-send the whole context: their result ingest is inside a re-prefill, not measured apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

from asynclm.bench import latency
from asynclm.protocol import render_trap
from asynclm.runtime import CallRecord, SessionResult
from asynclm.trace import SpanKind

__all__ = ["bound_parts", "lower_bound"]


def lower_bound(
    result: SessionResult, tokens_of: Callable[[str], int], *,
    order_key: Callable[[CallRecord], Hashable | None] | None = None,
    futures: bool | None = False,
) -> dict[str, float]:
    """The run's lower bound (see the module docstring) and its parts, in seconds.

    ``order_key``: calls with equal non-None keys must run one after another in emission order
    (a stateful tool instance); each then depends on the previous one, and the bound takes the
    longest such chain (``futures=True``: the model may write a call before its predecessor's
    result is in; ``None``: it may if it did so in this run, since then that result was not
    needed to write the call). Trap blocks are not work: their decode time is left out of ``D``."""
    spans = result.trace.model_spans
    P = sum(s.duration for s in spans if s.kind is SpanKind.PREFILL)
    decode = [s for s in spans if s.kind is SpanKind.DECODE]
    D = sum(s.duration for s in decode)
    tau = D / result.n_generated if result.n_generated else 0.0
    injected = [c.injected_at for c in result.calls if c.injected_at is not None]
    A = 0.0
    calls: Sequence[CallRecord] = result.calls
    if injected:
        t = max(injected)
        A = sum(max(0.0, s.end - max(s.start, t)) for s in decode)
        # a call written after the last injection is part of A's decode; its result never
        # reached the model, so it holds nothing up
        calls = [c for c in calls if c.emitted_at <= t]
    T = tau * tokens_of(render_trap()) * result.counters.get("traps", 0)
    E = [(c.duration_s or 0.0) if c.injected_at is not None else 0.0 for c in calls]
    deps: dict[int, tuple[int, ...]] = {}
    if order_key is not None:
        last: dict[Hashable, int] = {}
        for i, c in enumerate(calls):
            key = order_key(c)
            if key is not None:
                if key in last:
                    deps[i] = (last[key],)
                last[key] = i
    if futures is None:
        futures = any(calls[i].emitted_at < (calls[u].injected_at or math.inf)
                      for i, (u,) in deps.items())
    ingest = sum(s.duration for s in spans if s.kind is SpanKind.INTERRUPT)  # I
    return bound_parts(P=P, D=D, A=A, T=T, ingest=ingest,
                       G=[tau * tokens_of(c.raw) for c in calls], E=E, deps=deps,
                       futures=futures)


def bound_parts(
    *, P: float, D: float, A: float, T: float, ingest: float, G: Sequence[float],
    E: Sequence[float], deps: latency.Deps | None = None, futures: bool = False,
) -> dict[str, float]:
    """Both bounds from a run's measured parts (see the module docstring).

    ``G`` are estimates (mean τ, a call's text tokenized on its own); the calls are part of the
    decode before the answer, so where they sum past it (``D − T − A``) they are scaled down."""
    work = max(0.0, D - A - T)
    if (total := sum(G)) > work:
        G = [g * work / total for g in G]
    rest = max(0.0, work - sum(G))

    def bound(extra: float) -> float:
        return latency.lower_bound([*G, rest + extra], [*E, 0.0], deps, futures=futures,
                                   prefix=P, suffix=A)

    return {"lb_s": bound(0.0), "lb_ingest_s": bound(ingest), "ingest_s": ingest,
            "prefill_s": P, "decode_s": D, "answer_s": A, "sum_G_s": sum(G), "trap_decode_s": T,
            "max_G_plus_E_s": max((g + e for g, e in zip(G, E, strict=True)), default=0.0)}
