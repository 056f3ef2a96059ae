"""``GET /v1/models`` and ``POST /v1/chat/completions``: the OpenAI Chat Completions subset
(see README, "OpenAI-compatible API").

A request's ``tools`` select server-run tools (see :mod:`asynclm.server.openai_common`):
the model calls them while it writes, asynclm runs them concurrently and the model reads
their results; the answer's ``content`` is the model's text. Tool activity is reported in
an extension field ``asynclm`` (top level of the completion and of stream chunks), which
SDKs keep as an extra attribute and otherwise ignore. Client-run tools are not in scope.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from asynclm.engines.base import ChatMessage
from asynclm.server.openai_common import (
    Backend,
    OpenAIError,
    Run,
    backend,
    content_text,
    served_models,
    system_text,
)

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

_DEFAULT_MAX_TOKENS = 512
_FINISH = {"max_tokens": "length"}  # every other stop reason is "stop"
_CALL_EVENTS = ("call.emitted", "call.started", "call.progress", "call.completed")


class ChatMessageIn(BaseModel):
    """One message. ``content``: a string or text parts. ``tool_calls`` (assistant) and
    ``tool_call_id`` (tool) are kept as text for the model."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[Any] | None = None
    name: str | None = Field(None, max_length=200)
    tool_calls: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_call_id: str | None = Field(None, max_length=200)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """The supported subset. Fields marked *ignored* are accepted and have no effect (the
    engine samples greedily); fields that would change the answer's meaning are refused
    unless they have their default value (``n`` 1, ``logprobs`` false, no ``stop``...)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(None, description="ignored: calls run concurrently")
    # ignored (accepted for compatibility)
    temperature: float | None = Field(None, description="ignored")
    top_p: float | None = Field(None, description="ignored")
    presence_penalty: float | None = Field(None, description="ignored")
    frequency_penalty: float | None = Field(None, description="ignored")
    seed: int | None = Field(None, description="ignored")
    user: str | None = Field(None, description="ignored")
    metadata: dict[str, Any] | None = Field(None, description="ignored")
    store: bool | None = Field(None, description="ignored")
    service_tier: str | None = Field(None, description="ignored")
    prompt_cache_key: str | None = Field(None, description="ignored")
    safety_identifier: str | None = Field(None, description="ignored")
    reasoning_effort: str | None = Field(None, description="ignored")
    verbosity: str | None = Field(None, description="ignored")
    # refused unless default
    n: int | None = Field(None, description="1 only")
    logprobs: bool | None = Field(None, description="false only")
    top_logprobs: int | None = Field(None, description="unsupported")
    stop: str | list[str] | None = Field(None, description="unsupported")
    logit_bias: dict[str, Any] | None = Field(None, description="unsupported")
    response_format: dict[str, Any] | None = Field(None, description="type text only")
    modalities: list[str] | None = Field(None, description='["text"] only')
    functions: list[Any] | None = Field(None, description="unsupported (use tools)")
    function_call: Any = Field(None, description="unsupported (use tool_choice)")
    audio: Any = Field(None, description="unsupported")
    prediction: Any = Field(None, description="unsupported")
    web_search_options: Any = Field(None, description="unsupported")


def _refuse_unsupported(req: ChatCompletionRequest) -> None:
    def no(param: str, why: str) -> OpenAIError:
        return OpenAIError(400, f"{param}: {why} is not supported by this server",
                           param=param, code="unsupported_parameter")

    if req.n not in (None, 1):
        raise no("n", "more than one choice")
    if req.logprobs or req.top_logprobs:
        raise no("logprobs", "log probabilities")
    if req.stop:
        raise no("stop", "stop sequences")
    if req.logit_bias:
        raise no("logit_bias", "a logit bias")
    if req.response_format and req.response_format.get("type") != "text":
        raise no("response_format", "a response format other than text")
    if req.modalities and req.modalities != ["text"]:
        raise no("modalities", "output other than text")
    for name in ("functions", "function_call", "audio", "prediction", "web_search_options"):
        if getattr(req, name) is not None:
            raise no(name, f"{name!r}")
    if isinstance(req.tool_choice, dict) or req.tool_choice not in (None, "auto", "none"):
        raise no("tool_choice", "a tool_choice other than auto or none")
    if req.stream_options is not None and not req.stream:
        raise OpenAIError(400, "stream_options is only allowed with stream: true",
                          param="stream_options")


def _conversation(req: ChatCompletionRequest, b: Backend) -> tuple[list[ChatMessage], Any, str]:
    """The engine's messages, the server tools and the label for the session list."""
    tools = b.resolve_tools(req.tools if req.tool_choice != "none" else None,
                            allow_client=False)[0]
    system: list[str] = []
    rest: list[ChatMessage] = []
    for i, m in enumerate(req.messages):
        text = content_text(m.content, param=f"messages.{i}.content")
        if m.role in ("system", "developer"):
            system.append(text)
        elif m.role == "user":
            rest.append(ChatMessage("user", text))
        elif m.role == "assistant":
            calls = [f"(called {c.get('function', {}).get('name', '?')} with "
                     f"{c.get('function', {}).get('arguments', '')})" for c in m.tool_calls or ()
                     if isinstance(c.get("function"), dict)]
            rest.append(ChatMessage("assistant", " ".join([text, *calls]).strip()))
        else:  # tool
            rest.append(ChatMessage("user", f"(result of call {m.tool_call_id or '?'}) {text}"))
    if not rest:
        raise OpenAIError(400, "messages: at least one user message is needed",
                          param="messages")
    sys_text = system_text(tools, "\n\n".join(system))
    conversation = ([ChatMessage("system", sys_text)] if sys_text else []) + rest
    label = next((m.content for m in reversed(rest) if m.role == "user"), rest[-1].content)
    return conversation, tools, label[:500]


