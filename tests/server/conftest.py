"""A real uvicorn server on a free loopback port, in a thread, for HTTP tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from asynclm.server import create_app  # noqa: E402
from asynclm.server.config import ServerConfig  # noqa: E402


@contextmanager
def running_server(config: ServerConfig) -> Iterator[str]:
    """Start ``create_app(config)`` on 127.0.0.1 (free port); yield its base URL; stop it."""
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), host="127.0.0.1", port=0, log_level="warning",
        timeout_graceful_shutdown=2, lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "server did not stop"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_server(ServerConfig(max_live_sessions=300, max_kept_sessions=400)) as url:
        yield url


def sse_events(lines: Any) -> Iterator[dict[str, Any]]:
    """Parse ``data:`` payloads of a server-sent event stream (iterator of lines)."""
    import json

    for line in lines:
        if line.startswith("data: "):
            yield json.loads(line[6:])
