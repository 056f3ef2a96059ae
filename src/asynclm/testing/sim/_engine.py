"""The simulated engine: a policy writes text, costs are paid on the loop clock.

Run it on virtual time (:func:`asynclm.runtime.clock.run_virtual`) for exact, instant
measurements, or on real time to measure the runtime's own overhead (``tpot_s=0``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from asynclm.engines.base import Capabilities, ChatMessage
from asynclm.errors import EngineClosedError
from asynclm.protocol import DEFAULT_MARKERS, CmlDialect, Dialect, Interrupt, Markers
from asynclm.testing.sim._policy import ObservesInterrupts, Policy
from asynclm.testing.sim._tokenizer import EOS, SimTokenizer


@dataclass(frozen=True, slots=True)
class SimCosts:
    """Time per output token; a request's time to first token plus prompt processing
    (``prefill_tps`` tokens/s, None = free); appended tokens (``append_tps``, None = free)."""

    tpot_s: float = 0.005
    ttft_s: float = 0.0
    prefill_tps: float | None = None
    append_tps: float | None = None
    free_traps: bool = False
    """Trap blocks cost no decode time, as in the paper's latency model (which ignores them)."""


class SimEngine:
    """An :class:`~asynclm.engines.base.Engine` whose model is a :class:`Policy`.

    ``dialect`` (default: CML with ``markers``) is the markup the simulated model speaks: its
    special strings are single tokens, its trap may be free (``SimCosts.free_traps``), and the
    policy observes the interrupts that the dialect's transcript parser finds in appended text:
    whole (:class:`~asynclm.testing.sim.ObservesInterrupts`, which resolve results in dialects
    without ids themselves) or as ``observe(head, payload)``.
    """

    def __init__(
        self,
        policy: Policy,
        costs: SimCosts | None = None,
        *,
        markers: Markers = DEFAULT_MARKERS,
        virtual_time: bool = True,
        dialect: Dialect | None = None,
    ) -> None:
        self.policy = policy
        self.costs = costs or SimCosts()
        self.dialect: Dialect = dialect if dialect is not None else CmlDialect(markers)
        self.markers = getattr(self.dialect, "markers", markers)  # CML's, for older callers
        self.tokenizer = SimTokenizer(self.dialect)
        self.capabilities = Capabilities(virtual_time=virtual_time)
        self._ctx: list[int] = []
        self._pending: list[int] = []  # tokens the policy has written but not yet sampled
        self._ended = False
        self._trap_ids = self.tokenizer.tokenize(self.dialect.render_trap(), special=True)
        self._trap_at = 0  # how much of the trap's tokens the model has just written
        self.requests = 0  # prefill calls (a re-request each, as an API client would make)
        self.prefilled_tokens = 0
        self._closed = False

    # -- text ------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self._ctx)

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return "".join(f"<{m.role}>\n{m.content}\n" for m in messages) + "<assistant>\n"

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        return self.tokenizer.tokenize(self.render_chat(messages), special=False)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return self.tokenizer.tokenize(text, special=special)

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        return self.tokenizer.detokenize(tokens)

    def is_eos(self, token: int) -> bool:
        return token == EOS

    # -- costs ------------------------------------------------------------------------------
    async def _pay(self, seconds: float) -> None:
        await asyncio.sleep(seconds if seconds > 0 else 0)

    def _observe(self, tokens: Sequence[int]) -> None:
        parser = self.dialect.parser(transcript=True)
        text = self.detokenize(tokens).decode()
        policy = self.policy
        for event in parser.feed(text) + parser.close():
            if not isinstance(event, Interrupt):
                continue
            if isinstance(policy, ObservesInterrupts):
                policy.observe_interrupt(event)
            else:
                policy.observe(event.id, event.payload)

    # -- engine interface ---------------------------------------------------------------------
    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        self._check_open()
        c = self.costs
        self.requests += 1
        self.prefilled_tokens += len(tokens)
        await self._pay(c.ttft_s + (len(tokens) / c.prefill_tps if c.prefill_tps else 0.0))
        tokens = list(tokens)
        if self._ctx and tokens[: len(self._ctx)] == self._ctx:
            self._observe(tokens[len(self._ctx):])  # a re-request of the same conversation
            if len(tokens) > len(self._ctx):
                self._ended = False  # new information: the policy may have more to say
        else:
            self.policy.reset(self.detokenize(tokens).decode())
            self._pending = []
            self._ended = False
        self._ctx = tokens
        return 0

    async def step(self, *, ban: Collection[int] = ()) -> int:
        self._check_open()
        tok = self._next(ban)
        free = self._trap_token(tok) and self.costs.free_traps
        await self._pay(0.0 if free else self.costs.tpot_s)
        self._ctx.append(tok)
        return tok

    def _trap_token(self, tok: int) -> bool:
        """Whether ``tok`` writes (part of) the dialect's trap, in order."""
        trap, k = self._trap_ids, self._trap_at
        if k < len(trap) and tok == trap[k]:
            self._trap_at = k + 1 if k + 1 < len(trap) else 0
            return True
        self._trap_at = 1 if trap and tok == trap[0] else 0
        return self._trap_at == 1

    def _next(self, ban: Collection[int]) -> int:
        for _ in range(2):
            if not self._pending:
                text = None if self._ended else self.policy.next_text()
                if text is None:
                    self._ended = True
                    return EOS
                self._pending = self.tokenizer.tokenize(text, special=True)
            tok = self._pending[0]
            if tok not in ban:
                self._pending.pop(0)
                return tok
            self._pending = []  # a banned continuation: the model writes something else
        return self.tokenizer.tokenize(" ")[0]

    async def append(self, tokens: Sequence[int]) -> None:
        self._check_open()
        if self.costs.append_tps:
            await self._pay(len(tokens) / self.costs.append_tps)
        self._ctx.extend(tokens)
        self._observe(tokens)
        self._ended = False  # new information: the policy may have more to say

    async def rollback(self, n_tokens: int) -> None:
        self._check_open()
        del self._ctx[n_tokens:]
        self._pending = []  # what it meant to write next is gone, as with a real model
        self._ended = False

    async def aclose(self) -> None:
        """Idempotent; afterwards prefill/step/append/rollback raise :class:`EngineClosedError`."""
        self._closed = True
        self._pending = []

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError("the engine is closed")
