"""OpenTelemetry: an ``invoke_agent`` span per run and an ``execute_tool`` span per started call
(GenAI conventions), the tool's span current while it runs and a child of the run's, with the
call's outcome; nothing at all without a configured provider."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from asynclm.runtime import SessionConfig, otel
from asynclm.tools import tool

sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk not installed")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)


@tool
async def nested(x: int) -> int:
    """Make a span of its own while running."""
    with trace.get_tracer("user").start_as_current_span("inner work"):
        return x * 2


@tool
def broken() -> int:
    """Always raises."""
    raise ValueError("no luck")


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exp = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    monkeypatch.setattr(otel, "_provider", lambda: provider)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)  # for the tool's own span
    return exp


def test_tool_spans_follow_the_conventions(run_script: Any, exporter: InMemorySpanExporter) -> None:
    from tests.runtime.conftest import sleepy

    r = run_script(
        ["[CALL] a [HEAD] nested(x=2) [END]\n", "[CALL] b [HEAD] broken() [END]\n",
         "[CALL] c [HEAD] sleepy(seconds=5) [END]\n", "[CALL] d [HEAD] missing() [END]\n",
         "[TRAP][END]\n", "[TRAP][END]\n", "[TRAP][END]\n", "[TRAP][END]\n", "ok"],
        tools=[nested, broken, sleepy], config=SessionConfig(tool_timeout_s=1.0))
    assert {c.id: c.status for c in r.calls} == {
        "a": "ok", "b": "error", "c": "timeout", "d": "error"}
    spans = {s.name: s for s in exporter.get_finished_spans()}
    # d never started (unknown tool): no span
    assert set(spans) == {"execute_tool nested", "execute_tool broken", "execute_tool sleepy",
                          "inner work", "invoke_agent asynclm"}
    run = spans["invoke_agent asynclm"]
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["asynclm.strategy"] == "async"
    assert run.attributes["asynclm.stop_reason"] == "eos" and run.attributes["asynclm.calls"] == 4
    assert run.attributes["gen_ai.usage.output_tokens"] == r.n_generated
    assert run.attributes["gen_ai.usage.input_tokens"] > 0
    assert run.attributes["asynclm.injected_tokens"] > 0
    assert run.status.status_code is trace.StatusCode.UNSET
    tool_spans = [v for k, v in spans.items() if k.startswith("execute_tool")]
    assert all(t.parent.span_id == run.context.span_id for t in tool_spans)
    a = spans["execute_tool nested"]
    assert dict(a.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "nested",
        "gen_ai.tool.call.id": "a", "gen_ai.tool.type": "function"}
    assert a.status.status_code is trace.StatusCode.UNSET
    assert spans["inner work"].parent.span_id == a.context.span_id  # the tool's span is current
    b, c = spans["execute_tool broken"], spans["execute_tool sleepy"]
    assert b.attributes["error.type"] == "ValueError" and "no luck" in b.status.description
    assert b.status.status_code is trace.StatusCode.ERROR
    assert c.attributes["error.type"] == "Timeout" and c.attributes["gen_ai.tool.call.id"] == "c"


def test_nothing_without_a_provider() -> None:
    assert otel.tracer() is None  # this test process configures no global provider
    assert otel.start_tool_span(otel.tracer(), "f", "c1") is None


def test_global_provider_and_parent_span() -> None:
    """In a fresh process: the application sets a global provider; tool spans become
    children of the span current when the session runs."""
    code = textwrap.dedent('''
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from asynclm import Session, tool
        from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine

        exp = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exp))
        trace.set_tracer_provider(provider)

        @tool
        async def f(x: int) -> int:
            """Double."""
            return 2 * x

        async def main():
            engine = SimEngine(ScriptedPolicy(["[CALL] a [HEAD] f(x=1) [END]\\n[TRAP][END]\\n"]),
                               SimCosts(tpot_s=0.001))
            with trace.get_tracer("app").start_as_current_span("request") as parent:
                await Session(engine, [f]).run("go")
            return parent

        parent = asyncio.run(main())
        spans = {s.name: s for s in exp.get_finished_spans()}
        run = spans["invoke_agent asynclm"]
        print(sorted(spans), run.parent.span_id == parent.context.span_id
              and spans["execute_tool f"].parent.span_id == run.context.span_id)
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['execute_tool f', 'invoke_agent asynclm', 'request'] True"


def test_a_run_that_fails_ends_its_span_with_the_error(exporter: InMemorySpanExporter) -> None:
    from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
    from asynclm.runtime import Session, run_virtual

    class Broken(SimEngine):
        async def step(self, *, ban: Any = ()) -> int:
            raise OSError("engine went away")

    engine = Broken(ScriptedPolicy(["x"]), SimCosts())
    with pytest.raises(OSError, match="engine went away"):
        run_virtual(Session(engine, [], system="t").run("go"))
    (run,) = exporter.get_finished_spans()
    assert run.name == "invoke_agent asynclm" and run.attributes["error.type"] == "OSError"
    assert run.status.status_code is trace.StatusCode.ERROR
    assert "asynclm.stop_reason" not in run.attributes
