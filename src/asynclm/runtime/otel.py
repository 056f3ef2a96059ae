"""OpenTelemetry spans after the GenAI semantic conventions:

- ``invoke_agent asynclm`` for one session run (a child of whatever span is current when it
  runs), with the strategy, the stop reason, prompt and generated tokens
  (``gen_ai.usage.input_tokens`` / ``output_tokens``), tokens injected and the number of calls;
- ``execute_tool {name}`` for each call that starts, a child of the run's span, current while
  the tool runs (so spans the tool makes, e.g. of its HTTP requests, are its children), with
  ``gen_ai.tool.name``, ``gen_ai.tool.call.id`` and, for an outcome other than ok,
  ``error.type`` and an error status.

Needs only ``opentelemetry-api`` (extra ``otel``), and does nothing until the application
configures a tracer provider (the SDK's ``trace.set_tracer_provider``). The provider is looked
up once per run (:func:`tracer`); without one, a call costs one ``is None`` check.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from asynclm._version import __version__

try:
    from opentelemetry import trace as _api
except ImportError:  # pragma: no cover - exercised only without the extra
    _api = None  # type: ignore[assignment]

__all__ = [
    "end_run_span", "end_tool_span", "start_run_span", "start_tool_span", "tracer", "use_span"
]

_cached: tuple[Any, Any] | None = None  # (provider, its tracer for asynclm)


def _provider() -> Any:
    """The configured tracer provider, or None when there is none (or no OpenTelemetry)."""
    if _api is None:
        return None
    provider = _api.get_tracer_provider()
    return None if isinstance(provider, _api.ProxyTracerProvider) else provider


def tracer() -> Any:
    """asynclm's tracer from the configured provider, or None when there is none."""
    global _cached
    provider = _provider()
    if provider is None:
        return None
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer("asynclm", __version__))
    return _cached[1]


def start_run_span(tracer: Any, strategy: str) -> Any:
    """A started span for one session run, or None without a ``tracer``."""
    if tracer is None:
        return None
    return tracer.start_span("invoke_agent asynclm", kind=_api.SpanKind.INTERNAL, attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "asynclm",
        "asynclm.strategy": strategy})


def end_run_span(span: Any, *, stop_reason: str | None, input_tokens: int, output_tokens: int,
                 injected_tokens: int, calls: int, error: BaseException | None = None) -> None:
    span.set_attributes({
        "gen_ai.usage.input_tokens": input_tokens, "gen_ai.usage.output_tokens": output_tokens,
        "asynclm.injected_tokens": injected_tokens, "asynclm.calls": calls})
    if stop_reason is not None:
        span.set_attribute("asynclm.stop_reason", stop_reason)
    if error is not None:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(_api.Status(_api.StatusCode.ERROR, str(error) or type(error).__name__))
    span.end()


def start_tool_span(tracer: Any, fn: str, call_id: str) -> Any:
    """A started span for a call of tool ``fn``, or None without a ``tracer``."""
    if tracer is None:
        return None
    return tracer.start_span(
        f"execute_tool {fn}", kind=_api.SpanKind.INTERNAL, attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": fn,
            "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function"})


def use_span(span: Any) -> AbstractContextManager[Any]:
    """Make ``span`` current (nothing for None); it is ended by :func:`end_tool_span`."""
    return nullcontext() if span is None else _api.use_span(span, end_on_exit=False)


def end_tool_span(span: Any, status: str, error_type: str | None, error: str | None) -> None:
    if status != "ok":
        span.set_attribute("error.type", error_type or status)
        span.set_status(_api.Status(_api.StatusCode.ERROR, error))
    span.end()
