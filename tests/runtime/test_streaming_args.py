"""Tools that start while their call is written (``streaming_args``), on virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asynclm.runtime import SessionConfig
from asynclm.runtime.early import ArgStream
from asynclm.tools import ToolContext, tool

from .conftest import scripted

STEP_S = 0.5
BODY = "\\n".join(f"x{i} = {i} + {i} * {i}" for i in range(5))  # five statements, escaped


def _code_tool(log: list[Any]) -> Any:
    async def run_streamed(stream: ArgStream, ctx: ToolContext) -> list[str]:
        out = []
        try:
            async for line in stream.lines("code"):
                log.append(("stmt", line, asyncio.get_running_loop().time()))
                await asyncio.sleep(STEP_S)
                out.append(line)
        except asyncio.CancelledError:
            log.append(("cancelled", ctx.call_id, ctx.cancelled()))
            raise
        log.append(("final", await stream.final()))
        return out

    @tool(streaming_args=run_streamed)
    async def run_code(code: str, limit: int = 10) -> list[str]:
        """Run Python statements."""
        out = []
        for line in code.split("\n"):
            await asyncio.sleep(STEP_S)
            out.append(line)
        return out

    return run_code


def _call(body: str = f'code="{BODY}"', cid: str = "c1") -> str:
    return f"[CALL] {cid} [HEAD] run_code({body}) [END]\n"


def test_starts_while_written_and_is_faster() -> None:
    log: list[Any] = []
    code = _code_tool(log)
    script = [_call(), "[TRAP][END]", "done."]
    streamed = scripted(script, [code], tpot_s=0.05)
    normal = scripted(script, [code.replace(streaming_args=None)], tpot_s=0.05)
    (rec,) = streamed.calls
    assert rec.status == "ok" and rec.value == [f"x{i} = {i} + {i} * {i}" for i in range(5)]
    assert normal.calls[0].value == rec.value
    # it started before the block closed, and the first statement ran long before its end
    assert rec.started_at < rec.emitted_at
    first = next(t for kind, *rest in log if kind == "stmt" for t in [rest[1]])
    assert first < rec.emitted_at
    assert ("final", {"code": BODY.replace("\\n", "\n"), "limit": 10}) in log
    assert streamed.latency_s < normal.latency_s - 1.0


def test_values_arrive_one_by_one_in_order() -> None:
    seen: list[tuple[str, Any, float]] = []

    async def run(stream: ArgStream, ctx: ToolContext) -> str:
        async for name, value in stream:
            seen.append((name, value, asyncio.get_running_loop().time()))
        return "ok"

    @tool(streaming_args=run)
    async def search(query: str, site: str, n: int = 3) -> str:
        """Search."""
        return "ok"

    script = ['[CALL] s1 [HEAD] search(query="a b c d e f g h", site="x y z w v u t") [END]\n',
              "[TRAP][END]", "done."]
    r = scripted(script, [search], tpot_s=0.05)
    assert r.calls[0].status == "ok"
    assert [(n, v) for n, v, _ in seen] == [
        ("query", "a b c d e f g h"), ("site", "x y z w v u t"), ("n", 3)]
    assert seen[0][2] < seen[1][2] < r.calls[0].emitted_at


def test_invalid_final_arguments_cancel_the_started_tool() -> None:
    log: list[Any] = []
    script = [_call(f'code="{BODY}", limit="many"'), "[TRAP][END]", "done."]
    r = scripted(script, [_code_tool(log)], tpot_s=0.05)
    (rec,) = r.calls
    assert rec.status == "error" and rec.error_type == "ToolArgumentError"
    assert any(e[0] == "stmt" for e in log)  # it had started
    assert ("cancelled", "c1", True) in log  # and was really cancelled


def test_malformed_call_cancels_the_started_tool() -> None:
    log: list[Any] = []
    script = [_call(f'code="{BODY}", limit=1 2'), "[TRAP][END]", "done."]
    r = scripted(script, [_code_tool(log)], tpot_s=0.05)
    (rec,) = r.calls
    assert rec.status == "error" and rec.error_type == "MalformedCall"
    assert any(e[0] == "stmt" for e in log)
    assert ("cancelled", "c1", True) in log


def test_call_never_completed_is_cancelled_and_recorded_once() -> None:
    log: list[Any] = []
    script = [f'[CALL] c1 [HEAD] run_code(code="{BODY}\\n']  # the model stops inside the block
    r = scripted(script, [_code_tool(log)], tpot_s=0.05)
    (rec,) = r.calls
    assert rec.status == "cancelled" and "never completed" in (rec.error or "")
    assert rec.started_at is not None
    assert any(e[0] == "cancelled" for e in log)


def test_call_cut_by_max_tokens_is_cancelled() -> None:
    log: list[Any] = []
    r = scripted([_call(), "[TRAP][END]", "done."], [_code_tool(log)], tpot_s=0.05,
                 config=SessionConfig(max_tokens=30))
    assert r.stop_reason == "max_tokens"
    assert [c.status for c in r.calls] == ["cancelled"]


@pytest.mark.parametrize("strategy", ["sync", "async", "async-lazy", "sync-parallel"])
def test_every_strategy_one_outcome(strategy: str) -> None:
    log: list[Any] = []
    script = [_call(), _call(cid="c2"), "[TRAP][END]", "done."]
    r = scripted(script, [_code_tool(log)], strategy=strategy, tpot_s=0.05)
    assert sorted(c.id for c in r.calls) == ["c1", "c2"]
    assert all(c.status == "ok" for c in r.calls)
    early = [c for c in r.calls if c.started_at is not None and c.started_at < c.emitted_at]
    assert bool(early) == (strategy != "sync-parallel")  # deferred calls start at the trap


def test_reference_halts_early_delivery_until_resolved() -> None:
    seen: list[tuple[str, Any]] = []

    async def run(stream: ArgStream, ctx: ToolContext) -> str:
        async for name, value in stream:
            seen.append((name, value))
        return "ok"

    @tool(streaming_args=run)
    async def use(a: str, b: int, c: str) -> str:
        """Use."""
        return "ok"

    @tool
    async def get() -> int:
        """Get."""
        await asyncio.sleep(1.0)
        return 7

    script = ["[CALL] g1 [HEAD] get() [END]\n",
              '[CALL] u1 [HEAD] use(a="x", b=$g1, c="z") [END]\n', "[TRAP][END]", "done."]
    r = scripted(script, [use, get], tpot_s=0.05)
    assert {c.id: c.status for c in r.calls} == {"g1": "ok", "u1": "ok"}
    assert seen == [("a", "x"), ("b", 7), ("c", "z")]


def test_unknown_or_plain_tools_do_not_start_early() -> None:
    r = scripted(['[CALL] c1 [HEAD] sleepy(seconds=1) [END]\n', "[TRAP][END]", "done."])
    (rec,) = r.calls
    assert rec.status == "ok" and rec.started_at >= rec.emitted_at


def test_streaming_args_must_be_async() -> None:
    def sync_impl(stream: Any, ctx: Any) -> None:
        return None

    with pytest.raises(TypeError):
        @tool(streaming_args=sync_impl)
        def f(x: int) -> int:
            """F."""
            return x


def test_a_dialect_without_a_reader_starts_calls_when_complete() -> None:
    from dataclasses import dataclass

    from asynclm.protocol import CmlDialect
    from asynclm.runtime import Session, run_virtual
    from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine

    @dataclass(frozen=True, slots=True)
    class NoReader(CmlDialect):
        def arguments_reader(self) -> None:  # type: ignore[override]
            return None

    log: list[Any] = []
    engine = SimEngine(ScriptedPolicy([_call(), "[TRAP][END]", "done."]),
                       SimCosts(tpot_s=0.05), dialect=NoReader())
    r = run_virtual(Session(engine, [_code_tool(log)], system="t", dialect=NoReader()).run("go"))
    (rec,) = r.calls
    assert rec.status == "ok" and rec.started_at >= rec.emitted_at


def test_a_slow_tool_still_gets_every_line() -> None:
    log: list[Any] = []
    r = scripted([_call(), "[TRAP][END]", "done."], [_code_tool(log)], tpot_s=0.01)
    assert r.calls[0].value == [f"x{i} = {i} + {i} * {i}" for i in range(5)]
    assert [e[1] for e in log if e[0] == "stmt"] == r.calls[0].value
