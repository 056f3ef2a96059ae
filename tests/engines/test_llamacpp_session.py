"""Whole :class:`Session` runs on the real Qwen2.5-Coder-0.5B model through ``LlamaCppEngine``
(slow: pulls and loads the model), with real async tools that really sleep.

What the 0.5B does is deterministic only up to timing: greedy decoding is deterministic, but
*when* a result becomes ready (and so where it is injected) depends on wall-clock speed, and this
machine is shared (a loaded machine decodes 10-50x slower). So every assertion is an invariant
that holds whatever the timing, and tool latencies that must land at a given point of the run
are expressed against the engine's activity (:class:`EngineMonitor`): "after N decoding steps"
or "once the model has stopped decoding" (it trapped, rolled back a forgery, or ended with the
call pending), still realised with ``asyncio.sleep``. Each test also asserts that the situation
it guards actually happened (a forgery rolled back, a result arriving mid-call, an end of
generation with a call pending), so a model or prompt change cannot make it pass vacuously.

Most tests use short system prompts of their own (fixed here, so edits to the library's default
prompt do not change what they exercise); the last one uses the default prompt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asynclm.protocol import Call, Interrupt, MalformedCall, Parser
from asynclm.runtime import Session, SessionConfig, SessionResult
from asynclm.runtime import events as ev
from asynclm.tools import tool

slow = pytest.mark.slow

Wait = Callable[[str, str], Awaitable[None]]

# A prompt that teaches several calls with results arriving between them.
SYS_INTERLEAVED = """\
You can call functions: write [CALL] id [HEAD] function(arg="value") [END], one call per line. \
Write every call you need, one after another. Results arrive as [INTR] id [HEAD] result [END].

Example:
User: Time in Paris, Tokyo, Lima and Oslo?
Assistant: [CALL] t1 [HEAD] get_time(city="Paris") [END]
[CALL] t2 [HEAD] get_time(city="Tokyo") [END]
[INTR] t1 [HEAD] "14:05" [END]
[CALL] t3 [HEAD] get_time(city="Lima") [END]
[INTR] t2 [HEAD] "22:05" [END]
[CALL] t4 [HEAD] get_time(city="Oslo") [END]
[INTR] t3 [HEAD] "08:05" [END]
[INTR] t4 [HEAD] "14:05" [END]
It is 14:05 in Paris, 22:05 in Tokyo, 08:05 in Lima and 14:05 in Oslo.

Functions: get_weather(city), get_time(city)."""

# A few-shot prompt in which the *assistant* writes the interrupt: the model imitates it.
SYS_FORGE = """\
You can call functions by writing [CALL] id [HEAD] function(arg="value") [END].

Example:
User: Weather in Paris?
Assistant: [CALL] w1 [HEAD] get_weather(city="Paris") [END]
[INTR] w1 [HEAD] {"temp_c": 11} [END]
Paris is 11 °C.

Functions: get_weather(city), get_time(city)."""

# A prompt that makes the model end its turn right after its call (end of generation with the
# call still pending).
SYS_END = """\
You can call functions by writing [CALL] id [HEAD] function(arg="value") [END]. After your \
calls, end your reply at once: the results are handled later.

Example:
User: Weather in Paris?
Assistant: [CALL] w1 [HEAD] get_weather(city="Paris") [END]

