"""What the simulated model writes. A policy sees the results injected so far and returns the
next piece of text, or None to end its turn."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, Protocol

from asynclm.engines.sim._task import SimCall, SimTask
from asynclm.protocol import DEFAULT_MARKERS, Markers, render_call, render_trap


class Policy(Protocol):
    def reset(self, prompt: str) -> None:
        """A new conversation begins with ``prompt`` (the rendered chat)."""

    def observe(self, call_id: str | None, payload: str) -> None:
        """An interrupt for ``call_id`` was appended to the context."""

    def next_text(self) -> str | None:
        """The next text to write; None ends the turn."""


class OraclePolicy:
    """The ideal model for a scripted task (the paper's simulation): it emits the next ready call
    longest-estimate-first (``order="lpt"``) or in task order, traps when nothing is ready, and
    writes the answer once every result is in. With ``futures=True`` a call whose dependencies
    have been *emitted* is ready too: its arguments carry ``$id`` references (put them in
    ``SimCall.args``) and it is written without waiting for the results."""

    def __init__(
        self,
        task: SimTask,
        *,
        order: Literal["lpt", "given"] = "lpt",
        futures: bool = False,
        markers: Markers = DEFAULT_MARKERS,
    ) -> None:
        self.task = task
        self.order = order
        self.futures = futures
        self.markers = markers
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.emitted: list[str] = []
        self.results: dict[str, str] = {}
        self.answered = False

    def observe(self, call_id: str | None, payload: str) -> None:
        if call_id is not None:
            self.results[call_id] = payload

    def _ready(self) -> list[SimCall]:
        have = set(self.emitted) if self.futures else set(self.results)
        return [
            c for c in self.task.calls
            if c.id not in self.emitted and all(d in have for d in c.deps)
        ]

    def next_text(self) -> str | None:
        ready = self._ready()
        if ready:
            call = max(ready, key=lambda c: c.estimate) if self.order == "lpt" else ready[0]
            sep = "\n" if self.emitted else ""  # before the call, so a call starts at its [END]
            self.emitted.append(call.id)
            return sep + render_call(call.fn, dict(call.args), call.id, markers=self.markers)
        if len(self.results) < len(self.task.calls):
            return render_trap(markers=self.markers)
        if not self.answered:
            self.answered = True
            return self.task.answer
        return None


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
