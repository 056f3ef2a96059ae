"""The engine interface: what the runtime needs from a language model, and nothing more.

An engine owns one context (a token sequence with its KV cache). The runtime drives it one token
at a time and appends interrupt tokens between two steps. Engines declare what they can do in a
:class:`Capabilities` record; the runtime adapts (for example, an engine without true injection
re-processes the whole context on append, and the cost shows in the trace).

Contract, for every engine:
- ``prefill(tokens, reuse_prefix=True)`` replaces the context with ``tokens`` and processes
  them; an engine may keep the cache of a prefix shared with the previous context unless
  ``reuse_prefix`` is false (a client re-sending everything).
- ``step(ban=...)`` samples one token from the current context, appends it to the context and
  returns it. Tokens in ``ban`` are never returned.
- ``append(tokens)`` extends the context (interrupt injection); an engine with a live KV cache
  does not re-process the tokens already in the context.
- ``rollback(n)`` truncates the context to its first ``n`` tokens; the next ``step`` continues as
  if the removed tokens had never been there.
- ``tokenize(text, special=False)``: untrusted text must be tokenized with ``special=False``, and
  then no *added* token of the model's vocabulary comes out, whatever its type: not a control
  token (``<|im_end|>``) and not a user-defined one either (Qwen's ``<tool_call>``, which
  llama.cpp and Hugging Face tokenizers match even with special-token parsing off). The engine
  knows its vocabulary, so it enforces this (see
  :func:`asynclm.engines.tokenizers.tokenize_untrusted`); the text should still read the same.
- Every coroutine may be cancelled; ``aclose`` releases the engine and is idempotent.

Optional capabilities are declared, never probed: an engine that talks to a server and sets
``capabilities.request_log`` implements :class:`RequestLog` (the requests it sent, each a
:class:`ServerRequest`); a session then records them in its trace and counters (see
:class:`asynclm.engines.openai_http.HttpEngine`). An engine that sets ``capabilities.kv_events``
implements :class:`KvEvents` (its KV cache evicted while the session waited, and recomputed):
a session records them as ``kv.evicted`` / ``kv.recomputed`` marks and counters (see
:class:`asynclm.engines.batched.BatchedSequence`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from asynclm.protocol.dialect import Segment


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an engine can do beyond the :class:`Engine` contract; the runtime reads these
    flags rather than probing types or attributes. Only flags something reads belong here."""

    virtual_time: bool = False
    """The engine's costs are virtual (simulator): run it on :func:`asynclm.runtime.clock.run_virtual`."""
    request_log: bool = False
    """The engine is a :class:`RequestLog`: it logs the server requests it sends."""
    kv_events: bool = False
    """The engine is a :class:`KvEvents`: its KV cache may be evicted while the session waits
    (and recomputed when it goes on); a session shows these events in its trace and counters
    (see :class:`asynclm.engines.batched.BatchedSequence`)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat prompt. Its ``content`` is untrusted text (tokenized with special
    tokens off: a user spelling ``<|im_end|>`` writes text, not the token) unless ``parts``
    says otherwise.

    ``parts``: the content as pieces of trusted markup and untrusted text (joined, they are
    ``content``). Only the runtime sets them, for the system prompt it writes
    (:func:`asynclm.prompt.system_message`): the dialect's own text is trusted (a native
    dialect's ``<tool_call>`` must be the model's special token, as its chat template would
    write it), the tools' descriptions and any caller's text are not. Empty (the default): the
    whole content is untrusted."""

    role: str
    content: str
    parts: tuple[Segment, ...] = ()

    def __post_init__(self) -> None:
        if self.parts and "".join(p.text for p in self.parts) != self.content:
            raise ValueError("ChatMessage.parts must join to its content")

    @classmethod
    def of(cls, role: str, parts: Sequence[Segment]) -> ChatMessage:
        """A message made of ``parts`` (its content is their text, joined)."""
        return cls(role, "".join(p.text for p in parts), tuple(parts))

    @property
    def trusted(self) -> bool:
        """Some of the content is trusted markup (see ``parts``)."""
        return any(p.trusted for p in self.parts)


@runtime_checkable
class Engine(Protocol):
    """A language model the runtime can decode from token by token."""

    capabilities: Capabilities

    @property
    def n_tokens(self) -> int:
        """Tokens currently in the context."""
        ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text for ``messages`` in the model's own chat format, ending where the
        assistant's reply begins."""
        ...

    def tokenize_chat(self, messages: Sequence[ChatMessage]) -> list[int]:
        """Tokens of :meth:`render_chat`: special tokens are parsed in the template's own text
        only, never inside message contents (a user message spelling a control token stays
        text)."""
        ...

    def tokenize(self, text: str, *, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        """UTF-8 bytes of ``tokens``; a character may span several tokens."""
        ...

    def is_eos(self, token: int) -> bool: ...

    async def prefill(self, tokens: Sequence[int], *, reuse_prefix: bool = True) -> int:
        """Returns how many of ``tokens`` were served from the cache (0 if none)."""
        ...

    async def step(self, *, ban: Collection[int] = ()) -> int: ...

    async def append(self, tokens: Sequence[int]) -> None: ...

    async def rollback(self, n_tokens: int) -> None: ...

    async def aclose(self) -> None: ...


class ServerRequest(Protocol):
    """One request an engine sent to its server (final figures once it has ended)."""

    reason: str
    """Why it was sent: ``prefill``, ``resume``, ``reprefill``, ..."""
    mode: str
    prompt_tokens: int
    cached_tokens: int | None
    """Prompt tokens the server reported served from its cache; None if it does not say."""
    sent_at: float
    first_at: float | None
    """When its first token arrived (loop clock); None before that, or if none came."""
    received: int
    finish: str | None
    retries: int


@runtime_checkable
class RequestLog(Protocol):
    """Optional capability (``capabilities.request_log``): the engine logs its requests."""

    def take_requests(self) -> Sequence[ServerRequest]:
        """The requests sent since the previous call, oldest first (each returned once)."""
        ...


@dataclass(frozen=True, slots=True)
class KvEvent:
    """Something the engine did to one context's KV cache outside the session's own calls."""

    kind: Literal["evicted", "recomputed"]
    """``evicted``: the cache of the context was dropped to make room for other work (the
    tokens are kept); ``recomputed``: those tokens were evaluated again before the context's
    next operation."""
    tokens: int
    t: float
    """When it happened, on ``time.monotonic`` (the loop clock of a real asyncio loop)."""


@runtime_checkable
class KvEvents(Protocol):
    """Optional capability (``capabilities.kv_events``): the engine reports evictions and
    recomputation of its context's KV cache."""

    def take_kv_events(self) -> Sequence[KvEvent]:
        """The events since the previous call, oldest first (each returned once)."""
        ...
