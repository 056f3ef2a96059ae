"""Live scenarios: multi-second tools, the regime that production systems with asynchronous
function calling (Gemini Live, OpenAI Realtime, Pipecat, LiveKit) target.

Each :class:`LiveScenario` is a prompt, its tools (real ``async`` tools: ``asyncio.sleep`` for
their latency, so they run on virtual time under the simulator and on real time beside a real
model; progress through ``ctx.progress``, a partial result through ``ctx.partial``; the slow ones
``cancellable=True``), the *facts* its final answer must contain (each tool's result carries one
distinctive token, e.g. the booking code ``BK-4821``: the answer "used every result" when every
fact is in it), and a simulated model (:class:`LivePolicy`) that talks to the user while its
calls run, so that everything can run on the simulator's virtual time.

The tools' latencies are the named constants below; every report states them
(:meth:`LiveScenario.latency_line`).

Measured per run (:func:`measure`, used by ``asynclm demo`` and ``asynclm bench live``):

- ``first_answer_s``: **time to first useful answer**, from the start of the run (the loop's
  clock when :meth:`Session.run <asynclm.runtime.Session.run>` begins; the prompt's prefill is
  included) to the first ``text.delta`` event whose text is not whitespace. ``text.delta`` is
  the model's prose outside every block (calls, traps and injected results are not text), so
  this is the moment the user first reads something addressed to them.
- ``first_fact_s``: when the text streamed so far first contains one of the scenario's facts
  (the first *result* the user reads); None if none ever appears.
- ``latency_s``: the run's total latency (``SessionResult.latency_s``).
- ``used_all``: every fact is in the final text (case and whitespace ignored).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asynclm.engines.base import Engine
from asynclm.runtime import Session, SessionConfig, SessionResult
from asynclm.runtime import events as ev
from asynclm.runtime.strategies import Strategy
from asynclm.testing.sim import SimCosts, SimEngine
from asynclm.tools import Tool, ToolContext, tool

__all__ = [
    "BOOK_FLIGHT_S", "BOOK_TABLE_S", "DINNER", "LATENCIES", "RESEARCH_S", "SCENARIOS", "TRIP", "VARIANTS",
    "WEATHER_S", "LiveMetrics", "LivePolicy", "LiveScenario", "SimStep", "Variant", "measure",
    "run_scenario", "session_for", "sim_costs",
]

# -- the tools' latencies (seconds), stated in every report -----------------------------------
RESEARCH_S = 8.0
"""``research(topic)``: reads sources for 8 s; progress every quarter, one partial result."""
BOOK_TABLE_S = 5.0
"""``book_table(restaurant, time, people)``: 5 s to confirm a booking."""
BOOK_FLIGHT_S = 6.0
"""``book_flight(origin, dest, date)``: 6 s to issue a ticket."""
WEATHER_S = 1.0
"""``get_weather(city)``: 1 s."""


# -- the tools ----------------------------------------------------------------------------------
async def _work(ctx: ToolContext, total_s: float, steps: Sequence[str]) -> None:
    """Sleep ``total_s`` in ``len(steps)`` equal parts, reporting each step as progress."""
    for step in steps:
        ctx.progress(step)
        await asyncio.sleep(total_s / len(steps))


_RESEARCH: dict[str, tuple[str, str]] = {
    # topic keyword -> (partial result, final result); the final one carries the fact
    "seafood": ("5 candidates so far, comparing reviews",
                "Best pick: Taberna Sal (Alfama, grilled fish, about 30 EUR a head)"),
    "porto": ("4 sights shortlisted, checking opening hours",
              "Must see: Livraria Lello (book ahead, 10 EUR) and the Ribeira waterfront"),
}


@tool(timeout=60.0, estimated_time=RESEARCH_S, cancellable=True)
async def research(topic: str, ctx: ToolContext) -> str:
    """Research a topic on the web (slow: reads several sources).

    Args:
        topic: What to research, e.g. "best seafood restaurant in Alfama, Lisbon".
    """
    key = next((k for k in _RESEARCH if k in topic.lower()), "seafood")
    partial, final = _RESEARCH[key]
    steps = ["searching", "reading sources", "comparing", "writing summary"]
    for i, step in enumerate(steps):
        ctx.progress(f"{step} ({i + 1}/{len(steps)})")
        await asyncio.sleep(RESEARCH_S / len(steps))
        if i == 1:
            ctx.partial(partial)
    return final


@tool(timeout=60.0, estimated_time=BOOK_TABLE_S, cancellable=True)
async def book_table(restaurant: str, time: str, people: int, ctx: ToolContext) -> str:
    """Book a restaurant table (slow: waits for the restaurant's confirmation).

    Args:
        restaurant: Restaurant name, e.g. "Casa Nova".
        time: Time, e.g. "20:00".
        people: Number of guests.
    """
    await _work(ctx, BOOK_TABLE_S, ["contacting the restaurant", "waiting for confirmation"])
    return f"Table for {people} at {restaurant}, {time}: confirmed, code BK-4821"


@tool(timeout=60.0, estimated_time=BOOK_FLIGHT_S, cancellable=True)
async def book_flight(origin: str, dest: str, date: str, ctx: ToolContext) -> str:
    """Book the cheapest direct flight (slow: holds a seat, then issues the ticket).

    Args:
        origin: IATA airport code, e.g. "BER".
        dest: IATA airport code, e.g. "OPO".
        date: Date, YYYY-MM-DD.
    """
    await _work(ctx, BOOK_FLIGHT_S, ["holding a seat", "issuing the ticket"])
    return f"Flight {origin}-{dest} on {date}, 07:40, booked: reference FL-7730"


_WEATHER = {"lisbon": "19 °C, clear evening", "porto": "14 °C, light rain"}


@tool(timeout=30.0, estimated_time=WEATHER_S)
async def get_weather(city: str) -> str:
    """Current weather for a city (quick).

    Args:
        city: City name, e.g. "Lisbon".
    """
    await asyncio.sleep(WEATHER_S)
    return _WEATHER.get(city.strip().lower(), "17 °C, cloudy")


LATENCIES: dict[str, float] = {
    "research": RESEARCH_S, "book_table": BOOK_TABLE_S, "book_flight": BOOK_FLIGHT_S,
    "get_weather": WEATHER_S,
}
"""Each tool's latency in seconds (the constants above)."""


# -- the simulated model --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SimStep:
    """One call the simulated model writes, and the sentence it says once the result is in
    (``{result}`` is the result as delivered to it: a fact reaches the answer only through the
    delivered result)."""

    id: str
    fn: str
    args: Mapping[str, Any]
    report: str


class LivePolicy:
    """A live assistant, simulated (:class:`asynclm.testing.sim.Policy`): it writes its calls
    (slowest first), then, while results are missing, tells the user once what it is doing
    (``ack``) and waits (a trap); each result (and partial result) it receives, it reports in a
    sentence as soon as it may write; when every result is in it closes. Under ``sync`` the
    calls block, so its first words come after every result; under ``async`` it talks while
    the tools run."""

    def __init__(self, steps: Sequence[SimStep], *, ack: str, closing: str,
                 partial: str = "(Update: {result}.)") -> None:
        from asynclm.protocol import CmlDialect

        self.steps = list(steps)
        self.ack, self.closing, self.partial_tpl = ack, closing, partial
        self.dialect = CmlDialect()
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.written = 0
        self.results: dict[str, str] = {}
        self.partials: list[str] = []
        self.reported: set[str] = set()
        self.partials_told = 0
        self.acked = False
        self.closed = False

    def observe(self, call_id: str | None, payload: str) -> None:
        if call_id is None:
            return
        if payload.startswith("partial:"):
            self.partials.append(payload.removeprefix("partial:").strip())
        else:
            self.results[call_id] = payload.strip()

    def next_text(self) -> str | None:
        if self.written < len(self.steps):
            step = self.steps[self.written]
            self.written += 1
            sep = "\n" if self.written > 1 else ""
            return sep + self.dialect.render_call(step.fn, dict(step.args), step.id)
        for step in self.steps:  # results in the order they were received would be nicer;
            if step.id in self.results and step.id not in self.reported:  # task order is stable
                self.reported.add(step.id)
                return "\n" + step.report.format(result=_unquote(self.results[step.id]))
        if self.partials_told < len(self.partials) and len(self.results) < len(self.steps):
            self.partials_told += 1
            text = _unquote(self.partials[self.partials_told - 1])
            return "\n" + self.partial_tpl.format(result=text)
        missing = len(self.results) < len(self.steps)
        if missing and not self.acked:
            self.acked = True
            return "\n" + self.ack
        if missing:
            return self.dialect.render_trap()
        if not self.closed:
            self.closed = True
            return "\n" + self.closing
        return None


def _unquote(payload: str) -> str:
    """A string result as the model reads it (a JSON string) without its quotes."""
    if len(payload) >= 2 and payload[0] == payload[-1] == '"':
        try:
            value = json.loads(payload)
        except ValueError:
            return payload
        return value if isinstance(value, str) else payload
    return payload


# -- scenarios ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveScenario:
    """A prompt, its tools, the facts its answer must contain (tool name -> a distinctive token
    of that tool's result) and the simulated model's script."""

    name: str
    prompt: str
    tools: tuple[Tool, ...]
    facts: Mapping[str, str]
    steps: tuple[SimStep, ...]
    ack: str
    closing: str
    latencies: Mapping[str, float] = field(default_factory=dict)

    def policy(self) -> LivePolicy:
        """A fresh simulated model for this scenario."""
        return LivePolicy(self.steps, ack=self.ack, closing=self.closing)

    def sim_engine(self, costs: SimCosts | None = None) -> SimEngine:
        """A simulator running :meth:`policy` (default costs: :func:`sim_costs`)."""
        return SimEngine(self.policy(), costs or sim_costs())

    def missing_facts(self, text: str) -> list[str]:
        """The facts not in ``text`` (case and whitespace ignored)."""
        have = _norm(text)
        return [f for f in self.facts.values() if _norm(f) not in have]

    def used_every_result(self, text: str) -> bool:
        return not self.missing_facts(text)

    def latency_line(self) -> str:
        """``tools: research 8 s, book_table 5 s, get_weather 1 s``."""
        return "tools: " + ", ".join(f"{t.name} {self.latencies[t.name]:g} s" for t in self.tools)


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def sim_costs(tpot_s: float = 0.027) -> SimCosts:
    """About the bundled 1.5B model on two CPU cores (37 tokens/s) with its prompt already
    processed (free prefill: on the real model :func:`run_scenario` warms the prefix cache
    first, so every variant starts decoding at once)."""
    return SimCosts(tpot_s=tpot_s)


def _scenario(name: str, prompt: str, tools: Sequence[Tool], facts: Mapping[str, str],
              steps: Sequence[SimStep], ack: str, closing: str) -> LiveScenario:
    return LiveScenario(name, prompt, tuple(tools), dict(facts), tuple(steps), ack, closing,
                        {t.name: LATENCIES[t.name] for t in tools})


DINNER = _scenario(
    "dinner",
    "I'm in Lisbon tonight. Book a table for 2 at Casa Nova at 20:00, research the best seafood "
    "restaurant in Alfama for tomorrow, and tell me tonight's weather in Lisbon. Keep me posted "
    "while you work, then give me the booking code, the restaurant you found and the "
    "temperature.",
    [research, book_table, get_weather],
    {"research": "Taberna Sal", "book_table": "BK-4821", "get_weather": "19 °C"},
    [
        SimStep("r1", "research", {"topic": "best seafood restaurant in Alfama, Lisbon"},
                "For tomorrow: {result}."),
        SimStep("b1", "book_table", {"restaurant": "Casa Nova", "time": "20:00", "people": 2},
                "Your table: {result}."),
        SimStep("w1", "get_weather", {"city": "Lisbon"}, "Tonight in Lisbon: {result}."),
    ],
    ack="I'm booking Casa Nova and researching Alfama's seafood places now; the weather comes "
        "first, the rest in a few seconds.",
    closing="That's everything: enjoy Lisbon!",
)

TRIP = _scenario(
    "trip",
    "I fly from Berlin (BER) to Porto (OPO) on 2026-12-04. Book the flight, research what I "
    "should see in Porto, and check the weather there. Keep me posted while you work, then give "
    "me the booking reference, one sight and the temperature.",
    [research, book_flight, get_weather],
    {"research": "Livraria Lello", "book_flight": "FL-7730", "get_weather": "14 °C"},
    [
        SimStep("r1", "research", {"topic": "what to see in Porto"}, "In Porto: {result}."),
        SimStep("f1", "book_flight", {"origin": "BER", "dest": "OPO", "date": "2026-12-04"},
                "Your flight: {result}."),
        SimStep("w1", "get_weather", {"city": "Porto"}, "Porto's weather: {result}."),
    ],
    ack="I'm booking your flight and researching Porto now; the weather comes first, the rest "
        "in a few seconds.",
    closing="You're all set for Porto.",
)

SCENARIOS: dict[str, LiveScenario] = {s.name: s for s in (DINNER, TRIP)}


# -- variants and measurement -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Variant:
    """A way to run a scenario: a strategy, and optionally one delivery mode for every call
    (``SessionConfig.delivery_for``)."""

    name: str
    strategy: str
    delivery: str | None = None


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("sync", "sync"),
    Variant("async", "async"),
    Variant("async-when-idle", "async", "when_idle"),
    Variant("async-lazy", "async-lazy"),
)}
"""``sync``; ``async`` (results interrupt at the next safe point); ``async-when-idle`` (the
``async`` strategy, every result delivered ``when_idle``: when the model waits or ends);
``async-lazy`` (the session-wide strategy that delivers only at traps)."""


