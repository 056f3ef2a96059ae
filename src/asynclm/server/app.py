"""The HTTP API (FastAPI) and the web page.

Routes (JSON unless said; errors are ``{"error": ..., "detail": ...}`` with a 4xx status):
- ``GET /health``: live sessions and, per real model, its slots (``active``, ``waiting``,
  ``slots``, ``max_queue``) and its engine's stats (see :mod:`asynclm.server.engines`);
  ``GET /`` the page; ``GET /static/*`` its assets (no external ones);
- ``POST /auth/cookie`` (bearer) → 204 and an HttpOnly event-stream cookie (for the page);
- ``POST /sessions`` create and start → 201 session info (a session on a real model waits
  ``queued``, with its ``queue_position``, while every slot of its model is taken; 429 with
  ``Retry-After`` when its queue is full or the server has as many live sessions as it may);
  ``GET /sessions`` list;
  ``GET /sessions/{id}`` info; ``DELETE /sessions/{id}`` forget a finished session;
- ``GET /sessions/{id}/events`` server-sent events from ``?from=N`` or ``Last-Event-ID``;
  every event has ``seq`` (its index), ``type``, ``t`` (s since creation), ``mono`` (server
  ``time.monotonic()`` when published); the stream ends after ``session.end``;
- ``POST /sessions/{id}/messages`` inject a message as an interrupt → 202;
- ``POST /sessions/{id}/cancel``; ``POST /sessions/{id}/calls/{call_id}/cancel``;
- ``POST /sessions/{id}/calls/{call_id}/result`` the answer to a client-run call, ``{"output":
  <any JSON>}`` or ``{"error": "message"}`` → 202. Client-run tools are declared at creation
  (``client_tools``: OpenAI function specs, each with an optional ``timeout_s``, default 60,
  at most 600); the model's arguments are validated against the spec before the call starts;
  its ``call.started`` event (``runs_on: "client"``, ``arguments``, ``timeout_s``) comes once
  the answer can be posted, and the model keeps generating meanwhile. The answer reaches the
  model as the call's result at its next safe point; no answer within the timeout ends the
  call ``timeout`` (the model is told), so a client that went away needs nothing special.
  404: unknown session or call id; 409, changing nothing: a call that runs on the server, one
  answered already, one that has ended (timeout, cancelled, the session ended) or that has not
  started yet;
- ``POST /demos/agents`` two agents linked by ``send_message``;
- ``POST /demos/live`` the live demo: a slow ``research`` call (progress, a partial result,
  cancellable, its results delivered ``when_idle``) while the model talks; a message saying
  "stop" makes the model cancel it (on ``sim``, a scripted model: :class:`StopPolicy`).

Every request passes :class:`_Guard` first: a ``Host`` that does not name this server gets 400
(DNS rebinding), a state-changing request from a foreign ``Origin`` 403, a missing token 401, a
body over the limit 413. A token is never taken from a URL, and uvicorn's access log redacts
credential-like query parameters.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asynclm.agents import send_message_tool
from asynclm.agents_demo import PLANNER, PROMPTS, RESEARCHER, ROLES, sim_scripts
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.demo_live import RESEARCH_S, research
from asynclm.demo_tools import TRAVEL_TOOLS
from asynclm.engines.base import Engine
from asynclm.prompt import system_prompt
from asynclm.runtime import Session, SessionConfig
from asynclm.runtime.builtins import with_builtins
from asynclm.server.client_tools import DEFAULT_TIMEOUT_S, CallConflict, ClientCalls, UnknownCall
from asynclm.server.config import ServerConfig, parse_host
from asynclm.server.engines import EngineHub, EngineUnavailable
from asynclm.server.openai_chat import router as openai_chat_router
from asynclm.server.openai_common import (
    OpenAIError,
    from_native,
    is_openai_path,
    validation_error,
)
from asynclm.server.openai_responses import router as openai_responses_router
from asynclm.server.registry import LiveSession, SessionRegistry, TooManySessions
from asynclm.server.schemas import AgentsDemo, ClientResult, CreateSession, LiveDemo, SendMessage
from asynclm.server.sim_policy import (
    ReactivePolicy,
    StopPolicy,
    default_script,
    live_steps,
    script_steps,
)
from asynclm.testing.sim import SimCosts, SimEngine
from asynclm.tools import Toolbox

_PUBLIC = ("/", "/health", "/favicon.ico")
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_STREAM_COOKIE = "asynclm_stream_"  # + the port the browser sees; value: "<expiry>.<mac>"
_STREAM_COOKIE_S = 12 * 3600
_EVENTS_PATH = re.compile(r"/sessions/[^/]+/events")
_LAST_EVENT_ID = re.compile(r"[0-9]{1,18}")

# The live demo (POST /demos/live): one slow research call, its results delivered when idle.
_LIVE_TOPIC = "best seafood restaurant in Alfama, Lisbon"
_LIVE_PROMPT = (f"Research the {_LIVE_TOPIC}, for dinner tomorrow. While the research runs, "
                "keep talking to me: tell me about Alfama.")
_LIVE_ROLE = (f"research is slow (about {RESEARCH_S:g} s): call it, then keep talking to the "
              "user while it runs; its result arrives as an interrupt when you pause. If the "
              "user asks you to stop, cancel the call with cancel(call_id=...) and say so.")
_LIVE_TOOLS = Toolbox([research.replace(delivery="when_idle")])


def _error(status: int, error: str, detail: Any = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status,
                        headers=headers)


def _short(text: str, n: int = 100) -> str:
    """``text`` cut for an error message (ids come from the URL: never echo a huge one)."""
    return repr(text if len(text) <= n else text[:n] + "...")


def _canonical(name: str) -> str:
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name.lower()


class _Guard:
    """ASGI middleware, in order: the ``Host`` allow-list (DNS rebinding), the ``Origin`` of
    state-changing requests (cross-site requests), the bearer token (when configured; the
    event stream also takes the cookie that ``POST /auth/cookie`` sets), the request body
    size. Every refusal is a 4xx in the server's error shape."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app, self.config = app, config
        self.any_host = "*" in config.allowed_hosts
        self.extra = {p for h in config.allowed_hosts if h != "*" and (p := parse_host(h))}
        names = {"localhost", "127.0.0.1", "::1"}
        if config.host not in ("0.0.0.0", "::", ""):
            bound = parse_host(config.host if ":" not in config.host else f"[{config.host}]")
            if bound is not None:
                names.add(bound[0])
        self.names = frozenset(names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            if is_openai_path(scope["path"]):
                refusal = from_native(refusal)
            await refusal(scope, receive, send)
            return
        if scope["method"] in _STATE_CHANGING:
            # Read the body first (it is small by contract): a chunked body over the limit is
            # refused before the application sees any of it.
            limit = self.config.max_body_bytes
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
                    too_big = _error(413, f"request body over {limit} bytes")
                    if is_openai_path(scope["path"]):
                        too_big = from_native(too_big)
                    await too_big(scope, receive, send)
                    return
            replay = [{"type": "http.request", "body": b"".join(body), "more_body": False}]

            async def replayed() -> Message:
                return replay.pop() if replay else await receive()

            await self.app(scope, replayed, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        """The error answer for a request refused on its headers alone, else ``None``."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        hosts = [v for k, v in headers if k == b"host"]
        host = self._host(scope, hosts[0].decode("latin-1")) if len(hosts) == 1 else None
        if host is None and not self.any_host:
            shown = hosts[0].decode("latin-1")[:100] if len(hosts) == 1 else None
            return _error(400, "Host header not allowed", {
                "host": shown, "hint": "use the address the server is bound to, or start it "
                                       "with --allowed-host NAME"})
        if scope["method"] in _STATE_CHANGING:
            origins = [v for k, v in headers if k == b"origin"]
            if origins and not self._same_origin(scope, origins, host):
                return _error(403, "cross-origin request refused: Origin is not this server",
                              origins[0].decode("latin-1")[:100])
        path: str = scope["path"]
        token = self.config.token
        if token and path not in _PUBLIC and not path.startswith("/static/"):
            if not self._authorized(scope, token, host):
                return _error(401, "missing or wrong bearer token")
        limit = self.config.max_body_bytes
        lengths = [v for k, v in headers if k == b"content-length"]
        for length in lengths:
            if not (length.isdigit() and len(length) <= 18):
                if length.isdigit():
                    return _error(413, f"request body over {limit} bytes")
                return _error(400, "Content-Length is not a byte count")
            if int(length) > limit:
                return _error(413, f"request body over {limit} bytes")
        if len(set(lengths)) > 1:
            return _error(400, "conflicting Content-Length headers")
        return None

    def _host(self, scope: Scope, value: str) -> tuple[str, int] | None:
        """``value`` (a Host, or an Origin's host:port) as ``(name, port)`` when it names this
        server, else ``None``."""
        default = 443 if scope.get("scheme") in ("https", "wss") else 80
        parsed = parse_host(value, default)
        if parsed is None:
            return None
        name, port = parsed
        assert port is not None
        if (name, None) in self.extra or (name, port) in self.extra:
            return name, port
        server = scope.get("server")
        local_name = _canonical(str(server[0])) if server else None
        ports = {self.config.port, *([int(server[1])] if server and server[1] else [])}
        if port in ports and (name in self.names or name == local_name):
            return name, port
        return None

    def _same_origin(self, scope: Scope, origins: list[bytes], host: tuple[str, int] | None,
                     ) -> bool:
        if len(origins) != 1:
            return False
        origin = origins[0].decode("latin-1").strip()
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest or "/" in rest:
            return False  # "null", file://, garbage
        parsed = parse_host(rest, 443 if scheme.lower() == "https" else 80)
        if parsed is None:
            return False
        if host is not None and parsed == host:
            return True  # the request's own Host (already allowed)
        if self.any_host:
            # every Host is allowed: only the request's own Host is this server's origin
            own = [v for k, v in scope["headers"] if k == b"host"]
            return len(own) == 1 and parse_host(own[0].decode("latin-1"), parsed[1]) == parsed
        return self._host({**scope, "scheme": scheme.lower()}, rest) is not None

    def _authorized(self, scope: Scope, token: str, host: tuple[str, int] | None) -> bool:
        headers = scope["headers"]
        auth = next((v for k, v in headers if k == b"authorization"), b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else ""
        if given:
            return hmac.compare_digest(given.encode(), token.encode())
        if scope.get("method") == "GET" and _EVENTS_PATH.fullmatch(scope["path"]):
            # EventSource cannot set headers: the stream takes the cookie instead
            return _check_stream_cookie(scope, token, host)
        return False


def _cookie_name(host: tuple[str, int] | None, scope: Scope) -> str:
    """Cookies are not scoped by port: the name carries the port the browser sees."""
    port = host[1] if host else (scope.get("server") or ("", 0))[1]
    return f"{_STREAM_COOKIE}{port}"


def _cookie_mac(token: str, expiry: int) -> str:
    key = hmac.new(token.encode(), b"asynclm stream cookie", hashlib.sha256).digest()
    return hmac.new(key, str(expiry).encode(), hashlib.sha256).hexdigest()


def _check_stream_cookie(scope: Scope, token: str, host: tuple[str, int] | None) -> bool:
    name = _cookie_name(host, scope)
    for k, v in scope["headers"]:
        if k != b"cookie":
            continue
        for part in v.decode("latin-1").split(";"):
            key, _, value = part.strip().partition("=")
            if key != name:
                continue
            expiry, _, mac = value.partition(".")
            if not (expiry.isascii() and expiry.isdigit() and len(expiry) <= 12):
                continue
            want = _cookie_mac(token, int(expiry))
            if int(expiry) > time.time() and hmac.compare_digest(mac.encode(), want.encode()):
                return True
    return False


_SECRET_PARAM = re.compile(r"token|secret|password|passwd|key|auth", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """On uvicorn's access log: the value of any query parameter whose name looks like a
    credential (``token``, ``access_token``, ``api_key``, ...) is written as ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(a) if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True


def _redact(path: str) -> str:
    base, _, query = path.partition("?")
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        if eq and _SECRET_PARAM.search(unquote_plus(name)):
            part = f"{name}=[redacted]"
        parts.append(part)
    return base + "?" + "&".join(parts)


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactSecrets) for f in log.filters):
        log.addFilter(_RedactSecrets())


def _load_tools(name: str, config: ServerConfig, cache: dict[str, Toolbox]) -> Toolbox:
    """``demo``, ``none`` or a module named in ``config.tool_modules`` (its ``TOOLS``, or every
    :class:`Tool` it defines). Anything else is refused: a request never imports code."""
    if name in cache:
        return cache[name]
    if name == "demo":
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
    hub = EngineHub(models=cfg.models, max_batch=cfg.max_batch, max_queue=cfg.max_queue,
                    threads=cfg.llama_threads, kv_budget=cfg.kv_budget,
                    engine_url=cfg.engine_url, engine_api_key=cfg.engine_api_key,
                    pin_slots=cfg.engine_pin_slots)
    registry = SessionRegistry(max_live=cfg.max_live_sessions, max_kept=cfg.max_kept_sessions,
                               max_events=cfg.max_events_per_session, slots=hub.reserve)
    toolsets: dict[str, Toolbox] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with registry:
                yield
        finally:
            await hub.aclose()

    app = FastAPI(title="asynclm", lifespan=lifespan, docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")
    app.state.registry, app.state.config, app.state.hub = registry, cfg, hub
    app.add_middleware(_Guard, config=cfg)
    _redact_access_log()
    static = resources.files("asynclm.server") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if is_openai_path(request.url.path):
            return validation_error(exc)
        detail = json.loads(json.dumps(exc.errors(), default=str))
        for d in detail:
            d.pop("input", None)  # never echo a (possibly huge) body back
        return _error(422, "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if is_openai_path(request.url.path):
            resp = OpenAIError(exc.status_code, str(exc.detail)).response()
            resp.headers.update(exc.headers or {})
            return resp
        return _error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        if is_openai_path(request.url.path):
            return OpenAIError(500, f"internal error ({type(exc).__name__})").response()
        return _error(500, "internal error", type(exc).__name__)

    def _get(sid: str) -> LiveSession:
        ls = registry.get(sid)
        if ls is None:
            raise HTTPException(404, f"no session {_short(sid)}")
        return ls

    def _open_engine(req: CreateSession, policy: Any) -> Callable[
            [], AbstractAsyncContextManager[Engine]]:
        if req.engine == "llamacpp":
            return lambda: hub.open(req.model)
        @asynccontextmanager
        async def sim() -> AsyncIterator[Engine]:
            tpot = (req.sim.tpot_ms if req.sim else 30.0) / 1000
            engine = SimEngine(policy, SimCosts(tpot_s=tpot), virtual_time=False)
            try:
                yield engine
            finally:
                await engine.aclose()

        return sim

    def _start(req: CreateSession, *, policy: Any = None, role: str = "",
               toolbox: Toolbox | None = None) -> LiveSession:
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
        box = toolbox if toolbox is not None else _load_tools(req.tools, cfg, toolsets)
        client = _client_calls(req, box)
        if client.tools:
            box = Toolbox([*box.values(), *client.tools])
        if req.agent is not None:
            box = Toolbox([*box.values(), send_message_tool(registry.directory, req.agent)])
            role = role or (f"You are the agent {req.agent!r}. Messages from other agents "
                            "arrive as interrupts; write [TRAP][END] to wait for one.")
        try:  # the prompt lists what the session will offer: the built-ins too (cancel, pending)
            offered = with_builtins(box, SessionConfig())
        except ValueError as exc:  # a tool named like a built-in
            raise HTTPException(400, str(exc)) from None
        system = req.system if req.system is not None else system_prompt(offered, extra=role)
        if policy is None and req.engine == "sim":
            steps = (script_steps(req.sim.script) if req.sim and req.sim.script
                     else default_script(req.tools, req.prompt))
            policy = ReactivePolicy(steps)
        scfg = SessionConfig(max_tokens=req.max_tokens, deadline_s=cfg.max_session_s)

        def make_session(engine: Engine) -> Session:
            return Session(engine, box, strategy=get_strategy(req.strategy), system=system,
                           config=scfg, trace_meta={"engine": req.engine})

        try:
            return registry.start(
                prompt=req.prompt, engine=req.engine,
                model=req.model if req.engine == "llamacpp" else None, strategy=req.strategy,
                tools=req.tools, agent=req.agent, make_session=make_session,
                open_engine=_open_engine(req, policy), client=client)
        except TooManySessions as exc:  # the live limit, or the model's queue is full
            raise HTTPException(429, str(exc),
                                headers={"Retry-After": str(exc.retry_after_s)}) from None
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None

    def _client_calls(req: CreateSession, box: Toolbox) -> ClientCalls:
        """The session's client-run tools (a malformed spec or a taken name: 400)."""
        client = ClientCalls()
        for i, spec in enumerate(req.client_tools):
            try:
                t = client.add(spec.spec(), timeout=spec.timeout_s or DEFAULT_TIMEOUT_S)
            except (ValueError, TypeError) as exc:
                raise HTTPException(
                    400, f"client_tools[{i}]: invalid function tool: {exc}") from None
            if t.name in box or (req.agent is not None and t.name == "send_message"):
                raise HTTPException(400, f"client_tools[{i}]: {t.name!r} is a server tool "
                                         "of this session")
        return client

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: sessions, and per real model (once used) its slots, queue and
        engine stats; ``backend`` is ``batched`` (in process) or ``http`` (``engine_url``,
        never shown)."""
        return {"status": "ok", "live_sessions": registry.n_live(),
                "sessions": len(registry.list()), "backend": hub.backend,
                "engines": hub.stats()}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static / "index.html"), media_type="text/html")

    @app.post("/auth/cookie", status_code=204)
    async def stream_cookie(request: Request) -> Response:
        """Trade the bearer header (checked by the middleware) for an HttpOnly, SameSite=Strict
        cookie that opens event streams only, for 12 h: ``EventSource`` cannot send headers,
        and a token in its URL would reach access logs. The cookie is a MAC of its expiry
        under a key derived from the token, never the token itself."""
        resp = Response(status_code=204)
        if cfg.token:
            host = parse_host(request.headers.get("host", ""),
                              443 if request.url.scheme == "https" else 80)
            expiry = int(time.time()) + _STREAM_COOKIE_S
            resp.set_cookie(_cookie_name(host, request.scope),  # type: ignore[arg-type]
                            f"{expiry}.{_cookie_mac(cfg.token, expiry)}",
                            max_age=_STREAM_COOKIE_S, path="/sessions", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return resp

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
        sid: str, start: int = Query(0, alias="from", ge=0, le=10**18),
        last_event_id: str | None = Header(None),
    ) -> StreamingResponse:
        ls = _get(sid)
        if last_event_id is not None:
            # ASCII digits, bounded: int() of 5,000 digits (or of "\u00b2") raises
            if not _LAST_EVENT_ID.fullmatch(last_event_id):
                raise HTTPException(400, "Last-Event-ID must be an event index (at most 18 "
                                         "digits)")
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
            raise HTTPException(409, f"call {_short(call_id)} is not running in this session")
        return {"cancelling": True, "session": sid, "call_id": call_id}

    @app.post("/sessions/{sid}/calls/{call_id}/result", status_code=202)
    async def call_result(sid: str, call_id: str, req: ClientResult) -> dict[str, Any]:
        """The client's answer to a client-run call (see the module's docstring)."""
        ls = _get(sid)
        if req.error is not None and len(req.error) > cfg.max_message_chars:
            raise HTTPException(413, f"error over {cfg.max_message_chars} characters")
        try:
            if req.error is not None:
                ls.client.answer(call_id, error=req.error)
            else:
                ls.client.answer(call_id, output=req.output)
        except UnknownCall:
            raise HTTPException(404, f"no call {_short(call_id)} in this session") from None
        except CallConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return {"accepted": True, "session": sid, "call_id": call_id}

    @app.post("/demos/agents", status_code=201)
    async def agents_demo(req: AgentsDemo) -> dict[str, Any]:
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

    @app.post("/demos/live", status_code=201)
    async def live_demo(req: LiveDemo) -> dict[str, Any]:
        """A session whose model starts a slow ``research`` call and keeps talking while it
        runs (progress and a partial result on the event stream); "stop" in a message makes
        the model cancel it; its result arrives when the model is idle."""
        create_req = CreateSession.model_validate({
            "prompt": _LIVE_PROMPT, "tools": "live", "engine": req.engine, "model": req.model,
            "max_tokens": req.max_tokens,
            "sim": {"tpot_ms": req.tpot_ms} if req.engine == "sim" else None})
        policy = (StopPolicy(live_steps(_LIVE_TOPIC), cancellable=["r1"])
                  if req.engine == "sim" else None)
        return _start(create_req, policy=policy, role=_LIVE_ROLE, toolbox=_LIVE_TOOLS).info()

    app.include_router(openai_chat_router)
    app.include_router(openai_responses_router)
    return app


def serve(config: ServerConfig) -> None:
    """Run uvicorn on ``config.host:config.port`` (after :meth:`ServerConfig.check`)."""
    import uvicorn

    config.check()
    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info",
                timeout_graceful_shutdown=3)
