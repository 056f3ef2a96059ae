"""What the OpenAI-compatible routes (``/v1/*``) share: OpenAI-shaped errors, the served
models, engines by model name, the server-run tools a request may select, runs in the session
registry (limits, cancellation, the web page's list) and usage figures.

Tool selection (both endpoints): a ``function`` tool whose name is a tool the operator allowed
(``--tools-module`` modules, then the ``demo`` travel tools) is run by the server while the
model writes; ``{"type": "function", "name": N}`` (Responses shape) and
``{"type": "function", "function": {"name": N}}`` (Chat shape) both select it, and any
``parameters`` the request gives for it are ignored (the server's own schema is used).
Other function tools are client tools: Chat Completions refuses them (400); the Responses
route hands them back to the client as ``function_call`` items.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from asynclm.agents_demo import AgentScript, Step, Wait
from asynclm.demo_tools import TRAVEL_TOOLS
from asynclm.engines.base import ChatMessage, Engine
from asynclm.errors import AsyncLMError
from asynclm.models import list_models
from asynclm.protocol import DEFAULT_MARKERS
from asynclm.runtime import RunControl, Session, SessionConfig
from asynclm.runtime import events as ev
from asynclm.runtime.records import SessionResult
from asynclm.server.config import ServerConfig
from asynclm.server.engines import EngineHub, EngineUnavailable
from asynclm.server.registry import LiveSession, SessionRegistry, TooManySessions
from asynclm.testing.sim import SimCosts, SimEngine
from asynclm.tools import Tool, Toolbox

SIM_MODEL = "sim"
"""The simulated model's name on ``/v1`` (real-time simulator, no weights)."""
SIM_TPOT_S = 0.005
"""The simulator's time per token on ``/v1`` (seconds)."""
CREATED = 1_700_000_000
"""The ``created`` stamp of every listed model (bundled models have no release date here)."""

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 409: "invalid_request_error",
          413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
_CODES = {401: "invalid_api_key", 413: "request_too_large", 429: "rate_limit_exceeded"}


# -- errors ---------------------------------------------------------------------------------

class OpenAIError(AsyncLMError):
    """Raised by ``/v1`` routes; the app answers it with :func:`openai_error` (any path).
    ``status`` is the HTTP status; ``type``/``param``/``code`` go into the error object.
    Defaults for ``type`` and ``code`` follow the status (see :func:`error_for_status`).
    ``retry_after``: seconds, sent as ``Retry-After`` (a 429 worth retrying)."""

    def __init__(self, status: int, message: str, *, type: str | None = None,
                 param: str | None = None, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.retry_after = retry_after
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else
                                       "invalid_request_error")
        self.code = code if code is not None else _CODES.get(status)

    def response(self) -> JSONResponse:
        resp = openai_error(self.status, self.message, type=self.type, param=self.param,
                            code=self.code)
        if self.retry_after is not None:
            resp.headers["Retry-After"] = str(self.retry_after)
        return resp


