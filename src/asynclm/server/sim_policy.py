"""The simulated model behind ``engine="sim"`` sessions: a script (given or default) that
also answers every message it receives, so a person can watch interrupts land."""

from __future__ import annotations

import json
from collections.abc import Mapping

from asynclm.agents_demo import AgentScript, Step, Wait
from asynclm.protocol import DEFAULT_MARKERS, render_trap

_M = DEFAULT_MARKERS


class ReactivePolicy(AgentScript):
    """An :class:`AgentScript` that, after each message interrupt, first writes a short
    acknowledgement quoting it (the simulator's stand-in for a model reacting)."""

    def reset(self, prompt: str) -> None:
        super().reset(prompt)
        self.replies: list[str] = []

    def observe(self, call_id: str | None, payload: str) -> None:
        super().observe(call_id, payload)
        if payload.startswith("message from "):
            sender, _, text = payload[len("message from "):].partition(": ")
            self.replies.append(f"(Noted {sender}'s message: \u201c{text[:200]}\u201d.) ")

    def next_text(self) -> str | None:
        if self.replies:
            return self.replies.pop(0)
        return super().next_text()


def _call(id: str, fn: str, **args: object) -> str:
    body = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return f"{_M.call} {id} {_M.head} {fn}({body}) {_M.end}\n"


def default_script(tools: str, prompt: str) -> list[Step]:
    """A trip plan with the demo tools; prose only for any other tool set."""
    intro = f"You asked: \u201c{prompt[:160]}\u201d. "
    if tools != "demo":
        words = ("I am the simulated model, writing a few sentences so that you can watch the "
                 "stream and send me a message while I write. ") * 3
        return [intro, words, "That is all I have to say."]
    return [
        intro, "I will check the weather, flights and hotels at the same time. ",
        _call("w1", "get_weather", city="Lisbon", days=3),
        _call("f1", "search_flights", origin="BER", destination="LIS", date="2026-12-04"),
        _call("h1", "search_hotels", city="Lisbon", nights=3, max_price_eur=150),
        "While those run: Lisbon is hilly, so bring good shoes; the trams are slow but "
        "charming, and many museums close on Mondays. ",
        Wait("w1"), Wait("f1"), Wait("h1"),
        lambda seen: _answer(seen),
    ]


def _answer(seen: Mapping[str, str]) -> str:
    return (f"Here is the plan. Weather: {seen['w1']}. Flight: {seen['f1']}. "
            f"Hotel: {seen['h1']}.")


def script_steps(pieces: list[str]) -> list[Step]:
    """A request's own script: each piece as written; ``[TRAP][END]`` pieces are traps."""
    return [p for p in pieces if p] or [render_trap()]
