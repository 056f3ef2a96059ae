"""Strategies: they share the engine, protocol, executor and interrupts; only the blocking rule
and the way results re-enter the context differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Resume = Literal["append", "reprefill"]


@dataclass(frozen=True, slots=True)
class Strategy:
    """``start_on_emit``: a call starts as soon as its block closes (else at the next trap/end).
    ``block_on_call``: the model waits for each call's result before decoding on.
    ``deliver_anytime``: results are injected at any safe point (else only at a trap/end).
    ``resume``: ``append`` extends the live context; ``reprefill`` emulates an API client that
    sends a new request with the whole context (paying time-to-first-token and prefill again).
    ``trap_waits_for``: at a trap, wait for the ``next`` result or for ``all`` pending calls."""

    name: str
    start_on_emit: bool
    block_on_call: bool
    deliver_anytime: bool
    resume: Resume = "append"
    trap_waits_for: Literal["next", "all"] = "next"

    @property
    def default_delivery(self) -> Literal["interrupt", "when_idle"]:
        """The delivery mode of calls (and messages) nothing else sets a mode for (see
        :data:`~asynclm.tools.DeliveryMode`): ``interrupt`` where results are
        delivered at any safe point (``async``, ``sync``), else ``when_idle`` (``async-lazy``,
        ``sync-parallel``)."""
        return "interrupt" if self.deliver_anytime else "when_idle"


# The paper's baselines (``sync-reprefill``, ``sync-parallel-reprefill``, ``async-naive``: the
# same rules with ``resume="reprefill"``) are research, in :mod:`asynclm.bench.baselines`.
STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("sync", start_on_emit=True, block_on_call=True, deliver_anytime=True),
        Strategy("sync-parallel", start_on_emit=False, block_on_call=False, deliver_anytime=False,
                 trap_waits_for="all"),
        Strategy("async", start_on_emit=True, block_on_call=False, deliver_anytime=True),
        # Calls run at once, but results wait until the model waits (a trap, end of text, or a
        # forged interrupt): small prompt-only models stop writing calls when a result lands.
        Strategy("async-lazy", start_on_emit=True, block_on_call=False, deliver_anytime=False),
    )
}


def get_strategy(name: str | Strategy) -> Strategy:
    """The core strategy called ``name`` (a :class:`Strategy` is returned as is, so any
    strategy, e.g. a baseline from :mod:`asynclm.bench.baselines`, can be passed).

    Raises ``ValueError`` naming the core strategies and where the baselines live."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)} (the paper's "
            "baselines, e.g. 'async-naive' or 'sync-reprefill', are in asynclm.bench.baselines: "
            "pass asynclm.bench.baselines.strategy(name))"
        ) from None