def openai_error(status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> JSONResponse:
    """The response ``{"error": {"message", "type", "param", "code"}}`` with ``status``.
    This is the shape the ``openai`` SDK parses into ``APIStatusError`` (``.code``, ``.param``).
    Every ``/v1`` refusal (routes, validation, the guard) goes out in this shape."""
    return JSONResponse({"error": {"message": message, "type": type, "param": param,
                                   "code": code}}, status_code=status)


def error_for_status(status: int, message: str, *, param: str | None = None,
                     code: str | None = None) -> JSONResponse:
    """:func:`openai_error` with ``type`` (and ``code``, unless given) chosen from ``status``:
    401 ``authentication_error``/``invalid_api_key``, 404 ``not_found_error``, 429
    ``rate_limit_error``/``rate_limit_exceeded``, 5xx ``server_error``, else invalid request."""
    return OpenAIError(status, message, param=param, code=code).response()


def is_openai_path(path: str) -> bool:
    """True for ``/v1`` and every path under it (the routes that answer in OpenAI's shape).
    The app's exception handlers and the guard use it to pick the error shape.
    Other paths keep the native ``{"error", "detail"}`` shape."""
    return path == "/v1" or path.startswith("/v1/")


def validation_error(exc: RequestValidationError) -> JSONResponse:
    """A request body that fails validation on ``/v1``: 400 (as OpenAI answers), the first
    error's message, and ``param`` its location in the body (``messages.0.role``).
    The offending input is never echoed back."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    msg = str(first.get("msg", "invalid request"))
    where = ".".join(loc)
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    return openai_error(400, f"{where + ': ' if where else ''}{msg}{more}",
                        param=where or None, code="invalid_value")


def from_native(resp: JSONResponse) -> JSONResponse:
    """A native error answer (``{"error": str, "detail": ...}``, e.g. the guard's 400/401/413)
    re-shaped for ``/v1``: same status, the message with its detail, type from the status.
    Used by the guard middleware for refusals on ``/v1`` paths."""
    try:
        body = json.loads(bytes(resp.body))
    except ValueError:
        body = {}
    message = str(body.get("error", "request refused"))
    detail = body.get("detail")
    if isinstance(detail, dict) and "hint" in detail:
        message += f" ({detail['hint']})"
    elif isinstance(detail, str):
        message += f": {detail}"
    return error_for_status(resp.status_code, message)


# -- models, engines, tools -----------------------------------------------------------------

def served_models(config: ServerConfig) -> list[dict[str, Any]]:
    """``/v1/models`` entries: each model of ``config.models`` that is in the local cache (so
    it can be opened without a download), then ``sim``. Each is ``{"id", "object": "model",
    "created", "owned_by"}`` (``owned_by``: ``asynclm`` for bundled models and the simulator)."""
    cached = {m.name for m in list_models() if m.assembled}
    names = [m for m in config.models if m in cached]
    return [{"id": n, "object": "model", "created": CREATED, "owned_by": "asynclm"}
            for n in [*names, SIM_MODEL]]


def content_text(content: Any, *, param: str) -> str:
    """A message's content as text: a string, or a list of text parts (``{"type": "text" |
    "input_text" | "output_text", "text"}``) joined; ``None`` is ``""``.
    Any other part (images, audio, files) raises :class:`OpenAIError` 400 naming ``param``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for i, part in enumerate(content):
            if isinstance(part, str):
                out.append(part)
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "input_text", "output_text") and isinstance(
                    part.get("text"), str):
                out.append(part["text"])
            else:
                raise OpenAIError(400, f"content part of type {kind!r} is not supported "
                                       "(text only)", param=f"{param}.{i}",
                                  code="unsupported_content")
        return "".join(out)
    raise OpenAIError(400, "content must be a string or a list of text parts", param=param)


def tool_name(spec: Mapping[str, Any]) -> str | None:
    """The name a ``function`` tool spec gives, in either shape (``{"name"}`` or
    ``{"function": {"name"}}``); ``None`` for other tool types or a spec without a name.
    Non-function tools (``mcp``, ``web_search``...) are the caller's to handle."""
    if spec.get("type") != "function":
        return None
    fn = spec.get("function")
    name = fn.get("name") if isinstance(fn, Mapping) else spec.get("name")
    return name if isinstance(name, str) and name else None