def session_for(engine: Engine, scenario: LiveScenario, variant: Variant | str | Strategy, *,
                max_tokens: int = 400, deadline_s: float = 300.0,
                trace_meta: dict[str, Any] | None = None, builtins: bool = False,
                dialect: str | None = None) -> Session:
    """A session running ``scenario``'s tools as ``variant`` says. ``builtins``: keep the slow
    tools cancellable, which offers the model the built-in ``cancel`` and ``pending`` tools
    (the web page's demo does); off, the session measures delivery alone (a small model
    otherwise spends its tokens polling ``pending()``). ``dialect``: the session's (None: the
    model's default)."""
    if isinstance(variant, Strategy):
        variant = Variant(variant.name, variant.name)
    elif isinstance(variant, str):
        variant = VARIANTS[variant]
    mode = variant.delivery
    hook: Callable[[ev.CallEmitted], Any] | None = (
        None if mode is None else (lambda _call: mode))
    config = SessionConfig(max_tokens=max_tokens, deadline_s=deadline_s, delivery_for=hook)
    tools = scenario.tools if builtins else [t.replace(cancellable=False) for t in scenario.tools]
    return Session(engine, tools, strategy=variant.strategy, config=config, dialect=dialect,
                   trace_meta={"task": scenario.name, "variant": variant.name,
                               **(trace_meta or {})})


