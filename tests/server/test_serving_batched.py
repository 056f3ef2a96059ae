"""The server on the batched in-process engine: slots, the visible queue, 429 past
``max_queue``, cancelling a queued session. Fast tests run the real server (uvicorn) with a fake
batched engine (``EngineHub(load=...)``) whose sequences hold their slot until the test lets
them go; the slow test runs 3 real sessions at once on the bundled 0.5B."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Collection, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import asynclm.server.app as app_module
import asynclm.server.engines as engines_module
from asynclm.server.config import ServerConfig
from asynclm.server.engines import EngineHub, Slot
from asynclm.server.registry import QueueFull, SessionRegistry
from asynclm.testing import InstantEngine

from .conftest import check_complete, follow, running_server

FAKE = "fake-model"


class FakeSequence(InstantEngine):
    """A sequence that writes nothing until ``go`` is set (so it holds its slot), then a short
    text; ``aclose`` gives the slot back."""

    def __init__(self, owner: FakeBatched) -> None:
        super().__init__("Hello from a fake slot, a few words long.")
        self.owner = owner
        self.closed = False

    async def step(self, *, ban: Collection[int] = ()) -> int:
        while not self.owner.go.is_set():
            await asyncio.sleep(0.005)
        return await super().step(ban=ban)

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.owner.active -= 1


class FakeBatched:
    """The batched engine's surface as the hub uses it. It never queues: the hub's slots must
    keep it from being asked for more than ``n_seq_max`` sequences."""

    def __init__(self, n_seq_max: int, go: threading.Event) -> None:
        self.n_seq_max, self.go = n_seq_max, go
        self.active = self.waiting = 0
        self.peak = self.acquired = 0
        self.closed = False

    async def acquire(self, *, wait: bool = True) -> FakeSequence:
        assert self.active < self.n_seq_max, "the hub asked for more sequences than slots"
        self.active += 1
        self.acquired += 1
        self.peak = max(self.peak, self.active)
        return FakeSequence(self)

    def stats(self) -> dict[str, Any]:
        return {"decode_calls": 0, "active": self.active, "hist": {1: 2}}

    async def aclose(self) -> None:
        self.closed = True


class Loader:
    """``EngineHub(load=...)``: counts loads; fails the first ``fail`` of them."""

    def __init__(self, n_seq_max: int, fail: int = 0) -> None:
        self.go = threading.Event()
        self.engines: list[FakeBatched] = []
        self.n_seq_max, self.fail = n_seq_max, fail

    def __call__(self, model: str) -> FakeBatched:
        assert model == FAKE
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the model would not load")
        self.engines.append(FakeBatched(self.n_seq_max, self.go))
        return self.engines[-1]


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fake-model`` counts as a served model in the cache."""
    monkeypatch.setattr(engines_module, "list_models",
                        lambda: [SimpleNamespace(name=FAKE, assembled=True)])


@pytest.fixture
def served(fake_model: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Loader]]:
    """The server with 2 slots and a queue of 1 on the fake model."""
    loader = Loader(2)
    monkeypatch.setattr(app_module, "EngineHub", functools.partial(EngineHub, load=loader))
    cfg = ServerConfig(models=(FAKE,), max_batch=2, max_queue=1)
    try:
        with running_server(cfg) as url:
            yield url, loader
    finally:
        loader.go.set()


def _create(c: httpx.Client, prompt: str = "hi") -> httpx.Response:
    return c.post("/sessions", json={"prompt": prompt, "engine": "llamacpp", "model": FAKE,
                                     "tools": "none", "max_tokens": 32})


