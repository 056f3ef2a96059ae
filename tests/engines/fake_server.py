"""The fake inference server of :mod:`asynclm.testing.http` served over a real socket (uvicorn
on loopback, a thread of the test process), for the few tests that are about sockets: a dropped
connection, a server that does not answer in time. Everything else uses the in-process
``httpx.MockTransport`` (``FakeServer.connect``)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx

from asynclm.testing.http import FakeServer


class SocketServer:
    """``with SocketServer(FakeServer("vllm")) as srv: ... srv.url`` — the same handler, the
    same records, real HTTP."""

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self) -> Any:
        from starlette.requests import Request
        from starlette.responses import Response, StreamingResponse

        async def app(scope: Any, receive: Any, send: Any) -> None:
            request = Request(scope, receive)
            req = httpx.Request(request.method, str(request.url),
                                headers=request.headers.raw, content=await request.body())
            resp = await self.fake.handle(req)
            if isinstance(resp.stream, httpx.ByteStream):
                out: Response = Response(resp.content, resp.status_code,
                                         media_type=resp.headers.get("content-type"))
                await out(scope, receive, send)
                return
            stream: Any = resp.stream
            try:  # a client that leaves cancels the response (Starlette watches for it)
                await StreamingResponse(stream, resp.status_code,
                                        media_type="text/event-stream")(scope, receive, send)
            finally:
                await stream.aclose()

        return app

    def start(self) -> SocketServer:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="critical", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for hanging handlers
            assert self._thread is not None
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> SocketServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