Functions: get_weather(city), get_time(city)."""


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def fixed(seconds: dict[str, float]) -> Wait:
    async def wait(fn: str, city: str) -> None:
        await asyncio.sleep(seconds[fn])

    return wait


class EngineMonitor:
    """Wraps the engine's coroutines (on the instance, undone by monkeypatch) to record every
    ``step`` (context before, banned ids, token), the context after every edit (``append``:
    injections and runtime-written markup; ``rollback``), and whether any engine call is in
    flight. The engine is idle only while the session waits (a trap, an end with calls
    pending): between two engine calls the loop spends microseconds."""

    def __init__(self, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engine = engine
        self.steps: list[tuple[list[int], frozenset[int], int]] = []
        self.edits: list[tuple[str, list[int]]] = []
        self.busy = 0
        self.idle_since = time.monotonic()
        for name in ("prefill", "step", "append", "rollback"):
            monkeypatch.setattr(engine, name, self._wrap(name, getattr(engine, name)))

    def _wrap(
        self, name: str, real: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            before = self.engine.tokens if name == "step" else None
            self.busy += 1
            try:
                out = await real(*args, **kwargs)
            finally:
                self.busy -= 1
                self.idle_since = time.monotonic()
            if before is not None:
                self.steps.append((before, frozenset(kwargs.get("ban", ())), out))
            elif name in ("append", "rollback"):
                self.edits.append((name, self.engine.tokens))
            return out

        return call

    def idle_for(self) -> float:
        return 0.0 if self.busy else time.monotonic() - self.idle_since

    async def until_idle(self, quiet_s: float = 0.3) -> None:
        while self.idle_for() < quiet_s:
            await asyncio.sleep(0.02)

    async def until_steps(self, n: int, quiet_s: float = 0.3) -> None:
        """Until the model has taken ``n`` more steps, or stopped decoding (it waits)."""
        target = len(self.steps) + n
        while len(self.steps) < target and self.idle_for() < quiet_s:
            await asyncio.sleep(0.005)


def until_model_pauses(monitor: EngineMonitor, min_s: float) -> Wait:
    """A tool latency of ``min_s``, prolonged until the model has stopped decoding: the result
    always arrives after the model paused, however slow decoding is."""

    async def wait(fn: str, city: str) -> None:
        await asyncio.sleep(min_s)
        await monitor.until_idle()

    return wait


def city_tools(wait: Wait) -> list[Any]:
    """``get_weather`` and ``get_time``: deterministic answers after ``wait(fn, city)``."""

    @tool(estimated_time=0.6)
    async def get_weather(city: str) -> dict:
        """Current weather in a city.

        Args:
            city: City name, e.g. "Paris".
        """
        await wait("get_weather", city)
        return {"city": city, "temp_c": 5 + len(city)}

    @tool(estimated_time=0.3)
    async def get_time(city: str) -> str:
        """Local time in a city.

        Args:
            city: City name, e.g. "Paris".
        """
        await wait("get_time", city)
        return f"{8 + len(city):02d}:{7 * len(city) % 60:02d}"

    return [get_weather, get_time]


async def run_session(
    session: Session, prompt: str, on_event: Callable[[Any], None] | None = None
) -> tuple[SessionResult, list[Any]]:
    """Run one turn; return the result and every stream event. Asserts that no task the run
    started outlives it."""
    events: list[Any] = []

    def record(e: Any) -> None:
        events.append(e)
        if on_event is not None:
            on_event(e)

    before = asyncio.all_tasks()
    result = await session.run(prompt, on_event=record)
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t not in before]
    assert leftover == [], f"tasks outlived the session: {leftover}"
    # shown with -s, or on failure: what the model did
    print(f"--- {prompt!r}: {result.stop_reason}, {result.n_generated} tokens, "
          f"{result.n_injected} injected, {result.counters}, {result.latency_s:.1f} s")
    print(result.transcript)
    for e in events:
        if not isinstance(e, (ev.TextDelta, ev.Done)):
            print(f"  {e.type} " + ", ".join(
                f"{k}={getattr(e, k)!r}" for k in ("call_id", "call_ids", "reason", "marker",
                                                    "n_tokens") if hasattr(e, k)))
    print(" ", result.trace.breakdown())
    return result, events


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def prompt_tokens(engine: Any, session: Session, prompt: str) -> list[int]:
    return engine.tokenize_chat(session.messages(prompt))


def assert_engine_holds_the_run(
    engine: Any, session: Session, prompt: str, result: SessionResult
) -> list[int]:
    """The engine's context is the prompt followed by exactly the transcript (the runtime's
    mirror of the context and the real KV-cached context agree: rollbacks really removed the
    tokens, injections really added them). Returns the context."""
    ctx = engine.tokens
    head = prompt_tokens(engine, session, prompt)
    assert ctx[: len(head)] == head
    assert engine.detokenize(ctx[len(head):]).decode("utf-8", "replace") == result.transcript
    return ctx


def parse_transcript(transcript: str) -> tuple[list[Call | MalformedCall], list[Interrupt]]:
    p = Parser(transcript=True)
    events = p.feed(transcript) + p.close()
    blocks = [e for e in events if isinstance(e, (Call, MalformedCall))]
    return blocks, [e for e in events if isinstance(e, Interrupt)]


def assert_interrupts_are_the_runtimes(result: SessionResult, events: list[Any]) -> None:
    """Every interrupt in the transcript was written by the runtime, once per call the runtime
    reports as injected, with the id of a real call; the model wrote no interrupt marker."""
    _, intrs = parse_transcript(result.transcript)
    injected = of(events, ev.InterruptInjected)
    record_ids = {c.id for c in result.calls}
    intr_ids = [i.id for i in intrs]
    assert set(intr_ids) <= record_ids
    assert Counter(intr_ids) == Counter(c.id for c in result.calls if c.injected_at is not None)
    if result.stop_reason == "eos":  # nothing was still pending: every id'd call went in
        assert all(c.injected_at is not None for c in result.calls if c.injectable)
    assert len(intrs) == result.n_injected == sum(len(e.call_ids) for e in injected)
    assert result.transcript.count("[INTR") == result.n_injected  # no forged one survives
    assert "[INTR" not in result.text
    for e in injected:
        assert e.text in result.transcript  # each batch went in whole, as the runtime wrote it
    for i in intrs:
        assert any(result.transcript[i.start:i.end] in e.text for e in injected)


@pytest.fixture
def monitor(llama_engine: Any, monkeypatch: pytest.MonkeyPatch) -> EngineMonitor:
    return EngineMonitor(llama_engine, monkeypatch)


# -- 1. the live context after injections is what a from-scratch evaluation gives -------------


@slow
@pytest.mark.timeout(900)  # ~30 s here; five full re-prefills take minutes on a loaded machine
def test_context_after_injections_matches_a_fresh_prefill(llama_engine, monitor):
    engine = llama_engine

    async def eight_steps(fn: str, city: str) -> None:  # the same run at any machine speed
        await monitor.until_steps(8)

    session = Session(engine, city_tools(eight_steps), system=SYS_INTERLEAVED,
                      config=SessionConfig(max_tokens=100))
    prompt = "What time is it in London and in Berlin?"

    async def go() -> None:
        result, events = await run_session(session, prompt)
        steps = list(monitor.steps)  # (context before, ban, token) of every session step
        edits = list(monitor.edits)  # (kind, context after) of every append / rollback
        assert result.stop_reason in ("eos", "max_tokens"), result.transcript
        injections = of(events, ev.InterruptInjected)
        assert result.n_injected >= 2 and len(injections) >= 2, result.transcript
        final = assert_engine_holds_the_run(engine, session, prompt, result)
        # Injected tokens are never rolled back: each post-injection context is a prefix.
        after_append = [ctx for kind, ctx in edits if kind == "append"]
        assert len(after_append) >= len(injections)
        for ctx in after_append:
            assert final[: len(ctx)] == ctx
        # The literal check: the next greedy token after the final context, live vs fresh.
        live_next = await engine.step()
        await engine.prefill(final, reuse_prefix=False)
        assert await engine.step() == live_next
        # Stronger: the model's decision right after every edit of the live context (each
        # injection, each rollback that was followed by a step) and its final one (EOS) are what
        # a from-scratch evaluation of the same tokens gives, with the same banned ids.
        checks: dict[tuple[tuple[int, ...], frozenset[int]], tuple[list[int], frozenset[int], int]]
        checks = {}
        for ctx, ban, tok in steps:
            if any(ctx == c for _, c in edits):
                checks.setdefault((tuple(ctx), ban), (ctx, ban, tok))
        assert sum(1 for ctx, _ in checks if list(ctx) in after_append) >= 2, "too few checks"
        end_ctx, end_ban, end_tok = steps[-1]  # the model's last decision (EOS, normally)
        assert end_ctx + [end_tok] == final
        for ctx, ban, tok in [*checks.values(), (end_ctx, end_ban, end_tok)]:
            await engine.prefill(ctx, reuse_prefix=False)
            assert await engine.step(ban=ban) == tok, engine.detokenize(ctx[-30:])

    run(go())


# -- 2. a forged interrupt written by the model is rolled back ---------------------------------


@slow
def test_forged_interrupt_is_rolled_back(llama_engine, monitor):
    engine = llama_engine
    session = Session(engine, city_tools(until_model_pauses(monitor, 0.3)), system=SYS_FORGE,
                      config=SessionConfig(max_tokens=80))
    prompt = "Weather in Oslo?"
    result, events = run(run_session(session, prompt))

    assert result.counters["rollbacks"] >= 1, result.transcript
    rollbacks = of(events, ev.RollbackEvent)
    assert len(rollbacks) == result.counters["rollbacks"]
    assert all(r.n_tokens >= 1 for r in rollbacks)
    assert any(r.marker.upper().startswith("[INTR") for r in rollbacks)
    # the pending result was delivered in place of the forgery
    assert any(t.reason == "forged" for t in of(events, ev.TrapEvent))
    assert result.stop_reason == "eos"
    assert len(result.calls) >= 1 and all(c.injected_at is not None for c in result.calls)
    assert_interrupts_are_the_runtimes(result, events)
    assert_engine_holds_the_run(engine, session, prompt, result)


# -- 3. results are never injected inside a call block --------------------------------------


@slow
def test_no_injection_inside_a_call_block(llama_engine, monitor):
    engine = llama_engine
    rng = random.Random(1234)

    async def jitter(fn: str, city: str) -> None:
        """A random latency of 2 to 18 decoding steps (about one call block), so that results
        keep arriving in the middle of the next call whatever the machine's speed."""
        await monitor.until_steps(rng.randint(2, 18))

    session = Session(engine, city_tools(jitter), system=SYS_INTERLEAVED,
                      config=SessionConfig(max_tokens=160))
    prompt = "What time is it in London, Berlin, Madrid and Rome?"
    head = len(prompt_tokens(engine, session, prompt))
    arrived_in_call = []  # results that became ready while the model was writing a call

    def on_event(e: Any) -> None:
        if isinstance(e, ev.CallCompleted):
            p = Parser(transcript=True)
            p.feed(engine.detokenize(engine.tokens[head:]).decode("utf-8", "replace"))
            if p.in_call:
                arrived_in_call.append(e.call_id)

    result, events = run(run_session(session, prompt, on_event))

    assert len(result.calls) >= 3, result.transcript
    assert arrived_in_call, f"no result arrived during a call, nothing tested:\n{result.transcript}"
    transcript = result.transcript
    blocks, intrs = parse_transcript(transcript)
    # A block spans from its [CALL] to the first [END] after it (the transcript parser would
    # end a block early at an [INTR] inside it, so its own ``end`` cannot be used here).
    spans = [(b.start, transcript.index("[END]", b.start) + len("[END]")) for b in blocks]
    for i in intrs:
        for start, end in spans:
            assert i.end <= start or i.start >= end, (transcript[start:end], i)
    # The call blocks in the final context are exactly the calls the runtime saw, whole and
    # closed (by the model or, after a forgery in the call, by the runtime's own [END]).
    assert len(blocks) == len(result.calls)
    for b, c in zip(blocks, result.calls, strict=True):
        assert b.raw.endswith("[END]") and b.raw in (c.raw, f"{c.raw} [END]"), (b.raw, c.raw)
    # ids: every call once in the result, each id'd one injected exactly once
    ids = [c.id for c in result.calls]
    assert len(ids) == len(set(ids))
    assert Counter(e.call_id for e in of(events, ev.CallEmitted)) == Counter(ids)
    assert_interrupts_are_the_runtimes(result, events)
    assert_engine_holds_the_run(engine, session, prompt, result)


