"""A session's knobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Knobs with safe defaults. ``ids``: ``assign`` names calls written without an id (``c1``…)
    and injects their results; ``strict`` is the paper's reading (no id = fire-and-forget).
    ``on_eos_pending``: ``trap`` waits for pending results and lets the model continue;
    ``finish`` ends the turn (pending calls still reach an outcome: they are cancelled).
    ``echo_calls``: an interrupt repeats the call (``f(x=1) -> result``) ``always``, ``never``, or
    (``auto``) only for calls the runtime had to name, so the model can tell which is which.
    ``repeated_calls``: a call identical to an earlier one whose result the model already
    received (same tool and arguments, a tool without an ordering key, i.e. not stateful) is
    either answered with that result without running again (``reuse``; its interrupt says so)
    or run again (``run``). A call identical to one whose *error* was delivered runs again
    but counts as a repeat too. More than ``max_repeats`` repeats end the turn
    (``repeat_limit``): small models otherwise loop on a call.
    ``loop_window``: the last ``loop_window`` sampled tokens forming one short cycle
    (``557117557117…``) end the turn (``repetition``) instead of running to ``max_tokens``;
    0 disables the guard (see :class:`~asynclm.runtime.guards.LoopDetector`).
    ``enforce``: the model may not write results or interrupt markers itself (such text is rolled
    back and the model waits for the real result). ``False`` lets it write them (they stay in its
    context, parsed as a transcript): the setting for measuring what a model does unaided. Either
    way ``counters["forged"]`` counts the attempts."""

    max_tokens: int = 1024
    deadline_s: float | None = None
    ids: Literal["assign", "strict"] = "assign"
    on_eos_pending: Literal["trap", "finish"] = "trap"
    echo_calls: Literal["auto", "always", "never"] = "auto"
    tool_timeout_s: float | None = None
    max_rollbacks: int = 16
    max_empty_traps: int = 4
    repeated_calls: Literal["reuse", "run"] = "reuse"
    max_repeats: int = 3
    loop_window: int = 48
    enforce: bool = True

