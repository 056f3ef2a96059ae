"""The HTTP API (FastAPI) and the web page.

Routes (JSON unless said; errors are ``{"error": ..., "detail": ...}`` with a 4xx status):
- ``GET /health``; ``GET /`` the page; ``GET /static/*`` its assets (no external ones);
- ``POST /sessions`` create and start → 201 session info; ``GET /sessions`` list;
  ``GET /sessions/{id}`` info; ``DELETE /sessions/{id}`` forget a finished session;
- ``GET /sessions/{id}/events`` server-sent events from ``?from=N`` or ``Last-Event-ID``;
  every event has ``seq`` (its index), ``type``, ``t`` (s since creation), ``mono`` (server
  ``time.monotonic()`` when published); the stream ends after ``session.end``;
- ``POST /sessions/{id}/messages`` inject a message as an interrupt → 202;
- ``POST /sessions/{id}/cancel``; ``POST /sessions/{id}/calls/{call_id}/cancel``;
- ``POST /demos/agents`` two agents linked by ``send_message``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asynclm.agents import send_message_tool
from asynclm.engines.base import Engine
from asynclm.prompt import system_prompt
from asynclm.runtime import Session, SessionConfig
from asynclm.server.config import ServerConfig
from asynclm.server.engines import EngineHub, EngineUnavailable
from asynclm.server.registry import LiveSession, SessionRegistry, TooManySessions
from asynclm.server.schemas import AgentsDemo, CreateSession, SendMessage
from asynclm.tools import Toolbox

_PUBLIC = ("/", "/health", "/favicon.ico")


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class _Guard:
    """ASGI middleware: bearer token (when configured) and request body size."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        token = self.config.token
        if token and path not in _PUBLIC and not path.startswith("/static/"):
            if not self._authorized(scope, token):
                await _error(401, "missing or wrong bearer token")(scope, receive, send)
                return
        limit = self.config.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _error(413, f"request body over {limit} bytes")(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            # Read the body first (it is small by contract): a chunked body over the limit is
            # refused before the application sees any of it.
            body, more = [], True
            size = 0
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return  # the client went away
                body.append(msg.get("body", b""))
                size += len(body[-1])
                more = msg.get("more_body", False)
                if size > limit:
                    await _error(413, f"request body over {limit} bytes")(scope, receive, send)
                    return
            replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

            async def replayed() -> Message:
                return replay.pop() if replay else await receive()

            await self.app(scope, replayed, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _authorized(scope: Scope, token: str) -> bool:
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not given and scope.get("method") == "GET":  # EventSource cannot set headers
            from urllib.parse import parse_qs

            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0]
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def _load_tools(name: str, config: ServerConfig, cache: dict[str, Toolbox]) -> Toolbox:
    """``demo``, ``none`` or a module named in ``config.tool_modules`` (its ``TOOLS``, or every
    :class:`Tool` it defines). Anything else is refused: a request never imports code."""
    if name in cache:
        return cache[name]
    if name == "demo":
        from asynclm.demo_tools import TRAVEL_TOOLS

        box = TRAVEL_TOOLS
    elif name == "none":
        box = Toolbox()
    elif name in config.tool_modules:
        try:
            box = Toolbox.from_module(name)
        except Exception as exc:  # noqa: BLE001 - an operator's broken module: a clear 400
            raise HTTPException(400, f"tool module {name!r} failed to load: "
                                     f"{type(exc).__name__}: {exc}") from None
    else:
        allowed = ", ".join(("demo", "none", *config.tool_modules))
        raise HTTPException(400, f"tool set {name!r} not allowed; choose one of {allowed} "
                                 "(start the server with --tools-module to allow a module)")
    cache[name] = box
    return box


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The application for ``config`` (defaults: :class:`ServerConfig`)."""
    cfg = config or ServerConfig()
    registry = SessionRegistry(max_live=cfg.max_live_sessions, max_kept=cfg.max_kept_sessions,
                               max_events=cfg.max_events_per_session)
    hub = EngineHub(models=cfg.models, instances=cfg.llama_instances, threads=cfg.llama_threads)
    toolsets: dict[str, Toolbox] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with registry:
                yield
        finally:
            await hub.aclose()

    app = FastAPI(title="asynclm", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.registry, app.state.config = registry, cfg
    app.add_middleware(_Guard, config=cfg)
    static = resources.files("asynclm.server") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = json.loads(json.dumps(exc.errors(), default=str))
        for d in detail:
            d.pop("input", None)  # never echo a (possibly huge) body back
        return _error(422, "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        return _error(500, "internal error", type(exc).__name__)

    def _get(sid: str) -> LiveSession:
        ls = registry.get(sid)
        if ls is None:
            raise HTTPException(404, f"no session {sid!r}")
        return ls

    def _open_engine(req: CreateSession, policy: Any) -> Callable[
            [], AbstractAsyncContextManager[Engine]]:
        if req.engine == "llamacpp":
            return lambda: hub.llama(req.model)
        from asynclm.engines.sim import SimCosts, SimEngine

        @asynccontextmanager
        async def sim() -> AsyncIterator[Engine]:
            tpot = (req.sim.tpot_ms if req.sim else 30.0) / 1000
            engine = SimEngine(policy, SimCosts(tpot_s=tpot), virtual_time=False)
            try:
                yield engine
            finally:
                await engine.aclose()

        return sim

    def _start(req: CreateSession, *, policy: Any = None, role: str = "") -> LiveSession:
        if len(req.prompt) > cfg.max_prompt_chars:
            raise HTTPException(413, f"prompt over {cfg.max_prompt_chars} characters")
        if req.system is not None and len(req.system) > cfg.max_prompt_chars:
            raise HTTPException(413, f"system prompt over {cfg.max_prompt_chars} characters")
        if req.max_tokens > cfg.max_tokens_limit:
            raise HTTPException(422, f"max_tokens over {cfg.max_tokens_limit}")
        if req.sim and req.sim.script and sum(map(len, req.sim.script)) > cfg.max_prompt_chars:
            raise HTTPException(413, f"sim script over {cfg.max_prompt_chars} characters")
        if req.engine == "llamacpp":
            try:
                hub.check_model(req.model)
            except EngineUnavailable as exc:
                raise HTTPException(400, str(exc)) from None
        if req.agent is not None and req.agent in registry.directory:
            raise HTTPException(409, f"an agent named {req.agent!r} is already live")
        box = _load_tools(req.tools, cfg, toolsets)
        if req.agent is not None:
            box = Toolbox([*box.values(), send_message_tool(registry.directory, req.agent)])
            role = role or (f"You are the agent {req.agent!r}. Messages from other agents "
                            "arrive as interrupts; write [TRAP][END] to wait for one.")
        system = req.system if req.system is not None else system_prompt(box, extra=role)
        if policy is None and req.engine == "sim":
            from asynclm.server.sim_policy import ReactivePolicy, default_script, script_steps

            steps = (script_steps(req.sim.script) if req.sim and req.sim.script
                     else default_script(req.tools, req.prompt))
            policy = ReactivePolicy(steps)
        scfg = SessionConfig(max_tokens=req.max_tokens, deadline_s=cfg.max_session_s)

        def make_session(engine: Engine) -> Session:
            return Session(engine, box, strategy=req.strategy, system=system, config=scfg,
                           trace_meta={"engine": req.engine})

        try:
            return registry.start(
                prompt=req.prompt, engine=req.engine,
                model=req.model if req.engine == "llamacpp" else None, strategy=req.strategy,
                tools=req.tools, agent=req.agent, make_session=make_session,
                open_engine=_open_engine(req, policy))
        except TooManySessions as exc:
            raise HTTPException(429, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "live_sessions": registry.n_live(),
                "sessions": len(registry.list())}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.post("/sessions", status_code=201)
    async def create(req: CreateSession) -> dict[str, Any]:
        return _start(req).info()

    @app.get("/sessions")
    async def list_sessions() -> dict[str, Any]:
        return {"sessions": [s.info() for s in registry.list()]}

    @app.get("/sessions/{sid}")
    async def get_session(sid: str) -> dict[str, Any]:
        return _get(sid).info()

    @app.delete("/sessions/{sid}", status_code=204)
    async def forget(sid: str) -> None:
        ls = _get(sid)
        if ls.live:
            raise HTTPException(409, "session is live: cancel it first")
        registry.forget(sid)

    @app.get("/sessions/{sid}/events")
    async def events(
        sid: str, start: int = Query(0, alias="from", ge=0),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        ls = _get(sid)
        if last_event_id is not None:
            if not last_event_id.isdigit():
                raise HTTPException(400, "Last-Event-ID must be an event index")
            start = int(last_event_id) + 1

        async def stream() -> AsyncIterator[str]:
            yield "retry: 1000\n\n"
            async for batch in ls.follow(start):  # one write per batch, not per event
                yield "".join(
                    f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e, default=str)}\n\n"
                    for e in batch) or ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/sessions/{sid}/messages", status_code=202)
    async def message(sid: str, req: SendMessage) -> dict[str, Any]:
        ls = _get(sid)
        if len(req.text) > cfg.max_message_chars:
            raise HTTPException(413, f"message over {cfg.max_message_chars} characters")
        if not ls.live or ls.control.ended:
            raise HTTPException(409, f"session is {ls.status}: it takes no more messages")
        if ls.n_messages >= cfg.max_messages_per_session:
            raise HTTPException(429, f"at most {cfg.max_messages_per_session} messages a session")
        try:
            ls.control.interrupt(req.text, sender=req.sender)
        except ValueError as exc:  # SessionClosedError is a RuntimeError, handled above
            raise HTTPException(422, str(exc)) from None
        ls.n_messages += 1
        ls.publish("message.queued", sender=req.sender, text=req.text)
        return {"queued": True, "session": sid}

    @app.post("/sessions/{sid}/cancel", status_code=202)
    async def cancel(sid: str) -> dict[str, Any]:
        ls = _get(sid)
        if not registry.cancel(sid):
            raise HTTPException(409, f"session is {ls.status}")
        return {"cancelling": True, "session": sid}

    @app.post("/sessions/{sid}/calls/{call_id}/cancel", status_code=202)
    async def cancel_call(sid: str, call_id: str) -> dict[str, Any]:
        ls = _get(sid)
        if not ls.control.cancel_call(call_id):
            raise HTTPException(409, f"call {call_id!r} is not running in this session")
        return {"cancelling": True, "session": sid, "call_id": call_id}

    @app.post("/demos/agents", status_code=201)
    async def agents_demo(req: AgentsDemo) -> dict[str, Any]:
        from asynclm.agents_demo import PLANNER, PROMPTS, RESEARCHER, ROLES, sim_scripts

        taken = [n for n in (RESEARCHER, PLANNER) if n in registry.directory]
        if taken:
            raise HTTPException(409, f"agent {taken[0]!r} is already live")
        scripts = sim_scripts() if req.engine == "sim" else {}
        out = {}
        for name in (RESEARCHER, PLANNER):
            create_req = CreateSession.model_validate({
                "prompt": PROMPTS[name], "tools": "demo" if name == RESEARCHER else "none",
                "engine": req.engine, "model": req.model, "max_tokens": req.max_tokens,
                "agent": name, "sim": {"tpot_ms": req.tpot_ms} if req.engine == "sim" else None})
            out[name] = _start(create_req, policy=scripts.get(name), role=ROLES[name]).info()
        return {"sessions": out}

    return app


def serve(config: ServerConfig) -> None:
    """Run uvicorn on ``config.host:config.port`` (after :meth:`ServerConfig.check`)."""
    import uvicorn

    config.check()
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=3)