def _tool_event(event: dict[str, Any]) -> dict[str, Any]:
    keep = ("call_id", "fn", "args", "status", "value", "error", "message")
    return {"type": event["type"], **{k: event[k] for k in keep if k in event}}


def _finish(run: Run) -> str:
    return _FINISH.get(run.result.stop_reason, "stop") if run.result else "stop"


def _failure(run: Run, status: str | None, error: str | None) -> OpenAIError:
    if status == "cancelled":
        return OpenAIError(503, "the run was cancelled (server shutting down?)",
                           type="server_error")
    return OpenAIError(500, f"the model failed: {error or 'unknown error'}", type="server_error")


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The served models (bundled models in the cache, then ``sim``), OpenAI's list shape."""
    return {"object": "list", "data": served_models(backend(request).config)}


@router.get("/models/{model}")
async def get_model(model: str, request: Request) -> dict[str, Any]:
    """One served model, or 404 ``model_not_found``."""
    for m in served_models(backend(request).config):
        if m["id"] == model:
            return m
    raise OpenAIError(404, f"The model {model[:100]!r} does not exist or is not served here",
                      param="model", code="model_not_found")


@router.post("/chat/completions", response_model=None)
async def chat_completions(req: ChatCompletionRequest, request: Request,
                           ) -> dict[str, Any] | StreamingResponse:
    """Chat Completions: ``model``, ``messages``, ``max_tokens``/``max_completion_tokens``,
    server-run ``tools``, ``stream`` with ``stream_options.include_usage``. The run is a live
    session of the registry (limits apply; a dropped stream cancels it)."""
    b = backend(request)
    _refuse_unsupported(req)
    b.check_model(req.model)
    conversation, tools, label = _conversation(req, b)
    max_tokens = req.max_completion_tokens or req.max_tokens or min(
        _DEFAULT_MAX_TOKENS, b.config.max_tokens_limit)
    run = b.start_run(model=req.model, conversation=conversation, tools=tools,
                      max_tokens=max_tokens, label=label)
    assert run.live is not None
    cid, created = f"chatcmpl-{run.live.id}", int(time.time())
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(
            _stream(run, cid, created, req.model, usage), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await _complete(run, cid, created, req.model, request)


async def _complete(run: Run, cid: str, created: int, model: str, request: Request,
                    ) -> dict[str, Any]:
    async def watch() -> None:  # a client that hangs up cancels its run
        while not await request.is_disconnected():
            await asyncio.sleep(0.5)
        run.cancel()

    watcher = asyncio.create_task(watch(), name=f"asynclm-v1-watch-{cid}")
    calls: list[dict[str, Any]] = []
    end: dict[str, Any] = {}
    try:
        async for event in run.events():
            if event["type"] == "call.completed":
                calls.append(_tool_event(event))
            elif event["type"] == "session.end":
                end = event
    finally:
        watcher.cancel()
        run.cancel()
    if end.get("status") != "done" or run.result is None:
        raise _failure(run, end.get("status"), end.get("error"))
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": run.result.text,
                                             "refusal": None},
                     "logprobs": None, "finish_reason": _finish(run)}],
        "usage": run.usage().chat(),
        "asynclm": {"session_id": cid.removeprefix("chatcmpl-"), "calls": calls,
                    "stop_reason": run.result.stop_reason},
    }


async def _stream(run: Run, cid: str, created: int, model: str, include_usage: bool,
                  ) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body: dict[str, Any] = {
            "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **({"usage": None} if include_usage else {}), **extra}
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        end: dict[str, Any] = {}
        async for event in run.events(keepalive_s=15.0):
            kind = event["type"]
            if kind == "keepalive":
                yield ": keep-alive\n\n"  # an SSE comment: proxies keep the stream, SDKs skip it
            elif kind == "text.delta" and event.get("text"):
                yield chunk({"content": event["text"]})
            elif kind in _CALL_EVENTS:
                yield chunk({}, asynclm=_tool_event(event))
            elif kind == "session.end":
                end = event
        if end.get("status") != "done" or run.result is None:
            err = _failure(run, end.get("status"), end.get("error"))
            body = {"error": {"message": err.message, "type": err.type, "param": None,
                              "code": err.code}}
            yield f"data: {json.dumps(body)}\n\n"
            return
        yield chunk({}, _finish(run), asynclm={"type": "done",
                                                "stop_reason": run.result.stop_reason})
        if include_usage:
            yield ("data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": None, "choices": [],
                "usage": run.usage().chat()}) + "\n\n")
        yield "data: [DONE]\n\n"
    finally:
        run.cancel()  # the client went away (or we are done): no run outlives its request
