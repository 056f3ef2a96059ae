"""The simulated model behind ``engine="sim"`` sessions: a script (given or default) that
also answers every message it receives, so a person can watch interrupts land
(:class:`ReactivePolicy`); the live demo's model (:class:`StopPolicy`, :func:`live_steps`)
also cancels its running call when a message says "stop"."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence

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


class StopPolicy(ReactivePolicy):
    """A :class:`ReactivePolicy` that also stops a running call when asked: a message that
    says "stop" (any case) makes it write an acknowledgement and the built-in
    ``cancel(call_id=...)`` for the last call it wrote among ``cancellable`` that has no
    result yet, wait for the cancel's answer and write ``after_cancel(call_id, answer,
    partials)``; the rest of its script (which waited for that call) is dropped. With nothing
    to stop, the message gets the usual acknowledgement. A partial result (``partial: ...``)
    is kept in ``partials``, never taken for the call's result."""

    def __init__(
        self, steps: list[Step], *, cancellable: Sequence[str],
        after_cancel: Callable[[str, str, list[str]], str] | None = None,
    ) -> None:
        self.cancellable = tuple(cancellable)
        self.after_cancel = after_cancel or _after_cancel
        self.script = list(steps)
        super().__init__(list(steps))

    def reset(self, prompt: str) -> None:
        self.steps = list(self.script)
        super().reset(prompt)
        self.partials: dict[str, list[str]] = {}
        self.written: list[str] = []
        self.stopped: list[str] = []

    def observe(self, call_id: str | None, payload: str) -> None:
        if payload.startswith("partial: ") and call_id is not None:
            text = _unquote(payload[len("partial: "):])
            self.partials.setdefault(call_id, []).append(text)
            if call_id not in self.stopped:
                self.replies.append(f"(An update from {call_id}: {text[:300]}.) ")
            return
        if payload.startswith("message from "):
            text = payload[len("message from "):].partition(": ")[2]
            running = [c for c in self.written if c in self.cancellable and c not in self.seen
                       and c not in self.stopped]
            if "stop" in text.lower() and running:
                AgentScript.observe(self, call_id, payload)
                self._stop(running[-1])
                return
        super().observe(call_id, payload)

    def _stop(self, target: str) -> None:
        self.stopped.append(target)
        k = f"k{len(self.stopped)}"
        self.replies.append(f"Okay, stopping {target} now. " + _call(k, "cancel", call_id=target))

        def after(seen: Mapping[str, str]) -> str:
            return self.after_cancel(target, seen[k], self.partials.get(target, []))

        self.steps, self.pos = [Wait(k), after], 0

    def next_text(self) -> str | None:
        text = super().next_text()
        if text:
            self.written += _CALL_ID.findall(text)
        return text


def _after_cancel(target: str, answer: str, partials: list[str]) -> str:
    found = f" Before it stopped it had found: {partials[-1][:300]}." if partials else ""
    return f"Stopped: {_unquote(answer)}.{found} Tell me if you want me to start it again."


def _unquote(payload: str) -> str:
    """A string value as the model reads it (JSON) without its quotes."""
    try:
        value = json.loads(payload)
    except ValueError:
        return payload
    return value if isinstance(value, str) else payload


def live_steps(topic: str) -> list[Step]:
    """The live demo's simulated model: it starts ``research(topic)`` as ``r1``, talks to the
    user while it runs, waits for it (reporting its partial result when it gets it) and
    answers with its result. Used with :class:`StopPolicy` (``cancellable=["r1"]``), so that
    "stop that" cancels ``r1``. The talk comes in short pieces (clauses): the simulated model
    reacts to a message once the piece it is writing is done."""
    talk = (
        "Alfama is Lisbon's oldest quarter, a maze of steep lanes and stairs that survived "
        "the great earthquake of 1755. "
        "Fado began in its taverns, and you can still hear it most evenings, often sung by "
        "the cooks and waiters themselves. "
        "Its seafood is simple and fresh: grilled sardines in summer, clams with garlic and "
        "coriander, octopus with olive oil and potatoes. "
        "Most places are small and fill up after eight, so an early table helps, and few of "
        "them take bookings online. "
        "Tram 28 climbs through the quarter if your legs need a rest, and the viewpoint at "
        "Santa Luzia looks over the roofs to the river. "
        "That is all I know offhand; the research will tell us which place is best. ")
    return [
        "I am starting the research; meanwhile, let me tell you about Alfama. ",
        _call("r1", "research", topic=topic),
        *re.findall(r".+?(?:[,;:.] |$)", talk),
        Wait("r1"),
        lambda seen: f"The research is done. {_unquote(seen['r1'])}. Shall I book a table "
                     "there?",
    ]


_CALL_ID = re.compile(rf"{re.escape(_M.call)}\s*(\S+)\s*{re.escape(_M.head)}")


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