@dataclass
class Usage:
    """Token counts of one run. ``prompt_tokens``: the rendered conversation, plus the tool
    results and interrupts injected while the model wrote (``injected_tokens``, which the
    model also reads); ``completion_tokens``: tokens the model generated."""

    prompt_tokens: int
    completion_tokens: int
    injected_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def chat(self) -> dict[str, Any]:
        """Chat Completions' ``usage`` object."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}

    def responses(self) -> dict[str, Any]:
        """Responses' ``usage`` object."""
        return {"input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.total_tokens}


def usage_of(result: SessionResult, prompt_tokens: int) -> Usage:
    """Usage of a finished run: ``prompt_tokens`` (the rendered conversation, counted by the
    engine's tokenizer before the run) plus ``result.n_injected``, and ``result.n_generated``.
    Same counting for both endpoints."""
    return Usage(prompt_tokens=prompt_tokens + result.n_injected,
                 completion_tokens=result.n_generated, injected_tokens=result.n_injected)


class _ApiSession(Session):
    """A session whose conversation is fixed at creation (the registry runs sessions from a
    prompt string): it records its result and the prompt's token count."""

    def __init__(self, engine: Engine, tools: Toolbox, *, conversation: list[ChatMessage],
                 config: SessionConfig, run: Run) -> None:
        super().__init__(engine, tools, system="", config=config, trace_meta={"api": "openai"})
        self._conversation, self._run = conversation, run

    def messages(self, prompt: str | Sequence[ChatMessage]) -> list[ChatMessage]:
        return list(self._conversation)

    async def run(self, prompt: str | Sequence[ChatMessage], *,
                  on_event: Callable[[ev.StreamEvent], None] | None = None,
                  control: RunControl | None = None) -> SessionResult:
        self._run.prompt_tokens = len(self.engine.tokenize_chat(self._conversation))

        def seen(event: ev.StreamEvent) -> None:
            if isinstance(event, ev.Done):
                self._run.result = event.result
            if on_event is not None:
                on_event(event)

        result = await super().run(prompt, on_event=seen, control=control)
        self._run.result = result
        return result


@dataclass
class Run:
    """One ``/v1`` request's run, registered as a live session (``live``: its
    :class:`LiveSession`, id ``live.id``). ``result``/``prompt_tokens`` are set by the run.
    Iterate :meth:`events`; call :meth:`cancel` when the client goes away."""

    live: LiveSession | None = None
    result: SessionResult | None = None
    prompt_tokens: int = 0

    async def events(self, keepalive_s: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """The session's events (dicts as on the native event stream: ``text.delta`` with
        ``text``, ``call.emitted``/``call.started``/``call.completed``, ``done``...), in order,
        ending after ``session.end`` (whose ``status`` is ``done``/``cancelled``/``failed``).
        With ``keepalive_s``, ``{"type": "keepalive"}`` after that long without events."""
        assert self.live is not None
        async for batch in self.live.follow(0, keepalive_s=keepalive_s or 3600):
            if not batch and keepalive_s:
                yield {"type": "keepalive"}
            for event in batch:
                yield event

    def cancel(self) -> None:
        """Cancel the run if it is still live (idempotent): its calls end ``cancelled``."""
        if self.live is not None and self.live.live and self.live.task is not None:
            self.live.task.cancel()

    def usage(self) -> Usage:
        """Usage of the finished run (zeros generated when it produced no result)."""
        if self.result is None:
            return Usage(self.prompt_tokens, 0)
        return usage_of(self.result, self.prompt_tokens)


@dataclass
class Backend:
    """The server's state as ``/v1`` routes use it: config, session registry, engine hub and
    the loaded tool modules. Get it with :func:`backend` (one per app). Methods raise
    :class:`OpenAIError` for anything a request got wrong."""

    config: ServerConfig
    registry: SessionRegistry
    hub: EngineHub
    _boxes: dict[str, Toolbox] = field(default_factory=dict)

    # models
    def check_model(self, model: str) -> None:
        """Raise 404 ``model_not_found`` unless ``model`` is ``sim`` or a served, cached model.
        A model in ``config.models`` that is not in the cache is also 404 (with the hint).
        Call this before :meth:`start_run` so the client gets the error before any stream."""
        if model == SIM_MODEL:
            return
        try:
            self.hub.check_model(model)
        except EngineUnavailable as exc:
            raise OpenAIError(404, f"The model {model!r} does not exist or is not served "
                                   f"here ({exc}); see GET /v1/models",
                              param="model", code="model_not_found") from None

    def open_engine(self, model: str, policy: Any = None,
                    ) -> AbstractAsyncContextManager[Engine]:
        """An async context manager giving an :class:`Engine` for ``model``: a fresh real-time
        simulator driven by ``policy`` (default: :func:`sim_policy` of nothing) for ``sim``,
        else a session's engine from the hub (a slot of the model's batched engine, or an
        HTTP engine to the operator's inference server), held until exit."""
        if model != SIM_MODEL:
            return self.hub.open(model)

        @asynccontextmanager
        async def sim() -> AsyncIterator[Engine]:
            engine = SimEngine(policy if policy is not None else sim_policy("", Toolbox()),
                               SimCosts(tpot_s=SIM_TPOT_S), virtual_time=False)
            try:
                yield engine
            finally:
                await engine.aclose()

        return sim()

    # tools
    def server_tools(self) -> Toolbox:
        """Every tool a request may ask the server to run: the ``--tools-module`` modules in
        order, then the ``demo`` travel tools; the first tool of a name wins.
        A module that fails to load is a 400 (the operator's mistake, said clearly)."""
        tools: dict[str, Tool] = {}
        for name in self.config.tool_modules:
            box = self._boxes.get(name)
            if box is None:
                try:
                    box = self._boxes[name] = Toolbox.from_module(name)
                except Exception as exc:  # noqa: BLE001 - an operator's broken module
                    raise OpenAIError(400, f"tool module {name!r} failed to load: "
                                           f"{type(exc).__name__}: {exc}") from None
            for t in box.values():
                tools.setdefault(t.name, t)
        for t in TRAVEL_TOOLS.values():
            tools.setdefault(t.name, t)
        return Toolbox(list(tools.values()))

    def resolve_tools(self, specs: Iterable[Any] | None, *, allow_client: bool,
                      ) -> tuple[Toolbox, list[dict[str, Any]]]:
        """Split a request's ``tools`` into the server-run :class:`Toolbox` (function tools
        named like a server tool) and the other specs, in order. With ``allow_client=False``
        (Chat Completions) any other spec is a 400 naming ``tools.<i>``."""
        server = self.server_tools()
        chosen: dict[str, Tool] = {}
        rest: list[dict[str, Any]] = []
        for i, spec in enumerate(specs or ()):
            if not isinstance(spec, dict):
                raise OpenAIError(400, "a tool must be an object", param=f"tools.{i}")
            name = tool_name(spec)
            if name is not None and name in server:
                chosen[name] = server[name]
                continue
            if not allow_client:
                what = f"tool {name!r}" if name else f"tool type {spec.get('type')!r}"
                raise OpenAIError(
                    400, f"{what} is not a server tool; this endpoint runs server tools only "
                         f"(available: {', '.join(server) or 'none'})",
                    param=f"tools.{i}", code="unsupported_tool")
            rest.append(spec)
        return Toolbox(list(chosen.values())), rest

    # runs
    def start_run(self, *, model: str, conversation: list[ChatMessage], tools: Toolbox,
                  max_tokens: int, label: str, policy: Any = None) -> Run:
        """Start ``conversation`` (system message first when any: build it with
        :func:`system_text`) on ``model`` with ``tools`` as a registry session; 429 at the live
        limit. ``label``: the session's prompt as the web page shows it; ``policy``: sim only."""
        if max_tokens > self.config.max_tokens_limit or max_tokens < 1:
            raise OpenAIError(400, f"max tokens must be between 1 and "
                                   f"{self.config.max_tokens_limit}", param="max_tokens",
                              code="invalid_value")
        size = sum(len(m.content) for m in conversation)
        if size > self.config.max_prompt_chars + len(conversation[0].content if conversation
                                                     else ""):
            raise OpenAIError(400, f"input over {self.config.max_prompt_chars} characters",
                              code="context_length_exceeded")
        self.check_model(model)
        if model == SIM_MODEL and policy is None:
            policy = sim_policy(_last_user(conversation), tools)
        run = Run()
        scfg = SessionConfig(max_tokens=max_tokens, deadline_s=self.config.max_session_s)
        try:
            run.live = self.registry.start(
                prompt=label or "(openai request)",
                engine="sim" if model == SIM_MODEL else "llamacpp",
                model=None if model == SIM_MODEL else model, strategy="async",
                tools=",".join(tools) or "none", agent=None,
                make_session=lambda engine: _ApiSession(
                    engine, tools, conversation=conversation, config=scfg, run=run),
                open_engine=lambda: self.open_engine(model, policy))
        except TooManySessions as exc:
            raise OpenAIError(429, str(exc), retry_after=exc.retry_after_s) from None
        return run


def backend(request: Request) -> Backend:
    """The app's :class:`Backend` (built on first use from ``app.state``: ``config``,
    ``registry`` and ``hub``, which :func:`asynclm.server.app.create_app` sets).
    Routes call it per request; it is one object per app."""
    state = request.app.state
    b: Backend | None = getattr(state, "openai_backend", None)
    if b is None:
        b = state.openai_backend = Backend(state.config, state.registry, state.hub)
    return b


def system_text(tools: Toolbox, client_system: str) -> str:
    """The system message of a run: with server tools, asynclm's protocol rules and the tools
    (the model must know how to call them) followed by the client's system text; without
    tools, the client's system text alone ("" when none: then send no system message)."""
    if len(tools):
        from asynclm.prompt import system_prompt

        return system_prompt(tools, extra=client_system)
    return client_system


def _last_user(conversation: Sequence[ChatMessage]) -> str:
    return next((m.content for m in reversed(conversation) if m.role == "user"), "")


# -- the simulated model --------------------------------------------------------------------

def _fill(schema: Mapping[str, Any], text: str) -> Any:
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {},
            "null": None}.get(str(kind), text)


def sim_args(tool: Tool, text: str) -> dict[str, Any]:
    """Arguments the simulated model writes for ``tool``: each required parameter filled from
    its schema (strings get ``text``, numbers 1, booleans true, enums their first value);
    optional parameters are left out."""
    props = tool.parameters.get("properties", {})
    return {name: _fill(props.get(name, {}), text)
            for name in tool.parameters.get("required", ())}


def sim_policy(user_text: str, tools: Toolbox) -> AgentScript:
    """What ``sim`` writes: a sentence quoting the last user message; then, with tools, one
    call to each (arguments from :func:`sim_args` with that message, all started before it
    waits), a sentence while they run, and an answer quoting every result."""
    # no marker may reach the simulated model's own text: it would parse as a block
    quoted = user_text.strip()[:160].replace("[", "(").replace("]", ")")
    steps: list[Step] = [f"You said: \u201c{quoted}\u201d. "]
    if not len(tools):
        steps.append("I am the simulated model; this is my whole answer.")
        return AgentScript(steps)
    ids = [f"c{i + 1}" for i in range(len(tools))]
    for cid, t in zip(ids, tools.values(), strict=True):
        body = ", ".join(f"{k}={json.dumps(v)}" for k, v in sim_args(t, quoted).items())
        steps.append(f"{DEFAULT_MARKERS.call} {cid} {DEFAULT_MARKERS.head} {t.name}({body}) "
                     f"{DEFAULT_MARKERS.end}\n")
    steps.append("While the tools run, I keep writing. ")
    steps.extend(Wait(cid) for cid in ids)
    names = list(tools)

    def answer(seen: Mapping[str, str]) -> str:
        return "Results: " + "; ".join(f"{n}: {seen.get(c, '')}" for n, c in
                                       zip(names, ids, strict=True)) + "."

    steps.append(answer)
    return AgentScript(steps)
