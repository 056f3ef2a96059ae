"""Load on the HTTP server: many concurrent simulated sessions, each followed over SSE and sent
one message right after it is created (it goes in at the session's first safe point). Checks
that no event is lost and measures event-delivery latency
(server publish → client receipt, both on this machine's monotonic clock)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from asynclm.bench._stats import quantile

_WORDS = "the model keeps writing while its tools run in the background "


def script(i: int, words: int) -> list[str]:
    """Session ``i``'s simulated model: prose, one real demo tool call, a trap, an answer."""
    prose = (_WORDS * (words // 11 + 1)).split()[:words]
    return [
        f"Session {i} starts. ",
        f'[CALL] w{i} [HEAD] get_weather(city="City{i}") [END]\n',
        " ".join(prose) + " ",
        "[TRAP][END]",
        f"Session {i} is done.",
    ]


@dataclass
class SessionOutcome:
    sid: str
    events: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    message_accepted: bool = True
    """False when the server answered 409: the session had already ended (under load, a short
    session can end before the message request is served). Such a message must then never
    appear in the stream."""


def check(out: SessionOutcome, i: int) -> None:
    """Record every way the stream is incomplete or out of order in ``out.problems``."""
    ev = out.events
    if [e["seq"] for e in ev] != list(range(len(ev))):
        out.problems.append("seq not contiguous from 0")
    if not ev or ev[-1]["type"] != "session.end" or ev[-1].get("status") != "done":
        out.problems.append(f"did not end done: {ev[-1] if ev else None}")
    done = [e for e in ev if e["type"] == "done"]
    if len(done) != 1:
        out.problems.append(f"{len(done)} done events")
        return
    text = "".join(e["text"] for e in ev if e["type"] == "text.delta")
    if text != done[0]["text"]:
        out.problems.append("text deltas do not add up to the final text")
    if done[0]["n_generated"] < 10:
        out.problems.append("too few tokens")
    types = [e["type"] for e in ev]
    expect = {"call.emitted": 1, "call.started": 1, "call.completed": 1,
              "message.queued": int(out.message_accepted)}
    for t, n in expect.items():
        if types.count(t) != n:
            out.problems.append(f"{types.count(t)} {t} events")
    calls = done[0]["calls"]
    if len(calls) != 1 or calls[0]["status"] != "ok" or calls[0]["call_id"] != f"w{i}":
        out.problems.append(f"call outcome wrong: {calls}")
    injected = [e for e in ev if e["type"] == "interrupt.injected"]
    if sorted(c for e in injected for c in e["call_ids"]) != [f"w{i}"]:
        out.problems.append("call result not injected exactly once")
    if sum(len(e["messages"]) for e in injected) != int(out.message_accepted):
        out.problems.append("message not injected exactly once")


async def run_load(
    base_url: str, *, sessions: int = 200, tpot_ms: float = 20.0, words: int = 40,
    token: str | None = None, timeout_s: float = 240.0,
) -> dict[str, Any]:
    """Start ``sessions`` sessions at once, follow each over SSE, message each once; return
    counts, problems and latency percentiles (ms)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=2 * sessions + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(timeout_s)) as client:

        async def one(i: int) -> SessionOutcome:
            r = await client.post("/sessions", json={
                "prompt": f"load {i}", "sim": {"tpot_ms": tpot_ms, "script": script(i, words)}})
            r.raise_for_status()
            out = SessionOutcome(r.json()["id"])
            # The message goes in as soon as the session exists. Under load a short session can
            # end before the request is served: 409, and the message must then never show up.
            m = await client.post(f"/sessions/{out.sid}/messages", json={"text": f"hello {i}"})
            if m.status_code == 409:
                out.message_accepted = False
            elif m.status_code != 202:
                out.problems.append(f"message refused: {m.status_code}")
            async with client.stream("GET", f"/sessions/{out.sid}/events") as resp:
                resp.raise_for_status()
                opened = time.monotonic()
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    now = time.monotonic()
                    e = json.loads(line[6:])
                    out.events.append(e)
                    if e["mono"] >= opened:  # published after we subscribed: live delivery
                        out.latencies.append(now - e["mono"])
            check(out, i)
            return out

        t0 = time.monotonic()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(sessions))), timeout_s)
        wall = time.monotonic() - t0
    lat = [x for o in outcomes for x in o.latencies]
    n_events = sum(len(o.events) for o in outcomes)
    return {
        "benchmark": "server_load",
        "sessions": sessions, "tpot_ms": tpot_ms, "words": words,
        "events": n_events, "events_live": len(lat),
        "lost_or_bad_sessions": sum(bool(o.problems) for o in outcomes),
        "problems": [f"{o.sid}: {p}" for o in outcomes for p in o.problems][:50],
        "messages_refused_session_ended": sum(not o.message_accepted for o in outcomes),
        "wall_s": wall, "events_per_s": n_events / wall if wall else float("nan"),
        "latency_ms": {
            f"p{int(q * 100)}": quantile(lat, q) * 1e3 for q in (0.5, 0.9, 0.99)
        } | {"max": max(lat) * 1e3 if lat else float("nan")},
    }


def markdown(result: dict[str, Any], command: str) -> str:
    lat = result["latency_ms"]
    return "\n".join([
        "# Server load: concurrent simulated sessions over HTTP + SSE",
        "",
        f"Command: `{command}`",
        "",
        f"{result['sessions']} sessions started at once (simulator, {result['tpot_ms']:g} ms "
        f"per token, {result['words']} words, one demo tool call, one message sent "
        "right after creation each), each followed over its own SSE connection.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| sessions with a lost, duplicated or out-of-order event | "
        f"{result['lost_or_bad_sessions']} of {result['sessions']} |",
        f"| events delivered (live, i.e. published after the client subscribed) | "
        f"{result['events']} ({result['events_live']}) |",
        f"| wall time / throughput | {result['wall_s']:.1f} s / "
        f"{result['events_per_s']:.0f} events/s |",
        f"| event-delivery latency p50 / p90 / p99 / max | {lat['p50']:.1f} / "
        f"{lat['p90']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms |",
        "",
        "Latency is server publish → client receipt on the machine's monotonic clock; "
        "server and client share the machine's cores.",
        "",
    ])
