"""``asynclm serve --engine-url``: the server in front of an inference server. Sessions on the
served model run over :class:`~asynclm.engines.openai_http.HttpEngine`, each its own, against
the operator's URL (the server is probed once). Fast tests use the fake inference server of
:mod:`asynclm.testing.http` on a real socket; the slow one runs llama.cpp's C++
``llama-server`` (built by ``scripts/build-llama-server.sh``) with the bundled 0.5B."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import asynclm.server.app as app_module
import asynclm.server.engines as engines_module
from asynclm.server.config import ServerConfig
from asynclm.server.engines import EngineHub
from asynclm.testing.http import ByteTokenizer, FakeServer

from ..engines.fake_server import SocketServer, free_port
from .conftest import check_complete, follow, running_server

FAKE = "fake-model"


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engines_module, "list_models",
                        lambda: [SimpleNamespace(name=FAKE, assembled=True)])


def _hub_with(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> None:
    """The app's hub gets the fake server's byte tokenizer (and ``kwargs``)."""
    monkeypatch.setattr(app_module, "EngineHub", functools.partial(
        EngineHub, tokenizer=ByteTokenizer(), **kwargs))


def _run_all(c: httpx.Client, ids: list[str]) -> list[list[dict[str, Any]]]:
    """Follow every session's events at once, in threads; their logs, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    threads = [threading.Thread(target=lambda s=s: out.__setitem__(s, follow(c, s)))
               for s in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return [out[s] for s in ids]


def _spans(logs: list[list[dict[str, Any]]]) -> list[tuple[float, float]]:
    spans = []
    for events in logs:
        check_complete(events)
        assert events[-1]["status"] == "done", events[-1]
        start = next(e["mono"] for e in events if e["type"] == "session.started")
        spans.append((start, events[-1]["mono"]))
    return spans


