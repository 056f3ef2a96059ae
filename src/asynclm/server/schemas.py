"""Request and response bodies (pydantic). Unknown fields are rejected, sizes are bounded;
limits that depend on the server's configuration are checked in :mod:`asynclm.server.app`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asynclm.server.client_tools import MAX_TIMEOUT_S

_ID = r"^[A-Za-z0-9_.:-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimOptions(_Strict):
    """The simulated model (``engine="sim"``): time per token (real time) and, optionally,
    the exact text it writes (pieces, in order; calls in it really run)."""

    tpot_ms: float = Field(30.0, ge=0.0, le=2000.0)
    script: list[str] | None = Field(None, max_length=256)


class ClientTool(BaseModel):
    """A tool the client runs: an OpenAI function tool spec (``{"type": "function",
    "function": {"name", "description", "parameters"}}`` or the flat Responses form) plus an
    optional ``timeout_s`` (default :data:`asynclm.server.client_tools.DEFAULT_TIMEOUT_S`)."""

    model_config = ConfigDict(extra="allow")

    timeout_s: float | None = Field(None, gt=0.0, le=MAX_TIMEOUT_S)

    def spec(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CreateSession(_Strict):
    prompt: str = Field(min_length=1)
    tools: str = Field("demo", max_length=200, description="demo, none, or an allowed module")
    strategy: Literal[
        "async", "async-lazy", "sync", "sync-parallel", "async-naive", "sync-reprefill"] = "async"
    engine: Literal["sim", "llamacpp"] = "sim"
    model: str = Field("qwen2.5-coder-0.5b", max_length=100)
    max_tokens: int = Field(512, ge=1)
    agent: str | None = Field(None, pattern=_ID, description="agent name: adds send_message")
    system: str | None = Field(None, description="system prompt (default: CML rules + tools)")
    sim: SimOptions | None = None
    client_tools: list[ClientTool] = Field(
        default_factory=list, max_length=32,
        description="tools the client runs: their calls appear on the event stream "
                    "(runs_on: client) and wait for POST /sessions/{id}/calls/{call_id}/result")


class SendMessage(_Strict):
    text: str = Field(min_length=1)
    sender: str = Field("user", pattern=_ID)


class ClientResult(_Strict):
    """A client-run call's answer: exactly one of ``output`` (any JSON value, given to the
    model as the call's result) and ``error`` (a message: the call ends ``error``)."""

    output: Any = None
    error: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> ClientResult:
        given = {"output", "error"} & self.model_fields_set
        if len(given) != 1 or (given == {"error"} and self.error is None):
            raise ValueError("give exactly one of 'output' and 'error'")
        return self


class AgentsDemo(_Strict):
    engine: Literal["sim", "llamacpp"] = "sim"
    model: str = Field("qwen2.5-coder-0.5b", max_length=100)
    max_tokens: int = Field(256, ge=1)
    tpot_ms: float = Field(30.0, ge=0.0, le=2000.0)


class LiveDemo(_Strict):
    """``POST /demos/live``: the live demo on the simulator (``tpot_ms`` per token, real time)
    or on a llama.cpp model."""

    engine: Literal["sim", "llamacpp"] = "sim"
    model: str = Field("qwen2.5-coder-0.5b", max_length=100)
    max_tokens: int = Field(512, ge=1)
    tpot_ms: float = Field(40.0, ge=0.0, le=2000.0)


class SessionInfo(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "cancelled", "failed"]
    engine: str
    model: str | None
    strategy: str
    tools: str
    agent: str | None
    prompt: str
    created_at: float
    n_events: int
    stop_reason: str | None = None
    error: str | None = None
    queue_position: int | None = None
    """While ``queued`` for a slot of its model: 1 = next; else ``None``."""


class ErrorBody(BaseModel):
    error: str
    detail: object | None = None
