"""``POST /v1/responses``: OpenAI's Responses API (a documented subset), streaming and not.

Request fields: ``model`` (``sim`` or a served bundled model, see ``GET /v1/models``),
``input`` (a string, or items: messages with role ``user``/``assistant``/``system``/
``developer`` and text content; ``function_call`` and ``function_call_output`` items, which
continue a run parked on client calls or, without ``previous_response_id``, are replayed as
history), ``instructions``, ``max_output_tokens``, ``tools``, ``previous_response_id``,
``stream``. Accepted and ignored (the engines sample as they are configured): ``temperature``,
``top_p``, ``tool_choice``, ``parallel_tool_calls``, ``store`` (responses are always kept, for
a while), ``metadata``, ``user``, ``include``, ``truncation``, ``text``, ``reasoning``,
``service_tier``, ``prompt_cache_key``, ``safety_identifier``, ``stream_options``,
``top_logprobs``, ``max_tool_calls``. ``background``, ``conversation`` and ``prompt`` are
refused (400); so is any other field.

Tools:
- **server-run**: a ``function`` tool named like a tool the operator allowed
  (``--tools-module``, then the demo travel tools; see :mod:`asynclm.server.openai_common`),
  and ``{"type": "mcp", "server_label", "server_url", "allowed_tools"?}`` for an MCP server on
  the operator's allow-list (``--mcp-server LABEL=URL``; a ``server_url`` not on it is a 400,
  a request never makes the server connect anywhere else; ``server_url`` may be left out to
  use the allow-listed URL of ``server_label``). They run while the model keeps writing and
  show as ``mcp_call`` items (``server_label``: the MCP server's label, ``asynclm`` for the
  operator's Python tools) with ``arguments``, ``output`` or ``error``.
- **client-run**: any other ``function`` tool. The model's call ends the response with a
  ``function_call`` item (``call_id``, ``name``, ``arguments``, ``status: completed``) once
  the model waits for it. The run is *parked*, not ended: its engine context (KV cache
  included) stays live, server calls go on. The client continues with
  ``previous_response_id`` and ``function_call_output`` items; the outputs are delivered to
  the waiting run as results and the model continues where it was, with no re-prefill. A
  parked run that is not continued within :data:`PARK_S` is cancelled. Continuing a
  *finished* response (new user input) starts a new run on the stored conversation (its
  transcript as the assistant turn; ``instructions`` and ``tools`` are not carried over, as
  in OpenAI's API: send them again): the llama.cpp engine re-uses the cached prefix
  (``prefill(reuse_prefix=True)``) while its cache still holds it, else re-prefills.
  Responses are kept (at most :data:`STORE_MAX`, for :data:`STORE_S`); an unknown
  ``previous_response_id`` is a 404. User messages sent with ``function_call_output`` items
  reach the parked run as interrupts.

Stream events: ``response.created``, ``response.in_progress``, ``response.output_item.added``
/ ``.done``; for message items ``response.content_part.added``/``.done``,
``response.output_text.delta``/``.done``; for ``mcp_call`` items
``response.mcp_call_arguments.delta``/``.done``, ``response.mcp_call.in_progress``, then
``response.mcp_call.completed`` or ``.failed``; for ``function_call`` items
``response.function_call_arguments.delta``/``.done``; finally ``response.completed`` (usage:
input and output tokens), ``response.incomplete`` (``max_output_tokens``) or
``response.failed``. Closing the stream cancels the run (its calls end ``cancelled``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from asynclm.agents_demo import AgentScript
from asynclm.engines.base import ChatMessage, Engine
from asynclm.protocol import CmlDialect, Delivery
from asynclm.runtime import RunControl, Session, SessionConfig
from asynclm.runtime import events as ev
from asynclm.runtime.records import SessionResult
from asynclm.server.client_tools import client_tool
from asynclm.server.openai_common import (
    SIM_MODEL,
    Backend,
    OpenAIError,
    Usage,
    backend,
    content_text,
    sim_policy,
    system_text,
    usage_of,
)
from asynclm.server.registry import LiveSession, TooManySessions
from asynclm.tools import Tool, Toolbox, from_mcp

router = APIRouter()

PARK_S = 300.0
"""How long a run parked on client calls waits for the client to continue (seconds)."""
STORE_MAX = 256
"""Responses kept for ``previous_response_id`` (the oldest go first)."""
STORE_S = 3600.0
"""How long a response is kept (seconds)."""
ASYNCLM_LABEL = "asynclm"
"""The ``server_label`` of ``mcp_call`` items for the operator's (non-MCP) server tools."""
_DIALECT = CmlDialect()


