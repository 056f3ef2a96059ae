"""``POST /demos/live`` over real HTTP and SSE, on the simulator (real time: the research tool
takes :data:`asynclm.demo_live.RESEARCH_S`): the model talks while ``research`` runs, its
progress and partial result stream, "Stop that." makes the model cancel it with the built-in
``cancel``; left alone, its result (and partial) reaches the model only when the model is idle
(``when_idle``). Both sessions run at once, so the module takes one research call's time."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from .conftest import Served, check_complete, follow


def _create(c: httpx.Client, **body: Any) -> str:
    r = c.post("/demos/live", json={"engine": "sim", "tpot_ms": 40, **body})
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["status"] in ("queued", "running") and info["tools"] == "live"
    return str(info["id"])


def _index(events: list[dict[str, Any]], type: str, **match: Any) -> int:
    for i, e in enumerate(events):
        if e["type"] == type and all(e.get(k) == v for k, v in match.items()):
            return i
    raise AssertionError(f"no {type} {match} in {[e['type'] for e in events]}")


def _exactly_once(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every emitted call ends exactly once; the outcomes by call id."""
    emitted = [e["call_id"] for e in events if e["type"] == "call.emitted"]
    ended = [e["call_id"] for e in events if e["type"] == "call.completed"]
    assert sorted(emitted) == sorted(ended) and len(set(ended)) == len(ended), (emitted, ended)
    return {e["call_id"]: e for e in events if e["type"] == "call.completed"}


@pytest.fixture(scope="module")
def runs(base_url: Served) -> dict[str, list[dict[str, Any]]]:
    """The two sessions' events: ``stopped`` (the user says "Stop that." once the partial
    result is out) and ``idle`` (left alone)."""
    out: dict[str, list[dict[str, Any]]] = {}
    errors: list[BaseException] = []

    def run(name: str, stop: bool) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=60) as c, \
                    httpx.Client(base_url=base_url, timeout=10) as poster:
                sid = _create(c)

                def on_event(e: dict[str, Any]) -> None:
                    if stop and e["type"] == "call.partial":
                        r = poster.post(f"/sessions/{sid}/messages", json={"text": "Stop that."})
                        assert r.status_code == 202, r.text

                out[name] = follow(c, sid, on_event)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in (("stopped", True), ("idle", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return out


def test_live_demo_model_cancels_the_research_when_told_to_stop(
        runs: dict[str, list[dict[str, Any]]]) -> None:
    events = runs["stopped"]
    check_complete(events)
    assert events[-1]["status"] == "done"
    outcomes = _exactly_once(events)
    started = _index(events, "call.started", call_id="r1", fn="research")
    # the model talks while the research runs: progress, then the partial result
    progress = [i for i, e in enumerate(events) if e["type"] == "call.progress"]
    assert len(progress) >= 2 and progress[0] > started
    partial = _index(events, "call.partial", call_id="r1")
    assert events[partial]["value"]
    assert any(e["type"] == "text.delta" for e in events[started:partial])
    # "Stop that." arrives as an interrupt; the model answers with cancel(call_id="r1")
    queued = _index(events, "message.queued", text="Stop that.")
    injected = next(i for i, e in enumerate(events)
                    if e["type"] == "interrupt.injected" and e["messages"] == ["user"])
    cancel = _index(events, "call.emitted", fn="cancel")
    assert partial < queued < injected < cancel
    assert events[cancel]["args"] == {"call_id": '"r1"'}
    k = events[cancel]["call_id"]
    assert outcomes["r1"]["status"] == "cancelled"
    assert "cancelled by the model" in outcomes["r1"]["error"]
    assert outcomes[k]["status"] == "ok" and "cancelled" in outcomes[k]["value"]
    ended = _index(events, "call.completed", call_id="r1")
    assert ended > cancel
    # nothing of the research after its end; the model told the user
    assert not [e for e in events[ended:] if e["type"] in ("call.progress", "call.partial")]
    done = events[_index(events, "done")]
    assert "Stopped" in done["text"] and "Taberna Sal" not in done["text"]
    assert [c["status"] for c in done["calls"] if c["call_id"] == "r1"] == ["cancelled"]


def test_live_demo_result_arrives_when_the_model_is_idle(
        runs: dict[str, list[dict[str, Any]]]) -> None:
    events = runs["idle"]
    check_complete(events)
    assert events[-1]["status"] == "done"
    outcomes = _exactly_once(events)
    assert set(outcomes) == {"r1"} and outcomes["r1"]["status"] == "ok"
    assert "Taberna Sal" in outcomes["r1"]["value"]
    partial = _index(events, "call.partial", call_id="r1")
    ended = _index(events, "call.completed", call_id="r1")
    delivered = next(i for i, e in enumerate(events)
                     if e["type"] == "interrupt.injected" and "r1" in e["call_ids"])
    # when_idle: the model went on talking after the partial and after the result came ...
    assert any(e["type"] == "text.delta" for e in events[partial:ended])
    assert any(e["type"] == "text.delta" for e in events[ended:delivered])
    # ... and both reached it only when it paused (a trap), in one batch
    assert events[delivered - 1]["type"] == "trap"
    assert events[delivered].get("partials") == ["r1"]
    assert not [e for e in events[:delivered] if e["type"] == "interrupt.injected"]
    done = events[_index(events, "done")]
    assert "Taberna Sal" in done["text"] and "5 candidates" in done["text"]