# -- 4. end of generation with a call pending -----------------------------------------------


@slow
def test_eos_with_a_pending_call_waits_injects_and_continues(llama_engine, monitor):
    engine = llama_engine
    session = Session(engine, city_tools(until_model_pauses(monitor, 1.5)), system=SYS_END,
                      config=SessionConfig(max_tokens=80))
    prompt = "Weather in Oslo?"
    result, events = run(run_session(session, prompt))

    traps = [t for t in of(events, ev.TrapEvent) if t.reason == "eos"]
    assert traps and traps[0].waited_s > 0.1, result.transcript  # it ended with the call pending
    (call,) = result.calls
    assert call.status == "ok" and call.injected_at is not None
    assert call.injected_at >= call.ended_at
    injected = of(events, ev.InterruptInjected)
    assert [e.call_ids for e in injected] == [(call.id,)]
    assert injected[0].t >= traps[0].t
    # it went on after the result: generated text after the interrupt, then a real end
    assert result.stop_reason == "eos"
    _, (intr,) = parse_transcript(result.transcript)
    tail = result.transcript[intr.end:]
    assert tail.endswith("<|im_end|>") and tail[: -len("<|im_end|>")].strip()
    assert result.transcript.count("<|im_end|>") == 1  # the first end was taken back
    assert any(e.t > injected[0].t for e in of(events, ev.TextDelta))
    assert_engine_holds_the_run(engine, session, prompt, result)