def _wait_status(c: httpx.Client, sid: str, want: Collection[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = c.get(f"/sessions/{sid}").json()
        if info["status"] in want:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.02)


def test_sessions_queue_for_a_slot_and_429_past_the_queue(served: tuple[str, Loader]) -> None:
    url, loader = served
    with httpx.Client(base_url=url, timeout=30) as c:
        a, b = (_create(c, f"s{i}").json()["id"] for i in range(2))
        for sid in (a, b):
            assert _wait_status(c, sid, ["running"])["queue_position"] is None
        queued = _create(c, "third")
        assert queued.status_code == 201
        q = queued.json()
        assert q["status"] == "queued" and q["queue_position"] == 1
        health = c.get("/health").json()
        assert health["backend"] == "batched"
        model = health["engines"][FAKE]
        assert (model["active"], model["waiting"], model["slots"], model["max_queue"]) == (
            2, 1, 2, 1)
        assert model["loaded"] and model["engine"]["active"] == 2
        assert model["engine"]["hist"] == {"1": 2}  # made JSON-safe

        over = _create(c, "fourth")
        assert over.status_code == 429
        assert over.json()["error"].startswith(f"model '{FAKE}' is busy")
        assert int(over.headers["Retry-After"]) > 0
        v1 = c.post("/v1/chat/completions", json={
            "model": FAKE, "messages": [{"role": "user", "content": "hi"}]})
        assert v1.status_code == 429 and int(v1.headers["Retry-After"]) > 0
        assert v1.json()["error"]["type"] == "rate_limit_error"
        assert v1.json()["error"]["code"] == "rate_limit_exceeded"

        assert c.post(f"/sessions/{q['id']}/cancel").status_code == 202
        info = _wait_status(c, q["id"], ["cancelled"])
        assert info["queue_position"] is None
        assert c.get("/health").json()["engines"][FAKE]["waiting"] == 0
        events = follow(c, q["id"])
        check_complete(events)
        assert "session.started" not in [e["type"] for e in events]
        assert events[0]["queue_position"] == 1

        late = _create(c, "fifth").json()  # the queue has room again
        assert late["queue_position"] == 1
        loader.go.set()
        for sid in (a, b, late["id"]):
            assert _wait_status(c, sid, ["done"])["status"] == "done"
        assert [e.acquired for e in loader.engines] == [3]  # one engine, loaded once
        assert loader.engines[0].peak == 2 and loader.engines[0].active == 0
        health = c.get("/health").json()["engines"][FAKE]
        assert (health["active"], health["waiting"]) == (0, 0)


def test_queue_is_first_come_first_served(fake_model: None,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(1)
    monkeypatch.setattr(app_module, "EngineHub", functools.partial(EngineHub, load=loader))
    cfg = ServerConfig(models=(FAKE,), max_batch=1, max_queue=3)
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=30) as c:
        first = _create(c, "first").json()["id"]
        _wait_status(c, first, ["running"])
        waiting = [_create(c, f"w{i}").json() for i in range(3)]
        assert [w["queue_position"] for w in waiting] == [1, 2, 3]
        c.post(f"/sessions/{waiting[1]['id']}/cancel")
        _wait_status(c, waiting[1]["id"], ["cancelled"])
        positions = [c.get(f"/sessions/{w['id']}").json()["queue_position"] for w in waiting]
        assert positions == [1, None, 2]
        loader.go.set()
        ends = {}
        for w in (first, waiting[0]["id"], waiting[2]["id"]):
            _wait_status(c, w, ["done"])
            ev = follow(c, w)
            ends[w] = next(e["mono"] for e in ev if e["type"] == "session.started")
        assert ends[first] < ends[waiting[0]["id"]] < ends[waiting[2]["id"]]


def test_a_model_that_fails_to_load_fails_the_session_and_loads_again(
        fake_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(2, fail=1)
    loader.go.set()
    monkeypatch.setattr(app_module, "EngineHub", functools.partial(EngineHub, load=loader))
    with (running_server(ServerConfig(models=(FAKE,), max_batch=2)) as url,
          httpx.Client(base_url=url, timeout=30) as c):
        sid = _create(c).json()["id"]
        info = _wait_status(c, sid, ["failed"])
        assert "would not load" in info["error"]
        health = c.get("/health").json()["engines"][FAKE]
        assert (health["active"], health["waiting"], health["loaded"]) == (0, 0, False)
        sid = _create(c).json()["id"]
        assert _wait_status(c, sid, ["done"])["status"] == "done"
        assert len(loader.engines) == 1


# -- the slots alone -------------------------------------------------------------------------

def test_slots_fifo_cancel_and_release() -> None:
    async def main() -> None:
        hub = EngineHub(models=(FAKE,), max_batch=1, max_queue=2, load=Loader(1))
        assert hub.reserve("sim", None) is None
        a = hub.reserve("llamacpp", FAKE)
        assert a is not None and a.held and a.position is None
        b, c = hub.reserve("llamacpp", FAKE), hub.reserve("llamacpp", FAKE)
        assert b is not None and c is not None
        assert (b.position, c.position) == (1, 2)
        with pytest.raises(QueueFull) as exc:
            hub.reserve("llamacpp", FAKE)
        assert exc.value.retry_after_s == 5
        waiter = asyncio.ensure_future(b.wait())
        await asyncio.sleep(0)
        waiter.cancel()  # cancelling the wait keeps the place: release gives it up
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert b.position == 1
        b.release()
        b.release()  # idempotent
        assert c.position == 1
        got = asyncio.ensure_future(c.wait())
        await asyncio.sleep(0)
        assert not got.done()
        a.release()
        await asyncio.wait_for(got, 1)
        assert c.held and c.position is None
        assert hub.stats()[FAKE]["active"] == 1
        c.release()
        assert hub.stats()[FAKE] == {"slots": 1, "active": 0, "waiting": 0, "max_queue": 2,
                                     "loaded": False}
        d = hub.reserve("llamacpp", FAKE)  # free again: held at once
        assert d is not None and d.held
        await hub.aclose()

    asyncio.run(main())


def test_a_session_cancelled_before_its_task_starts_gives_its_slot_back() -> None:
    """A task cancelled before its first step never runs its coroutine (so no ``finally``):
    the registry's done callback ends the session and releases its slot."""

    async def main() -> None:
        hub = EngineHub(models=(FAKE,), max_batch=1, max_queue=0, load=Loader(1))
        async with SessionRegistry(max_live=4, max_kept=4, max_events=100,
                                   slots=hub.reserve) as reg:
            ls = reg.start(prompt="x", engine="llamacpp", model=FAKE, strategy="async",
                           tools="none", agent=None, make_session=_never,
                           open_engine=_never)
            assert reg.cancel(ls.id)
            await asyncio.sleep(0.05)
            assert ls.status == "cancelled" and ls.events[-1]["type"] == "session.end"
            assert hub.stats()[FAKE]["active"] == 0
            slot = hub.reserve("llamacpp", FAKE)
            assert isinstance(slot, Slot) and slot.held
            slot.release()
        await hub.aclose()

    asyncio.run(main())


def _never(*_: Any) -> Any:
    raise AssertionError("the session should not have started")


def test_config_checks_the_new_options() -> None:
    with pytest.raises(ValueError, match="max batch"):
        ServerConfig(max_batch=0).check()
    with pytest.raises(ValueError, match="KV budget"):
        ServerConfig(kv_budget=0).check()
    with pytest.raises(ValueError, match="http"):
        ServerConfig(engine_url="ftp://x", models=("m",)).check()
    with pytest.raises(ValueError, match="one model"):
        ServerConfig(engine_url="http://127.0.0.1:9").check()
    ServerConfig(engine_url="http://127.0.0.1:9", models=("m",)).check()
    assert "engine_api_key" not in repr(ServerConfig(engine_api_key="secret"))


# -- the real model ----------------------------------------------------------------------------

def _cached(name: str) -> bool:
    from asynclm.models import list_models

    return any(m.name == name and m.assembled for m in list_models())


@pytest.mark.slow
@pytest.mark.skipif(not _cached("qwen2.5-coder-0.5b"), reason="model not in the cache")
def test_real_sessions_decode_together_on_one_engine() -> None:
    """3 sessions on the 0.5B at once (3 slots): they run at the same time (their running
    intervals overlap), the engine decodes them in batches of more than one token, all finish;
    a 4th waits in the queue and is cancelled there; a 5th is refused (429)."""
    model = "qwen2.5-coder-0.5b"
    cfg = ServerConfig(max_batch=3, max_queue=1, llama_threads=2)
    prompts = ["Name three rivers of Europe, one line each.",
               "Write a haiku about the sea.",
               "Count from one to ten in words."]
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=300) as c:
        def create(prompt: str) -> httpx.Response:
            return c.post("/sessions", json={"prompt": prompt, "engine": "llamacpp",
                                             "model": model, "tools": "none",
                                             "max_tokens": 40})

        ids = [create(p).json()["id"] for p in prompts]
        queued = create("This one waits.").json()
        assert queued["status"] == "queued" and queued["queue_position"] == 1
        over = create("This one is refused.")
        assert over.status_code == 429 and "Retry-After" in over.headers
        assert c.post(f"/sessions/{queued['id']}/cancel").status_code == 202

        results: dict[str, list[dict[str, Any]]] = {}
        threads = [threading.Thread(target=lambda s=s: results.__setitem__(s, follow(c, s)))
                   for s in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        spans = []
        for sid in ids:
            events = results[sid]
            check_complete(events)
            end = events[-1]
            assert end["status"] == "done", end
            start = next(e["mono"] for e in events if e["type"] == "session.started")
            spans.append((start, end["mono"]))
            assert "".join(e.get("text", "") for e in events if e["type"] == "text.delta")
        assert max(s for s, _ in spans) < min(e for _, e in spans), spans  # all overlap
        cancelled = follow(c, queued["id"])
        assert cancelled[-1]["status"] == "cancelled"
        assert "session.started" not in [e["type"] for e in cancelled]

        health = c.get("/health").json()["engines"][model]
        stats = health["engine"]
        assert (health["active"], health["waiting"]) == (0, 0)
        print("sessions (start, end) s:", [(round(a - spans[0][0], 2), round(b - spans[0][0], 2))
                                           for a, b in spans])
        print("engine stats:", stats)
        assert stats["steps_per_decode"] > 1.0, stats
        assert any(k != "1" for k in stats["batch_hist"]), stats
