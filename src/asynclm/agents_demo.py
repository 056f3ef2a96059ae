"""Two agents cooperating through interrupts: a planner asks a researcher for facts with
``send_message``; the researcher looks them up with the travel tools and sends them back; each
message lands in the other's context as an interrupt while it works or waits.

Runs on the simulator (scripted agents, virtual time) or on real models (one engine each).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from asynclm.agents import AgentDirectory, send_message_tool
from asynclm.engines.base import Engine
from asynclm.prompt import system_prompt
from asynclm.protocol import DEFAULT_MARKERS, render_trap
from asynclm.runtime import RunControl, Session, SessionConfig, SessionResult
from asynclm.runtime.events import StreamEvent
from asynclm.tools import Toolbox

PLANNER, RESEARCHER = "planner", "researcher"

PROMPTS: dict[str, str] = {
    PLANNER: "Plan a 3-day trip from Berlin (BER) to Lisbon (LIS) leaving 2026-12-04. Ask the "
    "researcher for the Lisbon weather and the cheapest flight with send_message, wait for its "
    "reply, then write a two-sentence plan.",
    RESEARCHER: "Wait for a request from another agent. When it arrives, look the facts up with "
    "your tools, then send them with send_message to the agent that asked.",
}

ROLES: dict[str, str] = {
    PLANNER: "You are the agent 'planner'. The agent 'researcher' can look up weather and "
    "flights. Messages from other agents arrive as interrupts: "
    f"{DEFAULT_MARKERS.interrupt} researcher {DEFAULT_MARKERS.head} message from researcher: ... "
    f"{DEFAULT_MARKERS.end}. Write {render_trap()} to wait for one.",
    RESEARCHER: "You are the agent 'researcher'. Requests from other agents arrive as "
    f"interrupts: {DEFAULT_MARKERS.interrupt} planner {DEFAULT_MARKERS.head} message from "
    f"planner: ... {DEFAULT_MARKERS.end}. Write {render_trap()} to wait for one.",
}


@dataclass(frozen=True, slots=True)
class Wait:
    """A step of a scripted agent: trap until an interrupt with this id has arrived."""

    id: str


Step = str | Wait | Callable[[Mapping[str, str]], str]


class AgentScript:
    """A simulator policy for a scripted agent: text, :class:`Wait` steps, or callables of the
    interrupts seen so far (id → payload)."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.reset("")

    def reset(self, prompt: str) -> None:
        self.pos = 0
        self.seen: dict[str, str] = {}

    def observe(self, call_id: str | None, payload: str) -> None:
        self.seen[call_id or ""] = payload

    def next_text(self) -> str | None:
        while self.pos < len(self.steps):
            step = self.steps[self.pos]
            if isinstance(step, Wait):
                if step.id not in self.seen:
                    return render_trap()
                self.pos += 1
                continue
            self.pos += 1
            return step(self.seen) if callable(step) else step
        return None


def _call(id: str, fn: str, **args: Any) -> str:
    body = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return f"{DEFAULT_MARKERS.call} {id} {DEFAULT_MARKERS.head} {fn}({body}) {DEFAULT_MARKERS.end}\n"


def sim_scripts() -> dict[str, AgentScript]:
    """What ideal agents would write for :data:`PROMPTS`."""
    planner = AgentScript([
        "I will ask the researcher for the facts. ",
        _call("m1", "send_message", to=RESEARCHER,
              text="Please find the Lisbon weather for 3 days and the cheapest BER-LIS flight "
                   "on 2026-12-04."),
        Wait("m1"), Wait(RESEARCHER),
        lambda seen: "Plan: fly to Lisbon on 4 December and enjoy three days there. "
                     f"Researcher's findings: {seen[RESEARCHER].split(': ', 1)[-1][:300]}",
    ])
    researcher = AgentScript([
        Wait(PLANNER),
        "Request received; looking it up. ",
        _call("w1", "get_weather", city="Lisbon", days=3),
        _call("f1", "search_flights", origin="BER", destination="LIS", date="2026-12-04"),
        Wait("w1"), Wait("f1"),
        lambda seen: _call("m1", "send_message", to=PLANNER,
                           text=f"weather {seen['w1']}; flight {seen['f1']}"),
        Wait("m1"),
        "Sent the findings to the planner.",
    ])
    return {PLANNER: planner, RESEARCHER: researcher}


