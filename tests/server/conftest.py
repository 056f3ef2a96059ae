"""A real uvicorn server on a free loopback port, in a thread, for HTTP tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from asynclm.server import create_app  # noqa: E402
from asynclm.server.config import ServerConfig  # noqa: E402


class Served(str):
    """The base URL, plus the server's event loop (to inspect its tasks)."""

    loop: asyncio.AbstractEventLoop

    def tasks(self) -> list[str]:
        """Names of the server loop's live tasks."""
        async def names() -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if not t.done()]

        return asyncio.run_coroutine_threadsafe(names(), self.loop).result(10)


@contextmanager
def running_server(
    config: ServerConfig, run: Callable[[Any], Any] = asyncio.run, log_level: str = "warning",
) -> Iterator[Served]:
    """Start ``create_app(config)`` on 127.0.0.1 (free port), its loop started by ``run``
    (``uvloop.run`` to test on uvloop); yield its base URL; stop it (and check that it stopped:
    every session task ended). ``log_level="info"`` turns uvicorn's access log on."""
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), host="127.0.0.1", port=0, log_level=log_level,
        timeout_graceful_shutdown=2, lifespan="on"))
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        loops.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=lambda: run(main()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    served = Served(f"http://127.0.0.1:{port}")
    served.loop = loops[0]
    try:
        yield served
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture(scope="module")
def base_url() -> Iterator[Served]:
    with running_server(ServerConfig(max_live_sessions=300, max_kept_sessions=400)) as url:
        yield url


def sse_events(lines: Any) -> Iterator[dict[str, Any]]:
    """Parse ``data:`` payloads of a server-sent event stream (iterator of lines)."""
    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])


def follow(
    client: Any, sid: str, on_event: Callable[[dict[str, Any]], None] | None = None,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every event of session ``sid`` over SSE, until the stream ends."""
    out = []
    with client.stream("GET", f"/sessions/{sid}/events", headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(resp.iter_lines()):
            out.append(event)
            if on_event is not None:
                on_event(event)
    return out


def check_complete(events: list[dict[str, Any]]) -> None:
    """No event lost or reordered: seq is 0..n-1 and the last is session.end."""
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "session.end"
    assert sum(e["type"] == "session.end" for e in events) == 1