@slow
def test_eos_with_a_pending_call_and_finish_policy_cancels_it(llama_engine):
    engine = llama_engine
    seen: list[str] = []

    async def never(fn: str, city: str) -> None:  # still running at the end, at any speed
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("finished")

    # the deadline only bounds a failure (a model that waits for the result instead)
    config = SessionConfig(max_tokens=80, on_eos_pending="finish", deadline_s=120)
    session = Session(engine, city_tools(never), system=SYS_END, config=config)
    prompt = "Weather in Oslo?"
    result, events = run(run_session(session, prompt))

    assert result.stop_reason == "eos"
    (call,) = result.calls
    assert call.status == "cancelled" and call.injected_at is None
    assert seen == ["cancelled"]  # a real cancellation of the tool's coroutine
    assert result.n_injected == 0 and not of(events, ev.InterruptInjected)
    assert "[INTR" not in result.transcript
    assert_engine_holds_the_run(engine, session, prompt, result)


# -- 5. a full session on the default system prompt -----------------------------------------


@slow
def test_full_session_with_real_tools_on_the_default_prompt(llama_engine):
    engine = llama_engine
    session = Session(engine, city_tools(fixed({"get_weather": 0.6, "get_time": 0.3})),
                      config=SessionConfig(max_tokens=160))
    prompt = "Call get_weather for Berlin and get_time for Rome, then answer."
    result, events = run(run_session(session, prompt))

    assert result.stop_reason == "eos", result.transcript
    assert result.calls, result.transcript
    ids = [c.id for c in result.calls]
    assert len(ids) == len(set(ids))
    # every call id ends exactly once, and only ids that were emitted
    assert Counter(e.call_id for e in of(events, ev.CallCompleted)) == Counter(ids)
    assert Counter(e.call_id for e in of(events, ev.CallEmitted)) == Counter(ids)
    started = [c for c in result.calls if c.started_at is not None]
    assert Counter(e.call_id for e in of(events, ev.CallStarted)) == Counter(c.id for c in started)
    assert all(c.injected_at is not None and c.injected_at >= c.ended_at
               for c in result.calls if c.injectable)
    assert_interrupts_are_the_runtimes(result, events)
    assert of(events, ev.Done) and of(events, ev.Done)[-1].result is result
    # where the time went
    b = result.trace.breakdown()
    assert b.total_s == pytest.approx(result.latency_s, abs=1e-6)
    assert b.decode_s > 0 and b.n_tokens == result.n_generated
    assert b.n_calls == len(started) and b.tool_s > 0
    assert b.tool_busy_s == pytest.approx(sum(c.duration_s for c in started), rel=1e-3)
    assert b.decode_s + b.prefill_s + b.interrupt_s + b.idle_s == pytest.approx(b.total_s, rel=0.02)
    if len(started) >= 2:
        assert b.overlap_s > 0  # the model kept decoding while a tool ran
    assert_engine_holds_the_run(engine, session, prompt, result)