def agent_sessions(
    engines: Mapping[str, Engine], directory: AgentDirectory, *,
    config: SessionConfig | None = None,
) -> dict[str, Session]:
    """One session per agent, each with ``send_message``; the researcher also has the weather
    and flight tools (only those: a short prompt is prefilled faster)."""
    from asynclm.demo_tools import get_weather, search_flights

    out: dict[str, Session] = {}
    for name, engine in engines.items():
        base = [get_weather, search_flights] if name == RESEARCHER else []
        tools = Toolbox([*base, send_message_tool(directory, name)])
        out[name] = Session(
            engine, tools, system=system_prompt(tools, extra=ROLES[name]),
            config=config or SessionConfig(max_tokens=256, deadline_s=120.0),
            trace_meta={"agent": name},
        )
    return out


async def run_agents(
    sessions: Mapping[str, Session], directory: AgentDirectory, *,
    prompts: Mapping[str, str] = PROMPTS,
    on_event: Callable[[str, StreamEvent], None] | None = None,
) -> dict[str, SessionResult]:
    """Run the agents together (each waits in its traps for messages, until every other agent
    has ended); returns each result. Every run ends by its own end, its token cap or its
    deadline."""
    controls = {name: RunControl(wait_on_trap=True) for name in sessions}
    for name, ctl in controls.items():
        directory.register(name, ctl)
    ended: set[str] = set()

    def on_end(name: str) -> None:
        # an agent whose every peer has ended will never get a message: stop its waiting
        ended.add(name)
        for other, ctl in controls.items():
            if other not in ended and ended >= set(controls) - {other}:
                ctl.stop_waiting()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = {
                name: group.create_task(s.run(
                    prompts[name], control=controls[name],
                    on_event=None if on_event is None else partial(on_event, name),
                ))
                for name, s in sessions.items()
            }
            for name, task in tasks.items():
                task.add_done_callback(partial(_ended, on_end, name))
    finally:
        for name, ctl in controls.items():
            directory.unregister(name, ctl)
    return {name: t.result() for name, t in tasks.items()}


def _ended(on_end: Callable[[str], None], name: str, _: asyncio.Task[Any]) -> None:
    on_end(name)


def run_sim_agents(tpot_s: float = 0.02) -> dict[str, SessionResult]:
    """The two-agent task on the simulator (virtual time: instant)."""
    from asynclm.runtime import run_virtual
    from asynclm.testing.sim import SimCosts, SimEngine

    directory = AgentDirectory()
    engines = {n: SimEngine(p, SimCosts(tpot_s=tpot_s)) for n, p in sim_scripts().items()}
    sessions = agent_sessions(engines, directory,
                              config=SessionConfig(max_tokens=512, deadline_s=600.0))
    return run_virtual(run_agents(sessions, directory))


def report(results: Mapping[str, SessionResult]) -> str:
    """Each agent's transcript, the messages it received, and its timing."""
    lines = []
    for name, r in results.items():
        got: list[Any] = [i.attrs.get("messages") for i in r.trace.instants
                          if i.name == "interrupt.injected" and i.attrs.get("messages")]
        lines += [
            f"── {name}: {r.latency_s:.2f} s, {r.stop_reason}, {len(r.calls)} calls, "
            f"messages received from: {', '.join(s for g in got for s in g) or 'none'}",
            r.transcript.strip(),
            "",
        ]
    return "\n".join(lines)
