"""Recording a simulated session: the oracle (longest-estimate-first) writes, the real runtime
injects, and every context token is labelled with who wrote it.

- :class:`StagedOracle` is :class:`~asynclm.testing.sim.OraclePolicy` over call *stages*: stage 0
  is the user's question; each ``[INTR] user [HEAD] … [END]`` interrupt releases the next stage
  (a user message that arrives mid-generation). Calls on their own lines, one answer per stage.
- :class:`RecordingEngine` is a :class:`~asynclm.testing.sim.SimEngine` that labels each context
  token ``prompt``, ``model`` (sampled), ``runtime`` (appended by the session: interrupts) or
  ``user`` (a user interrupt, which it delivers itself at the first decoding step at or after its
  time when the oracle is between two pieces of text, i.e. at a safe point).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from asynclm.protocol import DEFAULT_MARKERS, Markers, escape_payload, render_call, render_trap
from asynclm.testing.sim import EOS, OraclePolicy, SimCall, SimCosts, SimEngine, SimTask

__all__ = ["USER_ID", "RecordingEngine", "Stage", "StagedOracle", "user_interrupt_segments"]

USER_ID = "user"
"""The interrupt id of a message from the user that arrives while the model is working."""


@dataclass(frozen=True, slots=True)
class Stage:
    """Calls released together, and the answer written once all their results are in."""

    calls: tuple[SimCall, ...]
    answer: str


class StagedOracle(OraclePolicy):
    """The oracle over stages (see the module docstring). Among ready calls the one with the
    largest estimate goes first (ties: stage order); with nothing ready and results missing it
    traps; once every released result is in it answers the unanswered stages."""

    def __init__(self, stages: Sequence[Stage], *, markers: Markers = DEFAULT_MARKERS) -> None:
        self.stages = tuple(stages)
        calls = tuple(c for s in self.stages for c in s.calls)
        super().__init__(SimTask(calls), order="lpt", markers=markers)

    def reset(self, prompt: str) -> None:
        super().reset(prompt)
        self.released = 1
        self.answered_stages = 0
        self.last_was_model = False

    def observe(self, call_id: str | None, payload: str) -> None:
        self.last_was_model = False  # an interrupt ends with a newline
        if call_id == USER_ID:
            self.released = min(len(self.stages), self.released + 1)
        else:
            super().observe(call_id, payload)

    def _active(self) -> list[SimCall]:
        return [c for s in self.stages[: self.released] for c in s.calls]

    def _ready(self) -> list[SimCall]:
        return [c for c in self._active()
                if c.id not in self.emitted and all(d in self.results for d in c.deps)]

    def next_text(self) -> str | None:
        sep = "\n" if self.last_was_model else ""
        ready = self._ready()
        if ready:
            call = max(ready, key=lambda c: c.estimate)
            self.emitted.append(call.id)
            self.last_was_model = True
            return sep + render_call(call.fn, dict(call.args), call.id, markers=self.markers)
        if any(c.id not in self.results for c in self._active()):
            self.last_was_model = True
            return sep + render_trap(markers=self.markers)
        if self.answered_stages < self.released:
            text = "\n".join(s.answer for s in self.stages[self.answered_stages: self.released])
            self.answered_stages = self.released
            self.last_was_model = True
            return sep + text
        return None


def user_interrupt_segments(message: str, markers: Markers = DEFAULT_MARKERS) -> list[tuple[str, bool]]:
    """The user interrupt as (text, is_markup) pieces, rendered like the runtime's interrupts."""
    return [
        (f"{markers.interrupt} {USER_ID} {markers.head} ", True),
        (escape_payload(message, markers=markers), False),
        (f" {markers.end}\n", True),
    ]


class RecordingEngine(SimEngine):
    """A :class:`SimEngine` that labels its context tokens (see the module docstring)."""

    def __init__(
        self, policy: StagedOracle, costs: SimCosts, *,
        user_message: tuple[float, str] | None = None, markers: Markers = DEFAULT_MARKERS,
    ) -> None:
        super().__init__(policy, costs, markers=markers)
        self.labels: list[str] = []
        self.user_message = user_message
        self.user_at: float | None = None
        self._trap_tokens = self.tokenize(render_trap(markers=markers), special=True)

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        out = await super().prefill(tokens, reuse_prefix=reuse_prefix)
        self.labels = ["prompt"] * len(self._ctx)
        return out

    async def step(self, *, ban: Collection[int] = ()) -> int:
        now = asyncio.get_running_loop().time()
        if (self.user_message is not None and self.user_at is None and not self._pending
                and now >= self.user_message[0]):
            tokens: list[int] = []
            for text, markup in user_interrupt_segments(self.user_message[1], self.markers):
                tokens += self.tokenize(text, special=markup)
            self._ctx.extend(tokens)
            self.labels.extend(["user"] * len(tokens))
            self.user_at = now
            self._observe(tokens)
        tok = await super().step(ban=ban)
        self.labels.append("model")
        return tok

    async def append(self, tokens: Sequence[int]) -> None:
        await super().append(tokens)
        self.labels.extend(["runtime"] * len(tokens))
        if self._pending == self._trap_tokens:
            # A result arrived between the newline and the trap the oracle had decided on: a
            # model would not wait now, so the oracle decides again.
            self._pending = []

    async def rollback(self, n_tokens: int) -> None:
        if self.user_at is not None:  # the session's token count no longer matches ours
            raise RuntimeError("rollback after a user interrupt is not supported")
        await super().rollback(n_tokens)
        del self.labels[n_tokens:]

    def segments(self) -> list[tuple[str, str]]:
        """The generated context (after the prompt) as (label, text) runs; EOS dropped."""
        out: list[tuple[str, str]] = []
        run: list[int] = []
        label = ""
        for tok, lab in zip(self._ctx, self.labels, strict=True):
            if lab == "prompt" or tok == EOS:
                continue
            if lab != label and run:
                out.append((label, self.detokenize(run).decode()))
                run = []
            label = lab
            run.append(tok)
        if run:
            out.append((label, self.detokenize(run).decode()))
        return out