def test_sessions_run_over_http_concurrently(fake_model: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeServer("llama-server", script=b"Hello from the inference server.",
                      token_delay_s=0.01)
    _hub_with(monkeypatch)
    with SocketServer(fake) as remote:
        cfg = ServerConfig(models=(FAKE,), engine_url=remote.url, max_batch=3)
        with running_server(cfg) as url, httpx.Client(base_url=url, timeout=60) as c:
            ids = [c.post("/sessions", json={"prompt": f"p{i}", "engine": "llamacpp",
                                             "model": FAKE, "tools": "none",
                                             "max_tokens": 64}).json()["id"]
                   for i in range(3)]
            logs = _run_all(c, ids)
            spans = _spans(logs)
            assert max(s for s, _ in spans) < min(e for _, e in spans), spans
            for events in logs:
                text = "".join(e.get("text", "") for e in events if e["type"] == "text.delta")
                assert text == "Hello from the inference server."
            health = c.get("/health").json()
            assert health["backend"] == "http" and remote.url not in str(health)
            entry = health["engines"][FAKE]
            assert entry["mode"] == "llama-server" and entry["loaded"]
            assert (entry["active"], entry["waiting"]) == (0, 0)
            # the OpenAI route goes there too
            r = c.post("/v1/chat/completions", json={
                "model": FAKE, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == \
                "Hello from the inference server."
    probes = [p for m, p in fake.seen if m == "GET"]
    assert probes.count("/props") == 1  # probed once, not once per session
    generations = [r for r in fake.records if r.path == "/completion"]
    assert len(generations) >= 4 and all(r.body["cache_prompt"] for r in generations)


class SlottedServer(FakeServer):
    """The fake ``llama-server`` that, as the real one does, reports its parallel slots."""

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/props":
            self.seen.append((request.method, request.url.path))
            return httpx.Response(200, json={"default_generation_settings": {"n_ctx": 4096},
                                             "total_slots": 2})
        return await super().handle(request)


@pytest.mark.parametrize("pin", [True, False])
def test_each_session_is_pinned_to_a_llama_server_slot(
        fake_model: None, monkeypatch: pytest.MonkeyPatch, pin: bool) -> None:
    """With 2 llama-server slots and 3 sessions at once: two hold a slot id each (sent as
    ``id_slot`` in every request, so their resumes find their cache), the third is not
    pinned; ``--no-engine-pin-slots`` pins nobody."""
    fake = SlottedServer("llama-server", script=b"Pinned or not, here I am.",
                         token_delay_s=0.01)
    _hub_with(monkeypatch)
    with SocketServer(fake) as remote:
        cfg = ServerConfig(models=(FAKE,), engine_url=remote.url, max_batch=3,
                           engine_pin_slots=pin)
        with running_server(cfg) as url, httpx.Client(base_url=url, timeout=60) as c:
            body = {"prompt": "p", "engine": "llamacpp", "model": FAKE, "tools": "none"}
            ids = [c.post("/sessions", json=body).json()["id"] for _ in range(3)]
            spans = _spans(_run_all(c, ids))
            assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    slots = {r.body.get("id_slot") for r in fake.records}
    assert slots == ({0, 1, None} if pin else {None})


def test_slots_bound_the_requests_in_flight(fake_model: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``max_batch=1`` the second session waits here (queued, visible), not inside the
    inference server."""
    fake = FakeServer("llama-server", script=b"Slow answer, token by token.",
                      token_delay_s=0.02)
    _hub_with(monkeypatch)
    with SocketServer(fake) as remote:
        cfg = ServerConfig(models=(FAKE,), engine_url=remote.url, max_batch=1, max_queue=1)
        with running_server(cfg) as url, httpx.Client(base_url=url, timeout=60) as c:
            body = {"prompt": "p", "engine": "llamacpp", "model": FAKE, "tools": "none"}
            first = c.post("/sessions", json=body).json()
            second = c.post("/sessions", json=body).json()
            assert second["queue_position"] == 1
            assert c.post("/sessions", json=body).status_code == 429
            a, b = _spans(_run_all(c, [first["id"], second["id"]]))
            assert a[1] <= b[0]  # one after the other


def test_an_unreachable_engine_url_fails_the_session_then_is_probed_again(
        fake_model: None, monkeypatch: pytest.MonkeyPatch) -> None:
    _hub_with(monkeypatch, http_options={"retries": 0, "connect_timeout_s": 1.0})
    port = free_port()
    cfg = ServerConfig(models=(FAKE,), engine_url=f"http://127.0.0.1:{port}")
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=60) as c:
        body = {"prompt": "p", "engine": "llamacpp", "model": FAKE, "tools": "none"}
        sid = c.post("/sessions", json=body).json()["id"]
        end = follow(c, sid)[-1]
        assert end["status"] == "failed" and "ServerUnavailable" in end["error"]
        assert c.get("/health").json()["engines"][FAKE]["loaded"] is False
        fake_srv = SocketServer(FakeServer("llama-server", script=b"Up now."))
        _start_on(fake_srv, port)  # the inference server comes up at the URL
        try:
            sid = c.post("/sessions", json=body).json()["id"]
            end = follow(c, sid)[-1]
            assert end["status"] == "done", end
        finally:
            fake_srv.stop()


def _start_on(srv: SocketServer, port: int) -> None:
    """Start ``srv`` on a given port (``SocketServer.start`` picks a free one)."""
    import socket

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    srv._server = uvicorn.Server(uvicorn.Config(srv.app(), log_level="critical",
                                                lifespan="off"))
    srv._thread = threading.Thread(target=srv._server.run, kwargs={"sockets": [sock]},
                                   daemon=True)
    srv._thread.start()
    deadline = time.monotonic() + 10
    while not srv._server.started:
        assert time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.01)


def test_cli_serve_takes_the_engine_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import asynclm.server as server_pkg
    from asynclm.cli import app

    seen: list[ServerConfig] = []
    monkeypatch.setattr(server_pkg, "serve", seen.append)
    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--engine-url", "http://127.0.0.1:8080",
                            "--engine-model", "qwen2.5-coder-0.5b", "--max-batch", "4",
                            "--max-queue", "2"])
    assert r.exit_code == 0, r.output
    cfg = seen[-1]
    assert (cfg.engine_url, cfg.models, cfg.max_batch, cfg.max_queue) == (
        "http://127.0.0.1:8080", ("qwen2.5-coder-0.5b",), 4, 2)
    r = runner.invoke(app, ["serve", "--kv-budget", "4096", "--max-batch", "2"])
    assert r.exit_code == 0, r.output
    assert (seen[-1].kv_budget, seen[-1].max_batch, seen[-1].engine_url) == (4096, 2, None)
    r = runner.invoke(app, ["serve", "--engine-model", "qwen2.5-coder-0.5b"])
    assert r.exit_code == 2 and "--engine-url" in r.output
    r = runner.invoke(app, ["serve", "--engine-url", "file:///etc/passwd"])
    assert r.exit_code == 2 and "http" in r.output


# -- llama.cpp's C++ server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_server() -> Iterator[Any]:
    from ..engines.test_openai_http_llama_server import LlamaServer, small_model

    with LlamaServer(small_model(), parallel=4, n_ctx=8192, threads=2) as srv:
        yield srv


@pytest.mark.slow
def test_three_sessions_at_once_against_llama_server(llama_server: Any) -> None:
    model = "qwen2.5-coder-0.5b"
    cfg = ServerConfig(models=(model,), engine_url=llama_server.url, max_batch=4)
    prompts = ["Name three rivers of Europe, one line each.", "Write a haiku about the sea.",
               "Count from one to ten in words."]
    with running_server(cfg) as url, httpx.Client(base_url=url, timeout=300) as c:
        ids = [c.post("/sessions", json={"prompt": p, "engine": "llamacpp", "model": model,
                                         "tools": "none", "max_tokens": 40}).json()["id"]
               for p in prompts]
        logs = _run_all(c, ids)
        spans = _spans(logs)
        assert max(s for s, _ in spans) < min(e for _, e in spans), spans
        for events in logs:
            assert "".join(e.get("text", "") for e in events if e["type"] == "text.delta")
        health = c.get("/health").json()["engines"][model]
        assert health["mode"] == "llama-server"
