"""The paper's baselines: strategies that emulate an API client, kept out of the core.

Each re-sends the whole context after every injection (``Strategy.resume="reprefill"``, a
runtime feature), paying time-to-first-token and prefill again, as a client of a stateless
completion API does:

- ``sync-reprefill``: ``sync``, one new request per result (the paper's "Sync").
- ``sync-parallel-reprefill``: ``sync-parallel``, one new request per round (the paper's
  "Sync-Parallel").
- ``async-naive``: ``async``, one new request per injection (the paper's "Async-Naive").

The core's :func:`asynclm.runtime.get_strategy` knows only the core strategies; benchmarks and
apps that offer the baselines look names up with :func:`strategy` and pass the
:class:`~asynclm.runtime.Strategy` object to a session.
"""

from __future__ import annotations

from asynclm.runtime.strategies import STRATEGIES, Strategy

__all__ = ["BASELINES", "strategy"]

BASELINES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("sync-reprefill", start_on_emit=True, block_on_call=True, deliver_anytime=True,
                 resume="reprefill"),
        Strategy("sync-parallel-reprefill", start_on_emit=False, block_on_call=False,
                 deliver_anytime=False, resume="reprefill", trap_waits_for="all"),
        Strategy("async-naive", start_on_emit=True, block_on_call=False, deliver_anytime=True,
                 resume="reprefill"),
    )
}


def strategy(name: str | Strategy) -> Strategy:
    """The core strategy or baseline called ``name`` (a :class:`Strategy` is returned as is).

    Raises ``ValueError`` naming every strategy and baseline when ``name`` is neither."""
    if isinstance(name, Strategy):
        return name
    found = STRATEGIES.get(name) or BASELINES.get(name)
    if found is None:
        raise ValueError(f"unknown strategy {name!r}; choose one of "
                         f"{', '.join([*STRATEGIES, *BASELINES])}")
    return found
