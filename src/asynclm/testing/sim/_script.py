"""A scripted model that speaks any dialect: prose, calls, waits and traps as steps.

:class:`~asynclm.testing.sim.ScriptedPolicy` writes fixed text, so its scripts are written in
one markup (CML). :class:`CallScript` writes the same kind of script for any dialect: calls are
steps (:class:`ScriptCall`) that the dialect renders, waits (:class:`WaitFor`) and single
traps (:class:`TrapOnce`) are the dialect's trap, and the results it receives are resolved to
its own call keys by a :class:`~asynclm.testing.sim.CallLedger` (ids where the dialect has
them, else the echoed call, else the order). Tests of the runtime's semantics run one script in
every dialect and compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asynclm.protocol import CML, Dialect, Interrupt
from asynclm.testing.sim._correlate import CallLedger, Observation

__all__ = ["CallScript", "ScriptCall", "ScriptStep", "TrapOnce", "WaitFor"]


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Write the call ``fn(**args)``, known to the script as ``key`` (the dialect writes
    ``key`` as its id where it writes ids; the runtime's id is :meth:`CallScript.wire_id`).
    :class:`~asynclm.protocol.Ref` values name the script's calls by key (``Ref("a")`` is
    written ``$<a's wire id>``). A call always begins on a line of its own (a newline is put
    before it after text that did not end one).

    ``between``: the block is written in two pieces, cut in its middle, and ``between()`` is
    called when the model is about to write the second: while the model is *inside* the call
    block (to send a message that must wait for the block's end, say)."""

    key: str
    fn: str
    args: Mapping[str, Any] = field(default_factory=dict)
    between: Callable[[], object] | None = None


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Write the dialect's trap until the final results of ``keys`` (partial results do not
    count) and at least ``messages`` messages in all have arrived."""

    keys: tuple[str, ...] = ()
    messages: int = 0

    def __init__(self, *keys: str, messages: int = 0) -> None:
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "messages", messages)


@dataclass(frozen=True, slots=True)
class TrapOnce:
    """Write the dialect's trap once (the model waits for whatever comes next)."""


ScriptStep = str | ScriptCall | WaitFor | TrapOnce | Callable[["CallScript"], Any]
"""A step: text (written as is), a call, a wait, a trap, or a callable of the script that
returns a step (or None / ``""``: nothing; it may also act, e.g. send a message)."""


class CallScript:
    """A :class:`~asynclm.testing.sim.Policy` that writes ``steps`` in ``dialect`` (default:
    CML) and ends when they are done. What it received, by its own call keys: ``results``
    (final results and errors), ``partials`` (``(key or None, payload)``: a dialect without
    ids does not say whose), ``messages`` (``(head or None, payload)``: messages from outside
    and any interrupt that answers none of its calls) and ``observed`` (every
    :class:`~asynclm.testing.sim.Observation` in order).

    A call written as text (in a ``str`` step) is unknown to its ledger: write calls as
    :class:`ScriptCall` steps, or the runtime's ids of later calls are mispredicted."""

    def __init__(self, steps: Iterable[ScriptStep], *, dialect: Dialect | None = None) -> None:
        self.steps = list(steps)
        self.dialect: Dialect = dialect if dialect is not None else CML
        self.ledger = CallLedger(self.dialect)
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.prompt = prompt
        self.pos = 0
        self.ledger.reset()
        self.results: dict[str, str] = {}
        self.partials: list[tuple[str | None, str]] = []
        self.messages: list[tuple[str | None, str]] = []
        self.observed: list[Observation] = []
        self._wait: WaitFor | None = None  # the wait in progress
        self._rest: tuple[str, Callable[[], object]] | None = None  # a call block's second half
        self._line_start = True

    # -- what it knows -----------------------------------------------------------------------
    def wire_id(self, key: str) -> str:
        """The runtime's id of the call written as ``key``."""
        return self.ledger.wire_id(key)

    def observe_interrupt(self, event: Interrupt) -> None:
        """Resolve ``event`` (:meth:`CallLedger.resolve`) and keep it where it belongs."""
        obs = self.ledger.resolve(event)
        self.observed.append(obs)
        if obs.kind == "result" and obs.key is not None:
            self.results[obs.key] = obs.payload
        elif obs.kind == "partial":
            self.partials.append((obs.key, obs.payload))
        else:
            self.messages.append((obs.key, obs.payload))
        self._line_start = True  # every frame ends an injection at a line start

    def observe(self, call_id: str | None, payload: str) -> None:
        """For a caller with a bare head: resolved like an interrupt with no offsets."""
        self.observe_interrupt(Interrupt(call_id, payload, 0, 0))

    # -- what it writes ----------------------------------------------------------------------
    def next_text(self) -> str | None:
        if self._rest is not None:
            (rest, between), self._rest = self._rest, None
            between()
            return self._wrote(rest, line_start=True)
        while True:
            if self._wait is not None:
                if not self._satisfied(self._wait):
                    return self._wrote(self.dialect.render_trap(), line_start=True)
                self._wait = None
            if self.pos >= len(self.steps):
                return None
            step = self.steps[self.pos]
            self.pos += 1
            while callable(step):
                step = step(self)
            if isinstance(step, WaitFor):
                self._wait = step
                continue
            text = self._text(step)
            if text:
                return text

    def _satisfied(self, wait: WaitFor) -> bool:
        return all(k in self.results for k in wait.keys) and len(self.messages) >= wait.messages

    def _text(self, step: Any) -> str | None:
        if step is None or step == "":
            return None
        if isinstance(step, TrapOnce):
            return self._wrote(self.dialect.render_trap(), line_start=True)
        if isinstance(step, ScriptCall):
            lead = "" if self._line_start else "\n"
            text = self.ledger.write(step.key, step.fn, step.args)
            if step.between is None:
                return self._wrote(lead + text, line_start=True)
            cut = len(text) // 2
            self._rest = (text[cut:], step.between)
            return self._wrote(lead + text[:cut], line_start=False)
        if isinstance(step, str):
            return self._wrote(step)
        raise TypeError(f"not a script step: {step!r}")

    def _wrote(self, text: str, *, line_start: bool | None = None) -> str:
        self._line_start = text.endswith("\n") if line_start is None else line_start
        return text