class ResponsesRequest(BaseModel):
    """The request body (unknown fields: 400)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(max_length=1000)
    instructions: str | None = None
    max_output_tokens: int | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    previous_response_id: str | None = Field(None, max_length=200)
    stream: bool | None = False
    # accepted and ignored
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    user: str | None = None
    include: list[Any] | None = None
    truncation: str | None = None
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    stream_options: dict[str, Any] | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    # refused when set
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None


# -- a run behind one or more responses ------------------------------------------------------

@dataclass
class _McpSpec:
    label: str
    url: str
    allowed: tuple[str, ...] | None


@dataclass
class _Conv:
    """One asynclm run and what its responses need: the raw runtime events (the responses
    read them from :attr:`cursor` on), the client calls waiting for the client, the
    conversation (to continue a finished run)."""

    model: str
    conversation: list[ChatMessage]
    server_box: Toolbox
    client_specs: list[dict[str, Any]]
    mcp: list[_McpSpec]
    instructions: str
    control: RunControl = field(default_factory=RunControl)
    events: list[ev.StreamEvent] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False
    error: str | None = None
    result: SessionResult | None = None
    prompt_tokens: int = 0
    live: LiveSession | None = None
    client_names: set[str] = field(default_factory=set)
    waiting: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # tool name -> server_label
    cursor: int = 0
    streaming: bool = False  # a response is reading this run now

    def push(self, event: ev.StreamEvent | None) -> None:
        if event is not None:
            self.events.append(event)
        self.wake.set()

    def cancel(self) -> None:
        if self.live is not None and self.live.live and self.live.task is not None:
            self.live.task.cancel()

    def client_tool(self, spec: Mapping[str, Any]) -> Tool:
        """A tool the client runs: its call waits for a ``function_call_output``."""
        t = client_tool(spec, self.waiting, on_wait=lambda *_: self.wake.set())
        self.client_names.add(t.name)
        return t


class _ResponsesSession(Session):
    """Runs a :class:`_Conv`: opens the MCP servers it uses (in the run's own task), builds
    its tools and system message, and tees the runtime events to the conversation."""

    def __init__(self, engine: Engine, conv: _Conv, config: SessionConfig,
                 policy: AgentScript | None) -> None:
        super().__init__(engine, Toolbox(), system="", config=config,
                         trace_meta={"api": "openai-responses"})
        self._conv, self._policy = conv, policy

    def messages(self, prompt: str | Sequence[ChatMessage]) -> list[ChatMessage]:
        return list(self._conv.conversation)

    async def run(self, prompt: str | Sequence[ChatMessage], *,
                  on_event: Callable[[ev.StreamEvent], None] | None = None,
                  control: RunControl | None = None) -> SessionResult:
        conv = self._conv

        def tee(event: ev.StreamEvent) -> None:
            if isinstance(event, ev.Done):
                conv.result = event.result
            conv.push(event)
            if on_event is not None:
                on_event(event)

        try:
            async with AsyncExitStack() as stack:
                tools = list(conv.server_box.values())
                for t in tools:
                    conv.labels[t.name] = ASYNCLM_LABEL
                for spec in conv.mcp:
                    client = await stack.enter_async_context(_mcp_client(spec.url))
                    for t in await from_mcp(client, include=spec.allowed):
                        conv.labels[t.name] = spec.label
                        tools.append(t)
                tools += [conv.client_tool(s) for s in conv.client_specs]
                self.tools = Toolbox(tools)
                system = system_text(self.tools, conv.instructions)
                rest = [m for m in conv.conversation if m.role != "system"]
                conv.conversation = ([ChatMessage("system", system)] if system else []) + rest
                if self._policy is not None:
                    self._policy.steps = sim_policy(_last_user(rest), self.tools).steps
                conv.prompt_tokens = len(self.engine.tokenize_chat(conv.conversation))
                result = await super().run(prompt, on_event=tee, control=control)
                conv.result = result
                return result
        except BaseException as exc:
            conv.error = conv.error or (
                "cancelled" if isinstance(exc, asyncio.CancelledError)
                else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            conv.ended = True
            conv.push(None)


def _mcp_client(url: str) -> AbstractAsyncContextManager[Any]:
    try:
        from mcp import Client
    except ImportError:  # pragma: no cover - without the mcp extra
        raise OpenAIError(400, "MCP tools need the server's 'mcp' extra", param="tools",
                          code="unsupported_tool") from None
    client: AbstractAsyncContextManager[Any] = Client(url)
    return client


def _last_user(messages: Sequence[ChatMessage]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


# -- the response store ----------------------------------------------------------------------

@dataclass
class _Stored:
    conv: _Conv
    created: float
    body: dict[str, Any]
    continued: bool = False


class _Store:
    def __init__(self) -> None:
        self._items: dict[str, _Stored] = {}

    def put(self, rid: str, item: _Stored) -> None:
        self._evict()
        self._items[rid] = item

    def get(self, rid: str) -> _Stored | None:
        self._evict()
        return self._items.get(rid)

    def _evict(self) -> None:
        cutoff = time.time() - STORE_S
        for rid in [r for r, s in self._items.items() if s.created < cutoff]:
            del self._items[rid]
        while len(self._items) >= STORE_MAX:
            del self._items[next(iter(self._items))]


def _store(request: Request) -> _Store:
    state = request.app.state
    store: _Store | None = getattr(state, "responses_store", None)
    if store is None:
        store = state.responses_store = _Store()
    return store


# -- reading the request ---------------------------------------------------------------------

def _check_fields(req: ResponsesRequest) -> None:
    for name in ("background", "conversation", "prompt"):
        value = getattr(req, name)
        if value not in (None, False):
            raise OpenAIError(400, f"{name!r} is not supported by this server", param=name,
                              code="unsupported_parameter")


def _items(req: ResponsesRequest) -> list[dict[str, Any]]:
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    return req.input


_ROLES = {"user", "assistant", "system", "developer"}


def _read_input(items: list[dict[str, Any]]) -> tuple[list[ChatMessage], str, dict[str, str]]:
    """The input as chat messages, the system/developer text, and function call outputs
    (call id -> output). ``function_call`` items are replayed into the assistant's text."""
    messages: list[ChatMessage] = []
    system: list[str] = []
    outputs: dict[str, str] = {}
    calls: dict[str, tuple[str, Any]] = {}
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "message" or (kind is None and "role" in item):
            role = item.get("role")
            if role not in _ROLES:
                raise OpenAIError(400, f"unsupported role {role!r}", param=f"input.{i}.role",
                                  code="invalid_value")
            text = content_text(item.get("content"), param=f"input.{i}.content")
            if role in ("system", "developer"):
                system.append(text)
            else:
                _add(messages, role, text)
        elif kind == "function_call":
            cid, name = item.get("call_id"), item.get("name")
            if not isinstance(cid, str) or not isinstance(name, str):
                raise OpenAIError(400, "a function_call item needs call_id and name",
                                  param=f"input.{i}", code="invalid_value")
            args = _json_args(item.get("arguments", "{}"), f"input.{i}.arguments")
            calls[cid] = (name, args)
            _add(messages, "assistant", _DIALECT.render_call(name, args, cid) + "\n")
        elif kind == "function_call_output":
            cid, out = item.get("call_id"), item.get("output")
            if not isinstance(cid, str) or not cid:
                raise OpenAIError(400, "a function_call_output item needs a call_id",
                                  param=f"input.{i}.call_id", code="invalid_value")
            text = out if isinstance(out, str) else content_text(
                out, param=f"input.{i}.output") if isinstance(out, list) else json.dumps(out)
            outputs[cid] = text
            if cid in calls:  # replayed history: the result as the model saw it
                _add(messages, "assistant", "".join(
                    s.text for s in _DIALECT.render_interrupt([Delivery(cid, text)])))
        elif kind == "mcp_call":  # history of a server-run call
            name = str(item.get("name", ""))
            args = _json_args(item.get("arguments", "{}"), f"input.{i}.arguments")
            cid = str(item.get("id", "mcp"))[-32:]
            _add(messages, "assistant", _DIALECT.render_call(name, args) + "\n" + "".join(
                s.text for s in _DIALECT.render_interrupt(
                    [Delivery(cid, str(item.get("output") or item.get("error") or ""))])))
        else:
            raise OpenAIError(400, f"input item type {kind!r} is not supported (messages, "
                                   "function_call, function_call_output, mcp_call)",
                              param=f"input.{i}.type", code="unsupported_value")
    return messages, "\n\n".join(s for s in system if s), outputs


def _add(messages: list[ChatMessage], role: str, text: str) -> None:
    if messages and messages[-1].role == role == "assistant":
        messages[-1] = ChatMessage(role, messages[-1].content + text)
    else:
        messages.append(ChatMessage(role, text))


def _json_args(raw: Any, param: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise OpenAIError(400, "arguments must be a JSON object (as a string)", param=param,
                          code="invalid_value")
    return value


def _mcp_specs(specs: list[dict[str, Any]], allowed: Mapping[str, str],
               ) -> tuple[list[_McpSpec], list[dict[str, Any]]]:
    """The ``mcp`` tools of a request, checked against the operator's allow-list
    (label -> URL), and the other (client) tool specs."""
    out: list[_McpSpec] = []
    rest: list[dict[str, Any]] = []
    urls = {_norm(u): label for label, u in allowed.items()}
    for i, spec in enumerate(specs):
        kind = spec.get("type")
        if kind == "function":
            if not isinstance(spec.get("name"), str) and not isinstance(spec.get("function"),
                                                                          dict):
                raise OpenAIError(400, "a function tool needs a name", param=f"tools.{i}",
                                  code="invalid_value")
            rest.append(spec)
            continue
        if kind != "mcp":
            raise OpenAIError(400, f"tool type {kind!r} is not supported (function, mcp)",
                              param=f"tools.{i}.type", code="unsupported_tool")
        label, url = spec.get("server_label"), spec.get("server_url")
        if not isinstance(label, str) or not label:
            raise OpenAIError(400, "an mcp tool needs a server_label",
                              param=f"tools.{i}.server_label", code="invalid_value")
        if url is None:
            if label not in allowed:
                raise OpenAIError(400, f"no MCP server labelled {label!r} is allowed here "
                                       f"(allowed: {', '.join(allowed) or 'none'})",
                                  param=f"tools.{i}.server_label", code="mcp_server_not_allowed")
            url = allowed[label]
        if not isinstance(url, str) or _norm(url) not in urls:
            raise OpenAIError(400, "server_url is not on this server's MCP allow-list (the "
                                   "operator allows servers with --mcp-server LABEL=URL)",
                              param=f"tools.{i}.server_url", code="mcp_server_not_allowed")
        for key in ("headers", "authorization", "connector_id"):
            if spec.get(key):
                raise OpenAIError(400, f"mcp tool field {key!r} is not supported",
                                  param=f"tools.{i}.{key}", code="unsupported_parameter")
        names = spec.get("allowed_tools")
        if isinstance(names, dict):
            names = names.get("tool_names")
        if names is not None and not (isinstance(names, list)
                                      and all(isinstance(n, str) for n in names)):
            raise OpenAIError(400, "allowed_tools must be a list of tool names",
                              param=f"tools.{i}.allowed_tools", code="invalid_value")
        out.append(_McpSpec(label, url, tuple(names) if names is not None else None))
    return out, rest


def _norm(url: str) -> str:
    return url.strip().rstrip("/").lower()


async def _check_mcp(specs: list[_McpSpec]) -> None:
    """Connect to each allow-listed server once before the run: a server that is down is a
    424 (OpenAI's answer for a failed MCP dependency), not a broken stream."""
    for spec in specs:
        try:
            async with asyncio.timeout(10), _mcp_client(spec.url) as client:
                await from_mcp(client, include=spec.allowed)
        except OpenAIError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported to the client, shortened
            msg = str(exc) or type(exc).__name__
            raise OpenAIError(424, f"MCP server {spec.label!r} failed: {msg[:300]}",
                              param="tools", code="mcp_server_error",
                              type="external_connector_error") from None


# -- starting runs ---------------------------------------------------------------------------

def _start(b: Backend, conv: _Conv, max_tokens: int, label: str) -> None:
    cfg = b.config
    if not 1 <= max_tokens <= cfg.max_tokens_limit:
        raise OpenAIError(400, f"max_output_tokens must be between 1 and "
                               f"{cfg.max_tokens_limit}", param="max_output_tokens",
                          code="invalid_value")
    if sum(len(m.content) for m in conv.conversation) > cfg.max_prompt_chars * 4:
        raise OpenAIError(400, f"input over {cfg.max_prompt_chars * 4} characters",
                          param="input", code="context_length_exceeded")
    b.check_model(conv.model)
    policy = AgentScript([]) if conv.model == SIM_MODEL else None
    scfg = SessionConfig(max_tokens=max_tokens, deadline_s=cfg.max_session_s)

    @asynccontextmanager
    async def open_engine() -> AsyncIterator[Engine]:
        async with b.open_engine(conv.model, policy) as engine:
            yield engine

    tools = [*conv.server_box, *(s.label for s in conv.mcp),
             *(str(s.get("name") or "") for s in conv.client_specs)]
    try:
        conv.live = b.registry.start(
            prompt=label[:2000] or "(responses request)",
            engine="sim" if conv.model == SIM_MODEL else "llamacpp",
            model=None if conv.model == SIM_MODEL else conv.model, strategy="async",
            tools=",".join(tools)[:200] or "none", agent=None,
            make_session=lambda engine: _ResponsesSession(engine, conv, scfg, policy),
            open_engine=open_engine)
    except TooManySessions as exc:
        raise OpenAIError(429, str(exc), retry_after=exc.retry_after_s) from None
    conv.control = conv.live.control


# -- writing the response --------------------------------------------------------------------

class _Writer:
    """Turns a run's runtime events into one response's output items and stream events."""

    def __init__(self, rid: str, conv: _Conv, req: ResponsesRequest, prev: str | None) -> None:
        self.rid, self.conv, self.req, self.prev = rid, conv, req, prev
        self.created = time.time()
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.msg: dict[str, Any] | None = None
        self.open_calls: dict[str, int] = {}  # server call id -> output index
        self.handed: set[str] = set()  # client call ids handed over in this response
        self.status = "in_progress"
        self.error: dict[str, Any] | None = None
        self.incomplete: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "id": self.rid, "object": "response", "created_at": self.created,
            "status": self.status, "error": self.error,
            "incomplete_details": self.incomplete, "instructions": self.req.instructions,
            "max_output_tokens": self.req.max_output_tokens, "model": self.req.model,
            "output": self.output, "parallel_tool_calls": True,
            "previous_response_id": self.prev, "temperature": None, "tool_choice": "auto",
            "tools": self.req.tools or [], "top_p": None, "truncation": "disabled",
            "usage": self.usage, "metadata": self.req.metadata or {}, "store": True,
            "text": {"format": {"type": "text"}},
        }

    def event(self, type: str, **data: Any) -> dict[str, Any]:
        out = {"type": type, "sequence_number": self.seq, **data}
        self.seq += 1
        return out

    def start(self) -> list[dict[str, Any]]:
        return [self.event("response.created", response=self.body()),
                self.event("response.in_progress", response=self.body())]

    def _add_item(self, item: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.output.append(item)
        idx = len(self.output) - 1
        return idx, self.event("response.output_item.added", output_index=idx,
                               item=json.loads(json.dumps(item)))

    def _close_msg(self) -> list[dict[str, Any]]:
        if self.msg is None:
            return []
        item, self.msg = self.msg, None
        idx = self.output.index(item)
        part = item["content"][0]
        item["status"] = "completed"
        return [
            self.event("response.output_text.done", item_id=item["id"], output_index=idx,
                       content_index=0, text=part["text"], logprobs=[]),
            self.event("response.content_part.done", item_id=item["id"], output_index=idx,
                       content_index=0, part=dict(part)),
            self.event("response.output_item.done", output_index=idx,
                       item=json.loads(json.dumps(item)))]

    def feed(self, e: ev.StreamEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(e, ev.TextDelta) and e.text:
            if self.msg is None:
                self.msg = {"id": f"msg_{secrets.token_hex(12)}", "type": "message",
                            "role": "assistant", "status": "in_progress",
                            "content": [{"type": "output_text", "text": "",
                                         "annotations": [], "logprobs": []}]}
                idx, added = self._add_item(self.msg)
                out += [added, self.event(
                    "response.content_part.added", item_id=self.msg["id"], output_index=idx,
                    content_index=0, part={"type": "output_text", "text": "",
                                           "annotations": [], "logprobs": []})]
            self.msg["content"][0]["text"] += e.text
            out.append(self.event("response.output_text.delta", item_id=self.msg["id"],
                                  output_index=self.output.index(self.msg), content_index=0,
                                  delta=e.text, logprobs=[]))
        elif isinstance(e, ev.CallEmitted):
            out += self._close_msg()
            args = json.dumps(e.args, default=str)
            if e.fn in self.conv.client_names:
                item: dict[str, Any] = {"id": f"fc_{secrets.token_hex(12)}", "type": "function_call",
                        "call_id": e.call_id, "name": e.fn, "arguments": "",
                        "status": "in_progress"}
                idx, added = self._add_item(item)
                item["arguments"], item["status"] = args, "completed"
                self.handed.add(e.call_id)
                out += [added,
                        self.event("response.function_call_arguments.delta",
                                   item_id=item["id"], output_index=idx, delta=args),
                        self.event("response.function_call_arguments.done",
                                   item_id=item["id"], output_index=idx, name=e.fn,
                                   arguments=args),
                        self.event("response.output_item.done", output_index=idx,
                                   item=dict(item))]
            else:
                item = {"id": f"mcp_{e.call_id}_{secrets.token_hex(6)}", "type": "mcp_call",
                        "name": e.fn, "server_label": self.conv.labels.get(e.fn, ASYNCLM_LABEL),
                        "arguments": "", "status": "in_progress", "output": None,
                        "error": None}
                idx, added = self._add_item(item)
                item["arguments"] = args
                self.open_calls[e.call_id] = idx
                out += [added,
                        self.event("response.mcp_call_arguments.delta", item_id=item["id"],
                                   output_index=idx, delta=args),
                        self.event("response.mcp_call_arguments.done", item_id=item["id"],
                                   output_index=idx, arguments=args),
                        self.event("response.mcp_call.in_progress", item_id=item["id"],
                                   output_index=idx)]
        elif isinstance(e, ev.CallCompleted) and e.call_id in self.open_calls:
            idx = self.open_calls.pop(e.call_id)
            item = self.output[idx]
            rec = e.record
            if rec.ok:
                item["status"] = "completed"
                item["output"] = rec.value if isinstance(rec.value, str) else (
                    rec.rendered if rec.rendered is not None else json.dumps(rec.value,
                                                                             default=str))
                out.append(self.event("response.mcp_call.completed", item_id=item["id"],
                                      output_index=idx))
            else:
                item["status"] = "failed"
                item["error"] = {"type": "mcp_tool_execution_error",
                                 "content": [{"type": "text",
                                              "text": f"{rec.status}: {rec.error or ''}"}]}
                out.append(self.event("response.mcp_call.failed", item_id=item["id"],
                                      output_index=idx))
            out.append(self.event("response.output_item.done", output_index=idx,
                                  item=json.loads(json.dumps(item))))
        return out

    def finish(self, *, parked: bool) -> list[dict[str, Any]]:
        out = self._close_msg()
        conv = self.conv
        for cid, idx in list(self.open_calls.items()):  # the run ended without their outcome
            item = self.output[idx]
            item["status"] = "failed"
            item["error"] = {"type": "mcp_tool_execution_error",
                             "content": [{"type": "text", "text": "the run ended"}]}
            out += [self.event("response.mcp_call.failed", item_id=item["id"],
                               output_index=idx),
                    self.event("response.output_item.done", output_index=idx,
                               item=json.loads(json.dumps(item)))]
            del self.open_calls[cid]
        if conv.result is not None:
            usage = usage_of(conv.result, conv.prompt_tokens)
        else:
            usage = Usage(conv.prompt_tokens, _generated(conv))
        self.usage = usage.responses()
        if parked or (conv.ended and conv.result is not None):
            if conv.result is not None and conv.result.stop_reason == "max_tokens":
                self.status = "incomplete"
                self.incomplete = {"reason": "max_output_tokens"}
                out.append(self.event("response.incomplete", response=self.body()))
            else:
                self.status = "completed"
                out.append(self.event("response.completed", response=self.body()))
        else:
            self.status = "failed"
            self.error = {"code": "server_error",
                          "message": f"the run ended without an answer: {conv.error}"}
            out.append(self.event("response.failed", response=self.body()))
        return out


def _generated(conv: _Conv) -> int:
    return sum(1 for e in conv.events if isinstance(e, ev.TextDelta | ev.CallDelta))


def _parked(conv: _Conv, w: _Writer) -> bool:
    """The run waits for the client: the model has stopped to wait (the runtime's ``waiting``
    event, nothing written since), a client call it handed over is pending, and no server
    call is open."""
    if conv.ended or w.open_calls or conv.cursor < len(conv.events):
        return False
    if not any(not fut.done() for fut in conv.waiting.values()):
        return False
    for event in reversed(conv.events):
        if isinstance(event, ev.Waiting):
            return True
        if isinstance(event, ev.TextDelta | ev.CallDelta | ev.InterruptInjected | ev.TrapEvent):
            return False
    return False


async def _respond(w: _Writer) -> AsyncIterator[dict[str, Any]]:
    """The response's events: the run's events from the conversation's cursor on, until the
    run ends or parks on client calls."""
    conv = w.conv
    conv.streaming = True
    try:
        for e in w.start():
            yield e
        parked = False
        while True:
            while conv.cursor < len(conv.events):
                event = conv.events[conv.cursor]
                conv.cursor += 1
                for out in w.feed(event):
                    yield out
            if conv.ended:
                break
            if _parked(conv, w):
                parked = True
                break
            conv.wake.clear()
            if conv.cursor < len(conv.events) or conv.ended:
                continue
            await conv.wake.wait()
        for out in w.finish(parked=parked):
            yield out
        if parked:
            _park_timer(conv)
    finally:
        conv.streaming = False


def _park_timer(conv: _Conv) -> None:
    """Cancel a parked run the client never continues."""
    cursor = conv.cursor
    loop = asyncio.get_running_loop()

    def expire() -> None:
        if not conv.ended and not conv.streaming and conv.cursor == cursor:
            conv.cancel()

    loop.call_later(PARK_S, expire)


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, default=str)}\n\n"


# -- the route -------------------------------------------------------------------------------

@router.post("/v1/responses", tags=["openai"])
async def create_response(req: ResponsesRequest, request: Request) -> Any:
    """Create a model response (OpenAI Responses API subset; see the module's docstring)."""
    b = backend(request)
    store = _store(request)
    _check_fields(req)
    items = _items(req)
    messages, system, outputs = _read_input(items)
    specs = list(req.tools or [])
    max_tokens = (min(1024, b.config.max_tokens_limit) if req.max_output_tokens is None
                  else req.max_output_tokens)
    instructions = "\n\n".join(s for s in (req.instructions or "", system) if s)
    if len(instructions) > b.config.max_prompt_chars:
        raise OpenAIError(400, f"instructions over {b.config.max_prompt_chars} characters",
                          param="instructions", code="string_above_max_length")
    prev = None
    conv: _Conv | None = None
    if req.previous_response_id is not None:
        prev = store.get(req.previous_response_id)
        if prev is None:
            raise OpenAIError(404, f"Previous response with id "
                                   f"{req.previous_response_id[:100]!r} not found.",
                              param="previous_response_id", code="previous_response_not_found")
        if prev.conv.model != req.model:
            b.check_model(req.model)
    b.check_model(req.model)
    if prev is not None and not prev.conv.ended and prev.conv.waiting:
        # a run parked on client calls: deliver the outputs, messages as interrupts
        conv = prev.conv
        if prev.continued or conv.streaming:
            raise OpenAIError(400, "this response was already continued; continue from the "
                                   "latest response", param="previous_response_id",
                              code="response_already_continued")
        unknown = [c for c in outputs if c not in conv.waiting]
        if unknown:
            raise OpenAIError(400, f"no pending function call with call_id {unknown[0]!r} "
                                   f"(pending: {', '.join(conv.waiting)})", param="input",
                              code="invalid_value")
        prev.continued = True
        for m in messages:
            if m.role == "user" and m.content.strip():
                try:
                    conv.control.interrupt(m.content[:conv.control.max_text_chars])
                except (ValueError, RuntimeError) as exc:
                    raise OpenAIError(400, str(exc), param="input") from None
        for cid, text in outputs.items():
            fut = conv.waiting.get(cid)
            if fut is not None and not fut.done():
                fut.set_result(text)
    else:
        if outputs and prev is not None and not any(
                m.role == "assistant" for m in messages):
            raise OpenAIError(400, "function_call_output for a response that is not waiting "
                                   "for function calls", param="input", code="invalid_value")
        if not messages:
            raise OpenAIError(400, "input has no message", param="input",
                              code="invalid_value")
        mcp, client = _mcp_specs(specs, dict(b.config.mcp_servers))
        server_box, client_specs = b.resolve_tools(client, allow_client=True)
        for spec in client_specs:  # a malformed schema is the client's mistake: 400 now
            try:
                Tool.from_openai(spec)
            except (ValueError, TypeError) as exc:
                raise OpenAIError(400, f"invalid function tool: {exc}", param="tools",
                                  code="invalid_value") from None
        history: list[ChatMessage] = []
        if prev is not None:
            old = prev.conv
            history = [m for m in old.conversation if m.role != "system"]
            if old.result is not None:
                history.append(ChatMessage("assistant", old.result.transcript))
        names = [*server_box, *(str(s.get("name", "")) for s in client_specs)]
        if len(set(names)) != len(names):
            raise OpenAIError(400, "two tools have the same name", param="tools",
                              code="invalid_value")
        await _check_mcp(mcp)
        conv = _Conv(model=req.model, conversation=history + messages, server_box=server_box,
                     client_specs=client_specs, mcp=mcp, instructions=instructions)
        _start(b, conv, max_tokens, _last_user(messages))
    rid = f"resp_{secrets.token_hex(16)}"
    writer = _Writer(rid, conv, req, req.previous_response_id)
    stored = _Stored(conv, time.time(), {})
    store.put(rid, stored)
    if req.stream:
        async def stream() -> AsyncIterator[str]:
            ok = False
            try:
                async for event in _respond(writer):
                    yield _sse(event)
                ok = True
            finally:
                stored.body = writer.body()
                if not ok:
                    conv.cancel()  # the client went away: the run is cancelled

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})
    try:
        async for _ in _respond(writer):
            pass
    except BaseException:
        conv.cancel()
        raise
    stored.body = writer.body()
    return JSONResponse(writer.body())


@router.get("/v1/responses/{response_id}", tags=["openai"])
async def get_response(response_id: str, request: Request) -> JSONResponse:
    """A stored response (as it was when it ended)."""
    item = _store(request).get(response_id)
    if item is None or not item.body:
        raise OpenAIError(404, f"Response with id {response_id[:100]!r} not found.",
                          param="response_id", code="not_found")
    return JSONResponse(item.body)
