"""What the simulated model writes. A policy sees the results injected so far and returns the
next piece of text, or None to end its turn."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

from asynclm.protocol import (
    DEFAULT_MARKERS,
    CmlDialect,
    Dialect,
    Interrupt,
    Markers,
    Ref,
    format_call,
)
from asynclm.testing.sim._correlate import CallLedger
from asynclm.testing.sim._task import SimCall, SimTask


class Policy(Protocol):
    def reset(self, prompt: str) -> None:
        """A new conversation begins with ``prompt`` (the rendered chat)."""

    def observe(self, call_id: str | None, payload: str) -> None:
        """An interrupt headed ``call_id`` (the dialect's head: a call id or a message's
        sender; None where the dialect's result frame names nothing) was appended."""

    def next_text(self) -> str | None:
        """The next text to write; None ends the turn."""


@runtime_checkable
class ObservesInterrupts(Protocol):
    """A policy that reads whole interrupts: :class:`~asynclm.testing.sim.SimEngine` calls
    :meth:`observe_interrupt` instead of :meth:`Policy.observe` when a policy has it (the
    policies that write calls through a :class:`~asynclm.testing.sim.CallLedger` do: they
    resolve results in dialects without ids themselves)."""

    def observe_interrupt(self, event: Interrupt) -> None:
        """``event`` (from the dialect's transcript parser) was appended to the context."""


class OraclePolicy:
    """The ideal model for a scripted task (the paper's simulation): it emits the next ready call
    longest-estimate-first (``order="lpt"``) or in task order, traps when nothing is ready, and
    writes the answer once every result is in. With ``futures=True`` a call whose dependencies
    have been *emitted* is ready too: its arguments carry ``$id`` references (put them in
    ``SimCall.args``) and it is written without waiting for the results. Without futures the
    same call is written after its inputs arrived, with the referenced values copied in.
    ``order="critical-path"``: the ready call with the longest estimated path through what
    depends on it first (its estimate plus the longest chain of estimates below it); the same
    as LPT for independent calls. It writes calls and traps in ``dialect`` (default: CML with
    ``markers``).

    Every dialect: calls are written through a :class:`~asynclm.testing.sim.CallLedger`, which
    knows the id the runtime gives each one (the task's id where the dialect carries ids, else
    ``c1``, ``c2``, ... in writing order: ``$`` references are written with those) and which
    call each injected result answers (its id, else the call it echoes, else the oldest
    unanswered). ``results`` (task id -> payload) holds final results only: a partial result
    goes to ``partials`` (``(task id or None, payload)``: a dialect without ids does not say
    whose), a message to ``messages`` (``(head or None, payload)``); neither is an answer."""

    def __init__(
        self,
        task: SimTask,
        *,
        order: Literal["lpt", "given", "critical-path"] = "lpt",
        futures: bool = False,
        markers: Markers = DEFAULT_MARKERS,
        dialect: Dialect | None = None,
    ) -> None:
        self.task = task
        self.order = order
        self.priority = _priorities(task, order)
        self.futures = futures
        self.dialect: Dialect = dialect if dialect is not None else CmlDialect(markers)
        self.markers = getattr(self.dialect, "markers", markers)  # CML's, for older callers
        self.ledger = CallLedger(self.dialect)
        self._ids = frozenset(c.id for c in task.calls)
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.emitted: list[str] = []
        self.results: dict[str, str] = {}
        self.partials: list[tuple[str | None, str]] = []
        self.messages: list[tuple[str | None, str]] = []
        self.answered = False
        self.ledger.reset()

    def observe_interrupt(self, event: Interrupt) -> None:
        """Resolve ``event`` to one of the task's calls (:meth:`CallLedger.resolve`) and
        :meth:`observe` it under that call's task id (a message: under its head)."""
        obs = self.ledger.resolve(event)
        self.observe(obs.key, obs.payload)

    def observe(self, call_id: str | None, payload: str) -> None:
        """An interrupt for the task's call ``call_id`` (a task id), or, for any other head
        (None included), a message or note. A payload in the dialect's partial wording is a
        partial result, never the call's answer."""
        if self.ledger.is_partial(payload):
            self.partials.append((call_id if call_id in self._ids else None, payload))
        elif call_id is not None and call_id in self._ids:
            self.results[call_id] = payload
        else:
            self.messages.append((call_id, payload))

    def _ready(self) -> list[SimCall]:
        have = set(self.emitted) if self.futures else set(self.results)
        return [
            c for c in self.task.calls
            if c.id not in self.emitted and all(d in have for d in c.needs)
        ]

    def next_text(self) -> str | None:
        ready = self._ready()
        if ready:
            call = max(ready, key=lambda c: self.priority[c.id])
            sep = "\n" if self.emitted else ""  # before the call, so a call starts at its end
            self.emitted.append(call.id)
            args = dict(call.args) if self.futures else self.task.literal_args(call)
            return sep + self.ledger.write(call.id, call.fn, args)
        if len(self.results) < len(self.task.calls):
            return self.dialect.render_trap()
        if not self.answered:
            self.answered = True
            return self.task.answer
        return None


def _priorities(task: SimTask, order: str) -> dict[str, float]:
    """Larger first (ties: task order). ``lpt``: the estimate; ``given``: task order;
    ``critical-path``: the estimate plus the longest estimate path through dependents."""
    calls = task.calls
    if order == "given":
        return {c.id: -float(i) for i, c in enumerate(calls)}
    if order == "lpt":
        return {c.id: c.estimate for c in calls}
    if order != "critical-path":
        raise ValueError(f"unknown order {order!r}")
    dependents = {c.id: [d for d in calls if c.id in d.needs] for c in calls}
    level: dict[str, float] = {}

    def bottom(c: SimCall) -> float:
        if c.id not in level:
            level[c.id] = c.estimate + max((bottom(d) for d in dependents[c.id]), default=0.0)
        return level[c.id]

    for c in calls:
        bottom(c)
    return level


class ScriptedPolicy:
    """Writes fixed pieces of text in order (for tests); an item may be a callable of the
    results seen so far. Ends when the script is exhausted."""

    def __init__(self, script: Iterable[str | Callable[[dict[str, str]], str | None]]) -> None:
        self.script = list(script)
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.pos = 0
        self.results: dict[str, str] = {}
        self.prompt = prompt

    def observe(self, call_id: str | None, payload: str) -> None:
        self.results[call_id or ""] = payload

    def next_text(self) -> str | None:
        while self.pos < len(self.script):
            item = self.script[self.pos]
            self.pos += 1
            text = item(self.results) if callable(item) else item
            if text:
                return text
        return None


_FAILED = re.compile(r"-> (error|timeout|cancelled)\b")


def _renumber(value: Any, num: Mapping[str, str]) -> Any:
    if isinstance(value, Ref):
        return Ref(num[value.id], value.path)
    if isinstance(value, Mapping):
        return {k: _renumber(v, num) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_renumber(v, num) for v in value]
    return value


class CompilerPolicy:
    """The ideal LLMCompiler planner and joiner for a scripted task (see
    :mod:`asynclm.bench.compiler`). It writes the plan one numbered task per line, each task
    as soon as everything it references is planned (longest estimate first with
    ``order="lpt"``), with ``$n`` references, then ``n. join()``. Once the observations arrive
    it writes ``Action: Finish(<answer>)``; with ``replan_on_error`` a failed task makes it
    write ``Action: Replan(...)`` once, then plan the failed tasks (and what needs them) again,
    numbered on."""

    def __init__(
        self,
        task: SimTask,
        *,
        order: Literal["lpt", "given"] = "lpt",
        replan_on_error: bool = False,
        thought: str = "Thought: I have everything I need.\n",
    ) -> None:
        self.task = task
        self.order = order
        self.replan_on_error = replan_on_error
        self.thought = thought
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.phase: Literal["plan", "wait", "join", "replan-eos", "replan", "done"] = "plan"
        self.num: dict[str, str] = {}  # sim call id -> task number
        self.next_n = 1
        self.payloads: dict[str, str] = {}  # task number -> observation
        self.replanned = False

    def observe(self, call_id: str | None, payload: str) -> None:
        if call_id is not None:
            self.payloads[call_id] = payload
            if self.phase == "wait":
                self.phase = "join"

    def _failed(self) -> set[str]:
        by_num = {n: cid for cid, n in self.num.items()}
        return {by_num[n] for n, p in self.payloads.items()
                if n in by_num and _FAILED.search(p)}

    def next_text(self) -> str | None:
        if self.phase == "replan-eos":  # the joiner's turn ends; the runtime asks again
            self.phase = "replan"
            return None
        if self.phase == "replan":
            failed = self._failed()
            for cid in failed:
                self.payloads.pop(self.num.pop(cid), None)
            self.phase = "plan"
        if self.phase == "plan":
            ready = [c for c in self.task.calls
                     if c.id not in self.num and all(d in self.num for d in c.needs)]
            n = str(self.next_n)
            self.next_n += 1
            if not ready:
                self.phase = "wait"
                return f"{n}. join()\n"
            call = max(ready, key=lambda c: c.estimate) if self.order == "lpt" else ready[0]
            self.num[call.id] = n
            args = _renumber(dict(call.args), self.num)
            return f"{n}. {format_call(call.fn, args)}\n"
        if self.phase == "join":
            self.phase = "done"
            if self.replan_on_error and not self.replanned and self._failed():
                self.replanned = True
                self.phase = "replan-eos"
                return self.thought.replace("everything I need", "a failure") + (
                    "Action: Replan(retry the failed tasks)")
            return f"{self.thought}Action: Finish({self.task.answer})"
        return None
