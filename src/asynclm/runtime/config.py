"""A session's knobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from asynclm.runtime.events import CallEmitted
    from asynclm.tools import DeliveryMode

DEFAULT_DEADLINE_S = 600.0
"""Default ``SessionConfig.deadline_s`` (seconds): no run lasts forever unless asked to."""

DEFAULT_CANCEL_GRACE_S = 5.0
"""Default ``SessionConfig.cancel_grace_s`` (seconds): how long a cancelled or timed-out tool
gets to end before it is abandoned."""


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
    way ``counters["forged"]`` counts the attempts.

    Liveness: a run returns within ``deadline_s`` plus ``cancel_grace_s`` whatever its tools do.
    ``deadline_s`` (default :data:`DEFAULT_DEADLINE_S`, 600 s; ``None`` explicitly: no deadline)
    bounds the whole run, on the loop's clock (virtual time for the simulator): at the deadline
    the run stops (``stop_reason="deadline"``) and its pending calls are cancelled.
    ``tool_timeout_s`` is the per-call timeout of tools without their own ``timeout``.
    ``cancel_grace_s`` (default :data:`DEFAULT_CANCEL_GRACE_S`, 5 s): a tool that is cancelled
    (timeout, deadline, ``RunControl.cancel_call``, end of the run) gets this long to end; one
    that ignores the cancellation is *abandoned*: its outcome is recorded (``timeout`` or
    ``cancelled``, whatever it returns later is discarded), its task is left running detached,
    and its id is listed in ``SessionResult.abandoned`` (``counters["abandoned"]``; a warning is
    logged on the ``asynclm.runtime`` logger). A sync tool's thread cannot be stopped at all: a
    sync tool cancelled while running is abandoned at once (it is told through
    ``ToolContext.cancelled()``). An abandoned coroutine still runs on the event loop, which
    cancels it again when it closes, and ``asyncio.run`` waits for it and for worker threads
    then: the run returned, its event loop may still linger. Under virtual time the clock stands
    still while a sync tool's thread runs, up to ``clock.THREAD_HOLD_S`` real
    seconds, so the deadline is not reached just because a thread is working.

    ``delivery_for``: a hook ``(call) -> mode | None`` called with each call as it is emitted
    (a :class:`~asynclm.runtime.events.CallEmitted`: ``call_id``, ``fn``, ``args``, ``raw``);
    a mode (``"interrupt"``, ``"when_idle"``, ``"silent"``) overrides the tool's ``delivery``
    option and the strategy's default, None keeps them. ``RunControl.set_delivery`` overrides
    it per call afterwards. See :data:`~asynclm.tools.DeliveryMode`."""

    max_tokens: int = 1024
    deadline_s: float | None = DEFAULT_DEADLINE_S
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
    cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S
    delivery_for: Callable[[CallEmitted], DeliveryMode | None] | None = None
    pending: Literal["auto", "tool", "note", "off"] = "auto"
    """How the model sees its pending calls (:mod:`asynclm.runtime.builtins`): ``auto``
    (default) offers the built-in ``pending()`` tool in sessions that offer ``cancel`` (one of
    their tools is ``cancellable``), and nothing otherwise, so that sessions that did not opt in
    keep their prompt unchanged; ``tool`` always offers it; ``note`` offers no tool but appends
    a note listing the calls still running to the interrupt delivered at a trap; ``off``:
    neither."""

    def __post_init__(self) -> None:
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be a positive number of seconds or None, "
                             f"not {self.deadline_s!r}")
        if not self.cancel_grace_s >= 0:
            raise ValueError(f"cancel_grace_s must be >= 0, not {self.cancel_grace_s!r}")