@dataclass(frozen=True, slots=True)
class LiveMetrics:
    """What one run of a scenario measured (times in seconds from the start of the run)."""

    scenario: str
    variant: str
    first_answer_s: float | None
    first_fact_s: float | None
    latency_s: float
    used_all: bool
    missing: tuple[str, ...]
    stop_reason: str
    n_generated: int
    n_injected: int
    calls: int
    partials: int
    progress: int
    answer: str

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in ((f, getattr(self, f)) for f in self.__slots__)}


def measure(scenario: LiveScenario, variant: str, result: SessionResult,
            events: Sequence[ev.StreamEvent]) -> LiveMetrics:
    """The metrics of one run from its result and its events (see the module's docstring)."""
    end = next((e.t for e in events if isinstance(e, ev.Done)), None)
    t0 = (end - result.latency_s) if end is not None else None
    first_answer = first_fact = None
    text = ""
    facts = [_norm(f) for f in scenario.facts.values()]
    for e in events:
        if not isinstance(e, ev.TextDelta) or t0 is None:
            continue
        if first_answer is None and e.text.strip():
            first_answer = e.t - t0
        text += e.text
        if first_fact is None and any(f in _norm(text) for f in facts):
            first_fact = e.t - t0
    missing = scenario.missing_facts(result.text)
    return LiveMetrics(
        scenario=scenario.name, variant=variant, first_answer_s=first_answer,
        first_fact_s=first_fact, latency_s=result.latency_s, used_all=not missing,
        missing=tuple(missing), stop_reason=result.stop_reason,
        n_generated=result.n_generated, n_injected=result.n_injected, calls=len(result.calls),
        partials=sum(isinstance(e, ev.CallPartial) for e in events),
        progress=sum(isinstance(e, ev.CallProgress) for e in events),
        answer=result.text.strip())


async def run_scenario(engine: Engine, scenario: LiveScenario, variant: Variant | str, *,
                       max_tokens: int = 400, deadline_s: float = 300.0, warm_up: bool = True,
                       trace_meta: dict[str, Any] | None = None,
                       on_event: Callable[[ev.StreamEvent], None] | None = None,
                       dialect: str | None = None,
                       ) -> tuple[SessionResult, LiveMetrics]:
    """Run ``scenario`` once as ``variant`` on ``engine`` and measure it. With ``warm_up`` the
    prompt is processed first (unmeasured; a prefix cache makes every variant start alike).
    ``dialect``: the session's (None: the model's default)."""
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    session = session_for(engine, scenario, v, max_tokens=max_tokens, deadline_s=deadline_s,
                          trace_meta=trace_meta, dialect=dialect)
    if warm_up:
        await session.warm_up(scenario.prompt)
    events: list[ev.StreamEvent] = []

    def record(e: ev.StreamEvent) -> None:
        events.append(e)
        if on_event is not None:
            on_event(e)

    result = await session.run(scenario.prompt, on_event=record)
    return result, measure(scenario, v.name, result, events)
